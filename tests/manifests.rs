//! The Kubernetes manifests that run this service start it with arguments and settings the binary
//! actually has: the command line parses, and every environment variable is one of its settings
//! (or the AWS SDK's, or the log filter's), so the manifests cannot drift from the code.

use clap::Parser;
use registry_db::config::Cli;
use serde::Deserialize;
use serde_yaml::Value;

/// The environment variables the binary reads (API.md's configuration table), plus the AWS SDK's
/// and tracing's.
const KNOWN_ENV: [&str; 14] = [
    "REGISTRY_DB_STORE",
    "REGISTRY_DB_DATA",
    "TABLE_NAME",
    "REGISTRY_DB_CREATE_TABLE",
    "REGISTRY_DB_ADDR",
    "REGISTRY_DB_WRITE_TOKEN",
    "REGISTRY_DB_PROBE_TIMEOUT_MS",
    "REGISTRY_DB_PROBE_ALLOW_LOOPBACK",
    "REGISTRY_DB_PROBE_COOLDOWN_SECS",
    "REGISTRY_DB_PROBE_MAX_IN_FLIGHT",
    "REGISTRY_DB_PROBE_DENY",
    "REGISTRY_DB_SWEEP_EVERY",
    "RUST_LOG",
    "TZ",
];

fn registry_db_containers(doc: &Value, out: &mut Vec<Value>) {
    match doc {
        Value::Mapping(map) => {
            if map
                .get("image")
                .and_then(Value::as_str)
                .is_some_and(|i| i.starts_with("registry-db"))
            {
                out.push(doc.clone());
            }
            for v in map.values() {
                registry_db_containers(v, out);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|v| registry_db_containers(v, out)),
        _ => {}
    }
}

#[test]
fn every_registry_db_container_starts_with_arguments_and_settings_the_binary_has() {
    let mut files = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/registry-db"
    ))];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc = Value::deserialize(doc).unwrap();
            // A ConfigMap here feeds the container's environment (envFrom).
            if doc["kind"].as_str() == Some("ConfigMap") {
                for key in doc["data"]
                    .as_mapping()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k.as_str().unwrap())
                {
                    assert!(
                        KNOWN_ENV.contains(&key) || key.starts_with("AWS_"),
                        "{}: ConfigMap key {key} is not a setting of registry-db",
                        file.display()
                    );
                }
            }
            let mut containers = Vec::new();
            registry_db_containers(&doc, &mut containers);
            for c in containers {
                let args: Vec<String> = c["args"]
                    .as_sequence()
                    .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default();
                let argv = std::iter::once("registry-db".to_string()).chain(args.iter().cloned());
                if let Err(e) = Cli::try_parse_from(argv) {
                    panic!(
                        "{}: registry-db {args:?} does not parse: {e}",
                        file.display()
                    );
                }
                for var in c["env"].as_sequence().into_iter().flatten() {
                    let name = var["name"].as_str().unwrap();
                    assert!(
                        KNOWN_ENV.contains(&name) || name.starts_with("AWS_"),
                        "{}: {name} is not a setting of registry-db",
                        file.display()
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 3,
        "the embedded and DynamoDB deployments and the sweep CronJob: {checked}"
    );
}
