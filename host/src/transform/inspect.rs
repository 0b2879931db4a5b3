//! `host plugin inspect`: what a component is and asks for, read before anyone grants it
//! anything: the world it targets, its imports and the grant each needs, its exports, the
//! toolchain that built it, and whether it starts under the default limits.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;

use super::WIT_PACKAGE;
use super::config::Grants;
use super::imports::{self, Need};
use super::plugin::{ConfigRejected, Plugin, PluginSpec};
use super::runtime::Runtime;

#[derive(Debug, Serialize)]
pub struct Inspection {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub world: World,
    pub imports: Vec<Import>,
    pub exports: Vec<Export>,
    pub grants: GrantsNeeded,
    /// The `producers` sections of the component and the modules inside it, merged:
    /// field (`language`, `processed-by`, `sdk`) -> tool -> version.
    pub producers: BTreeMap<String, BTreeMap<String, String>>,
    pub load: Load,
}

#[derive(Debug, Serialize)]
pub struct World {
    /// The version of `sluice:transform` the component uses, if it uses the package.
    pub package_version: Option<String>,
    /// This host's package, `sluice:transform@0.1.0`.
    pub host: &'static str,
    /// It exports the functions `init` and `process`.
    pub exports_transform: bool,
    /// Built for this host's world: same package version, and the world's exports.
    pub matches: bool,
}

#[derive(Debug, Serialize)]
pub struct Import {
    pub name: String,
    pub kind: &'static str,
    /// The grant that opens it (`wasi`, `clocks`, `env`, `dirs`, `stdio`); none for the
    /// world's own imports and for what no grant allows.
    pub grant: Option<&'static str>,
    /// No grant links it: the plugin does not load.
    pub refused: bool,
    pub note: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Export {
    pub name: String,
    pub kind: &'static str,
}

/// The grants, by their names in `[transforms.NAME.grants]`.
#[derive(Debug, Serialize)]
pub struct GrantsNeeded {
    /// Without these it does not load (`wasi` is the only one there is).
    pub required: Vec<&'static str>,
    /// Each opens an import it has; without it that import sees nothing.
    pub optional: Vec<&'static str>,
}

/// The plugin compiled, linked and started (instantiation and `init` with an empty config)
/// under the default limits, or why not.
#[derive(Debug, Serialize)]
pub struct Load {
    pub ok: bool,
    /// The grants it was tried with last.
    pub grants: Vec<&'static str>,
    pub compile_ms: Option<u64>,
    pub start_ms: Option<u64>,
    /// Linear memory after start-up.
    pub memory_bytes: Option<usize>,
    pub memory_limit_bytes: usize,
    /// `init`'s answer to the empty config when it refused it (the plugin still started).
    pub config_refused: Option<String>,
    /// Why it did not start with the required grants alone (then `grants` adds what fixed it).
    pub without_optional: Option<String>,
    pub error: Option<String>,
}

/// Reads `path` and tries to start it with `runtime`.
pub fn inspect(runtime: &Runtime, path: &Path) -> anyhow::Result<Inspection> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let engine = runtime.engine(false)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let component = runtime
        .component(engine, &sha256, &bytes)
        .with_context(|| format!("{} is not a valid component", path.display()))?;
    let ty = component.component_type();
    let imports: Vec<Import> = ty
        .imports(engine)
        .map(|(name, item)| {
            let need = Need::of(name);
            Import {
                name: name.to_string(),
                kind: kind(&item.ty),
                grant: need.grant(),
                refused: need == Need::Refused,
                note: need.explain(name),
            }
        })
        .collect();
    let exports: Vec<Export> = ty
        .exports(engine)
        .map(|(name, item)| Export {
            name: name.to_string(),
            kind: kind(&item.ty),
        })
        .collect();
    let world = world(&imports, &exports);
    let grants = grants_needed(&imports);
    let producers = producers(&bytes).context("reading the producers sections")?;
    let load = try_load(runtime, path, &grants);
    Ok(Inspection {
        path: path.to_path_buf(),
        size: bytes.len() as u64,
        sha256,
        world,
        imports,
        exports,
        grants,
        producers,
        load,
    })
}

fn kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "func",
        ComponentItem::CoreFunc(_) => "core func",
        ComponentItem::Module(_) => "module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

fn world(imports: &[Import], exports: &[Export]) -> World {
    let prefix = format!("{}/", imports::package_name());
    let package_version = imports
        .iter()
        .map(|i| &i.name)
        .chain(exports.iter().map(|e| &e.name))
        .filter(|name| name.starts_with(&prefix))
        .find_map(|name| name.split_once('@').map(|(_, v)| v.to_string()));
    let exports_transform = ["init", "process"]
        .iter()
        .all(|f| exports.iter().any(|e| e.name == *f && e.kind == "func"));
    World {
        matches: exports_transform
            && package_version.as_deref() == Some(imports::package_version()),
        package_version,
        host: WIT_PACKAGE,
        exports_transform,
    }
}

fn grants_needed(imports: &[Import]) -> GrantsNeeded {
    let mut required = Vec::new();
    let mut optional = Vec::new();
    for grant in imports.iter().filter_map(|i| i.grant) {
        if !required.contains(&"wasi") {
            required.push("wasi");
        }
        if grant != "wasi" && !optional.contains(&grant) {
            optional.push(grant);
        }
    }
    optional.sort_by_key(|g| {
        ["clocks", "env", "dirs", "stdio"]
            .iter()
            .position(|o| o == g)
    });
    GrantsNeeded { required, optional }
}

/// The producers sections, of the component and of every module and component inside it.
fn producers(bytes: &[u8]) -> anyhow::Result<BTreeMap<String, BTreeMap<String, String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let wasmparser::Payload::CustomSection(section) = payload? else {
            continue;
        };
        let wasmparser::KnownCustom::Producers(reader) = section.as_known() else {
            continue;
        };
        for field in reader {
            let field = field?;
            let tools = out.entry(field.name.to_string()).or_default();
            for value in field.values {
                let value = value?;
                let versions = tools.entry(value.name.to_string()).or_default();
                // Two modules may name the same tool at different versions: keep both.
                if !versions.split(", ").any(|v| v == value.version) {
                    if !versions.is_empty() {
                        versions.push_str(", ");
                    }
                    versions.push_str(value.version);
                }
            }
        }
    }
    Ok(out)
}

/// Starts the plugin with the grants it requires; if that fails at start-up while imports
/// stay closed, again with each grant that opens one added in turn, the likeliest first,
/// until it starts (`env` and `dirs` need names, so not those).
fn try_load(runtime: &Runtime, path: &Path, needed: &GrantsNeeded) -> Load {
    let mut grants = Grants {
        wasi: needed.required.contains(&"wasi"),
        ..Grants::default()
    };
    let first = start(runtime, path, &grants);
    if first.ok || first.compile_ms.is_none() {
        return first;
    }
    let mut last = None;
    for g in needed
        .optional
        .iter()
        .filter(|g| matches!(**g, "clocks" | "stdio"))
    {
        // Only names `add` knows are in the list.
        let _ = grants.add(g);
        let load = start(runtime, path, &grants);
        let ok = load.ok;
        last = Some(load);
        if ok {
            break;
        }
    }
    match last {
        Some(mut load) => {
            load.without_optional = first.error;
            load
        }
        None => first,
    }
}

fn start(runtime: &Runtime, path: &Path, grants: &Grants) -> Load {
    let name = path
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut spec = PluginSpec::new(name, path);
    spec.grants = grants.clone();
    let mut load = Load {
        ok: false,
        grants: grant_names(grants),
        compile_ms: None,
        start_ms: None,
        memory_bytes: None,
        memory_limit_bytes: spec.memory,
        config_refused: None,
        without_optional: None,
        error: None,
    };
    let started = Instant::now();
    let plugin = match Plugin::load(runtime, spec) {
        Ok(p) => p,
        Err(e) => {
            load.error = Some(format!("{e:#}"));
            return load;
        }
    };
    load.compile_ms = Some(started.elapsed().as_millis() as u64);
    let started = Instant::now();
    match plugin.instantiate() {
        Ok(instance) => {
            load.ok = true;
            load.memory_bytes = Some(instance.peak_memory());
        }
        Err(e) => match e.downcast_ref::<ConfigRejected>() {
            Some(rejected) => {
                load.ok = true;
                load.config_refused = Some(rejected.reason.clone());
            }
            None => load.error = Some(format!("{e:#}")),
        },
    }
    load.start_ms = Some(started.elapsed().as_millis() as u64);
    load
}

fn grant_names(g: &Grants) -> Vec<&'static str> {
    [
        ("wasi", g.wasi),
        ("clocks", g.clocks),
        ("env", !g.env.is_empty()),
        ("dirs", !g.dirs.is_empty()),
        ("stdio", g.stdio),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect()
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.path.display())?;
        writeln!(
            f,
            "  size       {} bytes ({})",
            self.size,
            mib(self.size as usize)
        )?;
        writeln!(f, "  sha256     {}", self.sha256)?;
        let w = &self.world;
        let world = match (&w.package_version, w.matches) {
            (Some(v), true) => format!(
                "transform of {}@{v}: matches this host",
                imports::package_name()
            ),
            (Some(v), false) if v != imports::package_version() => format!(
                "{}@{v}: does not match this host's {}",
                imports::package_name(),
                w.host
            ),
            (Some(v), false) => format!(
                "{}@{v}, but without the world's exports `init` and `process`: not a transform",
                imports::package_name()
            ),
            (None, _) => format!("not a Sluice transform (nothing of {})", w.host),
        };
        writeln!(f, "  world      {world}")?;
        let tools: Vec<String> = self
            .producers
            .iter()
            .map(|(field, tools)| {
                let named: Vec<String> = tools
                    .iter()
                    .map(|(tool, version)| format!("{tool} {version}").trim_end().to_string())
                    .collect();
                format!("{field}: {}", named.join(", "))
            })
            .collect();
        let tools = if tools.is_empty() {
            "unknown (no producers section)".to_string()
        } else {
            tools.join("; ")
        };
        writeln!(f, "  toolchain  {tools}")?;
        let exports: Vec<String> = self
            .exports
            .iter()
            .map(|e| format!("{} ({})", e.name, e.kind))
            .collect();
        writeln!(f, "  exports    {}", exports.join(", "))?;
        writeln!(f, "  imports    {}", self.imports.len())?;
        let width = self.imports.iter().map(|i| i.name.len()).max().unwrap_or(0);
        for i in &self.imports {
            let grant = match (i.grant, i.refused) {
                (_, true) => "REFUSED",
                (Some(g), false) => g,
                (None, false) => "-",
            };
            writeln!(f, "    {:width$}  {grant:<7}  {}", i.name, i.note)?;
        }
        writeln!(
            f,
            "  grants     required: {}; optional: {}",
            list_or_none(&self.grants.required),
            list_or_none(&self.grants.optional)
        )?;
        let l = &self.load;
        let with = format!("grants: {}", list_or_none(&l.grants));
        if l.ok {
            let mut line = format!(
                "yes, with {with}: compiled in {} ms, started in {} ms",
                l.compile_ms.unwrap_or_default(),
                l.start_ms.unwrap_or_default()
            );
            if let Some(m) = l.memory_bytes {
                line.push_str(&format!(
                    ", memory {} of {}",
                    mib(m),
                    mib(l.memory_limit_bytes)
                ));
            }
            writeln!(f, "  loads      {line}")?;
        } else {
            writeln!(
                f,
                "  loads      NO, with {with} and the default limits ({} memory): {}",
                mib(l.memory_limit_bytes),
                l.error.as_deref().unwrap_or_default()
            )?;
        }
        if let Some(e) = &l.without_optional {
            writeln!(
                f,
                "             with the required grants alone it did not: {e}"
            )?;
        }
        if let Some(reason) = &l.config_refused {
            writeln!(
                f,
                "             init refused an empty config, as it may: {reason}"
            )?;
        }
        Ok(())
    }
}
