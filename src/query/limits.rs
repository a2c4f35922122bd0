//! Bounds on what a client may send, so that parsing and evaluation take bounded time and stack
//! whatever the input. All are checked before any recursive work, by an iterative walk.

use serde_json::Value;

/// Deepest nesting of JSON objects and arrays in a filter document, literal values included
/// (`{"a": {"$in": [[1]]}}` has depth 4). Deeper filters are a 400.
pub const MAX_FILTER_DEPTH: usize = 32;

/// Most JSON values (objects, arrays and scalars, literals included) in one filter document.
pub const MAX_FILTER_NODES: usize = 5_000;

/// Most values in one `$in`, `$nin` or `$all` list (filters), or in one `$each` list (updates).
pub const MAX_IN_VALUES: usize = 1_000;

/// Work one query or facet request may spend evaluating its filter, in comparisons (how they are
/// counted: `query::Budget`). Past it a page ends short, with a cursor where it stopped, as at the
/// bound on entries examined; a filter that needs more than this for one entry is a 400
/// (`filter_too_costly`). About 0.1 s of one core in a release build.
pub const MAX_FILTER_WORK: u64 = 5_000_000;

/// Longest `$regex` pattern, in bytes.
pub const MAX_REGEX_LEN: usize = 1_000;

/// Largest compiled form of one regex (the `regex` crate's `size_limit`), in bytes.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Most segments in one dotted path (`a.b.c` has 3). DynamoDB's own document paths stop at 32.
pub const MAX_PATH_SEGMENTS: usize = 32;

/// Longest dotted path, in bytes.
pub const MAX_PATH_LEN: usize = 1_024;

/// Deepest nesting of JSON objects and arrays in an update document, values included.
pub const MAX_UPDATE_DEPTH: usize = 64;

/// Most JSON values in one update document.
pub const MAX_UPDATE_NODES: usize = 100_000;

/// Most paths one update may touch.
pub const MAX_UPDATE_PATHS: usize = 1_000;

/// How far past the end of an array `$set` (or `$push`) with a numeric segment may write: MongoDB
/// fills the gap with nulls, and this bounds the gap.
pub const MAX_ARRAY_BACKFILL: usize = 1_000;

/// Why a document is too big: `Err(sentence)`.
pub(crate) fn check_size(
    v: &Value,
    max_depth: usize,
    max_nodes: usize,
    what: &str,
) -> Result<(), String> {
    let mut stack: Vec<(&Value, usize)> = vec![(v, 1)];
    let mut nodes = 0usize;
    while let Some((v, depth)) = stack.pop() {
        nodes += 1;
        if nodes > max_nodes {
            return Err(format!(
                "the {what} has more than {max_nodes} JSON values; split it or simplify it"
            ));
        }
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(m) => Box::new(m.values()),
            _ => continue,
        };
        if depth >= max_depth {
            let mut children = children.peekable();
            if children.peek().is_some() {
                return Err(format!(
                    "the {what} nests objects and arrays more than {max_depth} levels deep"
                ));
            }
            continue;
        }
        for c in children {
            stack.push((c, depth + 1));
        }
    }
    Ok(())
}

/// How deep a value nests (1 for a scalar), without recursion.
#[cfg(test)]
pub(crate) fn depth_of(v: &Value) -> usize {
    let mut stack = vec![(v, 1usize)];
    let mut max = 0;
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            Value::Object(m) => stack.extend(m.values().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    max
}
