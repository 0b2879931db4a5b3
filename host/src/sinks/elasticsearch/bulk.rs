//! Writing batches: `_bulk` requests built in reused buffers, sent `concurrency` at a time,
//! retried while the cluster is unavailable, with per-item failures returned for the dead
//! letter.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use elasticsearch::http::StatusCode;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::{BulkParts, Elasticsearch};
use serde::Deserialize;
use serde_json::Value;
use tokio::task::JoinSet;

use super::config::{ElasticsearchConfig, base_url};
use super::connection::secure;
use super::gather::Gathered;
use super::index::{IndexPattern, IndexTime, NameCache};
use super::response::{EsError, body_reason, error_reason};
use super::template::{put_template, wildcard_match};
use crate::event::{DeadLetter, Positions, Record, Rejected, StageOutput};
use crate::sinks::api::{Sink, SinkContext};
use crate::telemetry::{Probe, Readiness, RequestMetrics};
use crate::util::{Backoff, error_chain, excerpt, json_key};

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
    /// Longest a record waits for a fuller request; zero writes each batch as it comes.
    linger: Duration,
    gathered: Gathered,
    /// Records of earlier batches Elasticsearch rejected, for the dead letter.
    dead: Vec<DeadLetter>,
    /// `sinks.NAME`, named in those dead letters.
    stage: Arc<str>,
    /// Index names already formatted, by time bucket.
    names: NameCache,
    /// Request bodies handed back by finished requests, for reuse.
    spare: Vec<Vec<u8>>,
    /// Scratch for the document id found in a record.
    id: Vec<u8>,
    warned_no_id: bool,
    requests: RequestMetrics,
    readiness: Readiness,
    /// Pings the cluster while the sink is open, for `/ready`.
    _probe: Option<Probe>,
}

impl fmt::Debug for ElasticsearchSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElasticsearchSink")
            .field("url", &self.url)
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Sink for ElasticsearchSink {
    /// Without `linger`, returns once Elasticsearch indexed or rejected each record. With it,
    /// gathers the records until they fill every request slot, or the oldest has waited
    /// `linger` ([`Sink::tick`]); their rejections come through [`Sink::take_dead`].
    async fn write(
        &mut self,
        out: &StageOutput,
        positions: &Positions,
    ) -> anyhow::Result<Vec<Rejected>> {
        if self.linger.is_zero() {
            return self.write_records(&out.records).await;
        }
        self.gathered.add(out, positions);
        let docs = self.max_docs.saturating_mul(self.concurrency);
        if self
            .gathered
            .reaches(docs, self.max_bytes.saturating_mul(self.concurrency))
        {
            self.send_gathered().await?;
        }
        Ok(Vec::new())
    }

    fn holds(&self, stream: &str, last: u64) -> bool {
        self.gathered.holds(stream, last)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.gathered.due(self.linger)
    }

    async fn tick(&mut self) -> anyhow::Result<()> {
        if self
            .next_deadline()
            .is_some_and(|due| due <= Instant::now())
        {
            self.send_gathered().await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        self.send_gathered().await
    }

    fn take_dead(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead)
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
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(parsed))
            .timeout(cfg.request_timeout)
            .request_body_compression(cfg.compress_requests)
            .enable_meta_header(false);
        let transport = secure(cfg, transport)?
            .build()
            .with_context(|| format!("elasticsearch sink: building the HTTP client for {url}"))?;
        let client = Elasticsearch::new(transport);

        let info = match client.info().send().await {
            Ok(info) => info,
            Err(e) => {
                let cause = error_chain(&e);
                bail!(
                    "Elasticsearch at {url} did not answer: {cause}{}",
                    tls_hint(&cause)
                );
            }
        };
        let status = info.status_code();
        if !status.is_success() {
            let body = info.text().await.unwrap_or_default();
            let hint = match status.as_u16() {
                401 => {
                    " (the cluster refused the credentials: check `api_key_env` or \
                     `api_key_file`, or `username` and `password_env` or `password_file`)"
                }
                403 => " (the credentials are valid but lack the privileges the sink needs)",
                _ => "",
            };
            bail!(
                "Elasticsearch at {url} answered HTTP {status} to GET /: {}{hint}",
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
            linger: cfg.linger,
            gathered: Gathered::default(),
            dead: Vec::new(),
            stage: "sinks.elasticsearch".into(),
            names: NameCache::default(),
            spare: Vec::new(),
            id: Vec::with_capacity(64),
            warned_no_id: false,
            requests: RequestMetrics::default(),
            readiness: Readiness::default(),
            _probe: None,
        })
    }

    /// Reports requests and readiness as `cx.stage`; the cluster is pinged every 2 s so an
    /// outage shows while no batch is being written.
    pub fn observe(&mut self, cx: &SinkContext) {
        self.stage = cx.stage.clone();
        self.requests = cx.telemetry.requests(&cx.stage, "bulk");
        self.readiness = cx
            .telemetry
            .readiness(&cx.stage, "connecting to Elasticsearch");
        let (client, url) = (self.client.clone(), self.url.clone());
        let every = Duration::from_secs(2);
        self._probe = Some(Probe::spawn(self.readiness.clone(), every, move || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                match client.ping().send().await {
                    Ok(r) if r.status_code().is_success() => Ok(()),
                    Ok(r) => Err(format!(
                        "Elasticsearch at {url} answered HTTP {}",
                        r.status_code()
                    )),
                    Err(e) => Err(format!("Elasticsearch at {url}: {}", error_chain(&e))),
                }
            }
        }));
    }

    /// Indexes every record; returns once each is either acknowledged by Elasticsearch or
    /// rejected ([`Rejected`]: per item, with Elasticsearch's reason, or all that were left
    /// when `retry_give_up` ran out, with the last error). Transient failures are retried with
    /// backoff while the records stay in memory (only this batch); an `Err` means the sink
    /// failed: the server refused the request as a whole for a reason retrying cannot fix
    /// (authentication, a malformed request).
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
                    let requests = self.requests.clone();
                    in_flight.spawn(send_bulk(self.client.clone(), body, docs, requests));
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
            self.requests.retries.inc();
            self.readiness
                .not_ready(format!("Elasticsearch at {}: {reason}", self.url));
            let since = *failing_since.get_or_insert_with(Instant::now);
            let mut wait = waits.next_wait();
            if let Some(give_up) = self.retry_give_up {
                let spent = since.elapsed();
                if spent >= give_up {
                    // On purpose: the documents go to the dead letter and the pipeline goes on.
                    let why = format!(
                        "Elasticsearch at {}: gave up after {} of failures (retry_give_up); \
                         last error: {reason}",
                        self.url,
                        humantime::format_duration(round_ms(spent)),
                    );
                    tracing::error!("{why}; {} documents dead-lettered", pending.len());
                    rejected.extend(pending.iter().map(|&index| Rejected {
                        index,
                        reason: why.clone(),
                    }));
                    pending.clear();
                    break;
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

    /// Writes what was gathered; what Elasticsearch rejected goes to the dead letter. On an
    /// `Err` the records stay gathered (and held).
    async fn send_gathered(&mut self) -> anyhow::Result<()> {
        if self.gathered.is_empty() {
            return Ok(());
        }
        let gathered = std::mem::take(&mut self.gathered);
        let rejected = match self.write_records(&gathered.records).await {
            Ok(rejected) => rejected,
            Err(e) => {
                self.gathered = gathered;
                return Err(e);
            }
        };
        // `rejected` is in record order.
        let mut rejected = rejected.into_iter().peekable();
        let gathered = gathered.records.into_iter().zip(gathered.origins);
        for (i, (record, origin)) in gathered.enumerate() {
            if let Some(r) = rejected.next_if(|r| r.index == i) {
                self.dead.push(DeadLetter {
                    record,
                    stage: self.stage.clone(),
                    reason: r.reason,
                    origin,
                });
            }
        }
        Ok(())
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

/// What to check when the TLS handshake failed (rustls names the cause, not the setting).
fn tls_hint(cause: &str) -> &'static str {
    if cause.contains("NotValidForName") || cause.contains("not valid for name") {
        " (the cluster's certificate does not name the host in `url`)"
    } else if cause.contains("UnknownIssuer") || cause.contains("certificate") {
        " (check `ca_file`: it must hold the CA that signed the cluster's certificate)"
    } else {
        ""
    }
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

const BULK_FILTER: &[&str] = &["errors", "items.*.status", "items.*.error"];

/// Sends one body; hands the body and document list back for reuse and bookkeeping.
async fn send_bulk(
    client: Elasticsearch,
    body: Vec<u8>,
    docs: Vec<usize>,
    requests: RequestMetrics,
) -> (Vec<u8>, Vec<usize>, Outcome) {
    let started = std::time::Instant::now();
    let outcome = bulk_outcome(&client, &body).await;
    requests.observe(matches!(outcome, Outcome::Items(_)), started.elapsed());
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

#[cfg(test)]
mod tests {
    use bytesize::ByteSize;

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
        let rejected = sink.write_records(&docs(3)).await.unwrap();
        assert_eq!(
            rejected.iter().map(|r| r.index).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let reason = &rejected[0].reason;
        assert!(
            reason.contains("gave up after") && reason.contains("503"),
            "{reason}"
        );
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
}
