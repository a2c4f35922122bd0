//! An [`AppError`] over HTTP: its status, the JSON envelope
//! `{"success": false, "error": "...", "code": "...", "data": ...}` and the headers some cases
//! carry. Store and internal failures keep their detail out of the answer and hand it to the
//! request log ([`Failure`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::log::Failure;
use super::schema::ErrorResponse;
use crate::error::{AppError, STORE_RETRY_AFTER_SECS};

impl AppError {
    /// The HTTP status of the error, for the API's envelope and the pages' error page alike.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Invalid(_) | AppError::Query(_) | AppError::BadRequest { .. } => {
                StatusCode::BAD_REQUEST
            }
            AppError::NotFound(_) | AppError::NoRoute(_) => StatusCode::NOT_FOUND,
            AppError::AlreadyExists(_) | AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Unauthorized | AppError::BadCredentials(_) => StatusCode::UNAUTHORIZED,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AppError::TooManyProbes { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Unhealthy(_) => StatusCode::BAD_GATEWAY,
            AppError::Image(l) if l.status == crate::health::ImageStatus::NotFound => {
                StatusCode::NOT_FOUND
            }
            AppError::Image(_) => StatusCode::BAD_GATEWAY,
            AppError::Store(_) | AppError::Busy { .. } | AppError::RequestTimeout(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn data(e: &AppError) -> Option<Value> {
    match e {
        AppError::Invalid(e) => Some(json!({ "field": e.field })),
        AppError::Unhealthy(r) => serde_json::to_value(r).ok(),
        AppError::Image(l) => serde_json::to_value(l).ok(),
        _ => None,
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorResponse {
            success: false,
            error: self.to_string(),
            code: self.code().into(),
            data: data(&self),
        };
        let mut response = (status, axum::Json(body)).into_response();
        match self {
            // Not in the answer, but in the log: the request-log layer writes it (`log.rs`).
            AppError::Store(detail) => {
                response.extensions_mut().insert(Failure::Store(detail));
            }
            AppError::Internal(detail) => {
                response.extensions_mut().insert(Failure::Internal(detail));
            }
            AppError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::BadCredentials(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            AppError::TooManyProbes {
                retry_after_secs, ..
            }
            | AppError::RateLimited {
                retry_after_secs, ..
            }
            | AppError::Busy {
                retry_after_secs, ..
            } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            AppError::RequestTimeout(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            }
            AppError::BodyTimeout(_) => {
                // What is left of the body is never read: the connection cannot carry another
                // request.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        // Every 503, whatever produced it, says when to come back.
        if status == StatusCode::SERVICE_UNAVAILABLE
            && !response.headers().contains_key(header::RETRY_AFTER)
        {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(STORE_RETRY_AFTER_SECS),
            );
        }
        response
    }
}
