//! Where entries live: the embedded (redb) and DynamoDB stores, implementing the domain's
//! [`Store`] (`domain/store.rs`), re-exported here with the types it speaks. Stores know keys, versions, bytes and the tag index; the query language and the
//! update rules live in the domain, so both stores behave the same by construction.
//!
//! Reads hand back entries as the JSON text the store holds ([`StoredEntry`]), so a GET or a query
//! page is assembled from stored bytes without decoding and re-encoding them.

mod chunk;
pub mod dynamodb;
pub mod embedded;
pub mod entry_cache;
pub mod metered;

pub use bytestring::ByteString;

pub use crate::domain::plan::{self, Plan};
pub use crate::domain::store::StoredEntry;
pub use crate::domain::store::{
    Exported, ReindexReport, ScanChunk, ScanRequest, Store, StoreError,
};
