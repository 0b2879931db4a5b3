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

/// The keys of every message `topic` holds now, in partition order (duplicates kept): the
/// partitions are read from their start to the end offsets seen when called.
pub fn keys_in(brokers: &str, topic: &str) -> Vec<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let t = std::time::Duration::from_secs(10);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", super::unique("keys-in"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), t).unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut ends = std::collections::HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for &p in &partitions {
        let (_, high) = consumer.fetch_watermarks(topic, p, t).unwrap();
        if high > 0 {
            ends.insert(p, high);
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
    }
    let mut keys = Vec::new();
    if ends.is_empty() {
        return keys;
    }
    consumer.assign(&assignment).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ends.is_empty() {
        assert!(std::time::Instant::now() < deadline, "reading {topic}");
        match consumer.poll(std::time::Duration::from_millis(200)) {
            Some(Ok(m)) => {
                keys.push(String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned());
                if ends
                    .get(&m.partition())
                    .is_some_and(|&e| m.offset() + 1 >= e)
                {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(e)) => eprintln!("reading {topic}: {e}"),
            None => {}
        }
    }
    keys
}
