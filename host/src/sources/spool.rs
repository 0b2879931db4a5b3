//! A disk spool in front of a source that cannot be paused (the Twitter stream). A task reads
//! the source as fast as it delivers and appends every batch to the spool before reading on;
//! the pipeline reads its batches from the spool, and a segment is deleted only once every
//! record in it is committed (every sink holds it). A kill -9 or a long sink outage loses
//! nothing that reached the spool, and a restart replays the uncommitted rest in order.
//!
//! On disk, in `dir`: segments `<first sequence number, 20 digits>.seg` of frames
//! `[length u32][crc32 u32][record]` (little-endian), and `committed`, the sequence number of
//! the first record not yet committed, replaced by rename. A written frame is in the page
//! cache, which survives the process; `sync_interval` bounds what a power loss can take. A
//! frame cut short or failing its checksum (a crash in the middle of a write) ends its
//! segment: it is cut off with a warning and never replayed. A lock file keeps a second host
//! out of the directory.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytesize::ByteSize;
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::event::{Checkpoint, Header, Record};
use crate::sources::api::{Batch, Source};
use crate::telemetry::SpoolMetrics;
use crate::util::Invalid;

/// `[source.spool]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// The spool's directory (relative paths start at the pipeline file's directory); one
    /// host per directory.
    pub dir: PathBuf,
    /// Most bytes the segments may take.
    pub max_size: ByteSize,
    /// A segment is closed and a new one begun past this size.
    pub segment_size: ByteSize,
    /// What happens when the spool is full.
    pub when_full: WhenFull,
    /// How often what was appended is flushed to the disk (fsync).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            max_size: ByteSize::gib(1),
            segment_size: ByteSize::mib(16),
            when_full: WhenFull::Block,
            sync_interval: Duration::from_secs(1),
        }
    }
}

/// The spool's policy when it holds `max_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop reading the source until commits free space. The Twitter API disconnects a reader
    /// that falls behind; what it sends meanwhile is lost unless the reconnect backfills it.
    Block,
    /// Keep reading the source and discard what arrives (counted).
    DropNewest,
    /// Delete the oldest segment (its unread records are counted as dropped).
    DropOldest,
}

impl WhenFull {
    fn label(self) -> &'static str {
        match self {
            WhenFull::Block => "block",
            WhenFull::DropNewest => "drop_newest",
            WhenFull::DropOldest => "drop_oldest",
        }
    }
}

impl SpoolConfig {
    /// Checks the options; the key is relative to `[source.spool]`.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.dir.as_os_str().is_empty() {
            return Err(Invalid::new("dir", "is required: the spool's directory"));
        }
        if self.segment_size < ByteSize::kib(64) {
            return Err(Invalid::new("segment_size", "must be at least 64 KiB"));
        }
        if self.max_size.as_u64() < 2 * self.segment_size.as_u64() {
            return Err(Invalid::new(
                "max_size",
                format!(
                    "must hold at least two segments ({} each)",
                    self.segment_size
                ),
            ));
        }
        Ok(())
    }
}

const FRAME_HEADER: usize = 8;
/// A frame longer than this is damage, not a record (the pipeline's records are far smaller).
const MAX_FRAME: u32 = 1 << 30;

/// One segment file.
#[derive(Debug)]
struct Segment {
    /// Sequence number of its first record.
    first: u64,
    /// Records in it.
    records: u64,
    bytes: u64,
    file: File,
}

impl Segment {
    fn end(&self) -> u64 {
        self.first + self.records
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

/// The spool's files and positions.
#[derive(Debug)]
struct Files {
    dir: PathBuf,
    segment_size: u64,
    max_size: u64,
    /// Oldest first; the last is the one appended to.
    segments: VecDeque<Segment>,
    /// Sequence number of the next record appended.
    next: u64,
    /// Records before this are committed.
    committed: u64,
    /// The next record to read: its sequence number, and the segment (its first record) and
    /// byte offset where the reader stands.
    read_seq: u64,
    read_segment: u64,
    read_offset: u64,
    bytes: u64,
    /// Records dropped because the spool was full, and damaged tails cut off (the metrics'
    /// counters themselves).
    dropped_full: Counter,
    dropped_torn: Counter,
    _lock: File,
}

impl Files {
    /// Opens (or creates) the spool in `dir`, cutting off damaged tails and deleting
    /// committed segments.
    fn open(cfg: &SpoolConfig, dir: &Path, metrics: &SpoolMetrics) -> anyhow::Result<Files> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the spool directory {}", dir.display()))?;
        let lock_path = dir.join("lock");
        let lock =
            File::create(&lock_path).with_context(|| format!("opening {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            bail!(
                "the spool {} is in use by another process (one host per spool directory)",
                dir.display()
            );
        }
        let committed = match std::fs::read_to_string(dir.join("committed")) {
            Ok(text) => text.trim().parse::<u64>().with_context(|| {
                format!("{}: not a sequence number", dir.join("committed").display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).context(format!("reading {}/committed", dir.display())),
        };
        let mut firsts = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(first) = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u64>().ok())
            {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut files = Files {
            dir: dir.to_path_buf(),
            segment_size: cfg.segment_size.as_u64(),
            max_size: cfg.max_size.as_u64(),
            segments: VecDeque::new(),
            next: committed,
            committed,
            read_seq: committed,
            read_segment: committed,
            read_offset: 0,
            bytes: 0,
            dropped_full: metrics.dropped_full.clone(),
            dropped_torn: metrics.torn_tails.clone(),
            _lock: lock,
        };
        for first in firsts {
            let segment = files.recover(first)?;
            if segment.end() <= committed {
                drop(segment);
                std::fs::remove_file(segment_path(dir, first))?;
                continue;
            }
            files.next = segment.end();
            files.bytes += segment.bytes;
            files.segments.push_back(segment);
        }
        // Position the reader at the first uncommitted record.
        if let Some(s) = files.segments.front() {
            files.read_seq = s.first;
            let mut scratch = (Vec::new(), [0u8; FRAME_HEADER]);
            while files.read_seq < committed && files.next_frame(&mut scratch.1, &mut scratch.0)? {}
        }
        Ok(files)
    }

    /// Scans a segment, cutting it at the first damaged frame.
    fn recover(&mut self, first: u64) -> anyhow::Result<Segment> {
        let path = segment_path(&self.dir, first);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let len = file.metadata()?.len();
        let (mut offset, mut records) = (0u64, 0u64);
        let mut header = [0u8; FRAME_HEADER];
        let mut payload = Vec::new();
        while offset < len {
            let whole = read_frame(&file, offset, len, &mut header, &mut payload);
            match whole {
                Ok(size) => {
                    offset += size;
                    records += 1;
                }
                Err(why) => {
                    tracing::warn!(
                        "spool segment {}: {why} at byte {offset}; the {} bytes from there \
                         are cut off and not replayed",
                        path.display(),
                        len - offset
                    );
                    self.dropped_torn.inc();
                    file.set_len(offset)?;
                    break;
                }
            }
        }
        Ok(Segment {
            first,
            records,
            bytes: offset,
            file,
        })
    }

    /// The reader's next frame into `payload`, or false when everything is read. Sequence
    /// numbers no segment holds (dropped, or cut off as damaged) are passed over.
    fn next_frame(&mut self, header: &mut [u8; 8], payload: &mut Vec<u8>) -> anyhow::Result<bool> {
        let seq = self.read_seq;
        let Some(segment) = self.segments.iter().find(|s| seq < s.end()) else {
            return Ok(false);
        };
        if segment.first != self.read_segment {
            (self.read_segment, self.read_offset) = (segment.first, 0);
            self.read_seq = self.read_seq.max(segment.first);
        }
        let size = read_frame(
            &segment.file,
            self.read_offset,
            segment.bytes,
            header,
            payload,
        )
        .map_err(|why| anyhow::anyhow!("spool: record {}: {why}", self.read_seq))?;
        self.read_seq += 1;
        self.read_offset += size;
        Ok(true)
    }

    /// Up to `max` records from the reader's position.
    fn read(&mut self, max: usize) -> anyhow::Result<Vec<Record>> {
        let mut out = Vec::new();
        let (mut header, mut payload) = ([0u8; FRAME_HEADER], Vec::new());
        while out.len() < max && self.next_frame(&mut header, &mut payload)? {
            out.push(
                decode(&payload).with_context(|| {
                    format!("spool: record {} is not a record", self.read_seq - 1)
                })?,
            );
        }
        Ok(out)
    }

    /// Whether `need` more bytes fit (an empty spool takes any batch).
    fn fits(&self, need: u64) -> bool {
        self.bytes == 0 || self.bytes + need <= self.max_size
    }

    /// Appends encoded frames holding `count` records, opening a new segment when the last
    /// one is full.
    fn append(&mut self, frames: &[u8], count: u64) -> anyhow::Result<()> {
        let roll = self
            .segments
            .back()
            .is_none_or(|s| s.bytes >= self.segment_size);
        if roll {
            let path = segment_path(&self.dir, self.next);
            let file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            self.segments.push_back(Segment {
                first: self.next,
                records: 0,
                bytes: 0,
                file,
            });
        }
        let segment = self.segments.back_mut().expect("a segment");
        (&segment.file)
            .write_all(frames)
            .with_context(|| format!("appending to the spool {}", self.dir.display()))?;
        segment.records += count;
        segment.bytes += frames.len() as u64;
        self.bytes += frames.len() as u64;
        self.next += count;
        Ok(())
    }

    /// Deletes the oldest segment to make room; false if only the one appended to is left.
    fn drop_oldest(&mut self) -> anyhow::Result<bool> {
        if self.segments.len() < 2 {
            return Ok(false);
        }
        let oldest = self.segments.pop_front().expect("two segments");
        if self.read_seq < oldest.end() {
            self.dropped_full
                .inc_by(oldest.end() - self.read_seq.max(oldest.first));
            self.read_seq = oldest.end();
        }
        self.bytes -= oldest.bytes;
        self.committed = self.committed.max(oldest.end());
        std::fs::remove_file(segment_path(&self.dir, oldest.first))?;
        Ok(true)
    }

    /// Records everything before `next` as committed and deletes the segments it covers.
    fn commit(&mut self, next: u64) -> anyhow::Result<()> {
        if next <= self.committed {
            return Ok(());
        }
        self.committed = next;
        let tmp = self.dir.join("committed.tmp");
        std::fs::write(&tmp, format!("{next}\n"))?;
        std::fs::rename(&tmp, self.dir.join("committed"))?;
        while self.segments.len() > 1 && self.segments[0].end() <= next {
            let done = self.segments.pop_front().expect("a segment");
            self.bytes -= done.bytes;
            std::fs::remove_file(segment_path(&self.dir, done.first))?;
        }
        Ok(())
    }

    /// The file appended to, to flush.
    fn tail(&self) -> Option<File> {
        self.segments.back().and_then(|s| s.file.try_clone().ok())
    }
}

/// Reads the frame at `offset` (the segment holds `len` bytes) into `payload`; its size.
fn read_frame(
    file: &File,
    offset: u64,
    len: u64,
    header: &mut [u8; 8],
    payload: &mut Vec<u8>,
) -> Result<u64, String> {
    if len - offset < FRAME_HEADER as u64 {
        return Err("a frame header cut short".into());
    }
    file.read_exact_at(header, offset)
        .map_err(|e| e.to_string())?;
    let size = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if size > MAX_FRAME || u64::from(size) > len - offset - FRAME_HEADER as u64 {
        return Err(format!("a frame of {size} bytes cut short"));
    }
    payload.resize(size as usize, 0);
    file.read_exact_at(payload, offset + FRAME_HEADER as u64)
        .map_err(|e| e.to_string())?;
    if crc32fast::hash(payload) != crc {
        return Err("a frame failing its checksum".into());
    }
    Ok(FRAME_HEADER as u64 + u64::from(size))
}

/// Appends one frame holding `r` to `out`.
fn encode(r: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    let bytes = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    };
    out.push(u8::from(r.key.is_some()) | u8::from(r.timestamp.is_some()) << 1);
    if let Some(key) = &r.key {
        bytes(out, key);
    }
    bytes(out, &r.value);
    out.extend_from_slice(&(r.headers.len() as u32).to_le_bytes());
    for h in &r.headers {
        bytes(out, h.key.as_bytes());
        bytes(out, &h.value);
    }
    if let Some(ts) = r.timestamp {
        out.extend_from_slice(&ts.to_le_bytes());
    }
    let payload = &out[start + FRAME_HEADER..];
    let (size, crc) = (payload.len() as u32, crc32fast::hash(payload));
    out[start..start + 4].copy_from_slice(&size.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn decode(mut p: &[u8]) -> anyhow::Result<Record> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> anyhow::Result<&'a [u8]> {
        if p.len() < n {
            bail!("cut short");
        }
        let (head, rest) = p.split_at(n);
        *p = rest;
        Ok(head)
    }
    fn u32_at(p: &mut &[u8]) -> anyhow::Result<usize> {
        Ok(u32::from_le_bytes(take(p, 4)?.try_into()?) as usize)
    }
    fn bytes(p: &mut &[u8]) -> anyhow::Result<Vec<u8>> {
        let n = u32_at(p)?;
        Ok(take(p, n)?.to_vec())
    }
    let flags = take(&mut p, 1)?[0];
    let key = if flags & 1 != 0 {
        Some(bytes(&mut p)?)
    } else {
        None
    };
    let value = bytes(&mut p)?;
    let count = u32_at(&mut p)?;
    let mut headers = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let key = String::from_utf8(bytes(&mut p)?)?;
        headers.push(Header {
            key,
            value: bytes(&mut p)?,
        });
    }
    let timestamp = if flags & 2 != 0 {
        Some(i64::from_le_bytes(take(&mut p, 8)?.try_into()?))
    } else {
        None
    };
    Ok(Record {
        key,
        value,
        headers,
        timestamp,
    })
}

/// What the appending task and the reader share.
struct Shared {
    files: Mutex<Files>,
    /// Records were appended, or the source ended.
    appended: Notify,
    /// A commit or a drop freed space.
    freed: Notify,
    /// Why the source stopped (`Some(None)`: it ended).
    ended: Mutex<Option<Option<String>>>,
    metrics: SpoolMetrics,
}

impl Shared {
    fn files(&self) -> MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, files: &Files) {
        self.metrics.bytes.set(files.bytes as i64);
        self.metrics
            .records
            .set((files.next - files.committed) as i64);
    }
}

/// A source read through a spool: see the module docs.
pub struct Spooled {
    shared: Arc<Shared>,
    batch: usize,
    wait: Duration,
    appender: tokio::task::JoinHandle<()>,
}

impl Spooled {
    /// Opens the spool in `dir` and starts reading `inner` into it. Records left in the spool
    /// by an earlier run come first.
    pub fn open(
        inner: Box<dyn Source>,
        cfg: &SpoolConfig,
        dir: &Path,
        batch: usize,
        wait: Duration,
        metrics: SpoolMetrics,
    ) -> anyhow::Result<Spooled> {
        let files = Files::open(cfg, dir, &metrics)?;
        let pending = files.next - files.committed;
        if pending > 0 {
            tracing::info!(
                "spool {}: {pending} records left by the last run are replayed first",
                dir.display()
            );
        }
        let shared = Arc::new(Shared {
            files: Mutex::new(files),
            appended: Notify::new(),
            freed: Notify::new(),
            ended: Mutex::new(None),
            metrics,
        });
        shared.report(&shared.files());
        let appender = tokio::spawn(append_loop(
            inner,
            shared.clone(),
            cfg.when_full,
            cfg.sync_interval,
        ));
        Ok(Spooled {
            shared,
            batch,
            wait,
            appender,
        })
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        self.appender.abort();
    }
}

/// Reads `inner` into the spool until it ends or fails.
async fn append_loop(
    mut inner: Box<dyn Source>,
    shared: Arc<Shared>,
    when_full: WhenFull,
    sync_interval: Duration,
) {
    let mut last_sync = Instant::now();
    let mut frames = Vec::new();
    let outcome = loop {
        let batch = match inner.next_batch().await {
            Ok(Some(batch)) => batch,
            Ok(None) => break None,
            Err(e) => break Some(format!("{e:#}")),
        };
        if batch.records.is_empty() {
            continue;
        }
        frames.clear();
        for r in &batch.records {
            encode(r, &mut frames);
        }
        let count = batch.records.len() as u64;
        let need = frames.len() as u64;
        // Wait for room, or make it, by the policy.
        let mut warned = false;
        let keep = loop {
            let freed = shared.freed.notified();
            let (bytes, max) = {
                let mut files = shared.files();
                if files.fits(need) {
                    break true;
                }
                match when_full {
                    WhenFull::Block => {}
                    WhenFull::DropNewest => {
                        files.dropped_full.inc_by(count);
                        break false;
                    }
                    WhenFull::DropOldest => match files.drop_oldest() {
                        Ok(true) => {
                            shared.report(&files);
                            continue;
                        }
                        Ok(false) => break true,
                        Err(e) => {
                            tracing::error!("spool: {e:#}");
                            break true;
                        }
                    },
                }
                (ByteSize(files.bytes), ByteSize(files.max_size))
            };
            if !warned {
                tracing::warn!(
                    "spool full ({bytes} of {max}): policy {}, the source is not read until \
                     commits free space",
                    when_full.label()
                );
                shared.metrics.full.set(1);
                warned = true;
            }
            freed.await;
        };
        shared.metrics.full.set(0);
        if !keep {
            tracing::warn!(
                "spool full: {count} records dropped (policy {})",
                when_full.label()
            );
            continue;
        }
        let appended = {
            let mut files = shared.files();
            let r = files.append(&frames, count);
            shared.report(&files);
            r
        };
        if let Err(e) = appended {
            break Some(format!("{e:#}"));
        }
        shared.appended.notify_one();
        let due = last_sync.elapsed() >= sync_interval;
        let tail = if due { shared.files().tail() } else { None };
        if let Some(file) = tail {
            last_sync = Instant::now();
            // Off the runtime: an fsync can take long on a busy disk.
            let _ = tokio::task::spawn_blocking(move || file.sync_data()).await;
        }
    };
    *shared.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
    shared.appended.notify_one();
}

#[async_trait::async_trait]
impl Source for Spooled {
    /// What the spool holds, up to a batch; an empty batch when nothing arrived within the
    /// batch timeout. The source's own error is returned once the records before it are out.
    async fn next_batch(&mut self) -> anyhow::Result<Option<Batch>> {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let appended = self.shared.appended.notified();
            let records = {
                let mut files = self.shared.files();
                let records = files.read(self.batch)?;
                if !records.is_empty() {
                    let next = files.read_seq;
                    return Ok(Some(Batch {
                        records,
                        checkpoint: Checkpoint {
                            spooled: Some(next),
                            ..Checkpoint::default()
                        },
                        positions: None,
                    }));
                }
                records
            };
            let ended = self
                .shared
                .ended
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            match ended {
                Some(Some(error)) => bail!("{error}"),
                Some(None) => return Ok(None),
                None => {}
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                return Ok(Some(Batch::of(records)));
            }
        }
    }

    async fn commit(&mut self, checkpoint: Checkpoint) -> anyhow::Result<()> {
        if let Some(next) = checkpoint.spooled {
            let mut files = self.shared.files();
            files.commit(next)?;
            self.shared.report(&files);
            drop(files);
            self.shared.freed.notify_one();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sluice-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn cfg(segment_kib: u64, max_kib: u64) -> SpoolConfig {
        SpoolConfig {
            dir: PathBuf::from("unused"),
            segment_size: ByteSize::kib(segment_kib),
            max_size: ByteSize::kib(max_kib),
            ..SpoolConfig::default()
        }
    }

    fn record(i: usize) -> Record {
        Record {
            key: i.is_multiple_of(2).then(|| format!("k{i}").into_bytes()),
            value: format!("{{\"id\":{i},\"pad\":\"{}\"}}", "x".repeat(200)).into_bytes(),
            headers: vec![Header {
                key: "h".into(),
                value: vec![i as u8],
            }],
            timestamp: (!i.is_multiple_of(3)).then_some(i as i64 * 1000),
        }
    }

    fn append(files: &mut Files, range: std::ops::Range<usize>) {
        let mut frames = Vec::new();
        for i in range.clone() {
            encode(&record(i), &mut frames);
        }
        files.append(&frames, range.len() as u64).unwrap();
    }

    fn ids(records: &[Record]) -> Vec<usize> {
        records
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
                v["id"].as_u64().unwrap() as usize
            })
            .collect()
    }

    fn segments(d: &Path) -> usize {
        std::fs::read_dir(d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count()
    }

    #[test]
    fn records_come_back_whole_and_uncommitted_ones_are_replayed_after_a_restart() {
        let d = dir("replay");
        let mut files = Files::open(&cfg(64, 1024), &d, &SpoolMetrics::default()).unwrap();
        append(&mut files, 0..100);
        // Every field survives the round trip.
        let first = files.read(30).unwrap();
        let fields = |r: &Record| {
            (
                r.key.clone(),
                r.value.clone(),
                r.timestamp,
                r.headers[0].value.clone(),
            )
        };
        assert_eq!(
            first.iter().map(fields).collect::<Vec<_>>(),
            (0..30).map(|i| fields(&record(i))).collect::<Vec<_>>()
        );
        files.commit(30).unwrap();
        assert_eq!(ids(&files.read(20).unwrap()), (30..50).collect::<Vec<_>>());
        // 30..50 were read but not committed: a crash now replays them.
        drop(files);
        let mut files = Files::open(&cfg(64, 1024), &d, &SpoolMetrics::default()).unwrap();
        assert_eq!(
            ids(&files.read(1000).unwrap()),
            (30..100).collect::<Vec<_>>()
        );
        assert!(files.read(10).unwrap().is_empty());
        append(&mut files, 100..105);
        assert_eq!(
            ids(&files.read(10).unwrap()),
            (100..105).collect::<Vec<_>>()
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn segments_roll_and_are_deleted_once_committed() {
        let d = dir("roll");
        let mut files = Files::open(&cfg(64, 4096), &d, &SpoolMetrics::default()).unwrap();
        for b in 0..10 {
            append(&mut files, b * 100..(b + 1) * 100); // about 27 KiB a batch
        }
        assert!(segments(&d) >= 4, "{}", segments(&d));
        let all = files.read(2000).unwrap();
        assert_eq!(ids(&all), (0..1000).collect::<Vec<_>>());
        files.commit(1000).unwrap();
        assert_eq!(segments(&d), 1, "the segment appended to stays");
        drop(files);
        let mut files = Files::open(&cfg(64, 4096), &d, &SpoolMetrics::default()).unwrap();
        assert!(files.read(10).unwrap().is_empty());
        assert_eq!(files.next, 1000);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_off_and_never_replayed() {
        for damage in ["torn", "corrupt"] {
            let d = dir(damage);
            let mut files = Files::open(&cfg(1024, 4096), &d, &SpoolMetrics::default()).unwrap();
            append(&mut files, 0..10);
            let path = segment_path(&d, 0);
            drop(files);
            let mut bytes = std::fs::read(&path).unwrap();
            let good = bytes.len();
            if damage == "torn" {
                // A crash in the middle of the next write: half a frame.
                let mut frame = Vec::new();
                encode(&record(10), &mut frame);
                bytes.extend_from_slice(&frame[..frame.len() / 2]);
            } else {
                // The last frame's payload damaged.
                let last = bytes.len() - 5;
                bytes[last] ^= 0xff;
            }
            std::fs::write(&path, &bytes).unwrap();
            let mut files = Files::open(&cfg(1024, 4096), &d, &SpoolMetrics::default()).unwrap();
            assert_eq!(files.dropped_torn.get(), 1, "{damage}");
            let want = if damage == "torn" { 10 } else { 9 };
            assert_eq!(
                ids(&files.read(100).unwrap()),
                (0..want).collect::<Vec<_>>()
            );
            let cut = std::fs::metadata(&path).unwrap().len() as usize;
            assert!(cut <= good, "{damage}: {cut} > {good}");
            // Appending goes on after the cut, in sequence.
            append(&mut files, want..want + 3);
            assert_eq!(
                ids(&files.read(100).unwrap()),
                (want..want + 3).collect::<Vec<_>>()
            );
            std::fs::remove_dir_all(&d).unwrap();
        }
    }

    #[test]
    fn dropping_the_oldest_segment_skips_its_unread_records_and_counts_them() {
        let d = dir("drop-oldest");
        let mut files = Files::open(&cfg(64, 128), &d, &SpoolMetrics::default()).unwrap();
        append(&mut files, 0..300); // one segment of about 80 KiB
        append(&mut files, 300..310); // a second one
        assert_eq!(ids(&files.read(100).unwrap()), (0..100).collect::<Vec<_>>());
        assert!(files.drop_oldest().unwrap());
        assert_eq!(
            files.dropped_full.get(),
            200,
            "read records are not dropped"
        );
        assert_eq!(
            ids(&files.read(100).unwrap()),
            (300..310).collect::<Vec<_>>()
        );
        assert!(!files.drop_oldest().unwrap(), "the last segment stays");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_second_process_cannot_open_the_same_spool() {
        let d = dir("lock");
        let _files = Files::open(&cfg(64, 128), &d, &SpoolMetrics::default()).unwrap();
        let err = Files::open(&cfg(64, 128), &d, &SpoolMetrics::default()).unwrap_err();
        assert!(format!("{err:#}").contains("in use"), "{err:#}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn settings_name_the_key_at_fault() {
        let mut c = cfg(64, 128);
        c.dir = PathBuf::new();
        assert_eq!(c.validate().unwrap_err().key, "dir");
        let c = SpoolConfig {
            dir: "s".into(),
            ..cfg(64, 100)
        };
        assert_eq!(c.validate().unwrap_err().key, "max_size");
        let c = SpoolConfig {
            dir: "s".into(),
            ..cfg(8, 100)
        };
        assert_eq!(c.validate().unwrap_err().key, "segment_size");
    }

    /// A source that hands out numbered batches, then ends.
    struct Numbered {
        batches: VecDeque<Vec<Record>>,
    }

    #[async_trait::async_trait]
    impl Source for Numbered {
        async fn next_batch(&mut self) -> anyhow::Result<Option<Batch>> {
            Ok(self.batches.pop_front().map(Batch::of))
        }
    }

    #[tokio::test]
    async fn a_full_spool_blocks_the_source_until_commits_free_space() {
        let d = dir("block");
        let batches = (0..20).map(|b| (b * 100..(b + 1) * 100).map(record).collect());
        let inner = Box::new(Numbered {
            batches: batches.collect(),
        });
        // About 27 KiB a batch against 128 KiB: the source is read ahead only so far.
        let mut spooled = Spooled::open(
            inner,
            &cfg(64, 128),
            &d,
            100,
            Duration::from_millis(50),
            SpoolMetrics::default(),
        )
        .unwrap();
        let mut got = Vec::new();
        loop {
            let Some(batch) = spooled.next_batch().await.unwrap() else {
                break;
            };
            assert!(spooled.shared.files().bytes <= 160 << 10);
            got.extend(ids(&batch.records));
            spooled.commit(batch.checkpoint).await.unwrap();
        }
        assert_eq!(got, (0..2000).collect::<Vec<_>>());
        assert!(spooled.shared.metrics.full.get() == 0);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
