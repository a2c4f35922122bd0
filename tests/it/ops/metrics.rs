//! `GET /metrics` of the real `registry-db serve`, after some traffic: Prometheus's own `promtool
//! check metrics` accepts it, and the counters moved as the traffic says. Then where the setting
//! puts it (off, its own address), and the Lambda's figures as CloudWatch Embedded Metric Format.

use std::io::Write;
use std::process::{Command, Stdio};

use registry_db::metrics::{self, Emf};
use serde_json::{Value, json};

use crate::support::{self, send, start_server};

async fn text(client: &reqwest::Client, url: String) -> (u16, String) {
    let resp = client.get(url).send().await.expect("request to the server");
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// `promtool check metrics` on `text`: its findings, or nothing when it has none.
fn promtool(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; ./scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool refused the metrics: {findings}\n{text}"
    );
    findings
}

/// The value of the sample `name{labels}` (labels as they are written, in order), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn metrics_after_traffic_pass_promtool_and_count_routes_probes_store_and_cache() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(
        &[
            "--data",
            dir.path().to_str().unwrap(),
            "--probe-allow-loopback",
        ],
        &[],
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = &server.base;
    // An entry whose registry is this server itself: its /v2/ is a 404, so a probe says not_registry.
    let entry = json!({"container_registry_id": "reg-1", "container_registry_name": "self",
                       "container_registry_public_url": base});
    let (status, body) = send(
        &client,
        "POST",
        format!("{base}/container_registry"),
        Some(entry),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for _ in 0..2 {
        let (status, _) = send(
            &client,
            "GET",
            format!("{base}/container_registry/reg-1"),
            None,
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, _) = send(
        &client,
        "GET",
        format!("{base}/container_registry/no-such-id"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = send(&client, "GET", format!("{base}/some/raw/path-123"), None).await;
    assert_eq!(status, 404);
    let (status, body) = send(
        &client,
        "GET",
        format!("{base}/check_container_health/reg-1"),
        None,
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["data"]["status"], "not_registry", "{body}");

    let (status, metrics) = text(&client, format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    promtool(&metrics);

    let get = r#"registry_db_http_requests_total{route="/container_registry/{id}",method="GET","#;
    assert_eq!(
        sample(&metrics, &format!(r#"{get}status="200"}}"#)),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, &format!(r#"{get}status="404"}}"#)),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"registry_db_http_requests_total{route="/container_registry",method="POST",status="201"}"#
        ),
        Some(1.0)
    );
    // The raw path and the id are never labels: one series for every unknown path (ours, and the
    // probe's GET /v2/).
    assert_eq!(
        sample(
            &metrics,
            r#"registry_db_http_requests_total{route="unmatched",method="GET",status="404"}"#
        ),
        Some(2.0),
        "{metrics}"
    );
    assert!(
        !metrics.contains("path-123") && !metrics.contains("reg-1"),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"registry_db_http_request_duration_seconds_count{route="/container_registry/{id}",method="GET"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"registry_db_probes_total{verdict="not_registry"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"registry_db_probe_duration_seconds_count{verdict="not_registry"}"#
        ),
        Some(1.0)
    );
    // The probe has ended: its slot is free again.
    assert_eq!(
        sample(&metrics, "registry_db_probe_slots_in_use"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"registry_db_store_calls_total{op="insert"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"registry_db_store_calls_total{op="set_health"}"#
        ),
        Some(1.0)
    );
    // The second GET was answered from the entry cache (the health check's write then dropped
    // the entry from it).
    assert!(
        sample(&metrics, "registry_db_entry_cache_hits_total").unwrap() >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "registry_db_entry_cache_entries"),
        Some(0.0),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE registry_db_http_request_duration_seconds histogram"));
}

#[tokio::test]
async fn metrics_off_or_on_an_address_of_their_own() {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let off = start_server(&["--data", data, "--metrics", "off"], &[]);
    let (status, _) = text(&client, format!("{}/metrics", off.base)).await;
    assert_eq!(status, 404);
    drop(off);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let own = format!("127.0.0.1:{port}");
    let server = start_server(&["--data", data], &[("REGISTRY_DB_METRICS", own.as_str())]);
    let (status, _) = text(&client, format!("{}/healthz", server.base)).await;
    assert_eq!(status, 200);
    let (status, _) = text(&client, format!("{}/metrics", server.base)).await;
    assert_eq!(status, 404, "not on the API's address");
    let (status, metrics) = text(&client, format!("http://{own}/metrics")).await;
    assert_eq!(status, 200);
    promtool(&metrics);
    assert_eq!(
        sample(
            &metrics,
            r#"registry_db_http_requests_total{route="/healthz",method="GET",status="200"}"#
        ),
        Some(1.0),
        "{metrics}"
    );

    // A wrong value is a usage error naming the setting's values.
    let out = Command::new(env!("CARGO_BIN_EXE_registry-db"))
        .args(["serve", "--metrics", "sideways"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected on, off or an address"));
}

/// Holds an EMF document to the published specification (CloudWatch, "Specification: Embedded
/// metric format"): `_aws` with an integer `Timestamp` in milliseconds and `CloudWatchMetrics`, an
/// array of directives, each with a `Namespace`, `Dimensions` (an array of dimension sets, each an
/// array of at most 30 keys) and `Metrics` (an array of at most 100 `{Name, Unit}`, with a unit
/// CloudWatch knows); every dimension key and metric name is a member at the top level, a
/// dimension's value a string and a metric's value a number or an array of at most 100 numbers.
pub fn check_emf(doc: &Value) {
    const UNITS: &[&str] = &[
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];
    let aws = &doc["_aws"];
    assert!(
        aws["Timestamp"]
            .as_u64()
            .is_some_and(|t| t > 1_600_000_000_000),
        "{doc}"
    );
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics array");
    assert!(!directives.is_empty(), "{doc}");
    for d in directives {
        assert!(
            d["Namespace"].as_str().is_some_and(|n| !n.is_empty()),
            "{doc}"
        );
        for set in d["Dimensions"].as_array().expect("Dimensions array") {
            let set = set.as_array().expect("a dimension set is an array");
            assert!(set.len() <= 30, "{doc}");
            for key in set {
                let key = key.as_str().expect("dimension keys are strings");
                assert!(
                    doc[key].is_string(),
                    "dimension {key} missing at top level: {doc}"
                );
            }
        }
        let metrics = d["Metrics"].as_array().expect("Metrics array");
        assert!(!metrics.is_empty() && metrics.len() <= 100, "{doc}");
        for m in metrics {
            let name = m["Name"].as_str().expect("Name");
            assert!(
                UNITS.contains(&m["Unit"].as_str().unwrap_or("None")),
                "{doc}"
            );
            match &doc[name] {
                Value::Number(_) => {}
                Value::Array(values) => {
                    assert!(!values.is_empty() && values.len() <= 100, "{doc}");
                    assert!(values.iter().all(Value::is_number), "{doc}");
                }
                other => panic!("metric {name} has value {other} at top level: {doc}"),
            }
        }
    }
}

#[test]
fn lambda_figures_are_embedded_metric_format_lines() {
    let emf = Emf::new();
    emf.with_local(|| {
        for i in 0..150u64 {
            metrics::request(
                Some("/container_registry/{id}"),
                "GET",
                200,
                std::time::Duration::from_micros(100 + i),
            );
        }
        metrics::request(None, "BREW", 404, std::time::Duration::from_millis(1));
        metrics::probe("healthy", std::time::Duration::from_millis(12));
        metrics::rate_limited("create");
        metrics::store_error("get", "unavailable");
    });
    let docs = emf.flush();
    for doc in &docs {
        check_emf(doc);
    }
    let find = |k: &str, v: &str, metric: &str| {
        docs.iter()
            .filter(|d| d[k] == v && !d[metric].is_null())
            .map(|d| d[metric].clone())
            .collect::<Vec<_>>()
    };
    let get = docs
        .iter()
        .find(|d| d["route"] == "/container_registry/{id}" && d["status"] == "200")
        .expect("the GETs' counter");
    assert_eq!(get[metrics::HTTP_REQUESTS], 150, "{get}");
    assert_eq!(get["method"], "GET");
    // 150 latencies: 100 in one document, the other 50 in a second of the same dimensions.
    let latencies: usize = docs
        .iter()
        .filter(|d| d["route"] == "/container_registry/{id}")
        .filter_map(|d| d[metrics::HTTP_DURATION].as_array().map(Vec::len))
        .sum();
    assert_eq!(latencies, 150);
    // An unknown method is `other` (in the counter's and the latency's documents).
    let methods = find("route", "unmatched", "method");
    assert!(
        !methods.is_empty() && methods.iter().all(|m| m == "other"),
        "{methods:?}"
    );
    assert_eq!(find("verdict", "healthy", metrics::PROBES), vec![json!(1)]);
    assert_eq!(
        find("limit", "create", metrics::RATE_LIMITED),
        vec![json!(1)]
    );
    assert_eq!(
        find("kind", "unavailable", metrics::STORE_ERRORS),
        vec![json!(1)]
    );
    let unit = |name: &str| {
        docs.iter()
            .flat_map(|d| {
                d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                    .as_array()
                    .unwrap()
            })
            .find(|m| m["Name"] == name)
            .map(|m| m["Unit"].clone())
    };
    assert_eq!(unit(metrics::HTTP_DURATION), Some(json!("Seconds")));
    assert_eq!(unit(metrics::HTTP_REQUESTS), Some(json!("Count")));
    // A flush empties what it wrote: counters start again, nothing is written twice.
    assert!(emf.flush().is_empty());
}

#[tokio::test]
async fn readyz_says_whether_the_store_answers_and_healthz_stays_liveness() {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let aws = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    // DynamoDB up (dynalite).
    let endpoint = support::dynalite();
    let mut envs = aws.to_vec();
    envs.push(("AWS_ENDPOINT_URL_DYNAMODB", endpoint.as_str()));
    let table = format!("ready{}", std::process::id());
    let up = start_server(
        &["--store", "dynamodb", "--table", &table, "--create-table"],
        &envs,
    );
    let (status, body) = send(&client, "GET", format!("{}/readyz", up.base), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "ready");
    drop(up);

    // DynamoDB down: an endpoint where nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = format!("http://127.0.0.1:{port}");
    let mut envs = aws.to_vec();
    envs.push(("AWS_ENDPOINT_URL_DYNAMODB", refused.as_str()));
    let down = start_server(&["--store", "dynamodb", "--table", &table], &envs);
    let resp = client
        .get(format!("{}/readyz", down.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["code"], "store_unavailable", "{body}");
    // The detail (the endpoint) stays out of the answer.
    assert!(!body.to_string().contains(&port.to_string()), "{body}");
    let (status, body) = send(&client, "GET", format!("{}/healthz", down.base), None).await;
    assert_eq!(status, 200, "liveness does not depend on the store: {body}");
}
