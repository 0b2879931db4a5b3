//! Sluice: streaming pipelines with sandboxed WebAssembly transforms.
//!
//! A pipeline reads records from a source, passes them in batches through a chain of WASM
//! component plugins, and writes what comes out to its sinks; records a plugin cannot handle go
//! to a dead-letter destination with the reason.

pub mod clients;
pub mod config;
pub mod event;
pub mod pipeline;
pub mod plugin_test;
pub mod scaffold;
pub mod sinks;
pub mod sources;
pub mod telemetry;
pub mod transform;
pub mod util;
