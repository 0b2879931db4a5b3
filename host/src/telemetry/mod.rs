//! What a running host tells its operator: Prometheus metrics per stage, and readiness.
//!
//! Every component takes its handles when it opens (from its context) and updates them on its
//! own path, once per batch or request, never per record. Handles are atomics shared with the
//! registry, so they cost the same whether or not anything scrapes them; a handle made with
//! `Default` belongs to no registry (tools and tests that run a component alone).
//!
//! Stages are named as in pipeline.toml: `source`, `transforms.NAME`, `sinks.NAME`,
//! `dead_letter`. [`server`] serves `/metrics`, `/health` and `/ready`; [`top`] reads them
//! back for `host top`.

mod process;
pub mod server;
pub mod top;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Deserialize;

/// `[runtime.metrics]`: where the metrics and health endpoints listen.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port`; serves `/metrics`, `/health` and `/ready`.
    pub listen: std::net::SocketAddr,
}

/// Metric names (without the `sluice_` prefix and the `_total` suffix of counters), shared
/// with `host top`, which reads them back.
pub mod names {
    pub const RECORDS_IN: &str = "records_in";
    pub const RECORDS_OUT: &str = "records_out";
    pub const DROPPED: &str = "records_dropped";
    pub const DEAD_LETTERED: &str = "records_dead_lettered";
    pub const BATCH_SECONDS: &str = "batch_duration_seconds";
    pub const KAFKA_LAG: &str = "kafka_consumer_lag";
    pub const READY: &str = "stage_ready";
    pub const STAGE_INDEX: &str = "stage_index";
    pub const SPOOL_BYTES: &str = "spool_bytes";
    pub const SPOOL_RECORDS: &str = "spool_records";
    pub const SPOOL_DROPPED: &str = "spool_dropped";
    pub const SOURCE_DUPLICATES: &str = "source_duplicates";
    pub const CHAIN_WORKERS: &str = "chain_workers";
    pub const HANDOFFS: &str = "stream_handoffs";
    pub const HANDOFF_DROPPED: &str = "handoff_dropped_records";
}

/// Upper bounds of the latency histograms: 0.25 ms doubling to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    stage: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    stage: String,
    request: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    stage: String,
    request: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    stage: String,
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

fn stage(stage: &str) -> StageLabel {
    StageLabel {
        stage: stage.to_string(),
    }
}

fn kind(stage: &str, kind: &str) -> KindLabels {
    KindLabels {
        stage: stage.to_string(),
        kind: kind.to_string(),
    }
}

/// Declares every metric family once: its field, type, name (without the `sluice_` prefix and
/// a counter's `_total`) and help text.
macro_rules! families {
    ($($field:ident: $type:ty = $new:expr, $name:expr, $help:expr;)*) => {
        struct Families {
            $($field: $type,)*
        }

        impl Families {
            fn register(r: &mut Registry) -> Self {
                let f = Families { $($field: $new,)* };
                $(r.register($name, $help, f.$field.clone());)*
                f
            }
        }
    };
}

families! {
    records_in: Family<StageLabel, Counter> = Family::default(),
        names::RECORDS_IN, "Records that entered a stage";
    records_out: Family<StageLabel, Counter> = Family::default(),
        names::RECORDS_OUT, "Records a stage passed on (a sink: accepted)";
    bytes_in: Family<StageLabel, Counter> = Family::default(),
        "bytes_in", "Bytes of record values that entered a stage";
    bytes_out: Family<StageLabel, Counter> = Family::default(),
        "bytes_out", "Bytes of record values a stage passed on";
    dropped: Family<StageLabel, Counter> = Family::default(),
        names::DROPPED, "Records a transform dropped on purpose";
    dead_lettered: Family<StageLabel, Counter> = Family::default(),
        names::DEAD_LETTERED,
        "Records a stage sent to the dead letter (plugin failure, refused by a sink, too large)";
    batch_seconds: Histograms<StageLabel> = Family::new_with_constructor(latency_histogram),
        names::BATCH_SECONDS, "Time a stage spent on one batch (a sink: write and flush)";
    plugin_failures: Family<KindLabels, Counter> = Family::default(),
        "plugin_failures", "Failed plugin calls by kind: trap, timeout, fuel, memory, contract";
    plugin_restarts: Family<StageLabel, Counter> = Family::default(),
        "plugin_restarts", "Plugin instances re-created after a failure or when worn out";
    plugin_fuel: Family<StageLabel, Counter> = Family::default(),
        "plugin_fuel_consumed", "Fuel plugins used (transforms with a fuel budget)";
    plugin_call_seconds: Histograms<StageLabel> = Family::new_with_constructor(latency_histogram),
        "plugin_call_duration_seconds", "Time of one plugin call (one batch)";
    requests: Family<OutcomeLabels, Counter> = Family::default(),
        "sink_requests", "Requests a sink made (bulk, upload, load, insert), by outcome (ok, error)";
    retries: Family<RequestLabels, Counter> = Family::default(),
        "sink_retries",
        "Times a sink waited and sent again what failed (a request, or a batch's failed items)";
    request_seconds: Histograms<RequestLabels> = Family::new_with_constructor(latency_histogram),
        "sink_request_duration_seconds", "Time of one sink request";
    kafka_lag: Family<PartitionLabels, Gauge> = Family::default(),
        names::KAFKA_LAG, "Messages behind the partition's end";
    kafka_committed: Family<PartitionLabels, Gauge> = Family::default(),
        "kafka_committed_offset", "The consumer group's committed offset";
    kafka_rebalances: Family<StageLabel, Counter> = Family::default(),
        "kafka_rebalances", "Partition assignments received";
    kafka_restarts: Family<StageLabel, Counter> = Family::default(),
        "kafka_consumer_restarts",
        "Kafka consumers replaced after a fatal error (e.g. fenced by another member)";
    reconnects: Family<KindLabels, Counter> = Family::default(),
        "source_reconnects", "Reconnections of a streaming source, by reason (kind)";
    stalls: Family<StageLabel, Counter> = Family::default(),
        "source_stalls", "Streams that went silent past their stall timeout";
    duplicates: Family<StageLabel, Counter> = Family::default(),
        names::SOURCE_DUPLICATES,
        "Records a source dropped as already delivered (a backfill's overlap, a key repeated \
         within a Kafka partition's dedup_window)";
    queue_batches: Family<QueueLabel, Gauge> = Family::default(),
        "queue_batches", "Batches waiting in a queue between stages";
    chain_workers: Gauge = Gauge::default(),
        names::CHAIN_WORKERS, "Threads running the transform chain (pipeline.workers)";
    ready: Family<StageLabel, Gauge> = Family::default(),
        names::READY, "1 when the stage is ready, 0 when not (see /ready)";
    stage_index: Family<StageLabel, Gauge> = Family::default(),
        names::STAGE_INDEX, "Position of the stage in the pipeline, for display order";
    reloads: Family<ResultLabel, Counter> = Family::default(),
        "reloads", "Reloads of the transforms (SIGHUP), by outcome: ok, error (old ones kept)";
    spool_bytes: Family<StageLabel, Gauge> = Family::default(),
        names::SPOOL_BYTES, "Bytes a source's disk spool holds";
    spool_records: Family<StageLabel, Gauge> = Family::default(),
        names::SPOOL_RECORDS, "Records in a source's disk spool not yet committed";
    spool_full: Family<StageLabel, Gauge> = Family::default(),
        "spool_full", "1 while a source's disk spool is full";
    handoffs: Family<KindLabels, Counter> = Family::default(),
        names::HANDOFFS,
        "Input streams (Kafka partitions) a sink took over from another host (kind taken_over), \
         or lost to one while writing them (kind lost)";
    handoff_dropped: Family<StageLabel, Counter> = Family::default(),
        names::HANDOFF_DROPPED,
        "Records a sink dropped unwritten because their stream moved to another host, which \
         reads them again";
    spool_dropped: Family<KindLabels, Counter> = Family::default(),
        names::SPOOL_DROPPED,
        "Records a disk spool dropped because it was full (kind full), and damaged tails it cut off after a crash (kind torn)";
}

/// A host's metrics and readiness; cheap to clone.
#[derive(Clone)]
pub struct Telemetry(Arc<Inner>);

struct Inner {
    registry: Registry,
    families: Families,
    /// Stage -> why it is not ready (`None`: ready).
    readiness: Mutex<BTreeMap<String, Option<String>>>,
    /// Stages in the order they were first named.
    order: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new("")
    }
}

impl Telemetry {
    /// Metrics labelled `pipeline="NAME"`.
    pub fn new(pipeline: &str) -> Self {
        let label = (Cow::Borrowed("pipeline"), Cow::Owned(pipeline.to_string()));
        let mut registry = Registry::with_labels(std::iter::once(label));
        registry.register_collector(Box::new(process::Process));
        let families = Families::register(registry.sub_registry_with_prefix("sluice"));
        Self(Arc::new(Inner {
            registry,
            families,
            readiness: Mutex::default(),
            order: Mutex::default(),
        }))
    }

    fn families(&self) -> &Families {
        &self.0.families
    }

    /// Gives a stage its display position the first time it is named.
    fn place(&self, name: &str) {
        let mut order = self.0.order.lock().unwrap_or_else(|e| e.into_inner());
        if !order.iter().any(|s| s == name) {
            order.push(name.to_string());
            let index = self
                .families()
                .stage_index
                .get_or_create_owned(&stage(name));
            index.set(order.len() as i64 - 1);
        }
    }

    /// Record counts and batch latency of a stage.
    pub fn stage(&self, name: &str) -> StageMetrics {
        self.place(name);
        let (f, l) = (self.families(), stage(name));
        StageMetrics {
            records_in: f.records_in.get_or_create_owned(&l),
            records_out: f.records_out.get_or_create_owned(&l),
            bytes_in: f.bytes_in.get_or_create_owned(&l),
            bytes_out: f.bytes_out.get_or_create_owned(&l),
            dropped: f.dropped.get_or_create_owned(&l),
            dead_lettered: f.dead_lettered.get_or_create_owned(&l),
            batch_seconds: f.batch_seconds.get_or_create_owned(&l),
        }
    }

    /// Plugin calls of a transform.
    pub fn plugin(&self, name: &str) -> PluginMetrics {
        let (f, l) = (self.families(), stage(name));
        let failure = |k| f.plugin_failures.get_or_create_owned(&kind(name, k));
        PluginMetrics {
            traps: failure("trap"),
            timeouts: failure("timeout"),
            out_of_fuel: failure("fuel"),
            memory: failure("memory"),
            contract: failure("contract"),
            restarts: f.plugin_restarts.get_or_create_owned(&l),
            fuel: f.plugin_fuel.get_or_create_owned(&l),
            call_seconds: f.plugin_call_seconds.get_or_create_owned(&l),
        }
    }

    /// Requests of kind `request` (`bulk`, `upload`, `load`, `insert`) a sink makes.
    pub fn requests(&self, name: &str, request: &str) -> RequestMetrics {
        let f = self.families();
        let l = RequestLabels {
            stage: name.to_string(),
            request: request.to_string(),
        };
        let outcome = |o: &str| OutcomeLabels {
            stage: name.to_string(),
            request: request.to_string(),
            outcome: o.to_string(),
        };
        RequestMetrics {
            ok: f.requests.get_or_create_owned(&outcome("ok")),
            failed: f.requests.get_or_create_owned(&outcome("error")),
            retries: f.retries.get_or_create_owned(&l),
            seconds: f.request_seconds.get_or_create_owned(&l),
        }
    }

    /// Streams a sink that holds records across batches hands over between hosts.
    pub fn handoffs(&self, name: &str) -> HandoffMetrics {
        let f = self.families();
        HandoffMetrics {
            taken_over: f.handoffs.get_or_create_owned(&kind(name, "taken_over")),
            lost: f.handoffs.get_or_create_owned(&kind(name, "lost")),
            dropped: f.handoff_dropped.get_or_create_owned(&stage(name)),
        }
    }

    /// Partition lag and offsets of a Kafka consumer.
    pub fn kafka(&self, name: &str) -> KafkaMetrics {
        KafkaMetrics {
            telemetry: Some(self.clone()),
            stage: name.to_string(),
            rebalances: self
                .families()
                .kafka_rebalances
                .get_or_create_owned(&stage(name)),
            restarts: self
                .families()
                .kafka_restarts
                .get_or_create_owned(&stage(name)),
            duplicates: self.families().duplicates.get_or_create_owned(&stage(name)),
        }
    }

    /// Reconnects and stalls of a streaming source.
    pub fn stream(&self, name: &str) -> StreamMetrics {
        StreamMetrics {
            telemetry: Some(self.clone()),
            stage: name.to_string(),
            stalls: self.families().stalls.get_or_create_owned(&stage(name)),
            duplicates: self.families().duplicates.get_or_create_owned(&stage(name)),
        }
    }

    /// The disk spool of a source.
    pub fn spool(&self, name: &str) -> SpoolMetrics {
        let (f, l) = (self.families(), stage(name));
        SpoolMetrics {
            bytes: f.spool_bytes.get_or_create_owned(&l),
            records: f.spool_records.get_or_create_owned(&l),
            full: f.spool_full.get_or_create_owned(&l),
            dropped_full: f.spool_dropped.get_or_create_owned(&kind(name, "full")),
            torn_tails: f.spool_dropped.get_or_create_owned(&kind(name, "torn")),
        }
    }

    /// Reloads of the transform chain: (succeeded, failed).
    pub fn reloads(&self) -> (Counter, Counter) {
        let outcome = |o: &str| ResultLabel {
            outcome: o.to_string(),
        };
        let f = &self.families().reloads;
        (
            f.get_or_create_owned(&outcome("ok")),
            f.get_or_create_owned(&outcome("error")),
        )
    }

    /// Threads running the transform chain.
    pub fn chain_workers(&self) -> Gauge {
        self.families().chain_workers.clone()
    }

    /// Depth of the queue `name` between two stages.
    pub fn queue(&self, name: &str) -> Gauge {
        let label = QueueLabel {
            queue: name.to_string(),
        };
        self.families().queue_batches.get_or_create_owned(&label)
    }

    /// The readiness of a stage, not ready (`reason`) until it says otherwise.
    pub fn readiness(&self, name: &str, reason: &str) -> Readiness {
        self.place(name);
        let r = Readiness {
            telemetry: Some(self.clone()),
            stage: name.to_string(),
        };
        r.not_ready(reason);
        r
    }

    fn set_readiness(&self, name: &str, reason: Option<String>) {
        let gauge = self.families().ready.get_or_create_owned(&stage(name));
        gauge.set(i64::from(reason.is_none()));
        let mut stages = self.0.readiness.lock().unwrap_or_else(|e| e.into_inner());
        // Transitions are logged; the first state of a stage ("connecting") is not news.
        match (stages.get(name), &reason) {
            (Some(None), Some(r)) => tracing::warn!(stage = name, "not ready: {r}"),
            (Some(Some(before)), Some(r)) if before != r => {
                tracing::warn!(stage = name, "not ready: {r}")
            }
            (Some(Some(_)), None) => tracing::info!(stage = name, "ready"),
            _ => {}
        }
        stages.insert(name.to_string(), reason);
    }

    /// Whether every stage is ready, and each stage's state, as `/ready` reports it.
    pub fn ready_report(&self) -> (bool, serde_json::Value) {
        let stages = self.0.readiness.lock().unwrap_or_else(|e| e.into_inner());
        let ready = stages.values().all(Option::is_none);
        let detail: serde_json::Map<String, serde_json::Value> = stages
            .iter()
            .map(|(stage, reason)| {
                let v = match reason {
                    None => serde_json::json!({ "ready": true }),
                    Some(r) => serde_json::json!({ "ready": false, "reason": r }),
                };
                (stage.clone(), v)
            })
            .collect();
        (
            ready,
            serde_json::json!({ "ready": ready, "stages": detail }),
        )
    }

    /// Every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 << 10);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.0.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// Records through one stage, updated once per batch.
#[derive(Clone)]
pub struct StageMetrics {
    pub records_in: Counter,
    pub records_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub dropped: Counter,
    pub dead_lettered: Counter,
    pub batch_seconds: Histogram,
}

impl Default for StageMetrics {
    fn default() -> Self {
        Self {
            records_in: Counter::default(),
            records_out: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            dropped: Counter::default(),
            dead_lettered: Counter::default(),
            batch_seconds: latency_histogram(),
        }
    }
}

/// Calls into one transform's plugin.
#[derive(Clone)]
pub struct PluginMetrics {
    pub traps: Counter,
    pub timeouts: Counter,
    pub out_of_fuel: Counter,
    pub memory: Counter,
    pub contract: Counter,
    pub restarts: Counter,
    pub fuel: Counter,
    pub call_seconds: Histogram,
}

impl Default for PluginMetrics {
    fn default() -> Self {
        Self {
            traps: Counter::default(),
            timeouts: Counter::default(),
            out_of_fuel: Counter::default(),
            memory: Counter::default(),
            contract: Counter::default(),
            restarts: Counter::default(),
            fuel: Counter::default(),
            call_seconds: latency_histogram(),
        }
    }
}

/// Requests of a sink to its service.
#[derive(Clone)]
pub struct RequestMetrics {
    pub ok: Counter,
    pub failed: Counter,
    pub retries: Counter,
    pub seconds: Histogram,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            ok: Counter::default(),
            failed: Counter::default(),
            retries: Counter::default(),
            seconds: latency_histogram(),
        }
    }
}

impl RequestMetrics {
    /// Counts a finished request and how long it took.
    pub fn observe(&self, ok: bool, took: std::time::Duration) {
        self.seconds.observe(took.as_secs_f64());
        if ok { &self.ok } else { &self.failed }.inc();
    }
}

/// See [`Telemetry::handoffs`].
#[derive(Clone, Default)]
pub struct HandoffMetrics {
    pub taken_over: Counter,
    pub lost: Counter,
    pub dropped: Counter,
}

/// Lag and committed offsets of a Kafka consumer, per partition it owns.
#[derive(Clone, Default)]
pub struct KafkaMetrics {
    telemetry: Option<Telemetry>,
    stage: String,
    pub rebalances: Counter,
    pub restarts: Counter,
    /// Messages dropped by `dedup_window`.
    pub duplicates: Counter,
}

impl KafkaMetrics {
    fn labels(&self, topic: &str, partition: i32) -> PartitionLabels {
        PartitionLabels {
            stage: self.stage.clone(),
            topic: topic.to_string(),
            partition,
        }
    }

    /// Lag and committed offset of a partition; a negative value (librdkafka's "unknown")
    /// leaves the gauge as it was.
    pub fn partition(&self, topic: &str, partition: i32, lag: i64, committed: i64) {
        let Some(t) = &self.telemetry else { return };
        let labels = self.labels(topic, partition);
        if lag >= 0 {
            t.families().kafka_lag.get_or_create(&labels).set(lag);
        }
        if committed >= 0 {
            t.families()
                .kafka_committed
                .get_or_create(&labels)
                .set(committed);
        }
    }

    /// Forgets a partition this consumer no longer owns.
    pub fn revoked(&self, topic: &str, partition: i32) {
        let Some(t) = &self.telemetry else { return };
        let labels = self.labels(topic, partition);
        t.families().kafka_lag.remove(&labels);
        t.families().kafka_committed.remove(&labels);
    }
}

/// A source's disk spool.
#[derive(Clone, Default)]
pub struct SpoolMetrics {
    pub bytes: Gauge,
    pub records: Gauge,
    pub full: Gauge,
    pub dropped_full: Counter,
    pub torn_tails: Counter,
}

/// Reconnects and stalls of a streaming source.
#[derive(Clone, Default)]
pub struct StreamMetrics {
    telemetry: Option<Telemetry>,
    stage: String,
    pub stalls: Counter,
    pub duplicates: Counter,
}

impl StreamMetrics {
    /// Counts a reconnect; `reason` is a short fixed word (`eof`, `http_429`, `network`...).
    pub fn reconnect(&self, reason: &str) {
        if let Some(t) = &self.telemetry {
            t.families()
                .reconnects
                .get_or_create(&kind(&self.stage, reason))
                .inc();
        }
    }
}

/// One stage's readiness, as `/ready` reports it. A reason must not carry a secret: it is
/// served to whoever can reach the listener.
#[derive(Clone, Default)]
pub struct Readiness {
    telemetry: Option<Telemetry>,
    stage: String,
}

impl Readiness {
    pub fn ready(&self) {
        if let Some(t) = &self.telemetry {
            t.set_readiness(&self.stage, None);
        }
    }

    pub fn not_ready(&self, reason: impl Into<String>) {
        if let Some(t) = &self.telemetry {
            t.set_readiness(&self.stage, Some(reason.into()));
        }
    }

    pub fn set(&self, result: Result<(), String>) {
        match result {
            Ok(()) => self.ready(),
            Err(reason) => self.not_ready(reason),
        }
    }
}

/// A task that checks a service every `every` and sets a stage's readiness from the answer,
/// so an idle stage notices an outage too. Stops when dropped.
pub struct Probe(tokio::task::JoinHandle<()>);

impl Probe {
    /// Runs `check` (bounded by `every`) now and then every `every`.
    pub fn spawn<F, Fut>(readiness: Readiness, every: std::time::Duration, check: F) -> Self
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send,
    {
        Probe(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let result = tokio::time::timeout(every, check())
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {every:?}")));
                readiness.set(result);
            }
        }))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_counters_show_in_the_text_format_with_the_pipeline_label() {
        let t = Telemetry::new("demo");
        let s = t.stage("transforms.bts");
        s.records_in.inc_by(5);
        s.dropped.inc_by(2);
        s.batch_seconds.observe(0.003);
        let text = t.encode();
        assert!(
            text.contains(r#"sluice_records_in_total{pipeline="demo",stage="transforms.bts"} 5"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"sluice_records_dropped_total{pipeline="demo",stage="transforms.bts"} 2"#
            )
        );
        assert!(text.contains("sluice_batch_duration_seconds_bucket{"));
        assert!(text.contains("process_resident_memory_bytes{"));
    }

    #[test]
    fn readiness_is_the_conjunction_of_stages_with_reasons() {
        let t = Telemetry::new("demo");
        let source = t.readiness("source", "connecting");
        let sink = t.readiness("sinks.es", "connecting");
        source.ready();
        let (ready, body) = t.ready_report();
        assert!(!ready);
        assert_eq!(body["stages"]["sinks.es"]["reason"], "connecting");
        assert_eq!(body["stages"]["source"]["ready"], true);
        sink.ready();
        assert!(t.ready_report().0);
        assert!(
            t.encode()
                .contains(r#"sluice_stage_ready{pipeline="demo",stage="sinks.es"} 1"#)
        );
    }

    #[test]
    fn revoked_partitions_leave_the_lag_gauges() {
        let t = Telemetry::new("demo");
        let k = t.kafka("source");
        k.partition("twitter", 0, 42, 100);
        k.partition("twitter", 1, -1, -1);
        let text = t.encode();
        assert!(text.contains(r#"sluice_kafka_consumer_lag{pipeline="demo",stage="source",topic="twitter",partition="0"} 42"#), "{text}");
        assert!(!text.contains(r#"partition="1""#));
        k.revoked("twitter", 0);
        assert!(!t.encode().contains(r#"partition="0""#));
    }
}
