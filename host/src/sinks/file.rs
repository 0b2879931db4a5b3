//! `type = "file"`: NDJSON files, one record value per line, rotated by size; also the file
//! dead-letter destination.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytesize::ByteSize;
use serde::Deserialize;

use super::api::{Sink, SinkContext, SinkSettings};
use crate::event::{Positions, Rejected, StageOutput};
use crate::util::Invalid;

/// `[sinks.NAME] type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Path of the first file; rotated files get `.1`, `.2`, ... before the extension.
    pub path: PathBuf,
    /// Start a new file once the current one reaches this size (0: never).
    #[serde(default)]
    pub rotate_bytes: ByteSize,
}

#[async_trait::async_trait]
impl SinkSettings for FileConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.path.as_os_str().is_empty() {
            return Err(Invalid::new("path", "must not be empty"));
        }
        Ok(())
    }

    async fn open(&self, cx: &SinkContext) -> anyhow::Result<Box<dyn Sink>> {
        let sink = FileSink::open(cx.resolve(&self.path), self.rotate_bytes.as_u64()).await?;
        Ok(Box::new(sink))
    }
}

#[async_trait::async_trait]
impl Sink for FileSink {
    async fn write(&mut self, out: &StageOutput, _: &Positions) -> anyhow::Result<Vec<Rejected>> {
        for r in &out.records {
            self.write_line(&r.value).await?;
        }
        Ok(Vec::new())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        FileSink::flush(self).await
    }
}

/// Lines are written once this much is pending, and at every flush (the end of each batch).
const WRITE_AT: usize = 4 << 20;

/// Appends lines to `path`; once a file reaches `rotate_bytes`, continues in `NAME.1.EXT`,
/// `NAME.2.EXT`, ... Existing files are appended to, never truncated.
///
/// Lines gather in one buffer that a blocking task writes with a single `write_all`: one
/// copy and one thread hop per batch, where an async `BufWriter` over `tokio::fs::File`
/// copied every byte twice and hopped threads every 256 KiB.
pub struct FileSink {
    base: PathBuf,
    rotate_bytes: u64,
    index: u32,
    written: u64,
    pending: Vec<u8>,
    /// `None` only while a blocking task writes to it.
    file: Option<File>,
}

impl FileSink {
    pub async fn open(base: PathBuf, rotate_bytes: u64) -> anyhow::Result<Self> {
        if let Some(dir) = base.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let (file, written) = open_append(&base).await?;
        Ok(Self {
            base,
            rotate_bytes,
            index: 0,
            written,
            pending: Vec::new(),
            file: Some(file),
        })
    }

    pub async fn write_line(&mut self, line: &[u8]) -> anyhow::Result<()> {
        if self.rotate_bytes > 0
            && self.written > 0
            && self.written + line.len() as u64 >= self.rotate_bytes
        {
            self.rotate().await?;
        }
        self.pending.extend_from_slice(line);
        self.pending.push(b'\n');
        self.written += line.len() as u64 + 1;
        if self.pending.len() >= WRITE_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the pending lines (off the runtime: a disk can be slow).
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let file = self.file.take().expect("no write in flight");
        let mut pending = std::mem::take(&mut self.pending);
        let (file, result, pending) = tokio::task::spawn_blocking(move || {
            let result = (&file).write_all(&pending);
            pending.clear();
            (file, result, pending)
        })
        .await?;
        self.file = Some(file);
        self.pending = pending;
        result.with_context(|| format!("writing {}", self.current().display()))
    }

    fn current(&self) -> PathBuf {
        rotated_path(&self.base, self.index)
    }

    async fn rotate(&mut self) -> anyhow::Result<()> {
        self.flush().await?;
        loop {
            self.index += 1;
            let (file, written) = open_append(&self.current()).await?;
            self.file = Some(file);
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

async fn open_append(path: &Path) -> anyhow::Result<(File, u64)> {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().await?.len();
    Ok((file.into_std().await, len))
}
