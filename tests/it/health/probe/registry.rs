//! A real registry (Debian's `docker-registry` open, behind Basic auth, behind a bearer token) and a
//! Docker Hub-style bearer challenge.

use registry_db::health::HealthStatus;

use super::{loopback_config, probe};
use crate::support::oci_registry::{Mode, OciRegistry};
use crate::support::servers::{http_server, response};

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
