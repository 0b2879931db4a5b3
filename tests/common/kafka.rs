//! Kafka in tests: a pipeline that fills a topic with generated tweets, and reading what a
//! topic holds, for checks.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use rdkafka::message::{Headers, Message};
use tweetgen::TweetGenerator;

/// The ids of the first `count` tweets `producer_toml` generates with `seed`.
pub fn generated_ids<C: FromIterator<String>>(seed: u64, count: usize) -> C {
    let mut g = TweetGenerator::new(&super::generate_options(seed));
    let mut buf = Vec::new();
    (0..count)
        .map(|_| g.next_into(&mut buf).id.to_string())
        .collect()
}

/// A message's headers, values as (lossy) UTF-8; none when it has no headers.
pub fn headers<C>(m: &impl Message) -> C
where
    C: FromIterator<(String, String)> + Default,
{
    m.headers()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                    (h.key.to_owned(), v.into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A pipeline producing `count` generated tweets (seed `seed`) through the host into `topic`,
/// created with `partitions` if missing; `extra` goes into `[source]` (e.g. `rate = 300`).
pub fn producer_toml(
    brokers: &str,
    topic: &str,
    seed: u64,
    count: usize,
    partitions: u32,
    extra: &str,
) -> String {
    format!(
        r#"
[pipeline]
batch_size = 200
[source]
type = "generate"
count = {count}
{extra}
[source.tweets]
seed = {seed}
start_time = "{start}"
[sinks.kafka]
type = "kafka"
brokers = "{brokers}"
topic = "{topic}"
acks = "all"
compression = "zstd"
[sinks.kafka.create_topic]
partitions = {partitions}
[dead_letter]
type = "file"
path = "dead.ndjson"
"#,
        start = super::generate_start(),
    )
}

/// A broker of a test's own (ports and state dir, `compose/kafka.sh`), stopped when dropped.
pub struct OwnBroker {
    env: Vec<(&'static str, String)>,
}

impl OwnBroker {
    /// Starts it with `extra` lines appended to its `server.properties`; returns its address.
    pub fn start(state: &Path, extra: &str) -> (Self, String) {
        use super::free_port;
        let port = free_port();
        let b = OwnBroker {
            env: vec![
                ("KAFKA_PORT", port.to_string()),
                ("KAFKA_CONTROLLER_PORT", free_port().to_string()),
                ("KAFKA_SASL_SSL_PORT", free_port().to_string()),
                ("KAFKA_MTLS_PORT", free_port().to_string()),
                ("KAFKA_EXTRA_PROPERTIES", extra.to_owned()),
                ("SLUICE_STATE", state.display().to_string()),
            ],
        };
        b.script("start");
        (b, format!("127.0.0.1:{port}"))
    }

    pub fn script(&self, cmd: &str) {
        let status = Command::new("bash")
            .args(["compose/kafka.sh", cmd])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(super::root())
            .status()
            .unwrap();
        assert!(status.success(), "compose/kafka.sh {cmd} failed");
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.script("stop");
    }
}

/// A message read back: key, value, headers.
pub type Msg = (
    Option<String>,
    Vec<u8>,
    std::collections::BTreeMap<String, String>,
);

/// A reader of its own: a fresh group that never commits.
fn reader(brokers: &str) -> rdkafka::consumer::BaseConsumer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", super::unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

/// `topic`'s partitions with their low and high watermarks (none when it does not exist).
/// Metadata errors a broker gives while a topic is being created or a leader elected
/// (NotLeaderForPartition, LeaderNotAvailable) are retried for up to 30 s: callers poll.
fn watermarks(consumer: &rdkafka::consumer::BaseConsumer, topic: &str) -> Vec<(i32, i64, i64)> {
    use rdkafka::consumer::Consumer;
    use std::time::{Duration, Instant};
    let t = Duration::from_secs(10);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let bounds = consumer.fetch_metadata(Some(topic), t).and_then(|meta| {
            meta.topics()
                .iter()
                .flat_map(|t| t.partitions())
                .map(|p| {
                    let (lo, hi) = consumer.fetch_watermarks(topic, p.id(), t)?;
                    Ok((p.id(), lo, hi))
                })
                .collect::<Result<Vec<_>, _>>()
        });
        match bounds {
            Ok(b) => return b,
            Err(e) if Instant::now() < deadline => {
                eprintln!("watermarks of {topic}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("watermarks of {topic}: {e}"),
        }
    }
}

/// How many messages `topic` has taken in: the sum of its high watermarks.
pub fn topic_end(brokers: &str, topic: &str) -> i64 {
    watermarks(&reader(brokers), topic)
        .iter()
        .map(|&(_, _, hi)| hi)
        .sum()
}

/// Waits until `topic` exists and has taken in messages, so consumers that start next see it.
pub fn wait_for_messages(brokers: &str, topic: &str) {
    super::wait_until(
        "the topic's first messages",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(250),
        || topic_end(brokers, topic) > 0,
    );
}

/// The offsets `group` committed on `topic`, summed over its partitions.
pub fn committed(brokers: &str, group: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use std::time::Duration;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in meta.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap_or(0).max(0))
        .sum()
}

/// Every message `topic` holds now, in partition order (duplicates kept): the partitions are
/// read from their start to the end offsets seen when called; none when it does not exist.
pub fn messages_in(brokers: &str, topic: &str) -> Vec<Msg> {
    use rdkafka::consumer::Consumer;
    use rdkafka::{Offset, TopicPartitionList};
    use std::time::{Duration, Instant};
    let consumer = reader(brokers);
    let mut ends = std::collections::HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for (p, lo, hi) in watermarks(&consumer, topic) {
        if hi > lo {
            ends.insert(p, hi);
            assignment
                .add_partition_offset(topic, p, Offset::Offset(lo))
                .unwrap();
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                if ends
                    .get(&m.partition())
                    .is_some_and(|&e| m.offset() + 1 >= e)
                {
                    ends.remove(&m.partition());
                }
                out.push((
                    m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    m.payload().unwrap_or_default().to_vec(),
                    headers(&m),
                ));
            }
            Some(Err(e)) => eprintln!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// The keys of every message `topic` holds now, as `messages_in` reads them.
pub fn keys_in(brokers: &str, topic: &str) -> Vec<String> {
    messages_in(brokers, topic)
        .into_iter()
        .map(|(k, _, _)| k.unwrap_or_default())
        .collect()
}
