//! HTTP: one axum `Router` for the local server and for Lambda. Routes and the OpenAPI document
//! come from the same annotations (utoipa-axum), so the document cannot drift from the router.

pub mod auth;
pub mod body;
mod error;
pub mod export;
pub mod log;
mod raw;
pub mod schema;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::auth::{ClientAddr, WriteAccess};
use self::body::JsonBody;
use self::schema::*;
use crate::access::WritePolicy;
use crate::access::rate_limit::Limited;
use crate::domain::catalog::Facets;
use crate::domain::catalog::MAX_IMAGE_BATCH;
use crate::domain::catalog::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};
use crate::domain::history::{DEFAULT_ANSWER_DAYS, KEPT_DAYS};
use crate::domain::owner::{Caller, OwnerToken, principal_record};
use crate::error::AppError;
use crate::health::{ImageRef, is_probe_user_agent};
use crate::query::Filter;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "container-registry-db",
        description = "Lists OCI container registries for public discovery, queries them with a MongoDB-style filter and checks their health over the OCI distribution API.",
    ),
    modifiers(&WriteTokenScheme),
    tags((name = "entries", description = "Container registry entries"), (name = "health", description = "OCI health probes"), (name = "images", description = "Which registries serve an image")),
)]
struct ApiDoc;

struct WriteTokenScheme;

impl utoipa::Modify for WriteTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            WRITE_SECURITY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The operator's token (REGISTRY_DB_WRITE_TOKEN): every write under --writes operator, and any entry under --writes owners.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            OWNER_SECURITY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Under --writes owners: the entry's owner token (rdbo_...), answered once by the create and by each rotation. Inside Lambda behind IAM auth the calling IAM principal (SigV4) is the owner instead.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The name of the security scheme that marks an operation as a write.
pub const WRITE_SECURITY: &str = "write_token";
/// The name of the security scheme of an entry's owner token.
pub const OWNER_SECURITY: &str = "owner_token";

/// Every documented route, once: the router (`crate::router`) and the OpenAPI document are both
/// split from this.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_entry))
        .routes(routes!(get_entry, update_entry, delete_entry))
        .routes(routes!(rotate_owner_token))
        .routes(routes!(query_entries))
        .routes(routes!(query_facets))
        .routes(routes!(check_health))
        .routes(routes!(health_history))
        .routes(routes!(lookup_image))
        .routes(routes!(lookup_images))
        .routes(routes!(liveness))
        .routes(routes!(readiness))
}

/// The OpenAPI document alone (for tests and tooling).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// Create a container registry entry.
#[utoipa::path(
    post, path = "/container_registry", tag = "entries",
    request_body(content = NewContainerRegistry, description = "The entry; the seed's example JSON is accepted as it stands."),
    responses(
        (status = 201, description = "Created", body = CreatedResponse),
        (status = 400, description = "Invalid entry: says which field broke which rule", body = ErrorResponse),
        (status = 401, description = "The operator's token is required (--writes operator), or the Authorization header is malformed", body = ErrorResponse),
        (status = 409, description = "The id is taken", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
        (status = 429, description = "Too many creates from this address (code rate_limited); retry after Retry-After seconds", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, description = "Store unavailable", body = ErrorResponse),
    ),
    security((), ("write_token" = [])),
)]
async fn create_entry(
    WriteAccess(caller): WriteAccess,
    ClientAddr(client): ClientAddr,
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    state.access.limits.take(Limited::Creates, client)?;
    let body = body.ok_or_else(|| AppError::BadRequest {
        code: "invalid_json",
        message: "the request body must be a JSON object describing the registry".into(),
    })?;
    // Under `owners` every entry gets an owner: the calling IAM principal, or a new token.
    let (entry, owner_token) = match (state.policy(), &caller) {
        (WritePolicy::Owners, Caller::Principal(arn)) => (
            state
                .catalog
                .create_owned(body, Some(&principal_record(arn)))
                .await?,
            None,
        ),
        (WritePolicy::Owners, _) => {
            let token = OwnerToken::generate();
            let entry = state
                .catalog
                .create_owned(body, Some(&token.record()))
                .await?;
            (entry, Some(token.reveal()))
        }
        _ => (state.catalog.create(body).await?, None),
    };
    let location = format!("/container_registry/{}", entry.container_registry_id);
    let body = CreatedResponse {
        success: true,
        data: CreatedData {
            message: "Container registry created".into(),
            id: entry.container_registry_id,
            owner_token,
        },
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// Get one entry by id.
#[utoipa::path(
    get, path = "/container_registry/{id}", tag = "entries",
    params(("id" = String, Path, description = "container_registry_id")),
    responses(
        (status = 200, description = "The entry", body = EntryResponse),
        (status = 404, description = "No such entry", body = ErrorResponse),
        (status = 503, description = "Store unavailable", body = ErrorResponse),
    ),
)]
async fn get_entry(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    raw::entry_response(async |body| state.catalog.get_into(&id, body).await).await
}

/// Update an entry with MongoDB-style operators ($set, $unset, $addToSet, $pull, $push) or a plain
/// object of top-level fields to set. Never inserts.
#[utoipa::path(
    put, path = "/container_registry/{id}", tag = "entries",
    params(("id" = String, Path, description = "container_registry_id")),
    request_body(content = Object, description = "An update document, e.g. {\"$set\": {\"container_registry_name\": \"updated-name\"}}"),
    responses(
        (status = 200, description = "Updated", body = UpdatedResponse),
        (status = 400, description = "Invalid update, or the result is not a valid entry", body = ErrorResponse),
        (status = 401, description = "No credentials, or a malformed Authorization header", body = ErrorResponse),
        (status = 403, description = "These credentials do not own the entry (code forbidden)", body = ErrorResponse),
        (status = 404, description = "No such entry", body = ErrorResponse),
        (status = 409, description = "Concurrent writers kept winning; try again", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
        (status = 503, description = "Store unavailable", body = ErrorResponse),
    ),
    security(("owner_token" = []), ("write_token" = [])),
)]
async fn update_entry(
    WriteAccess(caller): WriteAccess,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<UpdatedResponse>, AppError> {
    let body = body.ok_or_else(|| AppError::BadRequest {
        code: "invalid_update",
        message: "the request body must be a JSON update document, e.g. {\"$set\": {\"container_registry_name\": \"new\"}}".into(),
    })?;
    let entry = state.catalog.update_by(&id, &body, &caller).await?;
    Ok(Json(UpdatedResponse {
        success: true,
        data: UpdatedData {
            message: "Container registry updated".into(),
            id: entry.container_registry_id.clone(),
            entry,
        },
    }))
}

/// Delete an entry.
#[utoipa::path(
    delete, path = "/container_registry/{id}", tag = "entries",
    params(("id" = String, Path, description = "container_registry_id")),
    responses(
        (status = 200, description = "Deleted", body = DeletedResponse),
        (status = 401, description = "No credentials, or a malformed Authorization header", body = ErrorResponse),
        (status = 403, description = "These credentials do not own the entry (code forbidden)", body = ErrorResponse),
        (status = 404, description = "No such entry", body = ErrorResponse),
        (status = 503, description = "Store unavailable", body = ErrorResponse),
    ),
    security(("owner_token" = []), ("write_token" = [])),
)]
async fn delete_entry(
    WriteAccess(caller): WriteAccess,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<DeletedResponse>, AppError> {
    state.catalog.delete_by(&id, &caller).await?;
    Ok(Json(DeletedResponse {
        success: true,
        data: DeletedData {
            message: "Container registry deleted".into(),
        },
    }))
}

/// Give an entry a new owner token; the old one stops working at once, on every instance. Of
/// concurrent rotations exactly one wins (the others answer 409).
#[utoipa::path(
    post, path = "/container_registry/{id}/owner_token", tag = "entries",
    params(("id" = String, Path, description = "container_registry_id")),
    responses(
        (status = 200, description = "The new owner token, shown this once", body = OwnerTokenResponse),
        (status = 401, description = "No credentials, or a malformed Authorization header", body = ErrorResponse),
        (status = 403, description = "These credentials do not own the entry (code forbidden)", body = ErrorResponse),
        (status = 404, description = "No such entry", body = ErrorResponse),
        (status = 409, description = "Another rotation of this entry won", body = ErrorResponse),
        (status = 503, description = "Store unavailable", body = ErrorResponse),
    ),
    security(("owner_token" = []), ("write_token" = [])),
)]
async fn rotate_owner_token(
    WriteAccess(caller): WriteAccess,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<OwnerTokenResponse>, AppError> {
    let token = state.catalog.rotate_owner(&id, &caller).await?;
    Ok(Json(OwnerTokenResponse {
        success: true,
        data: OwnerTokenData {
            owner_token: token.reveal(),
        },
    }))
}

/// Query entries with a MongoDB-style filter (the body; empty or `{}` matches everything), one page
/// at a time. Follow `next_cursor` until it is null.
#[utoipa::path(
    post, path = "/container_registries", tag = "entries",
    params(PageParams),
    request_body(content = Object, description = "A filter, e.g. {\"container_registry_tags\": {\"$in\": [\"ai\", \"internal\"]}}"),
    responses(
        (status = 200, description = "One page of matching entries", body = EntriesResponse),
        (status = 400, description = "Invalid filter (names the construct), limit or cursor", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
        (status = 503, description = "Store unavailable", body = ErrorResponse),
    ),
)]
async fn query_entries(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let params = PageParams::parse(query.as_deref())?;
    let filter = Filter::parse(&body.unwrap_or_else(|| json!({})))?;
    let page = state
        .catalog
        .query(
            &filter,
            params.limit.unwrap_or(DEFAULT_PAGE_LIMIT),
            params.cursor.as_deref(),
        )
        .await?;
    tracing::debug!(
        returned = page.entries.len(),
        scanned = page.scanned,
        index_keys = page.index_keys,
        "query page"
    );
    Ok(raw::entries_response(
        &page.entries,
        page.next_cursor.as_deref(),
    ))
}

/// Count, over every entry matching a filter (the same body as the query), how many carry each tag,
/// registry type, storage type and health status. Bounded by the same work limit as one query page:
/// `complete` is false when the count stopped early. Counts are reused until the next write
/// through this instance (on DynamoDB, for at most `--facet-cache-secs` as well); a reused answer
/// carries an `Age` header.
#[utoipa::path(
    post, path = "/container_registries/facets", tag = "entries",
    request_body(content = Object, description = "A filter, as for POST /container_registries, e.g. {\"container_registry_tags\": \"ai\"}"),
    responses(
        (status = 200, description = "Facet counts", body = FacetsResponse,
            headers(("Age" = u64, description = "Present when the counts were kept from an earlier request: seconds since they were counted"))),
        (status = 400, description = "Invalid filter (names the construct)", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
        (status = 503, description = "Store unavailable", body = ErrorResponse),
    ),
)]
async fn query_facets(
    State(state): State<Arc<AppState>>,
    JsonBody(body): JsonBody,
) -> Result<Response, AppError> {
    let filter = Filter::parse(&body.unwrap_or_else(|| json!({})))?;
    let (facets, age) = state.catalog.facets_with_age(&filter).await?;
    let body = Json(FacetsResponse {
        success: true,
        data: Facets::clone(&facets),
    });
    // Counts kept from an earlier request say how old they are, as a cached health result does.
    Ok(match age {
        Some(age) => ([(header::AGE, age.as_secs().to_string())], body).into_response(),
        None => body.into_response(),
    })
}

/// Probe the registry's OCI API (`{public_url}/v2/`) and record the result on the entry. Within the
/// cooldown of the entry's last probe (30 s by default) the stored result is answered instead, with
/// an `Age` header; concurrent checks of one entry share one probe.
#[utoipa::path(
    get, path = "/check_container_health/{id}", tag = "health",
    params(("id" = String, Path, description = "container_registry_id")),
    responses(
        (status = 200, description = "An OCI registry answered (healthy, or healthy and asking for credentials)", body = HealthResponse,
            headers(("Age" = u64, description = "Present when the stored result was answered without probing: seconds since its checked_at"))),
        (status = 403, description = "The request comes from a registry-db health probe (code probe_loop): a probe never triggers another probe", body = ErrorResponse),
        (status = 404, description = "No such entry", body = ErrorResponse),
        (status = 429, description = "Too many checks from this address (code rate_limited), or every probe slot stayed busy (code too_many_probes); retry after Retry-After seconds", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 502, description = "Unreachable, refused by the probe policy, or not a registry API; the probe result is in data", body = ErrorResponse,
            headers(("Age" = u64, description = "Present when the stored result was answered without probing: seconds since its checked_at"))),
        (status = 503, description = "Store unavailable", body = ErrorResponse),
    ),
)]
async fn check_health(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    // A probe that was sent here (by a redirect, or a listed URL that points at this service) is
    // refused before anything else, so one request can never fan out into probes of probes.
    if headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_probe_user_agent)
    {
        return Err(AppError::Forbidden {
            code: "probe_loop",
            message: "this request comes from a registry-db health probe; a health probe never triggers another health check".into(),
        });
    }
    state.access.limits.take(Limited::Checks, client)?;
    let check = state.catalog.check_health(&id).await?;
    let mut response = if check.result.answered() {
        Json(HealthResponse {
            success: true,
            data: check.result,
        })
        .into_response()
    } else {
        AppError::Unhealthy(Box::new(check.result)).into_response()
    };
    if let Some(age) = check.cached_age {
        response
            .headers_mut()
            .insert(header::AGE, HeaderValue::from(age.as_secs()));
    }
    Ok(response)
}

/// The entry's health over time: uptime over the last 7, 30 and 90 days (the share of probes that
/// found a registry, healthy or auth_required; null without probes) and, per UTC day of the last
/// `days`, the probes of each verdict and their latency (p50/p95, the upper bound of the histogram
/// bucket holding that rank). Days without probes are listed with `probes: 0`.
#[utoipa::path(
    get, path = "/container_registry/{id}/health/history", tag = "health",
    params(("id" = String, Path, description = "container_registry_id"), HistoryParams),
    responses(
        (status = 200, description = "The history, days in date order", body = HistoryResponse),
        (status = 400, description = "days is not a whole number from 1 to 90 (code invalid_days)", body = ErrorResponse),
        (status = 404, description = "No such entry", body = ErrorResponse),
        (status = 503, description = "Store unavailable", body = ErrorResponse),
    ),
)]
async fn health_history(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<HistoryResponse>, AppError> {
    let params = HistoryParams::parse(query.as_deref())?;
    let history = state
        .catalog
        .history(&id, params.days.unwrap_or(DEFAULT_ANSWER_DAYS))
        .await?;
    Ok(Json(HistoryResponse {
        success: true,
        data: history,
    }))
}

/// `?days=N` of the history endpoint.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Days to list, 1 to 90 (default 30), today (UTC) the last.
    #[param(minimum = 1, maximum = 90)]
    pub days: Option<u32>,
}

impl HistoryParams {
    fn parse(query: Option<&str>) -> Result<HistoryParams, AppError> {
        let mut params = HistoryParams::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if key == "days" {
                match value.parse::<u32>() {
                    Ok(n) if (1..=KEPT_DAYS).contains(&n) => params.days = Some(n),
                    _ => {
                        let mut shown: String = value.chars().take(40).collect();
                        if shown.len() < value.len() {
                            shown.push('…');
                        }
                        return Err(AppError::BadRequest {
                            code: "invalid_days",
                            message: format!(
                                "days must be a whole number from 1 to {KEPT_DAYS}, not {shown:?}"
                            ),
                        });
                    }
                }
            }
        }
        Ok(params)
    }
}

/// Whether the entry's registry serves an image: a `HEAD` of its manifest (a `GET` of the index
/// with `platforms=true`), anonymously, through the token flow when the registry asks for one.
/// Answers are kept for the probe cooldown per entry and reference (with an `Age` header), share
/// the probe slots with health checks and are rate limited like them.
#[utoipa::path(
    get, path = "/container_registry/{id}/image", tag = "images",
    params(
        ("id" = String, Path, description = "container_registry_id"),
        ("ref" = String, Query, description = "NAME:TAG or NAME@sha256:<64 hex digits>, under the entry's image prefix (NAME alone means NAME:latest)"),
        ("platforms" = Option<bool>, Query, description = "Read the index and list its platforms"),
    ),
    responses(
        (status = 200, description = "Found, or the registry wants credentials (status credentials_required)", body = ImageResponse,
            headers(("Age" = u64, description = "Present when a kept answer was given: seconds since it was asked"))),
        (status = 400, description = "The reference is not one (code invalid_reference, naming the part), or platforms is not true or false", body = ErrorResponse),
        (status = 403, description = "The request comes from a registry-db probe (code probe_loop)", body = ErrorResponse),
        (status = 404, description = "No such entry (code not_found), or the registry has no such image (code image_not_found, the lookup in data)", body = ErrorResponse),
        (status = 429, description = "Too many lookups from this address (code rate_limited), or every probe slot stayed busy (code too_many_probes)", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 502, description = "Unreachable, refused by a probe rule, or not a registry's answer; the lookup is in data", body = ErrorResponse),
        (status = 503, description = "Store unavailable", body = ErrorResponse),
    ),
)]
async fn lookup_image(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    refuse_probe_loop(&headers)?;
    let mut reference = None;
    let mut platforms = false;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "ref" => reference = Some(value.into_owned()),
            "platforms" => platforms = parse_bool("platforms", &value)?,
            _ => {}
        }
    }
    let reference = reference.ok_or_else(|| AppError::BadRequest {
        code: "invalid_reference",
        message: "give the image as ?ref=NAME:TAG or ?ref=NAME@sha256:<64 hex digits>".into(),
    })?;
    let image = parse_reference(&reference)?;
    state.access.limits.take(Limited::Checks, client)?;
    let check = state.catalog.lookup_image(&id, &image, platforms).await?;
    let mut response = if check.lookup.answered() {
        Json(ImageResponse {
            success: true,
            data: check.lookup,
        })
        .into_response()
    } else {
        AppError::Image(Box::new(check.lookup)).into_response()
    };
    if let Some(age) = check.cached_age {
        response
            .headers_mut()
            .insert(header::AGE, HeaderValue::from(age.as_secs()));
    }
    Ok(response)
}

/// Which of the registries matching a filter serve an image, and with which digest (mirrors show
/// the same digest): the lookup of `GET /container_registry/{id}/image` on each registry of one
/// page of the filter, at most 20 (`limit`), all at once. Follow `next_cursor` for more. One
/// request counts once against the check rate limit.
#[utoipa::path(
    post, path = "/container_registries/images", tag = "images",
    params(
        ("limit" = Option<usize>, Query, description = "Registries asked, 1 to 20 (default 20)", minimum = 1, maximum = 20),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    request_body(content = ImagesRequest),
    responses(
        (status = 200, description = "Each matching registry's answer", body = ImagesResponse),
        (status = 400, description = "Invalid body, reference (code invalid_reference), filter, limit or cursor", body = ErrorResponse),
        (status = 403, description = "The request comes from a registry-db probe (code probe_loop)", body = ErrorResponse),
        (status = 413, description = "Body too large", body = ErrorResponse),
        (status = 429, description = "Too many lookups from this address (code rate_limited), or every probe slot stayed busy (code too_many_probes)", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, description = "Store unavailable", body = ErrorResponse),
    ),
)]
async fn lookup_images(
    State(state): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Json<ImagesResponse>, AppError> {
    refuse_probe_loop(&headers)?;
    let mut limit = MAX_IMAGE_BATCH;
    let mut cursor = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_IMAGE_BATCH).contains(&n) => limit = n,
                _ => {
                    return Err(AppError::BadRequest {
                        code: "invalid_limit",
                        message: format!(
                            "limit must be a whole number from 1 to {MAX_IMAGE_BATCH} (registries asked per request), not {value:?}"
                        ),
                    });
                }
            },
            "cursor" if !value.is_empty() => cursor = Some(value.into_owned()),
            _ => {}
        }
    }
    let bad = |message: String| AppError::BadRequest {
        code: "invalid_body",
        message,
    };
    let serde_json::Value::Object(mut body) = body.unwrap_or_default() else {
        return Err(bad(
            "the body must be a JSON object: {\"image\": \"NAME:TAG\", \"filter\": {...}}".into(),
        ));
    };
    let image = match body.remove("image") {
        Some(serde_json::Value::String(s)) => parse_reference(&s)?,
        _ => {
            return Err(AppError::BadRequest {
                code: "invalid_reference",
                message: "\"image\" must be a string: NAME:TAG or NAME@sha256:<64 hex digits>"
                    .into(),
            });
        }
    };
    let filter = Filter::parse(&body.remove("filter").unwrap_or_else(|| json!({})))?;
    let platforms = match body.remove("platforms") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(_) => return Err(bad("\"platforms\" must be true or false".into())),
    };
    if let Some(key) = body.keys().next() {
        return Err(bad(format!(
            "unknown field {:?}: the body holds \"image\", \"filter\" and \"platforms\"",
            crate::health::limits::cap(key, 64)
        )));
    }
    state.access.limits.take(Limited::Checks, client)?;
    let (items, next_cursor) = state
        .catalog
        .lookup_images(&filter, &image, platforms, limit, cursor.as_deref())
        .await?;
    Ok(Json(ImagesResponse {
        success: true,
        data: items
            .into_iter()
            .map(|i| ImageItem {
                container_registry_id: i.id,
                container_registry_name: i.name,
                lookup: i.lookup,
            })
            .collect(),
        next_cursor,
    }))
}

fn parse_reference(text: &str) -> Result<ImageRef, AppError> {
    ImageRef::parse(text).map_err(|e| AppError::BadRequest {
        code: "invalid_reference",
        message: e.0,
    })
}

fn parse_bool(name: &str, value: &str) -> Result<bool, AppError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(AppError::BadRequest {
            code: "invalid_parameter",
            message: format!(
                "{name} must be true or false, not {:?}",
                crate::health::limits::cap(value, 64)
            ),
        }),
    }
}

/// A request sent by a probe of this service is never served by one that probes again.
fn refuse_probe_loop(headers: &HeaderMap) -> Result<(), AppError> {
    if headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_probe_user_agent)
    {
        return Err(AppError::Forbidden {
            code: "probe_loop",
            message:
                "this request comes from a registry-db probe; a probe never triggers another probe"
                    .into(),
        });
    }
    Ok(())
}

/// Liveness of the service itself (does not touch the store).
#[utoipa::path(
    get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The service is up", body = LivenessResponse)),
)]
async fn liveness() -> Json<LivenessResponse> {
    Json(LivenessResponse {
        success: true,
        data: LivenessData {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
    })
}

/// Seconds a client (Kubernetes, a load balancer) is asked to wait before asking again when the
/// store is unreachable.
pub const READY_RETRY_AFTER_SECS: u64 = 5;

/// Readiness: whether the store answers a read (within 2 s). For Kubernetes' readiness probe and a
/// load balancer's health check; `/healthz` stays liveness.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "The store answers", body = LivenessResponse),
        (status = 503, description = "The store is unreachable (`code: store_unavailable`, with `Retry-After`)", body = ErrorResponse),
    ),
)]
async fn readiness(State(state): State<Arc<AppState>>) -> Response {
    match state.catalog.ready().await {
        Ok(()) => Json(LivenessResponse {
            success: true,
            data: LivenessData {
                status: "ready".into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
        })
        .into_response(),
        Err(e) => {
            let mut response = e.into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(READY_RETRY_AFTER_SECS),
            );
            response
        }
    }
}

/// `?limit=N&cursor=C` of the query endpoint.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Entries per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    fn parse(query: Option<&str>) -> Result<PageParams, AppError> {
        let mut params = PageParams::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "limit" => match value.parse::<usize>() {
                    Ok(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => params.limit = Some(n),
                    _ => {
                        return Err(AppError::BadRequest {
                            code: "invalid_limit",
                            message: format!(
                                "limit must be a whole number from 1 to {MAX_PAGE_LIMIT}, not {value:?}"
                            ),
                        });
                    }
                },
                "cursor" if !value.is_empty() => params.cursor = Some(value.into_owned()),
                _ => {}
            }
        }
        Ok(params)
    }
}

/// The answer to a path no route serves, pages included.
pub async fn no_route(uri: Uri) -> AppError {
    AppError::NoRoute(uri.path().to_string())
}

/// The answer to a method a route does not serve.
pub async fn method_not_allowed(method: Method, uri: Uri) -> AppError {
    AppError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}
