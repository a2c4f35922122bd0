//! One health probe: `GET {public_url}/v2/`, the OCI distribution-spec base endpoint, and its verdict.
//!
//! Verdicts (see the module docs of `health` for the whole policy):
//! - `healthy`: a 2xx that carries `Docker-Distribution-API-Version` or whose body is a JSON object (an
//!   HTML page served with 200 at `/v2/` is not a registry);
//! - `auth_required`: a 401 with a parseable `WWW-Authenticate` challenge (Basic or Bearer);
//! - `not_registry`: any other HTTP answer (404, 500, 401 without challenge, a 2xx that is neither,
//!   a 429 that persisted, a redirect chain that ended on a 3xx);
//! - `unreachable`: no HTTP answer: DNS failure, refused connection, TLS failure, timeout, or the
//!   address policy refused the target or a redirect hop.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use serde::{Deserialize, Serialize};
use tokio::time::timeout_at;
use url::{Host, Url};

use super::guard::{AddressPolicy, Refusal};
use super::resolve::{GuardedResolve, ResolveFailed, Resolver, SystemResolver};

/// The user agent every probe sends, so registry operators can tell who is knocking.
pub const USER_AGENT: &str = concat!(
    "registry-db/",
    env!("CARGO_PKG_VERSION"),
    " (OCI registry health probe; no credentials)"
);

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
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(5000),
            allow_loopback: false,
            max_body_bytes: 64 * 1024,
            max_redirects: 3,
            resolver: Arc::new(SystemResolver),
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
            .finish_non_exhaustive()
    }
}

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
}

impl ProbeResult {
    /// A registry answered: healthy or auth_required. The HTTP endpoint answers 200 then.
    pub fn answered(&self) -> bool {
        matches!(
            self.status,
            HealthStatus::Healthy | HealthStatus::AuthRequired
        )
    }
}

/// Probes registries. Cheap to clone: clones share one HTTP client.
#[derive(Clone)]
pub struct Prober {
    client: reqwest::Client,
    cfg: Arc<ProbeConfig>,
    policy: AddressPolicy,
}

impl fmt::Debug for Prober {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prober")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Why a probe got no HTTP answer.
struct Failure {
    message: String,
    refused_by: Option<&'static str>,
}

impl Failure {
    fn plain(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            refused_by: None,
        }
    }

    fn after_redirect(mut self, redirected_from: Option<&Url>) -> Self {
        if let Some(from) = redirected_from {
            self.message
                .push_str(&format!(" (reached by a redirect from {from})"));
        }
        self
    }

    fn refused(refusal: &Refusal, redirected_from: Option<&Url>) -> Self {
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
    /// Builds the prober and its HTTP client: no proxy (whatever `HTTP_PROXY` says), no automatic
    /// redirects (they are followed here, hop by hop), no connection reuse, every host name resolved
    /// through the guarded resolver.
    ///
    /// # Panics
    /// When the TLS backend cannot initialise, which is a broken installation, not a runtime condition.
    pub fn new(cfg: ProbeConfig) -> Prober {
        let policy = AddressPolicy::new(cfg.allow_loopback);
        let resolver = GuardedResolve {
            inner: Arc::clone(&cfg.resolver),
            policy,
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .user_agent(USER_AGENT)
            .dns_resolver(Arc::new(resolver))
            .connect_timeout(cfg.timeout)
            .pool_max_idle_per_host(0)
            .build()
            .expect("the probe's HTTP client (rustls) could not be built");
        Prober {
            client,
            cfg: Arc::new(cfg),
            policy,
        }
    }

    pub fn config(&self) -> &ProbeConfig {
        &self.cfg
    }

    /// Probes `{public_url}/v2/`. Never fails: every outcome is a [`ProbeResult`], and it comes back
    /// within the configured timeout (plus a few milliseconds).
    pub async fn probe(&self, public_url: &str) -> ProbeResult {
        let checked_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        let url = match probe_url(public_url) {
            Ok(url) => url,
            Err(message) => {
                return unreachable(
                    public_url.trim().to_owned(),
                    checked_at,
                    Failure::plain(message),
                );
            }
        };
        let result = self.probe_url(&url, deadline, checked_at).await;
        tracing::debug!(url = %result.url, status = %result.status, error = ?result.error, "probed");
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
            let response = match self.client.get(url.clone()).send().await {
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
            if hops >= self.cfg.max_redirects {
                return Ok(stop(format!(
                    "redirects to {location}, and the probe follows at most {} redirects",
                    self.cfg.max_redirects
                )));
            }
            let mut next = match url.join(&location) {
                Ok(next) => next,
                Err(e) => {
                    return Ok(stop(format!(
                        "redirects to {location:?}, which is not a usable URL ({e})"
                    )));
                }
            };
            if !matches!(next.scheme(), "http" | "https") {
                return Ok(stop(format!(
                    "redirects to {next}, and only http and https are followed"
                )));
            }
            // No credentials on any hop; the query stays (it is the server's own redirect).
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
                        Some(ct) => format!("a {ct} body"),
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
    }
}

/// The URL a probe fetches: `{public_url}/v2/`. A URL without a scheme is taken as https (as docker
/// does); credentials, query and fragment are dropped (no credentials are ever sent); a path that
/// already ends in `/v2` is not doubled.
pub fn probe_url(public_url: &str) -> Result<Url, String> {
    let raw = public_url.trim();
    if raw.is_empty() {
        return Err("the entry has no public URL to probe".to_owned());
    }
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("https://{raw}")
    };
    let mut url =
        Url::parse(&with_scheme).map_err(|e| format!("{raw:?} is not a usable URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "only http and https URLs are probed, not {}:",
            url.scheme()
        ));
    }
    if url.host().is_none() {
        return Err(format!("{raw:?} has no host to probe"));
    }
    strip_secrets(&mut url);
    let base = url.path().trim_end_matches('/');
    let base = base.strip_suffix("/v2").unwrap_or(base).to_owned();
    url.set_path(&format!("{base}/v2/"));
    Ok(url)
}

fn strip_secrets(url: &mut Url) {
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
}

/// "host:port" of a URL, for messages.
fn authority(url: &Url) -> String {
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

fn status_words(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
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
async fn read_capped(
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

/// Words for a request that got no answer, dug out of reqwest's error source chain.
fn describe_send_error(err: &reqwest::Error, url: &Url, redirected_from: Option<&Url>) -> Failure {
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

/// Parses the first challenge of a `WWW-Authenticate` value: `Scheme k="v", k2=v2, ...`.
/// Quoted values may contain commas and backslash escapes. `None` when there is no scheme.
pub fn parse_challenge(header: &str) -> Option<AuthChallenge> {
    let mut rest = header.trim_start();
    let scheme_end = rest
        .find(|c: char| c.is_whitespace() || c == ',')
        .unwrap_or(rest.len());
    let scheme = &rest[..scheme_end];
    if scheme.is_empty() || scheme.contains('=') || scheme.contains('"') {
        return None;
    }
    let mut challenge = AuthChallenge {
        scheme: scheme.to_owned(),
        realm: None,
        service: None,
        scope: None,
    };
    rest = &rest[scheme_end..];
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace() || c == ',')
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let after_key = rest[key_end..].trim_start();
        let Some(after_eq) = after_key.strip_prefix('=') else {
            break; // the next challenge's scheme: only the first challenge is kept
        };
        let after_eq = after_eq.trim_start();
        let value;
        if let Some(quoted) = after_eq.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            out.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            value = out;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = after_eq
                .find(|c: char| c == ',' || c.is_whitespace())
                .unwrap_or(after_eq.len());
            value = after_eq[..end].to_owned();
            rest = &after_eq[end..];
        }
        match key.to_ascii_lowercase().as_str() {
            "realm" => challenge.realm = Some(value),
            "service" => challenge.service = Some(value),
            "scope" => challenge.scope = Some(value),
            _ => {}
        }
    }
    Some(challenge)
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
                "registry.example.com:5000",
                "https://registry.example.com:5000/v2/",
            ),
            (
                "http://user:secret@example.com/?token=x#f",
                "http://example.com/v2/",
            ),
            (" http://[::1]:5000 ", "http://[::1]:5000/v2/"),
        ];
        for (input, want) in cases {
            assert_eq!(probe_url(input).unwrap().as_str(), want, "{input}");
        }
        assert!(probe_url("").is_err());
        assert!(
            probe_url("ftp://example.com")
                .unwrap_err()
                .contains("only http and https")
        );
        assert!(probe_url("http://").is_err());
    }

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "Bearer");
        assert_eq!(c.realm.as_deref(), Some("https://auth.docker.io/token"));
        assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(
            c.scope.as_deref(),
            Some("repository:samalba/my-app:pull,push")
        );
    }

    #[test]
    fn parses_basic_and_odd_spacing() {
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.realm.as_deref()),
            ("Basic", Some("Registry Realm"))
        );
        let c =
            parse_challenge(r#"  bearer  realm = "a\"b" , service=svc , Basic realm="x""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.realm.as_deref(), Some("a\"b"));
        assert_eq!(c.service.as_deref(), Some("svc"));
        assert!(parse_challenge("").is_none());
        assert!(parse_challenge("realm=\"x\"").is_none());
        assert_eq!(parse_challenge("Negotiate").unwrap().scheme, "Negotiate");
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
