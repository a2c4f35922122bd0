//! The health probe and sweep against real servers on 127.0.0.1: Debian's `docker-registry` in three
//! auth modes, small HTTP servers that are not registries, a closed port and a port that never answers,
//! and the SSRF cases.
//!
//! Run inside a loopback-only network namespace, so that a broken guard fails by "network unreachable"
//! instead of reaching an address:
//!
//!     unshare -n bash -c 'ip link set lo up && exec cargo test --offline --test health_probe'

use crate::support;
use crate::support::oci_registry;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oci_registry::{Mode, OciRegistry};
use registry_db::health::{
    DnsResolver, HealthStatus, ProbeConfig, ProbeResult, Prober, Resolver, RuntimeApi,
    StaticResolver, SweepOptions, parse_deny_item, run_sweep,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------------
// Helpers

fn loopback_config(timeout_ms: u64) -> ProbeConfig {
    ProbeConfig {
        timeout: Duration::from_millis(timeout_ms),
        allow_loopback: true,
        ..ProbeConfig::default()
    }
}

fn strict_config(timeout_ms: u64) -> ProbeConfig {
    ProbeConfig {
        timeout: Duration::from_millis(timeout_ms),
        allow_loopback: false,
        ..ProbeConfig::default()
    }
}

/// Every probe in this file goes through here, and only runs where loopback is the whole network:
/// the URLs name link-local, metadata and unresolvable hosts that must never see a packet.
async fn probe(cfg: ProbeConfig, url: &str) -> ProbeResult {
    support::require_loopback_only_network();
    Prober::new(cfg).probe(url).await
}

/// A raw HTTP/1.1 server on 127.0.0.1 that counts connections, keeps each request head and answers
/// with whatever `respond(request_index, request_head)` returns (a full raw response), then closes.
struct TestServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn http_server<F>(respond: F) -> TestServer
where
    F: Fn(usize, &str) -> String + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let respond = Arc::new(respond);
    let (c, r) = (connections.clone(), requests.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let n = c.fetch_add(1, Ordering::SeqCst);
            let (r, respond) = (r.clone(), respond.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                r.lock().unwrap().push(head.clone());
                let response = respond(n, &head);
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    TestServer {
        addr,
        connections,
        requests,
        task,
    }
}

/// Accepts connections and never answers; counts them and keeps them open.
async fn silent_server() -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let c = connections.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    TestServer {
        addr,
        connections,
        requests: Arc::default(),
        task,
    }
}

fn response(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}

fn assert_refused(result: &ProbeResult, rule: &str) {
    assert_eq!(result.status, HealthStatus::Unreachable, "{result:#?}");
    assert!(!result.reachable, "{result:#?}");
    assert_eq!(result.refused_by.as_deref(), Some(rule), "{result:#?}");
    let error = result.error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("refused by the probe policy: "),
        "{error}"
    );
    let lower = error.to_lowercase();
    assert!(
        lower.contains(rule) || lower.contains(&rule.replace('-', " ")),
        "{error}"
    );
    assert_eq!(result.status_code, None);
}

// ---------------------------------------------------------------------------------------------------
// A real registry

#[tokio::test]
async fn open_registry_is_healthy() {
    let registry = OciRegistry::start(Mode::Open);
    let result = probe(loopback_config(5000), &registry.url).await;
    assert_eq!(result.status, HealthStatus::Healthy, "{result:#?}");
    assert!(result.reachable && result.answered());
    assert_eq!(result.status_code, Some(200));
    assert_eq!(result.reason.as_deref(), Some("OK"));
    assert_eq!(result.api_version.as_deref(), Some("registry/2.0"));
    assert_eq!(result.url, format!("{}/v2/", registry.url));
    assert!(result.latency_ms.is_some());
    assert!(result.error.is_none() && result.refused_by.is_none() && result.challenge.is_none());
    assert!(
        chrono::DateTime::parse_from_rfc3339(&result.checked_at).is_ok(),
        "{}",
        result.checked_at
    );
    // the wire shape the HTTP endpoint returns
    let json = serde_json::to_value(&result).unwrap();
    assert_eq!(json["status"], "healthy");
    assert_eq!(json["reachable"], true);
    assert_eq!(json["status_code"], 200);
}

#[tokio::test]
async fn htpasswd_registry_requires_basic_auth() {
    let registry = OciRegistry::start(Mode::htpasswd());
    let result = probe(loopback_config(5000), &registry.url).await;
    assert_eq!(result.status, HealthStatus::AuthRequired, "{result:#?}");
    assert!(result.reachable && result.answered());
    assert_eq!(result.status_code, Some(401));
    assert_eq!(result.reason.as_deref(), Some("Unauthorized"));
    assert_eq!(result.api_version.as_deref(), Some("registry/2.0"));
    let challenge = result.challenge.expect("a challenge");
    assert_eq!(challenge.scheme, "Basic");
    assert_eq!(challenge.realm.as_deref(), Some("registry-db test realm"));
    assert!(result.error.is_none());
    assert_eq!(
        serde_json::to_value(HealthStatus::AuthRequired).unwrap(),
        "auth_required"
    );
}

#[tokio::test]
async fn token_registry_requires_bearer_auth() {
    let registry = OciRegistry::start(Mode::token());
    let result = probe(loopback_config(5000), &registry.url).await;
    assert_eq!(
        result.status,
        HealthStatus::AuthRequired,
        "{result:#?}\n{}",
        registry.log()
    );
    assert_eq!(result.status_code, Some(401));
    let challenge = result.challenge.expect("a challenge");
    assert_eq!(challenge.scheme, "Bearer");
    assert_eq!(
        challenge.realm.as_deref(),
        Some("https://auth.registry-db.test/token")
    );
    assert_eq!(
        challenge.service.as_deref(),
        Some("registry-db-test-registry")
    );
}

#[tokio::test]
async fn docker_hub_style_bearer_challenge_is_auth_required() {
    let server = http_server(|_, _| {
        response(
            "401 Unauthorized",
            &[
                ("Content-Type", "application/json"),
                ("Docker-Distribution-Api-Version", "registry/2.0"),
                ("Www-Authenticate", r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#),
            ],
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#,
        )
    })
    .await;
    let result = probe(loopback_config(2000), &server.url()).await;
    assert_eq!(result.status, HealthStatus::AuthRequired, "{result:#?}");
    let challenge = result.challenge.unwrap();
    assert_eq!(challenge.scheme, "Bearer");
    assert_eq!(
        challenge.realm.as_deref(),
        Some("https://auth.docker.io/token")
    );
    assert_eq!(challenge.service.as_deref(), Some("registry.docker.io"));
}

// ---------------------------------------------------------------------------------------------------
// Servers that answer but are not registries

#[tokio::test]
async fn not_found_is_not_a_registry() {
    let server = http_server(|_, _| {
        response(
            "404 Not Found",
            &[("Content-Type", "text/plain")],
            "404 page not found",
        )
    })
    .await;
    let result = probe(loopback_config(2000), &server.url()).await;
    assert_eq!(result.status, HealthStatus::NotRegistry, "{result:#?}");
    assert!(result.reachable && !result.answered());
    assert_eq!(result.status_code, Some(404));
    assert_eq!(result.reason.as_deref(), Some("Not Found"));
    assert!(
        result.error.as_deref().unwrap().contains("404 Not Found"),
        "{result:#?}"
    );
    assert!(
        server.requests()[0].starts_with("GET /v2/ HTTP/1.1"),
        "{:?}",
        server.requests()
    );
}

#[tokio::test]
async fn html_page_with_200_is_not_a_registry() {
    let server = http_server(|_, _| {
        response(
            "200 OK",
            &[("Content-Type", "text/html; charset=utf-8")],
            "<!doctype html><html><body>Welcome to nginx!</body></html>",
        )
    })
    .await;
    let result = probe(loopback_config(2000), &server.url()).await;
    assert_eq!(result.status, HealthStatus::NotRegistry, "{result:#?}");
    assert_eq!(result.status_code, Some(200));
    assert!(
        result.error.as_deref().unwrap().contains("text/html"),
        "{result:#?}"
    );
}

#[tokio::test]
async fn json_200_without_the_header_is_healthy() {
    // The distribution spec does not require the version header; a JSON object at /v2/ is an API.
    let server =
        http_server(|_, _| response("200 OK", &[("Content-Type", "application/json")], "{}")).await;
    let result = probe(loopback_config(2000), &server.url()).await;
    assert_eq!(result.status, HealthStatus::Healthy, "{result:#?}");
    assert_eq!(result.api_version, None);
}

#[tokio::test]
async fn body_read_is_capped() {
    // 8 MiB that is neither JSON nor short: the probe reads max_body_bytes and stops.
    let big = "x".repeat(8 * 1024 * 1024);
    let server = http_server(move |_, _| {
        response(
            "200 OK",
            &[("Content-Type", "application/octet-stream")],
            &big,
        )
    })
    .await;
    let cfg = ProbeConfig {
        max_body_bytes: 1024,
        ..loopback_config(3000)
    };
    let started = Instant::now();
    let result = probe(cfg, &server.url()).await;
    assert_eq!(result.status, HealthStatus::NotRegistry, "{result:#?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn server_error_and_bare_401_are_not_registries() {
    let server = http_server(|_, _| response("500 Internal Server Error", &[], "oops")).await;
    let result = probe(loopback_config(2000), &server.url()).await;
    assert_eq!(result.status, HealthStatus::NotRegistry, "{result:#?}");
    assert_eq!(result.status_code, Some(500));

    let server = http_server(|_, _| response("401 Unauthorized", &[], "no")).await;
    let result = probe(loopback_config(2000), &server.url()).await;
    assert_eq!(result.status, HealthStatus::NotRegistry, "{result:#?}");
    assert!(result.challenge.is_none());
    assert!(
        result
            .error
            .as_deref()
            .unwrap()
            .contains("without a WWW-Authenticate challenge")
    );
}

// ---------------------------------------------------------------------------------------------------
// No answer at all

#[tokio::test]
async fn closed_port_is_unreachable_with_words() {
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }; // dropped: nothing listens there now
    let result = probe(loopback_config(2000), &format!("http://{addr}")).await;
    assert_eq!(result.status, HealthStatus::Unreachable, "{result:#?}");
    assert!(!result.reachable && !result.answered());
    assert_eq!(
        result.error.as_deref(),
        Some(format!("connection refused by {addr}").as_str())
    );
    assert_eq!(result.refused_by, None);
    assert_eq!(result.latency_ms, None);
}

#[tokio::test]
async fn silent_port_times_out_within_the_timeout() {
    let server = silent_server().await;
    let started = Instant::now();
    let result = probe(loopback_config(300), &server.url()).await;
    let took = started.elapsed();
    assert_eq!(result.status, HealthStatus::Unreachable, "{result:#?}");
    assert!(
        result
            .error
            .as_deref()
            .unwrap()
            .starts_with("timed out after 300 ms"),
        "{result:#?}"
    );
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(1000),
        "took {took:?}"
    );
    assert_eq!(server.connections(), 1);
}

/// `openssl s_server` with a fresh self-signed certificate on 127.0.0.1; killed on drop.
struct TlsServer {
    addr: SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_server() -> TlsServer {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = oci_registry::self_signed_cert(dir.path(), "self-signed.registry-db.test");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &addr.to_string(),
            "-cert",
        ])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("`openssl` is needed by this test: install it with `apt-get install -y openssl`");
    let server = TlsServer {
        addr,
        child,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "openssl s_server did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[tokio::test]
async fn untrusted_certificate_is_unreachable_with_words() {
    let server = tls_server();
    let result = probe(loopback_config(3000), &format!("https://{}", server.addr)).await;
    assert_eq!(result.status, HealthStatus::Unreachable, "{result:#?}");
    let error = result.error.as_deref().unwrap();
    assert!(
        error.starts_with(&format!("TLS handshake with {} failed: ", server.addr)),
        "{error}"
    );
}

/// The child half of `proxy_settings_are_ignored`: probes the server named in the environment.
async fn proxy_child(target: &str) {
    let result = probe(loopback_config(2000), target).await;
    assert_eq!(result.status, HealthStatus::Healthy, "{result:#?}");
}

#[tokio::test]
async fn proxy_settings_are_ignored() {
    // A proxy would fetch the URL on the probe's behalf, out of the guard's sight. The environment is
    // process-wide, so the probe runs in a child process of this test binary with the variables set.
    if let Ok(target) = std::env::var("REGISTRY_DB_TEST_PROXY_CHILD_TARGET") {
        return proxy_child(&target).await;
    }
    let proxy = silent_server().await;
    let registry = http_server(|_, _| {
        response(
            "200 OK",
            &[("Docker-Distribution-Api-Version", "registry/2.0")],
            "{}",
        )
    })
    .await;
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap());
    // The test's name in this binary: its module path without the crate's name.
    let (_, module) = module_path!().split_once("::").unwrap();
    let name = format!("{module}::proxy_settings_are_ignored");
    child.args(["--exact", &name, "--test-threads=1"]);
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        child.env(var, proxy.url());
    }
    child.env_remove("NO_PROXY").env_remove("no_proxy");
    child.env("REGISTRY_DB_TEST_PROXY_CHILD_TARGET", registry.url());
    let out = child.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test:\n{stdout}"
    );
    assert_eq!(proxy.connections(), 0, "the probe went through the proxy");
    assert_eq!(registry.connections(), 1);
}

#[tokio::test]
async fn unknown_host_is_unreachable() {
    let cfg = ProbeConfig {
        resolver: Arc::new(StaticResolver::new()),
        ..strict_config(2000)
    };
    let result = probe(cfg, "http://no-such-registry.test:5000").await;
    assert_eq!(result.status, HealthStatus::Unreachable, "{result:#?}");
    assert!(
        result
            .error
            .as_deref()
            .unwrap()
            .starts_with("could not resolve the host name no-such-registry.test"),
        "{result:#?}"
    );
    assert_eq!(result.refused_by, None);
}

#[tokio::test]
async fn unusable_urls_are_unreachable_with_words() {
    for (url, words) in [
        ("", "no public URL"),
        ("ftp://example.test/", "must use http or https"),
        ("http://", "must name a host"),
        // read as entry validation reads it: not the host "http", not 169.254.169.254 either
        ("http:/169.254.169.254", "must start with http://"),
        (
            "http://169.254.169.254/\r\nX-Injected: 1",
            "control character",
        ),
    ] {
        let result = probe(strict_config(500), url).await;
        assert_eq!(
            result.status,
            HealthStatus::Unreachable,
            "{url}: {result:#?}"
        );
        assert!(
            result.error.as_deref().unwrap().contains(words),
            "{url}: {result:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// Politeness: no credentials, a user agent, 429, redirects

#[tokio::test]
async fn sends_no_credentials_and_names_itself() {
    let server = http_server(|_, _| {
        response(
            "200 OK",
            &[("Docker-Distribution-Api-Version", "registry/2.0")],
            "{}",
        )
    })
    .await;
    let url = format!("http://admin:hunter2@{}/?token=abc", server.addr);
    let result = probe(loopback_config(2000), &url).await;
    assert_eq!(result.status, HealthStatus::Healthy, "{result:#?}");
    assert!(
        !result.url.contains("hunter2") && !result.url.contains("token"),
        "{}",
        result.url
    );
    let head = server.requests().remove(0).to_ascii_lowercase();
    assert!(head.starts_with("get /v2/ http/1.1"), "{head}");
    assert!(!head.contains("authorization"), "{head}");
    assert!(!head.contains("hunter2"), "{head}");
    assert!(head.contains("user-agent: registry-db/"), "{head}");
}

#[tokio::test]
async fn too_many_requests_with_retry_after_is_retried_once() {
    let server = http_server(|n, _| match n {
        0 => response("429 Too Many Requests", &[("Retry-After", "0")], ""),
        _ => response(
            "200 OK",
            &[("Docker-Distribution-Api-Version", "registry/2.0")],
            "{}",
        ),
    })
    .await;
    let result = probe(loopback_config(3000), &server.url()).await;
    assert_eq!(result.status, HealthStatus::Healthy, "{result:#?}");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn too_many_requests_without_retry_after_is_recorded() {
    let server = http_server(|_, _| response("429 Too Many Requests", &[], "slow down")).await;
    let result = probe(loopback_config(3000), &server.url()).await;
    assert_eq!(result.status, HealthStatus::NotRegistry, "{result:#?}");
    assert_eq!(result.status_code, Some(429));
    assert!(
        result.error.as_deref().unwrap().contains("not retried"),
        "{result:#?}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn too_many_requests_that_persist_are_recorded_after_one_retry() {
    let server =
        http_server(|_, _| response("429 Too Many Requests", &[("Retry-After", "3600")], "")).await;
    let started = Instant::now();
    let result = probe(loopback_config(4000), &server.url()).await;
    assert_eq!(result.status, HealthStatus::NotRegistry, "{result:#?}");
    assert_eq!(result.status_code, Some(429));
    assert_eq!(
        server.requests().len(),
        2,
        "one retry, after the capped wait"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn redirect_to_a_registry_is_followed() {
    let registry = http_server(|_, _| {
        response(
            "200 OK",
            &[("Docker-Distribution-Api-Version", "registry/2.0")],
            "{}",
        )
    })
    .await;
    let target = format!("{}/v2/", registry.url());
    let front =
        http_server(move |_, _| response("301 Moved Permanently", &[("Location", &target)], ""))
            .await;
    let result = probe(loopback_config(2000), &front.url()).await;
    assert_eq!(result.status, HealthStatus::Healthy, "{result:#?}");
    assert_eq!(
        result.url,
        format!("{}/v2/", front.url()),
        "the URL probed is the one asked for"
    );
    assert_eq!((front.connections(), registry.connections()), (1, 1));
}

#[tokio::test]
async fn redirect_loops_stop_at_max_redirects() {
    let server =
        http_server(|n, _| response("302 Found", &[("Location", &format!("/hop{n}/v2/"))], ""))
            .await;
    let cfg = ProbeConfig {
        max_redirects: 3,
        ..loopback_config(2000)
    };
    let result = probe(cfg, &server.url()).await;
    assert_eq!(result.status, HealthStatus::NotRegistry, "{result:#?}");
    assert_eq!(result.status_code, Some(302));
    assert!(
        result
            .error
            .as_deref()
            .unwrap()
            .contains("at most 3 redirects"),
        "{result:#?}"
    );
    assert_eq!(server.requests().len(), 4);
}

// ---------------------------------------------------------------------------------------------------
// SSRF: none of these may produce a connection to the refused address

#[tokio::test]
async fn metadata_address_is_refused() {
    for cfg in [strict_config(2000), loopback_config(2000)] {
        let result = probe(cfg, "http://169.254.169.254/").await;
        assert_refused(&result, "link-local");
        assert_eq!(
            result.error.as_deref(),
            Some(
                "refused by the probe policy: 169.254.169.254 is link-local (169.254.0.0/16), which includes cloud metadata endpoints"
            )
        );
        assert_eq!(result.url, "http://169.254.169.254/v2/");
    }
}

#[tokio::test]
async fn ipv6_link_local_is_refused() {
    assert_refused(
        &probe(loopback_config(2000), "http://[fe80::1]:5000/").await,
        "link-local",
    );
}

#[tokio::test]
async fn ipv4_mapped_metadata_address_is_refused() {
    assert_refused(
        &probe(loopback_config(2000), "http://[::ffff:169.254.169.254]/").await,
        "link-local",
    );
    assert_refused(
        &probe(loopback_config(2000), "http://[64:ff9b::169.254.169.254]/").await,
        "link-local",
    );
}

#[tokio::test]
async fn cloud_metadata_addresses_inside_allowed_ranges_are_refused() {
    assert_refused(
        &probe(strict_config(2000), "http://100.100.100.200/").await,
        "cloud-metadata",
    );
    assert_refused(
        &probe(strict_config(2000), "http://[fd00:ec2::254]/").await,
        "cloud-metadata",
    );
}

#[tokio::test]
async fn host_name_resolving_to_metadata_is_refused() {
    let resolver = StaticResolver::new().with(
        "metadata.attacker.test",
        ["169.254.169.254".parse().unwrap()],
    );
    let cfg = ProbeConfig {
        resolver: Arc::new(resolver),
        ..loopback_config(2000)
    };
    let result = probe(cfg, "http://metadata.attacker.test/").await;
    assert_refused(&result, "link-local");
    assert!(
        result
            .error
            .as_deref()
            .unwrap()
            .contains("metadata.attacker.test resolves to 169.254.169.254"),
        "{result:#?}"
    );
}

#[tokio::test]
async fn host_name_mixing_allowed_and_refused_addresses_is_refused_without_connecting() {
    let server = silent_server().await;
    let resolver = StaticResolver::new().with(
        "mixed.test",
        [
            "127.0.0.1".parse().unwrap(),
            "169.254.169.254".parse().unwrap(),
        ],
    );
    let cfg = ProbeConfig {
        resolver: Arc::new(resolver),
        ..loopback_config(2000)
    };
    let result = probe(cfg, &format!("http://mixed.test:{}/", server.addr.port())).await;
    assert_refused(&result, "link-local");
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn redirect_to_metadata_is_refused() {
    let server = http_server(|_, _| {
        response(
            "302 Found",
            &[("Location", "http://169.254.169.254/v2/")],
            "",
        )
    })
    .await;
    let result = probe(loopback_config(2000), &server.url()).await;
    assert_refused(&result, "link-local");
    assert!(
        result.error.as_deref().unwrap().contains("a redirect from"),
        "{result:#?}"
    );
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn redirect_to_a_name_resolving_to_metadata_is_refused() {
    let server = http_server(|_, _| {
        response(
            "307 Temporary Redirect",
            &[("Location", "http://imds.attacker.test/v2/")],
            "",
        )
    })
    .await;
    let resolver = StaticResolver::new().with(
        "imds.attacker.test",
        ["::ffff:169.254.169.254".parse().unwrap()],
    );
    let cfg = ProbeConfig {
        resolver: Arc::new(resolver),
        ..loopback_config(2000)
    };
    let result = probe(cfg, &server.url()).await;
    assert_refused(&result, "link-local");
}

/// Answers 127.0.0.1 the first time and the metadata address after: DNS rebinding.
struct RebindingResolver(AtomicUsize);

#[async_trait::async_trait]
impl Resolver for RebindingResolver {
    async fn resolve(&self, _host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        let ip: IpAddr = if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            "127.0.0.1"
        } else {
            "169.254.169.254"
        }
        .parse()
        .unwrap();
        Ok(vec![SocketAddr::new(ip, port)])
    }
}

#[tokio::test]
async fn rebinding_between_connections_is_refused() {
    // Every connection resolves afresh through the guard, so a name that changes its answer between
    // the first hop and the redirect hop is caught at the second connection.
    let server = http_server(|_, head| {
        let port = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("host: ")
                    .or_else(|| l.strip_prefix("Host: "))
            })
            .unwrap_or("")
            .to_owned();
        response(
            "302 Found",
            &[("Location", &format!("http://{port}/v2/"))],
            "",
        )
    })
    .await;
    let resolver = Arc::new(RebindingResolver(AtomicUsize::new(0)));
    let cfg = ProbeConfig {
        resolver: resolver.clone(),
        ..loopback_config(2000)
    };
    let result = probe(cfg, &format!("http://rebind.test:{}/", server.addr.port())).await;
    assert_refused(&result, "link-local");
    assert_eq!(resolver.0.load(Ordering::SeqCst), 2);
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn loopback_is_refused_without_the_flag_and_never_connected() {
    let server = silent_server().await;
    let port = server.addr.port();
    for url in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://127.1.2.3:{port}"),
        format!("http://2130706433:{port}"), // 127.0.0.1 spelled as a number
        format!("http://[::1]:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
    ] {
        let result = probe(strict_config(1000), &url).await;
        assert_refused(&result, "loopback");
        assert!(
            result
                .error
                .as_deref()
                .unwrap()
                .contains("--probe-allow-loopback"),
            "{result:#?}"
        );
    }
    assert_eq!(server.connections(), 0);
    // and with the flag the same listener is reached
    let result = probe(loopback_config(200), &format!("http://127.0.0.1:{port}")).await;
    assert_eq!(result.refused_by, None, "{result:#?}");
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn unspecified_address_is_refused_even_with_loopback_allowed() {
    // On Linux 0.0.0.0 reaches the host's own listeners: it must not open a side door to loopback.
    let server = silent_server().await;
    let port = server.addr.port();
    for url in [
        format!("http://0.0.0.0:{port}"),
        format!("http://[::]:{port}"),
        format!("http://0:{port}"),
    ] {
        assert_refused(&probe(loopback_config(1000), &url).await, "unspecified");
    }
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn multicast_and_broadcast_are_refused() {
    assert_refused(
        &probe(loopback_config(1000), "http://224.0.0.1/").await,
        "multicast",
    );
    assert_refused(
        &probe(loopback_config(1000), "http://[ff02::1]:5000/").await,
        "multicast",
    );
    assert_refused(
        &probe(loopback_config(1000), "http://255.255.255.255/").await,
        "broadcast",
    );
}

// ---------------------------------------------------------------------------------------------------
// Sweeps

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_of_300_mostly_dead_entries_takes_about_one_timeout() {
    let registry = tokio::task::spawn_blocking(|| OciRegistry::start(Mode::Open))
        .await
        .unwrap();
    let silent = silent_server().await;
    let registry_port = registry.url.rsplit(':').next().unwrap().to_owned();
    // Every entry on its own host name (all of them 127.0.0.1), as a real listing has them, so the
    // per-host cap does not serialize them.
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let resolver = (0..300).fold(StaticResolver::new(), |r, i| {
        r.with(format!("entry-{i}.test"), [loopback])
    });
    let targets: Vec<(String, String)> = (0..300)
        .map(|i| {
            let port = if i % 30 == 0 {
                registry_port.clone()
            } else {
                silent.addr.port().to_string()
            };
            (
                format!("entry-{i}"),
                format!("http://entry-{i}.test:{port}"),
            )
        })
        .collect();
    let timeout = Duration::from_millis(500);
    let prober = Prober::new(ProbeConfig {
        timeout,
        resolver: Arc::new(resolver),
        ..loopback_config(0)
    });
    let opts = SweepOptions {
        jitter: Duration::from_millis(100),
        ..SweepOptions::default()
    };
    let recorded: Mutex<HashMap<String, ProbeResult>> = Mutex::default();

    let started = Instant::now();
    let report = run_sweep(&prober, targets, &opts, |id, result| {
        let fail = id.ends_with('7');
        recorded.lock().unwrap().insert(id, result);
        async move {
            if fail {
                Err("the store said no".to_owned())
            } else {
                Ok(())
            }
        }
    })
    .await;
    let took = started.elapsed();

    // One probe after another would take 290 timeouts (145 s); with the default cap of 256 probes in
    // flight, of which a sweep takes 192, it is two timeouts plus the jitter and the scheduling of
    // 300 connections on a busy 2-core machine.
    assert!(
        took < timeout * 4,
        "the sweep took {took:?}, more than 4x the {timeout:?} timeout"
    );
    assert_eq!(report.total, 300, "{report:?}");
    assert_eq!(report.healthy, 10, "{report:?}");
    assert_eq!(report.unreachable, 290, "{report:?}");
    assert_eq!(
        report.healthy + report.auth_required + report.not_registry + report.unreachable,
        report.total
    );
    assert_eq!(report.record_failures, 30, "{report:?}");
    assert!(report.duration_ms <= took.as_millis() as u64);

    let recorded = recorded.into_inner().unwrap();
    assert_eq!(recorded.len(), 300, "every target is recorded");
    let dead = &recorded["entry-1"];
    assert_eq!(dead.status, HealthStatus::Unreachable);
    assert!(
        dead.error
            .as_deref()
            .unwrap()
            .starts_with("timed out after 500 ms"),
        "{dead:#?}"
    );
    assert_eq!(
        recorded["entry-30"].status,
        HealthStatus::Healthy,
        "{:#?}",
        recorded["entry-30"]
    );
}

#[tokio::test]
async fn sweep_concurrency_is_bounded() {
    let silent = silent_server().await;
    let targets = (0..6).map(|i| (i.to_string(), silent.url()));
    let prober = Prober::new(loopback_config(200));
    let opts = SweepOptions {
        concurrency: 2,
        jitter: Duration::ZERO,
        ..SweepOptions::default()
    };
    let started = Instant::now();
    let report = run_sweep(&prober, targets, &opts, |_, _| async { Ok(()) }).await;
    let took = started.elapsed();
    assert_eq!(
        (report.total, report.unreachable, report.record_failures),
        (6, 6, 0)
    );
    // three rounds of two: at least three timeouts, and not much more
    assert!(
        took >= Duration::from_millis(590) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
}

#[tokio::test]
async fn sweep_records_refused_and_unusable_targets_too() {
    support::require_loopback_only_network();
    let prober = Prober::new(strict_config(500));
    let targets = vec![
        ("a".to_owned(), "http://169.254.169.254".to_owned()),
        ("b".to_owned(), String::new()),
    ];
    let seen = Mutex::new(Vec::new());
    let report = run_sweep(&prober, targets, &SweepOptions::default(), |id, r| {
        seen.lock()
            .unwrap()
            .push((id, r.status, r.refused_by.clone()));
        async { Ok(()) }
    })
    .await;
    assert_eq!((report.total, report.unreachable), (2, 2));
    let mut seen = seen.into_inner().unwrap();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen[0],
        (
            "a".to_owned(),
            HealthStatus::Unreachable,
            Some("link-local".to_owned())
        )
    );
    assert_eq!(seen[1], ("b".to_owned(), HealthStatus::Unreachable, None));
}

// ---------------------------------------------------------------------------------------------------
// Hostile registries: redirects elsewhere, huge answers

#[tokio::test]
async fn redirects_are_followed_only_to_a_registry_base() {
    for location in [
        "/check_container_health/some-id",
        "/v2/?token=x",
        "/v2/_catalog",
        "http://127.0.0.1:1/admin",
        "/",
    ] {
        let loc = location.to_owned();
        let server =
            http_server(move |_, _| response("302 Found", &[("Location", &loc)], "")).await;
        let result = probe(loopback_config(2000), &server.url()).await;
        assert_eq!(
            result.status,
            HealthStatus::NotRegistry,
            "{location}: {result:#?}"
        );
        assert_eq!(result.status_code, Some(302));
        assert!(
            result
                .error
                .as_deref()
                .unwrap()
                .contains("not an OCI registry base"),
            "{location}: {result:#?}"
        );
        assert_eq!(server.requests().len(), 1, "{location}: nothing followed");
    }
}

/// Asserts that no string of `result` is longer than its cap and that the record fits its budget.
fn assert_within_caps(result: &ProbeResult) {
    use registry_db::health::limits::*;
    let short = |s: &Option<String>| s.as_deref().map_or(0, str::len);
    assert!(
        result.url.len() <= MAX_PROBE_URL_BYTES,
        "{}",
        result.url.len()
    );
    assert!(short(&result.reason) <= MAX_TOKEN_BYTES);
    assert!(short(&result.api_version) <= MAX_TOKEN_BYTES);
    assert!(
        short(&result.error) <= MAX_ERROR_BYTES,
        "{}",
        short(&result.error)
    );
    if let Some(c) = &result.challenge {
        assert!(c.scheme.len() <= MAX_TOKEN_BYTES);
        for s in [&c.realm, &c.service, &c.scope] {
            assert!(short(s) <= MAX_TEXT_BYTES, "{}", short(s));
        }
    }
    let json = serde_json::to_vec(result).unwrap();
    assert!(json.len() <= MAX_HEALTH_BYTES, "{} bytes", json.len());
    assert!(
        !String::from_utf8(json).unwrap().contains("\\r\\n"),
        "control characters removed"
    );
}

#[tokio::test]
async fn huge_challenges_and_version_headers_are_capped() {
    let realm = format!("https://auth.example/{}\"", "r".repeat(200 * 1024));
    let version = "v".repeat(200 * 1024);
    let challenge = format!(
        r#"Bearer realm="{}",service="{}",scope="{}""#,
        realm.replace('"', "\\\""),
        "s".repeat(10_000),
        "p".repeat(10_000)
    );
    let server = http_server(move |_, _| {
        response(
            "401 Unauthorized",
            &[
                ("Www-Authenticate", &challenge),
                ("Docker-Distribution-Api-Version", &version),
            ],
            "",
        )
    })
    .await;
    let result = probe(loopback_config(3000), &server.url()).await;
    assert_eq!(
        result.status,
        HealthStatus::AuthRequired,
        "{:?}",
        result.error
    );
    assert_within_caps(&result);
    let c = result.challenge.as_ref().unwrap();
    assert_eq!(c.scheme, "Bearer");
    assert!(
        c.realm
            .as_deref()
            .unwrap()
            .starts_with("https://auth.example/rrr")
    );
    assert!(c.realm.as_deref().unwrap().ends_with('…'));
    assert!(result.api_version.as_deref().unwrap().ends_with('…'));
}

#[tokio::test]
async fn huge_locations_and_content_types_are_capped_in_errors() {
    let location = format!("/{}", "l".repeat(100 * 1024));
    let server =
        http_server(move |_, _| response("302 Found", &[("Location", &location)], "")).await;
    let result = probe(loopback_config(3000), &server.url()).await;
    assert_eq!(result.status, HealthStatus::NotRegistry, "{result:#?}");
    assert_within_caps(&result);
    assert!(
        result.error.as_deref().unwrap().contains("/lll"),
        "{result:#?}"
    );
    assert_eq!(server.requests().len(), 1);

    // followed (it is a registry base), but quoted capped when the next hop fails
    let long_base = format!("/{}/v2/", "b".repeat(1500));
    let server = http_server(move |n, _| match n {
        0 => response("302 Found", &[("Location", &long_base)], ""),
        _ => response(
            "302 Found",
            &[("Location", "http://169.254.169.254/v2/")],
            "",
        ),
    })
    .await;
    let result = probe(loopback_config(3000), &server.url()).await;
    assert_eq!(
        result.refused_by.as_deref(),
        Some("link-local"),
        "{result:#?}"
    );
    assert_within_caps(&result);

    let content_type = format!("text/html; {}", "c".repeat(100 * 1024));
    let server = http_server(move |_, _| {
        response(
            "200 OK",
            &[("Content-Type", &content_type)],
            "<html></html>",
        )
    })
    .await;
    let result = probe(loopback_config(3000), &server.url()).await;
    assert_eq!(result.status, HealthStatus::NotRegistry, "{result:#?}");
    assert_within_caps(&result);
    assert!(result.error.as_deref().unwrap().contains("text/html"));
}

// ---------------------------------------------------------------------------------------------------
// Addresses the guard refuses, end to end: none of them sees a connection

#[tokio::test]
async fn ipv6_forms_carrying_refused_ipv4_addresses_are_refused() {
    for (url, rule) in [
        ("http://[2002:a9fe:a9fe::1]/", "link-local"),
        ("http://[::ffff:0:a9fe:a9fe]/", "link-local"),
        ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),
        ("http://[64:ff9b:1::a9fe:a9fe]/", "nat64-local"),
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "teredo"),
        ("http://[fd00:ec2::23]/", "cloud-metadata"),
        ("http://[fd20:ce::254]/", "cloud-metadata"),
        ("http://[fd00:42::42]/", "cloud-metadata"),
        ("http://168.63.129.16/", "cloud-metadata"),
        ("http://192.0.0.192/", "cloud-metadata"),
    ] {
        assert_refused(&probe(loopback_config(1000), url).await, rule);
    }
}

#[tokio::test]
async fn localhost_names_are_loopback_without_asking_dns() {
    let server = http_server(|_, _| {
        response(
            "200 OK",
            &[("Docker-Distribution-Api-Version", "registry/2.0")],
            "{}",
        )
    })
    .await;
    let port = server.addr.port();
    // A resolver that would send them elsewhere is never asked.
    let liar = StaticResolver::new()
        .with("localhost", ["10.0.0.1".parse().unwrap()])
        .with("registry.localhost", ["10.0.0.1".parse().unwrap()]);
    for host in [
        "localhost",
        "localhost.",
        "registry.localhost",
        "Registry.Localhost.",
    ] {
        let strict = ProbeConfig {
            resolver: Arc::new(liar.clone()),
            ..strict_config(1000)
        };
        let result = probe(strict, &format!("http://{host}:{port}")).await;
        assert_refused(&result, "loopback");
        assert!(
            result.error.as_deref().unwrap().contains("localhost name"),
            "{result:#?}"
        );
        let allowed = ProbeConfig {
            resolver: Arc::new(liar.clone()),
            ..loopback_config(2000)
        };
        let result = probe(allowed, &format!("http://{host}:{port}")).await;
        assert_eq!(result.status, HealthStatus::Healthy, "{host}: {result:#?}");
    }
    assert_eq!(server.connections(), 4);
}

#[tokio::test]
async fn the_lambda_runtime_api_is_never_probed_whatever_the_flags() {
    let runtime_api = silent_server().await;
    let cfg = || ProbeConfig {
        lambda_runtime_api: RuntimeApi::parse(&runtime_api.addr.to_string()),
        resolver: Arc::new(StaticResolver::new().with("api.test", ["127.0.0.1".parse().unwrap()])),
        ..loopback_config(1000)
    };
    let port = runtime_api.addr.port();
    for url in [
        format!("http://127.0.0.1:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
        format!("http://api.test:{port}"),
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
    ] {
        assert_refused(&probe(cfg(), &url).await, "lambda-runtime-api");
    }
    // emulators write it as a URL
    let as_url = ProbeConfig {
        lambda_runtime_api: RuntimeApi::parse(&format!("http://127.0.0.1:{port}/.rt")),
        ..loopback_config(1000)
    };
    assert_refused(
        &probe(as_url, &format!("http://127.0.0.1:{port}")).await,
        "lambda-runtime-api",
    );
    assert_eq!(runtime_api.connections(), 0);
}

#[tokio::test]
async fn the_deny_list_refuses_what_the_operator_lists() {
    let server = silent_server().await;
    let mut deny = parse_deny_item("private").unwrap();
    deny.extend(parse_deny_item("127.0.0.0/8").unwrap());
    let cfg = || ProbeConfig {
        deny: deny.clone(),
        resolver: Arc::new(
            StaticResolver::new().with("inside.test", ["10.1.2.3".parse().unwrap()]),
        ),
        ..loopback_config(1000)
    };
    let result = probe(cfg(), &server.url()).await;
    assert_refused(&result, "deny-list");
    assert!(
        result.error.as_deref().unwrap().contains("127.0.0.0/8"),
        "{result:#?}"
    );
    let result = probe(cfg(), "http://inside.test:5000/").await;
    assert_refused(&result, "deny-list");
    assert!(
        result
            .error
            .as_deref()
            .unwrap()
            .contains("inside.test resolves to 10.1.2.3"),
        "{result:#?}"
    );
    assert_refused(
        &probe(cfg(), "http://[::ffff:192.168.1.1]/").await,
        "deny-list",
    );
    assert_eq!(server.connections(), 0);
}

// ---------------------------------------------------------------------------------------------------
// Slow DNS: cut at the probe's deadline, and no thread waits on it

/// A DNS server on 127.0.0.1 that reads every query and never answers; counts the queries.
struct SlowDns {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlowDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn slow_dns() -> SlowDns {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let q = queries.clone();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while socket.recv_from(&mut buf).await.is_ok() {
            q.fetch_add(1, Ordering::SeqCst);
        }
    });
    SlowDns {
        addr,
        queries,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_dns_is_cut_at_the_deadline_and_holds_no_thread() {
    support::require_loopback_only_network();
    let dns = slow_dns().await;
    let prober = Prober::new(ProbeConfig {
        resolver: Arc::new(DnsResolver::with_name_server(dns.addr)),
        max_in_flight: 1000,
        ..strict_config(500)
    });
    // More lookups at once than Tokio's blocking pool has threads (512): with getaddrinfo on that
    // pool they would queue, and so would the embedded store's calls.
    let started = Instant::now();
    let probes: Vec<_> = (0..600)
        .map(|i| {
            let prober = prober.clone();
            tokio::spawn(async move { prober.probe(&format!("http://r{i}.slow.test/")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Meanwhile a blocking call (what the embedded store makes) runs at once.
    let blocking_started = Instant::now();
    tokio::task::spawn_blocking(|| ()).await.unwrap();
    let blocking_took = blocking_started.elapsed();
    let mut results = Vec::new();
    for p in probes {
        results.push(p.await.unwrap());
    }
    let took = started.elapsed();
    assert!(
        blocking_took < Duration::from_millis(100),
        "a blocking call waited {blocking_took:?}"
    );
    assert!(
        took < Duration::from_millis(2500),
        "600 probes with slow DNS took {took:?}"
    );
    for r in &results {
        assert_eq!(r.status, HealthStatus::Unreachable, "{r:#?}");
        assert!(
            r.error
                .as_deref()
                .unwrap()
                .starts_with("timed out after 500 ms"),
            "{r:#?}"
        );
    }
    assert!(
        dns.queries.load(Ordering::SeqCst) >= 600,
        "the DNS server was asked"
    );
}

// ---------------------------------------------------------------------------------------------------
// Probes in flight: the global cap, and the per-host cap of sweeps

/// An HTTP server that holds every connection `hold` before answering a registry's 200, and records
/// the most connections it had open at once.
struct HoldingServer {
    addr: SocketAddr,
    max_open: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HoldingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn holding_server(hold: Duration) -> HoldingServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (open, max_open, total) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (o, m, t) = (open.clone(), max_open.clone(), total.clone());
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let now = o.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            t.fetch_add(1, Ordering::SeqCst);
            let o = o.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                tokio::time::sleep(hold).await;
                let body = response(
                    "200 OK",
                    &[("Docker-Distribution-Api-Version", "registry/2.0")],
                    "{}",
                );
                let _ = socket.write_all(body.as_bytes()).await;
                let _ = socket.shutdown().await;
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    HoldingServer {
        addr,
        max_open,
        total,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_in_flight_are_capped_across_clones() {
    let server = holding_server(Duration::from_millis(800)).await;
    let prober = Prober::new(ProbeConfig {
        max_in_flight: 2,
        ..loopback_config(3000)
    });
    let url = format!("http://{}", server.addr);
    // Two take the slots; the third waits 200 ms for one and gives up without probing.
    let first: Vec<_> = (0..2)
        .map(|_| {
            let (prober, url) = (prober.clone(), url.clone());
            tokio::spawn(async move { prober.probe(&url).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = prober.probe_within(&url, Duration::from_millis(200)).await;
    assert_eq!(busy.unwrap_err().max_in_flight, 2);
    // A caller willing to wait longer gets the next free slot.
    let waited = prober
        .probe_within(&url, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(waited.status, HealthStatus::Healthy);
    for f in first {
        assert_eq!(f.await.unwrap().status, HealthStatus::Healthy);
    }
    assert_eq!(server.max_open.load(Ordering::SeqCst), 2);
    assert_eq!(server.total.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_cap_probes_per_host() {
    let server = holding_server(Duration::from_millis(300)).await;
    let port = server.addr.port();
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let prober = Prober::new(ProbeConfig {
        resolver: Arc::new(
            StaticResolver::new()
                .with("one.test", [loopback])
                .with("two.test", [loopback]),
        ),
        ..loopback_config(3000)
    });
    // 20 entries on one host: never more than 4 connections to it at once.
    let targets = (0..20).map(|i| (format!("a{i}"), format!("http://one.test:{port}/r{i}")));
    let opts = SweepOptions {
        jitter: Duration::ZERO,
        ..SweepOptions::default()
    };
    let started = Instant::now();
    let report = run_sweep(&prober, targets, &opts, |_, _| async { Ok(()) }).await;
    assert_eq!((report.total, report.healthy), (20, 20), "{report:?}");
    assert_eq!(server.max_open.load(Ordering::SeqCst), 4);
    // five rounds of four, 300 ms each
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    // Two hosts (the same server behind two names) proceed side by side, four each.
    server.max_open.store(0, Ordering::SeqCst);
    let targets = (0..24).map(|i| {
        let host = if i % 2 == 0 { "one.test" } else { "two.test" };
        (format!("b{i}"), format!("http://{host}:{port}"))
    });
    let report = run_sweep(&prober, targets, &opts, |_, _| async { Ok(()) }).await;
    assert_eq!(report.healthy, 24, "{report:?}");
    assert_eq!(server.max_open.load(Ordering::SeqCst), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_leave_a_quarter_of_the_slots_to_on_demand_checks() {
    let server = holding_server(Duration::from_millis(600)).await;
    let port = server.addr.port();
    // 12 entries, each on its own host name (so the per-host cap does not bind)...
    let resolver = (0..12).fold(StaticResolver::new(), |r, i| {
        r.with(format!("h{i}.test"), ["127.0.0.1".parse().unwrap()])
    });
    let prober = Prober::new(ProbeConfig {
        max_in_flight: 8,
        resolver: Arc::new(resolver),
        ..loopback_config(3000)
    });
    assert_eq!(prober.sweep_slots(), 6);
    let targets: Vec<_> = (0..12)
        .map(|i| (i.to_string(), format!("http://h{i}.test:{port}")))
        .collect();
    let opts = SweepOptions {
        jitter: Duration::ZERO,
        ..SweepOptions::default()
    };
    let sweeper = prober.clone();
    let sweep =
        tokio::spawn(
            async move { run_sweep(&sweeper, targets, &opts, |_, _| async { Ok(()) }).await },
        );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...run six at a time, and an on-demand probe still finds a slot at once.
    let started = Instant::now();
    let on_demand = prober
        .probe_within(
            &format!("http://127.0.0.1:{port}"),
            Duration::from_millis(50),
        )
        .await
        .expect("a free slot during the sweep");
    assert_eq!(on_demand.status, HealthStatus::Healthy);
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert_eq!(sweep.await.unwrap().healthy, 12);
    assert_eq!(server.max_open.load(Ordering::SeqCst), 7);
}
