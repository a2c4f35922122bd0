//! `registry-db import`, the real binary, on exports shaped like MongoDB's (`mongoexport` of the
//! earlier service's collection: ObjectId `_id` as `{"$oid": ...}`, extended JSON numbers and
//! dates), into both stores: what lands, what is refused and why, the summary, the exit code, and
//! that a re-run changes nothing.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use registry_db::domain::catalog::Catalog;
use registry_db::domain::entry::ContainerRegistry;
use registry_db::health::{ProbeConfig, Prober};
use registry_db::store::Store;
use registry_db::store::dynamodb::filter::TranslateOptions;
use registry_db::store::dynamodb::{DynamoStore, default_tag_table};
use registry_db::store::embedded::EmbeddedStore;
use serde_json::{Value, json};
use support::{ROOT, SEED_ID};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(format!("{ROOT}/tests/fixtures/{name}"))
}

/// Where the binary imports to: a fresh embedded store folder, or a fresh table on dynalite.
enum Target {
    Embedded(tempfile::TempDir),
    Dynamo(String),
}

static TABLES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Target {
    fn embedded() -> Target {
        Target::Embedded(tempfile::tempdir().unwrap())
    }

    fn dynamo() -> Target {
        let n = TABLES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Target::Dynamo(format!("import-{}-{n}", std::process::id()))
    }

    fn name(&self) -> &'static str {
        match self {
            Target::Embedded(_) => "embedded",
            Target::Dynamo(_) => "dynamodb",
        }
    }

    /// The store settings of `serve`, as an operator would pass them to `import`.
    fn args(&self) -> Vec<String> {
        match self {
            Target::Embedded(dir) => vec!["--data".into(), dir.path().display().to_string()],
            Target::Dynamo(table) => vec![
                "--store".into(),
                "dynamodb".into(),
                "--table".into(),
                table.clone(),
                "--create-table".into(),
            ],
        }
    }

    /// Opens the store to look at it (the embedded one only while no binary holds it).
    async fn registry(&self) -> Catalog {
        let store: Arc<dyn Store> = match self {
            Target::Embedded(dir) => Arc::new(EmbeddedStore::open(dir.path()).unwrap()),
            Target::Dynamo(table) => {
                let store = DynamoStore::from_client(
                    support::dynamo_client(),
                    table,
                    &default_tag_table(table),
                    TranslateOptions::DYNALITE,
                );
                store.ensure_table().await.unwrap();
                Arc::new(store)
            }
        };
        Catalog::new(store, Prober::new(ProbeConfig::default()))
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Runs `registry-db import ARGS` with the service's own settings cleared from the environment,
/// dynalite's endpoint and dummy credentials set, and `stdin` (a file) as standard input.
fn import(args: &[&str], target: &Target, stdin: Option<&Path>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_registry-db"));
    cmd.arg("import").args(args).args(target.args());
    for key in [
        "REGISTRY_DB_STORE",
        "REGISTRY_DB_DATA",
        "TABLE_NAME",
        "REGISTRY_DB_CREATE_TABLE",
    ] {
        cmd.env_remove(key);
    }
    if let Target::Dynamo(_) = target {
        cmd.envs([
            ("AWS_ENDPOINT_URL_DYNAMODB", support::dynalite().as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]);
    }
    cmd.stdin(match stdin {
        Some(path) => Stdio::from(std::fs::File::open(path).unwrap()),
        None => Stdio::null(),
    });
    let out = cmd.output().expect("run registry-db import");
    let run = Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    eprintln!(
        "--- import {args:?} into {}: exit {}\n{}{}",
        target.name(),
        run.code,
        run.stdout,
        run.stderr
    );
    run
}

async fn stored(registry: &Catalog, id: &str) -> Option<ContainerRegistry> {
    match registry.get(id).await {
        Ok(entry) => Some(entry.entry().unwrap()),
        Err(registry_db::error::AppError::NotFound(_)) => None,
        Err(e) => panic!("get {id}: {e}"),
    }
}

/// Every entry in the store, as JSON, by id.
async fn all(registry: &Catalog) -> Vec<Value> {
    let page = registry
        .query(&registry_db::query::Filter::match_all(), 1000, None)
        .await
        .unwrap();
    assert!(page.next_cursor.is_none());
    page.entries
        .iter()
        .map(|e| serde_json::from_slice(&e.json).unwrap())
        .collect()
}

/// `mongoexport --jsonArray --jsonFormat=canonical` (one line; every number typed, dates as
/// milliseconds), every case in it, on both stores: the seed entry and two more land (numbers and
/// dates from extended JSON made plain, `_id` dropped); the malformed, invalid and id-less
/// entries are refused with the validation message; the id repeated in the file and the id
/// already in the store are duplicates, and neither overwrites anything. Then a re-run changes
/// nothing and reports every id that landed as already there.
#[tokio::test(flavor = "multi_thread")]
async fn a_mongoexport_lands_in_both_stores_and_every_refusal_is_reported() {
    let file = fixture("mongoexport-container_registry.json");
    let file_arg = file.display().to_string();
    for target in [Target::embedded(), Target::dynamo()] {
        let name = target.name();
        // An entry created through the API before the import, under an id the export also has.
        {
            let registry = target.registry().await;
            registry
                .create(json!({
                    "container_registry_id": "edge-registry-eu",
                    "container_registry_name": "edge registry, created before the import",
                    "container_registry_public_url": "http://10.13.30.2:32633",
                }))
                .await
                .unwrap();
        }

        let run = import(&[&file_arg], &target, None);
        assert_eq!(run.code, 3, "{name}: some entries were refused");
        let known = "known fields: container_registry_id, container_registry_name, container_registry_metadata, container_registry_tags, container_registry_public_url, container_registry_image_prefix, container_registry_config, container_registry_storage_info";
        let expected = [
            format!("importing {file_arg} into the {}", match &target {
                Target::Embedded(dir) => format!("embedded store at {}/registry-db.redb (page cache 32 MiB, entry cache 16 MiB)", dir.path().display()),
                Target::Dynamo(table) => format!("DynamoDB table {table} (tag index {table}-tags)"),
            }) + " (MongoDB's _id is dropped from each document)",
            r#"refused entry 3 (id "gpu-cluster-registry-2"): container_registry_metadata.gpus: $numberLong "eight" is not a 64-bit integer"#.to_string(),
            r#"refused entry 4 (id "half-written-registry"): container_registry_name: is required"#.to_string(),
            r#"refused entry 5 (id "ftp-mirror"): container_registry_public_url: must use http or https, not ftp"#.to_string(),
            format!(r#"refused entry 6 (id "team-registry"): owner_email: is not a field of a container registry entry ({known})"#),
            format!(r#"duplicate entry 7 (id "{SEED_ID}"): the same id as entry 1 of this file; not imported"#),
            r#"duplicate entry 8 (id "edge-registry-eu"): already in the store; the stored entry is left as it is"#.to_string(),
            "refused entry 10: container_registry_id: is required for an import (a document without one would get a new id on every run)".to_string(),
            "imported 3, refused 5, duplicates 2 (1 already in the store, 1 repeated in the file), of 10 documents read".to_string(),
        ];
        assert_eq!(run.lines(), expected, "{name}: the report");
        assert_eq!(
            run.stderr.matches("error").count(),
            0,
            "{name}: {}",
            run.stderr
        );
        // Progress on standard error (not a terminal here: plain lines), then one summary line.
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with("import: 0 documents done")),
            "{name}: {}",
            run.stderr
        );
        assert!(
            run.stderr.lines().last().is_some_and(|l| l.starts_with(
                "imported 3, refused 5, duplicates 2 (1 already in the store, 1 repeated in the file), of 10 documents read in "
            )),
            "{name}: {}",
            run.stderr
        );

        let registry = target.registry().await;
        // The seed entry: every seed field as the export had it, and nothing of MongoDB's.
        let seed = stored(&registry, SEED_ID)
            .await
            .expect("the seed entry landed");
        let seed_json = seed.to_json();
        for (field, value) in support::seed_entry().as_object().unwrap() {
            assert_eq!(&seed_json[field], value, "{name}: {field}");
        }
        assert!(!seed_json.contains_key("_id"), "{name}");
        assert_eq!(seed.container_registry_version, 1, "{name}: created once");

        // Extended JSON made plain: numbers are numbers, dates RFC 3339 strings.
        let gpu = stored(&registry, "gpu-cluster-registry")
            .await
            .unwrap()
            .to_json();
        assert_eq!(
            gpu["container_registry_metadata"],
            json!({
                "environment": "staging", "gpus": 8, "total_bytes": 5_497_558_138_880_i64,
                "onboarded_at": "2025-03-01T09:30:00.000Z", "last_audit": "2025-01-01T00:00:00.000Z",
            }),
            "{name}"
        );
        assert_eq!(
            gpu["container_registry_config"],
            json!({"auth_required": false, "max_layer_size_mb": 512.5}),
            "{name}"
        );
        assert_eq!(
            gpu["container_registry_storage_info"],
            json!({
                "storage_type": "fs", "storage_size": 20480, "memory_size": 16384, "registry_type": "aios",
            }),
            "{name}"
        );

        // An empty image prefix is derived from the URL, as on an API create.
        let ghcr = stored(&registry, "ghcr-mirror").await.unwrap();
        assert_eq!(ghcr.container_registry_image_prefix, "ghcr.io", "{name}");

        // Nothing refused landed; the duplicates overwrote nothing.
        for id in [
            "gpu-cluster-registry-2",
            "half-written-registry",
            "ftp-mirror",
            "team-registry",
        ] {
            assert!(
                stored(&registry, id).await.is_none(),
                "{name}: {id} was refused"
            );
        }
        assert_eq!(
            seed.container_registry_name, "internal-ai-registry",
            "{name}: the first of the two"
        );
        let edge = stored(&registry, "edge-registry-eu").await.unwrap();
        assert_eq!(
            edge.container_registry_name, "edge registry, created before the import",
            "{name}"
        );
        let before = all(&registry).await;
        assert_eq!(
            before.len(),
            4,
            "{name}: three imported and the one created before"
        );
        drop(registry);

        // A re-run: the same refusals, every id that landed is now a duplicate, nothing changes.
        let rerun = import(&[&file_arg], &target, None);
        assert_eq!(rerun.code, 3, "{name}");
        let already = |i: usize, id: &str| {
            format!(
                r#"duplicate entry {i} (id "{id}"): already in the store; the stored entry is left as it is"#
            )
        };
        let lines = rerun.lines();
        for line in [
            already(1, SEED_ID),
            already(2, "gpu-cluster-registry"),
            already(8, "edge-registry-eu"),
            already(9, "ghcr-mirror"),
            expected[5].clone(),
        ] {
            assert!(lines.contains(&line.as_str()), "{name}: missing {line:?}");
        }
        assert_eq!(
            lines.last().unwrap(),
            &"imported 0, refused 5, duplicates 5 (4 already in the store, 1 repeated in the file), of 10 documents read",
            "{name}"
        );
        let registry = target.registry().await;
        assert_eq!(
            all(&registry).await,
            before,
            "{name}: a re-run changes no entry"
        );
    }
}

/// mongoexport's default format, one document per line in relaxed extended JSON (plain numbers,
/// `{"$date": "<ISO 8601>"}`): a broken line is refused and the lines after it still land.
#[tokio::test(flavor = "multi_thread")]
async fn one_document_per_line_goes_on_after_a_broken_line_on_both_stores() {
    let file = fixture("mongoexport-container_registry.lines.json");
    for target in [Target::embedded(), Target::dynamo()] {
        let name = target.name();
        let run = import(&[&file.display().to_string()], &target, None);
        assert_eq!(run.code, 3, "{name}");
        let lines = run.lines();
        assert_eq!(lines.len(), 3, "{name}: {lines:?}");
        assert!(
            lines[1]
                == r#"refused entry 3 (line 3): is not valid JSON (column 133): EOF while parsing a string"#,
            "{name}: {}",
            lines[1]
        );
        assert_eq!(
            lines[2],
            "imported 3, refused 1, duplicates 0 (0 already in the store, 0 repeated in the file), of 4 documents read",
            "{name}"
        );
        let registry = target.registry().await;
        let seed = stored(&registry, SEED_ID).await.unwrap().to_json();
        for (field, value) in support::seed_entry().as_object().unwrap() {
            assert_eq!(&seed[field], value, "{name}: {field}");
        }
        let gpu = stored(&registry, "gpu-cluster-registry")
            .await
            .unwrap()
            .to_json();
        assert_eq!(
            gpu["container_registry_metadata"],
            json!({
                "environment": "staging", "gpus": 8, "total_bytes": 5_497_558_138_880_i64,
                "onboarded_at": "2025-03-01T09:30:00.000Z", "last_audit": "2025-01-01T00:00:00.250Z",
            }),
            "{name}: relaxed extended JSON"
        );
        assert_eq!(gpu["container_registry_config"]["max_layer_size_mb"], 512.5);
        assert!(
            stored(&registry, "ghcr-mirror").await.is_some(),
            "{name}: the line after the broken one"
        );
        assert!(
            stored(&registry, "gpu-cluster-registry-2").await.is_none(),
            "{name}"
        );
    }
}

/// A clean export read from standard input (`-`, as `kubectl exec -i ... import -` sends it)
/// exits 0, and so does its re-run, which imports nothing and names the ids already there.
#[tokio::test(flavor = "multi_thread")]
async fn a_clean_export_from_stdin_exits_0_and_so_does_its_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("clean.json");
    let mut seed = support::seed_entry();
    seed["_id"] = json!({"$oid": "6650a1f2c3d4e5f60718293a"});
    std::fs::write(&export, format!("{seed}\n")).unwrap();

    let target = Target::embedded();
    let run = import(&["-"], &target, Some(&export));
    assert_eq!(run.code, 0);
    assert_eq!(
        run.lines().last().unwrap(),
        &"imported 1, refused 0, duplicates 0 (0 already in the store, 0 repeated in the file), of 1 documents read"
    );
    let rerun = import(&["-"], &target, Some(&export));
    assert_eq!(
        rerun.code, 0,
        "ids already in the store do not fail a re-run"
    );
    assert_eq!(
        rerun.lines()[1..],
        [
            format!(r#"duplicate entry 1 (line 1) (id "{SEED_ID}"): already in the store; the stored entry is left as it is"#).as_str(),
            "imported 0, refused 0, duplicates 1 (1 already in the store, 0 repeated in the file), of 1 documents read",
        ]
    );
}

/// A `--jsonArray` export cut off mid-document: what came before it is imported, the rest cannot
/// be read, and the import says where it broke and exits 1.
#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_array_imports_what_precedes_the_break_and_exits_1() {
    let text = std::fs::read_to_string(fixture("mongoexport-container_registry.json")).unwrap();
    let cut = text.find("gpu-cluster-registry-2").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("truncated.json");
    std::fs::write(&export, &text[..cut]).unwrap();

    let target = Target::embedded();
    let run = import(&[&export.display().to_string()], &target, None);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.lines().last().unwrap(),
        &"imported 2, refused 0, duplicates 0 (0 already in the store, 0 repeated in the file), of 2 documents read"
    );
    assert!(
        run.stderr.contains(
            "error: the import stopped: the file ends inside entry 3 (which begins at line 1, after 2 documents): it is cut off; nothing after that point was read"
        ),
        "{}",
        run.stderr
    );
    let registry = target.registry().await;
    assert!(stored(&registry, SEED_ID).await.is_some());
    assert!(stored(&registry, "gpu-cluster-registry").await.is_some());
}

/// What keeps an import from starting: the file is missing, the server holds the embedded store,
/// the command line lacks the file.
#[test]
fn a_missing_file_a_busy_store_or_no_file_argument_fail_with_a_reason() {
    let target = Target::embedded();
    let run = import(&["/nonexistent/export.json"], &target, None);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("cannot open /nonexistent/export.json"),
        "{}",
        run.stderr
    );

    let Target::Embedded(dir) = &target else {
        unreachable!()
    };
    let server = support::start_server(&["--data", &dir.path().display().to_string()], &[]);
    let run = import(
        &[&fixture("mongoexport-container_registry.json")
            .display()
            .to_string()],
        &target,
        None,
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("if a server runs on it, stop it first")
            && run.stderr.contains("already open in another process"),
        "{}",
        run.stderr
    );
    drop(server);

    let out = Command::new(env!("CARGO_BIN_EXE_registry-db"))
        .arg("import")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a usage error, as clap reports it"
    );
}

/// Runs `registry-db import -` with `text` on its standard input, and reads its peak resident
/// memory (`VmHWM`, KiB) once all of `text` is written but before the input ends, so the process
/// is still there to be read: by then it has read all but the pipe's and its buffer's worth.
fn import_measured(text: &str, target: &Target) -> (Run, u64) {
    use std::io::Write;
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_registry-db"))
        .arg("import")
        .arg("-")
        .args(target.args())
        .env_remove("REGISTRY_DB_STORE")
        .env_remove("REGISTRY_DB_DATA")
        .stdin(Stdio::piped())
        .stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap())
        .spawn()
        .expect("run registry-db import");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let peak = support::peak_rss_kib(child.id());
    drop(stdin);
    let status = child.wait().unwrap();
    let run = Run {
        code: status.code().expect("exited, not killed"),
        stdout: std::fs::read_to_string(out.path()).unwrap(),
        stderr: std::fs::read_to_string(err.path()).unwrap(),
    };
    eprintln!(
        "--- import -: exit {}\n{}{}",
        run.code, run.stdout, run.stderr
    );
    (run, peak)
}

/// A valid entry whose JSON is exactly `len` bytes.
fn entry_of_bytes(id: &str, len: usize) -> String {
    let mut doc = json!({
        "container_registry_id": id,
        "container_registry_name": id,
        "container_registry_public_url": "http://10.0.0.1:5000",
        "container_registry_metadata": {"pad": ""},
    });
    let base = doc.to_string().len();
    doc["container_registry_metadata"]["pad"] = json!("x".repeat(len - base));
    let text = doc.to_string();
    assert_eq!(text.len(), len);
    text
}

/// A valid entry whose brackets nest `depth` deep: the document, its metadata, and objects
/// inside that down to `depth`.
fn entry_of_depth(id: &str, depth: usize) -> String {
    let inner = format!(
        "{}{{}}{}",
        "{\"a\":".repeat(depth - 3),
        "}".repeat(depth - 3)
    );
    let text = format!(
        r#"{{"container_registry_id":"{id}","container_registry_name":"{id}","container_registry_public_url":"http://10.0.0.1:5000","container_registry_metadata":{{"a":{inner}}}}}"#
    );
    assert_eq!(text.matches('{').count(), depth);
    text
}

/// Issue 18, finding 4: import read an 8 MB line whole (587 MB before refusing it), and in
/// `--jsonArray` mode a document nested past serde_json's 128 levels ended the import. Now each
/// document is read bounded: over the request body limit (256 KiB) it is skipped with a fixed
/// buffer, past the deepest an entry can nest it is refused unparsed, both reported with their
/// position, and the import goes on (exit 3). At the edges, in both modes: a document of exactly
/// 256 KiB and one at the depth limit import, one byte more and one level more do not; an 8 MB
/// document (4 million values) costs the import's peak memory less than 4 MiB.
#[tokio::test(flavor = "multi_thread")]
async fn import_reads_one_bounded_document_at_a_time_and_goes_on_past_a_refused_one() {
    use registry_db::import::{MAX_DOCUMENT_BYTES, MAX_DOCUMENT_DEPTH};
    let huge = format!(
        r#"{{"container_registry_id":"huge","x":[{}1]}}"#,
        "1,".repeat(4_000_000)
    );
    let docs = |with_huge: bool| {
        let mut docs = vec![
            entry_of_bytes("first", 300),
            entry_of_bytes("edge-size", MAX_DOCUMENT_BYTES),
            entry_of_bytes("over-size", MAX_DOCUMENT_BYTES + 1),
        ];
        if with_huge {
            docs.push(huge.clone());
        }
        docs.extend([
            entry_of_depth("edge-depth", MAX_DOCUMENT_DEPTH),
            entry_of_depth("over-depth", MAX_DOCUMENT_DEPTH + 1),
            entry_of_bytes("last", 300),
            // More than the pipe and the reader's buffer hold after the documents measured.
            entry_of_bytes("filler-1", 200_000),
            entry_of_bytes("filler-2", 200_000),
        ]);
        docs
    };
    let over_size = format!(
        "is {} bytes long, over the {MAX_DOCUMENT_BYTES} bytes a request body may hold (skipped unread)",
        MAX_DOCUMENT_BYTES + 1
    );
    let over_depth = format!(
        "nests deeper than {MAX_DOCUMENT_DEPTH} levels (an entry's metadata and config nest at most 16 levels; not parsed)"
    );
    for array in [false, true] {
        let mut peaks = Vec::new();
        for with_huge in [false, true] {
            let docs = docs(with_huge);
            let text = if array {
                format!("[\n{}\n]\n", docs.join(",\n"))
            } else {
                docs.join("\n") + "\n"
            };
            let target = Target::embedded();
            let (run, peak) = import_measured(&text, &target);
            peaks.push(peak);
            assert_eq!(run.code, 3, "{}", run.stdout);
            let at = |n: usize| match array {
                true => format!("entry {n}"),
                false => format!("entry {n} (line {n})"),
            };
            let mut expected = vec![format!("refused {}: {over_size}", at(3))];
            if with_huge {
                expected.push(format!(
                    "refused {}: is {} bytes long, over the {MAX_DOCUMENT_BYTES} bytes a request body may hold (skipped unread)",
                    at(4),
                    huge.len()
                ));
            }
            let n = docs.len();
            expected.push(format!("refused {}: {over_depth}", at(n - 3)));
            expected.push(format!(
                "imported 6, refused {}, duplicates 0 (0 already in the store, 0 repeated in the file), of {n} documents read",
                n - 6
            ));
            assert_eq!(run.lines()[1..], expected, "array {array}");
            let registry = target.registry().await;
            for id in ["first", "edge-size", "edge-depth", "last", "filler-2"] {
                assert!(stored(&registry, id).await.is_some(), "{id}");
            }
            for id in ["over-size", "huge", "over-depth"] {
                assert!(stored(&registry, id).await.is_none(), "{id}");
            }
        }
        println!(
            "--jsonArray {array}: peak RSS {} KiB without the 8 MB document, {} KiB with it",
            peaks[0], peaks[1]
        );
        assert!(
            peaks[1] < peaks[0] + 4 * 1024,
            "the 8 MB document took the import from {} KiB to {} KiB",
            peaks[0],
            peaks[1]
        );
    }
}
