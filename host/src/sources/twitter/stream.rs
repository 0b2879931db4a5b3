//! The stream connection: connecting, reading the chunked body into lines and records, stall
//! detection, and what happens on a disconnect ([`TwitterSource`]).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use reqwest::{Client, Response, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use super::backoff::{Backoffs, Failure, body_excerpt, rate_limit_reset};
use super::config::{STREAM_PATH, TwitterConfig};
use super::rules::Rules;
use crate::event::{Header, Record};
use crate::sources::dedup::RecentKeys;
use crate::telemetry::{Readiness, StreamMetrics};
use crate::util::error_chain;

/// Header carrying the tags of the rules a tweet matched, joined by `,` (a rule without a tag
/// contributes its id).
pub const MATCHING_RULES_HEADER: &str = "twitter.matching_rules";
/// Header set (to `true`) on the record made of an incomplete last line of a dropped connection.
pub const PARTIAL_HEADER: &str = "twitter.partial";

/// A line longer than this without a newline is emitted as it is (marked partial).
const MAX_LINE_BYTES: usize = 16 << 20;
/// Entries kept in [`TwitterStats::backoffs`] and [`TwitterStats::disconnect_reasons`].
const HISTORY: usize = 64;

/// Counters of a [`TwitterSource`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TwitterStats {
    /// Stream requests sent.
    pub connect_attempts: u64,
    /// Stream requests answered with the stream (HTTP 200).
    pub connects: u64,
    /// Successful connects after the first.
    pub reconnects: u64,
    /// Established connections that ended (dropped, ended, stalled).
    pub disconnects: u64,
    /// Records emitted (tweet lines, including lines that are not JSON).
    pub tweets: u64,
    /// Keep-alive (blank) lines.
    pub keepalives: u64,
    /// Connections dropped because nothing arrived within `stall_timeout`.
    pub stalls: u64,
    /// Connects that failed below HTTP (refused, reset, TLS, timeout).
    pub network_errors: u64,
    /// Connects answered with an HTTP error other than 429.
    pub http_errors: u64,
    /// Connects answered with 429.
    pub rate_limited: u64,
    /// Error messages (`{"errors": …}` without `data`) received on the stream.
    pub stream_errors: u64,
    /// Lines (records) that are not JSON.
    pub non_json_lines: u64,
    /// Incomplete last lines of dropped connections, emitted with [`PARTIAL_HEADER`].
    pub partial_lines: u64,
    /// Tweets dropped because their id was among the recent ones (a backfill's overlap).
    pub duplicates: u64,
    /// Rules changes made at start.
    pub rules_kept: usize,
    pub rules_added: usize,
    pub rules_deleted: usize,
    /// The last wait before a reconnect (zero: reconnected at once).
    pub last_backoff: Option<Duration>,
    /// The most recent waits before reconnects, oldest first (at most 64).
    pub backoffs: Vec<Duration>,
    /// Why connections ended or connects failed, oldest first (at most 64): a stall is often
    /// followed by a 429 `TooManyConnections` while Twitter still holds the stalled connection.
    pub disconnect_reasons: Vec<String>,
}

struct Connection {
    response: Response,
    last_data: Instant,
    bytes: u64,
}

/// The filtered-stream source; see the docs of the `twitter` module.
pub struct TwitterSource {
    cfg: TwitterConfig,
    client: Client,
    token: String,
    stream_url: Url,
    conn: Option<Connection>,
    /// While disconnected: when to try again (`None`: now).
    retry_at: Option<Instant>,
    backoff: Backoffs,
    /// Bytes of an incomplete line.
    partial: Vec<u8>,
    ready: VecDeque<Record>,
    recent: RecentKeys,
    /// A fatal error: returned by every later `next_batch` once the ready records are out.
    fatal: Option<String>,
    stats: TwitterStats,
    metrics: StreamMetrics,
    readiness: Readiness,
}

impl std::fmt::Debug for TwitterSource {
    // The token stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwitterSource")
            .field("base_url", &self.cfg.base_url)
            .field("connected", &self.conn.is_some())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl TwitterSource {
    /// Reads the token, checks the options and reconciles the stream rules. The stream itself is
    /// opened by the first [`next_batch`](Self::next_batch).
    pub async fn connect(cfg: &TwitterConfig) -> anyhow::Result<Self> {
        cfg.validate()?;
        let name = &cfg.bearer_token_env;
        let token = match std::env::var(name) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            Ok(_) => bail!(
                "twitter source: the bearer token environment variable {name} is set but empty"
            ),
            Err(std::env::VarError::NotPresent) => bail!(
                "twitter source: the bearer token environment variable {name} is not set \
                 (the token is read from the environment, never from the pipeline file)"
            ),
            Err(std::env::VarError::NotUnicode(_)) => {
                bail!("twitter source: the bearer token environment variable {name} is not UTF-8")
            }
        };
        let client = Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("twitter source: building the HTTP client")?;
        let mut source = TwitterSource {
            stream_url: cfg.stream_url()?,
            cfg: cfg.clone(),
            client,
            token,
            conn: None,
            retry_at: None,
            backoff: Backoffs::default(),
            partial: Vec::new(),
            ready: VecDeque::new(),
            recent: RecentKeys::new(cfg.dedup_window),
            fatal: None,
            stats: TwitterStats::default(),
            metrics: StreamMetrics::default(),
            readiness: Readiness::default(),
        };
        let rules = Rules {
            cfg: &source.cfg,
            client: &source.client,
            token: &source.token,
        }
        .reconcile()
        .await?;
        source.stats.rules_kept = rules.kept;
        source.stats.rules_deleted = rules.deleted;
        source.stats.rules_added = rules.added;
        Ok(source)
    }

    /// Reports reconnects, stalls and readiness (connected or not, and why).
    pub fn observe(&mut self, metrics: StreamMetrics, readiness: Readiness) {
        self.metrics = metrics;
        self.readiness = readiness;
    }

    /// Up to `max` records, or whatever arrived within `wait` (possibly none). Transient
    /// failures are logged and retried with backoff inside; only fatal ones (401/403, a
    /// rejected request) are errors, returned once the records before them are out.
    pub async fn next_batch(&mut self, max: usize, wait: Duration) -> anyhow::Result<Vec<Record>> {
        let max = max.max(1);
        let deadline = Instant::now() + wait;
        while self.ready.len() < max && self.fatal.is_none() {
            let now = Instant::now();
            match self.conn.as_mut() {
                None => {
                    let at = self.retry_at.unwrap_or(now);
                    if at > deadline {
                        tokio::time::sleep_until(deadline).await;
                        break;
                    }
                    tokio::time::sleep_until(at).await;
                    self.open().await;
                }
                Some(conn) => {
                    if now >= deadline {
                        break;
                    }
                    let stall_at = conn.last_data + self.cfg.stall_timeout;
                    let read =
                        tokio::time::timeout_at(stall_at.min(deadline), conn.response.chunk());
                    match read.await {
                        Ok(Ok(Some(chunk))) => {
                            conn.last_data = Instant::now();
                            conn.bytes += chunk.len() as u64;
                            self.feed(&chunk);
                        }
                        Ok(Ok(None)) => {
                            self.disconnect("the server ended the stream".into(), false)
                        }
                        Ok(Err(e)) => {
                            self.disconnect(format!("read error: {}", error_chain(&e)), false)
                        }
                        Err(_) if Instant::now() >= stall_at => {
                            let why = format!(
                                "stalled: no data or keep-alive for {}",
                                humantime::format_duration(self.cfg.stall_timeout)
                            );
                            self.disconnect(why, true);
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        let n = self.ready.len().min(max);
        let out: Vec<Record> = self.ready.drain(..n).collect();
        if out.is_empty()
            && let Some(msg) = &self.fatal
        {
            return Err(anyhow!("{msg}"));
        }
        Ok(out)
    }

    /// Counters so far.
    pub fn stats(&self) -> TwitterStats {
        self.stats.clone()
    }

    /// Opens the stream, or schedules the next attempt (or records a fatal error).
    async fn open(&mut self) {
        self.stats.connect_attempts += 1;
        let request = self
            .client
            .get(self.stream_url.clone())
            .bearer_auth(&self.token)
            .send();
        // A server that accepts the connection but never answers counts as stalled.
        let response = match tokio::time::timeout(self.cfg.stall_timeout, request).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return self.connect_failed(Failure::Network, error_chain(&e)),
            Err(_) => {
                return self
                    .connect_failed(Failure::Network, "no response within stall_timeout".into());
            }
        };
        let status = response.status();
        if status.is_success() {
            self.stats.connects += 1;
            if self.stats.connects > 1 {
                self.stats.reconnects += 1;
            }
            self.backoff.http.reset();
            self.backoff.rate.reset();
            self.retry_at = None;
            tracing::info!(
                connects = self.stats.connects,
                tweets = self.stats.tweets,
                "twitter stream connected"
            );
            self.readiness.ready();
            self.conn = Some(Connection {
                response,
                last_data: Instant::now(),
                bytes: 0,
            });
            return;
        }
        let reset_at = rate_limit_reset(response.headers());
        let body = body_excerpt(response).await;
        let what = format!("HTTP {status} from {STREAM_PATH}: {body}");
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                self.fatal = Some(format!(
                    "twitter source: {what} (the bearer token in ${} was rejected)",
                    self.cfg.bearer_token_env
                ));
            }
            StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => {
                self.fatal = Some(format!(
                    "twitter source: {what} (check `base_url` and the field and expansion lists)"
                ));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                self.connect_failed(Failure::RateLimited { reset_at }, what)
            }
            _ => self.connect_failed(Failure::Http, what),
        }
        if let Some(msg) = &self.fatal {
            tracing::error!("{msg}");
            self.readiness.not_ready(msg.clone());
        }
    }

    fn connect_failed(&mut self, failure: Failure, why: String) {
        let reason = match failure {
            Failure::Network => {
                self.stats.network_errors += 1;
                "network"
            }
            Failure::Http => {
                self.stats.http_errors += 1;
                "http_error"
            }
            Failure::RateLimited { .. } => {
                self.stats.rate_limited += 1;
                "rate_limited"
            }
        };
        self.metrics.reconnect(reason);
        self.readiness
            .not_ready(format!("Twitter stream not connected: {why}"));
        let wait = self
            .backoff
            .next(failure, self.cfg.backoff_scale, self.cfg.max_backoff);
        tracing::warn!(
            tweets = self.stats.tweets,
            "twitter stream connect failed: {why}; retrying in {}",
            humantime::format_duration(wait)
        );
        push_bounded(&mut self.stats.disconnect_reasons, why);
        self.schedule(wait);
    }

    /// Ends the open connection: at once if it had delivered anything (Twitter's guidance),
    /// after a network backoff otherwise.
    fn disconnect(&mut self, why: String, stalled: bool) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        drop(conn.response);
        self.stats.disconnects += 1;
        if stalled {
            self.stats.stalls += 1;
            self.metrics.stalls.inc();
        }
        self.metrics
            .reconnect(if stalled { "stalled" } else { "dropped" });
        self.readiness
            .not_ready(format!("Twitter stream disconnected: {why}"));
        if !self.partial.is_empty() {
            tracing::warn!(
                bytes = self.partial.len(),
                "twitter stream: the connection ended inside a line; emitting it marked partial"
            );
            self.emit_partial();
        }
        let wait = if conn.bytes > 0 {
            self.backoff.network.reset();
            Duration::ZERO
        } else {
            self.stats.network_errors += 1;
            self.backoff.next(
                Failure::Network,
                self.cfg.backoff_scale,
                self.cfg.max_backoff,
            )
        };
        tracing::warn!(
            tweets = self.stats.tweets,
            connects = self.stats.connects,
            "twitter stream disconnected: {why}; {} tweets received so far; reconnecting in {}",
            self.stats.tweets,
            humantime::format_duration(wait)
        );
        push_bounded(&mut self.stats.disconnect_reasons, why);
        self.schedule(wait);
    }

    fn schedule(&mut self, wait: Duration) {
        self.stats.last_backoff = Some(wait);
        push_bounded(&mut self.stats.backoffs, wait);
        self.retry_at = Some(Instant::now() + wait);
    }

    /// Splits received bytes into lines; an incomplete last line waits for the next chunk.
    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n') {
            let (line, rest) = bytes.split_at(pos);
            bytes = &rest[1..];
            if self.partial.is_empty() {
                self.line(line);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.line(&whole);
            }
        }
        self.partial.extend_from_slice(bytes);
        if self.partial.len() > MAX_LINE_BYTES {
            tracing::warn!(
                bytes = self.partial.len(),
                "twitter stream: line longer than {MAX_LINE_BYTES} bytes; emitting it as it is"
            );
            self.emit_partial();
        }
    }

    fn emit_partial(&mut self) {
        let line = std::mem::take(&mut self.partial);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.stats.partial_lines += 1;
        let mut record = self.record(&line);
        record.headers.push(Header {
            key: PARTIAL_HEADER.to_string(),
            value: b"true".to_vec(),
        });
        self.push(record);
    }

    /// One complete line (without its `\n`).
    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            self.stats.keepalives += 1;
            return;
        }
        let record = self.record(line);
        if record.key.is_none() && is_error_message(line) {
            self.stats.stream_errors += 1;
            tracing::warn!(
                "twitter stream sent an error message: {}",
                String::from_utf8_lossy(&line[..line.len().min(1000)])
            );
            return;
        }
        self.push(record);
    }

    fn push(&mut self, record: Record) {
        if record
            .key
            .as_deref()
            .is_some_and(|k| self.recent.repeated(k))
        {
            self.stats.duplicates += 1;
            self.metrics.duplicates.inc();
            return;
        }
        self.stats.tweets += 1;
        self.ready.push_back(record);
    }

    /// The record of a payload line: key = `data.id`, timestamp = `data.created_at` (else now),
    /// header [`MATCHING_RULES_HEADER`]. A line that is not JSON still becomes a record.
    fn record(&mut self, line: &[u8]) -> Record {
        let mut record = Record {
            key: None,
            value: line.to_vec(),
            headers: Vec::new(),
            timestamp: None,
        };
        match serde_json::from_slice::<Envelope>(line) {
            Ok(env) => {
                if let Some(data) = env.data {
                    record.key = data.id.map(|id| id.as_bytes().to_vec());
                    record.timestamp = data.created_at.and_then(|c| {
                        chrono::DateTime::parse_from_rfc3339(&c)
                            .ok()
                            .map(|t| t.timestamp_millis())
                    });
                }
                if !env.matching_rules.is_empty() {
                    let tags: Vec<&str> = env
                        .matching_rules
                        .iter()
                        .filter_map(|r| r.tag.as_deref().or(r.id.as_deref()))
                        .collect();
                    record.headers.push(Header {
                        key: MATCHING_RULES_HEADER.to_string(),
                        value: tags.join(",").into_bytes(),
                    });
                }
            }
            Err(_) => self.stats.non_json_lines += 1,
        }
        record.timestamp = record.timestamp.or_else(|| Some(now_ms()));
        record
    }
}

/// The parts of a stream payload the source reads; everything else passes through untouched.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    data: Option<TweetData<'a>>,
    #[serde(borrow, default)]
    matching_rules: Vec<MatchingRule<'a>>,
}

#[derive(Deserialize)]
struct TweetData<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    created_at: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MatchingRule<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tag: Option<Cow<'a, str>>,
}

/// `{"errors": …}` without `data`: a message from the stream, not a tweet.
fn is_error_message(line: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(m)) => m.contains_key("errors") && !m.contains_key("data"),
        _ => false,
    }
}

/// Appends to a history of at most [`HISTORY`] entries, dropping the oldest.
fn push_bounded<T>(history: &mut Vec<T>, entry: T) {
    if history.len() == HISTORY {
        history.remove(0);
    }
    history.push(entry);
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare() -> TwitterSource {
        let cfg = TwitterConfig {
            keywords: vec!["bts".into()],
            ..TwitterConfig::default()
        };
        TwitterSource {
            stream_url: cfg.stream_url().unwrap(),
            cfg,
            client: Client::new(),
            token: String::new(),
            conn: None,
            retry_at: None,
            backoff: Backoffs::default(),
            partial: Vec::new(),
            ready: VecDeque::new(),
            recent: RecentKeys::new(10),
            fatal: None,
            stats: TwitterStats::default(),
            metrics: StreamMetrics::default(),
            readiness: Readiness::default(),
        }
    }

    const TWEET: &[u8] = br#"{"data":{"id":"1","created_at":"2026-11-26T00:00:00.000Z"},"matching_rules":[{"id":"9","tag":"bts"},{"id":"8"}]}"#;

    fn body() -> Vec<u8> {
        let mut b = TWEET.to_vec();
        b.extend_from_slice(b"\r\n\r\nnot json\r\n");
        b.extend_from_slice(br#"{"errors":[{"title":"operational-disconnect"}]}"#);
        b.extend_from_slice(b"\r\n");
        b.extend_from_slice(br#"{"data":{"id":"2"}}"#);
        b.push(b'\n');
        b
    }

    #[test]
    fn lines_are_reassembled_across_any_chunk_boundaries() {
        let body = body();
        for i in 0..=body.len() {
            for j in [i, (i + 7).min(body.len()), body.len()] {
                let mut src = bare();
                src.feed(&body[..i]);
                src.feed(&body[i..j]);
                src.feed(&body[j..]);
                let s = src.stats();
                assert_eq!(
                    (s.tweets, s.keepalives, s.stream_errors),
                    (3, 1, 1),
                    "split {i}/{j}"
                );
                assert!(src.partial.is_empty());
                let r: Vec<Record> = src.ready.drain(..).collect();
                assert_eq!(r[0].value, TWEET);
                assert_eq!(r[0].key.as_deref(), Some(&b"1"[..]));
                assert_eq!(r[0].timestamp, Some(1_795_651_200_000));
                assert_eq!(r[0].headers[0].key, MATCHING_RULES_HEADER);
                assert_eq!(r[0].headers[0].value, b"bts,8");
                assert_eq!(r[1].value, b"not json");
                assert!(r[1].key.is_none() && r[1].timestamp.is_some());
                assert_eq!(r[2].key.as_deref(), Some(&b"2"[..]));
                assert!(r[2].headers.is_empty() && r[2].timestamp.is_some());
            }
        }
    }

    #[test]
    fn a_tweet_sent_again_by_a_backfill_is_dropped_once_counted() {
        let mut src = bare();
        src.feed(&body());
        src.feed(&body());
        let s = src.stats();
        // The second body: tweets 1 and 2 are repeats; the keyless line is not.
        assert_eq!((s.tweets, s.duplicates), (4, 2));
        let keys: Vec<_> = src.ready.iter().map(|r| r.key.clone()).collect();
        assert_eq!(keys.iter().filter(|k| k.is_some()).count(), 2);
    }

    #[test]
    fn an_unfinished_line_is_emitted_marked_partial() {
        let mut src = bare();
        src.feed(&TWEET[..20]);
        assert!(src.ready.is_empty());
        src.emit_partial();
        let s = src.stats();
        assert_eq!((s.tweets, s.partial_lines, s.non_json_lines), (1, 1, 1));
        let r = src.ready.pop_front().unwrap();
        assert_eq!(r.value, &TWEET[..20]);
        assert!(r.headers.iter().any(|h| h.key == PARTIAL_HEADER));
    }
}
