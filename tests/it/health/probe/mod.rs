//! The health probe and sweep against real servers on 127.0.0.1: Debian's `docker-registry` in three
//! auth modes, small HTTP servers that are not registries, a closed port and a port that never answers,
//! and the SSRF cases; one module per subject, the servers in `support::servers`.
//!
//! Run inside a loopback-only network namespace, so that a broken guard fails by "network unreachable"
//! instead of reaching an address:
//!
//!     unshare -n bash -c 'ip link set lo up && exec cargo test --offline --test it health::probe::'

use crate::support::{self, loopback_config};

use std::time::Duration;

use registry_db::health::{HealthStatus, ProbeConfig, ProbeResult, Prober};

mod hostile;
mod no_answer;
mod not_registries;
mod politeness;
mod registry;
mod ssrf;
mod sweeps;

fn strict_config(timeout_ms: u64) -> ProbeConfig {
    ProbeConfig {
        timeout: Duration::from_millis(timeout_ms),
        allow_loopback: false,
        ..ProbeConfig::default()
    }
}

/// Every probe in these modules goes through here, and only runs where loopback is the whole network:
/// the URLs name link-local, metadata and unresolvable hosts that must never see a packet.
async fn probe(cfg: ProbeConfig, url: &str) -> ProbeResult {
    support::require_loopback_only_network();
    Prober::new(cfg).probe(url).await
}

fn assert_refused(result: &ProbeResult, rule: &str) {
    assert_eq!(result.status, HealthStatus::Unreachable, "{result:#?}");
    assert!(!result.reachable, "{result:#?}");
    assert_eq!(result.refused_by.as_deref(), Some(rule), "{result:#?}");
    let error = result.error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("refused by the probe policy: "),
        "{error}"
    );
    let lower = error.to_lowercase();
    assert!(
        lower.contains(rule) || lower.contains(&rule.replace('-', " ")),
        "{error}"
    );
    assert_eq!(result.status_code, None);
}
