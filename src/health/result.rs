//! The record a probe leaves: its verdict, what the registry answered, and when. Stored on the entry,
//! answered by the health endpoint and shown on the pages; every string in it is capped
//! ([`ProbeResult::bounded`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::limits::{
    MAX_ERROR_BYTES, MAX_PROBE_URL_BYTES, MAX_TEXT_BYTES, MAX_TOKEN_BYTES, cap, cap_opt,
};

/// The verdict of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// An OCI registry answered `/v2/` openly.
    Healthy,
    /// An OCI registry answered `/v2/` with a 401 and an auth challenge: healthy, wants credentials.
    AuthRequired,
    /// Something answered over HTTP, but not a registry API.
    NotRegistry,
    /// No HTTP answer: DNS, connection, TLS, timeout, or refused by the probe policy.
    Unreachable,
}

impl HealthStatus {
    /// The wire spelling: "healthy", "auth_required", "not_registry", "unreachable".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::AuthRequired => "auth_required",
            Self::NotRegistry => "not_registry",
            Self::Unreachable => "unreachable",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed `WWW-Authenticate` challenge, e.g. `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuthChallenge {
    /// As sent: "Bearer", "Basic", ...
    pub scheme: String,
    pub realm: Option<String>,
    pub service: Option<String>,
    pub scope: Option<String>,
}

/// What a probe found. Serialized as the `data` of `GET /check_container_health/{id}` and stored on
/// the entry as its last health result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProbeResult {
    /// The `/v2/` URL probed (credentials, query and fragment removed).
    pub url: String,
    /// An HTTP answer came back (any status). Kept from the earlier service.
    pub reachable: bool,
    /// The final answer's status code (after redirects and the 429 retry). Kept.
    pub status_code: Option<u16>,
    /// The final answer's reason phrase, e.g. "Unauthorized". Kept.
    pub reason: Option<String>,
    pub status: HealthStatus,
    /// From sending the request to the final answer's headers, redirects included.
    pub latency_ms: Option<u64>,
    /// The `Docker-Distribution-API-Version` header, e.g. "registry/2.0".
    pub api_version: Option<String>,
    /// The parsed `WWW-Authenticate` challenge of a 401.
    pub challenge: Option<AuthChallenge>,
    /// When the probe started, RFC 3339 UTC.
    pub checked_at: String,
    /// What went wrong, in words; absent for healthy and auth_required.
    pub error: Option<String>,
    /// The address-policy rule that refused the probe: "link-local", "loopback", "unspecified",
    /// "multicast", "broadcast", "reserved", "cloud-metadata".
    pub refused_by: Option<String>,
    /// The share of the last 30 days' probes that found a registry (healthy or auth_required),
    /// this one included, as of `checked_at` (`domain::history`); absent before any history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_30d: Option<f64>,
}

impl ProbeResult {
    /// A registry answered: healthy or auth_required. The HTTP endpoint answers 200 then.
    pub fn answered(&self) -> bool {
        matches!(
            self.status,
            HealthStatus::Healthy | HealthStatus::AuthRequired
        )
    }

    /// The result with every string cut to its cap (see [`super::limits`]): serialized, it is at most
    /// [`super::limits::MAX_HEALTH_BYTES`], whatever the probed server sent.
    pub fn bounded(self) -> Self {
        ProbeResult {
            url: cap(&self.url, MAX_PROBE_URL_BYTES),
            reason: cap_opt(self.reason, MAX_TOKEN_BYTES),
            api_version: cap_opt(self.api_version, MAX_TOKEN_BYTES),
            challenge: self.challenge.map(|c| AuthChallenge {
                scheme: cap(&c.scheme, MAX_TOKEN_BYTES),
                realm: cap_opt(c.realm, MAX_TEXT_BYTES),
                service: cap_opt(c.service, MAX_TEXT_BYTES),
                scope: cap_opt(c.scope, MAX_TEXT_BYTES),
            }),
            checked_at: cap(&self.checked_at, MAX_TOKEN_BYTES),
            error: cap_opt(self.error, MAX_ERROR_BYTES),
            refused_by: cap_opt(self.refused_by, MAX_TOKEN_BYTES),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_possible_record_stays_within_its_budget() {
        use crate::health::limits::MAX_HEALTH_BYTES;
        let huge = |c: &str| c.repeat(200_000);
        let result = ProbeResult {
            url: huge("\""),
            reachable: false,
            status_code: Some(u16::MAX),
            reason: Some(huge("\\")),
            status: HealthStatus::AuthRequired,
            latency_ms: Some(u64::MAX),
            api_version: Some(huge("\"é")),
            challenge: Some(AuthChallenge {
                scheme: huge("\""),
                realm: Some(huge("\"")),
                service: Some(huge("😀")),
                scope: Some(huge("\u{1}\"")),
            }),
            checked_at: huge("9"),
            error: Some(huge("\"")),
            refused_by: Some(huge("\"")),
            uptime_30d: Some(0.123_456_789_012_345_67),
        }
        .bounded();
        let json = serde_json::to_vec(&result).unwrap();
        assert!(json.len() <= MAX_HEALTH_BYTES, "{} bytes", json.len());
        // and a bounded record is left as it is
        assert_eq!(result.clone().bounded(), result);
    }

    #[test]
    fn status_serializes_snake_case() {
        assert_eq!(
            serde_json::to_string(&HealthStatus::AuthRequired).unwrap(),
            "\"auth_required\""
        );
        assert_eq!(
            serde_json::to_string(&HealthStatus::NotRegistry).unwrap(),
            "\"not_registry\""
        );
    }
}
