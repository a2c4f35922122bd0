//! The discovery page and the facets endpoint through the router, on both stores: facet counts,
//! the search as a plain GET form (what a browser without JavaScript does), escaping, headers,
//! paging, errors and the size budget. `web::browser` drives the same page in chromium.

use crate::support;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use registry_db::domain::catalog::MAX_FACET_TAGS;
use registry_db::domain::entry::MAX_TAGS;
use registry_db::web::{CONTENT_SECURITY_POLICY, PAGE_SIZE};
use serde_json::{Value, json};
use support::{app, call, seed_entry, stores};
use tower::ServiceExt;

async fn get(app: &Router, uri: &str) -> (StatusCode, HeaderMap, String) {
    let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

fn entry(id: &str, tags: &[&str], info: Value) -> Value {
    json!({
        "container_registry_id": id,
        "container_registry_name": format!("registry {id}"),
        "container_registry_public_url": "http://10.0.0.1:5000",
        "container_registry_tags": tags,
        "container_registry_storage_info": info,
    })
}

async fn create(app: &Router, body: Value) {
    let (status, out) = call(app, "POST", "/container_registry", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{out}");
}

/// The ids of the cards on a list page, in page order (store key order: DynamoDB's is a hash).
fn page_ids(html: &str) -> Vec<String> {
    html.split("<h3><a href=\"/registries/")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect()
}

/// The same, sorted, to compare with what a search should find.
fn card_ids(html: &str) -> Vec<String> {
    let mut ids = page_ids(html);
    ids.sort();
    ids
}

fn facet(data: &Value, facet: &str) -> Vec<(String, u64)> {
    data[facet]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["value"].as_str().unwrap().to_string(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, u64)]) -> Vec<(String, u64)> {
    v.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

#[tokio::test]
async fn facets_endpoint_counts_the_matching_entries() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        let aios_s3 = json!({"registry_type": "aios", "storage_type": "s3"});
        create(&app, entry("a", &["ai", "gpu"], aios_s3.clone())).await;
        create(&app, entry("b", &["ai"], aios_s3)).await;
        create(
            &app,
            entry(
                "c",
                &["ai", "edge"],
                json!({"registry_type": "external", "storage_type": "fs"}),
            ),
        )
        .await;
        create(&app, entry("d", &["web"], json!({}))).await;
        // A probed entry: an unreachable closed port on loopback.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut probed = entry("e", &["ai"], json!({}));
        probed["container_registry_public_url"] = json!(format!("http://127.0.0.1:{port}"));
        create(&app, probed).await;
        assert_eq!(
            call(&app, "GET", "/check_container_health/e", None).await.0,
            StatusCode::BAD_GATEWAY
        );

        let (status, body) = call(
            &app,
            "POST",
            "/container_registries/facets",
            Some(json!({"container_registry_tags": "ai"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", s.name);
        let data = &body["data"];
        assert_eq!(data["matched"], 4, "{}: {data}", s.name);
        assert_eq!(data["complete"], true);
        assert_eq!(data["tags_truncated"], false);
        assert_eq!(
            facet(data, "tags"),
            pairs(&[("ai", 4), ("edge", 1), ("gpu", 1)]),
            "{}",
            s.name
        );
        assert_eq!(
            facet(data, "registry_types"),
            pairs(&[("aios", 2), ("external", 1)])
        );
        assert_eq!(facet(data, "storage_types"), pairs(&[("s3", 2), ("fs", 1)]));
        assert_eq!(
            facet(data, "health"),
            pairs(&[("never_checked", 3), ("unreachable", 1)])
        );

        // No body: everything.
        let (_, body) = call(&app, "POST", "/container_registries/facets", None).await;
        assert_eq!(body["data"]["matched"], 5, "{}", s.name);
        assert_eq!(
            facet(&body["data"], "tags"),
            pairs(&[("ai", 4), ("edge", 1), ("gpu", 1), ("web", 1)])
        );

        // Same errors as the query.
        let (status, body) = call(
            &app,
            "POST",
            "/container_registries/facets",
            Some(json!({"$where": "1"})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "invalid_filter");
    }
}

#[tokio::test]
async fn facet_tags_stop_at_the_limit_and_say_so() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        // Entries of up to MAX_TAGS distinct tags each: exactly the limit in all.
        let all_tags: Vec<String> = (0..MAX_FACET_TAGS)
            .map(|t| format!("t{:02}-{:03}", t / MAX_TAGS, t % MAX_TAGS))
            .collect();
        for (e, tags) in all_tags.chunks(MAX_TAGS).enumerate() {
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            create(&app, entry(&format!("e{e}"), &tags, json!({}))).await;
        }
        let (_, body) = call(&app, "POST", "/container_registries/facets", None).await;
        assert_eq!(
            body["data"]["tags"].as_array().unwrap().len(),
            MAX_FACET_TAGS
        );
        assert_eq!(body["data"]["tags_truncated"], false, "{}", s.name);

        // One more distinct tag, carried twice: it is the most frequent, so it is listed, and
        // the least frequent last one is left out.
        create(&app, entry("f1", &["shared"], json!({}))).await;
        create(&app, entry("f2", &["shared"], json!({}))).await;
        let (_, body) = call(&app, "POST", "/container_registries/facets", None).await;
        let tags = body["data"]["tags"].as_array().unwrap();
        assert_eq!(tags.len(), MAX_FACET_TAGS);
        assert_eq!(body["data"]["tags_truncated"], true, "{}", s.name);
        assert_eq!(tags[0], json!({"value": "shared", "count": 2}));
        assert_eq!(
            tags[MAX_FACET_TAGS - 1]["value"].as_str(),
            Some(all_tags[MAX_FACET_TAGS - 2].as_str())
        );

        // The page lists the 30 most frequent and says so.
        let (_, _, html) = get(&app, "/").await;
        let column = html.split(r#"<aside class="facets""#).nth(1).unwrap();
        let tags_list = column.split("<h3>Registry type</h3>").next().unwrap();
        assert_eq!(tags_list.matches(r#"<a class="facet""#).count(), 30);
        assert!(tags_list.contains("the 30 most frequent"));
        assert!(
            tags_list
                .contains(r#"href="/?tag=shared"><bdi>shared</bdi> <span class="count">2</span>"#)
        );
    }
}

#[tokio::test]
async fn the_facets_route_is_in_the_openapi_document() {
    let doc = serde_json::to_value(registry_db::api::openapi()).unwrap();
    let op = &doc["paths"]["/container_registries/facets"]["post"];
    assert!(op.is_object(), "{}", doc["paths"]);
    let schema = serde_json::to_string(&doc["components"]["schemas"]["Facets"]).unwrap();
    for field in [
        "matched",
        "complete",
        "tags",
        "registry_types",
        "storage_types",
        "health",
    ] {
        assert!(schema.contains(field), "{field} in {schema}");
    }
}

#[tokio::test]
async fn the_search_form_is_a_plain_get_form_and_its_url_searches() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        create(
            &app,
            entry("g1", &["gpu", "ai"], json!({"registry_type": "aios"})),
        )
        .await;
        create(
            &app,
            entry("g2", &["gpu"], json!({"registry_type": "external"})),
        )
        .await;
        create(
            &app,
            entry("c1", &["cpu"], json!({"registry_type": "aios"})),
        )
        .await;
        let mut owned = entry("m1", &["cpu"], json!({}));
        owned["container_registry_metadata"] = json!({"owner": "mlops-team", "gpus": 7});
        owned["container_registry_name"] = json!("Internal AI Registry");
        create(&app, owned).await;

        let (status, headers, html) = get(&app, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert!(
            html.contains(r#"<form class="search" id="search" method="get" action="/""#),
            "{html}"
        );
        for name in [
            "q",
            "tag",
            "registry_type",
            "storage_type",
            "health",
            "meta_key",
            "meta_value",
        ] {
            assert!(html.contains(&format!(r#"name="{name}""#)), "field {name}");
        }
        assert_eq!(card_ids(&html), ["c1", "g1", "g2", "m1"], "{}", s.name);

        // What the browser sends when the form is submitted with only a tag typed in.
        let (_, _, html) = get(
            &app,
            "/?q=&tag=gpu&registry_type=&storage_type=&health=&meta_key=&meta_value=",
        )
        .await;
        assert_eq!(card_ids(&html), ["g1", "g2"], "{}", s.name);
        // The chosen tag stays chosen (a checked box in the form) and the facets count the result.
        assert!(html.contains(r#"<input type="checkbox" name="tag" value="gpu" checked>"#));
        assert!(
            html.contains(r#"<option value="aios">aios (1)</option>"#),
            "{html}"
        );
        assert!(html.contains(r#"<option value="external">external (1)</option>"#));

        let (_, _, html) = get(&app, "/?tag=gpu&tag=ai").await;
        assert_eq!(card_ids(&html), ["g1"]);
        let (_, _, html) = get(&app, "/?registry_type=aios").await;
        assert_eq!(card_ids(&html), ["c1", "g1"]);
        let (_, _, html) = get(&app, "/?q=ai+INTERNAL").await;
        assert_eq!(card_ids(&html), ["m1"]);
        let (_, _, html) = get(&app, "/?q=.").await;
        assert_eq!(card_ids(&html), Vec::<String>::new(), "a dot is a dot");
        let (_, _, html) = get(&app, "/?meta_key=owner&meta_value=mlops-team").await;
        assert_eq!(card_ids(&html), ["m1"]);
        let (_, _, html) = get(&app, "/?meta_key=gpus&meta_value=7").await;
        assert_eq!(card_ids(&html), ["m1"]);
        let (_, _, html) = get(&app, "/?health=never_checked&tag=cpu").await;
        assert_eq!(card_ids(&html), ["c1", "m1"]);
        let (_, _, html) = get(&app, "/?health=healthy").await;
        assert_eq!(card_ids(&html), Vec::<String>::new());
        assert!(html.contains("No registry matches this search."));

        // A facet link adds its value to the search; a chosen one's link removes it.
        let (_, _, html) = get(&app, "/?tag=gpu").await;
        assert!(
            html.contains(r#"<a class="facet" href="/?tag=gpu&#38;tag=ai"><bdi>ai</bdi> <span class="count">1</span></a>"#),
            "{html}"
        );
        assert!(html.contains(
            r#"<a class="facet on" href="/" aria-current="true"><bdi>gpu</bdi> <span class="count">2</span></a>"#
        ));
        assert!(html.contains(r#"href="/?registry_type=aios&#38;tag=gpu""#));
    }
}

#[tokio::test]
async fn a_bad_search_says_what_is_wrong_with_a_400_page() {
    let (store, _dir) = support::embedded_store();
    let app = app(store, None);
    for (uri, says) in [
        ("/?meta_key=a.b&meta_value=x", "plain key"),
        ("/?meta_key=%24where&meta_value=x", "plain key"),
        ("/?registry_type=nope", "registry type"),
        ("/?health=sick", "health must be one of"),
        ("/?cursor=forged", "cursor"),
    ] {
        let (status, headers, html) = get(&app, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert!(html.contains(r#"<p class="error" role="alert">"#), "{uri}");
        assert!(html.contains(says), "{uri}: {html}");
    }
    let (status, _, html) = get(&app, "/registries/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("no container registry with id nope"));
}

#[tokio::test]
async fn pages_follow_the_api_cursor_and_facets_count_every_page() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        let total = PAGE_SIZE + 5;
        for i in 0..total {
            create(&app, entry(&format!("p{i:03}"), &["bulk"], json!({}))).await;
        }
        create(&app, entry("other", &["lonely"], json!({}))).await;
        let mut seen = Vec::new();
        let mut uri = "/?tag=bulk".to_string();
        loop {
            let (status, _, html) = get(&app, &uri).await;
            assert_eq!(status, StatusCode::OK);
            // Every page counts the whole search, not just itself.
            assert!(
                html.contains(&format!(
                    r#"<span class="muted" id="matched">{total} registries"#
                )),
                "{}: {html}",
                s.name
            );
            seen.extend(page_ids(&html));
            match html.split(r#"<a href=""#).find_map(|a| {
                a.split_once(r#"" rel="next""#)
                    .map(|(href, _)| href.replace("&#38;", "&"))
            }) {
                Some(next) => uri = next,
                None => break,
            }
        }
        // Each entry once: no page skipped or repeated one.
        seen.sort();
        let expected: Vec<String> = (0..total).map(|i| format!("p{i:03}")).collect();
        assert_eq!(seen, expected, "{}", s.name);
    }
}

#[tokio::test]
async fn hostile_strings_are_escaped_and_only_http_links_are_made() {
    let (store, _dir) = support::embedded_store();
    let app = app(store, None);
    create(
        &app,
        json!({
            "container_registry_id": "xss",
            "container_registry_name": "<script>document.title='pwned'</script>\u{202E}gnp.exe",
            "container_registry_public_url": "http://10.0.0.1:5000",
            "container_registry_image_prefix": "\"><img src=x onerror=alert(1)>",
            "container_registry_tags": ["\"><img src=x onerror=alert(2)>", "javascript:alert(3)"],
            "container_registry_metadata": {"<b onmouseover=alert(4)>": "javascript:alert(5)"},
            "container_registry_config": {"auth_required": true, "x": "</td></tr></table><script>alert(6)</script>"},
        }),
    )
    .await;
    for uri in [
        "/",
        "/registries/xss",
        "/?tag=%22%3E%3Cimg+src%3Dx+onerror%3Dalert(2)%3E",
    ] {
        let (status, headers, html) = get(&app, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(!html.contains("<script>"), "{uri}: raw script tag");
        assert!(!html.contains("<img"), "{uri}: raw img tag");
        assert!(!html.contains("<b "), "{uri}: raw b tag");
        assert!(!html.contains("href=\"javascript"), "{uri}");
        assert!(
            !html.contains("style="),
            "{uri}: inline styles are refused by the CSP"
        );
        assert!(
            html.contains("&#60;script&#62;"),
            "{uri}: the name is shown as text"
        );
        assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        // The one script is our own file; nothing inline.
        assert_eq!(html.matches("<script").count(), 1, "{uri}");
        assert!(html.contains(r#"<script src="/assets/app.js?v="#));
    }
    let (_, _, html) = get(&app, "/registries/xss").await;
    assert!(html.contains(r#"<a href="http://10.0.0.1:5000/" rel="noopener nofollow">"#));
    assert!(
        html.contains("<bdi>&#60;script&#62;"),
        "the name is bidi-isolated"
    );
    assert!(html.contains("docker login &#34;&#62;&#60;img src=x onerror=alert(1)&#62;"));
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(CONTENT_SECURITY_POLICY.contains(directive));
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    assert!(!CONTENT_SECURITY_POLICY.contains("http"));
}

#[tokio::test]
async fn the_registry_page_shows_the_entry_and_how_to_pull() {
    let (store, _dir) = support::embedded_store();
    let app = app(store, None);
    create(&app, seed_entry()).await;
    let (status, _, html) = get(&app, "/registries/b3c38f52-8f2e-43a3-9aa9-bd9a4c75e509").await;
    assert_eq!(status, StatusCode::OK);
    for text in [
        "<h1><bdi>internal-ai-registry</bdi></h1>",
        "docker pull 10.13.21.22:32633/&#60;image&#62;:&#60;tag&#62;",
        // The seed's config says auth_required: true.
        "docker login 10.13.21.22:32633",
        // Plain HTTP: the daemon.json snippet.
        "&#34;insecure-registries&#34;: [&#34;10.13.21.22:32633&#34;]",
        "<th scope=\"row\"><bdi>owner</bdi></th><td><bdi>mlops-team</bdi></td>",
        "<th scope=\"row\"><bdi>max_layer_size_mb</bdi></th><td><bdi>500</bdi></td>",
        "<th scope=\"row\">memory_size</th><td>8192</td>",
        "<th scope=\"row\">registry_type</th><td>aios</td>",
        "Never checked.",
        r#"<form id="check-form" method="get" action="/check_container_health/b3c38f52-8f2e-43a3-9aa9-bd9a4c75e509">"#,
        r#"<a href="/?tag=fast-pull"><bdi>fast-pull</bdi></a>"#,
    ] {
        assert!(html.contains(text), "missing {text}\n{html}");
    }
}

#[tokio::test]
async fn assets_are_embedded_and_fingerprinted() {
    let (store, _dir) = support::embedded_store();
    let app = app(store, None);
    let (_, _, html) = get(&app, "/").await;
    for (name, content_type) in [
        ("style.css", "text/css; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
    ] {
        let href = html
            .split(&format!("\"/assets/{name}?v="))
            .nth(1)
            .and_then(|s| s.split('"').next())
            .map(|v| format!("/assets/{name}?v={v}"))
            .unwrap_or_else(|| panic!("{name} linked"));
        let (status, headers, body) = get(&app, &href).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], content_type);
        assert_eq!(
            headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert!(body.len() > 1000);
        let (_, headers, _) = get(&app, &format!("/assets/{name}?v=old")).await;
        assert_eq!(headers["cache-control"], "no-cache");
    }
    let (status, _, _) = get(&app, "/assets/../Cargo.toml").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&app, "/assets/secret.txt").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The budget: a full list page (every card carrying the seed's fields), its CSS and its JS
/// together stay under 60 KB, and so does the seed's registry page with them.
#[tokio::test]
async fn a_full_page_with_its_assets_stays_under_60_kb() {
    const BUDGET: usize = 60 * 1024;
    let (store, _dir) = support::embedded_store();
    let app = app(store, None);
    for i in 0..PAGE_SIZE + 1 {
        let mut e = seed_entry();
        e["container_registry_id"] = json!(format!("seed-{i:03}"));
        e["container_registry_name"] = json!(format!("internal-ai-registry-{i:03}"));
        e["container_registry_tags"] = json!([
            "ai",
            "training",
            "internal",
            "fast-pull",
            "gpu",
            "eu",
            "prod",
            "mirror",
            "x",
            "y"
        ]);
        create(&app, e).await;
    }
    create(&app, seed_entry()).await;
    let mut assets = 0;
    for a in ["style.css", "app.js"] {
        assets += get(&app, &format!("/assets/{a}")).await.2.len();
    }
    let (_, _, list) = get(&app, "/").await;
    assert_eq!(card_ids(&list).len(), PAGE_SIZE);
    // A card shows its first 8 tags and counts the rest: all 10-tag cards on the page, that is
    // every card but the seed's own (4 tags; its id sorts first).
    assert_eq!(
        list.matches(r#"<li class="more">+2 more</li>"#).count(),
        PAGE_SIZE - 1
    );
    let (_, _, one) = get(&app, "/registries/b3c38f52-8f2e-43a3-9aa9-bd9a4c75e509").await;
    println!(
        "list page {} B, registry page {} B, CSS+JS {assets} B",
        list.len(),
        one.len()
    );
    assert!(
        list.len() + assets < BUDGET,
        "list {} + assets {assets}",
        list.len()
    );
    assert!(
        one.len() + assets < BUDGET,
        "registry {} + assets {assets}",
        one.len()
    );
}

/// POST /container_registries/facets: the matched count, the tag counts and the Age header.
async fn facets_now(app: &Router) -> (u64, Vec<(String, u64)>, Option<u64>) {
    let req = Request::builder()
        .method("POST")
        .uri("/container_registries/facets")
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let age = res
        .headers()
        .get("age")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    (
        body["data"]["matched"].as_u64().unwrap(),
        facet(&body["data"], "tags"),
        age,
    )
}

fn app_with_facet_age(store: std::sync::Arc<dyn registry_db::store::Store>, secs: u64) -> Router {
    let registry =
        registry_db::domain::catalog::Catalog::new(store, support::loopback_prober(2000))
            .with_facet_max_age(std::time::Duration::from_secs(secs));
    registry_db::router::router(registry_db::state::AppState {
        catalog: registry,
        write_token: None,
        access: Default::default(),
    })
}

#[tokio::test]
async fn facet_counts_are_reused_until_a_write_through_this_instance() {
    for s in stores().await {
        // An hour: only a write may end the reuse here.
        let app = app_with_facet_age(s.store.clone(), 3600);
        create(&app, entry("a", &["ai"], json!({}))).await;
        create(&app, entry("b", &["ai", "gpu"], json!({}))).await;
        let (matched, _, age) = facets_now(&app).await;
        assert_eq!((matched, age), (2, None), "{}: counted, not reused", s.name);
        let (matched, _, age) = facets_now(&app).await;
        assert_eq!(matched, 2);
        assert!(
            age.is_some(),
            "{}: the second request reuses the count",
            s.name
        );

        // Every kind of write is seen by the very next request.
        create(&app, entry("c", &["edge"], json!({}))).await;
        let (matched, tags, age) = facets_now(&app).await;
        assert_eq!((matched, age), (3, None), "{}: after a create", s.name);
        assert_eq!(tags, pairs(&[("ai", 2), ("edge", 1), ("gpu", 1)]));
        let (status, _) = call(
            &app,
            "PUT",
            "/container_registry/c",
            Some(json!({"$set": {"container_registry_tags": ["gpu"]}})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (_, tags, _) = facets_now(&app).await;
        assert_eq!(
            tags,
            pairs(&[("ai", 2), ("gpu", 2)]),
            "{}: after an update",
            s.name
        );
        assert_eq!(
            call(&app, "DELETE", "/container_registry/a", None).await.0,
            StatusCode::OK
        );
        let (matched, tags, _) = facets_now(&app).await;
        assert_eq!(matched, 2, "{}: after a delete", s.name);
        assert_eq!(tags, pairs(&[("gpu", 2), ("ai", 1)]));

        // A health check records its verdict: the health facet follows at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (status, _) = call(
            &app,
            "PUT",
            "/container_registry/b",
            Some(json!({"$set": {"container_registry_public_url": format!("http://127.0.0.1:{port}")}})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(facets_now(&app).await.0, 2);
        assert_eq!(
            call(&app, "GET", "/check_container_health/b", None).await.0,
            StatusCode::BAD_GATEWAY
        );
        let (_, body) = call(&app, "POST", "/container_registries/facets", None).await;
        assert_eq!(
            facet(&body["data"], "health"),
            pairs(&[("never_checked", 1), ("unreachable", 1)]),
            "{}: after a health check",
            s.name
        );
    }
}

#[tokio::test]
async fn on_a_shared_store_counts_written_elsewhere_show_within_the_max_age() {
    // Two instances over one DynamoDB table, as two Lambda instances are.
    let table = support::dynamo_store_named("facets").await;
    let here = app_with_facet_age(table.store.clone(), 1);
    let elsewhere = app(table.store.clone(), None);
    create(&here, entry("a", &["ai"], json!({}))).await;
    assert_eq!(facets_now(&here).await.0, 1);
    create(&elsewhere, entry("b", &["ai"], json!({}))).await;
    // Within the max age this instance may not know yet; past it, it does.
    let (matched, _, age) = facets_now(&here).await;
    assert!(
        matched == 2 || age.is_some_and(|a| a < 1),
        "{matched} {age:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (matched, _, age) = facets_now(&here).await;
    assert_eq!((matched, age), (2, None));

    // With 0 the counts are never reused.
    let never = app_with_facet_age(table.store.clone(), 0);
    assert_eq!(facets_now(&never).await.2, None);
    assert_eq!(facets_now(&never).await.2, None);
}

/// Cards are parsed once per stored version of an entry (`web::cards`): a list page shows what
/// every write made of an entry, never a card of the bytes before it, on both stores.
#[tokio::test]
async fn the_list_shows_each_write_of_an_entry() {
    for s in stores().await {
        let app = app(s.store.clone(), None);
        let mut first = entry("w1", &["gpu"], json!({"registry_type": "aios"}));
        first["container_registry_name"] = json!("first name");
        create(&app, first).await;
        for (i, name) in ["first name", "second name", "third name"]
            .iter()
            .enumerate()
        {
            if i > 0 {
                let (status, out) = call(
                    &app,
                    "PUT",
                    "/container_registry/w1",
                    Some(json!({"container_registry_name": name, "container_registry_tags": [format!("t{i}")]})),
                )
                .await;
                assert_eq!(status, StatusCode::OK, "{out}");
            }
            // Twice: the second page is served from the kept card, if one is kept.
            for _ in 0..2 {
                let (status, _, html) = get(&app, "/").await;
                assert_eq!(status, StatusCode::OK);
                assert!(html.contains(name), "{}: {name} missing", s.name);
                let stale = ["first name", "second name", "third name"]
                    .iter()
                    .filter(|n| *n != name)
                    .find(|n| html.contains(*n));
                assert_eq!(stale, None, "{}: a card of an older write", s.name);
                let tag = if i == 0 {
                    "gpu".to_string()
                } else {
                    format!("t{i}")
                };
                assert!(
                    html.contains(&format!("<bdi>{tag}</bdi>")),
                    "{}: tag {tag}",
                    s.name
                );
            }
        }
    }
}
