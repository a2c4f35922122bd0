//! The `WWW-Authenticate` challenge of a registry that wants credentials, as a probe records it.

use super::result::AuthChallenge;

/// Parses the first challenge of a `WWW-Authenticate` value: `Scheme k="v", k2=v2, ...`.
/// Quoted values may contain commas and backslash escapes. `None` when there is no scheme.
pub fn parse_challenge(header: &str) -> Option<AuthChallenge> {
    let mut rest = header.trim_start();
    let scheme_end = rest
        .find(|c: char| c.is_whitespace() || c == ',')
        .unwrap_or(rest.len());
    let scheme = &rest[..scheme_end];
    if scheme.is_empty() || scheme.contains('=') || scheme.contains('"') {
        return None;
    }
    let mut challenge = AuthChallenge {
        scheme: scheme.to_owned(),
        realm: None,
        service: None,
        scope: None,
    };
    rest = &rest[scheme_end..];
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace() || c == ',')
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let after_key = rest[key_end..].trim_start();
        let Some(after_eq) = after_key.strip_prefix('=') else {
            break; // the next challenge's scheme: only the first challenge is kept
        };
        let after_eq = after_eq.trim_start();
        let value;
        if let Some(quoted) = after_eq.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            out.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            value = out;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = after_eq
                .find(|c: char| c == ',' || c.is_whitespace())
                .unwrap_or(after_eq.len());
            value = after_eq[..end].to_owned();
            rest = &after_eq[end..];
        }
        match key.to_ascii_lowercase().as_str() {
            "realm" => challenge.realm = Some(value),
            "service" => challenge.service = Some(value),
            "scope" => challenge.scope = Some(value),
            _ => {}
        }
    }
    Some(challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "Bearer");
        assert_eq!(c.realm.as_deref(), Some("https://auth.docker.io/token"));
        assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(
            c.scope.as_deref(),
            Some("repository:samalba/my-app:pull,push")
        );
    }

    #[test]
    fn parses_basic_and_odd_spacing() {
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.realm.as_deref()),
            ("Basic", Some("Registry Realm"))
        );
        let c =
            parse_challenge(r#"  bearer  realm = "a\"b" , service=svc , Basic realm="x""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.realm.as_deref(), Some("a\"b"));
        assert_eq!(c.service.as_deref(), Some("svc"));
        assert!(parse_challenge("").is_none());
        assert!(parse_challenge("realm=\"x\"").is_none());
        assert_eq!(parse_challenge("Negotiate").unwrap().scheme, "Negotiate");
    }
}
