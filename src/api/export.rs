//! `GET /export` on the local server: the same lines as `registry-db export`, streamed from one
//! read transaction of the running server's store, which no other process can open while it runs
//! (`registry-db export --server URL` reads it). Writes' credentials are required: an export holds
//! every field of every entry. Not routed on Lambda, whose answers stop at 6 MB.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::auth::WriteAccess;
use crate::domain::entry::export_line;
use crate::domain::store::{Exported, StoreError};

/// Entries read ahead of the connection (as `ops::export::IN_FLIGHT`).
const IN_FLIGHT: usize = 64;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/export", get(export))
}

type Reading = tokio::task::JoinHandle<Result<u64, StoreError>>;

async fn export(_: WriteAccess, State(state): State<Arc<AppState>>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Exported>(IN_FLIGHT);
    let store = state.catalog.store().clone();
    let reader = store.clone();
    let reading: Reading = tokio::spawn(async move { reader.export(tx).await });
    let stream = futures::stream::unfold(Some((rx, reading, store)), |state| async move {
        let (mut rx, reading, store) = state?;
        match rx.recv().await {
            Some(entry) => match entry.with_history(store.as_ref()).await {
                Ok(entry) => {
                    let mut line = Vec::with_capacity(1024);
                    export_line(&entry, &mut line);
                    Some((Ok(Bytes::from(line)), Some((rx, reading, store))))
                }
                Err(e) => {
                    tracing::error!(error = %e, "store failure during an export");
                    Some((Err(std::io::Error::other("the store failed")), None))
                }
            },
            // The end: a store failure breaks the body off (no final chunk), so that a client
            // never takes a cut export for a whole one.
            None => match reading.await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "store failure during an export");
                    Some((Err(std::io::Error::other("the store failed")), None))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            },
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}
