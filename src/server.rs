//! The local server: the same router on a TCP listener, optional periodic sweeps, graceful stop.

use std::io::Write;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::health::SweepOptions;
use crate::router::service;
use crate::state::AppState;

pub struct ServeOptions {
    pub addr: std::net::SocketAddr,
    pub sweep_every: Option<Duration>,
}

pub async fn serve(state: AppState, opts: ServeOptions) -> anyhow::Result<()> {
    if state.write_token.is_none() {
        tracing::warn!(
            "REGISTRY_DB_WRITE_TOKEN is not set: anyone who can reach this server can create, update and delete entries"
        );
    }
    let listener = TcpListener::bind(opts.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", opts.addr))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, store = %state.catalog.store().describe(), "registry-db listening");
    // A machine-readable line on stdout, so scripts and tests started with port 0 learn the port.
    println!("registry-db listening on http://{local}");
    let _ = std::io::stdout().flush();

    if let Some(every) = opts.sweep_every {
        let catalog = state.catalog.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every.max(Duration::from_secs(1)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = catalog.sweep(&SweepOptions::default()).await {
                    tracing::error!(error = %e, "health sweep failed");
                }
            }
        });
    }

    let app = service(state);
    axum::serve(listener, axum::ServiceExt::into_make_service(app))
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
