//! The business: what an entry is, and what can be done with entries. No HTTP and no DynamoDB here.

pub mod catalog;
pub mod entry;
pub mod plan;
pub mod size;
pub mod store;
pub mod stored;
