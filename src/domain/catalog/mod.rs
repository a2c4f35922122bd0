//! The service: what can be done with entries, in terms of a [`Store`]. No HTTP and no DynamoDB
//! here. One type, [`Catalog`], with its operations by what they do: writes and reads here, query
//! pages in `query.rs`, facet counts in `facets.rs`, health checks and sweeps in `health.rs`. The
//! child modules share its private fields; `Chunks` is the one loop over a store's scan chunks
//! that a query page and a facet count both read through.

mod facets;
mod health;
mod images;
mod owners;
mod query;
mod ready;
pub mod tag_counts;
mod verification;
mod watched;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytestring::ByteString;
use serde_json::Value;

pub use self::health::SweepCount;
pub use self::ready::READY_TIMEOUT;

use self::facets::FacetCache;
use self::health::Flight;
use self::watched::Watched;
use super::entry::{ContainerRegistry, HEALTH, VERSION, validate_id};
use super::history::{Clock, SystemClock};
use super::owner::{Caller, refuse_owner_update};
use super::plan::Plan;
use super::store::{ReindexReport, ScanChunk, ScanRequest, Store, StoreError, StoredEntry};

use crate::error::AppError;
use crate::health::Prober;
use crate::query::{Filter, Update};

pub use self::facets::{
    FACET_CACHE_ENTRIES, FACET_CACHE_MAX_AGE, FacetCount, FacetCounter, Facets, MAX_FACET_TAGS,
    NEVER_CHECKED, registry_type_str, storage_type_str,
};
pub use self::health::{
    CheckPolicy, DEFAULT_PROBE_COOLDOWN, HEALTH_REFRESH, HealthCheck, PROBE_SLOT_WAIT,
};
pub use self::images::{ImageBatchItem, ImageCheck, MAX_IMAGE_BATCH, MAX_KEPT_LOOKUPS};
pub use self::query::{DEFAULT_PAGE_LIMIT, MAX_PAGE_BYTES, MAX_PAGE_LIMIT, Page};

/// Work bound per query request: at most this many stored entries examined. A selective filter
/// may return a short (even empty) page with a cursor; following it continues the scan.
pub const MAX_SCANNED_PER_PAGE: usize = 20_000;
/// Entries examined per store round trip...
const SCAN_CHUNK: usize = 1000;
/// ...and bytes of entries, so that a chunk of large entries stays small in memory: a query holds at
/// most one chunk, one parsed entry and the page it is filling.
const SCAN_CHUNK_BYTES: usize = 1024 * 1024;
/// Optimistic update attempts before answering 409.
const UPDATE_ATTEMPTS: usize = 64;

#[derive(Clone)]
pub struct Catalog {
    /// `watched`, as the store every part of the service uses.
    store: Arc<dyn Store>,
    /// Counts the writes made through `store`, for `facet_cache`.
    watched: Arc<Watched>,
    facet_cache: Arc<FacetCache>,
    prober: Prober,
    checks: CheckPolicy,
    /// The check of each entry in progress in this process: concurrent checks of one entry join it
    /// instead of probing again (single flight).
    flights: Arc<Mutex<HashMap<String, Flight>>>,
    /// What day a probe counts in (the health history); a test's clock in tests.
    clock: Arc<dyn Clock>,
    /// Image lookups kept and in progress (`images.rs`).
    images: Arc<self::images::ImageLookups>,
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists(id) => AppError::AlreadyExists(id),
            StoreError::NotFound(id) => AppError::NotFound(id),
            StoreError::VersionConflict => {
                AppError::Conflict("the entry kept changing while it was updated; try again".into())
            }
            StoreError::Unavailable(msg) => AppError::Store(msg),
        }
    }
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>, prober: Prober) -> Self {
        let watched = Arc::new(Watched::new(store));
        Catalog {
            store: Arc::clone(&watched) as Arc<dyn Store>,
            watched,
            facet_cache: Arc::new(FacetCache::new(FACET_CACHE_MAX_AGE)),
            prober,
            checks: CheckPolicy::default(),
            flights: Arc::default(),
            clock: Arc::new(SystemClock),
            images: Arc::default(),
        }
    }

    /// The same registry reading the day of each probe from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same registry, reusing facet counts for at most `max_age` on a store that other
    /// processes also write to (see [`FacetCache`]).
    pub fn with_facet_max_age(mut self, max_age: Duration) -> Self {
        self.facet_cache = Arc::new(FacetCache::new(max_age));
        self
    }

    /// The same registry with another rationing of on-demand checks.
    pub fn with_check_policy(mut self, checks: CheckPolicy) -> Self {
        self.checks = checks;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn create(&self, body: Value) -> Result<ContainerRegistry, AppError> {
        let entry = ContainerRegistry::from_create(body)?;
        self.store.insert(&entry).await?;
        Ok(entry)
    }

    /// Appends the entry's stored JSON to `out` (a GET's answer), from memory when the store
    /// holds it there (see [`Store::get_cached_into`]).
    pub async fn get_into(&self, id: &str, out: &mut bytes::BytesMut) -> Result<(), AppError> {
        check_path_id(id)?;
        if !self.store.get_cached_into(id, out) {
            out.extend_from_slice(&self.get(id).await?.json);
        }
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<StoredEntry, AppError> {
        check_path_id(id)?;
        self.store
            .get(id)
            .await?
            .ok_or_else(|| AppError::NotFound(id.to_string()))
    }

    /// Applies a MongoDB-style update with optimistic concurrency: read, apply, write if the version
    /// is unchanged, else retry on the fresh entry. Never inserts.
    pub async fn update(&self, id: &str, body: &Value) -> Result<ContainerRegistry, AppError> {
        self.update_by(id, body, &Caller::Operator).await
    }

    /// [`update`](Self::update) on behalf of `caller`, who must own the entry (or be the operator).
    pub async fn update_by(
        &self,
        id: &str,
        body: &Value,
        caller: &Caller,
    ) -> Result<ContainerRegistry, AppError> {
        check_path_id(id)?;
        let plain = body
            .as_object()
            .filter(|o| !o.keys().any(|k| k.starts_with('$')));
        // A plain-object update that carries the version it read is a read-modify-write of the
        // whole entry: it applies only to that version, so a client never overwrites a change it
        // has not seen.
        let read_version = plain.and_then(|o| o.get(VERSION)).and_then(Value::as_u64);
        // The health result such a client sends back is the one it read; probes may have recorded
        // a newer one since (without changing the version), and it is the prober's to write.
        let stripped;
        let body = match plain {
            Some(o) if o.contains_key(HEALTH) => {
                let mut o = o.clone();
                o.remove(HEALTH);
                stripped = Value::Object(o);
                &stripped
            }
            _ => body,
        };
        let update = Update::parse(body)?;
        refuse_owner_update(&update)?;
        for attempt in 0..UPDATE_ATTEMPTS {
            // Checked on every attempt: a lost race may be a rotation that revoked the caller.
            let owner = self.may_change(id, caller).await?;
            let Some(stored) = self.store.get(id).await? else {
                return Err(AppError::NotFound(id.to_string()));
            };
            let old = stored.entry()?;
            if let Some(read) = read_version
                && read != old.container_registry_version
            {
                return Err(AppError::Conflict(format!(
                    "the entry changed since it was read: the update carries version {read}, the entry is at version {}; read it again and reapply the change",
                    old.container_registry_version
                )));
            }
            let mut doc = Value::Object(old.to_json());
            // Refused before it is built when it would pad or create more values than an entry
            // may hold at all.
            update.apply_within(&mut doc, crate::domain::entry::size::MAX_VALUES)?;
            let new = ContainerRegistry::from_update(doc, &old)?;
            match self.store.replace_owned(&old, &new, owner.as_deref()).await {
                Ok(()) => return Ok(new),
                Err(StoreError::VersionConflict) => {
                    // Spread retries so contending writers do not collide in lockstep.
                    let backoff = rand::random_range(0..=(1u64 << attempt.min(6)));
                    tokio::time::sleep(std::time::Duration::from_millis(backoff)).await;
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(StoreError::VersionConflict.into())
    }

    pub async fn delete(&self, id: &str) -> Result<(), AppError> {
        self.delete_by(id, &Caller::Operator).await
    }

    /// [`delete`](Self::delete) on behalf of `caller`, who must own the entry (or be the operator).
    pub async fn delete_by(&self, id: &str, caller: &Caller) -> Result<(), AppError> {
        check_path_id(id)?;
        for _ in 0..UPDATE_ATTEMPTS {
            let owner = self.may_change(id, caller).await?;
            match self.store.delete_owned(id, owner.as_deref()).await {
                Ok(true) => return Ok(()),
                Ok(false) => return Err(AppError::NotFound(id.to_string())),
                // The owner changed since it was checked: check again.
                Err(StoreError::VersionConflict) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(StoreError::VersionConflict.into())
    }

    /// Rebuilds the store's tag index from its entries.
    pub async fn reindex(&self) -> Result<ReindexReport, AppError> {
        Ok(self.store.reindex().await?)
    }
}

/// An id in a path that could never have been stored is simply not found.
fn check_path_id(id: &str) -> Result<(), AppError> {
    validate_id(id).map_err(|_| AppError::NotFound(id.to_string()))
}

/// Reads the candidates of a filter chunk by chunk, the same way for a query page and a facet
/// count: in the plan's order (falling back to a scan when the store has no usable index yet),
/// each chunk resuming after the last key the one before examined, and no chunk once
/// [`MAX_SCANNED_PER_PAGE`] entries have been examined (or tag-index keys read, whichever are
/// more in a chunk) or the plan has no more.
struct Chunks<'a> {
    store: &'a dyn Store,
    filter: &'a Filter,
    plan: Plan,
    /// Where the next chunk starts: after this key.
    after: Option<ByteString>,
    scanned: usize,
    /// What the work bound counts: per chunk, the entries it read or the index keys it read to
    /// choose them, whichever are more.
    work: usize,
    index_keys: usize,
    read: u32,
    finished: bool,
}

impl<'a> Chunks<'a> {
    fn new(
        store: &'a dyn Store,
        filter: &'a Filter,
        plan: Plan,
        after: Option<ByteString>,
    ) -> Self {
        Chunks {
            store,
            filter,
            plan,
            after,
            scanned: 0,
            work: 0,
            index_keys: 0,
            read: 0,
            finished: false,
        }
    }

    /// The next chunk of at most `max_entries` (and [`SCAN_CHUNK_BYTES`]), or `None` when the plan
    /// has no more entries or the work bound is reached.
    async fn next(&mut self, max_entries: usize) -> Result<Option<ScanChunk>, AppError> {
        if self.finished || self.work >= MAX_SCANNED_PER_PAGE {
            return Ok(None);
        }
        let chunk = self
            .store
            .scan(ScanRequest {
                filter: self.filter,
                plan: &self.plan,
                after: self.after.as_deref(),
                max_entries: max_entries.min(MAX_SCANNED_PER_PAGE - self.work).max(1),
                max_bytes: SCAN_CHUNK_BYTES,
            })
            .await?;
        self.scanned += chunk.scanned;
        self.work += chunk.scanned.max(chunk.index_keys);
        self.index_keys += chunk.index_keys;
        self.read += 1;
        if !chunk.used_index {
            // The store had no usable index (yet): go on in scan order.
            self.plan = Plan::Scan;
        }
        match &chunk.last_key {
            None => self.finished = true,
            Some(key) => self.after = Some(key.as_str().into()),
        }
        Ok(Some(chunk))
    }

    /// Where the next chunk starts.
    fn after(&self) -> Option<&ByteString> {
        self.after.as_ref()
    }

    /// The plan has no more entries.
    fn finished(&self) -> bool {
        self.finished
    }

    fn scanned(&self) -> usize {
        self.scanned
    }

    /// Entries and tag-index keys read so far.
    fn work_done(&self) -> (usize, usize) {
        (self.scanned, self.index_keys)
    }

    /// Whether the work bound stops the reading here.
    fn bounded(&self) -> bool {
        self.work >= MAX_SCANNED_PER_PAGE
    }

    /// The chunks read so far.
    fn read(&self) -> u32 {
        self.read
    }

    /// The chunks are read through the tag index (rather than by a scan).
    fn uses_index(&self) -> bool {
        self.plan.uses_index()
    }
}
