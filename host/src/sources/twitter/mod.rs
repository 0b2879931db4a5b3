//! Twitter API v2 filtered-stream source.
//!
//! At start the source reconciles the stream rules with the configured keywords (one rule per
//! keyword, `value = tag = keyword`): rules that are not wanted are deleted, missing ones added,
//! the others kept, so starting twice changes nothing. It then holds one long-lived
//! `GET /2/tweets/search/stream` connection and reads its chunked body incrementally: every
//! non-blank line is one record whose value is the line exactly as received (the full v2 payload:
//! `data`, `includes`, `matching_rules`), keyed by the tweet id. Blank lines are the server's
//! keep-alives (about every 20 s).
//!
//! Failures follow Twitter's reconnect guidance: after an established connection drops, reconnect
//! at once; a connect that fails at the network level backs off linearly (250 ms steps up to 16 s),
//! an HTTP error exponentially (5 s doubling up to 320 s), a 429 exponentially from one minute
//! (and at least until `x-rate-limit-reset`). A connection on which nothing, not even a keep-alive,
//! arrives for `stall_timeout` (90 s) is dropped and reopened. 401/403 (and 400/404, which mean a
//! wrong base URL or field list) are fatal. Every disconnect is logged with its reason and the
//! count of tweets received so far, and counted in [`TwitterStats`].
//!
//! The bearer token is read from the environment variable named by `bearer_token_env`, never from
//! the pipeline file.
//!
//! The parts: `config` (the options), `rules` (reconciling the stream rules at start), `stream`
//! (the connection and the records read from it) and `backoff` (kinds of failure and the waits
//! before retrying).

mod backoff;
mod config;
mod rules;
mod stream;

pub use config::TwitterConfig;
pub use stream::{MATCHING_RULES_HEADER, PARTIAL_HEADER, TwitterSource, TwitterStats};

use std::time::Duration;

use crate::sources::api::{Batch, Source, SourceContext, SourceSettings};
use crate::sources::spool::Spooled;
use crate::telemetry::{Readiness, StreamMetrics};
use crate::util::Invalid;

impl SourceSettings for TwitterConfig {
    fn validate(&self) -> Result<(), Invalid> {
        TwitterConfig::validate(self)
    }

    fn open(&self, cx: &SourceContext) -> anyhow::Result<Box<dyn Source>> {
        let stream = Box::new(LazyStream {
            config: self.clone(),
            stream: None,
            batch: cx.batch_size,
            wait: cx.batch_timeout,
            metrics: cx.telemetry.stream("source"),
            readiness: cx
                .telemetry
                .readiness("source", "connecting to the Twitter stream"),
        });
        let Some(spool) = &self.spool else {
            return Ok(stream);
        };
        Ok(Box::new(Spooled::open(
            stream,
            spool,
            &cx.resolve(&spool.dir),
            cx.batch_size,
            cx.batch_timeout,
            cx.telemetry.spool("source"),
        )?))
    }

    /// `host check` leaves the spool directory alone.
    fn check(&self, _cx: &SourceContext) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The stream, connected on the first read so that `host check` and start-up errors of other
/// stages do not touch the API.
struct LazyStream {
    config: TwitterConfig,
    stream: Option<TwitterSource>,
    batch: usize,
    wait: Duration,
    metrics: StreamMetrics,
    readiness: Readiness,
}

#[async_trait::async_trait]
impl Source for LazyStream {
    /// A stream never ends: an empty batch means nothing arrived within the batch timeout.
    async fn next_batch(&mut self) -> anyhow::Result<Option<Batch>> {
        let stream = match &mut self.stream {
            Some(s) => s,
            None => {
                let mut stream = TwitterSource::connect(&self.config).await?;
                stream.observe(self.metrics.clone(), self.readiness.clone());
                self.stream.insert(stream)
            }
        };
        Ok(Some(Batch::of(
            stream.next_batch(self.batch, self.wait).await?,
        )))
    }
}
