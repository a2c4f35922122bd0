//! Responses assembled from stored JSON text: the envelope is written around the entries' bytes as
//! the store holds them, so a GET or a query page never decodes and re-encodes an entry. The shapes
//! are `EntryResponse` and `EntriesResponse` of the OpenAPI document (`schema.rs`), which
//! schemathesis checks every response against.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};

use crate::domain::store::StoredEntry;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

fn json_response(body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(header::CONTENT_TYPE, JSON);
    response
}

/// Room reserved for a GET's answer: entries are about a kilobyte (the buffer grows for larger).
const ENTRY_ROOM: usize = 2048;

/// `{"success":true,"data":<entry>}`, the entry written in by `write` (which appends its JSON).
pub async fn entry_response<E>(
    write: impl AsyncFnOnce(&mut BytesMut) -> Result<(), E>,
) -> Result<Response, E> {
    let mut body = BytesMut::with_capacity(ENTRY_ROOM);
    body.put_slice(br#"{"success":true,"data":"#);
    write(&mut body).await?;
    body.put_u8(b'}');
    Ok(json_response(body.freeze()))
}

/// `{"success":true,"data":[<entries>],"next_cursor":<cursor or null>}`
pub fn entries_response(entries: &[StoredEntry], next_cursor: Option<&str>) -> Response {
    let size: usize = entries.iter().map(|e| e.json.len() + 1).sum();
    let mut body = BytesMut::with_capacity(size + 128);
    body.put_slice(br#"{"success":true,"data":["#);
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            body.put_u8(b',');
        }
        body.put_slice(&entry.json);
    }
    body.put_slice(br#"],"next_cursor":"#);
    match next_cursor {
        // Cursors are base64url: nothing in them needs escaping, but encode them as JSON anyway.
        Some(c) => body.put_slice(serde_json::to_string(c).unwrap_or_default().as_bytes()),
        None => body.put_slice(b"null"),
    }
    body.put_u8(b'}');
    json_response(body.freeze())
}
