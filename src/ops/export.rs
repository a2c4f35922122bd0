//! `registry-db export [FILE|-]`: every entry, managed fields included, one JSON document per line
//! (keys sorted, so the same entry is the same bytes from either store), from one consistent view
//! of the store ([`Store::export`]). Streamed: at most [`IN_FLIGHT`] entries are between the store
//! and the file. Written to `FILE.partial` and renamed when complete, so a cut export never passes
//! for a whole one; gzip with `--gzip` or a name ending in `.gz`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use flate2::Compression;
use flate2::write::GzEncoder;

use super::progress::{Mode, Progress};
use crate::config::{ExportArgs, StoreArgs, StoreKind};
use crate::domain::entry::export_line;
use crate::store::Store;

/// Entries read ahead of the writer: with entries of at most about 300 KiB, a few tens of MB at
/// the very most, whatever the size of the store.
pub const IN_FLIGHT: usize = 64;

/// Opens the store named by the settings, saying what to do when it cannot be.
pub async fn open_store(store: &StoreArgs) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    store
        .open_for_bulk()
        .await
        .with_context(|| match store.store {
            StoreKind::Embedded => format!(
                "cannot open the embedded store in {} (one process at a time may open it: a server \
             running on it serves the same export as GET /export)",
                store.data.display()
            ),
            StoreKind::Dynamodb => format!("cannot open the DynamoDB table {}", store.table),
        })
}

/// Where the entries come from: the store itself, or a running server's `GET /export`.
enum Source {
    Store(std::sync::Arc<dyn Store>),
    Server(reqwest::Response, String),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Store(store) => store.describe(),
            Source::Server(_, url) => format!("server at {url}"),
        }
    }
}

async fn from_server(url: &url::Url) -> anyhow::Result<Source> {
    let export = url.join("export").context("the server's URL")?;
    let tls = crate::tls::client_config().map_err(anyhow::Error::msg)?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()?;
    let mut request = client.get(export.clone());
    if let Some(token) = crate::config::write_token() {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {export}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("{export} answered {status}: {body}");
    }
    Ok(Source::Server(response, export.to_string()))
}

/// How a backup in a folder is named: `registry-db-20261204T050102Z.ndjson.gz`.
const BACKUP_PREFIX: &str = "registry-db-";
const BACKUP_SUFFIX: &str = ".ndjson.gz";
const BACKUP_TIME: &str = "%Y%m%dT%H%M%SZ";

/// Removes the backups in `dir` whose time (in their name) is more than `days` days before `now`;
/// returns how many.
pub fn prune(dir: &Path, days: u32, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<usize> {
    let cutoff = now - chrono::Duration::days(i64::from(days));
    let mut removed = 0;
    for item in std::fs::read_dir(dir)? {
        let path = item?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stamp) = name
            .strip_prefix(BACKUP_PREFIX)
            .and_then(|n| n.strip_suffix(BACKUP_SUFFIX))
        else {
            continue;
        };
        let Ok(time) = chrono::NaiveDateTime::parse_from_str(stamp, BACKUP_TIME) else {
            continue;
        };
        if time.and_utc() < cutoff {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

pub async fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let into_dir = args.file.is_dir();
    anyhow::ensure!(
        into_dir || args.keep_days.is_none(),
        "--keep-days needs a folder to export into, not {}",
        args.file.display()
    );
    let now = chrono::Utc::now();
    let mut args = args.clone();
    if into_dir {
        let name = format!("{BACKUP_PREFIX}{}{BACKUP_SUFFIX}", now.format(BACKUP_TIME));
        args.file = args.file.join(name);
    }
    let args = &args;
    let mut source = match &args.server {
        Some(url) => from_server(url).await?,
        None => Source::Store(open_store(&args.store).await?),
    };
    let to_stdout = args.file.as_os_str() == "-";
    let gzip = args.gzip || args.file.extension().is_some_and(|e| e == "gz");
    let partial = partial_path(&args.file);
    let sink: Box<dyn Write + Send> = if to_stdout {
        Box::new(std::io::stdout())
    } else {
        let file = File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        Box::new(file)
    };
    let sink = BufWriter::with_capacity(1 << 16, sink);
    let mut progress = Progress::new("export", "entries", Mode::detect(args.quiet));
    let (entries, bytes) = if gzip {
        let mut gz = GzEncoder::new(sink, Compression::default());
        let n = write_from(&mut source, &mut gz, &mut progress).await?;
        gz.finish()?.flush()?;
        n
    } else {
        let mut sink = sink;
        let n = write_from(&mut source, &mut sink, &mut progress).await?;
        sink.flush()?;
        n
    };
    if !to_stdout {
        File::open(&partial)?.sync_all()?;
        std::fs::rename(&partial, &args.file).with_context(|| {
            format!(
                "cannot rename {} to {}",
                partial.display(),
                args.file.display()
            )
        })?;
    }
    let secs = progress.elapsed().as_secs_f64();
    progress.finish(&format!(
        "exported {entries} entries ({bytes} bytes of JSON{}) from the {} to {} in {secs:.1} s",
        if gzip { ", gzipped" } else { "" },
        source.describe(),
        if to_stdout {
            "standard output".into()
        } else {
            args.file.display().to_string()
        },
    ));
    if let (Some(days), Some(dir)) = (args.keep_days, args.file.parent()) {
        let removed = prune(dir, days, now)?;
        eprintln!(
            "removed {removed} backups older than {days} days from {}",
            dir.display()
        );
    }
    Ok(())
}

fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

async fn write_from(
    source: &mut Source,
    out: &mut dyn Write,
    progress: &mut Progress,
) -> anyhow::Result<(u64, u64)> {
    match source {
        Source::Store(store) => write_all(store.as_ref(), out, progress).await,
        Source::Server(response, url) => {
            let (mut entries, mut bytes) = (0u64, 0u64);
            // A body the server broke off (a store failure) is an error here, never a short file.
            while let Some(chunk) = response
                .chunk()
                .await
                .with_context(|| format!("the export from {url} was cut off"))?
            {
                let lines = chunk.iter().filter(|b| **b == b'\n').count() as u64;
                out.write_all(&chunk).context("cannot write the export")?;
                entries += lines;
                bytes += chunk.len() as u64;
                progress.advance(lines, None);
            }
            Ok((entries, bytes))
        }
    }
}

/// Streams every entry of `store` into `out`, one line each; (entries, bytes before compression).
pub async fn write_all(
    store: &dyn Store,
    out: &mut dyn Write,
    progress: &mut Progress,
) -> anyhow::Result<(u64, u64)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    let read = store.export(tx);
    let write = async {
        let mut line = Vec::with_capacity(4096);
        let (mut entries, mut bytes) = (0u64, 0u64);
        while let Some(entry) = rx.recv().await {
            let entry = entry
                .with_history(store)
                .await
                .context("the store failed reading a history during the export")?;
            line.clear();
            export_line(&entry, &mut line);
            out.write_all(&line).context("cannot write the export")?;
            entries += 1;
            bytes += line.len() as u64;
            progress.advance(1, None);
        }
        anyhow::Ok((entries, bytes))
    };
    let (read, written) = tokio::join!(read, write);
    // A write failure drops the receiver, which stops the read: report the write's error first.
    let written = written?;
    let sent = read.context("the store failed during the export")?;
    anyhow::ensure!(
        sent == written.0,
        "the store sent {sent} entries but {} were written",
        written.0
    );
    Ok(written)
}
