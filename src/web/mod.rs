//! The discovery page: server-rendered HTML (askama templates compiled into the binary) and its two
//! assets, served by the same router as the API, so it works under `registry-db serve` and on
//! Lambda alike. Reads go through the domain (`Catalog`) only.
//!
//! - `GET /`: browse and search; the URL carries the search (`search.rs`), forms use GET, pages
//!   follow the API's cursor. Facet counts beside the results.
//! - `GET /registries/{id}`: one entry, its last health result, a "check now" button (the existing
//!   `GET /check_container_health/{id}`), and the commands to pull from it.
//! - `GET /assets/{file}`: `style.css` and `app.js`, embedded with `include_str!`.
//!
//! Safety: every `{{ }}` in the templates is HTML-escaped by askama; user strings sit in `<bdi>` so
//! a right-to-left override cannot reorder the text around them; the only links built from entries
//! are http(s) URLs with `rel="noopener nofollow"`; every response carries a CSP that allows
//! scripts, styles and fetches from this origin only, and no inline script or style at all.

mod cards;
pub mod search;
pub mod view;

use std::sync::Arc;

use askama::Template;

use crate::domain::history::{History, KEPT_DAYS};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use tower_http::set_header::SetResponseHeaderLayer;

use self::cards::{CardData, CardMemo};
use self::search::{
    HEALTH_VALUES, REGISTRY_TYPES, STORAGE_TYPES, Search, health_label, registry_type_str,
    storage_type_str,
};
use self::view::{Badge, Card, Row};
use crate::domain::catalog::Page;
use crate::domain::catalog::{FacetCount, FacetCounter, Facets};
use crate::domain::entry::ContainerRegistry;
use crate::domain::store::StoredEntry;
use crate::error::AppError;
use crate::state::AppState;

/// Registries per page of the list.
pub const PAGE_SIZE: usize = 20;
/// Most tags listed in the facet column (the selected ones, then the most frequent; the JSON
/// endpoint has more). Each is a link that repeats the search, so this also bounds the page.
pub const FACET_TAGS_SHOWN: usize = 30;
/// Longest error message a page shows, in characters: messages may quote what was asked for.
pub const MAX_ERROR_CHARS: usize = 300;

/// The page's routes, for the router and for `template.yaml`'s route check.
pub const ROUTES: [(&str, &str); 3] = [
    ("GET", "/"),
    ("GET", "/registries/{id}"),
    ("GET", "/assets/{file}"),
];

const CSS: &str = include_str!("assets/style.css");
const JS: &str = include_str!("assets/app.js");

/// FNV-1a of an asset, at compile time: its URL changes whenever its content does, so it can be
/// cached for good.
const fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}
const CSS_VERSION: u64 = fingerprint(CSS.as_bytes());
const JS_VERSION: u64 = fingerprint(JS.as_bytes());

/// No script, style, image or connection from anywhere but this origin; no inline script or style;
/// no framing; forms only submit here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The headers every page and asset carries (see [`CONTENT_SECURITY_POLICY`]).
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
];

pub fn routes() -> Router<Arc<AppState>> {
    let router = Router::new()
        .route(ROUTES[0].1, {
            let memo = Arc::new(CardMemo::default());
            get(move |state, query| list_page(state, query, memo))
        })
        .route(ROUTES[1].1, get(registry_page))
        .route(ROUTES[2].1, get(asset));
    // Plain tower layers: no boxing of the service or its future per request.
    SECURITY_HEADERS
        .into_iter()
        .fold(router, |router, (name, value)| {
            router.layer(SetResponseHeaderLayer::overriding(
                name,
                HeaderValue::from_static(value),
            ))
        })
}

async fn asset(Path(file): Path<String>, RawQuery(query): RawQuery) -> Response {
    let (body, content_type, version) = match file.as_str() {
        "style.css" => (CSS, "text/css; charset=utf-8", CSS_VERSION),
        "app.js" => (JS, "text/javascript; charset=utf-8", JS_VERSION),
        _ => return page_error(AppError::NoRoute(format!("/assets/{file}"))),
    };
    // Fingerprinted URLs (what the pages link) never change content; others are revalidated.
    let cache = if query.as_deref() == Some(&format!("v={version:x}")) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

/// The one place an entry of a query page is read: the store hands out its JSON text.
fn page_entry(entry: StoredEntry) -> Result<ContainerRegistry, AppError> {
    Ok(entry.entry()?)
}

/// What every page's layout needs.
pub struct Layout {
    pub css_href: String,
    pub js_href: String,
}

impl Layout {
    fn new() -> Layout {
        Layout {
            css_href: format!("/assets/style.css?v={CSS_VERSION:x}"),
            js_href: format!("/assets/app.js?v={JS_VERSION:x}"),
        }
    }
}

/// One choice of a select, with its facet count.
pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub count: u64,
    pub selected: bool,
    /// The search with this value chosen, or with the choice cleared when it is already chosen.
    pub href: String,
}

fn choice(
    search: &Search,
    key: &'static str,
    value: &'static str,
    label: &'static str,
    counts: &[FacetCount],
) -> Choice {
    let (href, selected) = search.href_choosing(key, value);
    Choice {
        value,
        label,
        count: count_of(counts, value),
        selected,
        href,
    }
}

/// One tag of the facet column: a link that adds it to the search or removes it.
pub struct TagFacet {
    pub value: String,
    pub count: u64,
    pub selected: bool,
    pub href: String,
}

#[derive(Template)]
#[template(path = "list.html")]
pub struct ListPage<'a> {
    pub layout: Layout,
    pub search: Search,
    pub error: String,
    pub cards: Vec<Card<'a>>,
    pub facets: Arc<Facets>,
    pub tag_facets: Vec<TagFacet>,
    pub registry_types: Vec<Choice>,
    pub storage_types: Vec<Choice>,
    pub health: Vec<Choice>,
    pub next_href: String,
    pub first_href: String,
    pub clear_href: String,
}

fn count_of(counts: &[FacetCount], value: &str) -> u64 {
    counts
        .iter()
        .find(|c| c.value == value)
        .map_or(0, |c| c.count)
}

impl<'a> ListPage<'a> {
    fn new(search: Search, error: String, cards: Vec<Card<'a>>, facets: Arc<Facets>) -> Self {
        let tag_facets = search
            .tags
            .iter()
            .filter(|t| !facets.tags.iter().any(|c| &c.value == *t))
            .map(|t| (t.clone(), 0))
            .chain(facets.tags.iter().map(|c| (c.value.clone(), c.count)))
            .take(FACET_TAGS_SHOWN)
            .map(|(value, count)| TagFacet {
                selected: search.tags.contains(&value),
                href: search.href_toggling_tag(&value),
                value,
                count,
            })
            .collect();
        let registry_types = REGISTRY_TYPES
            .iter()
            .map(|t| {
                let v = registry_type_str(*t);
                choice(&search, "registry_type", v, v, &facets.registry_types)
            })
            .collect();
        let storage_types = STORAGE_TYPES
            .iter()
            .map(|t| {
                let v = storage_type_str(*t);
                choice(&search, "storage_type", v, v, &facets.storage_types)
            })
            .collect();
        let health = HEALTH_VALUES
            .iter()
            .map(|(v, label)| choice(&search, "health", v, label, &facets.health))
            .collect();
        ListPage {
            layout: Layout::new(),
            clear_href: "/".into(),
            first_href: if search.cursor.is_some() {
                search.without_cursor().href()
            } else {
                String::new()
            },
            search,
            error,
            cards,
            facets,
            tag_facets,
            registry_types,
            storage_types,
            health,
            next_href: String::new(),
        }
    }
}

async fn list_page(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    memo: Arc<CardMemo>,
) -> Response {
    let search = Search::from_query(query.as_deref());
    let fetched = match fetch(&state, &search).await {
        Ok((page, facets)) => memo.cards(&page.entries).map(|cards| (page, facets, cards)),
        Err(e) => Err(e),
    };
    match fetched {
        Ok((page, facets, cards)) => render(StatusCode::OK, &build(&search, &page, facets, &cards)),
        Err(e) => {
            let status = e.status();
            let page = ListPage::new(search, error_text(&e), Vec::new(), Arc::default());
            render(status, &page)
        }
    }
}

/// The page of entries a search shows, and its facets when they cannot be counted from that page
/// alone (`None`: the page holds every match).
async fn fetch(state: &AppState, search: &Search) -> Result<(Page, Option<Arc<Facets>>), AppError> {
    let filter = search.filter()?;
    let catalog = &state.catalog;
    let query = catalog.query(&filter, PAGE_SIZE, search.cursor.as_deref());
    if search.cursor.is_some() {
        // A later page cannot hold every match: count them alongside.
        let (page, facets) = tokio::join!(query, catalog.facets(&filter));
        return Ok((page?, Some(facets?)));
    }
    let page = query.await?;
    let facets = match page.next_cursor {
        Some(_) => Some(catalog.facets(&filter).await?),
        None => None,
    };
    Ok((page, facets))
}

/// The list page of `page`, whose entries' cards are `cards`.
fn build<'a>(
    search: &Search,
    page: &Page,
    facets: Option<Arc<Facets>>,
    cards: &'a [Arc<CardData>],
) -> ListPage<'a> {
    // The first page holds every match: count them from it rather than reading them again.
    let facets = facets.unwrap_or_else(|| {
        let mut counter = FacetCounter::default();
        for c in cards {
            counter.add_parts(
                &c.tags,
                c.storage.registry_type,
                c.storage.storage_type,
                c.health.as_ref().map(|h| h.status),
            );
        }
        Arc::new(counter.finish(page.scanned as u64, true))
    });
    let now = Utc::now();
    let cards = cards.iter().map(|c| Card::new(c, now)).collect();
    let mut out = ListPage::new(search.clone(), String::new(), cards, facets);
    if let Some(cursor) = &page.next_cursor {
        let qs = search.query_string();
        let cursor = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("cursor", cursor)
            .finish();
        out.next_href = if qs.is_empty() {
            format!("/?{cursor}")
        } else {
            format!("/?{qs}&{cursor}")
        };
    }
    out
}

#[derive(Template)]
#[template(path = "registry.html")]
pub struct RegistryPage {
    pub layout: Layout,
    pub id: String,
    pub name: String,
    pub tags: Vec<(String, String)>,
    pub public_url: String,
    pub link: Option<String>,
    pub image_prefix: String,
    pub metadata: Vec<Row>,
    pub config: Vec<Row>,
    pub storage: Vec<Row>,
    pub created_at: String,
    pub updated_at: String,
    pub version: u64,
    pub badge: Badge,
    pub health: Vec<Row>,
    pub pull: String,
    pub login: Option<String>,
    pub insecure: Option<String>,
    /// Whether someone other than the operator owns the listing (never who, never a token).
    pub owned: bool,
    /// Uptime and latency over 7, 30 and 90 days.
    pub uptime: Vec<UptimeRow>,
    /// The 90-day bar, oldest day first; empty when the history could not be read.
    pub days: Vec<DayMark>,
    /// The bar's text alternative: what its colours say, in words.
    pub bar_label: String,
}

/// One window of the uptime table.
pub struct UptimeRow {
    pub window: &'static str,
    pub uptime: String,
    pub p50: String,
    pub p95: String,
}

/// One day of the 90-day bar: its colour class (by the share of probes that found a registry)
/// and its tooltip.
pub struct DayMark {
    pub class: &'static str,
    pub title: String,
}

/// A percentile as the histogram knows it: at most the bound of its bucket.
fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("≤ {v} ms"))
}

/// The registry page's view of a history: the uptime table, the bar and its text alternative.
fn history_view(h: &History) -> (Vec<UptimeRow>, Vec<DayMark>, String) {
    let windows = ["7 days", "30 days", "90 days"];
    let uptimes = [h.uptime.d7, h.uptime.d30, h.uptime.d90];
    let rows = (0..3)
        .map(|i| UptimeRow {
            window: windows[i],
            uptime: uptimes[i].map_or_else(|| "no probes".into(), view::percent),
            p50: ms(h.latency[i].p50),
            p95: ms(h.latency[i].p95),
        })
        .collect();
    let (mut up, mut partly, mut down, mut none) = (0, 0, 0, 0);
    let marks = h
        .days
        .iter()
        .map(|d| {
            let upped = d.healthy + d.auth_required;
            let (class, title) = if d.probes == 0 {
                none += 1;
                ("d-none", format!("{}: no probes", d.date))
            } else {
                let share = upped as f64 / d.probes as f64;
                let class = match share {
                    s if s >= 1.0 => "d-up",
                    s if s >= 0.9 => "d-most",
                    s if s >= 0.5 => "d-half",
                    s if s > 0.0 => "d-low",
                    _ => "d-down",
                };
                match class {
                    "d-up" => up += 1,
                    "d-down" => down += 1,
                    _ => partly += 1,
                }
                let mut title = format!(
                    "{}: {} up of {} probes ({})",
                    d.date,
                    upped,
                    d.probes,
                    view::percent(share)
                );
                if let Some(p50) = d.latency_ms.p50 {
                    title.push_str(&format!(", p50 {p50} ms"));
                }
                (class, title)
            };
            DayMark { class, title }
        })
        .collect();
    let label = format!(
        "Health over the last {} days: {up} days fully up, {partly} partly up, {down} down, {none} without probes; uptime {} over 90 days.",
        h.days.len(),
        h.uptime.d90.map_or_else(|| "unknown".into(), view::percent),
    );
    (rows, marks, label)
}

impl RegistryPage {
    fn new(e: ContainerRegistry, owned: bool, history: Option<&History>) -> RegistryPage {
        let (uptime, days, bar_label) = match history {
            Some(h) => history_view(h),
            None => (Vec::new(), Vec::new(), String::new()),
        };
        let now = Utc::now();
        let prefix = e.container_registry_image_prefix.clone();
        let host = view::registry_host(&prefix).to_string();
        let storage_json = serde_json::to_value(&e.container_registry_storage_info)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default();
        let health = match &e.container_registry_health {
            None => Vec::new(),
            Some(h) => health_rows(h),
        };
        RegistryPage {
            layout: Layout::new(),
            tags: e
                .container_registry_tags
                .iter()
                .map(|t| {
                    let s = Search {
                        tags: vec![t.clone()],
                        ..Search::default()
                    };
                    (t.clone(), s.href())
                })
                .collect(),
            link: view::safe_link(&e.container_registry_public_url),
            login: view::wants_credentials(&e).then(|| format!("docker login {host}")),
            insecure: view::is_plain_http(&e.container_registry_public_url)
                .then(|| format!("{{\n  \"insecure-registries\": [\"{host}\"]\n}}")),
            pull: format!("docker pull {prefix}/<image>:<tag>"),
            image_prefix: prefix,
            metadata: view::rows(&e.container_registry_metadata),
            config: view::rows(&e.container_registry_config),
            storage: view::rows(&storage_json),
            badge: view::probe_badge(e.container_registry_health.as_ref(), now),
            health,
            id: e.container_registry_id,
            name: e.container_registry_name,
            public_url: e.container_registry_public_url,
            created_at: e.container_registry_created_at,
            updated_at: e.container_registry_updated_at,
            version: e.container_registry_version,
            owned,
            uptime,
            days,
            bar_label,
        }
    }
}

/// The last probe result as rows, in the order a person reads it; absent fields are left out.
fn health_rows(h: &crate::health::ProbeResult) -> Vec<Row> {
    let mut rows = vec![
        ("verdict", health_label(h.status.as_str()).to_string()),
        ("checked at", h.checked_at.clone()),
        ("URL probed", h.url.clone()),
    ];
    let opt = [
        ("HTTP status", h.status_code.map(|c| c.to_string())),
        ("reason", h.reason.clone()),
        ("latency", h.latency_ms.map(|ms| format!("{ms} ms"))),
        ("API version", h.api_version.clone()),
        (
            "auth challenge",
            h.challenge.as_ref().map(|c| {
                let mut s = c.scheme.clone();
                for (k, v) in [("realm", &c.realm), ("service", &c.service)] {
                    if let Some(v) = v {
                        s.push_str(&format!(" {k}={v}"));
                    }
                }
                s
            }),
        ),
        ("error", h.error.clone()),
        ("refused by", h.refused_by.clone()),
    ];
    rows.extend(opt.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    rows.into_iter()
        .map(|(key, value)| Row {
            key: key.into(),
            value,
        })
        .collect()
}

async fn registry_page(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.catalog.get(&id).await {
        Ok(entry) => match page_entry(entry) {
            Ok(entry) => match state.catalog.has_owner(&id).await {
                Ok(owned) => {
                    // The page still shows the entry when its history cannot be read.
                    let history = match state.catalog.history(&id, KEPT_DAYS).await {
                        Ok(h) => Some(h),
                        Err(e) => {
                            tracing::warn!(entry = %id, error = %e, "health history not read");
                            None
                        }
                    };
                    render(
                        StatusCode::OK,
                        &RegistryPage::new(entry, owned, history.as_ref()),
                    )
                }
                Err(e) => page_error(e),
            },
            Err(e) => page_error(e),
        },
        Err(e) => page_error(e),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub layout: Layout,
    pub title: String,
    pub message: String,
}

fn page_error(e: AppError) -> Response {
    let status = e.status();
    let title = match status {
        StatusCode::NOT_FOUND => "Not found".to_string(),
        s => s.canonical_reason().unwrap_or("Error").to_string(),
    };
    if status.is_server_error() {
        tracing::error!(error = %e, "page failed");
    }
    render(
        status,
        &ErrorPage {
            layout: Layout::new(),
            title,
            message: error_text(&e),
        },
    )
}

/// The error's sentence, cut at [`MAX_ERROR_CHARS`] (an id in a path, say, can be as long as the
/// request line).
fn error_text(e: &AppError) -> String {
    let mut text = e.to_string();
    if let Some((i, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
        text.truncate(i);
        text.push_str("...");
    }
    text
}

/// Bytes reserved for a rendered page.
const PAGE_BUFFER: usize = 24 * 1024;

fn render(status: StatusCode, page: &impl Template) -> Response {
    // Room for a whole list page (about 17 KB with 20 cards) up front: growing the buffer as
    // askama writes copied the page over several times.
    let mut html = String::with_capacity(PAGE_BUFFER);
    match page.render_into(&mut html).map(|()| html) {
        Ok(html) => (status, [(header::CACHE_CONTROL, "no-cache")], Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}
