//! The embedded store's cache of what redb holds: entries (id to their JSON text) and the tag
//! index's lists (tag to every id carrying it), so that a GET, a tag query or a page-sized scan
//! (the front page's) answers from memory instead of descending redb's B-trees once per entry and
//! once per index key (together the most of a tag query's time, README, Performance). Entry bytes
//! are shared (`Bytes`), never copied; long scans neither use nor fill the cache.
//!
//! **Coherent because this process is the only writer** (redb locks the file). A write marks
//! itself in flight before it commits, and after the commit, before it returns, drops the entry
//! it wrote and the lists of the tags it added or removed. One store-wide word counts finished
//! writes and writes in flight; a read takes it before it begins ([`EntryCache::stamp`]):
//! - a read fills the cache only if the word has not moved since (no write committed, none in
//!   flight), so a fill never puts back what a concurrent write has replaced;
//! - a read that mixed cached lists or entries with what redb showed it belongs to one state of
//!   the store only under the same condition ([`EntryCache::unchanged_since`]); a tag query
//!   evaluates its filter on every entry otherwise.
//!
//! **Bounded.** At most `max_bytes` of heap, counted as the allocator hands it out (each
//! allocation rounded up as glibc's malloc does, [`heap`]): entries' text and its shared header,
//! ids and tags, each list's slice of ids and every id in it, and the maps' tables at their real
//! capacity. No entry larger than [`MAX_CACHED_ENTRY`] and no list longer than
//! [`MAX_CACHED_POSTING`] ids: a listing of a few large entries does not push out thousands of
//! small ones, and memory stays bounded by the budget (`--entry-cache-mib`). When a fill would
//! exceed the budget, about an eighth of it is dropped, entries first, in the maps' (arbitrary)
//! order. (Counting text and a fixed overhead instead, the cache held 11 MiB for a budget of 4 MiB
//! of lists of short ids; issue 18, finding 7b.)

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::{Bytes, BytesMut};

/// Entries larger than this are read from redb each time (the domain's limit, which the pages'
/// card memo shares).
pub use crate::domain::store::MAX_CACHED_ENTRY;
/// Tags carried by more entries than this have their index list read from redb each time (only
/// as far as a page needs); the cache remembers that the list is that long.
pub const MAX_CACHED_POSTING: usize = 2048;
/// The heap one allocation of `n` bytes takes, from above: glibc's malloc adds an 8-byte header,
/// rounds up to 16 bytes and hands out at least 32.
pub const fn heap(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        let chunk = (n + 8).div_ceil(16) * 16;
        if chunk < 32 { 32 } else { chunk }
    }
}

/// A cached entry's `Bytes` is shared with the read that filled it: the sharing allocates a
/// header (buffer, capacity, count) beside the text.
const SHARED_BYTES_HEADER: usize = heap(3 * std::mem::size_of::<usize>());
/// An `Arc<[T]>` allocates its two counts before the slice.
const ARC_COUNTS: usize = 2 * std::mem::size_of::<usize>();
/// `--entry-cache-mib` by default.
pub const DEFAULT_ENTRY_CACHE_MIB: usize = 16;

/// The state word: finished writes in the high bits, writes in flight in the low ones.
const IN_FLIGHT: u64 = (1 << 20) - 1;
const FINISHED: u64 = 1 << 20;

/// One tag's index list as the cache knows it.
#[derive(Debug, Clone)]
pub enum CachedPosting {
    /// Every id carrying the tag, ascending.
    Ids(Arc<[Box<str>]>),
    /// More than [`MAX_CACHED_POSTING`] entries carry the tag.
    TooLong,
}

/// Maps keyed by text that clients choose (ids, tags), hashed with a seed drawn per map: foldhash
/// rather than SipHash (hashing was 1.5% of a tag query's CPU in a profile). Collisions cannot be
/// planned without the seed, which never leaves the process.
type Map<V> = HashMap<Box<str>, V, foldhash::quality::RandomState>;

#[derive(Debug, Default)]
struct Kept {
    map: Map<Bytes>,
    postings: Map<CachedPosting>,
    /// The heap the items hold (see [`cost`], [`posting_cost`]), tables apart.
    bytes: usize,
    /// The tables' buckets: a table grows and never shrinks (until cleared), so the most its
    /// capacity has been.
    map_buckets: usize,
    posting_buckets: usize,
}

/// See the module's comment.
#[derive(Debug)]
pub struct EntryCache {
    kept: RwLock<Kept>,
    /// Finished writes and writes in flight (see [`IN_FLIGHT`]); a fill names the word it read
    /// at, and is refused if it moved.
    state: AtomicU64,
    max_bytes: usize,
    counts: Counts,
}

/// Hit and miss counters, one pair per slot, each slot on a cache line of its own: a thread counts
/// in its slot, so that worker threads reading at once do not pass one line between them on every
/// lookup.
#[derive(Debug, Default)]
struct Counts {
    slots: [Slot; SLOTS],
}

const SLOTS: usize = 16;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Counts {
    fn slot(&self) -> &Slot {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        thread_local! {
            static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) as usize % SLOTS;
        }
        &self.slots[SLOT.with(|s| *s)]
    }

    fn sum(&self) -> (u64, u64) {
        self.slots.iter().fold((0, 0), |(h, m), s| {
            (
                h + s.hits.load(Ordering::Relaxed),
                m + s.misses.load(Ordering::Relaxed),
            )
        })
    }
}

/// Hits and misses since the store opened, for tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    /// Tags whose index list is cached.
    pub postings: usize,
    /// The heap the cache holds: items and tables.
    pub bytes: usize,
}

/// Taken before a read that may fill the cache (see [`EntryCache::fill`]).
#[derive(Debug, Clone, Copy)]
pub struct ReadStamp(u64);

/// The heap a cached entry holds beside its map slot: its id, its text and the text's header.
fn cost(id: &str, json: &Bytes) -> usize {
    heap(id.len()) + heap(json.len()) + SHARED_BYTES_HEADER
}

/// The heap a cached list holds beside its map slot: its tag, the slice of ids and each id.
fn posting_cost(tag: &str, posting: &CachedPosting) -> usize {
    let ids = match posting {
        CachedPosting::Ids(ids) => {
            heap(ARC_COUNTS + std::mem::size_of_val::<[Box<str>]>(ids))
                + ids.iter().map(|id| heap(id.len())).sum::<usize>()
        }
        CachedPosting::TooLong => 0,
    };
    heap(tag.len()) + ids
}

/// Buckets of a hash table that holds `capacity` items (hashbrown's sizing: a power of two, at
/// most seven eighths full).
fn buckets_for(capacity: usize) -> usize {
    match capacity {
        0 => 0,
        c if c < 8 => (c + 1).next_power_of_two(),
        c => (c * 8).div_ceil(7).next_power_of_two(),
    }
}

/// The heap of a table of `buckets` slots of `V` keyed by `Box<str>`: the slots, a control byte
/// each and a group's worth more.
fn table_bytes<V>(buckets: usize) -> usize {
    if buckets == 0 {
        0
    } else {
        heap(buckets * (std::mem::size_of::<(Box<str>, V)>() + 1) + 16)
    }
}

/// Keys of `map`, in its order, until `dropped` (which counts on from earlier maps) reaches
/// `at_least`.
fn victims<V>(
    map: &Map<V>,
    cost: impl Fn(&str, &V) -> usize,
    dropped: &mut usize,
    at_least: usize,
) -> Vec<Box<str>> {
    map.iter()
        .take_while(|(k, v)| {
            let go = *dropped < at_least;
            *dropped += cost(k, v);
            go
        })
        .map(|(k, _)| k.clone())
        .collect()
}

impl Kept {
    /// Everything the cache holds on the heap.
    fn total(&self) -> usize {
        self.bytes
            + table_bytes::<Bytes>(self.map_buckets)
            + table_bytes::<CachedPosting>(self.posting_buckets)
    }

    /// Notes the tables' capacity after an insert.
    fn note_tables(&mut self) {
        self.map_buckets = self.map_buckets.max(buckets_for(self.map.capacity()));
        self.posting_buckets = self
            .posting_buckets
            .max(buckets_for(self.postings.capacity()));
    }

    /// Drops about an eighth of `max_bytes` (at least what passes it), entries first, when adding
    /// `needed` bytes of items (and one more slot of the table `entry` or not) would pass
    /// `max_bytes`; answers whether the item fits then.
    #[must_use]
    fn make_room(&mut self, needed: usize, entry: bool, max_bytes: usize) -> bool {
        // One more item may double the table it goes in.
        let growth = match entry {
            true if self.map.len() >= self.map.capacity() => {
                table_bytes::<Bytes>(buckets_for(self.map.len() + 1).max(self.map_buckets * 2))
                    - table_bytes::<Bytes>(self.map_buckets)
            }
            false if self.postings.len() >= self.postings.capacity() => {
                table_bytes::<CachedPosting>(
                    buckets_for(self.postings.len() + 1).max(self.posting_buckets * 2),
                ) - table_bytes::<CachedPosting>(self.posting_buckets)
            }
            _ => 0,
        };
        let after = self.total() + needed + growth;
        if after <= max_bytes {
            return true;
        }
        let drop_at_least = (max_bytes / 8).max(after - max_bytes);
        let mut dropped = 0;
        for id in victims(&self.map, cost, &mut dropped, drop_at_least) {
            self.forget_entry(&id);
        }
        for tag in victims(&self.postings, posting_cost, &mut dropped, drop_at_least) {
            self.forget_posting(&tag);
        }
        // The tables keep their size: with a budget they alone fill, nothing more is kept.
        self.total() + needed + growth <= max_bytes
    }

    fn forget_entry(&mut self, id: &str) {
        if let Some(old) = self.map.remove(id) {
            self.bytes -= cost(id, &old);
        }
    }

    fn forget_posting(&mut self, tag: &str) {
        if let Some(old) = self.postings.remove(tag) {
            self.bytes -= posting_cost(tag, &old);
        }
    }

    fn clear(&mut self) {
        *self = Kept::default();
    }
}

impl EntryCache {
    /// A cache of at most `max_bytes`; 0 keeps nothing.
    pub fn new(max_bytes: usize) -> Self {
        EntryCache {
            kept: RwLock::new(Kept::default()),
            state: AtomicU64::new(0),
            max_bytes,
            counts: Counts::default(),
        }
    }

    /// Whether the cache keeps anything (a budget above 0).
    pub fn enabled(&self) -> bool {
        self.max_bytes > 0
    }

    fn read_kept(&self) -> std::sync::RwLockReadGuard<'_, Kept> {
        self.kept.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_kept(&self) -> std::sync::RwLockWriteGuard<'_, Kept> {
        self.kept.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the cached bytes of `id`, if any. A copy, not the shared bytes: every worker
    /// thread bumping one reference count for a popular entry costs more than copying it.
    pub fn get(&self, id: &str) -> Option<Bytes> {
        if !self.enabled() {
            return None;
        }
        let found = self
            .read_kept()
            .map
            .get(id)
            .map(|json| Bytes::copy_from_slice(json));
        self.count(u64::from(found.is_some()), 1);
        found
    }

    /// Appends the cached bytes of `id` to `out`: `true` if they were cached.
    pub fn copy_into(&self, id: &str, out: &mut BytesMut) -> bool {
        if !self.enabled() {
            return false;
        }
        let found = match self.read_kept().map.get(id) {
            Some(json) => {
                out.extend_from_slice(json);
                true
            }
            None => false,
        };
        self.count(u64::from(found), 1);
        found
    }

    /// Copies the cached bytes of `ids` into `out`, in order and under one lock, until
    /// `max_bytes` have been copied: where each went, or `None` for one not cached. The answer is
    /// shorter than `ids` when the bound stopped it.
    pub fn copy_many(
        &self,
        ids: &[&str],
        out: &mut BytesMut,
        max_bytes: usize,
    ) -> Vec<Option<Range<usize>>> {
        if !self.enabled() {
            return vec![None; ids.len()];
        }
        let mut found = Vec::with_capacity(ids.len());
        let mut copied = 0;
        let mut hits = 0;
        {
            let kept = self.read_kept();
            for id in ids {
                if copied >= max_bytes {
                    break;
                }
                found.push(kept.map.get(*id).map(|json| {
                    let at = out.len();
                    out.extend_from_slice(json);
                    copied += json.len();
                    hits += 1;
                    at..out.len()
                }));
            }
        }
        self.count(hits, found.len() as u64);
        found
    }

    /// The cached index list of `tag`, if any.
    pub fn posting(&self, tag: &str) -> Option<CachedPosting> {
        if !self.enabled() {
            return None;
        }
        self.read_kept().postings.get(tag).cloned()
    }

    /// Counts `hits` of `looked_up` lookups.
    fn count(&self, hits: u64, looked_up: u64) {
        let slot = self.counts.slot();
        if hits > 0 {
            slot.hits.fetch_add(hits, Ordering::Relaxed);
        }
        if hits < looked_up {
            slot.misses.fetch_add(looked_up - hits, Ordering::Relaxed);
        }
    }

    /// Taken before the read transaction whose result may go to [`fill`](Self::fill).
    pub fn stamp(&self) -> ReadStamp {
        ReadStamp(self.state.load(Ordering::SeqCst))
    }

    /// Whether no write committed or was in flight since `stamp`: what a read got from the cache
    /// and what a read transaction begun after `stamp` saw belong to one state of the store.
    pub fn unchanged_since(&self, stamp: ReadStamp) -> bool {
        stamp.0 & IN_FLIGHT == 0 && self.state.load(Ordering::SeqCst) == stamp.0
    }

    /// Keeps what a read found, unless a write moved the store since `stamp` (it may have
    /// replaced what the read saw) or the entry is larger than [`MAX_CACHED_ENTRY`].
    pub fn fill(&self, stamp: ReadStamp, id: &str, json: &Bytes) {
        if !self.enabled() || json.len() > MAX_CACHED_ENTRY {
            return;
        }
        let size = cost(id, json);
        let mut kept = self.write_kept();
        // Under the lock, so that no write's drop slips between this check and the insert.
        if !self.unchanged_since(stamp) || size > self.max_bytes {
            return;
        }
        if !kept.make_room(size, true, self.max_bytes) {
            return;
        }
        if let Some(old) = kept.map.insert(id.into(), json.clone()) {
            kept.bytes -= cost(id, &old);
        }
        kept.bytes += size;
        kept.note_tables();
    }

    /// Keeps the whole index list of `tag` as a read found it, on the terms of [`fill`](Self::fill).
    pub fn fill_posting(&self, stamp: ReadStamp, tag: &str, posting: CachedPosting) {
        if !self.enabled() {
            return;
        }
        let size = posting_cost(tag, &posting);
        let mut kept = self.write_kept();
        if !self.unchanged_since(stamp) || size > self.max_bytes {
            return;
        }
        kept.forget_posting(tag);
        if !kept.make_room(size, false, self.max_bytes) {
            return;
        }
        kept.postings.insert(tag.into(), posting);
        kept.bytes += size;
        kept.note_tables();
    }

    /// Marks a write in flight; call right before its commit, and [`WriteMark::committed`] after
    /// it, before the write returns. From here until then, no read fills the cache or counts as
    /// seeing one state of the store.
    pub fn begin_write(&self) -> WriteMark<'_> {
        self.state.fetch_add(1, Ordering::SeqCst);
        WriteMark {
            cache: self,
            done: false,
        }
    }

    pub fn stats(&self) -> CacheStats {
        let (hits, misses) = self.counts.sum();
        let kept = self.read_kept();
        CacheStats {
            hits,
            misses,
            entries: kept.map.len(),
            postings: kept.postings.len(),
            bytes: kept.total(),
        }
    }
}

/// A write in flight (see [`EntryCache::begin_write`]).
#[must_use = "a write must say what it changed after its commit"]
pub struct WriteMark<'a> {
    cache: &'a EntryCache,
    done: bool,
}

impl WriteMark<'_> {
    /// The write committed: drops the entry `id` and the index lists of `tags` (those whose
    /// membership the write changed), then ends the mark.
    pub fn committed<'t>(mut self, id: &str, tags: impl IntoIterator<Item = &'t str>) {
        let mut kept = self.cache.write_kept();
        kept.forget_entry(id);
        for tag in tags {
            kept.forget_posting(tag);
        }
        self.finish(&mut kept);
    }

    /// The write changed index lists it cannot name (a rebuilt index): drops every list.
    pub fn committed_index(mut self) {
        let mut kept = self.cache.write_kept();
        kept.postings.clear();
        kept.bytes = kept.map.iter().map(|(k, v)| cost(k, v)).sum();
        self.finish(&mut kept);
    }

    /// Ends the mark under the lock, so no fill checks the word between the drops and the end.
    fn finish(&mut self, _kept: &mut Kept) {
        self.done = true;
        self.cache.state.fetch_add(FINISHED - 1, Ordering::SeqCst);
    }
}

impl Drop for WriteMark<'_> {
    /// A write that did not say what it changed (its commit failed, or it failed after) may
    /// have changed anything: drop everything.
    fn drop(&mut self) {
        if !self.done {
            let mut kept = self.cache.write_kept();
            kept.clear();
            self.finish(&mut kept);
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
        cache.begin_write().committed("a", []);
        assert_eq!(cache.get("a"), None);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 0));
        // Only the table is left, as small as it was.
        assert_eq!(stats.bytes, table_bytes::<Bytes>(4));
    }

    #[test]
    fn a_read_that_began_before_a_write_does_not_fill() {
        let cache = EntryCache::new(1 << 20);
        // A read takes its stamp and reads the old bytes; a write of another entry commits and
        // drops what it changed; the read's fill is refused, since the word moved.
        let stamp = cache.stamp();
        cache.begin_write().committed("b", []);
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

    fn ids(ids: &[&str]) -> CachedPosting {
        CachedPosting::Ids(ids.iter().map(|id| Box::from(*id)).collect())
    }

    fn cached_ids(cache: &EntryCache, tag: &str) -> Option<Vec<String>> {
        match cache.posting(tag)? {
            CachedPosting::Ids(ids) => Some(ids.iter().map(|id| id.to_string()).collect()),
            CachedPosting::TooLong => Some(vec!["(too long)".into()]),
        }
    }

    #[test]
    fn while_a_write_is_in_flight_no_read_fills_or_sees_one_state() {
        let cache = EntryCache::new(1 << 20);
        // Stamped before the write: the mark moves the word.
        let before = cache.stamp();
        let mark = cache.begin_write();
        assert!(!cache.unchanged_since(before));
        // Stamped while the write is in flight: the commit may land between two of its reads.
        let during = cache.stamp();
        assert!(!cache.unchanged_since(during));
        cache.fill(during, "a", &bytes(3));
        cache.fill_posting(during, "gpu", ids(&["a"]));
        assert_eq!((cache.get("a"), cached_ids(&cache, "gpu")), (None, None));
        mark.committed("a", ["gpu"]);
        assert!(!cache.unchanged_since(during));
        let after = cache.stamp();
        assert!(cache.unchanged_since(after));
        cache.fill_posting(after, "gpu", ids(&["a", "b"]));
        assert_eq!(
            cached_ids(&cache, "gpu"),
            Some(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn a_write_drops_the_lists_of_the_tags_it_changed_and_only_those() {
        let cache = EntryCache::new(1 << 20);
        let stamp = cache.stamp();
        for tag in ["gpu", "cpu", "eu"] {
            cache.fill_posting(stamp, tag, ids(&["a"]));
        }
        cache.fill_posting(stamp, "huge", CachedPosting::TooLong);
        cache.begin_write().committed("a", ["gpu", "huge"]);
        assert_eq!(cached_ids(&cache, "gpu"), None);
        assert_eq!(cached_ids(&cache, "huge"), None);
        assert_eq!(cached_ids(&cache, "cpu"), Some(vec!["a".into()]));
        cache.begin_write().committed_index();
        assert_eq!(
            (cached_ids(&cache, "cpu"), cache.stats().bytes),
            (None, table_bytes::<CachedPosting>(8))
        );
    }

    #[test]
    fn a_write_that_fails_to_say_what_it_changed_drops_everything() {
        let cache = EntryCache::new(1 << 20);
        let stamp = cache.stamp();
        cache.fill(stamp, "a", &bytes(3));
        cache.fill_posting(stamp, "gpu", ids(&["a"]));
        drop(cache.begin_write());
        assert_eq!((cache.get("a"), cached_ids(&cache, "gpu")), (None, None));
        assert!(!cache.unchanged_since(stamp));
        assert_eq!(cache.stats().bytes, 0);
    }

    #[test]
    fn lists_count_toward_the_budget() {
        let budget = 64 * 1024;
        let cache = EntryCache::new(budget);
        for i in 0..200 {
            let stamp = cache.stamp();
            let list: Vec<String> = (0..50).map(|j| format!("id{i:03}-{j:02}")).collect();
            let list: Vec<&str> = list.iter().map(String::as_str).collect();
            cache.fill_posting(stamp, &format!("tag{i}"), ids(&list));
            cache.fill(stamp, &format!("e{i}"), &bytes(200));
            assert!(cache.stats().bytes <= budget, "{:?}", cache.stats());
        }
        let stats = cache.stats();
        assert!(stats.postings > 10, "{stats:?}");
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let cache = EntryCache::new(0);
        let stamp = cache.stamp();
        cache.fill(stamp, "a", &bytes(10));
        cache.fill_posting(stamp, "gpu", ids(&["a"]));
        assert_eq!((cache.get("a"), cached_ids(&cache, "gpu")), (None, None));
        assert_eq!(cache.stats(), CacheStats::default());
    }
}
