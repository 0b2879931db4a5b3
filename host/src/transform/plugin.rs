//! Loading a plugin component and calling it inside its sandbox.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::config::{Grants, TransformConfig};
use super::imports::{self, Need};
use super::runtime::Runtime;
use super::{Level, Outcome, Record, WIT_PACKAGE};
use crate::event::wit::sluice::transform::{log, types};
use crate::event::wit::{Transform, TransformPre};

/// Everything needed to load one plugin, resolved from pipeline.toml.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The transform's name in pipeline.toml; used in logs and dead-letter entries.
    pub name: String,
    pub path: PathBuf,
    pub sha256: Option<String>,
    pub timeout: Duration,
    pub fuel: Option<u64>,
    pub memory: usize,
    pub recycle_after_calls: u64,
    pub config: Vec<(String, String)>,
    pub grants: Grants,
}

impl PluginSpec {
    /// A spec with the defaults of pipeline.toml, for tools and tests.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
            sha256: None,
            timeout: Duration::from_millis(500),
            fuel: None,
            memory: 64 << 20,
            recycle_after_calls: 10_000,
            config: Vec::new(),
            grants: Grants::default(),
        }
    }

    /// From a `[transforms.NAME]` table; `resolve` makes file paths absolute.
    pub fn from_config(
        name: &str,
        t: &TransformConfig,
        resolve: impl Fn(&Path) -> PathBuf,
    ) -> Self {
        let mut grants = t.grants.clone();
        for host in grants.dirs.values_mut() {
            *host = resolve(host);
        }
        Self {
            name: name.to_string(),
            path: resolve(&t.plugin),
            sha256: t.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
            timeout: t.timeout,
            fuel: t.fuel,
            memory: t.memory.as_u64() as usize,
            recycle_after_calls: t.recycle_after_calls.max(1),
            config: t
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.to_plugin_string()))
                .collect(),
            grants,
        }
    }
}

/// A loaded, link-checked plugin. Cheap to instantiate many times.
pub struct Plugin {
    pub spec: PluginSpec,
    /// SHA-256 of the component file.
    pub digest: String,
    runtime: Runtime,
    engine: Engine,
    pre: TransformPre<HostState>,
    /// The component's import names, to explain a failure at start-up.
    imports: Vec<String>,
}

/// Why a call into a plugin failed. Every variant leaves the instance unusable.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("timeout: batch took longer than {0:?}")]
    Timeout(Duration),
    #[error("fuel exhausted: batch needed more than {0} units")]
    OutOfFuel(u64),
    #[error("memory cap exceeded: grew past {0} bytes")]
    Memory(usize),
    #[error("trap: {0}")]
    Trap(String),
    #[error("contract violation: returned {got} outcomes for {expected} records")]
    WrongCount { expected: usize, got: usize },
}

impl Plugin {
    /// Reads, verifies, compiles (or loads from cache) and link-checks a plugin.
    pub fn load(runtime: &Runtime, spec: PluginSpec) -> anyhow::Result<Arc<Plugin>> {
        let name = &spec.name;
        let bytes = std::fs::read(&spec.path)
            .with_context(|| format!("transform `{name}`: reading {}", spec.path.display()))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        if let Some(pin) = &spec.sha256
            && *pin != digest
        {
            bail!(
                "transform `{name}`: {} has sha256 {digest}, but pipeline.toml pins {pin}; refusing to load it",
                spec.path.display()
            );
        }
        // wasmtime's own words for these name the parser, not what to do about them.
        if wasmparser::Parser::is_core_wasm(&bytes) {
            bail!(
                "transform `{name}`: {} is a core WebAssembly module, not a component: build it \
                 for the component model (e.g. target wasm32-wasip2, or `wasm-tools component \
                 new` with the WASI adapter) against the `sluice:transform` world",
                spec.path.display()
            );
        }
        if !wasmparser::Parser::is_component(&bytes) {
            bail!(
                "transform `{name}`: {} is not a WebAssembly component (it does not start with \
                 the wasm header)",
                spec.path.display()
            );
        }
        let engine = runtime.engine(spec.fuel.is_some())?.clone();
        let component = runtime
            .component(&engine, &digest, &bytes)
            .with_context(|| {
                format!(
                    "transform `{name}`: {} is not a valid component",
                    spec.path.display()
                )
            })?;

        let imports: Vec<String> = component
            .component_type()
            .imports(&engine)
            .map(|(name, _)| name.to_string())
            .collect();
        check_imports(&imports, &spec)?;

        let mut linker = Linker::<HostState>::new(&engine);
        Transform::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        if spec.grants.wasi {
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        }
        let pre = linker
            .instantiate_pre(&component)
            .and_then(TransformPre::new)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "transform `{name}`: {} does not fit the host (built for world `transform` of {WIT_PACKAGE}?)",
                    spec.path.display()
                )
            })?;
        Ok(Arc::new(Plugin {
            spec,
            digest,
            runtime: runtime.clone(),
            engine,
            pre,
            imports,
        }))
    }

    /// Most record bytes to hand over in one call.
    pub fn max_call_bytes(&self) -> usize {
        self.runtime.options().max_call_bytes
    }

    /// A fresh instance with `init` already run on the plugin's config.
    pub fn instantiate(self: &Arc<Self>) -> anyhow::Result<Instance> {
        let name = &self.spec.name;
        let state = HostState::new(self)?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let mut instance = Instance {
            plugin: self.clone(),
            bindings: None,
            store,
            calls: 0,
        };
        // Start-up (instantiation, `init`) may take longer than a batch, more so on a loaded
        // machine, but is bounded too.
        let startup = self.spec.timeout.max(STARTUP_TIMEOUT_FLOOR);
        instance.arm_for(startup);
        let bindings = self
            .pre
            .instantiate(&mut instance.store)
            .map_err(|e| self.startup_failed("instantiating", instance.classify(e)))?;
        instance.arm_for(startup);
        bindings
            .call_init(&mut instance.store, &self.spec.config)
            .map_err(|e| self.startup_failed("init", instance.classify(e)))?
            .map_err(|reason| ConfigRejected {
                transform: name.clone(),
                reason,
            })?;
        instance.bindings = Some(bindings);
        Ok(instance)
    }

    /// The component's imports, by name (`wasi:clocks/wall-clock@0.2.6`).
    pub fn imports(&self) -> impl Iterator<Item = &str> {
        self.imports.iter().map(String::as_str)
    }

    /// A failure before the first batch, with the grant that would likely prevent it: a
    /// trap there names nothing the user can change ("unreachable executed").
    fn startup_failed(&self, during: &str, e: CallError) -> anyhow::Error {
        let name = &self.spec.name;
        match imports::startup_hint(name, self.imports(), &self.spec.grants) {
            Some(hint) => anyhow::anyhow!("transform `{name}`: {during}: {e}; {hint}"),
            None => anyhow::anyhow!("transform `{name}`: {during}: {e}"),
        }
    }
}

/// A plugin's `init` refused its config (as opposed to failing to start).
#[derive(Debug, thiserror::Error)]
#[error("transform `{transform}` rejected its config: {reason}")]
pub struct ConfigRejected {
    pub transform: String,
    pub reason: String,
}

/// The least time instantiation plus `init` get, whatever the per-batch `timeout`.
const STARTUP_TIMEOUT_FLOOR: Duration = Duration::from_secs(2);

/// Refuses imports the pipeline did not grant, naming them, before linking.
fn check_imports(imports: &[String], spec: &PluginSpec) -> anyhow::Result<()> {
    for import in imports {
        let need = Need::of(import);
        if need.links(&spec.grants) {
            continue;
        }
        let ours = imports::package_name();
        let hint = if need.grant().is_some() {
            format!(
                "; to allow WASI set `[transforms.{}.grants] wasi = true` (files, env, clocks stay closed unless granted one by one)",
                spec.name
            )
        } else if import.starts_with(&format!("{ours}/")) {
            format!("; this host implements {WIT_PACKAGE}: rebuild the plugin against it")
        } else {
            format!("; plugins may import only {ours}/log")
        };
        bail!(
            "transform `{}`: {} imports `{import}`, which is not granted{hint}",
            spec.name,
            spec.path.display()
        );
    }
    Ok(())
}

/// One live instance of a plugin, with its own store and limits.
pub struct Instance {
    plugin: Arc<Plugin>,
    bindings: Option<Transform>,
    store: Store<HostState>,
    calls: u64,
}

impl Instance {
    /// Calls `process` on a batch under the plugin's deadline, fuel and memory cap.
    pub fn process(&mut self, batch: &[Record]) -> Result<Vec<Outcome>, CallError> {
        self.calls += 1;
        self.arm();
        self.store.data_mut().log_budget = LOG_LINES_PER_CALL;
        let Some(bindings) = &self.bindings else {
            return Err(CallError::Trap("instance is not initialised".into()));
        };
        let outcomes = bindings
            .call_process(&mut self.store, batch)
            .map_err(|e| self.classify(e))?;
        if outcomes.len() != batch.len() {
            return Err(CallError::WrongCount {
                expected: batch.len(),
                got: outcomes.len(),
            });
        }
        Ok(outcomes)
    }

    /// Fuel the last call used, for plugins with a fuel budget.
    pub fn fuel_used(&self) -> Option<u64> {
        let budget = self.plugin.spec.fuel?;
        Some(budget.saturating_sub(self.store.get_fuel().unwrap_or(0)))
    }

    /// The largest linear memory the instance has asked for so far, in bytes.
    pub fn peak_memory(&self) -> usize {
        self.store.data().limits.peak
    }

    /// True when the instance should be replaced before the next call: it has served its
    /// quota of calls, or its memory has grown past three quarters of the cap (a guest that
    /// leaks would otherwise end in a trap that looks like a poison record).
    pub fn worn_out(&self) -> bool {
        let spec = &self.plugin.spec;
        self.calls >= spec.recycle_after_calls
            || self.store.data().limits.peak > spec.memory / 4 * 3
    }

    /// Sets the deadline and fuel for the next call; both are relative to "now".
    fn arm(&mut self) {
        self.arm_for(self.plugin.spec.timeout);
    }

    fn arm_for(&mut self, timeout: Duration) {
        let spec = &self.plugin.spec;
        if self.plugin.runtime.options().deadlines {
            let ticks = self.plugin.runtime.deadline_ticks(timeout);
            self.store.set_epoch_deadline(ticks);
        }
        if let Some(fuel) = spec.fuel {
            // Only fails when fuel is not enabled, and it is for plugins with a budget.
            let _ = self.store.set_fuel(fuel);
        }
    }

    fn classify(&self, e: wasmtime::Error) -> CallError {
        let spec = &self.plugin.spec;
        if let Some(cap) = self.store.data().limits.hit_cap {
            return CallError::Memory(cap);
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallError::Timeout(spec.timeout),
            Some(Trap::OutOfFuel) => CallError::OutOfFuel(spec.fuel.unwrap_or_default()),
            Some(trap) => CallError::Trap(trap.to_string()),
            None => CallError::Trap(
                format!("{e:#}")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
        }
    }
}

const LOG_LINES_PER_CALL: u32 = 64;
const LOG_LINE_MAX: usize = 1024;

/// What a store carries: limits, the plugin's name for its logs, and (if granted) WASI.
pub struct HostState {
    plugin: Arc<str>,
    limits: Limits,
    log_budget: u32,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    fn new(plugin: &Plugin) -> anyhow::Result<Self> {
        let spec = &plugin.spec;
        let mut wasi = WasiCtxBuilder::new();
        let g = &spec.grants;
        if g.wasi {
            for var in &g.env {
                if let Ok(v) = std::env::var(var) {
                    wasi.env(var, v);
                }
            }
            for (guest, host) in &g.dirs {
                wasi.preopened_dir(host, guest, FsPerms::ReadOnly)
                    .map_err(anyhow::Error::from)
                    .with_context(|| {
                        format!("transform `{}`: granting {}", spec.name, host.display())
                    })?;
            }
            if !g.clocks {
                wasi.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
            }
            if g.stdio {
                wasi.inherit_stdout().inherit_stderr();
            }
        }
        Ok(Self {
            plugin: spec.name.as_str().into(),
            limits: Limits {
                inner: StoreLimitsBuilder::new()
                    .memory_size(spec.memory)
                    .table_elements(1 << 20)
                    .instances(64)
                    .tables(64)
                    .memories(16)
                    .trap_on_grow_failure(true)
                    .build(),
                cap: spec.memory,
                peak: 0,
                hit_cap: None,
            },
            log_budget: LOG_LINES_PER_CALL,
            wasi: wasi.build(),
            table: ResourceTable::new(),
        })
    }
}

/// [`StoreLimits`] plus the memory high-water mark, which drives instance recycling, and a
/// note of a cap hit so the failure is reported as such rather than as a generic trap.
struct Limits {
    inner: StoreLimits,
    cap: usize,
    peak: usize,
    hit_cap: Option<usize>,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit_cap = Some(self.cap);
        } else {
            self.peak = self.peak.max(desired);
        }
        self.inner.memory_growing(current, desired, maximum)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }
    fn tables(&self) -> usize {
        self.inner.tables()
    }
    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// The clocks a plugin sees unless `grants.clocks` is set: always zero.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        if self.log_budget == 0 {
            return;
        }
        self.log_budget -= 1;
        let mut message = message;
        if message.len() > LOG_LINE_MAX {
            let mut end = LOG_LINE_MAX;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}
