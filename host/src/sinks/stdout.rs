//! `type = "stdout"`: NDJSON on standard output, one record value per line.

use serde::Deserialize;
use tokio::io::{AsyncWriteExt, BufWriter, Stdout};

use super::api::{Sink, SinkContext, SinkSettings};
use crate::event::{Positions, Rejected, StageOutput};
use crate::util::Invalid;

/// `[sinks.NAME] type = "stdout"`: no settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

#[async_trait::async_trait]
impl SinkSettings for StdoutConfig {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }

    async fn open(&self, _: &SinkContext) -> anyhow::Result<Box<dyn Sink>> {
        Ok(Box::new(StdoutSink(BufWriter::new(tokio::io::stdout()))))
    }
}

pub struct StdoutSink(BufWriter<Stdout>);

#[async_trait::async_trait]
impl Sink for StdoutSink {
    async fn write(&mut self, out: &StageOutput, _: &Positions) -> anyhow::Result<Vec<Rejected>> {
        for r in &out.records {
            self.0.write_all(&r.value).await?;
            self.0.write_all(b"\n").await?;
        }
        Ok(Vec::new())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.0.flush().await?)
    }
}
