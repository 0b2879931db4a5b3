//! What a source is to the pipeline: settings it checks and opens ([`SourceSettings`]), and
//! batches it reads and forgets once they are delivered ([`Source`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::event::{Checkpoint, Ownership, Positions, Record};
use crate::telemetry::Telemetry;
use crate::util::Invalid;

/// A source's `[source]` table.
pub trait SourceSettings: std::fmt::Debug + Send + Sync {
    /// Checks the settings without touching the network; the key is relative to `[source]`.
    fn validate(&self) -> Result<(), Invalid>;

    /// Builds the source. Connecting may wait for the first batch, so that `host check` and
    /// start-up errors of other stages do not touch the service. An [`Invalid`] in the error
    /// names a key.
    fn open(&self, cx: &SourceContext) -> anyhow::Result<Box<dyn Source>>;

    /// What `host check` runs after `validate`: by default an `open`. A source whose `open`
    /// needs secrets or the network checks what it can without them instead.
    fn check(&self, cx: &SourceContext) -> anyhow::Result<()> {
        self.open(cx).map(drop)
    }
}

/// What a source is opened with: the pipeline's batching, where relative paths start, and the
/// metrics and readiness it reports (stage `source`).
#[derive(Debug, Clone)]
pub struct SourceContext {
    pub batch_size: usize,
    /// A partial batch is handed on after this long.
    pub batch_timeout: Duration,
    /// The pipeline file's directory.
    pub base_dir: PathBuf,
    pub telemetry: Telemetry,
    /// Kept up to date by a source whose streams move between hosts (Kafka).
    pub ownership: Ownership,
}

impl SourceContext {
    pub fn resolve(&self, p: &Path) -> PathBuf {
        self.base_dir.join(p)
    }
}

/// A running source. Called from one task; one boxed future per batch.
#[async_trait::async_trait]
pub trait Source: Send {
    /// The next batch of at most the pipeline's batch size, or `None` at the end. A stream
    /// that never ends returns an empty batch when nothing arrived within the batch timeout.
    async fn next_batch(&mut self) -> anyhow::Result<Option<Batch>>;

    /// Called, in batch order, once every sink has acknowledged a batch (and the dead letter
    /// has taken its failures): the source may now forget everything up to `checkpoint`.
    async fn commit(&mut self, checkpoint: Checkpoint) -> anyhow::Result<()> {
        let _ = checkpoint;
        Ok(())
    }
}

/// Records from a source, and what to acknowledge once they are delivered.
#[derive(Debug)]
pub struct Batch {
    pub records: Vec<Record>,
    pub checkpoint: Checkpoint,
    /// Where each record came from; `None` for sources that cannot re-read their input (the
    /// pipeline then numbers the records itself, see [`Positions::Sequence`]).
    pub positions: Option<Positions>,
}

impl Batch {
    /// Records from a source that cannot re-read them: nothing to commit, positions numbered
    /// by the pipeline.
    pub fn of(records: Vec<Record>) -> Self {
        Self {
            records,
            checkpoint: Checkpoint::default(),
            positions: None,
        }
    }
}
