//! Request bodies: JSON parsed by hand so that every failure (too large, not JSON) comes back in the
//! envelope with words, and so that clients that omit `Content-Type` (curl `-d`) still work.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::Value;

use crate::error::AppError;

/// Largest request body accepted; larger ones are 413. Entries themselves are capped lower
/// (`domain::entry::MAX_ENTRY_BYTES`), so every entry fits a DynamoDB item.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A JSON request body; `None` when the body is empty.
pub struct JsonBody(pub Option<Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge(MAX_BODY_BYTES)
            } else {
                AppError::BadRequest {
                    code: "invalid_body",
                    message: format!("the request body could not be read: {rejection}"),
                }
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| JsonBody(Some(v)))
            .map_err(|e| AppError::BadRequest {
                code: "invalid_json",
                message: format!("the request body is not valid JSON: {e}"),
            })
    }
}
