//! The local server: the same router on a TCP listener, within the bounds of [`conn`], optional
//! periodic sweeps, graceful stop.

pub mod conn;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::access::WritePolicy;
use crate::api::log::CatchPanic;
use crate::config::MetricsAt;
use crate::health::SweepOptions;
use crate::router::local_router;
use crate::state::AppState;
use crate::store::Store;

pub struct ServeOptions {
    pub addr: std::net::SocketAddr,
    pub sweep_every: Option<Duration>,
    /// Timeouts, connection cap and body budget (`config::ConnArgs`).
    pub connections: conn::Limits,
    /// Where `/metrics` is served, and the recorder's handle (installed before the state was
    /// built, so that the store's counters record); `None` with `MetricsAt::Off`.
    pub metrics: (MetricsAt, Option<PrometheusHandle>),
}

/// How often the recorder drains its histograms when nobody scrapes (bounds its memory).
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// `GET /metrics`: Prometheus text of every figure, the store's own read at the scrape.
pub fn metrics_routes(handle: PrometheusHandle, store: Arc<dyn Store>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            store.publish_metrics();
            let body = handle.render();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    )
}

pub async fn serve(state: AppState, opts: ServeOptions) -> anyhow::Result<()> {
    let policy = state.policy();
    match (policy, state.write_token.is_some()) {
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
    let mut limits = opts.connections;
    let (open_files, raised_from) = conn::raise_open_files_limit();
    if let Some(from) = raised_from {
        tracing::info!(
            from,
            to = open_files,
            "raised the open-files soft limit to the hard limit"
        );
    }
    let cap = conn::effective_cap(limits.max_connections, open_files, limits.reserved_fds);
    if cap < limits.max_connections {
        tracing::warn!(
            setting = limits.max_connections,
            cap,
            open_files,
            reserved = limits.reserved_fds,
            "connection cap lowered to fit under the open-files limit"
        );
    }
    limits.max_connections = cap;
    tracing::info!(
        addr = %local,
        store = %state.catalog.store().describe(),
        writes = %policy.as_str(),
        limits = %state.access.limits.describe(),
        max_connections = limits.max_connections,
        open_files_limit = open_files,
        header_timeout_secs = limits.header_timeout.as_secs(),
        idle_timeout_secs = limits.idle_timeout.as_secs(),
        body_timeout_secs = limits.body.timeout().as_secs(),
        request_timeout_secs = limits.request_timeout.as_secs(),
        body_budget_bytes = limits.body.budget_bytes(),
        max_head_bytes = conn::MAX_HEAD_BYTES,
        "registry-db listening"
    );
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

    let store = state.catalog.store().clone();
    let mut app = local_router(state);
    if let (at, Some(handle)) = opts.metrics {
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(METRICS_UPKEEP);
            loop {
                ticker.tick().await;
                upkeep.run_upkeep();
            }
        });
        let routes = metrics_routes(handle, store);
        match at {
            MetricsAt::Router => app = app.merge(routes),
            MetricsAt::Addr(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for metrics: {e}"))?;
                let local = listener.local_addr()?;
                tracing::info!(addr = %local, "metrics on their own listener");
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, routes).await {
                        tracing::error!(error = %e, "the metrics listener stopped");
                    }
                });
            }
            MetricsAt::Off => {}
        }
    }
    let app = CatchPanic::new(app);
    conn::run(listener, app, limits, shutdown_signal()).await?;
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
