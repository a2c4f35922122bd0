//! Owners (issue 19, API.md "Owners"): under `--writes owners` anyone lists a registry and gets its
//! owner token once; only that token (or the operator's) changes the entry; rotation revokes the old
//! token at once; neither token nor hash ever shows anywhere else; creates and health checks are
//! rate limited per client. Every behaviour on both stores.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{self, entry, loopback_prober, stores};
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use registry_db::access::rate_limit::{Limited, MAX_CLIENTS, ManualClock, Rate, RateLimits};
use registry_db::access::{Access, WritePolicy};
use registry_db::domain::catalog::Catalog;
use registry_db::domain::owner::{TOKEN_CHARS, token_record};
use registry_db::router::router;
use registry_db::state::AppState;
use registry_db::store::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

const OPERATOR: &str = "operator-token-for-tests-0123456789";

fn owners_app(store: Arc<dyn Store>, limits: RateLimits) -> Router {
    app_with(store, WritePolicy::Owners, Some(OPERATOR), limits)
}

fn app_with(
    store: Arc<dyn Store>,
    policy: WritePolicy,
    operator: Option<&str>,
    limits: RateLimits,
) -> Router {
    router(AppState {
        catalog: Catalog::new(store, loopback_prober(500)),
        write_token: operator.map(Arc::from),
        access: Access {
            policy: Some(policy),
            limits,
            ..Access::default()
        },
    })
}

/// One request from `peer` (as the local server's accept loop would record it), with `token` as
/// bearer credentials when given. Answers status, headers and the body as text.
async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
    token: Option<&str>,
    peer: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let mut req = req
        .body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    if let Some(peer) = peer {
        let ip: IpAddr = peer.parse().unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
    }
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

async fn json_of(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let (status, _, text) = send(app, method, uri, body, token, None).await;
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {uri}: {text}"));
    (status, value)
}

/// Creates `id` and answers its owner token.
async fn create(app: &Router, id: &str) -> String {
    let (status, body) = json_of(
        app,
        "POST",
        "/container_registry",
        Some(entry(id, id)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["id"], id);
    let token = body["data"]["owner_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no owner_token: {body}"))
        .to_string();
    assert!(
        token.starts_with("rdbo_") && token.len() == TOKEN_CHARS,
        "{token}"
    );
    token
}

fn rename(name: &str) -> Value {
    json!({"$set": {"container_registry_name": name}})
}

#[tokio::test]
async fn the_owner_life_cycle_on_both_stores() {
    for s in stores().await {
        let app = owners_app(s.store.clone(), RateLimits::default());
        let mine = create(&app, "mine").await;
        let theirs = create(&app, "theirs").await;
        assert_ne!(mine, theirs);
        let uri = "/container_registry/mine";

        // Update: the owner's token and the operator's work; another entry's is 403, none is 401.
        let (status, body) = json_of(&app, "PUT", uri, Some(rename("by-owner")), Some(&mine)).await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", s.name);
        let (status, body) =
            json_of(&app, "PUT", uri, Some(rename("by-other")), Some(&theirs)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{}: {body}", s.name);
        assert_eq!(body["code"], "forbidden");
        let (status, headers, text) =
            send(&app, "PUT", uri, Some(rename("anonymous")), None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}: {text}", s.name);
        assert_eq!(headers["www-authenticate"], "Bearer");
        assert!(text.contains("\"code\":\"unauthorized\""), "{text}");
        let (status, _) = json_of(
            &app,
            "PUT",
            uri,
            Some(rename("by-operator")),
            Some(OPERATOR),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (_, got) = json_of(&app, "GET", uri, None, None).await;
        assert_eq!(got["data"]["container_registry_name"], "by-operator");

        // Rotation: the new token works at once, the old one stops at once.
        let (status, body) = json_of(
            &app,
            "POST",
            "/container_registry/mine/owner_token",
            None,
            Some(&mine),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", s.name);
        let rotated = body["data"]["owner_token"].as_str().unwrap().to_string();
        assert!(rotated.starts_with("rdbo_") && rotated != mine);
        let (status, _) = json_of(&app, "PUT", uri, Some(rename("old")), Some(&mine)).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{}: the old token still works",
            s.name
        );
        let (status, _) = json_of(
            &app,
            "POST",
            "/container_registry/mine/owner_token",
            None,
            Some(&mine),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = json_of(&app, "PUT", uri, Some(rename("new")), Some(&rotated)).await;
        assert_eq!(status, StatusCode::OK);
        // Rotation without credentials, or with another entry's token.
        let rotate = "/container_registry/mine/owner_token";
        assert_eq!(
            json_of(&app, "POST", rotate, None, None).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            json_of(&app, "POST", rotate, None, Some(&theirs)).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            json_of(
                &app,
                "POST",
                "/container_registry/nobody/owner_token",
                None,
                Some(&rotated)
            )
            .await
            .0,
            StatusCode::NOT_FOUND
        );

        // Delete: another entry's token and none are refused; the owner's deletes.
        assert_eq!(
            json_of(&app, "DELETE", uri, None, Some(&theirs)).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            json_of(&app, "DELETE", uri, None, None).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            json_of(&app, "DELETE", uri, None, Some(&mine)).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            json_of(&app, "DELETE", uri, None, Some(&rotated)).await.0,
            StatusCode::OK
        );
        assert_eq!(
            json_of(&app, "GET", uri, None, None).await.0,
            StatusCode::NOT_FOUND
        );
        // A new entry under the same id does not inherit the deleted one's owner.
        let again = create(&app, "mine").await;
        assert_eq!(
            json_of(&app, "PUT", uri, Some(rename("x")), Some(&rotated))
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            json_of(&app, "PUT", uri, Some(rename("x")), Some(&again))
                .await
                .0,
            StatusCode::OK
        );
        // The operator deletes any entry.
        assert_eq!(
            json_of(
                &app,
                "DELETE",
                "/container_registry/theirs",
                None,
                Some(OPERATOR)
            )
            .await
            .0,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn an_entry_without_an_owner_is_the_operators_only() {
    for s in stores().await {
        // Created while writes were open: it has no owner.
        let open = app_with(
            s.store.clone(),
            WritePolicy::Open,
            None,
            RateLimits::default(),
        );
        let (status, body) = json_of(
            &open,
            "POST",
            "/container_registry",
            Some(entry("legacy", "legacy")),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert!(body["data"].get("owner_token").is_none(), "{body}");

        let app = owners_app(s.store.clone(), RateLimits::default());
        let other = create(&app, "other").await;
        let uri = "/container_registry/legacy";
        for (token, expected) in [
            (Some(other.as_str()), StatusCode::FORBIDDEN),
            (None, StatusCode::UNAUTHORIZED),
            (Some(OPERATOR), StatusCode::OK),
        ] {
            let (status, body) = json_of(&app, "PUT", uri, Some(rename("n")), token).await;
            assert_eq!(status, expected, "{}: {body}", s.name);
        }
        // The operator may hand it to someone: a rotation gives it its first owner token.
        let (status, body) = json_of(
            &app,
            "POST",
            "/container_registry/legacy/owner_token",
            None,
            Some(OPERATOR),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let token = body["data"]["owner_token"].as_str().unwrap().to_string();
        assert_eq!(
            json_of(&app, "PUT", uri, Some(rename("claimed")), Some(&token))
                .await
                .0,
            StatusCode::OK
        );
        // The page says whether a listing has an owner, and nothing more.
        let (status, _, html) = send(&app, "GET", "/registries/legacy", None, None, None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains(r#"<dd id="owner">Has an owner</dd>"#),
            "{html}"
        );
        let _ = json_of(
            &open,
            "POST",
            "/container_registry",
            Some(entry("unowned", "unowned")),
            None,
        )
        .await;
        let (_, _, html) = send(&app, "GET", "/registries/unowned", None, None, None).await;
        assert!(html.contains(r#"<dd id="owner">None</dd>"#), "{html}");
    }
}

#[tokio::test]
async fn the_operator_policy_and_the_open_policy_behave_as_before() {
    for s in stores().await {
        let app = app_with(
            s.store.clone(),
            WritePolicy::Operator,
            Some(OPERATOR),
            RateLimits::default(),
        );
        let (status, _) = json_of(
            &app,
            "POST",
            "/container_registry",
            Some(entry("a", "a")),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = json_of(
            &app,
            "POST",
            "/container_registry",
            Some(entry("a", "a")),
            Some(OPERATOR),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert!(body["data"].get("owner_token").is_none(), "{body}");
        // An owner token is no operator token.
        let stray = format!("rdbo_{}", "A".repeat(43));
        for (method, uri) in [
            ("PUT", "/container_registry/a"),
            ("POST", "/container_registry/a/owner_token"),
            ("DELETE", "/container_registry/a"),
        ] {
            let body = (method == "PUT").then(|| rename("x"));
            assert_eq!(
                json_of(&app, method, uri, body, Some(&stray)).await.0,
                StatusCode::UNAUTHORIZED,
                "{method} {uri}"
            );
        }
        // Under `open` anyone writes, and no create is limited unless a limit is set.
        let open = app_with(
            s.store.clone(),
            WritePolicy::Open,
            None,
            Access::default_limits(WritePolicy::Open, None, None),
        );
        for i in 0..25 {
            let id = format!("open-{i}");
            let (status, _, text) = send(
                &open,
                "POST",
                "/container_registry",
                Some(entry(&id, &id)),
                None,
                Some("198.51.100.9"),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{text}");
        }
    }
}

#[tokio::test]
async fn filters_and_writes_naming_the_owner_field_are_refused() {
    for s in stores().await {
        let app = owners_app(s.store.clone(), RateLimits::default());
        let token = create(&app, "e").await;
        for filter in [
            json!({"container_registry_owner": {"$exists": true}}),
            json!({"container_registry_owner": {"$gt": "sha256:8"}}),
            json!({"$or": [{"container_registry_name": "e"}, {"container_registry_owner.x": 1}]}),
            json!({"container_registry_name": "e", "container_registry_owner": {"$not": {"$lt": "m"}}}),
        ] {
            for uri in ["/container_registries", "/container_registries/facets"] {
                let (status, body) = json_of(&app, "POST", uri, Some(filter.clone()), None).await;
                assert_eq!(
                    status,
                    StatusCode::BAD_REQUEST,
                    "{}: {uri} {filter}",
                    s.name
                );
                assert_eq!(body["code"], "invalid_filter");
                assert!(
                    body["error"]
                        .as_str()
                        .unwrap()
                        .contains("container_registry_owner"),
                    "{body}"
                );
            }
        }
        for update in [
            json!({"$set": {"container_registry_owner": "sha256:00"}}),
            json!({"$unset": {"container_registry_owner": ""}}),
            json!({"container_registry_owner": "iam:arn:aws:iam::1:user/me"}),
        ] {
            let (status, body) = json_of(
                &app,
                "PUT",
                "/container_registry/e",
                Some(update.clone()),
                Some(&token),
            )
            .await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{}: {update}: {body}",
                s.name
            );
            assert!(
                body["error"].as_str().unwrap().contains("managed"),
                "{body}"
            );
        }
        let mut with_owner = entry("f", "f");
        with_owner["container_registry_owner"] = json!("sha256:00");
        let (status, body) =
            json_of(&app, "POST", "/container_registry", Some(with_owner), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["data"]["field"], "container_registry_owner");
        // The owner still owns it.
        assert_eq!(
            json_of(
                &app,
                "PUT",
                "/container_registry/e",
                Some(rename("ok")),
                Some(&token)
            )
            .await
            .0,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn of_concurrent_rotations_exactly_one_wins() {
    for s in stores().await {
        let app = owners_app(s.store.clone(), RateLimits::default());
        let token = create(&app, "contested").await;
        let rotations = (0..8).map(|_| {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move {
                json_of(
                    &app,
                    "POST",
                    "/container_registry/contested/owner_token",
                    None,
                    Some(&token),
                )
                .await
            })
        });
        let answers = futures::future::join_all(rotations).await;
        let mut winners = Vec::new();
        for answer in answers {
            let (status, body) = answer.unwrap();
            match status {
                StatusCode::OK => {
                    winners.push(body["data"]["owner_token"].as_str().unwrap().to_string())
                }
                // Lost the race (409), or came after the winner revoked the token (403).
                StatusCode::CONFLICT | StatusCode::FORBIDDEN => {}
                other => panic!("{}: {other}: {body}", s.name),
            }
        }
        assert_eq!(winners.len(), 1, "{}: {winners:?}", s.name);
        assert_eq!(
            json_of(
                &app,
                "PUT",
                "/container_registry/contested",
                Some(rename("winner")),
                Some(&winners[0])
            )
            .await
            .0,
            StatusCode::OK
        );
        assert_eq!(
            json_of(
                &app,
                "PUT",
                "/container_registry/contested",
                Some(rename("old")),
                Some(&token)
            )
            .await
            .0,
            StatusCode::FORBIDDEN
        );
    }
}

#[tokio::test]
async fn a_rotation_through_one_instance_revokes_the_token_on_another_at_once() {
    // Two routers on one DynamoDB table: two Lambda instances.
    let store = support::dynamo_store().await;
    let one = owners_app(store.clone(), RateLimits::default());
    let two = owners_app(store, RateLimits::default());
    let token = create(&one, "shared").await;
    let uri = "/container_registry/shared";
    assert_eq!(
        json_of(&two, "PUT", uri, Some(rename("a")), Some(&token))
            .await
            .0,
        StatusCode::OK
    );
    let (status, body) = json_of(
        &one,
        "POST",
        &format!("{uri}/owner_token"),
        None,
        Some(&token),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let new = body["data"]["owner_token"].as_str().unwrap().to_string();
    assert_eq!(
        json_of(&two, "PUT", uri, Some(rename("b")), Some(&token))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        json_of(&two, "DELETE", uri, None, Some(&token)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        json_of(&two, "DELETE", uri, None, Some(&new)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn malformed_credentials_are_a_4xx_naming_what_was_wrong() {
    for s in stores().await {
        let app = owners_app(s.store.clone(), RateLimits::default());
        let token = create(&app, "e").await;
        let huge = format!("Bearer {}", "a".repeat(300_000));
        let cases: Vec<(String, &str)> = vec![
            ("Basic dXNlcjpwYXNz".into(), "Bearer <token>"),
            ("Bearer".into(), "Bearer <token>"),
            ("Bearer    ".into(), "no token"),
            (
                format!("Bearer {}", &token[..token.len() - 1]),
                "owner token",
            ),
            (format!("Bearer {token}x"), "owner token"),
            (
                format!("Bearer {}", token.replace("rdbo_", "ghp_x")),
                "owner token",
            ),
            (huge, "longer than 1024"),
        ];
        for (header, says) in cases {
            let req = Request::builder()
                .method("PUT")
                .uri("/container_registry/e")
                .header("authorization", header.as_str())
                .header("content-type", "application/json")
                .body(Body::from(rename("x").to_string()))
                .unwrap();
            let response = app.clone().oneshot(req).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&bytes);
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{}: {}: {text}",
                s.name,
                &header[..header.len().min(40)]
            );
            assert!(text.contains(says), "{text}");
            // The answer never repeats what was sent.
            assert!(!text.contains(&token[5..]), "{text}");
        }
        // Bytes that are not visible ASCII.
        let req = Request::builder()
            .method("DELETE")
            .uri("/container_registry/e")
            .header(
                "authorization",
                axum::http::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
            )
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        // Reads ignore credentials of any shape.
        let req = Request::builder()
            .uri("/container_registry/e")
            .header("authorization", "Basic nonsense")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            app.clone().oneshot(req).await.unwrap().status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn creates_are_limited_per_client_at_the_edge_with_retry_after() {
    for s in stores().await {
        let clock = Arc::new(ManualClock::default());
        let limits =
            Access::default_limits(WritePolicy::Owners, None, None).with_clock(clock.clone());
        let app = owners_app(s.store.clone(), limits);
        let post = |id: String, peer: &'static str| {
            let app = app.clone();
            async move {
                send(
                    &app,
                    "POST",
                    "/container_registry",
                    Some(entry(&id, &id)),
                    None,
                    Some(peer),
                )
                .await
            }
        };
        for i in 0..20 {
            let (status, _, text) = post(format!("a{i}"), "203.0.113.7").await;
            assert_eq!(
                status,
                StatusCode::CREATED,
                "{}: create {i}: {text}",
                s.name
            );
        }
        let (status, headers, text) = post("a20".into(), "203.0.113.7").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
        assert!(text.contains("\"code\":\"rate_limited\""), "{text}");
        // 20 an hour: one token every 180 s.
        assert_eq!(headers["retry-after"], "180");
        // Another address has its own bucket; the same /64 of IPv6 shares one.
        assert_eq!(
            post("b0".into(), "203.0.113.8").await.0,
            StatusCode::CREATED
        );
        for i in 0..20 {
            let peer = if i % 2 == 0 {
                "2001:db8:0:1::1"
            } else {
                "2001:db8:0:1:ffff::2"
            };
            assert_eq!(post(format!("v6-{i}"), peer).await.0, StatusCode::CREATED);
        }
        assert_eq!(
            post("v6-20".into(), "2001:db8:0:1:abcd::3").await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            post("v6-other".into(), "2001:db8:0:2::1").await.0,
            StatusCode::CREATED
        );
        // One second short of the refill: still limited, and told to wait that second.
        clock.advance(Duration::from_secs(179));
        let (status, headers, _) = post("a20".into(), "203.0.113.7").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["retry-after"], "1");
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            post("a20".into(), "203.0.113.7").await.0,
            StatusCode::CREATED
        );
        assert_eq!(
            post("a21".into(), "203.0.113.7").await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}

#[tokio::test]
async fn health_checks_are_limited_per_client_at_the_edge() {
    support::require_loopback_only_network();
    for s in stores().await {
        let clock = Arc::new(ManualClock::default());
        let limits =
            Access::default_limits(WritePolicy::Owners, None, None).with_clock(clock.clone());
        let app = owners_app(s.store.clone(), limits);
        create(&app, "probed").await;
        let check = |peer: &'static str| {
            let app = app.clone();
            async move {
                send(
                    &app,
                    "GET",
                    "/check_container_health/probed",
                    None,
                    None,
                    Some(peer),
                )
                .await
            }
        };
        for i in 0..60 {
            // The entry's registry (10.0.0.1) is unreachable here: 502, from the cooldown after
            // the first. Not 429.
            let (status, _, text) = check("198.51.100.1").await;
            assert_eq!(
                status,
                StatusCode::BAD_GATEWAY,
                "{}: check {i}: {text}",
                s.name
            );
        }
        let (status, headers, text) = check("198.51.100.1").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
        assert!(text.contains("\"code\":\"rate_limited\""), "{text}");
        assert_eq!(headers["retry-after"], "1");
        assert_eq!(check("198.51.100.2").await.0, StatusCode::BAD_GATEWAY);
        clock.advance(Duration::from_secs(1));
        assert_eq!(check("198.51.100.1").await.0, StatusCode::BAD_GATEWAY);
        assert_eq!(check("198.51.100.1").await.0, StatusCode::TOO_MANY_REQUESTS);
    }
}

#[test]
fn the_limiter_keeps_at_most_max_clients_and_keeps_the_recent_ones() {
    let clock = Arc::new(ManualClock::default());
    let limits = RateLimits::new(Some(Rate::per_hour(1)), None).with_clock(clock.clone());
    // One address, limited, then a flood of others.
    let first: IpAddr = "192.0.2.1".parse().unwrap();
    limits.take(Limited::Creates, Some(first)).unwrap();
    assert!(limits.take(Limited::Creates, Some(first)).is_err());
    let flood = 3 * MAX_CLIENTS;
    for i in 0..flood {
        clock.advance(Duration::from_millis(1));
        // Distinct /64s of IPv6, each spending its one create.
        let ip = IpAddr::V6(std::net::Ipv6Addr::from(
            (0x2001_0db8u128 << 96) | ((i as u128) << 64),
        ));
        assert!(limits.take(Limited::Creates, Some(ip)).is_ok(), "{i}");
        assert!(limits.clients(Limited::Creates) <= MAX_CLIENTS);
    }
    assert!(limits.clients(Limited::Creates) > MAX_CLIENTS / 2);
    // The most recent clients are still remembered as limited.
    let last = IpAddr::V6(std::net::Ipv6Addr::from(
        (0x2001_0db8u128 << 96) | (((flood - 1) as u128) << 64),
    ));
    assert!(limits.take(Limited::Creates, Some(last)).is_err());
}

#[test]
fn the_default_limits_follow_the_policy_and_settings_win() {
    let described = |p, c, h| Access::default_limits(p, c, h).describe();
    assert_eq!(
        described(WritePolicy::Owners, None, None),
        "creates 20 per 3600 s, health checks 60 per 60 s"
    );
    assert_eq!(
        described(WritePolicy::Open, None, None),
        "creates off, health checks off"
    );
    assert_eq!(
        described(WritePolicy::Operator, None, None),
        "creates off, health checks off"
    );
    assert_eq!(
        described(WritePolicy::Open, Some(5), None),
        "creates 5 per 3600 s, health checks off"
    );
    assert_eq!(
        described(WritePolicy::Owners, Some(0), Some(0)),
        "creates off, health checks off"
    );
}

/// Every answer and the server's whole log (at debug level), searched for the token and its hash,
/// on the real binary over both stores; then a restart (the embedded store keeps the owner).
#[test]
fn neither_token_nor_hash_appears_anywhere_and_owners_survive_a_restart() {
    support::require_loopback_only_network();
    let dynalite = support::dynalite();
    let table = format!("owners-leak-{}", std::process::id());
    let aws: Vec<(&str, &str)> = vec![
        ("AWS_ENDPOINT_URL_DYNAMODB", dynalite.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    for store in ["embedded", "dynamodb"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data = data.to_str().unwrap().to_string();
        let args: Vec<&str> = match store {
            "embedded" => vec!["--data", &data, "--writes", "owners"],
            _ => vec![
                "--store",
                "dynamodb",
                "--table",
                &table,
                "--create-table",
                "--writes",
                "owners",
            ],
        };
        let mut envs = aws.clone();
        envs.push(("RUST_LOG", "debug"));
        envs.push(("REGISTRY_DB_WRITE_TOKEN", OPERATOR));
        let log_path = dir.path().join("stderr.log");
        let server = support::start_server_logging_to(
            &args,
            &envs,
            std::fs::File::create(&log_path).unwrap().into(),
        );
        let base = server.base.clone();
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .unwrap();
        let mut answers = String::new();
        let call = |method: &str, path: &str, body: Option<Value>, token: Option<&str>| {
            let mut req = client.request(method.parse().unwrap(), format!("{base}{path}"));
            if let Some(body) = body {
                req = req.json(&body);
            }
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            let response = req.send().unwrap();
            let status = response.status().as_u16();
            let headers = format!("{:?}", response.headers());
            let text = response.text().unwrap();
            (status, headers, text)
        };
        let (status, _, created) = call(
            "POST",
            "/container_registry",
            Some(support::seed_entry()),
            None,
        );
        assert_eq!(status, 201, "{store}: {created}");
        let token = serde_json::from_str::<Value>(&created).unwrap()["data"]["owner_token"]
            .as_str()
            .unwrap()
            .to_string();
        let id = "b3c38f52-8f2e-43a3-9aa9-bd9a4c75e509";
        let path = format!("/container_registry/{id}");
        let record = |(status, headers, text): (u16, String, String), answers: &mut String| {
            answers.push_str(&headers);
            answers.push_str(&text);
            status
        };
        type Step<'a> = (&'a str, String, Option<Value>, Option<&'a str>, u16);
        let steps: Vec<Step> = vec![
            ("GET", path.clone(), None, None, 200),
            (
                "POST",
                "/container_registries".into(),
                Some(json!({})),
                None,
                200,
            ),
            (
                "POST",
                "/container_registries?limit=1".into(),
                Some(json!({"container_registry_tags": "ai"})),
                None,
                200,
            ),
            (
                "POST",
                "/container_registries/facets".into(),
                Some(json!({})),
                None,
                200,
            ),
            (
                "POST",
                "/container_registries".into(),
                Some(json!({"container_registry_owner": {"$exists": true}})),
                None,
                400,
            ),
            ("GET", "/".into(), None, None, 200),
            ("GET", format!("/registries/{id}"), None, None, 200),
            ("GET", "/?q=internal".into(), None, None, 200),
            ("GET", "/openapi.json".into(), None, None, 200),
            (
                "PUT",
                path.clone(),
                Some(rename("renamed")),
                Some(&token),
                200,
            ),
            (
                "PUT",
                path.clone(),
                Some(json!({"$set": {"container_registry_owner": "x"}})),
                Some(&token),
                400,
            ),
            ("PUT", path.clone(), Some(rename("nope")), None, 401),
            (
                "PUT",
                path.clone(),
                Some(rename("nope")),
                Some(&token[..20]),
                401,
            ),
            (
                "PUT",
                "/container_registry/absent".into(),
                Some(rename("nope")),
                Some(&token),
                404,
            ),
            (
                "GET",
                format!("/check_container_health/{id}"),
                None,
                None,
                502,
            ),
            ("GET", path.clone(), None, None, 200),
        ];
        for (method, path, body, auth, expected) in steps {
            let status = record(call(method, &path, body, auth), &mut answers);
            assert_eq!(status, expected, "{store}: {method} {path}");
        }
        // A second entry's token meets the first's entry: 403, and still nothing leaks.
        let (_, _, other) = call(
            "POST",
            "/container_registry",
            Some(entry("other", "other")),
            None,
        );
        let other = serde_json::from_str::<Value>(&other).unwrap()["data"]["owner_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            record(call("DELETE", &path, None, Some(&other)), &mut answers),
            403
        );

        let hash = token_record(&token);
        let hex = hash.trim_start_matches("sha256:");
        let secret = &token["rdbo_".len()..];
        for (what, text) in [
            ("the answers", &answers),
            (
                "the create's answer, but the token",
                &created.replace(&token, ""),
            ),
        ] {
            assert!(!text.contains(secret), "{store}: the token is in {what}");
            assert!(!text.contains(hex), "{store}: the hash is in {what}");
            assert!(
                !text.contains(&hex[..16]),
                "{store}: part of the hash is in {what}"
            );
        }
        if store == "embedded" {
            // A restart on the same folder: the owner is kept, the token still works.
            drop(server);
            let server = support::start_server_logging_to(
                &args,
                &envs,
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log_path)
                    .unwrap()
                    .into(),
            );
            let base = server.base.clone();
            let client = reqwest::blocking::Client::builder()
                .no_proxy()
                .build()
                .unwrap();
            let put = |token: &str| {
                client
                    .put(format!("{base}{path}"))
                    .bearer_auth(token)
                    .json(&rename("after-restart"))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            };
            assert_eq!(put(&other), 403);
            assert_eq!(put(&token), 200);
            drop(server);
        } else {
            drop(server);
        }
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(
            log.contains("writes=owners") || log.contains("\"writes\":\"owners\""),
            "{store}: the start line names the policy: {log}"
        );
        assert!(log.contains("creates 20 per 3600 s"), "{log}");
        for secret in [secret, other.trim_start_matches("rdbo_")] {
            assert!(!log.contains(secret), "{store}: a token is in the log");
        }
        assert!(
            !log.contains(hex) && !log.contains(&hex[..16]),
            "{store}: the hash is in the log"
        );
        assert!(
            !log.contains(OPERATOR),
            "{store}: the operator's token is in the log"
        );
    }
}

/// A huge header through real HTTP is a 4xx (hyper's or ours), never a 5xx.
#[test]
fn a_huge_authorization_header_over_http_is_a_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = support::start_server(
        &["--data", data.to_str().unwrap(), "--writes", "owners"],
        &[],
    );
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    for size in [2_000, 60_000, 1_000_000] {
        let status = client
            .delete(format!("{}/container_registry/x", server.base))
            .header("authorization", format!("Bearer {}", "a".repeat(size)))
            .send()
            .map(|r| r.status().as_u16());
        match status {
            Ok(status) => assert!((400..500).contains(&status), "{size}: {status}"),
            // hyper may close the connection on a header block past its limit.
            Err(e) => assert!(size > 400_000, "{size}: {e}"),
        }
    }
}

/// The owner events of `events/` (see docs/EVENTS.md), in the order they run.
pub const IAM_EVENTS: [(&str, u16); 4] = [
    ("owners-iam-01-create.json", 201),
    ("owners-iam-02-update-by-another-principal.json", 403),
    ("owners-iam-03-update-by-owner.json", 200),
    ("owners-iam-04-delete-by-operator.json", 200),
];
pub const PUBLIC_EVENTS: [(&str, u16); 4] = [
    ("owners-public-01-create.json", 201),
    ("owners-public-02-update-without-token.json", 401),
    ("owners-public-03-update-with-token.json", 200),
    ("owners-public-04-rotate-token.json", 200),
];

fn lambda_app(store: Arc<dyn Store>, operator_principals: &[&str]) -> (Catalog, Router) {
    let catalog = Catalog::new(store, loopback_prober(500));
    let app = router(AppState {
        catalog: catalog.clone(),
        write_token: None,
        access: Access {
            policy: Some(WritePolicy::Owners),
            operator_principals: operator_principals.iter().map(|p| p.to_string()).collect(),
            limits: Access::default_limits(WritePolicy::Owners, None, None),
            client_ip_header: None,
        },
    });
    (catalog, app)
}

/// Runs one event file through the whole Lambda handler (as `lambda::run` does), with
/// `{{owner_token}}` replaced; answers the status and the body.
async fn invoke(catalog: &Catalog, app: &Router, name: &str, token: &str) -> (u16, Value) {
    let text = std::fs::read_to_string(format!("{}/events/{name}", support::ROOT)).unwrap();
    let payload: Value = serde_json::from_str(&text.replace("{{owner_token}}", token)).unwrap();
    let out = registry_db::lambda::handle(
        catalog,
        app,
        lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default()),
    )
    .await
    .unwrap();
    let status = out["statusCode"].as_u64().unwrap() as u16;
    let body = serde_json::from_str(out["body"].as_str().unwrap_or("null")).unwrap();
    (status, body)
}

#[tokio::test]
async fn behind_iam_the_calling_principal_owns_what_it_created() {
    let store = support::dynamo_store().await;
    let (registry, app) = lambda_app(
        store.clone(),
        &["arn:aws:sts::123456789012:assumed-role/registry-ops/*"],
    );
    for (name, expected) in IAM_EVENTS {
        let (status, body) = invoke(&registry, &app, name, "").await;
        assert_eq!(status, expected, "{name}: {body}");
        if name.contains("create") {
            // The principal is the owner: no token to hand out.
            assert!(body["data"].get("owner_token").is_none(), "{body}");
        }
        if name.contains("another-principal") {
            assert_eq!(body["code"], "forbidden");
        }
    }
    // The owner record is the principal's, beside the entry: never in what GET answers.
    let (_, body) = invoke(&registry, &app, "owners-iam-01-create.json", "").await;
    assert_eq!(body["data"]["id"], "a1f0c3d2-5b6e-4f70-8a91-b2c3d4e5f601");
    assert_eq!(
        store
            .owner("a1f0c3d2-5b6e-4f70-8a91-b2c3d4e5f601")
            .await
            .unwrap(),
        Some(Some("iam:arn:aws:iam::123456789012:user/alice".into()))
    );
    let got = store
        .get("a1f0c3d2-5b6e-4f70-8a91-b2c3d4e5f601")
        .await
        .unwrap()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&got.json).contains("alice\""),
        "{:?}",
        got.json
    );
    assert!(!String::from_utf8_lossy(&got.json).contains("container_registry_owner"));
    // Without the operator principals, the operator's delete is another principal's: 403.
    let (registry, app) = lambda_app(store, &[]);
    let (status, _) = invoke(&registry, &app, "owners-iam-04-delete-by-operator.json", "").await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn with_public_write_routes_owner_tokens_work_through_lambda() {
    let store = support::dynamo_store().await;
    let (registry, app) = lambda_app(store, &[]);
    let mut token = String::new();
    for (name, expected) in PUBLIC_EVENTS {
        let (status, body) = invoke(&registry, &app, name, &token).await;
        assert_eq!(status, expected, "{name}: {body}");
        if let Some(t) = body["data"]["owner_token"].as_str() {
            token = t.to_string();
        }
    }
    // The rotation (the last event) revoked the token the update used.
    let (status, _) = invoke(
        &registry,
        &app,
        "owners-public-03-update-with-token.json",
        &token,
    )
    .await;
    assert_eq!(status, 200, "the rotated token works");
    let (status, body) = invoke(
        &registry,
        &app,
        "owners-public-03-update-with-token.json",
        &format!("rdbo_{}", "B".repeat(43)),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // Lambda's request context gives the client address: the create limit counts it (the create
    // event's source IP made 1 of 20).
    for _ in 0..19 {
        let mut event: Value = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/events/owners-public-01-create.json",
                support::ROOT
            ))
            .unwrap(),
        )
        .unwrap();
        let mut body: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
        body.as_object_mut()
            .unwrap()
            .remove("container_registry_id");
        event["body"] = Value::String(body.to_string());
        event["headers"]
            .as_object_mut()
            .unwrap()
            .remove("content-length");
        let out = registry_db::lambda::handle(
            &registry,
            &app,
            lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
        )
        .await
        .unwrap();
        assert_eq!(out["statusCode"], 201, "{out}");
    }
    let (status, body) = invoke(&registry, &app, "owners-public-01-create.json", "").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "rate_limited");
}

#[tokio::test]
async fn the_authorization_header_is_read_up_to_its_limit_and_refused_past_it() {
    use registry_db::api::auth::MAX_AUTHORIZATION_BYTES;
    let (store, _dir) = support::embedded_store();
    let app = owners_app(store, RateLimits::default());
    let token = create(&app, "e").await;
    let put = |header: String| {
        let app = app.clone();
        async move {
            let req = Request::builder()
                .method("PUT")
                .uri("/container_registry/e")
                .header("authorization", header)
                .header("content-type", "application/json")
                .body(Body::from(rename("x").to_string()))
                .unwrap();
            let response = app.oneshot(req).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    // The owner's token padded with spaces to exactly the limit: read, trimmed, accepted.
    let at_limit = format!("Bearer {token}");
    let at_limit = format!(
        "{at_limit}{}",
        " ".repeat(MAX_AUTHORIZATION_BYTES - at_limit.len())
    );
    assert_eq!(at_limit.len(), MAX_AUTHORIZATION_BYTES);
    let (status, text) = put(at_limit.clone()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    // One byte more: refused before anything is compared.
    let (status, text) = put(format!("{at_limit} ")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(text.contains("longer than 1024 bytes"), "{text}");
}

#[tokio::test]
async fn the_client_is_the_trusted_headers_last_address_only_when_a_setting_names_it() {
    let (store, _dir) = support::embedded_store();
    let app_for = |header: Option<&str>| {
        router(AppState {
            catalog: Catalog::new(store.clone(), loopback_prober(500)),
            write_token: None,
            access: Access {
                policy: Some(WritePolicy::Owners),
                limits: RateLimits::new(Some(Rate::per_hour(1)), None),
                client_ip_header: header.map(|h| h.parse().unwrap()),
                ..Access::default()
            },
        })
    };
    let post = |app: Router, id: &str, forwarded: &str| {
        let mut req = Request::builder()
            .method("POST")
            .uri("/container_registry")
            .header("content-type", "application/json")
            .header("x-forwarded-for", forwarded)
            .body(Body::from(entry(id, id).to_string()))
            .unwrap();
        // Every request comes through the same proxy.
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 2], 40000))));
        async move { app.oneshot(req).await.unwrap().status() }
    };
    // Behind a trusted proxy: the last address (the one the proxy appended) is the client; what
    // the client itself wrote before it does not count.
    let behind = app_for(Some("x-forwarded-for"));
    assert_eq!(
        post(behind.clone(), "a", "198.51.100.1").await,
        StatusCode::CREATED
    );
    assert_eq!(
        post(behind.clone(), "b", "192.0.2.9, 198.51.100.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        post(behind.clone(), "c", "198.51.100.2").await,
        StatusCode::CREATED
    );
    // Without the setting the header is anyone's to write: ignored, the peer counts.
    let direct = app_for(None);
    assert_eq!(
        post(direct.clone(), "d", "198.51.100.3").await,
        StatusCode::CREATED
    );
    assert_eq!(
        post(direct.clone(), "e", "198.51.100.4").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// The real server counts creates per client address, the socket's peer: two clients on two
/// loopback addresses each get their own bucket, and the second create from one address within
/// the hour is a 429 with `Retry-After`.
#[test]
fn the_real_server_limits_creates_per_peer_address() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = support::start_server(
        &[
            "--data",
            data.to_str().unwrap(),
            "--writes",
            "owners",
            "--creates-per-hour",
            "1",
        ],
        &[],
    );
    let from = |ip: [u8; 4]| {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .local_address(IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let create = |client: &reqwest::blocking::Client, id: &str| {
        client
            .post(format!("{}/container_registry", server.base))
            .json(&entry(id, id))
            .send()
            .unwrap()
    };
    let (a, b) = (from([127, 0, 0, 1]), from([127, 0, 0, 2]));
    assert_eq!(create(&a, "peer-a-1").status(), 201);
    // Another address has a bucket of its own (were the peer unknown, both would share one).
    assert_eq!(create(&b, "peer-b-1").status(), 201);
    let refused = create(&a, "peer-a-2");
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    let body: Value = refused.json().unwrap();
    assert_eq!(body["code"], "rate_limited");
}
