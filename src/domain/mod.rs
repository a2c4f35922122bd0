//! The business: what an entry is, and what can be done with entries. No HTTP and no DynamoDB here.

pub mod entry;
pub mod facets;
pub mod owner;
pub mod service;
pub mod size;
