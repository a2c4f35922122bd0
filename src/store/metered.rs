//! A store that counts its calls and failures (`crate::metrics`) around another: `AppState::open`
//! wraps whichever store the settings chose, so both are counted the same way. A GET answered from
//! the entry cache (`get_cached_into`) is no store call and is counted by the cache instead.

use std::sync::Arc;

use ::metrics::Counter;
use async_trait::async_trait;

use crate::domain::entry::ContainerRegistry;
use crate::health::ProbeResult;
use crate::metrics;

use super::{ReindexReport, ScanChunk, ScanRequest, Store, StoreError, StoredEntry};

pub struct Metered {
    inner: Arc<dyn Store>,
    calls: Calls,
}

/// One counter per operation, made once: a call costs one atomic add.
struct Calls {
    insert: Counter,
    get: Counter,
    replace: Counter,
    delete: Counter,
    scan: Counter,
    probe_targets: Counter,
    set_health: Counter,
    record_probe: Counter,
    health_days: Counter,
    reindex: Counter,
    owner: Counter,
    set_owner: Counter,
}

impl Metered {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Metered {
            inner,
            calls: Calls {
                insert: metrics::store_calls("insert"),
                get: metrics::store_calls("get"),
                replace: metrics::store_calls("replace"),
                delete: metrics::store_calls("delete"),
                scan: metrics::store_calls("scan"),
                probe_targets: metrics::store_calls("probe_targets"),
                set_health: metrics::store_calls("set_health"),
                record_probe: metrics::store_calls("record_probe"),
                health_days: metrics::store_calls("health_days"),
                reindex: metrics::store_calls("reindex"),
                owner: metrics::store_calls("owner"),
                set_owner: metrics::store_calls("set_owner"),
            },
        }
    }
}

/// Counts the call, and its failure by kind.
fn counted<T>(
    op: &'static str,
    calls: &Counter,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    calls.increment(1);
    if let Err(e) = &result {
        metrics::store_error(op, e.kind());
    }
    result
}

#[async_trait]
impl Store for Metered {
    async fn insert(&self, entry: &ContainerRegistry) -> Result<(), StoreError> {
        counted("insert", &self.calls.insert, self.inner.insert(entry).await)
    }

    async fn insert_many(&self, entries: &[ContainerRegistry]) -> Vec<Result<(), StoreError>> {
        let out = self.inner.insert_many(entries).await;
        self.calls.insert.increment(out.len() as u64);
        for e in out.iter().filter_map(|r| r.as_ref().err()) {
            metrics::store_error("insert", e.kind());
        }
        out
    }

    // The owner operations are forwarded, never left to the trait's defaults: those know no
    // owners, and an owned entry would look unowned through this wrapper.
    async fn insert_owned(
        &self,
        entry: &ContainerRegistry,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        let result = self.inner.insert_owned(entry, owner).await;
        counted("insert", &self.calls.insert, result)
    }

    async fn owner(&self, id: &str) -> Result<Option<Option<String>>, StoreError> {
        counted("owner", &self.calls.owner, self.inner.owner(id).await)
    }

    async fn set_owner(
        &self,
        id: &str,
        expected: Option<&str>,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let result = self.inner.set_owner(id, expected, owner).await;
        counted("set_owner", &self.calls.set_owner, result)
    }

    async fn replace_owned(
        &self,
        old: &ContainerRegistry,
        new: &ContainerRegistry,
        owner: Option<&str>,
    ) -> Result<(), StoreError> {
        let result = self.inner.replace_owned(old, new, owner).await;
        counted("replace", &self.calls.replace, result)
    }

    async fn delete_owned(&self, id: &str, owner: Option<&str>) -> Result<bool, StoreError> {
        let result = self.inner.delete_owned(id, owner).await;
        counted("delete", &self.calls.delete, result)
    }

    async fn get(&self, id: &str) -> Result<Option<StoredEntry>, StoreError> {
        counted("get", &self.calls.get, self.inner.get(id).await)
    }

    fn get_cached_into(&self, id: &str, out: &mut bytes::BytesMut) -> bool {
        self.inner.get_cached_into(id, out)
    }

    async fn replace(
        &self,
        old: &ContainerRegistry,
        new: &ContainerRegistry,
    ) -> Result<(), StoreError> {
        let result = self.inner.replace(old, new).await;
        counted("replace", &self.calls.replace, result)
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        counted("delete", &self.calls.delete, self.inner.delete(id).await)
    }

    async fn scan(&self, request: ScanRequest<'_>) -> Result<ScanChunk, StoreError> {
        counted("scan", &self.calls.scan, self.inner.scan(request).await)
    }

    async fn probe_targets(
        &self,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<crate::domain::store::ProbeTarget>, Option<String>), StoreError> {
        let result = self.inner.probe_targets(after, max).await;
        counted("probe_targets", &self.calls.probe_targets, result)
    }

    async fn set_health(&self, id: &str, health: &ProbeResult) -> Result<bool, StoreError> {
        let result = self.inner.set_health(id, health).await;
        counted("set_health", &self.calls.set_health, result)
    }

    async fn record_probe(
        &self,
        id: &str,
        day: crate::domain::history::Day,
        sample: crate::domain::history::ProbeSample,
    ) -> Result<bool, StoreError> {
        let result = self.inner.record_probe(id, day, sample).await;
        counted("record_probe", &self.calls.record_probe, result)
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
        let result = self.inner.health_days(id, from, to).await;
        counted("health_days", &self.calls.health_days, result)
    }

    async fn restore_history(
        &self,
        id: &str,
        days: &[(
            crate::domain::history::Day,
            crate::domain::history::DayCounts,
        )],
    ) -> Result<(), StoreError> {
        self.inner.restore_history(id, days).await
    }

    async fn reindex_counted(
        &self,
        progress: std::sync::Arc<crate::domain::store::ReindexProgress>,
    ) -> Result<ReindexReport, StoreError> {
        let result = self.inner.reindex_counted(progress).await;
        counted("reindex", &self.calls.reindex, result)
    }

    async fn kept_counts(&self) -> Result<Option<crate::domain::counts::KeptCounts>, StoreError> {
        self.inner.kept_counts().await
    }

    async fn export(
        &self,
        out: tokio::sync::mpsc::Sender<crate::domain::store::Exported>,
    ) -> Result<u64, StoreError> {
        let result = self.inner.export(out).await;
        counted("export", &metrics::store_calls("export"), result)
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
