//! BigQuery: the schema derived from the records ([`schema`], also behind `host schema
//! bigquery`), and, with feature `gcp`, the table, load jobs and streaming inserts
//! ([`loader`]).

#[cfg(feature = "gcp")]
mod loader;
pub mod schema;

#[cfg(feature = "gcp")]
pub use loader::*;
