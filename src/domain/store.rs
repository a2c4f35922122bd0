//! What the domain needs of a place entries live: the [`Store`] trait, which the stores (redb,
//! DynamoDB) implement, and the requests and answers it speaks, among them [`StoredEntry`], an entry
//! as its stored JSON text, which the API answers as it stands and the pages read only the fields
//! they show of. Defined here so that the domain imports nothing from the stores.

use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use bytestring::ByteString;
use serde_json::Value;

use super::counts::KeptCounts;
use super::entry::ContainerRegistry;
use super::history::{Day, DayCounts, ProbeSample};
use super::plan::Plan;
use crate::health::{HealthStatus, ProbeResult};
use crate::query::{Fields, Filter};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a container registry with id {0} already exists")]
    AlreadyExists(String),
    #[error("no container registry with id {0}")]
    NotFound(String),
    /// The entry changed (or vanished) since it was read: the optimistic write lost a race.
    #[error("the entry changed while it was being written")]
    VersionConflict,
    /// The backing store refused or failed; the text says what happened, for logs and operators.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

/// Entries larger than this are not kept in memory: by the embedded store's entry cache
/// (`store::entry_cache`) and the pages' card memo alike.
pub const MAX_CACHED_ENTRY: usize = 16 * 1024;

/// An entry as the store holds it: its id and its JSON text, which is what a GET returns. Both are
/// shared text: the entries one read collects share its buffers (`store::chunk`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntry {
    pub id: ByteString,
    pub json: Bytes,
}

impl StoredEntry {
    /// The entry as a typed value (for updates and health checks).
    pub fn entry(&self) -> Result<ContainerRegistry, StoreError> {
        serde_json::from_slice(&self.json).map_err(|e| unreadable(&self.id, e))
    }

    /// The entry as a JSON document holding only `fields` (for evaluating the filter they come
    /// from): one parse, which builds nothing for the other fields.
    pub fn document(&self, fields: &Fields) -> Result<Value, StoreError> {
        fields
            .parse(&self.json)
            .map_err(|e| unreadable(&self.id, e))
    }
}

/// Says which stored entry could not be read, the same way wherever it is read.
fn no_owners<S: Store + ?Sized>(store: &S) -> StoreError {
    StoreError::Unavailable(format!("{} keeps no owners", store.describe()))
}

pub fn unreadable(id: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("the stored entry {id} is not readable: {e}"))
}

/// One request for a chunk of a query.
#[derive(Debug, Clone, Copy)]
pub struct ScanRequest<'a> {
    pub filter: &'a Filter,
    /// How to read; a store without a usable index may fall back to a scan (see
    /// [`ScanChunk::used_index`]).
    pub plan: &'a Plan,
    /// Resume after this key (the last key examined by the previous chunk).
    pub after: Option<&'a str>,
    /// Examine at most this many entries...
    pub max_entries: usize,
    /// ...and stop once the candidates hold this many bytes (at least one entry is examined).
    pub max_bytes: usize,
}

/// One chunk of a query, in the order of the plan that read it.
#[derive(Debug)]
pub struct ScanChunk {
    /// Entries after the start key that may match (a store may pre-filter, never over-filter).
    pub candidates: Vec<StoredEntry>,
    /// Key of the last entry examined; `None` when the plan has no more entries.
    pub last_key: Option<String>,
    /// How many stored entries this chunk read (the work it cost).
    pub scanned: usize,
    /// How many tag-index keys it read to choose them (0 for a scan): an intersection of two
    /// long lists may read many keys to find few entries, and the work bound counts them too.
    pub index_keys: usize,
    /// Every candidate is known to match the filter: the caller need not evaluate it.
    pub exact: bool,
    /// The chunk was read through the tag index (in id order) rather than by a scan.
    pub used_index: bool,
}

/// What `reindex` did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReindexReport {
    /// Entries read.
    pub entries: usize,
    /// Index keys the entries call for (one per tag per entry).
    pub index_keys: usize,
    /// Index keys that pointed at an entry no longer carrying the tag, removed.
    pub stale_keys_removed: usize,
    /// Name-index keys the entries call for (`domain::words`), where the store keeps that index.
    pub name_keys: usize,
    /// Name-index keys that no longer matched their entry's name, removed.
    pub stale_name_keys_removed: usize,
    /// Kept counters (`domain::counts`) that differed from a recount of the entries, and were set
    /// to the recount.
    pub counts_drifted: usize,
    /// The first of them (at most `counts::DRIFT_SHOWN`): which counter, what was kept, what
    /// the entries say.
    pub drift: Vec<DriftedCount>,
}

/// How far a reindex is: entries read, and of about how many (0 while unknown).
#[derive(Debug, Default)]
pub struct ReindexProgress {
    pub read: AtomicU64,
    pub total: AtomicU64,
}

/// One counter that `reindex` found off.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DriftedCount {
    pub counter: String,
    pub kept: i64,
    pub recounted: i64,
}

impl ReindexReport {
    /// Records the drift a recount found.
    pub fn set_drift(&mut self, drift: &super::counts::CountDrift) {
        self.counts_drifted = drift.keys.len();
        self.drift = drift
            .keys
            .iter()
            .take(super::counts::DRIFT_SHOWN)
            .map(|(counter, kept, recounted)| DriftedCount {
                counter: counter.clone(),
                kept: *kept,
                recounted: *recounted,
            })
            .collect();
    }
}

/// An entry a sweep probes: its id and public URL, and what its stored health record says (so a
/// probe that changes nothing need not rewrite the entry).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeTarget {
    pub id: String,
    pub url: String,
    pub last: Option<LastHealth>,
}

/// The parts of an entry's stored health record that decide whether a new probe rewrites it.
#[derive(Debug, Clone, PartialEq)]
pub struct LastHealth {
    pub status: HealthStatus,
    /// The `/v2/` URL it probed.
    pub url: String,
    pub checked_at: String,
    pub uptime_30d: Option<f64>,
}

/// One entry as a backup holds it: the entry and its owner record (`sha256:<hex>` of a token or
/// `iam:<ARN>`, see `domain::owner`), read from the same view of the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub entry: ContainerRegistry,
    pub owner: Option<String>,
    /// Its health history (`domain::history`), days in date order; filled by the export from
    /// [`Store::health_days`] (the stores' `export` leave it empty).
    pub history: Vec<(Day, DayCounts)>,
}

impl Exported {
    /// Fills in the entry's health history of the days still kept (read apart from the export's
    /// view: a probe recorded meanwhile may show in it or not).
    pub async fn with_history(mut self, store: &dyn Store) -> Result<Exported, StoreError> {
        let today = Day::of(chrono::Utc::now());
        self.history = store
            .health_days(
                &self.entry.container_registry_id,
                today.oldest_kept(),
                today,
            )
            .await?;
        Ok(self)
    }
}

/// A place entries live, with a tag index kept consistent with them.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a new entry and its index keys; `AlreadyExists` when the id is taken.
    async fn insert(&self, entry: &ContainerRegistry) -> Result<(), StoreError>;

    /// Inserts several new entries (a restore), each as [`Store::insert`] would, and says for
    /// each whether it went in. A store may write them in one transaction.
    async fn insert_many(&self, entries: &[ContainerRegistry]) -> Vec<Result<(), StoreError>> {
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            out.push(self.insert(entry).await);
        }
        out
    }

    /// The entry as stored.
    async fn get(&self, id: &str) -> Result<Option<StoredEntry>, StoreError>;

    /// Appends the entry's stored JSON to `out` when the store holds it in memory, without
    /// waiting: `true` if it did. A GET answers from here when it can, with no future to box and
    /// no copy but the one into its answer; otherwise it calls [`get`](Self::get).
    fn get_cached_into(&self, _id: &str, _out: &mut bytes::BytesMut) -> bool {
        false
    }

    /// Replaces the client fields of `old` with those of `new` if the stored version is still
    /// `old`'s; otherwise `VersionConflict` (which includes the entry having been deleted
    /// meanwhile). The stored health result is kept as it is: health is written only by
    /// [`Store::set_health`], so a probe between the read and this write is never undone.
    async fn replace(
        &self,
        old: &ContainerRegistry,
        new: &ContainerRegistry,
    ) -> Result<(), StoreError>;

    /// Deletes an entry and its index keys; `false` when there was none.
    async fn delete(&self, id: &str) -> Result<bool, StoreError>;

    /// Reads one chunk of a query (see [`ScanRequest`]). The caller evaluates the filter exactly on
    /// what comes back unless the chunk says it is exact.
    async fn scan(&self, request: ScanRequest<'_>) -> Result<ScanChunk, StoreError>;

    /// Ids and public URLs of up to `max` entries after `after`, for a health sweep; the next
    /// `after`, or `None` at the end. May read slightly stale data.
    async fn probe_targets(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<ProbeTarget>, Option<String>), StoreError>;

    /// Records a health result on an entry, touching no other field (not even the version: a
    /// probe is not an edit, and must not make an owner's read-modify-write fail).
    /// `false` when the entry no longer exists.
    async fn set_health(&self, id: &str, health: &ProbeResult) -> Result<bool, StoreError>;

    /// Counts one probe into the entry's history of `day` (`domain::history`): one more of its
    /// verdict and of its latency bucket, atomically, so concurrent probes (from several servers
    /// too) never lose a count. Days before `day.oldest_kept()` may be dropped meanwhile. `false`
    /// when the store knows the entry no longer exists (nothing counted).
    async fn record_probe(
        &self,
        id: &str,
        day: Day,
        sample: ProbeSample,
    ) -> Result<bool, StoreError>;

    /// The entry's stored days from `from` to `to` (both included), in date order; days without
    /// probes are absent. Deleting an entry deletes its history.
    async fn health_days(
        &self,
        id: &str,
        from: Day,
        to: Day,
    ) -> Result<Vec<(Day, DayCounts)>, StoreError>;

    /// Sets the entry's history days to `days` (a restore: each day as given, replacing what the
    /// store held for it). `NotFound` when there is no such entry.
    async fn restore_history(&self, id: &str, days: &[(Day, DayCounts)]) -> Result<(), StoreError>;

    /// Rebuilds the tag index (and the name index and kept counts, where the store keeps them)
    /// from the entries (for a store that predates them, or to remove stale keys and drift).
    /// Safe to run while the service serves.
    async fn reindex(&self) -> Result<ReindexReport, StoreError> {
        self.reindex_counted(Arc::default()).await
    }

    /// [`reindex`](Self::reindex), counting the entries it reads into `progress` as it goes
    /// (for `registry-db reindex`'s progress line).
    async fn reindex_counted(
        &self,
        progress: Arc<ReindexProgress>,
    ) -> Result<ReindexReport, StoreError>;

    /// The counts the store keeps with every write (`domain::counts`), or `None` when it keeps
    /// none (then totals are counted from the entries).
    async fn kept_counts(&self) -> Result<Option<KeptCounts>, StoreError> {
        Ok(None)
    }

    /// Inserts a new entry with its owner record (`domain::owner`), kept beside the entry and
    /// never in its JSON. Stores that keep owners override this (and [`insert`](Self::insert)
    /// is this with no owner).
    async fn insert_owned(
        &self,
        entry: &ContainerRegistry,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        match owner {
            None => self.insert(entry).await,
            Some(_) => Err(no_owners(self)),
        }
    }

    /// The owner record of an entry: `None` when there is no such entry, `Some(None)` when it has
    /// no owner. Always read from the store itself (never a cache), so a rotation through another
    /// process counts at once.
    async fn owner(&self, id: &str) -> Result<Option<Option<String>>, StoreError> {
        Ok(self.get(id).await?.map(|_| None))
    }

    /// Sets the owner record of an entry if its current one is `expected` (`None`: no owner);
    /// `false` when it was not (another rotation won). `NotFound` when there is no entry.
    async fn set_owner(
        &self,
        _id: &str,
        _expected: Option<&str>,
        _owner: &str,
    ) -> Result<bool, StoreError> {
        Err(no_owners(self))
    }

    /// [`replace`](Self::replace), and only while the entry's owner record is `owner` (when
    /// given); otherwise `VersionConflict`.
    async fn replace_owned(
        &self,
        old: &ContainerRegistry,
        new: &ContainerRegistry,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        match owner {
            None => self.replace(old, new).await,
            Some(_) => Err(no_owners(self)),
        }
    }

    /// [`delete`](Self::delete), and only while the entry's owner record is `owner` (when given);
    /// otherwise `VersionConflict`.
    async fn delete_owned(&self, id: &str, owner: Option<&str>) -> Result<bool, StoreError> {
        match owner {
            None => self.delete(id).await,
            Some(_) => Err(no_owners(self)),
        }
    }

    /// Sends every entry, as stored, into `out` (bounded: the store waits while it is full), from
    /// one consistent view: one read transaction on the embedded store; on DynamoDB a parallel
    /// Scan of strongly consistent reads, where each entry is as it was at some moment of the scan
    /// (see `docs/DEPLOY.md`, "Backing up"). Returns how many entries it sent.
    async fn export(&self, out: tokio::sync::mpsc::Sender<Exported>) -> Result<u64, StoreError>;

    /// A short description for logs ("embedded store at ./data", "DynamoDB table T").
    fn describe(&self) -> String;

    /// True when no other process can write to this store (the embedded store's file is locked by
    /// the process that opened it), so an answer derived from it stays exact until this process
    /// writes. See [`Watched`].
    fn only_writer(&self) -> bool {
        false
    }

    /// Hands figures only the store knows (the embedded store's entry cache) to `crate::metrics`,
    /// just before they are read (a scrape of `/metrics`).
    fn publish_metrics(&self) {}
}

impl StoreError {
    /// The kind of failure, as a stable label (for the store's figures).
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::AlreadyExists(_) => "already_exists",
            StoreError::NotFound(_) => "not_found",
            StoreError::VersionConflict => "version_conflict",
            StoreError::Unavailable(_) => "unavailable",
        }
    }
}
