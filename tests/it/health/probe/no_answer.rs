//! No answer at all: a closed port, a port that never answers, a certificate nobody trusts, proxies
//! the probe must not use, unknown hosts and unusable URLs; and slow DNS, cut at the probe's deadline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use registry_db::health::{DnsResolver, HealthStatus, ProbeConfig, Prober, StaticResolver};

use super::{loopback_config, probe, strict_config};
use crate::support;
use crate::support::servers::{http_server, response, silent_server, slow_dns, tls_server};

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
// Slow DNS: cut at the probe's deadline, and no thread waits on it

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_dns_is_cut_at_the_deadline_and_holds_no_thread() {
    support::require_loopback_only_network();
    let dns = slow_dns().await;
    let prober = Prober::new(ProbeConfig {
        resolver: Arc::new(DnsResolver::with_name_server(dns.addr)),
        max_in_flight: 1000,
        ..strict_config(5000)
    });
    // More lookups at once than Tokio's blocking pool has threads (512): with getaddrinfo on that
    // pool they would queue, and so would the embedded store's calls.
    let probes: Vec<_> = (0..600)
        .map(|i| {
            let prober = prober.clone();
            tokio::spawn(async move { prober.probe(&format!("http://r{i}.slow.test/")).await })
        })
        .collect();
    // Every lookup has reached the DNS server (which never answers) well before the deadline...
    let asked = Instant::now();
    while dns.queries.load(Ordering::SeqCst) < 600 {
        assert!(
            asked.elapsed() < Duration::from_secs(4),
            "only {} of 600 lookups reached the DNS server",
            dns.queries.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...and while all 600 wait, a blocking call (what the embedded store makes) still runs:
    // the lookups hold no thread of the blocking pool.
    tokio::task::spawn_blocking(|| ()).await.unwrap();
    let waiting = probes.iter().filter(|p| !p.is_finished()).count();
    assert_eq!(waiting, 600, "a probe ended before its deadline");
    for p in probes {
        let r = p.await.unwrap();
        assert_eq!(r.status, HealthStatus::Unreachable, "{r:#?}");
        assert!(
            r.error
                .as_deref()
                .unwrap()
                .starts_with("timed out after 5000 ms"),
            "{r:#?}"
        );
    }
}
