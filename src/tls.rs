//! One TLS setup for every HTTPS client of the process, the AWS SDK's and the probes': rustls with
//! `ring` as its crypto provider, certificates checked by rustls-platform-verifier against the
//! system's root certificates (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured). Reading and parsing
//! those certificates takes milliseconds, so it happens once per process, not once per client.

use std::sync::{Arc, OnceLock};

use rustls::ClientConfig;
use rustls_platform_verifier::BuilderVerifierExt;

/// The shared client configuration (HTTP/1.1 only, as both clients speak), built at the first call.
///
/// # Errors
/// When no root certificate could be loaded from the system, as rustls-platform-verifier words it.
pub fn client_config() -> Result<ClientConfig, String> {
    static CONFIG: OnceLock<Result<ClientConfig, String>> = OnceLock::new();
    CONFIG.get_or_init(build).clone()
}

fn build() -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(BuilderVerifierExt::with_platform_verifier)
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
