//! Where entries live. The domain talks to a [`Store`]; the embedded (redb) and DynamoDB stores
//! implement it. Stores know keys, versions and bytes; the query language and the update rules live
//! in the domain, so both stores behave the same by construction.

pub mod dynamodb;
pub mod embedded;

use async_trait::async_trait;

use crate::domain::entry::ContainerRegistry;
use crate::health::ProbeResult;
use crate::query::Filter;

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

/// One chunk of a scan, in the store's key order.
pub struct ScanChunk {
    /// Entries after the start key that may match (a store may pre-filter, never over-filter).
    pub candidates: Vec<ContainerRegistry>,
    /// Key of the last entry examined; `None` when the scan reached the end of the store.
    pub last_key: Option<String>,
    /// How many stored entries this chunk examined (the work it cost).
    pub scanned: usize,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a new entry; `AlreadyExists` when the id is taken.
    async fn insert(&self, entry: &ContainerRegistry) -> Result<(), StoreError>;

    async fn get(&self, id: &str) -> Result<Option<ContainerRegistry>, StoreError>;

    /// Replaces an entry if its stored version is still `expected_version`; otherwise
    /// `VersionConflict` (which includes the entry having been deleted meanwhile).
    async fn replace(
        &self,
        entry: &ContainerRegistry,
        expected_version: u64,
    ) -> Result<(), StoreError>;

    /// Deletes an entry; `false` when there was none.
    async fn delete(&self, id: &str) -> Result<bool, StoreError>;

    /// Examines up to `max_scanned` entries whose keys come after `after`, returning those that may
    /// match `filter`. The caller evaluates the filter exactly on what comes back.
    async fn scan(
        &self,
        filter: &Filter,
        after: Option<&str>,
        max_scanned: usize,
    ) -> Result<ScanChunk, StoreError>;

    /// Records a health result on an entry, atomically, touching no other client field.
    /// `false` when the entry no longer exists.
    async fn set_health(&self, id: &str, health: &ProbeResult) -> Result<bool, StoreError>;

    /// A short description for logs ("embedded store at ./data", "DynamoDB table T").
    fn describe(&self) -> String;
}
