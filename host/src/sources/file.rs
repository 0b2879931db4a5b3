//! `type = "file"`: NDJSON files (paths or globs), one record per line, optionally looped.

use std::path::PathBuf;

use anyhow::Context;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::api::{Batch, Source, SourceContext, SourceSettings};
use super::pace::{Pacer, check_rate, chunk_size};
use crate::util::Invalid;

/// `[source] type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Paths or glob patterns, relative to the pipeline file.
    pub paths: Vec<String>,
    /// Records per second; 0 means as fast as the pipeline takes them.
    #[serde(default)]
    pub rate: f64,
    /// Start over at the end (for replay and soak runs).
    #[serde(default, rename = "loop")]
    pub repeat: bool,
}

impl SourceSettings for FileConfig {
    fn validate(&self) -> Result<(), Invalid> {
        if self.paths.is_empty() {
            return Err(Invalid::new("paths", "needs at least one path or glob"));
        }
        check_rate(self.rate)
    }

    fn open(&self, cx: &SourceContext) -> anyhow::Result<Box<dyn Source>> {
        Ok(Box::new(FileSource {
            files: expand_globs(cx, &self.paths)?,
            next_file: 0,
            reader: None,
            repeat: self.repeat,
            pacer: Pacer::new(self.rate),
            chunk: chunk_size(self.rate, cx.batch_size, cx.batch_timeout),
            line: Vec::new(),
        }))
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

#[async_trait::async_trait]
impl Source for FileSource {
    async fn next_batch(&mut self) -> anyhow::Result<Option<Batch>> {
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
                batch.push(crate::event::from_line(line));
            }
        }
        if batch.is_empty() {
            return Ok(None);
        }
        self.pacer.admit(batch.len()).await;
        Ok(Some(Batch::of(batch)))
    }
}

fn trim_eol(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = line {
        line = rest;
    }
    line
}

/// The files `patterns` name, in order; a pattern that matches nothing is an error.
fn expand_globs(cx: &SourceContext, patterns: &[String]) -> Result<Vec<PathBuf>, Invalid> {
    let mut files = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let key = format!("paths[{i}]");
        let full = cx.resolve(pattern.as_ref());
        let full = full.to_string_lossy();
        let mut matched: Vec<PathBuf> = glob::glob(&full)
            .map_err(|e| Invalid::new(&key, format!("bad glob: {e}")))?
            .filter_map(Result::ok)
            .filter(|f| f.is_file())
            .collect();
        if matched.is_empty() {
            return Err(Invalid::new(key, format!("no file matches {full}")));
        }
        matched.sort();
        files.extend(matched);
    }
    Ok(files)
}
