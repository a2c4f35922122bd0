//! Shared test support: real components on loopback, stopped when the test process ends.
//!
//! - `dynalite()` starts one dynalite (DynamoDB API) per test process on a port the OS picks; the
//!   node process exits when our stdin pipe to it closes, i.e. when this process ends.
//! - `stores()` gives a fresh embedded store (temp folder) and a fresh DynamoDB table, so every
//!   router test runs against both.
//!
//! A component that cannot start makes the test fail with a message saying how to install it.

pub mod alloc;
pub mod fault_proxy;
pub mod oci_images;
pub mod oci_registry;
pub mod servers;
pub mod token_server;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use registry_db::domain::catalog::Catalog;
use registry_db::health::{ProbeConfig, Prober};
use registry_db::router::router;
use registry_db::state::AppState;
use registry_db::store::Store;
use registry_db::store::dynamodb::filter::TranslateOptions;
use registry_db::store::dynamodb::{DynamoStore, default_tag_table, sdk_http_client};
use registry_db::store::embedded::EmbeddedStore;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Dynalite {
    endpoint: String,
    // Held so the pipe to dynalite's stdin stays open for the life of the test process.
    _child: Mutex<Child>,
}

static DYNALITE: OnceLock<Dynalite> = OnceLock::new();

/// The endpoint of this test process's dynalite, started on first use.
pub fn dynalite() -> String {
    DYNALITE
        .get_or_init(|| {
            let script = format!("{ROOT}/tests/it/support/dynalite.js");
            let mut child = Command::new("node")
                .arg(&script)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start dynalite with node ({e}); run ./scripts/test.sh, which installs it (npm ci)"));
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
            let port: u16 = line.trim().parse().unwrap_or_else(|_| {
                panic!("dynalite did not start (printed {line:?}); is node_modules/dynalite installed? run `npm ci`")
            });
            Dynalite { endpoint: format!("http://127.0.0.1:{port}"), _child: Mutex::new(child) }
        })
        .endpoint
        .clone()
}

pub fn dynamo_client() -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(dynalite())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        // The service's own HTTP client (the crate has no default one: Cargo.toml).
        .http_client(sdk_http_client())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

static TABLES: AtomicUsize = AtomicUsize::new(0);

/// A DynamoDB store on dynalite with the name of its entries table.
pub struct NamedDynamo {
    pub store: Arc<dyn Store>,
    pub table: String,
}

/// A fresh, empty table (and its tag index table) on dynalite, named after `prefix`.
pub async fn dynamo_store_named(prefix: &str) -> NamedDynamo {
    let table = format!(
        "{prefix}{}-{}",
        std::process::id(),
        TABLES.fetch_add(1, Ordering::Relaxed)
    );
    // dynalite's `contains` does not search lists: the store's conservative pushdown for emulators.
    let store = DynamoStore::from_client(
        dynamo_client(),
        &table,
        &default_tag_table(&table),
        TranslateOptions::DYNALITE,
    );
    store
        .ensure_table()
        .await
        .expect("create a table on dynalite");
    NamedDynamo {
        store: Arc::new(store),
        table,
    }
}

/// A fresh, empty table on dynalite.
pub async fn dynamo_store() -> Arc<dyn Store> {
    dynamo_store_named("t").await.store
}

/// A fresh embedded store in a temp folder (deleted when the guard drops).
pub fn embedded_store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    (Arc::new(store), dir)
}

/// A store under test, with whatever must live as long as it.
pub struct TestStore {
    pub name: &'static str,
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

/// Both stores, fresh: every behaviour test runs on each.
pub async fn stores() -> Vec<TestStore> {
    let (embedded, dir) = embedded_store();
    vec![
        TestStore {
            name: "embedded",
            store: embedded,
            _dir: Some(dir),
        },
        TestStore {
            name: "dynamodb",
            store: dynamo_store().await,
            _dir: None,
        },
    ]
}

/// Probe settings that let a probe reach 127.0.0.1, where every test's registry runs.
pub fn loopback_config(timeout_ms: u64) -> ProbeConfig {
    ProbeConfig {
        timeout: std::time::Duration::from_millis(timeout_ms),
        allow_loopback: true,
        ..ProbeConfig::default()
    }
}

pub fn loopback_prober(timeout_ms: u64) -> Prober {
    Prober::new(loopback_config(timeout_ms))
}

pub fn app(store: Arc<dyn Store>, write_token: Option<&str>) -> Router {
    let registry = Catalog::new(store, loopback_prober(2000));
    router(AppState {
        catalog: registry,
        write_token: write_token.map(Arc::from),
        access: Default::default(),
    })
}

/// Sends one request through the router in-process and returns status and JSON body.
pub async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call_with(app, method, uri, body.map(|b| b.to_string()), &[]).await
}

/// [`call`] with a raw body (which need not be JSON) and request headers.
pub async fn call_with(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let (status, _, json) = exchange(app, method, uri, body, headers).await;
    (status, json)
}

/// [`call`] with request headers, returning the answer's headers too.
pub async fn call_full(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    exchange(app, method, uri, body.map(|b| b.to_string()), headers).await
}

async fn exchange(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(body.map(Body::from).unwrap_or_else(Body::empty))
        .unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "{method} {uri}: body is not JSON: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, headers, json)
}

/// Sends one request to a running server over HTTP and returns status and JSON body.
pub async fn send(
    client: &reqwest::Client,
    method: &str,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    send_request(client.request(method.parse().unwrap(), url), body).await
}

/// [`send`] with `Authorization: Bearer <token>`.
pub async fn send_as(
    client: &reqwest::Client,
    method: &str,
    url: String,
    body: Option<Value>,
    token: &str,
) -> (u16, Value) {
    let req = client
        .request(method.parse().unwrap(), url)
        .bearer_auth(token);
    send_request(req, body).await
}

async fn send_request(mut req: reqwest::RequestBuilder, body: Option<Value>) -> (u16, Value) {
    if let Some(body) = body {
        // As the seed's curl: -H "Content-Type: application/json" -d @entry.json
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let resp = req.send().await.expect("request to the local server");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

/// The id of the seed's example entry (docs/seed-entry.json).
pub const SEED_ID: &str = "b3c38f52-8f2e-43a3-9aa9-bd9a4c75e509";

/// The seed's example entry, verbatim: the file the README's curl commands send.
pub fn seed_entry() -> Value {
    let text = std::fs::read_to_string(format!("{ROOT}/docs/seed-entry.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A minimal valid entry with the given id and name.
pub fn entry(id: &str, name: &str) -> Value {
    json!({
        "container_registry_id": id,
        "container_registry_name": name,
        "container_registry_public_url": format!("http://10.0.0.1:5000/{name}"),
    })
}

/// Tests whose data names non-loopback addresses (the seed's 10.13.21.22, SSRF cases) run only
/// where loopback is the whole network: `scripts/test.sh` runs the suite under `unshare -n`.
/// Anywhere else they fail loudly instead of sending a packet.
pub fn require_loopback_only_network() {
    let dev = std::fs::read_to_string("/proc/net/dev").expect("read /proc/net/dev");
    let interfaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert!(
        interfaces.iter().all(|i| *i == "lo"),
        "this test would probe non-loopback addresses; run it in a loopback-only network namespace \
         (./scripts/test.sh does: unshare -n). Interfaces here: {interfaces:?}"
    );
}

/// A running `registry-db serve`; killed (SIGKILL) when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the real binary: `registry-db serve --addr 127.0.0.1:0 ARGS`, with the service's own
/// settings cleared from the environment but for `envs`, and learns its port from its first line.
pub fn start_server(args: &[&str], envs: &[(&str, &str)]) -> Server {
    start_server_logging_to(args, envs, Stdio::inherit())
}

/// [`start_server`], with the server's standard error (its log) going to `stderr`.
pub fn start_server_logging_to(args: &[&str], envs: &[(&str, &str)], stderr: Stdio) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_registry-db"));
    cmd.arg("serve").args(["--addr", "127.0.0.1:0"]).args(args);
    for key in [
        "REGISTRY_DB_STORE",
        "REGISTRY_DB_DATA",
        "REGISTRY_DB_WRITE_TOKEN",
        "REGISTRY_DB_ADDR",
        "REGISTRY_DB_PROBE_ALLOW_LOOPBACK",
        "REGISTRY_DB_SWEEP_EVERY",
        "REGISTRY_DB_WRITES",
        "REGISTRY_DB_OPERATOR_PRINCIPALS",
        "REGISTRY_DB_CREATES_PER_HOUR",
        "REGISTRY_DB_CHECKS_PER_MINUTE",
        "REGISTRY_DB_CLIENT_IP_HEADER",
        "REGISTRY_DB_STORE_CACHE_MIB",
        "REGISTRY_DB_ENTRY_CACHE_MIB",
    ] {
        cmd.env_remove(key);
    }
    cmd.envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let mut child = cmd.spawn().expect("start registry-db");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("registry-db listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from registry-db: {line:?}"))
        .to_string();
    Server { child, base }
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}
