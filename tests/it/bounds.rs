//! Issue 18: every request bounded in work and memory, whatever it holds (the page's links, filter
//! evaluation, updates, facets, import).

use crate::support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use registry_db::domain::entry::{MAX_TAG_CHARS, MAX_TAGS};
use registry_db::web::FACET_TAGS_SHOWN;
use registry_db::web::search::MAX_SEARCH_TAGS;
use serde_json::json;
use support::{app, call};
use tower::ServiceExt;

async fn get(app: &Router, uri: &str) -> (StatusCode, String) {
    let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// Short distinct tags, as a hostile URL packs them.
fn base62(mut i: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut s = Vec::new();
    loop {
        s.push(DIGITS[i % 62]);
        i /= 62;
        if i == 0 {
            break;
        }
    }
    String::from_utf8(s).unwrap()
}

/// The page of a refused search holds none of it: this bounds it whatever the URL.
const REFUSED_PAGE_BYTES: usize = 8 * 1024;

#[tokio::test]
async fn a_url_of_thousands_of_tags_is_a_small_400_page() {
    let (store, _dir) = support::embedded_store();
    let app = app(store, None);
    // The issue's URL: 8,296 distinct tags in 65 KB built an 817 MB page.
    let uri = format!(
        "/?{}",
        (0..8296)
            .map(|i| format!("tag={}", base62(i)))
            .collect::<Vec<_>>()
            .join("&")
    );
    assert!(uri.len() > 55_000, "{}", uri.len());
    let (status, html) = get(&app, &uri).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains(&format!("at most {MAX_SEARCH_TAGS} tags")),
        "{html}"
    );
    assert!(html.len() < REFUSED_PAGE_BYTES, "{} bytes", html.len());
    // Neither the tags nor a long word are repeated back.
    assert!(!html.contains(r#"value="a1""#));
    let long = format!("/?q={}", "x".repeat(60_000));
    let (status, html) = get(&app, &long).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("at most 256 characters"), "{html}");
    assert!(html.len() < REFUSED_PAGE_BYTES, "{} bytes", html.len());
}

#[tokio::test]
async fn an_error_page_never_repeats_a_long_id() {
    let (store, _dir) = support::embedded_store();
    let app = app(store, None);
    let (status, html) = get(&app, &format!("/registries/{}", "a".repeat(50_000))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("no container registry with id aaaa"));
    assert!(html.len() < REFUSED_PAGE_BYTES, "{} bytes", html.len());
}

#[tokio::test]
async fn a_search_of_every_tag_an_entry_can_carry_links_30_tags() {
    let (store, _dir) = support::embedded_store();
    let app = app(store, None);
    // Entries carrying the most tags of the longest kind, all the same: a search of all of them
    // matches, and every facet link repeats the whole search.
    let tags: Vec<String> = (0..MAX_TAGS)
        .map(|i| format!("{i:02}{}", "t".repeat(MAX_TAG_CHARS - 2)))
        .collect();
    for i in 0..25 {
        let body = json!({
            "container_registry_id": format!("e{i:02}"),
            "container_registry_name": format!("registry {i}"),
            "container_registry_public_url": "http://10.0.0.1:5000",
            "container_registry_tags": tags,
        });
        let (status, out) = call(&app, "POST", "/container_registry", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{out}");
    }
    let query = |tags: &[String]| {
        tags.iter()
            .map(|t| format!("tag={t}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let (status, html) = get(&app, &format!("/?{}", query(&tags))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        html.matches(r#"<a class="facet on""#).count(),
        FACET_TAGS_SHOWN
    );
    // Every selected tag is still in the form, as a checkbox that removes it.
    assert_eq!(html.matches(r#"<label class="chip">"#).count(), MAX_TAGS);
    // 30 tag links and 11 choice links of about 3.4 KB each, the chips and 20 cards: 185 KB.
    println!("a page of {MAX_TAGS} selected tags: {} bytes", html.len());
    assert!(html.len() < 200 * 1024, "{} bytes", html.len());
    // One more tag is refused, with the small page.
    let mut more = tags.clone();
    more.push("one-more".into());
    let (status, html) = get(&app, &format!("/?{}", query(&more))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("at most 48 tags"), "{html}");
    assert!(html.len() < REFUSED_PAGE_BYTES, "{} bytes", html.len());
}

/// An entry whose metadata holds `x`: the numbers 0 to 8,999, as in the issue.
fn numbers_entry(i: usize) -> serde_json::Value {
    json!({
        "container_registry_id": format!("n{i:03}"),
        "container_registry_name": format!("numbers {i}"),
        "container_registry_public_url": "http://10.0.0.1:5000",
        "container_registry_metadata": {"x": (0..9000).collect::<Vec<_>>()},
    })
}

/// Comparisons one condition on `x` costs on such an entry: the array and each of its numbers.
const PER_CONDITION: u64 = 9001;

/// A filter that costs about `work` comparisons on each such entry and matches all of them: none
/// of its conditions holds for any number, so each reads the whole array.
fn costly_filter(work: u64) -> serde_json::Value {
    let conditions: Vec<_> = (1..=work / PER_CONDITION)
        .map(|k| json!({"container_registry_metadata.x": {"$lt": -(k as i64)}}))
        .collect();
    json!({ "$nor": conditions })
}

async fn numbers_app(entries: usize) -> (Router, tempfile::TempDir) {
    let (store, dir) = support::embedded_store();
    let app = app(store, None);
    for i in 0..entries {
        let (status, out) = call(&app, "POST", "/container_registry", Some(numbers_entry(i))).await;
        assert_eq!(status, StatusCode::CREATED, "{out}");
    }
    (app, dir)
}

#[tokio::test]
async fn in_and_nin_of_a_thousand_values_answer_exactly_in_one_page() {
    let (app, _dir) = numbers_app(20).await;
    // 1,000 values, none of which an entry holds; then the same with one that all hold, written
    // as a float (numbers compare by value).
    let mut values: Vec<serde_json::Value> = (1..=1000).map(|k| json!(-k)).collect();
    let query = |cond: serde_json::Value| {
        let app = app.clone();
        async move {
            let (status, out) = call(
                &app,
                "POST",
                "/container_registries?limit=1000",
                Some(json!({ "container_registry_metadata.x": cond })),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{out}");
            assert_eq!(out["next_cursor"], serde_json::Value::Null);
            out["data"].as_array().unwrap().len()
        }
    };
    assert_eq!(query(json!({ "$in": values })).await, 0);
    assert_eq!(query(json!({ "$nin": values })).await, 20);
    values[500] = json!(8999.0);
    assert_eq!(query(json!({ "$in": values })).await, 20);
    assert_eq!(query(json!({ "$nin": values })).await, 0);
    // `$all` of values each entry holds, repeated as int and float: one value each time.
    let all: Vec<_> = (0..500).flat_map(|k| [json!(k), json!(k as f64)]).collect();
    assert_eq!(query(json!({ "$all": all })).await, 20);
}

#[tokio::test]
async fn a_filter_past_the_work_budget_for_one_entry_is_a_400_naming_it() {
    use registry_db::query::MAX_FILTER_WORK;
    let (app, _dir) = numbers_app(1).await;
    let (status, out) = call(
        &app,
        "POST",
        "/container_registries",
        Some(costly_filter(MAX_FILTER_WORK + 2 * PER_CONDITION)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
    assert_eq!(out["code"], "filter_too_costly");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains(&format!("{MAX_FILTER_WORK} comparisons")),
        "{out}"
    );
    // Just under it, the entry is answered.
    let (status, out) = call(
        &app,
        "POST",
        "/container_registries",
        Some(costly_filter(MAX_FILTER_WORK - 2 * PER_CONDITION)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_costly_filter_pages_short_with_a_cursor_and_misses_nothing() {
    use registry_db::query::MAX_FILTER_WORK;
    let (app, _dir) = numbers_app(6).await;
    // 0.4 of the budget per entry: a page evaluates two entries and stops in the third.
    let filter = costly_filter(MAX_FILTER_WORK * 2 / 5);
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/container_registries?limit=100&cursor={c}"),
            None => "/container_registries?limit=100".to_string(),
        };
        let (status, out) = call(&app, "POST", &uri, Some(filter.clone())).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        pages += 1;
        for e in out["data"].as_array().unwrap() {
            ids.push(e["container_registry_id"].as_str().unwrap().to_string());
        }
        match out["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(ids, (0..6).map(|i| format!("n{i:03}")).collect::<Vec<_>>());
    assert_eq!(pages, 3);
}

#[test]
fn healthz_answers_while_two_costly_filters_run() {
    use registry_db::query::MAX_FILTER_WORK;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const ENTRIES: usize = 24;
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(&["--data", dir.path().to_str().unwrap()], &[]);
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .unwrap();
    for i in 0..ENTRIES {
        let response = client
            .post(format!("{}/container_registry", server.base))
            .json(&numbers_entry(i))
            .send()
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    // 0.3 of the budget per entry: each listing is 8 requests of the whole budget, each of
    // which keeps a worker busy but for its yields.
    let filter = costly_filter(MAX_FILTER_WORK * 3 / 10);
    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let listings: Vec<_> = (0..2)
        .map(|_| {
            let (client, base, filter) = (client.clone(), server.base.clone(), filter.clone());
            let (started, finished) = (Arc::clone(&started), Arc::clone(&finished));
            std::thread::spawn(move || {
                let mut cursor: Option<String> = None;
                let (mut returned, mut requests) = (0, 0);
                started.fetch_add(1, Ordering::SeqCst);
                loop {
                    let url = match &cursor {
                        Some(c) => format!("{base}/container_registries?cursor={c}"),
                        None => format!("{base}/container_registries"),
                    };
                    let page: serde_json::Value = client
                        .post(url)
                        .json(&filter)
                        .send()
                        .unwrap()
                        .json()
                        .unwrap();
                    assert_eq!(page["success"], true, "{page}");
                    requests += 1;
                    returned += page["data"].as_array().unwrap().len();
                    match page["next_cursor"].as_str() {
                        Some(c) => cursor = Some(c.to_string()),
                        None => break,
                    }
                }
                finished.fetch_add(1, Ordering::SeqCst);
                (returned, requests)
            })
        })
        .collect();
    while started.load(Ordering::SeqCst) < 2 {
        std::thread::yield_now();
    }
    // Give both listings time to be in flight: their first request is sent right after `started`.
    std::thread::sleep(std::time::Duration::from_millis(200));
    for _ in 0..3 {
        let response = client
            .get(format!("{}/healthz", server.base))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            finished.load(Ordering::SeqCst),
            0,
            "/healthz answered only after a costly listing had finished"
        );
    }
    for listing in listings {
        let (returned, requests) = listing.join().unwrap();
        assert_eq!(returned, ENTRIES);
        assert!(requests > 1, "{requests}");
    }
}

/// An entry whose metadata holds `arrays` empty arrays, and the `$set` that pads each of them
/// with 1,000 nulls (the most one path may pad), as in the issue: 44 KB that built a million
/// values before validation refused them.
fn padded_arrays(arrays: usize) -> (serde_json::Value, serde_json::Value) {
    let metadata: serde_json::Map<String, serde_json::Value> =
        (0..arrays).map(|k| (format!("k{k}"), json!([]))).collect();
    let entry = json!({
        "container_registry_id": "pad",
        "container_registry_name": "pad",
        "container_registry_public_url": "http://10.0.0.1:5000",
        "container_registry_metadata": metadata,
    });
    let set: serde_json::Map<String, serde_json::Value> = (0..arrays)
        .map(|k| {
            let path = format!(
                "container_registry_metadata.k{k}.{}",
                registry_db::query::MAX_ARRAY_BACKFILL
            );
            (path, json!(1))
        })
        .collect();
    (entry, json!({ "$set": set }))
}

#[tokio::test]
async fn an_update_that_would_pad_past_the_value_limit_is_refused_before_it_is_built() {
    use registry_db::domain::size::MAX_VALUES;
    use registry_db::query::MAX_ARRAY_BACKFILL;
    // At the edge: 10 arrays of 1,000 padding nulls are the 10,000 an entry may hold; they are
    // built, and the entry they make (with its own fields and the 10 values) is refused.
    let at = MAX_VALUES / MAX_ARRAY_BACKFILL;
    for (arrays, refusal) in [(at, "holds"), (at + 1, "padding arrays")] {
        let (store, _dir) = support::embedded_store();
        let app = app(store, None);
        let (entry, update) = padded_arrays(arrays);
        let (status, out) = call(&app, "POST", "/container_registry", Some(entry)).await;
        assert_eq!(status, StatusCode::CREATED, "{out}");
        let (status, out) = call(&app, "PUT", "/container_registry/pad", Some(update)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{out}");
        assert_eq!(out["code"], "entry_too_large", "{out}");
        let error = out["error"].as_str().unwrap();
        assert!(error.contains(refusal), "{arrays}: {error}");
        assert!(error.contains(&MAX_VALUES.to_string()), "{error}");
        let (_, out) = call(&app, "GET", "/container_registry/pad", None).await;
        assert_eq!(out["data"]["container_registry_version"], 1);
    }
    // Padding well within the limit is applied.
    let (store, _dir) = support::embedded_store();
    let app = app(store, None);
    let (entry, update) = padded_arrays(3);
    call(&app, "POST", "/container_registry", Some(entry)).await;
    let (status, out) = call(&app, "PUT", "/container_registry/pad", Some(update)).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let k0 = &out["data"]["entry"]["container_registry_metadata"]["k0"];
    assert_eq!(k0.as_array().unwrap().len(), MAX_ARRAY_BACKFILL + 1);
}

#[test]
fn four_padding_updates_at_once_leave_the_server_small() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(&["--data", dir.path().to_str().unwrap()], &[]);
    let client = reqwest::blocking::Client::new();
    let (entry, update) = padded_arrays(1000);
    assert!(update.to_string().len() < 64 * 1024);
    let response = client
        .post(format!("{}/container_registry", server.base))
        .json(&entry)
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    let before = support::peak_rss_kib(server.pid());
    let updates: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, update) = (
                client.clone(),
                format!("{}/container_registry/pad", server.base),
                update.clone(),
            );
            std::thread::spawn(move || {
                let response = client.put(url).json(&update).send().unwrap();
                assert_eq!(response.status(), 400);
                let out: serde_json::Value = response.json().unwrap();
                assert_eq!(out["code"], "entry_too_large", "{out}");
            })
        })
        .collect();
    for u in updates {
        u.join().unwrap();
    }
    let peak = support::peak_rss_kib(server.pid());
    println!(
        "peak RSS {} MiB, {} MiB before the updates",
        peak / 1024,
        before / 1024
    );
    // The issue measured 307 MiB for these four (a million values each); refused after 10,000
    // created values, each holds a few MiB at most.
    assert!(
        peak < before + 40 * 1024,
        "peak {} MiB, {} MiB before",
        peak / 1024,
        before / 1024
    );
}

#[tokio::test]
async fn import_refuses_dates_rfc_3339_cannot_write_and_goes_on() {
    use registry_db::domain::catalog::Catalog;
    let (store, _dir) = support::embedded_store();
    let registry = Catalog::new(store, support::loopback_prober(1000));
    let line = |id: &str, ms: i64| {
        json!({
            "_id": {"$oid": "65f1c0ffee0ddba11ca7f00d"},
            "container_registry_id": id,
            "container_registry_name": id,
            "container_registry_public_url": "http://10.0.0.1:5000",
            "container_registry_metadata": {"since": {"$date": {"$numberLong": ms.to_string()}}},
        })
        .to_string()
    };
    // The last instant of 9999 and the first of 0000, then one millisecond past each.
    let export = [
        line("last", 253_402_300_799_999),
        line("after-last", 253_402_300_800_000),
        line("first", -62_167_219_200_000),
        line("before-first", -62_167_219_200_001),
    ]
    .join("\n");
    let mut findings = Vec::new();
    let report =
        registry_db::import::import(&registry, std::io::Cursor::new(export.into_bytes()), |f| {
            findings.push(f.to_string())
        })
        .await;
    assert_eq!((report.read, report.imported, report.refused), (4, 2, 2));
    assert!(report.stopped.is_none());
    assert_eq!(findings.len(), 2);
    for (finding, id) in findings.iter().zip(["after-last", "before-first"]) {
        assert!(finding.contains(id), "{finding}");
        assert!(
            finding.contains("container_registry_metadata.since: $date")
                && finding.contains("years 0000 to 9999"),
            "{finding}"
        );
    }
    let since = |id: &str| {
        let registry = registry.clone();
        let id = id.to_string();
        async move {
            let e = registry.get(&id).await.unwrap().entry().unwrap();
            e.container_registry_metadata["since"].clone()
        }
    };
    assert_eq!(since("last").await, "9999-12-31T23:59:59.999Z");
    assert_eq!(since("first").await, "0000-01-01T00:00:00.000Z");
}

/// Entries that carry `common` and, between them, `unique` other tags no two share.
async fn entries_with_distinct_tags(app: &Router, unique: usize) -> usize {
    let per_entry = MAX_TAGS - 1;
    let mut made = 0;
    let mut i = 0;
    while made < unique {
        let n = per_entry.min(unique - made);
        let mut tags = vec!["common".to_string()];
        tags.extend((made..made + n).map(|k| format!("u{k:05}")));
        made += n;
        let body = json!({
            "container_registry_id": format!("t{i:03}"),
            "container_registry_name": format!("tags {i}"),
            "container_registry_public_url": "http://10.0.0.1:5000",
            "container_registry_tags": tags,
        });
        let (status, out) = call(app, "POST", "/container_registry", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{out}");
        i += 1;
    }
    i
}

#[tokio::test]
async fn facet_counting_holds_at_most_its_cap_of_tags_and_says_how_far_off_it_is() {
    use registry_db::domain::catalog::tag_counts::MAX_COUNTED_TAGS;
    for (distinct, error) in [(MAX_COUNTED_TAGS, 0), (MAX_COUNTED_TAGS + 1, 1)] {
        let (store, _dir) = support::embedded_store();
        let app = app(store, None);
        // `common` is one of the distinct tags.
        let entries = entries_with_distinct_tags(&app, distinct - 1).await as u64;
        // `{}` answers from the kept counts, exact whatever the number of tags.
        let (_, kept) = call(
            &app,
            "POST",
            "/container_registries/facets",
            Some(json!({})),
        )
        .await;
        assert_eq!(kept["data"]["tags_error"], 0);
        assert_eq!(kept["data"]["tags"][0]["count"], entries);
        assert_eq!(kept["data"]["tags_truncated"], true);
        // A filter that matches every entry too, counted from the entries: held to the cap.
        let (status, out) = call(
            &app,
            "POST",
            "/container_registries/facets",
            Some(json!({"container_registry_name": {"$exists": true}})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{out}");
        let data = &out["data"];
        assert_eq!(data["matched"], entries);
        assert_eq!(data["complete"], true);
        assert_eq!(data["tags_truncated"], true);
        assert_eq!(data["tags_error"], error, "{distinct} distinct tags");
        let tags = data["tags"].as_array().unwrap();
        assert_eq!(tags[0]["value"], "common");
        // Exact at the cap; past it, at most `tags_error` low, never high.
        assert_eq!(tags[0]["count"], entries - error);
        if error == 0 {
            assert!(tags[1..].iter().all(|t| t["count"] == 1));
            assert_eq!(tags.len(), registry_db::domain::catalog::MAX_FACET_TAGS);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_of_long_tag_lists_stops_at_the_work_bound() {
    use registry_db::domain::catalog::{Catalog, MAX_SCANNED_PER_PAGE};
    use registry_db::domain::entry::ContainerRegistry;
    use registry_db::query::Filter;
    // 1,000 entries carry the same 47 tags; one other carries only "z". `$all` of the 48 matches
    // nothing, but reading it through the index meets 47 lists of 1,000 ids: 47,000 keys.
    const ENTRIES: usize = 1000;
    let common: Vec<String> = (0..MAX_TAGS - 1).map(|k| format!("a{k:02}")).collect();
    for s in support::stores().await {
        for i in 0..ENTRIES {
            let entry = ContainerRegistry::from_create(json!({
                "container_registry_id": format!("e{i:04}"),
                "container_registry_name": format!("e{i}"),
                "container_registry_public_url": "http://10.0.0.1:5000",
                "container_registry_tags": common,
            }))
            .unwrap();
            s.store.insert(&entry).await.unwrap();
        }
        let z = ContainerRegistry::from_create(json!({
            "container_registry_id": "z",
            "container_registry_name": "z",
            "container_registry_public_url": "http://10.0.0.1:5000",
            "container_registry_tags": ["z"],
        }))
        .unwrap();
        s.store.insert(&z).await.unwrap();
        let catalog = Catalog::new(s.store.clone(), support::loopback_prober(100));
        let mut all = common.clone();
        all.push("z".into());
        let filter = Filter::parse(&json!({"container_registry_tags": {"$all": all}})).unwrap();
        let (mut pages, mut keys, mut cursor) = (0, Vec::new(), None::<String>);
        loop {
            let page = catalog
                .query(&filter, 100, cursor.as_deref())
                .await
                .unwrap();
            assert!(page.entries.is_empty(), "{}", s.name);
            pages += 1;
            keys.push(page.index_keys);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        // The first page stops at the bound (the chunk that crosses it reads at most one
        // chunk of each list: 48 x 1,001 keys) and a cursor goes on from there.
        assert!(pages > 1, "{}: one page read {keys:?} keys", s.name);
        assert!(
            keys[0] >= MAX_SCANNED_PER_PAGE && keys[0] <= MAX_SCANNED_PER_PAGE + MAX_TAGS * 1001,
            "{}: {keys:?}",
            s.name
        );
        assert!(keys.iter().sum::<usize>() >= ENTRIES * (MAX_TAGS - 1));
    }
}

/// Writes `request` on a fresh connection to `base` and closes it at once, reading nothing.
fn send_and_hang_up(base: &str, request: &str) {
    use std::io::Write;
    let addr = base.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    drop(stream);
}

/// Issue 18, finding 5: a write counted for the facet cache only when its handler's future
/// completed, so a client that hung up right after sending left the commit landing uncounted and
/// the kept facet counts stale until the next completed write. Now each write runs to its end on
/// a task of its own: after 20 creates and 3 deletes whose clients closed the connection at once,
/// the store, the listing and the facet counts agree (waiting, bounded, for the writes to land).
#[test]
fn writes_whose_clients_hang_up_still_reach_the_facet_counts() {
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(
        &["--data", dir.path().to_str().unwrap(), "--writes", "open"],
        &[],
    );
    let client = reqwest::blocking::Client::new();
    let entry = |id: &str| {
        json!({
            "container_registry_id": id,
            "container_registry_name": id,
            "container_registry_public_url": "http://10.0.0.1:5000",
            "container_registry_tags": ["hang"],
        })
    };
    for i in 0..5 {
        let response = client
            .post(format!("{}/container_registry", server.base))
            .json(&entry(&format!("kept-{i}")))
            .send()
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let filter = json!({"container_registry_tags": "hang"});
    let facets = || -> (u64, u64) {
        let body: serde_json::Value = client
            .post(format!("{}/container_registries/facets", server.base))
            .json(&filter)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let data = &body["data"];
        let tag = data["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["value"] == "hang")
            .map_or(0, |t| t["count"].as_u64().unwrap());
        (data["matched"].as_u64().unwrap(), tag)
    };
    // Counted once, and kept: the embedded store has no other writer.
    assert_eq!(facets(), (5, 5));

    // Whether a write lands before the server sees the hang-up is up to the scheduler: rounds of
    // 20 creates (the first with 3 deletes) until some have landed, at most 10 rounds.
    let mut ids: Vec<String> = (0..5).map(|i| format!("kept-{i}")).collect();
    for round in 0..10 {
        let new: Vec<String> = (0..20).map(|i| format!("gone-{round}-{i}")).collect();
        for id in &new {
            let body = entry(id).to_string();
            send_and_hang_up(
                &server.base,
                &format!(
                    "POST /container_registry HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
            );
        }
        if round == 0 {
            for id in &ids[..3] {
                send_and_hang_up(
                    &server.base,
                    &format!("DELETE /container_registry/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
                );
            }
        }
        ids.extend(new);
        // Until what the store holds, the listing and the counts agree, at most a minute.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let stored = loop {
            let stored = ids
                .iter()
                .filter(|id| {
                    client
                        .get(format!("{}/container_registry/{id}", server.base))
                        .send()
                        .unwrap()
                        .status()
                        == 200
                })
                .count() as u64;
            let listed: serde_json::Value = client
                .post(format!("{}/container_registries?limit=1000", server.base))
                .json(&filter)
                .send()
                .unwrap()
                .json()
                .unwrap();
            let listed = listed["data"].as_array().unwrap().len() as u64;
            let counted = facets();
            if listed == stored && counted == (stored, stored) {
                break stored;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: stored {stored}, listed {listed}, facets (matched, tag) {counted:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        if stored != 5 {
            println!("round {round}: {stored} entries stored, listed and counted");
            return;
        }
    }
    panic!("no write whose client hung up landed in 10 rounds: the test could not tell");
}
