//! Servers that answer but are not registries.

use std::time::{Duration, Instant};

use registry_db::health::{HealthStatus, ProbeConfig};

use super::{loopback_config, probe};
use crate::support::servers::{http_server, response};

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
