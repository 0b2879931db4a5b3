//! What a sink is to the pipeline: settings it checks and opens ([`SinkSettings`]), and
//! batches it delivers ([`Sink`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::event::{DeadLetter, Ownership, Positions, Rejected, StageOutput};
use crate::telemetry::Telemetry;
use crate::util::Invalid;

/// A sink's `[sinks.NAME]` table.
#[async_trait::async_trait]
pub trait SinkSettings: std::fmt::Debug + Send + Sync {
    /// Checks the settings without touching the network; keys are relative to the table.
    fn validate(&self) -> Result<(), Invalid>;

    /// Connects (creating what the sink needs: a topic, an index template, a table).
    async fn open(&self, cx: &SinkContext) -> anyhow::Result<Box<dyn Sink>>;
}

/// What a sink is opened with.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// `sinks.NAME`: the stage named in the sink's dead letters and logs.
    pub stage: Arc<str>,
    /// The pipeline file's directory.
    pub base_dir: PathBuf,
    /// Where the sink reports its requests and readiness (the pipeline counts its records).
    pub telemetry: Telemetry,
    /// The input streams this host owns (see [`Ownership`]).
    pub ownership: Ownership,
}

impl SinkContext {
    pub fn resolve(&self, p: &Path) -> PathBuf {
        self.base_dir.join(p)
    }
}

/// A running sink. Called from one task; one boxed future per batch.
///
/// Most sinks hold nothing once `write` and `flush` return. A sink that holds records across
/// batches (GCS, until their object is finalized) says so through [`Sink::holds`], and the
/// pipeline asks before it lets the source commit a batch.
#[async_trait::async_trait]
pub trait Sink: Send {
    /// Writes a batch's output; `positions` says where its input came from (`out.origins`
    /// index that input). Returns the records the sink finally refused, with reasons; an
    /// `Err` means the sink itself failed.
    async fn write(
        &mut self,
        out: &StageOutput,
        positions: &Positions,
    ) -> anyhow::Result<Vec<Rejected>>;

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Whether the sink still holds records of input `stream` at or before position `last`.
    fn holds(&self, stream: &str, last: u64) -> bool {
        let _ = (stream, last);
        false
    }

    /// When the sink wants [`Sink::tick`] called (an object reaching its age limit, records
    /// waiting for a fuller request).
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// Time-driven work, e.g. finalizing objects that reached their age limit. An `Err` means
    /// the sink failed, as from `write`.
    async fn tick(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// At shutdown: delivers everything still held.
    async fn finish(&mut self) -> anyhow::Result<()> {
        self.flush().await
    }

    /// Records of earlier batches the sink gave up on (a load job BigQuery refused), to be
    /// dead-lettered.
    fn take_dead(&mut self) -> Vec<DeadLetter> {
        Vec::new()
    }
}
