//! Who may write: the write policy (`--writes open|operator|owners`), the operator's token
//! (`REGISTRY_DB_WRITE_TOKEN`), owner tokens, and inside Lambda behind IAM auth the calling IAM
//! principal. Reads stay public under every policy.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use crate::access::WritePolicy;
use crate::access::rate_limit::client_addr;
use crate::domain::owner::{Caller, is_owner_token};
use crate::error::AppError;
use crate::state::AppState;

/// Longest `Authorization` header read (an owner token takes 55 bytes with its scheme): a longer
/// one is refused before anything is hashed or compared.
pub const MAX_AUTHORIZATION_BYTES: usize = 1024;

/// The caller of a write, as far as the policy lets it through. Handlers that write take it as
/// their first argument, so credentials are checked before the body is read. Under `open` every
/// caller is [`Caller::Operator`]; under `operator` only the operator gets here.
pub struct WriteAccess(pub Caller);

impl FromRequestParts<Arc<AppState>> for WriteAccess {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let policy = state.policy();
        if policy == WritePolicy::Open {
            return Ok(WriteAccess(Caller::Operator));
        }
        let caller = caller(parts, state)?;
        match (policy, &caller) {
            (WritePolicy::Operator, Caller::Operator) | (WritePolicy::Owners, _) => {
                Ok(WriteAccess(caller))
            }
            (WritePolicy::Operator, Caller::Principal(_)) => Err(AppError::Forbidden {
                code: "forbidden",
                message: "writes are the operator's only, and this principal is not an operator"
                    .into(),
            }),
            (WritePolicy::Operator, _) => Err(AppError::Unauthorized),
            (WritePolicy::Open, _) => unreachable!("answered above"),
        }
    }
}

/// The client's address for the rate limits (see [`client_addr`]).
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl FromRequestParts<Arc<AppState>> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(
            parts,
            state.access.client_ip_header.as_ref(),
        )))
    }
}

/// Who the request comes from: an IAM principal when API Gateway's IAM authorizer vouched for
/// one (the `Authorization` header then carries SigV4, not a token), else the bearer token.
fn caller(parts: &Parts, state: &AppState) -> Result<Caller, AppError> {
    if let Some(arn) = iam_principal(parts) {
        return Ok(if state.access.is_operator_principal(&arn) {
            Caller::Operator
        } else {
            Caller::Principal(arn)
        });
    }
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return Ok(Caller::Anonymous);
    };
    let bad = |why: &str| AppError::BadCredentials(why.to_string());
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(bad(&format!(
            "the Authorization header is longer than {MAX_AUTHORIZATION_BYTES} bytes"
        )));
    }
    let value = value
        .to_str()
        .map_err(|_| bad("the Authorization header holds characters other than visible ASCII"))?;
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err(bad("the Authorization header must be \"Bearer <token>\"")),
    };
    if token.is_empty() {
        return Err(bad(
            "the Authorization header carries no token after \"Bearer\"",
        ));
    }
    if let Some(expected) = state.write_token.as_deref()
        && bool::from(token.as_bytes().ct_eq(expected.as_bytes()))
    {
        return Ok(Caller::Operator);
    }
    if state.policy() == WritePolicy::Operator {
        return Err(AppError::Unauthorized);
    }
    if !is_owner_token(token) {
        return Err(bad(
            "the bearer token is neither the operator's nor an owner token (rdbo_ and 43 base64url characters)",
        ));
    }
    Ok(Caller::Token(token.to_string()))
}

/// The calling principal's ARN from the request context of an API Gateway event whose route uses
/// IAM auth. Outside Lambda no request carries a context, so no header can claim a principal.
fn iam_principal(parts: &Parts) -> Option<String> {
    use lambda_http::request::RequestContext;
    match parts.extensions.get::<RequestContext>()? {
        RequestContext::ApiGatewayV2(c) => c.authorizer.as_ref()?.iam.as_ref()?.user_arn.clone(),
        RequestContext::ApiGatewayV1(c) => c.identity.user_arn.clone(),
        _ => None,
    }
    .filter(|arn| !arn.is_empty())
}
