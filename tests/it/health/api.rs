//! The health check through the service: the endpoint against a real OCI registry (Debian's
//! `docker-registry`) and other servers on loopback, on both stores; the verdict stored on the entry
//! and queryable; `registry-db sweep` and `serve --sweep-every` with the real binary.

use crate::support;
use crate::support::oci_registry;

use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use oci_registry::{Mode, OciRegistry};
use registry_db::store::Store;
use registry_db::store::embedded::EmbeddedStore;
use serde_json::{Value, json};
use support::{app, call};

fn with_url(id: &str, url: &str) -> Value {
    json!({"container_registry_id": id, "container_registry_name": id, "container_registry_public_url": url})
}

/// A loopback port that accepts connections and never answers.
fn silent_port() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

fn closed_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn health_endpoint_verdicts_are_stored_and_queryable() {
    let open = OciRegistry::start(Mode::Open);
    let basic = OciRegistry::start(Mode::htpasswd());
    let closed = closed_port_url();
    for s in support::stores().await {
        let app = app(s.store.clone(), None);
        for (id, url) in [
            ("open", open.url.as_str()),
            ("basic", basic.url.as_str()),
            ("closed", closed.as_str()),
        ] {
            assert_eq!(
                call(&app, "POST", "/container_registry", Some(with_url(id, url)))
                    .await
                    .0,
                StatusCode::CREATED
            );
        }

        let (status, body) = call(&app, "GET", "/check_container_health/open", None).await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", s.name);
        assert_eq!(body["success"], true);
        assert_eq!(body["data"]["status"], "healthy");
        assert_eq!(body["data"]["reachable"], true);
        assert_eq!(body["data"]["status_code"], 200);
        assert_eq!(body["data"]["api_version"], "registry/2.0");
        assert_eq!(body["data"]["url"], format!("{}/v2/", open.url));

        let (status, body) = call(&app, "GET", "/check_container_health/basic", None).await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", s.name);
        assert_eq!(body["data"]["status"], "auth_required");
        assert_eq!(body["data"]["challenge"]["scheme"], "Basic");

        let (status, body) = call(&app, "GET", "/check_container_health/closed", None).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{}: {body}", s.name);
        assert_eq!(body["success"], false);
        assert_eq!(body["code"], "unreachable");
        assert_eq!(body["data"]["status"], "unreachable");
        assert_eq!(body["data"]["reachable"], false);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("refused"),
            "{body}"
        );

        let (status, body) = call(&app, "GET", "/check_container_health/missing", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

        // The verdict is on the entry and can be filtered on.
        let (_, got) = call(&app, "GET", "/container_registry/open", None).await;
        assert_eq!(
            got["data"]["container_registry_health"]["status"],
            "healthy"
        );
        let (_, found) = call(
            &app,
            "POST",
            "/container_registries",
            Some(json!({"container_registry_health.status": "healthy"})),
        )
        .await;
        let ids: Vec<&str> = found["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["container_registry_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["open"], "{}", s.name);
        let (_, found) = call(
            &app,
            "POST",
            "/container_registries",
            Some(json!({"container_registry_health.status": {"$in": ["auth_required", "unreachable"]}})),
        )
        .await;
        assert_eq!(
            found["data"].as_array().unwrap().len(),
            2,
            "{}: {found}",
            s.name
        );

        // Health is server-managed: a client cannot write it.
        let (status, _) = call(
            &app,
            "PUT",
            "/container_registry/open",
            Some(json!({"$set": {"container_registry_health.status": "unreachable"}})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn creating_an_entry_never_contacts_its_registry() {
    // The silent port would hang any request; create and update must answer at once anyway.
    let (listener, url) = silent_port();
    listener.set_nonblocking(true).unwrap();
    for s in support::stores().await {
        let app = app(s.store.clone(), None);
        let started = Instant::now();
        assert_eq!(
            call(
                &app,
                "POST",
                "/container_registry",
                Some(with_url("quiet", &url))
            )
            .await
            .0,
            StatusCode::CREATED
        );
        let (status, _) = call(
            &app,
            "PUT",
            "/container_registry/quiet",
            Some(json!({"$set": {"container_registry_name": "still quiet"}})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    assert!(
        listener.accept().is_err(),
        "nobody connected to the registry's address"
    );
}

#[tokio::test]
async fn a_health_write_does_not_lose_a_concurrent_update_and_vice_versa() {
    let open = OciRegistry::start(Mode::Open);
    for s in support::stores().await {
        let app = app(s.store.clone(), None);
        call(
            &app,
            "POST",
            "/container_registry",
            Some(with_url("busy", &open.url)),
        )
        .await;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    call(&app, "GET", "/check_container_health/busy", None)
                        .await
                        .0
                } else {
                    call(
                        &app,
                        "PUT",
                        "/container_registry/busy",
                        Some(json!({"$addToSet": {"container_registry_tags": format!("t{i}")}})),
                    )
                    .await
                    .0
                }
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), StatusCode::OK);
        }
        let (_, got) = call(&app, "GET", "/container_registry/busy", None).await;
        assert_eq!(
            got["data"]["container_registry_tags"]
                .as_array()
                .unwrap()
                .len(),
            10,
            "{}: {got}",
            s.name
        );
        assert_eq!(
            got["data"]["container_registry_health"]["status"], "healthy",
            "{}",
            s.name
        );
    }
}

/// Anyone may ask for a health check at any time; that must never make an owner's whole-entry
/// update (GET, edit, PUT with the version read) fail, nor be undone by it.
#[tokio::test]
async fn a_health_check_between_an_owners_read_and_write_changes_nothing_for_the_owner() {
    let open = OciRegistry::start(Mode::Open);
    for s in support::stores().await {
        let app = app(s.store.clone(), None);
        call(
            &app,
            "POST",
            "/container_registry",
            Some(with_url("owned", &open.url)),
        )
        .await;
        let (_, read) = call(&app, "GET", "/container_registry/owned", None).await;
        let mut edited = read["data"].clone();
        let version = edited["container_registry_version"].clone();

        let (status, _) = call(&app, "GET", "/check_container_health/owned", None).await;
        assert_eq!(status, StatusCode::OK, "{}", s.name);
        let (_, after_check) = call(&app, "GET", "/container_registry/owned", None).await;
        assert_eq!(
            after_check["data"]["container_registry_version"], version,
            "{}: a probe is not an edit",
            s.name
        );

        edited["container_registry_name"] = json!("renamed by its owner");
        let (status, body) = call(&app, "PUT", "/container_registry/owned", Some(edited)).await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", s.name);
        let (_, got) = call(&app, "GET", "/container_registry/owned", None).await;
        assert_eq!(
            got["data"]["container_registry_name"],
            "renamed by its owner"
        );
        assert_eq!(
            got["data"]["container_registry_health"]["status"], "healthy",
            "{}: the owner's stale copy did not undo the newer health result",
            s.name
        );
        assert_eq!(
            got["data"]["container_registry_version"],
            version.as_u64().unwrap() + 1
        );
    }
}

fn seed_store(dir: &std::path::Path, entries: &[Value]) {
    // Entries go in through the domain, as a client's would.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = std::sync::Arc::new(EmbeddedStore::open(dir).unwrap());
        let app = app(store, None);
        for e in entries {
            assert_eq!(
                call(&app, "POST", "/container_registry", Some(e.clone()))
                    .await
                    .0,
                StatusCode::CREATED
            );
        }
    });
}

fn stored_status(dir: &std::path::Path, id: &str) -> Option<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(dir).unwrap();
        let entry = store.get(id).await.unwrap().unwrap().entry().unwrap();
        entry.container_registry_health.map(|h| {
            serde_json::to_value(h.status)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
    })
}

#[test]
fn registry_db_sweep_probes_every_entry_of_a_local_store_and_records_each_verdict() {
    let open = OciRegistry::start(Mode::Open);
    let basic = OciRegistry::start(Mode::htpasswd());
    let (_silent, silent_url) = silent_port();
    let dir = tempfile::tempdir().unwrap();
    seed_store(
        dir.path(),
        &[
            with_url("open", &open.url),
            with_url("basic", &basic.url),
            with_url("silent", &silent_url),
            with_url("closed", &closed_port_url()),
        ],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_registry-db"))
        .args([
            "sweep",
            "--data",
            dir.path().to_str().unwrap(),
            "--probe-allow-loopback",
            "--probe-timeout-ms",
            "500",
        ])
        .env_remove("REGISTRY_DB_STORE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["total"], 4, "{report}");
    assert_eq!(report["healthy"], 1, "{report}");
    assert_eq!(report["auth_required"], 1, "{report}");
    assert_eq!(report["unreachable"], 2, "{report}");
    assert_eq!(
        stored_status(dir.path(), "open").as_deref(),
        Some("healthy")
    );
    assert_eq!(
        stored_status(dir.path(), "basic").as_deref(),
        Some("auth_required")
    );
    assert_eq!(
        stored_status(dir.path(), "silent").as_deref(),
        Some("unreachable")
    );
    assert_eq!(
        stored_status(dir.path(), "closed").as_deref(),
        Some("unreachable")
    );
}

#[test]
fn sweep_without_the_loopback_flag_refuses_loopback_registries() {
    let open = OciRegistry::start(Mode::Open);
    let dir = tempfile::tempdir().unwrap();
    seed_store(dir.path(), &[with_url("open", &open.url)]);
    let out = Command::new(env!("CARGO_BIN_EXE_registry-db"))
        .args(["sweep", "--data", dir.path().to_str().unwrap()])
        .env_remove("REGISTRY_DB_PROBE_ALLOW_LOOPBACK")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["unreachable"], 1, "{report}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let health = rt.block_on(async {
        EmbeddedStore::open(dir.path())
            .unwrap()
            .get("open")
            .await
            .unwrap()
            .unwrap()
            .entry()
            .unwrap()
    });
    let health = health.container_registry_health.unwrap();
    assert_eq!(health.refused_by.as_deref(), Some("loopback"));
}

#[test]
fn serve_with_sweep_every_records_verdicts_in_the_background() {
    let open = OciRegistry::start(Mode::Open);
    let dir = tempfile::tempdir().unwrap();
    seed_store(dir.path(), &[with_url("open", &open.url)]);
    let server = support::start_server(
        &[
            "--data",
            dir.path().to_str().unwrap(),
            "--probe-allow-loopback",
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
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        last = client
            .get(format!("{base}/container_registry/open"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if last["data"]["container_registry_health"]["status"] == "healthy" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(server);
    assert_eq!(
        last["data"]["container_registry_health"]["status"], "healthy",
        "{last}"
    );
}
