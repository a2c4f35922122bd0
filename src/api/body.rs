//! Request bodies: JSON parsed by hand so that every failure (too large, not JSON) comes back in the
//! envelope with words, and so that clients that omit `Content-Type` (curl `-d`) still work.
//!
//! The local server also bounds the bytes of bodies being read at once, across all requests, and
//! the time one body may take to arrive ([`BodyLimits`]): otherwise each slow upload holds up to
//! [`MAX_BODY_BYTES`] for as long as its client likes, and thousands of them fill the pod.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Request};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::error::AppError;

/// Largest request body accepted; larger ones are 413. Entries themselves are capped lower
/// (`domain::entry::MAX_ENTRY_BYTES`), so every entry fits a DynamoDB item.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How long a body waits for room in the [`BodyLimits`] budget before it is a 503 with
/// `Retry-After`: long enough to ride out a burst of normal uploads, short enough that a client
/// learns at once that the server is full of slow ones.
pub const BODY_BUDGET_WAIT: Duration = Duration::from_secs(2);

/// What the local server allows the bodies it reads, put on each request as an extension by the
/// accept loop. Without it (Lambda, whose events arrive whole, and tests of the bare router) a
/// body is only held to [`MAX_BODY_BYTES`].
#[derive(Clone, Debug)]
pub struct BodyLimits {
    /// One permit per byte: a body takes its `Content-Length` (or [`MAX_BODY_BYTES`] when it has
    /// none) before the first byte is read, and gives it back when parsed.
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    /// The whole body must arrive within this, counted from its first read.
    timeout: Duration,
}

impl BodyLimits {
    /// `budget_bytes` is raised to [`MAX_BODY_BYTES`] if lower, so that one largest body fits.
    pub fn new(budget_bytes: usize, timeout: Duration) -> Self {
        let budget_bytes = budget_bytes.max(MAX_BODY_BYTES);
        BodyLimits {
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
            timeout,
        }
    }

    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// A JSON request body; `None` when the body is empty.
pub struct JsonBody(pub Option<Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = AppError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        // The limit is enforced here, where bodies are read, rather than by a layer that every
        // request (GETs too) would pass through.
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            // Refused before a byte of it is read (or any budget taken).
            return Err(AppError::PayloadTooLarge(MAX_BODY_BYTES));
        }
        let limits = req.extensions().get::<BodyLimits>().cloned();
        let read = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES);
        // Held until the body is parsed: its bytes are in memory until then.
        let _room;
        let bytes = match limits {
            None => read.await,
            Some(limits) => {
                // Hyper never yields more than the declared length, so this is what the body
                // can hold in memory.
                let want = declared.map_or(MAX_BODY_BYTES, |n| n as usize);
                _room = match tokio::time::timeout(
                    BODY_BUDGET_WAIT,
                    limits.budget.clone().acquire_many_owned(want as u32),
                )
                .await
                {
                    Ok(Ok(permit)) => permit,
                    // The semaphore is never closed; a full budget and a closed one both mean
                    // "not now".
                    Ok(Err(_)) | Err(_) => {
                        return Err(AppError::Busy {
                            what: "request bodies being read",
                            retry_after_secs: 1,
                        });
                    }
                };
                tokio::time::timeout(limits.timeout, read)
                    .await
                    .map_err(|_| AppError::BodyTimeout(limits.timeout.as_secs()))?
            }
        }
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
