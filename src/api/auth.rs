//! Optional write protection: with `REGISTRY_DB_WRITE_TOKEN` set, create, update and delete need
//! `Authorization: Bearer <token>`; reads stay public. (On AWS, IAM auth at the API does this job.)

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use crate::error::AppError;

/// Proof that the request may write. Handlers that write take it as their first argument, so the
/// token is checked before the body is read.
pub struct WriteAccess;

impl FromRequestParts<Arc<AppState>> for WriteAccess {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Some(expected) = state.write_token.as_deref() else {
            return Ok(WriteAccess);
        };
        let given = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        match given {
            Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => {
                Ok(WriteAccess)
            }
            _ => Err(AppError::Unauthorized),
        }
    }
}

/// Compares without stopping at the first difference, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(super::constant_time_eq(b"secret", b"secret"));
        assert!(!super::constant_time_eq(b"secret", b"secreT"));
        assert!(!super::constant_time_eq(b"secret", b"secret!"));
    }
}
