//! Hostile registries: redirects elsewhere, huge answers.

use registry_db::health::{HealthStatus, ProbeResult};

use super::{loopback_config, probe};
use crate::support::servers::{http_server, response};

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
    // A head of about 380 KB: under hyper's 408 KiB read buffer, so it is always read whole (one
    // between 408 and about 816 KiB may or may not be, depending on how it arrives; see below).
    let realm = format!("https://auth.example/{}\"", "r".repeat(180 * 1024));
    let version = "v".repeat(180 * 1024);
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

/// A header block past what hyper's client buffers (408 KiB, plus at most one read of as much) is
/// never read: the registry counts as unreachable, with the reason, and nothing of it is kept.
#[tokio::test]
async fn a_header_block_past_the_read_buffer_is_not_read() {
    let version = "v".repeat(900 * 1024);
    let server = http_server(move |_, _| {
        response(
            "200 OK",
            &[("Docker-Distribution-Api-Version", &version)],
            "{}",
        )
    })
    .await;
    let result = probe(loopback_config(3000), &server.url()).await;
    assert_eq!(result.status, HealthStatus::Unreachable, "{result:?}");
    let error = result.error.as_deref().unwrap_or_default();
    assert!(error.contains("message head is too large"), "{error}");
    assert!(result.api_version.is_none(), "{result:?}");
    assert_within_caps(&result);
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
