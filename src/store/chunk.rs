//! The text one read of the embedded store collects: the ids and JSON of a chunk's entries, copied
//! into two buffers that the chunk's entries share.
//!
//! An allocation per id and per entry was a fifth of a tag query's time in a profile, and handing
//! out the entry cache's own shared bytes made both worker threads bump the same reference counts
//! for every entry of a popular query (a tenth more). One copy into a buffer of the request's own
//! costs less than either: its reference count stays on the thread that serves the request.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use super::StoredEntry;

/// Where an entry's JSON is.
enum Json {
    /// In the chunk's buffer.
    Copied(Range<usize>),
    /// In bytes of its own (just read and also kept by the cache).
    Own(Bytes),
}

/// See the module's comment.
pub struct ChunkText {
    ids: String,
    json: BytesMut,
    items: Vec<(Range<usize>, Json)>,
}

impl ChunkText {
    /// Room for `entries` entries of `json_bytes` bytes in all (both grow as needed).
    pub fn with_capacity(entries: usize, json_bytes: usize) -> Self {
        ChunkText {
            ids: String::with_capacity(entries * 16),
            json: BytesMut::with_capacity(json_bytes),
            items: Vec::with_capacity(entries),
        }
    }

    fn push_id(&mut self, id: &str) -> Range<usize> {
        let start = self.ids.len();
        self.ids.push_str(id);
        start..self.ids.len()
    }

    /// Adds an entry, copying its JSON.
    pub fn push_copy(&mut self, id: &str, json: &[u8]) {
        let at = self.json.len();
        self.json.extend_from_slice(json);
        let id = self.push_id(id);
        self.items.push((id, Json::Copied(at..self.json.len())));
    }

    /// Adds an entry whose JSON has bytes of its own.
    pub fn push_own(&mut self, id: &str, json: Bytes) {
        let id = self.push_id(id);
        self.items.push((id, Json::Own(json)));
    }

    /// The buffer that [`push_copied`](Self::push_copied) ranges point into, for a caller that
    /// copies JSON in itself (the entry cache, under its lock).
    pub fn json_buffer(&mut self) -> &mut BytesMut {
        &mut self.json
    }

    /// Adds an entry whose JSON was copied into [`json_buffer`](Self::json_buffer) at `range`.
    pub fn push_copied(&mut self, id: &str, range: Range<usize>) {
        debug_assert!(range.end <= self.json.len());
        let id = self.push_id(id);
        self.items.push((id, Json::Copied(range)));
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The entries, in the order they were added, sharing the two buffers.
    pub fn into_entries(self) -> Vec<StoredEntry> {
        let ids = ByteString::from(self.ids);
        let json = self.json.freeze();
        self.items
            .into_iter()
            .map(|(id, j)| StoredEntry {
                id: ids.slice_ref(&ids[id]),
                json: match j {
                    Json::Copied(range) => json.slice(range),
                    Json::Own(bytes) => bytes,
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_in_order_whichever_way_they_went_in() {
        let mut chunk = ChunkText::with_capacity(1, 1);
        chunk.push_copy("a", b"{\"n\":1}");
        chunk.push_own("bé", Bytes::from_static(b"{\"n\":2}"));
        let at = chunk.json_buffer().len();
        chunk.json_buffer().extend_from_slice(b"{\"n\":3}");
        chunk.push_copied("c", at..at + 7);
        assert_eq!(chunk.len(), 3);
        let entries = chunk.into_entries();
        let got: Vec<(&str, &[u8])> = entries.iter().map(|e| (&*e.id, &e.json[..])).collect();
        assert_eq!(
            got,
            [
                ("a", &b"{\"n\":1}"[..]),
                ("bé", b"{\"n\":2}"),
                ("c", b"{\"n\":3}")
            ]
        );
    }
}
