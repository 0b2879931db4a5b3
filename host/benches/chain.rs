//! The three-plugin chain of pipeline.toml (keyword-filter -> field-prune -> enrich) in WASM
//! versus the same library compiled natively, on the same generated tweets, in one run.
//!
//! `cargo xtask bench` (builds the plugins first). Prints a Markdown table: per-record cost at
//! batch sizes 1, 100 and 1000, and at 1000 the cost of the sandbox options. Every figure is the
//! median of several runs; ratios are against the native median of the same run.
//! `BENCH_RECORDS` and `BENCH_RUNS` change the size.

use std::path::Path;
use std::time::{Duration, Instant};

use sluice::chain::Chain;
use sluice::config::{Pipeline, SourceConfig};
use sluice::generate::{GenerateOptions, TweetGenerator};
use sluice::wasm::{Plugin, PluginSpec, Record, Runtime, RuntimeOptions, StageOutput};
use sluice_transforms::{Enrich, FieldPrune, KeywordFilter, Outcome, Transform};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let pipeline = Pipeline::load(&root.join("pipeline.toml")).expect("pipeline.toml");
    let n = env_or("BENCH_RECORDS", 20_000);
    let runs = env_or("BENCH_RUNS", 5);
    let tweets = match &pipeline.config.source {
        SourceConfig::Generate { tweets, .. } => tweets.clone(),
        _ => GenerateOptions::default(),
    };
    let records = generate(&tweets, n);
    let bytes: usize = records.iter().map(|r| r.value.len()).sum();
    let specs: Vec<PluginSpec> = pipeline
        .chain()
        .map(|(name, t)| PluginSpec::from_config(name, t, |p| pipeline.resolve(p)))
        .collect();

    let native = NativeChain::new(&specs);
    let expected_out = native.run(&records);
    let native_ns = median_ns(runs, n, || {
        std::hint::black_box(native.run(&records));
    });

    let mut rows = vec![Row::new(
        "native Rust (same library)",
        "-",
        native_ns,
        native_ns,
    )];
    let defaults = RuntimeOptions {
        cache_dir: None,
        ..RuntimeOptions::default()
    };
    for batch in [1, 100, 1000] {
        let ns = wasm_ns(&defaults, &specs, &records, batch, runs, expected_out);
        rows.push(Row::new(
            "WASM chain (deadline + memory cap)",
            &batch.to_string(),
            ns,
            native_ns,
        ));
    }
    let no_deadline = RuntimeOptions {
        deadlines: false,
        ..defaults.clone()
    };
    let ns = wasm_ns(&no_deadline, &specs, &records, 1000, runs, expected_out);
    rows.push(Row::new(
        "WASM chain, no deadline (memory cap only)",
        "1000",
        ns,
        native_ns,
    ));
    let fueled: Vec<PluginSpec> = specs
        .iter()
        .cloned()
        .map(|mut s| {
            s.fuel = Some(u64::MAX / 2);
            s
        })
        .collect();
    let ns = wasm_ns(&defaults, &fueled, &records, 1000, runs, expected_out);
    rows.push(Row::new(
        "WASM chain + fuel metering",
        "1000",
        ns,
        native_ns,
    ));

    // The boundary alone: a plugin that keeps every record without looking at it.
    let mut pass = PluginSpec::new("pass-through", root.join("tests/plugins/dist/hostile.wasm"));
    pass.config = vec![("mode".into(), "pass".into())];
    let ns = wasm_ns(&defaults, &[pass], &records, 1000, runs, n);
    rows.push(Row::new(
        "pass-through plugin (boundary cost only)",
        "1000",
        ns,
        native_ns,
    ));

    // Each plugin alone over every record, to show where the time goes.
    for (i, spec) in specs.iter().enumerate() {
        let one = std::slice::from_ref(spec);
        let native_one = median_ns(runs, n, || {
            for r in &records {
                std::hint::black_box(native.step(i, &r.value));
            }
        });
        let expected = records
            .iter()
            .filter(|r| !matches!(native.step(i, &r.value), Outcome::Drop | Outcome::Fail(_)))
            .count();
        rows.push(Row::new(
            &format!("{} alone: native", spec.name),
            "-",
            native_one,
            native_one,
        ));
        let ns = wasm_ns(&defaults, one, &records, 1000, runs, expected);
        rows.push(Row::new(
            &format!("{} alone: WASM", spec.name),
            "1000",
            ns,
            native_one,
        ));
    }

    let start_rows = startup_costs(&specs, runs);

    println!(
        "\n{n} generated tweets ({:.1} KB average, seed {}), {} of them kept by the chain; median of {runs} runs\n",
        bytes as f64 / n as f64 / 1e3,
        tweets.seed,
        expected_out
    );
    println!("| chain | batch | per record | records/s | vs native |");
    println!("|---|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.2} us | {:.0} | {:.2}x |",
            r.name,
            r.batch,
            r.ns / 1e3,
            1e9 / r.ns,
            r.ratio
        );
    }
    println!("\n| plugin | compile (cold) | load from cache | instantiate + init |");
    println!("|---|---:|---:|---:|");
    for (name, compile, cached, instantiate) in start_rows {
        println!("| {name} | {compile:.1} ms | {cached:.2} ms | {instantiate:.0} us |");
    }
}

/// Start-up costs per plugin: compiling, loading the cached artifact, and a fresh instance
/// (what failure isolation and recycling pay). Medians in ms, ms and us.
fn startup_costs(specs: &[PluginSpec], runs: usize) -> Vec<(String, f64, f64, f64)> {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let runs = runs.max(3);
    specs
        .iter()
        .map(|spec| {
            let cache =
                std::env::temp_dir().join(format!("sluice-bench-cache-{}", std::process::id()));
            let mut compile = Vec::new();
            let mut cached = Vec::new();
            for _ in 0..runs {
                let _ = std::fs::remove_dir_all(&cache);
                let options = RuntimeOptions {
                    cache_dir: Some(cache.clone()),
                    ..RuntimeOptions::default()
                };
                let rt = Runtime::new(options.clone()).unwrap();
                let t = Instant::now();
                Plugin::load(&rt, spec.clone()).unwrap();
                compile.push(t.elapsed().as_secs_f64() * 1e3);
                let rt = Runtime::new(options).unwrap();
                let t = Instant::now();
                Plugin::load(&rt, spec.clone()).unwrap();
                cached.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let _ = std::fs::remove_dir_all(&cache);
            let rt = Runtime::new(RuntimeOptions::default()).unwrap();
            let plugin = Plugin::load(&rt, spec.clone()).unwrap();
            let instantiate: Vec<f64> = (0..100)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(plugin.instantiate().unwrap());
                    t.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            (
                spec.name.clone(),
                median(compile),
                median(cached),
                median(instantiate),
            )
        })
        .collect()
}

struct Row {
    name: String,
    batch: String,
    ns: f64,
    ratio: f64,
}

impl Row {
    fn new(name: &str, batch: &str, ns: f64, native: f64) -> Self {
        Self {
            name: name.into(),
            batch: batch.into(),
            ns,
            ratio: ns / native,
        }
    }
}

fn generate(opts: &GenerateOptions, n: usize) -> Vec<Record> {
    let mut generator = TweetGenerator::new(opts);
    let mut buf = Vec::new();
    (0..n)
        .map(|_| {
            let meta = generator.next_into(&mut buf);
            Record {
                key: Some(meta.id.to_string().into_bytes()),
                value: buf.clone(),
                headers: Vec::new(),
                timestamp: Some(meta.created_at_ms),
            }
        })
        .collect()
}

/// Median nanoseconds per record of `runs` runs of `f` over `n` records (after one warm-up).
fn median_ns(runs: usize, n: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<Duration> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2].as_nanos() as f64 / n as f64
}

fn wasm_ns(
    options: &RuntimeOptions,
    specs: &[PluginSpec],
    records: &[Record],
    batch: usize,
    runs: usize,
    expected: usize,
) -> f64 {
    let runtime = Runtime::new(options.clone()).unwrap();
    let mut chain = Chain::load(&runtime, specs.to_vec()).unwrap();
    let mut out = StageOutput::default();
    let mut sample = || {
        // Batches are cut from copies made outside the timed region: the host owns its input.
        let batches: Vec<Vec<Record>> = records.chunks(batch).map(|c| c.to_vec()).collect();
        let t = Instant::now();
        let mut kept = 0;
        for b in batches {
            chain.process(b, &mut out);
            kept += out.records.len();
            assert!(out.dead.is_empty(), "{:?}", out.dead[0].reason);
        }
        assert_eq!(kept, expected, "WASM and native chains disagree");
        t.elapsed()
    };
    sample();
    let mut times: Vec<Duration> = (0..runs.max(1)).map(|_| sample()).collect();
    times.sort();
    times[times.len() / 2].as_nanos() as f64 / records.len() as f64
}

/// The same three transforms, called directly.
struct NativeChain {
    filter: KeywordFilter,
    prune: FieldPrune,
    enrich: Enrich,
}

impl NativeChain {
    fn new(specs: &[PluginSpec]) -> Self {
        let config = |i: usize| specs[i].config.clone();
        Self {
            filter: KeywordFilter::from_config(&config(0)).unwrap(),
            prune: FieldPrune::from_config(&config(1)).unwrap(),
            enrich: Enrich::from_config(&config(2)).unwrap(),
        }
    }

    fn step(&self, i: usize, value: &[u8]) -> Outcome {
        match i {
            0 => self.filter.apply(value),
            1 => self.prune.apply(value),
            _ => self.enrich.apply(value),
        }
    }

    /// Runs every record through the chain; returns how many came out.
    fn run(&self, records: &[Record]) -> usize {
        let mut kept = 0;
        for r in records {
            let mut value: Option<Vec<u8>> = None;
            let mut dropped = false;
            for i in 0..3 {
                match self.step(i, value.as_deref().unwrap_or(&r.value)) {
                    Outcome::Keep => {}
                    Outcome::SetValue(v) => value = Some(v),
                    Outcome::Drop | Outcome::Fail(_) => {
                        dropped = true;
                        break;
                    }
                }
            }
            if !dropped {
                std::hint::black_box(&value);
                kept += 1;
            }
        }
        kept
    }
}
