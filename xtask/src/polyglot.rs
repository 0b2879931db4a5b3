//! Plugins written in other languages than Rust, built from source by `cargo xtask plugins`:
//! Python with componentize-py and JavaScript with jco (componentize-js).
//!
//! The toolchains come from the package registries (PyPI, npm) into `~/.cache/sluice/polyglot`
//! (`SLUICE_CACHE` moves `~/.cache/sluice`), once: a later run finds them and installs nothing.
//! A component is rebuilt only when one of its inputs changed (sources, WIT, toolchain
//! version), because a cold build takes 10 to 25 seconds.
//!
//! Every language reuses one table that Rust computes: the non-ASCII characters for which
//! `char::is_alphanumeric` holds. The keyword matcher's whole-word rule depends on it, so
//! generating it here keeps every implementation on the Rust toolchain's Unicode version.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const COMPONENTIZE_PY: &str = "0.25.1";
const JCO: &str = "1.35.0";

/// A plugin in another language: its source directory (under the workspace), the language,
/// and where the component goes.
pub struct Polyglot {
    pub dir: &'static str,
    pub lang: Lang,
    pub dist: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lang {
    Python,
    JavaScript,
}

/// The non-Rust plugins. Each directory holds `app.py` (Python) or `plugin.js` (JavaScript);
/// the shared libraries are in `guest-plugins/transforms-py` and `guest-plugins/transforms-js`.
pub const PLUGINS: &[Polyglot] = &[
    Polyglot {
        dir: "guest-plugins/keyword-filter-py",
        lang: Lang::Python,
        dist: "guest-plugins/dist",
    },
    Polyglot {
        dir: "guest-plugins/enrich-py",
        lang: Lang::Python,
        dist: "guest-plugins/dist",
    },
    Polyglot {
        dir: "guest-plugins/keyword-filter-js",
        lang: Lang::JavaScript,
        dist: "guest-plugins/dist",
    },
    Polyglot {
        dir: "guest-plugins/enrich-js",
        lang: Lang::JavaScript,
        dist: "guest-plugins/dist",
    },
];

const PY_LIB: &str = "guest-plugins/transforms-py";
const JS_LIB: &str = "guest-plugins/transforms-js";

/// Builds every non-Rust plugin into its dist directory.
pub fn build(root: &Path, build_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(build_dir)?;
    let tools = Tools::new()?;
    for plugin in PLUGINS {
        let out = build_one(root, build_dir, &tools, plugin.dir, plugin.lang)?;
        let dist = root.join(plugin.dist);
        std::fs::create_dir_all(&dist)?;
        let target = dist.join(out.file_name().expect("a file"));
        copy_if_changed(&out, &target)?;
        eprintln!(
            "  plugin {:<22} {:>8} bytes  {}",
            plugin.dir.rsplit('/').next().unwrap_or(plugin.dir),
            std::fs::metadata(&target)?.len(),
            target.strip_prefix(root).unwrap_or(&target).display()
        );
    }
    Ok(())
}

/// The component file name for a plugin directory: `keyword-filter-py` -> `keyword_filter_py.wasm`.
pub fn component_name(dir: &str) -> String {
    format!(
        "{}.wasm",
        dir.rsplit('/').next().unwrap_or(dir).replace('-', "_")
    )
}

/// Builds the plugin in `dir` (absolute, or relative to `root`) and returns the component's
/// path inside `build_dir`. Rebuilds only when an input changed.
pub fn build_one(
    root: &Path,
    build_dir: &Path,
    tools: &Tools,
    dir: &str,
    lang: Lang,
) -> anyhow::Result<PathBuf> {
    let src = root.join(dir);
    let name = component_name(dir);
    let work = build_dir.join(name.trim_end_matches(".wasm"));
    std::fs::create_dir_all(&work)?;
    let out = work.join(&name);
    let lib = root.join(match lang {
        Lang::Python => PY_LIB,
        Lang::JavaScript => JS_LIB,
    });
    let stamp = inputs_stamp(&[&src, &lib, &root.join("wit")], lang)?;
    let stamp_file = work.join("inputs.stamp");
    if out.is_file() && std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(&stamp) {
        return Ok(out);
    }
    match lang {
        Lang::Python => {
            std::fs::write(work.join("sluice_alnum.py"), python_table())?;
            let status = Command::new(tools.componentize_py()?)
                .arg("-d")
                .arg(root.join("wit"))
                .args(["-w", "transform", "componentize", "-p"])
                .arg(&src)
                .arg("-p")
                .arg(&lib)
                .arg("-p")
                .arg(&work)
                .args(["app", "-o"])
                .arg(&out)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .status()
                .context("running componentize-py")?;
            if !status.success() {
                bail!("componentize-py failed for {dir} ({status})");
            }
        }
        Lang::JavaScript => {
            let bundle = work.join("bundle.js");
            std::fs::write(&bundle, js_bundle(&lib, &src)?)?;
            let (node, args) = tools.jco()?;
            let status = Command::new(node)
                .args(args)
                .arg("componentize")
                .arg(&bundle)
                .arg("--wit")
                .arg(root.join("wit"))
                .args(["-n", "transform", "-d", "all", "-o"])
                .arg(&out)
                .current_dir(&work)
                .status()
                .context("running jco componentize")?;
            if !status.success() {
                bail!("jco componentize failed for {dir} ({status})");
            }
        }
    }
    std::fs::write(&stamp_file, stamp)?;
    Ok(out)
}

/// The one JavaScript module jco componentizes: the generated table, the library, the glue and
/// the plugin's entry, with the library's `export`s dropped (only the world's are kept).
fn js_bundle(lib: &Path, src: &Path) -> anyhow::Result<String> {
    let read = |p: PathBuf| std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()));
    let library: String = read(lib.join("transforms.js"))?
        .lines()
        .map(|l| l.strip_prefix("export ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(format!(
        "// Generated by cargo xtask plugins.\n{}\n{library}\n{}\n{}",
        js_table(),
        read(lib.join("plugin.js"))?,
        read(src.join("plugin.js"))?
    ))
}

/// The non-ASCII alphanumeric characters, as sorted half-open ranges `[lo, hi)` flattened.
fn alnum_ranges() -> Vec<u32> {
    let mut flat: Vec<u32> = Vec::new();
    for cp in 0x80..=0x10FFFF_u32 {
        let Some(c) = char::from_u32(cp) else {
            continue;
        };
        if !c.is_alphanumeric() {
            continue;
        }
        match flat.last_mut() {
            Some(end) if *end == cp => *end = cp + 1,
            _ => flat.extend([cp, cp + 1]),
        }
    }
    flat
}

fn joined(values: &[u32]) -> String {
    values
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn python_table() -> String {
    format!(
        "# Generated by cargo xtask plugins from Rust's char::is_alphanumeric.\nALNUM = [{}]\n",
        joined(&alnum_ranges())
    )
}

fn js_table() -> String {
    format!("const ALNUM = [{}];", joined(&alnum_ranges()))
}

/// A fingerprint of everything a build reads: the files under `dirs`, the toolchain versions
/// and the character table.
fn inputs_stamp(dirs: &[&Path], lang: Lang) -> anyhow::Result<String> {
    let mut h = DefaultHasher::new();
    (COMPONENTIZE_PY, JCO, format!("{lang:?}")).hash(&mut h);
    alnum_ranges().hash(&mut h);
    for dir in dirs {
        let mut files = Vec::new();
        collect_files(dir, &mut files, true)?;
        files.sort();
        for f in files {
            f.strip_prefix(dir).unwrap_or(&f).hash(&mut h);
            std::fs::read(&f)?.hash(&mut h);
        }
    }
    Ok(format!("{:016x}", h.finish()))
}

/// The files under `dir`; with `sources_only`, caches and dependencies are left out.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>, sources_only: bool) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let skipped = name == "__pycache__" || name == "node_modules" || name.starts_with('.');
        if sources_only && skipped {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, out, sources_only)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn copy_if_changed(from: &Path, to: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(from)?;
    // Rewrite only on change, so the host's compiled-artifact cache stays warm.
    if std::fs::read(to).ok().as_deref() != Some(&bytes[..]) {
        std::fs::write(to, &bytes)?;
    }
    Ok(())
}

/// The toolchains, installed on first use under the cache directory.
pub struct Tools {
    dir: PathBuf,
}

impl Tools {
    pub fn new() -> anyhow::Result<Tools> {
        let base = match std::env::var_os("SLUICE_CACHE") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
                .join(".cache/sluice"),
        };
        let dir = base.join("polyglot");
        std::fs::create_dir_all(&dir)?;
        Ok(Tools { dir })
    }

    /// componentize-py in a virtualenv of its own.
    pub fn componentize_py(&self) -> anyhow::Result<PathBuf> {
        let venv = self.dir.join("py");
        let bin = venv.join("bin/componentize-py");
        let installed = Command::new(&bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(COMPONENTIZE_PY))
            .unwrap_or(false);
        if !installed {
            eprintln!(
                "installing componentize-py {COMPONENTIZE_PY} from PyPI into {}",
                venv.display()
            );
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
            run(Command::new(venv.join("bin/pip")).args([
                "install",
                "--quiet",
                &format!("componentize-py=={COMPONENTIZE_PY}"),
            ]))?;
        }
        Ok(bin)
    }

    /// `node` and the arguments that run jco with its WASI shim given the file system.
    pub fn jco(&self) -> anyhow::Result<(&'static str, Vec<PathBuf>)> {
        let prefix = self.dir.join("npm");
        let jco = prefix.join("node_modules/@bytecodealliance/jco");
        let version = std::fs::read_to_string(jco.join("package.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["version"].as_str().map(str::to_string));
        if version.as_deref() != Some(JCO) {
            eprintln!(
                "installing @bytecodealliance/jco {JCO} from npm into {}",
                prefix.display()
            );
            std::fs::create_dir_all(&prefix)?;
            run(Command::new("npm")
                .args(["install", "--prefix"])
                .arg(&prefix)
                .args(["--no-audit", "--no-fund", "--loglevel=error"])
                .arg(format!("@bytecodealliance/jco@{JCO}")))?;
        }
        // jco runs wasm-tools as a component on a copy of the WASI shim that preopens nothing:
        // without this it can neither read the WIT nor write the output. npm may install more
        // than one copy of the shim; open the root directory in each.
        let mut shims = Vec::new();
        collect_files(&prefix.join("node_modules"), &mut shims, false)?;
        let imports: String = shims
            .iter()
            .filter(|p| p.ends_with("preview2-shim/dist/nodejs/filesystem.js"))
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "import {{ _setPreopens as p{i} }} from '{}';\np{i}({{ '/': '/' }});\n",
                    p.display()
                )
            })
            .collect();
        if imports.is_empty() {
            bail!("no preview2-shim under {}", prefix.display());
        }
        let preopen = prefix.join("preopen.mjs");
        if std::fs::read_to_string(&preopen).ok().as_deref() != Some(&imports) {
            std::fs::write(&preopen, &imports)?;
        }
        Ok((
            "node",
            vec![PathBuf::from("--import"), preopen, jco.join("dist/jco.js")],
        ))
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed ({status})", cmd.get_program());
    }
    Ok(())
}
