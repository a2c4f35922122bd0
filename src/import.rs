//! `registry-db import`: moves the entries of the earlier Python/MongoDB service into either store.
//!
//! The earlier service kept each entry as one MongoDB document holding exactly the seed's fields
//! (its `to_dict()`), plus the `_id` ObjectId that MongoDB adds on insert; it added nothing else.
//! So a document is imported as it stands, less `_id`, with MongoDB extended JSON turned into plain
//! JSON, through [`Catalog::create`]: every entry passes the same validation as an API create, and
//! an id already in the store is reported, never overwritten, which makes a re-run safe.
//!
//! The file is `mongoexport --jsonArray` output (any layout, `--pretty` included) or mongoexport's
//! default, one document per line. It is read as a stream: one document is in memory at a time
//! (plus the set of ids seen, to find an id repeated in the file).

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
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

/// Documents read ahead of the store writes.
const READ_AHEAD: usize = 64;
/// Entries written per store batch: on the embedded store one redb transaction (one fsync) each,
/// about 25 MB of entries and their index keys in memory. Large because a commit rewrites every
/// index page it touched, and the index keys of a batch (ids are random) touch most pages of the
/// name index: fewer commits write far less (2,000 a batch imported 2,275 entries/s at 100,000).
const IMPORT_BATCH: usize = 20_000;
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
    use anyhow::Context;
    let reader: Box<dyn BufRead + Send> = if args.file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        Box::new(std::io::BufReader::with_capacity(1 << 16, file))
    };
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
    let report = import(&catalog, reader, |finding| println!("{finding}")).await;
    println!("{report}");
    if let Some(why) = &report.stopped {
        eprintln!("error: the import stopped: {why}");
    }
    use std::io::Write;
    std::io::stdout().flush()?;
    Ok(report.exit_code())
}

/// One document as read: its JSON, or why it could not be parsed.
struct Document {
    at: Position,
    json: Result<Value, String>,
}

/// Imports every document `reader` holds into the registry's store, calling `report` for each
/// document that is not imported, as it happens. Ends early only when the file stops being
/// readable JSON or the store fails; the report says so in `stopped`.
pub async fn import<R, F>(catalog: &Catalog, reader: R, mut report: F) -> ImportReport
where
    R: BufRead + Send + 'static,
    F: FnMut(&Finding),
{
    // Parsing is blocking I/O: a thread reads ahead while this task writes to the store.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Document>(READ_AHEAD);
    let reading = tokio::task::spawn_blocking(move || {
        read_documents(reader, |doc| tx.blocking_send(doc).is_ok())
    });

    let mut out = ImportReport::default();
    let mut seen: HashMap<String, Position> = HashMap::new();
    let mut batch: Batch = Vec::with_capacity(IMPORT_BATCH);
    while let Some(doc) = rx.recv().await {
        out.read += 1;
        let at = doc.at;
        // Named in every report, even when the rest of the document is malformed.
        let id = doc
            .json
            .as_ref()
            .ok()
            .and_then(|json| json.get(ID))
            .and_then(Value::as_str)
            .map(str::to_string);
        let result = match prepare(doc.json) {
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
        if batch.len() == IMPORT_BATCH
            && let Err(stop) = flush(catalog, &mut batch, &mut out, &mut report).await
        {
            out.stopped = Some(stop);
            break;
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

/// Reads the documents of an export and hands each to `emit`, which answers false to stop.
/// `[` first means `--jsonArray` (parsed as a stream, any layout); anything else means one
/// document per line, where a broken line is reported and the next line read. A syntax error
/// inside an array ends the reading: where one element ends is not knowable past it.
fn read_documents<R: BufRead>(
    mut reader: R,
    mut emit: impl FnMut(Document) -> bool,
) -> Result<(), String> {
    let first = skip_blank(&mut reader).map_err(|e| format!("cannot read the file: {e}"))?;
    match first {
        None => Ok(()),
        Some(b'[') => read_array(reader, &mut emit),
        Some(_) => read_lines(reader, &mut emit),
    }
}

/// Skips whitespace and a UTF-8 byte order mark; returns the next byte without consuming it.
fn skip_blank<R: BufRead>(reader: &mut R) -> std::io::Result<Option<u8>> {
    let mut at_start = true;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        if at_start && buf.starts_with(b"\xEF\xBB\xBF") {
            reader.consume(3);
            at_start = false;
            continue;
        }
        at_start = false;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let byte = buf[i];
                reader.consume(i);
                return Ok(Some(byte));
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

fn read_array<R: BufRead>(
    reader: R,
    emit: &mut impl FnMut(Document) -> bool,
) -> Result<(), String> {
    struct Elements<'a, F> {
        emit: &'a mut F,
        count: &'a mut usize,
    }
    impl<'de, F: FnMut(Document) -> bool> Visitor<'de> for Elements<'_, F> {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON array of MongoDB documents")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            while let Some(json) = seq.next_element::<Value>()? {
                *self.count += 1;
                let at = Position {
                    index: *self.count,
                    line: None,
                };
                if !(self.emit)(Document { at, json: Ok(json) }) {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    }
    impl<'de, F: FnMut(Document) -> bool> DeserializeSeed<'de> for Elements<'_, F> {
        type Value = bool;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_seq(self)
        }
    }

    let mut count = 0;
    let mut de = serde_json::Deserializer::from_reader(reader);
    // The documents of a large export nest no deeper than an entry may (16 levels), so the
    // parser's default recursion limit stays on.
    let finished = Elements {
        emit,
        count: &mut count,
    }
    .deserialize(&mut de)
    .and_then(|finished| de.end().map(|()| finished));
    match finished {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "the file is not valid JSON at line {}, column {} (after {count} documents): {}; nothing after that point was read",
            e.line(),
            e.column(),
            without_position(&e)
        )),
    }
}

/// serde_json's message without its " at line L column C", which the caller words itself.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_string()
}

fn read_lines<R: BufRead>(
    mut reader: R,
    emit: &mut impl FnMut(Document) -> bool,
) -> Result<(), String> {
    let mut buf = Vec::new();
    let mut line = 0;
    let mut index = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("cannot read the file after line {line}: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        index += 1;
        // The parser counts lines within this one line; the position says which line it is.
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let json = serde_json::from_slice::<Value>(text).map_err(|e| {
            format!(
                "is not valid JSON (column {}): {}",
                e.column(),
                without_position(&e)
            )
        });
        let at = Position {
            index,
            line: Some(line),
        };
        if !emit(Document { at, json }) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Read = Vec<(Position, Result<Value, String>)>;

    fn docs(text: &str) -> (Read, Result<(), String>) {
        let mut out = Vec::new();
        let end = read_documents(text.as_bytes(), |d| {
            out.push((d.at, d.json));
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
