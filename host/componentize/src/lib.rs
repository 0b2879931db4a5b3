//! Makes a component of a core WebAssembly module built against the `transform` world, for
//! the languages whose toolchains stop at a core module: C (clang and wasi-libc) and Go
//! (`GOOS=wasip1`). `cargo xtask plugins` builds the shipped plugins with it and
//! `host plugin componentize` gives it to plugin authors, so both take the same steps:
//!
//! 1. a Go module's WASI adapter gets its memory from the arena the module declares (see [`go`]);
//! 2. the WIT metadata is embedded, unless the module carries it already (`wit-bindgen c`
//!    links a `component-type` section in);
//! 3. a module that imports WASI preview1 gets the preview1 reactor adapter, which turns those
//!    imports into WASI 0.2 ones the host links only when the pipeline grants `wasi`.

mod go;

use anyhow::{Context, bail};
use wasmparser::{Encoding, Parser, Payload};

pub use go::{ARENA_LEN, ARENA_MARKER};

/// The world every plugin targets.
pub const WORLD: &str = "transform";

/// What the steps above need to know about a core module.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CoreModule {
    /// It imports `wasi_snapshot_preview1` functions.
    pub imports_wasi: bool,
    /// It carries WIT metadata (a `component-type` custom section).
    pub has_metadata: bool,
    /// The address of the Go adapter arena it declares.
    pub go_arena: Option<u32>,
}

impl CoreModule {
    pub fn read(module: &[u8]) -> anyhow::Result<CoreModule> {
        if !module.starts_with(b"\0asm") {
            bail!("not a WebAssembly module: it does not start with `\\0asm`");
        }
        let mut facts = CoreModule::default();
        for payload in Parser::new(0).parse_all(module) {
            match payload.context("not a valid WebAssembly module")? {
                Payload::Version {
                    encoding: Encoding::Component,
                    ..
                } => bail!("this is a component already: load it as it is"),
                Payload::ImportSection(imports) => {
                    for import in imports.into_imports() {
                        facts.imports_wasi |= import?.module == "wasi_snapshot_preview1";
                    }
                }
                Payload::CustomSection(section) => {
                    facts.has_metadata |= section.name().starts_with("component-type");
                }
                Payload::DataSection(data) => facts.go_arena = go::find_arena(data)?,
                _ => {}
            }
        }
        Ok(facts)
    }
}

/// The component made of `module`, with `wit` (the text of `wit/transform.wit`) as its world's
/// definition when the module does not carry one.
pub fn componentize(module: &[u8], wit: &str) -> anyhow::Result<Vec<u8>> {
    let facts = CoreModule::read(module)?;
    let mut module = match facts.go_arena {
        Some(arena) => go::add_adapter_realloc(module, arena)?,
        None => module.to_vec(),
    };
    if !facts.has_metadata {
        let mut resolve = wit_parser::Resolve::default();
        let pkg = resolve
            .push_str("transform.wit", wit)
            .context("reading the WIT contract")?;
        let world = resolve.select_world(&[pkg], Some(WORLD))?;
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
        )?;
    }
    let mut encoder = wit_component::ComponentEncoder::default()
        .module(&module)?
        .validate(true);
    if facts.imports_wasi {
        encoder = encoder.adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?;
    }
    encoder.encode().context("making a component of the module")
}
