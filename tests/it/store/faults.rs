//! The DynamoDB store under faults: the real router on a `DynamoStore` whose client (with the
//! service's own retry and timeout settings) talks to dynalite through a proxy that throttles,
//! answers 500, resets connections before and after forwarding, and delays
//! (`support/fault_proxy.rs`). What a user must see: never a 500; a 503 always with `Retry-After`;
//! a write that applied answers as applied, even when its first answer was lost; and afterwards
//! every acknowledged write holds and the tag index agrees with the entries (both read from
//! dynalite directly, not through the proxy).
//!
//! Each lost-answer case runs twice: with `ClientRequestToken` reaching dynalite (which then
//! answers the SDK's retry as the first try's success), and with the proxy stripping it, where the
//! store must read back and decide.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::support;
use crate::support::fault_proxy::{Counts, Fault, FaultProxy, Rates};
use aws_sdk_dynamodb::config::retry::RetryPartition;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use rand::{Rng, SeedableRng, rngs::StdRng};
use registry_db::error::STORE_RETRY_AFTER_SECS;
use registry_db::store::dynamodb::filter::TranslateOptions;
use registry_db::store::dynamodb::{
    DynamoStore, SDK_ATTEMPT_TIMEOUT, SDK_MAX_ATTEMPTS, SDK_OPERATION_TIMEOUT, default_tag_table,
    retry_config, sdk_http_client, timeout_config,
};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The router on a fresh table, reached through a fault proxy.
struct Rig {
    app: Router,
    proxy: FaultProxy,
    table: String,
}

async fn rig(seed: u64, rates: Rates, strip_tokens: bool) -> Rig {
    // Tables are made directly on dynalite, so that faults hit only what the test sends.
    let table = support::dynamo_store_named("faults").await.table;
    let proxy = FaultProxy::start(&support::dynalite(), seed, rates, strip_tokens).await;
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&proxy.endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .http_client(sdk_http_client())
        // The service's own settings (`DynamoStore::connect` uses them).
        .retry_config(retry_config())
        .timeout_config(timeout_config())
        // A retry quota of its own: in one process the SDK's clients share one by default, and
        // one test's outage would spend another's retries.
        .retry_partition(RetryPartition::new(format!("faults-{table}")))
        .build();
    let store = DynamoStore::from_client(
        aws_sdk_dynamodb::Client::from_conf(config),
        &table,
        &default_tag_table(&table),
        TranslateOptions::DYNALITE,
    );
    Rig {
        app: support::app(Arc::new(store), None),
        proxy,
        table,
    }
}

/// One request through the router: status, headers, JSON body.
async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "{method} {uri}: {status}, not JSON: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{method} {uri}: {json}"
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert_eq!(
            headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some(STORE_RETRY_AFTER_SECS.to_string().as_str()),
            "{method} {uri}: a 503 without Retry-After: {json}"
        );
        assert_eq!(json["code"], "store_unavailable", "{json}");
    }
    (status, headers, json)
}

fn entry(id: &str, name: &str, tags: &[&str]) -> Value {
    json!({
        "container_registry_id": id,
        "container_registry_name": name,
        "container_registry_public_url": format!("http://127.0.0.1:9/{name}"),
        "container_registry_tags": tags,
    })
}

type Item = HashMap<String, AttributeValue>;

/// Every item of a table, read from dynalite directly.
async fn scan_all(table: &str) -> Vec<Item> {
    let client = support::dynamo_client();
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap();
        items.extend(out.items.unwrap_or_default());
        match out.last_evaluated_key {
            Some(key) => start = Some(key),
            None => return items,
        }
    }
}

fn text(item: &Item, name: &str) -> String {
    item[name].as_s().unwrap().clone()
}

fn tags_of(item: &Item) -> BTreeSet<String> {
    match item.get("container_registry_tags") {
        Some(AttributeValue::L(list)) => list.iter().map(|v| v.as_s().unwrap().clone()).collect(),
        _ => BTreeSet::new(),
    }
}

/// What dynalite holds: id -> (name, tags, version), read directly.
async fn stored(table: &str) -> BTreeMap<String, (String, BTreeSet<String>, u64)> {
    scan_all(table)
        .await
        .iter()
        .map(|item| {
            let version = item["container_registry_version"]
                .as_n()
                .unwrap()
                .parse()
                .unwrap();
            (
                text(item, "container_registry_id"),
                (
                    text(item, "container_registry_name"),
                    tags_of(item),
                    version,
                ),
            )
        })
        .collect()
}

/// The tag index holds exactly one item per (tag, entry) the entries carry: no more, no fewer.
async fn assert_index_agrees(table: &str) {
    let wanted: BTreeSet<(String, String)> = stored(table)
        .await
        .into_iter()
        .flat_map(|(id, (_, tags, _))| tags.into_iter().map(move |t| (t, id.clone())))
        .collect();
    let indexed: BTreeSet<(String, String)> = scan_all(&default_tag_table(table))
        .await
        .iter()
        .map(|item| (text(item, "tag"), text(item, "container_registry_id")))
        // The index's own completion marker is not a tag (its partition is too long for one).
        .filter(|(tag, _)| tag.chars().count() <= 64)
        .collect();
    assert_eq!(
        indexed, wanted,
        "the tag index disagrees with a full scan of the entries"
    );
}

fn count(counter: &std::sync::atomic::AtomicUsize) -> usize {
    Counts::get(counter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_keeps_failing_answers_503_with_retry_after_after_the_sdk_tries_five_times() {
    for (name, rates) in [
        (
            "throttled",
            Rates {
                throttle: 1.0,
                ..Rates::NONE
            },
        ),
        (
            "500s",
            Rates {
                server_error: 1.0,
                ..Rates::NONE
            },
        ),
        (
            "resets",
            Rates {
                reset_before: 1.0,
                ..Rates::NONE
            },
        ),
    ] {
        let rig = rig(1, rates, false).await;
        // One GET is one GetItem: the SDK tries it SDK_MAX_ATTEMPTS times, then the client hears.
        let (status, headers, body) = send(&rig.app, "GET", "/container_registry/a", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{name}: {body}");
        assert_eq!(headers[header::RETRY_AFTER], "1", "{name}");
        assert_eq!(
            count(&rig.proxy.counts().requests),
            SDK_MAX_ATTEMPTS as usize,
            "{name}: tries of one GetItem"
        );
        // Writes too; and nothing about the store's credentials or endpoint reaches the client.
        let (status, _, body) = send(
            &rig.app,
            "POST",
            "/container_registry",
            Some(entry("a", "a", &["gpu"])),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{name}: {body}");
        let text = body.to_string();
        assert!(
            !text.contains(&rig.proxy.endpoint) && !text.contains("test"),
            "{text}"
        );
        assert!(
            stored(&rig.table).await.is_empty(),
            "{name}: nothing was forwarded"
        );
    }
}

/// The first try of the write applies and its answer is lost (reset after forwarding); the SDK
/// tries again.
async fn lose_the_next_write_answer(rig: &Rig) {
    rig.proxy.script("TransactWriteItems", Fault::ResetAfter);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_answers_201() {
    for strip_tokens in [false, true] {
        let rig = rig(2, Rates::NONE, strip_tokens).await;
        lose_the_next_write_answer(&rig).await;
        let (status, _, body) = send(
            &rig.app,
            "POST",
            "/container_registry",
            Some(entry("c1", "first", &["gpu", "eu"])),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "tokens stripped: {strip_tokens}: {body}"
        );
        assert_eq!(rig.proxy.scripted_left(), 0);
        assert_eq!(count(&rig.proxy.counts().reset_after), 1);
        let held = stored(&rig.table).await;
        assert_eq!(held["c1"].0, "first");
        assert_eq!(held["c1"].2, 1, "written once");
        assert_index_agrees(&rig.table).await;
        // The id is taken now: a second create of it is refused, as it must be.
        let (status, _, body) = send(
            &rig.app,
            "POST",
            "/container_registry",
            Some(entry("c1", "second", &[])),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(stored(&rig.table).await["c1"].0, "first");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_whose_answer_was_lost_answers_200() {
    for strip_tokens in [false, true] {
        let rig = rig(3, Rates::NONE, strip_tokens).await;
        let (status, _, _) = send(
            &rig.app,
            "POST",
            "/container_registry",
            Some(entry("d1", "d", &["gpu"])),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        lose_the_next_write_answer(&rig).await;
        let (status, _, body) = send(&rig.app, "DELETE", "/container_registry/d1", None).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "tokens stripped: {strip_tokens}: {body}"
        );
        assert_eq!(body["data"]["message"], "Container registry deleted");
        assert_eq!(count(&rig.proxy.counts().reset_after), 1);
        assert!(stored(&rig.table).await.is_empty());
        assert_index_agrees(&rig.table).await;
        let (status, _, _) = send(&rig.app, "DELETE", "/container_registry/d1", None).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "a second delete finds nothing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_whose_answer_was_lost_answers_200_with_the_entry_written_once() {
    for strip_tokens in [false, true] {
        let rig = rig(4, Rates::NONE, strip_tokens).await;
        let (status, _, _) = send(
            &rig.app,
            "POST",
            "/container_registry",
            Some(entry("u1", "before", &["gpu", "eu"])),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        lose_the_next_write_answer(&rig).await;
        let (status, _, body) = send(
            &rig.app,
            "PUT",
            "/container_registry/u1",
            Some(json!({"$set": {"container_registry_name": "after", "container_registry_tags": ["gpu", "us"]}})),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "tokens stripped: {strip_tokens}: {body}"
        );
        let answered = &body["data"]["entry"];
        assert_eq!(answered["container_registry_name"], "after");
        assert_eq!(
            answered["container_registry_version"], 2,
            "one update, one version: {body}"
        );
        assert_eq!(count(&rig.proxy.counts().reset_after), 1);
        let held = stored(&rig.table).await;
        assert_eq!(held["u1"].0, "after");
        assert_eq!(held["u1"].2, 2, "applied once");
        assert_eq!(
            held["u1"].1,
            BTreeSet::from(["gpu".to_string(), "us".to_string()])
        );
        assert_index_agrees(&rig.table).await;
    }
}

/// What an id may hold, as far as the answers so far tell: one state once a write was
/// acknowledged (or a read saw it), more after a 503 (the write may or may not have applied).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    Absent,
    Present {
        name: String,
        tags: BTreeSet<String>,
    },
}

enum Op {
    Create(String, Vec<&'static str>),
    Update(String, Vec<&'static str>),
    Delete,
    Get,
}

/// For an op applied to one state: the status it answers and the state it leaves.
fn apply(op: &Op, state: &State) -> (StatusCode, State) {
    let present = |name: &String, tags: &[&str]| State::Present {
        name: name.clone(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    };
    match (op, state) {
        (Op::Create(name, tags), State::Absent) => (StatusCode::CREATED, present(name, tags)),
        (Op::Create(..), s) => (StatusCode::CONFLICT, s.clone()),
        (Op::Update(..) | Op::Delete | Op::Get, State::Absent) => {
            (StatusCode::NOT_FOUND, State::Absent)
        }
        (Op::Update(name, tags), State::Present { .. }) => (StatusCode::OK, present(name, tags)),
        (Op::Delete, State::Present { .. }) => (StatusCode::OK, State::Absent),
        (Op::Get, s) => (StatusCode::OK, s.clone()),
    }
}

/// One worker: a few ids of its own (so every answer is predictable), a seeded run of creates,
/// updates, deletes and reads on them. Returns what each id may hold, and the statuses seen.
async fn worker(
    app: Router,
    worker: usize,
    ops: usize,
    seed: u64,
) -> (BTreeMap<String, BTreeSet<State>>, Vec<StatusCode>) {
    const TAGS: [&str; 5] = ["gpu", "edge", "eu", "us", "arm"];
    let mut rng = StdRng::seed_from_u64(seed ^ worker as u64);
    let ids: Vec<String> = (0..3).map(|i| format!("w{worker}-{i}")).collect();
    let mut may_hold: BTreeMap<String, BTreeSet<State>> = ids
        .iter()
        .map(|id| (id.clone(), BTreeSet::from([State::Absent])))
        .collect();
    let mut statuses = Vec::new();
    for n in 0..ops {
        let id = &ids[rng.random_range(0..ids.len())];
        let tags: Vec<&'static str> = TAGS
            .iter()
            .copied()
            .filter(|_| rng.random_bool(0.4))
            .collect();
        let name = format!("n{worker}-{n}");
        let possible = may_hold[id].clone();
        let op = if possible.iter().all(|s| *s == State::Absent) {
            Op::Create(name.clone(), tags.clone())
        } else {
            match rng.random_range(0..10) {
                0 => Op::Create(name.clone(), tags.clone()),
                1..=4 => Op::Update(name.clone(), tags.clone()),
                5..=6 => Op::Delete,
                _ => Op::Get,
            }
        };
        let (method, uri, body) = match &op {
            Op::Create(name, tags) => (
                "POST",
                "/container_registry".to_string(),
                Some(entry(id, name, tags)),
            ),
            Op::Update(name, tags) => (
                "PUT",
                format!("/container_registry/{id}"),
                Some(
                    json!({"$set": {"container_registry_name": name, "container_registry_tags": tags}}),
                ),
            ),
            Op::Delete => ("DELETE", format!("/container_registry/{id}"), None),
            Op::Get => ("GET", format!("/container_registry/{id}"), None),
        };
        let (status, _, answer) = send(&app, method, &uri, body).await;
        statuses.push(status);
        let outcomes: Vec<(StatusCode, State)> = possible.iter().map(|s| apply(&op, s)).collect();
        let next: BTreeSet<State> = if status == StatusCode::SERVICE_UNAVAILABLE {
            // Unknown whether it applied: either.
            possible
                .iter()
                .cloned()
                .chain(outcomes.into_iter().map(|(_, s)| s))
                .collect()
        } else {
            outcomes
                .into_iter()
                .filter(|(expected, after)| {
                    *expected == status
                        && match (&op, after) {
                            // A read also says what is there.
                            (Op::Get, State::Present { name, .. }) => {
                                answer["data"]["container_registry_name"] == name.as_str()
                            }
                            _ => true,
                        }
                })
                .map(|(_, s)| s)
                .collect()
        };
        assert!(
            !next.is_empty(),
            "{method} {uri} answered {status} ({answer}), which none of {possible:?} explains"
        );
        if let (Op::Update(name, _), StatusCode::OK) = (&op, status) {
            assert_eq!(
                answer["data"]["entry"]["container_registry_name"],
                name.as_str()
            );
        }
        may_hold.insert(id.clone(), next);
    }
    (may_hold, statuses)
}

/// The issue's mix: throttled 15 %, 500 8 %, reset before 5 % and after 4 % of requests, 3 %
/// delayed by up to 2.5 s (past the SDK's 2 s per try, so a late try arrives after its retry).
fn issue_mix() -> Rates {
    Rates {
        throttle: 0.15,
        server_error: 0.08,
        reset_before: 0.05,
        reset_after: 0.04,
        delay: 0.03,
        max_delay: Duration::from_millis(2500),
    }
}

async fn mixed_workload_under_faults(strip_tokens: bool, seed: u64) {
    let mut rates = issue_mix();
    if strip_tokens {
        // Without the token nothing can stop a try that arrives after its own retry succeeded
        // from applying again later (a create after the entry's delete, a delete of the entry made
        // again at the same version): that is what the token is for. Without it, delays stay
        // within one try.
        rates.max_delay = SDK_ATTEMPT_TIMEOUT - Duration::from_millis(500);
    }
    let rig = rig(seed, rates, strip_tokens).await;
    let workers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(worker(rig.app.clone(), w, 60, seed)))
        .collect();
    let mut may_hold = BTreeMap::new();
    let mut statuses = Vec::new();
    for w in workers {
        let (held, seen) = w.await.unwrap();
        may_hold.extend(held);
        statuses.extend(seen);
    }
    let counts = rig.proxy.counts();
    let unavailable = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    eprintln!(
        "{} requests, {unavailable} answered 503; DynamoDB requests and faults: {counts:?}",
        statuses.len()
    );
    // The faults did happen, every kind of them.
    for (kind, n) in [
        ("throttled", count(&counts.throttled)),
        ("500", count(&counts.server_errors)),
        ("reset before", count(&counts.reset_before)),
        ("reset after", count(&counts.reset_after)),
        ("delayed", count(&counts.delayed)),
    ] {
        assert!(n > 0, "no request was {kind}: {counts:?}");
    }
    let acknowledged = statuses.iter().filter(|s| s.is_success()).count();
    assert!(
        acknowledged > statuses.len() / 2,
        "too few writes got through: {statuses:?}"
    );
    // Every id holds what the answers said (one state), or one of the states a 503 left open.
    let held = stored(&rig.table).await;
    for (id, possible) in &may_hold {
        let actual = match held.get(id) {
            None => State::Absent,
            Some((name, tags, _)) => State::Present {
                name: name.clone(),
                tags: tags.clone(),
            },
        };
        assert!(
            possible.contains(&actual),
            "{id} holds {actual:?}; the answers allow only {possible:?}"
        );
    }
    assert_index_agrees(&rig.table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_issues_fault_mix_every_acknowledged_write_holds() {
    mixed_workload_under_faults(false, 18).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_issues_fault_mix_writes_hold_even_when_dynamodb_ignores_tokens() {
    mixed_workload_under_faults(true, 1806).await;
}

/// The real binary (`DynamoStore::connect`, the SDK settings it applies) over the proxy: a read
/// throttled on all of its tries answers 503 with `Retry-After` after exactly
/// [`SDK_MAX_ATTEMPTS`] tries (the SDK's default would be 3), and a create whose answer was lost
/// answers 201.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_retries_as_configured_and_answers_a_lost_create_as_created() {
    let table = support::dynamo_store_named("faultsbin").await.table;
    let proxy = FaultProxy::start(&support::dynalite(), 5, Rates::NONE, false).await;
    let envs = [
        ("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let server = tokio::task::block_in_place(|| {
        support::start_server(&["--store", "dynamodb", "--table", &table], &envs)
    });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    for _ in 0..SDK_MAX_ATTEMPTS {
        proxy.script("GetItem", Fault::Throttle);
    }
    let response = client
        .get(format!("{}/container_registry/b1", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()[header::RETRY_AFTER.as_str()], "1");
    assert_eq!(
        proxy.scripted_left(),
        0,
        "the SDK gave up before its fifth try"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "store_unavailable");

    proxy.script("TransactWriteItems", Fault::ResetAfter);
    let response = client
        .post(format!("{}/container_registry", server.base))
        .json(&entry("b1", "binary", &["gpu"]))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(count(&proxy.counts().reset_after), 1);
    assert_eq!(stored(&table).await["b1"].0, "binary");
    assert_index_agrees(&table).await;
}

/// A try slower than `SDK_ATTEMPT_TIMEOUT` is abandoned and tried again, instead of holding the
/// request until API Gateway gives up; the slow try still arrives later (as it would on a
/// network), and for a write that changes nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_try_slower_than_the_per_try_timeout_is_tried_again() {
    let slow = SDK_ATTEMPT_TIMEOUT + Duration::from_millis(500);
    for strip_tokens in [false, true] {
        let rig = rig(6, Rates::NONE, strip_tokens).await;
        rig.proxy.script("TransactWriteItems", Fault::Delay(slow));
        let (status, _, body) = send(
            &rig.app,
            "POST",
            "/container_registry",
            Some(entry("s1", "slow", &["gpu"])),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "tokens stripped: {strip_tokens}: {body}"
        );
        rig.proxy.script("GetItem", Fault::Delay(slow));
        let (status, _, body) = send(&rig.app, "GET", "/container_registry/s1", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["container_registry_name"], "slow");
        // Each delayed try was followed by a second; wait (boundedly) for the late ones to land.
        let counts = rig.proxy.counts();
        for _ in 0..100 {
            if count(&counts.forwarded) == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(count(&counts.delayed), 2);
        assert_eq!(count(&counts.requests), 4, "{counts:?}");
        assert_eq!(count(&counts.forwarded), 4, "{counts:?}");
        let held = stored(&rig.table).await;
        assert_eq!(held["s1"].2, 1, "written once");
        assert_index_agrees(&rig.table).await;
    }
}

/// Tries that all hang are cut off by `SDK_OPERATION_TIMEOUT`: a 503 with `Retry-After` after as
/// many whole tries as fit in it (three of 2 s in 6 s), not five tries of 2 s and their backoffs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tries_that_all_hang_end_at_the_operation_timeout() {
    let rig = rig(7, Rates::NONE, false).await;
    for _ in 0..SDK_MAX_ATTEMPTS {
        rig.proxy
            .script("GetItem", Fault::Delay(SDK_OPERATION_TIMEOUT));
    }
    let (status, headers, body) = send(&rig.app, "GET", "/container_registry/h1", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    let fit = SDK_OPERATION_TIMEOUT.as_millis() / SDK_ATTEMPT_TIMEOUT.as_millis();
    assert_eq!(count(&rig.proxy.counts().requests) as u128, fit);
    assert_eq!(
        rig.proxy.scripted_left(),
        SDK_MAX_ATTEMPTS as usize - fit as usize
    );
}

/// DynamoDB cancels a transaction that meets a concurrent one (TransactionConflict): it wrote
/// nothing, so the store tries again, each time as a new request (a new token), until it goes
/// through; the entry is written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_transaction_is_tried_again_under_a_new_token() {
    let rig = rig(8, Rates::NONE, false).await;
    rig.proxy.script("TransactWriteItems", Fault::Conflict);
    rig.proxy.script("TransactWriteItems", Fault::Conflict);
    let (status, _, body) = send(
        &rig.app,
        "POST",
        "/container_registry",
        Some(entry("x1", "contended", &["gpu", "eu"])),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let tokens = rig.proxy.transaction_tokens();
    assert_eq!(tokens.len(), 3, "{tokens:?}");
    assert!(
        tokens
            .iter()
            .all(|t| t.as_ref().is_some_and(|t| t.len() <= 36)),
        "{tokens:?}"
    );
    assert_eq!(
        tokens.iter().collect::<BTreeSet<_>>().len(),
        3,
        "{tokens:?}"
    );
    assert_eq!(stored(&rig.table).await["x1"].2, 1);
    assert_index_agrees(&rig.table).await;
    // And a lost answer's retry is the same request under the same token.
    rig.proxy.script("TransactWriteItems", Fault::ResetAfter);
    let (status, _, body) = send(
        &rig.app,
        "PUT",
        "/container_registry/x1",
        Some(json!({"$set": {"container_registry_name": "settled"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tokens = rig.proxy.transaction_tokens();
    assert_eq!(tokens.len(), 5, "{tokens:?}");
    assert_eq!(tokens[3], tokens[4], "a retry carries its write's token");
    assert_ne!(tokens[3], tokens[2], "another write, another token");
}
