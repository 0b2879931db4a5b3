//! pipeline.toml: the one file that names a pipeline's source, transform chain and sinks.
//!
//! Values come from the TOML file, then from `SLUICE_`-prefixed environment variables, where
//! `__` separates key levels (`SLUICE_SOURCE__COUNT=100`,
//! `SLUICE_TRANSFORMS__BTS__CONFIG__KEYWORDS=bts,army`). Every error names the key and where
//! its value came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

use tweetgen::GenerateOptions;

/// Prefix of environment variables that override the file.
pub const ENV_PREFIX: &str = "SLUICE_";
/// Top-level sections of pipeline.toml; only `SLUICE_<SECTION>__...` variables override it.
const SECTIONS: &[&str] = &[
    "pipeline",
    "source",
    "transforms",
    "sinks",
    "dead_letter",
    "runtime",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    #[serde(default)]
    pub pipeline: PipelineSection,
    pub source: SourceConfig,
    /// Transforms by name; `pipeline.chain` gives their order.
    #[serde(default)]
    pub transforms: BTreeMap<String, TransformConfig>,
    pub sinks: BTreeMap<String, SinkConfig>,
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSection {
    pub name: String,
    /// Names of `[transforms.*]` entries, applied in this order.
    pub chain: Vec<String>,
    /// Records handed to a plugin per call.
    pub batch_size: usize,
    /// A partial batch is flushed after this long.
    #[serde(with = "humantime_serde")]
    pub batch_timeout: Duration,
    /// Batches buffered between stages (bounded: a slow sink slows the source).
    pub queue_batches: usize,
    /// Records larger than this are dead-lettered before any plugin sees them.
    pub max_record_bytes: ByteSize,
    /// Print a progress line to stderr (when it is a terminal) at this interval.
    #[serde(with = "humantime_serde")]
    pub progress_interval: Duration,
}

impl Default for PipelineSection {
    fn default() -> Self {
        Self {
            name: "pipeline".into(),
            chain: Vec::new(),
            batch_size: 500,
            batch_timeout: Duration::from_millis(100),
            queue_batches: 4,
            max_record_bytes: ByteSize::mib(1),
            progress_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Synthetic tweets.
    Generate {
        /// Records to produce; 0 means endless.
        count: u64,
        /// Records per second; 0 means as fast as the pipeline takes them.
        #[serde(default)]
        rate: f64,
        /// Shape of the tweets: seed, shares of bts/v2/retweets/wide tweets, timing.
        #[serde(default)]
        tweets: GenerateOptions,
    },
    /// NDJSON files, one record per line.
    File {
        /// Paths or glob patterns, relative to the pipeline file.
        paths: Vec<String>,
        /// Records per second; 0 means as fast as the pipeline takes them.
        #[serde(default)]
        rate: f64,
        /// Start over at the end (for replay and soak runs).
        #[serde(default, rename = "loop")]
        repeat: bool,
    },
    /// Kafka topics, read as a consumer group with offsets committed only once every sink
    /// holds the records.
    Kafka(KafkaSourceConfig),
    /// The Twitter API v2 filtered stream; `keywords` become stream rules.
    Twitter(crate::sources::twitter::TwitterConfig),
}

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
    /// Extra librdkafka consumer settings (e.g. `"session.timeout.ms" = 10000`).
    #[serde(default)]
    pub properties: BTreeMap<String, ConfigValue>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformConfig {
    /// Path of the plugin component (`.wasm`), relative to the pipeline file.
    pub plugin: PathBuf,
    /// If set, the plugin's SHA-256 (hex) must match before it is loaded.
    pub sha256: Option<String>,
    /// Wall-clock budget for one batch (enforced with epoch interruption).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Optional instruction budget for one batch (wasmtime fuel).
    pub fuel: Option<u64>,
    /// Cap on the plugin's linear memory.
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    /// Re-create the instance after this many calls (guards against guests that leak).
    #[serde(default = "default_recycle_calls")]
    pub recycle_after_calls: u64,
    /// Key/value pairs handed to the plugin's `init`. Arrays are joined with commas.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
    /// Capabilities beyond pure computation. Nothing is granted by default.
    #[serde(default)]
    pub grants: Grants,
}

fn default_timeout() -> Duration {
    Duration::from_millis(500)
}
fn default_memory() -> ByteSize {
    ByteSize::mib(64)
}
fn default_recycle_calls() -> u64 {
    10_000
}

/// A plugin config value as written in TOML; plugins receive it as a string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<ConfigValue>),
}

impl ConfigValue {
    pub fn to_plugin_string(&self) -> String {
        match self {
            ConfigValue::Bool(b) => b.to_string(),
            ConfigValue::Int(i) => i.to_string(),
            ConfigValue::Float(f) => f.to_string(),
            ConfigValue::Str(s) => s.clone(),
            ConfigValue::List(items) => items
                .iter()
                .map(ConfigValue::to_plugin_string)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// WASI capabilities a plugin may be granted. Without `wasi = true` a plugin that imports any
/// WASI interface is refused at load. With it, the plugin gets an empty WASI world: no files,
/// no environment, no network, frozen clocks; each field below opens one thing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    pub wasi: bool,
    /// Environment variables passed through from the host, by name.
    pub env: Vec<String>,
    /// Read-only directories: guest path -> host path (relative to the pipeline file).
    pub dirs: BTreeMap<String, PathBuf>,
    /// Real wall and monotonic clocks (otherwise both read zero).
    pub clocks: bool,
    /// Let the plugin write to the host's stdout/stderr.
    pub stdio: bool,
}

impl Grants {
    pub fn any_beyond_wasi(&self) -> bool {
        !self.env.is_empty() || !self.dirs.is_empty() || self.clocks || self.stdio
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// NDJSON files, rotated by size.
    File {
        /// Path of the first file; rotated files get `.1`, `.2`, ... before the extension.
        path: PathBuf,
        /// Start a new file once the current one reaches this size (0: never).
        #[serde(default)]
        rotate_bytes: ByteSize,
    },
    /// NDJSON on standard output.
    Stdout,
    /// A Kafka topic; a batch counts as written once the broker acknowledged every record.
    Kafka(KafkaSinkConfig),
    /// Elasticsearch (or OpenSearch) `_bulk`, into daily indices, with the tweet id as `_id`;
    /// the index template is created or updated at start.
    Elasticsearch(crate::sinks::elasticsearch::ElasticsearchConfig),
    /// Gzip NDJSON objects in a GCS bucket, each loaded into BigQuery once finalized when
    /// `[sinks.NAME.bigquery]` is set.
    #[cfg(feature = "gcp")]
    Gcs(crate::sinks::gcs::GcsConfig),
    /// BigQuery streaming inserts (`insertAll`, tweet id as `insertId`).
    #[cfg(feature = "gcp")]
    Bigquery(crate::sinks::bigquery::BigQueryConfig),
}

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
    /// Extra librdkafka producer settings (e.g. `"linger.ms" = 20`).
    #[serde(default)]
    pub properties: BTreeMap<String, ConfigValue>,
    /// Create the topic at start if it does not exist.
    pub create_topic: Option<CreateTopic>,
    /// Which time stamps each message: when it is produced (default) or the record's event
    /// time. The event time always travels in the `sluice.event_time` header.
    #[serde(default)]
    pub timestamp: MessageTimestamp,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeadLetterConfig {
    /// One JSON object per line: the record, the stage and plugin that failed it, and why.
    File { path: PathBuf },
    /// A Kafka topic: the record as it was (key, value, headers) plus the headers
    /// `sluice.stage`, `sluice.reason` and, for transforms, `sluice.plugin`.
    Kafka {
        brokers: String,
        topic: String,
        /// Extra librdkafka producer settings.
        #[serde(default)]
        properties: BTreeMap<String, ConfigValue>,
    },
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig::File {
            path: PathBuf::from("dead-letter.ndjson"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Where compiled plugins are cached; default `$XDG_CACHE_HOME/sluice/wasm`.
    pub cache_dir: Option<PathBuf>,
    /// Granularity of plugin deadlines.
    #[serde(with = "humantime_serde")]
    pub epoch_tick: Duration,
    /// Upper bound for any plugin's `memory`, reserved per pooled instance slot.
    pub max_plugin_memory: ByteSize,
    /// Plugin instances that may exist at once (pool slots).
    pub max_instances: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            epoch_tick: Duration::from_millis(5),
            max_plugin_memory: ByteSize::gib(1),
            max_instances: 64,
        }
    }
}

/// A configuration problem, naming the key and where its value came from.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: `{key}`: {message}")]
pub struct ConfigError {
    pub origin: String,
    pub key: String,
    pub message: String,
}

/// A loaded pipeline: the parsed config plus the file it came from.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub config: PipelineConfig,
    pub file: PathBuf,
    figment: Figment,
}

impl Pipeline {
    /// Reads `path`, applies `SLUICE_*` overrides, and validates the result.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        if !path.is_file() {
            anyhow::bail!("{}: pipeline file not found", path.display());
        }
        let figment = Figment::new().merge(Toml::file_exact(path)).merge(
            Env::prefixed(ENV_PREFIX)
                .split("__")
                // Other SLUICE_* variables (for tools, benches) are not pipeline keys.
                .filter(|k| {
                    let section = k.as_str().split('.').next().unwrap_or_default();
                    SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(section))
                }),
        );
        let config: PipelineConfig = figment.extract().map_err(|e| describe_figment(e, path))?;
        let pipeline = Pipeline {
            config,
            file: path.to_path_buf(),
            figment,
        };
        pipeline.validate()?;
        Ok(pipeline)
    }

    /// Resolves a path from the file relative to the file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.file.parent().unwrap_or_else(|| Path::new(".")).join(p)
        }
    }

    /// Builds an error about `key`, naming the file or the env var its value came from.
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let lookup = key.split('[').next().unwrap_or(key);
        let origin = match self.figment.find_metadata(lookup).map(|md| &md.source) {
            Some(Some(figment::Source::File(f))) => f.display().to_string(),
            Some(_) => env_var_origin(lookup),
            None => self.file.display().to_string(),
        };
        ConfigError {
            origin,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// The transforms in chain order, with their names.
    pub fn chain(&self) -> impl Iterator<Item = (&str, &TransformConfig)> {
        self.config
            .pipeline
            .chain
            .iter()
            .map(|name| (name.as_str(), &self.config.transforms[name]))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.config;
        let p = &c.pipeline;
        if p.batch_size == 0 {
            return Err(self.error("pipeline.batch_size", "must be at least 1"));
        }
        if p.queue_batches == 0 {
            return Err(self.error("pipeline.queue_batches", "must be at least 1"));
        }
        for (i, name) in p.chain.iter().enumerate() {
            if !c.transforms.contains_key(name) {
                let known: Vec<_> = c.transforms.keys().map(String::as_str).collect();
                return Err(self.error(
                    &format!("pipeline.chain[{i}]"),
                    format!(
                        "no transform named `{name}` (defined: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
        for name in c.transforms.keys() {
            if !p.chain.contains(name) {
                return Err(self.error(
                    &format!("transforms.{name}"),
                    "defined but not used in `pipeline.chain`",
                ));
            }
        }
        match &c.source {
            SourceConfig::Generate { tweets, rate, .. } => {
                tweets
                    .validate()
                    .map_err(|m| self.error("source", m.to_string()))?;
                check_rate(self, *rate)?;
            }
            SourceConfig::File { paths, rate, .. } => {
                if paths.is_empty() {
                    return Err(self.error("source.paths", "needs at least one path or glob"));
                }
                check_rate(self, *rate)?;
            }
            SourceConfig::Twitter(t) => {
                t.validate()
                    .map_err(|e| self.error("source", format!("{e:#}")))?;
            }
            SourceConfig::Kafka(k) => {
                self.non_empty("source.brokers", &k.brokers)?;
                self.non_empty("source.group_id", &k.group_id)?;
                if k.topics.is_empty() || k.topics.iter().any(|t| t.trim().is_empty()) {
                    return Err(self.error("source.topics", "needs at least one topic name"));
                }
            }
        }
        if c.sinks.is_empty() {
            return Err(self.error("sinks", "a pipeline needs at least one sink"));
        }
        for (name, sink) in &c.sinks {
            let keyed = |(key, message): (&str, String)| {
                self.error(&format!("sinks.{name}.{key}"), message)
            };
            match sink {
                SinkConfig::Elasticsearch(es) => es.validate().map_err(keyed)?,
                #[cfg(feature = "gcp")]
                SinkConfig::Gcs(g) => {
                    g.validate().map_err(keyed)?;
                    if let Some(bq) = &g.bigquery {
                        bq.validate()
                            .map_err(|(key, m)| keyed((&format!("bigquery.{key}"), m)))?;
                    }
                }
                #[cfg(feature = "gcp")]
                SinkConfig::Bigquery(bq) => {
                    bq.validate().map_err(keyed)?;
                    if bq.mode != crate::sinks::bigquery::Mode::Stream {
                        return Err(keyed((
                            "mode",
                            "a `type = \"bigquery\"` sink streams (`mode = \"stream\"`); load \
                             jobs come from a gcs sink with `[sinks.NAME.bigquery]`"
                                .into(),
                        )));
                    }
                }
                _ => {}
            }
            let SinkConfig::Kafka(k) = sink else { continue };
            let key = |k: &str| format!("sinks.{name}.{k}");
            self.non_empty(&key("brokers"), &k.brokers)?;
            self.non_empty(&key("topic"), &k.topic)?;
            if !matches!(k.acks.to_plugin_string().as_str(), "all" | "-1" | "0" | "1") {
                return Err(self.error(&key("acks"), "must be \"all\", 1 or 0"));
            }
            if k.key_field.split(',').any(|p| p.trim().is_empty()) {
                return Err(self.error(&key("key_field"), "has an empty path"));
            }
            if let Some(t) = &k.create_topic {
                if t.partitions.is_some_and(|n| n < 1) {
                    return Err(self.error(&key("create_topic.partitions"), "must be at least 1"));
                }
                if t.replication.is_some_and(|n| n < 1) {
                    return Err(self.error(&key("create_topic.replication"), "must be at least 1"));
                }
            }
        }
        if let DeadLetterConfig::Kafka { brokers, topic, .. } = &c.dead_letter {
            self.non_empty("dead_letter.brokers", brokers)?;
            self.non_empty("dead_letter.topic", topic)?;
        }
        let max_memory = c.runtime.max_plugin_memory;
        for (name, t) in &c.transforms {
            let key = |k: &str| format!("transforms.{name}.{k}");
            if t.timeout.is_zero() {
                return Err(self.error(&key("timeout"), "must be greater than zero"));
            }
            if t.memory > max_memory {
                return Err(self.error(
                    &key("memory"),
                    format!(
                        "{} exceeds runtime.max_plugin_memory ({max_memory})",
                        t.memory
                    ),
                ));
            }
            if t.fuel == Some(0) {
                return Err(self.error(&key("fuel"), "must be greater than zero (or unset)"));
            }
            if let Some(pin) = &t.sha256
                && (pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(self.error(&key("sha256"), "must be 64 hex digits"));
            }
            if t.grants.any_beyond_wasi() && !t.grants.wasi {
                return Err(self.error(
                    &key("grants.wasi"),
                    "env, dirs, clocks and stdio grants need `wasi = true`",
                ));
            }
            for (guest, host) in &t.grants.dirs {
                if !self.resolve(host).is_dir() {
                    return Err(self.error(
                        &format!("transforms.{name}.grants.dirs.{guest}"),
                        format!("{} is not a directory", self.resolve(host).display()),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Pipeline {
    fn non_empty(&self, key: &str, value: &str) -> Result<(), ConfigError> {
        if value.trim().is_empty() {
            return Err(self.error(key, "must not be empty"));
        }
        Ok(())
    }
}

fn check_rate(p: &Pipeline, rate: f64) -> Result<(), ConfigError> {
    if !rate.is_finite() || rate < 0.0 {
        return Err(p.error("source.rate", "must be a number >= 0"));
    }
    Ok(())
}

/// "environment variable SLUICE_PIPELINE__BATCH_SIZE" for key `pipeline.batch_size`.
fn env_var_origin(key: &str) -> String {
    format!(
        "environment variable {ENV_PREFIX}{}",
        key.to_ascii_uppercase().replace('.', "__")
    )
}

/// Turns a figment error into one line per problem, each with key and origin.
fn describe_figment(err: figment::Error, file: &Path) -> anyhow::Error {
    let lines: Vec<String> = err
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                "(top level)".to_string()
            } else {
                e.path.join(".")
            };
            let origin = match e.metadata.as_ref().map(|md| &md.source) {
                Some(Some(figment::Source::File(f))) => f.display().to_string(),
                Some(_) => env_var_origin(&key),
                None => file.display().to_string(),
            };
            format!("{origin}: `{key}`: {}", e.kind)
        })
        .collect();
    anyhow::anyhow!("{}", lines.join("\n"))
}
