//! The sandbox suite, written once: the checks every hostile plugin must be contained by,
//! whatever language it is written in. A test binary describes its plugin in a [`Hostile`]
//! (how to load it and the limits that suit it: a JavaScript component is much larger and
//! slower than a Rust one) and expands [`sandbox_suite!`](crate::sandbox_suite) into one
//! `#[test]` per check.
//!
//! The plugin must understand the `mode`s these checks use: `pass`, `trap-on` and `loop-on`
//! (with `needle`), `loop`, `oom`, `wrong-count` and `leak` (with `leak_kib`); and refuse
//! [`Hostile::reject`]'s mode in `init`.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::transform::{Plugin, PluginSpec, Record, Stage, StageOutput};

use super::record;

/// A hostile plugin under test, and the sizes and limits its checks use.
pub struct Hostile {
    /// The stage name every dead letter carries (the spec's name).
    pub name: &'static str,
    /// Its spec for a config, with the plugin's own memory cap and deadline.
    pub spec: fn(&[(&str, &str)]) -> PluginSpec,
    /// Loads a spec (compiling the component or taking it from a cache).
    pub load: fn(PluginSpec) -> Arc<Plugin>,
    /// Records in the batch the well-behaved control keeps.
    pub pass: usize,
    /// Records, and the one that traps.
    pub trap: (usize, usize),
    pub deadline: Deadline,
    pub fuel: Fuel,
    /// The memory cap the memory bomb runs into.
    pub memory_cap: usize,
    pub leak: Leak,
    /// A `mode` the plugin refuses, and the end of the error that says so.
    pub reject: (&'static str, &'static str),
}

/// A loop on some records, stopped by the deadline.
pub struct Deadline {
    pub timeout: Duration,
    pub records: usize,
    /// The two records the plugin loops on.
    pub looping: [usize; 2],
    /// Generous: only proves the loops were interrupted rather than hanging the test.
    pub within: Duration,
}

/// A loop on every record, stopped by fuel before the (long) deadline.
pub struct Fuel {
    pub fuel: u64,
    pub timeout: Duration,
}

/// A plugin that keeps `kib` KiB per call alive, run `calls` times under a `memory` cap.
pub struct Leak {
    pub kib: usize,
    pub memory: usize,
    pub calls: usize,
}

/// `n` records `{"i":<index>,"tag":"fine"}`; those at `poison` are tagged `POISON` instead.
pub fn batch(n: usize, poison: &[usize]) -> Vec<Record> {
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

/// The `i` of a record made by [`batch`].
pub fn index_of(r: &Record) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
    v["i"].as_u64().unwrap()
}

/// One call of a fresh stage on `plugin` with `input` (origins 0, 1, ...).
pub fn process_once(plugin: Arc<Plugin>, input: Vec<Record>) -> (Stage, StageOutput) {
    let mut stage = Stage::new(plugin).unwrap();
    let origins: Vec<u32> = (0..input.len() as u32).collect();
    let mut out = StageOutput::default();
    stage.process(input, &origins, &mut out);
    (stage, out)
}

impl Hostile {
    fn run(&self, spec: PluginSpec, input: Vec<Record>) -> (Stage, StageOutput) {
        process_once((self.load)(spec), input)
    }

    fn spec(&self, config: &[(&str, &str)]) -> PluginSpec {
        (self.spec)(config)
    }
}

pub fn well_behaved_plugin_keeps_records_intact(h: &Hostile) {
    let n = h.pass;
    let input = batch(n, &[]);
    let (stage, out) = h.run(h.spec(&[("mode", "pass")]), input.clone());
    assert_eq!(out.records.len(), n);
    assert_eq!(out.records[7].value, input[7].value);
    assert_eq!(out.records[7].key, input[7].key);
    assert_eq!(out.records[7].headers[0].key, "h");
    assert_eq!(out.records[7].timestamp, input[7].timestamp);
    assert_eq!(out.origins, (0..n as u32).collect::<Vec<u32>>());
    assert!(out.dead.is_empty());
    assert_eq!(stage.restarts, 0);
}

pub fn trap_on_one_record_dead_letters_only_that_record(h: &Hostile) {
    let (n, at) = h.trap;
    let input = batch(n, &[at]);
    let (stage, out) = h.run(h.spec(&[("mode", "trap-on"), ("needle", "POISON")]), input);
    assert_eq!(out.dead.len(), 1, "{:?}", out.dead);
    let dead = &out.dead[0];
    assert_eq!(dead.origin, at as u32);
    assert_eq!(&*dead.stage, h.name);
    assert!(dead.reason.starts_with("trap"), "{}", dead.reason);
    assert!(String::from_utf8_lossy(&dead.record.value).contains("POISON"));
    // Everything else passed, in order.
    let passed: Vec<u64> = out.records.iter().map(index_of).collect();
    let expected: Vec<u64> = (0..n as u64).filter(|&i| i != at as u64).collect();
    assert_eq!(passed, expected);
    assert!(stage.restarts > 0);
}

pub fn infinite_loop_is_stopped_by_the_deadline(h: &Hostile) {
    let d = &h.deadline;
    let mut s = h.spec(&[("mode", "loop-on"), ("needle", "POISON")]);
    s.timeout = d.timeout;
    let input = batch(d.records, &d.looping);
    let started = Instant::now();
    let (_, out) = h.run(s, input);
    assert_eq!(out.dead.len(), 2);
    assert_eq!(
        out.dead
            .iter()
            .map(|d| d.origin as usize)
            .collect::<Vec<_>>(),
        d.looping
    );
    for d in &out.dead {
        assert!(d.reason.starts_with("timeout"), "{}", d.reason);
    }
    assert_eq!(out.records.len(), d.records - 2);
    assert!(started.elapsed() < d.within, "{:?}", started.elapsed());
}

pub fn infinite_loop_is_stopped_by_fuel(h: &Hostile) {
    let mut s = h.spec(&[("mode", "loop")]);
    s.fuel = Some(h.fuel.fuel);
    s.timeout = h.fuel.timeout;
    let (_, out) = h.run(s, batch(2, &[]));
    assert_eq!(out.dead.len(), 2);
    assert!(
        out.dead[0].reason.starts_with("fuel exhausted"),
        "{}",
        out.dead[0].reason
    );
}

pub fn memory_bomb_is_stopped_by_the_cap(h: &Hostile) {
    let mut s = h.spec(&[("mode", "oom")]);
    s.memory = h.memory_cap;
    let (_, out) = h.run(s, batch(1, &[]));
    assert_eq!(out.dead.len(), 1);
    assert!(
        out.dead[0].reason.starts_with("memory cap exceeded"),
        "{}",
        out.dead[0].reason
    );
}

pub fn wrong_outcome_count_is_a_contract_violation(h: &Hostile) {
    let (_, out) = h.run(h.spec(&[("mode", "wrong-count")]), batch(3, &[]));
    // A single record gets zero outcomes too, so all three end in the dead letter.
    assert_eq!(out.dead.len(), 3);
    assert!(
        out.dead[0].reason.contains("contract violation"),
        "{}",
        out.dead[0].reason
    );
}

pub fn leaking_plugin_is_recycled_before_it_hits_the_cap(h: &Hostile) {
    let l = &h.leak;
    // The calls leak past the cap in total: only recycling explains that every record went
    // through.
    assert!(
        l.calls * l.kib * 1024 > l.memory,
        "the leak must outgrow the cap"
    );
    let kib = l.kib.to_string();
    let mut s = h.spec(&[("mode", "leak"), ("leak_kib", &kib)]);
    s.memory = l.memory;
    let mut stage = Stage::new((h.load)(s)).unwrap();
    let mut out = StageOutput::default();
    for _ in 0..l.calls {
        stage.process(batch(10, &[]), &(0..10).collect::<Vec<u32>>(), &mut out);
    }
    assert!(
        out.dead.is_empty(),
        "{:?}",
        out.dead.first().map(|d| &d.reason)
    );
    assert_eq!(out.records.len(), 10 * l.calls);
    assert!(stage.restarts >= 2, "restarts: {}", stage.restarts);
}

pub fn init_rejecting_its_config_is_reported(h: &Hostile) {
    let (mode, why) = h.reject;
    let plugin = (h.load)(h.spec(&[("mode", mode)]));
    let err = format!("{:#}", plugin.instantiate().err().expect("init must fail"));
    assert!(
        err.ends_with(&format!("rejected its config: {why}")),
        "{err}"
    );
}

/// One `#[test]` per check of this module, run against the [`Hostile`] `$plugin`.
#[macro_export]
macro_rules! sandbox_suite {
    ($plugin:path) => {
        $crate::sandbox_suite!(@tests $plugin;
            well_behaved_plugin_keeps_records_intact,
            trap_on_one_record_dead_letters_only_that_record,
            infinite_loop_is_stopped_by_the_deadline,
            infinite_loop_is_stopped_by_fuel,
            memory_bomb_is_stopped_by_the_cap,
            wrong_outcome_count_is_a_contract_violation,
            leaking_plugin_is_recycled_before_it_hits_the_cap,
            init_rejecting_its_config_is_reported,
        );
    };
    (@tests $plugin:path; $($check:ident,)*) => {
        $(
            #[test]
            fn $check() {
                $crate::common::sandbox::$check(&$plugin);
            }
        )*
    };
}
