//! The tag index, on both stores: a tag query reads only the entries that carry the tags (counted by
//! what the store read), the index follows every write, paging stays exact while tags change, and a
//! store that predates the index is still answered exactly, then indexed by `reindex`.

use crate::support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use registry_db::domain::catalog::Catalog;
use registry_db::domain::entry::ContainerRegistry;
use registry_db::query::Filter;
use registry_db::store::Store;
use registry_db::store::dynamodb::filter::TranslateOptions;
use registry_db::store::dynamodb::{DynamoStore, default_tag_table};
use serde_dynamo::aws_sdk_dynamodb_1 as dynamo;
use serde_json::{Value, json};

fn registry(store: Arc<dyn Store>) -> Catalog {
    Catalog::new(store, support::loopback_prober(100))
}

fn entry(i: usize, tags: Value) -> ContainerRegistry {
    ContainerRegistry::from_create(json!({
        "container_registry_id": format!("e{i:05}"),
        "container_registry_name": format!("registry-{i}"),
        "container_registry_public_url": "http://10.0.0.1:5000",
        "container_registry_tags": tags,
        "container_registry_metadata": {"n": i},
    }))
    .unwrap()
}

/// Every page of a query: ids in order, entries examined in all.
async fn all_pages(registry: &Catalog, filter: &Value, limit: usize) -> (Vec<String>, usize) {
    let filter = Filter::parse(filter).unwrap();
    let (mut ids, mut scanned, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let page = registry
            .query(&filter, limit, cursor.as_deref())
            .await
            .unwrap();
        scanned += page.scanned;
        ids.extend(page.entries.iter().map(|e| e.id.to_string()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return (ids, scanned),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_query_reads_only_the_entries_that_carry_the_tags() {
    const ENTRIES: usize = 2000;
    for s in support::stores().await {
        let registry = registry(s.store.clone());
        for i in 0..ENTRIES {
            let tags = match i % 100 {
                0 => json!(["gpu", "ai"]),
                1 => json!(["gpu"]),
                2 => json!(["ai", "eu"]),
                _ => json!(["cpu"]),
            };
            s.store.insert(&entry(i, tags)).await.unwrap();
        }
        let cases = [
            (json!({"container_registry_tags": "gpu"}), 40, 40),
            (
                json!({"container_registry_tags": {"$in": ["gpu", "eu"]}}),
                60,
                60,
            ),
            // $all reads only entries carrying both.
            (
                json!({"container_registry_tags": {"$all": ["gpu", "ai"]}}),
                20,
                20,
            ),
            // Other conditions are evaluated on what the index selected.
            (
                json!({"container_registry_tags": "gpu", "container_registry_metadata.n": {"$lt": 1000}}),
                20,
                40,
            ),
            (
                json!({"$or": [{"container_registry_tags": "eu"}, {"container_registry_tags": {"$all": ["ai", "gpu"]}}]}),
                40,
                40,
            ),
        ];
        for (filter, matches, examined) in cases {
            for limit in [7, 1000] {
                let (ids, scanned) = all_pages(&registry, &filter, limit).await;
                assert_eq!(ids.len(), matches, "{}: {filter} (limit {limit})", s.name);
                let unique: BTreeSet<_> = ids.iter().collect();
                assert_eq!(
                    unique.len(),
                    ids.len(),
                    "{}: {filter} repeated an entry",
                    s.name
                );
                assert_eq!(
                    scanned, examined,
                    "{}: {filter} (limit {limit}) examined {scanned} of {ENTRIES} entries",
                    s.name
                );
            }
        }
        // A filter the index cannot serve still examines every entry, once.
        let (ids, scanned) = all_pages(
            &registry,
            &json!({"container_registry_tags": {"$ne": "cpu"}}),
            1000,
        )
        .await;
        assert_eq!(ids.len(), 60, "{}", s.name);
        assert_eq!(scanned, ENTRIES, "{}", s.name);

        // Pages of 20 of a filter every entry matches: each page reads what it returns, so the
        // pages together read each entry once (reading a whole 1,000-entry chunk per page would
        // read most of them again on the next page).
        let everything = json!({"container_registry_metadata.n": {"$gte": 0}});
        let (ids, scanned) = all_pages(&registry, &everything, 20).await;
        assert_eq!(ids.len(), ENTRIES, "{}", s.name);
        assert_eq!(scanned, ENTRIES, "{}: pages re-read entries", s.name);
    }
}

#[tokio::test]
async fn the_index_follows_creates_updates_and_deletes() {
    for s in support::stores().await {
        let registry = registry(s.store.clone());
        let created = registry
            .create(json!({
                "container_registry_id": "r1",
                "container_registry_name": "one",
                "container_registry_public_url": "http://10.0.0.1:5000",
                "container_registry_tags": ["a", "b"],
            }))
            .await
            .unwrap();
        assert_eq!(created.container_registry_tags, ["a", "b"]);
        let find = |tag: &'static str| {
            let registry = registry.clone();
            async move {
                all_pages(&registry, &json!({"container_registry_tags": tag}), 10)
                    .await
                    .0
            }
        };
        assert_eq!(find("a").await, ["r1"], "{}", s.name);
        for update in [
            json!({"$pull": {"container_registry_tags": "a"}}),
            json!({"$push": {"container_registry_tags": "c"}}),
        ] {
            registry.update("r1", &update).await.unwrap();
        }
        assert!(find("a").await.is_empty(), "{}: a was removed", s.name);
        assert_eq!(find("b").await, ["r1"], "{}", s.name);
        assert_eq!(find("c").await, ["r1"], "{}", s.name);
        // A whole-entry update that replaces every tag.
        registry
            .update("r1", &json!({"container_registry_tags": ["z"]}))
            .await
            .unwrap();
        for gone in ["b", "c"] {
            assert!(find(gone).await.is_empty(), "{}: {gone}", s.name);
        }
        assert_eq!(find("z").await, ["r1"], "{}", s.name);
        registry.delete("r1").await.unwrap();
        assert!(find("z").await.is_empty(), "{}: deleted", s.name);
        // Nothing is left behind: a rebuild finds no stale key.
        let report = registry.reindex().await.unwrap();
        assert_eq!(
            (report.entries, report.index_keys, report.stale_keys_removed),
            (0, 0, 0),
            "{}",
            s.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_an_indexed_query_while_tags_change_never_repeats_or_skips_a_stable_entry() {
    for s in support::stores().await {
        let registry = registry(s.store.clone());
        // 60 entries tagged "x"; 40 of them keep it throughout; 20 lose it, and 20 others gain it,
        // while the client pages 5 at a time.
        for i in 0..100 {
            let tags = if i < 60 { json!(["x"]) } else { json!(["y"]) };
            s.store.insert(&entry(i, tags)).await.unwrap();
        }
        let stable: BTreeSet<String> = (0..60)
            .filter(|i| i % 3 != 0)
            .map(|i| format!("e{i:05}"))
            .collect();
        let filter = Filter::parse(&json!({"container_registry_tags": {"$in": ["x"]}})).unwrap();
        let (mut seen, mut cursor, mut step) = (Vec::new(), None::<String>, 0usize);
        loop {
            let page = registry.query(&filter, 5, cursor.as_deref()).await.unwrap();
            seen.extend(page.entries.iter().map(|e| e.id.to_string()));
            // Between pages: one entry loses the tag, another gains it.
            let lose = step * 3;
            if lose < 60 {
                registry
                    .update(
                        &format!("e{lose:05}"),
                        &json!({"$set": {"container_registry_tags": ["y"]}}),
                    )
                    .await
                    .unwrap();
            }
            let gain = 60 + step;
            if gain < 80 {
                registry
                    .update(
                        &format!("e{gain:05}"),
                        &json!({"$addToSet": {"container_registry_tags": "x"}}),
                    )
                    .await
                    .unwrap();
            }
            step += 1;
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "{}: an entry came twice", s.name);
        assert!(
            stable.is_subset(&unique),
            "{}: stable entries missing: {:?}",
            s.name,
            stable.difference(&unique).collect::<Vec<_>>()
        );
        // Every entry returned carried the tag when its page was read; the final state agrees
        // with the evaluator.
        let (now, _) = all_pages(&registry, &json!({"container_registry_tags": "x"}), 1000).await;
        let lost = |i: usize| i < 60 && i.is_multiple_of(3) && i / 3 < step;
        let gained = |i: usize| (60..80).contains(&i) && i - 60 < step;
        let expected: Vec<String> = (0..100)
            .filter(|&i| (i < 60 && !lost(i)) || gained(i))
            .map(|i| format!("e{i:05}"))
            .collect();
        assert_eq!(now, expected, "{}", s.name);
    }
}

/// A DynamoDB table written before the index existed: entries only, no index items.
async fn legacy_dynamo_table(entries: &[ContainerRegistry]) -> DynamoStore {
    let client = support::dynamo_client();
    let table = format!("legacy{}", std::process::id());
    let tag_table = default_tag_table(&table);
    let store = DynamoStore::from_client(
        client.clone(),
        &table,
        &tag_table,
        TranslateOptions::DYNALITE,
    );
    // Create the entries table first, with an entry in it, then let ensure_table add the index
    // table beside it: an upgrade, not a fresh install.
    let fresh = DynamoStore::from_client(
        client.clone(),
        &table,
        &format!("{table}-unused"),
        TranslateOptions::DYNALITE,
    );
    fresh.ensure_table().await.unwrap();
    for e in entries {
        let item: HashMap<String, AttributeValue> = dynamo::to_item(e).unwrap();
        client
            .put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
    store.ensure_table().await.unwrap();
    store
}

#[tokio::test]
async fn a_dynamodb_table_from_before_the_index_is_scanned_until_reindexed() {
    let entries: Vec<ContainerRegistry> = (0..30)
        .map(|i| {
            entry(
                i,
                if i % 3 == 0 {
                    json!(["gpu"])
                } else {
                    json!(["cpu"])
                },
            )
        })
        .collect();
    let store: Arc<dyn Store> = Arc::new(legacy_dynamo_table(&entries).await);
    let registry = registry(store.clone());
    let gpu = json!({"container_registry_tags": "gpu"});
    let (ids, _) = all_pages(&registry, &gpu, 4).await;
    assert_eq!(ids.len(), 10, "the answer is exact before the index exists");
    let (_, scanned) = all_pages(&registry, &gpu, 1000).await;
    assert_eq!(scanned, 30, "without a complete index the table is scanned");

    let report = registry.reindex().await.unwrap();
    assert_eq!((report.entries, report.index_keys), (30, 30));
    let store2: Arc<dyn Store> = Arc::new(DynamoStore::from_client(
        support::dynamo_client(),
        &format!("legacy{}", std::process::id()),
        &default_tag_table(&format!("legacy{}", std::process::id())),
        TranslateOptions::DYNALITE,
    ));
    for store in [store, store2] {
        let (ids, scanned) = all_pages(&registry_for(store), &gpu, 4).await;
        assert_eq!(ids.len(), 10);
        assert_eq!(
            scanned, 10,
            "after reindex only the tagged entries are read"
        );
    }
}

fn registry_for(store: Arc<dyn Store>) -> Catalog {
    registry(store)
}

#[tokio::test]
async fn an_embedded_store_from_before_the_index_is_indexed_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The file layout of the version before the index: entries only.
        let db = redb::Database::create(dir.path().join("registry-db.redb")).unwrap();
        let table: redb::TableDefinition<&str, &[u8]> =
            redb::TableDefinition::new("container_registries");
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(table).unwrap();
            for i in 0..30 {
                let e = entry(
                    i,
                    if i % 3 == 0 {
                        json!(["gpu"])
                    } else {
                        json!(["cpu"])
                    },
                );
                t.insert(
                    e.container_registry_id.as_str(),
                    serde_json::to_vec(&e).unwrap().as_slice(),
                )
                .unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let store: Arc<dyn Store> =
        Arc::new(registry_db::store::embedded::EmbeddedStore::open(dir.path()).unwrap());
    let (ids, scanned) = all_pages(
        &registry(store),
        &json!({"container_registry_tags": "gpu"}),
        4,
    )
    .await;
    assert_eq!(ids.len(), 10);
    assert_eq!(scanned, 10, "the index was built at open, and used");
}

#[tokio::test]
async fn reindex_removes_index_keys_no_entry_calls_for() {
    for s in support::stores().await {
        let registry = registry(s.store.clone());
        for i in 0..5 {
            s.store.insert(&entry(i, json!(["a"]))).await.unwrap();
        }
        let report = registry.reindex().await.unwrap();
        assert_eq!(
            (report.entries, report.index_keys, report.stale_keys_removed),
            (5, 5, 0),
            "{}",
            s.name
        );
    }
    // A stale DynamoDB index item (as a crash between writes of an older version could leave):
    // queries stay exact, and reindex removes it.
    let store = support::dynamo_store_named("stale").await;
    let registry = registry(store.store.clone());
    store.store.insert(&entry(1, json!(["a"]))).await.unwrap();
    support::dynamo_client()
        .put_item()
        .table_name(default_tag_table(&store.table))
        .item("tag", AttributeValue::S("b".into()))
        .item("container_registry_id", AttributeValue::S("e00001".into()))
        .send()
        .await
        .unwrap();
    support::dynamo_client()
        .put_item()
        .table_name(default_tag_table(&store.table))
        .item("tag", AttributeValue::S("a".into()))
        .item("container_registry_id", AttributeValue::S("ghost".into()))
        .send()
        .await
        .unwrap();
    let (ids, _) = all_pages(
        &registry,
        &json!({"container_registry_tags": {"$in": ["a", "b"]}}),
        10,
    )
    .await;
    assert_eq!(ids, ["e00001"]);
    let (ids, _) = all_pages(&registry, &json!({"container_registry_tags": "b"}), 10).await;
    assert!(
        ids.is_empty(),
        "a stale index item never makes a wrong answer"
    );
    let report = registry.reindex().await.unwrap();
    assert_eq!(
        (report.entries, report.index_keys, report.stale_keys_removed),
        (1, 1, 2)
    );
}

/// The embedded store keeps entries and tag lists it read in memory (`store::entry_cache`):
/// repeated GETs and tag queries are served from there, and no read, however it races with writes,
/// answers an entry's bytes or a tag's members from before a write that was acknowledged, nor an
/// entry that does not match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_entry_cache_serves_repeats_and_never_an_acknowledged_write_s_old_bytes() {
    use registry_db::store::embedded::EmbeddedStore;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let registry = registry(store.clone());
    for i in 0..50 {
        let tags = if i % 2 == 0 {
            json!(["gpu"])
        } else {
            json!(["cpu"])
        };
        store.insert(&entry(i, tags)).await.unwrap();
    }
    let gpu = json!({"container_registry_tags": "gpu"});
    let (first, _) = all_pages(&registry, &gpu, 10).await;
    assert_eq!(first.len(), 25);
    let before = store.cache_stats();
    let (again, _) = all_pages(&registry, &gpu, 10).await;
    assert_eq!(again, first);
    let after = store.cache_stats();
    assert_eq!(after.hits - before.hits, 25, "{before:?} -> {after:?}");
    assert_eq!(after.misses, before.misses, "{before:?} -> {after:?}");
    assert_eq!(after.postings, 1, "the gpu list is cached: {after:?}");

    // A write is seen by the next GET and the next query, with its new bytes.
    let gpu_filter = Filter::parse(&gpu).unwrap();
    let gpu_page = async || registry.query(&gpu_filter, 100, None).await.unwrap();
    let name = |json: &[u8]| {
        serde_json::from_slice::<Value>(json).unwrap()["container_registry_name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    registry
        .update("e00002", &json!({"container_registry_name": "renamed"}))
        .await
        .unwrap();
    assert_eq!(name(&registry.get("e00002").await.unwrap().json), "renamed");
    let page = gpu_page().await;
    let e2 = page.entries.iter().find(|e| e.id == "e00002").unwrap();
    assert_eq!(name(&e2.json), "renamed");
    registry
        .update("e00004", &json!({"container_registry_tags": ["cpu"]}))
        .await
        .unwrap();
    let page = gpu_page().await;
    assert_eq!(page.entries.len(), 24);
    for e in &page.entries {
        let v: Value = serde_json::from_slice(&e.json).unwrap();
        assert_eq!(v["container_registry_tags"], json!(["gpu"]), "{}", e.id);
    }

    // Readers hammer one entry (filling the cache whenever they miss) while it is written 100
    // times; after each acknowledged write, a GET and a tag query see that write.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (registry, stop) = (registry.clone(), stop.clone());
            let gpu = Filter::parse(&gpu).unwrap();
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    registry.get("e00006").await.unwrap();
                    let page = registry.query(&gpu, 100, None).await.unwrap();
                    for e in &page.entries {
                        let v: Value = serde_json::from_slice(&e.json).unwrap();
                        assert_eq!(v["container_registry_tags"], json!(["gpu"]), "{}", e.id);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for k in 0..100 {
        let written = format!("write-{k}");
        registry
            .update("e00006", &json!({"container_registry_name": written}))
            .await
            .unwrap();
        assert_eq!(name(&registry.get("e00006").await.unwrap().json), written);
        let page = gpu_page().await;
        let e6 = page.entries.iter().find(|e| e.id == "e00006").unwrap();
        assert_eq!(name(&e6.json), written);
        // An entry moved in and out of the tag is in the next query exactly when it carries it.
        let tags = if k % 2 == 0 {
            json!(["cpu"])
        } else {
            json!(["gpu"])
        };
        registry
            .update("e00008", &json!({"container_registry_tags": tags}))
            .await
            .unwrap();
        let page = gpu_page().await;
        let has_e8 = page.entries.iter().any(|e| e.id == "e00008");
        assert_eq!(has_e8, k % 2 == 1, "after write {k}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    assert!(store.cache_stats().hits > 100, "{:?}", store.cache_stats());
}
