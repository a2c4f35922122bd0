//! A store that counts the writes made through it, so that answers derived from the store (the
//! facet counts) can be kept until something changes instead of being recounted on every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::domain::entry::ContainerRegistry;
use crate::domain::store::StoredEntry;
use crate::domain::store::{ReindexReport, ScanChunk, ScanRequest, Store, StoreError};
use crate::health::ProbeResult;

/// Wraps a store; every write through it, successful or not, advances [`Watched::writes`] once it
/// has returned. A reader that notes `writes()` before it reads and finds the same number later
/// knows that no write made through this object completed in between, because the count moves
/// only after the write is durable.
pub struct Watched {
    inner: Arc<dyn Store>,
    writes: AtomicU64,
}

impl Watched {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Watched {
            inner,
            writes: AtomicU64::new(0),
        }
    }

    /// Writes made through this object so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Acquire)
    }

    fn wrote<T>(&self, result: T) -> T {
        self.writes.fetch_add(1, Ordering::AcqRel);
        result
    }
}

#[async_trait]
impl Store for Watched {
    async fn insert(&self, entry: &ContainerRegistry) -> Result<(), StoreError> {
        self.wrote(self.inner.insert(entry).await)
    }

    async fn insert_many(&self, entries: &[ContainerRegistry]) -> Vec<Result<(), StoreError>> {
        self.wrote(self.inner.insert_many(entries).await)
    }

    async fn get(&self, id: &str) -> Result<Option<StoredEntry>, StoreError> {
        self.inner.get(id).await
    }

    async fn replace(
        &self,
        old: &ContainerRegistry,
        new: &ContainerRegistry,
    ) -> Result<(), StoreError> {
        self.wrote(self.inner.replace(old, new).await)
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.wrote(self.inner.delete(id).await)
    }

    async fn insert_owned(
        &self,
        entry: &ContainerRegistry,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        self.wrote(self.inner.insert_owned(entry, owner).await)
    }

    async fn owner(&self, id: &str) -> Result<Option<Option<String>>, StoreError> {
        self.inner.owner(id).await
    }

    // Not counted as a write: no answer that the counts feed (facets) shows owners.
    async fn set_owner(
        &self,
        id: &str,
        expected: Option<&str>,
        owner: &str,
    ) -> Result<bool, StoreError> {
        self.inner.set_owner(id, expected, owner).await
    }

    async fn replace_owned(
        &self,
        old: &ContainerRegistry,
        new: &ContainerRegistry,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        self.wrote(self.inner.replace_owned(old, new, owner).await)
    }

    async fn delete_owned(&self, id: &str, owner: Option<&str>) -> Result<bool, StoreError> {
        self.wrote(self.inner.delete_owned(id, owner).await)
    }

    async fn scan(&self, request: ScanRequest<'_>) -> Result<ScanChunk, StoreError> {
        self.inner.scan(request).await
    }

    async fn probe_targets(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<crate::domain::store::ProbeTarget>, Option<String>), StoreError> {
        self.inner.probe_targets(after, max).await
    }

    async fn set_health(&self, id: &str, health: &ProbeResult) -> Result<bool, StoreError> {
        self.wrote(self.inner.set_health(id, health).await)
    }

    async fn record_probe(
        &self,
        id: &str,
        day: crate::domain::history::Day,
        sample: crate::domain::history::ProbeSample,
    ) -> Result<bool, StoreError> {
        // History is no part of an entry: the answers kept (facet counts) do not read it.
        self.inner.record_probe(id, day, sample).await
    }

    async fn health_days(
        &self,
        id: &str,
        from: crate::domain::history::Day,
        to: crate::domain::history::Day,
    ) -> Result<
        Vec<(
            crate::domain::history::Day,
            crate::domain::history::DayCounts,
        )>,
        StoreError,
    > {
        self.inner.health_days(id, from, to).await
    }

    async fn reindex(&self) -> Result<ReindexReport, StoreError> {
        self.wrote(self.inner.reindex().await)
    }

    async fn kept_counts(&self) -> Result<Option<crate::domain::counts::KeptCounts>, StoreError> {
        self.inner.kept_counts().await
    }

    fn get_cached_into(&self, id: &str, out: &mut bytes::BytesMut) -> bool {
        self.inner.get_cached_into(id, out)
    }

    async fn export(
        &self,
        out: tokio::sync::mpsc::Sender<crate::domain::store::Exported>,
    ) -> Result<u64, StoreError> {
        self.inner.export(out).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn only_writer(&self) -> bool {
        self.inner.only_writer()
    }

    fn publish_metrics(&self) {
        self.inner.publish_metrics()
    }
}
