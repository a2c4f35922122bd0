//! The one error type of the service, mapped once to a status code and the JSON envelope
//! `{"success": false, "error": "...", "code": "..."}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::schema::ErrorResponse;
use crate::domain::entry::ValidationError;
use crate::health::ProbeResult;
use crate::query::QueryError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid entry: {0}")]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    Query(#[from] QueryError),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("no container registry with id {0}")]
    NotFound(String),
    #[error("a container registry with id {0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("this write needs the header Authorization: Bearer <token>")]
    Unauthorized,
    #[error("no route for {0}")]
    NoRoute(String),
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    /// A request that must not be served, e.g. a health check asked for by a health probe.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// Every probe slot stayed taken: try again after `retry_after_secs`.
    #[error(
        "the service is running its maximum of {max_in_flight} health probes at once; try again in {retry_after_secs} s"
    )]
    TooManyProbes {
        max_in_flight: usize,
        retry_after_secs: u64,
    },
    /// The registry did not answer as an OCI registry; the probe result travels in `data`.
    #[error("{}", .0.error.clone().unwrap_or_else(|| "the registry did not answer as an OCI registry".into()))]
    Unhealthy(Box<ProbeResult>),
    /// A bound of the local server is reached (see `server::conn`): try again after
    /// `retry_after_secs`.
    #[error("the server is at its limit of {what}; try again in {retry_after_secs} s")]
    Busy {
        what: &'static str,
        retry_after_secs: u64,
    },
    /// The client did not send its whole body within the body timeout (seconds).
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    /// Handling the request took longer than the request timeout (seconds).
    #[error("the request took longer than {0} s to handle; try again shortly")]
    RequestTimeout(u64),
    #[error("the service could not reach its store; try again shortly")]
    Store(String),
    #[error("internal error")]
    Internal(String),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Invalid(_) | AppError::Query(_) | AppError::BadRequest { .. } => {
                StatusCode::BAD_REQUEST
            }
            AppError::NotFound(_) | AppError::NoRoute(_) => StatusCode::NOT_FOUND,
            AppError::AlreadyExists(_) | AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AppError::TooManyProbes { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Unhealthy(_) => StatusCode::BAD_GATEWAY,
            AppError::Store(_) | AppError::Busy { .. } | AppError::RequestTimeout(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable code beside the sentence.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Invalid(e) => e.code,
            AppError::Query(e) => e.code(),
            AppError::BadRequest { code, .. } => code,
            AppError::NotFound(_) => "not_found",
            AppError::NoRoute(_) => "no_route",
            AppError::AlreadyExists(_) => "already_exists",
            AppError::Conflict(_) => "update_conflict",
            AppError::PayloadTooLarge(_) => "payload_too_large",
            AppError::Unauthorized => "unauthorized",
            AppError::Forbidden { code, .. } => code,
            AppError::TooManyProbes { .. } => "too_many_probes",
            AppError::MethodNotAllowed { .. } => "method_not_allowed",
            AppError::Unhealthy(r) if r.reachable => "not_a_registry",
            AppError::Unhealthy(r) if r.refused_by.is_some() => "probe_refused",
            AppError::Unhealthy(_) => "unreachable",
            AppError::Busy { .. } => "server_busy",
            AppError::BodyTimeout(_) => "body_timeout",
            AppError::RequestTimeout(_) => "request_timeout",
            AppError::Store(_) => "store_unavailable",
            AppError::Internal(_) => "internal",
        }
    }

    fn data(&self) -> Option<Value> {
        match self {
            AppError::Invalid(e) => Some(json!({ "field": e.field })),
            AppError::Unhealthy(r) => serde_json::to_value(r).ok(),
            _ => None,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            AppError::Store(detail) => tracing::error!(error = %detail, "store failure"),
            AppError::Internal(detail) => tracing::error!(error = %detail, "internal failure"),
            _ => {}
        }
        let body = ErrorResponse {
            success: false,
            error: self.to_string(),
            code: self.code().into(),
            data: self.data(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        match self {
            AppError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::TooManyProbes {
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
        response
    }
}
