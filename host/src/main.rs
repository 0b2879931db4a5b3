use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use sluice::config::Pipeline;
use sluice::event;
use sluice::pipeline::{self, RunOptions};
use sluice::sinks::bigquery::schema::{DeriveOptions, SchemaBuilder, to_bq_json};
use sluice::telemetry::{Telemetry, server, top};
use sluice::transform::{PluginSpec, Record, Runtime, RuntimeOptions, StageOutput};
use tracing_subscriber::EnvFilter;

/// Sluice: streaming pipelines with sandboxed WebAssembly transforms.
#[derive(Parser)]
#[command(name = "host", version)]
struct Cli {
    /// More log output (repeat for more). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log lines as text, or as one JSON object per line for log shippers.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SLUICE_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline until its source ends (or SIGTERM/SIGINT, which drain), then print a
    /// summary. SIGHUP reloads the transforms from the file without stopping.
    Run {
        pipeline: PathBuf,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json_summary: bool,
        /// No progress line.
        #[arg(long)]
        quiet: bool,
        /// Serve /metrics, /health and /ready on this address (overrides
        /// `[runtime.metrics] listen`).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// A live table of a running host's stages (rates, drops, dead letters, batch latency,
    /// Kafka lag), read from its metrics endpoint.
    Top {
        /// The host's metrics address (`[runtime.metrics] listen`).
        #[arg(default_value = "127.0.0.1:9598")]
        addr: String,
        /// Time between refreshes.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Exit after this many refreshes.
        #[arg(short = 'n', long)]
        frames: Option<u64>,
    },
    /// Validate a pipeline file, load every plugin and run its `init`, without running.
    Check { pipeline: PathBuf },
    /// Derive a table schema from what leaves the transform chain, for review.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Tools for plugin authors.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Run a sample of the source through the chain and print the BigQuery schema (JSON, as
    /// `bq` takes it) that fits every record that came out. Nothing is written to the sinks.
    Bigquery {
        pipeline: PathBuf,
        /// Source records to sample.
        #[arg(long, default_value_t = 10_000)]
        sample: u64,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Run one plugin (or a chain, in order) over NDJSON on stdin; print one JSON line per
    /// input line: the records it became, or that it was dropped or dead-lettered and why.
    Run(PluginRun),
    /// Show what a component is before granting it anything: the world it targets, every
    /// import and the grant it needs, its exports, size, sha256, the toolchain that built it,
    /// and whether it starts under the default limits.
    Inspect {
        plugin: PathBuf,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a plugin against a test-vectors directory (the format of
    /// guest-plugins/vectors): a diff per failing case, a summary, exit status 1 on any
    /// failure.
    Test(PluginTest),
    /// Create a new plugin from a template that builds as it is: `build.sh`, a copy of the WIT
    /// world, and a README on building, trying and pinning it.
    New {
        /// The plugin's name (lowercase letters, digits, `-`, `_`).
        name: String,
        #[arg(long, value_enum)]
        lang: sluice::scaffold::Lang,
        /// Where to create the plugin's directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Make a component of a core WebAssembly module built against the `transform` world
    /// (C with clang and wasi-libc, Go with GOOS=wasip1): the WIT world is embedded unless the
    /// module carries it, and a module importing WASI preview1 gets the preview1 adapter.
    Componentize {
        module: PathBuf,
        /// Where to write the component.
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(Args)]
struct PluginRun {
    /// Plugin components, applied in order.
    #[arg(required = true)]
    plugins: Vec<PathBuf>,
    /// Plugin config as KEY=VALUE. With several plugins, prefix the key with the plugin's
    /// file stem: `keyword_filter.keywords=bts`.
    #[arg(short, long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// Records per plugin call.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    #[command(flatten)]
    sandbox: Sandbox,
}

#[derive(Args)]
struct PluginTest {
    plugin: PathBuf,
    /// The vectors directory: inputs.json, cases.json, expected/<case>.json.
    #[arg(long)]
    vectors: PathBuf,
    /// Which plugin of the vectors this is (default: the only one, or the one the file
    /// name starts with).
    #[arg(long = "plugin", value_name = "NAME")]
    name: Option<String>,
    #[command(flatten)]
    sandbox: Sandbox,
}

/// The limits and grants a plugin tool runs a plugin with.
#[derive(Args)]
struct Sandbox {
    /// Per-batch time budget.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Per-batch fuel budget.
    #[arg(long)]
    fuel: Option<u64>,
    /// Linear-memory cap in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mib: usize,
    /// Grants, named as in `[transforms.NAME.grants]`: wasi, clocks, stdio, env=NAME,
    /// dirs=GUEST=HOST (comma-separated or repeated). Each implies wasi.
    #[arg(long, value_delimiter = ',', value_name = "GRANT")]
    grant: Vec<String>,
    /// The same as `--grant wasi`.
    #[arg(long)]
    wasi: bool,
}

impl Sandbox {
    fn spec(&self, path: &Path) -> anyhow::Result<PluginSpec> {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let mut spec = PluginSpec::new(stem, path);
        spec.timeout = self.timeout;
        spec.fuel = self.fuel;
        spec.memory = self.memory_mib << 20;
        spec.grants.wasi = self.wasi;
        for grant in &self.grant {
            spec.grants
                .add(grant)
                .map_err(|e| anyhow::anyhow!("--grant {e}"))?;
        }
        Ok(spec)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.verbose {
        0 => "warn,sluice=info",
        1 => "info",
        _ => "debug",
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // Fields at the top level, next to `timestamp`, `level`, `target` and `message`.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run {
            pipeline,
            json_summary,
            quiet,
            metrics,
        } => run(&pipeline, json_summary, quiet, metrics),
        Command::Top {
            addr,
            interval,
            frames,
        } => tokio::runtime::Runtime::new()?.block_on(top::run(top::TopOptions {
            addr,
            interval,
            frames,
        })),
        Command::Check { pipeline } => check(&pipeline),
        Command::Schema(SchemaCommand::Bigquery { pipeline, sample }) => {
            schema_bigquery(&pipeline, sample)
        }
        Command::Plugin(PluginCommand::Run(args)) => plugin_run(args),
        Command::Plugin(PluginCommand::Inspect { plugin, json }) => {
            let runtime = Runtime::new(RuntimeOptions::default())?;
            let report = sluice::transform::inspect::inspect(&runtime, &plugin)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(())
        }
        Command::Plugin(PluginCommand::Test(args)) => plugin_test(args),
        Command::Plugin(PluginCommand::New { name, lang, dir }) => {
            let root = sluice::scaffold::new_plugin(&name, lang, &dir)?;
            print!("{}", sluice::scaffold::next_steps(lang, &name, &root));
            Ok(())
        }
        Command::Plugin(PluginCommand::Componentize { module, output }) => {
            let core =
                std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            let component = sluice_componentize::componentize(&core, sluice::event::wit::SOURCE)
                .with_context(|| format!("{}", module.display()))?;
            std::fs::write(&output, component)
                .with_context(|| format!("writing {}", output.display()))?;
            Ok(())
        }
    }
}

fn run(
    path: &Path,
    json_summary: bool,
    quiet: bool,
    metrics: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let pipeline = Pipeline::load(path)?;
    let telemetry = Telemetry::new(&pipeline.config.pipeline.name);
    let listen = metrics.or(pipeline.config.runtime.metrics.as_ref().map(|m| m.listen));
    let rt = tokio::runtime::Runtime::new()?;
    let summary = rt.block_on(async {
        if let Some(addr) = listen {
            // Up before the pipeline starts: /health answers, /ready says what is starting.
            let (bound, _) = server::serve(addr, telemetry.clone()).await?;
            tracing::info!("metrics, health and readiness on http://{bound}");
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (reload_tx, reload_rx) = tokio::sync::watch::channel(0u64);
        let drain_limit = pipeline.config.pipeline.shutdown_timeout;
        // Listening before the pipeline starts: from here on a signal drains, never kills.
        let mut signals = Signals::new()?;
        tokio::spawn(async move {
            let first = signals.next_stop(|| {
                tracing::info!("SIGHUP: reloading the transforms");
                reload_tx.send_modify(|n| *n += 1);
            });
            let first = first.await;
            tracing::warn!(
                "{first}: draining in-flight batches (at most {}; a second signal aborts)",
                humantime::format_duration(drain_limit)
            );
            let _ = stop_tx.send(true);
            // Exiting here skips every destructor: nothing more is committed, so what was
            // not delivered is read again by the next run.
            tokio::select! {
                second = signals.next_stop(|| {
                    tracing::warn!("SIGHUP while draining: not reloading");
                }) => {
                    eprintln!("{second} again: aborting the drain");
                    std::process::exit(128 + second.number());
                }
                _ = tokio::time::sleep(drain_limit) => {
                    eprintln!(
                        "error: the drain did not finish within pipeline.shutdown_timeout ({}); \
                         exiting without committing what was not delivered",
                        humantime::format_duration(drain_limit)
                    );
                    std::process::exit(EXIT_DRAIN_TIMEOUT);
                }
            }
        });
        let options = RunOptions {
            progress: !quiet,
            telemetry,
            reload: Some(reload_rx),
        };
        pipeline::run(&pipeline, options, stop_rx).await
    })?;
    if json_summary {
        println!("{}", serde_json::to_string(&summary)?);
    }
    eprintln!("{summary}");
    Ok(())
}

/// Exit code when the drain after a signal outlasts `pipeline.shutdown_timeout`.
const EXIT_DRAIN_TIMEOUT: i32 = 3;

/// The signals of a run: SIGINT (Ctrl-C) and SIGTERM (docker stop, systemd, Kubernetes)
/// stop it; SIGHUP reloads the transforms.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

#[derive(Clone, Copy)]
enum StopSignal {
    Interrupt,
    Terminate,
}

impl StopSignal {
    fn number(self) -> i32 {
        match self {
            StopSignal::Interrupt => 2,
            StopSignal::Terminate => 15,
        }
    }
}

impl std::fmt::Display for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        })
    }
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            hangup: signal(SignalKind::hangup()).context("listening for SIGHUP")?,
        })
    }

    /// The next stop signal; `on_hangup` runs for each SIGHUP before it.
    async fn next_stop(&mut self, on_hangup: impl Fn()) -> StopSignal {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return StopSignal::Interrupt,
                _ = self.terminate.recv() => return StopSignal::Terminate,
                _ = self.hangup.recv() => on_hangup(),
            }
        }
    }
}

fn check(path: &Path) -> anyhow::Result<()> {
    let pipeline = Pipeline::load(path)?;
    let runtime = Runtime::new(RuntimeOptions::from_config(
        &pipeline.config.runtime.plugins,
    ))?;
    let started = Instant::now();
    let chain = pipeline::load_chain(&runtime, &pipeline)?;
    // Within a runtime: a source may register with it.
    tokio::runtime::Runtime::new()?.block_on(async { pipeline::check_source(&pipeline) })?;
    println!("{}: ok", path.display());
    for stage in chain.stages() {
        println!(
            "  transform `{}`: loaded, init accepted its config",
            stage.name()
        );
    }
    println!(
        "  {} transform(s) ready in {:.0} ms; {} sink(s)",
        chain.stages().len(),
        started.elapsed().as_secs_f64() * 1e3,
        pipeline.config.sinks.len()
    );
    Ok(())
}

fn schema_bigquery(path: &Path, sample: u64) -> anyhow::Result<()> {
    let pipeline = Pipeline::load(path)?;
    let runtime = Runtime::new(RuntimeOptions::from_config(
        &pipeline.config.runtime.plugins,
    ))?;
    let mut chain = pipeline::load_chain(&runtime, &pipeline)?;
    let mut schema = SchemaBuilder::new(DeriveOptions::default());
    let (mut read, mut out) = (0u64, StageOutput::default());
    tokio::runtime::Runtime::new()?.block_on(async {
        let mut source =
            pipeline::open_source(&pipeline, &Telemetry::default(), &Default::default())?;
        while read < sample {
            let Some(batch) = source.next_batch().await? else {
                break;
            };
            read += batch.records.len() as u64;
            chain.process(batch.records, &mut out);
            for r in &out.records {
                if let Ok(v) = serde_json::from_slice::<Value>(&r.value) {
                    schema.add(&v);
                }
            }
        }
        anyhow::Ok(())
    })?;
    println!("{}", to_bq_json(&schema.fields()));
    eprintln!(
        "schema of {} record(s) out of {read} read from the source",
        schema.records()
    );
    Ok(())
}

fn plugin_run(args: PluginRun) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let mut specs: Vec<PluginSpec> = args
        .plugins
        .iter()
        .map(|p| args.sandbox.spec(p))
        .collect::<anyhow::Result<_>>()?;
    for kv in &args.config {
        let (key, value) = kv
            .split_once('=')
            .with_context(|| format!("--config {kv}: expected KEY=VALUE"))?;
        let target = match key.split_once('.') {
            Some((plugin, k)) if specs.iter().any(|s| s.name == plugin) => {
                specs.iter_mut().filter(|s| s.name == plugin).for_each(|s| {
                    s.config.push((k.to_string(), value.to_string()));
                });
                continue;
            }
            _ if specs.len() == 1 => &mut specs[0],
            _ => bail!("--config {kv}: with several plugins, prefix the key with a plugin name"),
        };
        target.config.push((key.to_string(), value.to_string()));
    }
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let mut chain = sluice::transform::chain::Chain::load(&runtime, specs)?;
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut lines = stdin.split(b'\n');
    let mut line_no = 0u64;
    let mut out = StageOutput::default();
    loop {
        let mut batch: Vec<Record> = Vec::with_capacity(args.batch_size);
        for line in lines.by_ref().take(args.batch_size) {
            let line = line?;
            batch.push(event::from_line(line.strip_suffix(b"\r").unwrap_or(&line)));
        }
        if batch.is_empty() {
            break;
        }
        let n = batch.len();
        chain.process(batch, &mut out);
        let mut per_input: Vec<Value> = (0..n)
            .map(|i| json!({ "line": line_no + i as u64 + 1, "outcome": "drop" }))
            .collect();
        for (r, &origin) in out.records.iter().zip(&out.origins) {
            let entry = &mut per_input[origin as usize];
            entry["outcome"] = "out".into();
            let value = serde_json::from_slice(&r.value)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.value).into_owned()));
            match entry.get_mut("records") {
                Some(Value::Array(v)) => v.push(value),
                _ => entry["records"] = json!([value]),
            }
        }
        for dl in &out.dead {
            let entry = &mut per_input[dl.origin as usize];
            entry["outcome"] = "dead-letter".into();
            entry["stage"] = (*dl.stage).into();
            entry["reason"] = dl.reason.clone().into();
        }
        for entry in per_input {
            serde_json::to_writer(&mut stdout, &entry)?;
            stdout.write_all(b"\n")?;
        }
        line_no += n as u64;
    }
    stdout.flush()?;
    Ok(())
}

fn plugin_test(args: PluginTest) -> anyhow::Result<()> {
    let vectors = sluice::transform::vectors::Vectors::load(&args.vectors)?;
    let name = sluice::plugin_test::plugin_name(&vectors, &args.plugin, args.name.as_deref())?;
    let spec = args.sandbox.spec(&args.plugin)?;
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let mut stdout = std::io::stdout().lock();
    let summary = sluice::plugin_test::run(&runtime, &spec, &vectors, name, &mut stdout)?;
    if summary.failed > 0 {
        bail!(
            "{} of {} checks failed",
            summary.failed,
            summary.failed + summary.passed
        );
    }
    Ok(())
}
