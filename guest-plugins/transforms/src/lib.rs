//! Tweet transforms for Sluice.
//!
//! This crate holds all the logic of the `keyword-filter`, `field-prune` and `enrich` plugins.
//! The plugins are thin WASM wrappers around it (see the `guest` feature and [`plugin!`]), and
//! the host's native benchmark baseline links the very same code, so a WASM-versus-native
//! comparison measures the sandbox rather than two implementations.
//!
//! Every transform reads one record value (a tweet's JSON, either a Twitter API v1.1 status or a
//! v2 filtered-stream payload) and answers with an [`Outcome`]. Configuration is the plugin's
//! `config` table from `pipeline.toml`, as key/value string pairs.
//!
//! ```
//! use sluice_transforms::{KeywordFilter, Outcome, Transform};
//!
//! let config = [("keywords".to_string(), "bts".to_string())];
//! let filter = KeywordFilter::from_config(&config).unwrap();
//! assert_eq!(filter.apply(br#"{"text":"New #BTS album!"}"#), Outcome::Keep);
//! assert_eq!(filter.apply(br#"{"text":"@BTS_twt hi"}"#), Outcome::Drop);
//! ```

mod config;
mod enrich;
mod facts;
mod json;
mod keyword;
mod matcher;
mod path;
mod prune;
mod time;
mod tweet;

#[cfg(feature = "guest")]
pub mod guest;

pub use enrich::Enrich;
pub use keyword::KeywordFilter;
pub use prune::FieldPrune;

/// What a transform made of one record value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Pass the record on unchanged.
    Keep,
    /// Filter the record out.
    Drop,
    /// Pass the record on with this new value.
    SetValue(Vec<u8>),
    /// The record cannot be processed (the host dead-letters it with this reason).
    Fail(String),
}

/// A configured record transform.
pub trait Transform: Sized {
    /// Builds the transform from the plugin's config table. Unknown keys and bad values are
    /// errors whose message names the key.
    fn from_config(config: &[(String, String)]) -> Result<Self, String>;

    /// Transforms one record value.
    fn apply(&self, value: &[u8]) -> Outcome;

    /// A one-line, human-readable summary of the effective configuration (used for the
    /// plugin's log line at `init`).
    fn summary(&self) -> String {
        String::new()
    }
}
