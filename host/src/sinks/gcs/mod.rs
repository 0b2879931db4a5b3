//! Google Cloud Storage sink: records as gzip-compressed NDJSON objects.
//!
//! Records are compressed into an in-memory object as they arrive, one open object per source
//! stream (a Kafka topic-partition, say). An object is finalized and uploaded when it reaches
//! `max_object_bytes` (compressed) or `max_object_age`, or on [`GcsSink::flush`]. Objects are
//! cut between batches: a batch that would take the object over `max_object_bytes` (estimated
//! from the compression ratio so far) starts a new one, so an object exceeds the limit only
//! when a single batch does. Memory: one open object per stream, plus objects waiting for upload. Uploads are
//! single-shot (one request per object, no resumable session). A failed upload is retried by
//! the client with exponential backoff for up to `retry_for`; after that the call fails but the finished object
//! stays queued, so the next `write`/`flush` tries it again and no record is lost.
//!
//! # Object names
//!
//! The caller passes each batch's source position, `"<stream>-<first>-<last>"` (e.g.
//! `"twitter-0-1200-1699"`: topic `twitter`, partition 0, offsets 1200 to 1699). An object
//! covers the positions of the batches it holds, and its name is built from the
//! `object_name` template, so the same input range always gives the same name and a re-upload
//! after a crash overwrites the object instead of adding a second copy. Placeholders:
//!
//! | placeholder | value |
//! | --- | --- |
//! | `{prefix}` | the `prefix` setting (e.g. `twitter/`) |
//! | `{stream}` | the position without its two trailing numbers (`twitter-0`) |
//! | `{first}`, `{last}` (also `{first_key}`, `{last_key}`) | first and last position, zero-padded to 20 digits so names sort |
//! | `{date}`, `{hour}` | UTC `YYYY-MM-DD` and `HH` of the first record's timestamp (the wall clock when it has none) |
//! | `{seq}` | objects finalized for this stream since the sink started (not stable across restarts) |
//!
//! The default is `{prefix}dt={date}/{stream}-{first}-{last}.ndjson.gz`. Objects are cut at
//! batch boundaries, so after a restart the first object starts at the same position as
//! before; it ends at the same position when the source re-delivers the same batches. When
//! that is not guaranteed (rotation by age, varying batch sizes), `{prefix}dt={date}/{stream}-{first}.ndjson.gz`
//! makes a re-upload overwrite whatever the crashed run left. A position that does not end in
//! two numbers is used whole as the stream, and `first`/`last` count records from 0 since the
//! sink started.
//!
//! # Credentials
//!
//! `credentials` is `"anonymous"` (the default when `endpoint` is set, e.g. for
//! fake-gcs-server), `"default"` (Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`,
//! gcloud's user credentials or the metadata server; the default otherwise) or the path of a
//! service-account JSON key file.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytesize::ByteSize;
use flate2::Compression;
use flate2::write::GzEncoder;
use google_cloud_storage::client::Storage;
use serde::Deserialize;

use crate::clients::gcp::{Credentials, FinishedObject};
use crate::event::Record;
use crate::sinks::api::{Sink, SinkContext, SinkSettings};
use crate::telemetry::RequestMetrics;
use crate::util::Invalid;

mod delivery;
pub use delivery::GcsDelivery;

/// `[sinks.NAME] type = "gcs"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsConfig {
    /// JSON API base URL, e.g. `http://127.0.0.1:4443` for fake-gcs-server. Unset: Google.
    #[serde(default)]
    pub endpoint: Option<String>,
    pub bucket: String,
    /// Prepended to object names through the `{prefix}` placeholder (e.g. `twitter/`).
    #[serde(default)]
    pub prefix: String,
    /// Object name template (see the module docs).
    #[serde(default = "default_object_name")]
    pub object_name: String,
    /// An object is finalized once its compressed size reaches this (the seed's
    /// `max_file_size_kbytes => 100000`).
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: ByteSize,
    /// ... or once it has been open this long (checked on `write` and `flush_expired`).
    #[serde(default = "default_max_object_age", with = "humantime_serde")]
    pub max_object_age: Duration,
    /// gzip level, 0 (store) to 9 (best).
    #[serde(default = "default_gzip_level")]
    pub gzip_level: u32,
    /// `"anonymous"`, `"default"` or a service-account key file (see the module docs).
    #[serde(default)]
    pub credentials: Option<String>,
    /// Rewrite each JSON record's keys to BigQuery column names (see
    /// [`crate::sinks::bigquery::schema::normalize_record`]) so the objects load into a derived schema.
    #[serde(default)]
    pub bigquery_names: bool,
    /// How long a failing upload is retried (with backoff) before `write`/`flush` fail.
    #[serde(default = "default_retry_for", with = "humantime_serde")]
    pub retry_for: Duration,
    /// In a pipeline, give up on objects once their uploads or BigQuery load have failed this
    /// long: their rows are dead-lettered with the last error and the pipeline goes on.
    /// Unset: retry for as long as it takes.
    #[serde(default, with = "humantime_serde")]
    pub retry_give_up: Option<Duration>,
    /// Create the bucket when it does not exist (through the JSON API; for emulators).
    #[serde(default)]
    pub create_bucket: bool,
    /// `[sinks.NAME.bigquery]`: load every finalized object into this table (see
    /// [`crate::bigquery`]). The sink itself does not use it.
    #[serde(default)]
    pub bigquery: Option<crate::sinks::bigquery::BigQueryConfig>,
}

pub const DEFAULT_OBJECT_NAME: &str = "{prefix}dt={date}/{stream}-{first}-{last}.ndjson.gz";

fn default_object_name() -> String {
    DEFAULT_OBJECT_NAME.to_string()
}
fn default_max_object_bytes() -> ByteSize {
    ByteSize::mb(100)
}
fn default_max_object_age() -> Duration {
    Duration::from_secs(60)
}
fn default_gzip_level() -> u32 {
    6
}
fn default_retry_for() -> Duration {
    Duration::from_secs(300)
}

impl GcsConfig {
    /// A config with the defaults for everything but the bucket.
    pub fn new(bucket: impl Into<String>) -> Self {
        GcsConfig {
            endpoint: None,
            bucket: bucket.into(),
            prefix: String::new(),
            object_name: default_object_name(),
            max_object_bytes: default_max_object_bytes(),
            max_object_age: default_max_object_age(),
            gzip_level: default_gzip_level(),
            credentials: None,
            bigquery_names: false,
            retry_for: default_retry_for(),
            retry_give_up: None,
            create_bucket: false,
            bigquery: None,
        }
    }

    /// Checks the settings without touching the network (`host check`, and [`GcsSink::open`]).
    /// The error names the offending key, relative to the sink.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.bucket.trim().is_empty() {
            return Err(Invalid::new("bucket", "must not be empty"));
        }
        if self.gzip_level > 9 {
            return Err(Invalid::new(
                "gzip_level",
                format!("must be 0 to 9, not {}", self.gzip_level),
            ));
        }
        if self.max_object_bytes.as_u64() == 0 {
            return Err(Invalid::new("max_object_bytes", "must be above 0"));
        }
        let probe = render_name(
            &self.object_name,
            &NameParts {
                prefix: &self.prefix,
                stream: "s",
                first: 0,
                last: 0,
                seq: 0,
                timestamp_ms: Some(0),
            },
        )
        .map_err(|e| Invalid::new("object_name", format!("{e:#}")))?;
        if !(self.object_name.contains("{first}") || self.object_name.contains("{first_key}")) {
            return Err(Invalid::new(
                "object_name",
                format!(
                    "must contain {{first}} so a re-upload gets the same name \
                     (e.g. {DEFAULT_OBJECT_NAME})"
                ),
            ));
        }
        if probe.is_empty() {
            return Err(Invalid::new("object_name", "gives empty names"));
        }
        if self
            .bigquery
            .as_ref()
            .is_some_and(|b| b.mode != crate::sinks::bigquery::Mode::Load)
        {
            return Err(Invalid::new(
                "bigquery.mode",
                "`mode = \"stream\"` belongs to a `type = \"bigquery\"` sink; a gcs sink \
                 loads its objects",
            ));
        }
        if let Some(bq) = &self.bigquery {
            bq.validate().map_err(|e| e.within("bigquery"))?;
        }
        Credentials::from_setting(self.credentials.as_deref(), self.endpoint.is_some()).check()
    }
}

struct OpenObject {
    enc: GzEncoder<Vec<u8>>,
    rows: u64,
    raw_bytes: u64,
    first: u64,
    last: u64,
    opened: Instant,
    first_timestamp: Option<i64>,
}

struct Sealed {
    object: FinishedObject,
    body: bytes::Bytes,
}

/// The GCS sink. See the module docs.
pub struct GcsSink {
    config: GcsConfig,
    client: Storage,
    bucket_path: String,
    open: BTreeMap<String, OpenObject>,
    sealed: VecDeque<Sealed>,
    seq: HashMap<String, u64>,
    /// Next record number for streams whose positions carry no numbers.
    counters: HashMap<String, u64>,
    uploaded: u64,
    /// Object uploads, for `/metrics` (set by the pipeline's sink; unregistered otherwise).
    pub uploads: RequestMetrics,
}

#[async_trait::async_trait]
impl SinkSettings for GcsConfig {
    fn validate(&self) -> Result<(), Invalid> {
        GcsConfig::validate(self)
    }

    async fn open(&self, cx: &SinkContext) -> anyhow::Result<Box<dyn Sink>> {
        Ok(Box::new(GcsDelivery::open(self, cx).await?))
    }
}

impl GcsSink {
    pub async fn open(config: GcsConfig) -> anyhow::Result<Self> {
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("gcs sink: {e}"))?;
        let creds =
            Credentials::from_setting(config.credentials.as_deref(), config.endpoint.is_some());
        let mut builder = Storage::builder().with_credentials(storage_credentials(&creds)?);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
        }
        let client = builder
            .build()
            .await
            .context("gcs sink: creating the storage client")?;
        if config.create_bucket {
            let endpoint = config
                .endpoint
                .as_deref()
                .unwrap_or("https://storage.googleapis.com");
            ensure_bucket(endpoint, &config.bucket).await?;
        }
        Ok(GcsSink {
            bucket_path: format!("projects/_/buckets/{}", config.bucket),
            config,
            client,
            open: BTreeMap::new(),
            sealed: VecDeque::new(),
            seq: HashMap::new(),
            counters: HashMap::new(),
            uploaded: 0,
            uploads: RequestMetrics::default(),
        })
    }

    pub fn config(&self) -> &GcsConfig {
        &self.config
    }

    /// Adds a batch that came from `position` (see the module docs); returns the objects that
    /// were finalized and uploaded during the call.
    ///
    /// The records are always taken: an `Err` means an upload failed (after `retry_for`), and
    /// every record, this batch's included, stays buffered for the next `write` or `flush`.
    /// Do not send them again, and do not commit their positions until a `FinishedObject`
    /// covering them came back.
    pub async fn write(
        &mut self,
        records: &[&Record],
        position: &str,
    ) -> anyhow::Result<Vec<FinishedObject>> {
        let (stream, first, last) = self.parse_position(position, records.len());
        let estimate: u64 = records.iter().map(|r| r.value.len() as u64 + 1).sum();
        let max = self.config.max_object_bytes.as_u64();
        // Rotate before the batch when it would push the object over the limit.
        if let Some(o) = self.open.get(&stream)
            && o.rows > 0
            && compressed_len(o) + (estimate as f64 * ratio(o)) as u64 > max
        {
            self.seal(&stream)?;
        }
        if !records.is_empty() || self.open.contains_key(&stream) {
            let level = self.config.gzip_level;
            let o = self
                .open
                .entry(stream.clone())
                .or_insert_with(|| OpenObject {
                    enc: GzEncoder::new(Vec::with_capacity(1 << 16), Compression::new(level)),
                    rows: 0,
                    raw_bytes: 0,
                    first,
                    last,
                    opened: Instant::now(),
                    first_timestamp: records.first().and_then(|r| r.timestamp),
                });
            let mut line = Vec::new();
            for r in records.iter() {
                let value: &[u8] = if self.config.bigquery_names {
                    line.clear();
                    bigquery_line(&r.value, &mut line);
                    &line
                } else {
                    &r.value
                };
                o.enc.write_all(value)?;
                o.enc.write_all(b"\n")?;
                o.raw_bytes += value.len() as u64 + 1;
                o.rows += 1;
            }
            // A sync flush per batch costs a few bytes and makes the compressed size exact,
            // so rotation by size can be decided before the next batch goes in.
            o.enc.flush()?;
            o.last = last;
            if o.first_timestamp.is_none() {
                o.first_timestamp = records.iter().find_map(|r| r.timestamp);
            }
            if compressed_len(o) >= max {
                self.seal(&stream)?;
            }
        }
        self.seal_expired()?;
        self.upload_sealed().await
    }

    /// Finalizes and uploads every open object.
    pub async fn flush(&mut self) -> anyhow::Result<Vec<FinishedObject>> {
        let streams: Vec<String> = self.open.keys().cloned().collect();
        for s in streams {
            self.seal(&s)?;
        }
        self.upload_sealed().await
    }

    /// Finalizes and uploads the objects older than `max_object_age` (call it when
    /// [`GcsSink::next_deadline`] passes and no batch arrived).
    pub async fn flush_expired(&mut self) -> anyhow::Result<Vec<FinishedObject>> {
        self.seal_expired()?;
        self.upload_sealed().await
    }

    /// When the oldest open object reaches `max_object_age`.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open
            .values()
            .map(|o| o.opened + self.config.max_object_age)
            .min()
    }

    /// Records buffered (open or waiting for upload).
    pub fn buffered_rows(&self) -> u64 {
        self.open.values().map(|o| o.rows).sum::<u64>()
            + self.sealed.iter().map(|s| s.object.rows).sum::<u64>()
    }

    /// The first position of `stream` that is still buffered (open or waiting for upload), if
    /// any: every earlier position of the stream is in the bucket (or held no records) and can
    /// be committed.
    pub fn buffered_from(&self, stream: &str) -> Option<u64> {
        let open = self.open.get(stream).map(|o| o.first);
        let sealed = self
            .sealed
            .iter()
            .filter(|s| s.object.stream == stream)
            .map(|s| s.object.first)
            .min();
        open.into_iter().chain(sealed).min()
    }

    /// Drops what the sink holds of `stream`, open or waiting for upload (its stream moved to
    /// another host, which reads the records again); returns the number of records dropped.
    pub fn discard(&mut self, stream: &str) -> u64 {
        let open = self.open.remove(stream).map_or(0, |o| o.rows);
        let mut sealed = 0;
        self.sealed.retain(|s| {
            let keep = s.object.stream != stream;
            if !keep {
                sealed += s.object.rows;
            }
            keep
        });
        open + sealed
    }

    /// Takes the objects waiting for upload out of the sink, with their gzip bodies: their
    /// positions no longer count as buffered.
    pub fn abandon_sealed(&mut self) -> Vec<(FinishedObject, bytes::Bytes)> {
        self.sealed.drain(..).map(|s| (s.object, s.body)).collect()
    }

    /// How long the client retries one upload: `retry_for`, or `retry_give_up` if shorter.
    pub fn upload_retry_limit(&self) -> Duration {
        let c = &self.config;
        c.retry_give_up.map_or(c.retry_for, |g| g.min(c.retry_for))
    }

    /// Objects uploaded since the sink was opened.
    pub fn uploaded_objects(&self) -> u64 {
        self.uploaded
    }

    /// Writes a small object in one request (the sink's own state files) if its generation
    /// is still `generation` (0: if it does not exist). Returns the new generation, or `None`
    /// when the object changed meanwhile (`412 Precondition Failed`). A retry after a lost
    /// answer can meet its own write: callers recognise it by the content.
    pub async fn put_if(
        &self,
        name: &str,
        body: Vec<u8>,
        generation: i64,
    ) -> anyhow::Result<Option<i64>> {
        use google_cloud_gax::retry_policy::RetryPolicyExt as _;
        let written = self
            .client
            .write_object(&self.bucket_path, name, bytes::Bytes::from(body))
            .set_content_type("application/json")
            .set_if_generation_match(generation)
            .with_idempotency(true)
            .with_retry_policy(
                google_cloud_storage::retry_policy::RetryableErrors
                    .with_time_limit(self.config.retry_for),
            )
            .send_buffered()
            .await;
        match written {
            Ok(object) => Ok(Some(object.generation)),
            Err(e) if e.http_status_code() == Some(412) => Ok(None),
            Err(e) => Err(anyhow::Error::from(e)
                .context(format!("gcs: writing gs://{}/{name}", self.config.bucket))),
        }
    }

    /// Reads a whole object, with its generation; `None` when it does not exist.
    pub async fn get(&self, name: &str) -> anyhow::Result<Option<(Vec<u8>, i64)>> {
        let uri = || format!("gs://{}/{name}", self.config.bucket);
        let mut response = match self
            .client
            .read_object(&self.bucket_path, name)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) if e.http_status_code() == Some(404) => return Ok(None),
            Err(e) => return Err(anyhow::Error::from(e).context(format!("gcs: reading {}", uri()))),
        };
        let generation = response.object().generation;
        let mut body = Vec::new();
        while let Some(chunk) = response.next().await {
            body.extend_from_slice(&chunk.with_context(|| format!("gcs: reading {}", uri()))?);
        }
        Ok(Some((body, generation)))
    }

    fn parse_position(&mut self, position: &str, n: usize) -> (String, u64, u64) {
        let mut parts = position.rsplitn(3, '-');
        let last = parts.next().and_then(|s| s.parse::<u64>().ok());
        let first = parts.next().and_then(|s| s.parse::<u64>().ok());
        if let (Some(first), Some(last)) = (first, last) {
            let stream = parts.next().unwrap_or("").to_string();
            return (stream, first, last);
        }
        let stream = if position.is_empty() {
            "records".to_string()
        } else {
            position.to_string()
        };
        let c = self.counters.entry(stream.clone()).or_insert(0);
        let first = *c;
        *c += n as u64;
        (stream, first, (first + n as u64).saturating_sub(1))
    }

    fn seal_expired(&mut self) -> anyhow::Result<()> {
        let age = self.config.max_object_age;
        let expired: Vec<String> = self
            .open
            .iter()
            .filter(|(_, o)| o.opened.elapsed() >= age)
            .map(|(s, _)| s.clone())
            .collect();
        for s in expired {
            self.seal(&s)?;
        }
        Ok(())
    }

    fn seal(&mut self, stream: &str) -> anyhow::Result<()> {
        let Some(o) = self.open.remove(stream) else {
            return Ok(());
        };
        if o.rows == 0 {
            return Ok(());
        }
        let seq = self.seq.entry(stream.to_string()).or_insert(0);
        let name = render_name(
            &self.config.object_name,
            &NameParts {
                prefix: &self.config.prefix,
                stream,
                first: o.first,
                last: o.last,
                seq: *seq,
                timestamp_ms: o.first_timestamp,
            },
        )?;
        *seq += 1;
        let body = o.enc.finish().context("gcs sink: finishing gzip")?;
        self.sealed.push_back(Sealed {
            object: FinishedObject {
                uri: format!("gs://{}/{}", self.config.bucket, name),
                name,
                rows: o.rows,
                bytes: body.len() as u64,
                stream: stream.to_string(),
                first: o.first,
                last: o.last,
            },
            body: bytes::Bytes::from(body),
        });
        Ok(())
    }

    async fn upload_sealed(&mut self) -> anyhow::Result<Vec<FinishedObject>> {
        let mut done = Vec::new();
        while let Some(s) = self.sealed.front() {
            self.upload(s).await?;
            let s = self.sealed.pop_front().expect("front exists");
            self.uploaded += 1;
            done.push(s.object);
        }
        Ok(done)
    }

    /// One single-shot upload. The client retries transient failures (connection errors,
    /// 408, 429, 5xx) with exponential backoff for up to `retry_for`; the write is marked
    /// idempotent because the same name always gets the same bytes.
    async fn upload(&self, s: &Sealed) -> anyhow::Result<()> {
        use google_cloud_gax::retry_policy::RetryPolicyExt as _;
        let started = Instant::now();
        let result = self
            .client
            .write_object(&self.bucket_path, &s.object.name, s.body.clone())
            .set_content_type("application/gzip")
            // Single-shot for every size: one request, nothing to resume.
            .with_resumable_upload_threshold(usize::MAX)
            .with_idempotency(true)
            .with_retry_policy(
                google_cloud_storage::retry_policy::RetryableErrors
                    .with_time_limit(self.upload_retry_limit()),
            )
            .send_buffered()
            .await;
        self.uploads.observe(result.is_ok(), started.elapsed());
        match result {
            Ok(_) => Ok(()),
            Err(err) => Err(anyhow::anyhow!(
                "gcs sink: uploading {} ({} rows, {} bytes) failed{} after {:.1?}: {err}",
                s.object.uri,
                s.object.rows,
                s.object.bytes,
                if is_transient(&err) {
                    ""
                } else {
                    " (not retryable)"
                },
                started.elapsed()
            )),
        }
    }
}

fn compressed_len(o: &OpenObject) -> u64 {
    o.enc.get_ref().len() as u64
}

/// Compressed bytes per input byte so far (exact: every batch ends with a sync flush).
fn ratio(o: &OpenObject) -> f64 {
    if o.raw_bytes == 0 {
        0.5
    } else {
        (compressed_len(o) as f64 / o.raw_bytes as f64).clamp(0.01, 1.1)
    }
}

fn bigquery_line(value: &[u8], out: &mut Vec<u8>) {
    match serde_json::from_slice::<serde_json::Value>(value) {
        Ok(v @ serde_json::Value::Object(_)) => {
            let n = crate::sinks::bigquery::schema::normalize_owned(v);
            serde_json::to_writer(&mut *out, &n).expect("a JSON value serialises");
        }
        // Not a JSON object: written as it is; a load job counts it as a bad record.
        _ => out.extend_from_slice(value),
    }
}

/// Connection failures, timeouts, 408, 429 and 5xx are retried; other 4xx (no such bucket,
/// permission denied, bad request) are not.
fn is_transient(e: &google_cloud_storage::Error) -> bool {
    match e.http_status_code() {
        Some(408 | 429) => true,
        Some(c) => !(400..500).contains(&c),
        None => true,
    }
}

struct NameParts<'a> {
    prefix: &'a str,
    stream: &'a str,
    first: u64,
    last: u64,
    seq: u64,
    timestamp_ms: Option<i64>,
}

fn render_name(template: &str, p: &NameParts<'_>) -> anyhow::Result<String> {
    let when = p
        .timestamp_ms
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or_else(chrono::Utc::now);
    let mut out = String::with_capacity(template.len() + 48);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .with_context(|| format!("gcs sink: unclosed `{{` in object_name {template:?}"))?;
        let key = &rest[open + 1..open + close];
        match key {
            "prefix" => out.push_str(p.prefix),
            "stream" => out.push_str(p.stream),
            "first" | "first_key" => out.push_str(&format!("{:020}", p.first)),
            "last" | "last_key" => out.push_str(&format!("{:020}", p.last)),
            "seq" => out.push_str(&format!("{:06}", p.seq)),
            "date" => out.push_str(&when.format("%Y-%m-%d").to_string()),
            "hour" => out.push_str(&when.format("%H").to_string()),
            other => anyhow::bail!(
                "gcs sink: unknown placeholder {{{other}}} in object_name {template:?} \
                 (known: prefix, stream, first, last, seq, date, hour)"
            ),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn storage_credentials(
    c: &Credentials,
) -> anyhow::Result<google_cloud_auth::credentials::Credentials> {
    use google_cloud_auth::credentials;
    Ok(match c {
        Credentials::Anonymous => credentials::anonymous::Builder::new().build(),
        Credentials::Default => credentials::Builder::default()
            .build()
            .context("gcs sink: Application Default Credentials")?,
        Credentials::ServiceAccountFile(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("gcs sink: reading {}", path.display()))?;
            let key: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("gcs sink: {} is not JSON", path.display()))?;
            credentials::service_account::Builder::new(key)
                .build()
                .with_context(|| format!("gcs sink: service account key {}", path.display()))?
        }
    })
}

/// Creates `bucket` unless it exists, through the JSON API. The storage client creates buckets
/// over gRPC, which fake-gcs-server does not serve; this is meant for emulators (no auth).
pub async fn ensure_bucket(endpoint: &str, bucket: &str) -> anyhow::Result<()> {
    let base = endpoint.trim_end_matches('/');
    let http = reqwest::Client::new();
    let get = http
        .get(format!("{base}/storage/v1/b/{bucket}"))
        .send()
        .await
        .with_context(|| format!("gcs: reaching {base}"))?;
    if get.status().is_success() {
        return Ok(());
    }
    let resp = http
        .post(format!("{base}/storage/v1/b?project=sluice"))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "name": bucket }).to_string())
        .send()
        .await
        .with_context(|| format!("gcs: creating bucket {bucket} at {base}"))?;
    let status = resp.status();
    if status.is_success() || status.as_u16() == 409 {
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    anyhow::bail!("gcs: creating bucket {bucket} at {base}: HTTP {status}: {body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_templates() {
        let p = NameParts {
            prefix: "twitter/",
            stream: "twitter-0",
            first: 1200,
            last: 1699,
            seq: 3,
            timestamp_ms: Some(1_689_307_212_000),
        };
        assert_eq!(
            render_name(DEFAULT_OBJECT_NAME, &p).unwrap(),
            "twitter/dt=2023-07-14/twitter-0-00000000000000001200-00000000000000001699.ndjson.gz"
        );
        assert_eq!(
            render_name("{prefix}{date}/{hour}/{first_key}-{seq}.gz", &p).unwrap(),
            "twitter/2023-07-14/04/00000000000000001200-000003.gz"
        );
        assert!(render_name("{nope}", &p).is_err());
        assert!(render_name("{first", &p).is_err());
    }

    #[test]
    fn credentials_setting() {
        use Credentials::*;
        assert_eq!(Credentials::from_setting(None, true), Anonymous);
        assert_eq!(Credentials::from_setting(None, false), Default);
        assert_eq!(Credentials::from_setting(Some("default"), true), Default);
        assert_eq!(
            Credentials::from_setting(Some("/k.json"), false),
            ServiceAccountFile("/k.json".into())
        );
    }

    #[test]
    fn config_from_toml_defaults() {
        let c: GcsConfig = serde_json::from_value(serde_json::json!({
            "bucket": "b",
            "bigquery": {"project": "p", "dataset": "d", "table": "t", "max_bad_records": 1000}
        }))
        .unwrap();
        assert_eq!(c.bigquery.as_ref().unwrap().max_bad_records, 1000);
        assert_eq!(c.max_object_bytes, ByteSize::mb(100));
        assert_eq!(c.max_object_age, Duration::from_secs(60));
        c.validate().unwrap();
        let mut bad = c.clone();
        bad.object_name = "{prefix}{date}.gz".into();
        assert!(bad.validate().is_err());
    }
}
