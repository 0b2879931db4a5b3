//! Shared by the polyglot tests: one compiled-artifact cache for every test binary, filled by
//! the `host` binary, so that each 13-18 MB Python or JavaScript component is compiled once
//! per target directory (about 17 s each, with the dev profile's optimised Cranelift) and loaded
//! from there by every test and every later run.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use sluice::transform::{Runtime, RuntimeOptions};

/// Stands for `$XDG_CACHE_HOME` when the host warms the cache.
pub fn xdg() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("polyglot-xdg")
}

/// One runtime for the test binary, on the warmed cache.
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        Runtime::new(RuntimeOptions {
            cache_dir: Some(xdg().join("sluice/wasm")),
            ..RuntimeOptions::default()
        })
        .unwrap()
    })
}

/// Has the host compile `component` into the cache (for the engine with fuel
/// metering too, if `fuel`). Cheap when already cached.
pub fn warm(component: &Path, fuel: bool) {
    static DONE: Mutex<Option<HashSet<(PathBuf, bool)>>> = Mutex::new(None);
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if !done
        .get_or_insert_with(HashSet::new)
        .insert((component.to_path_buf(), fuel))
    {
        return;
    }
    let mut cmd = Command::new(crate::common::host_bin());
    cmd.args(["plugin", "run"])
        .arg(component)
        .arg("--wasi")
        .env("XDG_CACHE_HOME", xdg())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if fuel {
        cmd.args(["--fuel", "1000000"]);
    }
    // Loading compiles and caches before `init` runs, so a config the plugin refuses (none is
    // given here) does not matter.
    let _ = cmd.status().unwrap();
}
