//! The Elasticsearch sink: documents into time-based indices (`twitter-%{+YYYYMMdd}`) through
//! `_bulk`, with an index template that the host creates or updates at start.
//!
//! - **Batching.** A [`ElasticsearchSink::write`] call is split into `_bulk` requests of at most
//!   `bulk_max_docs` documents and `bulk_max_bytes` bytes; up to `concurrency` of them are in
//!   flight at once. Each request body is built in one buffer, and buffers are reused across
//!   requests and calls. (Batching by time is the pipeline's `batch_timeout`.)
//! - **Idempotence.** Every document is sent with an `index` action (not `create`) and, when
//!   one of the `id_field` paths is present, that value as `_id`: a redelivered record
//!   overwrites its own document instead of adding a second one.
//! - **Errors.** Whole-request failures that are transient (connection refused or reset,
//!   timeouts, HTTP 429 and 5xx) are retried with exponential backoff, indefinitely unless
//!   `retry_give_up` is set: the batch stays in memory and `write` does not return, which is
//!   the backpressure on the source. Items of a `_bulk` response that failed with 429 (or 502,
//!   503, 504) are retried alone. Any other per-item failure (mapping conflict, field limit,
//!   unparsable date, ...) is returned as a [`Rejected`] with Elasticsearch's own error type
//!   and reason, for the dead-letter destination.
//! - **Index management.** `PUT _index_template/<name>` with shards, replicas,
//!   `index.mapping.total_fields.limit`, the refresh interval and explicit mappings for the
//!   known tweet fields (both API v1.1 and v2 shapes, plus the `enrich` plugin's fields), so
//!   nobody needs curl to get past the 1000-field default. The dynamic settings are also
//!   applied to indices that already exist and match the template's patterns.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytesize::ByteSize;
use chrono::{DateTime, Datelike, Timelike, Utc};
use elasticsearch::auth::Credentials;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{StatusCode, Url};
use elasticsearch::indices::{IndicesPutIndexTemplateParts, IndicesPutSettingsParts};
use elasticsearch::{BulkParts, Elasticsearch};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::api::{Sink, SinkContext, SinkSettings};
use crate::event::{Positions, Record, Rejected, StageOutput};
use crate::util::{Backoff, Invalid, error_chain, excerpt, json_key};

/// `[sinks.NAME] type = "elasticsearch"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URL of the cluster, e.g. `http://127.0.0.1:9200`.
    pub url: String,
    /// Index name pattern in Logstash syntax: literal text plus `%{+FORMAT}` where FORMAT
    /// uses `YYYY` (or `yyyy`), `MM`, `dd` and `HH` (UTC) and punctuation, e.g.
    /// `twitter-%{+YYYYMMdd}` or `logs-%{+YYYY.MM.dd}`. A name without `%{+...}` is used as is.
    #[serde(default = "default_index")]
    pub index: String,
    /// Which time picks the index: the record's timestamp or the time of writing.
    #[serde(default)]
    pub index_time: IndexTime,
    /// Comma-separated JSON dot paths tried in order for the document `_id` (a string or an
    /// integer). Without one, Elasticsearch assigns an id and redelivery can duplicate.
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// Most documents per `_bulk` request. A batch smaller than `concurrency` full requests
    /// is spread evenly over `concurrency` requests, so they all run at once.
    #[serde(default = "default_bulk_max_docs")]
    pub bulk_max_docs: usize,
    /// Bytes per `_bulk` request (a single larger document is sent alone).
    #[serde(default = "default_bulk_max_bytes")]
    pub bulk_max_bytes: ByteSize,
    /// `_bulk` requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// First delay before retrying a transient failure; doubled on each failed round.
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest delay between retries.
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// Give up (the write, and so the pipeline, fails) once transient failures have lasted
    /// this long. Unset: retry for as long as it takes.
    #[serde(default, with = "humantime_serde")]
    pub retry_give_up: Option<Duration>,
    /// Client-side timeout of one HTTP request; a timed-out request is retried.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Gzip request bodies (saves bandwidth to a remote cluster; costs CPU).
    #[serde(default)]
    pub compress_requests: bool,
    /// Names of environment variables holding the basic-auth user and password (secrets never
    /// go in the pipeline file).
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    /// The index template created or updated at start.
    #[serde(default)]
    pub template: TemplateConfig,
}

/// Which time chooses the index of a record.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IndexTime {
    /// The record's timestamp (the Kafka message time, or the tweet's `created_at` for the
    /// generate source); records without one use the time of writing.
    #[default]
    Event,
    /// The time the batch is written.
    Ingest,
}

/// `[sinks.NAME.template]`: the index template managed by the host.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplateConfig {
    /// Create or update the template at start.
    pub enabled: bool,
    pub name: String,
    /// Index patterns the template applies to; they should cover `index`.
    pub patterns: Vec<String>,
    /// Template priority; overlapping templates need different priorities.
    pub priority: u32,
    pub shards: u32,
    /// The seed ran one node with 0 replicas (a replica could never be assigned there).
    pub replicas: u32,
    /// `index.mapping.total_fields.limit` (Elasticsearch's default is 1000).
    pub total_fields_limit: u64,
    /// `index.refresh_interval`; unset keeps the server's default (1s). Longer is faster to
    /// index, documents become searchable later.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Option<Duration>,
    /// A JSON object merged (recursively) into the template's `mappings`, e.g.
    /// `{"properties":{"user":{"properties":{"screen_name":{"type":"keyword"}}}}}`.
    pub extra_mappings: Option<String>,
    /// Also apply replicas, the field limit and the refresh interval to indices that already
    /// exist and match `patterns` (a template only affects indices created after it).
    pub apply_to_existing: bool,
}

fn default_index() -> String {
    "twitter-%{+YYYYMMdd}".into()
}
fn default_id_field() -> String {
    "id_str,data.id".into()
}
fn default_bulk_max_docs() -> usize {
    500
}
fn default_bulk_max_bytes() -> ByteSize {
    ByteSize::mib(5)
}
fn default_concurrency() -> usize {
    2
}
fn default_retry_initial() -> Duration {
    Duration::from_millis(100)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9200".into(),
            index: default_index(),
            index_time: IndexTime::default(),
            id_field: default_id_field(),
            bulk_max_docs: default_bulk_max_docs(),
            bulk_max_bytes: default_bulk_max_bytes(),
            concurrency: default_concurrency(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            retry_give_up: None,
            request_timeout: default_request_timeout(),
            compress_requests: false,
            username_env: None,
            password_env: None,
            template: TemplateConfig::default(),
        }
    }
}

impl Default for TemplateConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            name: "sluice-twitter".into(),
            patterns: vec!["twitter-*".into()],
            priority: 100,
            shards: 1,
            replicas: 0,
            total_fields_limit: 2000,
            refresh_interval: None,
            extra_mappings: None,
            apply_to_existing: true,
        }
    }
}

pub struct ElasticsearchSink {
    client: Elasticsearch,
    url: String,
    pattern: IndexPattern,
    index_time: IndexTime,
    id_paths: Vec<Vec<String>>,
    max_docs: usize,
    max_bytes: usize,
    concurrency: usize,
    retry_initial: Duration,
    retry_max: Duration,
    retry_give_up: Option<Duration>,
    /// Index names already formatted, by time bucket.
    names: NameCache,
    /// Request bodies handed back by finished requests, for reuse.
    spare: Vec<Vec<u8>>,
    /// Scratch for the document id found in a record.
    id: Vec<u8>,
    warned_no_id: bool,
}

impl fmt::Debug for ElasticsearchSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElasticsearchSink")
            .field("url", &self.url)
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

impl ElasticsearchConfig {
    /// Checks every setting without touching the network (`host check` runs it, and so does
    /// [`ElasticsearchSink::connect`]). The error names the offending key, relative to the sink.
    pub fn validate(&self) -> Result<(), Invalid> {
        IndexPattern::parse(&self.index).map_err(|e| Invalid::new("index", format!("{e:#}")))?;
        base_url(&self.url).map_err(|e| Invalid::new("url", format!("{e:#}")))?;
        if self.bulk_max_docs == 0 {
            return Err(Invalid::new("bulk_max_docs", "must be at least 1"));
        }
        if self.concurrency == 0 {
            return Err(Invalid::new("concurrency", "must be at least 1"));
        }
        if self.bulk_max_bytes.as_u64() == 0 {
            return Err(Invalid::new("bulk_max_bytes", "must be above 0"));
        }
        if self.id_field.split(',').any(|p| p.trim().is_empty()) {
            return Err(Invalid::new("id_field", "has an empty path"));
        }
        if self.username_env.is_some() != self.password_env.is_some() {
            return Err(Invalid::new(
                "password_env",
                "set both `username_env` and `password_env`, or neither",
            ));
        }
        if self.template.enabled {
            if self.template.name.trim().is_empty() {
                return Err(Invalid::new("template.name", "must not be empty"));
            }
            if self.template.patterns.is_empty() {
                return Err(Invalid::new(
                    "template.patterns",
                    "needs at least one index pattern",
                ));
            }
            template_body(&self.template)
                .map_err(|e| Invalid::new("template.extra_mappings", format!("{e:#}")))?;
        }
        Ok(())
    }
}

/// The cluster's base URL, with the trailing slash that keeps a path prefix (a proxy's) when
/// API paths are joined on.
fn base_url(url: &str) -> anyhow::Result<Url> {
    let url = url.trim_end_matches('/');
    Url::parse(&format!("{url}/")).with_context(|| format!("{url:?} is not a URL"))
}

#[async_trait::async_trait]
impl SinkSettings for ElasticsearchConfig {
    fn validate(&self) -> Result<(), Invalid> {
        ElasticsearchConfig::validate(self)
    }

    async fn open(&self, _: &SinkContext) -> anyhow::Result<Box<dyn Sink>> {
        Ok(Box::new(ElasticsearchSink::connect(self).await?))
    }
}

#[async_trait::async_trait]
impl Sink for ElasticsearchSink {
    /// Returns once Elasticsearch indexed or rejected each record.
    async fn write(&mut self, out: &StageOutput, _: &Positions) -> anyhow::Result<Vec<Rejected>> {
        self.write_records(&out.records).await
    }
}

impl ElasticsearchSink {
    /// Builds the client, checks that the cluster answers, and creates or updates the index
    /// template (unless `template.enabled = false`).
    pub async fn connect(cfg: &ElasticsearchConfig) -> anyhow::Result<Self> {
        cfg.validate()
            .map_err(|e| anyhow::anyhow!("elasticsearch sink: {e}"))?;
        let pattern = IndexPattern::parse(&cfg.index)?;
        let id_paths = json_key::parse_paths(&cfg.id_field);
        let url = cfg.url.trim_end_matches('/').to_string();
        let parsed = base_url(&url)?;
        let mut transport = TransportBuilder::new(SingleNodeConnectionPool::new(parsed))
            .timeout(cfg.request_timeout)
            .request_body_compression(cfg.compress_requests)
            .enable_meta_header(false);
        if let Some(credentials) = credentials(cfg)? {
            transport = transport.auth(credentials);
        }
        let transport = transport
            .build()
            .with_context(|| format!("elasticsearch sink: building the HTTP client for {url}"))?;
        let client = Elasticsearch::new(transport);

        let info = client
            .info()
            .send()
            .await
            .with_context(|| format!("Elasticsearch at {url} did not answer"))?;
        let status = info.status_code();
        if !status.is_success() {
            let body = info.text().await.unwrap_or_default();
            bail!(
                "Elasticsearch at {url} answered HTTP {status} to GET /: {}",
                excerpt(&body, 300)
            );
        }
        let info: Value = info
            .json()
            .await
            .with_context(|| format!("{url} did not answer GET / like Elasticsearch"))?;
        tracing::info!(
            url = %url,
            distribution = info["version"]["distribution"].as_str().unwrap_or("elasticsearch"),
            version = info["version"]["number"].as_str().unwrap_or("?"),
            "elasticsearch sink connected"
        );

        if cfg.template.enabled {
            put_template(&client, &url, &cfg.template).await?;
            let today = pattern.format(&Utc::now());
            if !cfg
                .template
                .patterns
                .iter()
                .any(|p| wildcard_match(p, &today))
            {
                tracing::warn!(
                    index = %cfg.index,
                    patterns = ?cfg.template.patterns,
                    "elasticsearch sink: the template's patterns do not match the index names; \
                     the indices will not get the template"
                );
            }
        }

        Ok(Self {
            client,
            url,
            pattern,
            index_time: cfg.index_time,
            id_paths,
            max_docs: cfg.bulk_max_docs,
            max_bytes: usize::try_from(cfg.bulk_max_bytes.as_u64()).unwrap_or(usize::MAX),
            concurrency: cfg.concurrency,
            retry_initial: cfg.retry_initial,
            retry_max: cfg.retry_max.max(cfg.retry_initial),
            retry_give_up: cfg.retry_give_up,
            names: NameCache::default(),
            spare: Vec::new(),
            id: Vec::with_capacity(64),
            warned_no_id: false,
        })
    }

    /// Indexes every record; returns once each is either acknowledged by Elasticsearch or
    /// rejected per item ([`Rejected`], with Elasticsearch's reason). Transient failures are
    /// retried with backoff while the records stay in memory (only this batch); an `Err` means
    /// the sink failed: `retry_give_up` ran out, or the server refused the request as a whole
    /// for a reason retrying cannot fix (authentication, a malformed request).
    pub async fn write_records(&mut self, records: &[Record]) -> anyhow::Result<Vec<Rejected>> {
        let mut rejected = Vec::new();
        let mut pending: Vec<usize> = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            if r.value.iter().all(u8::is_ascii_whitespace) {
                rejected.push(Rejected {
                    index: i,
                    reason: "empty record: not a JSON document".into(),
                });
            } else {
                pending.push(i);
            }
        }
        let ingest_ms = Utc::now().timestamp_millis();
        let mut max_docs = self.max_docs;
        let mut waits = Backoff::doubling(self.retry_initial, self.retry_max);
        let mut failing_since: Option<Instant> = None;
        let mut rounds = 0u32;

        while !pending.is_empty() {
            rounds += 1;
            // Spread a small batch over every request slot rather than one full request.
            let per_request = max_docs.min(pending.len().div_ceil(self.concurrency));
            let mut retry: Vec<usize> = Vec::new();
            // The last transient failure of this round, and whether anything got through.
            let mut transient: Option<String> = None;
            let (mut failed_requests, mut progressed) = (0usize, false);
            let mut in_flight = JoinSet::new();
            let mut next = 0;
            loop {
                while in_flight.len() < self.concurrency && next < pending.len() {
                    let (body, docs, after) =
                        self.build_request(records, &pending, next, per_request, ingest_ms);
                    next = after;
                    in_flight.spawn(send_bulk(self.client.clone(), body, docs));
                }
                let Some(done) = in_flight.join_next().await else {
                    break;
                };
                let (body, docs, outcome) = done.context("elasticsearch bulk task failed")?;
                match outcome {
                    Outcome::Items(items) => {
                        if items.len() != docs.len() {
                            bail!(
                                "Elasticsearch at {} answered {} items to a _bulk request of {} \
                                 documents",
                                self.url,
                                items.len(),
                                docs.len()
                            );
                        }
                        for (item, &index) in items.into_iter().zip(&docs) {
                            match item.status {
                                200..=299 => progressed = true,
                                // Overloaded or a shard not ready: only these items again.
                                429 | 502..=504 => {
                                    if transient.is_none() {
                                        transient = Some(format!(
                                            "bulk item HTTP {}: {}",
                                            item.status,
                                            error_reason(item.error.as_ref())
                                        ));
                                    }
                                    retry.push(index);
                                }
                                _ => {
                                    progressed = true;
                                    rejected.push(Rejected {
                                        index,
                                        reason: error_reason(item.error.as_ref()),
                                    });
                                }
                            }
                        }
                    }
                    Outcome::Transient(reason) => {
                        failed_requests += 1;
                        transient = Some(reason);
                        retry.extend_from_slice(&docs);
                    }
                    Outcome::TooLarge => {
                        if let [index] = docs[..] {
                            rejected.push(Rejected {
                                index,
                                reason: "request_entity_too_large: the document alone is larger \
                                         than the server accepts (http.max_content_length)"
                                    .into(),
                            });
                        } else {
                            max_docs = (docs.len() / 2).max(1);
                            tracing::warn!(
                                url = %self.url,
                                docs = docs.len(),
                                "elasticsearch: bulk request too large (HTTP 413); \
                                 retrying with at most {max_docs} documents per request"
                            );
                            retry.extend_from_slice(&docs);
                        }
                    }
                    Outcome::Fatal(reason) => {
                        bail!(
                            "Elasticsearch at {} refused a _bulk request: {reason}",
                            self.url
                        )
                    }
                }
                self.recycle(body);
            }
            drop(in_flight);
            retry.sort_unstable();
            pending = retry;
            if pending.is_empty() {
                break;
            }
            let Some(reason) = transient else {
                // Only a smaller split was needed (HTTP 413): no wait.
                continue;
            };
            if progressed {
                failing_since = None;
            }
            let since = *failing_since.get_or_insert_with(Instant::now);
            let mut wait = waits.next_wait();
            if let Some(give_up) = self.retry_give_up {
                let spent = since.elapsed();
                if spent >= give_up {
                    bail!(
                        "Elasticsearch at {}: giving up after {} of failures ({} documents not \
                         written); last error: {reason}",
                        self.url,
                        humantime::format_duration(round_ms(spent)),
                        pending.len()
                    );
                }
                wait = wait.min(give_up - spent);
            }
            tracing::warn!(
                url = %self.url,
                attempt = rounds,
                failed_requests,
                retry_in = %humantime::format_duration(round_ms(wait)),
                "elasticsearch: {} of {} documents not written yet, retrying: {reason}",
                pending.len(),
                records.len()
            );
            tokio::time::sleep(wait).await;
        }
        rejected.sort_unstable_by_key(|r| r.index);
        Ok(rejected)
    }

    /// Appends documents `pending[from..]` to a (reused) body until `max_docs` or the byte
    /// limit is reached. Returns the body, the record index of each document, and where the
    /// next request starts.
    fn build_request(
        &mut self,
        records: &[Record],
        pending: &[usize],
        from: usize,
        max_docs: usize,
        ingest_ms: i64,
    ) -> (Vec<u8>, Vec<usize>, usize) {
        let mut body = self.spare.pop().unwrap_or_default();
        body.clear();
        let mut docs = Vec::with_capacity(max_docs.min(pending.len() - from));
        let mut next = from;
        while next < pending.len() && docs.len() < max_docs {
            let index = pending[next];
            let mark = body.len();
            self.append_doc(&mut body, &records[index], ingest_ms);
            if body.len() > self.max_bytes && !docs.is_empty() {
                body.truncate(mark);
                break;
            }
            docs.push(index);
            next += 1;
        }
        (body, docs, next)
    }

    /// `{"index":{"_index":"NAME","_id":"ID"}}\n<document>\n`.
    fn append_doc(&mut self, body: &mut Vec<u8>, record: &Record, ingest_ms: i64) {
        let ms = match self.index_time {
            IndexTime::Event => record.timestamp.unwrap_or(ingest_ms),
            IndexTime::Ingest => ingest_ms,
        };
        let name = self.names.get(&self.pattern, ms);
        body.extend_from_slice(b"{\"index\":{\"_index\":\"");
        body.extend_from_slice(name.as_bytes());
        body.push(b'"');
        if json_key::find(&record.value, &self.id_paths, &mut self.id) {
            body.extend_from_slice(b",\"_id\":");
            let id = std::str::from_utf8(&self.id).expect("ids are copied from JSON strings");
            serde_json::to_writer(&mut *body, id).expect("writing to a Vec cannot fail");
        } else if !self.warned_no_id {
            self.warned_no_id = true;
            tracing::warn!(
                paths = ?self.id_paths,
                "elasticsearch sink: a record has none of the id fields; Elasticsearch assigns \
                 its id, so a redelivery of such records indexes them again (logged once)"
            );
        }
        body.extend_from_slice(b"}}\n");
        // NDJSON: one line per document. Line breaks in valid JSON can only be whitespace
        // between tokens, so pretty-printed documents are joined onto one line.
        let value = &record.value;
        if value.iter().any(|&b| b == b'\n' || b == b'\r') {
            body.extend(value.iter().filter(|&&b| b != b'\n' && b != b'\r'));
        } else {
            body.extend_from_slice(value);
        }
        body.push(b'\n');
    }

    fn recycle(&mut self, body: Vec<u8>) {
        // Keep one buffer per concurrent request; drop ones grown far past the limit.
        if self.spare.len() < self.concurrency
            && body.capacity() <= self.max_bytes.saturating_mul(4)
        {
            self.spare.push(body);
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

fn credentials(cfg: &ElasticsearchConfig) -> anyhow::Result<Option<Credentials>> {
    let read = |var: &Option<String>, what: &str| -> anyhow::Result<Option<String>> {
        var.as_deref()
            .map(|name| {
                std::env::var(name).with_context(|| {
                    format!("elasticsearch sink: `{what}` names ${name}, which is not set")
                })
            })
            .transpose()
    };
    let user = read(&cfg.username_env, "username_env")?;
    let password = read(&cfg.password_env, "password_env")?;
    Ok(match (user, password) {
        (None, None) => None,
        (Some(u), Some(p)) => Some(Credentials::Basic(u, p)),
        _ => bail!("elasticsearch sink: set both `username_env` and `password_env`, or neither"),
    })
}

// ---------------------------------------------------------------- bulk requests

/// What became of one `_bulk` request.
enum Outcome {
    /// The server answered per item (in request order).
    Items(Vec<ItemResult>),
    /// Worth retrying as a whole: connection errors, timeouts, 429, 5xx.
    Transient(String),
    /// HTTP 413: split it.
    TooLarge,
    /// Retrying cannot help (authentication, malformed request, not Elasticsearch).
    Fatal(String),
}

/// Only what the sink reads (`filter_path` keeps the response to this).
#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<BulkItem>,
}

#[derive(Deserialize)]
struct BulkItem {
    #[serde(alias = "create", alias = "update", alias = "delete")]
    index: ItemResult,
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    error: Option<EsError>,
}

#[derive(Deserialize)]
struct EsError {
    #[serde(rename = "type")]
    kind: Option<String>,
    reason: Option<String>,
    caused_by: Option<Box<EsError>>,
}

const BULK_FILTER: &[&str] = &["errors", "items.*.status", "items.*.error"];

/// Sends one body; hands the body and document list back for reuse and bookkeeping.
async fn send_bulk(
    client: Elasticsearch,
    body: Vec<u8>,
    docs: Vec<usize>,
) -> (Vec<u8>, Vec<usize>, Outcome) {
    let outcome = bulk_outcome(&client, &body).await;
    (body, docs, outcome)
}

async fn bulk_outcome(client: &Elasticsearch, body: &[u8]) -> Outcome {
    let response = match client
        .bulk(BulkParts::None)
        .filter_path(BULK_FILTER)
        .body(vec![body])
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Outcome::Transient(error_chain(&e)),
    };
    let status = response.status_code();
    let bytes = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Outcome::Transient(format!("reading the response: {}", error_chain(&e))),
    };
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return Outcome::TooLarge;
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Outcome::Transient(format!("HTTP {status}: {}", body_reason(&bytes)));
    }
    if !status.is_success() {
        return Outcome::Fatal(format!("HTTP {status}: {}", body_reason(&bytes)));
    }
    match serde_json::from_slice::<BulkResponse>(&bytes) {
        Ok(r) => Outcome::Items(r.items.into_iter().map(|i| i.index).collect()),
        Err(e) => Outcome::Fatal(format!(
            "unreadable _bulk response ({e}): {}",
            excerpt(&String::from_utf8_lossy(&bytes), 300)
        )),
    }
}

/// `type: reason (caused by: type: reason)`, as Elasticsearch gives it.
fn error_reason(error: Option<&EsError>) -> String {
    let Some(e) = error else {
        return "unknown error (no error in the bulk item)".into();
    };
    let mut out = String::new();
    let mut cur = Some(e);
    let mut depth = 0;
    while let Some(e) = cur {
        if depth > 0 {
            out.push_str(" (caused by: ");
        }
        out.push_str(e.kind.as_deref().unwrap_or("error"));
        if let Some(r) = &e.reason {
            out.push_str(": ");
            out.push_str(r);
        }
        depth += 1;
        cur = e.caused_by.as_deref().filter(|_| depth < 4);
    }
    for _ in 1..depth {
        out.push(')');
    }
    out
}

/// The error in an Elasticsearch error response body, else the body's start.
fn body_reason(bytes: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: Option<Value>,
    }
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(ErrorBody {
            error: Some(Value::String(s)),
        }) => s,
        Ok(ErrorBody {
            error: Some(e @ Value::Object(_)),
        }) => match serde_json::from_value::<EsError>(e) {
            Ok(e) => error_reason(Some(&e)),
            Err(_) => excerpt(&String::from_utf8_lossy(bytes), 300),
        },
        _ => excerpt(&String::from_utf8_lossy(bytes), 300),
    }
}

// ---------------------------------------------------------------- index template

async fn put_template(client: &Elasticsearch, url: &str, t: &TemplateConfig) -> anyhow::Result<()> {
    if t.patterns.is_empty() {
        bail!("elasticsearch sink: `template.patterns` is empty");
    }
    let body = template_body(t)?;
    let response = client
        .indices()
        .put_index_template(IndicesPutIndexTemplateParts::Name(&t.name))
        .body(&body)
        .send()
        .await
        .with_context(|| format!("Elasticsearch at {url} did not answer"))?;
    let status = response.status_code();
    if !status.is_success() {
        let text = response.bytes().await.unwrap_or_default();
        bail!(
            "Elasticsearch at {url} refused index template {:?}: HTTP {status}: {}",
            t.name,
            body_reason(&text)
        );
    }
    tracing::info!(name = %t.name, patterns = ?t.patterns, "elasticsearch index template put");

    if t.apply_to_existing {
        let patterns: Vec<&str> = t.patterns.iter().map(String::as_str).collect();
        let response = client
            .indices()
            .put_settings(IndicesPutSettingsParts::Index(&patterns))
            .allow_no_indices(true)
            .ignore_unavailable(true)
            .body(json!({ "index": dynamic_settings(t) }))
            .send()
            .await
            .with_context(|| format!("Elasticsearch at {url} did not answer"))?;
        let status = response.status_code();
        if !status.is_success() {
            let text = response.bytes().await.unwrap_or_default();
            bail!(
                "Elasticsearch at {url} refused the settings of existing indices {patterns:?}: \
                 HTTP {status}: {}",
                body_reason(&text)
            );
        }
    }
    Ok(())
}

/// The settings that can change on an existing index.
fn dynamic_settings(t: &TemplateConfig) -> Value {
    let mut s = json!({
        "number_of_replicas": t.replicas,
        "mapping": { "total_fields": { "limit": t.total_fields_limit } },
    });
    if let Some(r) = t.refresh_interval {
        s["refresh_interval"] = Value::String(format!("{}ms", r.as_millis()));
    }
    s
}

/// The `PUT _index_template/NAME` body.
pub fn template_body(t: &TemplateConfig) -> anyhow::Result<Value> {
    let mut settings = dynamic_settings(t);
    settings["number_of_shards"] = json!(t.shards);
    let mut mappings = tweet_mappings();
    if let Some(extra) = t.extra_mappings.as_deref().filter(|s| !s.trim().is_empty()) {
        let extra: Value = serde_json::from_str(extra).context("not JSON")?;
        if !extra.is_object() {
            bail!("must be a JSON object");
        }
        merge(&mut mappings, extra);
    }
    Ok(json!({
        "index_patterns": t.patterns,
        "priority": t.priority,
        "template": { "settings": { "index": settings }, "mappings": mappings },
        "_meta": { "managed_by": "sluice" },
    }))
}

/// Explicit mappings for the tweet fields the seed's dashboards used, for API v1.1 and v2
/// tweets and the `enrich` plugin's fields (`@timestamp`, `sluice.*`). Everything else is
/// mapped dynamically.
fn tweet_mappings() -> Value {
    let keyword = || json!({ "type": "keyword" });
    let text = || json!({ "type": "text" });
    // v1.1: "Wed Oct 10 20:19:24 +0000 2018"; also accepts ISO dates.
    let v1_date = || json!({ "type": "date", "format": "EEE MMM dd HH:mm:ss Z yyyy||strict_date_optional_time" });
    let iso_date =
        || json!({ "type": "date", "format": "strict_date_optional_time||epoch_millis" });
    let object = |props: Value| json!({ "properties": props });
    json!({
        "properties": {
            "@timestamp": { "type": "date" },
            "id_str": keyword(),
            "created_at": v1_date(),
            "timestamp_ms": { "type": "date", "format": "epoch_millis" },
            "text": text(),
            "full_text": text(),
            "lang": keyword(),
            "in_reply_to_status_id_str": keyword(),
            "in_reply_to_user_id_str": keyword(),
            "extended_tweet": object(json!({ "full_text": text() })),
            "user": object(json!({
                "id_str": keyword(),
                "screen_name": keyword(),
                "created_at": v1_date(),
            })),
            "data": object(json!({
                "id": keyword(),
                "text": text(),
                "author_id": keyword(),
                "conversation_id": keyword(),
                "lang": keyword(),
                "created_at": iso_date(),
            })),
            "sluice": object(json!({
                "hashtags": keyword(),
                "mentions": keyword(),
                "matched_keywords": keyword(),
                "tweet_url": keyword(),
                "shape": keyword(),
                "is_retweet": { "type": "boolean" },
                "is_quote": { "type": "boolean" },
                "text_length": { "type": "integer" },
            })),
        }
    })
}

/// Merges `extra` into `base`: objects key by key, anything else replaces.
fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(at) => rest = &rest[at + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

// ---------------------------------------------------------------- index names

/// A parsed `index` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPattern {
    parts: Vec<Part>,
    /// Milliseconds per bucket of equal names (an hour or a day), `None` for a fixed name.
    bucket_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Year,
    Month,
    Day,
    Hour,
}

impl IndexPattern {
    /// Parses `twitter-%{+YYYYMMdd}`-style patterns (see [`ElasticsearchConfig::index`]).
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let mut parts = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let Some(at) = rest.find("%{") else {
                parts.push(Part::Lit(rest.to_string()));
                break;
            };
            if at > 0 {
                parts.push(Part::Lit(rest[..at].to_string()));
            }
            let Some(end) = rest[at..].find('}') else {
                bail!("unclosed `%{{`");
            };
            let inner = &rest[at + 2..at + end];
            let Some(format) = inner.strip_prefix('+') else {
                bail!(
                    "`%{{{inner}}}`: only date formats (`%{{+YYYYMMdd}}`) are supported, not \
                     field references"
                );
            };
            parse_date_format(format, &mut parts)?;
            rest = &rest[at + end + 1..];
        }
        let has = |p: &Part| parts.contains(p);
        let bucket_ms = if has(&Part::Hour) {
            Some(3_600_000)
        } else if has(&Part::Day) || has(&Part::Month) || has(&Part::Year) {
            Some(86_400_000)
        } else {
            None
        };
        let pattern = IndexPattern { parts, bucket_ms };
        let sample = pattern.format(&DateTime::<Utc>::UNIX_EPOCH);
        validate_index_name(&sample)?;
        Ok(pattern)
    }

    /// The index name for a time.
    pub fn format(&self, t: &DateTime<Utc>) -> String {
        let mut out = String::with_capacity(32);
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Year => out.push_str(&format!("{:04}", t.year())),
                Part::Month => out.push_str(&format!("{:02}", t.month())),
                Part::Day => out.push_str(&format!("{:02}", t.day())),
                Part::Hour => out.push_str(&format!("{:02}", t.hour())),
            }
        }
        out
    }
}

fn parse_date_format(format: &str, parts: &mut Vec<Part>) -> anyhow::Result<()> {
    let bytes = format.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_alphabetic() {
            let run = bytes[i..].iter().take_while(|&&b| b == c).count();
            let token = &format[i..i + run];
            parts.push(match token {
                "YYYY" | "yyyy" => Part::Year,
                "MM" => Part::Month,
                "dd" => Part::Day,
                "HH" => Part::Hour,
                _ => bail!(
                    "date token `{token}` in `%{{+{format}}}` is not supported (use YYYY, MM, dd, HH)"
                ),
            });
            i += run;
        } else {
            let run = bytes[i..]
                .iter()
                .take_while(|b| !b.is_ascii_alphabetic())
                .count();
            parts.push(Part::Lit(format[i..i + run].to_string()));
            i += run;
        }
    }
    Ok(())
}

/// Elasticsearch's rules for index names (lowercase, no `\/*?"<>| ,#:`, not starting with
/// `-_+`, not `.` or `..`, at most 255 bytes).
fn validate_index_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name == "." || name == ".." {
        bail!("{name:?} is not a valid index name");
    }
    if name.starts_with(['-', '_', '+']) {
        bail!("index name {name:?} must not start with `-`, `_` or `+`");
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_uppercase() || "\\/*?\"<>| ,#:".contains(*c))
    {
        bail!("index name {name:?} must be lowercase and must not contain {c:?}");
    }
    if name.len() > 255 {
        bail!("index name {name:?} is longer than 255 bytes");
    }
    Ok(())
}

/// Formatted names by bucket, so a record costs a division and a comparison, not a format.
#[derive(Default)]
struct NameCache {
    entries: Vec<(i64, String)>,
    last: usize,
}

impl NameCache {
    fn get(&mut self, pattern: &IndexPattern, ms: i64) -> &str {
        let key = pattern.bucket_ms.map_or(0, |b| ms.div_euclid(b));
        if self.entries.get(self.last).is_none_or(|(k, _)| *k != key) {
            match self.entries.iter().position(|(k, _)| *k == key) {
                Some(i) => self.last = i,
                None => {
                    if self.entries.len() >= 256 {
                        self.entries.clear();
                    }
                    let t = DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH);
                    self.entries.push((key, pattern.format(&t)));
                    self.last = self.entries.len() - 1;
                }
            }
        }
        &self.entries[self.last].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(json: &str, spec: &str) -> Option<String> {
        let paths = json_key::parse_paths(spec);
        let mut out = Vec::new();
        json_key::find(json.as_bytes(), &paths, &mut out).then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn ids_from_either_tweet_shape() {
        let v1 = r#"{"entities":{"id_str":"no"},"id":5,"id_str":"123","user":{"id_str":"9"}}"#;
        assert_eq!(id(v1, "id_str,data.id").as_deref(), Some("123"));
        let v2 = r#"{"data":{"text":"\"id\"","id":"456"},"includes":{"users":[{"id":"1"}]}}"#;
        assert_eq!(id(v2, "id_str,data.id").as_deref(), Some("456"));
        assert_eq!(id(r#"{"n":{"id":-42}}"#, "n.id").as_deref(), Some("-42"));
        assert_eq!(id(r#"{"i\u0064":"esc"}"#, "id").as_deref(), Some("esc"));
        assert_eq!(id(r#"{"id":""}"#, "id"), None);
        assert_eq!(id(r#"{"id":null,"x":1}"#, "id,x").as_deref(), Some("1"));
        assert_eq!(id(r#"{"id":1.5}"#, "id"), None);
        assert_eq!(id(r#"{"id":[1]}"#, "id"), None);
        assert_eq!(id("garbage", "id"), None);
        assert_eq!(id("[]", "id"), None);
    }

    #[test]
    fn index_patterns() {
        let t = DateTime::parse_from_rfc3339("2026-11-26T07:05:09Z")
            .unwrap()
            .with_timezone(&Utc);
        let name = |p: &str| IndexPattern::parse(p).unwrap().format(&t);
        assert_eq!(name("twitter-%{+YYYYMMdd}"), "twitter-20261126");
        assert_eq!(name("logs-%{+YYYY.MM.dd}"), "logs-2026.11.26");
        assert_eq!(name("t-%{+yyyy}-%{+MM}-x-%{+dd.HH}"), "t-2026-11-x-26.07");
        assert_eq!(name("fixed"), "fixed");
        assert_eq!(IndexPattern::parse("fixed").unwrap().bucket_ms, None);
        assert!(IndexPattern::parse("Twitter-%{+YYYY}").is_err());
        assert!(IndexPattern::parse("t-%{+YYYY.ww}").is_err());
        assert!(IndexPattern::parse("t-%{[user][name]}").is_err());
        assert!(IndexPattern::parse("t-%{+YYYY").is_err());
        assert!(IndexPattern::parse("_t").is_err());
    }

    #[test]
    fn name_cache_follows_buckets() {
        let p = IndexPattern::parse("t-%{+YYYYMMdd}").unwrap();
        let mut c = NameCache::default();
        let day = 86_400_000;
        assert_eq!(c.get(&p, 0), "t-19700101");
        assert_eq!(c.get(&p, day - 1), "t-19700101");
        assert_eq!(c.get(&p, day), "t-19700102");
        assert_eq!(c.get(&p, -1), "t-19691231");
        assert_eq!(c.get(&p, 5), "t-19700101");
        assert_eq!(c.entries.len(), 3);
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("twitter-*", "twitter-20261126"));
        assert!(!wildcard_match("twitter-*", "logs-20261126"));
        assert!(wildcard_match("*-2026*", "x-20261126"));
        assert!(wildcard_match("exact", "exact"));
        assert!(!wildcard_match("a*b*c", "abx"));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let c: ElasticsearchConfig =
            serde_json::from_str(r#"{"url":"http://127.0.0.1:9200"}"#).unwrap();
        assert_eq!(c.index, "twitter-%{+YYYYMMdd}");
        assert_eq!(c.bulk_max_bytes, ByteSize::mib(5));
        assert_eq!(c.template.total_fields_limit, 2000);
        assert!(c.template.enabled && c.retry_give_up.is_none());
        let c: ElasticsearchConfig = serde_json::from_str(
            r#"{"url":"u","index_time":"ingest","retry_give_up":"5m","bulk_max_bytes":"1 MiB",
                "template":{"refresh_interval":"30s","replicas":1}}"#,
        )
        .unwrap();
        assert_eq!(c.index_time, IndexTime::Ingest);
        assert_eq!(c.retry_give_up, Some(Duration::from_secs(300)));
        assert_eq!(c.template.refresh_interval, Some(Duration::from_secs(30)));
        assert_eq!(c.template.shards, 1);
        assert!(serde_json::from_str::<ElasticsearchConfig>(r#"{"url":"u","nope":1}"#).is_err());
        assert!(
            serde_json::from_str::<ElasticsearchConfig>(r#"{"url":"u","template":{"x":1}}"#)
                .is_err()
        );
    }

    #[test]
    fn template_merges_extra_mappings() {
        let t = TemplateConfig {
            extra_mappings: Some(
                r#"{"properties":{"user":{"properties":{"name":{"type":"text"}}},"text":{"type":"keyword"}},"dynamic":"true"}"#
                    .into(),
            ),
            refresh_interval: Some(Duration::from_secs(5)),
            ..TemplateConfig::default()
        };
        let b = template_body(&t).unwrap();
        let m = &b["template"]["mappings"];
        assert_eq!(
            m["properties"]["user"]["properties"]["name"]["type"],
            "text"
        );
        assert_eq!(
            m["properties"]["user"]["properties"]["id_str"]["type"],
            "keyword"
        );
        assert_eq!(m["properties"]["text"]["type"], "keyword");
        assert_eq!(m["dynamic"], "true");
        let s = &b["template"]["settings"]["index"];
        assert_eq!(s["mapping"]["total_fields"]["limit"], 2000);
        assert_eq!(s["number_of_replicas"], 0);
        assert_eq!(s["refresh_interval"], "5000ms");
        assert_eq!(b["index_patterns"], json!(["twitter-*"]));
        let bad = TemplateConfig {
            extra_mappings: Some("[1]".into()),
            ..TemplateConfig::default()
        };
        assert!(template_body(&bad).is_err());
    }

    /// A scripted stand-in for Elasticsearch: `GET /` and template calls succeed; each
    /// `_bulk` takes the next scripted reply, and once the script is used up every item
    /// succeeds. Records every `_bulk` body.
    mod fake {
        use std::collections::VecDeque;
        use std::sync::{Arc, Mutex};

        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        use tokio::net::TcpListener;

        pub enum Reply {
            Status(u16),
            /// Close the connection without answering.
            Reset,
            /// Per-item statuses.
            Items(Vec<u16>),
        }

        pub struct Fake {
            pub url: String,
            pub bodies: Arc<Mutex<Vec<String>>>,
        }

        pub async fn start(script: Vec<Reply>) -> Fake {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let script = Arc::new(Mutex::new(VecDeque::from(script)));
            let bodies = Arc::new(Mutex::new(Vec::new()));
            let recorded = bodies.clone();
            tokio::spawn(async move {
                loop {
                    let (sock, _) = listener.accept().await.unwrap();
                    let (script, bodies) = (script.clone(), recorded.clone());
                    tokio::spawn(async move {
                        let mut sock = BufReader::new(sock);
                        loop {
                            let mut head = String::new();
                            let mut len = 0usize;
                            loop {
                                let mut line = String::new();
                                if sock.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if let Some(v) =
                                    line.to_ascii_lowercase().strip_prefix("content-length:")
                                {
                                    len = v.trim().parse().unwrap();
                                }
                                if line == "\r\n" {
                                    break;
                                }
                                head.push_str(&line);
                            }
                            let mut body = vec![0; len];
                            sock.read_exact(&mut body).await.unwrap();
                            let body = String::from_utf8(body).unwrap();
                            let (status, answer) = if head.contains("/_bulk") {
                                let docs = body.lines().count() / 2;
                                bodies.lock().unwrap().push(body);
                                let reply = script.lock().unwrap().pop_front();
                                match reply {
                                    Some(Reply::Reset) => return,
                                    Some(Reply::Status(s)) => (s, r#"{"error":{"type":"scripted","reason":"scripted failure"},"status":0}"#.to_string()),
                                    Some(Reply::Items(st)) => (200, items(&st)),
                                    None => (200, items(&vec![201; docs])),
                                }
                            } else if head.starts_with("GET / ") {
                                (
                                    200,
                                    r#"{"version":{"number":"0.0.0","distribution":"fake"}}"#
                                        .into(),
                                )
                            } else {
                                (200, r#"{"acknowledged":true}"#.into())
                            };
                            let out = format!(
                                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                                answer.len()
                            );
                            sock.get_mut().write_all(out.as_bytes()).await.unwrap();
                        }
                    });
                }
            });
            Fake { url, bodies }
        }

        fn items(statuses: &[u16]) -> String {
            let items: Vec<String> = statuses
                .iter()
                .map(|&s| match s {
                    200..=299 => format!(r#"{{"index":{{"status":{s}}}}}"#),
                    _ => format!(
                        r#"{{"index":{{"status":{s},"error":{{"type":"e{s}","reason":"item failed"}}}}}}"#
                    ),
                })
                .collect();
            format!(r#"{{"errors":true,"items":[{}]}}"#, items.join(","))
        }
    }

    fn docs(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                key: None,
                value: format!(r#"{{"id_str":"{i}","text":"t"}}"#).into_bytes(),
                headers: Vec::new(),
                timestamp: Some(0),
            })
            .collect()
    }

    fn fake_config(url: &str) -> ElasticsearchConfig {
        ElasticsearchConfig {
            url: url.into(),
            concurrency: 1,
            retry_initial: Duration::from_millis(10),
            retry_max: Duration::from_millis(40),
            ..ElasticsearchConfig::default()
        }
    }

    fn ids_in(body: &str) -> Vec<String> {
        body.lines()
            .step_by(2)
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["index"]["_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_429_items_alone() {
        use fake::Reply::*;
        let f = fake::start(vec![
            Status(429),
            Status(503),
            Reset,
            Items(vec![201, 429, 201, 400, 503]),
        ])
        .await;
        let mut sink = ElasticsearchSink::connect(&fake_config(&f.url))
            .await
            .unwrap();
        let rejected = sink.write_records(&docs(5)).await.unwrap();
        assert_eq!(
            rejected,
            [Rejected {
                index: 3,
                reason: "e400: item failed".into()
            }]
        );
        let bodies = f.bodies.lock().unwrap();
        assert!(bodies.len() >= 5, "{}", bodies.len());
        assert_eq!(ids_in(&bodies[0]), ["0", "1", "2", "3", "4"]);
        assert!(bodies[0].starts_with(r#"{"index":{"_index":"twitter-19700101","_id":"0"}}"#));
        assert_eq!(ids_in(bodies.last().unwrap()), ["1", "4"]);
    }

    #[tokio::test]
    async fn give_up_fatal_statuses_and_413_splits() {
        use fake::Reply::*;
        let f = fake::start((0..1000).map(|_| Status(503)).collect()).await;
        let mut cfg = fake_config(&f.url);
        cfg.retry_give_up = Some(Duration::from_millis(200));
        let mut sink = ElasticsearchSink::connect(&cfg).await.unwrap();
        let t0 = Instant::now();
        let err = format!("{:#}", sink.write_records(&docs(3)).await.unwrap_err());
        assert!(err.contains("giving up") && err.contains("503"), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(2));

        let f = fake::start(vec![Status(401)]).await;
        let mut sink = ElasticsearchSink::connect(&fake_config(&f.url))
            .await
            .unwrap();
        let err = format!("{:#}", sink.write_records(&docs(3)).await.unwrap_err());
        assert!(
            err.contains("401") && err.contains("scripted failure"),
            "{err}"
        );

        let f = fake::start(vec![Status(413), Status(413), Status(413), Status(413)]).await;
        let mut sink = ElasticsearchSink::connect(&fake_config(&f.url))
            .await
            .unwrap();
        // 4 -> 413: halves; [0, 1] -> 413, [2, 3] -> 413: ones; [0] -> 413: too large alone.
        let rejected = sink.write_records(&docs(4)).await.unwrap();
        let bodies = f.bodies.lock().unwrap();
        let sizes: Vec<usize> = bodies.iter().map(|b| ids_in(b).len()).collect();
        assert_eq!(sizes, [4, 2, 2, 1, 1, 1, 1]);
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert_eq!(rejected[0].index, 0);
        assert!(rejected[0].reason.starts_with("request_entity_too_large"));
    }

    #[tokio::test]
    async fn requests_split_by_docs_and_bytes_and_spread_over_slots() {
        let f = fake::start(Vec::new()).await;
        let mut cfg = fake_config(&f.url);
        cfg.concurrency = 2;
        cfg.bulk_max_docs = 3;
        let mut sink = ElasticsearchSink::connect(&cfg).await.unwrap();
        // 4 documents, 2 slots: 2 + 2 rather than 3 + 1.
        assert!(sink.write_records(&docs(4)).await.unwrap().is_empty());
        // 10 documents: full requests of 3.
        assert!(sink.write_records(&docs(10)).await.unwrap().is_empty());
        let mut sizes: Vec<usize> = f
            .bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| ids_in(b).len())
            .collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [1, 2, 2, 3, 3, 3]);

        let f = fake::start(Vec::new()).await;
        let mut cfg = fake_config(&f.url);
        cfg.bulk_max_bytes = ByteSize::b(200);
        let mut sink = ElasticsearchSink::connect(&cfg).await.unwrap();
        let mut records = docs(6);
        records[2].value = format!(r#"{{"id_str":"2","text":"{}"}}"#, "x".repeat(300)).into_bytes();
        records[3].value = b"{\n  \"id_str\": \"3\"\n}".to_vec();
        assert!(sink.write_records(&records).await.unwrap().is_empty());
        let bodies = f.bodies.lock().unwrap();
        let split: Vec<Vec<String>> = bodies.iter().map(|b| ids_in(b)).collect();
        assert_eq!(
            split,
            [vec!["0", "1"], vec!["2"], vec!["3", "4"], vec!["5"]]
        );
        assert!(bodies.iter().all(|b| b.lines().count() % 2 == 0));
    }

    #[test]
    fn error_reasons_nest_causes() {
        let e: EsError = serde_json::from_value(json!({
            "type": "mapper_parsing_exception",
            "reason": "failed to parse field [created_at]",
            "caused_by": {"type": "illegal_argument_exception", "reason": "bad date"}
        }))
        .unwrap();
        assert_eq!(
            error_reason(Some(&e)),
            "mapper_parsing_exception: failed to parse field [created_at] (caused by: \
             illegal_argument_exception: bad date)"
        );
        assert_eq!(
            body_reason(br#"{"error":{"type":"x","reason":"y"},"status":500}"#),
            "x: y"
        );
        assert_eq!(body_reason(b"plain"), "plain");
    }
}
