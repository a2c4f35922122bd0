//! Router-level tests of every endpoint, success and failure paths, each run against both stores:
//! the embedded store in a temp folder and DynamoDB on dynalite.

use crate::support;

use std::collections::HashSet;

use axum::http::StatusCode;
use serde_json::{Value, json};
use support::{SEED_ID, app, call, call_with, entry, seed_entry, stores};

#[tokio::test]
async fn create_then_get_returns_the_seed_entry_with_managed_fields() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        let (status, body) = call(&app, "POST", "/container_registry", Some(seed_entry())).await;
        assert_eq!(status, StatusCode::CREATED, "{}: {body}", s.name);
        assert_eq!(
            body,
            json!({"success": true, "data": {"message": "Container registry created", "id": SEED_ID}})
        );

        let (status, body) =
            call(&app, "GET", &format!("/container_registry/{SEED_ID}"), None).await;
        assert_eq!(status, StatusCode::OK, "{}", s.name);
        assert_eq!(body["success"], true);
        let data = body["data"].as_object().unwrap();
        for (k, v) in seed_entry().as_object().unwrap() {
            assert_eq!(data.get(k), Some(v), "{}: field {k}", s.name);
        }
        assert_eq!(data["container_registry_version"], 1);
        assert!(
            data["container_registry_created_at"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
    }
}

#[tokio::test]
async fn create_without_id_makes_a_uuid_and_returns_it() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        let mut body = seed_entry();
        body.as_object_mut()
            .unwrap()
            .remove("container_registry_id");
        let (status, created) = call(&app, "POST", "/container_registry", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{}", s.name);
        let id = created["data"]["id"].as_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
        let (status, got) = call(&app, "GET", &format!("/container_registry/{id}"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got["data"]["container_registry_id"], id);
    }
}

#[tokio::test]
async fn duplicate_id_is_409_and_keeps_the_first_entry() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        assert_eq!(
            call(&app, "POST", "/container_registry", Some(seed_entry()))
                .await
                .0,
            StatusCode::CREATED
        );
        let mut second = seed_entry();
        second["container_registry_name"] = json!("impostor");
        let (status, body) = call(&app, "POST", "/container_registry", Some(second)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{}", s.name);
        assert_eq!(body["success"], false);
        assert_eq!(body["code"], "already_exists");
        let (_, got) = call(&app, "GET", &format!("/container_registry/{SEED_ID}"), None).await;
        assert_eq!(
            got["data"]["container_registry_name"],
            "internal-ai-registry"
        );
    }
}

#[tokio::test]
async fn invalid_entries_are_400_naming_the_field() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        let cases = [
            (
                json!({"container_registry_public_url": "http://h:5000"}),
                "container_registry_name",
            ),
            (
                json!({"container_registry_name": "x"}),
                "container_registry_public_url",
            ),
            (
                json!({"container_registry_name": "x", "container_registry_public_url": "h:5000"}),
                "container_registry_public_url",
            ),
            (
                json!({"container_registry_name": "x", "container_registry_public_url": "http://u:p@h"}),
                "container_registry_public_url",
            ),
            (
                json!({"container_registry_name": "x", "container_registry_public_url": "http://h", "container_registry_tags": "ai"}),
                "container_registry_tags",
            ),
            (
                json!({"container_registry_name": "x", "container_registry_public_url": "http://h", "nickname": 1}),
                "nickname",
            ),
            (
                json!({"container_registry_name": "x", "container_registry_public_url": "http://h", "container_registry_version": 3}),
                "container_registry_version",
            ),
            (
                json!({"container_registry_name": "x", "container_registry_public_url": "http://h", "container_registry_storage_info": {"storage_type": "tape"}}),
                "container_registry_storage_info.storage_type",
            ),
        ];
        for (body, field) in cases {
            let (status, resp) =
                call(&app, "POST", "/container_registry", Some(body.clone())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{}: {body}", s.name);
            assert_eq!(resp["success"], false);
            assert_eq!(resp["code"], "invalid_entry");
            assert_eq!(resp["data"]["field"], field, "{body}");
            assert!(resp["error"].as_str().unwrap().contains(field), "{resp}");
        }
        // Not JSON, not an object, empty.
        let (status, resp) = call_with(
            &app,
            "POST",
            "/container_registry",
            Some("{nope".into()),
            &[],
        )
        .await;
        assert_eq!(
            (status, resp["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_json"))
        );
        let (status, _) = call(&app, "POST", "/container_registry", Some(json!([1, 2]))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = call_with(&app, "POST", "/container_registry", None, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // Nothing was stored by any of these.
        let (_, all) = call(&app, "POST", "/container_registries", Some(json!({}))).await;
        assert_eq!(all["data"], json!([]), "{}", s.name);
    }
}

#[tokio::test]
async fn oversized_body_is_413() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        let mut body = seed_entry();
        body["container_registry_metadata"]["blob"] = json!("x".repeat(300 * 1024));
        let (status, resp) = call(&app, "POST", "/container_registry", Some(body)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{}", s.name);
        assert_eq!(resp["code"], "payload_too_large");
    }
}

#[tokio::test]
async fn update_applies_operators_and_bumps_the_version() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        call(&app, "POST", "/container_registry", Some(seed_entry())).await;
        let uri = format!("/container_registry/{SEED_ID}");
        let (status, resp) = call(
            &app,
            "PUT",
            &uri,
            Some(json!({"$set": {"container_registry_name": "updated-name"}})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}: {resp}", s.name);
        assert_eq!(resp["data"]["message"], "Container registry updated");
        let (_, got) = call(&app, "GET", &uri, None).await;
        assert_eq!(got["data"]["container_registry_name"], "updated-name");
        assert_eq!(got["data"]["container_registry_version"], 2);

        // The same values again: still 200 (the earlier service said 404 here).
        let (status, _) = call(
            &app,
            "PUT",
            &uri,
            Some(json!({"$set": {"container_registry_name": "updated-name"}})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);

        // A plain object is a $set of its fields.
        let (status, _) = call(
            &app,
            "PUT",
            &uri,
            Some(json!({"container_registry_tags": ["a", "b"]})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (_, got) = call(&app, "GET", &uri, None).await;
        assert_eq!(got["data"]["container_registry_tags"], json!(["a", "b"]));
    }
}

#[tokio::test]
async fn update_of_unknown_id_is_404_and_inserts_nothing() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        let (status, resp) = call(
            &app,
            "PUT",
            "/container_registry/nope",
            Some(json!({"$set": {"container_registry_name": "x"}})),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{}", s.name);
        assert_eq!(resp["code"], "not_found");
        assert_eq!(
            call(&app, "GET", "/container_registry/nope", None).await.0,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn update_that_breaks_a_rule_is_400_and_changes_nothing() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        call(&app, "POST", "/container_registry", Some(seed_entry())).await;
        let uri = format!("/container_registry/{SEED_ID}");
        let cases = [
            json!({"$set": {"container_registry_id": "other"}}),
            json!({"$set": {"container_registry_version": 99}}),
            json!({"$set": {"container_registry_public_url": "not a url"}}),
            json!({"$unset": {"container_registry_name": ""}}),
            json!({"$set": {"container_registry_storage_info.registry_type": "mine"}}),
            json!({"$frobnicate": {"x": 1}}),
            json!("just a string"),
        ];
        for update in cases {
            let (status, resp) = call(&app, "PUT", &uri, Some(update.clone())).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{}: {update} -> {resp}",
                s.name
            );
            assert_eq!(resp["success"], false);
        }
        let (_, got) = call(&app, "GET", &uri, None).await;
        assert_eq!(got["data"]["container_registry_version"], 1, "{}", s.name);
    }
}

#[tokio::test]
async fn delete_removes_and_second_delete_is_404() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        call(&app, "POST", "/container_registry", Some(seed_entry())).await;
        let uri = format!("/container_registry/{SEED_ID}");
        let (status, resp) = call(&app, "DELETE", &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{}", s.name);
        assert_eq!(
            resp,
            json!({"success": true, "data": {"message": "Container registry deleted"}})
        );
        assert_eq!(call(&app, "GET", &uri, None).await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            call(&app, "DELETE", &uri, None).await.0,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn get_of_unknown_or_impossible_id_is_404() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        for id in ["missing", "a%2Fb", "..", &"x".repeat(300)] {
            let (status, resp) =
                call(&app, "GET", &format!("/container_registry/{id}"), None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{}: {id}", s.name);
            assert_eq!(resp["success"], false);
        }
    }
}

#[tokio::test]
async fn query_with_the_seed_filter_and_errors() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        call(&app, "POST", "/container_registry", Some(seed_entry())).await;
        let mut other = entry("other", "other");
        other["container_registry_tags"] = json!(["cpu"]);
        call(&app, "POST", "/container_registry", Some(other)).await;

        let (status, resp) = call(
            &app,
            "POST",
            "/container_registries",
            Some(json!({"container_registry_tags": {"$in": ["ai", "internal"]}})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}: {resp}", s.name);
        let ids: Vec<&str> = resp["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["container_registry_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [SEED_ID], "{}", s.name);
        assert_eq!(resp["next_cursor"], Value::Null);

        // An empty body and {} match everything.
        for body in [None, Some(json!({}))] {
            let (status, resp) = call(&app, "POST", "/container_registries", body).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(resp["data"].as_array().unwrap().len(), 2);
        }
        let (status, resp) = call(
            &app,
            "POST",
            "/container_registries",
            Some(json!({"$where": "1"})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", s.name);
        assert!(resp["error"].as_str().unwrap().contains("$where"), "{resp}");
        for bad in ["limit=0", "limit=1001", "limit=ten", "cursor=garbage"] {
            let (status, resp) = call(
                &app,
                "POST",
                &format!("/container_registries?{bad}"),
                Some(json!({})),
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(resp["success"], false);
        }
    }
}

#[tokio::test]
async fn query_pages_cover_every_match_exactly_once() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        let mut expected = HashSet::new();
        for i in 0..57 {
            let mut e = entry(&format!("id-{i:03}"), &format!("reg-{i}"));
            e["container_registry_metadata"] = json!({"n": i});
            call(&app, "POST", "/container_registry", Some(e)).await;
            if i % 3 == 0 {
                expected.insert(format!("id-{i:03}"));
            }
        }
        let filter = json!({"container_registry_metadata.n": {"$in": (0..57).filter(|i| i % 3 == 0).collect::<Vec<_>>()}});
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let uri = match &cursor {
                Some(c) => format!("/container_registries?limit=4&cursor={c}"),
                None => "/container_registries?limit=4".into(),
            };
            let (status, resp) = call(&app, "POST", &uri, Some(filter.clone())).await;
            assert_eq!(status, StatusCode::OK, "{}: {resp}", s.name);
            let page = resp["data"].as_array().unwrap();
            assert!(page.len() <= 4);
            seen.extend(
                page.iter()
                    .map(|e| e["container_registry_id"].as_str().unwrap().to_string()),
            );
            match resp["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let unique: HashSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "{}: no entry repeats", s.name);
        assert_eq!(unique, expected, "{}: every match, nothing else", s.name);
    }
}

#[tokio::test]
async fn write_token_protects_writes_and_leaves_reads_public() {
    for s in stores().await {
        let app = app(s.store.clone(), Some("s3cret"));
        let (status, resp) = call(&app, "POST", "/container_registry", Some(seed_entry())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", s.name);
        assert_eq!(resp["success"], false);
        let wrong = [("authorization", "Bearer nope")];
        let (status, _) = call_with(
            &app,
            "POST",
            "/container_registry",
            Some(seed_entry().to_string()),
            &wrong,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let right = [("authorization", "Bearer s3cret")];
        let (status, _) = call_with(
            &app,
            "POST",
            "/container_registry",
            Some(seed_entry().to_string()),
            &right,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let uri = format!("/container_registry/{SEED_ID}");
        assert_eq!(call(&app, "GET", &uri, None).await.0, StatusCode::OK);
        assert_eq!(
            call(&app, "POST", "/container_registries", Some(json!({})))
                .await
                .0,
            StatusCode::OK
        );
        let update = json!({"$set": {"container_registry_name": "x"}}).to_string();
        assert_eq!(
            call_with(&app, "PUT", &uri, Some(update.clone()), &[])
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call_with(&app, "PUT", &uri, Some(update), &right).await.0,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, "DELETE", &uri, None).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call_with(&app, "DELETE", &uri, None, &right).await.0,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_envelope() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        let (status, resp) = call(&app, "GET", "/nowhere", None).await;
        assert_eq!(
            (status, resp["success"].clone()),
            (StatusCode::NOT_FOUND, json!(false))
        );
        let (status, resp) = call(&app, "PATCH", "/container_registry/x", None).await;
        assert_eq!(
            (status, resp["success"].clone()),
            (StatusCode::METHOD_NOT_ALLOWED, json!(false))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_add_to_set_updates_are_never_lost() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        call(&app, "POST", "/container_registry", Some(seed_entry())).await;
        let uri = format!("/container_registry/{SEED_ID}");
        let n = 40;
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let app = app.clone();
                let uri = uri.clone();
                tokio::spawn(async move {
                    call(
                        &app,
                        "PUT",
                        &uri,
                        Some(json!({"$addToSet": {"container_registry_tags": format!("t{i}")}})),
                    )
                    .await
                })
            })
            .collect();
        for t in tasks {
            let (status, resp) = t.await.unwrap();
            assert_eq!(status, StatusCode::OK, "{}: {resp}", s.name);
        }
        let (_, got) = call(&app, "GET", &uri, None).await;
        let tags: HashSet<&str> = got["data"]["container_registry_tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        for i in 0..n {
            assert!(
                tags.contains(format!("t{i}").as_str()),
                "{}: t{i} lost",
                s.name
            );
        }
        assert_eq!(tags.len(), 4 + n, "{}", s.name);
        assert_eq!(
            got["data"]["container_registry_version"],
            1 + n as u64,
            "{}",
            s.name
        );
    }
}

#[tokio::test]
async fn an_entry_read_and_sent_back_whole_is_a_valid_update() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        call(&app, "POST", "/container_registry", Some(seed_entry())).await;
        let uri = format!("/container_registry/{SEED_ID}");
        let (_, got) = call(&app, "GET", &uri, None).await;
        let mut entry = got["data"].clone();
        entry["container_registry_name"] = json!("renamed");
        let (status, resp) = call(&app, "PUT", &uri, Some(entry)).await;
        assert_eq!(status, StatusCode::OK, "{}: {resp}", s.name);
        assert_eq!(resp["data"]["entry"]["container_registry_name"], "renamed");
        assert_eq!(resp["data"]["entry"]["container_registry_version"], 2);

        // Sending back the same (now stale) read again would overwrite a change it has not seen.
        let mut stale = got["data"].clone();
        stale["container_registry_name"] = json!("stale");
        let (status, resp) = call(&app, "PUT", &uri, Some(stale)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{}: {resp}", s.name);
        assert_eq!(resp["code"], "update_conflict");
        let (_, now) = call(&app, "GET", &uri, None).await;
        assert_eq!(now["data"]["container_registry_name"], "renamed");
    }
}

#[tokio::test]
async fn a_cursor_still_works_after_the_entry_it_points_at_is_deleted() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        for i in 0..10 {
            call(
                &app,
                "POST",
                "/container_registry",
                Some(entry(&format!("id-{i}"), &format!("r{i}"))),
            )
            .await;
        }
        let (_, first) = call(
            &app,
            "POST",
            "/container_registries?limit=3",
            Some(json!({})),
        )
        .await;
        let page: Vec<String> = first["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["container_registry_id"].as_str().unwrap().to_string())
            .collect();
        let cursor = first["next_cursor"].as_str().unwrap().to_string();
        // The entry the cursor resumes after disappears before the next page is asked for.
        let last = page.last().unwrap();
        assert_eq!(
            call(&app, "DELETE", &format!("/container_registry/{last}"), None)
                .await
                .0,
            StatusCode::OK
        );
        let mut rest = Vec::new();
        let mut next = Some(cursor);
        while let Some(c) = next {
            let (status, resp) = call(
                &app,
                "POST",
                &format!("/container_registries?limit=3&cursor={c}"),
                Some(json!({})),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{}: {resp}", s.name);
            rest.extend(
                resp["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["container_registry_id"].as_str().unwrap().to_string()),
            );
            next = resp["next_cursor"].as_str().map(str::to_string);
        }
        let all: HashSet<String> = page.iter().chain(rest.iter()).cloned().collect();
        assert_eq!(all.len(), 10, "{}: no entry skipped or repeated", s.name);
        assert_eq!(page.len() + rest.len(), 10, "{}", s.name);
    }
}

#[tokio::test]
async fn public_urls_are_refused_unless_written_plainly_and_stored_normalized() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        let with = |url: &str| json!({"container_registry_name": "x", "container_registry_public_url": url});
        for (url, words) in [
            (
                "http://registry.example.com/\r\nX-Injected: 1",
                "control character",
            ),
            ("http://registry.example.com/\tx", "control character"),
            ("http://registry.example.com/\u{0}", "control character"),
            ("http://registry.example.com/ x", "whitespace"),
            (" http://registry.example.com", "whitespace"),
            ("http:\\\\registry.example.com", "backslash"),
            ("http:/169.254.169.254", "must start with http://"),
            ("http:///169.254.169.254", "must name a host"),
        ] {
            let (status, resp) = call(&app, "POST", "/container_registry", Some(with(url))).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{}: {url:?}", s.name);
            assert_eq!(resp["code"], "invalid_entry");
            assert_eq!(resp["data"]["field"], "container_registry_public_url");
            assert!(
                resp["error"].as_str().unwrap().contains(words),
                "{url:?}: {resp}"
            );
        }
        // an update cannot sneak one in either
        call(
            &app,
            "POST",
            "/container_registry",
            Some(entry("plain", "plain")),
        )
        .await;
        let (status, _) = call(
            &app,
            "PUT",
            "/container_registry/plain",
            Some(json!({"$set": {"container_registry_public_url": "http://h/\r\nx"}})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // stored as the probe reads it
        for (url, stored) in [
            (
                "HTTP://Registry.Example.COM:80",
                "http://registry.example.com",
            ),
            ("http://2130706433:5000", "http://127.0.0.1:5000"),
            ("https://example.com/a/../v2/", "https://example.com/v2/"),
            ("http://10.13.21.22:32633", "http://10.13.21.22:32633"),
        ] {
            let (status, created) =
                call(&app, "POST", "/container_registry", Some(with(url))).await;
            assert_eq!(status, StatusCode::CREATED, "{}: {url}", s.name);
            let id = created["data"]["id"].as_str().unwrap();
            let (_, got) = call(&app, "GET", &format!("/container_registry/{id}"), None).await;
            assert_eq!(
                got["data"]["container_registry_public_url"], stored,
                "{url}"
            );
        }
    }
}

/// Growing an entry with `$push` ends in a 400 `entry_too_large`, never in a store error: first by
/// the number of values (tiny numbers, which cost more parsed and in DynamoDB than in JSON), then
/// by bytes (long strings). What is stored stays the last accepted entry, and takes updates.
#[tokio::test]
async fn growing_an_entry_past_its_limits_is_400_on_both_stores() {
    use registry_db::domain::size::{MAX_CLIENT_JSON_BYTES, MAX_VALUES};
    for s in stores().await {
        let app = app(s.store.clone(), None);
        let mut body = entry("digits", "digits");
        body["container_registry_metadata"] = json!({"n": vec![7; 9_000]});
        let (status, resp) = call(&app, "POST", "/container_registry", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{}: {resp}", s.name);
        let grow = |id: &'static str, path: &'static str, item: Value, step: usize| {
            let app = app.clone();
            async move {
                let mut pushed = 0;
                loop {
                    let (status, resp) = call(
                        &app,
                        "PUT",
                        &format!("/container_registry/{id}"),
                        Some(json!({"$push": {path: {"$each": vec![item.clone(); step]}}})),
                    )
                    .await;
                    if status != StatusCode::OK {
                        assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");
                        return (pushed, resp);
                    }
                    pushed += step;
                    assert!(pushed < 1_000_000, "never refused");
                }
            }
        };
        let (pushed, refusal) =
            grow("digits", "container_registry_metadata.n", json!(7), 100).await;
        assert_eq!(refusal["code"], "entry_too_large", "{}: {refusal}", s.name);
        assert_eq!(refusal["data"]["field"], "entry");
        let error = refusal["error"].as_str().unwrap();
        assert!(error.contains(&format!("at most {MAX_VALUES}")), "{error}");
        // The entry holds its name, url, ... and the metadata object, list and numbers.
        assert!((900..=1_000).contains(&pushed), "{}: {pushed}", s.name);
        let (status, got) = call(&app, "GET", "/container_registry/digits", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            got["data"]["container_registry_metadata"]["n"]
                .as_array()
                .unwrap()
                .len(),
            9_000 + pushed
        );
        let (status, resp) = call(
            &app,
            "PUT",
            "/container_registry/digits",
            Some(json!({"$set": {"container_registry_name": "smaller"}})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}: {}", s.name, resp["error"]);

        // Bytes: kilobyte strings, 10 at a time.
        call(
            &app,
            "POST",
            "/container_registry",
            Some(entry("strings", "strings")),
        )
        .await;
        let (pushed, refusal) = grow(
            "strings",
            "container_registry_config.blobs",
            json!("x".repeat(1000)),
            10,
        )
        .await;
        assert_eq!(refusal["code"], "entry_too_large", "{}: {refusal}", s.name);
        let error = refusal["error"].as_str().unwrap();
        assert!(error.contains("as JSON"), "{error}");
        assert!(
            error.contains(&MAX_CLIENT_JSON_BYTES.to_string()),
            "{error}"
        );
        // 1,003 bytes each (quotes, comma) against 303,075: refused at the 301st to 310th.
        assert_eq!(pushed, 300, "{}", s.name);
    }
}
