//! The business: what an entry is, and what can be done with entries. No HTTP and no DynamoDB here.

pub mod catalog;
pub mod counts;
pub mod entry;
pub mod history;
pub mod owner;
pub mod plan;
pub mod store;
pub mod verification;
pub mod words;

/// How big an entry is (a part of what an entry is), at its old path too.
pub use entry::size;
