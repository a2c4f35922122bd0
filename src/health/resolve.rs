//! Name resolution for the probe, and the bridge that makes reqwest connect only to checked addresses.
//!
//! reqwest calls `GuardedResolve` for every connection to a host name; it refuses names the policy
//! refuses as such (localhost names, the Lambda runtime API's host), resolves the rest through the
//! configured [`Resolver`] and refuses the whole name when any of its addresses is refused by the
//! [`AddressPolicy`]. reqwest then connects only to the addresses returned here, so what was checked is
//! what is connected to. IP-literal URLs never reach a resolver; the probe checks those itself.
//!
//! Resolution is asynchronous ([`DnsResolver`] is hickory-resolver reading `/etc/resolv.conf` and
//! `/etc/hosts`): no thread of any pool waits on a slow DNS server, and dropping the probe at its
//! deadline drops the query. `getaddrinfo` (`tokio::net::lookup_host`) would park a thread of Tokio's
//! blocking pool, which the embedded store also runs on, for as long as the DNS server cares to take.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use super::guard::{AddressPolicy, is_localhost_name};

/// Turns a host name into addresses. Swappable so tests can make a name "resolve" to a refused address
/// without DNS.
#[async_trait::async_trait]
pub trait Resolver: Send + Sync {
    /// Addresses of `host`. `port` is carried into the returned addresses; the probe passes 0 and the
    /// URL's port is applied afterwards.
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// DNS through hickory-resolver, asynchronously: by default the system's configuration
/// (`/etc/resolv.conf`, `/etc/hosts`), built on first use; a machine without a readable
/// `/etc/resolv.conf` resolves no names (the probe says why).
#[derive(Default)]
pub struct DnsResolver {
    inner: OnceLock<Result<TokioResolver, String>>,
}

impl fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DnsResolver")
    }
}

impl DnsResolver {
    /// Asks only the DNS server at `server` (over UDP), ignoring the system's configuration and
    /// `/etc/hosts`: for tests that run their own DNS server on loopback.
    pub fn with_name_server(server: SocketAddr) -> Self {
        let mut name_server = NameServerConfig::udp(server.ip());
        for connection in &mut name_server.connections {
            connection.port = server.port();
        }
        let mut opts = ResolverOpts::default();
        opts.use_hosts_file = ResolveHosts::Never;
        let built = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![name_server]),
            TokioRuntimeProvider::default(),
        )
        .with_options(opts)
        .build()
        .map_err(|e| format!("cannot set up DNS ({e})"));
        DnsResolver {
            inner: OnceLock::from(built),
        }
    }

    fn resolver(&self) -> Result<&TokioResolver, std::io::Error> {
        self.inner
            .get_or_init(|| {
                TokioResolver::builder_tokio()
                    .and_then(|b| b.build())
                    .map_err(|e| format!("no DNS configuration ({e})"))
            })
            .as_ref()
            .map_err(|e| std::io::Error::other(e.clone()))
    }
}

#[async_trait::async_trait]
impl Resolver for DnsResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        let lookup = self.resolver()?.lookup_ip(host).await.map_err(|e| {
            if e.is_nx_domain() || e.is_no_records_found() {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such host")
            } else {
                std::io::Error::other(e.to_string())
            }
        })?;
        Ok(lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }
}

/// A fixed table of names, for tests. A name not in the table fails to resolve; DNS is never asked.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver(pub HashMap<String, Vec<IpAddr>>);

impl StaticResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a name, builder style.
    pub fn with(
        mut self,
        host: impl Into<String>,
        addrs: impl IntoIterator<Item = IpAddr>,
    ) -> Self {
        self.0.insert(
            host.into().to_ascii_lowercase(),
            addrs.into_iter().collect(),
        );
        self
    }
}

#[async_trait::async_trait]
impl Resolver for StaticResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        match self.0.get(&key) {
            Some(ips) => Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "name not in the static resolver's table",
            )),
        }
    }
}

/// A host name that did not resolve to any address.
#[derive(Debug, thiserror::Error)]
pub struct ResolveFailed {
    pub host: String,
    #[source]
    pub source: std::io::Error,
}

impl fmt::Display for ResolveFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not resolve the host name {}: {}",
            self.host, self.source
        )
    }
}

/// reqwest's resolver hook: refuse names the policy refuses, resolve through a [`Resolver`], then check
/// every address.
pub(crate) struct GuardedResolve {
    pub(crate) inner: Arc<dyn Resolver>,
    pub(crate) policy: Arc<AddressPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let inner = Arc::clone(&self.inner);
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            if let Err(refusal) = policy.check_name(&host) {
                tracing::debug!(%refusal, "probe resolver refused a name");
                return Err(Box::new(refusal) as _);
            }
            // localhost names are loopback by definition (RFC 6761): never asked of DNS, whose
            // answer for them could be anything.
            let resolved = if is_localhost_name(&host) {
                Ok(vec![
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
                ])
            } else {
                inner.resolve(&host, 0).await
            };
            let addrs = match resolved {
                Ok(addrs) if !addrs.is_empty() => addrs,
                Ok(_) => {
                    let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses");
                    return Err(Box::new(ResolveFailed { host, source }) as _);
                }
                Err(source) => return Err(Box::new(ResolveFailed { host, source }) as _),
            };
            // One refused address refuses the name: a name that mixes a registry's address with a
            // metadata address is an attack, not a registry, and refusing it keeps the verdict stable.
            for addr in &addrs {
                if let Err(mut refusal) = policy.check(addr.ip()) {
                    refusal.host = Some(host);
                    tracing::debug!(%refusal, "probe resolver refused an address");
                    return Err(Box::new(refusal) as _);
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
