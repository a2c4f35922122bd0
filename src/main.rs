//! `registry-db`: runs as the Lambda function when Lambda starts it, else as a command line.

use std::time::Duration;

use clap::Parser;
use registry_db::config::{self, Cli, Command, MetricsAt};
use registry_db::router::router;
use registry_db::server::{ServeOptions, serve};
use registry_db::state::AppState;
use registry_db::{lambda, metrics, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        telemetry::init(true);
        // Reading the system's root certificates takes milliseconds (README, Performance): on a
        // thread of its own, it overlaps the rest of init and the wait for the first event instead
        // of delaying the first `next`. The first HTTPS request waits for it if need be.
        std::thread::spawn(|| drop(registry_db::tls::client_config()));
        let (store, probe, writes) = config::lambda_settings()?;
        // The figures go to CloudWatch as EMF lines after each invocation (`lambda::run`).
        let emf = metrics::Emf::install();
        let mut state = AppState::open(&store, Some(&probe)).await?;
        state.access = writes.access(state.write_token.as_deref());
        tracing::info!(writes = state.policy().as_str(), limits = %state.access.limits.describe(), "registry-db Lambda function ready");
        let catalog = state.catalog.clone();
        return lambda::run(catalog, router(state), emf)
            .await
            .map_err(|e| anyhow::anyhow!(e));
    }
    telemetry::init(false);
    match Cli::parse().command {
        Command::Serve(args) => {
            tls_ready()?;
            // Before the state: the store's counters are made when it opens.
            let handle = (args.metrics != MetricsAt::Off).then(metrics::install_prometheus);
            let mut state = AppState::open(&args.store, Some(&args.probe)).await?;
            state.access = args.writes.access(state.write_token.as_deref());
            let opts = ServeOptions {
                addr: args.addr,
                sweep_every: args.sweep_every.map(Duration::from_secs),
                connections: args.connections.limits(&args.probe),
                metrics: (args.metrics, handle),
            };
            serve(state, opts).await
        }
        Command::Reindex(args) => {
            let store = args.store.open().await?;
            let report = registry_db::ops::progress::reindex(store.as_ref(), args.quiet).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Sweep(args) => {
            tls_ready()?;
            let state = AppState::open(&args.store, Some(&args.probe)).await?;
            let report = registry_db::ops::progress::sweep(&state.catalog, args.quiet).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Export(args) => registry_db::ops::export::run(&args).await,
        Command::Import(args) if args.exact => {
            let code = registry_db::ops::import_exact::run(&args).await?;
            std::process::exit(code)
        }
        Command::Import(args) => {
            // The store is closed when `run` returns, before the process exits.
            let code = registry_db::import::run(&args).await?;
            std::process::exit(code)
        }
    }
}

/// Probes build their HTTP client at the first probe (and inside Lambda nothing waits for the
/// root certificates): the commands that probe read them at start, so that a machine without any
/// stops there rather than at its first health check.
fn tls_ready() -> anyhow::Result<()> {
    registry_db::tls::client_config()
        .map(drop)
        .map_err(anyhow::Error::msg)
}
