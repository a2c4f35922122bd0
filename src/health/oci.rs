//! The OCI read client: one manifest of one repository, read anonymously, beside the prober and
//! through the same HTTP client (the address guard on every hop, the resolver, no proxy, no
//! connection reuse), the same probe slots and the same timeout.
//!
//! What it sends: `HEAD` (a lookup) or `GET` (platforms, a verification proof) of
//! `{public_url}/v2/<repository>/manifests/<tag or digest>` with the OCI and Docker manifest media
//! types in `Accept`; on a `401` with `WWW-Authenticate: Bearer realm=...`, one anonymous `GET` of
//! the realm (`?service=...&scope=repository:<repository>:pull`) and one retry with the token it
//! answers. Never credentials of any kind.
//!
//! The rules, each named in `refused_by` when it refuses:
//! - the address policy ([`super::guard`]) on the registry, every redirect hop and the realm;
//! - `token-realm-scheme`: the realm is `https`, or plain `http` only on the registry's own host
//!   when the registry itself is plain `http`;
//! - `token-realm-redirect`: a realm that redirects is not followed;
//! - `token-answer-size`: the realm's answer is read up to [`MAX_TOKEN_ANSWER_BYTES`];
//! - `manifest-redirect`: a manifest is read from the registry itself: a redirect to another
//!   origin (scheme, host, port) is not followed, so the token never leaves the registry;
//! - `manifest-size`: a manifest is read up to [`MAX_MANIFEST_BYTES`];
//! - `index-entries`: an index lists at most [`MAX_INDEX_ENTRIES`] manifests;
//! - `manifest-digest`: a manifest read by digest must hash to that digest.
//!
//! A Basic (or any other) challenge, a realm that refuses or cannot be used, and a token the
//! registry refuses all end as `credentials_required`. The token lives in this function's frame:
//! never stored, logged, or sent anywhere but the registry's origin.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::timeout_at;
use url::{Host, Url};

use super::challenge::parse_challenge;
use super::limits::{
    MAX_ERROR_BYTES, MAX_TEXT_BYTES, MAX_TOKEN_BYTES, MAX_URL_BYTES, cap, cap_opt,
};
use super::probe::{
    Failure, ProbeBusy, Prober, authority, describe_send_error, header_text, probe_url,
    read_capped, status_words,
};
use super::reference::{Target, parse_digest};
use super::result::AuthChallenge;

/// A manifest (or index) body is read up to this many bytes: the size the distribution spec asks
/// registries to accept at least.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// An index (or Docker manifest list) lists at most this many manifests.
pub const MAX_INDEX_ENTRIES: usize = 1000;
/// A token realm's answer is read up to this many bytes.
pub const MAX_TOKEN_ANSWER_BYTES: usize = 64 * 1024;
/// Manifest bodies read at once per prober (and its clones): 16 of 4 MiB, 64 MiB at most. A read
/// waits for one within its timeout; `HEAD` lookups read no body and never wait.
pub const MAX_MANIFEST_READS: usize = 16;
/// Platforms answered for one index at most (an index within [`MAX_INDEX_ENTRIES`]).
pub const MAX_PLATFORMS: usize = MAX_INDEX_ENTRIES;

/// The manifest media types a lookup accepts, in its `Accept` header.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

const INDEX_TYPES: [&str; 2] = [MANIFEST_MEDIA_TYPES[0], MANIFEST_MEDIA_TYPES[2]];

/// What a manifest read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    /// The registry serves that manifest.
    Found,
    /// The registry answered 404: no such repository or manifest.
    NotFound,
    /// The registry wants credentials (a Basic challenge, or no anonymous token), which the
    /// service never has.
    CredentialsRequired,
    /// No HTTP answer: DNS, connection, TLS, timeout, or refused by the probe policy.
    Unreachable,
    /// An answer, but not a registry's answer to a manifest request.
    NotRegistry,
}

impl ImageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Found => "found",
            Self::NotFound => "not_found",
            Self::CredentialsRequired => "credentials_required",
            Self::Unreachable => "unreachable",
            Self::NotRegistry => "not_registry",
        }
    }
}

impl fmt::Display for ImageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One platform of an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// How much of a manifest to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Read {
    /// `HEAD`: exists, digest, media type (Docker Hub does not count a HEAD as a pull).
    Head,
    /// `GET`, and the platforms of an index.
    Platforms,
    /// `GET`, and the manifest's annotations (a verification proof).
    Annotations,
}

/// What one manifest read found. Every string is capped ([`ManifestRead::bounded`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRead {
    pub status: ImageStatus,
    /// The manifest URL asked for.
    pub url: String,
    /// The final answer's status code, when there was one.
    pub status_code: Option<u16>,
    pub digest: Option<String>,
    pub media_type: Option<String>,
    /// For [`Read::Platforms`] of an index.
    pub platforms: Option<Vec<Platform>>,
    /// For [`Read::Annotations`]: the manifest's annotations.
    pub annotations: Option<BTreeMap<String, String>>,
    /// When the read started, RFC 3339 UTC.
    pub checked_at: String,
    pub error: Option<String>,
    /// The rule that refused the read (see the module docs), or the address policy's rule.
    pub refused_by: Option<String>,
}

impl ManifestRead {
    fn bounded(self) -> Self {
        ManifestRead {
            url: cap(&self.url, MAX_URL_BYTES + 512),
            digest: cap_opt(self.digest, MAX_TOKEN_BYTES * 3),
            media_type: cap_opt(self.media_type, MAX_TEXT_BYTES),
            platforms: self.platforms.map(|ps| {
                ps.into_iter()
                    .take(MAX_PLATFORMS)
                    .map(|p| Platform {
                        os: cap(&p.os, MAX_TOKEN_BYTES),
                        architecture: cap(&p.architecture, MAX_TOKEN_BYTES),
                        variant: cap_opt(p.variant, MAX_TOKEN_BYTES),
                    })
                    .collect()
            }),
            error: cap_opt(self.error, MAX_ERROR_BYTES),
            refused_by: cap_opt(self.refused_by, MAX_TOKEN_BYTES),
            ..self
        }
    }
}

/// The answer to an image lookup: what `GET /container_registry/{id}/image` and
/// `POST /container_registries/images` answer for one registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageLookup {
    /// What a user pulls: `<image prefix>/NAME:TAG` or `<image prefix>/NAME@DIGEST`.
    pub reference: String,
    pub status: ImageStatus,
    /// The manifest's digest (`Docker-Content-Digest`, or the body's sha256 when read).
    pub digest: Option<String>,
    pub media_type: Option<String>,
    /// The platforms of an index, when asked for with `platforms=true`.
    pub platforms: Option<Vec<Platform>>,
    /// When the registry was asked, RFC 3339 UTC.
    pub checked_at: String,
    /// What went wrong, in words; absent when found.
    pub error: Option<String>,
    /// The rule that refused the lookup: an address-policy rule or one of the OCI client's
    /// (`token-realm-scheme`, `token-realm-redirect`, `token-answer-size`, `manifest-redirect`,
    /// `manifest-size`, `index-entries`, `manifest-digest`).
    pub refused_by: Option<String>,
}

impl ImageLookup {
    pub fn from_read(reference: String, read: ManifestRead) -> ImageLookup {
        ImageLookup {
            reference: cap(&reference, MAX_URL_BYTES),
            status: read.status,
            digest: read.digest,
            media_type: read.media_type,
            platforms: read.platforms,
            checked_at: read.checked_at,
            error: read.error,
            refused_by: read.refused_by,
        }
    }

    /// A registry answered as one: found or credentials_required (the API answers 200).
    pub fn answered(&self) -> bool {
        matches!(
            self.status,
            ImageStatus::Found | ImageStatus::CredentialsRequired
        )
    }
}

/// Why a read stopped short of a manifest.
struct Stop {
    status: ImageStatus,
    status_code: Option<u16>,
    error: String,
    refused_by: Option<String>,
}

impl Stop {
    fn new(status: ImageStatus, code: Option<StatusCode>, error: String) -> Stop {
        Stop {
            status,
            status_code: code.map(|c| c.as_u16()),
            error,
            refused_by: None,
        }
    }

    fn rule(mut self, rule: &str) -> Stop {
        self.refused_by = Some(rule.to_owned());
        self
    }

    fn unreachable(failure: Failure) -> Stop {
        Stop {
            status: ImageStatus::Unreachable,
            status_code: None,
            error: failure.message,
            refused_by: failure.refused_by.map(str::to_owned),
        }
    }
}

/// What a manifest answer said.
struct Found {
    status_code: StatusCode,
    digest: Option<String>,
    media_type: Option<String>,
    platforms: Option<Vec<Platform>>,
    annotations: Option<BTreeMap<String, String>>,
}

/// The manifest URL: `{public_url}/v2/<repository>/manifests/<target>`. Both parts are valid by
/// construction (`reference.rs`), so they need no escaping.
pub fn manifest_url(public_url: &str, repository: &str, target: &Target) -> Result<Url, String> {
    let mut url = probe_url(public_url)?;
    let path = format!("{}{repository}/manifests/{}", url.path(), target.as_str());
    url.set_path(&path);
    Ok(url)
}

impl Prober {
    /// Manifest bodies being read now (at most [`MAX_MANIFEST_READS`]).
    pub fn manifest_reads_in_use(&self) -> usize {
        MAX_MANIFEST_READS - self.manifest_reads.available_permits()
    }

    /// Reads one manifest, waiting as long as it takes for a probe slot; every outcome is a
    /// [`ManifestRead`], within the probe timeout once the slot is held.
    pub async fn read_manifest(
        &self,
        public_url: &str,
        repository: &str,
        target: &Target,
        read: Read,
    ) -> ManifestRead {
        let _slot = self.slots.acquire().await;
        self.read_now(public_url, repository, target, read).await
    }

    /// [`Self::read_manifest`], if a probe slot frees up within `wait`.
    pub async fn read_manifest_within(
        &self,
        public_url: &str,
        repository: &str,
        target: &Target,
        read: Read,
        wait: Duration,
    ) -> Result<ManifestRead, ProbeBusy> {
        let busy = ProbeBusy {
            max_in_flight: self.config().max_in_flight.max(1),
        };
        let _slot = match tokio::time::timeout(wait, self.slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) | Err(_) => return Err(busy),
        };
        Ok(self.read_now(public_url, repository, target, read).await)
    }

    async fn read_now(
        &self,
        public_url: &str,
        repository: &str,
        target: &Target,
        read: Read,
    ) -> ManifestRead {
        let _in_use = crate::metrics::SlotInUse::take();
        let checked_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let timeout = self.config().timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let (url_text, outcome) = match manifest_url(public_url, repository, target) {
            Err(message) => (
                public_url.to_owned(),
                Err(Stop::unreachable(Failure::plain(message))),
            ),
            Ok(url) => {
                let chain = self.read_chain(&url, repository, target, read, deadline);
                let outcome = match timeout_at(deadline, chain).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(Stop::unreachable(Failure::plain(format!(
                        "timed out after {} ms reading the manifest from {}",
                        timeout.as_millis(),
                        authority(&url)
                    )))),
                };
                (url.to_string(), outcome)
            }
        };
        let result = match outcome {
            Ok(found) => ManifestRead {
                status: ImageStatus::Found,
                url: url_text,
                status_code: Some(found.status_code.as_u16()),
                digest: found.digest,
                media_type: found.media_type,
                platforms: found.platforms,
                annotations: found.annotations,
                checked_at,
                error: None,
                refused_by: None,
            },
            Err(stop) => ManifestRead {
                status: stop.status,
                url: url_text,
                status_code: stop.status_code,
                digest: None,
                media_type: None,
                platforms: None,
                annotations: None,
                checked_at,
                error: Some(stop.error),
                refused_by: stop.refused_by,
            },
        }
        .bounded();
        tracing::debug!(url = %result.url, status = %result.status, error = ?result.error, "manifest read");
        result
    }

    async fn read_chain(
        &self,
        url: &Url,
        repository: &str,
        target: &Target,
        read: Read,
        deadline: tokio::time::Instant,
    ) -> Result<Found, Stop> {
        let mut response = self.manifest_exchange(url, read, None).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let challenge = response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_challenge);
            let status = response.status();
            match challenge {
                None => {
                    return Err(Stop::new(
                        ImageStatus::NotRegistry,
                        Some(status),
                        format!(
                            "{} answered {} without a WWW-Authenticate challenge: not an OCI registry answer",
                            authority(url),
                            status_words(status)
                        ),
                    ));
                }
                Some(c) if c.scheme.eq_ignore_ascii_case("bearer") && c.realm.is_some() => {
                    let token = self.fetch_token(url, &c, repository, deadline).await?;
                    response = self.manifest_exchange(url, read, Some(&token)).await?;
                    drop(token);
                    let status = response.status();
                    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                        return Err(Stop::new(
                            ImageStatus::CredentialsRequired,
                            Some(status),
                            format!(
                                "the registry answered {} to the anonymous token: {repository} needs credentials, which the service never sends",
                                status_words(status)
                            ),
                        ));
                    }
                }
                Some(c) => {
                    return Err(Stop::new(
                        ImageStatus::CredentialsRequired,
                        Some(status),
                        format!(
                            "the registry asks for {} credentials, which the service never sends",
                            cap(&c.scheme, MAX_TOKEN_BYTES)
                        ),
                    ));
                }
            }
        }
        self.judge_manifest(response, repository, target, read, deadline)
            .await
    }

    /// One manifest request, following same-origin redirects only (at most `max_redirects`).
    async fn manifest_exchange(
        &self,
        start: &Url,
        read: Read,
        token: Option<&str>,
    ) -> Result<reqwest::Response, Stop> {
        let origin = start.origin();
        let method = match read {
            Read::Head => Method::HEAD,
            Read::Platforms | Read::Annotations => Method::GET,
        };
        let accept = HeaderValue::from_static(accept_value());
        let authorization = match token {
            Some(t) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                    Stop::new(
                        ImageStatus::CredentialsRequired,
                        None,
                        "the token realm answered a token that cannot travel in a header".into(),
                    )
                    .rule("token-answer")
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let mut url = start.clone();
        let mut hops = 0;
        loop {
            self.check_literal(&url).map_err(Stop::unreachable)?;
            let mut request = self
                .client()
                .request(method.clone(), url.clone())
                .header(ACCEPT, accept.clone());
            if let Some(value) = &authorization {
                request = request.header(AUTHORIZATION, value.clone());
            }
            let response = request
                .send()
                .await
                .map_err(|e| Stop::unreachable(describe_send_error(&e, &url, None)))?;
            let status = response.status();
            if !status.is_redirection() {
                return Ok(response);
            }
            let Some(location) = header_text(response.headers(), LOCATION.as_str()) else {
                return Ok(response);
            };
            let shown = cap(&location, MAX_TEXT_BYTES);
            let stop = |why: String| Stop::new(ImageStatus::NotRegistry, Some(status), why);
            let next = match url.join(&location) {
                Ok(next) if location.len() <= MAX_URL_BYTES => next,
                _ => {
                    return Err(stop(format!(
                        "the manifest request answered {} to {shown}, which is not a usable URL",
                        status_words(status)
                    ))
                    .rule("manifest-redirect"));
                }
            };
            if next.origin() != origin {
                return Err(stop(format!(
                    "the manifest request answered {} to {shown}, off the registry: a manifest is read from the registry itself, not followed",
                    status_words(status)
                ))
                .rule("manifest-redirect"));
            }
            if hops >= self.config().max_redirects {
                return Err(stop(format!(
                    "the manifest request redirects to {shown}, and at most {} redirects are followed",
                    self.config().max_redirects
                ))
                .rule("manifest-redirect"));
            }
            hops += 1;
            url = next;
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_fragment(None);
        }
    }

    /// IP literals never reach the resolver: checked here, on every hop and the realm.
    fn check_literal(&self, url: &Url) -> Result<(), Failure> {
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        match literal.map(|ip| self.policy.check(ip)) {
            Some(Err(refusal)) => Err(Failure::refused(&refusal, None)),
            _ => Ok(()),
        }
    }

    /// The anonymous token flow: one `GET` of the realm, never a credential.
    async fn fetch_token(
        &self,
        registry: &Url,
        challenge: &AuthChallenge,
        repository: &str,
        deadline: tokio::time::Instant,
    ) -> Result<String, Stop> {
        let creds = |error: String| Stop::new(ImageStatus::CredentialsRequired, None, error);
        let realm_text = challenge.realm.as_deref().unwrap_or_default();
        let shown = cap(realm_text, MAX_TEXT_BYTES);
        if realm_text.len() > MAX_URL_BYTES {
            return Err(creds(format!(
                "the token realm is {} bytes, longer than the {MAX_URL_BYTES} a URL may be: not contacted",
                realm_text.len()
            ))
            .rule("token-realm-scheme"));
        }
        let mut realm = Url::parse(realm_text).map_err(|e| {
            creds(format!(
                "the token realm {shown:?} is not a URL ({e}): not contacted"
            ))
            .rule("token-realm-scheme")
        })?;
        let plain_ok = registry.scheme() == "http"
            && realm.host_str().is_some()
            && realm.host_str() == registry.host_str();
        match realm.scheme() {
            "https" => {}
            "http" if plain_ok => {}
            _ => {
                return Err(creds(format!(
                    "the token realm {shown} must be https (plain http only on the registry's own host, when the registry itself is plain http): not contacted"
                ))
                .rule("token-realm-scheme"));
            }
        }
        let _ = realm.set_username("");
        let _ = realm.set_password(None);
        realm.set_fragment(None);
        {
            let mut query = realm.query_pairs_mut();
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
            // Our own scope, whatever the challenge asked for: read access to this repository.
            query.append_pair("scope", &format!("repository:{repository}:pull"));
        }
        let in_realm = |failure: Failure| {
            let mut stop = Stop::unreachable(failure);
            stop.status = ImageStatus::CredentialsRequired;
            stop.error = format!("the token realm {shown}: {}", stop.error);
            stop
        };
        self.check_literal(&realm).map_err(in_realm)?;
        let mut response = self
            .client()
            .get(realm.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| in_realm(describe_send_error(&e, &realm, None)))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(Stop::new(
                ImageStatus::CredentialsRequired,
                Some(status),
                format!(
                    "the token realm {shown} answered {}: a realm that redirects is not followed",
                    status_words(status)
                ),
            )
            .rule("token-realm-redirect"));
        }
        if !status.is_success() {
            return Err(Stop::new(
                ImageStatus::CredentialsRequired,
                Some(status),
                format!(
                    "the token realm {shown} refused an anonymous token ({}): the repository needs credentials",
                    status_words(status)
                ),
            ));
        }
        let too_big = || {
            creds(format!(
                "the token realm {shown} answered more than {MAX_TOKEN_ANSWER_BYTES} bytes, the most a token answer is read"
            ))
            .rule("token-answer-size")
        };
        if content_length(&response).is_some_and(|n| n > MAX_TOKEN_ANSWER_BYTES as u64) {
            return Err(too_big());
        }
        let (body, cut) = read_capped(&mut response, MAX_TOKEN_ANSWER_BYTES, deadline).await;
        if cut {
            return Err(if body.len() >= MAX_TOKEN_ANSWER_BYTES {
                too_big()
            } else {
                creds(format!("the token realm {shown}'s answer broke off"))
            });
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            creds(format!(
                "the token realm {shown} answered something other than a JSON object with a token"
            ))
            .rule("token-answer")
        })?;
        match answer.token.or(answer.access_token) {
            Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()) => Ok(t),
            _ => Err(creds(format!(
                "the token realm {shown} answered no usable token (\"token\" or \"access_token\", visible ASCII)"
            ))
            .rule("token-answer")),
        }
    }

    async fn judge_manifest(
        &self,
        mut response: reqwest::Response,
        repository: &str,
        target: &Target,
        read: Read,
        deadline: tokio::time::Instant,
    ) -> Result<Found, Stop> {
        let status = response.status();
        let said = format!("answered {}", status_words(status));
        if status == StatusCode::NOT_FOUND {
            return Err(Stop::new(
                ImageStatus::NotFound,
                Some(status),
                format!(
                    "the registry {said}: no manifest {} in {repository}",
                    target.as_str()
                ),
            ));
        }
        if status == StatusCode::FORBIDDEN {
            return Err(Stop::new(
                ImageStatus::CredentialsRequired,
                Some(status),
                format!("the registry {said}: {repository} is not open to anonymous reads"),
            ));
        }
        if !status.is_success() {
            return Err(Stop::new(
                ImageStatus::NotRegistry,
                Some(status),
                format!("the manifest request {said}: not a registry's answer"),
            ));
        }
        let header_digest = header_text(response.headers(), "docker-content-digest")
            .and_then(|d| parse_digest(&d).ok());
        let header_type = header_text(response.headers(), CONTENT_TYPE.as_str()).map(|t| {
            t.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
        let is_manifest_type = header_type
            .as_deref()
            .is_some_and(|t| MANIFEST_MEDIA_TYPES.contains(&t));
        if read == Read::Head {
            if header_digest.is_none() && !is_manifest_type {
                return Err(Stop::new(
                    ImageStatus::NotRegistry,
                    Some(status),
                    format!(
                        "the manifest request {said} with content type {:?} and no Docker-Content-Digest: not a manifest",
                        header_type
                            .as_deref()
                            .map(|t| cap(t, MAX_TEXT_BYTES))
                            .unwrap_or_default()
                    ),
                ));
            }
            return Ok(Found {
                status_code: status,
                digest: header_digest,
                media_type: header_type,
                platforms: None,
                annotations: None,
            });
        }
        let too_big = || {
            Stop::new(
                ImageStatus::NotRegistry,
                Some(status),
                format!(
                    "the manifest is larger than {MAX_MANIFEST_BYTES} bytes, the most a manifest is read"
                ),
            )
            .rule("manifest-size")
        };
        if content_length(&response).is_some_and(|n| n > MAX_MANIFEST_BYTES as u64) {
            return Err(too_big());
        }
        // Held until the body is parsed and dropped, at the end of this function.
        let _reading = self.manifest_reads.acquire().await.map_err(|_| {
            Stop::new(
                ImageStatus::Unreachable,
                None,
                "the prober is closing".into(),
            )
        })?;
        let (body, cut) = read_capped(&mut response, MAX_MANIFEST_BYTES, deadline).await;
        if cut {
            return Err(if body.len() >= MAX_MANIFEST_BYTES {
                too_big()
            } else {
                Stop::new(
                    ImageStatus::NotRegistry,
                    Some(status),
                    "the manifest's body broke off".into(),
                )
            });
        }
        let computed = format!("sha256:{}", hex(&Sha256::digest(&body)));
        if let Target::Digest(wanted) = target
            && wanted.starts_with("sha256:")
            && *wanted != computed
        {
            return Err(Stop::new(
                ImageStatus::NotRegistry,
                Some(status),
                format!("the manifest asked for by {wanted} hashes to {computed}"),
            )
            .rule("manifest-digest"));
        }
        let doc: ManifestDoc = serde_json::from_slice(&body).map_err(|e| {
            if e.to_string().contains(INDEX_CAP_MARK) {
                Stop::new(
                    ImageStatus::NotRegistry,
                    Some(status),
                    format!(
                        "the index lists more than {MAX_INDEX_ENTRIES} manifests, the most an index is read"
                    ),
                )
                .rule("index-entries")
            } else {
                Stop::new(
                    ImageStatus::NotRegistry,
                    Some(status),
                    "the manifest is not a JSON manifest or index".into(),
                )
            }
        })?;
        let media_type = header_type
            .filter(|t| MANIFEST_MEDIA_TYPES.contains(&t.as_str()))
            .or(doc.media_type);
        let is_index = media_type
            .as_deref()
            .is_some_and(|t| INDEX_TYPES.contains(&t))
            || doc.manifests.is_some();
        let platforms = match (read, is_index) {
            (Read::Platforms, true) => Some(
                doc.manifests
                    .map(|m| m.0)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|d| d.platform)
                    .map(|p| Platform {
                        os: p.os,
                        architecture: p.architecture,
                        variant: p.variant,
                    })
                    .collect(),
            ),
            _ => None,
        };
        Ok(Found {
            status_code: status,
            digest: Some(header_digest.unwrap_or(computed)),
            media_type,
            platforms,
            annotations: match read {
                Read::Annotations => Some(doc.annotations.unwrap_or_default()),
                _ => None,
            },
        })
    }
}

/// The `Accept` header of a manifest request.
fn accept_value() -> &'static str {
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json"
}

fn content_length(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The parts of a manifest or index this client reads; everything else is skipped unread.
#[derive(Deserialize)]
struct ManifestDoc {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<Bounded<Descriptor>>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct Descriptor {
    platform: Option<PlatformDoc>,
}

#[derive(Deserialize)]
struct PlatformDoc {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// The text of the error a list longer than [`MAX_INDEX_ENTRIES`] stops at.
const INDEX_CAP_MARK: &str = "index-entries cap";

/// A list read up to [`MAX_INDEX_ENTRIES`] items: one more stops the parse, so an index of
/// 100,000 tiny entries costs a thousand.
struct Bounded<T>(Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Bounded<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a list of at most {MAX_INDEX_ENTRIES} descriptors")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element()? {
                    if out.len() == MAX_INDEX_ENTRIES {
                        return Err(de::Error::custom(INDEX_CAP_MARK));
                    }
                    out.push(item);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V(PhantomData)).map(Bounded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_is_read_up_to_its_cap() {
        let index = |n: usize| {
            let entries =
                vec![r#"{"platform":{"os":"linux","architecture":"amd64"}}"#; n].join(",");
            format!(
                r#"{{"mediaType":"{}","manifests":[{entries}]}}"#,
                INDEX_TYPES[0]
            )
        };
        let doc: ManifestDoc = serde_json::from_str(&index(MAX_INDEX_ENTRIES)).unwrap();
        assert_eq!(doc.manifests.unwrap().0.len(), MAX_INDEX_ENTRIES);
        let err = serde_json::from_str::<ManifestDoc>(&index(MAX_INDEX_ENTRIES + 1))
            .err()
            .unwrap();
        assert!(err.to_string().contains(INDEX_CAP_MARK), "{err}");
    }

    #[test]
    fn the_manifest_url_joins_base_repository_and_target() {
        let url = manifest_url(
            "http://10.13.21.22:32633/",
            "team/app",
            &Target::Tag("1.0".into()),
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "http://10.13.21.22:32633/v2/team/app/manifests/1.0"
        );
        let url =
            manifest_url("https://r.example/mirror/v2", "a", &Target::Tag("t".into())).unwrap();
        assert_eq!(url.as_str(), "https://r.example/mirror/v2/a/manifests/t");
    }

    #[test]
    fn accept_names_every_media_type() {
        for t in MANIFEST_MEDIA_TYPES {
            assert!(accept_value().contains(t), "{t}");
        }
    }
}
