//! The registry URL, read one way for everyone: entry validation (`domain::entry`) and the probe call
//! [`parse_registry_url`], so the address that was validated is the address that is probed.
//!
//! The `url` crate is forgiving the way browsers are: it drops tabs and newlines inside a URL, trims
//! spaces and control characters at its ends, reads `\` as `/` and `http:/host` or `http:///host` as
//! `http://host`. Every one of those forgivenesses is a way for the text a client stored to differ from
//! the URL used, so they are refused here before the URL is parsed: no whitespace, no control
//! characters, no backslash, and exactly `http://` or `https://` followed by a host.

use url::Url;

use super::limits::MAX_URL_BYTES;

/// Parses a registry URL: an absolute `http` or `https` URL with a host, written plainly (see the
/// module docs). The error says what is wrong, for a 400 or a probe result.
pub fn parse_registry_url(raw: &str) -> Result<Url, String> {
    if raw.is_empty() {
        return Err("is empty".to_owned());
    }
    if raw.len() > MAX_URL_BYTES {
        return Err(format!("must be at most {MAX_URL_BYTES} bytes long"));
    }
    if let Some((at, c)) = raw
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || c.is_control() || *c == '\\')
    {
        let what = if c == '\\' {
            "a backslash"
        } else if c.is_control() {
            "a control character"
        } else {
            "whitespace"
        };
        return Err(format!(
            "contains {what} ({c:?}) at byte {at}; a URL may not hold whitespace, control characters or backslashes (percent-encode them)"
        ));
    }
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(
            "must start with http:// or https:// (an absolute URL such as http://10.13.21.22:32633)"
                .to_owned(),
        );
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!(
            "must use http or https, not {}",
            super::limits::cap(scheme, 32)
        ));
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("must name a host right after {scheme}://"));
    }
    let url = Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    Ok(url)
}

/// The form of `url` to store: the `url` crate's serialization (scheme and host lowercased, IPv4
/// spelled in dotted decimal, default port dropped, dot segments resolved, non-ASCII percent- or
/// puny-encoded), without the `/` it appends to an empty path when `raw` had none, so
/// `http://10.13.21.22:32633` stays as written. Parsing the result gives `url` again.
pub fn normalized(raw: &str, url: &Url) -> String {
    let s = url.as_str();
    if url.path() == "/" && url.query().is_none() && url.fragment().is_none() && !raw.ends_with('/')
    {
        s.strip_suffix('/').unwrap_or(s).to_owned()
    } else {
        s.to_owned()
    }
}

/// The host a URL names (lowercase, without port): the key of the per-host cap of sweeps.
pub fn host_key(public_url: &str) -> String {
    parse_registry_url(public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_parse_and_normalize() {
        for (raw, stored) in [
            ("http://10.13.21.22:32633", "http://10.13.21.22:32633"),
            ("http://10.13.21.22:32633/", "http://10.13.21.22:32633/"),
            (
                "HTTPS://Registry.Example.COM:443",
                "https://registry.example.com",
            ),
            ("http://2130706433:5000", "http://127.0.0.1:5000"),
            ("http://0x7f.1/", "http://127.0.0.1/"),
            (
                "https://example.com/a/../b/./v2",
                "https://example.com/b/v2",
            ),
            ("https://bücher.example/", "https://xn--bcher-kva.example/"),
            (
                "http://[::FFFF:169.254.169.254]",
                "http://[::ffff:a9fe:a9fe]",
            ),
            ("https://example.com/ä", "https://example.com/%C3%A4"),
        ] {
            let url = parse_registry_url(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            let n = normalized(raw, &url);
            assert_eq!(n, stored, "{raw}");
            assert_eq!(parse_registry_url(&n).unwrap(), url, "{raw}: stable");
        }
    }

    #[test]
    fn forgiven_spellings_are_refused() {
        for (raw, words) in [
            ("", "empty"),
            (
                "http://registry.example.com/\r\nX-Injected: 1",
                "control character",
            ),
            ("http://registry.example.com/\n", "control character"),
            ("http://registry.example.com/a\tb", "control character"),
            ("http://registry.example.com/\0", "control character"),
            ("http://registry.example.com/\u{7f}", "control character"),
            ("http://registry.example.com/\u{85}", "control character"),
            (" http://registry.example.com", "whitespace"),
            ("http://registry.example.com ", "whitespace"),
            ("http://registry.example.com/a b", "whitespace"),
            ("http://registry.example.com/\u{a0}", "whitespace"),
            ("http://registry.example.com/\u{2028}", "whitespace"),
            ("http:\\\\169.254.169.254", "backslash"),
            ("http://host\\@169.254.169.254/", "backslash"),
            ("http:/169.254.169.254", "must start with http://"),
            ("http:169.254.169.254", "must start with http://"),
            ("http:///169.254.169.254", "must name a host"),
            ("http://", "must name a host"),
            ("registry.example.com:5000", "must start with http://"),
            ("ftp://example.com", "must use http or https"),
            ("file://etc/passwd", "must use http or https"),
            ("http://exa mple.com", "whitespace"),
            ("http://[::1", "not a valid URL"),
        ] {
            let err = parse_registry_url(raw).unwrap_err();
            assert!(err.contains(words), "{raw:?}: {err}");
        }
        let long = format!("http://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(parse_registry_url(&long).unwrap_err().contains("2048"));
        let edge = format!(
            "http://example.com/{}",
            "a".repeat(MAX_URL_BYTES - "http://example.com/".len())
        );
        assert!(parse_registry_url(&edge).is_ok());
    }

    #[test]
    fn host_key_is_the_lowercased_host_without_port() {
        assert_eq!(host_key("http://Reg.Example.com:5000/x"), "reg.example.com");
        assert_eq!(host_key("http://reg.example.com:5001"), "reg.example.com");
        assert_eq!(host_key("http://[::1]:5000"), "[::1]");
        assert_eq!(host_key("not a url"), "");
    }
}
