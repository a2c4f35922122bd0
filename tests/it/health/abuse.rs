//! The health check as a hostile user would use it, through the service, on both stores: registries
//! that answer with huge headers or redirect to the service itself, floods of checks of one entry,
//! more probes than the service runs at once. Every registry here is a real HTTP server on 127.0.0.1
//! that counts what reaches it.
//!
//!     unshare -n bash -c 'ip link set lo up && exec cargo test --offline --test it health::abuse::'

use crate::support::{self, call_full, loopback_config};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use registry_db::domain::catalog::{Catalog, CheckPolicy};
use registry_db::health::limits::MAX_HEALTH_BYTES;
use registry_db::health::{ProbeConfig, Prober, USER_AGENT};
use registry_db::router::router;
use registry_db::state::AppState;
use registry_db::store::Store;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------------
// Helpers

/// A raw HTTP/1.1 server on 127.0.0.1 that counts the requests it gets, waits `hold` and then answers
/// `answer` (a full raw response).
struct Registryish {
    url: String,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Registryish {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Registryish {
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn registryish(hold: Duration, answer: String) -> Registryish {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let r = requests.clone();
    let answer = Arc::new(answer);
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (r, answer) = (r.clone(), answer.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                r.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Registryish {
        url,
        requests,
        task,
    }
}

fn raw(status: &str, headers: &[(&str, &str)]) -> String {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out + "\r\n{}"
}

fn registry_ok() -> String {
    raw(
        "200 OK",
        &[("Docker-Distribution-Api-Version", "registry/2.0")],
    )
}

fn app_with(store: Arc<dyn Store>, cfg: ProbeConfig, checks: CheckPolicy) -> Router {
    let registry = Catalog::new(store, Prober::new(cfg)).with_check_policy(checks);
    router(AppState {
        catalog: registry,
        write_token: None,
        access: Default::default(),
    })
}

fn cooldown(secs: u64) -> CheckPolicy {
    CheckPolicy {
        cooldown: Duration::from_secs(secs),
        ..CheckPolicy::default()
    }
}

async fn create(app: &Router, id: &str, url: &str) {
    let body = json!({"container_registry_id": id, "container_registry_name": id, "container_registry_public_url": url});
    let (status, _, body) = call_full(app, "POST", "/container_registry", Some(body), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn check(app: &Router, id: &str) -> (StatusCode, HeaderMap, Value) {
    call_full(
        app,
        "GET",
        &format!("/check_container_health/{id}"),
        None,
        &[],
    )
    .await
}

async fn stored_health(store: &Arc<dyn Store>, id: &str) -> Value {
    let entry = store.get(id).await.unwrap().unwrap().entry().unwrap();
    serde_json::to_value(entry.container_registry_health).unwrap()
}

// ---------------------------------------------------------------------------------------------------
// Floods

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_concurrent_checks_of_one_entry_make_one_probe() {
    let registry = registryish(Duration::from_millis(300), registry_ok()).await;
    for s in support::stores().await {
        // no cooldown: only the single flight keeps this to one probe
        let app = app_with(s.store.clone(), loopback_config(3000), cooldown(0));
        create(&app, "flooded", &registry.url).await;
        let before = registry.requests();
        let checks: Vec<_> = (0..30)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move { check(&app, "flooded").await })
            })
            .collect();
        let mut checked_at = Vec::new();
        for c in checks {
            let (status, _, body) = c.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{}: {body}", s.name);
            checked_at.push(body["data"]["checked_at"].as_str().unwrap().to_owned());
        }
        assert_eq!(registry.requests() - before, 1, "{}", s.name);
        checked_at.dedup();
        assert_eq!(
            checked_at.len(),
            1,
            "{}: every check got the one result",
            s.name
        );
    }
}

#[tokio::test]
async fn within_the_cooldown_a_check_answers_the_stored_result() {
    let registry = registryish(Duration::ZERO, registry_ok()).await;
    for s in support::stores().await {
        let app = app_with(s.store.clone(), loopback_config(3000), cooldown(30));
        create(&app, "calm", &registry.url).await;
        let before = registry.requests();
        let (status, headers, first) = check(&app, "calm").await;
        assert_eq!(status, StatusCode::OK, "{}: {first}", s.name);
        assert!(headers.get("age").is_none(), "a fresh probe has no Age");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (status, headers, second) = check(&app, "calm").await;
        assert_eq!(status, StatusCode::OK, "{}: {second}", s.name);
        assert_eq!(registry.requests() - before, 1, "{}: one probe", s.name);
        assert_eq!(
            second["data"], first["data"],
            "{}: the stored result",
            s.name
        );
        let age: u64 = headers["age"].to_str().unwrap().parse().unwrap();
        assert!((1..30).contains(&age), "{}: Age {age}", s.name);

        // a new URL is a new question: probed at once
        let (status, _, _) = call_full(
            &app,
            "PUT",
            "/container_registry/calm",
            Some(json!({"$set": {"container_registry_public_url": format!("{}/mirror", registry.url)}})),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (_, headers, third) = check(&app, "calm").await;
        assert!(headers.get("age").is_none(), "{}", s.name);
        assert_eq!(third["data"]["url"], format!("{}/mirror/v2/", registry.url));
        assert_eq!(registry.requests() - before, 2, "{}", s.name);
    }
}

#[tokio::test]
async fn a_failed_probe_is_cached_too_and_the_cooldown_expires() {
    let registry = registryish(Duration::ZERO, raw("404 Not Found", &[])).await;
    for s in support::stores().await {
        let app = app_with(
            s.store.clone(),
            loopback_config(3000),
            CheckPolicy {
                cooldown: Duration::from_millis(1000),
                ..CheckPolicy::default()
            },
        );
        create(&app, "gone", &registry.url).await;
        let before = registry.requests();
        let (status, _, first) = check(&app, "gone").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{}: {first}", s.name);
        let (status, headers, second) = check(&app, "gone").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(second["code"], "not_a_registry");
        assert_eq!(headers["age"], "0");
        assert_eq!(registry.requests() - before, 1, "{}", s.name);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (_, headers, _) = check(&app, "gone").await;
        assert!(headers.get("age").is_none());
        assert_eq!(registry.requests() - before, 2, "{}", s.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_probe_slot_is_taken_a_check_is_429_with_retry_after() {
    let slow = registryish(Duration::from_millis(1500), registry_ok()).await;
    for s in support::stores().await {
        let cfg = ProbeConfig {
            max_in_flight: 1,
            ..loopback_config(4000)
        };
        let app = app_with(
            s.store.clone(),
            cfg,
            CheckPolicy {
                cooldown: Duration::ZERO,
                slot_wait: Duration::from_millis(300),
            },
        );
        create(&app, "first", &slow.url).await;
        create(&app, "second", &format!("{}/other", slow.url)).await;
        let before = slow.requests();
        let app1 = app.clone();
        let first = tokio::spawn(async move { check(&app1, "first").await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let (status, headers, body) = check(&app, "second").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{}: {body}", s.name);
        assert_eq!(body["success"], false);
        assert_eq!(body["code"], "too_many_probes");
        assert!(
            body["error"].as_str().unwrap().contains("maximum of 1"),
            "{body}"
        );
        assert_eq!(headers["retry-after"], "4");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(first.await.unwrap().0, StatusCode::OK);
        assert_eq!(
            slow.requests() - before,
            1,
            "{}: the refused check probed nothing",
            s.name
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// Probe loops

#[tokio::test]
async fn a_request_from_a_probe_never_starts_a_probe() {
    let registry = registryish(Duration::ZERO, registry_ok()).await;
    for s in support::stores().await {
        let app = app_with(s.store.clone(), loopback_config(3000), cooldown(0));
        create(&app, "looped", &registry.url).await;
        let (status, _, body) = call_full(
            &app,
            "GET",
            "/check_container_health/looped",
            None,
            &[("user-agent", USER_AGENT)],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{}: {body}", s.name);
        assert_eq!(body["code"], "probe_loop");
        // another version of this service is refused too
        let (status, _, _) = call_full(
            &app,
            "GET",
            "/check_container_health/looped",
            None,
            &[(
                "user-agent",
                "registry-db/0.0.1 (OCI registry health probe; no credentials)",
            )],
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(registry.requests(), 0, "{}", s.name);
    }
}

/// The attack of the issue, against the real binary: a listed "registry" whose `/v2/` redirects to
/// the service's own check endpoint for that entry. The entry's id is `v2`, so the redirect target
/// `…/check_container_health/v2` even looks like a registry base and is followed: the service must
/// still make exactly one probe for the one request.
#[test]
fn a_registry_that_redirects_to_the_service_itself_gets_one_probe() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let location: Arc<Mutex<String>> = Arc::default();
    // The answer is set once the service's address is known.
    let (evil, loc) = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let (r, loc) = (requests.clone(), location.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                r.fetch_add(1, Ordering::SeqCst);
                let target = loc.lock().unwrap().clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let answer = format!(
                        "HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        ((url, requests), location.clone())
    });
    let (evil_url, evil_requests) = evil;
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let table = format!("loop-{}", std::process::id());
    let dynalite = support::dynalite();
    let embedded_args = vec!["--data", dir.path().to_str().unwrap()];
    let dynamodb_args = vec!["--store", "dynamodb", "--table", &table, "--create-table"];
    let dynamodb_env = vec![
        ("AWS_ENDPOINT_URL_DYNAMODB", dynalite.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    let runs = [
        ("embedded", embedded_args, vec![]),
        ("dynamodb", dynamodb_args, dynamodb_env),
    ];
    for (name, args, envs) in runs {
        let mut args = args;
        args.extend(["--probe-allow-loopback", "--probe-cooldown-secs", "0"]);
        let server = support::start_server(&args, &envs);
        for (id, path) in [
            ("v2", "/check_container_health/v2"),
            ("plain", "/check_container_health/plain"),
        ] {
            *loc.lock().unwrap() = format!("{}{path}", server.base);
            let created = client
                .post(format!("{}/container_registry", server.base))
                .json(&json!({"container_registry_id": id, "container_registry_name": id, "container_registry_public_url": evil_url}))
                .send()
                .unwrap();
            assert_eq!(created.status(), 201, "{name}");
            let before = evil_requests.load(Ordering::SeqCst);
            let started = Instant::now();
            let answer = client
                .get(format!("{}/check_container_health/{id}", server.base))
                .send()
                .unwrap();
            assert_eq!(answer.status(), 502, "{name} {id}");
            let body: Value = answer.json().unwrap();
            assert_eq!(body["code"], "not_a_registry", "{name} {id}: {body}");
            assert_eq!(
                evil_requests.load(Ordering::SeqCst) - before,
                1,
                "{name} {id}: one request, one probe"
            );
            assert!(started.elapsed() < Duration::from_secs(5), "{name} {id}");
            let error = body["error"].as_str().unwrap();
            if id == "v2" {
                // followed, and refused by the service as a probe's request
                assert!(error.contains("403"), "{name}: {error}");
            } else {
                assert!(
                    error.contains("not an OCI registry base"),
                    "{name}: {error}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Huge answers

#[tokio::test]
async fn huge_headers_leave_a_small_record_and_the_owner_in_control() {
    // 200 KB of challenge and 150 KB of version header: together just under the ~400 KB of head
    // the HTTP client reads at all (past that the answer is "message head is too large").
    let challenge = format!(
        r#"Bearer realm="https://auth.example/{}",service="registry""#,
        "r".repeat(200 * 1024)
    );
    let huge_auth = registryish(
        Duration::ZERO,
        raw(
            "401 Unauthorized",
            &[
                ("Www-Authenticate", &challenge),
                ("Docker-Distribution-Api-Version", &"v".repeat(150 * 1024)),
            ],
        ),
    )
    .await;
    let huge_location = registryish(
        Duration::ZERO,
        raw(
            "302 Found",
            &[("Location", &format!("/{}", "l".repeat(100 * 1024)))],
        ),
    )
    .await;
    for s in support::stores().await {
        let app = app_with(s.store.clone(), loopback_config(3000), cooldown(0));
        for (id, url, status) in [
            ("auth", &huge_auth.url, StatusCode::OK),
            ("moved", &huge_location.url, StatusCode::BAD_GATEWAY),
        ] {
            create(&app, id, url).await;
            let (got, _, body) = check(&app, id).await;
            assert_eq!(got, status, "{}: {}", s.name, body["error"]);
            assert!(
                body.to_string().len() < MAX_HEALTH_BYTES + 500,
                "{}",
                s.name
            );
            let stored = stored_health(&s.store, id).await;
            assert!(stored.is_object(), "{}: the record was written", s.name);
            let size = stored.to_string().len();
            assert!(
                size <= MAX_HEALTH_BYTES,
                "{}: {id} stored {size} bytes",
                s.name
            );
            assert_eq!(stored, body["data"], "{}", s.name);
            // the owner's updates keep working, plain and read-modify-write alike
            let (code, _, updated) = call_full(
                &app,
                "PUT",
                &format!("/container_registry/{id}"),
                Some(json!({"$set": {"container_registry_name": "still mine"}})),
                &[],
            )
            .await;
            assert_eq!(code, StatusCode::OK, "{}: {updated}", s.name);
            let (_, _, read) =
                call_full(&app, "GET", &format!("/container_registry/{id}"), None, &[]).await;
            let mut whole = read["data"].clone();
            whole["container_registry_tags"] = json!(["edited"]);
            let (code, _, updated) = call_full(
                &app,
                "PUT",
                &format!("/container_registry/{id}"),
                Some(whole),
                &[],
            )
            .await;
            assert_eq!(code, StatusCode::OK, "{}: {updated}", s.name);
        }
    }
}

#[tokio::test]
async fn an_entry_at_the_size_limit_still_takes_the_largest_health_record() {
    use registry_db::domain::size::MAX_CLIENT_JSON_BYTES;
    let realm = "r".repeat(100 * 1024);
    let huge = registryish(
        Duration::ZERO,
        raw(
            "401 Unauthorized",
            &[(
                "Www-Authenticate",
                &format!(r#"Bearer realm="{realm}",service="{realm}",scope="{realm}""#),
            )],
        ),
    )
    .await;
    for s in support::stores().await {
        let app = app_with(s.store.clone(), loopback_config(3000), cooldown(0));
        create(&app, "full", &huge.url).await;
        // Grow the entry to exactly the limit, in bodies under the 256 KiB request limit.
        let size_now = |v: &Value| {
            let mut doc = v.clone();
            doc.as_object_mut()
                .unwrap()
                .remove("container_registry_health");
            serde_json::to_vec(&doc).unwrap().len()
        };
        let (_, _, got) = call_full(&app, "GET", "/container_registry/full", None, &[]).await;
        let mut size = size_now(&got["data"]);
        for part in ["a", "b"] {
            let grow = ((MAX_CLIENT_JSON_BYTES - size) / 2).min(200 * 1024);
            let (code, _, body) = call_full(
                &app,
                "PUT",
                "/container_registry/full",
                Some(json!({"$set": {format!("container_registry_metadata.{part}"): "x".repeat(grow)}})),
                &[],
            )
            .await;
            assert_eq!(code, StatusCode::OK, "{}: {}", s.name, body["error"]);
            size = size_now(&body["data"]["entry"]);
        }
        // the version's digits may grow by one: leave that byte
        let rest = MAX_CLIENT_JSON_BYTES - size - 1 - r#","c":"""#.len();
        let (code, _, body) = call_full(
            &app,
            "PUT",
            "/container_registry/full",
            Some(json!({"$set": {"container_registry_metadata.c": "x".repeat(rest)}})),
            &[],
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{}: {}", s.name, body["error"]);
        assert!(size_now(&body["data"]["entry"]) >= MAX_CLIENT_JSON_BYTES - 1);
        // one byte more is refused, as too large, naming the limit
        let (code, _, body) = call_full(
            &app,
            "PUT",
            "/container_registry/full",
            Some(json!({"$set": {"container_registry_metadata.d": "xx"}})),
            &[],
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{}", s.name);
        assert_eq!(body["code"], "entry_too_large", "{}: {body}", s.name);
        // the probe's largest record still fits, on DynamoDB too...
        let (code, _, body) = check(&app, "full").await;
        assert_eq!(code, StatusCode::OK, "{}: {body}", s.name);
        let (_, _, got) = call_full(&app, "GET", "/container_registry/full", None, &[]).await;
        assert_eq!(
            got["data"]["container_registry_health"], body["data"],
            "{}",
            s.name
        );
        assert!(
            serde_json::to_vec(&got["data"]).unwrap().len()
                <= registry_db::domain::size::MAX_ENTRY_BYTES
        );
        // ...and the owner can still update the entry
        let (code, _, body) = call_full(
            &app,
            "PUT",
            "/container_registry/full",
            Some(json!({"$set": {"container_registry_name": "mine"}})),
            &[],
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{}: {}", s.name, body["error"]);
    }
}
