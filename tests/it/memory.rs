//! Memory stays bounded by the work a request does, not by how large entries are: maximal entries
//! (near the byte limit and at the limit on values, which cost many times their JSON size once
//! parsed), queried with filters that parse every one of them, on the real server. A query holds one
//! byte-bounded chunk of stored text, one parsed entry at a time and the page it fills. And memory
//! stays bounded by settings, not by the data: a server over a store of hundreds of MiB holds
//! redb's page cache as set (`--store-cache-mib`), whatever it reads.

use crate::support;

use serde_json::{Value, json};

const ENTRIES: usize = 150;
/// With the entry's own fields and the metadata object, at the limit on values per entry.
const VALUES: usize = registry_db::domain::size::MAX_VALUES - 20;

#[test]
fn queries_over_large_entries_of_tiny_values_keep_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(&["--data", dir.path().to_str().unwrap()], &[]);
    let client = reqwest::blocking::Client::new();
    // 23 bytes of JSON per value: about 230 KB per entry, near the 256 KiB a request body may hold.
    let values = Value::Array(vec![json!("abcdefghijklmnopqrst"); VALUES]);
    for i in 0..ENTRIES {
        let body = json!({
            "container_registry_id": format!("big{i:03}"),
            "container_registry_name": format!("big-{i}"),
            "container_registry_public_url": "http://10.0.0.1:5000",
            "container_registry_tags": if i % 2 == 0 { json!(["even"]) } else { json!(["odd"]) },
            "container_registry_metadata": {"values": values},
        });
        let response = client
            .post(format!("{}/container_registry", server.base))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().unwrap());
    }
    let before = support::peak_rss_kib(server.pid());

    // Filters that parse every entry: nothing matches; everything matches (paged); an indexed
    // filter that evaluates the rest.
    for filter in [
        json!({"container_registry_metadata.values": "z"}),
        json!({"container_registry_metadata.values": "abcdefghijklmnopqrst"}),
        json!({"container_registry_tags": "even", "container_registry_metadata.values": {"$size": VALUES}}),
    ] {
        let mut cursor: Option<String> = None;
        let mut returned = 0;
        loop {
            let url = match &cursor {
                Some(c) => format!("{}/container_registries?limit=1000&cursor={c}", server.base),
                None => format!("{}/container_registries?limit=1000", server.base),
            };
            let page: Value = client
                .post(url)
                .json(&filter)
                .send()
                .unwrap()
                .json()
                .unwrap();
            assert_eq!(page["success"], true, "{page}");
            returned += page["data"].as_array().unwrap().len();
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let expected = match filter.get("container_registry_tags") {
            Some(_) => ENTRIES / 2,
            None if filter["container_registry_metadata.values"] != "z" => ENTRIES,
            None => 0,
        };
        assert_eq!(returned, expected, "{filter}");
    }
    let peak = support::peak_rss_kib(server.pid());
    println!(
        "peak RSS {} MiB after the queries, {} MiB before",
        peak / 1024,
        before / 1024
    );
    // 150 entries of ~230 KB are 34 MB of JSON and over 100 MB parsed; a query may hold a 4 MiB
    // page, a 1 MiB chunk and one parsed entry.
    assert!(
        peak < 120 * 1024,
        "peak RSS {} MiB after the queries ({} MiB before them)",
        peak / 1024,
        before / 1024
    );
}

/// Large entries written to the store directly (the store API, in batches: a few seconds for
/// hundreds of MiB), then a server restarted over them.
const LARGE_ENTRIES: usize = 1_200;
/// About 240 KB of JSON each: 1,200 of them are a store file of about 290 MiB.
const LARGE_PAD: usize = 240_000;
/// Small entries beside them, enough to fill the entry cache.
const SMALL_ENTRIES: usize = 4_000;
/// What the server may reach, before and after the workload: redb's page cache (32 MiB by
/// default) and the entry cache (16 MiB) on top of the binary, the runtime, one request's work
/// and allocator slack. redb's own default cache (1 GiB) lets it grow with the store instead.
const LARGE_STORE_RSS_MIB: u64 = 150;

fn fill_a_large_store(dir: &std::path::Path) {
    use registry_db::domain::entry::ContainerRegistry;
    use registry_db::store::Store;
    use registry_db::store::embedded::EmbeddedStore;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = EmbeddedStore::open_with_caches(dir, 0, 4 << 20).unwrap();
    let pad = "p".repeat(LARGE_PAD);
    let entry = |i: usize, large: bool| {
        // 48 tags of each entry's own (tens of thousands of distinct tags for the facets) and
        // one every entry carries.
        let mut tags: Vec<String> = (0..47).map(|j| format!("t{i}-{j}")).collect();
        tags.push("all".into());
        let mut body = json!({
            "container_registry_id": format!("{}{i:05}", if large { "large" } else { "small" }),
            "container_registry_name": format!("registry {i}"),
            "container_registry_public_url": "http://10.0.0.1:5000",
            "container_registry_tags": tags,
            "container_registry_storage_info": {"registry_type": "external", "storage_type": "s3"},
        });
        if large {
            body["container_registry_metadata"] = json!({"pad": pad});
        }
        ContainerRegistry::from_create(body).unwrap()
    };
    rt.block_on(async {
        for (count, large, batch) in [(LARGE_ENTRIES, true, 24), (SMALL_ENTRIES, false, 500)] {
            for start in (0..count).step_by(batch) {
                let entries: Vec<_> = (start..(start + batch).min(count))
                    .map(|i| entry(i, large))
                    .collect();
                for result in store.insert_many(&entries).await {
                    result.unwrap();
                }
            }
        }
    });
}

/// Issue 18, finding 4: redb opened with its default page cache (1 GiB) grew with the store it
/// read. The page cache is now set (`--store-cache-mib`, 32 MiB), and a server over a store of
/// about 290 MiB stays under a fixed bound, after a start and after a hostile workload that reads
/// the whole store several times: page requests with many tags, facet counts over entries of
/// tens of thousands of distinct tags, large filters paged through every entry, and an update
/// that would backfill a million values (refused).
#[test]
fn a_server_over_a_large_store_stays_within_its_caches() {
    let dir = tempfile::tempdir().unwrap();
    fill_a_large_store(dir.path());
    let file = std::fs::metadata(dir.path().join("registry-db.redb"))
        .unwrap()
        .len();
    assert!(file > 250 << 20, "the store file is only {file} bytes");

    let server = support::start_server(
        &["--data", dir.path().to_str().unwrap(), "--writes", "open"],
        &[],
    );
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .unwrap();
    let ok = |r: reqwest::blocking::Response| {
        let status = r.status();
        let text = r.text().unwrap();
        assert!(status.is_success(), "{status}: {text}");
        text
    };
    ok(client
        .get(format!("{}/healthz", server.base))
        .send()
        .unwrap());
    let started = support::peak_rss_kib(server.pid());

    // The list page and the search of 48 tags (at most what an entry carries), and one of more
    // (refused before it is built).
    ok(client.get(format!("{}/", server.base)).send().unwrap());
    let tags: Vec<String> = (0..48).map(|j| format!("tag=t7-{j}")).collect();
    ok(client
        .get(format!("{}/?{}", server.base, tags.join("&")))
        .send()
        .unwrap());
    let many: Vec<String> = (0..2_000).map(|j| format!("tag=t{j}-0")).collect();
    let refused = client
        .get(format!("{}/?{}", server.base, many.join("&")))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400);
    // Facets over every entry: the page cache would hold the whole store as the scan reads it.
    // (Through the tag index, the count stops early over entries this large: each chunk of about
    // 4 entries, bounded by bytes, counts the 1,001 index keys it read against the work bound.)
    for filter in [json!({}), json!({"container_registry_tags": "all"})] {
        let facets: Value = serde_json::from_str(&ok(client
            .post(format!("{}/container_registries/facets", server.base))
            .json(&filter)
            .send()
            .unwrap()))
        .unwrap();
        let data = &facets["data"];
        if filter == json!({}) || data["complete"] == true {
            assert_eq!(data["matched"], LARGE_ENTRIES + SMALL_ENTRIES, "{filter}");
        }
        assert!(data["matched"].as_u64().unwrap() > 0, "{filter}: {data}");
        assert_eq!(facets["data"]["tags_truncated"], true);
    }
    // A filter of 1,000 values that parses every entry, paged through the whole store.
    let values: Vec<Value> = (0..1_000).map(|i| json!(format!("v{i}"))).collect();
    let filter = json!({"container_registry_metadata.pad": {"$in": values}});
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &cursor {
            Some(c) => format!("{}/container_registries?limit=1000&cursor={c}", server.base),
            None => format!("{}/container_registries?limit=1000", server.base),
        };
        let page: Value =
            serde_json::from_str(&ok(client.post(url).json(&filter).send().unwrap())).unwrap();
        assert_eq!(page["data"].as_array().unwrap().len(), 0);
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert!(pages >= 1);
    // GETs of the small entries fill the entry cache.
    for i in (0..SMALL_ENTRIES).step_by(2) {
        ok(client
            .get(format!("{}/container_registry/small{i:05}", server.base))
            .send()
            .unwrap());
    }
    // An update that would backfill 1,000 nulls into each of 1,000 arrays: refused before it is
    // built.
    let arrays: serde_json::Map<String, Value> =
        (0..1_000).map(|k| (format!("k{k}"), json!([]))).collect();
    ok(client
        .post(format!("{}/container_registry", server.base))
        .json(&json!({
            "container_registry_id": "pad",
            "container_registry_name": "pad",
            "container_registry_public_url": "http://10.0.0.1:5000",
            "container_registry_metadata": arrays,
        }))
        .send()
        .unwrap());
    let set: serde_json::Map<String, Value> = (0..1_000)
        .map(|k| (format!("container_registry_metadata.k{k}.1000"), json!(1)))
        .collect();
    let refused = client
        .put(format!("{}/container_registry/pad", server.base))
        .json(&json!({"$set": set}))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400);

    let after = support::peak_rss_kib(server.pid());
    println!(
        "store file {} MiB: peak RSS {} MiB after the start, {} MiB after the workload",
        file >> 20,
        started / 1024,
        after / 1024
    );
    assert!(
        started < LARGE_STORE_RSS_MIB * 1024 && after < LARGE_STORE_RSS_MIB * 1024,
        "peak RSS {} MiB after the start, {} MiB after the workload, over {LARGE_STORE_RSS_MIB} MiB",
        started / 1024,
        after / 1024
    );
}

/// Issue 18, finding 7b: the entry cache counted a list's ids by their text and 16 bytes each,
/// and held about 11 MiB for a budget of 4 MiB. It now counts the heap as glibc hands it out
/// (each allocation rounded up, the shared text's header, the tables at their capacity), and a
/// cache filled far past its budget with each kind of item holds at most 1.25 times the budget,
/// measured by the test binary's counting allocator on the filling thread.
#[test]
fn the_entry_cache_holds_no_more_heap_than_its_budget() {
    use bytes::Bytes;
    use registry_db::store::entry_cache::{CachedPosting, EntryCache, MAX_CACHED_POSTING};
    use std::sync::Arc;
    const BUDGET: usize = 4 << 20;
    let fill = |cache: &EntryCache, kind: &str, i: usize| {
        let stamp = cache.stamp();
        match kind {
            // Tag lists as long as the cache keeps, of short ids.
            "lists" => {
                let ids: Arc<[Box<str>]> = (0..MAX_CACHED_POSTING)
                    .map(|j| Box::from(format!("{}", i * MAX_CACHED_POSTING + j)))
                    .collect();
                cache.fill_posting(stamp, &format!("t{i}"), CachedPosting::Ids(ids));
            }
            // Tiny entries of short ids: the slots, headers and ids outweigh the text.
            "tiny" => cache.fill(stamp, &format!("{i}"), &Bytes::copy_from_slice(b"{}")),
            // Entries as the seed's (about 1 KB), with uuid-sized ids.
            _ => {
                let id = format!("{i:036}");
                cache.fill(stamp, &id, &Bytes::from(vec![b'x'; 1000 + i % 200]));
            }
        }
    };
    for (kind, items) in [("lists", 200), ("tiny", 200_000), ("entries", 20_000)] {
        let before = support::alloc::held_by_this_thread();
        let cache = EntryCache::new(BUDGET);
        for i in 0..items {
            fill(&cache, kind, i);
        }
        let held = (support::alloc::held_by_this_thread() - before) as usize;
        let stats = cache.stats();
        println!(
            "{kind}: {} entries and {} lists, counted {} KiB, held {} KiB of heap for a budget of {} KiB",
            stats.entries,
            stats.postings,
            stats.bytes >> 10,
            held >> 10,
            BUDGET >> 10
        );
        assert!(stats.bytes <= BUDGET, "{kind}: {stats:?}");
        // It filled (what was offered is several times the budget)...
        assert!(held > BUDGET / 2, "{kind}: only {held} bytes held");
        // ...and holds what it counts, within a quarter.
        assert!(
            held <= BUDGET + BUDGET / 4,
            "{kind}: {held} bytes held for a budget of {BUDGET} ({stats:?})"
        );
        drop(cache);
    }
}
