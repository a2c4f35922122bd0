//! Query pages: one page of the entries matching a filter, and the cursor that resumes it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytestring::ByteString;
use serde_json::Value;

use super::{Catalog, Chunks, SCAN_CHUNK};
use crate::domain::entry::validate_id;
use crate::domain::plan::Plan;
use crate::domain::store::StoredEntry;
use crate::error::AppError;
use crate::query::{Budget, Fields, Filter, MAX_FILTER_WORK, OverBudget};

/// Comparisons of filter evaluation between two yields to the runtime, so that a costly filter
/// shares its worker with other requests (about a millisecond in a release build).
pub(super) const FILTER_WORK_SLICE: u64 = 50_000;

/// Paging limits. A page never exceeds `MAX_PAGE_BYTES` of entries, which keeps every response well
/// under Lambda's 6 MB payload limit whatever the entries hold.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
pub const MAX_PAGE_LIMIT: usize = 1000;
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

pub struct Page {
    /// The matching entries as stored (JSON text), in the plan's order.
    pub entries: Vec<StoredEntry>,
    pub next_cursor: Option<String>,
    /// Entries examined to fill this page (logged, and reported in the README's measurements).
    pub scanned: usize,
    /// Tag-index keys read to choose them (logged; counted by the work bound too).
    pub index_keys: usize,
}

/// Where a query stopped. Opaque to clients: base64url of a small JSON object naming the last key
/// examined and whether the tag index was read, so that the next page reads the same way (on
/// DynamoDB a scan and the index list entries in different orders).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    after: String,
    index: bool,
}

fn encode_cursor(cursor: &Cursor) -> String {
    let mut json = serde_json::json!({ "v": 1, "after": cursor.after });
    if cursor.index {
        json["ix"] = Value::Bool(true);
    }
    URL_SAFE_NO_PAD.encode(json.to_string())
}

fn decode_cursor(cursor: &str) -> Result<Cursor, AppError> {
    let bad = || {
        AppError::BadRequest {
        code: "invalid_cursor",
        message: "cursor is not one this service returned; pass next_cursor from the previous page unchanged".into(),
    }
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let index = match value.get("ix") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad()),
    };
    match (value.get("v"), value.get("after")) {
        (Some(v), Some(Value::String(after))) if v == 1 && validate_id(after).is_ok() => {
            Ok(Cursor {
                after: after.clone(),
                index,
            })
        }
        _ => Err(bad()),
    }
}

impl Catalog {
    /// One page of entries matching `filter`, resuming after `cursor`. Entries come in the order
    /// of the plan that reads them (see `store::plan`): the tag index when it can narrow the
    /// filter, else a scan in the store's key order.
    pub async fn query(
        &self,
        filter: &Filter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, AppError> {
        crate::domain::owner::refuse_owner_field(filter)?;
        let limit = limit.clamp(1, MAX_PAGE_LIMIT);
        let cursor = cursor.map(decode_cursor).transpose()?;
        // A cursor from a scan goes on scanning: the plan does not change within a listing.
        let plan = match &cursor {
            Some(c) if !c.index => Plan::Scan,
            _ => Plan::for_filter(filter),
        };
        let mut chunks = Chunks::new(
            self.store.as_ref(),
            filter,
            plan,
            cursor.map(|c| c.after.into()),
        );
        let mut entries = Vec::with_capacity(limit.min(256));
        let mut bytes = 0usize;
        let fields = Fields::of(filter);
        let mut work = Work::new();
        let page = |entries, after: Option<ByteString>, used_index, (scanned, index_keys)| Page {
            entries,
            next_cursor: after.map(|after| {
                encode_cursor(&Cursor {
                    after: String::from(&*after),
                    index: used_index,
                })
            }),
            scanned,
            index_keys,
        };
        loop {
            // Where this chunk starts, and so where a page that takes none of it resumes.
            let mut after = chunks.after().cloned();
            let wanted = chunk_entries(limit - entries.len(), chunks.read());
            let Some(chunk) = chunks.next(wanted).await? else {
                // Never reached: a page ends below as soon as the chunks do.
                return Ok(page(
                    entries,
                    after,
                    chunks.uses_index(),
                    chunks.work_done(),
                ));
            };
            let scanned = chunks.work_done();
            let used_index = chunks.uses_index();
            // What the page takes from this chunk starts here (see `unpin`).
            let first = entries.len();
            let chunk_bytes: usize = chunk.candidates.iter().map(|e| e.json.len()).sum();
            let mut candidates = chunk.candidates.into_iter().peekable();
            // Where a page that ends here resumes: after the last entry examined, which is the
            // last one taken when `took_last` (its id is cloned only if a page ends there).
            let mut took_last = false;
            let resume =
                |entries: &Vec<StoredEntry>, after: Option<ByteString>, took_last: bool| {
                    if took_last {
                        entries.last().map(|e| e.id.clone())
                    } else {
                        after
                    }
                };
            while let Some(entry) = candidates.next() {
                // One parse per entry, and none when the store answered the filter exactly.
                if !chunk.exact {
                    match work.matches(filter, &entry.document(&fields)?).await? {
                        Some(true) => {}
                        Some(false) => {
                            after = Some(entry.id);
                            took_last = false;
                            continue;
                        }
                        None => {
                            // The budget ran out on this entry: the next page starts with it.
                            let after = resume(&entries, after, took_last);
                            unpin(&mut entries[first..], chunk_bytes);
                            return Ok(page(entries, after, used_index, scanned));
                        }
                    }
                }
                let size = entry.json.len();
                if !entries.is_empty() && bytes + size > MAX_PAGE_BYTES {
                    // This entry starts the next page: resume right before it.
                    let after = resume(&entries, after, took_last);
                    unpin(&mut entries[first..], chunk_bytes);
                    return Ok(page(entries, after, used_index, scanned));
                }
                bytes += size;
                entries.push(entry);
                took_last = true;
                if entries.len() == limit {
                    let more = candidates.peek().is_some() || chunk.last_key.is_some();
                    let after = resume(&entries, after, took_last).filter(|_| more);
                    unpin(&mut entries[first..], chunk_bytes);
                    return Ok(page(entries, after, used_index, scanned));
                }
            }
            unpin(&mut entries[first..], chunk_bytes);
            if chunks.finished() {
                return Ok(page(entries, None, used_index, scanned));
            }
            if chunks.bounded() {
                return Ok(page(entries, chunks.after().cloned(), used_index, scanned));
            }
        }
    }
}

/// The filter work of one request: [`MAX_FILTER_WORK`] comparisons, shared by its entries, with a
/// yield to the runtime every [`FILTER_WORK_SLICE`].
pub(super) struct Work {
    budget: Budget,
    yielded_at: u64,
    /// Entries whose evaluation finished: the budget running out before any is a filter too
    /// costly for one entry, which no cursor would get past.
    evaluated: usize,
}

impl Work {
    pub(super) fn new() -> Work {
        Work {
            budget: Budget::new(MAX_FILTER_WORK),
            yielded_at: MAX_FILTER_WORK,
            evaluated: 0,
        }
    }

    /// Whether `doc` matches; `None` when the budget ran out on it (stop before it), and a 400
    /// `filter_too_costly` when that happens on the request's first entry.
    pub(super) async fn matches(
        &mut self,
        filter: &Filter,
        doc: &Value,
    ) -> Result<Option<bool>, AppError> {
        let matched = filter.matches_within(doc, &self.budget);
        if self.yielded_at - self.budget.left() >= FILTER_WORK_SLICE {
            tokio::task::yield_now().await;
            self.yielded_at = self.budget.left();
        }
        match matched {
            Ok(m) => {
                self.evaluated += 1;
                Ok(Some(m))
            }
            Err(OverBudget) if self.evaluated == 0 => Err(AppError::BadRequest {
                code: "filter_too_costly",
                message: format!(
                    "the filter needs more than {MAX_FILTER_WORK} comparisons to evaluate one \
                     entry (the work bound of a request); use fewer conditions or conditions on \
                     smaller fields"
                ),
            }),
            Err(OverBudget) => Ok(None),
        }
    }
}

/// The entries a page takes from a chunk share the chunk's buffers (`store::chunk`). When they
/// are less than half of its text (a filter that rejects most of a scan), they are copied out, so
/// that a page never holds more than twice the text it answers.
fn unpin(taken: &mut [StoredEntry], chunk_bytes: usize) {
    let taken_bytes: usize = taken.iter().map(|e| e.json.len()).sum();
    if taken_bytes * 2 < chunk_bytes {
        for entry in taken {
            entry.json = bytes::Bytes::copy_from_slice(&entry.json);
        }
    }
}

/// Entries to read in the next chunk when `wanted` more are needed for the page: what the page still
/// needs, doubling with every chunk of one request when the filter rejects some, up to
/// [`SCAN_CHUNK`]. A page of 20 that most entries match reads about 20, not a whole chunk whose
/// rest the next page reads again; a rare match costs a few more (cheap) chunks. A store tells by
/// itself whether more follow. The same for a scan and the tag index.
fn chunk_entries(wanted: usize, chunks_read: u32) -> usize {
    wanted
        .saturating_mul(1 << chunks_read.min(10))
        .min(SCAN_CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_that_takes_little_of_a_chunk_copies_it_out() {
        let chunk = bytes::Bytes::from(vec![b'x'; 10_000]);
        let within = |e: &StoredEntry| {
            let start = chunk.as_ptr() as usize;
            (start..start + chunk.len()).contains(&(e.json.as_ptr() as usize))
        };
        let taken = |n: usize| -> Vec<StoredEntry> {
            (0..n)
                .map(|i| StoredEntry {
                    id: format!("e{i}").into(),
                    json: chunk.slice(i * 1000..(i + 1) * 1000),
                })
                .collect()
        };
        // Half the chunk or more: kept where it is.
        let mut most = taken(5);
        unpin(&mut most, chunk.len());
        assert!(most.iter().all(within));
        // Less than half: copied out, text unchanged.
        let mut few = taken(4);
        unpin(&mut few, chunk.len());
        assert!(!few.iter().any(within));
        assert!(
            few.iter()
                .all(|e| e.json.len() == 1000 && e.json[0] == b'x')
        );
    }

    #[test]
    fn cursor_round_trips_and_rejects_forgeries() {
        for index in [false, true] {
            let cursor = Cursor {
                after: "b3c38f52-8f2e-43a3-9aa9-bd9a4c75e509".into(),
                index,
            };
            assert_eq!(decode_cursor(&encode_cursor(&cursor)).unwrap(), cursor);
        }
        for bad in [
            "",
            "!!",
            "eyJ2IjoyfQ",
            &URL_SAFE_NO_PAD.encode(r#"{"v":1,"after":"a","ix":"yes"}"#),
            &URL_SAFE_NO_PAD.encode(r#"{"v":1,"after":"a/b"}"#),
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
