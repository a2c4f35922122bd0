//! Counts the stores keep with every write, so that the totals of the whole listing (the front
//! page's count, `POST /container_registries/facets` with `{}`) cost the same at 1,000,000 entries
//! as at 1,000: entries in all, per tag, per registry type, per storage type, per health verdict,
//! and how many have an owner.
//!
//! A store keeps one counter per [`CountKey`]'s text; each write adds the [`CountDelta`] between
//! what the entry contributed before and after it, in the same transaction as the entry, so the
//! counters are always exactly the entries'. `reindex` recounts them from the entries and reports
//! any difference ([`CountDrift`]).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use super::catalog::{NEVER_CHECKED, registry_type_str, storage_type_str};
use super::entry::ContainerRegistry;
use crate::health::HealthStatus;

/// The counter of every entry.
pub const TOTAL: &str = "n";
/// The counter of entries with an owner record.
pub const OWNED: &str = "o";
const TAG: &str = "t:";
const REGISTRY_TYPE: &str = "r:";
const STORAGE_TYPE: &str = "s:";
const HEALTH: &str = "h:";

/// Most tags [`KeptCounts`] holds (the most frequent): the facets answer lists at most 500
/// (`MAX_FACET_TAGS`), and a read of the counters holds no more than this many at once, however
/// many distinct tags the store counts.
pub const KEPT_TAGS: usize = 500;

/// What one entry contributes to the counters: one key each, counted once.
pub fn keys_of(
    tags: &[String],
    registry_type: Option<&str>,
    storage_type: Option<&str>,
    health: Option<HealthStatus>,
    owned: bool,
) -> Vec<String> {
    let mut keys = Vec::with_capacity(tags.len() + 5);
    keys.push(TOTAL.to_string());
    if owned {
        keys.push(OWNED.to_string());
    }
    for tag in tags {
        let key = format!("{TAG}{tag}");
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    if let Some(t) = registry_type {
        keys.push(format!("{REGISTRY_TYPE}{t}"));
    }
    if let Some(t) = storage_type {
        keys.push(format!("{STORAGE_TYPE}{t}"));
    }
    keys.push(format!(
        "{HEALTH}{}",
        health.map_or(NEVER_CHECKED, HealthStatus::as_str)
    ));
    keys
}

/// [`keys_of`] an entry.
pub fn entry_keys(entry: &ContainerRegistry, owned: bool) -> Vec<String> {
    let info = &entry.container_registry_storage_info;
    keys_of(
        &entry.container_registry_tags,
        info.registry_type.map(registry_type_str),
        info.storage_type.map(storage_type_str),
        entry.container_registry_health.as_ref().map(|h| h.status),
        owned,
    )
}

/// The change one write makes to the counters, by key (no zero changes).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CountDelta(BTreeMap<String, i64>);

impl CountDelta {
    /// The delta of a write that turns what `old` contributed into what `new` does.
    pub fn between(old: &[String], new: &[String]) -> Self {
        let mut delta = CountDelta::default();
        delta.add(old, -1);
        delta.add(new, 1);
        delta
    }

    /// Adds `sign` to every key of `keys`.
    pub fn add(&mut self, keys: &[String], sign: i64) {
        for key in keys {
            let n = self.0.entry(key.clone()).or_insert(0);
            *n += sign;
            if *n == 0 {
                self.0.remove(key);
            }
        }
    }

    /// Adds another delta (a batch's writes, one delta).
    pub fn merge(&mut self, other: &CountDelta) {
        for (key, n) in &other.0 {
            let m = self.0.entry(key.clone()).or_insert(0);
            *m += n;
            if *m == 0 {
                self.0.remove(key);
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.0.iter().map(|(k, n)| (k.as_str(), *n))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// The counters as a store read them: the totals whole, the tags the [`KEPT_TAGS`] most frequent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeptCounts {
    pub total: u64,
    pub owned: u64,
    /// Most frequent first, then by tag.
    pub tags: Vec<(String, u64)>,
    /// Distinct tags counted (more than `tags` holds when past [`KEPT_TAGS`]).
    pub distinct_tags: u64,
    pub registry_types: Vec<(String, u64)>,
    pub storage_types: Vec<(String, u64)>,
    pub health: Vec<(String, u64)>,
}

/// Gathers counters as a store reads them, in any order, holding at most [`KEPT_TAGS`] tags.
#[derive(Default)]
pub struct CountReader {
    out: KeptCounts,
    /// The most frequent tags so far, least frequent on top (ties: the greatest tag on top).
    top: BinaryHeap<Reverse<(u64, Reverse<String>)>>,
}

impl CountReader {
    /// One counter; counters at 0 (what a decrement leaves on DynamoDB) are no value at all.
    pub fn add(&mut self, key: &str, count: u64) {
        if count == 0 {
            return;
        }
        let push = |list: &mut Vec<(String, u64)>, value: &str| match list
            .iter_mut()
            .find(|(v, _)| v == value)
        {
            Some((_, n)) => *n += count,
            None => list.push((value.to_string(), count)),
        };
        if key == TOTAL {
            self.out.total += count;
        } else if key == OWNED {
            self.out.owned += count;
        } else if let Some(tag) = key.strip_prefix(TAG) {
            self.out.distinct_tags += 1;
            self.top.push(Reverse((count, Reverse(tag.to_string()))));
            if self.top.len() > KEPT_TAGS {
                self.top.pop();
            }
        } else if let Some(t) = key.strip_prefix(REGISTRY_TYPE) {
            push(&mut self.out.registry_types, t);
        } else if let Some(t) = key.strip_prefix(STORAGE_TYPE) {
            push(&mut self.out.storage_types, t);
        } else if let Some(h) = key.strip_prefix(HEALTH) {
            push(&mut self.out.health, h);
        }
    }

    /// The counts; every key must have been added once (a sharded store sums its shards first,
    /// see [`sum_shards`]).
    pub fn finish(mut self) -> KeptCounts {
        let mut tags: Vec<(String, u64)> = self
            .top
            .into_iter()
            .map(|Reverse((n, Reverse(t)))| (t, n))
            .collect();
        let order =
            |a: &(String, u64), b: &(String, u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0));
        tags.sort_by(order);
        self.out.tags = tags;
        for list in [
            &mut self.out.registry_types,
            &mut self.out.storage_types,
            &mut self.out.health,
        ] {
            list.sort_by(order);
        }
        self.out
    }
}

/// Counters summed across shards (DynamoDB keeps each counter in several items).
pub fn sum_shards(counters: impl IntoIterator<Item = (String, i64)>) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (key, n) in counters {
        *out.entry(key).or_insert(0) += n;
    }
    out
}

/// Every counter recounted from the entries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recount(pub BTreeMap<String, i64>);

impl Recount {
    pub fn add(&mut self, keys: &[String]) {
        for key in keys {
            *self.0.entry(key.clone()).or_insert(0) += 1;
        }
    }

    /// What the kept counters must change by to equal this recount.
    pub fn drift_from(&self, kept: &BTreeMap<String, i64>) -> CountDrift {
        let mut drift = CountDrift::default();
        for (key, &n) in &self.0 {
            let had = kept.get(key).copied().unwrap_or(0);
            if had != n {
                drift.keys.push((key.clone(), had, n));
            }
        }
        for (key, &had) in kept {
            if had != 0 && !self.0.contains_key(key) {
                drift.keys.push((key.clone(), had, 0));
            }
        }
        drift.keys.sort();
        drift
    }
}

/// Counters that were not what the entries say: `(key, kept, recounted)`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CountDrift {
    pub keys: Vec<(String, i64, i64)>,
}

/// How many drifted counters a reindex report names (it says how many there were in all).
pub const DRIFT_SHOWN: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(tags: &[&str], health: Option<HealthStatus>, owned: bool) -> Vec<String> {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        keys_of(&tags, Some("aios"), None, health, owned)
    }

    #[test]
    fn a_write_changes_only_what_it_changed() {
        let old = keys(&["a", "b"], None, false);
        let new = keys(&["b", "c"], Some(HealthStatus::Healthy), true);
        let d = CountDelta::between(&old, &new);
        let got: Vec<_> = d.iter().collect();
        assert_eq!(
            got,
            [
                ("h:healthy", 1),
                ("h:never_checked", -1),
                ("o", 1),
                ("t:a", -1),
                ("t:c", 1)
            ]
        );
        assert!(CountDelta::between(&old, &old).is_empty());
    }

    #[test]
    fn a_repeated_tag_counts_once() {
        assert_eq!(keys(&["a", "a"], None, false).len(), 4);
    }

    #[test]
    fn reading_holds_the_most_frequent_tags_only() {
        let mut r = CountReader::default();
        r.add(TOTAL, 9);
        for i in 0..(KEPT_TAGS as u64 + 10) {
            r.add(&format!("t:tag{i:04}"), i + 1);
        }
        r.add("t:zero", 0);
        r.add("h:healthy", 4);
        let k = r.finish();
        assert_eq!(k.total, 9);
        assert_eq!(k.tags.len(), KEPT_TAGS);
        assert_eq!(k.distinct_tags, KEPT_TAGS as u64 + 10);
        assert_eq!(k.tags[0], ("tag0509".to_string(), 510));
        assert_eq!(k.tags.last().unwrap().1, 11);
        assert_eq!(k.health, [("healthy".to_string(), 4)]);
    }

    #[test]
    fn drift_names_every_counter_that_differs() {
        let mut recount = Recount::default();
        recount.add(&keys(&["a"], None, false));
        let kept = BTreeMap::from([("n".to_string(), 2), ("t:b".to_string(), 1)]);
        let drift = recount.drift_from(&kept);
        assert_eq!(
            drift.keys,
            [
                ("h:never_checked".to_string(), 0, 1),
                ("n".to_string(), 2, 1),
                ("r:aios".to_string(), 0, 1),
                ("t:a".to_string(), 0, 1),
                ("t:b".to_string(), 1, 0),
            ]
        );
    }
}
