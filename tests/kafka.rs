//! Kafka stages against a real broker (`compose/kafka.sh start`; `cargo xtask test` starts it).
//! The broker is found at `KAFKA_BOOTSTRAP` (default 127.0.0.1:9092); without one these tests
//! fail. Every test uses its own topics and groups, so they run in parallel.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::KillOnDrop as Running; // stops a child host even when the test fails
use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use serde_json::Value;
use tweetgen::{GenerateOptions, TweetGenerator};

/// The broker under test; panics (the test fails) when nothing listens there.
fn bootstrap() -> String {
    let b = kafka_bootstrap();
    assert_reachable(&b);
    b
}

fn assert_reachable(bootstrap: &str) {
    let reachable = bootstrap.split(',').any(|hp| {
        hp.to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
    });
    assert!(
        reachable,
        "no Kafka broker at {bootstrap}: start one with `bash compose/kafka.sh start` \
         (`cargo xtask test` does) or set KAFKA_BOOTSTRAP"
    );
}

/// A number in `lo..hi` that differs between runs.
fn random_in(lo: u64, hi: u64) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    lo + RandomState::new().hash_one(Instant::now()) % (hi - lo)
}

fn write_pipeline(dir: &Path, name: &str, toml: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, toml).unwrap();
    p
}

/// Runs a pipeline to its end; returns its JSON summary.
fn run_host(pipeline: &Path) -> Value {
    let o: Output = host_run(pipeline).output().unwrap();
    assert!(
        o.status.success(),
        "host failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Starts a pipeline that runs until stopped; stderr goes to `log`.
fn spawn_host(pipeline: &Path, log: &Path) -> Child {
    host_run(pipeline)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// SIGINT: the host drains in-flight batches, commits and exits.
fn stop_host(mut child: Child) {
    interrupt(&mut child, Duration::from_secs(30));
}

/// Ids of the tweets a `generate` source with `seed` and `count` produces.
/// Ids in an NDJSON file (with repeats), or none if it does not exist yet.
fn ids_in(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    // A line still being written is ignored until it is complete.
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .map(|d: Value| tweet_id(&d).expect("a tweet id"))
        .collect()
}

/// Complete lines in a file (cheap: no parsing).
fn line_count(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Waits until `files` together hold every id of `want`; returns what they hold.
fn wait_for_all(files: &[&Path], want: &BTreeSet<String>, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if files.iter().map(|f| line_count(f)).sum::<usize>() < want.len() {
            assert!(
                Instant::now() < deadline,
                "records missing after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let got: Vec<String> = files.iter().flat_map(|f| ids_in(f)).collect();
        let seen: BTreeSet<&String> = got.iter().collect();
        let missing = want.iter().filter(|id| !seen.contains(id)).count();
        if missing == 0 {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} records never arrived within {timeout:?}",
            want.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A pipeline producing `count` generated tweets (seed `seed`) to `topic` (3 partitions).
fn producer_toml(brokers: &str, topic: &str, seed: u64, count: usize, extra: &str) -> String {
    common::kafka::producer_toml(brokers, topic, seed, count, 3, extra)
}

/// A pipeline reading `topic` as `group` through `enrich` into `out`.
fn consumer_toml(brokers: &str, topic: &str, group: &str, out: &Path, props: &str) -> String {
    format!(
        r#"
[pipeline]
chain = ["enrich"]
batch_size = {batch}
batch_timeout = "50ms"
[source]
type = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "{group}"
start = "earliest"
[source.properties]
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500
{props}
[transforms.enrich]
plugin = "{plugins}/enrich.wasm"
[sinks.out]
type = "file"
path = "{out}"
[dead_letter]
type = "file"
path = "{out}.dead"
"#,
        batch = 50,
        plugins = root().join("guest-plugins/dist").display(),
        out = out.display(),
    )
}

fn consumer_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    c
}

/// Reads `n` messages from `topic` (fails after 60 s): (key, value, headers).
type Msg = (Option<Vec<u8>>, Vec<u8>, HashMap<String, String>);
fn read_topic(brokers: &str, topic: &str, n: usize) -> Vec<Msg> {
    let consumer: BaseConsumer = consumer_config(brokers).create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "read {} of {n} from {topic}",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push((
                    m.key().map(<[u8]>::to_vec),
                    m.payload().unwrap_or_default().to_vec(),
                    kafka::headers(&m),
                ));
            }
            Some(Err(e)) => eprintln!("reader: {e}"),
            None => {}
        }
    }
    out
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn round_trip_through_a_topic_keeps_every_record_and_keys_by_tweet_id() {
    let brokers = bootstrap();
    let dir = tempdir();
    let (topic, group) = (unique("roundtrip"), unique("twitter_log_to_es"));
    let n = 3000;
    let want = kafka::generated_ids::<Vec<String>>(7, n);

    let produce = write_pipeline(
        dir.path(),
        "produce.toml",
        &producer_toml(&brokers, &topic, 7, n, ""),
    );
    let s = run_host(&produce);
    assert_eq!(s["records_in"], n as u64);
    assert_eq!(s["records_out"], n as u64);
    assert_eq!(s["dead_lettered"], 0);

    // The message key is the tweet id found in the JSON.
    for (key, value, _) in read_topic(&brokers, &topic, 50) {
        let doc: Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(
            String::from_utf8(key.expect("a key")).unwrap(),
            tweet_id(&doc).unwrap()
        );
    }

    let out = dir.path().join("out.ndjson");
    let consume = write_pipeline(
        dir.path(),
        "consume.toml",
        &consumer_toml(&brokers, &topic, &group, &out, ""),
    );
    let mut host = Running(Some(spawn_host(&consume, &dir.path().join("c.log"))));
    let want_set: BTreeSet<String> = want.iter().cloned().collect();
    wait_for_all(&[&out], &want_set, Duration::from_secs(90));
    // Nothing more arrives: exactly once without failures.
    std::thread::sleep(Duration::from_millis(500));
    stop_host(host.0.take().unwrap());
    let got = ids_in(&out);
    assert_eq!(got.len(), n, "exact count");
    assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), want_set);

    // The group's offsets were committed: a restart reads nothing again.
    let mut again = Running(Some(spawn_host(&consume, &dir.path().join("c2.log"))));
    std::thread::sleep(Duration::from_secs(4));
    stop_host(again.0.take().unwrap());
    assert_eq!(
        ids_in(&out).len(),
        n,
        "records read twice after a clean stop"
    );
}

/// A static member fenced by another that takes its `group.instance.id` (a restarted member
/// does that to a zombie; a broker restart can do it to a live one) gets `FencedInstanceId`,
/// a fatal consumer error. The host replaces its consumer instead of exiting, the new one
/// takes the partitions back, and every record arrives.
#[test]
fn a_fenced_consumer_is_replaced_and_every_record_still_arrives() {
    let brokers = bootstrap();
    let dir = tempdir();
    let (topic, group) = (unique("fenced"), unique("fenced-group"));
    let n = 4000;
    let want: BTreeSet<String> = kafka::generated_ids(17, n);
    let produce = write_pipeline(
        dir.path(),
        "produce.toml",
        &producer_toml(&brokers, &topic, 17, n, "rate = 400"),
    );
    let mut producer = Running(Some(
        host_run(&produce)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let out = dir.path().join("out.ndjson");
    let consume = write_pipeline(
        dir.path(),
        "consume.toml",
        &consumer_toml(
            &brokers,
            &topic,
            &group,
            &out,
            r#""group.instance.id" = "fenced-host""#,
        ),
    );
    let log = dir.path().join("consumer.log");
    let mut host = Running(Some(spawn_host(&consume, &log)));
    let deadline = Instant::now() + Duration::from_secs(60);
    while line_count(&out) < 200 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The intruder joins with the host's instance id, which fences the host's consumer; it
    // stays until the host has noticed.
    let intruder: BaseConsumer = consumer_config(&brokers)
        .set("group.id", &group)
        .set("group.instance.id", "fenced-host")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    intruder.subscribe(&[&topic]).unwrap();
    let replaced = || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("a new consumer takes its place"))
    };
    let until = Instant::now() + Duration::from_secs(60);
    while !replaced() {
        assert!(
            Instant::now() < until,
            "the host's consumer was not fenced within 60 s"
        );
        let _ = intruder.poll(Duration::from_millis(100));
    }
    drop(intruder);
    let got = wait_for_all(&[&out], &want, Duration::from_secs(120));
    let status = host.0.as_mut().unwrap().try_wait().unwrap();
    assert!(status.is_none(), "the host exited: {status:?}");
    stop_host(host.0.take().unwrap());
    let _ = producer.0.take().map(|mut p| p.wait());
    eprintln!(
        "{n} records, {} lines delivered ({} duplicates)",
        got.len(),
        got.len() - n
    );
}

#[test]
fn kill_9_of_the_consumer_loses_nothing() {
    let brokers = bootstrap();
    let dir = tempdir();
    let (topic, group) = (unique("kill9"), unique("kill9-group"));
    let n = 40_000;
    let want: BTreeSet<String> = kafka::generated_ids(11, n);
    let produce = write_pipeline(
        dir.path(),
        "produce.toml",
        &producer_toml(&brokers, &topic, 11, n, ""),
    );
    assert_eq!(run_host(&produce)["records_out"], n as u64);

    let out = dir.path().join("out.ndjson");
    // Static membership: a restarted host takes its partitions back without waiting for the
    // killed one's session to expire.
    let consume = write_pipeline(
        dir.path(),
        "consume.toml",
        &consumer_toml(
            &brokers,
            &topic,
            &group,
            &out,
            r#""group.instance.id" = "kill9-host""#,
        )
        .replace("batch_size = 50", "batch_size = 10"),
    );
    let mut kills = 0;
    let mut progress = Vec::new();
    while kills < 4 {
        let child = spawn_host(&consume, &dir.path().join(format!("run{kills}.log")));
        let mut running = Running(Some(child));
        // Let it get going (join the group), then kill it somewhere in the middle.
        let before = line_count(&out);
        let deadline = Instant::now() + Duration::from_secs(60);
        while line_count(&out) == before {
            assert!(Instant::now() < deadline, "run {kills} made no progress");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(random_in(50, 700)));
        let mut child = running.0.take().unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        progress.push(line_count(&out));
        if line_count(&out) >= n && ids_in(&out).into_iter().collect::<BTreeSet<_>>() == want {
            break;
        }
    }
    eprintln!("lines in the sink after each kill -9: {progress:?}");
    assert!(
        kills >= 3,
        "the consumer finished before 3 kills: {progress:?}"
    );
    let mut last = Running(Some(spawn_host(&consume, &dir.path().join("last.log"))));
    let got = wait_for_all(&[&out], &want, Duration::from_secs(120));
    stop_host(last.0.take().unwrap());
    eprintln!(
        "{} records, {} lines delivered ({} duplicates)",
        n,
        got.len(),
        got.len() - n
    );
}

#[test]
fn broker_restart_mid_stream_loses_nothing() {
    bootstrap(); // the shared broker is not used, but its absence means a broken setup
    let dir = tempdir();
    let (broker, brokers) = kafka::OwnBroker::start(&dir.path().join("state"), "");
    let (topic, group) = (unique("restart"), unique("restart-group"));
    let n = 3000;
    let want: BTreeSet<String> = kafka::generated_ids(13, n);

    // Both sides run across the outage: ~10 s of producing at 300 records/s.
    let produce = write_pipeline(
        dir.path(),
        "produce.toml",
        &producer_toml(&brokers, &topic, 13, n, "rate = 300"),
    );
    let mut producer = Running(Some(
        host_run(&produce)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("p.log")).unwrap())
            .spawn()
            .unwrap(),
    ));
    let out = dir.path().join("out.ndjson");
    let consume = write_pipeline(
        dir.path(),
        "consume.toml",
        &consumer_toml(&brokers, &topic, &group, &out, ""),
    );
    let mut consumer = Running(Some(spawn_host(&consume, &dir.path().join("c.log"))));

    let deadline = Instant::now() + Duration::from_secs(60);
    while line_count(&out) < 300 {
        assert!(Instant::now() < deadline, "no records before the restart");
        std::thread::sleep(Duration::from_millis(50));
    }
    broker.script("stop");
    let during = line_count(&out);
    std::thread::sleep(Duration::from_secs(3));
    broker.script("start");
    eprintln!("restarted the broker after {during} records");

    let o = producer.0.take().unwrap().wait_with_output().unwrap();
    assert!(o.status.success(), "producer failed");
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["records_out"], n as u64);
    assert_eq!(s["dead_lettered"], 0);
    let got = wait_for_all(&[&out], &want, Duration::from_secs(120));
    stop_host(consumer.0.take().unwrap());
    assert!(got.len() >= n);
}

/// A replay of old tweets must not be handed to the broker's retention. Tweets dated 2018 go
/// generate -> Kafka -> file through a broker that keeps 24 hours and checks retention every
/// second. Stamped with the produce time (the default) every id arrives, its event time in the
/// `sluice.event_time` header and back as the record timestamp on the consuming side. The same
/// tweets stamped with their event time (`timestamp = "event"`, the old behaviour) are deleted
/// by the broker: that is what this test would see if the default regressed.
#[test]
fn tweets_dated_years_ago_outlive_a_24_hour_retention() {
    bootstrap(); // the shared broker is not used, but its absence means a broken setup
    let dir = tempdir();
    let (_broker, brokers) = kafka::OwnBroker::start(
        &dir.path().join("state"),
        "log.retention.check.interval.ms=1000",
    );
    let (n, seed, start) = (1500, 17, "2018-10-10T20:19:24Z");
    let mut g = TweetGenerator::new(&GenerateOptions {
        seed,
        start_time: start.into(),
        ..GenerateOptions::default()
    });
    let mut buf = Vec::new();
    let created: HashMap<String, i64> = (0..n)
        .map(|_| {
            let t = g.next_into(&mut buf);
            (t.id.to_string(), t.created_at_ms)
        })
        .collect();
    let want: BTreeSet<String> = created.keys().cloned().collect();

    let (kept, event) = (unique("old-default"), unique("old-event"));
    for (topic, timestamp) in [(&kept, ""), (&event, "timestamp = \"event\"")] {
        let toml = producer_toml(&brokers, topic, seed, n, "")
            .replace(generate_start(), start)
            .replace(
                "[sinks.kafka.create_topic]",
                &format!("{timestamp}\n[sinks.kafka.create_topic]"),
            );
        let p = write_pipeline(dir.path(), &format!("{topic}.toml"), &toml);
        let s = run_host(&p);
        assert_eq!(s["records_out"], n, "{topic}: {s}");
    }

    // The event-stamped topic empties: the retention pass ran over both topics.
    let reader: BaseConsumer = consumer_config(&brokers).create().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left: i64 = (0..3)
            .map(|p| {
                let (lo, hi) = reader
                    .fetch_watermarks(&event, p, Duration::from_secs(10))
                    .unwrap();
                hi - lo
            })
            .sum();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not delete the event-stamped tweets ({left} left)"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // On the wire: stamped when produced, the event time in the header.
    for (key, _, headers) in read_topic(&brokers, &kept, n) {
        let id = String::from_utf8(key.expect("keyed by tweet id")).unwrap();
        assert_eq!(
            headers.get("sluice.event_time"),
            Some(&created[&id].to_string()),
            "{id}"
        );
    }

    // Through a host: every id arrives.
    let out = dir.path().join("out.ndjson");
    let consume = write_pipeline(
        dir.path(),
        "consume.toml",
        &consumer_toml(&brokers, &kept, &unique("old-group"), &out, ""),
    );
    let mut consumer = Running(Some(spawn_host(&consume, &dir.path().join("c.log"))));
    wait_for_all(&[&out], &want, Duration::from_secs(120));
    stop_host(consumer.0.take().unwrap());

    // The source gives the records their event time back, and only as the timestamp.
    let config: sluice::sources::kafka::KafkaSourceConfig =
        serde_json::from_value(serde_json::json!({
            "brokers": brokers, "topics": [kept], "group_id": unique("old-source"),
        }))
        .unwrap();
    let records = block_on(async {
        use sluice::sources::{SourceContext, SourceSettings as _};
        let cx = SourceContext {
            batch_size: 500,
            batch_timeout: Duration::from_millis(200),
            base_dir: dir.path().to_path_buf(),
            telemetry: Default::default(),
            ownership: Default::default(),
        };
        let mut source = config.open(&cx).unwrap();
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while records.len() < n && Instant::now() < deadline {
            records.extend(source.next_batch().await.unwrap().unwrap().records);
        }
        records
    });
    assert_eq!(records.len(), n);
    for r in &records {
        let id = String::from_utf8(r.key.clone().unwrap()).unwrap();
        assert_eq!(r.timestamp, Some(created[&id]), "{id}");
        assert!(r.headers.iter().all(|h| h.key != "sluice.event_time"));
    }
}

/// Partitions in the host's last "partitions assigned" log line, if it had one.
fn last_assignment(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rev().find(|l| l.contains("partitions "))?;
    let (_, parts) = line.split_once("partitions assigned: ")?;
    (parts != "none").then(|| parts.to_owned())
}

/// Two hosts split a 3-partition topic; then one leaves mid-stream and the other takes over
/// its partitions: together they deliver everything.
#[test]
fn two_hosts_in_one_group_split_the_partitions() {
    let brokers = bootstrap();
    let dir = tempdir();
    let (topic, group) = (unique("split"), unique("split-group"));
    let n = 3000;
    let want: BTreeSet<String> = kafka::generated_ids(17, n);
    // The topic exists (3 partitions) before the consumers subscribe.
    let create = write_pipeline(
        dir.path(),
        "create.toml",
        &producer_toml(&brokers, &topic, 17, 0, "").replace("count = 0", "count = 1"),
    );
    run_host(&create);
    let first: BTreeSet<String> = kafka::generated_ids(17, 1);

    let (out_a, out_b) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let pa = write_pipeline(
        dir.path(),
        "a.toml",
        &consumer_toml(&brokers, &topic, &group, &out_a, ""),
    );
    let pb = write_pipeline(
        dir.path(),
        "b.toml",
        &consumer_toml(&brokers, &topic, &group, &out_b, ""),
    );
    let mut a = Running(Some(spawn_host(&pa, &log_a)));
    wait_for_all(&[&out_a], &first, Duration::from_secs(60));
    let mut b = Running(Some(spawn_host(&pb, &log_b)));
    // The rebalance is over when both hold partitions and together hold all three.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let (Some(pa), Some(pb)) = (last_assignment(&log_a), last_assignment(&log_b)) {
            let count = |s: &str| s.split(' ').count();
            if count(&pa) + count(&pb) == 3 {
                eprintln!("assigned: a {pa}, b {pb}");
                break;
            }
        }
        assert!(Instant::now() < deadline, "the group never split the topic");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Records arrive for ~3 s; halfway, A leaves and B takes over A's partitions mid-stream.
    let produce = write_pipeline(
        dir.path(),
        "produce.toml",
        &producer_toml(&brokers, &topic, 17, n, "rate = 1000"),
    );
    let mut producer = Running(Some(
        host_run(&produce).stdout(Stdio::null()).spawn().unwrap(),
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while line_count(&out_a) < 500 || line_count(&out_b) < 500 {
        assert!(
            Instant::now() < deadline,
            "a and b did not both receive records"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_host(a.0.take().unwrap());
    let in_a = ids_in(&out_a).len();
    assert!(producer.0.take().unwrap().wait().unwrap().success());
    let got = wait_for_all(&[&out_a, &out_b], &want, Duration::from_secs(90));
    stop_host(b.0.take().unwrap());
    let in_b = ids_in(&out_b).len();
    let b_log = std::fs::read_to_string(&log_b).unwrap();
    assert!(
        b_log
            .lines()
            .filter_map(|l| l.split_once("partitions assigned: "))
            .any(|(_, p)| p.split(' ').count() == 3),
        "b never took over all partitions:\n{b_log}"
    );
    // The first record was produced twice (creating the topic, then with the rest).
    eprintln!(
        "a got {in_a}, b got {in_b}, {} duplicates",
        got.len() - n - 1
    );
}

/// `retry_give_up` on a Kafka sink: records a broker never acknowledges are dead-lettered with
/// librdkafka's reason once the time is spent, and the run goes on to its end. (Without it they
/// wait for the broker: the default is to retry for as long as it takes.)
#[test]
fn a_kafka_sink_that_gives_up_dead_letters_its_records_with_the_last_error() {
    bootstrap();
    let dir = tempdir();
    std::fs::write(
        dir.path().join("in.ndjson"),
        "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n",
    )
    .unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[source]
type = "file"
paths = ["in.ndjson"]
[sinks.out]
type = "kafka"
brokers = "127.0.0.1:{port}"
topic = "nowhere"
retry_give_up = "2s"
[dead_letter]
type = "file"
path = "dead.ndjson"
"#,
            port = free_port()
        ),
    );
    let t0 = Instant::now();
    let s = run_host(&pipeline);
    assert_eq!(s["dead_lettered"], 3, "{s}");
    let dead = std::fs::read_to_string(dir.path().join("dead.ndjson")).unwrap();
    for line in dead.lines() {
        let d: Value = serde_json::from_str(line).unwrap();
        let reason = d["reason"].as_str().unwrap();
        assert!(reason.contains("Kafka delivery failed"), "{reason}");
        assert_eq!(d["stage"], "sinks.out", "{d}");
    }
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
}

#[test]
fn dead_letters_go_to_a_kafka_topic_with_the_reason() {
    let brokers = bootstrap();
    let dir = tempdir();
    let (topic, dlq) = (unique("dl-out"), unique("dl-dlq"));
    let mut input = fixture("tweets.ndjson");
    input.extend_from_slice(b"not json at all\n");
    // Larger than the sink's message.max.bytes: refused by the producer, so dead-lettered.
    input.extend_from_slice(format!("{{\"text\":\"bts {}\"}}\n", "x".repeat(200_000)).as_bytes());
    std::fs::write(dir.path().join("in.ndjson"), input).unwrap();
    let pipeline = write_pipeline(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[pipeline]
chain = ["bts"]
[source]
type = "file"
paths = ["in.ndjson"]
[transforms.bts]
plugin = "{plugins}/keyword_filter.wasm"
config = {{ keywords = "bts,방탄소년단" }}
[sinks.out]
type = "kafka"
brokers = "{brokers}"
topic = "{topic}"
properties = {{ "message.max.bytes" = 100000 }}
[dead_letter]
type = "kafka"
brokers = "{brokers}"
topic = "{dlq}"
"#,
            plugins = root().join("guest-plugins/dist").display()
        ),
    );
    let s = run_host(&pipeline);
    assert_eq!(s["dead_lettered"], 2, "{s}");
    let mut dead = read_topic(&brokers, &dlq, 2);
    dead.sort_by_key(|(_, v, _)| v.len());
    let (_, value, h) = &dead[0];
    assert_eq!(value, b"not json at all");
    assert_eq!(h["sluice.stage"], "bts");
    assert_eq!(h["sluice.plugin"], "keyword_filter.wasm");
    assert!(h["sluice.reason"].starts_with("not valid JSON"), "{h:?}");
    let (_, value, h) = &dead[1];
    assert!(value.len() > 200_000);
    assert_eq!(h["sluice.stage"], "sinks.out");
    assert!(
        h["sluice.reason"].contains("Kafka delivery failed"),
        "{h:?}"
    );
    // The good records made it; in = out + dropped + dead-lettered.
    let count = |k: &str| s[k].as_u64().unwrap();
    assert_eq!(
        count("records_in"),
        count("records_out") + count("dropped") + count("dead_lettered")
    );
    let kept = count("records_out") as usize;
    assert_eq!(read_topic(&brokers, &topic, kept).len(), kept);
}

#[test]
fn the_sink_creates_its_topic_with_partitions_and_retention() {
    let brokers = bootstrap();
    let dir = tempdir();
    let topic = unique("created");
    let pipeline = write_pipeline(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[source]
type = "generate"
count = 10
[sinks.k]
type = "kafka"
brokers = "{brokers}"
topic = "{topic}"
acks = "1"
[sinks.k.create_topic]
partitions = 5
replication = 1
retention_bytes = 100000000
configs = {{ "cleanup.policy" = "delete" }}
"#
        ),
    );
    assert_eq!(run_host(&pipeline)["records_out"], 10);
    // Running again leaves the existing topic alone.
    assert_eq!(run_host(&pipeline)["records_out"], 10);

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let meta = admin
        .inner()
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .unwrap();
    assert_eq!(meta.topics()[0].partitions().len(), 5);
    let configs =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(&topic)], &AdminOptions::new()))
            .unwrap();
    let resource = configs.into_iter().next().unwrap().unwrap();
    let value = |name: &str| resource.get(name).and_then(|e| e.value.clone());
    assert_eq!(value("retention.bytes").as_deref(), Some("100000000"));
    assert_eq!(value("cleanup.policy").as_deref(), Some("delete"));
    assert_eq!(read_topic(&brokers, &topic, 20).len(), 20);
}

#[test]
fn example_pipelines_run_against_the_broker() {
    let brokers = bootstrap();
    let dir = tempdir();
    let (topic, dlq, group) = (unique("twitter"), unique("twitter-dl"), unique("es"));
    let with_env = |mut c: Command, env: &[(&str, &str)]| {
        c.envs(env.iter().copied());
        c
    };
    let produce = with_env(
        host_run(Path::new("examples/generate-to-kafka.toml")),
        &[
            ("SLUICE_SOURCE__COUNT", "2000"),
            // Recent event times, so the broker's time-based retention leaves them alone.
            (
                "SLUICE_SOURCE__TWEETS__START_TIME",
                &chrono::Utc::now().to_rfc3339(),
            ),
            ("SLUICE_SINKS__KAFKA__BROKERS", &brokers),
            ("SLUICE_SINKS__KAFKA__TOPIC", &topic),
            ("SLUICE_DEAD_LETTER__BROKERS", &brokers),
            ("SLUICE_DEAD_LETTER__TOPIC", &dlq),
        ],
    )
    .output()
    .unwrap();
    common::assert_success(&produce);
    let s: Value = serde_json::from_slice(&produce.stdout).unwrap();
    let kept = s["records_out"].as_u64().unwrap() as usize;
    assert!(kept > 300 && kept < 1000, "{s}");

    let out = dir.path().join("es.ndjson");
    let consume = with_env(
        host_run(Path::new("examples/kafka-to-file.toml")),
        &[
            ("SLUICE_SOURCE__BROKERS", &brokers),
            ("SLUICE_SOURCE__TOPICS", &format!("[{topic}]")),
            ("SLUICE_SOURCE__GROUP_ID", &group),
            ("SLUICE_SINKS__OUT__PATH", out.to_str().unwrap()),
            (
                "SLUICE_DEAD_LETTER__PATH",
                dir.path().join("dead.ndjson").to_str().unwrap(),
            ),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut consume = Running(Some(consume));
    let deadline = Instant::now() + Duration::from_secs(60);
    while line_count(&out) < kept {
        assert!(Instant::now() < deadline, "the consumer example stalled");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_host(consume.0.take().unwrap());
    let docs: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), kept);
    assert!(
        docs.iter()
            .all(|d| d["sluice"]["matched_keywords"].is_array())
    );
}

#[test]
fn kafka_config_errors_name_the_key_and_the_file() {
    let dir = tempdir();
    let check = |toml: &str| {
        let p = write_pipeline(dir.path(), "bad.toml", toml);
        let o = Command::new(host_bin())
            .args(["check", p.to_str().unwrap()])
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let sink = "[source]\ntype = \"generate\"\ncount = 1\n[sinks.k]\ntype = \"kafka\"\nbrokers = \"b:9092\"\ntopic = \"t\"\n";
    let err = check(&format!("{sink}acks = 2\n"));
    assert!(
        err.contains("bad.toml") && err.contains("`sinks.k.acks`"),
        "{err}"
    );
    let err = check(&format!("{sink}compression = \"brotli\"\n"));
    assert!(err.contains("bad.toml") && err.contains("sinks.k"), "{err}");
    let err = check(&format!("{sink}timestamp = \"created_at\"\n"));
    assert!(
        err.contains("bad.toml") && err.contains("sinks.k") && err.contains("event"),
        "{err}"
    );
    let err = check(&format!("{sink}[sinks.k.create_topic]\npartitions = 0\n"));
    assert!(err.contains("`sinks.k.create_topic.partitions`"), "{err}");
    let source = "[source]\ntype = \"kafka\"\nbrokers = \"b:9092\"\ntopics = [\"t\"]\ngroup_id = \"g\"\n[sinks.o]\ntype = \"stdout\"\n";
    let err = check(&source.replace("group_id = \"g\"", "group_id = \"\""));
    assert!(err.contains("`source.group_id`"), "{err}");
    let err = check(&format!(
        "{source}[source.properties]\n\"no.such.thing\" = 1\n"
    ));
    assert!(
        err.contains("`source.properties`") && err.contains("no.such.thing"),
        "{err}"
    );
}

/// A tombstone (a message with no value) is dead-lettered by the host, before any plugin; JSON
/// nested 200 deep (past serde_json's default limit of 128) goes through the chain intact.
#[test]
fn a_tombstone_is_dead_lettered_and_json_nested_200_deep_passes_intact() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let brokers = bootstrap();
    let dir = tempdir();
    let topic = unique("bad-input");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let fixture = String::from_utf8(fixture("tweets.ndjson")).unwrap();
    let tweets: Vec<&str> = fixture.lines().filter(|l| !l.trim().is_empty()).collect();
    let nest = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let deep = format!("{{\"id_str\":\"deep\",\"text\":\"bts\",\"nest\":{nest}}}");
    let send = |key: &str, value: Option<&str>| {
        let mut r = BaseRecord::<str, str>::to(&topic).key(key).partition(0);
        if let Some(v) = value {
            r = r.payload(v);
        }
        producer.send(r).map_err(|(e, _)| e).unwrap();
    };
    send("first", Some(tweets[0]));
    send("gone", None);
    send("deep", Some(&deep));
    for (i, t) in tweets.iter().enumerate().skip(1) {
        send(&format!("t{i}"), Some(t));
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let out = dir.path().join("out.ndjson");
    let toml = consumer_toml(&brokers, &topic, &unique("bad-input"), &out, "");
    let pipeline = write_pipeline(dir.path(), "c.toml", &toml);
    let log = dir.path().join("host.log");
    let host = spawn_host(&pipeline, &log);
    let dead = PathBuf::from(format!("{}.dead", out.display()));
    let total = tweets.len() + 2;
    let deadline = Instant::now() + Duration::from_secs(60);
    while line_count(&out) + line_count(&dead) < total {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_host(host);
    assert_eq!(
        line_count(&out),
        tweets.len() + 1,
        "every tweet and the deep one"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let deep_out = text
        .lines()
        .find(|l| l.contains("\"deep\""))
        .expect("the deep record");
    assert!(
        deep_out.contains(&nest),
        "nesting changed: {}",
        &deep_out[..300]
    );
    let dead: Vec<Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["key"], "gone");
    assert_eq!(dead[0]["stage"], "host");
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("no value"),
        "{}",
        dead[0]
    );
}

/// A sink on a full disk (`/dev/full` answers every write with ENOSPC): the host stops with
/// the cause and the stage, and commits nothing it did not deliver, so the next run with room
/// gets every record.
#[test]
fn a_full_disk_stops_the_pipeline_and_commits_nothing_undelivered() {
    let brokers = bootstrap();
    let dir = tempdir();
    let (topic, group) = (unique("full-disk"), unique("full-disk"));
    let n = 300;
    run_host(&write_pipeline(
        dir.path(),
        "p.toml",
        &producer_toml(&brokers, &topic, 29, n, ""),
    ));
    let dead = dir.path().join("dead.ndjson");
    let full = consumer_toml(&brokers, &topic, &group, Path::new("/dev/full"), "")
        .replace("/dev/full.dead", &dead.display().to_string());
    let o = host_run(&write_pipeline(dir.path(), "full.toml", &full))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the host went on: {err}");
    assert!(
        err.contains("`sinks.out`")
            && err.contains("/dev/full")
            && err.contains("No space left on device"),
        "{err}"
    );

    let out = dir.path().join("out.ndjson");
    let toml = consumer_toml(&brokers, &topic, &group, &out, "");
    let log = dir.path().join("host.log");
    let host = spawn_host(&write_pipeline(dir.path(), "c.toml", &toml), &log);
    let want: BTreeSet<String> = kafka::generated_ids(29, n);
    let got = wait_for_all(&[&out], &want, Duration::from_secs(60));
    stop_host(host);
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), n);
}

/// `dedup_window` drops a message whose key came shortly before it in its partition, also
/// when the repeat comes after a restart of the consumer: the window is read back from the
/// messages before the committed offsets, so an upstream producer's retries reach the sink
/// once. (Without the read-back the second run would pass keys 150..199 again.)
#[test]
fn dedup_window_drops_repeated_keys_also_after_a_restart() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let brokers = bootstrap();
    let dir = tempdir();
    let (topic, group) = (unique("dedup"), unique("dedup-group"));
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    // Key k always goes to partition k % 3, as a keyed producer's partitioner would.
    let send = |keys: &mut dyn Iterator<Item = u32>| {
        for k in keys {
            let (key, value) = (k.to_string(), format!(r#"{{"id_str":"{k}","text":"n"}}"#));
            let r = BaseRecord::to(&topic)
                .key(&key)
                .payload(&value)
                .partition(k as i32 % 3);
            producer.send(r).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    };
    let out = dir.path().join("out.ndjson");
    let toml = format!(
        r#"
[pipeline]
batch_size = 20
batch_timeout = "50ms"
[source]
type = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "{group}"
dedup_window = 1000
[sinks.out]
type = "file"
path = "{out}"
[dead_letter]
type = "file"
path = "{out}.dead"
"#,
        out = out.display()
    );
    let pipeline = write_pipeline(dir.path(), "dedup.toml", &toml);
    let run_until = |lines: usize, log: &str| {
        let mut host = Running(Some(spawn_host(&pipeline, &dir.path().join(log))));
        let deadline = Instant::now() + Duration::from_secs(60);
        while line_count(&out) < lines {
            assert!(Instant::now() < deadline, "{lines} lines not reached");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Time for a wrong extra line to show.
        std::thread::sleep(Duration::from_secs(1));
        stop_host(host.0.take().unwrap());
    };

    send(&mut (0..200));
    run_until(200, "run1.log");
    // An upstream producer that restarted and sent 150..199 again, then 200..259 with one
    // repeat inside the run.
    send(&mut (150..260).chain([255]));
    run_until(260, "run2.log");

    let got = ids_in(&out);
    let want: Vec<String> = (0..260).map(|k| k.to_string()).collect();
    let distinct: BTreeSet<&String> = got.iter().collect();
    assert_eq!(
        distinct,
        want.iter().collect::<BTreeSet<_>>(),
        "every key delivered"
    );
    assert_eq!(got.len(), want.len(), "each key once");
    let log = std::fs::read_to_string(dir.path().join("run2.log")).unwrap();
    assert!(
        log.contains("read back the keys of 200 message(s)"),
        "{log}"
    );
}

/// `stop_at_end`: the run ends once the topic is read up to where it ended at assignment, with
/// every record delivered and committed; a second run of the group has nothing left and ends
/// at once, and so does a new group starting at `latest`.
#[test]
fn stop_at_end_reads_the_topic_once_and_exits() {
    let brokers = bootstrap();
    let dir = tempdir();
    let (topic, group) = (unique("stop-at-end"), unique("stop-at-end-group"));
    let n = 3000;
    let produce = write_pipeline(
        dir.path(),
        "produce.toml",
        &producer_toml(&brokers, &topic, 5, n, ""),
    );
    assert_eq!(run_host(&produce)["records_out"], n as u64);
    let out = dir.path().join("out.ndjson");
    let consume = |group: &str, start: &str| {
        let toml = consumer_toml(&brokers, &topic, group, &out, "").replace(
            "start = \"earliest\"",
            &format!("start = \"{start}\"\nstop_at_end = true"),
        );
        run_host(&write_pipeline(dir.path(), "consume.toml", &toml))
    };
    let first = consume(&group, "earliest");
    assert_eq!(first["records_in"], n as u64, "{first}");
    let got: BTreeSet<String> = ids_in(&out).into_iter().collect();
    assert_eq!(got, kafka::generated_ids(5, n));
    let again = consume(&group, "earliest");
    assert_eq!(again["records_in"], 0, "everything was committed: {again}");
    let latest = consume(&unique("stop-at-end-latest"), "latest");
    assert_eq!(latest["records_in"], 0, "{latest}");
}

/// Three chain workers on a Kafka source; two records spin their plugin into the deadline,
/// so the worker that meets each stalls for seconds while the others run ahead. Offsets are
/// committed during a stall (the batches before it are delivered), never past a batch that
/// is not, and every partition reaches the sink in offset order.
#[test]
fn chain_workers_commit_only_delivered_batches_and_keep_partition_order() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{Offset, TopicPartitionList};
    let brokers = bootstrap();
    let dir = tempdir();
    let (topic, group) = (unique("workers"), unique("workers-group"));
    let (per_partition, stalls) = (500i64, [(1i32, 200i64), (2, 350)]);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for seq in 0..per_partition {
        for p in 0..3 {
            let tag = if stalls.contains(&(p, seq)) {
                "stall"
            } else {
                "go"
            };
            let value = format!(r#"{{"id_str":"{p}-{seq}","p":{p},"seq":{seq},"tag":"{tag}"}}"#);
            let r = BaseRecord::to(&topic).key("k").payload(&value).partition(p);
            producer.send(r).map_err(|(e, _)| e).unwrap();
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let out = dir.path().join("out.ndjson");
    let dead = dir.path().join("out.ndjson.dead");
    let enrich = format!(
        "[transforms.enrich]\nplugin = \"{}/enrich.wasm\"\n",
        root().join("guest-plugins/dist").display()
    );
    let toml = consumer_toml(&brokers, &topic, &group, &out, "")
        .replace(
            "chain = [\"enrich\"]\nbatch_size = 50",
            "chain = [\"slow\"]\nworkers = 3\nbatch_size = 40",
        )
        .replace(
            "start = \"earliest\"",
            "start = \"earliest\"\nstop_at_end = true\ncommit_interval = \"50ms\"",
        )
        .replace(&enrich, &stalling_transform("300ms"));
    assert!(
        toml.contains("[transforms.slow]") && !toml.contains("enrich"),
        "{toml}"
    );
    let log = dir.path().join("host.log");
    let mut host = Running(Some(spawn_host(
        &write_pipeline(dir.path(), "workers.toml", &toml),
        &log,
    )));
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .create()
        .unwrap();
    let committed = || -> Vec<i64> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition(&topic, p);
        }
        let c = reader
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap();
        (0..3)
            .map(|p| match c.find_partition(&topic, p).unwrap().offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .collect()
    };
    // Committed offsets are read before the dead letter: a commit past a stalled record
    // must find it dead-lettered already.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut commits_during_a_stall = 0;
    let status = loop {
        if let Some(status) = host.0.as_mut().unwrap().try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the host did not finish");
        let offsets = committed();
        let dead_letters = std::fs::read_to_string(&dead).unwrap_or_default();
        for (p, offset) in stalls {
            assert!(
                offsets[p as usize] <= offset || dead_letters.contains(&format!("{p}-{offset}")),
                "partition {p} committed to {} before record {offset} was delivered",
                offsets[p as usize]
            );
        }
        if dead_letters.is_empty() && offsets.iter().sum::<i64>() > 0 {
            commits_during_a_stall += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    host.0.take();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(
        commits_during_a_stall > 0,
        "no commit was seen before the first stall ended"
    );
    assert_eq!(committed(), vec![per_partition; 3]);

    let mut seen: HashMap<i64, Vec<i64>> = HashMap::new();
    for line in std::fs::read_to_string(&out).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        seen.entry(v["p"].as_i64().unwrap())
            .or_default()
            .push(v["seq"].as_i64().unwrap());
    }
    for p in 0..3 {
        let want: Vec<i64> = (0..per_partition)
            .filter(|&seq| !stalls.contains(&(p as i32, seq)))
            .collect();
        assert_eq!(seen[&p], want, "partition {p}");
    }
    let dead_letters = std::fs::read_to_string(&dead).unwrap();
    assert_eq!(dead_letters.lines().count(), 2, "{dead_letters}");
}
