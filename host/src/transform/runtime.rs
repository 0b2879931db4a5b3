//! Engines, the epoch ticker and the compiled-artifact cache.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use anyhow::Context;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// Settings shared by every plugin of a host process.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled components are cached (`None`: compile on every start).
    pub cache_dir: Option<PathBuf>,
    /// Deadline granularity; the ticker advances the epoch this often.
    pub epoch_tick: Duration,
    /// Largest linear memory any plugin may have (sizes the pool's slots).
    pub max_plugin_memory: usize,
    /// Instances that may be alive at once (pool slots).
    pub max_instances: u32,
    /// Most record bytes in one plugin call (see `RuntimeConfig::max_call_bytes`).
    pub max_call_bytes: usize,
    /// Enforce per-call deadlines. Off only for benchmarking the cost of the deadline itself.
    pub deadlines: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            cache_dir: default_cache_dir(),
            epoch_tick: Duration::from_millis(5),
            max_plugin_memory: 1 << 30,
            max_instances: 64,
            max_call_bytes: 1 << 20,
            deadlines: true,
        }
    }
}

impl RuntimeOptions {
    pub fn from_config(c: &super::config::RuntimeConfig) -> Self {
        Self {
            cache_dir: c.cache_dir.clone().or_else(default_cache_dir),
            epoch_tick: c.epoch_tick,
            max_plugin_memory: c.max_plugin_memory.as_u64() as usize,
            max_instances: c.max_instances,
            max_call_bytes: c.max_call_bytes.as_u64() as usize,
            deadlines: true,
        }
    }
}

/// `$XDG_CACHE_HOME/sluice/wasm` (or `~/.cache/sluice/wasm`).
pub fn default_cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("sluice").join("wasm"))
}

/// Owns the engines. Two engines exist at most: with and without fuel metering, because
/// metering is compiled into the code and costs time even when a plugin does not use it.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    options: RuntimeOptions,
    plain: OnceLock<Engine>,
    fueled: OnceLock<Engine>,
}

impl Runtime {
    pub fn new(options: RuntimeOptions) -> anyhow::Result<Self> {
        let inner = Arc::new(Inner {
            options,
            plain: OnceLock::new(),
            fueled: OnceLock::new(),
        });
        if inner.options.deadlines {
            spawn_ticker(Arc::downgrade(&inner), inner.options.epoch_tick)?;
        }
        Ok(Self { inner })
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// The engine for plugins with (`fuel = true`) or without fuel metering.
    pub fn engine(&self, fuel: bool) -> anyhow::Result<&Engine> {
        let cell = if fuel {
            &self.inner.fueled
        } else {
            &self.inner.plain
        };
        if let Some(e) = cell.get() {
            return Ok(e);
        }
        let engine = build_engine(&self.inner.options, fuel)?;
        Ok(cell.get_or_init(|| engine))
    }

    /// Epoch ticks that make up `timeout`, rounded up, plus one because the current tick
    /// may be nearly over when the deadline is set.
    pub fn deadline_ticks(&self, timeout: Duration) -> u64 {
        let tick = self.inner.options.epoch_tick.as_nanos().max(1);
        (timeout.as_nanos().div_ceil(tick) as u64).max(1) + 1
    }

    /// Compiles `bytes` (whose SHA-256 is `digest`), or loads the artifact cached for this
    /// digest and this engine's version and settings.
    pub fn component(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> anyhow::Result<Component> {
        let Some(dir) = &self.inner.options.cache_dir else {
            return Ok(Component::new(engine, bytes)?);
        };
        let path = dir.join(format!("{digest}-{}.cwasm", engine_fingerprint(engine)));
        if path.is_file() {
            // SAFETY: the cache directory is the host's own and files are written atomically by
            // `store_artifact`; the name binds them to this component and this engine build.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cached artifact: {e:#}")
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Err(e) = store_artifact(&path, &component) {
            tracing::warn!(path = %path.display(), "could not cache compiled plugin: {e:#}");
        }
        Ok(component)
    }
}

fn build_engine(o: &RuntimeOptions, fuel: bool) -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    let n = o.max_instances.max(1);
    pool.total_component_instances(n)
        .total_core_instances(n * 16)
        .total_memories(n * 4)
        .total_tables(n * 16)
        .max_memories_per_component(16)
        .max_core_instances_per_component(64)
        .max_component_instance_size(1 << 20)
        .max_memory_size(o.max_plugin_memory);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .cranelift_opt_level(OptLevel::Speed)
        .epoch_interruption(o.deadlines)
        .consume_fuel(fuel)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("creating the wasmtime engine")
}

/// Identifies engine version and settings: artifacts only load into a matching engine.
fn engine_fingerprint(engine: &Engine) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

fn store_artifact(path: &Path, component: &Component) -> anyhow::Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, component.serialize()?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Advances the epoch of every engine; exits once the runtime is dropped.
fn spawn_ticker(inner: Weak<Inner>, tick: Duration) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            while let Some(inner) = inner.upgrade() {
                for engine in [inner.plain.get(), inner.fueled.get()]
                    .into_iter()
                    .flatten()
                {
                    engine.increment_epoch();
                }
                drop(inner);
                std::thread::sleep(tick);
            }
        })
        .context("starting the epoch ticker")?;
    Ok(())
}
