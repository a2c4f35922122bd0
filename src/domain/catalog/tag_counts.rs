//! How many matching entries carry each tag, counted in bounded memory: a facet count over 20,000
//! entries of 48 tags each could meet almost a million distinct tags, and kept them all.
//!
//! At most [`MAX_COUNTED_TAGS`] tags are held (Misra and Gries' frequent-items counter). Up to
//! that many distinct tags, every count is exact. Past it, a tag not held yet finds no room: it
//! and every held tag lose one, and the tags at zero leave. Each such step is counted
//! ([`TagCounts::error`]): a count is then at most that many below the true one, never above it,
//! and a tag missing from the counts was carried by at most that many entries. A step removes a
//! count from `MAX_COUNTED_TAGS + 1` tags at once, so there are at most (tags counted) /
//! (`MAX_COUNTED_TAGS` + 1) of them: tags more frequent than that are never lost.

use std::collections::HashMap;

/// Most distinct tags held while counting facets.
pub const MAX_COUNTED_TAGS: usize = 5_000;

#[derive(Debug)]
pub struct TagCounts {
    counts: HashMap<String, u64>,
    cap: usize,
    /// Steps in which every held count lost one.
    decrements: u64,
}

impl Default for TagCounts {
    fn default() -> Self {
        TagCounts::with_cap(MAX_COUNTED_TAGS)
    }
}

impl TagCounts {
    /// A counter that holds at most `cap` tags (at least one).
    pub fn with_cap(cap: usize) -> TagCounts {
        TagCounts {
            counts: HashMap::new(),
            cap: cap.max(1),
            decrements: 0,
        }
    }

    /// Counts one more entry carrying `tag`.
    pub fn add(&mut self, tag: &str) {
        if let Some(n) = self.counts.get_mut(tag) {
            *n += 1;
        } else if self.counts.len() < self.cap {
            self.counts.insert(tag.to_owned(), 1);
        } else {
            // No room: `tag` (whose one is dropped) and every held tag lose one.
            self.decrements += 1;
            self.counts.retain(|_, n| {
                *n -= 1;
                *n > 0
            });
        }
    }

    /// How far below its true count any count may be: 0 when every count is exact.
    pub fn error(&self) -> u64 {
        self.decrements
    }

    /// Distinct tags held.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    pub fn into_counts(self) -> HashMap<String, u64> {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_up_to_the_cap_then_within_the_error() {
        let mut at = TagCounts::with_cap(3);
        for t in ["a", "b", "a", "c", "a"] {
            at.add(t);
        }
        assert_eq!(at.error(), 0);
        let counts = at.into_counts();
        assert_eq!((counts["a"], counts["b"], counts["c"]), (3, 1, 1));

        // One distinct tag more: every count loses one, the ones at zero leave.
        let mut past = TagCounts::with_cap(3);
        for t in ["a", "b", "a", "c", "a", "d"] {
            past.add(t);
        }
        assert_eq!(past.error(), 1);
        assert_eq!(past.len(), 1);
        assert_eq!(past.into_counts()["a"], 2);
    }

    #[test]
    fn frequent_tags_survive_a_stream_of_distinct_ones() {
        let cap = 100;
        let mut c = TagCounts::with_cap(cap);
        let mut total = 0u64;
        for i in 0..10_000u64 {
            c.add("common");
            c.add(&format!("rare{i}"));
            total += 2;
        }
        assert!(c.len() <= cap);
        assert!(c.error() <= total / (cap as u64 + 1));
        let common = c.into_counts()["common"];
        assert!(common <= 10_000 && common + 200 >= 10_000, "{common}");
    }
}
