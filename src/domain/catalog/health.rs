//! Health checks: an on-demand check of one entry (rationed, single flight per entry, answered
//! from the stored result within the cooldown) and the sweep of every entry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use super::{Catalog, SCAN_CHUNK, check_path_id};
use crate::domain::history::{Clock, History, KEPT_DAYS, ProbeSample, uptime_within};
use crate::domain::store::{LastHealth, Store, StoreError};
use crate::error::AppError;
use crate::health::{ProbeResult, Prober, SweepOptions, SweepReport, probe_url, run_sweep};

/// Within this long of an entry's last probe, a health check answers the stored result
/// (`--probe-cooldown-secs`).
pub const DEFAULT_PROBE_COOLDOWN: Duration = Duration::from_secs(30);
/// How long an on-demand check waits for a free probe slot before answering 429.
pub const PROBE_SLOT_WAIT: Duration = Duration::from_secs(2);
/// A sweep's probe that changes nothing (same verdict, same URL) leaves the entry's item as it is,
/// unless its health record is older than this: so `checked_at` and `uptime_30d` on the entry are
/// at most this old (plus one sweep interval), and the history has every probe.
pub const HEALTH_REFRESH: Duration = Duration::from_secs(24 * 3600);

/// How on-demand health checks are rationed, so that anonymous checks cannot turn the service into a
/// flood of probes (sweeps are scheduled by the operator and always probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckPolicy {
    /// Within this long of the stored result's `checked_at` (for the entry's current URL), a check
    /// answers the stored result without probing. Zero probes every time.
    pub cooldown: Duration,
    /// How long a check waits for one of the prober's slots before giving up with a 429.
    pub slot_wait: Duration,
}

impl Default for CheckPolicy {
    fn default() -> Self {
        Self {
            cooldown: DEFAULT_PROBE_COOLDOWN,
            slot_wait: PROBE_SLOT_WAIT,
        }
    }
}

/// The answer to a health check.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub result: ProbeResult,
    /// Set when the stored result was answered without probing (within the cooldown): how old it is.
    pub cached_age: Option<Duration>,
}

/// Why a health check has no answer; `Clone`, because concurrent checks of one entry share it.
#[derive(Debug, Clone)]
pub(super) enum CheckFailure {
    NotFound(String),
    Busy {
        max_in_flight: usize,
        retry_after_secs: u64,
    },
    Store(String),
    Internal(String),
}

impl From<CheckFailure> for AppError {
    fn from(f: CheckFailure) -> Self {
        match f {
            CheckFailure::NotFound(id) => AppError::NotFound(id),
            CheckFailure::Busy {
                max_in_flight,
                retry_after_secs,
            } => AppError::TooManyProbes {
                max_in_flight,
                retry_after_secs,
            },
            CheckFailure::Store(msg) => AppError::Store(msg),
            CheckFailure::Internal(msg) => AppError::Internal(msg),
        }
    }
}

pub(super) type Flight = Shared<BoxFuture<'static, Result<HealthCheck, CheckFailure>>>;

impl Catalog {
    /// Probes an entry's registry and records the result on the entry; or, within the cooldown of the
    /// last probe, answers the stored result. Concurrent checks of one entry share one probe; when no
    /// probe slot frees up in time the answer is [`AppError::TooManyProbes`].
    pub async fn check_health(&self, id: &str) -> Result<HealthCheck, AppError> {
        check_path_id(id)?;
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(id) {
                Some(flight) => flight.clone(),
                None => {
                    // Started while the map is locked, so the flight cannot remove itself before
                    // it has been put in.
                    let flight = self.start_check(id);
                    flights.insert(id.to_owned(), flight.clone());
                    flight
                }
            }
        };
        flight.await.map_err(AppError::from)
    }

    /// Runs one check as its own task, so it finishes (and records its result) even when every
    /// caller waiting on it has gone away.
    fn start_check(&self, id: &str) -> Flight {
        let (store, prober, checks, flights, clock) = (
            Arc::clone(&self.store),
            self.prober.clone(),
            self.checks,
            Arc::clone(&self.flights),
            Arc::clone(&self.clock),
        );
        let id = id.to_owned();
        let task = tokio::spawn(async move {
            // Leaves the map however the check ends, panics included, so a failed flight is never
            // answered again to later checks.
            let _leave = LeaveOnDrop {
                flights,
                id: id.clone(),
            };
            check_once(store.as_ref(), clock.as_ref(), &prober, checks, &id).await
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(CheckFailure::Internal(format!("health check task: {e}"))))
        }
        .boxed()
        .shared()
    }

    /// Probes every entry once, with bounded concurrency, and records each verdict.
    pub async fn sweep(&self, opts: &SweepOptions) -> Result<SweepReport, AppError> {
        self.sweep_counted(opts, &SweepCount::default()).await
    }

    /// [`Self::sweep`], counting into `count` as it goes (for a progress line).
    pub async fn sweep_counted(
        &self,
        opts: &SweepOptions,
        count: &SweepCount,
    ) -> Result<SweepReport, AppError> {
        let started = std::time::Instant::now();
        let mut targets = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (chunk, next) = self
                .store
                .probe_targets(after.as_deref(), SCAN_CHUNK)
                .await?;
            targets.extend(chunk);
            match next {
                Some(key) => after = Some(key),
                None => break,
            }
        }
        count.total.store(targets.len() as u64, Ordering::Relaxed);
        let mut lasts = HashMap::with_capacity(targets.len());
        let targets: Vec<(String, String)> = targets
            .into_iter()
            .map(|t| {
                if let Some(last) = t.last {
                    lasts.insert(t.id.clone(), last);
                }
                (t.id, t.url)
            })
            .collect();
        let lasts = &lasts;
        let (store, clock) = (self.store.clone(), self.clock.clone());
        let report = run_sweep(&self.prober, targets, opts, |id, result| {
            let (store, clock) = (store.clone(), clock.clone());
            count.done.fetch_add(1, Ordering::Relaxed);
            async move {
                let last = lasts.get(&id);
                match record(store.as_ref(), clock.as_ref(), &id, result, last).await {
                    Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
        crate::metrics::sweep(started.elapsed());
        Ok(report)
    }
}

impl Catalog {
    /// The entry's health over the last `days` days (1 to 90): uptime over 7, 30 and 90 days and
    /// every day's counts, days without probes included.
    pub async fn history(&self, id: &str, days: u32) -> Result<History, AppError> {
        // 404 for an entry that does not exist (an empty history is still an answer).
        self.get(id).await?;
        let today = self.clock.today();
        let stored = self
            .store
            .health_days(id, today.oldest_kept(), today)
            .await?;
        Ok(History::build(&stored, today, days))
    }
}

/// Records one probe: counted into the entry's history, then written to the entry's health record
/// unless `last` (the record as stored) says it would change nothing: same verdict, same URL, an
/// uptime already there and a record younger than [`HEALTH_REFRESH`]. `last: None` always writes
/// (on-demand checks pass `None`: the cooldown and the answer rely on the stored `checked_at`).
/// Returns the result as recorded, `uptime_30d` filled; `NotFound` when the entry is gone.
async fn record(
    store: &dyn Store,
    clock: &dyn Clock,
    id: &str,
    mut result: ProbeResult,
    last: Option<&LastHealth>,
) -> Result<ProbeResult, StoreError> {
    let today = clock.today();
    let sample = ProbeSample {
        status: result.status,
        latency_ms: result.latency_ms,
    };
    if !store.record_probe(id, today, sample).await? {
        return Err(StoreError::NotFound(id.to_owned()));
    }
    if let Some(last) = last
        && unchanged(last, &result, clock)
    {
        result.uptime_30d = last.uptime_30d;
        return Ok(result);
    }
    let days = store.health_days(id, today.minus(29), today).await?;
    result.uptime_30d = uptime_within(&days, today, 30);
    if !store.set_health(id, &result).await? {
        return Err(StoreError::NotFound(id.to_owned()));
    }
    Ok(result)
}

/// Whether a new result leaves the stored record as it stands (see [`record`]).
fn unchanged(last: &LastHealth, result: &ProbeResult, clock: &dyn Clock) -> bool {
    // A checked_at in the future (clocks disagree) counts as just now.
    let young = chrono::DateTime::parse_from_rfc3339(&last.checked_at)
        .ok()
        .map(|at| {
            (clock.now() - at.with_timezone(&chrono::Utc))
                .to_std()
                .unwrap_or(Duration::ZERO)
        })
        .is_some_and(|age| age < HEALTH_REFRESH);
    last.status == result.status && last.url == result.url && last.uptime_30d.is_some() && young
}

const _: () = assert!(KEPT_DAYS >= 30);

/// How far a sweep is: entries to probe, and probes done.
#[derive(Debug, Default)]
pub struct SweepCount {
    pub total: AtomicU64,
    pub done: AtomicU64,
}

/// Takes a finished check out of the map of checks in progress.
struct LeaveOnDrop {
    flights: Arc<Mutex<HashMap<String, Flight>>>,
    id: String,
}

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        self.flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

async fn check_once(
    store: &dyn Store,
    clock: &dyn Clock,
    prober: &Prober,
    checks: CheckPolicy,
    id: &str,
) -> Result<HealthCheck, CheckFailure> {
    let entry = store
        .get(id)
        .await
        .map_err(|e| CheckFailure::Store(e.to_string()))?
        .ok_or_else(|| CheckFailure::NotFound(id.to_owned()))?
        .entry()
        .map_err(|e| CheckFailure::Store(e.to_string()))?;
    let url = &entry.container_registry_public_url;
    if let Some(stored) = entry.container_registry_health
        && let Some(age) = fresh(&stored, url, checks.cooldown)
    {
        return Ok(HealthCheck {
            result: stored.bounded(),
            cached_age: Some(age),
        });
    }
    let result = prober
        .probe_within(url, checks.slot_wait)
        .await
        .map_err(|busy| {
            CheckFailure::Busy {
                max_in_flight: busy.max_in_flight,
                // A slot frees up within one probe timeout.
                retry_after_secs: prober.config().timeout.as_secs_f64().ceil().max(1.0) as u64,
            }
        })?;
    // The entry may have been deleted while it was probed; the answer still stands.
    match record(store, clock, id, result.clone(), None).await {
        Ok(result) => Ok(HealthCheck {
            result,
            cached_age: None,
        }),
        Err(StoreError::NotFound(_)) => Ok(HealthCheck {
            result,
            cached_age: None,
        }),
        Err(e) => Err(CheckFailure::Store(e.to_string())),
    }
}

/// The age of `stored` when it is a result for `public_url` younger than `cooldown`.
fn fresh(stored: &ProbeResult, public_url: &str, cooldown: Duration) -> Option<Duration> {
    if cooldown.is_zero() || probe_url(public_url).ok()?.as_str() != stored.url {
        return None;
    }
    let checked_at = chrono::DateTime::parse_from_rfc3339(&stored.checked_at).ok()?;
    // A checked_at in the future (clocks disagree) counts as just now.
    let age = (chrono::Utc::now() - checked_at.with_timezone(&chrono::Utc))
        .to_std()
        .unwrap_or(Duration::ZERO);
    (age < cooldown).then_some(age)
}
