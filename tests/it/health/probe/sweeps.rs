//! Sweeps, and the probes in flight: the global cap, and the per-host cap of sweeps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use registry_db::health::{
    HealthStatus, ProbeConfig, ProbeResult, Prober, StaticResolver, SweepOptions, run_sweep,
};

use super::{loopback_config, strict_config};
use crate::support;
use crate::support::oci_registry::{Mode, OciRegistry};
use crate::support::servers::{holding_server, silent_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_of_300_mostly_dead_entries_takes_about_one_timeout() {
    let registry = tokio::task::spawn_blocking(|| OciRegistry::start(Mode::Open))
        .await
        .unwrap();
    let silent = silent_server().await;
    let registry_port = registry.url.rsplit(':').next().unwrap().to_owned();
    // Every entry on its own host name (all of them 127.0.0.1), as a real listing has them, so the
    // per-host cap does not serialize them.
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let resolver = (0..300).fold(StaticResolver::new(), |r, i| {
        r.with(format!("entry-{i}.test"), [loopback])
    });
    let targets: Vec<(String, String)> = (0..300)
        .map(|i| {
            let port = if i % 30 == 0 {
                registry_port.clone()
            } else {
                silent.addr.port().to_string()
            };
            (
                format!("entry-{i}"),
                format!("http://entry-{i}.test:{port}"),
            )
        })
        .collect();
    let timeout = Duration::from_millis(500);
    let prober = Prober::new(ProbeConfig {
        timeout,
        resolver: Arc::new(resolver),
        ..loopback_config(0)
    });
    let opts = SweepOptions {
        jitter: Duration::from_millis(100),
        ..SweepOptions::default()
    };
    let recorded: Mutex<HashMap<String, ProbeResult>> = Mutex::default();

    let started = Instant::now();
    let report = run_sweep(&prober, targets, &opts, |id, result| {
        let fail = id.ends_with('7');
        recorded.lock().unwrap().insert(id, result);
        async move {
            if fail {
                Err("the store said no".to_owned())
            } else {
                Ok(())
            }
        }
    })
    .await;
    let took = started.elapsed();

    // One probe after another would take 290 timeouts (145 s); with the default cap of 256 probes in
    // flight, of which a sweep takes 192, it is two timeouts plus the jitter and the scheduling of
    // 300 connections on a busy 2-core machine.
    assert!(
        took < timeout * 4,
        "the sweep took {took:?}, more than 4x the {timeout:?} timeout"
    );
    assert_eq!(report.total, 300, "{report:?}");
    assert_eq!(report.healthy, 10, "{report:?}");
    assert_eq!(report.unreachable, 290, "{report:?}");
    assert_eq!(
        report.healthy + report.auth_required + report.not_registry + report.unreachable,
        report.total
    );
    assert_eq!(report.record_failures, 30, "{report:?}");
    assert!(report.duration_ms <= took.as_millis() as u64);

    let recorded = recorded.into_inner().unwrap();
    assert_eq!(recorded.len(), 300, "every target is recorded");
    let dead = &recorded["entry-1"];
    assert_eq!(dead.status, HealthStatus::Unreachable);
    assert!(
        dead.error
            .as_deref()
            .unwrap()
            .starts_with("timed out after 500 ms"),
        "{dead:#?}"
    );
    assert_eq!(
        recorded["entry-30"].status,
        HealthStatus::Healthy,
        "{:#?}",
        recorded["entry-30"]
    );
}

#[tokio::test]
async fn sweep_concurrency_is_bounded() {
    let silent = silent_server().await;
    let targets = (0..6).map(|i| (i.to_string(), silent.url()));
    let prober = Prober::new(loopback_config(200));
    let opts = SweepOptions {
        concurrency: 2,
        jitter: Duration::ZERO,
        ..SweepOptions::default()
    };
    let started = Instant::now();
    let report = run_sweep(&prober, targets, &opts, |_, _| async { Ok(()) }).await;
    let took = started.elapsed();
    assert_eq!(
        (report.total, report.unreachable, report.record_failures),
        (6, 6, 0)
    );
    // three rounds of two: at least three timeouts, and not much more
    assert!(
        took >= Duration::from_millis(590) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
}

#[tokio::test]
async fn sweep_records_refused_and_unusable_targets_too() {
    support::require_loopback_only_network();
    let prober = Prober::new(strict_config(500));
    let targets = vec![
        ("a".to_owned(), "http://169.254.169.254".to_owned()),
        ("b".to_owned(), String::new()),
    ];
    let seen = Mutex::new(Vec::new());
    let report = run_sweep(&prober, targets, &SweepOptions::default(), |id, r| {
        seen.lock()
            .unwrap()
            .push((id, r.status, r.refused_by.clone()));
        async { Ok(()) }
    })
    .await;
    assert_eq!((report.total, report.unreachable), (2, 2));
    let mut seen = seen.into_inner().unwrap();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen[0],
        (
            "a".to_owned(),
            HealthStatus::Unreachable,
            Some("link-local".to_owned())
        )
    );
    assert_eq!(seen[1], ("b".to_owned(), HealthStatus::Unreachable, None));
}

// ---------------------------------------------------------------------------------------------------
// Probes in flight: the global cap, and the per-host cap of sweeps

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_in_flight_are_capped_across_clones() {
    let server = holding_server(Duration::from_millis(800)).await;
    let prober = Prober::new(ProbeConfig {
        max_in_flight: 2,
        ..loopback_config(3000)
    });
    let url = format!("http://{}", server.addr);
    // Two take the slots; the third waits 200 ms for one and gives up without probing.
    let first: Vec<_> = (0..2)
        .map(|_| {
            let (prober, url) = (prober.clone(), url.clone());
            tokio::spawn(async move { prober.probe(&url).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = prober.probe_within(&url, Duration::from_millis(200)).await;
    assert_eq!(busy.unwrap_err().max_in_flight, 2);
    // A caller willing to wait longer gets the next free slot.
    let waited = prober
        .probe_within(&url, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(waited.status, HealthStatus::Healthy);
    for f in first {
        assert_eq!(f.await.unwrap().status, HealthStatus::Healthy);
    }
    assert_eq!(server.max_open.load(Ordering::SeqCst), 2);
    assert_eq!(server.total.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_cap_probes_per_host() {
    let server = holding_server(Duration::from_millis(300)).await;
    let port = server.addr.port();
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let prober = Prober::new(ProbeConfig {
        resolver: Arc::new(
            StaticResolver::new()
                .with("one.test", [loopback])
                .with("two.test", [loopback]),
        ),
        ..loopback_config(3000)
    });
    // 20 entries on one host: never more than 4 connections to it at once.
    let targets = (0..20).map(|i| (format!("a{i}"), format!("http://one.test:{port}/r{i}")));
    let opts = SweepOptions {
        jitter: Duration::ZERO,
        ..SweepOptions::default()
    };
    let started = Instant::now();
    let report = run_sweep(&prober, targets, &opts, |_, _| async { Ok(()) }).await;
    assert_eq!((report.total, report.healthy), (20, 20), "{report:?}");
    assert_eq!(server.max_open.load(Ordering::SeqCst), 4);
    // five rounds of four, 300 ms each
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    // Two hosts (the same server behind two names) proceed side by side, four each.
    server.max_open.store(0, Ordering::SeqCst);
    let targets = (0..24).map(|i| {
        let host = if i % 2 == 0 { "one.test" } else { "two.test" };
        (format!("b{i}"), format!("http://{host}:{port}"))
    });
    let report = run_sweep(&prober, targets, &opts, |_, _| async { Ok(()) }).await;
    assert_eq!(report.healthy, 24, "{report:?}");
    assert_eq!(server.max_open.load(Ordering::SeqCst), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeps_leave_a_quarter_of_the_slots_to_on_demand_checks() {
    let server = holding_server(Duration::from_millis(600)).await;
    let port = server.addr.port();
    // 12 entries, each on its own host name (so the per-host cap does not bind)...
    let resolver = (0..12).fold(StaticResolver::new(), |r, i| {
        r.with(format!("h{i}.test"), ["127.0.0.1".parse().unwrap()])
    });
    let prober = Prober::new(ProbeConfig {
        max_in_flight: 8,
        resolver: Arc::new(resolver),
        ..loopback_config(3000)
    });
    assert_eq!(prober.sweep_slots(), 6);
    let targets: Vec<_> = (0..12)
        .map(|i| (i.to_string(), format!("http://h{i}.test:{port}")))
        .collect();
    let opts = SweepOptions {
        jitter: Duration::ZERO,
        ..SweepOptions::default()
    };
    let sweeper = prober.clone();
    let sweep =
        tokio::spawn(
            async move { run_sweep(&sweeper, targets, &opts, |_, _| async { Ok(()) }).await },
        );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...run six at a time, and an on-demand probe still finds a slot at once.
    let started = Instant::now();
    let on_demand = prober
        .probe_within(
            &format!("http://127.0.0.1:{port}"),
            Duration::from_millis(50),
        )
        .await
        .expect("a free slot during the sweep");
    assert_eq!(on_demand.status, HealthStatus::Healthy);
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert_eq!(sweep.await.unwrap().healthy, 12);
    assert_eq!(server.max_open.load(Ordering::SeqCst), 7);
}
