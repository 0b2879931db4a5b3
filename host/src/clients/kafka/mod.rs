//! What the Kafka source, sink and dead letter share on librdkafka (via `rdkafka`): client
//! settings, topic creation and the event-time header.
//!
//! Delivery is at-least-once end to end: the sink returns only once the broker acknowledged
//! every record of a batch (or reported it failed, so the pipeline can dead-letter it), and the
//! source commits a batch's offsets only after the pipeline says every sink holds it.
//!
//! Messages are stamped with the time they are produced, not the record's event time, unless
//! a sink opts in (`timestamp = "event"`): brokers delete by message timestamp, so a replay of
//! old tweets stamped with their `created_at` would be deleted by the next retention pass. The
//! event time travels in the [`EVENT_TIME_HEADER`] header instead, and the source turns it back
//! into the record's timestamp.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::Statistics;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::telemetry::{KafkaMetrics, Readiness};
use crate::util::{ConfigValue, Invalid};

mod security;
pub use security::{KafkaSecurity, check_connection, check_properties};

/// The record's event time (decimal Unix milliseconds) on every message a Sluice producer
/// writes; the source takes it as the record's timestamp and drops the header.
pub const EVENT_TIME_HEADER: &str = "sluice.event_time";

/// librdkafka settings: bootstrap servers, the `security` table (its secrets read now), then
/// the user's `properties`.
pub fn client_config(
    brokers: &str,
    security: &KafkaSecurity,
    properties: &BTreeMap<String, ConfigValue>,
) -> Result<ClientConfig, Invalid> {
    build(brokers, properties, |c| security.apply(c))
}

/// What [`client_config`] makes, minus the user, the secrets and the files: for `host check`,
/// which runs without them.
pub fn offline_config(
    brokers: &str,
    security: &KafkaSecurity,
    properties: &BTreeMap<String, ConfigValue>,
) -> Result<ClientConfig, Invalid> {
    build(brokers, properties, |c| security.apply_settings(c))
}

fn build(
    brokers: &str,
    properties: &BTreeMap<String, ConfigValue>,
    secure: impl FnOnce(&mut ClientConfig) -> Result<(), Invalid>,
) -> Result<ClientConfig, Invalid> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    secure(&mut c).map_err(|e| e.within("security"))?;
    for (k, v) in properties {
        c.set(k, v.to_plugin_string());
    }
    Ok(c)
}

/// How often librdkafka reports statistics (readiness and lag), unless `properties` say.
const STATISTICS_INTERVAL_MS: &str = "1000";

/// Turns on the statistics that [`report_statistics`] reads.
pub fn enable_statistics(c: &mut ClientConfig) {
    set_default(c, "statistics.interval.ms", STATISTICS_INTERVAL_MS);
}

/// What a client's periodic statistics say: ready while at least one broker connection is
/// up; for a consumer, each owned partition's lag and committed offset.
pub fn report_statistics(stats: &Statistics, readiness: &Readiness, lag: Option<&KafkaMetrics>) {
    if stats.brokers.values().any(|b| b.state == "UP") {
        readiness.ready();
    } else {
        let mut states: Vec<String> = stats
            .brokers
            .values()
            .map(|b| format!("{} {}", b.name, b.state))
            .collect();
        states.sort();
        readiness.not_ready(format!("no Kafka broker reachable ({})", states.join(", ")));
    }
    let Some(metrics) = lag else { return };
    for (name, topic) in &stats.topics {
        for (&partition, p) in &topic.partitions {
            // -1 is librdkafka's internal "unassigned" partition; `desired`: assigned to us.
            if partition < 0 || !p.desired {
                continue;
            }
            // Nothing committed yet: everything still in the partition is behind.
            let lag = if p.committed_offset >= 0 || p.lo_offset < 0 {
                p.consumer_lag
            } else {
                p.hi_offset - p.lo_offset
            };
            metrics.partition(name, partition, lag, p.committed_offset);
        }
    }
}

/// Sets `key` unless the user's `properties` already did.
pub fn set_default(c: &mut ClientConfig, key: &str, value: &str) {
    if c.get(key).is_none() {
        c.set(key, value);
    }
}

/// Creates `topic` as described unless it already exists (an existing topic is not altered).
pub async fn create_topic(
    brokers: &str,
    security: &KafkaSecurity,
    properties: &BTreeMap<String, ConfigValue>,
    topic: &str,
    spec: &CreateTopic,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, security, properties)?
        .create()
        .context("creating the Kafka admin client")?;
    let mut configs: Vec<(String, String)> = spec
        .configs
        .iter()
        .map(|(k, v)| (k.clone(), v.to_plugin_string()))
        .collect();
    if let Some(b) = spec.retention_bytes {
        configs.push(("retention.bytes".into(), b.as_u64().to_string()));
    }
    // -1: the broker's default (num.partitions, default.replication.factor).
    let mut new = NewTopic::new(
        topic,
        spec.partitions.unwrap_or(-1),
        TopicReplication::Fixed(spec.replication.unwrap_or(-1)),
    );
    for (k, v) in &configs {
        new = new.set(k, v);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics([&new], &options)
        .await
        .with_context(|| format!("creating Kafka topic `{topic}`"))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic, "created Kafka topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic, "Kafka topic exists; left as it is")
            }
            Err((_, code)) => anyhow::bail!("creating Kafka topic `{topic}`: {code}"),
        }
    }
    Ok(())
}

/// `[sinks.NAME.create_topic]`: how to create the topic if it is missing (an existing topic is
/// left as it is). Unset numbers take the broker's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreateTopic {
    pub partitions: Option<i32>,
    pub replication: Option<i32>,
    /// The topic's `retention.bytes` (per partition).
    pub retention_bytes: Option<ByteSize>,
    /// Other topic configs, e.g. `"cleanup.policy" = "delete"`.
    pub configs: BTreeMap<String, ConfigValue>,
}

impl CreateTopic {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.partitions.is_some_and(|n| n < 1) {
            return Err(Invalid::new("partitions", "must be at least 1"));
        }
        if self.replication.is_some_and(|n| n < 1) {
            return Err(Invalid::new("replication", "must be at least 1"));
        }
        Ok(())
    }
}
