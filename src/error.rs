//! The one error type of the service and the stable machine-readable code of each case. What an
//! error is over HTTP (its status, the JSON envelope, the headers) is the API's: `api/error.rs`.

use crate::health::{ImageLookup, ImageStatus, ProbeResult};
use crate::query::QueryError;

/// The `Retry-After` (seconds) of every 503: the store's client has already retried with backoff
/// (`store::dynamodb`, SDK settings), so what is left is an outage or throttling that outlasts
/// those retries; a second lets a client try again soon without hammering a struggling store.
pub const STORE_RETRY_AFTER_SECS: u64 = 1;

/// A rule an entry broke: which field, and why, in words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
    /// The stable code of the 400: `invalid_entry`, or `entry_too_large` past the size limit.
    pub code: &'static str,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            message: message.into(),
            code: "invalid_entry",
        }
    }

    /// The entry as a whole is over the size limit (see `domain::size`).
    pub fn too_large(message: impl Into<String>) -> Self {
        ValidationError {
            code: "entry_too_large",
            ..ValidationError::new("entry", message)
        }
    }
}

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
    /// An `Authorization` header that is malformed, too long, or carries no usable token; the
    /// text says which (and never repeats the header).
    #[error("{0}")]
    BadCredentials(String),
    /// A client's bucket for `what` is empty: try again after `retry_after_secs`.
    #[error(
        "too many {what} from this address: at most {burst} per {per_secs} s; try again in {retry_after_secs} s"
    )]
    RateLimited {
        what: &'static str,
        burst: u32,
        per_secs: u64,
        retry_after_secs: u64,
    },
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
    /// An image lookup that found no image (404) or no registry answer (502); the lookup travels
    /// in `data`.
    #[error("{}", .0.error.clone().unwrap_or_else(|| format!("{} is {}", .0.reference, .0.status)))]
    Image(Box<ImageLookup>),
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
            AppError::Unauthorized | AppError::BadCredentials(_) => "unauthorized",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::Forbidden { code, .. } => code,
            AppError::TooManyProbes { .. } => "too_many_probes",
            AppError::MethodNotAllowed { .. } => "method_not_allowed",
            AppError::Unhealthy(r) if r.reachable => "not_a_registry",
            AppError::Unhealthy(r) if r.refused_by.is_some() => "probe_refused",
            AppError::Unhealthy(_) => "unreachable",
            AppError::Image(l) => match l.status {
                ImageStatus::NotFound => "image_not_found",
                ImageStatus::NotRegistry => "not_a_registry",
                _ if l.refused_by.is_some() => "probe_refused",
                _ => "unreachable",
            },
            AppError::Busy { .. } => "server_busy",
            AppError::BodyTimeout(_) => "body_timeout",
            AppError::RequestTimeout(_) => "request_timeout",
            AppError::Store(_) => "store_unavailable",
            AppError::Internal(_) => "internal",
        }
    }
}
