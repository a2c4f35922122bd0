//! The business operations, in terms of a [`Store`]: no HTTP, no DynamoDB here.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::entry::{ContainerRegistry, VERSION, validate_id};
use crate::error::AppError;
use crate::health::{ProbeResult, Prober, SweepOptions, SweepReport, run_sweep};
use crate::query::{Filter, Update};
use crate::store::{Store, StoreError};

/// Paging limits. A page never exceeds `MAX_PAGE_BYTES` of entries, which keeps every response well
/// under Lambda's 6 MB payload limit whatever the entries hold.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
pub const MAX_PAGE_LIMIT: usize = 1000;
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Work bound per query request: at most this many stored entries examined. A selective filter
/// may return a short (even empty) page with a cursor; following it continues the scan.
pub const MAX_SCANNED_PER_PAGE: usize = 20_000;
/// Entries examined per store round trip.
pub(super) const SCAN_CHUNK: usize = 1000;
/// Optimistic update attempts before answering 409.
const UPDATE_ATTEMPTS: usize = 64;

pub struct Page {
    pub entries: Vec<ContainerRegistry>,
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

/// The cursor is opaque to clients: base64url of a small JSON object naming the last key examined.
fn encode_cursor(after: &str) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::json!({ "v": 1, "after": after }).to_string())
}

fn decode_cursor(cursor: &str) -> Result<String, AppError> {
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
    match (value.get("v"), value.get("after")) {
        (Some(v), Some(Value::String(after))) if v == 1 && validate_id(after).is_ok() => {
            Ok(after.clone())
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

    pub async fn get(&self, id: &str) -> Result<ContainerRegistry, AppError> {
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
        let update = Update::parse(body)?;
        // A plain-object update that carries the version it read is a read-modify-write of the
        // whole entry: it applies only to that version, so a client never overwrites a change it
        // has not seen.
        let read_version = body
            .as_object()
            .filter(|o| !o.keys().any(|k| k.starts_with('$')))
            .and_then(|o| o.get(VERSION))
            .and_then(Value::as_u64);
        for attempt in 0..UPDATE_ATTEMPTS {
            let Some(old) = self.store.get(id).await? else {
                return Err(AppError::NotFound(id.to_string()));
            };
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
            match self
                .store
                .replace(&new, old.container_registry_version)
                .await
            {
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

    /// One page of entries matching `filter`, in store key order, resuming after `cursor`.
    pub async fn query(
        &self,
        filter: &Filter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, AppError> {
        let limit = limit.clamp(1, MAX_PAGE_LIMIT);
        let mut after = cursor.map(decode_cursor).transpose()?;
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        let mut scanned = 0usize;
        loop {
            let chunk = self
                .store
                .scan(filter, after.as_deref(), SCAN_CHUNK)
                .await?;
            scanned += chunk.scanned;
            let mut candidates = chunk.candidates.into_iter().peekable();
            while let Some(entry) = candidates.next() {
                let id = entry.container_registry_id.clone();
                if !filter.matches(&Value::Object(entry.to_json())) {
                    after = Some(id);
                    continue;
                }
                let size = serde_json::to_vec(&entry).map(|v| v.len()).unwrap_or(0);
                if !entries.is_empty() && bytes + size > MAX_PAGE_BYTES {
                    // This entry starts the next page: resume right before it.
                    return Ok(Page {
                        entries,
                        next_cursor: after.as_deref().map(encode_cursor),
                        scanned,
                    });
                }
                bytes += size;
                entries.push(entry);
                after = Some(id);
                if entries.len() == limit {
                    let more = candidates.peek().is_some() || chunk.last_key.is_some();
                    let next_cursor = if more {
                        after.as_deref().map(encode_cursor)
                    } else {
                        None
                    };
                    return Ok(Page {
                        entries,
                        next_cursor,
                        scanned,
                    });
                }
            }
            match chunk.last_key {
                None => {
                    return Ok(Page {
                        entries,
                        next_cursor: None,
                        scanned,
                    });
                }
                Some(key) => after = Some(key),
            }
            if scanned >= MAX_SCANNED_PER_PAGE {
                return Ok(Page {
                    entries,
                    next_cursor: after.as_deref().map(encode_cursor),
                    scanned,
                });
            }
        }
    }

    /// Probes an entry's registry and records the result on the entry.
    pub async fn check_health(&self, id: &str) -> Result<ProbeResult, AppError> {
        let entry = self.get(id).await?;
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
        let all = Filter::match_all();
        loop {
            let chunk = self.store.scan(&all, after.as_deref(), SCAN_CHUNK).await?;
            targets.extend(
                chunk
                    .candidates
                    .into_iter()
                    .map(|e| (e.container_registry_id, e.container_registry_public_url)),
            );
            match chunk.last_key {
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

/// An id in a path that could never have been stored is simply not found.
fn check_path_id(id: &str) -> Result<(), AppError> {
    validate_id(id).map_err(|_| AppError::NotFound(id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_forgeries() {
        let c = encode_cursor("b3c38f52-8f2e-43a3-9aa9-bd9a4c75e509");
        assert_eq!(
            decode_cursor(&c).unwrap(),
            "b3c38f52-8f2e-43a3-9aa9-bd9a4c75e509"
        );
        for bad in [
            "",
            "!!",
            "eyJ2IjoyfQ",
            &URL_SAFE_NO_PAD.encode(r#"{"v":1,"after":"a/b"}"#),
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
