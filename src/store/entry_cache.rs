//! The embedded store's cache of stored entries: id to the JSON text redb holds, so that a GET, a
//! tag query or a page-sized scan (the front page's) answers from memory instead of descending
//! redb's B-tree once per entry (the most of a tag query's time, README, Performance). The bytes
//! are shared (`Bytes`), never copied; long scans neither use nor fill the cache.
//!
//! **Coherent because this process is the only writer** (redb locks the file). Every write drops
//! the entry it changed after its commit and before it returns, so a read that starts after a write
//! was acknowledged never sees what it replaced. A read that missed fills the cache only if no write
//! committed since that read began (one store-wide counter): a fill can never put back bytes that a
//! concurrent write has already replaced.
//!
//! **Bounded.** At most `max_bytes` of entries (plus their ids and a fixed overhead each), and no
//! entry larger than [`MAX_CACHED_ENTRY`]: a listing of a few large entries does not push out
//! thousands of small ones, and memory stays bounded by the budget (`--entry-cache-mib`). When a
//! fill would exceed the budget, about an eighth of the cache is dropped, in the map's (arbitrary)
//! order.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

/// Entries larger than this are read from redb each time.
pub const MAX_CACHED_ENTRY: usize = 16 * 1024;
/// What one cached entry costs beyond its id and bytes (map slot, `Bytes` and `Box<str>` headers).
const OVERHEAD: usize = 64;
/// `--entry-cache-mib` by default.
pub const DEFAULT_ENTRY_CACHE_MIB: usize = 16;

#[derive(Debug, Default)]
struct Kept {
    map: HashMap<Box<str>, Bytes>,
    bytes: usize,
}

/// See the module's comment.
#[derive(Debug)]
pub struct EntryCache {
    kept: RwLock<Kept>,
    /// Writes committed so far; a fill names the count it read at, and is refused if it moved.
    writes: AtomicU64,
    max_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Hits and misses since the store opened, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub bytes: usize,
}

/// Taken before a read that may fill the cache (see [`EntryCache::fill`]).
#[derive(Debug, Clone, Copy)]
pub struct ReadStamp(u64);

fn cost(id: &str, json: &Bytes) -> usize {
    id.len() + json.len() + OVERHEAD
}

impl EntryCache {
    /// A cache of at most `max_bytes`; 0 keeps nothing.
    pub fn new(max_bytes: usize) -> Self {
        EntryCache {
            kept: RwLock::new(Kept::default()),
            writes: AtomicU64::new(0),
            max_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// The cached bytes of `id`, if any.
    pub fn get(&self, id: &str) -> Option<Bytes> {
        if !self.enabled() {
            return None;
        }
        let found = self
            .kept
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .get(id)
            .cloned();
        self.count(u64::from(found.is_some()), 1);
        found
    }

    /// The cached bytes of each of `ids`, in order, under one lock.
    pub fn get_many(&self, ids: &[String]) -> Vec<Option<Bytes>> {
        if !self.enabled() {
            return vec![None; ids.len()];
        }
        let found: Vec<Option<Bytes>> = {
            let kept = self.kept.read().unwrap_or_else(|p| p.into_inner());
            ids.iter()
                .map(|id| kept.map.get(id.as_str()).cloned())
                .collect()
        };
        let hits = found.iter().filter(|f| f.is_some()).count();
        self.count(hits as u64, ids.len() as u64);
        found
    }

    /// Counts `hits` of `looked_up` lookups, touching each shared counter only when it moves.
    fn count(&self, hits: u64, looked_up: u64) {
        if hits > 0 {
            self.hits.fetch_add(hits, Ordering::Relaxed);
        }
        if hits < looked_up {
            self.misses.fetch_add(looked_up - hits, Ordering::Relaxed);
        }
    }

    /// Taken before the read transaction whose result may go to [`fill`](Self::fill).
    pub fn stamp(&self) -> ReadStamp {
        ReadStamp(self.writes.load(Ordering::SeqCst))
    }

    /// Whether no write committed since `stamp`: entries got from the cache and what a read
    /// transaction begun after `stamp` saw then belong to one state of the store.
    pub fn unchanged_since(&self, stamp: ReadStamp) -> bool {
        self.writes.load(Ordering::SeqCst) == stamp.0
    }

    /// Keeps what a read found, unless a write committed since `stamp` (it may have replaced what
    /// the read saw) or the entry is larger than [`MAX_CACHED_ENTRY`].
    pub fn fill(&self, stamp: ReadStamp, id: &str, json: &Bytes) {
        if !self.enabled() || json.len() > MAX_CACHED_ENTRY {
            return;
        }
        let size = cost(id, json);
        let mut kept = self.kept.write().unwrap_or_else(|p| p.into_inner());
        // Under the lock, so that no write's `forget` slips between this check and the insert.
        if !self.unchanged_since(stamp) || size > self.max_bytes {
            return;
        }
        if kept.bytes + size > self.max_bytes {
            let drop_at_least = (self.max_bytes / 8).max(size);
            let mut dropped = 0;
            let victims: Vec<Box<str>> = kept
                .map
                .iter()
                .take_while(|(k, v)| {
                    let go = dropped < drop_at_least;
                    dropped += cost(k, v);
                    go
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in victims {
                if let Some(v) = kept.map.remove(&k) {
                    kept.bytes -= cost(&k, &v);
                }
            }
        }
        if let Some(old) = kept.map.insert(id.into(), json.clone()) {
            kept.bytes -= cost(id, &old);
        }
        kept.bytes += size;
    }

    /// Called by every write after it committed, before it returns: drops `id` (and refuses the
    /// fills of reads that began before the commit).
    pub fn forget(&self, id: &str) {
        if !self.enabled() {
            return;
        }
        let mut kept = self.kept.write().unwrap_or_else(|p| p.into_inner());
        self.writes.fetch_add(1, Ordering::SeqCst);
        if let Some(old) = kept.map.remove(id) {
            kept.bytes -= cost(id, &old);
        }
    }

    pub fn stats(&self) -> CacheStats {
        let kept = self.kept.read().unwrap_or_else(|p| p.into_inner());
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: kept.map.len(),
            bytes: kept.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn a_fill_is_kept_until_its_entry_is_written() {
        let cache = EntryCache::new(1 << 20);
        let stamp = cache.stamp();
        cache.fill(stamp, "a", &Bytes::from_static(b"{\"v\":1}"));
        assert_eq!(cache.get("a").as_deref(), Some(&b"{\"v\":1}"[..]));
        cache.forget("a");
        assert_eq!(cache.get("a"), None);
        let stats = cache.stats();
        assert_eq!(
            (stats.hits, stats.misses, stats.entries, stats.bytes),
            (1, 1, 0, 0)
        );
    }

    #[test]
    fn a_read_that_began_before_a_write_does_not_fill() {
        let cache = EntryCache::new(1 << 20);
        // A read takes its stamp and reads the old bytes; a write of another entry commits and
        // forgets; the read's fill is refused, since the counter moved.
        let stamp = cache.stamp();
        cache.forget("b");
        cache.fill(stamp, "a", &Bytes::from_static(b"old"));
        assert_eq!(cache.get("a"), None);
        // A read that began after the write fills.
        let stamp = cache.stamp();
        cache.fill(stamp, "a", &Bytes::from_static(b"new"));
        assert_eq!(cache.get("a").as_deref(), Some(&b"new"[..]));
    }

    #[test]
    fn the_budget_holds_and_large_entries_stay_out() {
        let budget = 64 * 1024;
        let cache = EntryCache::new(budget);
        for i in 0..1000 {
            let stamp = cache.stamp();
            cache.fill(stamp, &format!("id{i:04}"), &bytes(500));
            assert!(cache.stats().bytes <= budget, "{:?}", cache.stats());
        }
        let stats = cache.stats();
        assert!(stats.entries > 64, "{stats:?}");
        let stamp = cache.stamp();
        cache.fill(stamp, "big", &bytes(MAX_CACHED_ENTRY + 1));
        assert_eq!(cache.get("big"), None);
        let stamp = cache.stamp();
        cache.fill(stamp, "edge", &bytes(MAX_CACHED_ENTRY));
        assert!(cache.get("edge").is_some());
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let cache = EntryCache::new(0);
        let stamp = cache.stamp();
        cache.fill(stamp, "a", &bytes(10));
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.stats(), CacheStats::default());
    }
}
