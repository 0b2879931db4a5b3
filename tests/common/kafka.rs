//! Kafka in tests: a pipeline that fills a topic with generated tweets, and reading what a
//! topic holds, for checks.
#![allow(dead_code)]

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
