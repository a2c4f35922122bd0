//! Smoke test of the real binary as a Lambda function under cargo-lambda's runtime emulator
//! (`cargo lambda watch --only-lambda-apis` on loopback), store on dynalite, driven by the sample
//! events with `cargo lambda invoke --data-file`.

use crate::support;

use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on 127.0.0.1:{port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn invoke(port: u16, event: &str) -> Value {
    invoke_file(port, &format!("{}/events/{event}", support::ROOT))
}

fn invoke_file(port: u16, event: &str) -> Value {
    let out: Output = Command::new("cargo")
        .args([
            "lambda",
            "invoke",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "--output-format",
            "json",
        ])
        .args(["--data-file", event, "_"])
        .current_dir(support::ROOT)
        .output()
        .expect("run cargo lambda invoke (pip install cargo-lambda; ./scripts/test.sh does)");
    assert!(
        out.status.success(),
        "cargo lambda invoke {event}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{event}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn the_binary_serves_events_under_cargo_lambdas_emulator() {
    let port = free_port();
    let _emulator = Killed(
        Command::new("cargo")
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .current_dir(support::ROOT)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cargo lambda watch (pip install cargo-lambda; ./scripts/test.sh does)"),
    );
    wait_for_port(port, "cargo lambda watch");

    let table = format!("emulator-{}", std::process::id());
    // The function's standard output: its log lines and, after each invocation, its figures as
    // CloudWatch Embedded Metric Format lines (what CloudWatch Logs reads from a function's log).
    let stdout_dir = tempfile::tempdir().unwrap();
    let stdout_path = stdout_dir.path().join("function.out");
    let stdout = std::fs::File::create(&stdout_path).unwrap();
    let _function = Killed(
        Command::new(env!("CARGO_BIN_EXE_registry-db"))
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_ENDPOINT_URL_DYNAMODB", support::dynalite())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("TABLE_NAME", &table)
            .env("REGISTRY_DB_CREATE_TABLE", "true")
            // Even told to reach loopback, the function never probes its runtime API.
            .env("REGISTRY_DB_PROBE_ALLOW_LOOPBACK", "true")
            .env_remove("REGISTRY_DB_STORE")
            .stdout(Stdio::from(stdout))
            .spawn()
            .unwrap(),
    );

    let created = invoke(port, "01-create-entry.json");
    assert_eq!(created["statusCode"], 201, "{created}");
    let body: Value = serde_json::from_str(created["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["data"]["id"], "b3c38f52-8f2e-43a3-9aa9-bd9a4c75e509");

    let got = invoke(port, "02-get-entry.json");
    assert_eq!(got["statusCode"], 200, "{got}");
    let body: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["data"]["container_registry_name"],
        "internal-ai-registry"
    );

    let found = invoke(port, "04-query-entries.json");
    assert_eq!(found["statusCode"], 200, "{found}");
    let body: Value = serde_json::from_str(found["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body["data"][0]["container_registry_id"],
        "b3c38f52-8f2e-43a3-9aa9-bd9a4c75e509"
    );

    let deleted = invoke(port, "06-delete-entry.json");
    assert_eq!(deleted["statusCode"], 200, "{deleted}");

    // An entry whose registry is the runtime API itself: refused by name of rule, never contacted
    // (a probe there could take the next invocation or post a response for this one).
    let dir = tempfile::tempdir().unwrap();
    let event = |name: &str, change: &dyn Fn(&mut Value)| {
        let text = std::fs::read_to_string(format!("{}/events/{name}", support::ROOT)).unwrap();
        let mut event: Value = serde_json::from_str(&text).unwrap();
        change(&mut event);
        let path = dir.path().join(name);
        std::fs::write(&path, event.to_string()).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let create = event("01-create-entry.json", &|e| {
        e["body"] = serde_json::json!({
            "container_registry_id": "runtime-api",
            "container_registry_name": "runtime-api",
            "container_registry_public_url": format!("http://127.0.0.1:{port}"),
        })
        .to_string()
        .into();
    });
    let created = invoke_file(port, &create);
    assert_eq!(created["statusCode"], 201, "{created}");
    let check = event("05-check-health.json", &|e| {
        e["rawPath"] = "/check_container_health/runtime-api".into();
        e["pathParameters"]["id"] = "runtime-api".into();
        e["requestContext"]["http"]["path"] = "/check_container_health/runtime-api".into();
    });
    let checked = invoke_file(port, &check);
    assert_eq!(checked["statusCode"], 502, "{checked}");
    let body: Value = serde_json::from_str(checked["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["code"], "probe_refused", "{body}");
    assert_eq!(body["data"]["refused_by"], "lambda-runtime-api", "{body}");

    // Each invocation's figures reached the log as valid EMF documents: the create's 201 and the
    // refused probe among them (written before the answer is posted, so they are there by now).
    let out = std::fs::read_to_string(&stdout_path).unwrap();
    let docs: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|d| d.get("_aws").is_some())
        .collect();
    assert!(
        !docs.is_empty(),
        "no EMF line in the function's output: {out}"
    );
    for doc in &docs {
        crate::ops::metrics::check_emf(doc);
    }
    let count = |route: &str, status: &str| -> u64 {
        docs.iter()
            .filter(|d| d["route"] == route && d["status"] == status)
            .filter_map(|d| d[registry_db::metrics::HTTP_REQUESTS].as_u64())
            .sum()
    };
    assert_eq!(count("/container_registry", "201"), 2, "{out}");
    assert_eq!(count("/check_container_health/{id}", "502"), 1, "{out}");
}
