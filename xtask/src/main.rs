//! `cargo xtask <task>`: the project's build steps in one place.
//!
//! Rust plugins are compiled for `wasm32-unknown-unknown` (so they import nothing but the
//! Sluice WIT interfaces; the `wasm32-wasip2` target would pull in WASI) and then wrapped into
//! components with `wit-component`, which reads the WIT that `wit-bindgen` embedded.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const TARGET: &str = "wasm32-unknown-unknown";
const PROFILE: &str = "plugin";
/// Plugin crates and where their components go, relative to the workspace root.
const PLUGINS: &[(&str, &str)] = &[
    ("keyword-filter", "guest-plugins/dist"),
    ("field-prune", "guest-plugins/dist"),
    ("enrich", "guest-plugins/dist"),
    ("hostile", "tests/plugins/dist"),
];

const USAGE: &str = "usage: cargo xtask <plugins|demo|test|bench> [args passed on]
  plugins  build every plugin component into guest-plugins/dist (and test plugins)
  demo     build the plugins and run the example pipeline (pipeline.toml)
  test     build the plugins and run the whole test suite
  bench    build the plugins and run the benchmarks";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match task.as_str() {
        "plugins" => build_plugins(&root),
        "demo" => {
            build_plugins(&root)?;
            let pipeline = rest.first().map(String::as_str).unwrap_or("pipeline.toml");
            cargo(&[
                "run",
                "--release",
                "--quiet",
                "-p",
                "sluice-host",
                "--",
                "run",
                pipeline,
            ])
        }
        "test" => {
            build_plugins(&root)?;
            let mut a = vec!["test", "--workspace"];
            a.extend(rest.iter().map(String::as_str));
            cargo(&a)
        }
        "bench" => {
            build_plugins(&root)?;
            let mut a = vec!["bench", "-p", "sluice-host"];
            a.extend(rest.iter().map(String::as_str));
            cargo(&a)
        }
        _ => bail!("{USAGE}"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn build_plugins(root: &Path) -> anyhow::Result<()> {
    ensure_target()?;
    let mut args = vec!["build", "--quiet", "--target", TARGET, "--profile", PROFILE];
    for (krate, _) in PLUGINS {
        args.extend(["-p", krate]);
    }
    cargo(&args)?;
    let target_dir = target_dir()?;
    for (krate, dist) in PLUGINS {
        let file = krate.replace('-', "_");
        let module = target_dir
            .join(TARGET)
            .join(PROFILE)
            .join(format!("{file}.wasm"));
        let bytes =
            std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
        let component = wit_component::ComponentEncoder::default()
            .module(&bytes)
            .and_then(|e| e.validate(true).encode())
            .with_context(|| format!("making a component of {}", module.display()))?;
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
    Ok(())
}

/// Installs the wasm target with rustup on a fresh machine.
fn ensure_target() -> anyhow::Result<()> {
    let out = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()?;
    let libdir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && Path::new(&libdir).is_dir() {
        return Ok(());
    }
    eprintln!("installing the {TARGET} target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()?;
    if !status.success() {
        bail!("rustup target add {TARGET} failed");
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
