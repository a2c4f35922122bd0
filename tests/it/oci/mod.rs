//! The OCI read client (`src/health/oci.rs`) and what is built on it, against real registries on
//! loopback (Debian's `docker-registry` open, with htpasswd, and with `auth: token` and the test
//! token server of `support::token_server`), images pushed by skopeo from a hand-made OCI layout,
//! and hostile servers (`hostile.rs`).
//!
//!     unshare -n bash -c 'ip link set lo up && exec cargo test --offline --test it oci::'

use registry_db::health::{ManifestRead, Prober, Read, Target};

use crate::support::{self, loopback_config};

mod client;
mod hostile;
mod lookups;
mod verification;

/// Every read here runs only where loopback is the whole network.
async fn read(prober: &Prober, url: &str, repo: &str, target: &str, how: Read) -> ManifestRead {
    support::require_loopback_only_network();
    let target = if target.contains(':') {
        Target::Digest(target.to_owned())
    } else {
        Target::Tag(target.to_owned())
    };
    prober.read_manifest(url, repo, &target, how).await
}

fn prober(timeout_ms: u64) -> Prober {
    Prober::new(loopback_config(timeout_ms))
}
