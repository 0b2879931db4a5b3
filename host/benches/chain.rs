//! The three-plugin chain of pipeline.toml (keyword-filter -> field-prune -> enrich) in WASM
//! versus the same library compiled natively, on the same generated tweets, in one run.
//!
//! `cargo xtask bench` (builds the plugins first). Prints a Markdown table: per-record cost at
//! batch sizes 1, 100 and 1000, and at 1000 the cost of the sandbox options; then the chain on
//! one worker thread against one per core. Every figure is the median of several runs; ratios
//! are against a baseline measured in the same run.
//! `BENCH_RECORDS` and `BENCH_RUNS` change the size.

use std::path::Path;
use std::time::{Duration, Instant};

use sluice::config::Pipeline;
use sluice::sources::SourceConfig;
use sluice::transform::chain::Chain;
use sluice::transform::{Plugin, PluginSpec, Record, Runtime, RuntimeOptions, StageOutput};
use sluice_transforms::{Enrich, FieldPrune, KeywordFilter, Outcome, Transform};
use tweetgen::{GenerateOptions, TweetGenerator};

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
        SourceConfig::Generate(g) => g.tweets.clone(),
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
    let mut native_chain = || timed(|| std::hint::black_box(native.run(&records)));

    // A call per batch, so that the batch column is the call size.
    let defaults = RuntimeOptions {
        cache_dir: None,
        max_call_bytes: usize::MAX,
        ..RuntimeOptions::default()
    };
    let no_deadline = RuntimeOptions {
        deadlines: false,
        ..defaults.clone()
    };
    let fueled: Vec<PluginSpec> = specs
        .iter()
        .cloned()
        .map(|mut s| {
            s.fuel = Some(u64::MAX / 2);
            s
        })
        .collect();
    // The boundary alone: a plugin that keeps every record without looking at it.
    let mut pass = PluginSpec::new("pass-through", root.join("tests/plugins/dist/hostile.wasm"));
    pass.config = vec![("mode".into(), "pass".into())];

    let mut rows = Vec::new();
    let mut native_again = native_chain;
    let (ns, _) = paired(runs, n, &mut native_chain, &mut native_again);
    rows.push(Row::new("native Rust (same library)", "-", ns, 1.0));
    let variants: [(&str, &RuntimeOptions, &[PluginSpec], usize, usize); 6] = [
        (
            "WASM chain (deadline + memory cap)",
            &defaults,
            &specs,
            1,
            expected_out,
        ),
        (
            "WASM chain (deadline + memory cap)",
            &defaults,
            &specs,
            100,
            expected_out,
        ),
        (
            "WASM chain (deadline + memory cap)",
            &defaults,
            &specs,
            1000,
            expected_out,
        ),
        (
            "WASM chain, no deadline (memory cap only)",
            &no_deadline,
            &specs,
            1000,
            expected_out,
        ),
        (
            "WASM chain + fuel metering",
            &defaults,
            &fueled,
            1000,
            expected_out,
        ),
        (
            "pass-through plugin (boundary cost only)",
            &defaults,
            std::slice::from_ref(&pass),
            1000,
            n,
        ),
    ];
    for (name, options, chain_specs, batch, expected) in variants {
        let mut wasm = wasm_sampler(options, chain_specs, &records, batch, 1, expected);
        let (ns, ratio) = paired(runs, n, &mut native_chain, &mut wasm);
        rows.push(Row::new(name, &batch.to_string(), ns, ratio));
    }

    // Each plugin alone over every record, to show where the time goes.
    for (i, spec) in specs.iter().enumerate() {
        let mut native_one = || {
            timed(|| {
                for r in &records {
                    std::hint::black_box(native.step(i, &r.value));
                }
            })
        };
        let expected = records
            .iter()
            .filter(|r| !matches!(native.step(i, &r.value), Outcome::Drop | Outcome::Fail(_)))
            .count();
        let mut wasm = wasm_sampler(
            &defaults,
            std::slice::from_ref(spec),
            &records,
            1000,
            1,
            expected,
        );
        let mut native_again = native_one;
        let (native_ns, _) = paired(runs, n, &mut native_one, &mut native_again);
        let (ns, ratio) = paired(runs, n, &mut native_one, &mut wasm);
        rows.push(Row::new(
            &format!("{} alone: native", spec.name),
            "-",
            native_ns,
            1.0,
        ));
        rows.push(Row::new(
            &format!("{} alone: WASM", spec.name),
            "1000",
            ns,
            ratio,
        ));
    }

    // Chain workers: the same chain on one thread and on one per core, each with its own
    // plugin instances, no I/O beside them.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let mut one = wasm_sampler(&defaults, &specs, &records, 1000, 1, expected_out);
    let mut many = wasm_sampler(&defaults, &specs, &records, 1000, cores, expected_out);
    let mut one_again = wasm_sampler(&defaults, &specs, &records, 1000, 1, expected_out);
    let (one_ns, _) = paired(runs, n, &mut one, &mut one_again);
    let (many_ns, many_ratio) = paired(runs, n, &mut one, &mut many);

    let start_rows = startup_costs(&specs, runs);

    println!(
        "\n{n} generated tweets ({:.1} KB average, seed {}), {} of them kept by the chain; medians of {runs} paired runs (native and WASM alternate)\n",
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
    println!(
        "\n| WASM chain workers (batch 1000, deadline + memory cap) | per record | records/s | vs 1 worker |"
    );
    println!("|---|---:|---:|---:|");
    for (workers, ns, speedup) in [(1, one_ns, 1.0), (cores, many_ns, 1.0 / many_ratio)] {
        println!(
            "| {workers} | {:.2} us | {:.0} | {speedup:.2}x |",
            ns / 1e3,
            1e9 / ns
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
    fn new(name: &str, batch: &str, ns: f64, ratio: f64) -> Self {
        Self {
            name: name.into(),
            batch: batch.into(),
            ns,
            ratio,
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

fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    std::hint::black_box(f());
    t.elapsed()
}

/// Runs `baseline` and `subject` alternately `runs` times (after a warm-up of each), so both
/// see the same machine load. Returns the median nanoseconds per record of `subject` and the
/// median of the per-run ratios subject / baseline.
fn paired(
    runs: usize,
    n: usize,
    baseline: &mut dyn FnMut() -> Duration,
    subject: &mut dyn FnMut() -> Duration,
) -> (f64, f64) {
    baseline();
    subject();
    let mut times = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..runs.max(1) {
        let b = baseline().as_secs_f64();
        let s = subject().as_secs_f64();
        times.push(s * 1e9 / n as f64);
        ratios.push(s / b);
    }
    (median(times), median(ratios))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A closure that runs every record through the WASM chain in batches of `batch` on `workers`
/// threads, as the pipeline's chain workers do: each thread its own plugin instances, the
/// batches dealt out in turn. It returns the time until every thread is done. Batches are
/// copied outside the timed region: the host owns its input.
fn wasm_sampler<'a>(
    options: &RuntimeOptions,
    specs: &[PluginSpec],
    records: &'a [Record],
    batch: usize,
    workers: usize,
    expected: usize,
) -> impl FnMut() -> Duration + 'a {
    let runtime = Runtime::new(options.clone()).unwrap();
    let mut chains: Vec<Chain> = (0..workers)
        .map(|_| Chain::load(&runtime, specs.to_vec()).unwrap())
        .collect();
    move || {
        let _keep_engine_alive = &runtime;
        let mut shares: Vec<Vec<Vec<Record>>> = vec![Vec::new(); workers];
        for (i, b) in records.chunks(batch).enumerate() {
            shares[i % workers].push(b.to_vec());
        }
        let t = Instant::now();
        let kept: usize = std::thread::scope(|scope| {
            let threads: Vec<_> = chains
                .iter_mut()
                .zip(shares)
                .map(|(chain, share)| {
                    scope.spawn(move || {
                        let mut out = StageOutput::default();
                        let mut kept = 0;
                        for b in share {
                            chain.process(b, &mut out);
                            kept += out.records.len();
                            assert!(out.dead.is_empty(), "{:?}", out.dead[0].reason);
                        }
                        kept
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).sum()
        });
        let elapsed = t.elapsed();
        assert_eq!(kept, expected, "WASM and native chains disagree");
        elapsed
    }
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
