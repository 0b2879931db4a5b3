//! The sandbox: hostile plugins built in this repo (tests/plugins/hostile) run through the real
//! host. Each misbehaviour must be contained, reported with its reason, and lose no record.
//!
//! The checks every hostile plugin gets, whatever its language, are written once in
//! tests/common/sandbox.rs (tests/polyglot_sandbox.rs runs them against the JavaScript one);
//! this file runs them against the Rust plugin and adds what only it exercises: a plugin that
//! fails everything, a log flood, every outcome, the SHA-256 pin, the artifact cache, refused
//! imports, a chain of stages and the WASI grants.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::sandbox::{Deadline, Fuel, Hostile, Leak, batch, process_once};
use common::*;
use sluice::transform::chain::Chain;
use sluice::transform::{Plugin, PluginSpec, Record, Stage, StageOutput};

/// Loads `spec` on a runtime (and artifact cache) of its own.
fn load_alone(spec: PluginSpec) -> Arc<Plugin> {
    let dir = tempdir();
    load(&runtime(dir.path()), spec)
}

fn run_stage(spec: PluginSpec, input: Vec<Record>) -> (Stage, StageOutput) {
    process_once(load_alone(spec), input)
}

/// The Rust hostile plugin: small and quick to compile, so tight limits.
const HOSTILE: Hostile = Hostile {
    name: "hostile",
    spec: |config| spec("hostile", config),
    load: load_alone,
    pass: 50,
    trap: (100, 37),
    deadline: Deadline {
        timeout: Duration::from_millis(50),
        records: 20,
        looping: [3, 15],
        within: Duration::from_secs(60),
    },
    fuel: Fuel {
        fuel: 5_000_000,
        timeout: Duration::from_secs(30),
    },
    memory_cap: 16 << 20,
    leak: Leak {
        kib: 2048,
        memory: 32 << 20,
        calls: 40,
    },
    reject: ("reject", "mode=reject: this plugin refuses every config"),
};

sandbox_suite!(HOSTILE);

#[test]
fn a_plugin_that_fails_everything_is_contained_without_endless_bisection() {
    let mut s = spec("hostile", &[("mode", "loop")]);
    s.timeout = Duration::from_millis(20);
    let (_, out) = run_stage(s, batch(200, &[]));
    // Nothing lost: every record is dead-lettered with the reason.
    assert_eq!(out.dead.len(), 200);
    assert!(out.records.is_empty());
    let mut origins: Vec<u32> = out.dead.iter().map(|d| d.origin).collect();
    origins.sort();
    assert_eq!(origins, (0..200).collect::<Vec<u32>>());
    assert!(out.dead.iter().all(|d| d.reason.contains("timeout")));
}

#[test]
fn log_flood_is_rate_limited_and_harmless() {
    let (_, out) = run_stage(spec("hostile", &[("mode", "log-flood")]), batch(5, &[]));
    assert_eq!(out.records.len(), 5);
}

#[test]
fn sha256_pin_is_verified_before_loading() {
    let dir = tempdir();
    let rt = runtime(dir.path());
    let mut s = spec("hostile", &[]);
    s.sha256 = Some("0".repeat(64));
    let err = format!(
        "{:#}",
        Plugin::load(&rt, s.clone())
            .err()
            .expect("wrong pin must fail")
    );
    assert!(err.contains("pins") && err.contains("refusing"), "{err}");
    let digest = Plugin::load(&rt, spec("hostile", &[]))
        .unwrap()
        .digest
        .clone();
    s.sha256 = Some(digest);
    Plugin::load(&rt, s).expect("matching pin loads");
}

#[test]
fn compiled_artifact_is_cached_by_digest() {
    let dir = tempdir();
    let rt = runtime(dir.path());
    let first = Plugin::load(&rt, spec("hostile", &[])).unwrap();
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1);
    let name = cached[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with(&first.digest) && name.ends_with(".cwasm"),
        "{name}"
    );
    let modified = std::fs::metadata(&cached[0]).unwrap().modified().unwrap();
    // A second load (new runtime, same engine settings) reuses the artifact.
    let rt2 = runtime(dir.path());
    let second = Plugin::load(&rt2, spec("hostile", &[])).unwrap();
    assert_eq!(
        std::fs::metadata(&cached[0]).unwrap().modified().unwrap(),
        modified
    );
    let mut stage = Stage::new(second).unwrap();
    let mut out = StageOutput::default();
    stage.process(batch(3, &[]), &[0, 1, 2], &mut out);
    assert_eq!(out.records.len(), 3);
}

/// A component that imports `import` besides the transform world, built here from WIT.
fn component_importing(package: &str, interface: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    resolve.push_dir(root().join("wit")).unwrap();
    let (ns, ver) = package.split_once('@').unwrap();
    let wit = format!(
        "package test:evil;\n\
         world evil {{\n  include sluice:transform/transform@0.1.0;\n  import {ns}/{interface}@{ver};\n}}\n\
         package {package} {{\n  interface {interface} {{\n    open: func(path: string) -> list<u8>;\n  }}\n}}\n"
    );
    let pkg = resolve.push_str("evil.wit", &wit).unwrap();
    let world = resolve.select_world(&[pkg], Some("evil")).unwrap();
    let mut module =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

#[test]
fn plugin_importing_filesystem_or_network_is_refused_at_load() {
    let dir = tempdir();
    let rt = runtime(dir.path());
    for (package, interface) in [
        ("wasi:filesystem@0.2.6", "types"),
        ("wasi:sockets@0.2.6", "tcp"),
        ("evil:net@1.0.0", "socket"),
    ] {
        let path = dir.path().join(format!("{interface}.wasm"));
        std::fs::write(&path, component_importing(package, interface)).unwrap();
        let spec = sluice::transform::PluginSpec::new("sneaky", &path);
        let err = format!(
            "{:#}",
            Plugin::load(&rt, spec).err().expect("must be refused")
        );
        let (ns, ver) = package.split_once('@').unwrap();
        let import = format!("{ns}/{interface}@{ver}");
        assert!(err.contains(&format!("imports `{import}`")), "{err}");
        assert!(err.contains("not granted"), "{err}");
        assert!(err.contains("sneaky"), "{err}");
    }
}

#[test]
fn chain_runs_stages_in_order_and_accounts_for_every_record() {
    let dir = tempdir();
    let rt = runtime(dir.path());
    let trap = load(
        &rt,
        spec("hostile", &[("mode", "trap-on"), ("needle", "POISON")]),
    );
    let pass = load(&rt, spec("hostile", &[("mode", "pass")]));
    let mut chain = Chain::from_plugins(vec![pass, trap]).unwrap();
    let mut out = StageOutput::default();
    chain.process(batch(64, &[0, 63]), &mut out);
    assert_eq!(
        out.records.len() + out.dead.len() + out.dropped as usize,
        64
    );
    assert_eq!(
        out.dead.iter().map(|d| d.origin).collect::<Vec<_>>(),
        vec![0, 63]
    );
}

#[test]
fn every_outcome_maps_to_the_right_records() {
    let input = batch(12, &[]);
    let (_, out) = run_stage(spec("hostile", &[("mode", "outcomes")]), input.clone());
    // Per 6 inputs: keep 1, drop 0, set-value 1, replace 1, expand 2, expand-to-nothing 0.
    assert_eq!(out.origins, vec![0, 2, 3, 4, 4, 6, 8, 9, 10, 10]);
    assert_eq!(
        out.dropped, 4,
        "drop and an empty expand both count as dropped"
    );
    assert!(out.dead.is_empty());
    let r = &out.records;
    assert_eq!(r[0].value, input[0].value);
    assert_eq!(r[1].value, input[2].value.to_ascii_uppercase());
    assert_eq!(r[1].key, input[2].key, "set-value keeps the key");
    assert_eq!(r[2].key.as_deref(), Some(&b"replaced"[..]));
    assert_eq!(r[2].value, input[3].value);
    assert_eq!(
        (&r[3].value, &r[4].value),
        (&input[4].value, &input[4].value)
    );
    assert_eq!(
        r[3].headers[0].key, "h",
        "expanded records keep what the plugin gave them"
    );
}

fn probe(grants: sluice::transform::Grants) -> serde_json::Value {
    let mut s = spec("wasi_probe", &[]);
    s.grants = grants;
    let (_, out) = run_stage(s, batch(1, &[]));
    assert!(
        out.dead.is_empty(),
        "{:?}",
        out.dead.first().map(|d| &d.reason)
    );
    serde_json::from_slice(&out.records[0].value).unwrap()
}

#[test]
fn wasi_is_refused_unless_granted_and_then_empty_unless_opened() {
    // Not granted: refused at load, naming a WASI import.
    let dir = tempdir();
    let err = format!(
        "{:#}",
        Plugin::load(&runtime(dir.path()), spec("wasi_probe", &[]))
            .err()
            .expect("must be refused")
    );
    assert!(
        err.contains("imports `wasi:") && err.contains("grants] wasi = true"),
        "{err}"
    );

    // `wasi = true` alone: an empty world. No env, no files, frozen clock, no sockets.
    let data = tempdir();
    std::fs::write(data.path().join("probe.txt"), "secret").unwrap();
    // SAFETY: tests in this binary read this variable only through the probe.
    unsafe { std::env::set_var("SLUICE_PROBE", "visible") };
    let empty = probe(sluice::transform::Grants {
        wasi: true,
        ..Default::default()
    });
    assert_eq!(
        empty,
        serde_json::json!({"env": null, "file": null, "clock": 0, "tcp": false})
    );

    // Each grant opens exactly one thing (network is never granted).
    let open = probe(sluice::transform::Grants {
        wasi: true,
        env: vec!["SLUICE_PROBE".into()],
        dirs: [("/data".to_string(), data.path().to_path_buf())].into(),
        clocks: true,
        stdio: false,
    });
    assert_eq!(open["env"], "visible");
    assert_eq!(open["file"], "secret");
    assert!(open["clock"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(open["tcp"], false);
}

// ---------------------------------------------------------------- bad plugins and bad files

#[test]
fn a_stack_overflow_dead_letters_only_its_record() {
    let input = batch(30, &[11]);
    let (_, out) = run_stage(
        spec("hostile", &[("mode", "stack-on"), ("needle", "POISON")]),
        input,
    );
    assert_eq!(out.dead.len(), 1, "{:?}", out.dead);
    assert_eq!(out.dead[0].origin, 11);
    assert!(
        out.dead[0].reason.contains("stack"),
        "{}",
        out.dead[0].reason
    );
    assert_eq!(out.records.len(), 29);
}

#[test]
fn an_expansion_past_the_memory_cap_is_dead_lettered() {
    // A million copies of each record cannot fit in 16 MiB: the output is bounded by the cap
    // of the plugin that makes it, so the host never holds more than that from one call.
    let mut s = spec("hostile", &[("mode", "expand-bomb"), ("copies", "1000000")]);
    s.memory = 16 << 20;
    let (_, out) = run_stage(s, batch(4, &[]));
    assert!(out.records.is_empty(), "{} records", out.records.len());
    assert_eq!(out.dead.len(), 4, "{:?}", out.dead);
    for d in &out.dead {
        assert!(d.reason.contains("memory"), "{}", d.reason);
    }
    // A modest expansion passes in full.
    let (_, out) = run_stage(
        spec("hostile", &[("mode", "expand-bomb"), ("copies", "3")]),
        batch(4, &[]),
    );
    assert_eq!((out.records.len(), out.dead.len()), (12, 0));
}

#[test]
fn a_trap_in_init_is_reported_at_load() {
    let plugin = load_alone(spec("hostile", &[("mode", "trap-in-init")]));
    let err = format!("{:#}", plugin.instantiate().err().expect("init must fail"));
    eprintln!("{err}");
    assert!(err.contains("hostile") && err.contains("init"), "{err}");
    assert!(err.contains("trap") || err.contains("unreachable"), "{err}");
}

#[test]
fn a_core_module_a_non_wasm_file_and_a_missing_file_are_refused_naming_the_file() {
    let dir = tempdir();
    let core = dir.path().join("core.wasm");
    // The smallest core module: magic and version 1, no sections.
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, b"not wasm at all").unwrap();
    let missing = dir.path().join("missing.wasm");
    for (path, expect) in [
        (&core, "is a core WebAssembly module, not a component"),
        (&text, "is not a WebAssembly component"),
        (&missing, "reading"),
    ] {
        let rt = runtime(dir.path());
        let err = format!(
            "{:#}",
            Plugin::load(&rt, PluginSpec::new("odd", path))
                .err()
                .expect("must be refused")
        );
        assert!(err.contains(expect), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("transform `odd`"), "{err}");
    }
}

/// A runtime that hands plugins at most `bytes` of record values per call.
fn runtime_with_calls_of(dir: &std::path::Path, bytes: usize) -> sluice::transform::Runtime {
    sluice::transform::Runtime::new(sluice::transform::RuntimeOptions {
        cache_dir: Some(dir.join("cache")),
        max_call_bytes: bytes,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn a_batch_is_cut_into_calls_of_max_call_bytes() {
    let dir = tempdir();
    // Twelve 100-byte records in calls of 400 bytes: three calls of four. The plugin's outcome
    // follows a record's index within its call (keep, drop, set-value, replace, ...).
    let rt = runtime_with_calls_of(dir.path(), 400);
    let plugin = load(&rt, spec("hostile", &[("mode", "outcomes")]));
    let input: Vec<Record> = (0..12).map(|_| record(&[b'x'; 100])).collect();
    let (_, out) = process_once(plugin, input);
    assert_eq!(out.origins, vec![0, 2, 3, 4, 6, 7, 8, 10, 11]);
    assert_eq!(out.dropped, 3);

    // Poison records on both sides of a cut are isolated within their own calls.
    let rt = runtime_with_calls_of(dir.path(), 8 * 22);
    let trap = load(
        &rt,
        spec("hostile", &[("mode", "trap-on"), ("needle", "POISON")]),
    );
    let (_, out) = process_once(trap, batch(64, &[0, 7, 8, 63]));
    assert_eq!(
        out.dead.iter().map(|d| d.origin).collect::<Vec<_>>(),
        vec![0, 7, 8, 63]
    );
    let kept: Vec<u32> = (1..63).filter(|i| ![7, 8].contains(i)).collect();
    assert_eq!(out.origins, kept);
}
