//! The Elasticsearch sink: documents into time-based indices (`twitter-%{+YYYYMMdd}`) through
//! `_bulk`, with an index template that the host creates or updates at start.
//!
//! - **Batching.** Batches are gathered ([`gather`]) until they fill `concurrency` requests
//!   or the oldest record has waited `linger`, then split into `_bulk` requests of at most
//!   `bulk_max_docs` documents and `bulk_max_bytes` bytes; up to `concurrency` of them are in
//!   flight at once. Each request body is built in one buffer, and buffers are reused across
//!   requests and calls.
//! - **Idempotence.** Every document is sent with an `index` action (not `create`) and, when
//!   one of the `id_field` paths is present, that value as `_id`: a redelivered record
//!   overwrites its own document instead of adding a second one.
//! - **Errors.** Whole-request failures that are transient (connection refused or reset,
//!   timeouts, HTTP 429 and 5xx) are retried with exponential backoff, indefinitely unless
//!   `retry_give_up` is set (then what is left of the batch is dead-lettered with the last
//!   error): the batch stays in memory and `write` does not return, which is the backpressure
//!   on the source. Items of a `_bulk` response that failed with 429 (or 502,
//!   503, 504) are retried alone. Any other per-item failure (mapping conflict, field limit,
//!   unparsable date, ...) is returned as a [`Rejected`](crate::event::Rejected) with Elasticsearch's own error type
//!   and reason, for the dead-letter destination.
//! - **Index management.** `PUT _index_template/<name>` with shards, replicas,
//!   `index.mapping.total_fields.limit`, the refresh interval and explicit mappings for the
//!   known tweet fields (both API v1.1 and v2 shapes, plus the `enrich` plugin's fields), so
//!   nobody needs curl to get past the 1000-field default. The dynamic settings are also
//!   applied to indices that already exist and match the template's patterns.
//!
//! - **Security.** HTTPS with the system's CAs or `ca_file`, a client certificate, basic
//!   auth or an API key; secrets come from environment variables or files.
//!
//! Files: [`config`] (settings and checks), [`connection`] (TLS and credentials), [`index`] (index names), [`template`] (the index
//! template), [`gather`] (records held across batches), [`bulk`] (the sink), [`response`]
//! (Elasticsearch's error answers).

mod bulk;
mod config;
mod connection;
mod gather;
mod index;
mod response;
mod template;

pub use bulk::ElasticsearchSink;
pub use config::ElasticsearchConfig;
pub use index::{IndexPattern, IndexTime};
pub use template::{TemplateConfig, Unmapped, template_body};

use super::api::{Sink, SinkContext, SinkSettings};
use crate::util::Invalid;

#[async_trait::async_trait]
impl SinkSettings for ElasticsearchConfig {
    fn validate(&self) -> Result<(), Invalid> {
        ElasticsearchConfig::validate(self)
    }

    async fn open(&self, cx: &SinkContext) -> anyhow::Result<Box<dyn Sink>> {
        let mut sink = ElasticsearchSink::connect(&self.relative_to(&cx.base_dir)).await?;
        sink.observe(cx);
        Ok(Box::new(sink))
    }
}
