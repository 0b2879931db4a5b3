//! `[transforms.NAME]` tables (plugin, limits, grants, init config) and `[runtime]`, with
//! the checks `host check` runs on them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use crate::util::{ConfigValue, Invalid};

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

    /// Adds one grant written as on the command line: `wasi`, `clocks`, `stdio`, `env=NAME`
    /// or `dirs=GUEST=HOST`. Each grant but `wasi` implies `wasi`, which the table requires
    /// to be written out.
    pub fn add(&mut self, grant: &str) -> Result<(), String> {
        match grant.split_once('=') {
            None if grant == "wasi" => {}
            None if grant == "clocks" => self.clocks = true,
            None if grant == "stdio" => self.stdio = true,
            Some(("env", name)) if !name.is_empty() => self.env.push(name.to_string()),
            Some(("dirs", map)) => {
                let Some((guest, host)) = map
                    .split_once('=')
                    .filter(|(g, h)| !g.is_empty() && !h.is_empty())
                else {
                    return Err(format!("`{grant}`: expected dirs=GUEST=HOST"));
                };
                self.dirs.insert(guest.to_string(), host.into());
            }
            _ => {
                return Err(format!(
                    "unknown grant `{grant}` (grants: wasi, clocks, stdio, env=NAME, dirs=GUEST=HOST)"
                ));
            }
        }
        self.wasi = true;
        Ok(())
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
    /// Most record bytes handed to a plugin in one call: larger batches are cut into calls
    /// of this size, so a plugin's memory follows this rather than `pipeline.batch_size`.
    pub max_call_bytes: ByteSize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            epoch_tick: Duration::from_millis(5),
            max_plugin_memory: ByteSize::gib(1),
            max_instances: 64,
            max_call_bytes: ByteSize::mib(1),
        }
    }
}

impl TransformConfig {
    /// Checks that need nothing but the table itself (`memory` against the runtime's cap and
    /// `grants.dirs` against the file system are the pipeline's to check).
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.timeout.is_zero() {
            return Err(Invalid::new("timeout", "must be greater than zero"));
        }
        if self.fuel == Some(0) {
            return Err(Invalid::new("fuel", "must be greater than zero (or unset)"));
        }
        if let Some(pin) = &self.sha256
            && (pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(Invalid::new("sha256", "must be 64 hex digits"));
        }
        if self.grants.any_beyond_wasi() && !self.grants.wasi {
            return Err(Invalid::new(
                "grants.wasi",
                "env, dirs, clocks and stdio grants need `wasi = true`",
            ));
        }
        Ok(())
    }
}
