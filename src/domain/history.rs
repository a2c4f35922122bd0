//! Health over time: per entry and UTC day, the probes of each verdict and a fixed-bucket latency
//! histogram, kept [`KEPT_DAYS`] days. Pure arithmetic (days, uptime, percentiles) and the clock
//! the catalog reads the day from; the stores keep the counts (`Store::record_probe`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::Serialize;

use crate::health::HealthStatus;

/// Days of history kept: older days are pruned by the embedded store on write and expire by TTL on
/// DynamoDB; no read asks for them.
pub const KEPT_DAYS: u32 = 90;
/// The days an answer holds by default (at most [`KEPT_DAYS`]).
pub const DEFAULT_ANSWER_DAYS: u32 = 30;
/// Upper bounds (inclusive, ms) of the latency buckets; a last bucket holds everything slower.
pub const LATENCY_BOUNDS_MS: [u64; 10] = [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];
/// Buckets: one per bound and one past the last.
pub const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// A UTC day, as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i32);

impl Day {
    pub fn of(at: DateTime<Utc>) -> Day {
        Day(at.date_naive().num_days_from_ce() - EPOCH_CE)
    }

    pub fn date(self) -> NaiveDate {
        NaiveDate::from_num_days_from_ce_opt(self.0 + EPOCH_CE).unwrap_or(NaiveDate::MIN)
    }

    /// `YYYY-MM-DD`, which sorts as the days do (the DynamoDB sort key).
    pub fn iso(self) -> String {
        self.date().format("%Y-%m-%d").to_string()
    }

    pub fn parse_iso(text: &str) -> Option<Day> {
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        Some(Day(date.num_days_from_ce() - EPOCH_CE))
    }

    /// The day `n` days earlier.
    pub fn minus(self, n: u32) -> Day {
        Day(self.0.saturating_sub(n as i32))
    }

    /// Seconds since the epoch at the start of the day `n` days later (a TTL).
    pub fn epoch_secs_after(self, n: u32) -> i64 {
        (i64::from(self.0) + i64::from(n)) * 86_400
    }

    /// The first day still kept when today is `self`.
    pub fn oldest_kept(self) -> Day {
        self.minus(KEPT_DAYS - 1)
    }
}

const EPOCH_CE: i32 = 719_163;

/// What one probe adds to its day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSample {
    pub status: HealthStatus,
    pub latency_ms: Option<u64>,
}

/// The bucket a latency falls in.
pub fn bucket_of(latency_ms: u64) -> usize {
    LATENCY_BOUNDS_MS
        .iter()
        .position(|&bound| latency_ms <= bound)
        .unwrap_or(LATENCY_BOUNDS_MS.len())
}

/// One day of one entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayCounts {
    pub healthy: u64,
    pub auth_required: u64,
    pub not_registry: u64,
    pub unreachable: u64,
    /// Probes per latency bucket (probes with no latency count in none).
    pub latency: [u64; BUCKETS],
}

impl DayCounts {
    pub fn add(&mut self, sample: ProbeSample) {
        *self.verdict_mut(sample.status) += 1;
        if let Some(ms) = sample.latency_ms {
            self.latency[bucket_of(ms)] += 1;
        }
    }

    pub fn verdict_mut(&mut self, status: HealthStatus) -> &mut u64 {
        match status {
            HealthStatus::Healthy => &mut self.healthy,
            HealthStatus::AuthRequired => &mut self.auth_required,
            HealthStatus::NotRegistry => &mut self.not_registry,
            HealthStatus::Unreachable => &mut self.unreachable,
        }
    }

    pub fn probes(&self) -> u64 {
        self.healthy + self.auth_required + self.not_registry + self.unreachable
    }

    /// Probes whose verdict counts as up: a registry answered.
    pub fn up(&self) -> u64 {
        self.healthy + self.auth_required
    }

    fn merge(&mut self, other: &DayCounts) {
        self.healthy += other.healthy;
        self.auth_required += other.auth_required;
        self.not_registry += other.not_registry;
        self.unreachable += other.unreachable;
        for (a, b) in self.latency.iter_mut().zip(other.latency) {
            *a += b;
        }
    }

    /// The latency below which a share `q` (0..=1) of the probes fall: the upper bound of the
    /// bucket holding that rank (the last bound for the open bucket); `None` with no latencies.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        // The rank of the q-th probe, 1-based, at least the first.
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(LATENCY_BOUNDS_MS[i.min(LATENCY_BOUNDS_MS.len() - 1)]);
            }
        }
        None
    }
}

/// The share of up probes (healthy or auth_required) among all of them; `None` with no probes. A
/// day without probes counts as neither.
pub fn uptime<'a>(days: impl IntoIterator<Item = &'a DayCounts>) -> Option<f64> {
    let (up, all) = days
        .into_iter()
        .fold((0, 0), |(up, all), d| (up + d.up(), all + d.probes()));
    (all > 0).then(|| up as f64 / all as f64)
}

/// `uptime` of the days within `window` days up to `today` (stored days in any order).
pub fn uptime_within(days: &[(Day, DayCounts)], today: Day, window: u32) -> Option<f64> {
    let from = today.minus(window.saturating_sub(1));
    uptime(
        days.iter()
            .filter(|(d, _)| *d >= from && *d <= today)
            .map(|(_, c)| c),
    )
}

/// Latency percentiles of one day, or of several together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Latency {
    pub p50: Option<u64>,
    pub p95: Option<u64>,
}

/// One day of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HistoryDay {
    /// `YYYY-MM-DD`, UTC.
    pub date: String,
    pub probes: u64,
    pub healthy: u64,
    pub auth_required: u64,
    pub not_registry: u64,
    pub unreachable: u64,
    pub latency_ms: Latency,
}

/// Uptime over the last 7, 30 and 90 days (`null` when there were no probes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Uptime {
    #[serde(rename = "7d")]
    pub d7: Option<f64>,
    #[serde(rename = "30d")]
    pub d30: Option<f64>,
    #[serde(rename = "90d")]
    pub d90: Option<f64>,
}

/// The answer of `GET /container_registry/{id}/health/history`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct History {
    pub uptime: Uptime,
    /// Latency percentiles over each window, for the page.
    #[serde(skip)]
    pub latency: [Latency; 3],
    /// Every day of the window, oldest first; a day without probes has `probes: 0`.
    pub days: Vec<HistoryDay>,
}

/// The windows of [`Uptime`], in days.
pub const WINDOWS: [u32; 3] = [7, 30, 90];

impl History {
    /// The answer for the `answer_days` days up to `today`, from the stored days (any order, any
    /// range: days outside the 90 kept are ignored).
    pub fn build(stored: &[(Day, DayCounts)], today: Day, answer_days: u32) -> History {
        let windowed = |window: u32| {
            let from = today.minus(window - 1);
            let mut sum = DayCounts::default();
            for (_, c) in stored.iter().filter(|(d, _)| *d >= from && *d <= today) {
                sum.merge(c);
            }
            sum
        };
        let sums = WINDOWS.map(windowed);
        let latency = sums.map(|s| Latency {
            p50: s.percentile(0.5),
            p95: s.percentile(0.95),
        });
        let answer_days = answer_days.clamp(1, KEPT_DAYS);
        let days = (0..answer_days)
            .rev()
            .map(|back| {
                let day = today.minus(back);
                let c = stored
                    .iter()
                    .find(|(d, _)| *d == day)
                    .map(|(_, c)| *c)
                    .unwrap_or_default();
                HistoryDay {
                    date: day.iso(),
                    probes: c.probes(),
                    healthy: c.healthy,
                    auth_required: c.auth_required,
                    not_registry: c.not_registry,
                    unreachable: c.unreachable,
                    latency_ms: Latency {
                        p50: c.percentile(0.5),
                        p95: c.percentile(0.95),
                    },
                }
            })
            .collect();
        History {
            uptime: Uptime {
                d7: uptime([&sums[0]]),
                d30: uptime([&sums[1]]),
                d90: uptime([&sums[2]]),
            },
            latency,
            days,
        }
    }
}

/// Where the catalog reads the time from: the system's clock, or a test's.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    fn today(&self) -> Day {
        Day::of(self.now())
    }
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock a test sets and moves (shared: clone it into the state and keep one to move).
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn at(at: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(AtomicI64::new(at.timestamp_millis())))
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.0.fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0.load(Ordering::SeqCst))
            .single()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(h: u64, a: u64, n: u64, u: u64) -> DayCounts {
        DayCounts {
            healthy: h,
            auth_required: a,
            not_registry: n,
            unreachable: u,
            ..Default::default()
        }
    }

    #[test]
    fn days_are_utc_dates() {
        let at = Utc.with_ymd_and_hms(2026, 12, 8, 23, 59, 59).unwrap();
        let day = Day::of(at);
        assert_eq!(day.iso(), "2026-12-08");
        assert_eq!(
            Day::of(at + chrono::Duration::seconds(1)).iso(),
            "2026-12-09"
        );
        assert_eq!(Day::parse_iso("2026-12-08"), Some(day));
        assert_eq!(Day::parse_iso("1970-01-01"), Some(Day(0)));
        assert_eq!(day.minus(89), day.oldest_kept());
        assert_eq!(Day(0).epoch_secs_after(90), 90 * 86_400);
    }

    #[test]
    fn no_probes_is_no_uptime() {
        assert_eq!(uptime([]), None);
        assert_eq!(uptime([&DayCounts::default(), &DayCounts::default()]), None);
        assert_eq!(DayCounts::default().percentile(0.5), None);
    }

    #[test]
    fn all_failures_is_zero() {
        assert_eq!(uptime([&counts(0, 0, 3, 4)]), Some(0.0));
    }

    #[test]
    fn auth_required_counts_as_up() {
        assert_eq!(uptime([&counts(1, 1, 1, 1)]), Some(0.5));
        assert_eq!(uptime([&counts(0, 5, 0, 0)]), Some(1.0));
    }

    #[test]
    fn one_day_and_gaps() {
        let today = Day(20_000);
        let stored = [(today.minus(2), counts(3, 0, 0, 1))];
        let h = History::build(&stored, today, 3);
        assert_eq!(h.uptime.d7, Some(0.75));
        assert_eq!(h.uptime.d30, Some(0.75));
        assert_eq!(h.days.len(), 3);
        assert_eq!(h.days[0].date, today.minus(2).iso());
        assert_eq!(h.days[0].probes, 4);
        // days without probes are gaps: zero probes, no latency, no uptime of their own
        assert_eq!(h.days[1].probes, 0);
        assert_eq!(
            h.days[2].latency_ms,
            Latency {
                p50: None,
                p95: None
            }
        );
        assert_eq!(h.days[2].date, today.iso());
    }

    #[test]
    fn windows_cut_at_their_edge() {
        let today = Day(20_000);
        // day 7 back is outside the 7-day window, inside the 30-day one
        let stored = [
            (today.minus(6), counts(1, 0, 0, 0)),
            (today.minus(7), counts(0, 0, 0, 1)),
            (today.minus(89), counts(0, 0, 0, 2)),
            (today.minus(90), counts(0, 0, 0, 100)),
        ];
        let h = History::build(&stored, today, 30);
        assert_eq!(h.uptime.d7, Some(1.0));
        assert_eq!(h.uptime.d30, Some(0.5));
        assert_eq!(h.uptime.d90, Some(0.25));
        assert_eq!(uptime_within(&stored, today, 7), Some(1.0));
    }

    #[test]
    fn percentiles_are_bucket_bounds() {
        let mut c = DayCounts::default();
        for ms in [5, 7, 30, 40, 45, 90, 200, 300, 400, 20_000] {
            c.add(ProbeSample {
                status: HealthStatus::Healthy,
                latency_ms: Some(ms),
            });
        }
        // the 5th of 10 is 45 ms: bucket (25, 50]
        assert_eq!(c.percentile(0.5), Some(50));
        // the 10th is past every bound: the last bound
        assert_eq!(c.percentile(0.95), Some(10_000));
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(10), 0);
        assert_eq!(bucket_of(11), 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        // a probe without latency counts its verdict only
        c.add(ProbeSample {
            status: HealthStatus::Unreachable,
            latency_ms: None,
        });
        assert_eq!(c.probes(), 11);
        assert_eq!(c.latency.iter().sum::<u64>(), 10);
    }
}
