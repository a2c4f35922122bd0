//! The prober: one health probe, `GET {public_url}/v2/` (the OCI distribution-spec base endpoint),
//! and its verdict as a [`ProbeResult`] (`result.rs`).
//!
//! Verdicts (see the module docs of `health` for the whole policy):
//! - `healthy`: a 2xx that carries `Docker-Distribution-API-Version` or whose body is a JSON object (an
//!   HTML page served with 200 at `/v2/` is not a registry);
//! - `auth_required`: a 401 with a parseable `WWW-Authenticate` challenge (Basic or Bearer);
//! - `not_registry`: any other HTTP answer (404, 500, 401 without challenge, a 2xx that is neither,
//!   a 429 that persisted, a redirect chain that ended on a 3xx);
//! - `unreachable`: no HTTP answer: DNS failure, refused connection, TLS failure, timeout, or the
//!   address policy refused the target or a redirect hop.
//!
//! Every result leaves [`Prober::probe`] through [`ProbeResult::bounded`], which cuts every string to
//! the caps of [`super::limits`].

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use tokio::sync::Semaphore;
use tokio::time::timeout_at;
use url::{Host, Url};

use super::challenge::parse_challenge;
use super::guard::{AddressPolicy, Refusal, RuntimeApi};
use super::limits::{MAX_TEXT_BYTES, MAX_URL_BYTES, cap};
use super::resolve::{DnsResolver, GuardedResolve, ResolveFailed, Resolver};
use super::result::{HealthStatus, ProbeResult};
use super::target::parse_registry_url;

/// The user agent every probe sends, so registry operators can tell who is knocking, and so this
/// service (any version of it) can tell that a request is one of its own probes: see
/// [`is_probe_user_agent`].
pub const USER_AGENT: &str = concat!(
    "registry-db/",
    env!("CARGO_PKG_VERSION"),
    " (OCI registry health probe; no credentials)"
);

/// The part of [`USER_AGENT`] that every version of this service sends.
const USER_AGENT_MARK: &str = "(OCI registry health probe;";

/// True when a request carries the user agent of a registry-db probe: the health check endpoint
/// refuses such requests, so a probe can never cause another probe.
pub fn is_probe_user_agent(user_agent: &str) -> bool {
    user_agent.starts_with("registry-db/") && user_agent.contains(USER_AGENT_MARK)
}

/// Probes in flight at once, on-demand checks and sweeps together (`--probe-max-in-flight`).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// The timeout of one probe unless `--probe-timeout-ms` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5000);

/// The longest a probe waits on a `429 Too Many Requests` before its one retry, whatever
/// `Retry-After` asks for. The retry also has to fit in what is left of the probe's timeout.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(2);

/// The header that marks an answer as coming from a registry.
const API_VERSION_HEADER: &str = "docker-distribution-api-version";

/// How a probe behaves. `Default` gives the service's defaults.
#[derive(Clone)]
pub struct ProbeConfig {
    /// Bounds the whole probe: connecting, every redirect hop, the 429 retry and reading the body.
    pub timeout: Duration,
    /// Let probes reach 127.0.0.0/8 and ::1 (`--probe-allow-loopback`).
    pub allow_loopback: bool,
    /// At most this many bytes of a response body are read (only 2xx bodies without the API version
    /// header are read at all, to tell a JSON API from an HTML page).
    pub max_body_bytes: usize,
    /// Redirects followed, each hop checked against the address policy; 0 follows none.
    pub max_redirects: usize,
    /// How host names become addresses; every address is checked before it is connected to.
    pub resolver: Arc<dyn Resolver>,
    /// Probes in flight at once through this prober and its clones; more wait for a slot.
    pub max_in_flight: usize,
    /// Ranges refused on top of the built-in rules (`--probe-deny`).
    pub deny: Vec<IpNet>,
    /// Inside Lambda, the runtime API's host (`AWS_LAMBDA_RUNTIME_API`): refused whatever
    /// `allow_loopback` says.
    pub lambda_runtime_api: Option<RuntimeApi>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            allow_loopback: false,
            max_body_bytes: 64 * 1024,
            max_redirects: 3,
            resolver: Arc::new(DnsResolver::default()),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            deny: Vec::new(),
            lambda_runtime_api: None,
        }
    }
}

impl fmt::Debug for ProbeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeConfig")
            .field("timeout", &self.timeout)
            .field("allow_loopback", &self.allow_loopback)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_redirects", &self.max_redirects)
            .field("max_in_flight", &self.max_in_flight)
            .field("deny", &self.deny)
            .field("lambda_runtime_api", &self.lambda_runtime_api)
            .finish_non_exhaustive()
    }
}

/// Every probe slot was taken for as long as the caller was willing to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("all {max_in_flight} probe slots are in use; try again shortly")]
pub struct ProbeBusy {
    pub max_in_flight: usize,
}

/// Probes registries. Cheap to clone: clones share one HTTP client.
#[derive(Clone)]
pub struct Prober {
    /// Built at the first probe: it needs the system's root certificates (`crate::tls`), which a
    /// Lambda cold start does not wait for (`main.rs`).
    client: Arc<OnceLock<Result<reqwest::Client, String>>>,
    cfg: Arc<ProbeConfig>,
    pub(super) policy: Arc<AddressPolicy>,
    /// One permit per probe in flight, shared by every clone: on-demand checks and sweeps together.
    pub(super) slots: Arc<Semaphore>,
    /// Manifest bodies being read at once (`oci::MAX_MANIFEST_READS`), so that reads of up to
    /// 4 MiB each hold at most 64 MiB together, whatever the slots allow.
    pub(super) manifest_reads: Arc<Semaphore>,
}

impl fmt::Debug for Prober {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prober")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Why a probe got no HTTP answer.
pub(super) struct Failure {
    pub(super) message: String,
    pub(super) refused_by: Option<&'static str>,
}

impl Failure {
    pub(super) fn plain(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            refused_by: None,
        }
    }

    fn after_redirect(mut self, redirected_from: Option<&Url>) -> Self {
        if let Some(from) = redirected_from {
            self.message.push_str(&format!(
                " (reached by a redirect from {})",
                cap(from.as_str(), MAX_TEXT_BYTES)
            ));
        }
        self
    }

    pub(super) fn refused(refusal: &Refusal, redirected_from: Option<&Url>) -> Self {
        Self {
            message: refusal.to_string(),
            refused_by: Some(refusal.rule.name),
        }
        .after_redirect(redirected_from)
    }
}

/// The final HTTP answer of one request chain.
struct Answer {
    response: reqwest::Response,
    latency: Duration,
    /// Set when the chain stopped on a redirect it would not follow.
    stopped_redirect: Option<String>,
}

impl Prober {
    /// Builds the prober. Its HTTP client is built at the first probe.
    pub fn new(cfg: ProbeConfig) -> Prober {
        let policy = Arc::new(AddressPolicy {
            allow_loopback: cfg.allow_loopback,
            deny: cfg.deny.clone(),
            runtime_api: cfg.lambda_runtime_api.clone(),
        });
        let slots = Arc::new(Semaphore::new(cfg.max_in_flight.max(1)));
        Prober {
            client: Arc::default(),
            cfg: Arc::new(cfg),
            policy,
            slots,
            manifest_reads: Arc::new(Semaphore::new(super::oci::MAX_MANIFEST_READS)),
        }
    }

    /// # Panics
    /// When the TLS backend cannot initialise: a broken installation (no root certificates), not a
    /// runtime condition, which `registry-db serve` and `sweep` report at start.
    pub(super) fn client(&self) -> &reqwest::Client {
        self.client
            .get_or_init(|| build_client(&self.cfg, &self.policy))
            .as_ref()
            .unwrap_or_else(|e| panic!("the probe's HTTP client (rustls) could not be built: {e}"))
    }

    pub fn config(&self) -> &ProbeConfig {
        &self.cfg
    }

    /// The most probes a sweep runs at once: three quarters of the global cap, so that on-demand
    /// checks always find a quarter of the slots free during a sweep.
    pub fn sweep_slots(&self) -> usize {
        let max = self.cfg.max_in_flight.max(1);
        (max - max / 4).max(1)
    }

    /// Probes `{public_url}/v2/`, waiting as long as it takes for a probe slot. Never fails: every
    /// outcome is a [`ProbeResult`], and once the probe has its slot it comes back within the
    /// configured timeout (plus a few milliseconds).
    pub async fn probe(&self, public_url: &str) -> ProbeResult {
        let _slot = self.slots.acquire().await;
        self.probe_now(public_url).await
    }

    /// [`Self::probe`], if a probe slot frees up within `wait`; otherwise [`ProbeBusy`] and no probe.
    pub async fn probe_within(
        &self,
        public_url: &str,
        wait: Duration,
    ) -> Result<ProbeResult, ProbeBusy> {
        let busy = ProbeBusy {
            max_in_flight: self.cfg.max_in_flight.max(1),
        };
        let _slot = match tokio::time::timeout(wait, self.slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) | Err(_) => return Err(busy),
        };
        Ok(self.probe_now(public_url).await)
    }

    async fn probe_now(&self, public_url: &str) -> ProbeResult {
        // Called with a slot held: counted as in use until the probe ends.
        let _in_use = crate::metrics::SlotInUse::take();
        let started = std::time::Instant::now();
        let checked_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        let result = match probe_url(public_url) {
            Ok(url) => self.probe_url(&url, deadline, checked_at).await,
            Err(message) => unreachable(public_url.to_owned(), checked_at, Failure::plain(message)),
        }
        .bounded();
        tracing::debug!(url = %result.url, status = %result.status, error = ?result.error, "probed");
        crate::metrics::probe(result.status.as_str(), started.elapsed());
        result
    }

    async fn probe_url(
        &self,
        url: &Url,
        deadline: tokio::time::Instant,
        checked_at: String,
    ) -> ProbeResult {
        let mut answer = match self.exchange_by(url, deadline).await {
            Ok(answer) => answer,
            Err(failure) => return unreachable(url.to_string(), checked_at, failure),
        };
        let mut note_429 = None;
        if answer.response.status() == StatusCode::TOO_MANY_REQUESTS {
            // Honour Retry-After once, when it is given and fits in the time left; otherwise the
            // 429 is the answer. If the retry gets no answer at all, the 429 still stands.
            match retry_delay(answer.response.headers(), deadline) {
                Some(delay) => {
                    tokio::time::sleep(delay).await;
                    match self.exchange_by(url, deadline).await {
                        Ok(retried) => {
                            answer = retried;
                            note_429 = Some(format!(
                                "retried once after {} ms as Retry-After asked",
                                delay.as_millis()
                            ));
                        }
                        Err(failure) => {
                            note_429 = Some(format!(
                                "the retry after {} ms got no answer: {}",
                                delay.as_millis(),
                                failure.message
                            ));
                        }
                    }
                }
                None => {
                    note_429 = Some(match answer.response.headers().get(RETRY_AFTER) {
                        None => "no Retry-After to honour, not retried".to_owned(),
                        Some(_) => "its Retry-After does not fit in the probe timeout, not retried"
                            .to_owned(),
                    });
                }
            }
        }
        self.judge(url, answer, deadline, checked_at, note_429)
            .await
    }

    /// [`Self::exchange`] bounded by the probe's deadline.
    async fn exchange_by(
        &self,
        url: &Url,
        deadline: tokio::time::Instant,
    ) -> Result<Answer, Failure> {
        match timeout_at(deadline, self.exchange(url)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::plain(format!(
                "timed out after {} ms waiting for {}",
                self.cfg.timeout.as_millis(),
                authority(url)
            ))),
        }
    }

    /// One request chain: GET, following at most `max_redirects` redirects, each hop checked.
    async fn exchange(&self, start: &Url) -> Result<Answer, Failure> {
        let started = Instant::now();
        let mut url = start.clone();
        let mut previous: Option<Url> = None;
        let mut hops = 0;
        loop {
            // IP literals never reach the resolver, so they are checked here, hop by hop.
            let literal = match url.host() {
                Some(Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
                Some(Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
                _ => None,
            };
            if let Some(Err(refusal)) = literal.map(|ip| self.policy.check(ip)) {
                return Err(Failure::refused(&refusal, previous.as_ref()));
            }
            let response = match self.client().get(url.clone()).send().await {
                Ok(response) => response,
                Err(err) => return Err(describe_send_error(&err, &url, previous.as_ref())),
            };
            let status = response.status();
            if !status.is_redirection() {
                return Ok(Answer {
                    response,
                    latency: started.elapsed(),
                    stopped_redirect: None,
                });
            }
            let Some(location) = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
            else {
                return Ok(Answer {
                    response,
                    latency: started.elapsed(),
                    stopped_redirect: None,
                });
            };
            let stop = |why: String| Answer {
                response,
                latency: started.elapsed(),
                stopped_redirect: Some(why),
            };
            // The Location is the server's text: quoted capped, whatever happens next.
            let shown = cap(&location, MAX_TEXT_BYTES);
            if hops >= self.cfg.max_redirects {
                return Ok(stop(format!(
                    "redirects to {shown}, and the probe follows at most {} redirects",
                    self.cfg.max_redirects
                )));
            }
            if location.len() > MAX_URL_BYTES {
                return Ok(stop(format!(
                    "redirects to {shown} ({} bytes), longer than the {MAX_URL_BYTES} bytes a followed redirect may be",
                    location.len()
                )));
            }
            let mut next = match url.join(&location) {
                Ok(next) => next,
                Err(e) => {
                    return Ok(stop(format!(
                        "redirects to {shown:?}, which is not a usable URL ({e})"
                    )));
                }
            };
            if !matches!(next.scheme(), "http" | "https") {
                return Ok(stop(format!(
                    "redirects to {shown}, and only http and https are followed"
                )));
            }
            // Only to another registry's base: anything else would let a listed "registry" aim the
            // service's GETs at any path and query of any allowed host (this service's own
            // endpoints included).
            if !is_oci_base(&next) {
                return Ok(stop(format!(
                    "redirects to {shown}, which is not an OCI registry base (a path ending in /v2/ or /v2, without a query): not followed"
                )));
            }
            // No credentials on any hop.
            let _ = next.set_username("");
            let _ = next.set_password(None);
            next.set_fragment(None);
            hops += 1;
            previous = Some(std::mem::replace(&mut url, next));
        }
    }

    /// Turns the final answer into a verdict, reading the body when the verdict depends on it.
    async fn judge(
        &self,
        url: &Url,
        answer: Answer,
        deadline: tokio::time::Instant,
        checked_at: String,
        note_429: Option<String>,
    ) -> ProbeResult {
        let Answer {
            mut response,
            latency,
            stopped_redirect,
        } = answer;
        let status = response.status();
        let headers = response.headers();
        let api_version = header_text(headers, API_VERSION_HEADER);
        let challenge = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_challenge);
        let content_type = header_text(headers, "content-type");
        let said = format!("answered {}", status_words(status));

        let (verdict, error) = if let Some(why) = stopped_redirect {
            (HealthStatus::NotRegistry, Some(format!("{said} and {why}")))
        } else if status.is_success() {
            if api_version.is_some() {
                (HealthStatus::Healthy, None)
            } else {
                let (body, truncated) =
                    read_capped(&mut response, self.cfg.max_body_bytes, deadline).await;
                let is_json_object = !truncated
                    && matches!(
                        serde_json::from_slice::<serde_json::Value>(&body),
                        Ok(serde_json::Value::Object(_))
                    );
                if is_json_object {
                    (HealthStatus::Healthy, None)
                } else {
                    let what = match &content_type {
                        Some(ct) => format!("a {} body", cap(ct, MAX_TEXT_BYTES)),
                        None => "a body".to_owned(),
                    };
                    (
                        HealthStatus::NotRegistry,
                        Some(format!(
                            "{said} with {what} that is not JSON and no Docker-Distribution-API-Version header: not an OCI registry API"
                        )),
                    )
                }
            }
        } else if status == StatusCode::UNAUTHORIZED {
            if challenge.is_some() {
                (HealthStatus::AuthRequired, None)
            } else {
                (
                    HealthStatus::NotRegistry,
                    Some(format!(
                        "{said} without a WWW-Authenticate challenge: not an OCI registry API"
                    )),
                )
            }
        } else {
            (
                HealthStatus::NotRegistry,
                Some(format!("{said}: not an OCI registry API")),
            )
        };

        let error = match (error, note_429) {
            (Some(e), Some(n)) if status == StatusCode::TOO_MANY_REQUESTS => {
                Some(format!("{e} ({n})"))
            }
            (e, _) => e,
        };
        ProbeResult {
            url: url.to_string(),
            reachable: true,
            status_code: Some(status.as_u16()),
            reason: status.canonical_reason().map(str::to_owned),
            status: verdict,
            latency_ms: Some(latency.as_millis() as u64),
            api_version,
            challenge,
            checked_at,
            error,
            refused_by: None,
            uptime_30d: None,
        }
    }
}

fn unreachable(url: String, checked_at: String, failure: Failure) -> ProbeResult {
    ProbeResult {
        url,
        reachable: false,
        status_code: None,
        reason: None,
        status: HealthStatus::Unreachable,
        latency_ms: None,
        api_version: None,
        challenge: None,
        checked_at,
        error: Some(failure.message),
        refused_by: failure.refused_by.map(str::to_owned),
        uptime_30d: None,
    }
}

/// The URL a probe fetches: `{public_url}/v2/`, the public URL read by [`parse_registry_url`] exactly
/// as entry validation reads it; credentials, query and fragment are dropped (no credentials are ever
/// sent); a path that already ends in `/v2` is not doubled.
pub fn probe_url(public_url: &str) -> Result<Url, String> {
    if public_url.is_empty() {
        return Err("the entry has no public URL to probe".to_owned());
    }
    let mut url = parse_registry_url(public_url).map_err(|e| {
        format!(
            "the public URL {:?} cannot be probed: it {e}",
            cap(public_url, MAX_TEXT_BYTES)
        )
    })?;
    strip_secrets(&mut url);
    let base = url.path().trim_end_matches('/');
    let base = base.strip_suffix("/v2").unwrap_or(base).to_owned();
    url.set_path(&format!("{base}/v2/"));
    Ok(url)
}

/// A registry's API base: a path ending in `/v2/` or `/v2`, and no query.
fn is_oci_base(url: &Url) -> bool {
    url.query().is_none() && (url.path().ends_with("/v2/") || url.path().ends_with("/v2"))
}

fn strip_secrets(url: &mut Url) {
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
}

/// "host:port" of a URL, for messages.
pub(super) fn authority(url: &Url) -> String {
    let host = match url.host() {
        Some(Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(host) => host.to_string(),
        None => String::new(),
    };
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

pub(super) fn status_words(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

pub(super) fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
}

/// How long to wait before the one retry of a 429: `Retry-After` (seconds or an HTTP date), capped at
/// [`RETRY_AFTER_CAP`]; `None` when there is no usable `Retry-After` or the wait plus a little room for
/// the retry itself would not fit before the deadline.
fn retry_delay(headers: &HeaderMap, deadline: tokio::time::Instant) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let asked = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    let delay = asked.min(RETRY_AFTER_CAP);
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    // Leave at least a fifth of what is left for the retry's own round trip.
    (delay + left / 5 < left).then_some(delay)
}

/// Reads at most `cap` bytes of the body before `deadline`; `true` when there was more (or the read
/// stopped early), so the body is not a complete document.
pub(super) async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
    deadline: tokio::time::Instant,
) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        match timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                let room = cap - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    return (body, true);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Ok(None)) => return (body, false),
            Ok(Err(_)) | Err(_) => return (body, true),
        }
    }
}

/// The probes' HTTP client: the process's one TLS setup (`crate::tls`), no proxy (whatever
/// `HTTP_PROXY` says), no automatic redirects (they are followed hop by hop), no connection reuse,
/// every host name resolved through the guarded resolver.
fn build_client(cfg: &ProbeConfig, policy: &Arc<AddressPolicy>) -> Result<reqwest::Client, String> {
    let resolver = GuardedResolve {
        inner: Arc::clone(&cfg.resolver),
        policy: Arc::clone(policy),
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(crate::tls::client_config()?)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .user_agent(USER_AGENT)
        .dns_resolver(Arc::new(resolver))
        // No connect timeout of its own: the probe's deadline bounds resolving and connecting
        // together, and says so in one sentence.
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| e.to_string())
}

/// Words for a request that got no answer, dug out of reqwest's error source chain.
pub(super) fn describe_send_error(
    err: &reqwest::Error,
    url: &Url,
    redirected_from: Option<&Url>,
) -> Failure {
    let target = authority(url);
    let mut io_kind = None;
    let mut innermost = err.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(refusal) = e.downcast_ref::<Refusal>() {
            return Failure::refused(refusal, redirected_from);
        }
        if let Some(failed) = e.downcast_ref::<ResolveFailed>() {
            return Failure::plain(failed.to_string()).after_redirect(redirected_from);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        innermost = e.to_string();
        source = e.source();
    }
    use std::io::ErrorKind::*;
    let message = match io_kind {
        Some(ConnectionRefused) => format!("connection refused by {target}"),
        Some(ConnectionReset) => format!("connection reset by {target}"),
        Some(NetworkUnreachable) => format!("network unreachable: no route to {target}"),
        Some(HostUnreachable) => format!("host unreachable: no route to {target}"),
        Some(TimedOut) => format!("connecting to {target} timed out"),
        _ => {
            let lower = innermost.to_ascii_lowercase();
            if url.scheme() == "https"
                && ["certificate", "tls", "handshake", "alert", "ssl"]
                    .iter()
                    .any(|w| lower.contains(w))
            {
                format!("TLS handshake with {target} failed: {innermost}")
            } else if err.is_connect() {
                format!("could not connect to {target}: {innermost}")
            } else {
                format!("no HTTP answer from {target}: {innermost}")
            }
        }
    };
    Failure::plain(message).after_redirect(redirected_from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_url_appends_v2_and_drops_secrets() {
        let cases = [
            ("http://10.13.21.22:32633", "http://10.13.21.22:32633/v2/"),
            ("http://10.13.21.22:32633/", "http://10.13.21.22:32633/v2/"),
            (
                "https://registry.example.com/v2/",
                "https://registry.example.com/v2/",
            ),
            (
                "https://registry.example.com/v2",
                "https://registry.example.com/v2/",
            ),
            (
                "https://example.com/prefix/",
                "https://example.com/prefix/v2/",
            ),
            (
                "http://user:secret@example.com/?token=x#f",
                "http://example.com/v2/",
            ),
            ("http://[::1]:5000", "http://[::1]:5000/v2/"),
        ];
        for (input, want) in cases {
            assert_eq!(probe_url(input).unwrap().as_str(), want, "{input}");
        }
        // read exactly as entry validation reads it: nothing forgiven, nothing guessed
        for (input, words) in [
            ("", "no public URL"),
            ("ftp://example.com", "must use http or https"),
            ("http://", "must name a host"),
            ("registry.example.com:5000", "must start with http://"),
            (" http://[::1]:5000 ", "whitespace"),
            ("http:/169.254.169.254", "must start with http://"),
            ("http://169.254.169.254/\r\n", "control character"),
        ] {
            let err = probe_url(input).unwrap_err();
            assert!(err.contains(words), "{input:?}: {err}");
        }
    }

    #[test]
    fn only_registry_bases_are_redirect_targets() {
        for (url, ok) in [
            ("http://a.test/v2/", true),
            ("http://a.test/v2", true),
            ("http://a.test/mirror/v2/", true),
            ("http://a.test/v2/?x=1", false),
            ("http://a.test/check_container_health/x", false),
            ("http://a.test/v2/_catalog", false),
            ("http://a.test/", false),
            ("http://a.test/v20", false),
        ] {
            assert_eq!(is_oci_base(&Url::parse(url).unwrap()), ok, "{url}");
        }
    }

    #[test]
    fn the_probe_user_agent_is_recognised_across_versions() {
        assert!(is_probe_user_agent(USER_AGENT));
        assert!(is_probe_user_agent(
            "registry-db/9.9.9 (OCI registry health probe; no credentials)"
        ));
        for other in [
            "curl/8.0",
            "registry-db/0.1.0",
            "Mozilla/5.0 (OCI registry health probe; x)",
            "",
        ] {
            assert!(!is_probe_user_agent(other), "{other}");
        }
    }

    #[test]
    fn retry_after_is_capped_and_must_fit() {
        let mut h = HeaderMap::new();
        let far = tokio::time::Instant::now() + Duration::from_secs(60);
        let near = tokio::time::Instant::now() + Duration::from_millis(500);
        assert_eq!(retry_delay(&h, far), None);
        h.insert(RETRY_AFTER, "1".parse().unwrap());
        assert_eq!(retry_delay(&h, far), Some(Duration::from_secs(1)));
        assert_eq!(retry_delay(&h, near), None);
        h.insert(RETRY_AFTER, "3600".parse().unwrap());
        assert_eq!(retry_delay(&h, far), Some(RETRY_AFTER_CAP));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_delay(&h, far), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_delay(&h, far), None);
    }
}
