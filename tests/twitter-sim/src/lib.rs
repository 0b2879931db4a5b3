//! A local stand-in for the Twitter API v2 filtered stream, for tests.
//!
//! It serves, on a loopback address:
//!
//! * `GET /2/tweets/search/stream/rules` (optionally `?ids=1,2`) and
//!   `POST /2/tweets/search/stream/rules` with `{"add": [{"value", "tag"}]}` or
//!   `{"delete": {"ids": [..]}}`, `?dry_run=true` and `?delete_all=true`;
//! * `GET /2/tweets/search/stream`: a chunked response of newline-delimited JSON tweets in the
//!   v2 shape (`data`, `includes`, `matching_rules`), only those that match the current rules (a
//!   rule matches when its value occurs in the tweet text, case-insensitively), with `\r\n`
//!   keep-alive lines while there is nothing to send. `tweet.fields`, `expansions` and
//!   `user.fields` select what each tweet carries, as on the real API.
//!
//! Every API call needs `Authorization: Bearer <token>` (401 otherwise). Like the real stream, one
//! client at a time: a second concurrent stream connection gets 429 `TooManyConnections`.
//!
//! Tweets come from a deterministic sequence (the same [`Scenario::seed`] gives the same tweets)
//! behind a cursor that only moves when a tweet has been handed to the connection, so a client
//! that reconnects after a drop gets the tweets it has not seen yet: the simulated stream loses
//! nothing and repeats nothing, which lets tests count exactly.
//!
//! [`Scenario::realtime`] plays the real stream's losses instead: tweets happen on a clock that
//! starts with the first stream connection accepted in realtime mode, candidate `i` of the
//! sequence at `i / rate` seconds (`rate` then counts candidates, matching the rules or not),
//! and a connection sends each matching tweet as it happens. A new connection starts at the
//! first candidate that has not happened yet: what happened while no client was connected, and
//! what was in flight on a dropped connection, is lost to it ([`Stats::lost_while_away`]),
//! unless it asks for `backfill_minutes=N` (1 to 5): then it starts `rate * 60 * N` candidates
//! earlier (not before the first), re-sending what it may already have had, as the real API does
//! ([`Stats::backfilled`], [`Stats::duplicates`]). `total` is then the number of matching tweets
//! that ever happen. With [`Scenario::slow_reader_lag`], a connection that falls that far
//! behind (the client does not read, its socket fills) is cut, as Twitter disconnects slow
//! readers ([`Stats::slow_disconnects`]); accepted sockets have a fixed 64 KiB send buffer
//! (128 KiB in Linux terms), so a client that stops reading blocks its stream after that much
//! plus what its own receive buffer holds. [`Sim::happened`] lists the matching tweets that have
//! happened, what a client that lost nothing holds; [`Sim::sent_ids`] every tweet written.
//!
//! A [`Scenario`] sets the failures to play (drops, stalls, 429/503 answers, a non-JSON line,
//! realtime losses), the rate and the keep-alive interval; it can be changed at run time with
//! `POST /_sim/scenario` (a partial JSON object, merged into the current one; 400 for a
//! scenario that cannot be played, e.g. `realtime` without `rate`). `GET /_sim/stats` returns
//! [`Stats`], `GET /_sim/rules` the rules, `GET /_sim/happened` the ids of
//! [`Sim::happened`] (`{"ids": ["..."], "all_happened": bool}`), `GET /_sim/sent` those of
//! [`Sim::sent_ids`] (`{"ids": [...]}`); `/_sim/*` needs no token.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::IncomingStream;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Stream path, as on the real API.
pub const STREAM_PATH: &str = "/2/tweets/search/stream";
/// Rules path, as on the real API.
pub const RULES_PATH: &str = "/2/tweets/search/stream/rules";
/// Longest rule value accepted (the real API's limit at the basic level).
pub const MAX_RULE_LEN: usize = 512;
/// Candidates scanned for one that matches the rules before the stream idles.
const SCAN_LIMIT: u64 = 10_000;
/// First tweet id; ids grow by one per candidate.
const FIRST_TWEET_ID: u64 = 1_861_000_000_000_000_000;
/// `created_at` of candidate 0 is this long before the simulator started (to the second), and
/// advances [`CANDIDATE_MS`] per candidate: tweets are recent whatever the date.
const START_BEFORE_MS: i64 = 3_600_000;
const CANDIDATE_MS: i64 = 250;

/// What the simulated stream does. Every field has a default, so a partial JSON object is a
/// valid scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Seed of the tweet sequence.
    pub seed: u64,
    /// Tweets to send in all (over every connection); then the stream only sends keep-alives,
    /// or ends if `end_when_done`. `None`: unlimited. In realtime mode: the matching tweets that
    /// happen, the first `total` candidates that match the current rules.
    pub total: Option<u64>,
    /// End the response cleanly once `total` tweets are sent (realtime: once all have happened
    /// and the connection has sent those from its cursor on).
    pub end_when_done: bool,
    /// Tweets per second; 0 sends as fast as the client reads. Realtime mode: candidates of the
    /// sequence (matching the rules or not) that happen per second.
    pub rate: f64,
    /// Interval of the `\r\n` keep-alive while no tweet is sent; 0 disables keep-alives.
    pub keepalive_ms: u64,
    /// Drop the connection abruptly (no terminating chunk) after this many tweets on it.
    pub drop_after: Option<u64>,
    /// Drop every connection after `drop_after` tweets, not only the first one that gets there.
    pub drop_every: bool,
    /// Cut the connection in the middle of a tweet line (the tweet counts as sent, as a
    /// tweet lost in flight would) instead of between lines.
    pub drop_mid_line: bool,
    /// Send every tweet line in two chunks, split mid-line.
    pub split_lines: bool,
    /// Answer the next this-many stream connects with `reject_status` instead of the stream.
    pub reject_next: u32,
    /// Status of rejected connects: 429 (with `x-rate-limit-*` headers) or any other, e.g. 503.
    pub reject_status: u16,
    /// `x-rate-limit-reset` of a 429 is now plus this many seconds (Unix epoch seconds).
    pub rate_limit_reset_secs: u64,
    /// Stall (send nothing, not even keep-alives, keep the socket open) after this many tweets on
    /// a connection.
    pub stall_after: Option<u64>,
    /// Stall every connection after `stall_after` tweets, not only the first.
    pub stall_every: bool,
    /// Send one line that is not JSON once this many tweets are sent in all.
    pub garbage_after: Option<u64>,
    /// The length of that line without its `\n` (`x` repeated); 0: a short HTML line.
    pub garbage_bytes: usize,
    /// Realtime mode (needs a finite `rate > 0`): tweets happen on a clock whether or not a
    /// client is connected, and a client that is away, or too slow, loses them unless it asks
    /// for backfill. Candidate `i` happens `i / rate` seconds after the clock started (at the
    /// first stream connection accepted in realtime mode), so `rate` counts candidates of the
    /// sequence, matching or not, not tweets sent. A new connection starts at the first
    /// candidate that has not happened yet, or with `backfill_minutes=N` `rate * 60 * N`
    /// candidates earlier (not before 0), sending again what an earlier connection may have
    /// sent. `total` is the number of rule-matching tweets that ever happen. `false`: the
    /// lossless cursor of the module docs. `POST /_sim/scenario` and [`Sim::start`] refuse
    /// `realtime` without a finite `rate > 0`; set through [`Sim::update`] it is ignored then.
    pub realtime: bool,
    /// In realtime mode, drop a connection (abruptly, counted in
    /// [`Stats::slow_disconnects`]) once its cursor is more than this many candidates behind
    /// the realtime position, as Twitter disconnects a slow reader. Checked every 20 ms, also
    /// while the response is blocked on a full socket; keep it well above `rate / 10` so
    /// scheduling noise does not trip it. `None`: never.
    pub slow_reader_lag: Option<u64>,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            seed: 42,
            total: None,
            end_when_done: false,
            rate: 0.0,
            keepalive_ms: 20_000,
            drop_after: None,
            drop_every: false,
            drop_mid_line: false,
            split_lines: false,
            reject_next: 0,
            reject_status: 429,
            rate_limit_reset_secs: 60,
            stall_after: None,
            stall_every: false,
            garbage_after: None,
            garbage_bytes: 0,
            realtime: false,
            slow_reader_lag: None,
        }
    }
}

impl Scenario {
    /// Checks what cannot be played: `realtime` without a finite `rate > 0`.
    pub fn validate(&self) -> Result<(), String> {
        if self.realtime && !(self.rate > 0.0 && self.rate.is_finite()) {
            return Err("realtime needs a finite rate > 0".into());
        }
        Ok(())
    }
}

/// A stream rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// Counters for tests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Stream requests with a valid token, answered or rejected.
    pub connects: u64,
    /// Stream requests answered with the stream (200).
    pub accepted: u64,
    /// Stream requests answered with `reject_status` by the scenario.
    pub rejected: u64,
    /// Stream requests refused because another stream connection was open.
    pub too_many_connections: u64,
    /// Requests (any endpoint) without the right bearer token.
    pub unauthorized: u64,
    /// Rules requests (GET and POST) with a valid token.
    pub rules_requests: u64,
    /// Tweet lines written to connections (the cursor, in the default mode; in realtime mode
    /// duplicates sent for backfill count too).
    pub tweets_sent: u64,
    pub keepalives_sent: u64,
    pub garbage_sent: u64,
    pub drops: u64,
    pub stalls: u64,
    /// Milliseconds since the simulator started, of every stream request with a valid token.
    pub connect_times_ms: Vec<u64>,
    /// Query string of the last stream request.
    pub last_stream_query: Option<String>,
    /// A stream connection is open.
    pub active: bool,
    /// Stream requests with a valid token and `backfill_minutes` of 1 or more (any mode,
    /// answered or rejected).
    pub backfill_requests: u64,
    /// Realtime mode: tweet lines written from a connection's backfill window, i.e. from before
    /// the realtime position at its connect (sent again, or recovered). Part of `tweets_sent`.
    pub backfilled: u64,
    /// Tweet lines repeating a tweet already written to some connection. Part of `tweets_sent`.
    pub duplicates: u64,
    /// Realtime mode: rule-matching tweets that happened with no connection there to take them
    /// and that the next connection skipped (it started past them, with no or too short a
    /// backfill). Counted when that connection starts, from the last candidate sent or skipped
    /// before. Tweets written to a connection that dropped are not in it (they were sent).
    pub lost_while_away: u64,
    /// Realtime mode: connections dropped for falling more than `slow_reader_lag` behind.
    /// Not counted in `drops`.
    pub slow_disconnects: u64,
    /// Realtime mode: index of the first candidate that has not happened yet (capped at the end
    /// set by `total`); `None` before the clock started.
    pub realtime_position: Option<u64>,
}

struct Shared {
    token: String,
    started: Instant,
    /// `created_at` of candidate 0, Unix milliseconds.
    start_ms: i64,
    inner: Mutex<Inner>,
}

struct Inner {
    scenario: Scenario,
    rules: Vec<Rule>,
    next_rule_id: u64,
    /// Next candidate index of the tweet sequence.
    cursor: u64,
    stats: Stats,
    drops_done: u64,
    stalls_done: u64,
    /// Realtime clock, started by the first connection accepted in realtime mode.
    clock: Option<Clock>,
    /// Every candidate below this was written to a connection or counted lost.
    frontier: u64,
    /// Ids of the tweet lines written, in order (the first [`SENT_LOG_MAX`]).
    sent_log: Vec<u64>,
    /// One bit per candidate index: written to a connection at least once.
    sent_bits: Vec<u64>,
    /// Where the sequence ends in realtime mode, for the `total`, seed and rules it was
    /// computed for.
    end_cache: Option<(u64, u64, Vec<String>, u64)>,
}

/// Send buffer of accepted sockets (the kernel doubles it): a client that stops reading blocks
/// its stream after about this much, rather than after the megabytes autotuning would allow.
const SEND_BUFFER: u32 = 64 * 1024;
/// Ids kept for [`Sim::sent_ids`].
const SENT_LOG_MAX: usize = 1_000_000;
/// `pos` of a connection that is not in realtime mode (yet).
const NO_POS: u64 = u64::MAX;

/// When candidates happen in realtime mode: candidate `base + k` at `at + k / rate`.
#[derive(Debug, Clone, Copy)]
struct Clock {
    at: Instant,
    base: u64,
    rate: f64,
}

impl Clock {
    fn elapsed(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.at).as_secs_f64() * self.rate
    }

    /// Index of the first candidate that has not happened by `now`.
    fn happened(&self, now: Instant) -> u64 {
        self.base
            .saturating_add(self.elapsed(now).floor() as u64 + 1)
    }

    /// Index of the first candidate that happens at or after `now`.
    fn first_pending(&self, now: Instant) -> u64 {
        self.base.saturating_add(self.elapsed(now).ceil() as u64)
    }

    fn time_of(&self, index: u64) -> Instant {
        let secs = index.saturating_sub(self.base) as f64 / self.rate;
        self.at + Duration::from_secs_f64(secs.min(1e9)) + Duration::from_micros(100)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The rules whose value occurs in `text` (lowercased), case-insensitively.
fn matching_rules<'a>(rules: &'a [Rule], text: &str) -> Vec<&'a Rule> {
    rules
        .iter()
        .filter(|r| text.contains(&r.value.to_lowercase()))
        .collect()
}

impl Inner {
    fn realtime(&self) -> bool {
        let rate = self.scenario.rate;
        self.scenario.realtime && rate > 0.0 && rate.is_finite()
    }

    /// Re-anchors the clock if the rate changed, so positions stay continuous.
    fn sync_clock(&mut self, now: Instant) {
        let rate = self.scenario.rate;
        if let Some(c) = &mut self.clock
            && c.rate != rate
            && rate > 0.0
            && rate.is_finite()
        {
            let base = c.first_pending(now);
            *c = Clock {
                at: now,
                base,
                rate,
            };
        }
    }

    /// The clock, started now from the cursor if it has not started.
    fn start_clock(&mut self, now: Instant) -> Clock {
        self.sync_clock(now);
        let (base, rate) = (self.cursor, self.scenario.rate);
        *self.clock.get_or_insert(Clock {
            at: now,
            base,
            rate,
        })
    }

    fn matches(&self, index: u64) -> bool {
        let text = Tweet::new(self.scenario.seed, index).text.to_lowercase();
        !matching_rules(&self.rules, &text).is_empty()
    }

    /// Realtime mode: index after the `total`-th candidate that matches the rules (candidates
    /// from there on never happen); `u64::MAX` without `total`, without rules, or when
    /// [`SCAN_LIMIT`] candidates in a row match none.
    fn end(&mut self) -> u64 {
        let Some(total) = self.scenario.total else {
            return u64::MAX;
        };
        let seed = self.scenario.seed;
        let rules: Vec<String> = self.rules.iter().map(|r| r.value.to_lowercase()).collect();
        if let Some((s, t, r, end)) = &self.end_cache
            && (*s, *t, r) == (seed, total, &rules)
        {
            return *end;
        }
        let (mut index, mut found, mut last) = (0, 0, 0);
        while found < total {
            if rules.is_empty() || index - last > SCAN_LIMIT {
                index = u64::MAX;
                break;
            }
            if self.matches(index) {
                found += 1;
                last = index;
            }
            index += 1;
        }
        self.end_cache = Some((seed, total, rules, index));
        index
    }

    /// Index of the first candidate that has not happened yet, capped at the end; the cursor
    /// before the clock started.
    fn happened(&mut self, now: Instant) -> u64 {
        self.sync_clock(now);
        let end = self.end();
        self.clock.map_or(self.cursor, |c| c.happened(now)).min(end)
    }

    /// Starts a realtime connection: returns where its cursor starts and the realtime position
    /// (the first candidate that has not happened), counting what it skips as lost.
    fn begin(&mut self, now: Instant, backfill_minutes: u32) -> (u64, u64) {
        let clock = self.start_clock(now);
        let position = clock.first_pending(now).min(self.end());
        let window = (self.scenario.rate * 60.0 * f64::from(backfill_minutes)) as u64;
        let start = position.saturating_sub(window);
        if start > self.frontier {
            let lost = (self.frontier..start).filter(|&i| self.matches(i)).count();
            self.stats.lost_while_away += lost as u64;
            self.frontier = start;
        }
        (start, position)
    }

    /// Books a tweet line for candidate `index` written to a connection.
    fn record_sent(&mut self, index: u64) {
        self.stats.tweets_sent += 1;
        if self.sent_log.len() < SENT_LOG_MAX {
            self.sent_log.push(FIRST_TWEET_ID + index);
        }
        let (word, bit) = ((index / 64) as usize, index % 64);
        if self.sent_bits.len() <= word {
            self.sent_bits.resize(word + 1, 0);
        }
        if self.sent_bits[word] & (1 << bit) != 0 {
            self.stats.duplicates += 1;
        }
        self.sent_bits[word] |= 1 << bit;
        self.frontier = self.frontier.max(index + 1);
        self.cursor = self.cursor.max(index + 1);
    }

    /// Ids of the tweets that have happened and match the rules (realtime), or of the tweets
    /// written to a connection (otherwise); ascending, no duplicates.
    fn happened_ids(&mut self, now: Instant) -> Vec<u64> {
        if self.realtime() {
            let upto = self.happened(now);
            return (0..upto)
                .filter(|&i| self.matches(i))
                .map(|i| FIRST_TWEET_ID + i)
                .collect();
        }
        let mut ids = Vec::new();
        for (w, bits) in self.sent_bits.iter().enumerate() {
            for b in 0..64 {
                if bits & (1 << b) != 0 {
                    ids.push(FIRST_TWEET_ID + w as u64 * 64 + b);
                }
            }
        }
        ids
    }

    fn all_happened(&mut self, now: Instant) -> bool {
        let Some(total) = self.scenario.total else {
            return false;
        };
        if self.realtime() {
            let end = self.end();
            return end != u64::MAX && self.happened(now) >= end;
        }
        self.stats.tweets_sent >= total
    }

    fn stats(&mut self) -> Stats {
        let now = Instant::now();
        self.stats.realtime_position = match self.clock {
            Some(_) if self.realtime() => Some(self.happened(now)),
            _ => None,
        };
        self.stats.clone()
    }
}

/// A running simulator; dropping it stops the server.
pub struct Sim {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sim {
    /// Binds `addr` (port 0: an ephemeral port) and serves in a task of the current runtime.
    /// Fails with `InvalidInput` for `realtime` without a finite `rate > 0`.
    pub async fn start(addr: SocketAddr, token: &str, scenario: Scenario) -> io::Result<Sim> {
        if let Err(e) = scenario.validate() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, e));
        }
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        // Inherited by accepted sockets; a fixed size turns off send-buffer autotuning.
        socket.set_send_buffer_size(SEND_BUFFER)?;
        socket.bind(addr)?;
        let listener = SimListener(socket.listen(1024)?);
        let addr = listener.0.local_addr()?;
        let shared = Arc::new(Shared {
            token: token.to_string(),
            started: Instant::now(),
            start_ms: now_ms() / 1000 * 1000 - START_BEFORE_MS,
            inner: Mutex::new(Inner {
                scenario,
                rules: Vec::new(),
                next_rule_id: 1_900_000_000_000_000_001,
                cursor: 0,
                stats: Stats::default(),
                drops_done: 0,
                stalls_done: 0,
                clock: None,
                frontier: 0,
                sent_log: Vec::new(),
                sent_bits: Vec::new(),
                end_cache: None,
            }),
        });
        let app = router(shared.clone()).into_make_service_with_connect_info::<Killer>();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("twitter-sim: server error: {e}");
            }
        });
        Ok(Sim { addr, shared, task })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the source's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> Stats {
        self.shared.lock().stats()
    }

    /// Ids of the tweets a client should have received, ascending, no duplicates. Realtime
    /// mode: every candidate that has happened (up to the realtime position, and never past
    /// the end set by `total`) and matches the current rules, whether it was sent, lost while
    /// no client was connected, or lost in flight. Otherwise: the tweets written to a
    /// connection (nothing is lost in that mode). Compare it with what the client delivered
    /// once [`Sim::all_happened`] (or after the client caught up).
    pub fn happened(&self) -> Vec<u64> {
        self.shared.lock().happened_ids(Instant::now())
    }

    /// Ids of every tweet line written to a connection, in order, duplicates included (the
    /// first 1,000,000).
    pub fn sent_ids(&self) -> Vec<u64> {
        self.shared.lock().sent_log.clone()
    }

    /// Realtime mode: the index of the first candidate that has not happened yet (capped at the
    /// end set by `total`); `None` before the clock started or outside realtime mode.
    pub fn realtime_position(&self) -> Option<u64> {
        self.shared.lock().stats().realtime_position
    }

    /// `total` is set and all of it has happened (realtime) or has been sent (otherwise).
    pub fn all_happened(&self) -> bool {
        self.shared.lock().all_happened(Instant::now())
    }

    pub fn scenario(&self) -> Scenario {
        self.shared.lock().scenario.clone()
    }

    /// Changes the scenario; takes effect at the next decision of an open stream.
    pub fn update(&self, f: impl FnOnce(&mut Scenario)) {
        f(&mut self.shared.lock().scenario);
    }

    pub fn rules(&self) -> Vec<Rule> {
        self.shared.lock().rules.clone()
    }

    /// Adds a rule directly (e.g. a stale one a test expects the client to delete); returns its id.
    pub fn add_rule(&self, value: &str, tag: Option<&str>) -> String {
        let mut g = self.shared.lock();
        let id = g.next_rule_id.to_string();
        g.next_rule_id += 1;
        g.rules.push(Rule {
            id: id.clone(),
            value: value.to_string(),
            tag: tag.map(str::to_string),
        });
        id
    }

    /// Text of candidate `index` of the current seed's tweet sequence.
    pub fn tweet_text(&self, index: u64) -> String {
        let seed = self.shared.lock().scenario.seed;
        Tweet::new(seed, index).text
    }

    /// `created_at` (Unix ms) of the tweet with this id, as this simulator sends it.
    pub fn created_at_ms(&self, id: u64) -> Option<i64> {
        let index = id.checked_sub(FIRST_TWEET_ID)?;
        Some(Tweet::created_ms(
            self.shared.start_ms,
            i64::try_from(index).ok()?,
        ))
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(STREAM_PATH, get(stream))
        .route(RULES_PATH, get(list_rules).post(change_rules))
        .route("/_sim/stats", get(sim_stats))
        .route("/_sim/rules", get(sim_rules))
        .route("/_sim/scenario", get(sim_scenario).post(set_scenario))
        .route("/_sim/happened", get(sim_happened))
        .route("/_sim/sent", get(sim_sent))
        .with_state(shared)
}

/// The TCP listener, with sockets a watchdog can cut (a slow reader's response is blocked on a
/// full socket, so the body stream cannot end it).
struct SimListener(TcpListener);

impl axum::serve::Listener for SimListener {
    type Io = KillableIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((io, addr)) => {
                    let io = KillableIo {
                        io,
                        killer: Killer::default(),
                    };
                    return (io, addr);
                }
                // E.g. too many open files: wait for some to close.
                Err(_) => tokio::time::sleep(ms(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// Cuts one accepted socket: every read and write fails from then on.
#[derive(Clone, Default)]
struct Killer(Arc<KillState>);

#[derive(Default)]
struct KillState {
    killed: AtomicBool,
    /// Tasks waiting on the socket (read, write), woken by a kill.
    wakers: Mutex<[Option<Waker>; 2]>,
}

impl Killer {
    fn kill(&self) {
        self.0.killed.store(true, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *self.0.wakers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }

    fn killed(&self) -> bool {
        self.0.killed.load(Ordering::SeqCst)
    }

    /// `res`, or an error once killed; a pending result registers the task to wake on a kill.
    fn guard<T>(
        &self,
        slot: usize,
        cx: &Context<'_>,
        res: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if res.is_pending() {
            self.0.wakers.lock().unwrap_or_else(|e| e.into_inner())[slot] =
                Some(cx.waker().clone());
        }
        if self.killed() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "slow reader disconnected",
            )));
        }
        res
    }
}

impl Connected<IncomingStream<'_, SimListener>> for Killer {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.io().killer.clone()
    }
}

struct KillableIo {
    io: TcpStream,
    killer: Killer,
}

impl AsyncRead for KillableIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.io).poll_read(cx, buf);
        self.killer.guard(0, cx, res)
    }
}

impl AsyncWrite for KillableIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write(cx, buf);
        self.killer.guard(1, cx, res)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.killer.guard(1, cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.io).poll_flush(cx);
        self.killer.guard(1, cx, res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn now_iso() -> String {
    iso_ms(now_ms())
}

fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = json!({
        "title": title,
        "detail": detail,
        "type": "about:blank",
        "status": status.as_u16(),
    });
    (status, Json(body)).into_response()
}

fn invalid_request(detail: &str) -> Response {
    let body = json!({
        "errors": [{"message": detail}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": "https://api.twitter.com/2/problems/invalid-request",
    });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// `None` if the bearer token is right; otherwise the 401 to answer.
fn check_auth(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == shared.token);
    if ok {
        return None;
    }
    shared.lock().stats.unauthorized += 1;
    Some(problem(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "Unauthorized",
    ))
}

// ------------------------------------------------------------------------------------------
// Rules
// ------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct RulesQuery {
    ids: Option<String>,
}

async fn list_rules(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<RulesQuery>,
) -> Response {
    if let Some(r) = check_auth(&shared, &headers) {
        return r;
    }
    let mut g = shared.lock();
    g.stats.rules_requests += 1;
    let wanted: Option<HashSet<&str>> = q.ids.as_deref().map(|s| s.split(',').collect());
    let rules: Vec<&Rule> = g
        .rules
        .iter()
        .filter(|r| wanted.as_ref().is_none_or(|w| w.contains(r.id.as_str())))
        .collect();
    let mut body = json!({"meta": {"sent": now_iso(), "result_count": rules.len()}});
    if !rules.is_empty() {
        body["data"] = json!(rules);
    }
    Json(body).into_response()
}

#[derive(Deserialize)]
struct ChangeQuery {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    delete_all: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    add: Option<Vec<NewRule>>,
    delete: Option<DeleteIds>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRule {
    value: String,
    tag: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteIds {
    #[serde(default)]
    ids: Vec<String>,
    #[serde(default)]
    values: Vec<String>,
}

async fn change_rules(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    query: Result<Query<ChangeQuery>, QueryRejection>,
    body: Bytes,
) -> Response {
    if let Some(r) = check_auth(&shared, &headers) {
        return r;
    }
    shared.lock().stats.rules_requests += 1;
    let Ok(Query(q)) = query else {
        return invalid_request("dry_run and delete_all must be true or false");
    };
    let parsed: ChangeBody = if body.is_empty() && q.delete_all {
        ChangeBody {
            add: None,
            delete: None,
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return invalid_request(&format!("malformed request body: {e}")),
        }
    };
    let mut g = shared.lock();
    match (parsed.add, parsed.delete) {
        (Some(_), Some(_)) => invalid_request("a request can either add or delete rules, not both"),
        (None, None) if q.delete_all => {
            let ids: Vec<String> = g.rules.iter().map(|r| r.id.clone()).collect();
            delete_rules(&mut g, &ids, &[], q.dry_run)
        }
        (None, None) => invalid_request("the body must have `add` or `delete`"),
        (Some(add), None) => add_rules(&mut g, add, q.dry_run),
        (None, Some(del)) if del.ids.is_empty() && del.values.is_empty() => {
            invalid_request("`delete` needs `ids` or `values`")
        }
        (None, Some(del)) => delete_rules(&mut g, &del.ids, &del.values, q.dry_run),
    }
}

fn add_rules(g: &mut Inner, add: Vec<NewRule>, dry_run: bool) -> Response {
    if add.is_empty() {
        return invalid_request("`add` must not be empty");
    }
    let mut created = Vec::new();
    let mut errors = Vec::new();
    let mut values: HashSet<String> = g.rules.iter().map(|r| r.value.clone()).collect();
    for rule in add {
        let value = rule.value.trim();
        if value.is_empty() || value.len() > MAX_RULE_LEN {
            errors.push(json!({
                "value": rule.value,
                "details": [format!("rule length must be 1 to {MAX_RULE_LEN} characters")],
                "title": "UnprocessableEntity",
                "type": "https://api.twitter.com/2/problems/invalid-rules",
            }));
            continue;
        }
        if !values.insert(value.to_string()) {
            let id = g
                .rules
                .iter()
                .find(|r| r.value == value)
                .map(|r| r.id.clone());
            errors.push(json!({
                "value": value,
                "id": id,
                "title": "DuplicateRule",
                "type": "https://api.twitter.com/2/problems/duplicate-rules",
            }));
            continue;
        }
        let id = g.next_rule_id.to_string();
        g.next_rule_id += 1;
        created.push(Rule {
            id,
            value: value.to_string(),
            tag: rule.tag,
        });
    }
    let mut body = json!({
        "meta": {
            "sent": now_iso(),
            "summary": {
                "created": created.len(),
                "not_created": errors.len(),
                "valid": created.len(),
                "invalid": errors.len(),
            }
        }
    });
    if !created.is_empty() {
        body["data"] = json!(created);
    }
    if !errors.is_empty() {
        body["errors"] = json!(errors);
    }
    if !dry_run {
        g.rules.extend(created);
    }
    let status = if errors.is_empty() || body.get("data").is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

fn delete_rules(g: &mut Inner, ids: &[String], values: &[String], dry_run: bool) -> Response {
    let mut deleted = 0usize;
    let mut errors = Vec::new();
    let mut keep = vec![true; g.rules.len()];
    let mut find = |pred: &dyn Fn(&Rule) -> bool| {
        let hit = g
            .rules
            .iter()
            .enumerate()
            .find(|(i, r)| keep[*i] && pred(r))
            .map(|(i, _)| i);
        if let Some(i) = hit {
            keep[i] = false;
        }
        hit.is_some()
    };
    for id in ids {
        if find(&|r| &r.id == id) {
            deleted += 1;
        } else {
            errors.push(json!({
                "errors": [{"parameters": {"ids": [id]}, "message": "Rule does not exist"}],
                "title": "Invalid Request",
                "type": "https://api.twitter.com/2/problems/invalid-request",
            }));
        }
    }
    for value in values {
        if find(&|r| &r.value == value) {
            deleted += 1;
        } else {
            errors.push(json!({
                "errors": [{"parameters": {"values": [value]}, "message": "Rule does not exist"}],
                "title": "Invalid Request",
                "type": "https://api.twitter.com/2/problems/invalid-request",
            }));
        }
    }
    let mut body = json!({
        "meta": {
            "sent": now_iso(),
            "summary": {"deleted": deleted, "not_deleted": errors.len()}
        }
    });
    if !errors.is_empty() {
        body["errors"] = json!(errors);
    }
    if !dry_run {
        let mut i = 0;
        g.rules.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }
    Json(body).into_response()
}

// ------------------------------------------------------------------------------------------
// Control
// ------------------------------------------------------------------------------------------

async fn sim_stats(State(shared): State<Arc<Shared>>) -> Json<Stats> {
    Json(shared.lock().stats())
}

/// [`Sim::happened`] as `{"ids": ["..."], "all_happened": bool}` (ids as strings, as the API).
async fn sim_happened(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let mut g = shared.lock();
    let now = Instant::now();
    let ids: Vec<String> = g.happened_ids(now).iter().map(u64::to_string).collect();
    Json(json!({"ids": ids, "all_happened": g.all_happened(now)}))
}

/// [`Sim::sent_ids`] as `{"ids": ["..."]}`.
async fn sim_sent(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let ids: Vec<String> = shared.lock().sent_log.iter().map(u64::to_string).collect();
    Json(json!({ "ids": ids }))
}

async fn sim_rules(State(shared): State<Arc<Shared>>) -> Json<Vec<Rule>> {
    Json(shared.lock().rules.clone())
}

async fn sim_scenario(State(shared): State<Arc<Shared>>) -> Json<Scenario> {
    Json(shared.lock().scenario.clone())
}

/// Merges a partial scenario (JSON object) into the current one.
async fn set_scenario(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let patch: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return invalid_request(&format!("scenario must be a JSON object: {e}")),
    };
    let mut g = shared.lock();
    let mut current = match serde_json::to_value(&g.scenario) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    current.extend(patch);
    match serde_json::from_value::<Scenario>(Value::Object(current)) {
        Ok(s) => match s.validate() {
            Ok(()) => {
                g.scenario = s.clone();
                Json(s).into_response()
            }
            Err(e) => invalid_request(&format!("bad scenario: {e}")),
        },
        Err(e) => invalid_request(&format!("bad scenario: {e}")),
    }
}

// ------------------------------------------------------------------------------------------
// Stream
// ------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct StreamQuery {
    #[serde(rename = "tweet.fields")]
    tweet_fields: Option<String>,
    expansions: Option<String>,
    #[serde(rename = "user.fields")]
    user_fields: Option<String>,
    #[serde(rename = "media.fields")]
    _media_fields: Option<String>,
    #[serde(rename = "place.fields")]
    _place_fields: Option<String>,
    #[serde(rename = "poll.fields")]
    _poll_fields: Option<String>,
    backfill_minutes: Option<u32>,
}

const TWEET_FIELDS: &[&str] = &[
    "attachments",
    "author_id",
    "context_annotations",
    "conversation_id",
    "created_at",
    "edit_controls",
    "edit_history_tweet_ids",
    "entities",
    "geo",
    "id",
    "in_reply_to_user_id",
    "lang",
    "note_tweet",
    "possibly_sensitive",
    "public_metrics",
    "referenced_tweets",
    "reply_settings",
    "source",
    "text",
    "withheld",
];
const EXPANSIONS: &[&str] = &[
    "attachments.media_keys",
    "attachments.poll_ids",
    "author_id",
    "edit_history_tweet_ids",
    "entities.mentions.username",
    "geo.place_id",
    "in_reply_to_user_id",
    "referenced_tweets.id",
    "referenced_tweets.id.author_id",
];
const USER_FIELDS: &[&str] = &[
    "created_at",
    "description",
    "entities",
    "id",
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
];

/// Fields a stream connection asked for.
struct Fields {
    tweet: HashSet<String>,
    expansions: HashSet<String>,
    user: HashSet<String>,
}

fn field_set(name: &str, list: Option<&str>, known: &[&str]) -> Result<HashSet<String>, String> {
    let mut out = HashSet::new();
    for f in list.unwrap_or("").split(',').filter(|f| !f.is_empty()) {
        if !known.contains(&f) {
            return Err(format!(
                "The `{name}` query parameter value [{f}] is not one of [{}]",
                known.join(",")
            ));
        }
        out.insert(f.to_string());
    }
    Ok(out)
}

async fn stream(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(killer): ConnectInfo<Killer>,
    headers: HeaderMap,
    raw: axum::extract::RawQuery,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Response {
    if let Some(r) = check_auth(&shared, &headers) {
        return r;
    }
    let Ok(Query(q)) = query else {
        return invalid_request("malformed query");
    };
    let fields = match (|| {
        Ok::<_, String>(Fields {
            tweet: field_set("tweet.fields", q.tweet_fields.as_deref(), TWEET_FIELDS)?,
            expansions: field_set("expansions", q.expansions.as_deref(), EXPANSIONS)?,
            user: field_set("user.fields", q.user_fields.as_deref(), USER_FIELDS)?,
        })
    })() {
        Ok(f) => f,
        Err(msg) => return invalid_request(&msg),
    };
    if q.backfill_minutes.is_some_and(|m| m > 5) {
        return invalid_request("backfill_minutes must be between 0 and 5");
    }
    let mut g = shared.lock();
    g.stats.connects += 1;
    let t = shared.started.elapsed().as_millis() as u64;
    g.stats.connect_times_ms.push(t);
    g.stats.last_stream_query = raw.0;
    let backfill_minutes = q.backfill_minutes.unwrap_or(0);
    if backfill_minutes > 0 {
        g.stats.backfill_requests += 1;
    }
    if g.scenario.reject_next > 0 {
        g.scenario.reject_next -= 1;
        g.stats.rejected += 1;
        let status = StatusCode::from_u16(g.scenario.reject_status)
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        if status == StatusCode::TOO_MANY_REQUESTS {
            let reset = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                + g.scenario.rate_limit_reset_secs;
            let mut r = problem(status, "Too Many Requests", "Too Many Requests");
            let h = r.headers_mut();
            h.insert("x-rate-limit-limit", HeaderValue::from_static("50"));
            h.insert("x-rate-limit-remaining", HeaderValue::from_static("0"));
            h.insert("x-rate-limit-reset", HeaderValue::from(reset));
            return r;
        }
        let reason = status.canonical_reason().unwrap_or("Error");
        return problem(status, reason, reason);
    }
    if g.stats.active {
        g.stats.too_many_connections += 1;
        let body = json!({
            "title": "ConnectionException",
            "detail": "This stream is currently at the maximum allowed connection limit.",
            "connection_issue": "TooManyConnections",
            "type": "https://api.twitter.com/2/problems/streaming-connection",
        });
        return (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    }
    g.stats.active = true;
    g.stats.accepted += 1;
    let now = Instant::now();
    let (pos, backfill_until) = if g.realtime() {
        g.begin(now, backfill_minutes)
    } else {
        (NO_POS, 0)
    };
    drop(g);

    let pos = Arc::new(AtomicU64::new(pos));
    watch_lag(shared.clone(), Arc::downgrade(&pos), killer.clone());
    let conn = Conn {
        shared: shared.clone(),
        fields,
        sent: 0,
        last_write: now,
        next_due: now,
        finished: false,
        pending: None,
        cut: false,
        pos,
        backfill_until,
        killer,
    };
    let body = futures_util::stream::unfold(conn, |mut c| async move {
        let item = c.step().await?;
        Some((item, c))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache, no-store")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// One open stream connection; dropping it (the client went away, or the stream ended) frees
/// the connection slot.
struct Conn {
    shared: Arc<Shared>,
    fields: Fields,
    /// Tweets sent on this connection.
    sent: u64,
    last_write: Instant,
    next_due: Instant,
    finished: bool,
    /// Second half of a split line, sent next.
    pending: Option<Bytes>,
    /// Half a line was sent before a drop: the connection is cut next.
    cut: bool,
    /// Realtime mode: the next candidate to consider ([`NO_POS`] until the connection runs in
    /// realtime mode); shared with its [`watch_lag`].
    pos: Arc<AtomicU64>,
    /// Candidates below this were before the realtime position at the connect: backfill.
    backfill_until: u64,
    killer: Killer,
}

/// While the connection holding `pos` lives, drops it once it falls more than
/// `slow_reader_lag` candidates behind the realtime position. Runs beside the response, as a
/// slow reader's response is not polled (its socket is full).
fn watch_lag(shared: Arc<Shared>, pos: Weak<AtomicU64>, killer: Killer) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(ms(20)).await;
            let Some(pos) = pos.upgrade() else { return };
            let at = pos.load(Ordering::SeqCst);
            let mut g = shared.lock();
            let Some(lag) = g.scenario.slow_reader_lag else {
                continue;
            };
            if at == NO_POS || !g.realtime() {
                continue;
            }
            if g.happened(Instant::now()).saturating_sub(at) > lag {
                g.stats.slow_disconnects += 1;
                drop(g);
                killer.kill();
                return;
            }
        }
    });
}

/// What a realtime connection does next.
enum Next {
    Line(Bytes),
    /// Nothing to send before this instant, when the next candidate happens.
    Wait(Instant),
    /// Every tweet up to the end set by `total` has happened and been considered.
    Done,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.lock().stats.active = false;
    }
}

enum Action {
    Garbage,
    Stall,
    Drop,
    End,
    Idle,
    Tweet,
    Realtime,
}

impl Conn {
    fn keepalive_due(&self, scenario: &Scenario) -> Option<Instant> {
        (scenario.keepalive_ms > 0)
            .then(|| self.last_write + Duration::from_millis(scenario.keepalive_ms))
    }

    fn keepalive(&mut self) -> Option<Result<Bytes, io::Error>> {
        self.last_write = Instant::now();
        self.shared.lock().stats.keepalives_sent += 1;
        Some(Ok(Bytes::from_static(b"\r\n")))
    }

    /// The next chunk: a tweet line, a keep-alive, an error (abrupt drop) or the end.
    async fn step(&mut self) -> Option<Result<Bytes, io::Error>> {
        if self.finished {
            return None;
        }
        if let Some(rest) = self.pending.take() {
            // A pause makes the server flush the first half as its own chunk.
            tokio::time::sleep(ms(5)).await;
            return Some(Ok(rest));
        }
        if self.cut {
            tokio::time::sleep(ms(50)).await;
            self.finished = true;
            return Some(Err(io::Error::other("simulated connection drop mid-line")));
        }
        if self.killer.killed() {
            self.finished = true;
            return Some(Err(io::Error::other("slow reader disconnected")));
        }
        loop {
            let (action, ka_due) = {
                let mut g = self.shared.lock();
                let sc = g.scenario.clone();
                let action = if sc
                    .garbage_after
                    .is_some_and(|n| g.stats.tweets_sent >= n && g.stats.garbage_sent == 0)
                {
                    Action::Garbage
                } else if sc
                    .stall_after
                    .is_some_and(|n| self.sent >= n && (sc.stall_every || g.stalls_done == 0))
                {
                    g.stalls_done += 1;
                    g.stats.stalls += 1;
                    Action::Stall
                } else if sc
                    .drop_after
                    .is_some_and(|n| self.sent >= n && (sc.drop_every || g.drops_done == 0))
                {
                    g.drops_done += 1;
                    g.stats.drops += 1;
                    Action::Drop
                } else if g.realtime() {
                    Action::Realtime
                } else if sc.total.is_some_and(|t| g.stats.tweets_sent >= t) {
                    if sc.end_when_done {
                        Action::End
                    } else {
                        Action::Idle
                    }
                } else {
                    Action::Tweet
                };
                (action, self.keepalive_due(&sc))
            };
            match action {
                Action::Garbage => {
                    let size = {
                        let mut g = self.shared.lock();
                        g.stats.garbage_sent += 1;
                        g.scenario.garbage_bytes
                    };
                    self.last_write = Instant::now();
                    if size == 0 {
                        return Some(Ok(Bytes::from_static(b"<html>this line is not JSON\n")));
                    }
                    let mut line = vec![b'x'; size];
                    line.push(b'\n');
                    return Some(Ok(Bytes::from(line)));
                }
                Action::Stall => std::future::pending::<()>().await,
                Action::Drop => {
                    if self.shared.lock().scenario.drop_mid_line
                        && let Some(line) = self.next_line()
                    {
                        self.cut = true;
                        return Some(Ok(line.slice(..line.len() / 2)));
                    }
                    // Let the last tweet reach the socket before the connection is cut.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    self.finished = true;
                    return Some(Err(io::Error::other("simulated connection drop")));
                }
                Action::End => {
                    self.finished = true;
                    return None;
                }
                Action::Idle => match ka_due {
                    Some(due) => {
                        tokio::time::sleep_until(due).await;
                        return self.keepalive();
                    }
                    None => tokio::time::sleep(Duration::from_millis(100)).await,
                },
                Action::Realtime => {
                    let wait = match self.realtime_next() {
                        Next::Line(line) => return self.emit(line),
                        Next::Done if self.shared.lock().scenario.end_when_done => {
                            self.finished = true;
                            return None;
                        }
                        Next::Done => Instant::now() + ms(100),
                        Next::Wait(at) => at.min(Instant::now() + ms(100)),
                    };
                    // Wake for the next tweet, a keep-alive, or a change of rules or scenario.
                    match ka_due {
                        Some(due) if due <= Instant::now() => return self.keepalive(),
                        Some(due) => tokio::time::sleep_until(due.min(wait)).await,
                        None => tokio::time::sleep_until(wait).await,
                    }
                }
                Action::Tweet => {
                    if let Some(ka) = ka_due.filter(|ka| *ka < self.next_due) {
                        tokio::time::sleep_until(ka).await;
                        return self.keepalive();
                    }
                    tokio::time::sleep_until(self.next_due).await;
                    if let Some(line) = self.next_tweet() {
                        return self.emit(line);
                    }
                    // Nothing matches the rules: idle until the keep-alive (or a rule change).
                    match ka_due {
                        Some(due) if due <= Instant::now() => return self.keepalive(),
                        Some(due) => {
                            tokio::time::sleep_until(due.min(Instant::now() + ms(100))).await
                        }
                        None => tokio::time::sleep(ms(100)).await,
                    }
                }
            }
        }
    }

    /// A tweet line, in two chunks with `split_lines`.
    fn emit(&mut self, line: Bytes) -> Option<Result<Bytes, io::Error>> {
        if sc_split(&self.shared) {
            let mid = line.len() / 2;
            self.pending = Some(line.slice(mid..));
            return Some(Ok(line.slice(..mid)));
        }
        Some(Ok(line))
    }

    /// The next tweet line to send now, in either mode.
    fn next_line(&mut self) -> Option<Bytes> {
        if self.shared.lock().realtime() {
            match self.realtime_next() {
                Next::Line(line) => Some(line),
                Next::Wait(_) | Next::Done => None,
            }
        } else {
            self.next_tweet()
        }
    }

    /// Realtime mode: the next tweet that has happened and matches the rules, from this
    /// connection's cursor.
    fn realtime_next(&mut self) -> Next {
        let now = Instant::now();
        let mut g = self.shared.lock();
        let mut pos = self.pos.load(Ordering::SeqCst);
        if pos == NO_POS {
            // The scenario turned realtime while this connection was open.
            let (start, position) = g.begin(now, 0);
            pos = start;
            self.backfill_until = position;
        }
        let upto = g.happened(now);
        let seed = g.scenario.seed;
        let mut found = None;
        if !g.rules.is_empty() {
            for index in pos..upto {
                let tweet = Tweet::new(seed, index);
                let matching = matching_rules(&g.rules, &tweet.text.to_lowercase());
                if !matching.is_empty() {
                    let mut line = tweet.payload(&self.fields, &matching, self.shared.start_ms);
                    line.push(b'\n');
                    found = Some((index, line));
                    break;
                }
            }
        }
        let Some((index, line)) = found else {
            self.pos.store(pos.max(upto), Ordering::SeqCst);
            if upto >= g.end() {
                return Next::Done;
            }
            let at = g.clock.map_or(now + ms(100), |c| c.time_of(upto));
            return Next::Wait(at);
        };
        g.record_sent(index);
        if index < self.backfill_until {
            g.stats.backfilled += 1;
        }
        self.pos.store(index + 1, Ordering::SeqCst);
        self.sent += 1;
        self.last_write = now;
        Next::Line(Bytes::from(line))
    }

    /// The next tweet that matches the rules, advancing the cursor past it.
    fn next_tweet(&mut self) -> Option<Bytes> {
        let mut g = self.shared.lock();
        if g.rules.is_empty() {
            return None;
        }
        let seed = g.scenario.seed;
        for index in g.cursor..g.cursor + SCAN_LIMIT {
            let tweet = Tweet::new(seed, index);
            let text = tweet.text.to_lowercase();
            let matching: Vec<&Rule> = g
                .rules
                .iter()
                .filter(|r| text.contains(&r.value.to_lowercase()))
                .collect();
            if matching.is_empty() {
                continue;
            }
            let mut line = tweet.payload(&self.fields, &matching, self.shared.start_ms);
            line.push(b'\n');
            g.cursor = index + 1;
            g.record_sent(index);
            self.sent += 1;
            self.last_write = Instant::now();
            let rate = g.scenario.rate;
            self.next_due = if rate > 0.0 {
                self.next_due.max(Instant::now() - ms(1000)) + Duration::from_secs_f64(1.0 / rate)
            } else {
                Instant::now()
            };
            return Some(Bytes::from(line));
        }
        None
    }
}

fn sc_split(shared: &Shared) -> bool {
    shared.lock().scenario.split_lines
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ------------------------------------------------------------------------------------------
// Tweets
// ------------------------------------------------------------------------------------------

const WORDS: &[&str] = &[
    "bts",
    "army",
    "kafka",
    "rust",
    "coffee",
    "music",
    "concert",
    "tickets",
    "today",
    "finally",
    "new",
    "album",
    "stream",
    "weekend",
    "rain",
    "snow",
    "happy",
    "thanksgiving",
    "dinner",
    "vote",
    "live",
    "stage",
    "dance",
    "comeback",
    "teaser",
    "love",
    "morning",
    "city",
    "lights",
    "again",
];
const NAMES: &[&str] = &[
    "Mina", "Jae", "Sofia", "Liam", "Noor", "Kenji", "Ada", "Tomas", "Priya", "Olu",
];
const LANGS: &[&str] = &["en", "en", "en", "ko", "es", "ja", "pt"];

/// SplitMix64: a small, well-mixed deterministic hash.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One tweet of the deterministic sequence.
#[derive(Debug, Clone)]
pub struct Tweet {
    pub index: u64,
    pub id: u64,
    pub text: String,
    pub author: u64,
    pub lang: &'static str,
    metrics: [u64; 4],
}

impl Tweet {
    /// Candidate `index` of the sequence of `seed`.
    pub fn new(seed: u64, index: u64) -> Tweet {
        let mut h = mix(seed ^ mix(index));
        let mut next = || {
            h = mix(h);
            h
        };
        let n = 4 + next() % 8;
        let words: Vec<&str> = (0..n)
            .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
            .collect();
        let mut text = words.join(" ");
        if next().is_multiple_of(4) {
            text.push_str(" #");
            text.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
        }
        let author = next() % 50;
        let lang = LANGS[(next() % LANGS.len() as u64) as usize];
        let metrics = [next() % 500, next() % 50, next() % 2000, next() % 20];
        Tweet {
            index,
            id: FIRST_TWEET_ID + index,
            text,
            author,
            lang,
            metrics,
        }
    }

    fn author_id(&self) -> String {
        (1_200_000_000 + self.author * 7919).to_string()
    }

    /// The v2 filtered-stream payload (one line, no newline).
    /// `created_at` of candidate `index` when candidate 0 was created at `start_ms`.
    fn created_ms(start_ms: i64, index: i64) -> i64 {
        start_ms + index * CANDIDATE_MS
    }

    fn payload(&self, fields: &Fields, rules: &[&Rule], start_ms: i64) -> Vec<u8> {
        let id = self.id.to_string();
        let mut data = Map::new();
        data.insert("id".into(), json!(id));
        data.insert("text".into(), json!(self.text));
        data.insert("edit_history_tweet_ids".into(), json!([id]));
        let want = |f: &str| fields.tweet.contains(f);
        if want("created_at") {
            data.insert(
                "created_at".into(),
                json!(iso_ms(Tweet::created_ms(start_ms, self.index as i64))),
            );
        }
        if want("author_id") {
            data.insert("author_id".into(), json!(self.author_id()));
        }
        if want("conversation_id") {
            data.insert("conversation_id".into(), json!(id));
        }
        if want("lang") {
            data.insert("lang".into(), json!(self.lang));
        }
        if want("possibly_sensitive") {
            data.insert("possibly_sensitive".into(), json!(false));
        }
        if want("reply_settings") {
            data.insert("reply_settings".into(), json!("everyone"));
        }
        if want("public_metrics") {
            let [rt, reply, like, quote] = self.metrics;
            data.insert(
                "public_metrics".into(),
                json!({"retweet_count": rt, "reply_count": reply, "like_count": like,
                       "quote_count": quote, "bookmark_count": 0, "impression_count": like * 10}),
            );
        }
        if want("entities") {
            let mut hashtags = Vec::new();
            let mut pos = 0;
            for word in self.text.split(' ') {
                let start = pos;
                pos += word.chars().count() + 1;
                if let Some(tag) = word.strip_prefix('#') {
                    hashtags.push(
                        json!({"start": start, "end": start + word.chars().count(), "tag": tag}),
                    );
                }
            }
            if !hashtags.is_empty() {
                data.insert("entities".into(), json!({ "hashtags": hashtags }));
            }
        }
        let mut out = Map::new();
        out.insert("data".into(), Value::Object(data));
        if fields.expansions.contains("author_id") {
            let name = NAMES[(self.author % NAMES.len() as u64) as usize];
            let mut user = Map::new();
            user.insert("id".into(), json!(self.author_id()));
            user.insert("name".into(), json!(name));
            user.insert(
                "username".into(),
                json!(format!("{}{}", name.to_lowercase(), self.author)),
            );
            let want = |f: &str| fields.user.contains(f);
            if want("created_at") {
                user.insert(
                    "created_at".into(),
                    json!(iso_ms(start_ms - 86_400_000 * (self.author as i64 + 30))),
                );
            }
            if want("description") {
                user.insert(
                    "description".into(),
                    json!(format!("{name} posts about music")),
                );
            }
            if want("verified") {
                user.insert("verified".into(), json!(self.author.is_multiple_of(10)));
            }
            if want("protected") {
                user.insert("protected".into(), json!(false));
            }
            if want("public_metrics") {
                user.insert(
                    "public_metrics".into(),
                    json!({"followers_count": self.author * 37, "following_count": self.author * 3,
                           "tweet_count": self.author * 101, "listed_count": self.author % 7}),
                );
            }
            out.insert("includes".into(), json!({ "users": [user] }));
        }
        let matching: Vec<Value> = rules
            .iter()
            .map(|r| match &r.tag {
                Some(tag) => json!({"id": r.id, "tag": tag}),
                None => json!({"id": r.id}),
            })
            .collect();
        out.insert("matching_rules".into(), Value::Array(matching));
        serde_json::to_vec(&Value::Object(out)).unwrap_or_default()
    }
}
