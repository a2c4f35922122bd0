//! The service's figures, named and labelled in one place. Code that counts something calls a
//! function here; the `metrics` facade hands the figure to whichever recorder the entry point
//! installed: Prometheus text for the local server's `GET /metrics` ([`install_prometheus`]), or
//! CloudWatch Embedded Metric Format lines on stdout inside Lambda ([`Emf`]). With no recorder
//! installed (tests in process, `import`) every call is a no-op.
//!
//! Labels are bounded: a route is its matched template (`/container_registry/{id}`, never the raw
//! path), a method one of the standard ones or `other`, a status a number, a verdict one of four.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit, counter,
    describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::registry::{AtomicStorage, Registry};
use serde_json::{Map, Value, json};

pub const HTTP_REQUESTS: &str = "registry_db_http_requests_total";
pub const HTTP_DURATION: &str = "registry_db_http_request_duration_seconds";
pub const PROBES: &str = "registry_db_probes_total";
pub const PROBE_DURATION: &str = "registry_db_probe_duration_seconds";
pub const PROBE_SLOTS_IN_USE: &str = "registry_db_probe_slots_in_use";
pub const STORE_CALLS: &str = "registry_db_store_calls_total";
pub const STORE_ERRORS: &str = "registry_db_store_errors_total";
pub const CACHE_HITS: &str = "registry_db_entry_cache_hits_total";
pub const CACHE_MISSES: &str = "registry_db_entry_cache_misses_total";
pub const CACHE_ENTRIES: &str = "registry_db_entry_cache_entries";
pub const CACHE_BYTES: &str = "registry_db_entry_cache_bytes";
pub const SWEEP_DURATION: &str = "registry_db_sweep_duration_seconds";
pub const SWEEPS: &str = "registry_db_sweeps_total";
pub const HEALTH_WRITE_UNITS: &str = "registry_db_dynamodb_health_write_units_total";
pub const RATE_LIMITED: &str = "registry_db_rate_limited_total";

/// Histogram buckets, in seconds: from a cached GET (tens of microseconds) to a probe timeout and
/// a sweep of many entries.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// The CloudWatch namespace of the Lambda's figures.
pub const EMF_NAMESPACE: &str = "registry-db";

/// EMF allows at most 100 values in one metric's array.
const EMF_MAX_VALUES: usize = 100;

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests answered, by route template, method and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request (until its headers), by route template and method."
    );
    describe_counter!(PROBES, Unit::Count, "Health probes run, by verdict.");
    describe_histogram!(
        PROBE_DURATION,
        Unit::Seconds,
        "Time of one health probe, by verdict."
    );
    describe_gauge!(
        PROBE_SLOTS_IN_USE,
        Unit::Count,
        "Probe slots taken right now (checks and sweeps together)."
    );
    describe_counter!(
        STORE_CALLS,
        Unit::Count,
        "Calls to the store, by operation."
    );
    describe_counter!(
        STORE_ERRORS,
        Unit::Count,
        "Store calls that failed, by operation and kind of failure."
    );
    describe_counter!(
        CACHE_HITS,
        Unit::Count,
        "Embedded store: reads answered from the entry cache."
    );
    describe_counter!(
        CACHE_MISSES,
        Unit::Count,
        "Embedded store: reads the entry cache could not answer."
    );
    describe_gauge!(
        CACHE_ENTRIES,
        Unit::Count,
        "Embedded store: entries held in the entry cache."
    );
    describe_gauge!(
        CACHE_BYTES,
        Unit::Bytes,
        "Embedded store: bytes held in the entry cache (entries and tag lists)."
    );
    describe_histogram!(
        SWEEP_DURATION,
        Unit::Seconds,
        "Time of one health sweep of every entry."
    );
    describe_counter!(SWEEPS, Unit::Count, "Health sweeps run.");
    describe_counter!(
        HEALTH_WRITE_UNITS,
        Unit::Count,
        "DynamoDB write units the health writes consumed (history and health records), as DynamoDB reports them."
    );
    describe_counter!(
        RATE_LIMITED,
        Unit::Count,
        "Requests refused by a rate limit, by limit."
    );
}

static RECORDING: AtomicBool = AtomicBool::new(false);

/// Whether a recorder is installed: the request layer is left out of the router when nothing would
/// log or count (see `api/log.rs`).
pub fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// Installs the Prometheus recorder for this process (once; later calls return the same handle).
pub fn install_prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .expect("the buckets are not empty")
                .install_recorder()
                .expect("no other recorder is installed in this process");
            describe();
            RECORDING.store(true, Ordering::Relaxed);
            handle
        })
        .clone()
}

/// The method as a bounded label.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    }
}

/// One answered HTTP request. `route` is the matched template, or `None` for a path no route
/// serves (counted as `unmatched`, whatever the path was).
pub fn request(route: Option<&str>, method: &str, status: u16, elapsed: Duration) {
    let route = SharedString::from(route.unwrap_or("unmatched").to_owned());
    let method = method_label(method);
    counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status.to_string())
        .increment(1);
    histogram!(HTTP_DURATION, "route" => route, "method" => method).record(elapsed.as_secs_f64());
}

/// One health probe and its verdict (`healthy`, `auth_required`, `not_registry`, `unreachable`).
pub fn probe(verdict: &'static str, elapsed: Duration) {
    counter!(PROBES, "verdict" => verdict).increment(1);
    histogram!(PROBE_DURATION, "verdict" => verdict).record(elapsed.as_secs_f64());
}

/// Holds one probe slot in the `probe_slots_in_use` gauge until dropped.
pub struct SlotInUse(Gauge);

impl SlotInUse {
    pub fn take() -> SlotInUse {
        let g = gauge!(PROBE_SLOTS_IN_USE);
        g.increment(1.0);
        SlotInUse(g)
    }
}

impl Drop for SlotInUse {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// One finished sweep.
pub fn sweep(elapsed: Duration) {
    counter!(SWEEPS).increment(1);
    histogram!(SWEEP_DURATION).record(elapsed.as_secs_f64());
}

/// Write units DynamoDB reported for one health write (whole units: writes bill by the KB).
pub fn dynamodb_write_units(units: f64) {
    counter!(HEALTH_WRITE_UNITS).increment(units.ceil().max(0.0) as u64);
}

/// A request refused by a rate limit; `limit` names which one (e.g. `create`, `verification`).
pub fn rate_limited(limit: &'static str) {
    counter!(RATE_LIMITED, "limit" => limit).increment(1);
}

/// The counter of calls of one store operation (made once per operation and kept: a call then
/// costs one atomic add).
pub fn store_calls(op: &'static str) -> Counter {
    counter!(STORE_CALLS, "op" => op)
}

/// One failed store call; `kind` is the failure's kind (`unavailable`, `version_conflict`, ...).
pub fn store_error(op: &'static str, kind: &'static str) {
    counter!(STORE_ERRORS, "op" => op, "kind" => kind).increment(1);
}

/// The entry cache's figures, read from the cache when they are published.
pub fn entry_cache(hits: u64, misses: u64, entries: usize, bytes: usize) {
    counter!(CACHE_HITS).absolute(hits);
    counter!(CACHE_MISSES).absolute(misses);
    gauge!(CACHE_ENTRIES).set(entries as f64);
    gauge!(CACHE_BYTES).set(bytes as f64);
}

/// Inside Lambda: a recorder that keeps the figures of one invocation and writes them out as
/// CloudWatch Embedded Metric Format lines ([`Emf::flush`]), which CloudWatch Logs turns into
/// metrics with no call to AWS from the function.
pub struct Emf {
    registry: Registry<Key, AtomicStorage>,
}

/// The recorder that installs the shared [`Emf`].
struct EmfRecorder(Arc<Emf>);

impl Recorder for EmfRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .registry
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .registry
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .registry
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

/// A figure's labels, sorted by key: one EMF dimension set with its values.
type Labels = Vec<(String, String)>;

/// The EMF unit of a figure, from its name's suffix.
fn emf_unit(name: &str) -> &'static str {
    if name.ends_with("_seconds") {
        "Seconds"
    } else if name.ends_with("_bytes") {
        "Bytes"
    } else {
        "Count"
    }
}

impl Emf {
    pub fn new() -> Arc<Emf> {
        Arc::new(Emf {
            registry: Registry::atomic(),
        })
    }

    /// Installs it as this process's recorder (once).
    pub fn install() -> Arc<Emf> {
        static EMF: OnceLock<Arc<Emf>> = OnceLock::new();
        EMF.get_or_init(|| {
            let emf = Emf::new();
            metrics::set_global_recorder(EmfRecorder(emf.clone()))
                .expect("no other recorder is installed in this process");
            RECORDING.store(true, Ordering::Relaxed);
            emf
        })
        .clone()
    }

    /// Runs `f` with this recorder as the current thread's (for tests).
    pub fn with_local<T>(self: &Arc<Emf>, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&EmfRecorder(self.clone()), f)
    }

    /// The figures since the last flush as EMF documents, one per set of labels (EMF's
    /// dimensions): counters that moved, gauges, and every histogram value (in arrays of at most
    /// 100). Counters restart at zero and histograms empty.
    pub fn flush(&self) -> Vec<Value> {
        // Labels (sorted, as the dimension set) -> metric name -> value.
        let mut groups: BTreeMap<Labels, BTreeMap<String, Value>> = BTreeMap::new();
        let labels = |key: &Key| {
            let mut l: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            l.sort();
            l
        };
        self.registry.visit_counters(|key, c| {
            let n = c.swap(0, Ordering::Relaxed);
            if n > 0 {
                groups
                    .entry(labels(key))
                    .or_default()
                    .insert(key.name().to_owned(), json!(n));
            }
        });
        self.registry.visit_gauges(|key, g| {
            let v = f64::from_bits(g.load(Ordering::Relaxed));
            groups
                .entry(labels(key))
                .or_default()
                .insert(key.name().to_owned(), json!(v));
        });
        let mut extra: Vec<(Labels, String, Vec<f64>)> = Vec::new();
        self.registry.visit_histograms(|key, h| {
            let mut values = Vec::new();
            h.clear_with(|chunk| values.extend_from_slice(chunk));
            if values.is_empty() {
                return;
            }
            let mut chunks = values.chunks(EMF_MAX_VALUES);
            if let Some(first) = chunks.next() {
                groups
                    .entry(labels(key))
                    .or_default()
                    .insert(key.name().to_owned(), json!(first));
            }
            // Past 100 values, the rest go in further documents of the same dimensions.
            for more in chunks {
                extra.push((labels(key), key.name().to_owned(), more.to_vec()));
            }
        });
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let document = |labels: &[(String, String)], figures: Vec<(String, Value)>| {
            let mut doc = Map::new();
            let metrics: Vec<Value> = figures
                .iter()
                .map(|(name, _)| json!({"Name": name, "Unit": emf_unit(name)}))
                .collect();
            let dimensions: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
            doc.insert(
                "_aws".into(),
                json!({
                    "Timestamp": timestamp,
                    "CloudWatchMetrics": [{
                        "Namespace": EMF_NAMESPACE,
                        "Dimensions": [dimensions],
                        "Metrics": metrics,
                    }],
                }),
            );
            for (k, v) in labels {
                doc.insert(k.clone(), json!(v));
            }
            for (name, value) in figures {
                doc.insert(name, value);
            }
            Value::Object(doc)
        };
        let mut out: Vec<Value> = groups
            .iter()
            .map(|(labels, figures)| {
                document(
                    labels,
                    figures
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
            })
            .collect();
        for (labels, name, values) in extra {
            out.push(document(&labels, vec![(name, json!(values))]));
        }
        out
    }

    /// Writes [`Self::flush`] to stdout, one line each: Lambda sends stdout to CloudWatch Logs.
    pub fn write_out(&self) {
        use std::io::Write;
        let docs = self.flush();
        if docs.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        for doc in docs {
            let _ = writeln!(out, "{doc}");
        }
        let _ = out.flush();
    }
}
