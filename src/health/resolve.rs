//! Name resolution for the probe, and the bridge that makes reqwest connect only to checked addresses.
//!
//! reqwest calls `GuardedResolve` for every connection to a host name; it resolves through the
//! configured [`Resolver`] and refuses the whole name when any of its addresses is refused by the
//! [`AddressPolicy`]. reqwest then connects only to the addresses returned here, so what was checked is
//! what is connected to. IP-literal URLs never reach a resolver; the probe checks those itself.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::guard::AddressPolicy;

/// Turns a host name into addresses. Swappable so tests can make a name "resolve" to a refused address
/// without DNS.
#[async_trait::async_trait]
pub trait Resolver: Send + Sync {
    /// Addresses of `host`. `port` is carried into the returned addresses; the probe passes 0 and the
    /// URL's port is applied afterwards.
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver (`getaddrinfo` through `tokio::net::lookup_host`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
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

/// reqwest's resolver hook: resolve through a [`Resolver`], then check every address.
pub(crate) struct GuardedResolve {
    pub(crate) inner: Arc<dyn Resolver>,
    pub(crate) policy: AddressPolicy,
}

impl reqwest::dns::Resolve for GuardedResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let inner = Arc::clone(&self.inner);
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = match inner.resolve(&host, 0).await {
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
