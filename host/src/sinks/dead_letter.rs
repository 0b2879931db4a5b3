//! `[dead_letter]`: where records that could not be processed or delivered go, with the
//! reason: a file (default `dead-letter.ndjson`) or a Kafka topic.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::api::SinkContext;
use super::file::FileSink;
use super::kafka::{KafkaDeadLetter, KafkaDeadLetterConfig};
use crate::event::{DeadLetter, dead_letter_json};
use crate::util::Invalid;

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeadLetterConfig {
    /// One JSON object per line: the record, the stage and plugin that failed it, and why.
    File { path: PathBuf },
    /// A Kafka topic: the record as it was (key, value, headers) plus the headers
    /// `sluice.stage`, `sluice.reason` and, for transforms, `sluice.plugin`.
    Kafka(Box<KafkaDeadLetterConfig>),
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig::File {
            path: PathBuf::from("dead-letter.ndjson"),
        }
    }
}

impl DeadLetterConfig {
    /// Checks the settings without touching the network; keys relative to `[dead_letter]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            DeadLetterConfig::File { path } => Invalid::non_empty("path", &path.to_string_lossy()),
            DeadLetterConfig::Kafka(k) => k.validate(),
        }
    }

    /// Opens the destination like a sink (a relative `path` starts at `cx.base_dir`);
    /// `plugins` maps transform names to their plugin files (the Kafka dead letter's
    /// `sluice.plugin` header).
    pub async fn open(
        &self,
        cx: &SinkContext,
        plugins: HashMap<String, String>,
    ) -> anyhow::Result<DeadLetterSink> {
        Ok(match self {
            DeadLetterConfig::File { path } => {
                DeadLetterSink::File(FileSink::open(cx.resolve(path), 0).await?)
            }
            DeadLetterConfig::Kafka(k) => {
                DeadLetterSink::Kafka(KafkaDeadLetter::open(k, cx, plugins)?)
            }
        })
    }
}

pub enum DeadLetterSink {
    File(FileSink),
    Kafka(KafkaDeadLetter),
}

impl DeadLetterSink {
    /// Writes and flushes (or waits for the broker): returns once `dead` is durable.
    pub async fn write(&mut self, dead: &[DeadLetter]) -> anyhow::Result<()> {
        if dead.is_empty() {
            return Ok(());
        }
        match self {
            DeadLetterSink::File(f) => {
                for dl in dead {
                    f.write_line(&dead_letter_json(dl)).await?;
                }
                f.flush().await
            }
            DeadLetterSink::Kafka(k) => k.write(dead).await,
        }
    }
}
