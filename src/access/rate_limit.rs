//! Abuse limits: per-client token buckets on what anyone may ask for (creates, health checks).
//!
//! A bucket holds up to `burst` requests and refills evenly over `per` (20 creates an hour: one
//! every 3 minutes, up to 20 at once). A client is its address: IPv4 whole, IPv6 by its /64 (one
//! host usually gets a whole /64). The buckets of a process are its own: inside Lambda each
//! instance counts alone, and the API Gateway throttling in `template.yaml` is the global bound.
//!
//! Memory is bounded: at most [`MAX_CLIENTS`] clients per limit (about 48 bytes each with the
//! map's overhead: 3 MiB per limit). When a limit is full, buckets that have refilled completely
//! are dropped first (a full bucket is the same as none), then the least recently used eighth.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::HeaderName;
use axum::http::request::Parts;

use crate::error::AppError;

/// Clients tracked per limit at most.
pub const MAX_CLIENTS: usize = 65_536;
/// Creates per client and hour under `--writes owners` unless set.
pub const DEFAULT_CREATES_PER_HOUR: u32 = 20;
/// Health checks (and verification requests) per client and minute under `--writes owners`
/// unless set.
pub const DEFAULT_CHECKS_PER_MINUTE: u32 = 60;

/// Where time comes from: the system's monotonic clock, or a hand-moved one in tests.
pub trait Clock: Send + Sync {
    /// Time since some fixed origin.
    fn now(&self) -> Duration;
}

/// The monotonic clock.
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A clock that moves only when told (for tests of the limits at their edges, without sleeping).
#[derive(Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(
            u64::try_from(by.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// `burst` requests per `per`, refilled evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub per: Duration,
}

impl Rate {
    pub fn per_hour(n: u32) -> Rate {
        Rate {
            burst: n,
            per: Duration::from_secs(3600),
        }
    }

    pub fn per_minute(n: u32) -> Rate {
        Rate {
            burst: n,
            per: Duration::from_secs(60),
        }
    }
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Creates,
    Checks,
}

impl Limited {
    fn what(self) -> &'static str {
        match self {
            Limited::Creates => "creates",
            Limited::Checks => "health checks",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

struct Limiter {
    rate: Rate,
    buckets: Mutex<HashMap<u128, Bucket>>,
}

impl Limiter {
    fn new(rate: Rate) -> Limiter {
        Limiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Tokens per second.
    fn refill(&self) -> f64 {
        f64::from(self.rate.burst) / self.rate.per.as_secs_f64().max(1e-9)
    }

    /// Takes one token for `client`, or says in how many whole seconds one will be there.
    fn take(&self, client: u128, now: Duration) -> Result<(), u64> {
        let burst = f64::from(self.rate.burst);
        let refill = self.refill();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(&client) && buckets.len() >= MAX_CLIENTS {
            make_room(&mut buckets, now, burst, refill);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_sub(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * refill).min(burst);
        bucket.at = now;
        // A hair of slack for floating-point rounding, so that a client that waited the
        // Retry-After it was told always finds its token.
        if bucket.tokens >= 1.0 - 1e-9 {
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
            Ok(())
        } else {
            // Whole seconds, rounded up: a client that waits that long finds a token.
            Err(((1.0 - bucket.tokens) / refill).ceil().max(1.0) as u64)
        }
    }

    fn clients(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Drops the buckets that have refilled completely, then, if that was not enough, the least
/// recently used eighth, so that a flood of new addresses costs one pass per eighth.
fn make_room(buckets: &mut HashMap<u128, Bucket>, now: Duration, burst: f64, refill: f64) {
    buckets.retain(|_, b| b.tokens + now.saturating_sub(b.at).as_secs_f64() * refill < burst);
    if buckets.len() < MAX_CLIENTS {
        return;
    }
    let mut ages: Vec<(Duration, u128)> = buckets.iter().map(|(k, b)| (b.at, *k)).collect();
    let cut = ages.len() / 8;
    ages.select_nth_unstable(cut);
    for (_, key) in &ages[..=cut] {
        buckets.remove(key);
    }
}

/// The limits of a process. Off (no limit) unless a rate is given.
pub struct RateLimits {
    creates: Option<Limiter>,
    checks: Option<Limiter>,
    clock: Arc<dyn Clock>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::new(None, None)
    }
}

impl RateLimits {
    pub fn new(creates: Option<Rate>, checks: Option<Rate>) -> RateLimits {
        RateLimits {
            creates: creates.filter(|r| r.burst > 0).map(Limiter::new),
            checks: checks.filter(|r| r.burst > 0).map(Limiter::new),
            clock: Arc::new(SystemClock::default()),
        }
    }

    /// The same limits on another clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> RateLimits {
        self.clock = clock;
        self
    }

    /// Takes one request of kind `what` for the client at `addr` (`None`: the address is
    /// unknown, and every such client shares one bucket); a 429 `rate_limited` when its bucket is
    /// empty.
    pub fn take(&self, what: Limited, addr: Option<IpAddr>) -> Result<(), AppError> {
        let limiter = match what {
            Limited::Creates => &self.creates,
            Limited::Checks => &self.checks,
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter
            .take(client_key(addr), self.clock.now())
            .map_err(|retry_after_secs| AppError::RateLimited {
                what: what.what(),
                burst: limiter.rate.burst,
                per_secs: limiter.rate.per.as_secs(),
                retry_after_secs,
            })
    }

    /// Clients tracked for `what` (for tests of the memory bound).
    pub fn clients(&self, what: Limited) -> usize {
        match what {
            Limited::Creates => self.creates.as_ref().map_or(0, Limiter::clients),
            Limited::Checks => self.checks.as_ref().map_or(0, Limiter::clients),
        }
    }

    /// The rate of each limit, for the start line.
    pub fn describe(&self) -> String {
        let one = |l: &Option<Limiter>| match l {
            Some(l) => format!("{} per {} s", l.rate.burst, l.rate.per.as_secs()),
            None => "off".into(),
        };
        format!(
            "creates {}, health checks {}",
            one(&self.creates),
            one(&self.checks)
        )
    }
}

/// A client's bucket key: an IPv4 address whole (as its IPv4-mapped IPv6 form), an IPv6 address
/// by its /64.
pub fn client_key(addr: Option<IpAddr>) -> u128 {
    match addr.map(|a| a.to_canonical()) {
        None => 0,
        Some(IpAddr::V4(v4)) => u128::from(v4.to_ipv6_mapped()),
        Some(IpAddr::V6(v6)) => u128::from(v6) & !((1u128 << 64) - 1),
    }
}

/// The client's address: inside Lambda the request context's source IP; else, when
/// `trusted_header` names one (a proxy in front that sets it), the last address in that header;
/// else the socket's peer (`ConnectInfo`, inserted by the local server's accept loop).
pub fn client_addr(parts: &Parts, trusted_header: Option<&HeaderName>) -> Option<IpAddr> {
    if let Some(context) = parts
        .extensions
        .get::<lambda_http::request::RequestContext>()
    {
        use lambda_http::request::RequestContext;
        let source = match context {
            RequestContext::ApiGatewayV2(c) => c.http.source_ip.as_deref(),
            RequestContext::ApiGatewayV1(c) => c.identity.source_ip.as_deref(),
            _ => None,
        };
        if let Some(ip) = source.and_then(|s| s.parse().ok()) {
            return Some(ip);
        }
    }
    if let Some(name) = trusted_header
        && let Some(ip) = parts
            .headers
            .get_all(name)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| parse_forwarded_ip(v.trim()))
    {
        return Some(ip);
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// An address as a proxy writes it: bare, or with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_forwarded_ip(v: &str) -> Option<IpAddr> {
    v.parse::<IpAddr>()
        .ok()
        .or_else(|| v.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_64_and_ipv4_whole() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(Some(a)), client_key(Some(b)));
        assert_ne!(client_key(Some(a)), client_key(Some(c)));
        let v4: IpAddr = "203.0.113.1".parse().unwrap();
        let v4b: IpAddr = "203.0.113.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.1".parse().unwrap();
        assert_ne!(client_key(Some(v4)), client_key(Some(v4b)));
        assert_eq!(client_key(Some(v4)), client_key(Some(mapped)));
        assert_ne!(client_key(Some(v4)), client_key(None));
    }

    #[test]
    fn a_client_that_waits_its_retry_after_gets_through_at_any_rate() {
        for (burst, per) in [(3, 3600), (7, 3600), (20, 3600), (60, 60), (13, 77)] {
            let limiter = Limiter::new(Rate {
                burst,
                per: Duration::from_secs(per),
            });
            let mut now = Duration::ZERO;
            for _ in 0..burst {
                limiter.take(1, now).unwrap();
            }
            for _ in 0..5 {
                let wait = limiter.take(1, now).unwrap_err();
                now += Duration::from_secs(wait);
                assert!(
                    limiter.take(1, now).is_ok(),
                    "{burst}/{per} s after {wait} s"
                );
            }
        }
    }

    #[test]
    fn forwarded_addresses_with_ports() {
        assert_eq!(
            parse_forwarded_ip("[2001:db8::1]:443"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_forwarded_ip("198.51.100.7:80"),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(parse_forwarded_ip("unknown"), None);
    }
}
