//! The embedded store: one redb file in the data folder, entries as JSON under their id.
//!
//! redb commits are durable when `commit()` returns (fsync), so a write acknowledged to a client
//! survives `kill -9`. redb serializes write transactions, so a compare-and-swap on the version inside
//! one write transaction is atomic. redb is synchronous: every call runs on tokio's blocking pool.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{ScanChunk, Store, StoreError};
use crate::domain::entry::ContainerRegistry;
use crate::health::ProbeResult;
use crate::query::Filter;

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("container_registries");
const FILE_NAME: &str = "registry-db.redb";

pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode(bytes: &[u8]) -> Result<ContainerRegistry, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Unavailable(format!("a stored entry is not readable: {e}")))
}

fn encode(entry: &ContainerRegistry) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(entry).map_err(unavailable)
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`. Fails with a clear message when another
    /// process holds it: redb allows one writer process per file.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create the data folder {}: {e}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => anyhow::anyhow!(
                "the embedded store {} is already open in another process (one server per data folder)",
                path.display()
            ),
            other => anyhow::anyhow!("cannot open the embedded store {}: {other}", path.display()),
        })?;
        let txn = db.begin_write()?;
        txn.open_table(ENTRIES)?;
        txn.commit()?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            path,
        })
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
    /// or `None` to leave it. Returns what `f` decided, or `None` when the id is absent.
    async fn modify<T: Send + 'static>(
        &self,
        id: String,
        f: impl FnOnce(ContainerRegistry) -> Result<(T, Option<ContainerRegistry>), StoreError>
        + Send
        + 'static,
    ) -> Result<Option<T>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let out = {
                let mut table = txn.open_table(ENTRIES).map_err(unavailable)?;
                let current = match table.get(id.as_str()).map_err(unavailable)? {
                    Some(bytes) => decode(bytes.value())?,
                    None => return Ok(None),
                };
                let (out, new) = f(current)?;
                if let Some(new) = new {
                    table
                        .insert(id.as_str(), encode(&new)?.as_slice())
                        .map_err(unavailable)?;
                }
                out
            };
            txn.commit().map_err(unavailable)?;
            Ok(Some(out))
        })
        .await
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn insert(&self, entry: &ContainerRegistry) -> Result<(), StoreError> {
        let id = entry.container_registry_id.clone();
        let bytes = encode(entry)?;
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
            }
            txn.commit().map_err(unavailable)
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<ContainerRegistry>, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ENTRIES).map_err(unavailable)?;
            table
                .get(id.as_str())
                .map_err(unavailable)?
                .map(|v| decode(v.value()))
                .transpose()
        })
        .await
    }

    async fn replace(
        &self,
        entry: &ContainerRegistry,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let entry = entry.clone();
        let outcome = self
            .modify(entry.container_registry_id.clone(), move |current| {
                if current.container_registry_version != expected_version {
                    return Ok((false, None));
                }
                Ok((true, Some(entry)))
            })
            .await?;
        match outcome {
            Some(true) => Ok(()),
            _ => Err(StoreError::VersionConflict),
        }
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let existed = {
                let mut table = txn.open_table(ENTRIES).map_err(unavailable)?;
                table.remove(id.as_str()).map_err(unavailable)?.is_some()
            };
            txn.commit().map_err(unavailable)?;
            Ok(existed)
        })
        .await
    }

    async fn scan(
        &self,
        _filter: &Filter,
        after: Option<&str>,
        max_scanned: usize,
    ) -> Result<ScanChunk, StoreError> {
        // The filter is evaluated by the caller; reading JSON and evaluating it are the same work.
        let after = after.map(str::to_string);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(ENTRIES).map_err(unavailable)?;
            let lower = match after.as_deref() {
                Some(key) => Bound::Excluded(key),
                None => Bound::Unbounded,
            };
            let mut range = table
                .range::<&str>((lower, Bound::Unbounded))
                .map_err(unavailable)?;
            let mut candidates = Vec::new();
            let mut last_key = None;
            for row in range.by_ref().take(max_scanned.max(1)) {
                let (key, value) = row.map_err(unavailable)?;
                candidates.push(decode(value.value())?);
                last_key = Some(key.value().to_string());
            }
            // `last_key` stays set only when more entries may follow.
            if range.next().is_none() {
                last_key = None;
            }
            let scanned = candidates.len();
            Ok(ScanChunk {
                candidates,
                last_key,
                scanned,
            })
        })
        .await
    }

    async fn set_health(&self, id: &str, health: &ProbeResult) -> Result<bool, StoreError> {
        let health = health.clone();
        let done = self
            .modify(id.to_string(), move |mut current| {
                current.container_registry_health = Some(health);
                // Bumping the version makes a concurrent read-modify-write retry instead of
                // writing back the health it read before this one.
                current.container_registry_version += 1;
                Ok(((), Some(current)))
            })
            .await?;
        Ok(done.is_some())
    }

    fn describe(&self) -> String {
        format!("embedded store at {}", self.path.display())
    }
}
