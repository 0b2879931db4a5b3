//! The sources: synthetic tweets and NDJSON files (here), a Kafka consumer group
//! ([`kafka`]) and the Twitter filtered stream ([`twitter`]).

pub mod kafka;
pub mod twitter;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;

use crate::config::{Pipeline, SourceConfig};
use crate::record;
use crate::transform::Record;
use tweetgen::TweetGenerator;

// One source per pipeline, built once: variant size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Source {
    Generate(GenerateSource),
    File(FileSource),
    Kafka(crate::sources::kafka::KafkaSource),
    Twitter(TwitterStream),
}

impl Source {
    pub fn from_pipeline(p: &Pipeline) -> anyhow::Result<Self> {
        let batch = p.config.pipeline.batch_size;
        let chunk = |rate: f64| chunk_size(rate, batch, p.config.pipeline.batch_timeout);
        Ok(match &p.config.source {
            SourceConfig::Generate {
                count,
                rate,
                tweets,
            } => Source::Generate(GenerateSource {
                generator: TweetGenerator::new(tweets),
                remaining: (*count > 0).then_some(*count),
                pacer: Pacer::new(*rate),
                chunk: chunk(*rate),
                buf: Vec::new(),
            }),
            SourceConfig::File {
                paths,
                rate,
                repeat,
            } => {
                let files = expand_globs(p, paths)?;
                Source::File(FileSource {
                    files,
                    next_file: 0,
                    reader: None,
                    repeat: *repeat,
                    pacer: Pacer::new(*rate),
                    chunk: chunk(*rate),
                    line: Vec::new(),
                })
            }
            SourceConfig::Twitter(t) => Source::Twitter(TwitterStream {
                config: t.clone(),
                stream: None,
                batch,
                wait: p.config.pipeline.batch_timeout,
            }),
            SourceConfig::Kafka(k) => Source::Kafka(
                crate::sources::kafka::KafkaSource::new(k, batch, p.config.pipeline.batch_timeout)
                    .map_err(|e| p.error("source.properties", format!("{e:#}")))?,
            ),
        })
    }

    /// The next batch of at most the pipeline's batch size, or `None` at the end.
    pub async fn next_batch(&mut self) -> anyhow::Result<Option<Batch>> {
        let records = match self {
            Source::Generate(s) => s.next_batch().await?,
            Source::File(s) => s.next_batch().await?,
            Source::Twitter(s) => Some(s.next_batch().await?),
            Source::Kafka(s) => {
                let (records, checkpoint, positions) = s.next_batch().await?;
                return Ok(Some(Batch {
                    records,
                    checkpoint: Checkpoint::Kafka(checkpoint),
                    positions: Some(positions),
                }));
            }
        };
        Ok(records.map(|records| Batch {
            records,
            checkpoint: Checkpoint::None,
            positions: None,
        }))
    }

    /// Called, in batch order, once every sink has acknowledged a batch (and the dead letter
    /// has taken its failures): the source may now forget everything up to `checkpoint`.
    pub async fn commit(&mut self, checkpoint: Checkpoint) -> anyhow::Result<()> {
        match (self, checkpoint) {
            (_, Checkpoint::None) => Ok(()),
            (Source::Kafka(s), Checkpoint::Kafka(c)) => s.commit(c),
            (_, Checkpoint::Kafka(_)) => unreachable!("a Kafka checkpoint from another source"),
        }
    }
}

/// The Twitter stream, connected on first use so that `host check` and start-up errors of
/// other stages do not touch the API.
pub struct TwitterStream {
    config: crate::sources::twitter::TwitterConfig,
    stream: Option<crate::sources::twitter::TwitterSource>,
    batch: usize,
    wait: Duration,
}

impl TwitterStream {
    /// A stream never ends: an empty batch means nothing arrived within the batch timeout.
    async fn next_batch(&mut self) -> anyhow::Result<Vec<Record>> {
        let stream = match &mut self.stream {
            Some(s) => s,
            None => self
                .stream
                .insert(crate::sources::twitter::TwitterSource::connect(&self.config).await?),
        };
        stream.next_batch(self.batch, self.wait).await
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

/// Where a batch's records came from. Sinks that name their output after its input (GCS
/// objects) use it so that re-reading the same input after a crash gives the same names.
#[derive(Debug, Clone)]
pub enum Positions {
    /// Records `first..first + len` of one stream that cannot be re-read (generated, files,
    /// Twitter): numbered from 0 in each run, under a stream name unique to the run.
    Sequence {
        stream: Arc<str>,
        first: u64,
        len: u64,
    },
    /// Kafka: per record, its topic-partition (an index into `streams`, named
    /// `<topic>-<partition>`) and its offset.
    Offsets {
        streams: Vec<Arc<str>>,
        of: Vec<(u32, u64)>,
    },
}

impl Positions {
    /// Whether the source re-delivers the same positions after a restart (so work already
    /// done for them can be recognised).
    pub fn replayable(&self) -> bool {
        matches!(self, Positions::Offsets { .. })
    }

    pub fn streams(&self) -> &[Arc<str>] {
        match self {
            Positions::Sequence { stream, .. } => std::slice::from_ref(stream),
            Positions::Offsets { streams, .. } => streams,
        }
    }

    /// The stream (index into [`Positions::streams`]) and position of input record `i`.
    pub fn of(&self, i: usize) -> (usize, u64) {
        match self {
            Positions::Sequence { first, .. } => (0, first + i as u64),
            Positions::Offsets { of, .. } => (of[i].0 as usize, of[i].1),
        }
    }

    /// Per stream (index into [`Positions::streams`]), the first and last position of the
    /// batch; streams without records are left out.
    pub fn ranges(&self) -> Vec<(usize, u64, u64)> {
        match self {
            Positions::Sequence { len: 0, .. } => Vec::new(),
            Positions::Sequence { first, len, .. } => vec![(0, *first, first + len - 1)],
            Positions::Offsets { streams, of } => {
                let mut r: Vec<Option<(u64, u64)>> = vec![None; streams.len()];
                for &(s, o) in of {
                    let e = r[s as usize].get_or_insert((o, o));
                    e.0 = e.0.min(o);
                    e.1 = e.1.max(o);
                }
                r.into_iter()
                    .enumerate()
                    .filter_map(|(s, e)| e.map(|(a, b)| (s, a, b)))
                    .collect()
            }
        }
    }
}

/// A source's position after a batch, handed back to [`Source::commit`] once the batch is
/// delivered. This is what makes delivery at-least-once: a source never moves past records
/// that are not yet acknowledged.
#[derive(Debug, Default)]
pub enum Checkpoint {
    /// Nothing to acknowledge (generated records, files).
    #[default]
    None,
    /// The next offset of every partition in the batch.
    Kafka(crate::sources::kafka::KafkaCheckpoint),
}

/// Under a rate limit, emit small chunks so a batch does not wait longer than its timeout.
fn chunk_size(rate: f64, batch: usize, timeout: Duration) -> usize {
    if rate > 0.0 {
        ((rate * timeout.as_secs_f64()) as usize).clamp(1, batch)
    } else {
        batch
    }
}

/// Paces records to `rate` per second (0: unpaced) against the start time, so short stalls
/// are caught up rather than accumulated.
struct Pacer {
    rate: f64,
    start: Option<Instant>,
    sent: u64,
}

impl Pacer {
    fn new(rate: f64) -> Self {
        Self {
            rate,
            start: None,
            sent: 0,
        }
    }

    async fn admit(&mut self, n: usize) {
        if self.rate <= 0.0 {
            return;
        }
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = start + Duration::from_secs_f64(self.sent as f64 / self.rate);
        tokio::time::sleep_until(due).await;
        self.sent += n as u64;
    }
}

pub struct GenerateSource {
    generator: TweetGenerator,
    remaining: Option<u64>,
    pacer: Pacer,
    chunk: usize,
    buf: Vec<u8>,
}

impl GenerateSource {
    async fn next_batch(&mut self) -> anyhow::Result<Option<Vec<Record>>> {
        let n = match self.remaining {
            Some(0) => return Ok(None),
            Some(left) => left.min(self.chunk as u64) as usize,
            None => self.chunk,
        };
        self.pacer.admit(n).await;
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let meta = self.generator.next_into(&mut self.buf);
            batch.push(Record {
                key: Some(meta.id.to_string().into_bytes()),
                value: self.buf.clone(),
                headers: Vec::new(),
                timestamp: Some(meta.created_at_ms),
            });
        }
        if let Some(left) = &mut self.remaining {
            *left -= n as u64;
        }
        Ok(Some(batch))
    }
}

pub struct FileSource {
    files: Vec<PathBuf>,
    next_file: usize,
    reader: Option<BufReader<tokio::fs::File>>,
    repeat: bool,
    pacer: Pacer,
    chunk: usize,
    line: Vec<u8>,
}

impl FileSource {
    async fn next_batch(&mut self) -> anyhow::Result<Option<Vec<Record>>> {
        let mut batch = Vec::with_capacity(self.chunk);
        while batch.len() < self.chunk {
            let Some(reader) = self.reader.as_mut() else {
                if self.next_file == self.files.len() {
                    if !self.repeat || self.files.is_empty() {
                        break;
                    }
                    self.next_file = 0;
                }
                let path = &self.files[self.next_file];
                let file = tokio::fs::File::open(path)
                    .await
                    .with_context(|| format!("opening {}", path.display()))?;
                self.reader = Some(BufReader::with_capacity(256 << 10, file));
                self.next_file += 1;
                continue;
            };
            self.line.clear();
            // Bytes, not `String`: a line of invalid UTF-8 is a record to dead-letter, not an
            // I/O error.
            if reader.read_until(b'\n', &mut self.line).await? == 0 {
                self.reader = None;
                continue;
            }
            let line = trim_eol(&self.line);
            if !line.is_empty() {
                batch.push(record::from_line(line));
            }
        }
        if batch.is_empty() {
            return Ok(None);
        }
        self.pacer.admit(batch.len()).await;
        Ok(Some(batch))
    }
}

fn trim_eol(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = line {
        line = rest;
    }
    line
}

fn expand_globs(p: &Pipeline, patterns: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let full = p.resolve(pattern.as_ref());
        let full = full.to_string_lossy();
        let mut matched: Vec<PathBuf> = glob::glob(&full)
            .map_err(|e| p.error(&format!("source.paths[{i}]"), format!("bad glob: {e}")))?
            .filter_map(Result::ok)
            .filter(|f| f.is_file())
            .collect();
        if matched.is_empty() {
            bail!(p.error(
                &format!("source.paths[{i}]"),
                format!("no file matches {full}")
            ));
        }
        matched.sort();
        files.extend(matched);
    }
    Ok(files)
}
