//! Registries and realms that try something: each refusal names its rule, nothing is contacted that
//! the rules refuse, and no token leaves the registry.

use std::sync::{Arc, OnceLock};

use registry_db::health::{ImageStatus, ManifestRead, Read};

use super::{prober, read};
use crate::support::servers::{TestServer, http_server, response, silent_server};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A registry that asks for a Bearer token at `realm`.
async fn bearer_registry(realm: String) -> TestServer {
    http_server(move |_, _| {
        response(
            "401 Unauthorized",
            &[(
                "WWW-Authenticate",
                &format!(
                    r#"Bearer realm="{realm}",service="svc",scope="repository:app:pull,push""#
                ),
            )],
            "",
        )
    })
    .await
}

fn assert_rule(result: &ManifestRead, status: ImageStatus, rule: &str, words: &str) {
    assert_eq!(result.status, status, "{result:#?}");
    assert_eq!(result.refused_by.as_deref(), Some(rule), "{result:#?}");
    let error = result.error.as_deref().unwrap_or_default();
    assert!(error.contains(words), "{error}");
}

#[tokio::test]
async fn a_realm_at_a_refused_address_is_never_contacted() {
    let registry = bearer_registry("https://169.254.169.254/latest/meta-data/".into()).await;
    let result = read(&prober(3000), &registry.url(), "app", "1", Read::Head).await;
    assert_rule(
        &result,
        ImageStatus::CredentialsRequired,
        "link-local",
        "refused by the probe policy",
    );

    // plain http on another host than the registry's: refused before any connection
    let other = http_server(|_, _| response("200 OK", &[], r#"{"token":"t"}"#)).await;
    let registry = bearer_registry(format!("http://localhost:{}/token", other.addr.port())).await;
    let result = read(&prober(3000), &registry.url(), "app", "1", Read::Head).await;
    assert_rule(
        &result,
        ImageStatus::CredentialsRequired,
        "token-realm-scheme",
        "must be https",
    );
    assert_eq!(other.connections(), 0);
    for realm in ["ftp://127.0.0.1/token", "not a url"] {
        let registry = bearer_registry(realm.into()).await;
        let result = read(&prober(3000), &registry.url(), "app", "1", Read::Head).await;
        assert_rule(
            &result,
            ImageStatus::CredentialsRequired,
            "token-realm-scheme",
            "not contacted",
        );
    }
}

#[tokio::test]
async fn a_realm_that_redirects_is_not_followed() {
    let elsewhere = http_server(|_, _| response("200 OK", &[], r#"{"token":"t"}"#)).await;
    let to = format!("{}/token", elsewhere.url());
    let realm = http_server(move |_, _| response("302 Found", &[("Location", &to)], "")).await;
    let registry = bearer_registry(format!("{}/token", realm.url())).await;
    let result = read(&prober(3000), &registry.url(), "app", "1", Read::Head).await;
    assert_rule(
        &result,
        ImageStatus::CredentialsRequired,
        "token-realm-redirect",
        "302 Found",
    );
    assert_eq!(realm.connections(), 1);
    assert_eq!(elsewhere.connections(), 0);
    // the realm was asked for read access to the repository only, whatever the challenge said
    let asked = &realm.requests()[0];
    assert!(asked.contains("scope=repository%3Aapp%3Apull "), "{asked}");
    assert!(
        !asked.to_ascii_lowercase().contains("authorization"),
        "{asked}"
    );
}

#[tokio::test]
async fn a_huge_token_answer_is_cut_at_64_kib() {
    let huge = format!(r#"{{"token":"{}"}}"#, "t".repeat(1024 * 1024));
    // Declared by Content-Length, and without one (read until the cap)
    let h = huge.clone();
    let declared = http_server(move |_, _| response("200 OK", &[], &h)).await;
    let undeclared =
        http_server(move |_, _| format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{huge}"))
            .await;
    for realm in [&declared, &undeclared] {
        let registry = bearer_registry(format!("{}/token", realm.url())).await;
        let result = read(&prober(5000), &registry.url(), "app", "1", Read::Head).await;
        assert_rule(
            &result,
            ImageStatus::CredentialsRequired,
            "token-answer-size",
            "65536 bytes",
        );
    }
    // just under the cap, the token is used
    let fits = format!(r#"{{"token":"{}"}}"#, "t".repeat(64 * 1024 - 20));
    let realm = http_server(move |_, _| response("200 OK", &[], &fits)).await;
    let seen = Arc::new(OnceLock::<String>::new());
    let s = seen.clone();
    let realm_url = format!("{}/token", realm.url());
    let registry = http_server(move |_, head| {
        if head
            .to_ascii_lowercase()
            .contains("\r\nauthorization: bearer tttt")
        {
            let _ = s.set(head.to_owned());
            response("404 Not Found", &[], "{}")
        } else {
            response(
                "401 Unauthorized",
                &[(
                    "WWW-Authenticate",
                    &format!(r#"Bearer realm="{realm_url}""#),
                )],
                "",
            )
        }
    })
    .await;
    let result = read(&prober(5000), &registry.url(), "app", "1", Read::Head).await;
    assert_eq!(result.status, ImageStatus::NotFound, "{result:#?}");
    assert!(seen.get().is_some());
}

#[tokio::test]
async fn a_manifest_over_4_mib_is_not_read() {
    let body = format!(
        r#"{{"schemaVersion":2,"x":"{}"}}"#,
        "x".repeat(4 * 1024 * 1024)
    );
    let registry = http_server(move |_, _| {
        // no Content-Length: the cap is the reader's
        format!("HTTP/1.1 200 OK\r\nContent-Type: {INDEX}\r\nConnection: close\r\n\r\n{body}")
    })
    .await;
    let result = read(
        &prober(10_000),
        &registry.url(),
        "app",
        "1",
        Read::Platforms,
    )
    .await;
    assert_rule(
        &result,
        ImageStatus::NotRegistry,
        "manifest-size",
        "4194304 bytes",
    );
    assert_eq!(result.digest, None);
}

#[tokio::test]
async fn an_index_of_100000_entries_stops_at_1000() {
    let entries = vec![r#"{"platform":{"os":"linux","architecture":"amd64"}}"#; 100_000].join(",");
    let body = format!(r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{entries}]}}"#);
    assert!(body.len() < 4 * 1024 * 1024 * 2);
    let registry = http_server(move |_, _| {
        response(
            "200 OK",
            &[("Content-Type", INDEX)],
            &body[..body.len().min(4 * 1024 * 1024 - 2)],
        )
    })
    .await;
    // the first 4 MiB hold far more than 1,000 entries: the parse stops at the 1,001st
    let result = read(
        &prober(10_000),
        &registry.url(),
        "app",
        "1",
        Read::Platforms,
    )
    .await;
    assert_rule(
        &result,
        ImageStatus::NotRegistry,
        "index-entries",
        "more than 1000 manifests",
    );
    assert_eq!(result.platforms, None);

    let small: String =
        vec![r#"{"platform":{"os":"linux","architecture":"amd64"}}"#; 1000].join(",");
    let body = format!(r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{small}]}}"#);
    let registry =
        http_server(move |_, _| response("200 OK", &[("Content-Type", INDEX)], &body)).await;
    let result = read(
        &prober(10_000),
        &registry.url(),
        "app",
        "1",
        Read::Platforms,
    )
    .await;
    assert_eq!(result.status, ImageStatus::Found, "{result:#?}");
    assert_eq!(result.platforms.unwrap().len(), 1000);
}

#[tokio::test]
async fn a_manifest_that_redirects_elsewhere_keeps_the_token_home() {
    let elsewhere = http_server(|_, _| response("200 OK", &[("Content-Type", INDEX)], "{}")).await;
    // One server is registry and realm: /token answers a token, and a manifest request that
    // carries it is redirected to another origin.
    let elsewhere_url = elsewhere.url();
    let registry = http_server(move |_, head| {
        let target = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let host = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("host: ")
                    .or_else(|| l.strip_prefix("Host: "))
            })
            .unwrap_or_default()
            .to_owned();
        if target.starts_with("/token") {
            response("200 OK", &[], r#"{"token":"secret-token-123"}"#)
        } else if head.contains("secret-token-123") {
            response(
                "307 Temporary Redirect",
                &[("Location", &format!("{elsewhere_url}/v2/app/manifests/1"))],
                "",
            )
        } else {
            response(
                "401 Unauthorized",
                &[(
                    "WWW-Authenticate",
                    &format!(r#"Bearer realm="http://{host}/token""#),
                )],
                "",
            )
        }
    })
    .await;
    let result = read(&prober(3000), &registry.url(), "app", "1", Read::Platforms).await;
    assert_rule(
        &result,
        ImageStatus::NotRegistry,
        "manifest-redirect",
        "off the registry",
    );
    assert_eq!(registry.connections(), 3, "{:#?}", registry.requests());
    assert_eq!(elsewhere.connections(), 0);
    assert!(!result.error.unwrap().contains("secret-token-123"));

    // a redirect within the registry is followed, with the token
    let r2 = http_server(move |_, head| {
        let target = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        if target == "/v2/app/manifests/1" {
            response(
                "301 Moved Permanently",
                &[("Location", "/v2/app/manifests/moved")],
                "",
            )
        } else {
            response(
                "200 OK",
                &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
                r#"{"schemaVersion":2}"#,
            )
        }
    })
    .await;
    let result = read(&prober(3000), &r2.url(), "app", "1", Read::Platforms).await;
    assert_eq!(result.status, ImageStatus::Found, "{result:#?}");
    assert_eq!(r2.connections(), 2);
}

#[tokio::test]
async fn a_slow_registry_is_cut_at_the_probe_timeout() {
    let slow = silent_server().await;
    let result = read(&prober(300), &slow.url(), "app", "1", Read::Head).await;
    assert_eq!(result.status, ImageStatus::Unreachable, "{result:#?}");
    assert!(result.error.unwrap().contains("timed out after 300 ms"));
    assert_eq!(slow.connections(), 1);
}

#[tokio::test]
async fn an_html_page_at_the_manifest_path_is_not_an_image() {
    let site =
        http_server(|_, _| response("200 OK", &[("Content-Type", "text/html")], "<html></html>"))
            .await;
    let result = read(&prober(3000), &site.url(), "app", "1", Read::Head).await;
    assert_eq!(result.status, ImageStatus::NotRegistry, "{result:#?}");
    assert!(result.error.unwrap().contains("not a manifest"));
    // a body that does not hash to the digest asked for
    let digest = format!("sha256:{}", "0".repeat(64));
    let liar = http_server(|_, _| {
        response(
            "200 OK",
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            "{}",
        )
    })
    .await;
    let result = read(&prober(3000), &liar.url(), "app", &digest, Read::Platforms).await;
    assert_rule(
        &result,
        ImageStatus::NotRegistry,
        "manifest-digest",
        "hashes to",
    );
}

#[tokio::test]
async fn at_most_16_manifest_bodies_are_read_at_once() {
    use registry_db::health::oci::MAX_MANIFEST_READS;
    // Headers and a first part of a 1 MiB body, then nothing: each read holds its body open.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = stalled.local_addr().unwrap();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = held.clone();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = stalled.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {INDEX}\r\nContent-Length: 1048576\r\n\r\n{{\"manifests\":["
            );
            let _ = socket.write_all(head.as_bytes()).await;
            h.lock().unwrap().push(socket);
        }
    });
    let p = prober(60_000);
    let url = format!("http://{addr}");
    let reads: Vec<_> = (0..MAX_MANIFEST_READS + 4)
        .map(|i| {
            let (p, url) = (p.clone(), url.clone());
            tokio::spawn(
                async move { read(&p, &url, "app", &format!("t{i}"), Read::Platforms).await },
            )
        })
        .collect();
    // Every read has its answer's head; 16 are reading bodies, the other 4 wait.
    let wait_until = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while held.lock().unwrap().len() < MAX_MANIFEST_READS + 4
        || p.manifest_reads_in_use() < MAX_MANIFEST_READS
    {
        assert!(
            tokio::time::Instant::now() < wait_until,
            "the reads did not all start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(p.manifest_reads_in_use(), MAX_MANIFEST_READS);
    // the bodies break off: every read ends, and the permits are back
    server.abort();
    held.lock().unwrap().clear();
    for r in reads {
        let result = r.await.unwrap();
        assert_eq!(result.status, ImageStatus::NotRegistry, "{result:#?}");
        assert!(result.error.unwrap().contains("broke off"));
    }
    assert_eq!(p.manifest_reads_in_use(), 0);
}
