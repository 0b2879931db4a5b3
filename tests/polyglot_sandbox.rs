//! The sandbox holds for plugins in other languages too: a hostile JavaScript plugin
//! (tests/plugins/hostile-js, built by `cargo xtask plugins` with jco) gets the sandbox suite
//! of tests/common/sandbox.rs, the same checks tests/engine.rs runs against the Rust one: records
//! kept intact, loops stopped by the deadline and by fuel, a memory bomb stopped by the cap, a
//! throw contained to its record, a leak recycled, a broken contract and a refused config
//! reported. And a Python plugin (componentize-py always imports WASI) is refused unless WASI
//! is granted.

mod common;
mod common_polyglot;

use std::sync::Arc;
use std::time::Duration;

use common::sandbox::{Deadline, Fuel, Hostile, Leak, process_once};
use common::*;
use sluice::transform::{Plugin, PluginSpec};

/// The JavaScript hostile plugin's spec: room to run (128 MiB, 5 s), and its component compiled
/// into the cache by the release host.
fn js_spec(config: &[(&str, &str)]) -> PluginSpec {
    let mut s = spec("hostile_js", config);
    s.memory = 128 << 20;
    s.timeout = Duration::from_secs(5);
    common_polyglot::warm(&s.path, false);
    s
}

/// Loads on the runtime whose cache the release host warmed (for the engine with fuel
/// metering too, when the spec asks for fuel).
fn load_js(spec: PluginSpec) -> Arc<Plugin> {
    if spec.fuel.is_some() {
        common_polyglot::warm(&spec.path, true);
    }
    Plugin::load(rt(), spec).unwrap()
}

fn rt() -> &'static sluice::transform::Runtime {
    common_polyglot::runtime()
}

/// The JavaScript hostile plugin: a 12 MB component with a JS engine inside, so more memory,
/// time and fuel than the Rust one, and smaller batches (each trap or timeout restarts the
/// instance).
const HOSTILE_JS: Hostile = Hostile {
    name: "hostile_js",
    spec: js_spec,
    load: load_js,
    pass: 20,
    trap: (40, 17),
    deadline: Deadline {
        timeout: Duration::from_millis(300),
        records: 12,
        looping: [3, 9],
        within: Duration::from_secs(120),
    },
    fuel: Fuel {
        fuel: 200_000_000,
        timeout: Duration::from_secs(60),
    },
    memory_cap: 96 << 20,
    leak: Leak {
        kib: 4096,
        memory: 128 << 20,
        calls: 60,
    },
    // hostile-js has no `reject` mode: it refuses a mode it does not know.
    reject: ("bogus", "unknown mode `bogus`"),
};

sandbox_suite!(HOSTILE_JS);

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
    let (_, out) = process_once(
        Plugin::load(rt(), s).unwrap(),
        vec![record(br#"{"text":"BTS!"}"#), record(b"{}")],
    );
    assert_eq!(out.records.len(), 1);
    assert!(out.dead.is_empty());
}
