//! The business operations, in terms of a [`Store`]: no HTTP, no DynamoDB here.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::entry::{ContainerRegistry, HEALTH, VERSION, validate_id};
use crate::error::AppError;
use crate::health::{ProbeResult, Prober, SweepOptions, SweepReport, run_sweep};
use crate::query::{Filter, Update};
use crate::store::{Plan, ReindexReport, ScanRequest, Store, StoreError, StoredEntry};

/// Paging limits. A page never exceeds `MAX_PAGE_BYTES` of entries, which keeps every response well
/// under Lambda's 6 MB payload limit whatever the entries hold.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
pub const MAX_PAGE_LIMIT: usize = 1000;
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
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

pub struct Page {
    /// The matching entries as stored (JSON text), in the plan's order.
    pub entries: Vec<StoredEntry>,
    pub next_cursor: Option<String>,
    /// Entries examined to fill this page (logged, and reported in the README's measurements).
    pub scanned: usize,
}

#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    prober: Prober,
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
        Registry { store, prober }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn create(&self, body: Value) -> Result<ContainerRegistry, AppError> {
        let entry = ContainerRegistry::from_create(body)?;
        self.store.insert(&entry).await?;
        Ok(entry)
    }

    /// The entry as stored (its JSON text).
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
        for attempt in 0..UPDATE_ATTEMPTS {
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
            match self.store.replace(&old, &new).await {
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
        check_path_id(id)?;
        if self.store.delete(id).await? {
            Ok(())
        } else {
            Err(AppError::NotFound(id.to_string()))
        }
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
        let limit = limit.clamp(1, MAX_PAGE_LIMIT);
        let cursor = cursor.map(decode_cursor).transpose()?;
        // A cursor from a scan goes on scanning: the plan does not change within a listing.
        let mut plan = match &cursor {
            Some(c) if !c.index => Plan::Scan,
            _ => Plan::for_filter(filter),
        };
        let mut after = cursor.map(|c| c.after);
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        let mut scanned = 0usize;
        let mut chunks = 0u32;
        let page = |entries, after: Option<String>, used_index, scanned| Page {
            entries,
            next_cursor: after.map(|after| {
                encode_cursor(&Cursor {
                    after,
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
                    max_entries: chunk_entries(&plan, limit - entries.len(), chunks)
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
            let mut candidates = chunk.candidates.into_iter().peekable();
            while let Some(entry) = candidates.next() {
                // One parse per entry, and none when the store answered the filter exactly.
                if !chunk.exact && !filter.matches(&entry.document()?) {
                    after = Some(entry.id);
                    continue;
                }
                let size = entry.json.len();
                if !entries.is_empty() && bytes + size > MAX_PAGE_BYTES {
                    // This entry starts the next page: resume right before it.
                    return Ok(page(entries, after, used_index, scanned));
                }
                bytes += size;
                after = Some(entry.id.clone());
                entries.push(entry);
                if entries.len() == limit {
                    let more = candidates.peek().is_some() || chunk.last_key.is_some();
                    return Ok(page(entries, after.filter(|_| more), used_index, scanned));
                }
            }
            match chunk.last_key {
                None => return Ok(page(entries, None, used_index, scanned)),
                Some(key) => after = Some(key),
            }
            if scanned >= MAX_SCANNED_PER_PAGE {
                return Ok(page(entries, after, used_index, scanned));
            }
        }
    }

    /// Probes an entry's registry and records the result on the entry.
    pub async fn check_health(&self, id: &str) -> Result<ProbeResult, AppError> {
        let entry = self.get(id).await?.entry()?;
        let result = self
            .prober
            .probe(&entry.container_registry_public_url)
            .await;
        // The entry may have been deleted while it was probed; the answer still stands.
        self.store.set_health(id, &result).await?;
        Ok(result)
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

/// Entries to read in the next chunk when `wanted` more are needed for the page. A scan reads large
/// chunks (its cost is the table anyway). The tag index reads what the page still needs, doubling
/// with every chunk of one request when the filter rejects some: pages then read few entries that
/// the next page reads again (a store tells by itself whether more follow).
fn chunk_entries(plan: &Plan, wanted: usize, chunks_read: u32) -> usize {
    match plan {
        Plan::Tags(_) => wanted
            .saturating_mul(1 << chunks_read.min(10))
            .min(SCAN_CHUNK),
        Plan::Scan => SCAN_CHUNK,
    }
}

/// An id in a path that could never have been stored is simply not found.
fn check_path_id(id: &str) -> Result<(), AppError> {
    validate_id(id).map_err(|_| AppError::NotFound(id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
