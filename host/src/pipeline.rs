//! Runs a pipeline: source -> chain of plugins -> sinks, over bounded queues.
//!
//! The source and the sinks are async tasks; the chain runs on `pipeline.workers` threads of
//! its own, because plugin calls are CPU-bound and synchronous. The source deals batches to
//! the workers in turn and the sinks take them back in the same turn, so batches reach the
//! sinks in source order whichever worker finishes first. Queues hold at most
//! `pipeline.queue_batches` batches, so a slow sink slows the source instead of filling memory.
//!
//! A batch is acknowledged to the source (a Kafka offset committed) once every sink and the
//! dead letter hold its records durably. Most sinks do by the time `write` returns; a GCS sink
//! holds records until their object is uploaded (and loaded), so batches wait, in order, until
//! no sink holds any of their records.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::config::Pipeline;
use crate::event::{Checkpoint, DeadLetter, Ownership, Positions, Record, StageOutput};
use crate::sinks::dead_letter::DeadLetterSink;
use crate::sinks::{Sink, SinkContext};
use crate::sources::{Batch, Source, SourceContext};
use crate::telemetry::{StageMetrics, Telemetry};
use crate::transform::chain::Chain;
use crate::transform::{PluginSpec, Runtime, RuntimeOptions};

/// Counters shared by the stages, read by the progress line and the summary.
#[derive(Debug, Default)]
pub struct Stats {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub dropped: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub batches: AtomicU64,
}

/// What a finished run did.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub pipeline: String,
    pub records_in: u64,
    pub records_out: u64,
    pub dropped: u64,
    pub dead_lettered: u64,
    pub batches: u64,
    /// Chain workers that ran.
    pub workers: usize,
    pub seconds: f64,
    pub records_per_second: f64,
    /// Plugin instances re-created after a failure or recycling, per transform.
    pub restarts: Vec<(String, u64)>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} in, {} out, {} dropped, {} dead-lettered in {:.2}s ({:.0} records/s)",
            self.pipeline,
            self.records_in,
            self.records_out,
            self.dropped,
            self.dead_lettered,
            self.seconds,
            self.records_per_second
        )
    }
}

/// Options of one run that are not in pipeline.toml.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Print a progress line to stderr (only shown on a terminal).
    pub progress: bool,
    /// Where every stage reports its metrics and readiness.
    pub telemetry: Telemetry,
    /// Each change asks for the transforms to be reloaded from the pipeline file (SIGHUP).
    pub reload: Option<watch::Receiver<u64>>,
}

/// Loads every plugin of the pipeline's chain and runs each one's `init`.
pub fn load_chain(runtime: &Runtime, p: &Pipeline) -> anyhow::Result<Chain> {
    let specs = p
        .chain()
        .map(|(name, t)| PluginSpec::from_config(name, t, |path| p.resolve(path)))
        .collect();
    Chain::load(runtime, specs).with_context(|| format!("in {}", p.file.display()))
}

/// The pipeline's chain for each of `workers` workers: the plugins compiled once, each
/// worker with instances of its own, all reporting to the same counters.
fn load_chains(
    runtime: &Runtime,
    p: &Pipeline,
    workers: usize,
    telemetry: &Telemetry,
) -> anyhow::Result<Vec<Chain>> {
    let mut first = load_chain(runtime, p)?;
    first.observe(telemetry);
    let mut chains = Vec::with_capacity(workers);
    for _ in 1..workers {
        chains.push(
            first
                .replicate()
                .with_context(|| format!("in {}", p.file.display()))?,
        );
    }
    chains.insert(0, first);
    Ok(chains)
}

fn source_context(p: &Pipeline, telemetry: &Telemetry, ownership: &Ownership) -> SourceContext {
    SourceContext {
        batch_size: p.config.pipeline.batch_size,
        batch_timeout: p.config.pipeline.batch_timeout,
        base_dir: p.base_dir(),
        telemetry: telemetry.clone(),
        ownership: ownership.clone(),
    }
}

/// The source, not yet connected. It keeps `ownership` up to date for the sinks.
pub fn open_source(
    p: &Pipeline,
    telemetry: &Telemetry,
    ownership: &Ownership,
) -> anyhow::Result<Box<dyn Source>> {
    let cx = source_context(p, telemetry, ownership);
    p.config
        .source
        .settings()
        .open(&cx)
        .map_err(|e| p.explain("source", e))
}

/// `host check` of the source: no secrets read, no connection made.
pub fn check_source(p: &Pipeline) -> anyhow::Result<()> {
    let cx = source_context(p, &Telemetry::default(), &Ownership::default());
    p.config
        .source
        .settings()
        .check(&cx)
        .map_err(|e| p.explain("source", e))
}

/// Every sink, connected, with the stage (`sinks.NAME`) named in its dead letters.
pub async fn open_sinks(
    p: &Pipeline,
    telemetry: &Telemetry,
    ownership: &Ownership,
) -> anyhow::Result<Vec<(Arc<str>, Box<dyn Sink>)>> {
    let mut sinks = Vec::new();
    for (name, sink) in &p.config.sinks {
        let table = format!("sinks.{name}");
        let cx = SinkContext {
            stage: Arc::from(table.as_str()),
            base_dir: p.base_dir(),
            telemetry: telemetry.clone(),
            ownership: ownership.clone(),
        };
        let opened = sink
            .settings()
            .open(&cx)
            .await
            .map_err(|e| p.explain(&table, e))?;
        sinks.push((cx.stage, opened));
    }
    Ok(sinks)
}

/// The dead-letter destination.
pub async fn open_dead_letter(
    p: &Pipeline,
    telemetry: &Telemetry,
) -> anyhow::Result<DeadLetterSink> {
    // Transform name -> plugin file, for the Kafka dead letter's `sluice.plugin` header.
    let plugins = p
        .config
        .transforms
        .iter()
        .map(|(name, t)| {
            let file = t.plugin.file_name().unwrap_or(t.plugin.as_os_str());
            (name.clone(), file.to_string_lossy().into_owned())
        })
        .collect();
    let cx = SinkContext {
        stage: Arc::from("dead_letter"),
        base_dir: p.base_dir(),
        telemetry: telemetry.clone(),
        ownership: Ownership::default(),
    };
    p.config
        .dead_letter
        .open(&cx, plugins)
        .await
        .map_err(|e| p.explain("dead_letter", e))
}

/// Runs `pipeline` until its source ends or `shutdown` turns true; then drains and flushes.
pub async fn run(
    pipeline: &Pipeline,
    options: RunOptions,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Summary> {
    let cfg = &pipeline.config;
    let telemetry = options.telemetry.clone();
    let running = telemetry.readiness("pipeline", "starting: loading plugins, connecting");
    let runtime = Runtime::new(RuntimeOptions::from_config(&cfg.runtime.plugins))?;
    let workers = cfg.workers();
    telemetry.chain_workers().set(workers as i64);
    let chains = load_chains(&runtime, pipeline, workers, &telemetry)?;
    let source_metrics = telemetry.stage("source");
    let ownership = Ownership::default();
    let mut source = open_source(pipeline, &telemetry, &ownership)?;
    let mut sinks = open_sinks(pipeline, &telemetry, &ownership).await?;
    let mut dead_letter = open_dead_letter(pipeline, &telemetry).await?;
    let sink_metrics: Vec<StageMetrics> = sinks.iter().map(|(s, _)| telemetry.stage(s)).collect();
    let dead_letter_metrics = telemetry.stage("dead_letter");
    let to_chain = telemetry.queue("source_to_chain");
    let to_sinks = telemetry.queue("chain_to_sinks");
    // Reloaded chains (one per worker) wait here until the source task hands them out.
    let (swap_tx, mut swap_rx) = mpsc::channel::<Vec<Chain>>(1);
    let reloader = options.reload.clone().map(|requests| {
        tokio::spawn(reload_on_request(
            requests,
            runtime.clone(),
            pipeline.file.clone(),
            workers,
            telemetry.clone(),
            swap_tx,
        ))
    });
    running.ready();

    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    // Each worker's queues hold its share of `queue_batches`: at most 2 * queue_batches
    // (rounded up to a multiple of the workers) + workers + 2 batches are in flight, plus
    // those a sink holds (a GCS object's worth).
    let queue = cfg.pipeline.queue_batches.div_ceil(workers);
    let max_record = cfg.pipeline.max_record_bytes.as_u64() as usize;
    let (batch_txs, mut out_rxs, worker_threads) =
        spawn_workers(chains, queue, max_record, &telemetry)?;
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Checkpoint>();

    // Input that cannot be re-read is numbered per run, under a name no other run uses.
    let run_stream: Arc<str> = format!(
        "{}-{}",
        cfg.pipeline.name,
        chrono::Utc::now().timestamp_millis()
    )
    .into();
    let source_stats = stats.clone();
    let source_task = tokio::spawn(async move {
        let mut numbered = 0u64;
        // Batch k goes to worker k % workers, so the sinks take them back in that order.
        let mut dispatched = 0usize;
        // A reloaded chain per worker, each taken with the worker's next batch: every batch
        // from the first one after the reload on runs the new chain.
        let mut reloaded: Vec<Option<Chain>> = Vec::new();
        loop {
            // Commit what the sinks have acknowledged before fetching more.
            while let Ok(checkpoint) = ack_rx.try_recv() {
                source.commit(checkpoint).await?;
            }
            let batch = tokio::select! {
                b = source.next_batch() => b?,
                _ = shutdown.wait_for(|stop| *stop) => {
                    running.not_ready("draining after a stop signal");
                    None
                }
            };
            let Some(mut batch) = batch else { break };
            if batch.positions.is_none() {
                let len = batch.records.len() as u64;
                batch.positions = Some(Positions::Sequence {
                    stream: run_stream.clone(),
                    first: numbered,
                    len,
                });
                numbered += len;
            }
            if batch.records.is_empty() {
                source.commit(batch.checkpoint).await?;
                continue;
            }
            source_stats
                .records_in
                .fetch_add(batch.records.len() as u64, Relaxed);
            // A source passes on what it reads.
            let (n, bytes) = (batch.records.len() as u64, value_bytes(&batch.records));
            for (records, b) in [
                (&source_metrics.records_in, &source_metrics.bytes_in),
                (&source_metrics.records_out, &source_metrics.bytes_out),
            ] {
                records.inc_by(n);
                b.inc_by(bytes);
            }
            if let Ok(chains) = swap_rx.try_recv() {
                reloaded = chains.into_iter().map(Some).collect();
                tracing::info!("reloaded transforms in use from this batch on");
            }
            let worker = dispatched % batch_txs.len();
            dispatched += 1;
            let chain = reloaded.get_mut(worker).and_then(Option::take);
            // Commits go on while the worker is busy: a stalled batch holds back the batches
            // after it, not the commits of those before it.
            let permit = loop {
                tokio::select! {
                    permit = batch_txs[worker].reserve() => break permit.ok(),
                    Some(checkpoint) = ack_rx.recv() => source.commit(checkpoint).await?,
                }
            };
            let Some(permit) = permit else { break };
            // Counted before it is sent, so that the worker's decrement cannot come first.
            to_chain.inc();
            permit.send((batch, chain));
        }
        drop(batch_txs);
        // Drain: commit every batch the sinks acknowledge until they are done.
        while let Some(checkpoint) = ack_rx.recv().await {
            source.commit(checkpoint).await?;
        }
        anyhow::Ok(())
    });

    let progress = (options.progress && std::io::stderr().is_terminal()).then(|| {
        tokio::spawn(print_progress(
            stats.clone(),
            cfg.pipeline.progress_interval,
        ))
    });

    // Delivered batches, oldest first, with the last position of each input stream they hold;
    // each is acknowledged once no sink still holds any of its records.
    let mut held: VecDeque<Held> = VecDeque::new();
    let mut sink_result = anyhow::Ok(());
    // The worker whose output is the next batch in source order.
    let mut turn = 0;
    loop {
        // Sinks that rotate by age are woken even when no batch arrives.
        let wake = sinks
            .iter()
            .filter_map(|(_, s)| s.next_deadline())
            .min()
            .map(tokio::time::Instant::from_std);
        let next = tokio::select! {
            m = out_rxs[turn].recv() => m,
            _ = tokio::time::sleep_until(wake.unwrap_or_else(far_future)), if wake.is_some() => {
                let ticked = async {
                    for (stage, sink) in sinks.iter_mut() {
                        sink.tick().await.with_context(|| format!("`{stage}`"))?;
                    }
                    anyhow::Ok(())
                }
                .await;
                if let Err(e) = ticked {
                    sink_result = Err(e);
                    break;
                }
                if let Err(e) = dead_letter_from_sinks(&mut sinks, &sink_metrics, &mut dead_letter, &dead_letter_metrics, &stats).await {
                    sink_result = Err(e);
                    break;
                }
                release(&mut held, &sinks, &ack_tx);
                continue;
            }
        };
        // Workers' inputs close together, so the first one to end in turn ends the stream.
        let Some((out, checkpoint, positions)) = next else {
            break;
        };
        turn = (turn + 1) % out_rxs.len();
        to_sinks.dec();
        let delivered = deliver(
            &out,
            &positions,
            &mut sinks,
            &sink_metrics,
            &mut dead_letter,
            &dead_letter_metrics,
        )
        .await;
        let refused = match delivered {
            Ok(n) => n,
            Err(e) => {
                sink_result = Err(e);
                break;
            }
        };
        // A record a sink refused is counted as dead-lettered, not out, so that
        // in = out + dropped + dead-lettered holds (exactly, with one sink).
        stats
            .records_out
            .fetch_add(out.records.len().saturating_sub(refused) as u64, Relaxed);
        stats.dropped.fetch_add(out.dropped, Relaxed);
        stats
            .dead_lettered
            .fetch_add((out.dead.len() + refused) as u64, Relaxed);
        stats.batches.fetch_add(1, Relaxed);
        if let Err(e) = dead_letter_from_sinks(
            &mut sinks,
            &sink_metrics,
            &mut dead_letter,
            &dead_letter_metrics,
            &stats,
        )
        .await
        {
            sink_result = Err(e);
            break;
        }
        let streams = positions.streams();
        let ranges = positions
            .ranges()
            .into_iter()
            .map(|(s, _, last)| (streams[s].clone(), last))
            .collect();
        held.push_back((checkpoint, ranges));
        release(&mut held, &sinks, &ack_tx);
    }
    if sink_result.is_ok() {
        // The source is done: deliver what sinks still hold, then acknowledge the rest.
        sink_result = async {
            for (stage, sink) in sinks.iter_mut() {
                sink.finish().await.with_context(|| stage.to_string())?;
            }
            dead_letter_from_sinks(
                &mut sinks,
                &sink_metrics,
                &mut dead_letter,
                &dead_letter_metrics,
                &stats,
            )
            .await?;
            release(&mut held, &sinks, &ack_tx);
            anyhow::ensure!(
                held.is_empty(),
                "a sink still holds records after finishing"
            );
            Ok(())
        }
        .await;
    }
    drop(out_rxs);
    drop(ack_tx);
    if let Some(r) = reloader {
        r.abort();
    }
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[2K");
    }
    sink_result?;
    source_task.await.context("source task panicked")??;
    // Plugin instances re-created, per transform, summed over the workers.
    let mut restarts: Vec<(String, u64)> = Vec::new();
    for worker in worker_threads {
        let counts = worker
            .join()
            .map_err(|_| anyhow::anyhow!("a chain worker panicked"))?;
        for (i, (name, n)) in counts.into_iter().enumerate() {
            match restarts.get_mut(i) {
                Some((_, sum)) => *sum += n,
                None => restarts.push((name, n)),
            }
        }
    }

    let seconds = started.elapsed().as_secs_f64();
    let records_in = stats.records_in.load(Relaxed);
    Ok(Summary {
        pipeline: cfg.pipeline.name.clone(),
        records_in,
        records_out: stats.records_out.load(Relaxed),
        dropped: stats.dropped.load(Relaxed),
        dead_lettered: stats.dead_lettered.load(Relaxed),
        batches: stats.batches.load(Relaxed),
        workers,
        seconds,
        records_per_second: records_in as f64 / seconds.max(1e-9),
        restarts,
    })
}

/// A batch for a chain worker, with the chain to switch to first after a reload.
type Work = (Batch, Option<Chain>);
/// A batch through the chain, for the sinks.
type Done = (StageOutput, Checkpoint, Positions);

/// Starts a thread per chain (plugin calls are CPU-bound and synchronous), each fed by a
/// queue of `queue` batches and feeding one. A worker returns its stages' restart counts.
#[allow(clippy::type_complexity)]
fn spawn_workers(
    chains: Vec<Chain>,
    queue: usize,
    max_record: usize,
    telemetry: &Telemetry,
) -> anyhow::Result<(
    Vec<mpsc::Sender<Work>>,
    Vec<mpsc::Receiver<Done>>,
    Vec<std::thread::JoinHandle<Vec<(String, u64)>>>,
)> {
    let (mut inputs, mut outputs, mut threads) = (Vec::new(), Vec::new(), Vec::new());
    for (i, mut chain) in chains.into_iter().enumerate() {
        let (batch_tx, mut batch_rx) = mpsc::channel::<Work>(queue);
        let (out_tx, out_rx) = mpsc::channel::<Done>(queue);
        let (to_chain, to_sinks) = (
            telemetry.queue("source_to_chain"),
            telemetry.queue("chain_to_sinks"),
        );
        let thread = std::thread::Builder::new()
            .name(format!("sluice-chain-{i}"))
            .spawn(move || {
                let host_stage: Arc<str> = "host".into();
                while let Some((batch, reloaded)) = batch_rx.blocking_recv() {
                    to_chain.dec();
                    if let Some(reloaded) = reloaded {
                        chain = reloaded;
                    }
                    let positions = batch
                        .positions
                        .expect("the source task numbers every batch");
                    let (records, too_big, kept) =
                        split_undeliverable(batch.records, max_record, &host_stage);
                    let mut out = StageOutput::default();
                    chain.process(records, &mut out);
                    // Origins index the batch as the source gave it.
                    if let Some(kept) = kept {
                        for o in &mut out.origins {
                            *o = kept[*o as usize];
                        }
                        for d in &mut out.dead {
                            d.origin = kept[d.origin as usize];
                        }
                    }
                    out.dead.extend(too_big);
                    to_sinks.inc();
                    if out_tx
                        .blocking_send((out, batch.checkpoint, positions))
                        .is_err()
                    {
                        break;
                    }
                }
                chain
                    .stages()
                    .iter()
                    .map(|s| (s.name().to_string(), s.restarts))
                    .collect::<Vec<_>>()
            })?;
        inputs.push(batch_tx);
        outputs.push(out_rx);
        threads.push(thread);
    }
    Ok((inputs, outputs, threads))
}

/// Loads the transforms anew from `file` on each request and hands a chain per worker to the
/// source task; a chain that fails to load (a missing plugin, a config its `init` refuses) is
/// reported and the running one kept. Only `pipeline.chain` and `[transforms.*]` are re-read.
async fn reload_on_request(
    mut requests: watch::Receiver<u64>,
    runtime: Runtime,
    file: std::path::PathBuf,
    workers: usize,
    telemetry: Telemetry,
    swap: mpsc::Sender<Vec<Chain>>,
) {
    let (succeeded, failed) = telemetry.reloads();
    while requests.changed().await.is_ok() {
        let (runtime, path) = (runtime.clone(), file.clone());
        let counters = telemetry.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let p = Pipeline::load(&path)?;
            load_chains(&runtime, &p, workers, &counters)
        })
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("loading panicked: {e}")));
        match loaded {
            Ok(chains) => {
                let names: Vec<&str> = chains[0].stages().iter().map(|s| s.name()).collect();
                tracing::info!(
                    "reload: loaded and initialised [{}] from {} for {workers} worker(s); \
                     swapping between batches (only pipeline.chain and [transforms.*] are \
                     reloaded)",
                    names.join(", "),
                    file.display()
                );
                if swap.send(chains).await.is_err() {
                    return;
                }
                succeeded.inc();
            }
            Err(e) => {
                tracing::error!("reload failed, keeping the running transforms: {e:#}");
                failed.inc();
            }
        }
    }
}

/// Records over `max` bytes and records with no value (a Kafka tombstone) never reach a
/// plugin: they are dead-lettered by the host. When any is, also returns the batch index of
/// each record kept.
fn split_undeliverable(
    batch: Vec<Record>,
    max: usize,
    stage: &Arc<str>,
) -> (Vec<Record>, Vec<DeadLetter>, Option<Vec<u32>>) {
    let why = |r: &Record| {
        if r.value.is_empty() {
            Some("record has no value (a Kafka tombstone or an empty message)".to_string())
        } else if r.value.len() > max {
            Some(format!(
                "record of {} bytes exceeds pipeline.max_record_bytes ({max})",
                r.value.len()
            ))
        } else {
            None
        }
    };
    if batch.iter().all(|r| why(r).is_none()) {
        return (batch, Vec::new(), None);
    }
    let mut keep = Vec::with_capacity(batch.len());
    let mut kept = Vec::with_capacity(batch.len());
    let mut dead = Vec::new();
    for (i, r) in batch.into_iter().enumerate() {
        match why(&r) {
            None => {
                keep.push(r);
                kept.push(i as u32);
            }
            Some(reason) => dead.push(DeadLetter {
                reason,
                record: r,
                stage: stage.clone(),
                origin: i as u32,
            }),
        }
    }
    (keep, dead, Some(kept))
}

/// A delivered batch's checkpoint and, per input stream, the last position it holds.
type Held = (Checkpoint, Vec<(Arc<str>, u64)>);

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}

/// Acknowledges, in order, the delivered batches no sink holds records of any more.
fn release(
    held: &mut VecDeque<Held>,
    sinks: &[(Arc<str>, Box<dyn Sink>)],
    ack: &mpsc::UnboundedSender<Checkpoint>,
) {
    while let Some((_, ranges)) = held.front() {
        let still_held = ranges
            .iter()
            .any(|(stream, last)| sinks.iter().any(|(_, s)| s.holds(stream, *last)));
        if still_held {
            break;
        }
        let (checkpoint, _) = held.pop_front().expect("front exists");
        let _ = ack.send(checkpoint);
    }
}

/// Dead-letters what sinks gave up on after the batch that carried it (a refused load job).
async fn dead_letter_from_sinks(
    sinks: &mut [(Arc<str>, Box<dyn Sink>)],
    metrics: &[StageMetrics],
    dead_letter: &mut DeadLetterSink,
    dead_letter_metrics: &StageMetrics,
    stats: &Stats,
) -> anyhow::Result<()> {
    for ((_, sink), metrics) in sinks.iter_mut().zip(metrics) {
        let dead = sink.take_dead();
        if !dead.is_empty() {
            metrics.dead_lettered.inc_by(dead.len() as u64);
            write_dead(dead_letter, dead_letter_metrics, &dead).await?;
            // They were counted out when the sink took them.
            stats.records_out.fetch_sub(dead.len() as u64, Relaxed);
            stats.dead_lettered.fetch_add(dead.len() as u64, Relaxed);
        }
    }
    Ok(())
}

/// Hands a batch's output to every sink and its failures to the dead letter, and returns once
/// all of them hold it (flushed), so the batch may be acknowledged to the source. Records a
/// sink finally refuses are dead-lettered too (stage `sinks.NAME`); returns how many.
async fn deliver(
    out: &StageOutput,
    positions: &Positions,
    sinks: &mut [(Arc<str>, Box<dyn Sink>)],
    metrics: &[StageMetrics],
    dead_letter: &mut DeadLetterSink,
    dead_letter_metrics: &StageMetrics,
) -> anyhow::Result<usize> {
    let mut refused = Vec::new();
    let bytes = value_bytes(&out.records);
    for ((stage, sink), metrics) in sinks.iter_mut().zip(metrics) {
        let started = Instant::now();
        metrics.records_in.inc_by(out.records.len() as u64);
        metrics.bytes_in.inc_by(bytes);
        let rejected = sink
            .write(out, positions)
            .await
            .with_context(|| format!("`{stage}`"))?;
        sink.flush().await.with_context(|| format!("`{stage}`"))?;
        metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics
            .records_out
            .inc_by((out.records.len() - rejected.len()) as u64);
        metrics.dead_lettered.inc_by(rejected.len() as u64);
        refused.extend(rejected.into_iter().map(|r| DeadLetter {
            record: out.records[r.index].clone(),
            stage: stage.clone(),
            reason: r.reason,
            origin: out.origins[r.index],
        }));
    }
    write_dead(dead_letter, dead_letter_metrics, &out.dead).await?;
    write_dead(dead_letter, dead_letter_metrics, &refused).await?;
    Ok(refused.len())
}

/// Writes to the dead letter, counted as its stage's records.
async fn write_dead(
    dead_letter: &mut DeadLetterSink,
    metrics: &StageMetrics,
    dead: &[DeadLetter],
) -> anyhow::Result<()> {
    if dead.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    metrics.records_in.inc_by(dead.len() as u64);
    dead_letter.write(dead).await.context("`dead_letter`")?;
    metrics
        .batch_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.records_out.inc_by(dead.len() as u64);
    Ok(())
}

/// Bytes of the records' values, for the byte counters.
fn value_bytes(records: &[Record]) -> u64 {
    records.iter().map(|r| r.value.len() as u64).sum()
}

async fn print_progress(stats: Arc<Stats>, every: Duration) {
    let mut last = (Instant::now(), 0u64);
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let n = stats.records_in.load(Relaxed);
        let rate = (n - last.1) as f64 / last.0.elapsed().as_secs_f64().max(1e-9);
        last = (Instant::now(), n);
        eprint!(
            "\r\x1b[2Kin {n}  out {}  dropped {}  dead-lettered {}  {rate:.0} records/s",
            stats.records_out.load(Relaxed),
            stats.dropped.load(Relaxed),
            stats.dead_lettered.load(Relaxed),
        );
    }
}
