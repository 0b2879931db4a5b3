//! The sources, one module each: synthetic tweets ([`generate`]), NDJSON files ([`file`]), a
//! Kafka consumer group ([`kafka`]) and the Twitter filtered stream ([`twitter`]), which can
//! be read through a disk [`spool`].
//!
//! A source is its settings struct (`[source]`, checked by `host check`) implementing
//! [`SourceSettings`], and what it opens implementing [`Source`]; the registry below is the
//! only place that lists them. The pipeline holds a `Box<dyn Source>`: one call per batch, so
//! the dynamic dispatch costs nothing measurable and keeps the members apart.

mod api;
mod dedup;
pub mod file;
pub mod generate;
pub mod kafka;
mod pace;
pub mod spool;
pub mod twitter;

pub use api::{Batch, Source, SourceContext, SourceSettings};

crate::util::registry! {
    /// `[source]`: `type` picks the source.
    pub enum SourceConfig: SourceSettings {
        Generate(generate::GenerateConfig),
        File(file::FileConfig),
        Kafka(kafka::KafkaSourceConfig),
        Twitter(twitter::TwitterConfig),
    }
}
