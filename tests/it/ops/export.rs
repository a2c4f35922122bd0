//! `registry-db export` and `import --exact` on the real binary: a round trip embedded ->
//! DynamoDB (dynalite) -> embedded that ends byte for byte where it began, malformed managed
//! fields refused and never stored, a snapshot that no concurrent write shows through, and an
//! export of 100,000 entries in bounded memory. Also the progress both ways (a terminal via
//! `script`, and a pipe).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use registry_db::domain::catalog::Catalog;
use registry_db::domain::entry::ContainerRegistry;
use registry_db::health::{ProbeConfig, Prober};
use registry_db::ops::import_exact::MAX_LINE_BYTES;
use registry_db::store::Store;
use registry_db::store::embedded::EmbeddedStore;
use serde_json::{Value, json};

use registry_db::domain::owner::token_record;

use crate::support::{self, send, send_as, start_server};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_registry-db"));
    for key in [
        "REGISTRY_DB_STORE",
        "REGISTRY_DB_DATA",
        "TABLE_NAME",
        "TAG_TABLE_NAME",
    ] {
        cmd.env_remove(key);
    }
    cmd
}

fn dynalite_env(cmd: &mut Command) -> &mut Command {
    cmd.env("AWS_ENDPOINT_URL_DYNAMODB", support::dynalite())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run registry-db");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn doc_of(lines: &[String], id: &str) -> Value {
    lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|d| d["container_registry_id"] == id)
        .unwrap()
}

fn sorted_lines(text: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8(text.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn round_trip_embedded_dynamodb_embedded_is_byte_for_byte() {
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    let b = work.path().join("b");
    // Entries with every managed field: created, then updated (version 2, a later update time),
    // then health-checked (a probe of this very server's /v2/: not_registry, recorded); under
    // `owners`, so every entry has an owner whose token must still work after the round trip.
    let server = start_server(
        &[
            "--data",
            a.to_str().unwrap(),
            "--probe-allow-loopback",
            "--writes",
            "owners",
            "--creates-per-hour",
            "0",
            "--checks-per-minute",
            "0",
        ],
        &[],
    );
    let mut tokens = Vec::new();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = &server.base;
    for i in 0..30 {
        let entry = json!({
            "container_registry_id": format!("reg-{i:02}"),
            "container_registry_name": format!("registry {i}"),
            "container_registry_public_url": base,
            "container_registry_tags": ["ai", format!("t{}", i % 3)],
            // Keys out of order and nested: DynamoDB keeps no order of a map's keys.
            "container_registry_metadata": {"zone": "b", "gpus": i, "a": {"y": 1.5, "x": [1, "two", null, true]}},
            "container_registry_storage_info": {"storage_type": "s3", "storage_size": -1},
        });
        let (status, body) = send(
            &client,
            "POST",
            format!("{base}/container_registry"),
            Some(entry),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let token = body["data"]["owner_token"].as_str().unwrap().to_string();
        if i % 2 == 0 {
            let (status, body) = send_as(
                &client,
                "PUT",
                format!("{base}/container_registry/reg-{i:02}"),
                Some(json!({"$set": {"container_registry_name": format!("updated {i}")}})),
                &token,
            )
            .await;
            assert_eq!(status, 200, "{body}");
        }
        tokens.push(token);
        if i % 3 == 0 {
            let (status, _) = send(
                &client,
                "GET",
                format!("{base}/check_container_health/reg-{i:02}"),
                None,
            )
            .await;
            assert_eq!(status, 502);
        }
    }
    drop(server);

    let first = work.path().join("a.ndjson");
    ok(bin().args([
        "export",
        first.to_str().unwrap(),
        "--data",
        a.to_str().unwrap(),
    ]));
    let first_bytes = std::fs::read(&first).unwrap();
    let lines = sorted_lines(&first_bytes);
    assert_eq!(lines.len(), 30);
    let doc: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(doc["container_registry_version"], 2, "{doc}");
    assert_eq!(
        doc["container_registry_health"]["status"], "not_registry",
        "{doc}"
    );
    assert!(
        doc["container_registry_created_at"] != doc["container_registry_updated_at"],
        "{doc}"
    );
    // Its health history: today's one probe, not_registry, with its latency bucket.
    let day = &doc["container_registry_health_history"][0];
    assert_eq!(day["not_registry"], 1, "{doc}");
    assert_eq!(day["healthy"], 0, "{doc}");
    assert_eq!(
        day["latency"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .sum::<u64>(),
        1,
        "{doc}"
    );
    assert!(
        doc_of(&lines, "reg-01")
            .get("container_registry_health_history")
            .is_none()
    );
    // The owner as a hash of the token, never the token itself.
    assert_eq!(
        doc["container_registry_owner"],
        token_record(&tokens[0]),
        "{doc}"
    );
    let text = String::from_utf8_lossy(&first_bytes);
    assert!(tokens.iter().all(|t| !text.contains(t.as_str())));

    let table = format!("export{}", std::process::id());
    ok(dynalite_env(&mut bin()).args([
        "import",
        "--exact",
        first.to_str().unwrap(),
        "--store",
        "dynamodb",
        "--table",
        &table,
        "--create-table",
    ]));
    let middle = work.path().join("d.ndjson.gz");
    ok(dynalite_env(&mut bin()).args([
        "export",
        middle.to_str().unwrap(),
        "--store",
        "dynamodb",
        "--table",
        &table,
    ]));
    let middle_bytes = std::fs::read(&middle).unwrap();
    // gzipped by its name; the same entries, the same bytes each, in DynamoDB's scan order.
    assert_eq!(sorted_lines(&gunzip(&middle_bytes)), lines);

    ok(bin().args([
        "import",
        "--exact",
        middle.to_str().unwrap(),
        "--data",
        b.to_str().unwrap(),
    ]));
    let last = work.path().join("b.ndjson");
    ok(bin().args([
        "export",
        last.to_str().unwrap(),
        "--data",
        b.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read(&last).unwrap(),
        first_bytes,
        "embedded -> DynamoDB -> embedded"
    );

    // The restored store serves the entries by their tags (the index was written with them).
    let server = start_server(&["--data", b.to_str().unwrap()], &[]);
    let (status, body) = send(
        &client,
        "POST",
        format!("{}/container_registries", server.base),
        Some(json!({"container_registry_tags": "t1"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 10, "{body}");
    let (_, body) = send(
        &client,
        "GET",
        format!("{}/container_registry/reg-00", server.base),
        None,
    )
    .await;
    assert_eq!(body["data"]["container_registry_version"], 2);
    // The owners came through: an entry's own token still changes it, another's does not.
    drop(server);
    let restored = start_server(&["--data", b.to_str().unwrap(), "--writes", "owners"], &[]);
    let (status, body) = send_as(
        &client,
        "PUT",
        format!("{}/container_registry/reg-01", restored.base),
        Some(json!({"$set": {"container_registry_name": "still mine"}})),
        &tokens[2],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = send_as(
        &client,
        "PUT",
        format!("{}/container_registry/reg-01", restored.base),
        Some(json!({"$set": {"container_registry_name": "still mine"}})),
        &tokens[1],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    drop(restored);
    ok(bin().args([
        "export",
        last.to_str().unwrap(),
        "--data",
        b.to_str().unwrap(),
    ]));
    let edited = std::fs::read_to_string(&last).unwrap();
    // Back to the file's state for what follows.
    ok(bin().args([
        "import",
        "--exact",
        first.to_str().unwrap(),
        "--overwrite",
        "--data",
        b.to_str().unwrap(),
    ]));
    assert!(edited.contains("still mine"));

    // Again: everything is already there as the file says (exit 0). A changed entry is kept and
    // reported (exit 3) unless --overwrite.
    let out = ok(bin().args([
        "import",
        "--exact",
        first.to_str().unwrap(),
        "--data",
        b.to_str().unwrap(),
    ]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("restored 0, replaced 0, identical 30"));
    let changed = work.path().join("changed.ndjson");
    let text =
        String::from_utf8(first_bytes.clone())
            .unwrap()
            .replacen("registry 1\"", "renamed 1\"", 1);
    std::fs::write(&changed, &text).unwrap();
    let out = run(bin().args([
        "import",
        "--exact",
        changed.to_str().unwrap(),
        "--data",
        b.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kept: reg-01 is in the store and differs") && err.contains("kept 1"),
        "{err}"
    );
    ok(bin().args([
        "import",
        "--exact",
        changed.to_str().unwrap(),
        "--overwrite",
        "--data",
        b.to_str().unwrap(),
    ]));
    ok(bin().args([
        "export",
        last.to_str().unwrap(),
        "--data",
        b.to_str().unwrap(),
    ]));
    assert_eq!(std::fs::read_to_string(&last).unwrap(), text);
}

#[test]
fn malformed_managed_fields_are_refused_reported_and_never_stored() {
    let work = tempfile::tempdir().unwrap();
    let good = json!({
        "container_registry_id": "good", "container_registry_name": "g",
        "container_registry_public_url": "http://10.0.0.1:5000",
        "container_registry_created_at": "2026-01-02T03:04:05.000Z",
        "container_registry_updated_at": "2026-01-02T03:04:06.000Z",
        "container_registry_version": 7,
    });
    let with = |id: &str, field: &str, value: Value| {
        let mut doc = good.clone();
        doc["container_registry_id"] = json!(id);
        doc[field] = value;
        doc.to_string()
    };
    let lines = [
        good.to_string(),
        with("v-string", "container_registry_version", json!("7")),
        with("v-zero", "container_registry_version", json!(0)),
        with("v-frac", "container_registry_version", json!(1.5)),
        with("t-bad", "container_registry_created_at", json!("yesterday")),
        with(
            "h-bad",
            "container_registry_health",
            json!({"status": "great"}),
        ),
        with("x-unknown", "container_registry_owner", json!("whoever")),
        "{not json".to_string(),
        good.to_string(),
        // At the line limit: read, and refused for what it holds; one byte over: not read.
        format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_LINE_BYTES - 8)),
        format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_LINE_BYTES - 7)),
        // An owner record one hex digit short, and a token where its hash belongs.
        with(
            "o-short",
            "container_registry_owner",
            json!(format!("sha256:{}", "a".repeat(63))),
        ),
        with(
            "o-token",
            "container_registry_owner",
            json!(format!("rdbo_{}", "A".repeat(43))),
        ),
        // A history day that is not a date, and one whose latency lacks buckets.
        with(
            "h-date",
            "container_registry_health_history",
            json!([{"date": "2026-13-01",
            "healthy": 1, "auth_required": 0, "not_registry": 0, "unreachable": 0, "latency": vec![0; 11]}]),
        ),
        with(
            "h-lat",
            "container_registry_health_history",
            json!([{"date": "2026-12-01",
            "healthy": 1, "auth_required": 0, "not_registry": 0, "unreachable": 0, "latency": [1, 0]}]),
        ),
    ];
    let file = work.path().join("bad.ndjson");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let data = work.path().join("data");
    let out = run(bin().args([
        "import",
        "--exact",
        file.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    for (line, says) in [
        (
            2,
            "container_registry_version: must be a whole number, not a string",
        ),
        (
            3,
            "container_registry_version: must be a whole number from 1, not 0",
        ),
        (
            4,
            "container_registry_version: must be a whole number from 1, not 1.5",
        ),
        (5, "container_registry_created_at: must be an RFC 3339 time"),
        (6, "container_registry_health: is not a health record"),
        (7, "container_registry_owner"),
        (8, "is not JSON"),
        (9, "the id good is already on an earlier line"),
        (10, "container_registry_created_at: is required"),
        (
            11,
            "is 1048577 bytes long, over the 1048576 bytes an entry can take",
        ),
        (12, "container_registry_owner: must be an owner record"),
        (13, "container_registry_owner: must be an owner record"),
        (
            14,
            "container_registry_health_history: day 0: \"2026-13-01\" is not a YYYY-MM-DD date",
        ),
        (
            15,
            "container_registry_health_history: day 0: latency must be a list of 11 whole numbers",
        ),
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("line {line}: refused")) && l.contains(says)),
            "line {line} should say {says:?}: {err}"
        );
    }
    assert!(err.contains("restored 1, replaced 0, identical 0, kept 0 (in the store and different; --overwrite replaces them), refused 14"), "{err}");
    let out = ok(bin().args(["export", "-", "--quiet", "--data", data.to_str().unwrap()]));
    let exported: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0]["container_registry_id"], "good");
    assert_eq!(exported[0]["container_registry_version"], 7);
    assert_eq!(
        exported[0]["container_registry_created_at"],
        "2026-01-02T03:04:05.000Z"
    );
}

fn entry(id: &str) -> ContainerRegistry {
    ContainerRegistry::from_create(json!({
        "container_registry_id": id, "container_registry_name": id,
        "container_registry_public_url": "http://10.0.0.1:5000",
        "container_registry_tags": ["x"],
    }))
    .unwrap()
}

/// The export reads one snapshot: writes made while it runs (here all of them, between its first
/// entry and the rest) are in none of its entries, and every entry it began with is there.
#[tokio::test]
async fn an_export_is_one_snapshot_whatever_is_written_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let ids: Vec<String> = (0..1000).map(|i| format!("e{i:04}")).collect();
    let entries: Vec<ContainerRegistry> = ids.iter().map(|id| entry(id)).collect();
    assert!(store.insert_many(&entries).await.iter().all(Result::is_ok));
    let catalog = Catalog::new(store.clone(), Prober::new(ProbeConfig::default()));

    let (tx, mut rx) = tokio::sync::mpsc::channel(registry_db::ops::export::IN_FLIGHT);
    let export = tokio::spawn({
        let store = store.clone();
        async move { store.export(tx).await }
    });
    let mut seen = vec![rx.recv().await.expect("a first entry").entry];
    // The export now holds its read and waits on the full channel: write everything.
    for (i, id) in ids.iter().enumerate() {
        match i % 3 {
            0 => drop(
                catalog
                    .update(id, &json!({"$set": {"container_registry_name": "after"}}))
                    .await
                    .unwrap(),
            ),
            1 => assert!(store.delete(id).await.unwrap()),
            _ => store.insert(&entry(&format!("new-{i}"))).await.unwrap(),
        }
    }
    while let Some(e) = rx.recv().await {
        seen.push(e.entry);
    }
    assert_eq!(export.await.unwrap().unwrap(), 1000);
    let seen_ids: Vec<&str> = seen
        .iter()
        .map(|e| e.container_registry_id.as_str())
        .collect();
    assert_eq!(
        seen_ids,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "every entry as it was, none added"
    );
    assert!(
        seen.iter()
            .all(|e| e.container_registry_name != "after" && e.container_registry_version == 1)
    );
}

/// Memory of `registry-db export` over 100,000 small entries, read from /proc while it runs: its
/// anonymous memory (the heap: what holding entries would grow; the mapped pages of the binary
/// itself, tens of MB in a debug build, are file pages and not counted).
#[tokio::test]
async fn an_export_of_100000_entries_stays_in_bounded_memory() {
    // tmpfs: the entries go in without waiting on a disk.
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        for chunk in 0..100 {
            let batch: Vec<ContainerRegistry> = (0..1000)
                .map(|i| entry(&format!("e{chunk:03}-{i:04}")))
                .collect();
            assert!(store.insert_many(&batch).await.iter().all(Result::is_ok));
        }
    }
    let mut child = bin()
        .args([
            "export",
            "-",
            "--quiet",
            "--data",
            dir.path().to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let peak_kib = || -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.lines().find_map(|l| {
            l.strip_prefix("RssAnon:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
    };
    let (mut lines, mut bytes, mut peak) = (0u64, 0u64, 0u64);
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        lines += 1;
        bytes += line.len() as u64;
        line.clear();
        if lines % 1000 == 0 {
            peak = peak.max(peak_kib().unwrap_or(0));
        }
    }
    peak = peak.max(peak_kib().unwrap_or(0));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{err}");
    assert_eq!(lines, 100_000);
    eprintln!("export of {lines} entries, {bytes} bytes: peak anonymous RSS {peak} KiB");
    assert!(err.contains("exported 100000 entries"), "{err}");
    // The export is 46 MB of JSON; held whole (as text or as entries) it would be more than that.
    assert!(
        peak > 0 && peak < MAX_EXPORT_RSS_KIB,
        "peak anonymous RSS {peak} KiB over {MAX_EXPORT_RSS_KIB}"
    );
    let _ = std::io::stderr().flush();
}

/// The bound the 100,000-entry export is held to (README, "Backing up").
const MAX_EXPORT_RSS_KIB: u64 = 24 * 1024;

/// While `serve` holds the embedded store, the export comes from the server (`--server`), with the
/// write token; it is the same file the store gives once the server has stopped.
#[tokio::test]
async fn an_export_through_the_running_server_is_the_stores_export() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let token = "operator-secret-token";
    let server = start_server(
        &["--data", data.to_str().unwrap()],
        &[("REGISTRY_DB_WRITE_TOKEN", token)],
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for i in 0..5 {
        let resp = client
            .post(format!("{}/container_registry", server.base))
            .bearer_auth(token)
            .json(
                &json!({"container_registry_id": format!("s{i}"), "container_registry_name": "n",
                          "container_registry_public_url": "http://10.0.0.1:5000"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
    }
    // The store is the server's: the command says where to get the export instead.
    let out = run(bin().args(["export", "-", "--data", data.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GET /export"));
    // Without the token: refused, and nothing written.
    let live = work.path().join("live.ndjson");
    let out = run(bin()
        .args(["export", live.to_str().unwrap(), "--server", &server.base])
        .env_remove("REGISTRY_DB_WRITE_TOKEN"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    assert!(!live.exists());
    let out = ok(bin()
        .args(["export", live.to_str().unwrap(), "--server", &server.base])
        .env("REGISTRY_DB_WRITE_TOKEN", token));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exported 5 entries") && !err.contains(token),
        "{err}"
    );
    drop(server);
    let stopped = work.path().join("stopped.ndjson");
    ok(bin().args([
        "export",
        stopped.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read(&live).unwrap(),
        std::fs::read(&stopped).unwrap()
    );
}

/// Progress on a terminal (a pty, from `script`): the line redrawn in place with what is done and
/// the rate, then the summary; into a pipe: plain lines and the summary; `--quiet`: the summary.
#[test]
fn progress_on_a_terminal_in_a_pipe_and_quiet() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("in.ndjson");
    let lines: Vec<String> = (0..50)
        .map(|i| {
            json!({"container_registry_id": format!("p{i}"), "container_registry_name": "n",
                   "container_registry_public_url": "http://10.0.0.1:5000",
                   "container_registry_created_at": "2026-01-02T03:04:05.000Z",
                   "container_registry_updated_at": "2026-01-02T03:04:05.000Z",
                   "container_registry_version": 1})
            .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let data = work.path().join("data");
    let exe = env!("CARGO_BIN_EXE_registry-db");
    // On a terminal: `script` gives the command a pty and copies what it draws to stdout.
    let command = format!(
        "{exe} import --exact {} --data {}",
        file.display(),
        data.display()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("REGISTRY_DB_DATA")
        .output()
        .expect("script (util-linux)");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{tty}");
    assert!(
        tty.contains("\r\x1b[2Kimport --exact: 0 entries done"),
        "{tty:?}"
    );
    assert!(
        tty.contains("\r\x1b[2Kimport --exact: 50 entries done, "),
        "{tty:?}"
    );
    assert!(tty.contains("/s, 100%, about 0s left"), "{tty:?}");
    assert!(
        tty.contains("restored 50, replaced 0, identical 0"),
        "{tty:?}"
    );

    // Not a terminal: no control characters, whole lines, the summary last.
    let out = ok(bin().args([
        "export",
        work.path().join("out.ndjson").to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    let last = err.lines().last().unwrap();
    assert!(last.starts_with("exported 50 entries"), "{err}");
    assert!(
        err.lines()
            .next()
            .unwrap()
            .starts_with("export: 0 entries done, "),
        "{err}"
    );

    let out = ok(bin().args(["export", "-", "--quiet", "--data", data.to_str().unwrap()]));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("exported 50 entries"), "{err}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 50);
}

/// Into a folder (what the backup CronJobs do): a gzipped, time-named backup, and `--keep-days`
/// removes the backups older than that by the time in their name, and nothing else.
#[test]
fn a_backup_into_a_folder_keeps_n_days() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let backups = work.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let now = chrono::Utc::now();
    let name = |days_ago: i64| {
        format!(
            "registry-db-{}.ndjson.gz",
            (now - chrono::Duration::days(days_ago)).format("%Y%m%dT%H%M%SZ")
        )
    };
    for file in [
        name(30),
        name(8),
        name(6),
        "notes.txt".to_string(),
        "registry-db-garbled.ndjson.gz".to_string(),
    ] {
        std::fs::write(backups.join(file), b"old").unwrap();
    }
    let out = ok(bin().args([
        "export",
        backups.to_str().unwrap(),
        "--keep-days",
        "7",
        "--data",
        data.to_str().unwrap(),
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("removed 2 backups older than 7 days"), "{err}");
    let mut left: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(left.contains(&name(6)) && left.contains(&"notes.txt".to_string()));
    assert!(left.contains(&"registry-db-garbled.ndjson.gz".to_string()));
    let new = left
        .iter()
        .find(|n| **n != name(6) && n.starts_with("registry-db-2"))
        .expect("the new backup");
    // gzip, and an empty store's export is empty.
    assert_eq!(gunzip(&std::fs::read(backups.join(new)).unwrap()), b"");
    // --keep-days without a folder is refused.
    let out = run(bin().args([
        "export",
        "-",
        "--keep-days",
        "7",
        "--data",
        data.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(1));
}

/// `registry-db sweep` shows its progress on standard error and ends with a summary line there;
/// the report stays alone on standard output.
#[test]
fn a_sweep_shows_progress_and_a_summary() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    // Three entries whose registry port is closed: each probe ends at once, unreachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = work.path().join("in.ndjson");
    let lines: Vec<String> = (0..3)
        .map(|i| {
            json!({"container_registry_id": format!("w{i}"), "container_registry_name": "n",
                   "container_registry_public_url": format!("http://127.0.0.1:{port}"),
                   "container_registry_created_at": "2026-01-02T03:04:05.000Z",
                   "container_registry_updated_at": "2026-01-02T03:04:05.000Z",
                   "container_registry_version": 1})
            .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    ok(bin().args([
        "import",
        "--exact",
        file.to_str().unwrap(),
        "--quiet",
        "--data",
        data.to_str().unwrap(),
    ]));
    let out = ok(bin().args([
        "sweep",
        "--probe-allow-loopback",
        "--data",
        data.to_str().unwrap(),
    ]));
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report alone on stdout");
    assert_eq!(report["unreachable"], 3, "{report}");
    let err = String::from_utf8(out.stderr).unwrap();
    let progress: Vec<&str> = err.lines().filter(|l| l.starts_with("sweep: ")).collect();
    assert!(
        progress
            .first()
            .is_some_and(|l| l.starts_with("sweep: 0 probes done")),
        "{err}"
    );
    assert!(
        err.lines()
            .last()
            .unwrap()
            .starts_with("swept 3 entries in "),
        "{err}"
    );
    let out = ok(bin().args([
        "sweep",
        "--quiet",
        "--probe-allow-loopback",
        "--data",
        data.to_str().unwrap(),
    ]));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.lines().any(|l| l.starts_with("sweep: ")), "{err}");
    assert!(err.contains("swept 3 entries in "), "{err}");
}

#[test]
fn a_reindex_shows_progress_and_a_summary() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let file = work.path().join("in.ndjson");
    let lines: Vec<String> = (0..5)
        .map(|i| {
            json!({"container_registry_id": format!("r{i}"), "container_registry_name": format!("name {i}"),
                   "container_registry_public_url": "http://10.0.0.1:5000",
                   "container_registry_tags": ["ai", format!("t{i}")],
                   "container_registry_created_at": "2026-01-02T03:04:05.000Z",
                   "container_registry_updated_at": "2026-01-02T03:04:05.000Z",
                   "container_registry_version": 1})
            .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    ok(bin().args([
        "import",
        "--exact",
        file.to_str().unwrap(),
        "--quiet",
        "--data",
        data.to_str().unwrap(),
    ]));
    // Not a terminal: the first plain line at once, then the summary; the report alone on stdout.
    let out = ok(bin().args(["reindex", "--data", data.to_str().unwrap()]));
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report alone on stdout");
    assert_eq!(report["entries"], 5, "{report}");
    assert_eq!(report["index_keys"], 10, "{report}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.lines()
            .any(|l| l.starts_with("reindex: 0 entries done")),
        "{err}"
    );
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("reindexed 5 entries in ") && last.contains("0 counters drifted"),
        "{err}"
    );
    let out = ok(bin().args(["reindex", "--quiet", "--data", data.to_str().unwrap()]));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.lines().any(|l| l.starts_with("reindex: ")), "{err}");
    assert!(err.contains("reindexed 5 entries in "), "{err}");
}
