//! `GET /container_registry/{id}/image` and `POST /container_registries/images` through the router,
//! on both stores, against real registries (an open one and its mirror, one behind Basic auth), a
//! closed port and small servers that count what they are asked.

use std::sync::Arc;

use axum::Router;
use registry_db::access::rate_limit::{Rate, RateLimits};
use registry_db::domain::catalog::Catalog;
use registry_db::router::router;
use registry_db::state::AppState;
use registry_db::store::Store;
use serde_json::{Value, json};

use crate::support::oci_images::{OCI_INDEX, OciLayout, push};
use crate::support::oci_registry::{Mode, OciRegistry};
use crate::support::servers::{http_server, response};
use crate::support::{self, call, call_full, loopback_prober};

fn app_with(store: Arc<dyn Store>, checks_per_minute: Option<u32>) -> Router {
    let mut state = AppState {
        catalog: Catalog::new(store, loopback_prober(3000)),
        write_token: None,
        access: Default::default(),
    };
    state.access.limits = RateLimits::new(None, checks_per_minute.map(Rate::per_minute));
    router(state)
}

async fn create(app: &Router, name: &str, url: &str, prefix: &str) -> String {
    let (status, body) = call(
        app,
        "POST",
        "/container_registry",
        Some(json!({
            "container_registry_name": name,
            "container_registry_public_url": url,
            "container_registry_image_prefix": prefix,
            "container_registry_tags": ["oci-test"],
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

fn host(url: &str) -> &str {
    url.strip_prefix("http://").unwrap()
}

#[tokio::test]
async fn lookups_answer_found_missing_credentials_and_unreachable_on_both_stores() {
    support::require_loopback_only_network();
    let open = OciRegistry::start(Mode::Open);
    let mirror = OciRegistry::start(Mode::Open);
    let basic = OciRegistry::start(Mode::htpasswd());
    let layout = OciLayout::new();
    let plain = layout.add_manifest("plain", &[]);
    let index = layout.add_index("multi");
    for r in [&open, &mirror] {
        push(&layout, "plain", &r.url, "team/app:1.0", None);
    }
    push(&layout, "multi", &open.url, "team/app:multi", None);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();

    for store in support::stores().await {
        let app = app_with(store.store.clone(), None);
        let a = create(
            &app,
            "open",
            &open.url,
            &format!("{}/team", host(&open.url)),
        )
        .await;
        let b = create(
            &app,
            "mirror",
            &mirror.url,
            &format!("{}/team", host(&mirror.url)),
        )
        .await;
        let c = create(&app, "basic", &basic.url, host(&basic.url)).await;
        let d = create(
            &app,
            "dead",
            &format!("http://{closed}"),
            &closed.to_string(),
        )
        .await;
        let kind = store.name;

        let (status, body) = call(
            &app,
            "GET",
            &format!("/container_registry/{a}/image?ref=app:1.0"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{kind}: {body}");
        let data = &body["data"];
        assert_eq!(data["status"], "found");
        assert_eq!(
            data["reference"],
            format!("{}/team/app:1.0", host(&open.url))
        );
        assert_eq!(data["digest"], plain.digest);
        assert_eq!(data["platforms"], Value::Null);

        let uri = format!("/container_registry/{a}/image?ref=app:multi&platforms=true");
        let (status, body) = call(&app, "GET", &uri, None).await;
        assert_eq!(status, 200, "{kind}: {body}");
        assert_eq!(body["data"]["digest"], index.digest);
        assert_eq!(body["data"]["media_type"], OCI_INDEX);
        assert_eq!(
            body["data"]["platforms"],
            json!([{"os": "linux", "architecture": "amd64", "variant": null},
                   {"os": "linux", "architecture": "arm64", "variant": "v8"}])
        );
        // by digest
        let uri = format!("/container_registry/{a}/image?ref=app@{}", plain.digest);
        let (status, body) = call(&app, "GET", &uri, None).await;
        assert_eq!(
            (status.as_u16(), &body["data"]["status"]),
            (200, &json!("found")),
            "{body}"
        );

        let (status, body) = call(
            &app,
            "GET",
            &format!("/container_registry/{a}/image?ref=app:nope"),
            None,
        )
        .await;
        assert_eq!(status, 404, "{kind}: {body}");
        assert_eq!(body["code"], "image_not_found");
        assert_eq!(body["data"]["status"], "not_found");

        let (status, body) = call(
            &app,
            "GET",
            &format!("/container_registry/{c}/image?ref=app:1.0"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{kind}: {body}");
        assert_eq!(body["data"]["status"], "credentials_required");

        let (status, body) = call(
            &app,
            "GET",
            &format!("/container_registry/{d}/image?ref=app:1.0"),
            None,
        )
        .await;
        assert_eq!(status, 502, "{kind}: {body}");
        assert_eq!(body["code"], "unreachable");
        assert_eq!(body["data"]["status"], "unreachable");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("connection refused"),
            "{body}"
        );

        // Which registries serve it, with which digest: the mirror shows the same one.
        let (status, body) = call(
            &app,
            "POST",
            "/container_registries/images",
            Some(json!({"image": "app:1.0", "filter": {"container_registry_tags": "oci-test"}})),
        )
        .await;
        assert_eq!(status, 200, "{kind}: {body}");
        let items = body["data"].as_array().unwrap();
        assert_eq!(items.len(), 4, "{body}");
        let by_id = |id: &str| {
            items
                .iter()
                .find(|i| i["container_registry_id"] == id)
                .unwrap()
                .clone()
        };
        assert_eq!(by_id(&a)["digest"], plain.digest);
        assert_eq!(by_id(&b)["digest"], plain.digest);
        assert_eq!(by_id(&b)["status"], "found");
        assert_eq!(by_id(&b)["container_registry_name"], "mirror");
        assert_eq!(by_id(&c)["status"], "credentials_required");
        assert_eq!(by_id(&d)["status"], "unreachable");
        assert_eq!(body["next_cursor"], Value::Null);

        // paged at most 20 per request
        let (status, body) = call(
            &app,
            "POST",
            "/container_registries/images?limit=2",
            Some(json!({"image": "app:1.0"})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"].as_array().unwrap().len(), 2);
        assert!(body["next_cursor"].is_string(), "{body}");
        let (status, body) = call(
            &app,
            "POST",
            "/container_registries/images?limit=21",
            Some(json!({"image": "app:1.0"})),
        )
        .await;
        assert_eq!(
            (status.as_u16(), body["code"].as_str()),
            (400, Some("invalid_limit")),
            "{body}"
        );
    }
}

#[tokio::test]
async fn bad_references_and_parameters_are_400s_naming_what_is_wrong() {
    let (store, _dir) = support::embedded_store();
    let app = app_with(store, None);
    let id = create(&app, "r", "http://127.0.0.1:9", "127.0.0.1:9").await;
    for (query, code, words) in [
        ("ref=App:1", "invalid_reference", "component \\\"App\\\""),
        ("ref=app:-x", "invalid_reference", "the tag"),
        (
            "ref=app@sha256:abc",
            "invalid_reference",
            "64 lowercase hex",
        ),
        ("ref=app@md5:abc", "invalid_reference", "md5"),
        ("ref=", "invalid_reference", "empty"),
        ("platforms=true", "invalid_reference", "?ref=NAME:TAG"),
        (
            "ref=app:1&platforms=maybe",
            "invalid_parameter",
            "platforms must be true or false",
        ),
    ] {
        let (status, body) = call(
            &app,
            "GET",
            &format!("/container_registry/{id}/image?{query}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["code"], code, "{query}: {body}");
        let text = body.to_string();
        assert!(text.contains(words), "{query}: {text}");
    }
    for (req, code) in [
        (json!({"image": "Bad:1"}), "invalid_reference"),
        (json!({"image": 7}), "invalid_reference"),
        (json!({}), "invalid_reference"),
        (
            json!({"image": "a:1", "filter": {"$where": "x"}}),
            "invalid_filter",
        ),
        (json!({"image": "a:1", "platforms": "yes"}), "invalid_body"),
        (json!({"image": "a:1", "extra": 1}), "invalid_body"),
        (json!([1]), "invalid_body"),
    ] {
        let (status, body) = call(
            &app,
            "POST",
            "/container_registries/images",
            Some(req.clone()),
        )
        .await;
        assert_eq!(status, 400, "{req}: {body}");
        assert_eq!(body["code"], code, "{req}: {body}");
    }
    let (status, body) = call(&app, "GET", "/container_registry/nope/image?ref=a:1", None).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn answers_are_kept_for_the_cooldown_and_rate_limited_like_checks() {
    support::require_loopback_only_network();
    let digest = format!("sha256:{}", "a".repeat(64));
    let d = digest.clone();
    let registry = http_server(move |_, _| {
        response(
            "200 OK",
            &[
                ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                ("Docker-Content-Digest", &d),
            ],
            "",
        )
    })
    .await;
    let (store, _dir) = support::embedded_store();
    let app = app_with(store.clone(), None);
    let id = create(&app, "counted", &registry.url(), &registry.addr.to_string()).await;
    let uri = format!("/container_registry/{id}/image?ref=app:1");

    // concurrent lookups of one reference share one read; later ones get the kept answer
    let calls = (0..5).map(|_| call_full(&app, "GET", &uri, None, &[]));
    for (status, _, body) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["digest"], digest);
    }
    assert_eq!(registry.connections(), 1);
    let (_, headers, _) = call_full(&app, "GET", &uri, None, &[]).await;
    assert!(headers.contains_key("age"), "{headers:?}");
    assert_eq!(registry.connections(), 1);
    // another reference, or platforms, is another key
    call(&app, "GET", &format!("{uri}&platforms=true"), None).await;
    call(
        &app,
        "GET",
        &format!("/container_registry/{id}/image?ref=app:2"),
        None,
    )
    .await;
    assert_eq!(registry.connections(), 3);
    let heads = registry.requests();
    assert!(
        heads[0].starts_with("HEAD /v2/app/manifests/1 "),
        "{}",
        heads[0]
    );
    assert!(
        heads[1].starts_with("GET /v2/app/manifests/1 "),
        "{}",
        heads[1]
    );
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("application/vnd.oci.image.index.v1+json")
    );

    // the check rate limit: two a minute, then 429 for lookups and batches alike
    let limited = app_with(store, Some(2));
    for _ in 0..2 {
        let (status, body) = call(&limited, "GET", &uri, None).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, headers, body) = call_full(&limited, "GET", &uri, None, &[]).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    assert!(headers.contains_key("retry-after"));
    let (status, _) = call(
        &limited,
        "POST",
        "/container_registries/images",
        Some(json!({"image": "app:1"})),
    )
    .await;
    assert_eq!(status, 429);
    // a probe of this service never looks up in turn
    let ua = registry_db::health::USER_AGENT;
    let (status, _, body) = call_full(&limited, "GET", &uri, None, &[("user-agent", ua)]).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (403, Some("probe_loop")),
        "{body}"
    );
}

#[tokio::test]
async fn the_registry_page_has_a_check_an_image_form_that_answers_the_lookup() {
    support::require_loopback_only_network();
    let registry = OciRegistry::start(Mode::Open);
    let layout = OciLayout::new();
    let plain = layout.add_manifest("plain", &[]);
    push(&layout, "plain", &registry.url, "app:1.0", None);
    let (store, _dir) = support::embedded_store();
    let app = app_with(store, None);
    let id = create(&app, "paged", &registry.url, host(&registry.url)).await;

    let page = axum::http::Request::get(format!("/registries/{id}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(app.clone(), page).await.unwrap();
    assert_eq!(response.status(), 200);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let html = String::from_utf8(bytes.to_vec()).unwrap();
    let action =
        format!(r#"<form id="image-form" method="get" action="/container_registry/{id}/image">"#);
    assert!(html.contains(&action), "{html}");
    assert!(html.contains(r#"name="ref""#) && html.contains(r#"name="platforms" value="true""#));
    // what the browser sends when the form is submitted without JavaScript
    let (status, body) = call(
        &app,
        "GET",
        &format!("/container_registry/{id}/image?ref=app%3A1.0"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["digest"], plain.digest);
}
