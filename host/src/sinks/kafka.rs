//! The Kafka sink and the Kafka dead-letter destination, on one producer type that sends a
//! batch and waits for every delivery report.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Statistics};
use serde::Deserialize;
use tokio::sync::Notify;

use super::api::{Sink, SinkContext, SinkSettings};
use crate::clients::kafka::{
    CreateTopic, EVENT_TIME_HEADER, KafkaSecurity, check_connection, check_properties,
    client_config, enable_statistics, report_statistics, set_default,
};
use crate::event::{DeadLetter, Positions, Record, Rejected, StageOutput};
use crate::telemetry::Readiness;
use crate::util::{ConfigValue, Invalid, json_key};

/// `[sinks.NAME] type = "kafka"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    pub brokers: String,
    pub topic: String,
    /// `all` (or `-1`), `1` or `0`.
    #[serde(default = "default_acks")]
    pub acks: ConfigValue,
    #[serde(default)]
    pub compression: Compression,
    /// Idempotent producer: retries never duplicate or reorder within a partition.
    #[serde(default)]
    pub idempotent: bool,
    /// Comma-separated JSON dot paths tried in order for the message key; a record where none
    /// is present keeps its own key.
    #[serde(default = "default_key_field")]
    pub key_field: String,
    /// TLS and SASL.
    #[serde(default)]
    pub security: KafkaSecurity,
    /// Extra librdkafka producer settings (e.g. `"linger.ms" = 20`).
    #[serde(default)]
    pub properties: BTreeMap<String, ConfigValue>,
    /// Create the topic at start if it does not exist.
    pub create_topic: Option<CreateTopic>,
    /// Which time stamps each message: when it is produced (default) or the record's event
    /// time. The event time always travels in the `sluice.event_time` header.
    #[serde(default)]
    pub timestamp: MessageTimestamp,
    /// Give up on a message the broker has not acknowledged for this long (librdkafka's
    /// `message.timeout.ms`): it is dead-lettered with the last error and the pipeline goes
    /// on. Unset: retry for as long as it takes (the batch waits: backpressure).
    #[serde(default, with = "humantime_serde")]
    pub retry_give_up: Option<Duration>,
}

/// `timestamp` of a Kafka sink.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MessageTimestamp {
    /// The produce time. A broker's time-based retention counts from the message timestamp,
    /// so this is the only safe choice for records dated in the past (replays, backfills).
    #[default]
    Now,
    /// The record's event time (e.g. the tweet's `created_at`): a record older than the
    /// topic's `retention.ms` is deleted by the broker's next retention pass, acknowledged or
    /// not, and one outside `message.timestamp.{before,after}.max.ms` is refused.
    Event,
}

fn default_acks() -> ConfigValue {
    ConfigValue::Str("all".into())
}
fn default_key_field() -> String {
    "id_str,data.id".into()
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

#[async_trait::async_trait]
impl SinkSettings for KafkaSinkConfig {
    fn validate(&self) -> Result<(), Invalid> {
        Invalid::non_empty("brokers", &self.brokers)?;
        Invalid::non_empty("topic", &self.topic)?;
        if !matches!(
            self.acks.to_plugin_string().as_str(),
            "all" | "-1" | "0" | "1"
        ) {
            return Err(Invalid::new("acks", "must be \"all\", 1 or 0"));
        }
        json_key::check_paths("key_field", &self.key_field)?;
        if self.retry_give_up.is_some() && self.properties.contains_key("message.timeout.ms") {
            return Err(Invalid::new(
                "retry_give_up",
                "and properties.\"message.timeout.ms\" say the same thing: set one",
            ));
        }
        if let Some(t) = &self.create_topic {
            t.validate().map_err(|e| e.within("create_topic"))?;
        }
        self.security.validate().map_err(|e| e.within("security"))?;
        check_properties(&self.properties)
    }

    async fn open(&self, cx: &SinkContext) -> anyhow::Result<Box<dyn Sink>> {
        Ok(Box::new(KafkaSink::open(self, cx).await?))
    }
}

/// `[dead_letter] type = "kafka"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaDeadLetterConfig {
    pub brokers: String,
    pub topic: String,
    /// TLS and SASL.
    #[serde(default)]
    pub security: KafkaSecurity,
    /// Extra librdkafka producer settings.
    #[serde(default)]
    pub properties: BTreeMap<String, ConfigValue>,
}

impl KafkaDeadLetterConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        Invalid::non_empty("brokers", &self.brokers)?;
        Invalid::non_empty("topic", &self.topic)?;
        self.security.validate().map_err(|e| e.within("security"))?;
        check_properties(&self.properties)
    }
}

/// Counts a batch's outstanding deliveries and collects the failures. librdkafka retries on
/// its own (`retries`, and `message.timeout.ms`, which is `retry_give_up`): a delivery report
/// with an error is final.
/// Also reports readiness from librdkafka's statistics.
#[derive(Default)]
struct Deliveries {
    outstanding: AtomicUsize,
    failed: Mutex<Vec<Rejected>>,
    done: Notify,
    readiness: Readiness,
}

impl ClientContext for Deliveries {
    fn stats(&self, statistics: Statistics) {
        report_statistics(&statistics, &self.readiness, None);
    }
}

impl ProducerContext for Deliveries {
    /// The record's index in its batch: no allocation per message.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        if let Err((e, _)) = result {
            self.fail(index, e);
        }
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }
}

impl Deliveries {
    fn fail(&self, index: usize, e: &KafkaError) {
        let reason = format!("Kafka delivery failed: {e}");
        self.failed.lock().unwrap().push(Rejected { index, reason });
    }
}

/// A producer whose `send` + `wait` deliver a batch: `wait` returns once the broker has
/// acknowledged (per `acks`) or finally refused every message sent since the last `wait`.
struct BatchProducer {
    inner: ThreadedProducer<Deliveries>,
}

impl BatchProducer {
    fn new(mut config: rdkafka::ClientConfig, cx: &SinkContext) -> anyhow::Result<Self> {
        enable_statistics(&mut config);
        let deliveries = Deliveries {
            readiness: cx.telemetry.readiness(&cx.stage, "connecting to Kafka"),
            ..Deliveries::default()
        };
        let inner = ThreadedProducer::from_config_and_context(&config, deliveries)
            .context("creating the Kafka producer")?;
        Ok(Self { inner })
    }

    fn deliveries(&self) -> &Deliveries {
        self.inner.context()
    }

    async fn send(&self, mut record: BaseRecord<'_, [u8], [u8], usize>) {
        let d = self.deliveries();
        d.outstanding.fetch_add(1, Ordering::AcqRel);
        loop {
            match self.inner.send(record) {
                Ok(()) => return,
                // The local queue (`queue.buffering.max.*`) is bounded: wait for room.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                // Refused before it left (e.g. larger than `message.max.bytes`).
                Err((e, r)) => {
                    d.fail(r.delivery_opaque, &e);
                    d.outstanding.fetch_sub(1, Ordering::AcqRel);
                    return;
                }
            }
        }
    }

    async fn wait(&self) -> Vec<Rejected> {
        let d = self.deliveries();
        // `notify_one` keeps a permit when nobody waits, so a report that lands between the
        // check and the await is not missed; a stale permit only costs one more check.
        while d.outstanding.load(Ordering::Acquire) > 0 {
            d.done.notified().await;
        }
        std::mem::take(&mut *d.failed.lock().unwrap())
    }
}

impl Drop for BatchProducer {
    fn drop(&mut self) {
        // Every batch was waited for; this only matters after an error.
        let _ = self.inner.flush(Duration::from_secs(5));
    }
}

/// The record's headers for a message, plus its event time in [`EVENT_TIME_HEADER`] (an
/// event-time header the record already carries is replaced, not repeated). `extra`: room for
/// headers the caller adds.
fn headers(r: &Record, extra: usize) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(r.headers.len() + 1 + extra);
    for h in r.headers.iter().filter(|h| h.key != EVENT_TIME_HEADER) {
        out = out.insert(KafkaHeader {
            key: &h.key,
            value: Some(&h.value[..]),
        });
    }
    if let Some(ts) = r.timestamp {
        // librdkafka copies the value: a stack buffer, no allocation.
        out = out.insert(KafkaHeader {
            key: EVENT_TIME_HEADER,
            value: Some(itoa::Buffer::new().format(ts).as_bytes()),
        });
    }
    out
}

pub struct KafkaSink {
    producer: BatchProducer,
    topic: String,
    key_paths: Vec<Vec<String>>,
    /// The current record's key, reused (librdkafka copies it on send).
    key: Vec<u8>,
    timestamp: MessageTimestamp,
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    /// Returns once the broker acknowledged or refused each record.
    async fn write(&mut self, out: &StageOutput, _: &Positions) -> anyhow::Result<Vec<Rejected>> {
        self.send_all(&out.records).await
    }
}

impl KafkaSink {
    pub async fn open(c: &KafkaSinkConfig, cx: &SinkContext) -> anyhow::Result<Self> {
        let security = c.security.relative_to(&cx.base_dir);
        let config = client_config(&c.brokers, &security, &c.properties)?;
        let mut config = checked(config, &c.brokers, &security).await?;
        if let Some(spec) = &c.create_topic {
            crate::clients::kafka::create_topic(
                &c.brokers,
                &security,
                &c.properties,
                &c.topic,
                spec,
            )
            .await?;
        }
        set_default(&mut config, "acks", &c.acks.to_plugin_string());
        set_default(&mut config, "compression.type", c.compression.as_str());
        set_default(&mut config, "enable.idempotence", &c.idempotent.to_string());
        // Every batch is waited for anyway: a short linger fills librdkafka's batches.
        set_default(&mut config, "linger.ms", "5");
        // librdkafka gives up after 5 minutes by default; 0 retries for ever.
        let give_up_ms = c.retry_give_up.map_or(0, |d| d.as_millis().max(1));
        set_default(&mut config, "message.timeout.ms", &give_up_ms.to_string());
        if c.timestamp == MessageTimestamp::Event {
            tracing::warn!(
                topic = %c.topic,
                "messages are stamped with the record's event time (timestamp = \"event\"): \
                 the broker deletes records older than the topic's retention.ms on its next \
                 retention pass, even once acknowledged; use timestamp = \"now\" to replay old data"
            );
        }
        Ok(Self {
            producer: BatchProducer::new(config, cx)?,
            topic: c.topic.clone(),
            key_paths: json_key::parse_paths(&c.key_field),
            key: Vec::new(),
            timestamp: c.timestamp,
        })
    }

    /// Sends every record and waits for its delivery report; returns the ones that failed.
    async fn send_all(&mut self, records: &[Record]) -> anyhow::Result<Vec<Rejected>> {
        for (i, r) in records.iter().enumerate() {
            let key = if json_key::find(&r.value, &self.key_paths, &mut self.key) {
                Some(&self.key[..])
            } else {
                r.key.as_deref()
            };
            let mut m = BaseRecord::with_opaque_to(&self.topic, i).payload(&r.value[..]);
            if let Some(k) = key {
                m = m.key(k);
            }
            if let (MessageTimestamp::Event, Some(ts)) = (self.timestamp, r.timestamp) {
                m = m.timestamp(ts);
            }
            if !r.headers.is_empty() || r.timestamp.is_some() {
                m = m.headers(headers(r, 0));
            }
            self.producer.send(m).await;
        }
        Ok(self.producer.wait().await)
    }
}

/// [`check_connection`] off the async threads; hands the settings back.
async fn checked(
    config: rdkafka::ClientConfig,
    brokers: &str,
    security: &KafkaSecurity,
) -> anyhow::Result<rdkafka::ClientConfig> {
    let (brokers, security) = (brokers.to_string(), security.clone());
    tokio::task::spawn_blocking(move || {
        check_connection(&config, &brokers, &security)?;
        Ok(config)
    })
    .await?
}

/// `[dead_letter] type = "kafka"`: each failed record as it was, plus why.
pub struct KafkaDeadLetter {
    producer: BatchProducer,
    topic: String,
    /// Transform name -> plugin file, for the `sluice.plugin` header.
    plugins: HashMap<String, String>,
}

impl KafkaDeadLetter {
    pub fn open(
        c: &KafkaDeadLetterConfig,
        cx: &SinkContext,
        plugins: HashMap<String, String>,
    ) -> anyhow::Result<Self> {
        let security = c.security.relative_to(&cx.base_dir);
        let mut config = client_config(&c.brokers, &security, &c.properties)?;
        check_connection(&config, &c.brokers, &security)?;
        // A dead letter that is lost is a record that is lost.
        set_default(&mut config, "acks", "all");
        Ok(Self {
            producer: BatchProducer::new(config, cx)?,
            topic: c.topic.clone(),
            plugins,
        })
    }

    /// Sends and waits; a dead letter that cannot be delivered fails the pipeline (so the
    /// batch is never acknowledged to the source).
    pub async fn write(&mut self, dead: &[DeadLetter]) -> anyhow::Result<()> {
        for (i, dl) in dead.iter().enumerate() {
            let r = &dl.record;
            let mut h = headers(r, 3)
                .insert(KafkaHeader {
                    key: "sluice.stage",
                    value: Some(dl.stage.as_bytes()),
                })
                .insert(KafkaHeader {
                    key: "sluice.reason",
                    value: Some(dl.reason.as_bytes()),
                });
            if let Some(plugin) = self.plugins.get(&*dl.stage) {
                h = h.insert(KafkaHeader {
                    key: "sluice.plugin",
                    value: Some(plugin.as_bytes()),
                });
            }
            let mut m = BaseRecord::with_opaque_to(&self.topic, i)
                .payload(&r.value[..])
                .headers(h);
            if let Some(k) = r.key.as_deref() {
                m = m.key(k);
            }
            // Produce time, always: a dead letter of an old record must outlive retention too.
            self.producer.send(m).await;
        }
        if let Some(f) = self.producer.wait().await.first() {
            anyhow::bail!(
                "dead-letter topic `{}`: record {} not delivered: {}",
                self.topic,
                f.index,
                f.reason
            );
        }
        Ok(())
    }
}
