//! What the handlers and the entry points share: the catalog service, the write token and who may
//! write (`access`). Built
//! from the settings in one place, [`AppState::open`], by `serve`, `sweep`, the Lambda and
//! `import` alike; the API and the pages both read it, and neither knows the other.

use std::sync::Arc;
use std::time::Duration;

use crate::access::{Access, WritePolicy};
use crate::config::{self, ProbeArgs, StoreArgs};
use crate::domain::catalog::Catalog;
use crate::health::{ProbeConfig, Prober};
use crate::store::metered::Metered;

/// The router holds it in one `Arc`, so a request clones one pointer rather than the catalog's
/// several.
pub struct AppState {
    pub catalog: Catalog,
    pub write_token: Option<Arc<str>>,
    /// The write policy and rate limits; the default is the policy the write token implies, with
    /// no limits (the entry points set it from the settings).
    pub access: Access,
}

impl AppState {
    /// Opens the store and builds the service from the settings. Without probe settings (an
    /// import, which never probes) the service gets a default prober it does not use.
    pub async fn open(store: &StoreArgs, probe: Option<&ProbeArgs>) -> anyhow::Result<AppState> {
        // Every store call is counted (`crate::metrics`; a no-op without a recorder).
        let opened: Arc<dyn crate::store::Store> = Arc::new(Metered::new(store.open().await?));
        let catalog = match probe {
            Some(probe) => {
                Catalog::new(opened, probe.prober()).with_check_policy(probe.check_policy())
            }
            None => Catalog::new(opened, Prober::new(ProbeConfig::default())),
        }
        .with_facet_max_age(Duration::from_secs(store.facet_cache_secs));
        Ok(AppState {
            catalog,
            write_token: config::write_token(),
            access: Access::default(),
        })
    }

    /// The write policy in force.
    pub fn policy(&self) -> WritePolicy {
        self.access
            .policy
            .unwrap_or_else(|| WritePolicy::default_for(self.write_token.as_deref()))
    }
}
