//! The real `registry-db serve` binary on port 0, driven over HTTP on loopback with the seed's JSON
//! and curl commands' requests, including restarts that show persistence (also after `kill -9`).

use crate::support;

use std::process::Command;

use serde_json::{Value, json};
use support::{SEED_ID, seed_entry, send, start_server as start};

#[tokio::test]
async fn seed_walkthrough_and_persistence_across_restart_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let server = start(&["--data", data], &[]);
    let (status, body) = send(
        &client,
        "POST",
        format!("{}/container_registry", server.base),
        Some(seed_entry()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["id"], SEED_ID);
    let (status, body) = send(
        &client,
        "PUT",
        format!("{}/container_registry/{SEED_ID}", server.base),
        Some(json!({ "$set": {"container_registry_name": "updated-name"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        &client,
        "POST",
        format!("{}/container_registries", server.base),
        Some(json!({"container_registry_tags": {"$in": ["ai", "internal"]}})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["container_registry_id"], SEED_ID);
    // A write acknowledged to the client survives SIGKILL.
    drop(server);

    let server = start(&["--data", data], &[]);
    let (status, body) = send(
        &client,
        "GET",
        format!("{}/container_registry/{SEED_ID}", server.base),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["container_registry_name"], "updated-name");
    assert_eq!(body["data"]["container_registry_version"], 2);
    let (status, _) = send(
        &client,
        "DELETE",
        format!("{}/container_registry/{SEED_ID}", server.base),
        None,
    )
    .await;
    assert_eq!(status, 200);
    drop(server);

    let server = start(&["--data", data], &[]);
    let (status, _) = send(
        &client,
        "GET",
        format!("{}/container_registry/{SEED_ID}", server.base),
        None,
    )
    .await;
    assert_eq!(status, 404, "a delete persists too");
}

#[tokio::test]
async fn the_data_folder_comes_from_the_environment_too() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let server = start(&[], &[("REGISTRY_DB_DATA", dir.path().to_str().unwrap())]);
    let (status, _) = send(
        &client,
        "POST",
        format!("{}/container_registry", server.base),
        Some(seed_entry()),
    )
    .await;
    assert_eq!(status, 201);
    drop(server);
    assert!(dir.path().join("registry-db.redb").exists());
}

#[tokio::test]
async fn serve_over_dynamodb_creates_the_table_and_keeps_entries() {
    let endpoint = support::dynalite();
    let table = format!("binary-{}", std::process::id());
    let envs = [
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let server = start(
        &["--store", "dynamodb", "--table", &table, "--create-table"],
        &envs,
    );
    let (status, body) = send(
        &client,
        "POST",
        format!("{}/container_registry", server.base),
        Some(seed_entry()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    drop(server);
    let server = start(&["--store", "dynamodb", "--table", &table], &envs);
    let (status, body) = send(
        &client,
        "GET",
        format!("{}/container_registry/{SEED_ID}", server.base),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["container_registry_name"],
        "internal-ai-registry"
    );
}

#[test]
fn a_second_server_on_the_same_data_folder_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let _first = start(&["--data", data], &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_registry-db"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data", data])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already open"), "{stderr}");
}

/// `registry-db reindex` on a local data folder: prints what it found and leaves the index whole;
/// it refuses (clearly) while a server holds the folder.
#[tokio::test]
async fn reindex_command_rebuilds_the_tag_index_of_a_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let server = start(&["--data", data], &[]);
    for (id, tags) in [
        ("r1", json!(["ai", "gpu"])),
        ("r2", json!(["ai"])),
        ("r3", json!([])),
    ] {
        let mut body = support::entry(id, id);
        body["container_registry_tags"] = tags;
        let (status, body) = send(
            &client,
            "POST",
            format!("{}/container_registry", server.base),
            Some(body),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let busy = Command::new(env!("CARGO_BIN_EXE_registry-db"))
        .args(["reindex", "--data", data])
        .env_remove("REGISTRY_DB_STORE")
        .output()
        .unwrap();
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("already open in another process"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    drop(server);

    let out = Command::new(env!("CARGO_BIN_EXE_registry-db"))
        .args(["reindex", "--data", data])
        .env_remove("REGISTRY_DB_STORE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report,
        json!({"entries": 3, "index_keys": 3, "stale_keys_removed": 0, "name_keys": 6,
               "stale_name_keys_removed": 0, "counts_drifted": 0, "drift": []})
    );
    let server = start(&["--data", data], &[]);
    let (_, page) = send(
        &client,
        "POST",
        format!("{}/container_registries", server.base),
        Some(json!({"container_registry_tags": "ai"})),
    )
    .await;
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["container_registry_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r1", "r2"]);
}

/// The request log a server writes to stderr: one line per request with method, the route template
/// (not the path a client sent), status and latency; "unmatched" when no route matched.
#[test]
fn every_request_is_logged_with_its_route_template_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let data = dir.path().join("data");
    let server = support::start_server_logging_to(
        &["--data", data.to_str().unwrap()],
        &[("RUST_LOG", "info")],
        std::fs::File::create(&log_path).unwrap().into(),
    );
    let base = &server.base;
    let client = reqwest::blocking::Client::new();
    let created = client
        .post(format!("{base}/container_registry"))
        .json(&seed_entry())
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(
        client
            .get(format!("{base}/container_registry/no-such-id"))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        client
            .get(format!("{base}/nowhere"))
            .send()
            .unwrap()
            .status(),
        404
    );
    drop(server);

    let log = std::fs::read_to_string(&log_path).unwrap();
    let requests: Vec<&str> = log.lines().filter(|l| l.contains("request")).collect();
    let has = |parts: &[&str]| requests.iter().any(|l| parts.iter().all(|p| l.contains(p)));
    assert!(
        has(&["POST", "/container_registry", "status=201", "latency_ms="]),
        "{log}"
    );
    assert!(
        has(&["GET", "/container_registry/{id}", "status=404"]),
        "{log}"
    );
    assert!(
        !log.contains("no-such-id"),
        "the template is logged, not the path: {log}"
    );
    assert!(has(&["GET", "unmatched", "status=404"]), "{log}");
}

/// The request body limit (`api::body::MAX_BODY_BYTES`, 256 KiB) at its edge, on the real server:
/// a body of exactly the limit is read, one byte more is 413 in the envelope.
#[tokio::test]
async fn a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_413() {
    const LIMIT: usize = 256 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let server = start(&["--data", dir.path().to_str().unwrap()], &[]);
    let url = format!("{}/container_registries", server.base);
    // `{}` (match everything) padded with whitespace to the size wanted.
    let body = |size: usize| format!("{{}}{}", " ".repeat(size - 2));
    for (size, want) in [(LIMIT, 200), (LIMIT + 1, 413)] {
        let resp = client.post(&url).body(body(size)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{size} bytes");
        let json: Value = resp.json().await.unwrap();
        if want == 413 {
            assert_eq!(json["code"], "payload_too_large", "{json}");
        } else {
            assert_eq!(json["success"], true, "{json}");
        }
    }
}
