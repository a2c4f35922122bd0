//! The filter and update language of `POST /container_registries` and `PUT /container_registry/{id}`:
//! a documented subset of MongoDB's, specified in `shared/QUERY.md`.
//!
//! A filter or an update is parsed once into a typed tree ([`Filter`], [`Update`]); the tree is the
//! single semantics. Every store evaluates filters with [`Filter::matches`] and applies updates with
//! [`Update::apply`]; the DynamoDB store additionally translates a filter into a Scan
//! `FilterExpression` (`store::dynamodb::filter`) that may keep extra items but never drops one that
//! [`Filter::matches`] accepts. This module knows nothing of HTTP or of any store.
//!
//! Layout: `path` (dotted field paths), `value` (MongoDB equality and ordering of JSON values),
//! `filter` (the filter tree and its parser), `eval` (evaluation against a document, with
//! MongoDB's implicit array traversal), `project` (parsing only the fields a filter reads), `update` (the update tree, its parser and its application),
//! `limits` (the bounds on what a client may send).

mod eval;
mod filter;
mod limits;
mod path;
mod project;
mod update;
mod value;

#[cfg(test)]
mod tests;

pub use eval::{Budget, OverBudget};
pub use filter::{Cond, ElemMatch, FieldFilter, Filter, RegexCond};
pub use limits::{
    MAX_ARRAY_BACKFILL, MAX_FILTER_DEPTH, MAX_FILTER_NODES, MAX_FILTER_WORK, MAX_IN_VALUES,
    MAX_PATH_LEN, MAX_PATH_SEGMENTS, MAX_REGEX_LEN, MAX_UPDATE_DEPTH, MAX_UPDATE_NODES,
    MAX_UPDATE_PATHS, REGEX_SIZE_LIMIT,
};
pub use path::Path;
pub use project::Fields;
pub use update::{PullCond, Update, UpdateOp};
pub use value::{ValueSet, compare_values, values_equal};

/// Why a filter or an update was refused. Every variant is the client's doing: the HTTP layer
/// answers 400 with [`QueryError::code`] and the `Display` text, which names the construct (the
/// operator, the path) and says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The body of `POST /container_registries` is not a filter this service accepts.
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// The body of `PUT /container_registry/{id}` is not an update this service accepts, or it
    /// cannot be applied to the stored entry (e.g. `$push` to a field that holds a string).
    #[error("invalid update: {0}")]
    InvalidUpdate(String),
    /// Two parts of one update touch the same path, or a path and its prefix (MongoDB's
    /// "conflict" error).
    #[error("conflicting update: {0}")]
    UpdateConflict(String),
    /// Applying the update would make the entry larger than it may be; refused before it is
    /// built.
    #[error("the update makes the entry too large: {0}")]
    TooLarge(String),
}

impl QueryError {
    /// The stable machine-readable code for the error envelope.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::InvalidFilter(_) => "invalid_filter",
            QueryError::InvalidUpdate(_) => "invalid_update",
            QueryError::UpdateConflict(_) => "update_conflict",
            QueryError::TooLarge(_) => "entry_too_large",
        }
    }

    /// The sentence alone, without the "invalid filter: " prefix of `Display`.
    pub fn message(&self) -> &str {
        match self {
            QueryError::InvalidFilter(m)
            | QueryError::InvalidUpdate(m)
            | QueryError::UpdateConflict(m)
            | QueryError::TooLarge(m) => m,
        }
    }
}

/// A short name for the JSON type of a value, for error messages (of queries, entries and imports).
pub fn type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
