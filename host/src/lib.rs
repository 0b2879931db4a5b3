//! Sluice: streaming pipelines with sandboxed WebAssembly transforms.
//!
//! A pipeline reads records from a source, passes them in batches through a chain of WASM
//! component plugins, and writes what comes out to its sinks; records a plugin cannot handle go
//! to a dead-letter destination with the reason.

#[cfg(feature = "gcp")]
pub mod bigquery;
pub mod bqschema;
pub mod chain;
pub mod config;
pub mod elasticsearch;
#[cfg(feature = "gcp")]
pub mod gcs;
pub mod generate;
pub mod json_key;
pub mod kafka;
pub mod pipeline;
pub mod record;
pub mod scaffold;
pub mod sink;
pub mod source;
pub mod twitter;
pub mod wasm;
