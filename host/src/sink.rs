//! Embedded sinks: NDJSON files (rotated by size), stdout and Kafka; and the dead-letter
//! destinations.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::io::{AsyncWriteExt, BufWriter};

use crate::config::{DeadLetterConfig, Pipeline, SinkConfig};
use crate::kafka::{KafkaDeadLetter, KafkaSink};
use crate::record;
use crate::wasm::{DeadLetter, Record};

pub enum Sink {
    File(FileSink),
    Stdout(BufWriter<tokio::io::Stdout>),
    Kafka(KafkaSink),
    Elasticsearch(crate::elasticsearch::ElasticsearchSink),
}

/// A record a sink finally could not deliver (after its own retries), to be dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Index in the slice given to [`Sink::write`].
    pub index: usize,
    pub reason: String,
}

impl Sink {
    pub async fn open(
        config: &SinkConfig,
        resolve: impl Fn(&Path) -> PathBuf,
    ) -> anyhow::Result<Self> {
        Ok(match config {
            SinkConfig::File { path, rotate_bytes } => {
                Sink::File(FileSink::open(resolve(path), rotate_bytes.as_u64()).await?)
            }
            SinkConfig::Stdout => Sink::Stdout(BufWriter::new(tokio::io::stdout())),
            SinkConfig::Kafka(k) => Sink::Kafka(KafkaSink::open(k).await?),
            SinkConfig::Elasticsearch(es) => {
                Sink::Elasticsearch(crate::elasticsearch::ElasticsearchSink::connect(es).await?)
            }
        })
    }

    /// Writes each record (files and stdout: its value as one line). Returns the records the
    /// sink finally refused, with reasons; an `Err` means the sink itself failed.
    pub async fn write(&mut self, records: &[Record]) -> anyhow::Result<Vec<Rejected>> {
        match self {
            // Returns once the broker acknowledged or refused each record.
            Sink::Kafka(k) => return k.write(records).await,
            // Returns once Elasticsearch indexed or rejected each record.
            Sink::Elasticsearch(es) => return es.write(records).await,
            Sink::File(f) => {
                for r in records {
                    f.write_line(&r.value).await?;
                }
            }
            Sink::Stdout(out) => {
                for r in records {
                    out.write_all(&r.value).await?;
                    out.write_all(b"\n").await?;
                }
            }
        }
        Ok(Vec::new())
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Sink::File(f) => f.flush().await,
            Sink::Stdout(out) => Ok(out.flush().await?),
            Sink::Kafka(_) | Sink::Elasticsearch(_) => Ok(()),
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
