//! The sinks, one module each: NDJSON files ([`file`]), stdout ([`stdout`]), Kafka
//! ([`kafka`]), Elasticsearch ([`elasticsearch`]), GCS objects loaded into BigQuery ([`gcs`])
//! and BigQuery streaming inserts ([`bigquery`]); and the dead-letter destinations
//! ([`dead_letter`]).
//!
//! A sink is its settings struct (`[sinks.NAME]`, checked by `host check`) implementing
//! [`SinkSettings`], and what it opens implementing [`Sink`]; the registry below is the only
//! place that lists them. The pipeline holds `Box<dyn Sink>`s: one call per batch, so the
//! dynamic dispatch costs nothing measurable and keeps the members apart.

mod api;
pub mod bigquery;
pub mod dead_letter;
pub mod elasticsearch;
pub mod file;
#[cfg(feature = "gcp")]
pub mod gcs;
pub mod kafka;
pub mod stdout;

pub use api::{Sink, SinkContext, SinkSettings};

crate::util::registry! {
    /// `[sinks.NAME]`: `type` picks the sink.
    pub enum SinkConfig: SinkSettings {
        File(file::FileConfig),
        Stdout(stdout::StdoutConfig),
        Kafka(kafka::KafkaSinkConfig),
        Elasticsearch(elasticsearch::ElasticsearchConfig),
        #[cfg(feature = "gcp")]
        Gcs(gcs::GcsConfig),
        #[cfg(feature = "gcp")]
        Bigquery(bigquery::BigQueryConfig),
    }
}
