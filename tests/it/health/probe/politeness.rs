//! Politeness: no credentials, a user agent, 429, redirects.

use std::time::{Duration, Instant};

use registry_db::health::{HealthStatus, ProbeConfig};

use super::{loopback_config, probe};
use crate::support::servers::{http_server, response};

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
