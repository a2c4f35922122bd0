//! The business operations, in terms of a [`Store`]: no HTTP, no DynamoDB here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use serde_json::Value;

use super::entry::{ContainerRegistry, HEALTH, VERSION, validate_id};
use super::facets::{FACET_CACHE_MAX_AGE, FacetCache};
use super::owner::{Caller, refuse_owner_field};
use crate::error::AppError;
use crate::health::{ProbeResult, Prober, SweepOptions, SweepReport, probe_url, run_sweep};
use crate::query::{Fields, Filter, Update};
use crate::store::{
    ByteString, Plan, ReindexReport, ScanRequest, Store, StoreError, StoredEntry, Watched,
};

/// Paging limits. A page never exceeds `MAX_PAGE_BYTES` of entries, which keeps every response well
/// under Lambda's 6 MB payload limit whatever the entries hold.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
pub const MAX_PAGE_LIMIT: usize = 1000;
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Work bound per query request: at most this many stored entries examined. A selective filter
/// may return a short (even empty) page with a cursor; following it continues the scan.
pub const MAX_SCANNED_PER_PAGE: usize = 20_000;
/// Entries examined per store round trip...
pub(super) const SCAN_CHUNK: usize = 1000;
/// ...and bytes of entries, so that a chunk of large entries stays small in memory: a query holds at
/// most one chunk, one parsed entry and the page it is filling.
pub(super) const SCAN_CHUNK_BYTES: usize = 1024 * 1024;
/// Optimistic update attempts before answering 409.
const UPDATE_ATTEMPTS: usize = 64;

pub struct Page {
    /// The matching entries as stored (JSON text), in the plan's order.
    pub entries: Vec<StoredEntry>,
    pub next_cursor: Option<String>,
    /// Entries examined to fill this page (logged, and reported in the README's measurements).
    pub scanned: usize,
}

/// Within this long of an entry's last probe, a health check answers the stored result
/// (`--probe-cooldown-secs`).
pub const DEFAULT_PROBE_COOLDOWN: Duration = Duration::from_secs(30);
/// How long an on-demand check waits for a free probe slot before answering 429.
pub const PROBE_SLOT_WAIT: Duration = Duration::from_secs(2);

/// How on-demand health checks are rationed, so that anonymous checks cannot turn the service into a
/// flood of probes (sweeps are scheduled by the operator and always probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckPolicy {
    /// Within this long of the stored result's `checked_at` (for the entry's current URL), a check
    /// answers the stored result without probing. Zero probes every time.
    pub cooldown: Duration,
    /// How long a check waits for one of the prober's slots before giving up with a 429.
    pub slot_wait: Duration,
}

impl Default for CheckPolicy {
    fn default() -> Self {
        Self {
            cooldown: DEFAULT_PROBE_COOLDOWN,
            slot_wait: PROBE_SLOT_WAIT,
        }
    }
}

/// The answer to a health check.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub result: ProbeResult,
    /// Set when the stored result was answered without probing (within the cooldown): how old it is.
    pub cached_age: Option<Duration>,
}

/// Why a health check has no answer; `Clone`, because concurrent checks of one entry share it.
#[derive(Debug, Clone)]
enum CheckFailure {
    NotFound(String),
    Busy {
        max_in_flight: usize,
        retry_after_secs: u64,
    },
    Store(String),
    Internal(String),
}

impl From<CheckFailure> for AppError {
    fn from(f: CheckFailure) -> Self {
        match f {
            CheckFailure::NotFound(id) => AppError::NotFound(id),
            CheckFailure::Busy {
                max_in_flight,
                retry_after_secs,
            } => AppError::TooManyProbes {
                max_in_flight,
                retry_after_secs,
            },
            CheckFailure::Store(msg) => AppError::Store(msg),
            CheckFailure::Internal(msg) => AppError::Internal(msg),
        }
    }
}

type Flight = Shared<BoxFuture<'static, Result<HealthCheck, CheckFailure>>>;

#[derive(Clone)]
pub struct Registry {
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

/// Where a query stopped. Opaque to clients: base64url of a small JSON object naming the last key
/// examined and whether the tag index was read, so that the next page reads the same way (on
/// DynamoDB a scan and the index list entries in different orders).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    after: String,
    index: bool,
}

fn encode_cursor(cursor: &Cursor) -> String {
    let mut json = serde_json::json!({ "v": 1, "after": cursor.after });
    if cursor.index {
        json["ix"] = Value::Bool(true);
    }
    URL_SAFE_NO_PAD.encode(json.to_string())
}

fn decode_cursor(cursor: &str) -> Result<Cursor, AppError> {
    let bad = || {
        AppError::BadRequest {
        code: "invalid_cursor",
        message: "cursor is not one this service returned; pass next_cursor from the previous page unchanged".into(),
    }
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let index = match value.get("ix") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad()),
    };
    match (value.get("v"), value.get("after")) {
        (Some(v), Some(Value::String(after))) if v == 1 && validate_id(after).is_ok() => {
            Ok(Cursor {
                after: after.clone(),
                index,
            })
        }
        _ => Err(bad()),
    }
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, prober: Prober) -> Self {
        let watched = Arc::new(Watched::new(store));
        Registry {
            store: Arc::clone(&watched) as Arc<dyn Store>,
            watched,
            facet_cache: Arc::new(FacetCache::new(FACET_CACHE_MAX_AGE)),
            prober,
            checks: CheckPolicy::default(),
            flights: Arc::default(),
        }
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

    /// Writes made through [`Registry::store`] so far.
    pub(crate) fn writes(&self) -> u64 {
        self.watched.writes()
    }

    pub(crate) fn facet_cache(&self) -> &FacetCache {
        &self.facet_cache
    }

    pub async fn create(&self, body: Value) -> Result<ContainerRegistry, AppError> {
        let entry = ContainerRegistry::from_create(body)?;
        self.store.insert(&entry).await?;
        Ok(entry)
    }

    /// The entry as stored (its JSON text).
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
        super::owner::refuse_owner_update(&update)?;
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
            update.apply(&mut doc)?;
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

    /// One page of entries matching `filter`, resuming after `cursor`. Entries come in the order
    /// of the plan that reads them (see `store::plan`): the tag index when it can narrow the
    /// filter, else a scan in the store's key order.
    pub async fn query(
        &self,
        filter: &Filter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, AppError> {
        refuse_owner_field(filter)?;
        let limit = limit.clamp(1, MAX_PAGE_LIMIT);
        let cursor = cursor.map(decode_cursor).transpose()?;
        // A cursor from a scan goes on scanning: the plan does not change within a listing.
        let mut plan = match &cursor {
            Some(c) if !c.index => Plan::Scan,
            _ => Plan::for_filter(filter),
        };
        let mut after: Option<ByteString> = cursor.map(|c| c.after.into());
        let mut entries = Vec::with_capacity(limit.min(256));
        let mut bytes = 0usize;
        let mut scanned = 0usize;
        let mut chunks = 0u32;
        let fields = Fields::of(filter);
        let page = |entries, after: Option<ByteString>, used_index, scanned| Page {
            entries,
            next_cursor: after.map(|after| {
                encode_cursor(&Cursor {
                    after: String::from(&*after),
                    index: used_index,
                })
            }),
            scanned,
        };
        loop {
            let chunk = self
                .store
                .scan(ScanRequest {
                    filter,
                    plan: &plan,
                    after: after.as_deref(),
                    max_entries: chunk_entries(limit - entries.len(), chunks)
                        .min(MAX_SCANNED_PER_PAGE - scanned)
                        .max(1),
                    max_bytes: SCAN_CHUNK_BYTES,
                })
                .await?;
            scanned += chunk.scanned;
            chunks += 1;
            if !chunk.used_index {
                // The store had no usable index (yet): go on in scan order.
                plan = Plan::Scan;
            }
            let used_index = plan.uses_index();
            // What the page takes from this chunk starts here (see `unpin`).
            let first = entries.len();
            let chunk_bytes: usize = chunk.candidates.iter().map(|e| e.json.len()).sum();
            let mut candidates = chunk.candidates.into_iter().peekable();
            // Where a page that ends here resumes: after the last entry examined, which is the
            // last one taken when `took_last` (its id is cloned only if a page ends there).
            let mut took_last = false;
            let resume =
                |entries: &Vec<StoredEntry>, after: Option<ByteString>, took_last: bool| {
                    if took_last {
                        entries.last().map(|e| e.id.clone())
                    } else {
                        after
                    }
                };
            while let Some(entry) = candidates.next() {
                // One parse per entry, and none when the store answered the filter exactly.
                if !chunk.exact && !filter.matches(&entry.document(&fields)?) {
                    after = Some(entry.id);
                    took_last = false;
                    continue;
                }
                let size = entry.json.len();
                if !entries.is_empty() && bytes + size > MAX_PAGE_BYTES {
                    // This entry starts the next page: resume right before it.
                    let after = resume(&entries, after, took_last);
                    unpin(&mut entries[first..], chunk_bytes);
                    return Ok(page(entries, after, used_index, scanned));
                }
                bytes += size;
                entries.push(entry);
                took_last = true;
                if entries.len() == limit {
                    let more = candidates.peek().is_some() || chunk.last_key.is_some();
                    let after = resume(&entries, after, took_last).filter(|_| more);
                    unpin(&mut entries[first..], chunk_bytes);
                    return Ok(page(entries, after, used_index, scanned));
                }
            }
            unpin(&mut entries[first..], chunk_bytes);
            match chunk.last_key {
                None => return Ok(page(entries, None, used_index, scanned)),
                Some(key) => after = Some(key.into()),
            }
            if scanned >= MAX_SCANNED_PER_PAGE {
                return Ok(page(entries, after, used_index, scanned));
            }
        }
    }

    /// Probes an entry's registry and records the result on the entry; or, within the cooldown of the
    /// last probe, answers the stored result. Concurrent checks of one entry share one probe; when no
    /// probe slot frees up in time the answer is [`AppError::TooManyProbes`].
    pub async fn check_health(&self, id: &str) -> Result<HealthCheck, AppError> {
        check_path_id(id)?;
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(id) {
                Some(flight) => flight.clone(),
                None => {
                    // Started while the map is locked, so the flight cannot remove itself before
                    // it has been put in.
                    let flight = self.start_check(id);
                    flights.insert(id.to_owned(), flight.clone());
                    flight
                }
            }
        };
        flight.await.map_err(AppError::from)
    }

    /// Runs one check as its own task, so it finishes (and records its result) even when every
    /// caller waiting on it has gone away.
    fn start_check(&self, id: &str) -> Flight {
        let (store, prober, checks, flights) = (
            Arc::clone(&self.store),
            self.prober.clone(),
            self.checks,
            Arc::clone(&self.flights),
        );
        let id = id.to_owned();
        let task = tokio::spawn(async move {
            // Leaves the map however the check ends, panics included, so a failed flight is never
            // answered again to later checks.
            let _leave = LeaveOnDrop {
                flights,
                id: id.clone(),
            };
            check_once(store.as_ref(), &prober, checks, &id).await
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(CheckFailure::Internal(format!("health check task: {e}"))))
        }
        .boxed()
        .shared()
    }

    /// Probes every entry once, with bounded concurrency, and records each verdict.
    pub async fn sweep(&self, opts: &SweepOptions) -> Result<SweepReport, AppError> {
        let mut targets = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (chunk, next) = self
                .store
                .probe_targets(after.as_deref(), SCAN_CHUNK)
                .await?;
            targets.extend(chunk);
            match next {
                Some(key) => after = Some(key),
                None => break,
            }
        }
        let store = self.store.clone();
        let report = run_sweep(&self.prober, targets, opts, |id, result| {
            let store = store.clone();
            async move {
                match store.set_health(&id, &result).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
        Ok(report)
    }
}

impl Registry {
    /// Rebuilds the store's tag index from its entries.
    pub async fn reindex(&self) -> Result<ReindexReport, AppError> {
        Ok(self.store.reindex().await?)
    }
}

/// Entries to read in the next chunk when `wanted` more are needed for the page: what the page still
/// needs, doubling with every chunk of one request when the filter rejects some, up to
/// [`SCAN_CHUNK`]. A page of 20 that most entries match reads about 20, not a whole chunk whose
/// rest the next page reads again; a rare match costs a few more (cheap) chunks. A store tells by
/// itself whether more follow. The same for a scan and the tag index.
/// The entries a page takes from a chunk share the chunk's buffers (`store::chunk`). When they
/// are less than half of its text (a filter that rejects most of a scan), they are copied out, so
/// that a page never holds more than twice the text it answers.
fn unpin(taken: &mut [StoredEntry], chunk_bytes: usize) {
    let taken_bytes: usize = taken.iter().map(|e| e.json.len()).sum();
    if taken_bytes * 2 < chunk_bytes {
        for entry in taken {
            entry.json = bytes::Bytes::copy_from_slice(&entry.json);
        }
    }
}

fn chunk_entries(wanted: usize, chunks_read: u32) -> usize {
    wanted
        .saturating_mul(1 << chunks_read.min(10))
        .min(SCAN_CHUNK)
}

/// Takes a finished check out of the map of checks in progress.
struct LeaveOnDrop {
    flights: Arc<Mutex<HashMap<String, Flight>>>,
    id: String,
}

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        self.flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

async fn check_once(
    store: &dyn Store,
    prober: &Prober,
    checks: CheckPolicy,
    id: &str,
) -> Result<HealthCheck, CheckFailure> {
    let entry = store
        .get(id)
        .await
        .map_err(|e| CheckFailure::Store(e.to_string()))?
        .ok_or_else(|| CheckFailure::NotFound(id.to_owned()))?
        .entry()
        .map_err(|e| CheckFailure::Store(e.to_string()))?;
    let url = &entry.container_registry_public_url;
    if let Some(stored) = entry.container_registry_health
        && let Some(age) = fresh(&stored, url, checks.cooldown)
    {
        return Ok(HealthCheck {
            result: stored.bounded(),
            cached_age: Some(age),
        });
    }
    let result = prober
        .probe_within(url, checks.slot_wait)
        .await
        .map_err(|busy| {
            CheckFailure::Busy {
                max_in_flight: busy.max_in_flight,
                // A slot frees up within one probe timeout.
                retry_after_secs: prober.config().timeout.as_secs_f64().ceil().max(1.0) as u64,
            }
        })?;
    // The entry may have been deleted while it was probed; the answer still stands.
    match store.set_health(id, &result).await {
        Ok(_) => Ok(HealthCheck {
            result,
            cached_age: None,
        }),
        Err(StoreError::NotFound(_)) => Ok(HealthCheck {
            result,
            cached_age: None,
        }),
        Err(e) => Err(CheckFailure::Store(e.to_string())),
    }
}

/// The age of `stored` when it is a result for `public_url` younger than `cooldown`.
fn fresh(stored: &ProbeResult, public_url: &str, cooldown: Duration) -> Option<Duration> {
    if cooldown.is_zero() || probe_url(public_url).ok()?.as_str() != stored.url {
        return None;
    }
    let checked_at = chrono::DateTime::parse_from_rfc3339(&stored.checked_at).ok()?;
    // A checked_at in the future (clocks disagree) counts as just now.
    let age = (chrono::Utc::now() - checked_at.with_timezone(&chrono::Utc))
        .to_std()
        .unwrap_or(Duration::ZERO);
    (age < cooldown).then_some(age)
}

/// An id in a path that could never have been stored is simply not found.
fn check_path_id(id: &str) -> Result<(), AppError> {
    validate_id(id).map_err(|_| AppError::NotFound(id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_that_takes_little_of_a_chunk_copies_it_out() {
        let chunk = bytes::Bytes::from(vec![b'x'; 10_000]);
        let within = |e: &StoredEntry| {
            let start = chunk.as_ptr() as usize;
            (start..start + chunk.len()).contains(&(e.json.as_ptr() as usize))
        };
        let taken = |n: usize| -> Vec<StoredEntry> {
            (0..n)
                .map(|i| StoredEntry {
                    id: format!("e{i}").into(),
                    json: chunk.slice(i * 1000..(i + 1) * 1000),
                })
                .collect()
        };
        // Half the chunk or more: kept where it is.
        let mut most = taken(5);
        unpin(&mut most, chunk.len());
        assert!(most.iter().all(within));
        // Less than half: copied out, text unchanged.
        let mut few = taken(4);
        unpin(&mut few, chunk.len());
        assert!(!few.iter().any(within));
        assert!(
            few.iter()
                .all(|e| e.json.len() == 1000 && e.json[0] == b'x')
        );
    }

    #[test]
    fn cursor_round_trips_and_rejects_forgeries() {
        for index in [false, true] {
            let cursor = Cursor {
                after: "b3c38f52-8f2e-43a3-9aa9-bd9a4c75e509".into(),
                index,
            };
            assert_eq!(decode_cursor(&encode_cursor(&cursor)).unwrap(), cursor);
        }
        for bad in [
            "",
            "!!",
            "eyJ2IjoyfQ",
            &URL_SAFE_NO_PAD.encode(r#"{"v":1,"after":"a","ix":"yes"}"#),
            &URL_SAFE_NO_PAD.encode(r#"{"v":1,"after":"a/b"}"#),
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
