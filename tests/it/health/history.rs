//! Health over time (issue 21): every probe, on-demand or by a sweep, counted per entry and UTC day on
//! both stores; `GET /container_registry/{id}/health/history` and `uptime_30d` on the entry; the
//! 90-day bound on an injected clock; concurrent checks from two servers on one DynamoDB table; and
//! what an unchanged sweep costs in DynamoDB write units, as dynalite reports them.

use crate::support;
use crate::support::oci_registry::{Mode, OciRegistry};

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use axum::Router;
use axum::http::StatusCode;
use registry_db::domain::catalog::{Catalog, CheckPolicy};
use registry_db::domain::history::{Clock, Day, ManualClock};
use registry_db::health::SweepOptions;
use registry_db::router::router;
use registry_db::state::AppState;
use registry_db::store::Store;
use registry_db::store::dynamodb::filter::TranslateOptions;
use registry_db::store::dynamodb::{DynamoStore, default_history_table, default_tag_table};
use serde_json::{Value, json};
use support::call;

fn entry_at(id: &str, url: &str) -> Value {
    json!({"container_registry_id": id, "container_registry_name": id, "container_registry_public_url": url})
}

fn closed_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

/// A catalog that probes on every check (no cooldown), on `clock`.
fn catalog(store: Arc<dyn Store>, clock: &ManualClock) -> Catalog {
    Catalog::new(store, support::loopback_prober(2000))
        .with_check_policy(CheckPolicy {
            cooldown: Duration::ZERO,
            ..CheckPolicy::default()
        })
        .with_clock(Arc::new(clock.clone()))
}

fn app_of(catalog: Catalog) -> Router {
    router(AppState {
        catalog,
        write_token: None,
        access: Default::default(),
    })
}

fn quiet_sweep() -> SweepOptions {
    SweepOptions {
        jitter: Duration::ZERO,
        ..SweepOptions::default()
    }
}

/// A test's clock, starting now: the prober stamps `checked_at` from the system's clock.
fn start_clock() -> ManualClock {
    ManualClock::at(chrono::Utc::now())
}

async fn history(app: &Router, id: &str, days: u32) -> Value {
    let (status, body) = call(
        app,
        "GET",
        &format!("/container_registry/{id}/health/history?days={days}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].clone()
}

/// A fresh dynalite table as the concrete store (for its write-unit count).
async fn dynamo_table(prefix: &str) -> (Arc<DynamoStore>, String) {
    let table = format!("{prefix}{}-{}", std::process::id(), rand::random::<u32>());
    let store = DynamoStore::from_client(
        support::dynamo_client(),
        &table,
        &default_tag_table(&table),
        TranslateOptions::DYNALITE,
    );
    store
        .ensure_table()
        .await
        .expect("create the tables on dynalite");
    (Arc::new(store), table)
}

#[tokio::test]
async fn checks_and_sweeps_count_per_day_on_both_stores() {
    support::require_loopback_only_network();
    let open = OciRegistry::start(Mode::Open);
    let closed = closed_port_url();
    for s in support::stores().await {
        let clock = start_clock();
        let cat = catalog(s.store.clone(), &clock);
        let app = app_of(cat.clone());
        for (id, url) in [("up", open.url.as_str()), ("down", closed.as_str())] {
            let (status, body) =
                call(&app, "POST", "/container_registry", Some(entry_at(id, url))).await;
            assert_eq!(status, StatusCode::CREATED, "{}: {body}", s.name);
        }
        // Never probed: every day a gap, no uptime.
        let h = history(&app, "up", 30).await;
        assert_eq!(
            h["uptime"],
            json!({"7d": null, "30d": null, "90d": null}),
            "{}",
            s.name
        );
        assert_eq!(h["days"].as_array().unwrap().len(), 30);

        // Two checks of "up", one of "down", then two sweeps of both.
        for _ in 0..2 {
            let (status, body) = call(&app, "GET", "/check_container_health/up", None).await;
            assert_eq!(status, StatusCode::OK, "{}: {body}", s.name);
            assert_eq!(body["data"]["uptime_30d"], 1.0, "{}: {body}", s.name);
        }
        let (status, _) = call(&app, "GET", "/check_container_health/down", None).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        for _ in 0..2 {
            let report = cat.sweep(&quiet_sweep()).await.unwrap();
            assert_eq!((report.total, report.record_failures), (2, 0), "{}", s.name);
        }

        let today = clock.today().iso();
        let up = history(&app, "up", 7).await;
        let days = up["days"].as_array().unwrap();
        assert_eq!(days.len(), 7);
        let last = &days[6];
        assert_eq!(last["date"], today.as_str());
        assert_eq!(
            (&last["probes"], &last["healthy"], &last["unreachable"]),
            (&json!(4), &json!(4), &json!(0)),
            "{}: {up}",
            s.name
        );
        assert!(last["latency_ms"]["p50"].as_u64().is_some(), "{up}");
        assert!(last["latency_ms"]["p95"].as_u64() >= last["latency_ms"]["p50"].as_u64());
        assert!(days[..6].iter().all(|d| d["probes"] == 0), "{up}");
        assert_eq!(up["uptime"], json!({"7d": 1.0, "30d": 1.0, "90d": 1.0}));

        let down = history(&app, "down", 1).await;
        assert_eq!(down["days"][0]["unreachable"], 3, "{}: {down}", s.name);
        assert_eq!(down["uptime"]["30d"], 0.0);

        // uptime_30d on the entry, and a filter on it, on either store.
        let (_, got) = call(&app, "GET", "/container_registry/down", None).await;
        assert_eq!(
            got["data"]["container_registry_health"]["uptime_30d"], 0.0,
            "{got}"
        );
        let (status, found) = call(
            &app,
            "POST",
            "/container_registries",
            Some(json!({"container_registry_health.uptime_30d": {"$gte": 0.99}})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{found}");
        let ids: Vec<&str> = found["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["container_registry_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["up"], "{}", s.name);
        // A managed field: no update sets it.
        let (status, body) = call(
            &app,
            "PUT",
            "/container_registry/down",
            Some(json!({"$set": {"container_registry_health.uptime_30d": 1.0}})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

        // Deleting the entry deletes its history.
        let (status, _) = call(&app, "DELETE", "/container_registry/up", None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = call(&app, "GET", "/container_registry/up/health/history", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let left = s
            .store
            .health_days("up", Day(0), clock.today())
            .await
            .unwrap();
        assert!(left.is_empty(), "{}: {left:?}", s.name);
    }
}

#[tokio::test]
async fn days_without_probes_are_gaps_and_days_past_90_are_gone() {
    support::require_loopback_only_network();
    let closed = closed_port_url();
    let (embedded, _dir) = support::embedded_store();
    let (dynamo, table) = dynamo_table("hist90").await;
    for (name, store) in [
        ("embedded", embedded),
        ("dynamodb", dynamo as Arc<dyn Store>),
    ] {
        let clock = start_clock();
        let first = clock.today();
        let app = app_of(catalog(store.clone(), &clock));
        let (status, _) = call(
            &app,
            "POST",
            "/container_registry",
            Some(entry_at("e", &closed)),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let check = || async {
            let (status, _) = call(&app, "GET", "/check_container_health/e", None).await;
            assert_eq!(status, StatusCode::BAD_GATEWAY);
        };
        check().await;
        // Two days without probes (no sweep ran), then one more.
        clock.advance(chrono::Duration::days(3));
        check().await;
        let h = history(&app, "e", 4).await;
        let probes: Vec<u64> = h["days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["probes"].as_u64().unwrap())
            .collect();
        assert_eq!(probes, [1, 0, 0, 1], "{name}: {h}");
        assert_eq!(h["days"][0]["date"], first.iso().as_str());
        assert_eq!(
            h["days"][1]["latency_ms"],
            json!({"p50": null, "p95": null})
        );

        // 90 days after the first probe, its day is out: the oldest kept is day 1.
        clock.advance(chrono::Duration::days(87));
        assert_eq!(clock.today(), Day(first.0 + 90));
        check().await;
        let h = history(&app, "e", 90).await;
        let days = h["days"].as_array().unwrap();
        assert_eq!(days.len(), 90);
        assert_eq!(days[0]["date"], Day(first.0 + 1).iso().as_str(), "{name}");
        let total: u64 = days.iter().map(|d| d["probes"].as_u64().unwrap()).sum();
        assert_eq!(
            total, 2,
            "{name}: the first day's probe no longer counts: {h}"
        );
        assert_eq!(days[2]["probes"], 1);
        let stored = store.health_days("e", Day(0), clock.today()).await.unwrap();
        match name {
            // pruned on write
            "embedded" => assert_eq!(
                stored.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
                [Day(first.0 + 3), Day(first.0 + 90)]
            ),
            // DynamoDB's TTL removes it (dynalite keeps it, and no answer reads it): it expires
            // exactly 90 days after its day began.
            _ => {
                let item = support::dynamo_client()
                    .get_item()
                    .table_name(default_history_table(&table))
                    .key("container_registry_id", AttributeValue::S("e".into()))
                    .key("day", AttributeValue::S(first.iso()))
                    .send()
                    .await
                    .unwrap()
                    .item
                    .expect("the first day's item");
                let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
                assert_eq!(expires, (i64::from(first.0) + 90) * 86_400);
                assert!(expires <= clock.now().timestamp());
            }
        }
    }
}

#[tokio::test]
async fn bad_days_are_a_400_naming_the_parameter() {
    let (store, _dir) = support::embedded_store();
    let app = support::app(store, None);
    call(
        &app,
        "POST",
        "/container_registry",
        Some(support::entry("e", "e")),
    )
    .await;
    for bad in [
        "0",
        "1000",
        "abc",
        "-1",
        "",
        "91",
        "1.5",
        "99999999999999999999",
    ] {
        let (status, body) = call(
            &app,
            "GET",
            &format!("/container_registry/e/health/history?days={bad}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "days={bad}: {body}");
        assert_eq!(body["code"], "invalid_days", "{body}");
        assert!(
            body["error"].as_str().unwrap().starts_with("days must be"),
            "{body}"
        );
    }
    for (query, days) in [("", 30), ("?days=1", 1), ("?days=90", 90)] {
        let (status, body) = call(
            &app,
            "GET",
            &format!("/container_registry/e/health/history{query}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["days"].as_array().unwrap().len(), days);
    }
    let (status, body) = call(&app, "GET", "/container_registry/nope/health/history", None).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );
}

#[tokio::test]
async fn concurrent_checks_from_two_servers_on_one_table_lose_no_count() {
    support::require_loopback_only_network();
    let open = OciRegistry::start(Mode::Open);
    let (first, table) = dynamo_table("histrace").await;
    // A second server: its own client and store on the same tables.
    let second = Arc::new(DynamoStore::from_client(
        support::dynamo_client(),
        &table,
        &default_tag_table(&table),
        TranslateOptions::DYNALITE,
    ));
    let clock = start_clock();
    let apps = [
        app_of(catalog(first, &clock)),
        app_of(catalog(second, &clock)),
    ];
    call(
        &apps[0],
        "POST",
        "/container_registry",
        Some(entry_at("e", &open.url)),
    )
    .await;
    const CHECKS: usize = 25;
    // Each server checks one after the other (one server's concurrent checks share one probe);
    // the two servers' checks, and their history writes, overlap.
    let run = |app: Router| async move {
        for _ in 0..CHECKS {
            let (status, body) = call(&app, "GET", "/check_container_health/e", None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    let [a, b] = apps.clone();
    tokio::join!(run(a), run(b));
    let h = history(&apps[1], "e", 1).await;
    assert_eq!(h["days"][0]["healthy"], 2 * CHECKS, "{h}");
    assert_eq!(h["days"][0]["probes"], 2 * CHECKS, "{h}");
}

/// An entry whose JSON is about `bytes` long (its metadata padded).
fn sized_entry(id: &str, url: &str, bytes: usize) -> Value {
    let mut e = entry_at(id, url);
    let pad = bytes.saturating_sub(e.to_string().len() + 60);
    e["container_registry_metadata"] = json!({"notes": "x".repeat(pad)});
    e
}

#[tokio::test]
async fn an_unchanged_sweep_costs_one_write_unit_per_entry_whatever_its_size() {
    support::require_loopback_only_network();
    let open = OciRegistry::start(Mode::Open);
    let mut figures = Vec::new();
    for kb in [1usize, 100] {
        let (store, _) = dynamo_table("histcost").await;
        let clock = start_clock();
        let cat = catalog(store.clone(), &clock);
        let app = app_of(cat.clone());
        let (status, body) = call(
            &app,
            "POST",
            "/container_registry",
            Some(sized_entry("e", &open.url, kb * 1024)),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let sweep = || async {
            let before = store.health_write_units();
            let report = cat.sweep(&quiet_sweep()).await.unwrap();
            assert_eq!((report.total, report.healthy), (1, 1));
            store.health_write_units() - before
        };
        // The first verdict is written on the entry: its whole size, plus the history item.
        let first = sweep().await;
        let (_, got) = call(&app, "GET", "/container_registry/e", None).await;
        let checked_at = got["data"]["container_registry_health"]["checked_at"].clone();
        // The same verdict again: only the history item.
        let unchanged = sweep().await;
        let again = sweep().await;
        figures.push((kb, first, unchanged));
        assert!(first >= kb as f64, "{kb} KB: first sweep {first} units");
        assert!(
            unchanged <= 2.0,
            "{kb} KB: unchanged sweep {unchanged} units"
        );
        assert_eq!(unchanged, 1.0, "{kb} KB");
        assert_eq!(again, 1.0, "{kb} KB");
        // The entry stayed as it was; the history has every probe.
        let (_, got) = call(&app, "GET", "/container_registry/e", None).await;
        assert_eq!(
            got["data"]["container_registry_health"]["checked_at"],
            checked_at
        );
        assert_eq!(got["data"]["container_registry_health"]["uptime_30d"], 1.0);
        assert_eq!(history(&app, "e", 1).await["days"][0]["healthy"], 3);

        // A day later the record is refreshed once (checked_at, uptime_30d), then skipped again.
        clock.advance(chrono::Duration::hours(25));
        let refreshed = sweep().await;
        assert!(refreshed >= kb as f64, "{kb} KB: refresh {refreshed}");
        // (the refresh compares the clock with checked_at, which the prober stamps in real time)
        clock.advance(chrono::Duration::hours(-25));
        assert_eq!(sweep().await, 1.0, "{kb} KB after the refresh");
    }
    eprintln!("write units per sweep of one entry (first verdict, unchanged): {figures:?}");
    // An on-demand check always writes the record: the cooldown and the answer read it.
}

/// `registry_db_sweeps_total` of a running server.
fn sweeps_done(client: &reqwest::blocking::Client, base: &str) -> u64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("registry_db_sweeps_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// The real `serve --sweep-every 1`: each sweep probes each entry once, so an entry's probes today
/// are the sweeps done (and one more while a sweep is under way), never more.
#[test]
fn serve_sweep_every_probes_each_entry_once_per_sweep() {
    support::require_loopback_only_network();
    let open = OciRegistry::start(Mode::Open);
    let closed = closed_port_url();
    let dir = tempfile::tempdir().unwrap();
    let server = support::start_server(
        &[
            "--data",
            dir.path().to_str().unwrap(),
            "--probe-allow-loopback",
            "--probe-timeout-ms",
            "1000",
            "--sweep-every",
            "1",
        ],
        &[],
    );
    let base = server.base.clone();
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    for (id, url) in [("up", open.url.as_str()), ("down", closed.as_str())] {
        let status = client
            .post(format!("{base}/container_registry"))
            .json(&entry_at(id, url))
            .send()
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 201);
    }
    // Sweeps done by now may have run before the entries existed (at most one of them with them).
    let s0 = sweeps_done(&client, &base);
    let probes_today = |id: &str| -> u64 {
        let body: Value = client
            .get(format!(
                "{base}/container_registry/{id}/health/history?days=1"
            ))
            .send()
            .unwrap()
            .json()
            .unwrap();
        body["data"]["days"][0]["probes"].as_u64().unwrap()
    };
    // A safety net only: the assertions count, they do not time.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut checked = 0;
    while checked < 3 {
        assert!(std::time::Instant::now() < deadline, "sweeps did not run");
        let before = sweeps_done(&client, &base);
        let (up, down) = (probes_today("up"), probes_today("down"));
        let after = sweeps_done(&client, &base);
        // Every sweep that started after the entries probed each once: of the sweeps since `s0`,
        // one may have started before them, one counted in `s0` may have had them, and one may be
        // under way now. Two probes a sweep would be twice as many.
        if before == after && before >= s0 + 4 {
            let sweeps = before - s0;
            for (id, probes) in [("up", up), ("down", down)] {
                assert!(
                    probes + 1 >= sweeps && probes <= sweeps + 2,
                    "{id}: {probes} probes in {sweeps} sweeps"
                );
            }
            checked += 1;
        }
        std::thread::sleep(Duration::from_millis(700));
    }
    drop(server);
}
