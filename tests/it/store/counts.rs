//! Kept counts (`domain::counts`), on both stores: after thousands of random writes (creates,
//! updates that change tags and types, deletes, health verdicts, owners), concurrent ones included,
//! they equal a full recount of the entries; `POST /container_registries/facets` with `{}` answers
//! from them, exact past the work bound; they survive a `kill -9` of the real server mid-writes;
//! `reindex` finds injected drift, reports it and repairs it.

use crate::support;

use std::sync::Arc;

use registry_db::domain::catalog::Catalog;
use registry_db::domain::counts::{CountReader, KeptCounts, Recount, entry_keys};
use registry_db::domain::entry::ContainerRegistry;
use registry_db::health::{HealthStatus, ProbeResult};
use registry_db::query::Filter;
use registry_db::store::Store;
use registry_db::store::embedded::EmbeddedStore;
use serde_json::{Value, json};

const TAGS: [&str; 6] = ["ai", "gpu", "cpu", "eu", "us", "edge"];
const HEALTH: [HealthStatus; 4] = [
    HealthStatus::Healthy,
    HealthStatus::AuthRequired,
    HealthStatus::NotRegistry,
    HealthStatus::Unreachable,
];

/// A small deterministic generator (no shared state between tasks).
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }

    fn tags(&mut self) -> Value {
        let n = self.next(4);
        let tags: Vec<&str> = (0..n).map(|_| TAGS[self.next(6) as usize]).collect();
        let mut unique = tags.clone();
        unique.sort();
        unique.dedup();
        json!(unique)
    }

    fn storage(&mut self) -> Value {
        let mut info = serde_json::Map::new();
        match self.next(3) {
            0 => {}
            1 => {
                info.insert("registry_type".into(), json!("aios"));
            }
            _ => {
                info.insert("registry_type".into(), json!("external"));
            }
        }
        if self.next(2) == 0 {
            let t = ["s3", "fs", "object-store", "unknown"][self.next(4) as usize];
            info.insert("storage_type".into(), json!(t));
        }
        Value::Object(info)
    }
}

fn probe(status: HealthStatus) -> ProbeResult {
    ProbeResult {
        url: "http://10.0.0.1:5000/v2/".into(),
        reachable: status != HealthStatus::Unreachable,
        status_code: None,
        reason: None,
        status,
        latency_ms: None,
        api_version: None,
        challenge: None,
        checked_at: "2026-12-08T00:00:00Z".into(),
        error: None,
        refused_by: None,
        uptime_30d: None,
    }
}

/// Every counter recounted from the entries as the store exports them, with their owners.
async fn recount(store: &Arc<dyn Store>) -> KeptCounts {
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let reading = {
        let store = store.clone();
        tokio::spawn(async move { store.export(tx).await })
    };
    let mut entries = Vec::new();
    while let Some(entry) = rx.recv().await {
        entries.push(entry);
    }
    reading.await.unwrap().unwrap();
    let mut recount = Recount::default();
    for exported in &entries {
        recount.add(&entry_keys(&exported.entry, exported.owner.is_some()));
    }
    let mut reader = CountReader::default();
    for (key, n) in recount.0 {
        reader.add(&key, n as u64);
    }
    reader.finish()
}

/// `ops` random writes through the catalog and the store, on ids `e{base}..e{base+span}`.
async fn random_writes(catalog: Catalog, seed: u64, ops: usize, span: u64) -> usize {
    let mut rng = Rng(seed);
    let mut done = 0;
    for _ in 0..ops {
        let id = format!("e{:04}", rng.next(span));
        let applied = match rng.next(10) {
            0..=3 => {
                let body = json!({
                    "container_registry_id": id,
                    "container_registry_name": format!("registry {id}"),
                    "container_registry_public_url": "http://10.0.0.1:5000",
                    "container_registry_tags": rng.tags(),
                    "container_registry_storage_info": rng.storage(),
                });
                catalog.create(body).await.is_ok()
            }
            4..=5 => {
                let update = json!({"$set": {
                    "container_registry_tags": rng.tags(),
                    "container_registry_storage_info": rng.storage(),
                }});
                catalog.update(&id, &update).await.is_ok()
            }
            6 => catalog.delete(&id).await.is_ok(),
            7..=8 => {
                let status = HEALTH[rng.next(4) as usize];
                catalog
                    .store()
                    .set_health(&id, &probe(status))
                    .await
                    .unwrap()
            }
            _ => {
                // A first owner (a rotation from no owner), as a create under owners makes.
                let token = format!("owner-{seed}-{done}");
                catalog
                    .store()
                    .set_owner(&id, None, &token)
                    .await
                    .unwrap_or(false)
            }
        };
        done += usize::from(applied);
    }
    done
}

fn registry(store: Arc<dyn Store>) -> Catalog {
    Catalog::new(store, support::loopback_prober(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_counts_equal_a_recount_after_thousands_of_random_writes() {
    for s in support::stores().await {
        let catalog = registry(s.store.clone());
        // Fewer on dynalite, which takes milliseconds a write.
        let (sequential, per_task) = if s.name == "embedded" {
            (3000, 1000)
        } else {
            (1200, 300)
        };
        let applied = random_writes(catalog.clone(), 1, sequential, 150).await;
        assert!(
            applied > sequential / 3,
            "{}: {applied} writes applied",
            s.name
        );
        let kept = s.store.kept_counts().await.unwrap().expect("kept counts");
        assert_eq!(
            kept,
            recount(&s.store).await,
            "{}: after sequential writes",
            s.name
        );
        assert!(kept.total > 0 && kept.owned > 0, "{}: {kept:?}", s.name);

        // Four writers at once on the same ids: updates race deletes, verdicts race updates.
        let tasks: Vec<_> = (0..4)
            .map(|t| tokio::spawn(random_writes(catalog.clone(), 100 + t, per_task, 150)))
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let kept = s.store.kept_counts().await.unwrap().expect("kept counts");
        let truth = recount(&s.store).await;
        assert_eq!(kept, truth, "{}: after concurrent writes", s.name);

        // The facets of `{}` are the kept counts: exact, complete, nothing examined.
        let facets = catalog
            .facets(&Filter::parse(&json!({})).unwrap())
            .await
            .unwrap();
        assert!(facets.complete, "{}", s.name);
        assert_eq!(facets.scanned, 0, "{}", s.name);
        assert_eq!(facets.matched, truth.total, "{}", s.name);
        let tags: Vec<(String, u64)> = facets
            .tags
            .iter()
            .map(|c| (c.value.clone(), c.count))
            .collect();
        assert_eq!(tags, truth.tags, "{}", s.name);
        let health: Vec<(String, u64)> = facets
            .health
            .iter()
            .map(|c| (c.value.clone(), c.count))
            .collect();
        assert_eq!(health, truth.health, "{}", s.name);

        // And reindex finds nothing to repair.
        let report = s.store.reindex().await.unwrap();
        assert_eq!(report.counts_drifted, 0, "{}: {report:?}", s.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facets_of_everything_are_exact_past_the_work_bound() {
    let (store, _dir) = support::embedded_store();
    let entries: Vec<ContainerRegistry> = (0..25_000)
        .map(|i| {
            ContainerRegistry::from_create(json!({
                "container_registry_id": format!("b{i:06}"),
                "container_registry_name": format!("bulk {i}"),
                "container_registry_public_url": "http://10.0.0.1:5000",
                "container_registry_tags": if i % 5 == 0 { json!(["gpu", "all"]) } else { json!(["all"]) },
            }))
            .unwrap()
        })
        .collect();
    for batch in entries.chunks(2000) {
        assert!(store.insert_many(batch).await.iter().all(Result::is_ok));
    }
    let catalog = registry(store.clone());
    let facets = catalog
        .facets(&Filter::parse(&json!({})).unwrap())
        .await
        .unwrap();
    assert!(facets.complete);
    assert_eq!(facets.matched, 25_000);
    assert_eq!(facets.scanned, 0);
    assert_eq!(
        facets
            .tags
            .iter()
            .map(|c| (c.value.as_str(), c.count))
            .collect::<Vec<_>>(),
        [("all", 25_000), ("gpu", 5_000)]
    );
    // Another filter still counts from the entries, within the work bound.
    let facets = catalog
        .facets(&Filter::parse(&json!({"container_registry_name": {"$exists": true}})).unwrap())
        .await
        .unwrap();
    assert!(!facets.complete);
    assert_eq!(facets.matched, 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_repairs_injected_drift_and_reports_it() {
    // Embedded: a counter set wrong behind the store's back.
    let dir = tempfile::tempdir().unwrap();
    {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        random_writes(registry(store.clone()), 7, 400, 60).await;
    }
    let embedded = EmbeddedStore::open(dir.path()).unwrap();
    embedded.set_counter_for_test("t:ai", 9999).unwrap();
    embedded.set_counter_for_test("t:never-carried", 3).unwrap();
    let store: Arc<dyn Store> = Arc::new(embedded);
    let truth = recount(&store).await;
    assert_ne!(store.kept_counts().await.unwrap().unwrap(), truth);
    let report = store.reindex().await.unwrap();
    assert_eq!(report.counts_drifted, 2, "{report:?}");
    let ai = truth
        .tags
        .iter()
        .find(|(t, _)| t == "ai")
        .map_or(0, |(_, n)| *n) as i64;
    let drift: Vec<(&str, i64, i64)> = report
        .drift
        .iter()
        .map(|d| (d.counter.as_str(), d.kept, d.recounted))
        .collect();
    assert_eq!(drift, [("t:ai", 9999, ai), ("t:never-carried", 3, 0)]);
    assert_eq!(store.kept_counts().await.unwrap().unwrap(), truth);
    assert_eq!(store.reindex().await.unwrap().counts_drifted, 0);

    // DynamoDB: an ADD to one shard's counter item, straight through the client.
    let named = support::dynamo_store_named("drift").await;
    let store = named.store.clone();
    random_writes(registry(store.clone()), 8, 200, 40).await;
    let truth = recount(&store).await;
    let tag_table = registry_db::store::dynamodb::default_tag_table(&named.table);
    use aws_sdk_dynamodb::types::AttributeValue;
    support::dynamo_client()
        .update_item()
        .table_name(&tag_table)
        .key(
            "tag",
            AttributeValue::S(registry_db::store::dynamodb::counts_partition(3)),
        )
        .key("container_registry_id", AttributeValue::S("totals".into()))
        .update_expression("ADD #n :d")
        .expression_attribute_names("#n", "n")
        .expression_attribute_values(":d", AttributeValue::N("5".into()))
        .send()
        .await
        .unwrap();
    let kept = store.kept_counts().await.unwrap().unwrap();
    assert_eq!(kept.total, truth.total + 5);
    let report = store.reindex().await.unwrap();
    assert_eq!(report.counts_drifted, 1, "{report:?}");
    assert_eq!(report.drift[0].counter, "n");
    assert_eq!(report.drift[0].kept, truth.total as i64 + 5);
    assert_eq!(report.drift[0].recounted, truth.total as i64);
    assert_eq!(store.kept_counts().await.unwrap().unwrap(), truth);
}

/// The real server, killed with SIGKILL while clients write: every committed write carried its
/// counts, so the file reopened holds counts equal to a recount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_counts_survive_a_kill_9_of_the_real_server_mid_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let server = support::start_server(&["--data", &data], &[]);
    let base = server.base.clone();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let acknowledged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let (client, base, acknowledged) = (client.clone(), base.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let mut rng = Rng(t + 11);
                // Until the server dies under it.
                for i in 0.. {
                    let id = format!("k{}", rng.next(200));
                    let sent = match i % 3 {
                        0 => {
                            client
                                .post(format!("{base}/container_registry"))
                                .json(&json!({
                                    "container_registry_id": id,
                                    "container_registry_name": format!("reg {id}"),
                                    "container_registry_public_url": "http://10.0.0.1:5000",
                                    "container_registry_tags": rng.tags(),
                                    "container_registry_storage_info": rng.storage(),
                                }))
                                .send()
                                .await
                        }
                        1 => {
                            client
                                .put(format!("{base}/container_registry/{id}"))
                                .json(&json!({"$set": {"container_registry_tags": rng.tags()}}))
                                .send()
                                .await
                        }
                        _ => {
                            client
                                .delete(format!("{base}/container_registry/{id}"))
                                .send()
                                .await
                        }
                    };
                    match sent {
                        Ok(_) => {
                            acknowledged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    // Kill once the writers are well under way (a count, not a time).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while acknowledged.load(std::sync::atomic::Ordering::Relaxed) < 600 {
        assert!(std::time::Instant::now() < deadline, "the writers stalled");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(server); // SIGKILL, with writes in flight
    for w in writers {
        w.await.unwrap();
    }
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let kept = store.kept_counts().await.unwrap().unwrap();
    let truth = recount(&store).await;
    assert!(truth.total > 0);
    assert_eq!(kept, truth);
    assert_eq!(store.reindex().await.unwrap().counts_drifted, 0);
}
