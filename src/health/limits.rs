//! Every bound on what a probed server can put into a probe result, in one place.
//!
//! A registry is whatever a stranger listed, so nothing it answers may grow a stored entry, a log line
//! or a response without bound. Every string that comes from a probed server (the auth challenge, the
//! API version header, the reason phrase, a content type, a `Location` quoted in an error, error texts
//! of the TLS or HTTP stack) is cut to the caps below, on a character boundary and with control
//! characters removed, before it is logged, stored or returned. The caps count a string's bytes as a
//! JSON string body (a `"` or `\` counts twice), which is never less than its UTF-8 size, so the same
//! figures bound the JSON and the DynamoDB size of the record. With them the whole record is at most
//! [`MAX_HEALTH_BYTES`] by construction (`tests` below builds the largest possible record), and the
//! entry size budget (`domain::entry`) reserves that much for it.

/// Short protocol tokens: the challenge's scheme, `Docker-Distribution-API-Version`, the reason phrase.
pub const MAX_TOKEN_BYTES: usize = 64;
/// Longer texts from the server: the challenge's realm, service and scope, a content type, and a
/// `Location` or URL quoted inside an error.
pub const MAX_TEXT_BYTES: usize = 256;
/// The `error` sentence, whatever it quotes.
pub const MAX_ERROR_BYTES: usize = 512;
/// A registry URL: the entry's `container_registry_public_url` (enforced when an entry is written)
/// and a redirect's `Location` that the probe would follow.
pub const MAX_URL_BYTES: usize = 2048;
/// The `url` of a result: a registry URL plus `/v2/`.
pub const MAX_PROBE_URL_BYTES: usize = MAX_URL_BYTES + "/v2/".len();
/// The whole health record, serialized as JSON; its DynamoDB size is smaller still.
pub const MAX_HEALTH_BYTES: usize = 4096;

/// What marks a cut string.
const ELLIPSIS: char = '…';

/// The bytes `c` takes inside a JSON string: serde_json escapes `"` and `\` with one more byte;
/// control characters never get here.
fn json_cost(c: char) -> usize {
    match c {
        '"' | '\\' => 2,
        c => c.len_utf8(),
    }
}

/// `text` with control characters removed, cut so that it takes at most `max` bytes as the body of a
/// JSON string (see [`json_cost`]); a cut string ends in "…", which counts toward `max`.
pub fn cap(text: &str, max: usize) -> String {
    let budget = max.saturating_sub(ELLIPSIS.len_utf8());
    let mut out = String::with_capacity(text.len().min(max));
    let mut used = 0;
    let mut cut_at = None;
    for c in text.chars().filter(|c| !c.is_control()) {
        let cost = json_cost(c);
        if cut_at.is_none() && used + cost > budget {
            cut_at = Some(out.len());
        }
        used += cost;
        if used > max {
            out.truncate(cut_at.unwrap_or(0));
            if max >= ELLIPSIS.len_utf8() {
                out.push(ELLIPSIS);
            }
            return out;
        }
        out.push(c);
    }
    out
}

/// [`cap`] for an optional string.
pub fn cap_opt(text: Option<String>, max: usize) -> Option<String> {
    text.map(|t| cap(&t, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_body_len(s: &str) -> usize {
        serde_json::to_string(s).unwrap().len() - 2
    }

    #[test]
    fn short_clean_text_is_kept_as_it_is() {
        assert_eq!(cap("registry/2.0", MAX_TOKEN_BYTES), "registry/2.0");
        assert_eq!(cap("", 10), "");
        let exact = "x".repeat(64);
        assert_eq!(cap(&exact, 64), exact);
    }

    #[test]
    fn control_characters_are_removed() {
        assert_eq!(
            cap("a\r\nX-Injected: 1\u{0}\t\u{7f}\u{85}b", 100),
            "aX-Injected: 1b"
        );
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_within_the_cap() {
        for text in [
            "x".repeat(200_000),
            "é".repeat(100_000),
            "\"\\".repeat(50_000),
            "日本語".repeat(10_000),
            "a".repeat(62) + "😀😀😀",
        ] {
            for max in [0, 1, 3, 4, 5, 63, 64, 65, 256, 512] {
                let out = cap(&text, max);
                assert!(json_body_len(&out) <= max, "{max}: {out:?}");
                assert!(out.len() <= max);
                if max >= 4 && json_body_len(&text) > max {
                    assert!(out.ends_with('…'), "{max}: {out:?}");
                } else if json_body_len(&text) <= max {
                    assert_eq!(out, text);
                }
            }
        }
        // 63 bytes of 'a' and a 4-byte emoji: the emoji does not fit before the ellipsis
        assert_eq!(cap(&("a".repeat(63) + "😀"), 64), "a".repeat(61) + "…");
    }
}
