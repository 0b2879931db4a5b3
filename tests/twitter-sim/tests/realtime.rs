//! Realtime mode, in-process over raw HTTP/1.1: a client that is away loses what happened
//! meanwhile, `backfill_minutes` recovers it (with duplicates), a reader that stops reading is
//! cut past `slow_reader_lag`, and the default mode is unchanged (lossless, nothing repeated).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use twitter_sim::{Scenario, Sim, Tweet};

const TOKEN: &str = "realtime-test-token";
/// Every field, so that lines are long (the slow reader fills its socket sooner).
const FULL: &str = "tweet.fields=created_at,author_id,conversation_id,lang,possibly_sensitive,\
                    reply_settings,public_metrics,entities&expansions=author_id&user.fields=\
                    created_at,description,verified,protected,public_metrics";

async fn sim(scenario: Scenario) -> Sim {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let sim = Sim::start(addr, TOKEN, scenario).await.unwrap();
    sim.add_rule("bts", Some("bts"));
    sim
}

fn request(sim: &Sim, method: &str, path: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        sim.addr(),
        body.len()
    )
}

/// Status of a one-shot request.
async fn call(sim: &Sim, method: &str, path: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(sim.addr()).await.unwrap();
    let req = request(sim, method, path, body).replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

/// An open stream connection and what it has read.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    ended: bool,
}

impl Client {
    async fn open(sim: &Sim, query: &str) -> Client {
        Client::open_on(sim, query, TcpStream::connect(sim.addr()).await.unwrap()).await
    }

    async fn open_on(sim: &Sim, query: &str, mut s: TcpStream) -> Client {
        let path = format!("/2/tweets/search/stream?{query}");
        s.write_all(request(sim, "GET", &path, "").as_bytes())
            .await
            .unwrap();
        Client {
            s,
            buf: Vec::new(),
            ended: false,
        }
    }

    /// Reads for `d`, or until the connection closes or the response ends cleanly (its last
    /// chunk: the connection is kept alive).
    async fn read_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        let mut chunk = [0u8; 16384];
        while !self.ended {
            match tokio::time::timeout_at(end, self.s.read(&mut chunk)).await {
                Err(_) => return,
                Ok(Ok(0)) | Ok(Err(_)) => self.ended = true,
                Ok(Ok(n)) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.ended = self.buf.ends_with(b"\r\n0\r\n\r\n");
                }
            }
        }
    }

    /// Ids of the complete tweet lines read (chunk framing is not parsed: a tweet line is one
    /// chunk, found by its JSON start).
    fn ids(&self) -> Vec<u64> {
        String::from_utf8_lossy(&self.buf)
            .split('\n')
            .filter(|l| l.starts_with("{\"data\""))
            .filter_map(|l| serde_json::from_str::<Value>(l.trim_end()).ok())
            .map(|v| v["data"]["id"].as_str().unwrap().parse().unwrap())
            .collect()
    }

    fn status(&self) -> &str {
        std::str::from_utf8(&self.buf[..12.min(self.buf.len())]).unwrap_or("")
    }
}

async fn wait_inactive(sim: &Sim) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.stats().active {
        assert!(Instant::now() < deadline, "connection slot not freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn increasing(ids: &[u64]) -> bool {
    ids.windows(2).all(|w| w[0] < w[1])
}

/// Ids of the first `n` candidates of `seed` that contain "bts".
fn first_bts(seed: u64, n: usize) -> Vec<u64> {
    (0..)
        .map(|i| Tweet::new(seed, i))
        .filter(|t| t.text.to_lowercase().contains("bts"))
        .map(|t| t.id)
        .take(n)
        .collect()
}

fn realtime(rate: f64) -> Scenario {
    Scenario {
        realtime: true,
        rate,
        keepalive_ms: 100,
        ..Scenario::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_loses_what_happened_while_away() {
    let sim = sim(realtime(300.0)).await;
    assert_eq!(
        sim.realtime_position(),
        None,
        "the clock starts with a connection"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sim.happened().is_empty());

    let mut a = Client::open(&sim, "").await;
    a.read_for(Duration::from_millis(800)).await;
    let got_a = a.ids();
    assert!(a.status().starts_with("HTTP/1.1 200"), "{}", a.status());
    // Nothing happened before the first connection: it starts at the first matching tweet, and
    // receives only tweets that have happened.
    assert_eq!(got_a.first(), first_bts(42, 1).first());
    let position = sim.realtime_position().unwrap();
    assert!(position > 100, "{position}");
    assert!(increasing(&got_a));
    let happened = sim.happened();
    assert!(got_a.len() > 10 && got_a.iter().all(|id| happened.contains(id)));
    drop(a);
    wait_inactive(&sim).await;

    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut b = Client::open(&sim, "tweet.fields=created_at").await;
    b.read_for(Duration::from_millis(600)).await;
    let got_b = b.ids();
    drop(b);
    wait_inactive(&sim).await;
    assert!(!got_b.is_empty());
    assert!(increasing(&got_b));
    assert!(got_a.last() < got_b.first(), "no tweet repeated");

    // What happened between the last tweet sent to A and B's start is lost, and counted.
    let sent = sim.sent_ids();
    let sent_set: BTreeSet<u64> = sent.iter().copied().collect();
    assert_eq!(sent.len(), sent_set.len(), "nothing sent twice");
    let happened = sim.happened();
    let lost: Vec<u64> = happened
        .iter()
        .copied()
        .filter(|id| id < &got_b[0] && !sent_set.contains(id))
        .collect();
    let stats = sim.stats();
    assert!(lost.len() > 20, "{} lost, {stats:?}", lost.len());
    assert_eq!(stats.lost_while_away, lost.len() as u64, "{stats:?}");
    assert!(got_a.iter().chain(&got_b).all(|id| sent_set.contains(id)));
    assert!(sent.iter().all(|id| happened.contains(id)));
    assert_eq!(stats.tweets_sent, sent.len() as u64);
    assert_eq!(
        (stats.backfill_requests, stats.backfilled, stats.duplicates),
        (0, 0, 0)
    );
    assert_eq!(stats.slow_disconnects, 0);
    assert!(!sim.all_happened(), "no total: tweets happen forever");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_recovers_what_happened_while_away_with_duplicates() {
    let total = 150;
    let sim = sim(Scenario {
        total: Some(total),
        end_when_done: true,
        ..realtime(300.0)
    })
    .await;
    let mut a = Client::open(&sim, "").await;
    a.read_for(Duration::from_millis(700)).await;
    let got_a = a.ids();
    assert!(!got_a.is_empty());
    drop(a);
    wait_inactive(&sim).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = sim.happened();
    let sent_before = sim.sent_ids().len();
    assert!(
        before.len() > got_a.len() + 20,
        "tweets happened while away"
    );
    let mut b = Client::open(&sim, "backfill_minutes=1&tweet.fields=created_at").await;
    b.read_for(Duration::from_secs(15)).await;
    assert!(
        b.ended && b.buf.ends_with(b"\r\n0\r\n\r\n"),
        "end_when_done ends the response"
    );
    let got_b = b.ids();
    assert!(increasing(&got_b));
    // One minute reaches back to the first tweet: B gets everything, including what A had.
    assert_eq!(got_b, first_bts(42, total as usize));
    assert!(sim.all_happened());
    assert_eq!(
        sim.happened(),
        got_b,
        "happened: exactly the matching tweets"
    );

    let stats = sim.stats();
    assert_eq!(stats.backfill_requests, 1);
    assert_eq!(stats.lost_while_away, 0, "{stats:?}");
    assert_eq!(stats.duplicates, sent_before as u64, "{stats:?}");
    assert!(stats.backfilled >= before.len() as u64, "{stats:?}");
    assert!(stats.backfilled <= total, "{stats:?}");
    assert_eq!(stats.tweets_sent, (sent_before + got_b.len()) as u64);
    let union: BTreeSet<u64> = got_a.iter().chain(&got_b).copied().collect();
    assert_eq!(union.len(), total as usize);
    let sent = sim.sent_ids();
    assert_eq!(sent.len() as u64, stats.tweets_sent);
    assert_eq!(&sent[sent_before..], &got_b[..]);

    // A short backfill reaches back only so far: what is older stays lost.
    let sim = sim_short_backfill().await;
    let stats = sim.stats();
    assert!(stats.lost_while_away > 0, "{stats:?}");
    assert!(stats.backfilled > 0, "{stats:?}");
}

/// A client away for longer than its backfill window: one connect, an absence of ~240
/// candidates, then the rate drops to 1/s so that one minute of backfill is 60 candidates.
async fn sim_short_backfill() -> Sim {
    let sim = sim(realtime(400.0)).await;
    let mut a = Client::open(&sim, "").await;
    a.read_for(Duration::from_millis(200)).await;
    drop(a);
    wait_inactive(&sim).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    sim.update(|s| s.rate = 1.0);
    let mut b = Client::open(&sim, "backfill_minutes=1").await;
    b.read_for(Duration::from_millis(300)).await;
    assert!(!b.ids().is_empty());
    drop(b);
    wait_inactive(&sim).await;
    sim
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_cut_past_the_lag() {
    let sim = sim(Scenario {
        slow_reader_lag: Some(300),
        ..realtime(500.0)
    })
    .await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let s = socket.connect(sim.addr()).await.unwrap();
    let mut c = Client::open_on(&sim, FULL, s).await;
    c.read_for(Duration::from_millis(700)).await;
    let read = c.ids().len();
    assert!(read > 20, "a reader that keeps up is not cut: {read}");
    assert_eq!(sim.stats().slow_disconnects, 0);

    // Stop reading: the socket fills, the cursor falls behind, the simulator cuts it.
    let stopped = Instant::now();
    let deadline = stopped + Duration::from_secs(15);
    while sim.stats().slow_disconnects == 0 {
        assert!(Instant::now() < deadline, "not cut: {:?}", sim.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_inactive(&sim).await;
    // The client finds what was buffered, then the end of the connection.
    c.read_for(Duration::from_secs(10)).await;
    assert!(c.ended, "connection closed");
    let text = String::from_utf8_lossy(&c.buf);
    assert!(!text.ends_with("0\r\n\r\n"), "cut, not ended cleanly");
    let stats = sim.stats();
    assert_eq!((stats.slow_disconnects, stats.drops), (1, 0), "{stats:?}");
    let got = c.ids();
    assert!(increasing(&got));
    assert!(got.len() <= sim.sent_ids().len());
    assert!(got.iter().zip(sim.sent_ids()).all(|(a, b)| *a == b));

    // The next connection starts at the realtime position, and a reader that keeps up stays.
    let mut d = Client::open(&sim, "").await;
    d.read_for(Duration::from_millis(800)).await;
    assert!(!d.ended && !d.ids().is_empty());
    assert_eq!(sim.stats().slow_disconnects, 1);
    assert!(sim.stats().lost_while_away > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_mode_is_lossless_and_ignores_backfill() {
    let sim = sim(Scenario {
        total: Some(20),
        drop_after: Some(5),
        drop_every: true,
        keepalive_ms: 100,
        ..Scenario::default()
    })
    .await;
    let mut got = Vec::new();
    for _ in 0..6 {
        let mut c = Client::open(&sim, "backfill_minutes=2").await;
        c.read_for(Duration::from_millis(400)).await;
        got.extend(c.ids());
        drop(c);
        wait_inactive(&sim).await;
        // Time away loses nothing in this mode.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(got, first_bts(42, 20));
    let stats = sim.stats();
    assert_eq!(stats.tweets_sent, 20);
    assert_eq!(stats.drops, 4, "{stats:?}");
    assert_eq!(stats.backfill_requests, 6);
    assert_eq!(
        (
            stats.backfilled,
            stats.duplicates,
            stats.lost_while_away,
            stats.slow_disconnects
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(stats.realtime_position, None);
    assert_eq!(sim.sent_ids(), got);
    assert_eq!(sim.happened(), got);
    assert!(sim.all_happened());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_needs_a_rate() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let bad = Scenario {
        realtime: true,
        ..Scenario::default()
    };
    let err = Sim::start(addr, TOKEN, bad).await.err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);

    let sim = sim(Scenario::default()).await;
    assert_eq!(
        call(&sim, "POST", "/_sim/scenario", r#"{"realtime": true}"#).await,
        400
    );
    assert!(!sim.scenario().realtime);
    let ok = r#"{"realtime": true, "rate": 100, "slow_reader_lag": 50}"#;
    assert_eq!(call(&sim, "POST", "/_sim/scenario", ok).await, 200);
    let s = sim.scenario();
    assert!(s.realtime && s.rate == 100.0 && s.slow_reader_lag == Some(50));
    assert_eq!(call(&sim, "GET", "/_sim/happened", "").await, 200);
    assert_eq!(call(&sim, "GET", "/_sim/sent", "").await, 200);
}
