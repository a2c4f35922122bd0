//! Health probes of OCI registries: one probe of `{public_url}/v2/`, the address policy that keeps
//! probes away from the service's own network, and sweeps over many entries.
//!
//! The parts, from the outside in:
//! - [`sweep`]: [`run_sweep`] probes many entries with bounded concurrency (at most
//!   [`sweep::DEFAULT_PER_HOST`] per host) and jitter, records each result through a callback and
//!   counts verdicts in a [`SweepReport`];
//! - [`probe`]: [`Prober::probe`] fetches `/v2/` and turns the answer into a [`ProbeResult`]; every
//!   clone of a prober shares one cap on probes in flight;
//! - [`result`]: the [`ProbeResult`] a probe leaves and the entry stores, with its verdict
//!   ([`HealthStatus`]); [`challenge`]: the `WWW-Authenticate` parser behind `auth_required`;
//! - [`limits`]: the caps on every string a probed server can put into a result;
//! - [`target`]: [`parse_registry_url`], the one reading of a registry URL that validation and the
//!   probe share;
//! - [`resolve`]: the [`Resolver`] that turns names into addresses, plugged into the HTTP client so
//!   the addresses it checks are the ones it connects to;
//! - [`guard`]: the [`AddressPolicy`], which refuses link-local, cloud metadata, unspecified,
//!   multicast, broadcast, reserved, teredo and local NAT64 addresses, (unless allowed) loopback
//!   addresses and localhost names, the Lambda runtime API, and the operator's deny-list, and names
//!   the rule.
//!
//! Nothing here knows about the store or HTTP routing: the caller passes URLs in and stores results.
//!
//! # Verdicts
//!
//! | answer to `GET /v2/` | status | `answered()` |
//! |---|---|---|
//! | 2xx with `Docker-Distribution-API-Version`, or 2xx whose body is a JSON object | `healthy` | yes |
//! | 401 with a `WWW-Authenticate` challenge (Basic, Bearer, ...) | `auth_required` | yes |
//! | any other answer: 404, 500, 401 without challenge, a 2xx HTML page, a 429 that persisted, a redirect not followed further | `not_registry` | no |
//! | no answer: DNS failure, refused or reset connection, TLS failure, timeout, refused by the address policy | `unreachable` (`reachable: false`) | no |
//!
//! # Policies
//!
//! - **Address policy**: see [`guard`]. IP literals (in the URL and in every redirect hop) are checked
//!   before the request; host names are checked inside the HTTP client's resolver, on every
//!   connection (connections are not reused), so DNS rebinding cannot slip past. A name with any
//!   refused address is refused as a whole. The refusing rule is reported in `refused_by` and in
//!   `error`.
//! - **Redirects**: followed by hand, at most `max_redirects` (default 3) hops, http and https only,
//!   only to an OCI registry base (a path ending in `/v2/` or `/v2`, no query), each hop checked like
//!   the first; credentials in a `Location` are dropped. A chain that goes elsewhere or on longer ends
//!   as `not_registry` with the last 3xx. `url` stays the URL asked for.
//! - **No probe loops**: every probe sends [`USER_AGENT`]; the service's check endpoint refuses
//!   requests that carry it ([`is_probe_user_agent`]), so one request makes at most one probe.
//! - **Caps**: every string from a probed server is cut (see [`limits`]) before it is logged, stored
//!   or returned; probes in flight are capped per prober (`max_in_flight`, sweeps take at most three
//!   quarters of it).
//! - **429**: when `Retry-After` (seconds or HTTP date) is present, one retry after
//!   `min(Retry-After, 2 s)`, provided the wait leaves at least a fifth of the remaining timeout for
//!   the retry; otherwise, or if the retry gets a 429 or no answer, the 429 is recorded
//!   (`not_registry`, `status_code: 429`, the error says whether and why it was retried).
//! - **Politeness and limits**: no credentials (user info, query and fragment of the public URL are
//!   dropped), no proxy whatever the environment says, the user agent [`USER_AGENT`], at most
//!   `max_body_bytes` of a body read (only 2xx bodies without the version header are read at all),
//!   and the whole probe, retry and redirects included, bounded by `timeout`.
//! - **URLs**: `{public_url}/v2/` with trailing slashes folded and a trailing `/v2` not doubled; the
//!   public URL is read by [`parse_registry_url`], as entry validation reads it: a URL it refuses is
//!   `unreachable` with the reason.

pub mod challenge;
pub mod guard;
pub mod limits;
pub mod oci;
pub mod probe;
pub mod reference;
pub mod resolve;
pub mod result;
pub mod sweep;
pub mod target;

pub use challenge::parse_challenge;
pub use guard::{AddressPolicy, Refusal, Rule, RuntimeApi, parse_deny_item};
pub use oci::{ImageLookup, ImageStatus, ManifestRead, Platform, Read};
pub use probe::{ProbeBusy, ProbeConfig, Prober, USER_AGENT, is_probe_user_agent, probe_url};
pub use reference::{ImageRef, ReferenceError, Target};
pub use resolve::{DnsResolver, ResolveFailed, Resolver, StaticResolver};
pub use result::{AuthChallenge, HealthStatus, ProbeResult};
pub use sweep::{SweepOptions, SweepReport, run_sweep};
pub use target::parse_registry_url;
