//! The sandbox holds for plugins in other languages too: a hostile JavaScript plugin
//! (tests/plugins/hostile-js, built by `cargo xtask plugins` with jco) gets the treatment
//! tests/engine.rs checks for the Rust one: loops stopped by the deadline and by fuel, a memory
//! bomb stopped by the cap, a throw contained to its record, a leak recycled, a broken contract
//! reported. And a Python plugin (componentize-py always imports WASI) is refused unless WASI
//! is granted.

mod common;
mod common_polyglot;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use sluice::transform::{Plugin, PluginSpec, Record, Stage, StageOutput};

fn hostile_js() -> PathBuf {
    build_plugins();
    root().join("tests/plugins/dist/hostile_js.wasm")
}

fn rt() -> &'static sluice::transform::Runtime {
    common_polyglot::runtime()
}

fn js_spec(config: &[(&str, &str)]) -> PluginSpec {
    let mut s = PluginSpec::new("hostile_js", hostile_js());
    s.config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s.memory = 128 << 20;
    s.timeout = Duration::from_secs(5);
    common_polyglot::warm(&s.path, false);
    s
}

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

fn run_stage(spec: PluginSpec, input: Vec<Record>) -> (Stage, StageOutput) {
    let mut stage = Stage::new(Plugin::load(rt(), spec).unwrap()).unwrap();
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
fn js_well_behaved_control_keeps_records_intact() {
    let input = batch(20, &[]);
    let (stage, out) = run_stage(js_spec(&[("mode", "pass")]), input.clone());
    assert_eq!(out.records.len(), 20);
    assert_eq!(out.records[7].value, input[7].value);
    assert!(out.dead.is_empty());
    assert_eq!(stage.restarts, 0);
}

#[test]
fn js_throw_on_one_record_dead_letters_only_that_record() {
    let input = batch(40, &[17]);
    let (stage, out) = run_stage(js_spec(&[("mode", "trap-on"), ("needle", "POISON")]), input);
    assert_eq!(out.dead.len(), 1, "{:?}", out.dead);
    let dead = &out.dead[0];
    assert_eq!(dead.origin, 17);
    assert!(dead.reason.starts_with("trap"), "{}", dead.reason);
    assert!(String::from_utf8_lossy(&dead.record.value).contains("POISON"));
    let passed: Vec<u64> = out.records.iter().map(index_of).collect();
    let expected: Vec<u64> = (0..40).filter(|&i| i != 17).collect();
    assert_eq!(passed, expected);
    assert!(stage.restarts > 0);
}

#[test]
fn js_infinite_loop_is_stopped_by_the_deadline() {
    let mut s = js_spec(&[("mode", "loop-on"), ("needle", "POISON")]);
    s.timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let (_, out) = run_stage(s, batch(12, &[3, 9]));
    assert_eq!(
        out.dead.iter().map(|d| d.origin).collect::<Vec<_>>(),
        vec![3, 9]
    );
    for d in &out.dead {
        assert!(d.reason.starts_with("timeout"), "{}", d.reason);
    }
    assert_eq!(out.records.len(), 10);
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[test]
fn js_infinite_loop_is_stopped_by_fuel() {
    let mut s = js_spec(&[("mode", "loop")]);
    common_polyglot::warm(&s.path, true);
    s.fuel = Some(200_000_000);
    s.timeout = Duration::from_secs(60);
    let (_, out) = run_stage(s, batch(2, &[]));
    assert_eq!(out.dead.len(), 2);
    assert!(
        out.dead[0].reason.starts_with("fuel exhausted"),
        "{}",
        out.dead[0].reason
    );
}

#[test]
fn js_memory_bomb_is_stopped_by_the_cap() {
    let mut s = js_spec(&[("mode", "oom")]);
    s.memory = 96 << 20;
    let (_, out) = run_stage(s, batch(1, &[]));
    assert_eq!(out.dead.len(), 1);
    assert!(
        out.dead[0].reason.starts_with("memory cap exceeded"),
        "{}",
        out.dead[0].reason
    );
}

#[test]
fn js_wrong_outcome_count_is_a_contract_violation() {
    let (_, out) = run_stage(js_spec(&[("mode", "wrong-count")]), batch(3, &[]));
    assert_eq!(out.dead.len(), 3);
    assert!(
        out.dead[0].reason.contains("contract violation"),
        "{}",
        out.dead[0].reason
    );
}

#[test]
fn js_leaking_plugin_is_recycled_and_the_host_carries_on() {
    let mut s = js_spec(&[("mode", "leak"), ("leak_kib", "4096")]);
    s.memory = 128 << 20;
    let mut stage = Stage::new(Plugin::load(rt(), s).unwrap()).unwrap();
    let mut out = StageOutput::default();
    for _ in 0..60 {
        stage.process(batch(10, &[]), &(0..10).collect::<Vec<u32>>(), &mut out);
    }
    // 60 calls leak 240 MiB in total, far past the 128 MiB cap: only recycling explains that
    // every record went through.
    assert!(
        out.dead.is_empty(),
        "{:?}",
        out.dead.first().map(|d| &d.reason)
    );
    assert_eq!(out.records.len(), 600);
    assert!(stage.restarts >= 2, "restarts: {}", stage.restarts);
}

#[test]
fn js_init_rejecting_its_config_is_reported() {
    let plugin = Plugin::load(rt(), js_spec(&[("mode", "bogus")])).unwrap();
    let err = format!("{:#}", plugin.instantiate().err().expect("init must fail"));
    assert!(
        err.ends_with("rejected its config: unknown mode `bogus`"),
        "{err}"
    );
}

/// componentize-py always imports WASI: without the grant the plugin is refused at load, and
/// the error names the import; with `grants.wasi` (an empty WASI) it runs.
#[test]
fn python_plugin_is_refused_without_the_wasi_grant() {
    let mut s = PluginSpec::new("py", plugin("keyword_filter_py"));
    common_polyglot::warm(&s.path, false);
    s.config = vec![("keywords".into(), "bts".into())];
    let err = format!(
        "{:#}",
        Plugin::load(rt(), s.clone())
            .err()
            .expect("must be refused")
    );
    assert!(err.contains("imports `wasi:"), "{err}");
    assert!(err.contains("not granted"), "{err}");
    assert!(err.contains("grants] wasi = true"), "{err}");
    s.grants.wasi = true;
    let (_, out) = run_stage(s, vec![record(br#"{"text":"BTS!"}"#), record(b"{}")]);
    assert_eq!(out.records.len(), 1);
    assert!(out.dead.is_empty());
}
