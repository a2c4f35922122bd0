//! Every sample event in `events/` through the Lambda request path, in the order a reader would run
//! them: `lambda_http::request::from_str` then the router, and the whole Lambda handler (which also
//! takes the scheduled events and runs a sweep). The store is DynamoDB on dynalite, as in Lambda.

use crate::support;

use axum::body::Body;
use http_body_util::BodyExt;
use lambda_runtime::{Context, LambdaEvent};
use registry_db::domain::catalog::Catalog;
use registry_db::lambda::{handle, is_scheduled_event};
use registry_db::router::router;
use registry_db::state::AppState;
use serde_json::Value;
use tower::ServiceExt;

fn event(name: &str) -> String {
    std::fs::read_to_string(format!("{}/events/{name}", support::ROOT))
        .unwrap_or_else(|e| panic!("events/{name}: {e}"))
}

/// Expected status of each HTTP event, run in this order on one store. The seed's registry
/// (10.13.21.22) cannot be reached from the test namespace, so its health check is a 502.
const HTTP_EVENTS: [(&str, u16); 12] = [
    ("01-create-entry.json", 201),
    ("02-get-entry.json", 200),
    ("03-update-entry.json", 200),
    ("04-query-entries.json", 200),
    ("facets.json", 200),
    ("discovery-page.json", 200),
    ("05-check-health.json", 502),
    ("health-history.json", 200),
    ("06-delete-entry.json", 200),
    ("healthz.json", 200),
    ("readyz.json", 200),
    ("openapi.json", 200),
];

const SCHEDULED_EVENTS: [&str; 2] = ["scheduled-sweep.json", "scheduled-sweep-scheduler.json"];

#[test]
fn every_event_file_is_covered_by_a_test() {
    let mut names: Vec<String> = std::fs::read_dir(format!("{}/events", support::ROOT))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    // The owner events run in tests/it/owners.rs, under `--writes owners`.
    let owner_events =
        std::fs::read_to_string(format!("{}/tests/it/owners.rs", support::ROOT)).unwrap();
    let mut covered: Vec<String> = HTTP_EVENTS
        .iter()
        .map(|(n, _)| n.to_string())
        .chain(SCHEDULED_EVENTS.iter().map(|n| n.to_string()))
        .chain(
            names
                .iter()
                .filter(|n| {
                    n.starts_with("owners-") && owner_events.contains(&format!("(\"{n}\", "))
                })
                .cloned(),
        )
        .collect();
    covered.sort();
    assert_eq!(names, covered);
}

#[test]
fn the_create_event_carries_the_seed_entry() {
    let create: Value = serde_json::from_str(&event("01-create-entry.json")).unwrap();
    let body: Value = serde_json::from_str(create["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, support::seed_entry());
}

#[tokio::test]
async fn http_events_through_from_str_and_the_router() {
    support::require_loopback_only_network();
    let registry = Catalog::new(
        support::dynamo_store().await,
        support::loopback_prober(1000),
    );
    let app = router(AppState {
        catalog: registry,
        write_token: None,
        access: Default::default(),
    });
    for (name, expected) in HTTP_EVENTS {
        let request =
            lambda_http::request::from_str(&event(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (parts, body) = request.into_parts();
        let request = axum::http::Request::from_parts(parts, Body::from(body.to_vec()));
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            status,
            expected,
            "{name}: {}",
            String::from_utf8_lossy(&bytes)
        );
        if name == "discovery-page.json" {
            // The page, as HTML, with the seed's entry (tag ai, never checked; renamed by 03) on it.
            let html = String::from_utf8(bytes.to_vec()).unwrap();
            assert!(html.starts_with("<!doctype html>"), "{html}");
            assert!(html.contains("updated-name"), "{html}");
            continue;
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        if name == "facets.json" {
            assert_eq!(body["data"]["matched"], 1, "{body}");
        }
        if name == "health-history.json" {
            // The check before it counted: one unreachable probe today, the last of 7 days.
            let days = body["data"]["days"].as_array().unwrap();
            assert_eq!(days.len(), 7, "{body}");
            assert_eq!(days[6]["unreachable"], 1, "{body}");
            assert_eq!(body["data"]["uptime"]["7d"], 0.0, "{body}");
        }
        if name != "openapi.json" {
            assert_eq!(body["success"], status < 300, "{name}: {body}");
        }
    }
}

#[tokio::test]
async fn http_and_scheduled_events_through_the_lambda_handler() {
    support::require_loopback_only_network();
    let store = support::dynamo_store().await;
    let registry = Catalog::new(store.clone(), support::loopback_prober(1000));
    let app = router(AppState {
        catalog: registry.clone(),
        write_token: None,
        access: Default::default(),
    });
    let invoke = |name: &str| {
        let payload: Value = serde_json::from_str(&event(name)).unwrap();
        handle(
            &registry,
            &app,
            LambdaEvent::new(payload, Context::default()),
        )
    };
    for (name, expected) in HTTP_EVENTS {
        let out = invoke(name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out["statusCode"], expected, "{name}: {out}");
        assert!(
            out["body"].is_string(),
            "{name}: API Gateway v2 response with a body"
        );
        if name == "discovery-page.json" {
            assert_eq!(
                out["headers"]["content-type"], "text/html; charset=utf-8",
                "{out}"
            );
            assert!(
                out["headers"]["content-security-policy"].is_string(),
                "{out}"
            );
            assert!(out["body"].as_str().unwrap().contains("updated-name"));
        }
    }

    // The scheduled events sweep every entry and store each verdict.
    invoke("01-create-entry.json").await.unwrap();
    for name in SCHEDULED_EVENTS {
        let payload: Value = serde_json::from_str(&event(name)).unwrap();
        assert!(is_scheduled_event(&payload), "{name}");
        let report = invoke(name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(report["total"], 1, "{name}: {report}");
        assert_eq!(
            report["unreachable"], 1,
            "{name}: 10.13.21.22 is unreachable from the test namespace"
        );
        let entry = store
            .get("b3c38f52-8f2e-43a3-9aa9-bd9a4c75e509")
            .await
            .unwrap()
            .unwrap()
            .entry()
            .unwrap();
        let health = entry
            .container_registry_health
            .expect("the sweep stored a verdict");
        assert!(!health.reachable);
    }
}

#[tokio::test]
async fn an_event_that_is_neither_http_nor_scheduled_is_an_error_not_a_panic() {
    let registry = Catalog::new(support::embedded_store().0, support::loopback_prober(1000));
    let app = router(AppState {
        catalog: registry.clone(),
        write_token: None,
        access: Default::default(),
    });
    let out = handle(
        &registry,
        &app,
        LambdaEvent::new(serde_json::json!({"hello": "world"}), Context::default()),
    )
    .await;
    assert!(out.is_err());
}
