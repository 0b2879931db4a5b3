//! The sandbox: hostile plugins built in this repo (tests/plugins/hostile) run through the real
//! host. Each misbehaviour must be contained, reported with its reason, and lose no record.

mod common;

use std::time::Duration;

use common::*;
use sluice::transform::chain::Chain;
use sluice::transform::{Plugin, Record, Stage, StageOutput};

fn batch(n: usize, poison: &[usize]) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let tag = if poison.contains(&i) {
                "POISON"
            } else {
                "fine"
            };
            record(format!("{{\"i\":{i},\"tag\":\"{tag}\"}}").as_bytes())
        })
        .collect()
}

fn run_stage(spec: sluice::transform::PluginSpec, input: Vec<Record>) -> (Stage, StageOutput) {
    let dir = tempdir();
    let plugin = load(&runtime(dir.path()), spec);
    let mut stage = Stage::new(plugin).unwrap();
    let origins: Vec<u32> = (0..input.len() as u32).collect();
    let mut out = StageOutput::default();
    stage.process(input, &origins, &mut out);
    (stage, out)
}

fn index_of(r: &Record) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
    v["i"].as_u64().unwrap()
}

#[test]
fn well_behaved_plugin_keeps_records_intact() {
    let input = batch(50, &[]);
    let (stage, out) = run_stage(spec("hostile", &[("mode", "pass")]), input.clone());
    assert_eq!(out.records.len(), 50);
    assert_eq!(out.records[7].value, input[7].value);
    assert_eq!(out.records[7].key, input[7].key);
    assert_eq!(out.records[7].headers[0].key, "h");
    assert_eq!(out.records[7].timestamp, input[7].timestamp);
    assert_eq!(out.origins, (0..50).collect::<Vec<u32>>());
    assert_eq!(stage.restarts, 0);
}

#[test]
fn trap_on_one_record_dead_letters_only_that_record() {
    let input = batch(100, &[37]);
    let (stage, out) = run_stage(
        spec("hostile", &[("mode", "trap-on"), ("needle", "POISON")]),
        input,
    );
    assert_eq!(out.dead.len(), 1, "{:?}", out.dead);
    let dead = &out.dead[0];
    assert_eq!(dead.origin, 37);
    assert_eq!(&*dead.stage, "hostile");
    assert!(dead.reason.contains("trap"), "{}", dead.reason);
    assert!(String::from_utf8_lossy(&dead.record.value).contains("POISON"));
    // Everything else passed, in order.
    let passed: Vec<u64> = out.records.iter().map(index_of).collect();
    let expected: Vec<u64> = (0..100).filter(|&i| i != 37).collect();
    assert_eq!(passed, expected);
    assert!(stage.restarts > 0);
}

#[test]
fn infinite_loop_is_stopped_by_the_deadline() {
    let mut s = spec("hostile", &[("mode", "loop-on"), ("needle", "POISON")]);
    s.timeout = Duration::from_millis(50);
    let input = batch(20, &[3, 15]);
    let started = std::time::Instant::now();
    let (_, out) = run_stage(s, input);
    assert_eq!(out.dead.len(), 2);
    assert_eq!(
        out.dead.iter().map(|d| d.origin).collect::<Vec<_>>(),
        vec![3, 15]
    );
    for d in &out.dead {
        assert!(d.reason.starts_with("timeout"), "{}", d.reason);
    }
    assert_eq!(out.records.len(), 18);
    // Generous bound: only proves the loop was interrupted rather than hanging the test.
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn infinite_loop_is_stopped_by_fuel() {
    let mut s = spec("hostile", &[("mode", "loop")]);
    s.fuel = Some(5_000_000);
    s.timeout = Duration::from_secs(30);
    let (_, out) = run_stage(s, batch(2, &[]));
    assert_eq!(out.dead.len(), 2);
    assert!(
        out.dead[0].reason.starts_with("fuel exhausted"),
        "{}",
        out.dead[0].reason
    );
}

#[test]
fn memory_bomb_is_stopped_by_the_cap() {
    let mut s = spec("hostile", &[("mode", "oom")]);
    s.memory = 16 << 20;
    let (_, out) = run_stage(s, batch(1, &[]));
    assert_eq!(out.dead.len(), 1);
    assert!(
        out.dead[0].reason.starts_with("memory cap exceeded"),
        "{}",
        out.dead[0].reason
    );
}

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
fn wrong_outcome_count_is_a_contract_violation() {
    let (_, out) = run_stage(spec("hostile", &[("mode", "wrong-count")]), batch(3, &[]));
    // A single record gets zero outcomes too, so all three end in the dead letter.
    assert_eq!(out.dead.len(), 3);
    assert!(
        out.dead[0].reason.contains("contract violation"),
        "{}",
        out.dead[0].reason
    );
}

#[test]
fn leaking_plugin_is_recycled_before_it_hits_the_cap() {
    let mut s = spec("hostile", &[("mode", "leak"), ("leak_kib", "2048")]);
    s.memory = 32 << 20;
    let dir = tempdir();
    let mut stage = Stage::new(load(&runtime(dir.path()), s)).unwrap();
    let mut out = StageOutput::default();
    for _ in 0..40 {
        stage.process(batch(10, &[]), &(0..10).collect::<Vec<u32>>(), &mut out);
    }
    assert!(
        out.dead.is_empty(),
        "{:?}",
        out.dead.first().map(|d| &d.reason)
    );
    assert_eq!(out.records.len(), 400);
    assert!(stage.restarts >= 2, "restarts: {}", stage.restarts);
}

#[test]
fn log_flood_is_rate_limited_and_harmless() {
    let (_, out) = run_stage(spec("hostile", &[("mode", "log-flood")]), batch(5, &[]));
    assert_eq!(out.records.len(), 5);
}

#[test]
fn init_rejecting_its_config_is_reported() {
    let dir = tempdir();
    let plugin = load(&runtime(dir.path()), spec("hostile", &[("mode", "reject")]));
    let err = format!("{:#}", plugin.instantiate().err().expect("init must fail"));
    assert!(err.contains("rejected its config"), "{err}");
    assert!(err.contains("mode=reject"), "{err}");
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
