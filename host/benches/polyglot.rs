//! The same keyword filter in every language: native Rust (the library, called directly), the
//! Rust plugin, and its Python (componentize-py), JavaScript (jco) and Go (wasip1) ports, on the same
//! generated tweets in one run. Per-record cost at batch 1, 100 and 1000 with the default
//! sandbox (deadline + memory cap), each figure the median of several runs in which native and
//! the plugin alternate, the ratio the median of the per-run ratios. Then, per component: the
//! cold compile, loading the compiled artifact from the cache (what a second start pays),
//! a fresh instance with `init`, and the sizes.
//!
//! `cargo xtask bench` builds the plugins and runs this after the chain benchmark;
//! `cargo bench -p sluice-host --bench polyglot` runs it alone. `BENCH_RECORDS` (default 2000),
//! `BENCH_RUNS` (5) and `BENCH_COMPILE_RUNS` (3) change the size.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sluice::transform::{Plugin, PluginSpec, Record, Runtime, RuntimeOptions, Stage, StageOutput};
use sluice_transforms::{KeywordFilter, Outcome, Transform};
use tweetgen::{GenerateOptions, TweetGenerator};

const KEYWORDS: &str = "bts,방탄소년단";

struct Subject {
    label: &'static str,
    component: &'static str,
    /// The empty WASI (componentize-py and the Go runtime import it); Go also gets real
    /// clocks, without which its runtime refuses to start.
    wasi: bool,
}

const SUBJECTS: &[Subject] = &[
    Subject {
        label: "Rust plugin",
        component: "keyword_filter",
        wasi: false,
    },
    Subject {
        label: "Python plugin (componentize-py)",
        component: "keyword_filter_py",
        wasi: true,
    },
    Subject {
        label: "JavaScript plugin (jco)",
        component: "keyword_filter_js",
        wasi: false,
    },
    Subject {
        label: "Go plugin (wasip1 + adapter)",
        component: "keyword_filter_go",
        wasi: true,
    },
];

fn setting(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or(default),
        Err(_) => default,
    }
}

fn mid(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn config() -> Vec<(String, String)> {
    vec![("keywords".to_string(), KEYWORDS.to_string())]
}

fn spec_for(dist: &Path, s: &Subject) -> PluginSpec {
    let mut spec = PluginSpec::new(s.component, dist.join(format!("{}.wasm", s.component)));
    spec.config = config();
    spec.grants.wasi = s.wasi;
    spec.grants.clocks = s.component.ends_with("_go");
    spec.memory = 256 << 20;
    spec.timeout = std::time::Duration::from_secs(60);
    spec
}

/// Seconds to run every record through the native filter; returns the kept count too.
fn native_pass(filter: &KeywordFilter, records: &[Record]) -> (f64, usize) {
    let started = Instant::now();
    let kept = records
        .iter()
        .filter(|r| matches!(std::hint::black_box(filter.apply(&r.value)), Outcome::Keep))
        .count();
    (started.elapsed().as_secs_f64(), kept)
}

/// Seconds to run every record through `stage` in batches of `batch` (the copies into
/// batches are made before the clock starts); returns the kept count too.
fn plugin_pass(stage: &mut Stage, records: &[Record], batch: usize) -> (f64, usize) {
    let batches: Vec<Vec<Record>> = records.chunks(batch).map(<[Record]>::to_vec).collect();
    let mut out = StageOutput::default();
    let mut kept = 0;
    let started = Instant::now();
    for (i, b) in batches.into_iter().enumerate() {
        let origins: Vec<u32> = (0..b.len() as u32).collect();
        out.clear();
        stage.process(b, &origins, &mut out);
        assert!(out.dead.is_empty(), "batch {i}: {}", out.dead[0].reason);
        kept += out.records.len();
    }
    (started.elapsed().as_secs_f64(), kept)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dist = root.join("guest-plugins/dist");
    let n = setting("BENCH_RECORDS", 2000);
    let runs = setting("BENCH_RUNS", 5).max(1);
    let compile_runs = setting("BENCH_COMPILE_RUNS", 3).max(1);

    let mut generator = TweetGenerator::new(&GenerateOptions::default());
    let mut buf = Vec::new();
    let records: Vec<Record> = (0..n)
        .map(|_| {
            generator.next_into(&mut buf);
            Record {
                key: None,
                value: buf.clone(),
                headers: Vec::new(),
                timestamp: None,
            }
        })
        .collect();
    let average = records.iter().map(|r| r.value.len()).sum::<usize>() as f64 / n as f64;
    let native = KeywordFilter::from_config(&config()).unwrap();
    let (_, native_kept) = native_pass(&native, &records);

    // Per-record cost: the plugin and native alternate, so both see the same load.
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(std::env::temp_dir().join("sluice-bench-polyglot-cache")),
        ..RuntimeOptions::default()
    })
    .unwrap();
    let mut rows: Vec<(String, String, f64, f64)> = Vec::new();
    let native_ns = mid((0..runs)
        .map(|_| native_pass(&native, &records).0 * 1e9 / n as f64)
        .collect());
    rows.push((
        "native Rust (same library)".into(),
        "-".into(),
        native_ns,
        1.0,
    ));
    for s in SUBJECTS {
        let plugin = Plugin::load(&runtime, spec_for(&dist, s)).unwrap();
        for batch in [1, 100, 1000] {
            let mut stage = Stage::new(plugin.clone()).unwrap();
            plugin_pass(&mut stage, &records, batch); // warm-up
            let mut per_record = Vec::new();
            let mut ratios = Vec::new();
            for _ in 0..runs {
                let (base, _) = native_pass(&native, &records);
                let (secs, kept) = plugin_pass(&mut stage, &records, batch);
                assert_eq!(kept, native_kept, "{} disagrees with native", s.label);
                per_record.push(secs * 1e9 / n as f64);
                ratios.push(secs / base);
            }
            rows.push((
                s.label.into(),
                batch.to_string(),
                mid(per_record),
                mid(ratios),
            ));
        }
    }

    println!(
        "\nkeyword-filter `{KEYWORDS}` on {n} generated tweets ({:.1} KB average), {native_kept} kept; medians of {runs} runs, native and plugin alternating\n",
        average / 1e3
    );
    println!("| implementation | batch | per record | records/s | vs native |");
    println!("|---|---:|---:|---:|---:|");
    for (label, batch, ns, ratio) in &rows {
        println!(
            "| {label} | {batch} | {:.2} us | {:.0} | {ratio:.1}x |",
            ns / 1e3,
            1e9 / ns
        );
    }

    println!(
        "\nstart-up (medians: compile of {compile_runs}, cached load of 5, instantiate + init of 20)\n"
    );
    println!(
        "| component | size | compiled artifact | compile (cold) | load from cache (2nd start) | instantiate + init |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for s in SUBJECTS {
        let spec = spec_for(&dist, s);
        let (compile_ms, cached_ms, artifact) = compile_and_reload(&spec, compile_runs);
        let plugin = Plugin::load(&runtime, spec.clone()).unwrap();
        let instantiate_us = mid((0..20)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(plugin.instantiate().unwrap());
                started.elapsed().as_secs_f64() * 1e6
            })
            .collect());
        println!(
            "| {} | {:.2} MB | {:.1} MB | {compile_ms:.0} ms | {cached_ms:.1} ms | {instantiate_us:.0} us |",
            s.component,
            std::fs::metadata(&spec.path).unwrap().len() as f64 / 1e6,
            artifact as f64 / 1e6,
        );
    }
}

/// Cold compile time (empty cache), then the time to load the cached artifact into a new
/// runtime, as a restarted host does; medians in ms, and the artifact's size.
fn compile_and_reload(spec: &PluginSpec, compile_runs: usize) -> (f64, f64, u64) {
    let cache: PathBuf =
        std::env::temp_dir().join(format!("sluice-bench-cold-{}", std::process::id()));
    let options = RuntimeOptions {
        cache_dir: Some(cache.clone()),
        ..RuntimeOptions::default()
    };
    let mut compiles = Vec::new();
    for _ in 0..compile_runs {
        let _ = std::fs::remove_dir_all(&cache);
        let runtime = Runtime::new(options.clone()).unwrap();
        let started = Instant::now();
        Plugin::load(&runtime, spec.clone()).unwrap();
        compiles.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let mut loads = Vec::new();
    for _ in 0..5 {
        let runtime = Runtime::new(options.clone()).unwrap();
        let started = Instant::now();
        Plugin::load(&runtime, spec.clone()).unwrap();
        loads.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let artifact = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let _ = std::fs::remove_dir_all(&cache);
    (mid(compiles), mid(loads), artifact)
}
