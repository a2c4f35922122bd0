//! An entry as its stored JSON text, which the stores hand out, the API answers as it stands and
//! the pages read only the fields they show of.

use bytes::Bytes;
use bytestring::ByteString;
use serde_json::Value;

use super::entry::ContainerRegistry;
use super::store::StoreError;
use crate::query::Fields;

/// Entries larger than this are not kept in memory: by the embedded store's entry cache
/// (`store::entry_cache`) and the pages' card memo alike.
pub const MAX_CACHED_ENTRY: usize = 16 * 1024;

/// An entry as the store holds it: its id and its JSON text, which is what a GET returns. Both are
/// shared text: the entries one read collects share its buffers (`store::chunk`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntry {
    pub id: ByteString,
    pub json: Bytes,
}

impl StoredEntry {
    /// The entry as a typed value (for updates and health checks).
    pub fn entry(&self) -> Result<ContainerRegistry, StoreError> {
        serde_json::from_slice(&self.json).map_err(|e| unreadable(&self.id, e))
    }

    /// The entry as a JSON document holding only `fields` (for evaluating the filter they come
    /// from): one parse, which builds nothing for the other fields.
    pub fn document(&self, fields: &Fields) -> Result<Value, StoreError> {
        fields
            .parse(&self.json)
            .map_err(|e| unreadable(&self.id, e))
    }
}

/// Says which stored entry could not be read, the same way wherever it is read.
pub fn unreadable(id: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("the stored entry {id} is not readable: {e}"))
}
