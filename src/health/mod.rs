//! Health probes of OCI registries: one probe of `{public_url}/v2/`, the address policy that keeps
//! probes away from the service's own network, and sweeps over many entries.
//!
//! The parts, from the outside in:
//! - [`sweep`]: [`run_sweep`] probes many entries with bounded concurrency and jitter, records each
//!   result through a callback and counts verdicts in a [`SweepReport`];
//! - [`probe`]: [`Prober::probe`] fetches `/v2/` and turns the answer into a [`ProbeResult`];
//! - [`resolve`]: the [`Resolver`] that turns names into addresses, plugged into the HTTP client so
//!   the addresses it checks are the ones it connects to;
//! - [`guard`]: the [`AddressPolicy`], which refuses link-local, cloud metadata, unspecified,
//!   multicast, broadcast, reserved and (unless allowed) loopback addresses, and names the rule.
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
//!   each hop checked like the first; credentials in a `Location` are dropped. A chain that goes on
//!   longer ends as `not_registry` with the last 3xx. `url` stays the URL asked for.
//! - **429**: when `Retry-After` (seconds or HTTP date) is present, one retry after
//!   `min(Retry-After, 2 s)`, provided the wait leaves at least a fifth of the remaining timeout for
//!   the retry; otherwise, or if the retry gets a 429 or no answer, the 429 is recorded
//!   (`not_registry`, `status_code: 429`, the error says whether and why it was retried).
//! - **Politeness and limits**: no credentials (user info, query and fragment of the public URL are
//!   dropped), no proxy whatever the environment says, the user agent [`USER_AGENT`], at most
//!   `max_body_bytes` of a body read (only 2xx bodies without the version header are read at all),
//!   and the whole probe, retry and redirects included, bounded by `timeout`.
//! - **URLs**: `{public_url}/v2/` with trailing slashes folded and a trailing `/v2` not doubled; a URL
//!   without a scheme is taken as https, as docker does; other schemes are `unreachable`.

pub mod guard;
pub mod probe;
pub mod resolve;
pub mod sweep;

pub use guard::{AddressPolicy, Refusal, Rule};
pub use probe::{AuthChallenge, HealthStatus, ProbeConfig, ProbeResult, Prober, USER_AGENT};
pub use resolve::{ResolveFailed, Resolver, StaticResolver, SystemResolver};
pub use sweep::{SweepOptions, SweepReport, run_sweep};
