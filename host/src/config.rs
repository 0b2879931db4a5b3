//! pipeline.toml: the one file that names a pipeline's source, transform chain and sinks.
//!
//! Values come from the TOML file, then from `SLUICE_`-prefixed environment variables, where
//! `__` separates key levels (`SLUICE_SOURCE__COUNT=100`,
//! `SLUICE_TRANSFORMS__BTS__CONFIG__KEYWORDS=bts,army`). Every error names the key and where
//! its value came from.
//!
//! This module knows the file's layout; each component's table is the component's own type,
//! checked by the component (`validate`), and the errors come back here to be given the
//! table's key and the value's origin.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

use crate::sinks::SinkConfig;
use crate::sinks::dead_letter::DeadLetterConfig;
use crate::sources::SourceConfig;
use crate::telemetry::MetricsConfig;
use crate::transform::{RuntimeConfig, TransformConfig};
use crate::util::Invalid;

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
    pub runtime: RuntimeSection,
}

/// `[runtime]`: the plugin engine's settings, and `[runtime.metrics]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Serve `/metrics`, `/health` and `/ready` (off unless set, or `host run --metrics`).
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    #[serde(flatten)]
    pub plugins: RuntimeConfig,
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
    /// Threads running the chain, each with instances of its own; batches keep their order.
    /// Unset: one per core.
    pub workers: Option<usize>,
    /// Records larger than this are dead-lettered before any plugin sees them.
    pub max_record_bytes: ByteSize,
    /// Print a progress line to stderr (when it is a terminal) at this interval.
    #[serde(with = "humantime_serde")]
    pub progress_interval: Duration,
    /// After SIGTERM or SIGINT, how long the drain (finish in-flight batches, flush every
    /// sink, commit) may take before the host exits without committing what is undelivered.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl PipelineConfig {
    /// Chain workers to run: as set, else one per core as far as the instance pool allows;
    /// one when there is no chain to run.
    pub fn workers(&self) -> usize {
        let p = &self.pipeline;
        if p.chain.is_empty() {
            return 1;
        }
        p.workers.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
            cores.min(self.max_workers()).max(1)
        })
    }

    /// The most workers whose instances fit the pool twice over: a reload holds the old
    /// chains' instances while it creates the new ones.
    fn max_workers(&self) -> usize {
        let per_worker = 2 * self.pipeline.chain.len().max(1);
        self.runtime.plugins.max_instances as usize / per_worker
    }
}

impl Default for PipelineSection {
    fn default() -> Self {
        Self {
            name: "pipeline".into(),
            chain: Vec::new(),
            batch_size: 500,
            batch_timeout: Duration::from_millis(100),
            queue_batches: 4,
            workers: None,
            max_record_bytes: ByteSize::mib(1),
            progress_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
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

    /// A component's [`Invalid`] as a config error: `table` (e.g. `sinks.es`) before its key.
    pub fn invalid(&self, table: &str, e: Invalid) -> ConfigError {
        self.error(&format!("{table}.{}", e.key), e.message)
    }

    /// An error from opening the component at `table`: an [`Invalid`] in it becomes a config
    /// error naming the key and its origin; anything else is said to come from `table`.
    pub fn explain(&self, table: &str, e: anyhow::Error) -> anyhow::Error {
        match e.downcast::<Invalid>() {
            Ok(invalid) => self.invalid(table, invalid).into(),
            Err(e) => e.context(format!("`{table}`")),
        }
    }

    /// The pipeline file's directory, where relative paths start.
    pub fn base_dir(&self) -> PathBuf {
        self.resolve(Path::new(""))
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
        match p.workers {
            Some(0) => return Err(self.error("pipeline.workers", "must be at least 1")),
            Some(n) if !p.chain.is_empty() && n > c.max_workers() => {
                return Err(self.error(
                    "pipeline.workers",
                    format!(
                        "{n} workers x {} transforms need {} plugin instances (twice, for a \
                         reload), more than runtime.max_instances ({}) allows",
                        p.chain.len(),
                        2 * n * p.chain.len(),
                        c.runtime.plugins.max_instances
                    ),
                ));
            }
            _ => {}
        }
        if p.shutdown_timeout.is_zero() {
            return Err(self.error("pipeline.shutdown_timeout", "must be greater than zero"));
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
        c.source
            .settings()
            .validate()
            .map_err(|e| self.invalid("source", e))?;
        if c.sinks.is_empty() {
            return Err(self.error("sinks", "a pipeline needs at least one sink"));
        }
        for (name, sink) in &c.sinks {
            sink.settings()
                .validate()
                .map_err(|e| self.invalid(&format!("sinks.{name}"), e))?;
        }
        c.dead_letter
            .validate()
            .map_err(|e| self.invalid("dead_letter", e))?;
        if c.runtime.plugins.max_call_bytes.as_u64() == 0 {
            return Err(self.error("runtime.max_call_bytes", "must be greater than zero"));
        }
        let max_memory = c.runtime.plugins.max_plugin_memory;
        for (name, t) in &c.transforms {
            t.validate()
                .map_err(|e| self.invalid(&format!("transforms.{name}"), e))?;
            if t.memory > max_memory {
                return Err(self.error(
                    &format!("transforms.{name}.memory"),
                    format!(
                        "{} exceeds runtime.max_plugin_memory ({max_memory})",
                        t.memory
                    ),
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
