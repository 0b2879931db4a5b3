//! The Kafka source: a consumer group with manual offset commits.
//!
//! Offsets move only through [`KafkaSource::commit`], which the pipeline calls once every sink
//! holds a batch; commits are coalesced to one per `commit_interval`. A rebalance commits what is acknowledged for the partitions being revoked, and
//! checkpoints taken under an older assignment of a partition are never committed: the new
//! owner re-reads from the last commit (duplicates are possible, loss is not).
//!
//! With `dedup_window`, a message whose key is among the last keys of its partition is dropped
//! (its offset still commits): what an at-least-once producer upstream wrote twice, or what
//! it sent again after a restart, reaches the sinks once. Each window is filled, when its
//! partition is assigned, by reading back the messages before the committed offset, so a
//! restart or a rebalance of this consumer does not forget what it delivered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt as _;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, Statistics, TopicPartitionList};
use serde::Deserialize;
use tokio::time::Instant;

use super::api::{Batch, Source, SourceContext, SourceSettings};
use super::dedup::RecentKeys;
use crate::clients::kafka::{
    EVENT_TIME_HEADER, KafkaSecurity, check_connection, check_properties, client_config,
    enable_statistics, offline_config, report_statistics, set_default,
};
use crate::event::{Checkpoint, Header, Ownership, PartitionOffset, Positions, Record};
use crate::telemetry::{KafkaMetrics, Readiness};
use crate::util::{ConfigValue, Invalid};

/// `[source] type = "kafka"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    pub topics: Vec<String>,
    /// Consumer group: pipelines with different groups each read every record.
    pub group_id: String,
    /// Where a group without committed offsets starts.
    #[serde(default)]
    pub start: StartPosition,
    /// Acknowledged offsets are committed at most this often (and at rebalance and shutdown):
    /// after a crash, up to this much is read again.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// TLS and SASL.
    #[serde(default)]
    pub security: KafkaSecurity,
    /// Extra librdkafka consumer settings (e.g. `"session.timeout.ms" = 10000`).
    #[serde(default)]
    pub properties: BTreeMap<String, ConfigValue>,
    /// Keys remembered per partition to drop a message whose key came within this many
    /// messages before it (0: keep every message). Keyless messages are always kept.
    #[serde(default)]
    pub dedup_window: usize,
    /// End the run once every assigned partition is read up to the end offset it had when it
    /// was assigned (a backfill, a replay, `kcat -e`): the pipeline drains, commits and exits.
    #[serde(default)]
    pub stop_at_end: bool,
}

fn default_commit_interval() -> Duration {
    Duration::from_millis(250)
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    #[default]
    Earliest,
    Latest,
}

impl SourceSettings for KafkaSourceConfig {
    fn validate(&self) -> Result<(), Invalid> {
        Invalid::non_empty("brokers", &self.brokers)?;
        Invalid::non_empty("group_id", &self.group_id)?;
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(Invalid::new("topics", "needs at least one topic name"));
        }
        self.security.validate().map_err(|e| e.within("security"))?;
        check_properties(&self.properties)
    }

    fn open(&self, cx: &SourceContext) -> anyhow::Result<Box<dyn Source>> {
        let security = self.security.relative_to(&cx.base_dir);
        let config = client_config(&self.brokers, &security, &self.properties)?;
        check_connection(&config, &self.brokers, &security)?;
        let config = self.consumer_config(config);
        cx.ownership.track();
        let observer = Rebalancer {
            ownership: cx.ownership.clone(),
            readiness: cx.telemetry.readiness("source", "connecting to Kafka"),
            metrics: cx.telemetry.kafka("source"),
            dedup: (self.dedup_window > 0).then(|| Dedup::new(self.dedup_window, &config)),
            stop_at_end: self.stop_at_end.then_some(self.start),
            ..Rebalancer::default()
        };
        let source = KafkaSource::new(self, config, cx.batch_size, cx.batch_timeout, observer)
            .map_err(|e| Invalid::new("properties", format!("{e:#}")))?;
        Ok(Box::new(source))
    }

    /// librdkafka's own check of every setting, without secrets and without connecting.
    fn check(&self, _: &SourceContext) -> anyhow::Result<()> {
        let config = offline_config(&self.brokers, &self.security, &self.properties)?;
        self.consumer_config(config)
            .create_native_config()
            .map_err(|e| Invalid::new("properties", e.to_string()))?;
        Ok(())
    }
}

impl KafkaSourceConfig {
    /// The consumer's settings on top of the client's.
    fn consumer_config(&self, mut config: ClientConfig) -> ClientConfig {
        config
            .set("group.id", &self.group_id)
            // Offsets move only when the pipeline acknowledges; not negotiable.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let start = match self.start {
            StartPosition::Earliest => "earliest",
            StartPosition::Latest => "latest",
        };
        set_default(&mut config, "auto.offset.reset", start);
        // librdkafka stops fetching a partition whose prefetch queue is full and, by default,
        // waits a whole second before it looks again: behind a chain slower than the wire the
        // queue ran dry every time and the workers waited half the time. Checked every 10 ms,
        // a 4 MiB prefetch (not 64) keeps them fed as well, and costs 22 MiB less resident.
        set_default(&mut config, "fetch.queue.backoff.ms", "10");
        set_default(&mut config, "queued.max.messages.kbytes", "4096");
        enable_statistics(&mut config);
        config
    }
}

/// A partition this consumer owns.
struct Assigned {
    topic: String,
    partition: i32,
    /// Changes with every assignment of the partition, so checkpoints from an earlier
    /// ownership are recognised and dropped.
    epoch: u64,
    /// Acknowledged by the pipeline, committed asynchronously: the next offset to read.
    acked: Option<i64>,
    /// With `dedup_window`: the keys of the partition's latest messages.
    recent: Option<RecentKeys>,
    /// With `stop_at_end`: the partition's end offset at assignment, until it is read up to it.
    end: Option<i64>,
}

#[derive(Default)]
struct Assignment {
    partitions: Vec<Assigned>,
    next_epoch: u64,
}

impl Assignment {
    /// With `stop_at_end`: every assigned partition is read up to its end.
    fn at_end(&self) -> bool {
        !self.partitions.is_empty() && self.partitions.iter().all(|a| a.end.is_none())
    }

    fn find(&mut self, topic: &str, partition: i32) -> Option<&mut Assigned> {
        self.partitions
            .iter_mut()
            .find(|a| a.partition == partition && a.topic == topic)
    }
}

/// Tracks the assignment across rebalances (runs inside the consumer's poll), and reports
/// readiness and lag from librdkafka's statistics.
#[derive(Default)]
struct Rebalancer {
    state: Mutex<Assignment>,
    /// What this host owns, for the sinks.
    ownership: Ownership,
    readiness: Readiness,
    metrics: KafkaMetrics,
    dedup: Option<Dedup>,
    /// `stop_at_end`, with where a partition without a commit starts.
    stop_at_end: Option<StartPosition>,
}

/// `dedup_window`, and how to read back what came before a partition's committed offset.
#[derive(Clone)]
struct Dedup {
    window: usize,
    /// The consumer's settings without its group membership: a reader that joins no group.
    reader: ClientConfig,
}

impl Dedup {
    fn new(window: usize, consumer: &ClientConfig) -> Self {
        let mut reader = consumer.clone();
        reader.remove("group.instance.id");
        reader.remove("statistics.interval.ms");
        Self { window, reader }
    }

    /// A window per assigned partition, holding the keys of up to `window` messages before
    /// its committed offset. A partition whose read-back fails starts with an empty window
    /// (a warning): duplicates may then pass, nothing is lost.
    fn windows(&self, assigned: &TopicPartitionList, starts: &[Start]) -> Vec<RecentKeys> {
        let mut windows: Vec<RecentKeys> = assigned
            .elements()
            .iter()
            .map(|_| RecentKeys::new(self.window))
            .collect();
        if let Err(e) = self.read_back(assigned, starts, &mut windows) {
            tracing::warn!(
                "dedup_window: reading back the keys before the committed offsets: {e:#}; duplicates just after them may pass"
            );
        }
        windows
    }

    fn read_back(
        &self,
        assigned: &TopicPartitionList,
        starts: &[Start],
        windows: &mut [RecentKeys],
    ) -> anyhow::Result<()> {
        let mut from = TopicPartitionList::new();
        // Index in `assigned` -> the offset to read up to.
        let mut ends = BTreeMap::new();
        for (i, (e, s)) in assigned.elements().iter().zip(starts).enumerate() {
            // Nothing committed: nothing delivered before.
            let (Some(end), Some((low, _))) = (s.committed, s.watermarks) else {
                continue;
            };
            let start = end.saturating_sub(self.window as i64).max(low);
            if start < end {
                from.add_partition_offset(e.topic(), e.partition(), Offset::Offset(start))?;
                ends.insert((e.topic().to_owned(), e.partition()), (i, end));
            }
        }
        if ends.is_empty() {
            return Ok(());
        }
        let reader: BaseConsumer = self.reader.create().context("creating a reader")?;
        reader.assign(&from)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut read = 0;
        while !ends.is_empty() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "timed out after {read} messages"
            );
            let m = match reader.poll(Duration::from_millis(200)) {
                Some(m) => m?,
                None => continue,
            };
            let k = (m.topic().to_owned(), m.partition());
            let Some(&(i, end)) = ends.get(&k) else {
                continue;
            };
            if m.offset() < end {
                read += 1;
                if let Some(key) = m.key() {
                    windows[i].repeated(key);
                }
            }
            if m.offset() + 1 >= end {
                ends.remove(&k);
            }
        }
        tracing::info!(
            "dedup_window: read back the keys of {read} message(s) before the committed offsets"
        );
        Ok(())
    }
}

impl ClientContext for Rebalancer {
    fn stats(&self, statistics: Statistics) {
        report_statistics(&statistics, &self.readiness, Some(&self.metrics));
    }
}

impl ConsumerContext for Rebalancer {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut state = self.state.lock().unwrap();
        let mut done = TopicPartitionList::new();
        for e in revoked.elements() {
            if let Some(next) = state.find(e.topic(), e.partition()).and_then(|a| a.acked) {
                let _ = done.add_partition_offset(e.topic(), e.partition(), Offset::Offset(next));
            }
        }
        state.partitions.retain(|a| {
            !revoked
                .elements()
                .iter()
                .any(|e| e.partition() == a.partition && e.topic() == a.topic)
        });
        for e in revoked.elements() {
            self.metrics.revoked(e.topic(), e.partition());
            self.ownership
                .revoke(&stream_name(e.topic(), e.partition()));
        }
        drop(state);
        // Synchronously, so the next owner starts after everything acknowledged here.
        if done.count() > 0
            && let Err(e) = consumer.commit(&done, CommitMode::Sync)
        {
            tracing::warn!("committing offsets of revoked partitions: {e}");
        }
        tracing::info!("partitions revoked: {}", describe(revoked));
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                self.metrics.rebalances.inc();
                // Before the first message of the new assignment is fetched.
                let starts = if self.dedup.is_some() || self.stop_at_end.is_some() {
                    starts(consumer, assigned)
                } else {
                    Vec::new()
                };
                let mut windows = self.dedup.as_ref().map(|d| d.windows(assigned, &starts));
                let ends = self.stop_at_end.map(|start| ends(&starts, start));
                let mut state = self.state.lock().unwrap();
                for (i, e) in assigned.elements().iter().enumerate() {
                    state.next_epoch += 1;
                    let epoch = state.next_epoch;
                    let recent = windows
                        .as_mut()
                        .map(|w| std::mem::replace(&mut w[i], RecentKeys::new(0)));
                    let end = ends.as_ref().and_then(|ends| ends[i]);
                    self.ownership
                        .assign(stream_name(e.topic(), e.partition()), epoch);
                    match state.find(e.topic(), e.partition()) {
                        Some(a) => {
                            a.epoch = epoch;
                            a.acked = None;
                            a.recent = recent;
                            a.end = end;
                        }
                        None => state.partitions.push(Assigned {
                            topic: e.topic().to_owned(),
                            partition: e.partition(),
                            epoch,
                            acked: None,
                            recent,
                            end,
                        }),
                    }
                }
                tracing::info!("partitions assigned: {}", describe(assigned));
            }
            Rebalance::Error(e) => tracing::warn!("rebalance failed: {e}"),
            Rebalance::Revoke(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            // The next commit covers these offsets too; a crash before it means duplicates.
            tracing::warn!("committing Kafka offsets: {e}");
        }
    }
}

/// Where a newly assigned partition stands: the group's committed offset and the partition's
/// watermarks (`None` when they could not be fetched, with a warning), fetched once per
/// assignment for `dedup_window` and `stop_at_end`.
struct Start {
    committed: Option<i64>,
    watermarks: Option<(i64, i64)>,
}

fn starts(consumer: &BaseConsumer<Rebalancer>, assigned: &TopicPartitionList) -> Vec<Start> {
    let timeout = Duration::from_secs(10);
    let committed = consumer
        .committed_offsets(assigned.clone(), timeout)
        .map_err(|e| tracing::warn!("the committed offsets of the new assignment: {e}"))
        .ok();
    assigned
        .elements()
        .iter()
        .map(|e| Start {
            committed: committed
                .as_ref()
                .and_then(|c| c.find_partition(e.topic(), e.partition()))
                .and_then(|c| match c.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                }),
            watermarks: consumer
                .fetch_watermarks(e.topic(), e.partition(), timeout)
                .map_err(|err| {
                    tracing::warn!("the offsets of {}[{}]: {err}", e.topic(), e.partition())
                })
                .ok(),
        })
        .collect()
}

/// `stop_at_end`: for each assigned partition, the offset to read up to, or `None` when there
/// is nothing left to read (the committed offset, else the start position, is at the end).
/// A partition whose offsets cannot be fetched is read until a message reaches its end.
fn ends(starts: &[Start], start: StartPosition) -> Vec<Option<i64>> {
    starts
        .iter()
        .map(|s| {
            let Some((low, high)) = s.watermarks else {
                return Some(i64::MAX);
            };
            // Without a commit the group starts at `start`: the beginning, or the end.
            let from = s.committed.unwrap_or(match start {
                StartPosition::Earliest => low,
                StartPosition::Latest => high,
            });
            (from < high).then_some(high)
        })
        .collect()
}

/// The name of a partition in [`Positions`] and [`Ownership`]: `<topic>-<partition>`.
fn stream_name(topic: &str, partition: i32) -> Arc<str> {
    Arc::from(format!("{topic}-{partition}"))
}

fn describe(tpl: &TopicPartitionList) -> String {
    let parts: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}

pub struct KafkaSource {
    consumer: StreamConsumer<Rebalancer>,
    /// What the consumer was made from, to make a new one after a fatal error.
    config: ClientConfig,
    topics: Vec<String>,
    batch_size: usize,
    batch_timeout: Duration,
    commit_interval: Duration,
    last_commit: Instant,
    /// Offsets were acknowledged since the last commit.
    dirty: bool,
    /// The offsets of a batch whose messages were all duplicates, sent with the next batch:
    /// committed on their own they could pass batches still in flight.
    carried: Option<Checkpoint>,
}

impl KafkaSource {
    fn new(
        c: &KafkaSourceConfig,
        config: ClientConfig,
        batch_size: usize,
        batch_timeout: Duration,
        observer: Rebalancer,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            consumer: subscribed(&config, &c.topics, observer)?,
            config,
            topics: c.topics.clone(),
            batch_size,
            batch_timeout,
            commit_interval: c.commit_interval,
            last_commit: Instant::now(),
            dirty: false,
            carried: None,
        })
    }

    /// Up to `batch_size` records, or what arrived within `batch_timeout` (maybe nothing: the
    /// pipeline then comes back after committing what was acknowledged meanwhile).
    async fn read_batch(&mut self) -> anyhow::Result<Batch> {
        // One timer and one stream per batch, not per message.
        let timeout = tokio::time::sleep(self.batch_timeout);
        tokio::pin!(timeout);
        let mut stream = self.consumer.stream();
        let mut records = Vec::new();
        let mut checkpoint = self.carried.take().unwrap_or_default();
        let mut of = Vec::new();
        let dedup = self.consumer.context().dedup.is_some();
        let stop_at_end = self.consumer.context().stop_at_end.is_some();
        let mut fatal = None;
        while records.len() < self.batch_size {
            let message = tokio::select! {
                biased;
                m = stream.next() => m.expect("Kafka message streams never end"),
                _ = &mut timeout => break,
            };
            let message = match message {
                Ok(m) => m,
                Err(KafkaError::MessageConsumptionFatal(code)) => {
                    fatal = Some(code);
                    break;
                }
                // Transient (broker down, partition moving...): librdkafka recovers by itself.
                Err(e) => {
                    tracing::warn!("Kafka consumer: {e}");
                    continue;
                }
            };
            let stream = self.track(&mut checkpoint, &message);
            let last = stop_at_end && self.reached_end(&message);
            if !(dedup && self.repeated(&message)) {
                of.push((stream, message.offset().max(0) as u64));
                records.push(to_record(&message));
            }
            if last {
                break;
            }
        }
        drop(stream);
        if let Some(code) = fatal {
            self.recreate(code)?;
        }
        if records.is_empty() && !checkpoint.offsets.is_empty() {
            self.carried = Some(std::mem::take(&mut checkpoint));
        }
        let streams = checkpoint
            .offsets
            .iter()
            .map(|p| stream_name(&p.topic, p.partition))
            .collect();
        let epochs = checkpoint.offsets.iter().map(|p| p.epoch).collect();
        Ok(Batch {
            records,
            checkpoint,
            positions: Some(Positions::Offsets {
                streams,
                epochs,
                of,
            }),
        })
    }

    /// After a fatal consumer error (e.g. `FencedInstanceId`: another member took this one's
    /// `group.instance.id`, or the coordinator fenced it after a broker restart), a new
    /// consumer joins the group in its place instead of the host exiting. Batches read by the
    /// old one are not committed (their assignment epochs are gone): their partitions are read
    /// again from the last commit, so nothing is lost (duplicates are possible).
    fn recreate(&mut self, code: RDKafkaErrorCode) -> anyhow::Result<()> {
        tracing::error!(
            "Kafka consumer failed for good ({code}): a new consumer takes its place; batches \
             in flight are read again"
        );
        let old = self.consumer.context();
        for a in &old.state.lock().unwrap().partitions {
            old.ownership.revoke(&stream_name(&a.topic, a.partition));
        }
        let observer = Rebalancer {
            ownership: old.ownership.clone(),
            state: Mutex::new(Assignment {
                partitions: Vec::new(),
                next_epoch: old.state.lock().unwrap().next_epoch,
            }),
            readiness: old.readiness.clone(),
            metrics: old.metrics.clone(),
            dedup: old.dedup.clone(),
            stop_at_end: old.stop_at_end,
        };
        observer
            .readiness
            .not_ready(format!("rejoining the group after {code}"));
        self.consumer = subscribed(&self.config, &self.topics, observer)?;
        self.dirty = false;
        self.carried = None;
        self.consumer.context().metrics.restarts.inc();
        Ok(())
    }

    /// `stop_at_end`: notes a message that reaches its partition's end; true once every
    /// partition has.
    fn reached_end(&self, m: &BorrowedMessage<'_>) -> bool {
        let mut state = self.consumer.context().state.lock().unwrap();
        if let Some(a) = state.find(m.topic(), m.partition())
            && a.end.is_some_and(|end| m.offset() + 1 >= end)
        {
            a.end = None;
        }
        state.at_end()
    }

    /// Whether the message's key is among the last ones of its partition (counted and dropped
    /// by the caller); remembers it if not.
    fn repeated(&self, m: &BorrowedMessage<'_>) -> bool {
        let Some(key) = m.key() else { return false };
        let context = self.consumer.context();
        let mut state = context.state.lock().unwrap();
        let repeated = state
            .find(m.topic(), m.partition())
            .and_then(|a| a.recent.as_mut())
            .is_some_and(|r| r.repeated(key));
        if repeated {
            context.metrics.duplicates.inc();
        }
        repeated
    }

    /// Notes the message in the checkpoint; returns its partition's index there.
    fn track(&self, checkpoint: &mut Checkpoint, m: &BorrowedMessage<'_>) -> u32 {
        let (topic, partition, next) = (m.topic(), m.partition(), m.offset() + 1);
        if let Some(i) = checkpoint
            .offsets
            .iter()
            .position(|p| p.partition == partition && p.topic == topic)
        {
            checkpoint.offsets[i].next = next;
            return i as u32;
        }
        // First record of this partition in the batch: note the assignment it came under.
        // A partition not (or no longer) assigned gets epoch 0, which is never committed.
        let epoch = self
            .consumer
            .context()
            .state
            .lock()
            .unwrap()
            .find(topic, partition)
            .map_or(0, |a| a.epoch);
        checkpoint.offsets.push(PartitionOffset {
            topic: topic.to_owned(),
            partition,
            epoch,
            next,
        });
        checkpoint.offsets.len() as u32 - 1
    }

    /// Records a delivered batch's offsets, skipping partitions reassigned since the batch
    /// was read, and commits what is acknowledged once `commit_interval` has passed
    /// (asynchronously: a failure is logged and covered by the next commit). An empty
    /// checkpoint (an empty batch) only gives a due commit its chance.
    fn commit_batch(&mut self, checkpoint: Checkpoint) -> anyhow::Result<()> {
        if !checkpoint.offsets.is_empty() {
            let mut state = self.consumer.context().state.lock().unwrap();
            for p in &checkpoint.offsets {
                match state.find(&p.topic, p.partition) {
                    Some(a) if a.epoch == p.epoch => a.acked = Some(p.next),
                    _ => tracing::debug!(
                        "not committing {}[{}]@{}: partition reassigned since",
                        p.topic,
                        p.partition,
                        p.next
                    ),
                }
            }
            self.dirty = true;
        }
        if self.dirty && self.last_commit.elapsed() >= self.commit_interval {
            self.commit_acked(CommitMode::Async)?;
        }
        Ok(())
    }

    fn commit_acked(&mut self, mode: CommitMode) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        for a in &self.consumer.context().state.lock().unwrap().partitions {
            if let Some(next) = a.acked {
                tpl.add_partition_offset(&a.topic, a.partition, Offset::Offset(next))?;
            }
        }
        self.dirty = false;
        self.last_commit = Instant::now();
        if tpl.count() > 0 {
            self.consumer.commit(&tpl, mode)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Source for KafkaSource {
    async fn next_batch(&mut self) -> anyhow::Result<Option<Batch>> {
        let context = self.consumer.context();
        if context.stop_at_end.is_some() && context.state.lock().unwrap().at_end() {
            return Ok(None);
        }
        self.read_batch().await.map(Some)
    }

    async fn commit(&mut self, checkpoint: Checkpoint) -> anyhow::Result<()> {
        self.commit_batch(checkpoint)
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // Make the last acknowledged offsets durable before the consumer closes.
        if self.dirty
            && let Err(e) = self.commit_acked(CommitMode::Sync)
        {
            tracing::warn!("committing Kafka offsets at shutdown: {e}");
        }
    }
}

/// A consumer made from `config`, subscribed to `topics`.
fn subscribed(
    config: &ClientConfig,
    topics: &[String],
    observer: Rebalancer,
) -> anyhow::Result<StreamConsumer<Rebalancer>> {
    let consumer: StreamConsumer<Rebalancer> = config
        .create_with_context(observer)
        .context("creating the Kafka consumer")?;
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .with_context(|| format!("subscribing to {}", topics.join(", ")))?;
    Ok(consumer)
}

/// The record of a message. Its timestamp is the event time a Sluice producer put in
/// [`EVENT_TIME_HEADER`] (the header itself is dropped), else the message timestamp.
fn to_record(m: &BorrowedMessage<'_>) -> Record {
    let mut timestamp = m.timestamp().to_millis();
    let mut headers = Vec::new();
    if let Some(hs) = m.headers() {
        headers.reserve(hs.count());
        for h in hs.iter() {
            let value = h.value.unwrap_or_default();
            if h.key == EVENT_TIME_HEADER
                && let Some(ms) = parse_millis(value)
            {
                timestamp = Some(ms);
                continue;
            }
            headers.push(Header {
                key: h.key.to_owned(),
                value: value.to_vec(),
            });
        }
    }
    Record {
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().unwrap_or_default().to_vec(),
        headers,
        timestamp,
    }
}

/// Decimal Unix milliseconds, as [`EVENT_TIME_HEADER`] carries them.
fn parse_millis(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_millis;

    #[test]
    fn event_time_header_values() {
        assert_eq!(parse_millis(b"1539202764123"), Some(1_539_202_764_123));
        assert_eq!(parse_millis(b"-5"), Some(-5));
        for bad in [&b""[..], b"12a", b"1.5", b"\xff", b"99999999999999999999"] {
            assert_eq!(parse_millis(bad), None, "{bad:?}");
        }
    }
}
