//! A health sweep: probe many entries with bounded concurrency and record every result.
//!
//! Every probe is bounded by the prober's timeout and preceded by a random delay of up to
//! `jitter`, so a sweep of N entries takes about `ceil(N / concurrency) * (timeout + jitter)`: several
//! hundred entries, dead ones included, finish in roughly one timeout. A probe that fails is still a
//! result (`unreachable`, with its error) and is recorded like any other, so a dead registry never keeps
//! its old status; a `record` call that fails is counted, logged and the sweep goes on.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;

use super::probe::{HealthStatus, ProbeResult, Prober};

/// How a sweep spreads its probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepOptions {
    /// Probes in flight at once (0 is taken as 1). Default 512.
    pub concurrency: usize,
    /// The longest random delay before each probe, so a sweep does not knock on every registry in the
    /// same millisecond. Default 250 ms.
    pub jitter: Duration,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self {
            concurrency: 512,
            jitter: Duration::from_millis(250),
        }
    }
}

/// What a sweep did. `healthy + auth_required + not_registry + unreachable == total`; `record_failures`
/// counts results that could not be stored (they are part of the verdict counts all the same).
#[derive(
    Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct SweepReport {
    pub total: usize,
    pub healthy: usize,
    pub auth_required: usize,
    pub not_registry: usize,
    pub unreachable: usize,
    pub record_failures: usize,
    pub duration_ms: u64,
}

impl SweepReport {
    fn count(&mut self, status: HealthStatus) {
        self.total += 1;
        match status {
            HealthStatus::Healthy => self.healthy += 1,
            HealthStatus::AuthRequired => self.auth_required += 1,
            HealthStatus::NotRegistry => self.not_registry += 1,
            HealthStatus::Unreachable => self.unreachable += 1,
        }
    }
}

/// Probes every `(entry id, public url)` target and hands each result to `record(id, result)`.
///
/// The targets are pulled lazily, so a store can stream them. `record` runs inside the probe's
/// concurrency slot; an `Err(reason)` from it is counted in `record_failures` and logged.
pub async fn run_sweep<I, F, Fut>(
    prober: &Prober,
    targets: I,
    opts: &SweepOptions,
    record: F,
) -> SweepReport
where
    I: IntoIterator<Item = (String, String)>,
    F: Fn(String, ProbeResult) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let record = &record;
    let jitter_ms = u64::try_from(opts.jitter.as_millis()).unwrap_or(u64::MAX);
    let mut outcomes = futures::stream::iter(targets)
        .map(|(id, url)| async move {
            if jitter_ms > 0 {
                let delay = rand::rng().random_range(0..=jitter_ms);
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let result = prober.probe(&url).await;
            let status = result.status;
            let recorded = match record(id.clone(), result).await {
                Ok(()) => true,
                Err(reason) => {
                    tracing::warn!(entry = %id, %reason, "could not record a health result");
                    false
                }
            };
            (status, recorded)
        })
        .buffer_unordered(opts.concurrency.max(1));

    let mut report = SweepReport::default();
    while let Some((status, recorded)) = outcomes.next().await {
        report.count(status);
        if !recorded {
            report.record_failures += 1;
        }
    }
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        total = report.total,
        healthy = report.healthy,
        auth_required = report.auth_required,
        not_registry = report.not_registry,
        unreachable = report.unreachable,
        record_failures = report.record_failures,
        duration_ms = report.duration_ms,
        "health sweep finished"
    );
    report
}
