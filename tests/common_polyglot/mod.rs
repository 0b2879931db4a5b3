//! Shared by the polyglot tests: one runtime whose compiled-artifact cache the release host
//! fills. The test profile builds Cranelift without optimizations, and with it compiling a
//! 13-18 MB Python or JavaScript component takes minutes; the release host takes seconds, and
//! its artifacts load into the test's engine (same wasmtime version and settings).
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use sluice::transform::{Runtime, RuntimeOptions};

use crate::common::root;

/// Stands for `$XDG_CACHE_HOME` when the release host warms the cache.
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

/// The release build of the `host` binary (built once per test binary).
pub fn release_host() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(&cargo)
            .current_dir(root())
            .args([
                "build",
                "--quiet",
                "--release",
                "-p",
                "sluice-host",
                "--bin",
                "host",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "building the release host failed");
        let out = Command::new(&cargo)
            .current_dir(root())
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .unwrap();
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        PathBuf::from(meta["target_directory"].as_str().unwrap()).join("release/host")
    })
    .clone()
}

/// Has the release host compile `component` into the cache (for the engine with fuel
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
    let mut cmd = Command::new(release_host());
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
