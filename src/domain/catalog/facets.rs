//! Facet counts for a filter: how many matching entries carry each tag, registry type, storage type
//! and health status. Iterates the store exactly as [`Catalog::query`] does (`scan` chunks, then
//! the exact `Filter::matches`), so a store's pushdown or tag index serves facets too, and stops at
//! the same work bound as one query page: past it, `complete` is false and the counts cover the
//! entries examined so far.
//!
//! Counting reads every match, where a page reads 20, so answers are kept per filter
//! ([`FacetCache`]) until a write goes through this process's store; on a store other processes
//! also write to (DynamoDB) for at most [`FACET_CACHE_MAX_AGE`] as well.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

use super::query::Work;
use super::tag_counts::TagCounts;
use super::{Catalog, Chunks, SCAN_CHUNK};
use crate::domain::counts::KeptCounts;
use crate::domain::entry::{ContainerRegistry, RegistryType, StorageType};
use crate::domain::plan::Plan;
use crate::error::AppError;
use crate::health::HealthStatus;
use crate::query::{Fields, Filter};

/// Most distinct tags one facet answer lists (the most frequent first). An entry may carry 100
/// tags, so 20,000 entries could carry two million distinct ones: far beyond a useful answer or
/// Lambda's 6 MB response. `tags_truncated` says when more existed.
pub const MAX_FACET_TAGS: usize = 500;

/// Filters whose facet counts are kept at once; past it the oldest answer makes room.
pub const FACET_CACHE_ENTRIES: usize = 64;
/// Filters longer than this (as parsed, in bytes of their debug form) are counted every time, so
/// that the cache stays small whatever clients send.
const FACET_CACHE_MAX_KEY: usize = 4096;
/// How long counts are kept by default when other processes may write to the store (DynamoDB):
/// they may miss writes made elsewhere for this long (`--facet-cache-secs`). On the embedded
/// store, which only this process writes, counts are kept until the next write, however long.
pub const FACET_CACHE_MAX_AGE: Duration = Duration::from_secs(10);

/// The health facet's value for entries that were never probed (no `container_registry_health`).
pub const NEVER_CHECKED: &str = "never_checked";

/// One value of a facet and how many matching entries carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FacetCount {
    pub value: String,
    pub count: u64,
}

/// The counts over every entry matching a filter (or the entries examined, when not `complete`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Facets {
    /// Matching entries counted.
    pub matched: u64,
    /// Stored entries examined to count them.
    pub scanned: u64,
    /// True when every matching entry was counted; false when the work bound (the same as one
    /// query page's) stopped the count early.
    pub complete: bool,
    /// Most frequent first, then by value; at most `MAX_FACET_TAGS` (500).
    pub tags: Vec<FacetCount>,
    /// More distinct tags were met than `tags` lists (because of `MAX_FACET_TAGS`, or because
    /// counting held at most `MAX_COUNTED_TAGS` of them: then `tags_error` is not 0).
    pub tags_truncated: bool,
    /// 0 when every tag count is exact. Otherwise counting met more distinct tags than it holds
    /// (`MAX_COUNTED_TAGS`, 5,000), and each count in `tags` may be up to this much below the
    /// true one (never above it); a tag that is not listed was carried by at most this many of
    /// the matches.
    pub tags_error: u64,
    /// `storage_info.registry_type`: aios, external (entries without one are not counted here).
    pub registry_types: Vec<FacetCount>,
    /// `storage_info.storage_type`: s3, object-store, fs, unknown.
    pub storage_types: Vec<FacetCount>,
    /// The last health verdict: healthy, auth_required, not_registry, unreachable, or never_checked.
    pub health: Vec<FacetCount>,
}

/// Counts as they accumulate, before sorting.
#[derive(Default)]
pub struct FacetCounter {
    matched: u64,
    tags: TagCounts,
    registry_types: HashMap<String, u64>,
    storage_types: HashMap<String, u64>,
    health: HashMap<String, u64>,
}

impl FacetCounter {
    /// Counts one matching entry.
    pub fn add(&mut self, entry: &ContainerRegistry) {
        let info = &entry.container_registry_storage_info;
        self.add_parts(
            &entry.container_registry_tags,
            info.registry_type,
            info.storage_type,
            entry.container_registry_health.as_ref().map(|h| h.status),
        );
    }

    /// Counts one matching entry given the fields facets count.
    pub fn add_parts<S: AsRef<str>>(
        &mut self,
        tags: &[S],
        registry_type: Option<RegistryType>,
        storage_type: Option<StorageType>,
        health: Option<HealthStatus>,
    ) {
        self.matched += 1;
        for tag in tags {
            self.tags.add(tag.as_ref());
        }
        if let Some(t) = registry_type {
            bump(&mut self.registry_types, registry_type_str(t));
        }
        if let Some(t) = storage_type {
            bump(&mut self.storage_types, storage_type_str(t));
        }
        let status = health.map_or(NEVER_CHECKED, |h| h.as_str());
        bump(&mut self.health, status);
    }

    pub fn finish(self, scanned: u64, complete: bool) -> Facets {
        let tags_error = self.tags.error();
        let tags_truncated = self.tags.len() > MAX_FACET_TAGS || tags_error > 0;
        let mut tags = sorted(self.tags.into_counts());
        tags.truncate(MAX_FACET_TAGS);
        Facets {
            matched: self.matched,
            scanned,
            complete,
            tags,
            tags_truncated,
            tags_error,
            registry_types: sorted(self.registry_types),
            storage_types: sorted(self.storage_types),
            health: sorted(self.health),
        }
    }
}

/// Facet answers by filter, each with the store's write count when it was computed.
pub struct FacetCache {
    kept: Mutex<HashMap<String, Kept>>,
    /// The longest an answer is reused when other processes may write to the store.
    max_age: Duration,
}

struct Kept {
    facets: Arc<Facets>,
    writes: u64,
    at: Instant,
}

impl FacetCache {
    pub fn new(max_age: Duration) -> Self {
        FacetCache {
            kept: Mutex::default(),
            max_age,
        }
    }

    fn get(&self, key: &str, writes: u64, only_writer: bool) -> Option<(Arc<Facets>, Duration)> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let k = kept.get(key)?;
        let age = k.at.elapsed();
        (k.writes == writes && (only_writer || age < self.max_age))
            .then(|| (Arc::clone(&k.facets), age))
    }

    fn put(&self, key: String, facets: Arc<Facets>, writes: u64, at: Instant) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= FACET_CACHE_ENTRIES && !kept.contains_key(&key) {
            let oldest = kept
                .iter()
                .min_by_key(|(_, k)| k.at)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                kept.remove(&oldest);
            }
        }
        kept.insert(key, Kept { facets, writes, at });
    }
}

fn bump(counts: &mut HashMap<String, u64>, value: &str) {
    match counts.get_mut(value) {
        Some(n) => *n += 1,
        None => {
            counts.insert(value.to_string(), 1);
        }
    }
}

fn sorted(counts: HashMap<String, u64>) -> Vec<FacetCount> {
    let mut out: Vec<FacetCount> = counts
        .into_iter()
        .map(|(value, count)| FacetCount { value, count })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    out
}

/// The facets of every entry, from the counts a store keeps (`domain::counts`): exact, and
/// nothing examined.
fn from_kept(kept: KeptCounts) -> Facets {
    let list = |values: Vec<(String, u64)>| {
        values
            .into_iter()
            .map(|(value, count)| FacetCount { value, count })
            .collect::<Vec<_>>()
    };
    let mut tags = list(kept.tags);
    tags.truncate(MAX_FACET_TAGS);
    Facets {
        matched: kept.total,
        scanned: 0,
        complete: true,
        tags_truncated: kept.distinct_tags > tags.len() as u64,
        tags,
        tags_error: 0,
        registry_types: list(kept.registry_types),
        storage_types: list(kept.storage_types),
        health: list(kept.health),
    }
}

/// The wire spelling of a registry type (as serde writes it).
pub fn registry_type_str(t: RegistryType) -> &'static str {
    match t {
        RegistryType::Aios => "aios",
        RegistryType::External => "external",
    }
}

/// The wire spelling of a storage type (as serde writes it).
pub fn storage_type_str(t: StorageType) -> &'static str {
    match t {
        StorageType::S3 => "s3",
        StorageType::ObjectStore => "object-store",
        StorageType::Fs => "fs",
        StorageType::Unknown => "unknown",
    }
}

impl Catalog {
    /// Facet counts over every entry matching `filter`, within one query page's work bound.
    pub async fn facets(&self, filter: &Filter) -> Result<Arc<Facets>, AppError> {
        Ok(self.facets_with_age(filter).await?.0)
    }

    /// [`Catalog::facets`], and how old the answer is when it was kept from an earlier request
    /// (`None` when it was counted now).
    pub async fn facets_with_age(
        &self,
        filter: &Filter,
    ) -> Result<(Arc<Facets>, Option<Duration>), AppError> {
        crate::domain::owner::refuse_owner_field(filter)?;
        // Sized up front: growing it was a visible part of a list page's reallocations.
        let mut key = String::with_capacity(256);
        let _ = write!(key, "{filter:?}");
        let cacheable = key.len() <= FACET_CACHE_MAX_KEY;
        // Noted before reading: a write that lands during the count makes this answer stale at
        // once, never the other way round.
        let writes = self.watched.writes();
        let only_writer = self.store.only_writer();
        if cacheable && let Some((facets, age)) = self.facet_cache.get(&key, writes, only_writer) {
            return Ok((facets, Some(age)));
        }
        let at = Instant::now();
        let facets = Arc::new(self.count_facets(filter).await?);
        if cacheable {
            self.facet_cache.put(key, Arc::clone(&facets), writes, at);
        }
        Ok((facets, None))
    }

    async fn count_facets(&self, filter: &Filter) -> Result<Facets, AppError> {
        let mut counter = FacetCounter::default();
        // `{}` matches everything: skip turning every entry into a document to evaluate it.
        let everything = matches!(filter, Filter::And(all) if all.is_empty());
        // ...and a store that keeps the counts with every write has the answer, exact at any size.
        if everything && let Some(kept) = self.store.kept_counts().await? {
            return Ok(from_kept(kept));
        }
        // The same plan as a query: a tag filter reads only the entries carrying its tags.
        let mut chunks = Chunks::new(self.store.as_ref(), filter, Plan::for_filter(filter), None);
        let fields = Fields::of(filter);
        // The same budget of comparisons as a query page.
        let mut work = Work::new();
        while let Some(chunk) = chunks.next(SCAN_CHUNK).await? {
            for candidate in chunk.candidates {
                // One parse per entry: typed when every candidate counts, else as a document to
                // evaluate, turned into the entry only when it matches.
                if everything || chunk.exact {
                    counter.add(&candidate.entry()?);
                } else {
                    match work.matches(filter, &candidate.document(&fields)?).await? {
                        Some(true) => counter.add(&candidate.entry()?),
                        Some(false) => {}
                        // The budget is spent: the counts cover what was evaluated.
                        None => return Ok(counter.finish(chunks.scanned() as u64, false)),
                    }
                }
            }
        }
        // Stopped by the work bound, not by the end of the plan: the counts say so.
        Ok(counter.finish(chunks.scanned() as u64, chunks.finished()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::domain::catalog::MAX_SCANNED_PER_PAGE;
    use crate::domain::store::StoredEntry;
    use crate::domain::store::{ScanChunk, ScanRequest, Store, StoreError};
    use crate::health::{ProbeConfig, ProbeResult, Prober};

    /// Just enough of a store to hold 20,001 entries in memory: the work bound is about how many
    /// entries are examined, which no store-specific behaviour changes (the API tests cover both
    /// real stores).
    #[derive(Default)]
    struct MemStore(Mutex<BTreeMap<String, ContainerRegistry>>);

    fn not_used() -> StoreError {
        StoreError::Unavailable("not used by this test".into())
    }

    /// Scans only (it says so: `used_index` is false), which is what the work bound is about.
    #[async_trait]
    impl Store for MemStore {
        async fn insert(&self, e: &ContainerRegistry) -> Result<(), StoreError> {
            self.0
                .lock()
                .unwrap()
                .insert(e.container_registry_id.clone(), e.clone());
            Ok(())
        }
        async fn get(&self, _: &str) -> Result<Option<StoredEntry>, StoreError> {
            Err(not_used())
        }
        async fn replace(
            &self,
            _: &ContainerRegistry,
            _: &ContainerRegistry,
        ) -> Result<(), StoreError> {
            Err(not_used())
        }
        async fn delete(&self, _: &str) -> Result<bool, StoreError> {
            Err(not_used())
        }
        async fn export(
            &self,
            _: tokio::sync::mpsc::Sender<crate::domain::store::Exported>,
        ) -> Result<u64, StoreError> {
            Err(not_used())
        }
        async fn scan(&self, request: ScanRequest<'_>) -> Result<ScanChunk, StoreError> {
            let map = self.0.lock().unwrap();
            let mut rest = map
                .iter()
                .filter(|(k, _)| request.after.is_none_or(|a| k.as_str() > a))
                .peekable();
            let mut candidates = Vec::new();
            let mut last_key = None;
            while candidates.len() < request.max_entries {
                let Some((k, v)) = rest.next() else { break };
                candidates.push(StoredEntry {
                    id: k.as_str().into(),
                    json: serde_json::to_vec(v).unwrap().into(),
                });
                last_key = Some(k.clone());
            }
            if rest.peek().is_none() {
                last_key = None;
            }
            Ok(ScanChunk {
                scanned: candidates.len(),
                index_keys: 0,
                candidates,
                last_key,
                exact: false,
                used_index: false,
            })
        }
        async fn probe_targets(
            &self,
            _: Option<&str>,
            _: usize,
        ) -> Result<(Vec<crate::domain::store::ProbeTarget>, Option<String>), StoreError> {
            Err(not_used())
        }
        async fn set_health(&self, _: &str, _: &ProbeResult) -> Result<bool, StoreError> {
            Err(not_used())
        }
        async fn record_probe(
            &self,
            _: &str,
            _: crate::domain::history::Day,
            _: crate::domain::history::ProbeSample,
        ) -> Result<bool, StoreError> {
            Err(not_used())
        }
        async fn health_days(
            &self,
            _: &str,
            _: crate::domain::history::Day,
            _: crate::domain::history::Day,
        ) -> Result<
            Vec<(
                crate::domain::history::Day,
                crate::domain::history::DayCounts,
            )>,
            StoreError,
        > {
            Err(not_used())
        }
        async fn restore_history(
            &self,
            _: &str,
            _: &[(
                crate::domain::history::Day,
                crate::domain::history::DayCounts,
            )],
        ) -> Result<(), StoreError> {
            Err(not_used())
        }
        async fn reindex_counted(
            &self,
            _: Arc<crate::domain::store::ReindexProgress>,
        ) -> Result<crate::domain::store::ReindexReport, StoreError> {
            Err(not_used())
        }
        fn describe(&self) -> String {
            "memory".into()
        }
    }

    async fn catalog_with(n: usize) -> Catalog {
        let store = MemStore::default();
        for i in 0..n {
            let e = ContainerRegistry::from_create(json!({
                "container_registry_id": format!("e{i:06}"),
                "container_registry_name": format!("r{i}"),
                "container_registry_public_url": "http://10.0.0.1:5000",
                "container_registry_tags": ["all", if i % 2 == 0 { "even" } else { "odd" }],
            }))
            .unwrap();
            store.insert(&e).await.unwrap();
        }
        Catalog::new(Arc::new(store), Prober::new(ProbeConfig::default()))
    }

    #[tokio::test]
    async fn counts_are_complete_up_to_the_work_bound_and_say_so_past_it() {
        let all = Filter::parse(&json!({"container_registry_tags": "all"})).unwrap();
        let at = catalog_with(MAX_SCANNED_PER_PAGE).await;
        let f = at.facets(&all).await.unwrap();
        assert!(f.complete);
        assert_eq!(f.matched, MAX_SCANNED_PER_PAGE as u64);
        assert_eq!(
            f.tags[0],
            FacetCount {
                value: "all".into(),
                count: 20_000
            }
        );
        assert_eq!(
            f.health,
            [FacetCount {
                value: NEVER_CHECKED.into(),
                count: 20_000
            }]
        );

        let past = catalog_with(MAX_SCANNED_PER_PAGE + 1).await;
        let f = past.facets(&all).await.unwrap();
        assert!(!f.complete);
        assert_eq!(f.scanned, MAX_SCANNED_PER_PAGE as u64);
        assert_eq!(f.matched, MAX_SCANNED_PER_PAGE as u64);

        let odd = Filter::parse(&json!({"container_registry_tags": "odd"})).unwrap();
        let f = at.facets(&odd).await.unwrap();
        assert_eq!(f.matched, 10_000);
        assert_eq!(
            f.tags,
            [
                FacetCount {
                    value: "all".into(),
                    count: 10_000
                },
                FacetCount {
                    value: "odd".into(),
                    count: 10_000
                },
            ]
        );
    }
}
