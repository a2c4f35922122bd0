//! The one `Router`, for the local server and the Lambda: the API's documented routes and
//! `/openapi.json`, the pages, the API's answers for an unknown route or method, and the request
//! log. `api` and `web` each hand over their routes on the shared [`AppState`]; only this module
//! knows both.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::routing::get;

use crate::api::{self, log};
use crate::state::AppState;
use crate::web;

/// The router, serving `/openapi.json` beside the documented routes.
pub fn router(state: AppState) -> Router {
    let (routes, doc) = api::routes().split_for_parts();
    // The document never changes: serialize it once, not on every request.
    let doc_json = serde_json::to_string(&doc).expect("the OpenAPI document serializes");
    let serve_doc = move || {
        let body = doc_json.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    };
    let routes = routes
        .route("/openapi.json", get(serve_doc))
        .merge(web::routes())
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::method_not_allowed);
    // Each route pays for a layer on every request: leave it out when it would log nothing.
    let routes = if log::wanted() {
        routes.layer(log::LogLayer)
    } else {
        routes
    };
    routes.with_state(Arc::new(state))
}

/// The local server's service: the router, with a handler's panic answered as a 500 (see
/// [`log::CatchPanic`]).
pub fn service(state: AppState) -> log::CatchPanic<Router> {
    log::CatchPanic::new(router(state))
}
