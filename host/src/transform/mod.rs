//! The WebAssembly side of the host: the engine, plugin loading and the sandbox.
//!
//! - [`runtime`]: wasmtime engines, the epoch ticker and the compiled-artifact cache.
//! - [`plugin`]: loading a component (pin, import check, `InstancePre`) and calling it with
//!   deadline, fuel and memory limits.
//! - [`stage`]: one transform in a chain: failure isolation and poison-record bisection.
//! - [`chain`]: the stages of a pipeline's chain, applied to a batch in order.
//! - [`config`]: a `[transforms.NAME]` table, its grants, and `[runtime]`, with their checks.
//! - [`imports`]: which grant each import of a plugin needs.
//! - [`inspect`]: what `host plugin inspect` reports on a component.
//! - [`vectors`]: test vectors (inputs, configs, expected outcomes) and checking a plugin
//!   against them, for `host plugin test` and the polyglot suite.

pub mod chain;
pub mod config;
pub mod imports;
pub mod inspect;
pub mod plugin;
pub mod runtime;
pub mod stage;
pub mod vectors;

pub use crate::event::wit::sluice::transform::log::Level;
pub use crate::event::wit::sluice::transform::types::Outcome;
pub use crate::event::{DeadLetter, Header, Record, StageOutput};
pub use config::{Grants, RuntimeConfig, TransformConfig};
pub use plugin::{Plugin, PluginSpec};
pub use runtime::{Runtime, RuntimeOptions};
pub use stage::Stage;

/// The WIT package this host implements; plugins built against it load.
pub const WIT_PACKAGE: &str = "sluice:transform@0.1.0";
