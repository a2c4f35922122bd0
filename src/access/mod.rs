//! Who may write, and how often anyone may ask for what costs the service work: the write policy
//! (`--writes open|operator|owners`), the IAM principals that are operators, and the per-client
//! rate limits (`rate_limit`). Settings, not HTTP: `api::auth` applies them to requests, and the
//! shared state carries them.

pub mod rate_limit;

use axum::http::HeaderName;
use clap::ValueEnum;

use self::rate_limit::{DEFAULT_CHECKS_PER_MINUTE, DEFAULT_CREATES_PER_HOUR, Rate, RateLimits};

/// Who may create, update, delete and rotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WritePolicy {
    /// Anyone may write (the earlier service's behaviour).
    Open,
    /// Only the operator's token (or an operator principal).
    Operator,
    /// Anyone may create; an entry's owner token (or the operator) changes it.
    Owners,
}

impl WritePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            WritePolicy::Open => "open",
            WritePolicy::Operator => "operator",
            WritePolicy::Owners => "owners",
        }
    }

    /// The default: `operator` when there is an operator token, else `open` (today's
    /// deployments and the AIOS clients behave as before).
    pub fn default_for(write_token: Option<&str>) -> WritePolicy {
        if write_token.is_some() {
            WritePolicy::Operator
        } else {
            WritePolicy::Open
        }
    }
}

/// The write policy and what goes with it, beside [`AppState::write_token`]. The default is the
/// policy the write token implies, with no limits.
#[derive(Default)]
pub struct Access {
    /// `None`: [`WritePolicy::default_for`] the write token.
    pub policy: Option<WritePolicy>,
    /// IAM principal ARNs that are operators (inside Lambda behind IAM auth). An ARN ending in
    /// `*` names every ARN that starts with the rest (e.g. every session of a role).
    pub operator_principals: Vec<String>,
    pub limits: RateLimits,
    /// The header a trusted proxy puts the client's address in (off: the socket's peer).
    pub client_ip_header: Option<HeaderName>,
}

impl Access {
    /// The limits that go with `policy` when none are set: on under `owners`, off otherwise.
    pub fn default_limits(
        policy: WritePolicy,
        creates_per_hour: Option<u32>,
        checks_per_minute: Option<u32>,
    ) -> RateLimits {
        let on = policy == WritePolicy::Owners;
        let creates = creates_per_hour.or(on.then_some(DEFAULT_CREATES_PER_HOUR));
        let checks = checks_per_minute.or(on.then_some(DEFAULT_CHECKS_PER_MINUTE));
        RateLimits::new(creates.map(Rate::per_hour), checks.map(Rate::per_minute))
    }

    pub(crate) fn is_operator_principal(&self, arn: &str) -> bool {
        self.operator_principals
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) => arn.starts_with(prefix),
                None => p == arn,
            })
    }
}
