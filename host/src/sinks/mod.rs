//! The sinks: NDJSON files (rotated by size), stdout, Kafka, Elasticsearch, GCS (+ BigQuery
//! loads) and BigQuery streaming inserts; and the dead-letter destinations.
//!
//! Most sinks hold nothing once `write` and `flush` return. The GCS sink holds records across
//! batches until their object is finalized; the pipeline asks it ([`Sink::holds`]) before it
//! lets the source commit a batch.

pub mod bigquery;
pub mod elasticsearch;
#[cfg(feature = "gcp")]
pub mod gcs;
pub mod kafka;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::io::{AsyncWriteExt, BufWriter};

use crate::config::{DeadLetterConfig, Pipeline, SinkConfig};
use crate::record;
use crate::sinks::kafka::{KafkaDeadLetter, KafkaSink};
use crate::sources::Positions;
use crate::transform::{DeadLetter, StageOutput};

pub enum Sink {
    File(FileSink),
    Stdout(BufWriter<tokio::io::Stdout>),
    Kafka(KafkaSink),
    Elasticsearch(crate::sinks::elasticsearch::ElasticsearchSink),
    #[cfg(feature = "gcp")]
    Gcs(Box<crate::sinks::gcs::GcsDelivery>),
    #[cfg(feature = "gcp")]
    Bigquery(Box<crate::sinks::bigquery::BigQueryLoader>),
}

/// A record a sink finally could not deliver (after its own retries), to be dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Index in the slice given to [`Sink::write`].
    pub index: usize,
    pub reason: String,
}

impl Sink {
    /// `stage` names the sink in its dead letters and logs (`sinks.NAME`).
    #[cfg_attr(not(feature = "gcp"), allow(unused_variables))]
    pub async fn open(
        config: &SinkConfig,
        stage: Arc<str>,
        resolve: impl Fn(&Path) -> PathBuf,
    ) -> anyhow::Result<Self> {
        Ok(match config {
            SinkConfig::File { path, rotate_bytes } => {
                Sink::File(FileSink::open(resolve(path), rotate_bytes.as_u64()).await?)
            }
            SinkConfig::Stdout => Sink::Stdout(BufWriter::new(tokio::io::stdout())),
            SinkConfig::Kafka(k) => Sink::Kafka(KafkaSink::open(k).await?),
            SinkConfig::Elasticsearch(es) => Sink::Elasticsearch(
                crate::sinks::elasticsearch::ElasticsearchSink::connect(es).await?,
            ),
            #[cfg(feature = "gcp")]
            SinkConfig::Gcs(g) => Sink::Gcs(Box::new(
                crate::sinks::gcs::GcsDelivery::open(g, stage).await?,
            )),
            #[cfg(feature = "gcp")]
            SinkConfig::Bigquery(bq) => {
                anyhow::ensure!(
                    bq.mode == crate::sinks::bigquery::Mode::Stream,
                    "a `type = \"bigquery\"` sink streams (`mode = \"stream\"`); load jobs \
                     come from a gcs sink with `[sinks.NAME.bigquery]`"
                );
                Sink::Bigquery(Box::new(
                    crate::sinks::bigquery::BigQueryLoader::open(bq.clone()).await?,
                ))
            }
        })
    }

    /// Writes a batch's output (files and stdout: each value as one line); `positions` says
    /// where its input came from (`out.origins` index that input). Returns the records the
    /// sink finally refused, with reasons; an `Err` means the sink itself failed.
    #[cfg_attr(not(feature = "gcp"), allow(unused_variables))]
    pub async fn write(
        &mut self,
        out: &StageOutput,
        positions: &Positions,
    ) -> anyhow::Result<Vec<Rejected>> {
        let records = &out.records;
        match self {
            #[cfg(feature = "gcp")]
            Sink::Gcs(g) => return g.write(out, positions).await,
            #[cfg(feature = "gcp")]
            Sink::Bigquery(bq) => return insert_retrying(bq, records).await,
            // Returns once the broker acknowledged or refused each record.
            Sink::Kafka(k) => return k.write(records).await,
            // Returns once Elasticsearch indexed or rejected each record.
            Sink::Elasticsearch(es) => return es.write(records).await,
            Sink::File(f) => {
                for r in records {
                    f.write_line(&r.value).await?;
                }
            }
            Sink::Stdout(stdout) => {
                for r in records {
                    stdout.write_all(&r.value).await?;
                    stdout.write_all(b"\n").await?;
                }
            }
        }
        Ok(Vec::new())
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Sink::File(f) => f.flush().await,
            Sink::Stdout(out) => Ok(out.flush().await?),
            _ => Ok(()),
        }
    }

    /// Whether the sink still holds records of input `stream` at or before position `last`.
    #[cfg_attr(not(feature = "gcp"), allow(unused_variables))]
    pub fn holds(&self, stream: &str, last: u64) -> bool {
        match self {
            #[cfg(feature = "gcp")]
            Sink::Gcs(g) => g.holds(stream, last),
            _ => false,
        }
    }

    /// When the sink wants [`Sink::tick`] called (an object reaching its age limit).
    pub fn next_deadline(&self) -> Option<Instant> {
        match self {
            #[cfg(feature = "gcp")]
            Sink::Gcs(g) => g.next_deadline(),
            _ => None,
        }
    }

    /// Time-driven work: finalizes objects that reached their age limit.
    pub async fn tick(&mut self) {
        #[cfg(feature = "gcp")]
        if let Sink::Gcs(g) = self {
            g.tick().await;
        }
    }

    /// At shutdown: delivers everything still held.
    pub async fn finish(&mut self) -> anyhow::Result<()> {
        #[cfg(feature = "gcp")]
        if let Sink::Gcs(g) = self {
            g.finish().await;
        }
        self.flush().await
    }

    /// Records of earlier batches the sink gave up on (a load job BigQuery refused), to be
    /// dead-lettered.
    pub fn take_dead(&mut self) -> Vec<DeadLetter> {
        match self {
            #[cfg(feature = "gcp")]
            Sink::Gcs(g) => g.take_dead(),
            _ => Vec::new(),
        }
    }
}

/// Streaming inserts, retried with backoff while BigQuery is unreachable (the batch is kept
/// and the source held back); rows BigQuery refuses are returned.
#[cfg(feature = "gcp")]
async fn insert_retrying(
    bq: &mut crate::sinks::bigquery::BigQueryLoader,
    records: &[crate::transform::Record],
) -> anyhow::Result<Vec<Rejected>> {
    let mut attempt = 0u32;
    loop {
        match bq.insert(records).await {
            Ok(refused) => {
                return Ok(refused
                    .into_iter()
                    .map(|(index, reason)| Rejected { index, reason })
                    .collect());
            }
            Err(e) => {
                attempt += 1;
                let wait = crate::sinks::gcs::retry_backoff(attempt);
                tracing::error!("bigquery insert: {e:#}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Where records that could not be processed or delivered go, with the reason.
pub enum DeadLetterSink {
    File(FileSink),
    Kafka(KafkaDeadLetter),
}

impl DeadLetterSink {
    pub async fn open(p: &Pipeline) -> anyhow::Result<Self> {
        Ok(match &p.config.dead_letter {
            DeadLetterConfig::File { path } => {
                DeadLetterSink::File(FileSink::open(p.resolve(path), 0).await?)
            }
            DeadLetterConfig::Kafka { .. } => DeadLetterSink::Kafka(KafkaDeadLetter::open(p)?),
        })
    }

    /// Writes and flushes (or waits for the broker): returns once `dead` is durable.
    pub async fn write(&mut self, dead: &[DeadLetter]) -> anyhow::Result<()> {
        if dead.is_empty() {
            return Ok(());
        }
        match self {
            DeadLetterSink::File(f) => {
                for dl in dead {
                    f.write_line(&record::dead_letter_json(dl)).await?;
                }
                f.flush().await
            }
            DeadLetterSink::Kafka(k) => k.write(dead).await,
        }
    }
}

/// Appends lines to `path`; once a file reaches `rotate_bytes`, continues in `NAME.1.EXT`,
/// `NAME.2.EXT`, ... Existing files are appended to, never truncated.
pub struct FileSink {
    base: PathBuf,
    rotate_bytes: u64,
    index: u32,
    written: u64,
    out: BufWriter<tokio::fs::File>,
}

impl FileSink {
    pub async fn open(base: PathBuf, rotate_bytes: u64) -> anyhow::Result<Self> {
        if let Some(dir) = base.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let (out, written) = open_append(&base).await?;
        Ok(Self {
            base,
            rotate_bytes,
            index: 0,
            written,
            out,
        })
    }

    pub async fn write_line(&mut self, line: &[u8]) -> anyhow::Result<()> {
        if self.rotate_bytes > 0
            && self.written > 0
            && self.written + line.len() as u64 >= self.rotate_bytes
        {
            self.rotate().await?;
        }
        self.out.write_all(line).await?;
        self.out.write_all(b"\n").await?;
        self.written += line.len() as u64 + 1;
        Ok(())
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.out
            .flush()
            .await
            .with_context(|| format!("writing {}", self.current().display()))
    }

    fn current(&self) -> PathBuf {
        rotated_path(&self.base, self.index)
    }

    async fn rotate(&mut self) -> anyhow::Result<()> {
        self.flush().await?;
        loop {
            self.index += 1;
            let (out, written) = open_append(&self.current()).await?;
            self.out = out;
            self.written = written;
            if written == 0 {
                return Ok(());
            }
        }
    }
}

/// `out/tweets.ndjson` with index 2 is `out/tweets.2.ndjson`.
pub fn rotated_path(base: &Path, index: u32) -> PathBuf {
    if index == 0 {
        return base.to_path_buf();
    }
    let stem = base.file_stem().unwrap_or_default().to_string_lossy();
    let name = match base.extension() {
        Some(ext) => format!("{stem}.{index}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{index}"),
    };
    base.with_file_name(name)
}

async fn open_append(path: &Path) -> anyhow::Result<(BufWriter<tokio::fs::File>, u64)> {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().await?.len();
    Ok((BufWriter::with_capacity(256 << 10, file), len))
}
