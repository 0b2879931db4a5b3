//! Shared helpers for the integration tests: real plugins, real host, temp dirs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;

use sluice::transform::{Header, Plugin, PluginSpec, Record, Runtime, RuntimeOptions};
use tweetgen::GenerateOptions;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    // `cargo test` sets the package's CARGO_PKG_*, CARGO_MANIFEST_* ... for this process; build
    // scripts that watch them (ring's) would otherwise rebuild half the tree between a plain
    // `cargo build` and this one.
    let per_package = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
    ];
    for (key, _) in std::env::vars() {
        if per_package.iter().any(|p| key.starts_with(p)) {
            c.env_remove(key);
        }
    }
    c
}

/// Builds every plugin component once per test binary (`cargo xtask plugins`, quick when
/// up to date) so `cargo test` alone works from a clean checkout.
pub fn build_plugins() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = cargo()
            .args(["xtask", "plugins"])
            .status()
            .expect("running cargo xtask plugins");
        assert!(status.success(), "cargo xtask plugins failed");
    });
}

/// Path of a built plugin component, e.g. `plugin("keyword_filter")`.
pub fn plugin(name: &str) -> PathBuf {
    build_plugins();
    let dist = match name {
        "hostile" | "hostile_js" | "wasi_probe" => "tests/plugins/dist",
        _ => "guest-plugins/dist",
    };
    root().join(dist).join(format!("{name}.wasm"))
}

/// A file sink `out.ndjson` and a file dead letter `dead.ndjson`, beside the pipeline file.
pub const FILE_OUT_AND_DEAD: &str = "[sinks.out]\ntype = \"file\"\npath = \"out.ndjson\"\n\
    [dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n";

/// A `[transforms.slow]` table: the hostile plugin spinning into its `timeout` on every batch
/// that holds a record containing `stall`, so the worker running it falls behind the others.
pub fn stalling_transform(timeout: &str) -> String {
    format!(
        "[transforms.slow]\nplugin = \"{}\"\ntimeout = \"{timeout}\"\n\
         config = {{ mode = \"loop-on\", needle = \"stall\" }}\n",
        plugin("hostile").display()
    )
}

/// Panics with the process's stderr unless it exited successfully.
pub fn assert_success(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "process ended with {}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Path of the `host` binary, built once per test binary.
pub fn host_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = cargo()
            .args(["build", "--quiet", "-p", "sluice-host", "--bin", "host"])
            .status()
            .unwrap();
        assert!(status.success(), "building the host failed");
        let out = cargo()
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .unwrap();
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        PathBuf::from(meta["target_directory"].as_str().unwrap())
            .join("debug")
            .join("host")
    })
    .clone()
}

/// A runtime with its own artifact cache under `dir`.
pub fn runtime(dir: &Path) -> Runtime {
    Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.join("cache")),
        ..RuntimeOptions::default()
    })
    .unwrap()
}

pub fn spec(name: &str, config: &[(&str, &str)]) -> PluginSpec {
    let mut s = PluginSpec::new(name, plugin(name));
    s.config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s
}

pub fn load(rt: &Runtime, spec: PluginSpec) -> std::sync::Arc<Plugin> {
    Plugin::load(rt, spec).unwrap()
}

pub fn record(value: &[u8]) -> Record {
    Record {
        key: Some(b"k".to_vec()),
        value: value.to_vec(),
        headers: vec![Header {
            key: "h".into(),
            value: b"v".to_vec(),
        }],
        timestamp: Some(1_700_000_000_000),
    }
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = root().join("guest-plugins/transforms/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `start_time` for every `generate` source whose tweets a test predicts with its own
/// generator: an hour before this test binary first asked, fixed for its run, so the host and
/// the test generate the same ids and the tweets are recent whatever the date.
pub fn generate_start() -> &'static str {
    static START: OnceLock<String> = OnceLock::new();
    START.get_or_init(|| {
        (chrono::Utc::now() - chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    })
}

/// Generator options with `seed` and [`generate_start`], the rest default.
pub fn generate_options(seed: u64) -> GenerateOptions {
    GenerateOptions {
        seed,
        start_time: generate_start().to_owned(),
        ..GenerateOptions::default()
    }
}

/// `name-<pid>-<nanos>`: a name (topic, group, index) no other test or earlier run uses;
/// lowercase when `name` is.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

/// Tweet id of a JSON document (v1.1 `id_str` or v2 `data.id`).
pub fn tweet_id(doc: &serde_json::Value) -> Option<String> {
    doc["id_str"]
        .as_str()
        .or(doc["data"]["id"].as_str())
        .map(str::to_owned)
}

/// Polls `ready` every `every` until it holds; panics with `what` after `limit`.
pub fn wait_until(
    what: &str,
    limit: std::time::Duration,
    every: std::time::Duration,
    mut ready: impl FnMut() -> bool,
) {
    let deadline = std::time::Instant::now() + limit;
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what} ({limit:?})"
        );
        std::thread::sleep(every);
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The broker under test: `KAFKA_BOOTSTRAP`, default 127.0.0.1:9092 (where `cargo xtask test`
/// starts one).
pub fn kafka_bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// `host run PIPELINE --json-summary --quiet` in the repository root, with
/// `RUST_LOG=warn,sluice=info`; the plugins are built first.
pub fn host_run(pipeline: &Path) -> Command {
    build_plugins();
    let mut c = Command::new(host_bin());
    c.args([
        "run",
        pipeline.to_str().unwrap(),
        "--json-summary",
        "--quiet",
    ])
    .current_dir(root())
    .env("RUST_LOG", "warn,sluice=info");
    c
}

/// Sends SIGINT (Ctrl-C) and waits up to `limit` for the process to end.
pub fn interrupt(child: &mut std::process::Child, limit: std::time::Duration) -> ExitStatus {
    stop_with(child, "INT", limit)
}

/// Sends `signal` (`"TERM"`, `"INT"`) and waits up to `limit` for the process to end.
pub fn stop_with(
    child: &mut std::process::Child,
    signal: &str,
    limit: std::time::Duration,
) -> ExitStatus {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} failed");
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "host did not stop on SIG{signal} within {limit:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves none running.
pub struct KillOnDrop(pub Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub mod fleet;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod sandbox;
