//! Request bodies: JSON parsed by hand so that every failure (too large, not JSON) comes back in the
//! envelope with words, and so that clients that omit `Content-Type` (curl `-d`) still work.

use axum::extract::{FromRequest, Request};
use serde_json::Value;

use crate::error::AppError;

/// Largest request body accepted; larger ones are 413. Entries themselves are capped lower
/// (`domain::entry::MAX_ENTRY_BYTES`), so every entry fits a DynamoDB item.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A JSON request body; `None` when the body is empty.
pub struct JsonBody(pub Option<Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = AppError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        // The limit is enforced here, where bodies are read, rather than by a layer that every
        // request (GETs too) would pass through.
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|e| {
                if std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                {
                    AppError::PayloadTooLarge(MAX_BODY_BYTES)
                } else {
                    AppError::BadRequest {
                        code: "invalid_body",
                        message: format!("the request body could not be read: {e}"),
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
