//! Dotted field paths: `container_registry_metadata.owner`, `container_registry_tags.0`.

use std::fmt;

use super::limits::{MAX_PATH_LEN, MAX_PATH_SEGMENTS};

/// A validated dotted path: one to [`MAX_PATH_SEGMENTS`] non-empty segments, none starting with
/// `$`. A segment of digits may index an array (see [`Path::index`]); a document key that itself
/// contains a dot cannot be named, as in MongoDB.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path {
    segments: Vec<String>,
    text: String,
}

impl Path {
    /// Parses a dotted path; `Err` is the reason, for the caller to wrap.
    pub(crate) fn parse(text: &str) -> Result<Path, String> {
        if text.is_empty() {
            return Err("a field path is empty".to_string());
        }
        if text.len() > MAX_PATH_LEN {
            return Err(format!(
                "the field path '{}...' is longer than {MAX_PATH_LEN} bytes",
                truncate(text, 40)
            ));
        }
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        if segments.len() > MAX_PATH_SEGMENTS {
            return Err(format!(
                "the field path '{}' has more than {MAX_PATH_SEGMENTS} segments",
                truncate(text, 80)
            ));
        }
        for s in &segments {
            if s.is_empty() {
                return Err(format!(
                    "the field path '{text}' has an empty segment (a leading, trailing or doubled dot)"
                ));
            }
            if s.starts_with('$') {
                return Err(format!(
                    "the field path '{text}' has a segment '{s}' starting with '$'; positional \
                     operators and $-prefixed field names are not supported"
                ));
            }
        }
        Ok(Path {
            segments,
            text: text.to_string(),
        })
    }

    /// The segments, in order.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The dotted text, as the client wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The array index a segment denotes: canonical decimal digits ("0", "12", not "012"), as
    /// MongoDB matches array positions by their field names "0", "1", ...
    pub fn index(segment: &str) -> Option<usize> {
        let b = segment.as_bytes();
        if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
            return None;
        }
        segment.parse().ok()
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
