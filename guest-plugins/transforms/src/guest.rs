//! The glue that turns a [`Transform`] into a Sluice WASM plugin (feature `guest`).
//!
//! A plugin crate is a `cdylib` whose whole `lib.rs` is:
//!
//! ```ignore
//! sluice_transforms::plugin!(sluice_transforms::KeywordFilter);
//! ```
//!
//! built with `--target wasm32-unknown-unknown` and turned into a component by the host's
//! tooling. `init` builds the transform from the config table (an error rejects the config;
//! a second `init` replaces the transform), `process` applies it to each record's value.
//! Records processed before a successful `init` fail.

use std::sync::Mutex;

use crate::{Outcome, Transform};

/// The bindings generated from `wit/transform.wit` (world `transform`).
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "transform",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_transform",
        default_bindings_module: "::sluice_transforms::guest::bindings",
    });
}

use bindings::sluice::transform::log::{Level, log};
use bindings::sluice::transform::types::{Outcome as WitOutcome, Record};

/// Where a plugin keeps its configured transform.
pub struct Slot<T>(Mutex<Option<T>>);

impl<T> Slot<T> {
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Slot(Mutex::new(None))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<T>> {
        // A panic aborts the plugin, so the lock cannot really be poisoned.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The body of the exported `init`. The host tags log lines and config errors with the
/// plugin's name, so neither repeats it.
pub fn init<T: Transform>(slot: &Slot<T>, config: Vec<(String, String)>) -> Result<(), String> {
    let transform = T::from_config(&config)?;
    log(Level::Info, &transform.summary());
    *slot.lock() = Some(transform);
    Ok(())
}

/// The body of the exported `process`.
pub fn process<T: Transform>(slot: &Slot<T>, batch: Vec<Record>) -> Vec<WitOutcome> {
    let guard = slot.lock();
    let Some(transform) = guard.as_ref() else {
        let reason = "not initialised: process was called before a successful init".to_string();
        return batch
            .iter()
            .map(|_| WitOutcome::Fail(reason.clone()))
            .collect();
    };
    batch
        .iter()
        .map(|record| match transform.apply(&record.value) {
            Outcome::Keep => WitOutcome::Keep,
            Outcome::Drop => WitOutcome::Drop,
            Outcome::SetValue(value) => WitOutcome::SetValue(value),
            Outcome::Fail(reason) => WitOutcome::Fail(reason),
        })
        .collect()
}

/// Exports a [`Transform`] as the plugin's `init` and `process`.
///
/// ```ignore
/// sluice_transforms::plugin!(sluice_transforms::FieldPrune);
/// ```
#[macro_export]
macro_rules! plugin {
    ($transform:ty) => {
        static __SLUICE_TRANSFORM: $crate::guest::Slot<$transform> = $crate::guest::Slot::new();

        struct __SluicePlugin;

        impl $crate::guest::bindings::Guest for __SluicePlugin {
            fn init(
                config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::guest::init(&__SLUICE_TRANSFORM, config)
            }

            fn process(
                batch: ::std::vec::Vec<$crate::guest::bindings::Record>,
            ) -> ::std::vec::Vec<$crate::guest::bindings::Outcome> {
                $crate::guest::process(&__SLUICE_TRANSFORM, batch)
            }
        }

        $crate::guest::bindings::export_transform!(__SluicePlugin);
    };
}
