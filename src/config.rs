//! Settings, read in one place. Every setting has one name, used by the flag and the environment
//! variable alike (see the configuration table in the README and in API.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderName;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::access::{Access, WritePolicy};
use crate::api::body::BodyLimits;
use crate::domain::catalog::{CheckPolicy, PROBE_SLOT_WAIT};
use crate::health::{ProbeConfig, Prober, RuntimeApi, parse_deny_item};
use crate::server::conn::Limits;
use crate::store::Store;
use crate::store::dynamodb::{DynamoStore, default_history_table, default_tag_table};
use crate::store::embedded::EmbeddedStore;

#[derive(Debug, Parser)]
#[command(
    name = "registry-db",
    version,
    about = "The container registry DB: list, find and health-check OCI registries."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API locally (embedded store by default).
    Serve(ServeArgs),
    /// Probe every entry's registry once, record each verdict, print the report and exit.
    Sweep(SweepArgs),
    /// Build the tag index from the entries (for a store from before the index), print what it
    /// did and exit. Safe while the service runs.
    Reindex(ReindexArgs),
    /// Import the earlier MongoDB service's entries (a `mongoexport` of its collection) into the
    /// store; exit 0 when all are in, 3 when some were refused, 1 when it could not finish. With
    /// `--exact`, restore a `registry-db export` instead, managed fields and all.
    Import(ImportArgs),
    /// Write every entry, managed fields included, one JSON document per line, from one
    /// consistent view of the store (a backup, or the way to another store).
    Export(ExportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Where to write: a file (written beside as FILE.partial, renamed when complete), `-` for
    /// standard output, or a folder, where it is `registry-db-<UTC time>.ndjson.gz` (a backup).
    #[arg(default_value = "-")]
    pub file: PathBuf,
    /// Into a folder: then remove its backups (`registry-db-<time>.ndjson.gz`, by the time in the
    /// name) older than this many days. Nothing else in the folder is touched.
    #[arg(long)]
    pub keep_days: Option<u32>,
    /// Compress with gzip (also when FILE ends in `.gz`).
    #[arg(long)]
    pub gzip: bool,
    /// No progress, only the summary line.
    #[arg(long, short)]
    pub quiet: bool,
    /// Read the export from a running `registry-db serve` at this URL (its `GET /export`, with
    /// `REGISTRY_DB_WRITE_TOKEN` as the bearer token when set) instead of opening the store: the
    /// way to back up an embedded store while its server runs.
    #[arg(long)]
    pub server: Option<url::Url>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    Embedded,
    Dynamodb,
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Where entries live.
    #[arg(
        long,
        env = "REGISTRY_DB_STORE",
        value_enum,
        default_value = "embedded"
    )]
    pub store: StoreKind,
    /// Folder of the embedded store.
    #[arg(long, env = "REGISTRY_DB_DATA", default_value = "./data")]
    pub data: PathBuf,
    /// DynamoDB table (endpoint, region and credentials come from the usual AWS settings).
    #[arg(long, env = "TABLE_NAME", default_value = "container-registries")]
    pub table: String,
    /// DynamoDB table of the tag index [default: the table's name with `-tags` appended].
    #[arg(long, env = "TAG_TABLE_NAME")]
    pub tag_table: Option<String>,
    /// DynamoDB table of the health history [default: the table's name with `-history` appended].
    #[arg(long, env = "HISTORY_TABLE_NAME")]
    pub history_table: Option<String>,
    /// Create the DynamoDB tables (entries, tag index, health history with TTL) when they are
    /// missing (for local use, e.g. against dynalite).
    #[arg(long, env = "REGISTRY_DB_CREATE_TABLE")]
    pub create_table: bool,
    /// On DynamoDB, which other instances also write to, facet counts are reused for at most this
    /// many seconds (0: counted on every request); a write through this instance drops them at
    /// once. The embedded store, which only this process writes, keeps them until its next write.
    #[arg(long, env = "REGISTRY_DB_FACET_CACHE_SECS", default_value_t = crate::domain::catalog::FACET_CACHE_MAX_AGE.as_secs())]
    pub facet_cache_secs: u64,
    /// The embedded store keeps up to this many MiB of entries (each at most 16 KiB) in memory for
    /// GETs and tag queries; 0 turns the cache off. Ignored on DynamoDB.
    #[arg(long, env = "REGISTRY_DB_ENTRY_CACHE_MIB", default_value_t = crate::store::entry_cache::DEFAULT_ENTRY_CACHE_MIB)]
    pub entry_cache_mib: usize,
    /// MiB of redb's page cache for the embedded store (redb's own default, 1 GiB, grows with a
    /// large store until it holds all of it). Ignored on DynamoDB.
    #[arg(long, env = "REGISTRY_DB_STORE_CACHE_MIB", default_value_t = crate::store::embedded::DEFAULT_PAGE_CACHE_MIB)]
    pub store_cache_mib: usize,
}

#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// Timeout of one health probe, in milliseconds.
    #[arg(long, env = "REGISTRY_DB_PROBE_TIMEOUT_MS", default_value_t = crate::health::probe::DEFAULT_TIMEOUT.as_millis() as u64)]
    pub probe_timeout_ms: u64,
    /// Let probes reach loopback addresses (for registries on the same machine).
    #[arg(long, env = "REGISTRY_DB_PROBE_ALLOW_LOOPBACK")]
    pub probe_allow_loopback: bool,
    /// Within this many seconds of an entry's last probe, a health check answers the stored result
    /// instead of probing again (0 probes every time).
    #[arg(long, env = "REGISTRY_DB_PROBE_COOLDOWN_SECS", default_value_t = crate::domain::catalog::DEFAULT_PROBE_COOLDOWN.as_secs())]
    pub probe_cooldown_secs: u64,
    /// Probes in flight at once, on-demand checks and sweeps together (sweeps take at most three
    /// quarters); a check that finds no slot within 2 s is a 429.
    #[arg(long, env = "REGISTRY_DB_PROBE_MAX_IN_FLIGHT", default_value_t = crate::health::probe::DEFAULT_MAX_IN_FLIGHT)]
    pub probe_max_in_flight: usize,
    /// More address ranges probes may not reach, comma-separated: CIDR ranges, addresses, or
    /// `private` (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7).
    #[arg(long, env = "REGISTRY_DB_PROBE_DENY", value_delimiter = ',', value_parser = parse_deny)]
    pub probe_deny: Vec<DenyItem>,
}

/// One item of `--probe-deny`, as the ranges it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyItem(pub Vec<ipnet::IpNet>);

fn parse_deny(item: &str) -> Result<DenyItem, String> {
    parse_deny_item(item).map(DenyItem)
}

/// Who may write, and the abuse limits that go with it (`api::auth`, `api::rate_limit`).
#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    /// Who may write: `open` (anyone), `operator` (REGISTRY_DB_WRITE_TOKEN only) or `owners`
    /// (anyone creates; an entry's owner token or the operator changes it) [default: `operator`
    /// when REGISTRY_DB_WRITE_TOKEN is set, else `open`].
    #[arg(long, env = "REGISTRY_DB_WRITES", value_enum)]
    pub writes: Option<WritePolicy>,
    /// Inside Lambda behind IAM auth: the IAM principal ARNs that are operators, comma-separated
    /// (`arn:...:assumed-role/Ops/*` names every session of a role).
    #[arg(long, env = "REGISTRY_DB_OPERATOR_PRINCIPALS", value_delimiter = ',')]
    pub operator_principals: Vec<String>,
    /// Creates per client address and hour (0: no limit) [default: 20 under `owners`, else no
    /// limit].
    #[arg(long, env = "REGISTRY_DB_CREATES_PER_HOUR")]
    pub creates_per_hour: Option<u32>,
    /// Health checks per client address and minute (0: no limit) [default: 60 under `owners`,
    /// else no limit].
    #[arg(long, env = "REGISTRY_DB_CHECKS_PER_MINUTE")]
    pub checks_per_minute: Option<u32>,
    /// The header a trusted proxy in front writes the client's address in (its last address
    /// counts), e.g. `X-Forwarded-For` [default: none: the socket's peer address].
    #[arg(long, env = "REGISTRY_DB_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<HeaderName>,
}

impl WriteArgs {
    /// The access settings, given the operator's token.
    pub fn access(&self, write_token: Option<&str>) -> Access {
        let policy = self
            .writes
            .unwrap_or_else(|| WritePolicy::default_for(write_token));
        Access {
            policy: Some(policy),
            operator_principals: self
                .operator_principals
                .iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            limits: Access::default_limits(policy, self.creates_per_hour, self.checks_per_minute),
            client_ip_header: self.client_ip_header.clone(),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Listen address.
    #[arg(long, env = "REGISTRY_DB_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Sweep every entry's health this often, in seconds (off when absent).
    #[arg(long, env = "REGISTRY_DB_SWEEP_EVERY")]
    pub sweep_every: Option<u64>,
    /// Where `GET /metrics` (Prometheus text) is served: `on` (beside the API, on `--addr`), `off`,
    /// or an address of its own (`HOST:PORT`), e.g. to keep it off a public port.
    #[arg(long, env = "REGISTRY_DB_METRICS", default_value = "on", value_parser = parse_metrics_at)]
    pub metrics: MetricsAt,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub probe: ProbeArgs,
    #[command(flatten)]
    pub writes: WriteArgs,
    #[command(flatten)]
    pub connections: ConnArgs,
}

/// The local server's bounds on connections and request bodies (`server::conn`, `api::body`).
/// The defaults fit a 256 MiB pod: 512 connections with at most 128 KiB of head each, and 32 MiB
/// of bodies being read, leave room for the caches and the store.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Seconds a request head (request line and headers) may take to arrive, from its first byte.
    #[arg(long, env = "REGISTRY_DB_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,
    /// Seconds a connection may wait for its next request before it is closed. Longer than the
    /// idle timeout of a proxy in front (ALB and ingress-nginx: 60 s), so that the proxy closes
    /// first and never sends a request on a connection being closed.
    #[arg(long, env = "REGISTRY_DB_IDLE_TIMEOUT_SECS", default_value_t = 75, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
    /// Seconds a request body may take to arrive whole; past it the answer is a 408.
    #[arg(long, env = "REGISTRY_DB_BODY_TIMEOUT_SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_secs: u64,
    /// Seconds the handling of one request (its body included) may take; past it the answer is
    /// a 503 with `Retry-After`.
    #[arg(long, env = "REGISTRY_DB_REQUEST_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_secs: u64,
    /// Connections open at once; at the cap a new one closes the longest-idle connection, or
    /// waits when every connection has a request in flight. Lowered at start to fit under the
    /// open-files limit.
    #[arg(long, env = "REGISTRY_DB_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// MiB of request bodies being read at once, all requests together (at least one largest
    /// body); a body that finds no room within 2 s is a 503 with `Retry-After`.
    #[arg(long, env = "REGISTRY_DB_BODY_BUDGET_MIB", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub body_budget_mib: u64,
}

impl ConnArgs {
    /// The limits, with the open files kept for probes (one each) beside the server's own.
    pub fn limits(&self, probe: &ProbeArgs) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            reserved_fds: crate::server::conn::RESERVED_FDS + probe.probe_max_in_flight as u64,
            body: BodyLimits::new(
                (self.body_budget_mib as usize) << 20,
                Duration::from_secs(self.body_timeout_secs),
            ),
        }
    }
}

/// Where the local server serves `GET /metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAt {
    /// On the API's own listener.
    Router,
    Off,
    /// On a listener of its own.
    Addr(SocketAddr),
}

fn parse_metrics_at(value: &str) -> Result<MetricsAt, String> {
    match value {
        "on" => Ok(MetricsAt::Router),
        "off" => Ok(MetricsAt::Off),
        addr => addr.parse().map(MetricsAt::Addr).map_err(|_| {
            format!("expected on, off or an address HOST:PORT (e.g. 127.0.0.1:9090), not {addr:?}")
        }),
    }
}

#[derive(Debug, Clone, Args)]
pub struct ReindexArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// No progress on standard error, only the summary line (the report still goes to stdout).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// No progress on standard error, only the summary line (the report still goes to stdout).
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub probe: ProbeArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The export: `mongoexport --jsonArray` output, or one document per line; `-` reads stdin.
    /// With `--exact`, a `registry-db export` (gzip is recognised by its first bytes).
    pub file: PathBuf,
    /// Restore a `registry-db export` as it stands: ids, times, versions and health kept.
    #[arg(long)]
    pub exact: bool,
    /// With `--exact`: replace an entry already in the store by the file's (otherwise it is
    /// left as it is, and reported when it differs).
    #[arg(long, requires = "exact")]
    pub overwrite: bool,
    /// With `--exact`: no progress, only the findings and the summary line.
    #[arg(long, short, requires = "exact")]
    pub quiet: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

impl StoreArgs {
    /// The store for one pass over every entry (export, exact import): on the embedded store
    /// with bounded caches ([`EmbeddedStore::open_for_bulk`]).
    pub async fn open_for_bulk(&self) -> anyhow::Result<Arc<dyn Store>> {
        match self.store {
            StoreKind::Embedded => Ok(Arc::new(EmbeddedStore::open_for_bulk(&self.data)?)),
            StoreKind::Dynamodb => self.open().await,
        }
    }

    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match self.store {
            StoreKind::Embedded => Arc::new(EmbeddedStore::open_with_caches(
                &self.data,
                self.entry_cache_mib.saturating_mul(1 << 20),
                self.store_cache_mib.saturating_mul(1 << 20),
            )?),
            StoreKind::Dynamodb => {
                let tag_table = self
                    .tag_table
                    .clone()
                    .unwrap_or_else(|| default_tag_table(&self.table));
                let history_table = self
                    .history_table
                    .clone()
                    .unwrap_or_else(|| default_history_table(&self.table));
                Arc::new(
                    DynamoStore::connect(
                        &self.table,
                        &tag_table,
                        &history_table,
                        self.create_table,
                    )
                    .await?,
                )
            }
        })
    }
}

impl ProbeArgs {
    pub fn prober(&self) -> Prober {
        Prober::new(ProbeConfig {
            timeout: Duration::from_millis(self.probe_timeout_ms.max(1)),
            allow_loopback: self.probe_allow_loopback,
            max_in_flight: self.probe_max_in_flight.max(1),
            deny: self.probe_deny.iter().flat_map(|d| d.0.clone()).collect(),
            // Inside Lambda the runtime API is never a probe target, whatever the flags say.
            lambda_runtime_api: std::env::var("AWS_LAMBDA_RUNTIME_API")
                .ok()
                .and_then(|v| RuntimeApi::parse(&v)),
            ..ProbeConfig::default()
        })
    }

    pub fn check_policy(&self) -> CheckPolicy {
        CheckPolicy {
            cooldown: Duration::from_secs(self.probe_cooldown_secs),
            slot_wait: PROBE_SLOT_WAIT,
        }
    }
}

/// `REGISTRY_DB_WRITE_TOKEN`, when set and not blank.
pub fn write_token() -> Option<Arc<str>> {
    std::env::var("REGISTRY_DB_WRITE_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Arc::from(t.trim()))
}

/// Inside Lambda the same settings come from the environment, with DynamoDB as the default store.
pub fn lambda_settings() -> anyhow::Result<(StoreArgs, ProbeArgs, WriteArgs)> {
    #[derive(Parser)]
    struct LambdaEnv {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        probe: ProbeArgs,
        #[command(flatten)]
        writes: WriteArgs,
    }
    // Lambda defaults to DynamoDB; an explicit REGISTRY_DB_STORE still wins.
    let store_default = std::env::var("REGISTRY_DB_STORE").unwrap_or_else(|_| "dynamodb".into());
    let parsed = LambdaEnv::try_parse_from(["registry-db", "--store", &store_default])?;
    Ok((parsed.store, parsed.probe, parsed.writes))
}
