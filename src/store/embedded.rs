//! The embedded store: one redb file in the data folder. Entries are JSON under their id; the tag
//! index holds one `(tag, id)` key per tag an entry carries, the name index one `(prefix, id)` key
//! per word prefix of its name (`domain::words`), and the counts table the kept counters
//! (`domain::counts`), all written in the same transaction as the entry, so the indexes and counts
//! are always exactly the entries'.
//!
//! redb commits are durable when `commit()` returns (fsync), so a write acknowledged to a client
//! survives `kill -9`. redb serializes write transactions, so a compare-and-swap on the version inside
//! one write transaction is atomic.
//!
//! redb is synchronous. Writes (which wait for fsync) run on tokio's blocking pool. Reads run on the
//! calling task: a read transaction never waits for a writer, a point read takes microseconds, and a
//! scan chunk is bounded (1,000 entries, 1 MiB), whereas handing each read to the blocking pool and
//! back cost two thread wake-ups, which was most of a GET's time under load.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};

use super::chunk::ChunkText;
use super::entry_cache::{
    CacheStats, CachedPosting, DEFAULT_ENTRY_CACHE_MIB, EntryCache, MAX_CACHED_POSTING, ReadStamp,
};
use super::plan::Term;
use super::plan::{Plan, Posting, merge};
use super::{Exported, ReindexReport, ScanChunk, ScanRequest, Store, StoreError, StoredEntry};
use crate::domain::counts::{self, CountDelta, CountReader, KeptCounts, Recount};
use crate::domain::entry::{ContainerRegistry, RegistryType, StorageType};
use crate::domain::history::{BUCKETS, Day, DayCounts, ProbeSample};
use crate::domain::store::ReindexProgress;
use crate::domain::store::{LastHealth, ProbeTarget, unreadable};
use crate::domain::words;
use crate::health::{HealthStatus, ProbeResult};

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("container_registries");
/// `(tag, id) -> ()`: the entries that carry each tag, in id order.
const TAG_INDEX: TableDefinition<(&str, &str), ()> = TableDefinition::new("tag_index");
/// `id -> owner record` (`domain::owner`): beside the entries, never inside their JSON, so no
/// read of an entry (GET, scan, the entry cache) can carry it.
const OWNERS: TableDefinition<&str, &str> = TableDefinition::new("owners");
/// `(id, day) -> counts` (`domain::history`): each entry's probes per UTC day, as
/// [`encode_counts`] writes them; deleted with the entry, pruned past 90 days on write.
const HISTORY: TableDefinition<(&str, i32), &[u8]> = TableDefinition::new("health_history");
/// Store-wide facts, e.g. which version of the tag index the file holds.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// `(word prefix, id) -> ()`: the name index (`domain::words`), in id order per prefix.
const NAME_INDEX: TableDefinition<(&str, &str), ()> = TableDefinition::new("name_index");
/// `counter -> count` (`domain::counts`): kept with every write.
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("counts");

/// redb's page cache for one pass over every entry (see [`EmbeddedStore::open_for_bulk`]).
pub const BULK_PAGE_CACHE: usize = 4 << 20;
/// `--store-cache-mib` by default: redb's page cache (its own default is 1 GiB, which a server
/// over a large store fills as it reads). 32 MiB holds the tag index and the upper B-tree levels
/// of a store of hundreds of MiB, and fits a 256 MiB pod beside the entry cache and the bodies.
pub const DEFAULT_PAGE_CACHE_MIB: usize = 32;
const META_TAG_INDEX: &str = "tag_index_version";
/// 2: the tag index, the name index and the counts (a file of version 1 gets the last two built
/// once, when it is first opened).
const TAG_INDEX_VERSION: u64 = 2;
const FILE_NAME: &str = "registry-db.redb";
/// Room reserved at most, in entries, for what a read may collect.
const PREALLOCATE: usize = 256;

pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    /// redb's page cache and the entry cache, in bytes, for the start line.
    page_cache: usize,
    entry_cache: usize,
    /// Entries by id, for GETs and tag queries; every write forgets what it changed.
    cache: Arc<EntryCache>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode(id: &str, bytes: &[u8]) -> Result<ContainerRegistry, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| unreadable(id, e))
}

fn encode(entry: &ContainerRegistry) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(entry).map_err(unavailable)
}

/// A day's counts as 15 little-endian u64: the four verdicts, then the latency buckets.
fn encode_counts(c: &DayCounts) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 * (4 + BUCKETS));
    for n in [c.healthy, c.auth_required, c.not_registry, c.unreachable]
        .iter()
        .chain(c.latency.iter())
    {
        out.extend_from_slice(&n.to_le_bytes());
    }
    out
}

fn decode_counts(bytes: &[u8]) -> DayCounts {
    let mut n = bytes
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    let mut c = DayCounts {
        healthy: n.next().unwrap_or(0),
        auth_required: n.next().unwrap_or(0),
        not_registry: n.next().unwrap_or(0),
        unreachable: n.next().unwrap_or(0),
        ..Default::default()
    };
    for (slot, v) in c.latency.iter_mut().zip(n) {
        *slot = v;
    }
    c
}

/// Removes the history of `id` on days before `before` (all of it with `None`).
fn remove_history(txn: &WriteTransaction, id: &str, before: Option<Day>) -> Result<(), StoreError> {
    let mut history = txn.open_table(HISTORY).map_err(unavailable)?;
    let end = before.map_or(i32::MAX, |d| d.0);
    let days: Vec<i32> = history
        .range((id, i32::MIN)..(id, end))
        .map_err(unavailable)?
        .map(|row| row.map(|(k, _)| k.value().1))
        .collect::<Result<_, _>>()
        .map_err(unavailable)?;
    for day in days {
        history.remove((id, day)).map_err(unavailable)?;
    }
    if before.is_none() {
        history.remove((id, i32::MAX)).map_err(unavailable)?;
    }
    Ok(())
}

/// What the indexes and counts hold of an entry: its tags, its name's index keys, its counters.
#[derive(Debug, Default)]
struct Derived {
    tags: Vec<String>,
    words: Vec<String>,
    counts: Vec<String>,
}

impl Derived {
    fn of(entry: &ContainerRegistry, owned: bool) -> Derived {
        Derived {
            tags: entry.container_registry_tags.clone(),
            words: words::index_keys(&entry.container_registry_name),
            counts: counts::entry_keys(entry, owned),
        }
    }
}

/// Only the fields of a stored entry the indexes and counts need, without decoding the rest.
fn stored_derived(id: &str, bytes: &[u8], owned: bool) -> Result<Derived, StoreError> {
    #[derive(serde::Deserialize, Default)]
    struct Storage {
        #[serde(default)]
        registry_type: Option<RegistryType>,
        #[serde(default)]
        storage_type: Option<StorageType>,
    }
    #[derive(serde::Deserialize)]
    struct Health {
        status: HealthStatus,
    }
    #[derive(serde::Deserialize)]
    struct Facts {
        container_registry_name: String,
        container_registry_tags: Vec<String>,
        #[serde(default)]
        container_registry_storage_info: Storage,
        #[serde(default)]
        container_registry_health: Option<Health>,
    }
    let f = serde_json::from_slice::<Facts>(bytes).map_err(|e| unreadable(id, e))?;
    let info = &f.container_registry_storage_info;
    let counts = counts::keys_of(
        &f.container_registry_tags,
        info.registry_type
            .map(crate::domain::catalog::registry_type_str),
        info.storage_type
            .map(crate::domain::catalog::storage_type_str),
        f.container_registry_health.map(|h| h.status),
        owned,
    );
    Ok(Derived {
        words: words::index_keys(&f.container_registry_name),
        tags: f.container_registry_tags,
        counts,
    })
}

/// Brings the tag index, the name index and (into `delta`) the counts of `id` from what `old`
/// derived to what `new` does; returns the tags whose lists changed (for the cache to drop).
fn write_derived(
    txn: &WriteTransaction,
    id: &str,
    old: &Derived,
    new: &Derived,
    delta: &mut CountDelta,
) -> Result<Vec<String>, StoreError> {
    let changed = write_index(txn, id, &old.tags, &new.tags)?;
    if old.words != new.words {
        let mut index = txn.open_table(NAME_INDEX).map_err(unavailable)?;
        for w in old.words.iter().filter(|w| !new.words.contains(w)) {
            index.remove((w.as_str(), id)).map_err(unavailable)?;
        }
        for w in new.words.iter().filter(|w| !old.words.contains(w)) {
            index.insert((w.as_str(), id), ()).map_err(unavailable)?;
        }
    }
    delta.add(&old.counts, -1);
    delta.add(&new.counts, 1);
    Ok(changed)
}

/// Adds `delta` to the kept counters (a counter at 0 is removed).
fn apply_counts(txn: &WriteTransaction, delta: &CountDelta) -> Result<(), StoreError> {
    if delta.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(COUNTS).map_err(unavailable)?;
    for (key, n) in delta.iter() {
        let had = table
            .get(key)
            .map_err(unavailable)?
            .map_or(0, |v| v.value());
        let now = had.saturating_add_signed(n);
        if now == 0 {
            table.remove(key).map_err(unavailable)?;
        } else {
            table.insert(key, now).map_err(unavailable)?;
        }
    }
    Ok(())
}

/// The owner record of `id` as `txn` sees it.
fn stored_owner(txn: &WriteTransaction, id: &str) -> Result<Option<String>, StoreError> {
    let owners = txn.open_table(OWNERS).map_err(unavailable)?;
    let owner = owners.get(id).map_err(unavailable)?;
    Ok(owner.map(|o| o.value().to_string()))
}

/// Brings the index keys of `id` from `old` tags to `new` tags; returns the tags whose lists
/// changed (for the cache to drop).
fn write_index(
    txn: &WriteTransaction,
    id: &str,
    old: &[String],
    new: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut index = txn.open_table(TAG_INDEX).map_err(unavailable)?;
    let mut changed = Vec::new();
    for tag in old.iter().filter(|t| !new.contains(t)) {
        index.remove((tag.as_str(), id)).map_err(unavailable)?;
        changed.push(tag.clone());
    }
    for tag in new.iter().filter(|t| !old.contains(t)) {
        index.insert((tag.as_str(), id), ()).map_err(unavailable)?;
        changed.push(tag.clone());
    }
    Ok(changed)
}

/// Rebuilds the tag index, the name index and the counts inside `txn`, from the entries. Reads
/// the entries once, holding only the counters in memory (not the index keys): keys the entries
/// call for are inserted (an insert that finds the key counts it as present), and only when the
/// index held keys beyond those does a second pass look for the stale ones.
fn rebuild_index(
    txn: &WriteTransaction,
    progress: &ReindexProgress,
) -> Result<ReindexReport, StoreError> {
    let mut report = ReindexReport::default();
    let owned: BTreeSet<String> = {
        let owners = txn.open_table(OWNERS).map_err(unavailable)?;
        let mut out = BTreeSet::new();
        for row in owners.iter().map_err(unavailable)? {
            out.insert(row.map_err(unavailable)?.0.value().to_string());
        }
        out
    };
    let mut recount = Recount::default();
    let (tags_before, words_before) = {
        let tags = txn.open_table(TAG_INDEX).map_err(unavailable)?;
        let names = txn.open_table(NAME_INDEX).map_err(unavailable)?;
        (
            tags.len().map_err(unavailable)?,
            names.len().map_err(unavailable)?,
        )
    };
    let (mut tags_present, mut words_present) = (0u64, 0u64);
    {
        let entries = txn.open_table(ENTRIES).map_err(unavailable)?;
        let mut tags = txn.open_table(TAG_INDEX).map_err(unavailable)?;
        let mut names = txn.open_table(NAME_INDEX).map_err(unavailable)?;
        progress
            .total
            .store(entries.len().map_err(unavailable)?, Ordering::Relaxed);
        for row in entries.iter().map_err(unavailable)? {
            let (key, value) = row.map_err(unavailable)?;
            let id = key.value();
            report.entries += 1;
            progress.read.fetch_add(1, Ordering::Relaxed);
            let d = stored_derived(id, value.value(), owned.contains(id))?;
            let mut distinct = d.tags.clone();
            distinct.sort();
            distinct.dedup();
            for tag in &distinct {
                report.index_keys += 1;
                if tags
                    .insert((tag.as_str(), id), ())
                    .map_err(unavailable)?
                    .is_some()
                {
                    tags_present += 1;
                }
            }
            for w in &d.words {
                report.name_keys += 1;
                if names
                    .insert((w.as_str(), id), ())
                    .map_err(unavailable)?
                    .is_some()
                {
                    words_present += 1;
                }
            }
            recount.add(&d.counts);
        }
    }
    if tags_before > tags_present {
        report.stale_keys_removed = remove_stale(txn, TAG_INDEX, |d| &d.tags)?;
    }
    if words_before > words_present {
        report.stale_name_keys_removed = remove_stale(txn, NAME_INDEX, |d| &d.words)?;
    }
    let kept = {
        let table = txn.open_table(COUNTS).map_err(unavailable)?;
        let mut kept = BTreeMap::new();
        for row in table.iter().map_err(unavailable)? {
            let (k, v) = row.map_err(unavailable)?;
            kept.insert(k.value().to_string(), v.value() as i64);
        }
        kept
    };
    let drift = recount.drift_from(&kept);
    if !drift.keys.is_empty() {
        let mut table = txn.open_table(COUNTS).map_err(unavailable)?;
        for (key, _, now) in &drift.keys {
            if *now == 0 {
                table.remove(key.as_str()).map_err(unavailable)?;
            } else {
                table
                    .insert(key.as_str(), *now as u64)
                    .map_err(unavailable)?;
            }
        }
    }
    report.set_drift(&drift);
    let mut meta = txn.open_table(META).map_err(unavailable)?;
    meta.insert(META_TAG_INDEX, TAG_INDEX_VERSION)
        .map_err(unavailable)?;
    Ok(report)
}

/// Removes the keys of `index` whose entry is gone or no longer calls for them (`keys` says
/// which it calls for); returns how many.
fn remove_stale(
    txn: &WriteTransaction,
    index: TableDefinition<(&str, &str), ()>,
    keys: impl Fn(&Derived) -> &Vec<String>,
) -> Result<usize, StoreError> {
    let mut stale = Vec::new();
    {
        let entries = txn.open_table(ENTRIES).map_err(unavailable)?;
        let table = txn.open_table(index).map_err(unavailable)?;
        for row in table.iter().map_err(unavailable)? {
            let (key, _) = row.map_err(unavailable)?;
            let (k, id) = key.value();
            let wanted = match entries.get(id).map_err(unavailable)? {
                Some(v) => keys(&stored_derived(id, v.value(), false)?)
                    .iter()
                    .any(|x| x == k),
                None => false,
            };
            if !wanted {
                stale.push((k.to_string(), id.to_string()));
            }
        }
    }
    let mut table = txn.open_table(index).map_err(unavailable)?;
    for (k, id) in &stale {
        table
            .remove((k.as_str(), id.as_str()))
            .map_err(unavailable)?;
    }
    Ok(stale.len())
}

/// Reads one tag's index list after `after`: at most `max` ids.
fn posting(
    txn: &ReadTransaction,
    tag: &str,
    after: Option<&str>,
    max: usize,
) -> Result<Posting, StoreError> {
    posting_in(txn, TAG_INDEX, tag, after, max)
}

/// Reads one list of `table` (the tag or the name index) after `after`: at most `max` ids.
fn posting_in(
    txn: &ReadTransaction,
    table: TableDefinition<(&str, &str), ()>,
    tag: &str,
    after: Option<&str>,
    max: usize,
) -> Result<Posting, StoreError> {
    let index = txn.open_table(table).map_err(unavailable)?;
    let lower = match after {
        Some(id) => Bound::Excluded((tag, id)),
        None => Bound::Included((tag, "")),
    };
    let mut range = index
        .range::<(&str, &str)>((lower, Bound::Unbounded))
        .map_err(unavailable)?;
    // Sized up front: growing it was a tenth of a tag query's time in a profile.
    let mut ids = Vec::with_capacity(max.min(PREALLOCATE));
    let mut complete = true;
    for row in range.by_ref() {
        let (key, _) = row.map_err(unavailable)?;
        let (t, id) = key.value();
        if t != tag {
            break;
        }
        if ids.len() == max {
            complete = false;
            break;
        }
        ids.push(id.to_string());
    }
    Ok(Posting { ids, complete })
}

/// The read transaction `txn`, begun now if it was not yet.
fn begun<'t>(
    db: &Database,
    txn: &'t mut Option<ReadTransaction>,
) -> Result<&'t ReadTransaction, StoreError> {
    Ok(match txn {
        Some(txn) => txn,
        empty => empty.insert(db.begin_read().map_err(unavailable)?),
    })
}

/// Part of one tag's index list: `ids[range]`, and whether the list ends there.
struct ListPart {
    ids: Arc<[Box<str>]>,
    range: std::ops::Range<usize>,
    complete: bool,
}

impl ListPart {
    /// At most `max` ids of `all` after `after`.
    fn of(all: Arc<[Box<str>]>, after: Option<&str>, max: usize) -> ListPart {
        let start = after.map_or(0, |after| all.partition_point(|id| &**id <= after));
        let end = all.len().min(start.saturating_add(max));
        ListPart {
            complete: end == all.len(),
            ids: all,
            range: start..end,
        }
    }

    fn posting(&self) -> Posting<&str> {
        Posting {
            ids: self.ids[self.range.clone()]
                .iter()
                .map(|id| &**id)
                .collect(),
            complete: self.complete,
        }
    }
}

fn boxed(ids: &[String]) -> Arc<[Box<str>]> {
    ids.iter().map(|id| Box::from(id.as_str())).collect()
}

impl EmbeddedStore {
    /// Reads one tag's index list after `after` (at most `max` ids) from the cache, or else from
    /// redb. A list read from its start is read whole when it is short enough to cache, and
    /// cached (or remembered as too long to cache).
    fn tag_list(
        &self,
        txn: &mut Option<ReadTransaction>,
        stamp: ReadStamp,
        tag: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<ListPart, StoreError> {
        match self.cache.posting(tag) {
            Some(CachedPosting::Ids(all)) => return Ok(ListPart::of(all, after, max)),
            Some(CachedPosting::TooLong) => {}
            None if after.is_none() && self.cache.enabled() => {
                let whole = MAX_CACHED_POSTING.max(max);
                let read = posting(begun(&self.db, txn)?, tag, None, whole + 1)?;
                if read.complete && read.ids.len() <= MAX_CACHED_POSTING {
                    let all = boxed(&read.ids);
                    self.cache
                        .fill_posting(stamp, tag, CachedPosting::Ids(all.clone()));
                    return Ok(ListPart::of(all, None, max));
                }
                self.cache.fill_posting(stamp, tag, CachedPosting::TooLong);
                let taken = read.ids.len().min(max);
                let mut part = ListPart::of(boxed(&read.ids[..taken]), None, max);
                part.complete = read.complete && taken == read.ids.len();
                return Ok(part);
            }
            None => {}
        }
        let read = posting(begun(&self.db, txn)?, tag, after, max)?;
        let mut part = ListPart::of(boxed(&read.ids), None, max);
        part.complete = read.complete;
        Ok(part)
    }

    /// Opens (creating if needed) the store in `dir`, with caches of the default sizes.
    /// Fails with a clear message when another process holds it: redb allows one writer process
    /// per file. A store written before the tag index existed gets its index built here, once.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        Self::open_with_caches(
            dir,
            DEFAULT_ENTRY_CACHE_MIB << 20,
            DEFAULT_PAGE_CACHE_MIB << 20,
        )
    }

    /// [`open`](Self::open), with an entry cache of at most `entry_cache` bytes (0: none) and
    /// redb's page cache set to `page_cache` bytes.
    pub fn open_with_caches(
        dir: &Path,
        entry_cache: usize,
        page_cache: usize,
    ) -> anyhow::Result<Self> {
        Self::open_tuned(dir, entry_cache, page_cache)
    }

    /// For one pass over every entry (`export`, `import --exact`): no entry cache, and redb's
    /// page cache at most [`BULK_PAGE_CACHE`] instead of its default (1 GiB), which a pass over a
    /// large store would otherwise fill with pages it never reads again.
    pub fn open_for_bulk(dir: &Path) -> anyhow::Result<Self> {
        Self::open_tuned(dir, 0, BULK_PAGE_CACHE)
    }

    fn open_tuned(dir: &Path, cache_bytes: usize, page_cache: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create the data folder {}: {e}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let mut builder = Database::builder();
        builder.set_cache_size(page_cache);
        let db = builder.create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => anyhow::anyhow!(
                "the embedded store {} is already open in another process (one server per data folder)",
                path.display()
            ),
            other => anyhow::anyhow!("cannot open the embedded store {}: {other}", path.display()),
        })?;
        let txn = db.begin_write()?;
        txn.open_table(ENTRIES)?;
        txn.open_table(TAG_INDEX)?;
        txn.open_table(OWNERS)?;
        txn.open_table(HISTORY)?;
        let built = txn
            .open_table(META)?
            .get(META_TAG_INDEX)?
            .map(|v| v.value());
        if built != Some(TAG_INDEX_VERSION) {
            let report = rebuild_index(&txn, &ReindexProgress::default())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if report.entries > 0 {
                tracing::info!(
                    entries = report.entries,
                    index_keys = report.index_keys,
                    "built the tag index of a store that predates it"
                );
            }
        }
        txn.commit()?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            path,
            page_cache,
            entry_cache: cache_bytes,
            cache: Arc::new(EntryCache::new(cache_bytes)),
        })
    }

    /// What a read found in redb, as shared bytes, kept in the entry cache unless a write
    /// committed since `stamp`.
    fn keep(&self, stamp: ReadStamp, id: &str, stored: &[u8]) -> Bytes {
        let json = Bytes::copy_from_slice(stored);
        self.cache.fill(stamp, id, &json);
        json
    }

    /// A read, on the calling task (see the module's comment).
    fn read<T>(&self, f: impl FnOnce(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        f(&self.db)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(unavailable)?
    }

    /// Runs `f` on the stored entry inside one write transaction; `f` returns the entry to store,
    /// or `None` to leave it. Returns what `f` decided, or `None` when the id is absent. The tag
    /// index follows the stored entry's tags in the same transaction.
    async fn modify<T: Send + 'static>(
        &self,
        id: String,
        owner: Option<String>,
        f: impl FnOnce(ContainerRegistry) -> Result<(T, Option<ContainerRegistry>), StoreError>
        + Send
        + 'static,
    ) -> Result<Option<T>, StoreError> {
        let cache = self.cache.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let mut changed = Vec::new();
            let out = {
                let mut table = txn.open_table(ENTRIES).map_err(unavailable)?;
                let current = match table.get(id.as_str()).map_err(unavailable)? {
                    Some(bytes) => decode(&id, bytes.value())?,
                    None => return Ok(None),
                };
                if let Some(owner) = &owner
                    && stored_owner(&txn, &id)?.as_deref() != Some(owner.as_str())
                {
                    return Err(StoreError::VersionConflict);
                }
                // Owners do not change here: the owned counter is the same on both sides.
                let old = Derived::of(&current, false);
                let (out, new) = f(current)?;
                if let Some(new) = new {
                    table
                        .insert(id.as_str(), encode(&new)?.as_slice())
                        .map_err(unavailable)?;
                    let mut delta = CountDelta::default();
                    changed =
                        write_derived(&txn, &id, &old, &Derived::of(&new, false), &mut delta)?;
                    apply_counts(&txn, &delta)?;
                }
                out
            };
            let mark = cache.begin_write();
            txn.commit().map_err(unavailable)?;
            mark.committed(&id, changed.iter().map(String::as_str));
            Ok(Some(out))
        })
        .await
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn insert(&self, entry: &ContainerRegistry) -> Result<(), StoreError> {
        self.insert_owned(entry, None).await
    }

    async fn insert_owned(
        &self,
        entry: &ContainerRegistry,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        let owner = owner.map(str::to_string);
        let id = entry.container_registry_id.clone();
        let derived = Derived::of(entry, owner.is_some());
        let bytes = encode(entry)?;
        let cache = self.cache.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(ENTRIES).map_err(unavailable)?;
                if table.get(id.as_str()).map_err(unavailable)?.is_some() {
                    return Err(StoreError::AlreadyExists(id));
                }
                table
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(unavailable)?;
                let mut owners = txn.open_table(OWNERS).map_err(unavailable)?;
                // An id is new here: drop any owner an earlier entry of that id left.
                match &owner {
                    Some(owner) => owners.insert(id.as_str(), owner.as_str()).map(drop),
                    None => owners.remove(id.as_str()).map(drop),
                }
                .map_err(unavailable)?;
            }
            let mut delta = CountDelta::default();
            let changed = write_derived(&txn, &id, &Derived::default(), &derived, &mut delta)?;
            apply_counts(&txn, &delta)?;
            let mark = cache.begin_write();
            txn.commit().map_err(unavailable)?;
            mark.committed(&id, changed.iter().map(String::as_str));
            Ok(())
        })
        .await
    }

    async fn insert_many(&self, entries: &[ContainerRegistry]) -> Vec<Result<(), StoreError>> {
        // One durable commit for the batch instead of one per entry: a restore of 100,000
        // entries is seconds, not a hundred thousand fsyncs.
        let mut batch = Vec::with_capacity(entries.len());
        for entry in entries {
            match encode(entry) {
                Ok(bytes) => batch.push(Ok((
                    entry.container_registry_id.clone(),
                    Derived::of(entry, false),
                    bytes,
                ))),
                Err(e) => batch.push(Err(e)),
            }
        }
        let n = batch.len();
        let cache = self.cache.clone();
        let result = self
            .blocking(move |db| {
                let txn = db.begin_write().map_err(unavailable)?;
                let mut out = Vec::with_capacity(batch.len());
                // The batch's counters change once, by the sum of its entries'.
                let mut delta = CountDelta::default();
                {
                    // Each table opened once for the batch (not once per entry), and each table's
                    // keys inserted in key order: consecutive inserts then walk the same B-tree
                    // path and pages, where the ids' random order would touch a new one each time.
                    let mut table = txn.open_table(ENTRIES).map_err(unavailable)?;
                    let mut written: Vec<(String, Derived, Vec<u8>)> = Vec::new();
                    let mut order: Vec<usize> = (0..batch.len()).collect();
                    let key = |i: &usize| match &batch[*i] {
                        Ok((id, _, _)) => Some(id.clone()),
                        Err(_) => None,
                    };
                    order.sort_by_key(key);
                    let mut results: Vec<Option<Result<(), StoreError>>> =
                        (0..batch.len()).map(|_| None).collect();
                    let mut items: Vec<Option<Result<(String, Derived, Vec<u8>), StoreError>>> =
                        batch.into_iter().map(Some).collect();
                    for i in order {
                        let (id, derived, bytes) = match items[i].take().expect("each once") {
                            Ok(item) => item,
                            Err(e) => {
                                results[i] = Some(Err(e));
                                continue;
                            }
                        };
                        if table.get(id.as_str()).map_err(unavailable)?.is_some() {
                            results[i] = Some(Err(StoreError::AlreadyExists(id)));
                            continue;
                        }
                        table
                            .insert(id.as_str(), bytes.as_slice())
                            .map_err(unavailable)?;
                        delta.add(&derived.counts, 1);
                        results[i] = Some(Ok(()));
                        written.push((id, derived, Vec::new()));
                    }
                    drop(table);
                    let mut keys: Vec<(&str, &str)> = written
                        .iter()
                        .flat_map(|(id, d, _)| {
                            d.tags.iter().map(move |t| (t.as_str(), id.as_str()))
                        })
                        .collect();
                    keys.sort_unstable();
                    let mut tags = txn.open_table(TAG_INDEX).map_err(unavailable)?;
                    for k in &keys {
                        tags.insert(*k, ()).map_err(unavailable)?;
                    }
                    drop(tags);
                    let mut keys: Vec<(&str, &str)> = written
                        .iter()
                        .flat_map(|(id, d, _)| {
                            d.words.iter().map(move |w| (w.as_str(), id.as_str()))
                        })
                        .collect();
                    keys.sort_unstable();
                    let mut names = txn.open_table(NAME_INDEX).map_err(unavailable)?;
                    for k in &keys {
                        names.insert(*k, ()).map_err(unavailable)?;
                    }
                    out.extend(
                        results
                            .into_iter()
                            .map(|r| r.expect("every entry answered")),
                    );
                }
                apply_counts(&txn, &delta)?;
                let mark = cache.begin_write();
                txn.commit().map_err(unavailable)?;
                // New entries are in no cached list of a tag they carry: drop the lists.
                mark.committed_index();
                Ok(out)
            })
            .await;
        match result {
            Ok(out) => out,
            Err(e) => (0..n)
                .map(|_| Err(StoreError::Unavailable(e.to_string())))
                .collect(),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<StoredEntry>, StoreError> {
        if let Some(json) = self.cache.get(id) {
            return Ok(Some(StoredEntry {
                id: id.into(),
                json,
            }));
        }
        self.read(|db| {
            let stamp = self.cache.stamp();
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ENTRIES).map_err(unavailable)?;
            let json = match table.get(id).map_err(unavailable)? {
                Some(v) => self.keep(stamp, id, v.value()),
                None => return Ok(None),
            };
            Ok(Some(StoredEntry {
                id: id.into(),
                json,
            }))
        })
    }

    async fn replace(
        &self,
        old: &ContainerRegistry,
        new: &ContainerRegistry,
    ) -> Result<(), StoreError> {
        self.replace_owned(old, new, None).await
    }

    async fn replace_owned(
        &self,
        old: &ContainerRegistry,
        new: &ContainerRegistry,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        let expected_version = old.container_registry_version;
        let mut new = new.clone();
        let owner = owner.map(str::to_string);
        let outcome = self
            .modify(new.container_registry_id.clone(), owner, move |current| {
                if current.container_registry_version != expected_version {
                    return Ok((false, None));
                }
                // Health is the prober's to write: keep whatever it recorded since the read.
                new.container_registry_health = current.container_registry_health;
                Ok((true, Some(new)))
            })
            .await?;
        match outcome {
            Some(true) => Ok(()),
            _ => Err(StoreError::VersionConflict),
        }
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.delete_owned(id, None).await
    }

    async fn delete_owned(&self, id: &str, owner: Option<&str>) -> Result<bool, StoreError> {
        let id = id.to_string();
        let owner = owner.map(str::to_string);
        let cache = self.cache.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            if let Some(owner) = &owner
                && stored_owner(&txn, &id)?.as_deref() != Some(owner.as_str())
            {
                return Err(StoreError::VersionConflict);
            }
            let owned = txn
                .open_table(OWNERS)
                .map_err(unavailable)?
                .remove(id.as_str())
                .map_err(unavailable)?
                .is_some();
            let removed = {
                let mut table = txn.open_table(ENTRIES).map_err(unavailable)?;
                let removed = table.remove(id.as_str()).map_err(unavailable)?;
                match removed {
                    Some(bytes) => Some(stored_derived(&id, bytes.value(), owned)?),
                    None => None,
                }
            };
            let existed = removed.is_some();
            // The history goes with the entry, in the same transaction.
            remove_history(&txn, &id, None)?;
            let changed = match removed {
                Some(old) => {
                    let mut delta = CountDelta::default();
                    let changed = write_derived(&txn, &id, &old, &Derived::default(), &mut delta)?;
                    apply_counts(&txn, &delta)?;
                    changed
                }
                None => Vec::new(),
            };
            let mark = cache.begin_write();
            txn.commit().map_err(unavailable)?;
            mark.committed(&id, changed.iter().map(String::as_str));
            Ok(existed)
        })
        .await
    }

    async fn scan(&self, request: ScanRequest<'_>) -> Result<ScanChunk, StoreError> {
        let after = request.after;
        let plan = request.plan;
        let max_entries = request.max_entries.max(1);
        let max_bytes = request.max_bytes;
        self.read(|db| {
            let stamp = self.cache.stamp();
            // Begun when something is not in the cache: a tag query the cache answers whole
            // opens none.
            let mut txn = None;
            let room = max_entries.min(PREALLOCATE);
            // Room for the whole chunk at once (entries are about a kilobyte): growing a
            // megabyte buffer by doubling copies most of it again.
            let mut chunk =
                ChunkText::with_capacity(room, max_bytes.min(max_entries.saturating_mul(1024)));
            let mut bytes = 0usize;
            match plan {
                Plan::Scan => {
                    let entries = begun(db, &mut txn)?
                        .open_table(ENTRIES)
                        .map_err(unavailable)?;
                    let lower = match after {
                        Some(key) => Bound::Excluded(key),
                        None => Bound::Unbounded,
                    };
                    let mut range = entries
                        .range::<&str>((lower, Bound::Unbounded))
                        .map_err(unavailable)?;
                    let mut last_key = None;
                    for row in range.by_ref() {
                        let (key, value) = row.map_err(unavailable)?;
                        let json = value.value();
                        bytes += json.len();
                        chunk.push_copy(key.value(), json);
                        if chunk.len() >= max_entries || bytes >= max_bytes {
                            last_key = Some(key.value().to_string());
                            break;
                        }
                    }
                    // `last_key` stays set only when more entries may follow.
                    if range.next().is_none() {
                        last_key = None;
                    }
                    let candidates = chunk.into_entries();
                    Ok(ScanChunk {
                        scanned: candidates.len(),
                        index_keys: 0,
                        candidates,
                        last_key,
                        exact: false,
                        used_index: false,
                    })
                }
                Plan::Tags(tag_plan) => {
                    // One key more than needed per list tells whether more follow.
                    let mut lists = Vec::new();
                    for term in tag_plan.set.terms() {
                        let part = match &term {
                            Term::Tag(tag) => {
                                self.tag_list(&mut txn, stamp, tag, after, max_entries + 1)?
                            }
                            // Name lists are read from redb (not cached): a prefix's list may be
                            // long, and the cache's lists are the tags'.
                            Term::Word(w) => {
                                let read = posting_in(
                                    begun(db, &mut txn)?,
                                    NAME_INDEX,
                                    w,
                                    after,
                                    max_entries + 1,
                                )?;
                                let mut part =
                                    ListPart::of(boxed(&read.ids), None, max_entries + 1);
                                part.complete = read.complete;
                                part
                            }
                        };
                        lists.push((term, part));
                    }
                    let postings: BTreeMap<Term, Posting<&str>> = lists
                        .iter()
                        .map(|(term, part)| (term.clone(), part.posting()))
                        .collect();
                    let index_keys = lists.iter().map(|(_, part)| part.range.len()).sum();
                    let merged = merge(&tag_plan.set, postings);
                    let mut last_key = merged.horizon;
                    let total = merged.ids.len();
                    let wanted = &merged.ids[..total.min(max_entries)];
                    let copied = self.cache.copy_many(wanted, chunk.json_buffer(), max_bytes);
                    let mut entries = None;
                    for (i, id) in wanted.iter().copied().enumerate() {
                        let cached = copied.get(i).cloned().flatten();
                        let size = match cached {
                            Some(range) => {
                                let size = range.len();
                                chunk.push_copied(id, range);
                                size
                            }
                            None => {
                                let entries = match &mut entries {
                                    Some(table) => table,
                                    empty => empty.insert(
                                        begun(db, &mut txn)?
                                            .open_table(ENTRIES)
                                            .map_err(unavailable)?,
                                    ),
                                };
                                // The index and the entries are written together: every id is
                                // there, unless a write removed it since the list was cached.
                                match entries.get(id).map_err(unavailable)? {
                                    Some(value) => {
                                        let json = self.keep(stamp, id, value.value());
                                        let size = json.len();
                                        chunk.push_own(id, json);
                                        size
                                    }
                                    None => 0,
                                }
                            }
                        };
                        bytes += size;
                        if (i + 1 == max_entries || bytes >= max_bytes) && i + 1 < total {
                            last_key = Some(id.to_string());
                            break;
                        }
                    }
                    // The lists and entries come from the cache or from the read transaction,
                    // whichever held them. If a write was in flight or committed meanwhile, they
                    // may disagree: the filter decides then.
                    let exact = tag_plan.exact && self.cache.unchanged_since(stamp);
                    let candidates = chunk.into_entries();
                    Ok(ScanChunk {
                        scanned: candidates.len(),
                        index_keys,
                        candidates,
                        last_key,
                        exact,
                        used_index: true,
                    })
                }
            }
        })
    }

    async fn probe_targets(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<ProbeTarget>, Option<String>), StoreError> {
        #[derive(serde::Deserialize)]
        struct Seen {
            status: HealthStatus,
            url: String,
            checked_at: String,
            #[serde(default)]
            uptime_30d: Option<f64>,
        }
        #[derive(serde::Deserialize)]
        struct Target {
            container_registry_public_url: String,
            #[serde(default)]
            container_registry_health: Option<Seen>,
        }
        self.read(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let entries = txn.open_table(ENTRIES).map_err(unavailable)?;
            let lower = match after {
                Some(key) => Bound::Excluded(key),
                None => Bound::Unbounded,
            };
            let mut range = entries
                .range::<&str>((lower, Bound::Unbounded))
                .map_err(unavailable)?;
            let mut targets = Vec::new();
            for row in range.by_ref().take(max.max(1)) {
                let (key, value) = row.map_err(unavailable)?;
                let id = key.value().to_string();
                let target: Target =
                    serde_json::from_slice(value.value()).map_err(|e| unreadable(&id, e))?;
                targets.push(ProbeTarget {
                    id,
                    url: target.container_registry_public_url,
                    last: target.container_registry_health.map(|h| LastHealth {
                        status: h.status,
                        url: h.url,
                        checked_at: h.checked_at,
                        uptime_30d: h.uptime_30d,
                    }),
                });
            }
            let next = match range.next() {
                Some(_) => targets.last().map(|t| t.id.clone()),
                None => None,
            };
            Ok((targets, next))
        })
    }

    async fn set_health(&self, id: &str, health: &ProbeResult) -> Result<bool, StoreError> {
        let health = health.clone();
        let done = self
            .modify(id.to_string(), None, move |mut current| {
                current.container_registry_health = Some(health);
                Ok(((), Some(current)))
            })
            .await?;
        Ok(done.is_some())
    }

    async fn record_probe(
        &self,
        id: &str,
        day: Day,
        sample: ProbeSample,
    ) -> Result<bool, StoreError> {
        let id = id.to_string();
        // One write transaction (redb runs one at a time): no count is ever lost, and a count
        // never lands beside an entry deleted meanwhile.
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let entries = txn.open_table(ENTRIES).map_err(unavailable)?;
                if entries.get(id.as_str()).map_err(unavailable)?.is_none() {
                    return Ok(false);
                }
            }
            {
                let mut history = txn.open_table(HISTORY).map_err(unavailable)?;
                let mut counts = match history.get((id.as_str(), day.0)).map_err(unavailable)? {
                    Some(v) => decode_counts(v.value()),
                    None => DayCounts::default(),
                };
                counts.add(sample);
                history
                    .insert((id.as_str(), day.0), encode_counts(&counts).as_slice())
                    .map_err(unavailable)?;
            }
            remove_history(&txn, &id, Some(day.oldest_kept()))?;
            txn.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    async fn health_days(
        &self,
        id: &str,
        from: Day,
        to: Day,
    ) -> Result<Vec<(Day, DayCounts)>, StoreError> {
        self.read(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let history = txn.open_table(HISTORY).map_err(unavailable)?;
            let mut days = Vec::new();
            for row in history
                .range((id, from.0)..=(id, to.0))
                .map_err(unavailable)?
            {
                let (key, value) = row.map_err(unavailable)?;
                days.push((Day(key.value().1), decode_counts(value.value())));
            }
            Ok(days)
        })
    }

    async fn restore_history(&self, id: &str, days: &[(Day, DayCounts)]) -> Result<(), StoreError> {
        let (id, days) = (id.to_string(), days.to_vec());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let entries = txn.open_table(ENTRIES).map_err(unavailable)?;
                if entries.get(id.as_str()).map_err(unavailable)?.is_none() {
                    return Err(StoreError::NotFound(id));
                }
                let mut history = txn.open_table(HISTORY).map_err(unavailable)?;
                for (day, counts) in &days {
                    history
                        .insert((id.as_str(), day.0), encode_counts(counts).as_slice())
                        .map_err(unavailable)?;
                }
            }
            txn.commit().map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn reindex_counted(
        &self,
        progress: Arc<ReindexProgress>,
    ) -> Result<ReindexReport, StoreError> {
        let cache = self.cache.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let report = rebuild_index(&txn, &progress)?;
            let mark = cache.begin_write();
            txn.commit().map_err(unavailable)?;
            mark.committed_index();
            Ok(report)
        })
        .await
    }

    async fn kept_counts(&self) -> Result<Option<KeptCounts>, StoreError> {
        self.read(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(COUNTS).map_err(unavailable)?;
            let mut reader = CountReader::default();
            for row in table.iter().map_err(unavailable)? {
                let (k, v) = row.map_err(unavailable)?;
                reader.add(k.value(), v.value());
            }
            Ok(Some(reader.finish()))
        })
    }

    async fn owner(&self, id: &str) -> Result<Option<Option<String>>, StoreError> {
        self.read(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let entries = txn.open_table(ENTRIES).map_err(unavailable)?;
            if entries.get(id).map_err(unavailable)?.is_none() {
                return Ok(None);
            }
            let owners = txn.open_table(OWNERS).map_err(unavailable)?;
            let owner = owners.get(id).map_err(unavailable)?;
            Ok(Some(owner.map(|o| o.value().to_string())))
        })
    }

    async fn set_owner(
        &self,
        id: &str,
        expected: Option<&str>,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let (id, expected, owner) = (
            id.to_string(),
            expected.map(str::to_string),
            owner.to_string(),
        );
        // One write transaction: redb runs one at a time, so of two rotations from the same
        // record exactly one finds it still there.
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let entries = txn.open_table(ENTRIES).map_err(unavailable)?;
                if entries.get(id.as_str()).map_err(unavailable)?.is_none() {
                    return Err(StoreError::NotFound(id));
                }
            }
            if stored_owner(&txn, &id)? != expected {
                return Ok(false);
            }
            txn.open_table(OWNERS)
                .map_err(unavailable)?
                .insert(id.as_str(), owner.as_str())
                .map_err(unavailable)?;
            if expected.is_none() {
                let mut delta = CountDelta::default();
                delta.add(&[counts::OWNED.to_string()], 1);
                apply_counts(&txn, &delta)?;
            }
            txn.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
    }

    fn get_cached_into(&self, id: &str, out: &mut BytesMut) -> bool {
        self.cache.copy_into(id, out)
    }

    async fn export(&self, out: tokio::sync::mpsc::Sender<Exported>) -> Result<u64, StoreError> {
        // One read transaction: a snapshot, however long the export takes, while writers go on
        // (redb's MVCC). On the blocking pool, since it waits whenever `out` is full. Owners
        // come from the same transaction, so an entry and its owner are of one moment.
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ENTRIES).map_err(unavailable)?;
            let owners = txn.open_table(OWNERS).map_err(unavailable)?;
            let mut sent = 0;
            for row in table.iter().map_err(unavailable)? {
                let (id, bytes) = row.map_err(unavailable)?;
                let entry = decode(id.value(), bytes.value())?;
                let owner = owners
                    .get(id.value())
                    .map_err(unavailable)?
                    .map(|o| o.value().to_string());
                let exported = Exported {
                    entry,
                    owner,
                    history: Vec::new(),
                };
                if out.blocking_send(exported).is_err() {
                    // The reader stopped (it failed, and says why): nothing more to send.
                    break;
                }
                sent += 1;
            }
            Ok(sent)
        })
        .await
    }

    fn describe(&self) -> String {
        format!(
            "embedded store at {} (page cache {} MiB, entry cache {} MiB)",
            self.path.display(),
            self.page_cache >> 20,
            self.entry_cache >> 20
        )
    }

    /// redb locks the file: no other process writes to it while this one has it open.
    fn only_writer(&self) -> bool {
        true
    }

    fn publish_metrics(&self) {
        let stats = self.cache.stats();
        crate::metrics::entry_cache(stats.hits, stats.misses, stats.entries, stats.bytes);
    }
}

impl EmbeddedStore {
    /// The entry cache's hits, misses and size, for tests and diagnostics.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Sets a kept counter to `count` without touching the entries: drift, for tests of
    /// `reindex`, which must find and repair it.
    pub fn set_counter_for_test(&self, key: &str, count: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(unavailable)?;
        txn.open_table(COUNTS)
            .map_err(unavailable)?
            .insert(key, count)
            .map_err(unavailable)?;
        txn.commit().map_err(unavailable)
    }

    /// Index keys held, for tests and diagnostics.
    pub fn index_len(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let index = txn.open_table(TAG_INDEX).map_err(unavailable)?;
        index.len().map_err(unavailable)
    }
}
