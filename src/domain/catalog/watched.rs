//! A store that counts the writes made through it, so that answers derived from the store (the
//! facet counts) can be kept until something changes instead of being recounted on every request.
//!
//! **A write finishes or fails as one.** Each write runs on a task of its own, which the caller
//! awaits: when the caller's future is dropped (a client hung up, a request timed out), the write
//! and its count still complete together. Counted only when the future completed, a commit that
//! landed after its client left went uncounted, and the facet counts kept showing the store as it
//! was before it (issue 18, finding 5).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::domain::entry::ContainerRegistry;
use crate::domain::store::StoredEntry;
use crate::domain::store::{ReindexReport, ScanChunk, ScanRequest, Store, StoreError};
use crate::health::ProbeResult;

/// Wraps a store; every write through it, successful or not, advances [`Watched::writes`] once it
/// has returned (whether or not its caller still waits for it). A reader that notes `writes()` before it reads and finds the same number later
/// knows that no write made through this object completed in between, because the count moves
/// only after the write is durable.
pub struct Watched {
    inner: Arc<dyn Store>,
    writes: Arc<AtomicU64>,
}

impl Watched {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Watched {
            inner,
            writes: Arc::default(),
        }
    }

    /// Writes made through this object so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Acquire)
    }

    /// Runs `write` (given the inner store) to its end on a task of its own and counts it, even
    /// if the caller stops waiting; answers what it answered.
    async fn write<T, F, W>(&self, write: W) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
        W: FnOnce(Arc<dyn Store>) -> F,
    {
        let writes = Arc::clone(&self.writes);
        let running = write(Arc::clone(&self.inner));
        let task = tokio::spawn(async move {
            let out = running.await;
            writes.fetch_add(1, Ordering::AcqRel);
            out
        });
        match task.await {
            Ok(out) => out,
            // The write panicked: the caller's request fails as if it had panicked itself.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Unavailable(format!(
                "the write was cancelled: {e}"
            ))),
        }
    }
}

#[async_trait]
impl Store for Watched {
    async fn insert(&self, entry: &ContainerRegistry) -> Result<(), StoreError> {
        let entry = entry.clone();
        self.write(|store| async move { store.insert(&entry).await })
            .await
    }

    async fn insert_many(&self, entries: &[ContainerRegistry]) -> Vec<Result<(), StoreError>> {
        let entries = entries.to_vec();
        let n = entries.len();
        match self
            .write(|store| async move { Ok(store.insert_many(&entries).await) })
            .await
        {
            Ok(results) => results,
            Err(e) => (0..n)
                .map(|_| Err(StoreError::Unavailable(e.to_string())))
                .collect(),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<StoredEntry>, StoreError> {
        self.inner.get(id).await
    }

    async fn replace(
        &self,
        old: &ContainerRegistry,
        new: &ContainerRegistry,
    ) -> Result<(), StoreError> {
        let (old, new) = (old.clone(), new.clone());
        self.write(|store| async move { store.replace(&old, &new).await })
            .await
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.write(|store| async move { store.delete(&id).await })
            .await
    }

    async fn insert_owned(
        &self,
        entry: &ContainerRegistry,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        let (entry, owner) = (entry.clone(), owner.map(str::to_string));
        self.write(|store| async move { store.insert_owned(&entry, owner.as_deref()).await })
            .await
    }

    async fn owner(&self, id: &str) -> Result<Option<Option<String>>, StoreError> {
        self.inner.owner(id).await
    }

    // A write like the others: it finishes even if the caller leaves (a rotation or a claim whose
    // client hung up still revokes the old token), and the kept `owned` count moves with it.
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
        self.write(|store| async move { store.set_owner(&id, expected.as_deref(), &owner).await })
            .await
    }

    async fn replace_owned(
        &self,
        old: &ContainerRegistry,
        new: &ContainerRegistry,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        let (old, new, owner) = (old.clone(), new.clone(), owner.map(str::to_string));
        self.write(|store| async move { store.replace_owned(&old, &new, owner.as_deref()).await })
            .await
    }

    async fn delete_owned(&self, id: &str, owner: Option<&str>) -> Result<bool, StoreError> {
        let (id, owner) = (id.to_string(), owner.map(str::to_string));
        self.write(|store| async move { store.delete_owned(&id, owner.as_deref()).await })
            .await
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
        let (id, health) = (id.to_string(), health.clone());
        self.write(|store| async move { store.set_health(&id, &health).await })
            .await
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

    async fn restore_history(
        &self,
        id: &str,
        days: &[(
            crate::domain::history::Day,
            crate::domain::history::DayCounts,
        )],
    ) -> Result<(), StoreError> {
        let (id, days) = (id.to_string(), days.to_vec());
        self.write(|store| async move { store.restore_history(&id, &days).await })
            .await
    }

    async fn reindex_counted(
        &self,
        progress: Arc<crate::domain::store::ReindexProgress>,
    ) -> Result<ReindexReport, StoreError> {
        self.write(|store| async move { store.reindex_counted(progress).await })
            .await
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
