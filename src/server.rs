//! The local server: the same router on a TCP listener, optional periodic sweeps, graceful stop.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::auth::{Access, WritePolicy};
use crate::api::{AppState, service};
use crate::domain::service::Registry;
use crate::health::SweepOptions;

pub struct ServeOptions {
    pub addr: std::net::SocketAddr,
    pub write_token: Option<Arc<str>>,
    pub access: Access,
    pub sweep_every: Option<Duration>,
}

pub async fn serve(registry: Registry, opts: ServeOptions) -> anyhow::Result<()> {
    let policy = opts
        .access
        .policy
        .unwrap_or_else(|| WritePolicy::default_for(opts.write_token.as_deref()));
    match (policy, opts.write_token.is_some()) {
        (WritePolicy::Open, _) => tracing::warn!(
            "writes are open (--writes open): anyone who can reach this server can create, update and delete entries"
        ),
        (WritePolicy::Operator, false) => tracing::warn!(
            "--writes operator without REGISTRY_DB_WRITE_TOKEN: nobody can write through this server"
        ),
        (WritePolicy::Owners, false) => tracing::warn!(
            "--writes owners without REGISTRY_DB_WRITE_TOKEN: entries without an owner cannot be changed by anyone"
        ),
        _ => {}
    }
    let listener = TcpListener::bind(opts.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", opts.addr))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, store = %registry.store().describe(), writes = %policy.as_str(), limits = %opts.access.limits.describe(), "registry-db listening");
    // A machine-readable line on stdout, so scripts and tests started with port 0 learn the port.
    println!("registry-db listening on http://{local}");
    let _ = std::io::stdout().flush();

    if let Some(every) = opts.sweep_every {
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every.max(Duration::from_secs(1)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = registry.sweep(&SweepOptions::default()).await {
                    tracing::error!(error = %e, "health sweep failed");
                }
            }
        });
    }

    let app = service(AppState {
        registry,
        write_token: opts.write_token,
        access: opts.access,
    });
    // The peer address travels as `ConnectInfo` (read by `api::rate_limit::client_addr`).
    axum::serve(
        listener,
        axum::ServiceExt::into_make_service_with_connect_info::<std::net::SocketAddr>(app),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    tracing::info!("registry-db stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
