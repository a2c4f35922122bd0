//! A health sweep: probe many entries with bounded concurrency and record every result.
//!
//! Three bounds hold at once: the sweep's own `concurrency`, which is never more than the prober's
//! share for sweeps ([`Prober::sweep_slots`], three quarters of its cap on probes in flight, so
//! on-demand checks keep a quarter); `per_host` probes at once to any one host (default 4), so many
//! entries on one host never open hundreds of connections to it; and the prober's global cap.
//! Targets are taken round-robin across hosts, so a host with many entries does not hold up the others.
//!
//! Every probe is bounded by the prober's timeout and preceded by a random delay of up to `jitter`,
//! so a sweep of N entries on distinct hosts takes about `ceil(N / concurrency) * (timeout + jitter)`,
//! and the K entries of one host at least `ceil(K / per_host)` probe times. A probe that fails is still
//! a result (`unreachable`, with its error) and is recorded like any other, so a dead registry never
//! keeps its old status; a `record` call that fails is counted, logged and the sweep goes on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use tokio::sync::Semaphore;

use super::probe::Prober;
use super::result::{HealthStatus, ProbeResult};
use super::target::host_key;

/// Probes at once to one host during a sweep.
pub const DEFAULT_PER_HOST: usize = 4;

/// How a sweep spreads its probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepOptions {
    /// Probes in flight at once (0 is taken as 1), never more than the prober's
    /// [`Prober::sweep_slots`]. Default 512, i.e. the prober decides.
    pub concurrency: usize,
    /// Probes in flight at once to one host (0 is taken as 1). Default [`DEFAULT_PER_HOST`].
    pub per_host: usize,
    /// The longest random delay before each probe, so a sweep does not knock on every registry in the
    /// same millisecond. Default 250 ms.
    pub jitter: Duration,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self {
            concurrency: 512,
            per_host: DEFAULT_PER_HOST,
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
/// `record` runs inside the probe's concurrency slot; an `Err(reason)` from it is counted in
/// `record_failures` and logged.
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
    let per_host = opts.per_host.max(1);
    let (order, hosts) = round_robin_by_host(targets, per_host);
    let hosts = &hosts;
    let concurrency = opts.concurrency.max(1).min(prober.sweep_slots());
    let mut outcomes = futures::stream::iter(order)
        .map(|(host, id, url)| async move {
            // Taken before the jitter, so the delay spreads the probes of one host too.
            let _host_slot = hosts[&host].acquire().await;
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
        .buffer_unordered(concurrency);

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

/// `(host, entry id, public url)`.
type HostTarget = (String, String, String);

/// The targets in the order a sweep starts them: the first entry of every host, then the second of
/// every host, and so on, each tagged with its host; and one semaphore of `per_host` permits per host.
fn round_robin_by_host(
    targets: impl IntoIterator<Item = (String, String)>,
    per_host: usize,
) -> (Vec<HostTarget>, HashMap<String, Arc<Semaphore>>) {
    let mut by_host: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (id, url) in targets {
        let host = host_key(&url);
        let i = *index.entry(host.clone()).or_insert_with(|| {
            by_host.push((host, Vec::new()));
            by_host.len() - 1
        });
        by_host[i].1.push((id, url));
    }
    let total = by_host.iter().map(|(_, t)| t.len()).sum();
    let mut order = Vec::with_capacity(total);
    let mut queues: Vec<_> = by_host
        .iter_mut()
        .map(|(host, t)| (host.clone(), std::mem::take(t).into_iter()))
        .collect();
    while order.len() < total {
        for (host, queue) in &mut queues {
            if let Some((id, url)) = queue.next() {
                order.push((host.clone(), id, url));
            }
        }
    }
    let hosts = by_host
        .into_iter()
        .map(|(host, _)| (host, Arc::new(Semaphore::new(per_host))))
        .collect();
    (order, hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_interleaved_across_hosts() {
        let targets = [
            ("a1", "http://a.test"),
            ("a2", "http://a.test:5000"),
            ("a3", "http://A.test/x"),
            ("b1", "http://b.test"),
            ("c1", "http://c.test"),
            ("b2", "http://b.test"),
        ]
        .map(|(id, url)| (id.to_owned(), url.to_owned()));
        let (order, hosts) = round_robin_by_host(targets, 4);
        let ids: Vec<&str> = order.iter().map(|(_, id, _)| id.as_str()).collect();
        assert_eq!(ids, ["a1", "b1", "c1", "a2", "b2", "a3"]);
        assert_eq!(hosts.len(), 3);
        assert_eq!(hosts["a.test"].available_permits(), 4);
    }
}
