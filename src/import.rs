//! `registry-db import`: moves the entries of the earlier Python/MongoDB service into either store.
//!
//! The earlier service kept each entry as one MongoDB document holding exactly the seed's fields
//! (its `to_dict()`), plus the `_id` ObjectId that MongoDB adds on insert; it added nothing else.
//! So a document is imported as it stands, less `_id`, with MongoDB extended JSON turned into plain
//! JSON, through [`Catalog::create`]: every entry passes the same validation as an API create, and
//! an id already in the store is reported, never overwritten, which makes a re-run safe.
//!
//! The file is `mongoexport --jsonArray` output (any layout, `--pretty` included) or mongoexport's
//! default, one document per line. It is read as a stream of bounded documents ([`reader`]): at
//! most [`READ_AHEAD`] documents' text of at most [`MAX_DOCUMENT_BYTES`] each and one parsed
//! document are in memory at a time (plus the set of ids seen, to find an id repeated in the
//! file); a document too large or too deep is refused unread and the import goes on.

mod reader;

pub use self::reader::{MAX_DOCUMENT_BYTES, MAX_DOCUMENT_DEPTH};
use self::reader::{Piece, read_documents};

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde_json::{Map, Number, Value};

use crate::config::{ImportArgs, StoreKind};
use crate::domain::catalog::Catalog;
use crate::domain::entry::{ContainerRegistry, ID};
use crate::domain::store::StoreError;
use crate::error::AppError;
use crate::query::type_name;
use crate::state::AppState;

/// The one field the earlier service's documents hold that is not part of an entry: MongoDB's own
/// key, added by `insert_one`. It is dropped from every document.
pub const MONGO_ID: &str = "_id";

/// Documents read ahead of the store writes, as text (at most 4 MiB of them).
const READ_AHEAD: usize = 16;
/// Entries written per store batch: on the embedded store one redb transaction (one fsync) each.
/// Large because a commit rewrites every index page it touched, and the index keys of a batch
/// (ids are random) touch most pages of the name index: fewer commits write far less (2,000 a
/// batch imported 2,275 entries/s at 100,000).
const IMPORT_BATCH: usize = 20_000;
/// A batch is written early once its documents' text passes this: however large the entries, a
/// batch holds about this much text (and a few times it parsed), never 20,000 of 256 KiB.
const IMPORT_BATCH_BYTES: usize = 32 << 20;
/// A progress line every this many documents, for long imports.
const PROGRESS_EVERY: usize = 1000;

/// Where a document is in the file: its 1-based position among the documents, and its line when
/// the file has one document per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub index: usize,
    pub line: Option<usize>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "entry {} (line {line})", self.index),
            None => write!(f, "entry {}", self.index),
        }
    }
}

/// Why a document was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Not an entry at all: not JSON, not an object, or extended JSON with no plain JSON form.
    Malformed(String),
    /// An entry that fails the entry's validation (the text an API create would answer).
    Invalid(String),
    /// Its id is already in the store; the stored entry is left as it is.
    InStore,
    /// Its id was already used by an earlier document of this file, at this position.
    EarlierInFile(Position),
}

impl Problem {
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Problem::InStore | Problem::EarlierInFile(_))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Malformed(m) | Problem::Invalid(m) => f.write_str(m),
            Problem::InStore => {
                f.write_str("already in the store; the stored entry is left as it is")
            }
            Problem::EarlierInFile(p) => write!(f, "the same id as {p} of this file; not imported"),
        }
    }
}

/// One document that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub at: Position,
    /// Its `container_registry_id`, when it has one that is a string.
    pub id: Option<String>,
    pub problem: Problem,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.problem.is_duplicate() {
            "duplicate"
        } else {
            "refused"
        };
        write!(f, "{kind} {}", self.at)?;
        if let Some(id) = &self.id {
            write!(f, " (id {id:?})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Documents read from the file.
    pub read: usize,
    pub imported: usize,
    /// Malformed or invalid documents.
    pub refused: usize,
    /// Ids already in the store.
    pub duplicates_in_store: usize,
    /// Ids repeated within the file.
    pub duplicates_in_file: usize,
    /// Why the import ended before the end of the file (unreadable JSON, a failing store).
    pub stopped: Option<String>,
}

impl ImportReport {
    pub fn duplicates(&self) -> usize {
        self.duplicates_in_store + self.duplicates_in_file
    }

    /// The process exit code `registry-db import` ends with (README, "Importing ...").
    pub fn exit_code(&self) -> i32 {
        if self.stopped.is_some() {
            1
        } else if self.refused > 0 || self.duplicates_in_file > 0 {
            3
        } else {
            0
        }
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "imported {}, refused {}, duplicates {} ({} already in the store, {} repeated in the file), of {} documents read",
            self.imported,
            self.refused,
            self.duplicates(),
            self.duplicates_in_store,
            self.duplicates_in_file,
            self.read
        )
    }
}

/// `registry-db import FILE`: imports, prints each document not imported and the summary on
/// stdout, and returns the exit code. Errors are for what keeps it from starting at all.
pub async fn run(args: &ImportArgs) -> anyhow::Result<i32> {
    use crate::ops::progress::{Counting, Mode, Progress};
    use anyhow::Context;
    use std::sync::atomic::{AtomicU64, Ordering};
    let bytes = std::sync::Arc::new(AtomicU64::new(0));
    let (raw, total): (Box<dyn std::io::Read + Send>, u64) = if args.file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), 0)
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        (Box::new(file), len)
    };
    let reader: Box<dyn BufRead + Send> = Box::new(std::io::BufReader::with_capacity(
        1 << 16,
        Counting {
            inner: raw,
            read: bytes.clone(),
        },
    ));
    let state = AppState::open(&args.store, None).await.with_context(|| match args.store.store {
        StoreKind::Embedded => format!(
            "cannot open the embedded store in {} (if a server runs on it, stop it first: one process at a time may open the store)",
            args.store.data.display()
        ),
        StoreKind::Dynamodb => format!("cannot open the DynamoDB table {}", args.store.table),
    })?;
    let catalog = state.catalog;
    println!(
        "importing {} into the {} (MongoDB's {MONGO_ID} is dropped from each document)",
        args.file.display(),
        catalog.store().describe()
    );
    // Findings and the report on stdout, as before; progress on standard error.
    let documents = AtomicU64::new(0);
    let mut progress = Progress::new("import", "documents", Mode::detect(args.quiet));
    let run = import_counted(
        &catalog,
        reader,
        |finding| println!("{finding}"),
        &documents,
    );
    tokio::pin!(run);
    let mut shown = 0;
    let report = loop {
        tokio::select! {
            report = &mut run => break report,
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                let done = documents.load(Ordering::Relaxed);
                let at = bytes.load(Ordering::Relaxed);
                progress.advance(done - shown, (total > 0).then_some((at, total)));
                shown = done;
            }
        }
    };
    progress.advance(documents.load(Ordering::Relaxed) - shown, None);
    println!("{report}");
    use std::io::Write;
    std::io::stdout().flush()?;
    let secs = progress.elapsed().as_secs_f64();
    let mut summary = format!("{report} in {secs:.1} s");
    if let Some(why) = &report.stopped {
        summary.push_str(&format!("\nerror: the import stopped: {why}"));
    }
    progress.finish(&summary);
    Ok(report.exit_code())
}

/// Imports every document `reader` holds into the registry's store, calling `report` for each
/// document that is not imported, as it happens. Ends early only when the file stops being
/// readable JSON or the store fails; the report says so in `stopped`.
pub async fn import<R, F>(catalog: &Catalog, reader: R, report: F) -> ImportReport
where
    R: BufRead + Send + 'static,
    F: FnMut(&Finding),
{
    import_counted(
        catalog,
        reader,
        report,
        &std::sync::atomic::AtomicU64::new(0),
    )
    .await
}

/// [`import`], counting the documents handled into `documents` (for a progress line).
pub async fn import_counted<R, F>(
    catalog: &Catalog,
    reader: R,
    mut report: F,
    documents: &std::sync::atomic::AtomicU64,
) -> ImportReport
where
    R: BufRead + Send + 'static,
    F: FnMut(&Finding),
{
    // Parsing is blocking I/O: a thread reads ahead while this task writes to the store.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(READ_AHEAD);
    let reading = tokio::task::spawn_blocking(move || {
        read_documents(reader, |doc| tx.blocking_send(doc).is_ok())
    });

    let mut out = ImportReport::default();
    let mut seen: HashMap<String, Position> = HashMap::new();
    let mut batch: Batch = Vec::with_capacity(IMPORT_BATCH);
    let mut batch_bytes = 0usize;
    while let Some(piece) = rx.recv().await {
        out.read += 1;
        documents.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let at = piece.at;
        batch_bytes += piece.text.as_ref().map_or(0, Vec::len);
        let json = piece.text.and_then(|text| parse(&text));
        // Named in every report, even when the rest of the document is malformed.
        let id = json
            .as_ref()
            .ok()
            .and_then(|json| json.get(ID))
            .and_then(Value::as_str)
            .map(str::to_string);
        let result = match prepare(json) {
            Err(problem) => Err(problem),
            Ok(body) => match id.as_ref().and_then(|id| seen.get(id)) {
                Some(first) => Err(Problem::EarlierInFile(*first)),
                None => {
                    if let Some(id) = &id {
                        seen.insert(id.clone(), at);
                    }
                    // The same validation as an API create; written with its batch.
                    ContainerRegistry::from_create(Value::Object(body))
                        .map_err(|e| Problem::Invalid(e.to_string()))
                }
            },
        };
        // Findings wait with the batch, so that they are reported in the file's order.
        batch.push((at, id, result));
        if (batch.len() == IMPORT_BATCH || batch_bytes >= IMPORT_BATCH_BYTES)
            && let Err(stop) = flush(catalog, &mut batch, &mut out, &mut report).await
        {
            out.stopped = Some(stop);
            break;
        }
        if batch.is_empty() {
            batch_bytes = 0;
        }
        if out.read % PROGRESS_EVERY == 0 {
            tracing::info!(read = out.read, imported = out.imported, "importing");
        }
    }
    if out.stopped.is_none()
        && let Err(stop) = flush(catalog, &mut batch, &mut out, &mut report).await
    {
        out.stopped = Some(stop);
    }
    // Closing the receiver ends the reader at its next document when the store stopped us.
    drop(rx);
    let read_end = reading
        .await
        .unwrap_or_else(|e| Err(format!("the reader failed: {e}")));
    if out.stopped.is_none()
        && let Err(e) = read_end
    {
        out.stopped = Some(e);
    }
    out
}

/// Documents read and not yet written: each one's entry, or why it is not one.
type Batch = Vec<(Position, Option<String>, Result<ContainerRegistry, Problem>)>;

/// Writes the valid entries read so far in one store batch (on the embedded store one durable
/// transaction: entries, tag and name index, counts) and records each one's outcome. `Err` is why
/// the import must stop: the store failed, and nothing of this batch or after it was written.
async fn flush<F: FnMut(&Finding)>(
    catalog: &Catalog,
    batch: &mut Batch,
    out: &mut ImportReport,
    report: &mut F,
) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let entries: Vec<ContainerRegistry> = batch
        .iter()
        .filter_map(|(_, _, e)| e.as_ref().ok().cloned())
        .collect();
    let mut results = catalog.store().insert_many(&entries).await.into_iter();
    for (at, id, read) in batch.drain(..) {
        let result = match read {
            Err(problem) => {
                record(out, report, at, id, problem);
                continue;
            }
            Ok(_) => results.next().unwrap_or_else(|| {
                Err(StoreError::Unavailable(
                    "the store answered fewer results than entries".into(),
                ))
            }),
        };
        match result {
            Ok(()) => out.imported += 1,
            Err(StoreError::AlreadyExists(_)) => record(out, report, at, id, Problem::InStore),
            Err(other) => {
                let other = AppError::from(other);
                return Err(format!(
                    "the store failed at {at}: {other}{}; nothing from it on was written (a re-run is safe)",
                    match &other {
                        AppError::Store(detail) => format!(" ({detail})"),
                        _ => String::new(),
                    }
                ));
            }
        }
    }
    Ok(())
}

fn record<F: FnMut(&Finding)>(
    out: &mut ImportReport,
    report: &mut F,
    at: Position,
    id: Option<String>,
    problem: Problem,
) {
    match &problem {
        Problem::InStore => out.duplicates_in_store += 1,
        Problem::EarlierInFile(_) => out.duplicates_in_file += 1,
        Problem::Malformed(_) | Problem::Invalid(_) => out.refused += 1,
    }
    report(&Finding { at, id, problem });
}

/// A document as the earlier service stored it, made into a create body: an object, `_id`
/// dropped, extended JSON turned into plain JSON. An import must name its ids: an entry without
/// one would get a new random id on every run, and a re-run would list it twice.
fn prepare(json: Result<Value, String>) -> Result<Map<String, Value>, Problem> {
    let json = json.map_err(Problem::Malformed)?;
    let Value::Object(mut doc) = json else {
        return Err(Problem::Malformed(format!(
            "is {}, not a JSON object (a MongoDB document)",
            type_name(&json)
        )));
    };
    doc.remove(MONGO_ID);
    // Field by field: a top-level `$` key stays a key, which the entry's validation refuses.
    let doc = doc
        .into_iter()
        .map(|(k, v)| plain_json(v, &k).map(|v| (k, v)))
        .collect::<Result<Map<_, _>, _>>()
        .map_err(Problem::Malformed)?;
    match doc.get(ID) {
        None | Some(Value::Null) => Err(Problem::Invalid(format!(
            "{ID}: is required for an import (a document without one would get a new id on every run)"
        ))),
        Some(_) => Ok(doc),
    }
}

/// MongoDB extended JSON (canonical, relaxed or legacy, as mongoexport writes it) turned into
/// plain JSON: `$numberInt`, `$numberLong` and `$numberDouble` become numbers, `$date` an RFC 3339
/// UTC string like the service's own timestamps. Other extended types (`$oid` inside an entry,
/// `$numberDecimal`, `$binary`, `$regularExpression`, `$timestamp`, ...) have no faithful plain
/// form, and neither do the doubles NaN and ±Infinity: the document is refused, naming the path.
pub fn plain_json(value: Value, path: &str) -> Result<Value, String> {
    match value {
        Value::Object(map) if map.keys().any(|k| k.starts_with('$')) => extended(map, path),
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| {
                let sub = join(path, &k);
                plain_json(v, &sub).map(|v| (k, v))
            })
            .collect::<Result<Map<_, _>, _>>()
            .map(Value::Object),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| plain_json(v, &join(path, &i.to_string())))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn extended(map: Map<String, Value>, path: &str) -> Result<Value, String> {
    let at = if path.is_empty() {
        "the document"
    } else {
        path
    };
    let mut entries = map.into_iter();
    let (Some((key, value)), None) = (entries.next(), entries.next()) else {
        return Err(format!(
            "{at}: an object with a $-key must be a single MongoDB extended JSON value"
        ));
    };
    let bad = |what: &str| format!("{at}: {key} {value} is not {what}");
    match key.as_str() {
        "$numberInt" => match &value {
            Value::String(s) => s
                .parse::<i32>()
                .map(|n| Value::Number(n.into()))
                .map_err(|_| bad("a 32-bit integer")),
            _ => Err(bad("a 32-bit integer in a string")),
        },
        "$numberLong" => match &value {
            Value::String(s) => s
                .parse::<i64>()
                .map(|n| Value::Number(n.into()))
                .map_err(|_| bad("a 64-bit integer")),
            _ => Err(bad("a 64-bit integer in a string")),
        },
        "$numberDouble" => match &value {
            Value::String(s) => s
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| bad("a finite number (JSON has no NaN or Infinity)")),
            _ => Err(bad("a number in a string")),
        },
        "$date" => {
            let time = match &value {
                // Relaxed: an ISO 8601 string.
                Value::String(s) => DateTime::parse_from_rfc3339(s)
                    .ok()
                    .map(|t| t.with_timezone(&Utc)),
                // Canonical: milliseconds since the epoch as {"$numberLong": "..."}.
                Value::Object(inner) => match inner.get("$numberLong") {
                    Some(Value::String(ms)) if inner.len() == 1 => ms
                        .parse::<i64>()
                        .ok()
                        .and_then(DateTime::from_timestamp_millis),
                    _ => None,
                },
                // Legacy: milliseconds as a plain number.
                Value::Number(ms) => ms.as_i64().and_then(DateTime::from_timestamp_millis),
                _ => None,
            };
            let time = time.ok_or_else(|| bad("a date"))?;
            // RFC 3339 writes four-digit years: chrono would write others as "+10000-01-01..."
            // or "-0001-...", which no reader of the entry takes for a date. Refused rather than
            // clamped, so that an import never changes a value without saying so.
            if !(0..=9999).contains(&time.year()) {
                return Err(bad(
                    "a date in the years 0000 to 9999 (the only ones an RFC 3339 timestamp can \
                     write)",
                ));
            }
            Ok(Value::String(
                time.to_rfc3339_opts(SecondsFormat::Millis, true),
            ))
        }
        _ => Err(format!(
            "{at}: MongoDB extended JSON type {key} has no plain JSON form (supported: $numberInt, $numberLong, $numberDouble, $date)"
        )),
    }
}

/// One document's text as JSON. The parser counts lines within the document; its position in the
/// file is the caller's to say.
fn parse(text: &[u8]) -> Result<Value, String> {
    serde_json::from_slice::<Value>(text).map_err(|e| {
        let at = match e.line() {
            1 => format!("column {}", e.column()),
            line => format!("its line {line}, column {}", e.column()),
        };
        format!("is not valid JSON ({at}): {}", without_position(&e))
    })
}

/// serde_json's message without its " at line L column C", which the caller words itself.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Read = Vec<(Position, Result<Value, String>)>;

    fn docs(text: &str) -> (Read, Result<(), String>) {
        let mut out = Vec::new();
        let end = read_documents(text.as_bytes(), |d| {
            out.push((d.at, d.text.and_then(|t| parse(&t))));
            true
        });
        (out, end)
    }

    #[test]
    fn extended_json_becomes_plain_json() {
        let v = json!({
            "a": {"$numberInt": "8192"},
            "b": {"$numberLong": "-1"},
            "c": [{"$numberDouble": "512.5"}, {"$numberDouble": "-0.0"}],
            "d": {"$date": "2025-03-01T09:30:00Z"},
            "e": {"$date": {"$numberLong": "1735689600000"}},
            "f": {"$date": 1735689600123_i64},
            "g": {"plain": 1.5, "s": "$not-a-key"},
            // The first and the last instant RFC 3339 can write.
            "h": [{"$date": -62167219200000_i64}, {"$date": 253402300799999_i64}],
        });
        assert_eq!(
            plain_json(v, "").unwrap(),
            json!({
                "a": 8192, "b": -1, "c": [512.5, -0.0],
                "d": "2025-03-01T09:30:00.000Z", "e": "2025-01-01T00:00:00.000Z",
                "f": "2025-01-01T00:00:00.123Z", "g": {"plain": 1.5, "s": "$not-a-key"},
                "h": ["0000-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"],
            })
        );
    }

    #[test]
    fn extended_json_without_a_plain_form_names_the_path() {
        for (v, expected) in [
            (
                json!({"x": {"$numberDouble": "NaN"}}),
                "x: $numberDouble \"NaN\" is not a finite number",
            ),
            (
                json!({"x": {"$numberDouble": "Infinity"}}),
                "is not a finite number",
            ),
            (
                json!({"x": [{"$numberLong": "twelve"}]}),
                "x.0: $numberLong \"twelve\" is not a 64-bit integer",
            ),
            (
                json!({"x": {"$numberInt": "3000000000"}}),
                "is not a 32-bit integer",
            ),
            (
                json!({"x": {"$numberDecimal": "1.5"}}),
                "x: MongoDB extended JSON type $numberDecimal has no plain JSON form",
            ),
            (
                json!({"x": {"$oid": "65f1c0ffee0ddba11ca7f00d"}}),
                "type $oid has no plain JSON form",
            ),
            (
                json!({"x": {"$date": "yesterday"}}),
                "x: $date \"yesterday\" is not a date",
            ),
            (
                json!({"x": {"$date": {"$numberLong": "253402300800000"}}}),
                "x: $date {\"$numberLong\":\"253402300800000\"} is not a date in the years 0000 to 9999",
            ),
            (
                json!({"x": {"$date": -62167219200001_i64}}),
                "is not a date in the years 0000 to 9999",
            ),
            (
                json!({"x": {"$numberInt": "1", "y": 2}}),
                "must be a single MongoDB extended JSON value",
            ),
        ] {
            let err = plain_json(v.clone(), "").unwrap_err();
            assert!(err.contains(expected), "{v}: {err}");
        }
    }

    #[test]
    fn an_array_is_read_element_by_element_whatever_its_layout() {
        let (got, end) = docs("\u{feff} \n[{\"a\":1},\n  \"x\",\n{\"b\":\n2}]\n");
        assert_eq!(end, Ok(()));
        let values: Vec<_> = got.iter().map(|(_, j)| j.clone().unwrap()).collect();
        assert_eq!(values, vec![json!({"a": 1}), json!("x"), json!({"b": 2})]);
        assert_eq!(
            got[2].0,
            Position {
                index: 3,
                line: None
            }
        );
        assert_eq!(docs("[]").0.len(), 0);
        assert_eq!(docs("  \n").0.len(), 0);
    }

    #[test]
    fn a_broken_array_ends_the_reading_where_it_breaks() {
        let (got, end) = docs("[{\"a\":1},\n{\"b\":2},\n{\"c\":");
        assert_eq!(got.len(), 2);
        let end = end.unwrap_err();
        assert!(
            end.contains("line 3") && end.contains("after 2 documents"),
            "{end}"
        );
        let (_, end) = docs("[{\"a\":1}] trailing");
        assert!(end.unwrap_err().contains("trailing characters"));
    }

    #[test]
    fn one_document_per_line_skips_a_broken_line_and_goes_on() {
        let (got, end) = docs("{\"a\":1}\n\n{\"b\":\n{\"c\":3}\r\n");
        assert_eq!(end, Ok(()));
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0].0,
            Position {
                index: 1,
                line: Some(1)
            }
        );
        assert!(got[1].1.as_ref().unwrap_err().contains("is not valid JSON"));
        assert_eq!(
            got[1].0,
            Position {
                index: 2,
                line: Some(3)
            }
        );
        assert_eq!(got[2].1, Ok(json!({"c": 3})));
        assert_eq!(
            got[2].0,
            Position {
                index: 3,
                line: Some(4)
            }
        );
    }

    /// A document of exactly `len` bytes: `{"p":"xx...x"}`.
    fn sized(len: usize) -> String {
        format!("{{\"p\":\"{}\"}}", "x".repeat(len - 8))
    }

    /// A document whose brackets nest `depth` deep (objects, then an array).
    fn nested(depth: usize) -> String {
        format!("{}[]{}", "{\"a\":".repeat(depth - 1), "}".repeat(depth - 1))
    }

    #[test]
    fn a_document_over_the_body_limit_is_refused_unread_in_both_modes_and_the_next_is_read() {
        for (text, refused) in [
            (sized(MAX_DOCUMENT_BYTES), None),
            (sized(MAX_DOCUMENT_BYTES + 1), Some(MAX_DOCUMENT_BYTES + 1)),
            (sized(8_000_000), Some(8_000_000)),
        ] {
            let lines = format!("{{\"a\":1}}\n{text}\r\n{{\"b\":2}}\n");
            let array = format!("[{{\"a\":1}},\n{text} , {{\"b\":2}}]");
            for input in [lines, array] {
                let (got, end) = docs(&input);
                assert_eq!(end, Ok(()));
                assert_eq!(got.len(), 3);
                assert_eq!(got[0].1, Ok(json!({"a": 1})));
                assert_eq!(got[2].1, Ok(json!({"b": 2})));
                assert_eq!(got[1].0.index, 2);
                match refused {
                    None => assert!(got[1].1.is_ok(), "{:?}", got[1].1),
                    Some(len) => assert_eq!(
                        got[1].1.as_ref().unwrap_err(),
                        &format!(
                            "is {len} bytes long, over the {MAX_DOCUMENT_BYTES} bytes a request body may hold (skipped unread)"
                        )
                    ),
                }
            }
        }
    }

    #[test]
    fn a_document_nested_past_the_limit_is_refused_unparsed_in_both_modes_and_the_next_is_read() {
        // Brackets inside strings do not count.
        let quoted = format!("{{\"s\":\"{}\\\"[\"}}", "[".repeat(200));
        for (text, deep) in [
            (nested(MAX_DOCUMENT_DEPTH), false),
            (nested(MAX_DOCUMENT_DEPTH + 1), true),
            (nested(200), true),
            (quoted, false),
        ] {
            let lines = format!("{text}\n\"after\"\n");
            let array = format!("[{text},\"after\"]");
            for input in [lines, array] {
                let (got, end) = docs(&input);
                assert_eq!(end, Ok(()), "{input}");
                assert_eq!(got.len(), 2, "{input}");
                assert_eq!(got[1].1, Ok(json!("after")));
                if deep {
                    assert_eq!(
                        got[0].1.as_ref().unwrap_err(),
                        &format!(
                            "nests deeper than {MAX_DOCUMENT_DEPTH} levels (an entry's metadata and config nest at most 16 levels; not parsed)"
                        )
                    );
                } else {
                    assert!(got[0].1.is_ok(), "{input}: {:?}", got[0].1);
                }
            }
        }
    }

    #[test]
    fn a_malformed_element_of_an_array_is_refused_and_the_next_read() {
        let (got, end) = docs("[{\"a\" 1}, 7, \"s\", {\"b\":[1,2]}]");
        assert_eq!(end, Ok(()));
        assert_eq!(got.len(), 4);
        assert!(got[0].1.as_ref().unwrap_err().contains("is not valid JSON"));
        assert_eq!(got[1].1, Ok(json!(7)));
        assert_eq!(got[2].1, Ok(json!("s")));
        assert_eq!(got[3].1, Ok(json!({"b": [1, 2]})));
    }

    #[test]
    fn prepare_drops_only_mongodb_s_id_and_needs_an_entry_id() {
        let doc = prepare(Ok(json!({
            "_id": {"$oid": "65f1c0ffee0ddba11ca7f00d"},
            "container_registry_id": "r1",
            "container_registry_name": "n",
        })))
        .unwrap();
        assert_eq!(
            Value::Object(doc),
            json!({"container_registry_id": "r1", "container_registry_name": "n"})
        );
        assert!(matches!(
            prepare(Ok(json!({"_id": {"$oid": "65f1c0ffee0ddba11ca7f00d"}, "container_registry_name": "n"}))),
            Err(Problem::Invalid(m)) if m.starts_with("container_registry_id: is required for an import")
        ));
        assert!(
            matches!(prepare(Ok(json!([1]))), Err(Problem::Malformed(m)) if m.contains("an array, not a JSON object"))
        );
        // A document that is itself one extended JSON value is no entry: its `$` key stays a
        // key, for the entry's validation to refuse.
        let doc = prepare(Ok(
            json!({"$numberInt": "1", "container_registry_id": "r1"}),
        ))
        .unwrap();
        assert_eq!(doc["$numberInt"], json!("1"));
    }
}
