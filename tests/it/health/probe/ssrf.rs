//! SSRF: none of these may produce a connection to the refused address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use registry_db::health::{
    HealthStatus, ProbeConfig, Resolver, RuntimeApi, StaticResolver, parse_deny_item,
};

use super::{assert_refused, loopback_config, probe, strict_config};
use crate::support::servers::{http_server, response, silent_server};

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
