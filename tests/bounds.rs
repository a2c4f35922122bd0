//! Issue 18: every request bounded in work and memory, whatever it holds (the page's links, filter
//! evaluation, updates, facets, import).

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use registry_db::domain::entry::{MAX_TAG_CHARS, MAX_TAGS};
use registry_db::web::FACET_TAGS_SHOWN;
use registry_db::web::search::MAX_SEARCH_TAGS;
use serde_json::json;
use support::{app, call};
use tower::ServiceExt;

async fn get(app: &Router, uri: &str) -> (StatusCode, String) {
    let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// Short distinct tags, as a hostile URL packs them.
fn base62(mut i: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut s = Vec::new();
    loop {
        s.push(DIGITS[i % 62]);
        i /= 62;
        if i == 0 {
            break;
        }
    }
    String::from_utf8(s).unwrap()
}

/// The page of a refused search holds none of it: this bounds it whatever the URL.
const REFUSED_PAGE_BYTES: usize = 8 * 1024;

#[tokio::test]
async fn a_url_of_thousands_of_tags_is_a_small_400_page() {
    let (store, _dir) = support::embedded_store();
    let app = app(store, None);
    // The issue's URL: 8,296 distinct tags in 65 KB built an 817 MB page.
    let uri = format!(
        "/?{}",
        (0..8296)
            .map(|i| format!("tag={}", base62(i)))
            .collect::<Vec<_>>()
            .join("&")
    );
    assert!(uri.len() > 55_000, "{}", uri.len());
    let (status, html) = get(&app, &uri).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        html.contains(&format!("at most {MAX_SEARCH_TAGS} tags")),
        "{html}"
    );
    assert!(html.len() < REFUSED_PAGE_BYTES, "{} bytes", html.len());
    // Neither the tags nor a long word are repeated back.
    assert!(!html.contains(r#"value="a1""#));
    let long = format!("/?q={}", "x".repeat(60_000));
    let (status, html) = get(&app, &long).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("at most 256 characters"), "{html}");
    assert!(html.len() < REFUSED_PAGE_BYTES, "{} bytes", html.len());
}

#[tokio::test]
async fn an_error_page_never_repeats_a_long_id() {
    let (store, _dir) = support::embedded_store();
    let app = app(store, None);
    let (status, html) = get(&app, &format!("/registries/{}", "a".repeat(50_000))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("no container registry with id aaaa"));
    assert!(html.len() < REFUSED_PAGE_BYTES, "{} bytes", html.len());
}

#[tokio::test]
async fn a_search_of_every_tag_an_entry_can_carry_links_30_tags() {
    let (store, _dir) = support::embedded_store();
    let app = app(store, None);
    // Entries carrying the most tags of the longest kind, all the same: a search of all of them
    // matches, and every facet link repeats the whole search.
    let tags: Vec<String> = (0..MAX_TAGS)
        .map(|i| format!("{i:02}{}", "t".repeat(MAX_TAG_CHARS - 2)))
        .collect();
    for i in 0..25 {
        let body = json!({
            "container_registry_id": format!("e{i:02}"),
            "container_registry_name": format!("registry {i}"),
            "container_registry_public_url": "http://10.0.0.1:5000",
            "container_registry_tags": tags,
        });
        let (status, out) = call(&app, "POST", "/container_registry", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{out}");
    }
    let query = |tags: &[String]| {
        tags.iter()
            .map(|t| format!("tag={t}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let (status, html) = get(&app, &format!("/?{}", query(&tags))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html.matches(r#"<a class="facet on""#).count(), FACET_TAGS_SHOWN);
    // Every selected tag is still in the form, as a checkbox that removes it.
    assert_eq!(html.matches(r#"<label class="chip">"#).count(), MAX_TAGS);
    // 30 tag links and 11 choice links, each about 3.4 KB here; every link a tag once made
    // (48 of them, 48 tags each) was 270 KB on its own.
    assert!(html.len() < 200 * 1024, "{} bytes", html.len());
    // One more tag is refused, with the small page.
    let mut more = tags.clone();
    more.push("one-more".into());
    let (status, html) = get(&app, &format!("/?{}", query(&more))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("at most 48 tags"), "{html}");
    assert!(html.len() < REFUSED_PAGE_BYTES, "{} bytes", html.len());
}
