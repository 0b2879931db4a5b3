//! The Twitter filtered-stream source against the local simulator (`tests/twitter-sim`, run
//! in-process): rules reconciled, tweets flow with their matching rules, reconnects after drops
//! lose and repeat nothing, 429/5xx/network failures back off as documented (scaled down by
//! `backoff_scale`), a stalled stream is detected by the keep-alive timeout, auth problems are
//! fatal and named.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use sluice::sources::twitter::{
    MATCHING_RULES_HEADER, PARTIAL_HEADER, TwitterConfig, TwitterSource,
};
use sluice::transform::Record;
use tokio::time::Instant;
use twitter_sim::{Scenario, Sim};

const TOKEN: &str = "test-bearer-token";

async fn sim(scenario: Scenario) -> Sim {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Sim::start(addr, TOKEN, scenario).await.unwrap()
}

/// A per-test environment variable holding `token` (tests run in parallel in one process).
fn token_env(test: &str, token: Option<&str>) -> String {
    let var = format!("SLUICE_TEST_TWITTER_TOKEN_{}", test.to_uppercase());
    // SAFETY: every test uses its own variable and only this thread writes it.
    unsafe {
        match token {
            Some(t) => std::env::set_var(&var, t),
            None => std::env::remove_var(&var),
        }
    }
    var
}

fn config(sim: &Sim, test: &str) -> TwitterConfig {
    TwitterConfig {
        base_url: sim.base_url(),
        bearer_token_env: token_env(test, Some(TOKEN)),
        keywords: vec!["bts".into(), "army".into()],
        backoff_scale: 0.01,
        ..TwitterConfig::default()
    }
}

/// Reads until `n` records arrived or `limit` passed.
async fn collect(src: &mut TwitterSource, n: usize, limit: Duration) -> Vec<Record> {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < end {
        let batch = src
            .next_batch(n - out.len(), Duration::from_millis(200))
            .await
            .unwrap();
        out.extend(batch);
    }
    out
}

fn key(r: &Record) -> String {
    String::from_utf8(r.key.clone().expect("record key")).unwrap()
}

fn header(r: &Record, name: &str) -> Option<String> {
    r.headers
        .iter()
        .find(|h| h.key == name)
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
}

/// Every record is a distinct tweet, in stream order.
fn assert_unique_in_order(records: &[Record]) {
    let ids: Vec<u64> = records.iter().map(|r| key(r).parse().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not strictly increasing: {ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_reconciled_idempotently() {
    let sim = sim(Scenario::default()).await;
    let kept = sim.add_rule("bts", Some("bts"));
    sim.add_rule("cats", Some("cats")); // stale
    sim.add_rule("army", None); // right value, wrong tag: replaced
    let cfg = TwitterConfig {
        keywords: vec!["bts".into(), "army".into(), " kafka ".into(), "bts".into()],
        ..config(&sim, "rules")
    };
    let src = TwitterSource::connect(&cfg).await.unwrap();
    let s = src.stats();
    assert_eq!(
        (s.rules_kept, s.rules_deleted, s.rules_added),
        (1, 2, 2),
        "{s:?}"
    );
    let rules = sim.rules();
    let values: HashSet<&str> = rules.iter().map(|r| r.value.as_str()).collect();
    assert_eq!(values, HashSet::from(["bts", "army", "kafka"]));
    assert!(
        rules
            .iter()
            .all(|r| r.tag.as_deref() == Some(r.value.as_str()))
    );
    assert!(rules.iter().any(|r| r.id == kept && r.value == "bts"));

    // A second start changes nothing.
    let src = TwitterSource::connect(&cfg).await.unwrap();
    let s = src.stats();
    assert_eq!((s.rules_kept, s.rules_deleted, s.rules_added), (3, 0, 0));
    assert_eq!(sim.rules(), rules);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tweets_flow_with_matching_rules() {
    let sim = sim(Scenario {
        total: Some(30),
        keepalive_ms: 50,
        ..Scenario::default()
    })
    .await;
    let mut src = TwitterSource::connect(&config(&sim, "flow")).await.unwrap();
    let records = collect(&mut src, 30, Duration::from_secs(20)).await;
    assert_eq!(records.len(), 30);
    assert_unique_in_order(&records);
    for r in &records {
        let v: Value = serde_json::from_slice(&r.value).expect("value is the JSON line");
        assert_eq!(v["data"]["id"].as_str().unwrap(), key(r));
        assert!(
            v["includes"]["users"].is_array(),
            "author expansion present"
        );
        assert!(v["data"]["created_at"].is_string(), "created_at requested");
        assert_eq!(r.timestamp, sim.created_at_ms(key(r).parse().unwrap()));
        let tags = header(r, MATCHING_RULES_HEADER).expect("matching rules header");
        let text = v["data"]["text"].as_str().unwrap().to_lowercase();
        for tag in tags.split(',') {
            assert!(["bts", "army"].contains(&tag), "{tags}");
            assert!(text.contains(tag), "{text:?} does not match {tag}");
        }
    }
    // Idle stream: keep-alives arrive and are not records.
    let more = src
        .next_batch(10, Duration::from_millis(500))
        .await
        .unwrap();
    assert!(more.is_empty());
    let s = src.stats();
    assert!(s.keepalives > 0, "{s:?}");
    assert_eq!((s.tweets, s.connects, s.stalls), (30, 1, 0));
    let sim_stats = sim.stats();
    assert_eq!(sim_stats.tweets_sent, 30);
    let query = sim_stats.last_stream_query.unwrap();
    assert!(
        query.contains("tweet.fields=") && query.contains("created_at"),
        "{query}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_drops_without_loss_or_duplicates() {
    let sim = sim(Scenario {
        total: Some(60),
        drop_after: Some(10),
        drop_every: true,
        ..Scenario::default()
    })
    .await;
    let mut src = TwitterSource::connect(&config(&sim, "drops"))
        .await
        .unwrap();
    let records = collect(&mut src, 60, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 60);
    assert_unique_in_order(&records);
    let s = src.stats();
    let sim_stats = sim.stats();
    assert_eq!(sim_stats.tweets_sent, 60);
    assert!(sim_stats.drops >= 5, "{sim_stats:?}");
    assert!(s.reconnects >= 5 && s.disconnects >= 5, "{s:?}");
    assert_eq!(s.tweets, 60);
    assert!(s.disconnect_reasons.len() >= 5, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_split_across_chunks_are_reassembled() {
    let sim = sim(Scenario {
        total: Some(20),
        split_lines: true,
        ..Scenario::default()
    })
    .await;
    let mut src = TwitterSource::connect(&config(&sim, "split"))
        .await
        .unwrap();
    let records = collect(&mut src, 20, Duration::from_secs(20)).await;
    assert_eq!(records.len(), 20);
    assert_unique_in_order(&records);
    for r in &records {
        serde_json::from_slice::<Value>(&r.value).expect("a whole JSON line");
    }
    let s = src.stats();
    assert_eq!((s.non_json_lines, s.partial_lines, s.connects), (0, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_line_is_not_silent() {
    let sim = sim(Scenario {
        total: Some(10),
        drop_after: Some(4),
        drop_mid_line: true,
        ..Scenario::default()
    })
    .await;
    let mut src = TwitterSource::connect(&config(&sim, "midline"))
        .await
        .unwrap();
    let records = collect(&mut src, 10, Duration::from_secs(20)).await;
    assert_eq!(records.len(), 10);
    let (cut, whole): (Vec<&Record>, Vec<&Record>) = records
        .iter()
        .partition(|r| header(r, PARTIAL_HEADER).is_some());
    assert_eq!(cut.len(), 1);
    assert!(cut[0].key.is_none(), "a truncated line has no readable id");
    assert!(cut[0].value.starts_with(b"{\"data\""));
    let whole: Vec<Record> = whole.into_iter().cloned().collect();
    assert_eq!(whole.len(), 9);
    assert_unique_in_order(&whole);
    let s = src.stats();
    assert_eq!((s.partial_lines, s.disconnects, s.reconnects), (1, 1, 1));
    assert_eq!(sim.stats().tweets_sent, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_backs_off_exponentially_from_a_minute() {
    let sim = sim(Scenario {
        total: Some(5),
        reject_next: 3,
        reject_status: 429,
        rate_limit_reset_secs: 0,
        ..Scenario::default()
    })
    .await;
    let cfg = TwitterConfig {
        backoff_scale: 0.005, // 60 s -> 300 ms
        ..config(&sim, "rate_limit")
    };
    let mut src = TwitterSource::connect(&cfg).await.unwrap();
    let records = collect(&mut src, 5, Duration::from_secs(20)).await;
    assert_eq!(records.len(), 5);
    let s = src.stats();
    assert_eq!(s.rate_limited, 3);
    let expected = [300, 600, 1200].map(Duration::from_millis);
    assert_eq!(&s.backoffs[..3], &expected, "{s:?}");
    let times = sim.stats().connect_times_ms;
    assert_eq!(times.len(), 4, "{times:?}");
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, want) in gaps.iter().zip(expected) {
        assert!(*gap >= want.as_millis() as u64, "gaps {gaps:?}");
    }
    assert!(gaps.windows(2).all(|w| w[0] < w[1]), "gaps {gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_reset_header_is_a_floor() {
    let sim = sim(Scenario {
        total: Some(1),
        reject_next: 1,
        reject_status: 429,
        rate_limit_reset_secs: 2,
        ..Scenario::default()
    })
    .await;
    let cfg = TwitterConfig {
        backoff_scale: 0.0001,
        ..config(&sim, "reset")
    };
    let mut src = TwitterSource::connect(&cfg).await.unwrap();
    assert_eq!(collect(&mut src, 1, Duration::from_secs(10)).await.len(), 1);
    let times = sim.stats().connect_times_ms;
    assert_eq!(times.len(), 2);
    assert!(times[1] - times[0] >= 1000, "{times:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_back_off_exponentially_from_five_seconds() {
    let sim = sim(Scenario {
        total: Some(3),
        reject_next: 3,
        reject_status: 503,
        ..Scenario::default()
    })
    .await;
    let mut src = TwitterSource::connect(&config(&sim, "http")).await.unwrap();
    assert_eq!(collect(&mut src, 3, Duration::from_secs(10)).await.len(), 3);
    let s = src.stats();
    assert_eq!(s.http_errors, 3);
    let expected = [50, 100, 200].map(Duration::from_millis);
    assert_eq!(&s.backoffs[..3], &expected);
    let times = sim.stats().connect_times_ms;
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, want) in gaps.iter().zip(expected) {
        assert!(*gap >= want.as_millis() as u64, "gaps {gaps:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_connections_back_off_linearly() {
    // The server ends each response before sending anything: a network-level failure.
    let sim = sim(Scenario {
        total: Some(0),
        end_when_done: true,
        ..Scenario::default()
    })
    .await;
    let mut src = TwitterSource::connect(&config(&sim, "linear"))
        .await
        .unwrap();
    let none = src
        .next_batch(10, Duration::from_millis(600))
        .await
        .unwrap();
    assert!(none.is_empty());
    let s = src.stats();
    assert!(s.backoffs.len() >= 4, "{s:?}");
    let steps: Vec<Duration> = (1..=4).map(|i| Duration::from_micros(2500 * i)).collect();
    assert_eq!(&s.backoffs[..4], &steps[..]);
    assert!(s.network_errors >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_stream_is_detected_and_reopened() {
    let sim = sim(Scenario {
        total: Some(20),
        stall_after: Some(5),
        keepalive_ms: 0,
        ..Scenario::default()
    })
    .await;
    let cfg = TwitterConfig {
        stall_timeout: Duration::from_millis(700),
        ..config(&sim, "stall")
    };
    let mut src = TwitterSource::connect(&cfg).await.unwrap();
    let started = Instant::now();
    let records = collect(&mut src, 20, Duration::from_secs(20)).await;
    assert_eq!(records.len(), 20);
    assert_unique_in_order(&records);
    assert!(started.elapsed() >= Duration::from_millis(700));
    let s = src.stats();
    assert_eq!(s.stalls, 1, "{s:?}");
    assert!(s.reconnects >= 1);
    // The stall ends the first connection; a reconnect may then meet 429 TooManyConnections
    // while the server still holds the stalled one.
    assert!(s.disconnect_reasons[0].contains("stalled"), "{s:?}");
    assert_eq!(sim.stats().stalls, 1);
    assert_eq!(sim.stats().tweets_sent, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_keep_a_quiet_stream_open() {
    let sim = sim(Scenario {
        total: Some(2),
        keepalive_ms: 100,
        ..Scenario::default()
    })
    .await;
    let cfg = TwitterConfig {
        stall_timeout: Duration::from_millis(600),
        ..config(&sim, "quiet")
    };
    let mut src = TwitterSource::connect(&cfg).await.unwrap();
    assert_eq!(collect(&mut src, 2, Duration::from_secs(10)).await.len(), 2);
    let none = src
        .next_batch(10, Duration::from_millis(1500))
        .await
        .unwrap();
    assert!(none.is_empty());
    let s = src.stats();
    assert_eq!((s.stalls, s.connects), (0, 1), "{s:?}");
    assert!(s.keepalives >= 8, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_is_not_json_is_still_a_record() {
    let sim = sim(Scenario {
        total: Some(6),
        garbage_after: Some(3),
        ..Scenario::default()
    })
    .await;
    let mut src = TwitterSource::connect(&config(&sim, "garbage"))
        .await
        .unwrap();
    let records = collect(&mut src, 7, Duration::from_secs(10)).await;
    assert_eq!(records.len(), 7);
    let bad: Vec<&Record> = records.iter().filter(|r| r.key.is_none()).collect();
    assert_eq!(bad.len(), 1);
    assert!(bad[0].value.starts_with(b"<html>"));
    assert!(bad[0].timestamp.is_some());
    assert_eq!(src.stats().non_json_lines, 1);
}

/// A line past the 16 MiB line limit is cut into records marked partial (memory stays
/// bounded; a pipeline dead-letters them as oversized or not JSON) and the stream goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_over_the_line_limit_is_cut_and_the_stream_goes_on() {
    let size = 17 << 20;
    let sim = sim(Scenario {
        total: Some(6),
        garbage_after: Some(3),
        garbage_bytes: size,
        ..Scenario::default()
    })
    .await;
    let mut src = TwitterSource::connect(&config(&sim, "long-line"))
        .await
        .unwrap();
    let mut records = Vec::new();
    while records.iter().filter(|r: &&Record| r.key.is_some()).count() < 6 {
        let more = collect(&mut src, 1, Duration::from_secs(20)).await;
        assert!(
            !more.is_empty(),
            "the stream stopped after {} records",
            records.len()
        );
        records.extend(more);
    }
    let pieces: Vec<&Record> = records.iter().filter(|r| r.key.is_none()).collect();
    assert!(pieces.len() >= 2, "{} pieces", pieces.len());
    assert_eq!(pieces.iter().map(|r| r.value.len()).sum::<usize>(), size);
    assert!(
        pieces
            .iter()
            .all(|r| r.value.len() <= (16 << 20) + (1 << 20))
    );
    assert_eq!(
        header(pieces[0], "twitter.partial").as_deref(),
        Some("true")
    );
    assert!(src.stats().partial_lines >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_is_refused_and_retried() {
    let sim = sim(Scenario {
        total: Some(3),
        keepalive_ms: 100,
        ..Scenario::default()
    })
    .await;
    let cfg = config(&sim, "second");
    let mut first = TwitterSource::connect(&cfg).await.unwrap();
    assert_eq!(
        collect(&mut first, 3, Duration::from_secs(10)).await.len(),
        3
    );
    let mut second = TwitterSource::connect(&cfg).await.unwrap();
    let none = second
        .next_batch(5, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(second.stats().rate_limited >= 1);
    assert_eq!(
        sim.stats().too_many_connections,
        second.stats().rate_limited
    );
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_fatal_and_named() {
    let sim = sim(Scenario::default()).await;
    let cfg = TwitterConfig {
        bearer_token_env: token_env("wrong", Some("not-the-token")),
        ..config(&sim, "wrong_unused")
    };
    let err = TwitterSource::connect(&cfg).await.expect_err("401");
    let msg = format!("{err:#}");
    assert!(msg.contains("401"), "{msg}");
    assert!(msg.contains(&cfg.bearer_token_env), "{msg}");

    // A 401 on the stream itself (token revoked after start) ends the source with an error.
    sim.update(|s| {
        s.reject_next = 1;
        s.reject_status = 401;
    });
    let mut src = TwitterSource::connect(&config(&sim, "revoked"))
        .await
        .unwrap();
    let err = src
        .next_batch(10, Duration::from_secs(2))
        .await
        .expect_err("401 on the stream is fatal");
    assert!(err.to_string().contains("401"), "{err}");
    assert!(src.next_batch(1, Duration::from_millis(10)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_names_the_variable() {
    let sim = sim(Scenario::default()).await;
    let cfg = TwitterConfig {
        bearer_token_env: token_env("missing", None),
        ..config(&sim, "missing_unused")
    };
    let err = TwitterSource::connect(&cfg)
        .await
        .expect_err("missing token");
    let msg = err.to_string();
    assert!(msg.contains("SLUICE_TEST_TWITTER_TOKEN_MISSING"), "{msg}");
    assert!(msg.contains("not set"), "{msg}");
    assert_eq!(sim.stats().rules_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_api_fails_start_after_retries() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = TwitterConfig {
        base_url: format!("http://127.0.0.1:{port}"),
        bearer_token_env: token_env("unreachable", Some(TOKEN)),
        keywords: vec!["bts".into()],
        backoff_scale: 0.01,
        ..TwitterConfig::default()
    };
    let err = TwitterSource::connect(&cfg).await.expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains("failed 5 times"), "{msg}");
}

/// The whole path: `host`'s pipeline with the Twitter source against the simulator, through
/// the real keyword-filter plugin, into a file; the stream drops every 50 tweets and sends one
/// line of garbage, which must end up in the dead letter rather than vanish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_streams_tweets_through_the_chain_across_reconnects() {
    let sim = sim(Scenario {
        total: Some(200),
        drop_after: Some(50),
        drop_every: true,
        garbage_after: Some(100),
        keepalive_ms: 100,
        ..Scenario::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    common::build_plugins();
    let token = token_env("pipeline", Some(TOKEN));
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
[pipeline]
chain = ["bts"]
batch_size = 20
batch_timeout = "50ms"
[source]
type = "twitter"
base_url = "{url}"
keywords = ["bts"]
bearer_token_env = "{token}"
backoff_scale = 0.01
[transforms.bts]
plugin = "{plugin}"
config = {{ keywords = "bts", whole_word = false }}
{dead_and_out}"#,
            url = sim.base_url(),
            plugin = common::plugin("keyword_filter").display(),
            dead_and_out = common::FILE_OUT_AND_DEAD,
        ),
    )
    .unwrap();
    let p = sluice::config::Pipeline::load(&pipeline).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let run =
        tokio::spawn(async move { sluice::pipeline::run(&p, Default::default(), stopped).await });
    let lines = |f: &str| {
        std::fs::read_to_string(dir.path().join(f))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while (lines("out.ndjson") < 200 || lines("dead.ndjson") < 1) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.send(true).unwrap();
    let summary = run.await.unwrap().unwrap();
    assert_eq!(
        (summary.records_out, summary.dead_lettered),
        (200, 1),
        "{summary:?}"
    );
    assert_eq!(summary.records_in, 201);
    let out = std::fs::read_to_string(dir.path().join("out.ndjson")).unwrap();
    let ids: HashSet<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["data"]["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        ids.len(),
        200,
        "every tweet once, across {} connects",
        sim.stats().connects
    );
    assert!(sim.stats().connects >= 4);
    let dead: Value = serde_json::from_str(
        std::fs::read_to_string(dir.path().join("dead.ndjson"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert!(
        dead["reason"]
            .as_str()
            .unwrap()
            .starts_with("not valid JSON"),
        "{dead}"
    );
}

// ------------------------------------------------------------------------------------------
// The Twitter -> Kafka hop through the `host` binary, against a stream that loses what it
// sends while nobody reads it (the simulator's realtime mode), as the real one does.
// ------------------------------------------------------------------------------------------

/// The seed's first hop with a disk spool, and `extra` in `[source]`.
fn hop_pipeline(
    dir: &std::path::Path,
    sim: &Sim,
    brokers: &str,
    topic: &str,
    extra: &str,
) -> std::path::PathBuf {
    let p = dir.join("hop.toml");
    std::fs::write(
        &p,
        format!(
            r#"
[pipeline]
name = "twitter-hop"
batch_size = 100
batch_timeout = "100ms"
[source]
type = "twitter"
base_url = "{url}"
keywords = ["bts"]
bearer_token_env = "SLUICE_HOP_TOKEN"
backoff_scale = 0.01
{extra}
[source.spool]
dir = "spool"
[sinks.kafka]
type = "kafka"
brokers = "{brokers}"
topic = "{topic}"
[sinks.kafka.create_topic]
partitions = 3
replication = 1
[dead_letter]
type = "file"
path = "dead.ndjson"
"#,
            url = sim.base_url()
        ),
    )
    .unwrap();
    p
}

/// A `host run` of the hop, its log in `dir/host-N.log`.
struct Hop {
    pipeline: std::path::PathBuf,
    dir: std::path::PathBuf,
    runs: usize,
    child: common::KillOnDrop,
}

impl Hop {
    fn start(pipeline: std::path::PathBuf, dir: &std::path::Path) -> Hop {
        let mut hop = Hop {
            pipeline,
            dir: dir.to_path_buf(),
            runs: 0,
            child: common::KillOnDrop(None),
        };
        hop.spawn();
        hop
    }

    fn spawn(&mut self) {
        self.runs += 1;
        let log = std::fs::File::create(self.dir.join(format!("host-{}.log", self.runs))).unwrap();
        let child = common::host_run(&self.pipeline)
            .env("SLUICE_HOP_TOKEN", TOKEN)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = common::KillOnDrop(Some(child));
    }

    /// kill -9: whatever the host holds in memory is gone.
    fn kill(&mut self) {
        let mut child = self.child.0.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn assert_alive(&mut self) {
        if let Some(status) = self.child.0.as_mut().unwrap().try_wait().unwrap() {
            panic!("the host exited ({status}):\n{}", self.logs());
        }
    }

    fn stop(&mut self) {
        let mut child = self.child.0.take().unwrap();
        let status = common::stop_with(&mut child, "TERM", Duration::from_secs(40));
        assert!(status.success(), "{status}:\n{}", self.logs());
    }

    fn logs(&self) -> String {
        (1..=self.runs)
            .map(|n| {
                std::fs::read_to_string(self.dir.join(format!("host-{n}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n----\n")
    }
}

/// Waits (polling, off the async workers) until `done`, or panics naming `what`.
async fn wait_for(what: &str, limit: Duration, hop: &mut Hop, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !tokio::task::block_in_place(&mut done) {
        hop.assert_alive();
        assert!(
            Instant::now() < end,
            "{what} within {limit:?}:\n{}",
            hop.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for the stream to end and for Kafka to hold every tweet, stops the host, and checks
/// the topic holds exactly the matching tweets that happened; returns (messages, distinct ids).
async fn finish(
    hop: &mut Hop,
    sim: &Sim,
    brokers: &str,
    topic: &str,
    limit: Duration,
) -> (usize, usize) {
    wait_for("the stream to end", limit, hop, || sim.all_happened()).await;
    let want = sim.happened().len();
    wait_for("every tweet in Kafka", limit, hop, || {
        let keys: HashSet<String> = common::kafka::keys_in(brokers, topic).into_iter().collect();
        keys.len() >= want
    })
    .await;
    hop.stop();
    assert_exactly_the_tweets_that_happened(sim, brokers, topic)
}

/// Every matching tweet that happened is in the topic, and no other; returns (messages,
/// distinct ids).
fn assert_exactly_the_tweets_that_happened(
    sim: &Sim,
    brokers: &str,
    topic: &str,
) -> (usize, usize) {
    let want: std::collections::BTreeSet<String> =
        sim.happened().iter().map(u64::to_string).collect();
    let keys = common::kafka::keys_in(brokers, topic);
    let got: std::collections::BTreeSet<String> = keys.iter().cloned().collect();
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} of {} tweets missing ({missing:?}), {} unexpected ({extra:?})",
        missing.len(),
        want.len(),
        extra.len()
    );
    (keys.len(), got.len())
}

/// A kill -9 of the host mid-stream: what it had read from the stream is in the spool and is
/// replayed at the restart; what the stream sent while it was down, and what was in flight on
/// the killed connection, comes back through `backfill_minutes`. Kafka ends up with exactly the
/// matching tweets that happened. The backfill's overlap may reach Kafka twice (after a
/// restart the source's recent-id window is empty): at most the minute asked for, which
/// id-keyed sinks (Elasticsearch, BigQuery) absorb.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twitter_hop_loses_no_tweet_across_a_kill_9() {
    let sim = sim(Scenario {
        realtime: true,
        rate: 200.0,
        total: Some(400),
        keepalive_ms: 100,
        ..Scenario::default()
    })
    .await;
    let brokers = common::kafka_bootstrap();
    let topic = common::unique("twitter-hop-kill");
    let dir = common::tempdir();
    let pipeline = hop_pipeline(dir.path(), &sim, &brokers, &topic, "backfill_minutes = 1");
    let mut hop = Hop::start(pipeline, dir.path());
    wait_for("100 tweets sent", Duration::from_secs(60), &mut hop, || {
        sim.stats().tweets_sent >= 100
    })
    .await;
    hop.kill();
    let at_kill = sim.stats().tweets_sent;
    // The stream goes on with nobody reading it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    hop.spawn();
    let (messages, ids) = finish(&mut hop, &sim, &brokers, &topic, Duration::from_secs(90)).await;
    let stats = sim.stats();
    eprintln!(
        "killed at {at_kill} tweets sent; {ids} tweets, {messages} messages in Kafka ({} \
         duplicates); simulator: {} backfilled, {} lost while away",
        messages - ids,
        stats.backfilled,
        stats.lost_while_away
    );
    // The kill cost the stream something, which only the backfill brought back.
    assert!(
        stats.backfill_requests >= 2 && stats.backfilled > 0,
        "{stats:?}"
    );
}

/// Kafka down for 60 s under the hop: the sink waits (retries for as long as it takes), the
/// source keeps reading the stream into the spool so Twitter never drops it as a slow reader,
/// and once the broker is back every tweet arrives. Without the spool the stalled pipeline
/// stops reading, the stream drops the connection, and what it sends meanwhile is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twitter_hop_loses_no_tweet_across_a_60_s_kafka_outage() {
    let dir = common::tempdir();
    let (broker, brokers) = tokio::task::block_in_place(|| {
        common::kafka::OwnBroker::start(&dir.path().join("kafka"), "")
    });
    // About 90 matching tweets a second (14 MB a minute): far more than the pipeline's queues
    // and the socket buffers hold, so a reader that stops is dropped, 5 s after it stopped
    // (a busy CI machine may pause a reader that keeps up for a second or two).
    let sim = sim(Scenario {
        realtime: true,
        rate: 400.0,
        total: Some(7000),
        keepalive_ms: 100,
        slow_reader_lag: Some(2000),
        ..Scenario::default()
    })
    .await;
    let topic = common::unique("twitter-hop-outage");
    let pipeline = hop_pipeline(dir.path(), &sim, &brokers, &topic, "");
    let mut hop = Hop::start(pipeline, dir.path());
    wait_for(
        "500 tweets in Kafka",
        Duration::from_secs(60),
        &mut hop,
        || common::kafka::keys_in(&brokers, &topic).len() >= 500,
    )
    .await;
    tokio::task::block_in_place(|| broker.script("stop"));
    let at_stop = sim.stats().tweets_sent;
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(60) {
        hop.assert_alive();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let during = sim.stats().tweets_sent - at_stop;
    tokio::task::block_in_place(|| broker.script("start"));
    let (messages, ids) = finish(&mut hop, &sim, &brokers, &topic, Duration::from_secs(120)).await;
    let stats = sim.stats();
    eprintln!(
        "{during} tweets read during the outage; {ids} tweets, {messages} messages in Kafka; \
         simulator: {} slow-reader drops, {} lost while away",
        stats.slow_disconnects, stats.lost_while_away
    );
    // The stream was read all along.
    assert!(during > 3000, "only {during} tweets read during the outage");
    assert_eq!(
        (stats.slow_disconnects, stats.lost_while_away),
        (0, 0),
        "{stats:?}"
    );
}
