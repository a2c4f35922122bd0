//! `registry-db import --exact FILE`: restores a `registry-db export` into either store as it
//! stands: ids, creation and update times, versions and health kept, the tag index written with
//! each entry. Every line is checked first ([`ContainerRegistry::from_export`]): a malformed
//! managed field is refused and reported, never stored. An id already in the store is left as it
//! is unless `--overwrite` (reported when the stored entry differs from the file's). Entries go in
//! in batches of [`BATCH`] (one transaction each on the embedded store).

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};

use anyhow::Context;
use flate2::read::MultiGzDecoder;
use serde_json::Value;

use super::export::open_store;
use super::progress::{Counting, Mode, Progress};
use crate::config::ImportArgs;
use crate::domain::entry::ContainerRegistry;
use crate::store::{Exported, Store, StoreError};

/// Entries written per store call.
pub const BATCH: usize = 256;
/// The longest line read: an entry is at most about 300 KiB of JSON plus its health record, so a
/// longer line is no export of this service (and is not read into memory whole).
pub const MAX_LINE_BYTES: usize = 1 << 20;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub restored: u64,
    pub replaced: u64,
    /// Already in the store exactly as in the file.
    pub identical: u64,
    /// Already in the store, different, and left as it was (no `--overwrite`).
    pub kept: u64,
    pub refused: u64,
    pub stopped: Option<String>,
}

impl Report {
    /// 0 when the store holds every entry as the file has it, 3 when some were refused or kept
    /// different, 1 when the restore could not finish.
    pub fn exit_code(&self) -> i32 {
        if self.stopped.is_some() {
            1
        } else if self.refused > 0 || self.kept > 0 {
            3
        } else {
            0
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "restored {}, replaced {}, identical {}, kept {} (in the store and different; --overwrite replaces them), refused {}",
            self.restored, self.replaced, self.identical, self.kept, self.refused
        )
    }
}

pub async fn run(args: &ImportArgs) -> anyhow::Result<i32> {
    let (raw, total): (Box<dyn Read + Send>, u64) = if args.file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), 0)
    } else {
        let file = File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(file), len)
    };
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = Counting {
        inner: raw,
        read: read.clone(),
    };
    let mut buffered = BufReader::with_capacity(1 << 16, counted);
    // gzip is recognised by its magic bytes, whatever the file's name.
    let gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead + Send> = if gzip {
        Box::new(BufReader::new(MultiGzDecoder::new(buffered)))
    } else {
        Box::new(buffered)
    };
    let store = open_store(&args.store).await?;
    let mut progress = Progress::new("import --exact", "entries", Mode::detect(args.quiet));
    let report = restore(
        store.as_ref(),
        reader,
        args.overwrite,
        |finding| eprintln!("{finding}"),
        |n| {
            let at = read.load(std::sync::atomic::Ordering::Relaxed);
            progress.advance(n, (total > 0).then_some((at, total)));
        },
    )
    .await;
    let mut summary = report.to_string();
    if let Some(why) = &report.stopped {
        summary.push_str(&format!("\nerror: the restore stopped: {why}"));
    }
    progress.finish(&summary);
    Ok(report.exit_code())
}

/// Reads one line of at most [`MAX_LINE_BYTES`]; `Ok(None)` at the end. A longer line is read to
/// its end and discarded, and reported as `Err(len)`.
fn next_line(
    reader: &mut dyn BufRead,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<Result<(), usize>>> {
    line.clear();
    let mut too_long = 0usize;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(if line.is_empty() && too_long == 0 {
                None
            } else if too_long > 0 {
                Some(Err(too_long))
            } else {
                Some(Ok(()))
            });
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if too_long > 0 || line.len() + chunk.len() > MAX_LINE_BYTES {
            too_long += line.len() + chunk.len();
            line.clear();
        } else {
            line.extend_from_slice(chunk);
        }
        let used = done.unwrap_or(buf.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(if too_long > 0 { Err(too_long) } else { Ok(()) }));
        }
    }
}

/// Restores every line of `reader` into `store`; `finding` gets each refused or kept line as it
/// happens, `advance` the number of lines handled.
pub async fn restore(
    store: &dyn Store,
    mut reader: Box<dyn BufRead + Send>,
    overwrite: bool,
    mut finding: impl FnMut(String),
    mut advance: impl FnMut(u64),
) -> Report {
    let mut report = Report::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut batch: Vec<(usize, Exported)> = Vec::with_capacity(BATCH);
    let mut line = Vec::new();
    let mut number = 0usize;
    loop {
        let next = match next_line(reader.as_mut(), &mut line) {
            Ok(next) => next,
            Err(e) => {
                report.stopped = Some(format!("cannot read the file: {e}"));
                break;
            }
        };
        let Some(read) = next else { break };
        number += 1;
        let parsed = match read {
            Err(len) => Err(format!(
                "is {len} bytes long, over the {MAX_LINE_BYTES} bytes an entry can take"
            )),
            Ok(()) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Ok(()) => serde_json::from_slice::<Value>(&line)
                .map_err(|e| format!("is not JSON: {e}"))
                .and_then(|doc| Exported::from_export(doc).map_err(|e| e.to_string())),
        };
        match parsed {
            Err(why) => {
                report.refused += 1;
                finding(format!("line {number}: refused: {why}"));
            }
            Ok(exported) if !seen.insert(exported.entry.container_registry_id.clone()) => {
                report.refused += 1;
                finding(format!(
                    "line {number}: refused: the id {} is already on an earlier line",
                    exported.entry.container_registry_id
                ));
            }
            Ok(entry) => batch.push((number, entry)),
        }
        if batch.len() >= BATCH
            && let Err(e) = flush(
                store,
                &mut batch,
                overwrite,
                &mut report,
                &mut finding,
                &mut advance,
            )
            .await
        {
            report.stopped = Some(e.to_string());
            return report;
        }
    }
    if let Err(e) = flush(
        store,
        &mut batch,
        overwrite,
        &mut report,
        &mut finding,
        &mut advance,
    )
    .await
    {
        report.stopped = Some(e.to_string());
    }
    report
}

async fn flush(
    store: &dyn Store,
    batch: &mut Vec<(usize, Exported)>,
    overwrite: bool,
    report: &mut Report,
    finding: &mut impl FnMut(String),
    advance: &mut impl FnMut(u64),
) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let entries: Vec<ContainerRegistry> = batch.iter().map(|(_, e)| e.entry.clone()).collect();
    let results = store.insert_many(&entries).await;
    let today = crate::domain::history::Day::of(chrono::Utc::now());
    for (
        (
            number,
            Exported {
                entry,
                owner,
                mut history,
            },
        ),
        result,
    ) in batch.drain(..).zip(results)
    {
        // Days past the 90 kept are dropped, as the store would drop them.
        history.retain(|(day, _)| day.0 >= today.oldest_kept().0);
        match result {
            // The owner and the history go in after their entry, in writes of their own: an
            // import cut between them leaves the entry ownerless (the operator's) or without its
            // days, and its re-run completes it below, the entry being identical.
            Ok(()) => {
                let id = &entry.container_registry_id;
                if let Some(owner) = &owner {
                    store.set_owner(id, None, owner).await?;
                }
                if !history.is_empty() {
                    store.restore_history(id, &history).await?;
                }
                report.restored += 1
            }
            Err(StoreError::AlreadyExists(id)) => {
                let stored = store.get(&id).await?.map(|s| s.entry()).transpose()?;
                let stored_owner = store.owner(&id).await?.flatten();
                let stored_history = store.health_days(&id, today.oldest_kept(), today).await?;
                let same_entry = stored.as_ref() == Some(&entry);
                if same_entry && stored_owner == owner && stored_history == history {
                    report.identical += 1;
                } else if same_entry
                    && (stored_owner.is_none() || stored_owner == owner)
                    && (stored_history.is_empty() || stored_history == history)
                {
                    // A re-run after a cut between the entry and its owner or days (above).
                    if let (None, Some(owner)) = (&stored_owner, &owner) {
                        store.set_owner(&id, None, owner).await?;
                    }
                    if stored_history.is_empty() && !history.is_empty() {
                        store.restore_history(&id, &history).await?;
                    }
                    report.restored += 1;
                } else if overwrite {
                    // Not one transaction: between the two a reader may miss the entry.
                    store.delete(&id).await?;
                    store.insert_owned(&entry, owner.as_deref()).await?;
                    if !history.is_empty() {
                        store.restore_history(&id, &history).await?;
                    }
                    report.replaced += 1;
                } else {
                    report.kept += 1;
                    finding(format!(
                        "line {number}: kept: {id} is in the store and differs from the file; --overwrite replaces it"
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
    advance(entries.len() as u64);
    Ok(())
}
