//! container-registry-db: a listing of OCI container registries.
//!
//! Layers, from the inside out: `query` (the filter and update language, no I/O), `domain` (the
//! entry and the operations), `store` (embedded redb and DynamoDB), `health` (OCI probes and
//! sweeps), `api` (the axum router and its OpenAPI document), and the entry points `server` and
//! `lambda`. See ARCHITECTURE in the README.

pub mod access;
pub mod api;
pub mod config;
pub mod domain;
pub mod error;
pub mod health;
pub mod import;
pub mod lambda;
pub mod metrics;
pub mod ops;
pub mod query;
pub mod router;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod web;
