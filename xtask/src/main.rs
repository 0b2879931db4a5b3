//! `cargo xtask <task>`: the project's build steps in one place.
//!
//! Rust plugins are compiled for `wasm32-unknown-unknown` (so they import nothing but the
//! Sluice WIT interfaces; the `wasm32-wasip2` target would pull in WASI) and then wrapped into
//! components with `wit-component`, which reads the WIT that `wit-bindgen` embedded.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

mod polyglot;

/// Pure plugins: they import nothing but the Sluice interfaces.
const TARGET: &str = "wasm32-unknown-unknown";
/// For test plugins that must import WASI (the sandbox tests).
const WASI_TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";
/// Plugin crates, their target, and where their components go (relative to the workspace).
const PLUGINS: &[(&str, &str, &str)] = &[
    ("keyword-filter", TARGET, "guest-plugins/dist"),
    ("field-prune", TARGET, "guest-plugins/dist"),
    ("enrich", TARGET, "guest-plugins/dist"),
    ("hostile", TARGET, "tests/plugins/dist"),
    ("wasi-probe", WASI_TARGET, "tests/plugins/dist"),
];

const USAGE: &str = "usage: cargo xtask <plugins|demo|test|bench> [args passed on]
  plugins  build every plugin component into guest-plugins/dist (and test plugins)
  demo     build the Rust plugins pipeline.toml uses and the host (without the GCP
           sinks, which it does not use), and run it; `demo FILE` runs FILE instead
  test     build the plugins, start the local Kafka broker (compose/kafka.sh) unless
           KAFKA_BOOTSTRAP is set, and run the whole test suite; the local services it
           started (the tests start OpenSearch and the GCP emulators) are stopped again
  bench    build the plugins and run benchmarks by name: `chain` and `polyglot` (cargo bench),
           `kafka`, `es`, `startup`, `gcs`, `metrics`, `scaleout` (bench/NAME.sh, which start
           the local services they need); no name runs those behind the README's performance
           table:
           chain, polyglot, kafka, es, startup";

/// The benchmarks behind the README's performance table, in the order they run.
const BENCHES: &[&str] = &["chain", "polyglot", "kafka", "es", "startup"];

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match task.as_str() {
        "plugins" => build_plugins(&root, Plugins::All),
        "demo" => {
            build_plugins(&root, Plugins::Demo)?;
            let pipeline = rest.first().map(String::as_str).unwrap_or("pipeline.toml");
            let mut args = vec!["run", "--release", "--quiet", "-p", "sluice-host"];
            // The bundled pipeline has no GCS or BigQuery sink: leaving feature `gcp` out
            // spares a first run about 90 of the host's 375 crates.
            if rest.is_empty() {
                args.push("--no-default-features");
            }
            args.extend(["--", "run", pipeline]);
            cargo(&args)
        }
        "test" => {
            build_plugins(&root, Plugins::All)?;
            // Leave the machine as it was: the local services this run starts (the broker
            // here, the others from the tests) are stopped again afterwards.
            let stopped: Vec<&str> = SERVICES
                .iter()
                .copied()
                .filter(|s| !service_running(s))
                .collect();
            let bootstrap = ensure_kafka()?;
            let mut a = vec!["test", "--workspace"];
            a.extend(rest.iter().map(String::as_str));
            let result = cargo_env(&a, &[("KAFKA_BOOTSTRAP", &bootstrap)]);
            for name in stopped {
                if service_running(name) {
                    service(name, &["stop"])?;
                }
            }
            result
        }
        "bench" => {
            build_plugins(&root, Plugins::All)?;
            let names: Vec<&str> = if rest.is_empty() {
                BENCHES.to_vec()
            } else {
                rest.iter().map(String::as_str).collect()
            };
            for name in names {
                match name {
                    "chain" | "polyglot" => {
                        cargo(&["bench", "-p", "sluice-host", "--bench", name])?
                    }
                    "kafka" | "es" | "startup" | "gcs" | "metrics" | "scaleout" => {
                        let script = format!("bench/{name}.sh");
                        let status = Command::new("bash").arg(&script).status()?;
                        if !status.success() {
                            bail!("{script} failed ({status})");
                        }
                    }
                    _ => bail!("no benchmark `{name}`\n{USAGE}"),
                }
            }
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

/// The local services (`compose/NAME.sh`) the test suite may start.
const SERVICES: &[&str] = &["kafka", "elasticsearch", "gcs", "bigquery"];

fn service_running(name: &str) -> bool {
    Command::new("bash")
        .arg(format!("compose/{name}.sh"))
        .arg("status")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Kafka tests need a broker: unless `KAFKA_BOOTSTRAP` names one, start the local broker
/// (`compose/kafka.sh start`, idempotent). Returns the broker's address.
fn ensure_kafka() -> anyhow::Result<String> {
    if let Ok(b) = std::env::var("KAFKA_BOOTSTRAP") {
        return Ok(b);
    }
    service("kafka", &["start"])?;
    let out = Command::new("bash")
        .args(["compose/kafka.sh", "env"])
        .output()
        .context("running compose/kafka.sh env")?;
    let env = String::from_utf8(out.stdout)?;
    let bootstrap = env
        .lines()
        .find_map(|l| l.strip_prefix("KAFKA_BOOTSTRAP="))
        .context("compose/kafka.sh env printed no KAFKA_BOOTSTRAP")?;
    Ok(bootstrap.trim().to_string())
}

fn service(name: &str, args: &[&str]) -> anyhow::Result<()> {
    let script = format!("compose/{name}.sh");
    let status = Command::new("bash")
        .arg(&script)
        .args(args)
        .status()
        .with_context(|| format!("running {script}"))?;
    if !status.success() {
        bail!("{script} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    // `cargo run` says where the manifest is at run time. The path compiled in is only a
    // fallback: checkouts that share a target dir also share the `xtask` binary.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    cargo_env(args, &[])
}

fn cargo_env(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Which plugins a task needs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plugins {
    /// The Rust plugins of `guest-plugins/dist` only: what pipeline.toml runs. A newcomer's
    /// first `cargo xtask demo` then installs no Python, JavaScript or Go toolchain.
    Demo,
    /// Every plugin, the test plugins and the other languages' too.
    All,
}

fn build_plugins(root: &Path, which: Plugins) -> anyhow::Result<()> {
    let target_dir = target_dir()?;
    let plugins: Vec<_> = PLUGINS
        .iter()
        .filter(|p| which == Plugins::All || p.2 == "guest-plugins/dist")
        .collect();
    for target in [TARGET, WASI_TARGET] {
        let crates: Vec<&str> = plugins
            .iter()
            .filter(|p| p.1 == target)
            .map(|p| p.0)
            .collect();
        if crates.is_empty() {
            continue;
        }
        ensure_target(target)?;
        let mut args = vec!["build", "--quiet", "--target", target, "--profile", PROFILE];
        for krate in crates {
            args.extend(["-p", krate]);
        }
        cargo(&args)?;
    }
    for (krate, target, dist) in plugins {
        let file = krate.replace('-', "_");
        let module = target_dir
            .join(target)
            .join(PROFILE)
            .join(format!("{file}.wasm"));
        let bytes =
            std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
        // wasm32-wasip2 output is a component already; core modules get wrapped (their WIT
        // metadata is in them, from wit-bindgen).
        let component = if *target == WASI_TARGET {
            bytes
        } else {
            polyglot::componentize(root, &bytes)
                .with_context(|| format!("making a component of {}", module.display()))?
        };
        let out_dir = root.join(dist);
        std::fs::create_dir_all(&out_dir)?;
        let out = out_dir.join(format!("{file}.wasm"));
        // Rewrite only on change, so the host's compiled-artifact cache stays warm.
        if std::fs::read(&out).ok().as_deref() != Some(&component[..]) {
            std::fs::write(&out, &component)?;
        }
        eprintln!(
            "  plugin {:<16} {:>8} bytes  {}",
            krate,
            component.len(),
            out.strip_prefix(root).unwrap_or(&out).display()
        );
    }
    if which == Plugins::All {
        polyglot::build(root, &target_dir.join("polyglot"))?;
    }
    Ok(())
}

/// Installs the wasm target with rustup on a fresh machine.
fn ensure_target(target: &str) -> anyhow::Result<()> {
    let out = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", target])
        .output()?;
    let libdir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && Path::new(&libdir).is_dir() {
        return Ok(());
    }
    eprintln!("installing the {target} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", target])
        .status()?;
    if !status.success() {
        bail!("rustup target add {target} failed");
    }
    Ok(())
}

fn target_dir() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let dir = meta["target_directory"]
        .as_str()
        .context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(dir))
}
