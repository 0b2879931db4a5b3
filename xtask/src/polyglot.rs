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
}

/// The non-Rust plugins. Each directory holds `app.py` (Python), `plugin.js` (JavaScript) or
/// a Go package (`abi.go` and the transform).
/// A `plugin.js` with its own `export function process` is a whole module; otherwise it is
/// bundled with the shared library (`guest-plugins/transforms-js`, as Python plugins import
/// `guest-plugins/transforms-py`).
pub const PLUGINS: &[Polyglot] = &[
    plugin("guest-plugins/keyword-filter-py", Lang::Python, DIST),
    plugin("guest-plugins/enrich-py", Lang::Python, DIST),
    plugin("guest-plugins/keyword-filter-js", Lang::JavaScript, DIST),
    plugin("guest-plugins/enrich-js", Lang::JavaScript, DIST),
    plugin("guest-plugins/keyword-filter-go", Lang::Go, DIST),
    plugin("tests/plugins/hostile-js", Lang::JavaScript, TEST_DIST),
];

const DIST: &str = "guest-plugins/dist";
const TEST_DIST: &str = "tests/plugins/dist";

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
        Lang::Go => dir,
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
        Lang::Go => build_go(root, &src, &work, &out)?,
    }
    std::fs::write(&stamp_file, stamp)?;
    Ok(out)
}

/// Go: the package's sources and the generated table in `work`, built as a wasip1 reactor
/// (`-buildmode=c-shared`), then made a component: WIT metadata for the world `transform`,
/// and the preview1 adapter for what the Go runtime imports (so it needs `grants.wasi`). The
/// adapter gets its memory from a static arena in the Go module (see abi.go) through an
/// allocator appended to the module here.
fn build_go(root: &Path, src: &Path, work: &Path, out: &Path) -> anyhow::Result<()> {
    go_version_ok()?;
    for entry in std::fs::read_dir(src)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".go") || name == "go.mod" {
            std::fs::copy(&path, work.join(name))?;
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
    let arena = go_arena_address(&core)?;
    let mut module = add_adapter_realloc(&std::fs::read(&core)?, arena, GO_ADAPTER_ARENA)?;
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve.push_dir(root.join("wit"))?;
    let world = resolve.select_world(&[pkg], Some("transform"))?;
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .validate(true)
        .encode()
        .context("making a component of the Go module")?;
    std::fs::write(out, component)?;
    Ok(())
}

/// The size of the Go plugin's `adapterArena` (abi.go).
const GO_ADAPTER_ARENA: u32 = 256 << 10;

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

/// The address of the Go plugin's `adapterArena`: the module is run once under Node's WASI
/// (as a plain preview1 reactor) and asked through its `sluice_adapter_arena` export. A Go
/// global's address is fixed when the module is linked, so it holds in the component too.
fn go_arena_address(core: &Path) -> anyhow::Result<u32> {
    let script = r#"
const { WASI } = require('node:wasi');
const fs = require('node:fs');
const wasi = new WASI({ version: 'preview1', args: [], env: {} });
const mod = new WebAssembly.Module(fs.readFileSync(process.argv[1]));
const inst = new WebAssembly.Instance(mod, { ...wasi.getImportObject(), 'sluice:transform/log@0.1.0': { log() {} } });
wasi.initialize(inst);
process.stdout.write(String(inst.exports.sluice_adapter_arena()));
"#;
    let out = Command::new("node")
        .args(["--no-warnings", "-e", script])
        .arg(core)
        .output()
        .context("running node to read the Go module's arena address")?;
    if !out.status.success() {
        bail!(
            "reading the Go module's arena address: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

fn read_leb(b: &[u8], pos: &mut usize) -> anyhow::Result<u32> {
    let (mut value, mut shift) = (0u64, 0);
    loop {
        let byte = *b.get(*pos).context("truncated LEB128")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(u32::try_from(value)?);
        }
        shift += 7;
    }
}

fn write_leb(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn write_sleb(out: &mut Vec<u8>, v: i32) {
    let mut v = i64::from(v);
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        let done = (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0);
        out.push(if done { byte } else { byte | 0x80 });
        if done {
            return;
        }
    }
}

/// A vector section's entries: the count, and the bytes after it.
fn vec_section(body: &[u8]) -> anyhow::Result<(u32, &[u8])> {
    let mut pos = 0;
    let n = read_leb(body, &mut pos)?;
    Ok((n, &body[pos..]))
}

fn rebuild_vec(count: u32, entries: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_leb(&mut out, count + 1);
    out.extend_from_slice(entries);
    out.extend_from_slice(extra);
    out
}

/// Appends `cabi_realloc_adapter(old, old_size, align, size) -> ptr` to the module: a bump
/// allocator over `[arena, arena + len)` whose first word holds the next free address. It never
/// reallocates (a non-null `old` traps) and traps when the arena is full.
fn add_adapter_realloc(module: &[u8], arena: u32, len: u32) -> anyhow::Result<Vec<u8>> {
    const I32: u8 = 0x7f;
    let mut sections: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut pos = 8;
    while pos < module.len() {
        let id = module[pos];
        pos += 1;
        let size = read_leb(module, &mut pos)? as usize;
        sections.push((id, module[pos..pos + size].to_vec()));
        pos += size;
    }
    fn body(sections: &[(u8, Vec<u8>)], id: u8) -> Option<Vec<u8>> {
        sections
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, b)| b.clone())
    }
    fn replace(sections: &mut [(u8, Vec<u8>)], id: u8, new: Vec<u8>) {
        if let Some(s) = sections.iter_mut().find(|(i, _)| *i == id) {
            s.1 = new;
        }
    }
    // The function type (i32 i32 i32 i32) -> i32, added if missing.
    let types = body(&sections, 1).context("no type section")?;
    let (type_count, mut rest) = vec_section(&types)?;
    let mut type_index = None;
    for i in 0..type_count {
        if rest.first() != Some(&0x60) {
            bail!("unexpected type form in the Go module");
        }
        let mut p = 1;
        let params = read_leb(rest, &mut p)? as usize;
        let param_types = &rest[p..p + params];
        p += params;
        let results = read_leb(rest, &mut p)? as usize;
        let result_types = &rest[p..p + results];
        p += results;
        if param_types == [I32; 4] && result_types == [I32] {
            type_index = Some(i);
        }
        rest = &rest[p..];
    }
    let sig = [0x60, 4, I32, I32, I32, I32, 1, I32];
    let type_index = match type_index {
        Some(i) => i,
        None => {
            let (n, entries) = vec_section(&types)?;
            let rebuilt = rebuild_vec(n, entries, &sig);
            replace(&mut sections, 1, rebuilt);
            type_count
        }
    };
    // The new function's index: after every imported and defined function.
    let mut imported = 0;
    if let Some(imports) = body(&sections, 2) {
        let (n, mut rest) = vec_section(&imports)?;
        for _ in 0..n {
            let mut p = 0;
            for _ in 0..2 {
                let l = read_leb(rest, &mut p)? as usize;
                p += l;
            }
            let kind = rest[p];
            p += 1;
            match kind {
                0x00 => {
                    read_leb(rest, &mut p)?;
                    imported += 1;
                }
                0x01 => {
                    p += 1;
                    let flags = read_leb(rest, &mut p)?;
                    read_leb(rest, &mut p)?;
                    if flags & 1 != 0 {
                        read_leb(rest, &mut p)?;
                    }
                }
                0x02 => {
                    let flags = read_leb(rest, &mut p)?;
                    read_leb(rest, &mut p)?;
                    if flags & 1 != 0 {
                        read_leb(rest, &mut p)?;
                    }
                }
                0x03 => p += 2,
                other => bail!("unexpected import kind {other} in the Go module"),
            }
            rest = &rest[p..];
        }
    }
    let functions = body(&sections, 3).context("no function section")?;
    let (defined, entries) = vec_section(&functions)?;
    let mut idx = Vec::new();
    write_leb(&mut idx, type_index);
    let rebuilt = rebuild_vec(defined, entries, &idx);
    replace(&mut sections, 3, rebuilt);
    let func_index = imported + defined;

    // The body: locals (1 i32 `p`), then the bump allocation.
    let arena = i32::try_from(arena)?;
    let end = arena
        .checked_add(i32::try_from(len)?)
        .context("arena address overflows")?;
    let mut code = vec![1, 1, I32]; // one local group: 1 x i32 (local 4)
    let c = &mut code;
    let i32_const = |c: &mut Vec<u8>, v: i32| {
        c.push(0x41);
        write_sleb(c, v);
    };
    // if old != 0 { unreachable }
    c.extend([0x20, 0, 0x04, 0x40, 0x00, 0x0b]);
    // p = load(arena); if p == 0 { p = arena + 8 }
    i32_const(c, arena);
    c.extend([0x28, 2, 0, 0x22, 4, 0x45, 0x04, 0x40]);
    i32_const(c, arena + 8);
    c.extend([0x21, 4, 0x0b]);
    // p = (p + align - 1) & -align
    c.extend([0x20, 4, 0x20, 2, 0x6a]);
    i32_const(c, 1);
    c.push(0x6b);
    i32_const(c, 0);
    c.extend([0x20, 2, 0x6b, 0x71, 0x21, 4]);
    // if p + size > end { unreachable }
    c.extend([0x20, 4, 0x20, 3, 0x6a]);
    i32_const(c, end);
    c.extend([0x4b, 0x04, 0x40, 0x00, 0x0b]);
    // store(arena, p + size); p
    i32_const(c, arena);
    c.extend([0x20, 4, 0x20, 3, 0x6a, 0x36, 2, 0, 0x20, 4, 0x0b]);
    let mut entry = Vec::new();
    write_leb(&mut entry, code.len() as u32);
    entry.extend(code);
    let codes = body(&sections, 10).context("no code section")?;
    let (n, entries) = vec_section(&codes)?;
    let rebuilt = rebuild_vec(n, entries, &entry);
    replace(&mut sections, 10, rebuilt);

    let exports = body(&sections, 7).context("no export section")?;
    let (n, entries) = vec_section(&exports)?;
    let name = b"cabi_realloc_adapter";
    let mut export = Vec::new();
    write_leb(&mut export, name.len() as u32);
    export.extend_from_slice(name);
    export.push(0x00);
    write_leb(&mut export, func_index);
    let rebuilt = rebuild_vec(n, entries, &export);
    replace(&mut sections, 7, rebuilt);

    let mut out = module[..8].to_vec();
    for (id, body) in sections {
        out.push(id);
        write_leb(&mut out, body.len() as u32);
        out.extend(body);
    }
    Ok(out)
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
