//! The name index (`domain::words`): a word search of the name reads only the entries whose name
//! has a word beginning with the term (counted by what the store read, as `tag_index.rs` does),
//! combined with tags through the same plan, follows renames and deletes, and always answers
//! exactly what evaluating the same filter on every entry answers. The embedded store keeps the
//! index; DynamoDB keeps none and answers the same filters by its scan (same answers).

use crate::support;

use std::sync::Arc;

use registry_db::domain::catalog::Catalog;
use registry_db::domain::entry::ContainerRegistry;
use registry_db::domain::words::word_pattern;
use registry_db::query::Filter;
use registry_db::store::Store;
use registry_db::web::search::Search;
use serde_json::{Value, json};

const ENTRIES: usize = 2000;

fn entry(i: usize) -> ContainerRegistry {
    let word = ["alpha", "beta", "gamma", "delta"][i % 4];
    ContainerRegistry::from_create(json!({
        "container_registry_id": format!("n{i:05}"),
        "container_registry_name": format!("Registry-{i} {word}"),
        "container_registry_public_url": "http://10.0.0.1:5000",
        "container_registry_tags": if i % 10 == 0 { json!(["gpu"]) } else { json!(["cpu"]) },
    }))
    .unwrap()
}

/// Every page of a query: ids in order, entries examined in all.
async fn all_pages(catalog: &Catalog, filter: &Value, limit: usize) -> (Vec<String>, usize) {
    let filter = Filter::parse(filter).unwrap();
    let (mut ids, mut scanned, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let page = catalog
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

fn word(term: &str) -> Value {
    json!({"container_registry_name": {"$regex": word_pattern(term), "$options": "i"}})
}

/// The same filter, in a form no index serves (a double `$nor`): evaluated on every entry.
fn unindexed(filter: &Value) -> Value {
    json!({"$nor": [{"$nor": [filter]}]})
}

/// The ids a filter matches, by evaluating it on every entry (sorted like the index's answer).
async fn evaluated(catalog: &Catalog, filter: &Value) -> (Vec<String>, usize) {
    let (mut ids, scanned) = all_pages(catalog, &unindexed(filter), 1000).await;
    ids.sort();
    (ids, scanned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_search_reads_only_the_entries_whose_words_match() {
    for s in support::stores().await {
        let catalog = Catalog::new(s.store.clone(), support::loopback_prober(100));
        let entries: Vec<ContainerRegistry> = (0..ENTRIES).map(entry).collect();
        for batch in entries.chunks(500) {
            for r in s.store.insert_many(batch).await {
                r.unwrap();
            }
        }
        // "77" begins the words 77 and 770-779 (not 1770); "gpu" on 770.
        let search = |q: &str| Search::from_query(Some(q)).filter_json().unwrap();
        let cases = [
            (word("77"), 11),
            (word("beta"), 500),
            (word("registry"), ENTRIES),
            (search("q=registry-77"), 11),
            (search("q=REGISTRY-77+al"), 2),
            (
                json!({"$and": [word("77"), {"container_registry_tags": "gpu"}]}),
                1,
            ),
            (json!({"$or": [word("77"), word("1999")]}), 12),
            // Longer than the index's prefixes: the 12-character prefix's list, narrowed.
            (word("registryxxxxxx"), 0),
        ];
        for (filter, matches) in cases {
            let (truth, examined_all) = evaluated(&catalog, &filter).await;
            assert_eq!(examined_all, ENTRIES, "{}: {filter} unindexed", s.name);
            assert_eq!(truth.len(), matches, "{}: {filter}", s.name);
            for limit in [7, 1000] {
                let (mut ids, scanned) = all_pages(&catalog, &filter, limit).await;
                // The index answers in id order; a DynamoDB scan in the table's order.
                if s.name != "embedded" {
                    ids.sort();
                }
                assert_eq!(ids, truth, "{}: {filter} (limit {limit})", s.name);
                if s.name == "embedded" && limit == 1000 {
                    // Indexed: exactly the matches are read; a term past the prefix bound reads
                    // the entries of its prefix ("registryxxxx" is no name's prefix: none).
                    assert_eq!(scanned, matches, "{}: {filter} read {scanned}", s.name);
                } else if s.name == "embedded" {
                    // Small pages of a sparse intersection re-read the rest of a chunk a page
                    // did not take (the catalog's chunks grow while they find little): at most
                    // twice the matches, never the store.
                    assert!(
                        scanned <= 2 * matches,
                        "{}: {filter} read {scanned}",
                        s.name
                    );
                }
            }
        }

        // Renames and deletes move the index with them.
        let renamed = json!({"$set": {"container_registry_name": "Zeta-Registry"}});
        catalog.update("n00077", &renamed).await.unwrap();
        catalog.delete("n00770").await.unwrap();
        for filter in [word("77"), word("zeta"), word("ze")] {
            let (truth, _) = evaluated(&catalog, &filter).await;
            let (mut ids, scanned) = all_pages(&catalog, &filter, 1000).await;
            ids.sort();
            assert_eq!(ids, truth, "{}: {filter} after writes", s.name);
            if s.name == "embedded" {
                assert_eq!(scanned, truth.len(), "{}: {filter}", s.name);
            }
        }
        assert_eq!(all_pages(&catalog, &word("zeta"), 10).await.0, ["n00077"]);
        assert_eq!(all_pages(&catalog, &word("77"), 1000).await.0.len(), 9);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_reads_every_name_index_key_and_finds_none_stale() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(registry_db::store::embedded::EmbeddedStore::open(dir.path()).unwrap());
    for r in store
        .insert_many(&(0..100).map(entry).collect::<Vec<_>>())
        .await
    {
        r.unwrap();
    }
    let report = store.reindex().await.unwrap();
    assert_eq!(report.entries, 100);
    assert_eq!(report.stale_name_keys_removed, 0);
    // "registry" (8 prefixes), the number's (1 to 2), the word's (4 or 5).
    assert!(report.name_keys > 100 * 13, "{report:?}");
}
