//! Plugins written in other languages than Rust, built from source by `cargo xtask plugins`:
//! Python with componentize-py, JavaScript with jco (componentize-js), and Go (the machine's
//! Go >= 1.24: `GOOS=wasip1`, `//go:wasmexport`, a hand-written canonical ABI) turned into a
//! component here with the WIT metadata and the WASI preview1 reactor adapter.
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

const fn plugin(dir: &'static str, lang: Lang, dist: &'static str) -> Polyglot {
    Polyglot { dir, lang, dist }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lang {
    Python,
    JavaScript,
    Go,
    C,
}

/// The non-Rust plugins. Each directory holds `app.py` (Python), `plugin.js` (JavaScript) or
/// a Go package's own transform and `go.mod` (built with the shared Go files of
/// `guest-plugins/transforms-go`: `abi.go`, JSON, config, paths, matcher).
/// A `plugin.js` with its own `export function process` is a whole module; otherwise it is
/// bundled with the shared library (`guest-plugins/transforms-js`, as Python plugins import
/// `guest-plugins/transforms-py`).
pub const PLUGINS: &[Polyglot] = &[
    plugin("guest-plugins/keyword-filter-py", Lang::Python, DIST),
    plugin("guest-plugins/enrich-py", Lang::Python, DIST),
    plugin("guest-plugins/keyword-filter-js", Lang::JavaScript, DIST),
    plugin("guest-plugins/enrich-js", Lang::JavaScript, DIST),
    plugin("guest-plugins/keyword-filter-go", Lang::Go, DIST),
    plugin("guest-plugins/enrich-go", Lang::Go, DIST),
    plugin("guest-plugins/keyword-filter-c", Lang::C, DIST),
    plugin("tests/plugins/hostile-js", Lang::JavaScript, TEST_DIST),
];

const DIST: &str = "guest-plugins/dist";
const TEST_DIST: &str = "tests/plugins/dist";

const PY_LIB: &str = "guest-plugins/transforms-py";
const JS_LIB: &str = "guest-plugins/transforms-js";
const GO_LIB: &str = "guest-plugins/transforms-go";

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
    let wit = root.join("wit");
    let lib = root.join(match lang {
        Lang::Python => PY_LIB,
        Lang::JavaScript => JS_LIB,
        Lang::Go => GO_LIB,
        Lang::C => C_BINDINGS,
    });
    if lang == Lang::C {
        write_c_bindings(root)?;
    }
    // Go and C modules become components through sluice-componentize: its code is an input.
    let componentize = root.join("host/componentize/src");
    let mut inputs = vec![src.as_path(), lib.as_path(), wit.as_path()];
    if matches!(lang, Lang::Go | Lang::C) {
        inputs.push(&componentize);
    }
    let mut stamp = inputs_stamp(&inputs, lang)?;
    if lang == Lang::C {
        stamp = format!("{stamp} {}", c_stamp()?);
    }
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
        Lang::Go => build_go(root, &src, &work, &out)?,
        Lang::C => build_c(root, &src, &work, &out)?,
    }
    std::fs::write(&stamp_file, stamp)?;
    Ok(out)
}

/// Go: the package's sources and the generated table in `work`, built as a wasip1 reactor
/// (`-buildmode=c-shared`), then made a component by `sluice-componentize` (WIT metadata, the
/// preview1 adapter for what the Go runtime imports, so it needs `grants.wasi`, and the
/// adapter's memory from the arena abi.go declares).
fn build_go(root: &Path, src: &Path, work: &Path, out: &Path) -> anyhow::Result<()> {
    go_version_ok()?;
    // One package: the shared Go files, then the plugin's own and its go.mod. Go files left in
    // `work` by an earlier build go first (a renamed file would be compiled twice).
    for entry in std::fs::read_dir(work)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "go") {
            std::fs::remove_file(&path)?;
        }
    }
    let shared = root.join(GO_LIB);
    for dir in [shared.as_path(), src] {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".go") || (dir == src && name == "go.mod") {
                std::fs::copy(&path, work.join(name))?;
            }
        }
    }
    std::fs::write(
        work.join("alnum_gen.go"),
        format!(
            "// Generated by cargo xtask plugins from Rust's char::is_alphanumeric.\npackage main\n\nvar alnumRanges = []uint32{{{}}}\n",
            joined(&alnum_ranges())
        ),
    )?;
    let core = work.join("core.wasm");
    run(Command::new("go")
        .args(["build", "-trimpath", "-buildmode=c-shared", "-o"])
        .arg(&core)
        .arg(".")
        .current_dir(work)
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm"))?;
    let component = componentize(root, &std::fs::read(&core)?)
        .context("making a component of the Go module")?;
    std::fs::write(out, component)?;
    Ok(())
}

/// The component made of a core module built against `wit/` (Rust, Go, C), the way
/// `host plugin componentize` makes it.
pub fn componentize(root: &Path, module: &[u8]) -> anyhow::Result<Vec<u8>> {
    let wit = std::fs::read_to_string(root.join("wit/transform.wit"))?;
    sluice_componentize::componentize(module, &wit)
}

/// `go version` must say 1.24 or later (`//go:wasmexport`).
fn go_version_ok() -> anyhow::Result<()> {
    let out = Command::new("go")
        .arg("version")
        .output()
        .context("running `go version`: Go 1.24 or later is needed for the Go plugins")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let minor = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("go1."))
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    match minor {
        Some(m) if m >= 24 => Ok(()),
        _ => bail!(
            "Go 1.24 or later is needed for the Go plugins, found: {}",
            text.trim()
        ),
    }
}

/// The one JavaScript module jco componentizes: the generated table, the library, the glue and
/// the plugin's entry, with the library's `export`s dropped (only the world's are kept).
fn js_bundle(lib: &Path, src: &Path) -> anyhow::Result<String> {
    let read = |p: PathBuf| std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()));
    let entry = read(src.join("plugin.js"))?;
    if entry.contains("export function process") {
        return Ok(entry);
    }
    let library: String = read(lib.join("transforms.js"))?
        .lines()
        .map(|l| l.strip_prefix("export ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    Ok(format!(
        "// Generated by cargo xtask plugins.\n{}\n{library}\n{}\n{}",
        js_table(),
        read(lib.join("plugin.js"))?,
        entry
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

/// Where the C bindings of the world `transform` live (committed: plugin authors get them).
const C_BINDINGS: &str = "guest-plugins/c-bindings";

/// The C compiler: clang with the wasm32-wasi target and wasi-libc (Debian's clang, lld and
/// wasi-libc packages).
const CLANG: &str = "clang";

/// Writes `transform.c` and `transform.h`, generated by `wit-bindgen-c` from `wit/`, to
/// [`C_BINDINGS`], each only if its content changed. The component-type object is not made:
/// the WIT metadata is embedded when the module becomes a component.
fn write_c_bindings(root: &Path) -> anyhow::Result<()> {
    use wit_bindgen_core::{Files, wit_parser::Resolve};
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve.push_dir(root.join("wit"))?;
    let world = resolve.select_world(&[pkg], Some("transform"))?;
    let mut files = Files::default();
    let opts = wit_bindgen_c::Opts {
        no_object_file: true,
        ..Default::default()
    };
    opts.build()
        .generate(&mut resolve, world, &mut files)
        .context("generating the C bindings")?;
    let dir = root.join(C_BINDINGS);
    std::fs::create_dir_all(&dir)?;
    for (name, contents) in files.iter() {
        let path = dir.join(name);
        if std::fs::read(&path).ok().as_deref() != Some(contents) {
            std::fs::write(&path, contents)?;
        }
    }
    Ok(())
}

/// What a C build reads besides its files: the compiler's version and the generated tables.
fn c_stamp() -> anyhow::Result<String> {
    let mut h = DefaultHasher::new();
    c_tables()?.hash(&mut h);
    Ok(format!("{} {:016x}", clang_version()?, h.finish()))
}

/// The first line of `clang --version`, which also checks that clang is there.
fn clang_version() -> anyhow::Result<String> {
    let out = Command::new(CLANG).arg("--version").output().context(
        "running `clang --version`: the C plugins need clang, lld and wasi-libc \
         (Debian: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32)",
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

/// C: the plugin's `.c` files, the bindings and the generated Unicode tables, compiled by clang
/// against wasi-libc as a reactor module, then made a component. The module imports only the
/// host's `log` (no WASI), so the component gets the WIT metadata and no adapter.
fn build_c(root: &Path, src: &Path, work: &Path, out: &Path) -> anyhow::Result<()> {
    let tables = work.join("unicode_tables.c");
    std::fs::write(&tables, c_tables()?)?;
    let bindings = root.join(C_BINDINGS);
    let mut sources: Vec<PathBuf> = std::fs::read_dir(src)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    sources.retain(|p| p.extension().is_some_and(|e| e == "c"));
    sources.sort();
    let core = work.join("core.wasm");
    run(Command::new(CLANG)
        .args(C_FLAGS)
        .arg("-I")
        .arg(src)
        .arg("-I")
        .arg(&bindings)
        .args(&sources)
        .arg(bindings.join("transform.c"))
        .arg(&tables)
        .arg("-o")
        .arg(&core))?;
    let component =
        componentize(root, &std::fs::read(&core)?).context("making a component of the C module")?;
    std::fs::write(out, component)?;
    Ok(())
}

/// The flags of a C plugin's build (also in guest-plugins/keyword-filter-c/README.md).
const C_FLAGS: &[&str] = &[
    "--target=wasm32-wasi",
    "-mexec-model=reactor",
    "-O2",
    "-std=c11",
    "-Wall",
    "-Wextra",
];

/// The C plugins' Unicode tables, computed from the Rust toolchain like the Python and
/// JavaScript alnum table, so that C agrees with Rust on every code point (wasi-libc's
/// `towlower` follows an older Unicode and lacks some mappings Rust has, e.g. Ⓐ -> ⓐ):
/// `alnum_ranges` (non-ASCII `char::is_alphanumeric`), `lower_map` (the non-ASCII characters
/// whose `char::to_lowercase` is not themselves: code point, then one or two characters, 0 for
/// none), `cased_ranges` (non-ASCII characters whose lowercase or uppercase is not themselves)
/// and `debug_escaped_ranges` (non-ASCII characters that `{:?}` writes as `\u{..}`, for the
/// config errors). Ranges are sorted, half-open, flattened.
fn c_tables() -> anyhow::Result<String> {
    let mut lower = Vec::new();
    let mut cased: Vec<u32> = Vec::new();
    let mut escaped: Vec<u32> = Vec::new();
    for c in (0x80..=0x10FFFF_u32).filter_map(char::from_u32) {
        let l: Vec<u32> = c.to_lowercase().map(u32::from).collect();
        if l != [u32::from(c)] {
            if l.len() > 2 {
                bail!(
                    "the lowercase of U+{:04X} has more than two characters",
                    u32::from(c)
                );
            }
            lower.extend([u32::from(c), l[0], l.get(1).copied().unwrap_or(0)]);
        }
        let caseless = l == [u32::from(c)] && c.to_uppercase().eq([c]);
        if !caseless {
            push_range(&mut cased, u32::from(c));
        }
        if c.escape_debug().next() == Some('\\') {
            push_range(&mut escaped, u32::from(c));
        }
    }
    let alnum = alnum_ranges();
    let array = |name: &str, v: &[u32]| {
        format!(
            "const uint32_t {name}[] = {{{}}};\nconst size_t {name}_len = {};\n",
            joined(v),
            v.len()
        )
    };
    Ok(format!(
        "// Generated by cargo xtask plugins from Rust's char::is_alphanumeric, to_lowercase,\n// to_uppercase and escape_debug.\n#include \"unicode_tables.h\"\n\n{}{}{}{}",
        array("alnum_ranges", &alnum),
        array("lower_map", &lower),
        array("cased_ranges", &cased),
        array("debug_escaped_ranges", &escaped)
    ))
}

/// Adds `cp` to sorted, flattened half-open ranges, extending the last one when it touches.
fn push_range(ranges: &mut Vec<u32>, cp: u32) {
    match ranges.last_mut() {
        Some(end) if *end == cp => *end = cp + 1,
        _ => ranges.extend([cp, cp + 1]),
    }
}
