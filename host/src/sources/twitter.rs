//! Twitter API v2 filtered-stream source.
//!
//! At start the source reconciles the stream rules with the configured keywords (one rule per
//! keyword, `value = tag = keyword`): rules that are not wanted are deleted, missing ones added,
//! the others kept, so starting twice changes nothing. It then holds one long-lived
//! `GET /2/tweets/search/stream` connection and reads its chunked body incrementally: every
//! non-blank line is one record whose value is the line exactly as received (the full v2 payload:
//! `data`, `includes`, `matching_rules`), keyed by the tweet id. Blank lines are the server's
//! keep-alives (about every 20 s).
//!
//! Failures follow Twitter's reconnect guidance: after an established connection drops, reconnect
//! at once; a connect that fails at the network level backs off linearly (250 ms steps up to 16 s),
//! an HTTP error exponentially (5 s doubling up to 320 s), a 429 exponentially from one minute
//! (and at least until `x-rate-limit-reset`). A connection on which nothing, not even a keep-alive,
//! arrives for `stall_timeout` (90 s) is dropped and reopened. 401/403 (and 400/404, which mean a
//! wrong base URL or field list) are fatal. Every disconnect is logged with its reason and the
//! count of tweets received so far, and counted in [`TwitterStats`].
//!
//! The bearer token is read from the environment variable named by `bearer_token_env`, never from
//! the pipeline file.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, Method, Response, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::event::{Header, Record};
use crate::sources::api::{Batch, Source, SourceContext, SourceSettings};
use crate::util::{Backoff, Invalid, error_chain, excerpt};

/// Header carrying the tags of the rules a tweet matched, joined by `,` (a rule without a tag
/// contributes its id).
pub const MATCHING_RULES_HEADER: &str = "twitter.matching_rules";
/// Header set (to `true`) on the record made of an incomplete last line of a dropped connection.
pub const PARTIAL_HEADER: &str = "twitter.partial";

const STREAM_PATH: &str = "/2/tweets/search/stream";
const RULES_PATH: &str = "/2/tweets/search/stream/rules";
/// Longest rule the API accepts at the basic level.
const MAX_RULE_LEN: usize = 512;
/// A line longer than this without a newline is emitted as it is (marked partial).
const MAX_LINE_BYTES: usize = 16 << 20;
/// Attempts of one rules request before start-up fails.
const RULES_ATTEMPTS: u32 = 5;
/// Backoff history kept in [`TwitterStats::backoffs`].
const BACKOFF_HISTORY: usize = 64;

/// `[source] type = "twitter"` options.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwitterConfig {
    /// API root; point it at a local simulator in tests.
    pub base_url: String,
    /// Name of the environment variable that holds the bearer token.
    pub bearer_token_env: String,
    /// Each keyword becomes one stream rule with `value = tag = keyword` (any rule expression
    /// works, e.g. `bts lang:en`).
    pub keywords: Vec<String>,
    /// `tweet.fields` of the stream request.
    pub tweet_fields: Vec<String>,
    /// `expansions` of the stream request.
    pub expansions: Vec<String>,
    /// `user.fields` of the stream request.
    pub user_fields: Vec<String>,
    /// `media.fields` of the stream request.
    pub media_fields: Vec<String>,
    /// `place.fields` of the stream request.
    pub place_fields: Vec<String>,
    /// `poll.fields` of the stream request.
    pub poll_fields: Vec<String>,
    /// A connection on which nothing (not even a keep-alive) arrives for this long is reopened.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// TCP/TLS connect timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Timeout of one rules request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Multiplies every documented backoff (tests use e.g. 0.01); 1.0 in production.
    pub backoff_scale: f64,
    /// No single wait between reconnects is longer than this.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Default for TwitterConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.twitter.com".to_string(),
            bearer_token_env: "TWITTER_BEARER_TOKEN".to_string(),
            keywords: Vec::new(),
            tweet_fields: strings(&[
                "attachments",
                "author_id",
                "context_annotations",
                "conversation_id",
                "created_at",
                "edit_controls",
                "entities",
                "geo",
                "in_reply_to_user_id",
                "lang",
                "note_tweet",
                "possibly_sensitive",
                "public_metrics",
                "referenced_tweets",
                "reply_settings",
                "source",
                "withheld",
            ]),
            expansions: strings(&[
                "author_id",
                "referenced_tweets.id",
                "referenced_tweets.id.author_id",
                "in_reply_to_user_id",
                "attachments.media_keys",
                "attachments.poll_ids",
                "geo.place_id",
                "entities.mentions.username",
                "edit_history_tweet_ids",
            ]),
            user_fields: strings(&[
                "created_at",
                "description",
                "entities",
                "location",
                "name",
                "pinned_tweet_id",
                "profile_image_url",
                "protected",
                "public_metrics",
                "url",
                "username",
                "verified",
                "verified_type",
                "withheld",
            ]),
            media_fields: strings(&[
                "alt_text",
                "duration_ms",
                "height",
                "media_key",
                "preview_image_url",
                "public_metrics",
                "type",
                "url",
                "variants",
                "width",
            ]),
            place_fields: strings(&[
                "contained_within",
                "country",
                "country_code",
                "full_name",
                "geo",
                "id",
                "name",
                "place_type",
            ]),
            poll_fields: strings(&[
                "duration_minutes",
                "end_datetime",
                "id",
                "options",
                "voting_status",
            ]),
            stall_timeout: Duration::from_secs(90),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            backoff_scale: 1.0,
            max_backoff: Duration::from_secs(15 * 60),
        }
    }
}

impl TwitterConfig {
    /// Checks the options; the error names the offending key.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.keywords.iter().all(|k| k.trim().is_empty()) {
            return Err(Invalid::new(
                "keywords",
                "is empty: the stream would deliver nothing",
            ));
        }
        if let Some(k) = self.keywords.iter().find(|k| k.trim().len() > MAX_RULE_LEN) {
            return Err(Invalid::new(
                "keywords",
                format!("{k:?} is longer than {MAX_RULE_LEN} characters"),
            ));
        }
        Invalid::non_empty("bearer_token_env", &self.bearer_token_env)?;
        if !(self.backoff_scale.is_finite() && self.backoff_scale > 0.0) {
            return Err(Invalid::new(
                "backoff_scale",
                format!("must be a positive number, got {}", self.backoff_scale),
            ));
        }
        if self.stall_timeout.is_zero() {
            return Err(Invalid::new("stall_timeout", "must be more than zero"));
        }
        if let Err(e) = Url::parse(&self.base_url) {
            return Err(Invalid::new(
                "base_url",
                format!("{:?} is not a URL: {e}", self.base_url),
            ));
        }
        Ok(())
    }

    /// The configured keywords, trimmed, without blanks and duplicates, in order.
    fn wanted_rules(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for k in &self.keywords {
            let k = k.trim();
            if !k.is_empty() && !out.iter().any(|o| o == k) {
                out.push(k.to_string());
            }
        }
        out
    }

    fn url(&self, path: &str) -> anyhow::Result<Url> {
        let base = self.base_url.trim_end_matches('/');
        Url::parse(&format!("{base}{path}")).with_context(|| {
            format!(
                "twitter source: `base_url` {:?} is not a URL",
                self.base_url
            )
        })
    }

    fn stream_url(&self) -> anyhow::Result<Url> {
        let mut url = self.url(STREAM_PATH)?;
        {
            let mut q = url.query_pairs_mut();
            for (name, list) in [
                ("tweet.fields", &self.tweet_fields),
                ("expansions", &self.expansions),
                ("user.fields", &self.user_fields),
                ("media.fields", &self.media_fields),
                ("place.fields", &self.place_fields),
                ("poll.fields", &self.poll_fields),
            ] {
                if !list.is_empty() {
                    q.append_pair(name, &list.join(","));
                }
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }
}

impl SourceSettings for TwitterConfig {
    fn validate(&self) -> Result<(), Invalid> {
        TwitterConfig::validate(self)
    }

    fn open(&self, cx: &SourceContext) -> anyhow::Result<Box<dyn Source>> {
        Ok(Box::new(LazyStream {
            config: self.clone(),
            stream: None,
            batch: cx.batch_size,
            wait: cx.batch_timeout,
        }))
    }
}

/// The stream, connected on the first read so that `host check` and start-up errors of other
/// stages do not touch the API.
struct LazyStream {
    config: TwitterConfig,
    stream: Option<TwitterSource>,
    batch: usize,
    wait: Duration,
}

#[async_trait::async_trait]
impl Source for LazyStream {
    /// A stream never ends: an empty batch means nothing arrived within the batch timeout.
    async fn next_batch(&mut self) -> anyhow::Result<Option<Batch>> {
        let stream = match &mut self.stream {
            Some(s) => s,
            None => self
                .stream
                .insert(TwitterSource::connect(&self.config).await?),
        };
        Ok(Some(Batch::of(
            stream.next_batch(self.batch, self.wait).await?,
        )))
    }
}

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
    /// Rules changes made at start.
    pub rules_kept: usize,
    pub rules_added: usize,
    pub rules_deleted: usize,
    /// The last wait before a reconnect (zero: reconnected at once).
    pub last_backoff: Option<Duration>,
    /// The most recent waits before reconnects, oldest first (at most 64).
    pub backoffs: Vec<Duration>,
    /// Why the last connection ended or the last connect failed.
    pub last_disconnect: Option<String>,
}

/// What made a connect fail; each kind has its own backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Network,
    Http,
    RateLimited { reset_at: Option<u64> },
}

/// Reconnect waits as Twitter documents them, scaled by `backoff_scale`, capped by `max_backoff`.
#[derive(Debug)]
struct Backoffs {
    network: Backoff,
    http: Backoff,
    rate: Backoff,
}

impl Default for Backoffs {
    fn default() -> Self {
        Self {
            network: Backoff::linear(Duration::from_millis(250), Duration::from_secs(16)),
            http: Backoff::doubling(Duration::from_secs(5), Duration::from_secs(320)),
            rate: Backoff::doubling(Duration::from_secs(60), Duration::MAX),
        }
    }
}

impl Backoffs {
    fn next(&mut self, failure: Failure, scale: f64, max: Duration) -> Duration {
        let base = match failure {
            Failure::Network => self.network.next_wait(),
            Failure::Http => self.http.next_wait(),
            Failure::RateLimited { .. } => self.rate.next_wait(),
        };
        let mut wait = base.mul_f64(scale);
        if let Failure::RateLimited {
            reset_at: Some(reset),
        } = failure
        {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            wait = wait.max(Duration::from_secs(reset).saturating_sub(now));
        }
        wait.min(max)
    }
}

struct Connection {
    response: Response,
    last_data: Instant,
    bytes: u64,
}

/// The filtered-stream source; see the module docs.
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
    /// A fatal error: returned by every later `next_batch` once the ready records are out.
    fatal: Option<String>,
    stats: TwitterStats,
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
            fatal: None,
            stats: TwitterStats::default(),
        };
        source.reconcile_rules().await?;
        Ok(source)
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
        }
    }

    fn connect_failed(&mut self, failure: Failure, why: String) {
        match failure {
            Failure::Network => self.stats.network_errors += 1,
            Failure::Http => self.stats.http_errors += 1,
            Failure::RateLimited { .. } => self.stats.rate_limited += 1,
        }
        let wait = self
            .backoff
            .next(failure, self.cfg.backoff_scale, self.cfg.max_backoff);
        tracing::warn!(
            tweets = self.stats.tweets,
            "twitter stream connect failed: {why}; retrying in {}",
            humantime::format_duration(wait)
        );
        self.stats.last_disconnect = Some(why);
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
        }
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
        self.stats.last_disconnect = Some(why);
        self.schedule(wait);
    }

    fn schedule(&mut self, wait: Duration) {
        self.stats.last_backoff = Some(wait);
        if self.stats.backoffs.len() == BACKOFF_HISTORY {
            self.stats.backoffs.remove(0);
        }
        self.stats.backoffs.push(wait);
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

    // --------------------------------------------------------------------------------------
    // Rules
    // --------------------------------------------------------------------------------------

    /// Makes the stream rules exactly the configured keywords (`value = tag = keyword`).
    async fn reconcile_rules(&mut self) -> anyhow::Result<()> {
        let wanted = self.cfg.wanted_rules();
        let listed = self.rules_request(Method::GET, None).await?;
        let existing: Vec<ExistingRule> = match listed.get("data") {
            Some(data) => serde_json::from_value(data.clone())
                .context("twitter source: unexpected rules list from the API")?,
            None => Vec::new(),
        };
        let mut kept: Vec<&str> = Vec::new();
        let mut delete: Vec<&ExistingRule> = Vec::new();
        for rule in &existing {
            let wanted_here = wanted.contains(&rule.value)
                && rule.tag.as_deref() == Some(rule.value.as_str())
                && !kept.contains(&rule.value.as_str());
            if wanted_here {
                kept.push(&rule.value);
            } else {
                delete.push(rule);
            }
        }
        let add: Vec<&String> = wanted
            .iter()
            .filter(|w| !kept.contains(&w.as_str()))
            .collect();

        if !delete.is_empty() {
            let ids: Vec<&str> = delete.iter().map(|r| r.id.as_str()).collect();
            let body = json!({"delete": {"ids": ids}});
            let answer = self.rules_request(Method::POST, Some(body)).await?;
            let deleted = answer
                .pointer("/meta/summary/deleted")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if deleted as usize != ids.len() {
                let errors = answer.get("errors").cloned().unwrap_or_default();
                tracing::warn!(
                    "twitter rules: asked to delete {} rules, {deleted} deleted: {errors}",
                    ids.len()
                );
            }
        }
        if !add.is_empty() {
            let rules: Vec<Value> = add.iter().map(|k| json!({"value": k, "tag": k})).collect();
            let answer = self
                .rules_request(Method::POST, Some(json!({ "add": rules })))
                .await?;
            let rejected: Vec<String> = answer
                .get("errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|e| e.get("title").and_then(Value::as_str) != Some("DuplicateRule"))
                .map(Value::to_string)
                .collect();
            if !rejected.is_empty() {
                bail!(
                    "twitter source: the API rejected rules: {}",
                    rejected.join("; ")
                );
            }
        }
        let describe = |v: &[&str]| format!("[{}]", v.join(", "));
        let deleted: Vec<&str> = delete.iter().map(|r| r.value.as_str()).collect();
        let added: Vec<&str> = add.iter().map(|s| s.as_str()).collect();
        if delete.is_empty() && add.is_empty() {
            tracing::info!("twitter rules up to date: {}", describe(&kept));
        } else {
            tracing::info!(
                "twitter rules reconciled: kept {}, deleted {}, added {}",
                describe(&kept),
                describe(&deleted),
                describe(&added)
            );
        }
        self.stats.rules_kept = kept.len();
        self.stats.rules_deleted = delete.len();
        self.stats.rules_added = add.len();
        Ok(())
    }

    /// A rules request, retried with backoff on transient failures; auth failures and
    /// rejected requests are errors at once.
    async fn rules_request(&self, method: Method, body: Option<Value>) -> anyhow::Result<Value> {
        let url = self.cfg.url(RULES_PATH)?;
        let mut backoff = Backoffs::default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .client
                .request(method.clone(), url.clone())
                .bearer_auth(&self.token)
                .timeout(self.cfg.request_timeout);
            if let Some(body) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            }
            let (failure, why) = match request.send().await {
                Err(e) => (Failure::Network, error_chain(&e)),
                Ok(response) => {
                    let status = response.status();
                    let reset_at = rate_limit_reset(response.headers());
                    if status.is_success() {
                        let bytes = response.bytes().await.with_context(|| {
                            format!("twitter source: reading the answer of {method} {RULES_PATH}")
                        })?;
                        return serde_json::from_slice(&bytes).with_context(|| {
                            format!("twitter source: {method} {RULES_PATH} did not answer JSON")
                        });
                    }
                    let text = body_excerpt(response).await;
                    let what = format!("HTTP {status} from {method} {RULES_PATH}: {text}");
                    match status {
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => bail!(
                            "twitter source: {what} (the bearer token in ${} was rejected)",
                            self.cfg.bearer_token_env
                        ),
                        StatusCode::TOO_MANY_REQUESTS => (Failure::RateLimited { reset_at }, what),
                        s if s.is_server_error() => (Failure::Http, what),
                        _ => bail!("twitter source: {what}"),
                    }
                }
            };
            if attempt >= RULES_ATTEMPTS {
                bail!("twitter source: {method} {RULES_PATH} failed {attempt} times; last: {why}");
            }
            let wait = backoff.next(failure, self.cfg.backoff_scale, self.cfg.max_backoff);
            tracing::warn!(
                "twitter rules request failed: {why}; retrying in {}",
                humantime::format_duration(wait)
            );
            tokio::time::sleep(wait).await;
        }
    }
}

#[derive(Deserialize)]
struct ExistingRule {
    id: String,
    value: String,
    #[serde(default)]
    tag: Option<String>,
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

/// `x-rate-limit-reset` (Unix seconds), or `Retry-After` in seconds from now.
fn rate_limit_reset(headers: &HeaderMap) -> Option<u64> {
    let num = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    num(reqwest::header::HeaderName::from_static(
        "x-rate-limit-reset",
    ))
    .or_else(|| {
        let after = num(RETRY_AFTER)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(now + after)
    })
}

/// The start of an error answer's body, for messages.
async fn body_excerpt(response: Response) -> String {
    let text = tokio::time::timeout(Duration::from_secs(5), response.text())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    excerpt(&text, 500)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_the_documented_schedule() {
        let max = Duration::from_secs(3600);
        let mut b = Backoffs::default();
        let net: Vec<u64> = (0..70)
            .map(|_| b.next(Failure::Network, 1.0, max).as_millis() as u64)
            .collect();
        assert_eq!(&net[..4], &[250, 500, 750, 1000]);
        assert_eq!(net[63], 16_000);
        assert_eq!(net[69], 16_000);
        let http: Vec<u64> = (0..9)
            .map(|_| b.next(Failure::Http, 1.0, max).as_secs())
            .collect();
        assert_eq!(http, [5, 10, 20, 40, 80, 160, 320, 320, 320]);
        let rate: Vec<u64> = (0..4)
            .map(|_| {
                b.next(Failure::RateLimited { reset_at: None }, 1.0, max)
                    .as_secs()
            })
            .collect();
        assert_eq!(rate, [60, 120, 240, 480]);
        let capped = b.next(
            Failure::RateLimited { reset_at: None },
            1.0,
            Duration::from_secs(900),
        );
        assert_eq!(capped, Duration::from_secs(900));
        let scaled = Backoffs::default().next(Failure::Http, 0.01, max);
        assert_eq!(scaled, Duration::from_millis(50));
    }

    #[test]
    fn rate_limit_reset_is_a_floor() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let wait = Backoffs::default().next(
            Failure::RateLimited {
                reset_at: Some(now + 30),
            },
            0.001,
            Duration::from_secs(3600),
        );
        assert!(wait > Duration::from_secs(28) && wait <= Duration::from_secs(30));
    }

    #[test]
    fn stream_url_carries_the_fields() {
        let cfg = TwitterConfig {
            base_url: "http://127.0.0.1:9/".into(),
            keywords: vec!["bts".into()],
            ..TwitterConfig::default()
        };
        let url = cfg.stream_url().unwrap();
        assert_eq!(url.path(), STREAM_PATH);
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(
            q.iter()
                .any(|(k, v)| k == "tweet.fields" && v.contains("created_at"))
        );
        assert!(
            q.iter()
                .any(|(k, v)| k == "expansions" && v.contains("author_id"))
        );
    }

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
            fatal: None,
            stats: TwitterStats::default(),
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

    #[test]
    fn config_errors_name_the_key() {
        let bad = TwitterConfig::default();
        assert!(bad.validate().unwrap_err().to_string().contains("keywords"));
        let bad = TwitterConfig {
            keywords: vec!["bts".into()],
            backoff_scale: 0.0,
            ..TwitterConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("backoff_scale")
        );
        let cfg: TwitterConfig =
            serde_json::from_value(json!({"keywords": ["bts"], "stall_timeout": "5s"})).unwrap();
        assert_eq!(cfg.stall_timeout, Duration::from_secs(5));
        assert!(serde_json::from_value::<TwitterConfig>(json!({"bearer_token": "x"})).is_err());
    }
}
