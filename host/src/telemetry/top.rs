//! `host top`: a live table of a running host's stages, read from its `/metrics` endpoint.
//!
//! Rates and batch latency percentiles are computed between two scrapes (the percentile from
//! the histogram buckets' increase, as Prometheus' `histogram_quantile` does), so the first
//! frame shows totals only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus_parse::{Scrape, Value};

use super::names;

/// One stage's numbers in one scrape.
#[derive(Debug, Default, Clone)]
struct StageRow {
    index: f64,
    records_in: Option<f64>,
    records_out: Option<f64>,
    dropped: f64,
    dead_lettered: f64,
    /// Cumulative `(upper bound, count)` of the batch latency histogram.
    buckets: Vec<(f64, f64)>,
    lag: Option<f64>,
    ready: Option<bool>,
    spool: Option<SpoolRow>,
    /// Records the source dropped as already delivered.
    duplicates: f64,
    /// Streams taken over from other hosts, and lost to them mid-write.
    taken_over: f64,
    lost: f64,
    /// Records dropped unwritten because their stream moved to another host.
    handoff_dropped: f64,
}

/// A stage's disk spool.
#[derive(Debug, Default, Clone)]
struct SpoolRow {
    records: f64,
    bytes: f64,
    dropped: f64,
}

/// What one scrape of the endpoint says.
#[derive(Debug, Default)]
struct Snapshot {
    taken: Option<Instant>,
    pipeline: String,
    stages: BTreeMap<String, StageRow>,
    rss: Option<f64>,
    cpu_seconds: Option<f64>,
    workers: Option<f64>,
}

impl Snapshot {
    fn parse(text: &str, taken: Instant) -> anyhow::Result<Self> {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .context("the endpoint's answer is not in the Prometheus text format")?;
        let mut snap = Snapshot {
            taken: Some(taken),
            ..Snapshot::default()
        };
        let metric = |n: &str| format!("sluice_{n}");
        let counter = |n: &str| format!("sluice_{n}_total");
        for s in &scrape.samples {
            if let Some(p) = s.labels.get("pipeline") {
                snap.pipeline = p.to_string();
            }
            let value = match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                Value::Histogram(_) | Value::Summary(_) => f64::NAN,
            };
            match s.metric.as_str() {
                "process_resident_memory_bytes" => snap.rss = Some(value),
                "process_cpu_seconds_total" => snap.cpu_seconds = Some(value),
                m if m == metric(names::CHAIN_WORKERS) => snap.workers = Some(value),
                _ => {}
            }
            let Some(stage) = s.labels.get("stage") else {
                continue;
            };
            let row = snap.stages.entry(stage.to_string()).or_default();
            let m = s.metric.as_str();
            if m == counter(names::RECORDS_IN) {
                row.records_in = Some(value);
            } else if m == counter(names::RECORDS_OUT) {
                row.records_out = Some(value);
            } else if m == counter(names::DROPPED) {
                row.dropped = value;
            } else if m == counter(names::DEAD_LETTERED) {
                row.dead_lettered = value;
            } else if m == metric(names::KAFKA_LAG) {
                *row.lag.get_or_insert(0.0) += value;
            } else if m == metric(names::READY) {
                row.ready = Some(value > 0.5);
            } else if m == metric(names::STAGE_INDEX) {
                row.index = value;
            } else if m == metric(names::SPOOL_RECORDS) {
                row.spool.get_or_insert_default().records = value;
            } else if m == metric(names::SPOOL_BYTES) {
                row.spool.get_or_insert_default().bytes = value;
            } else if m == counter(names::SOURCE_DUPLICATES) {
                row.duplicates = value;
            } else if m == counter(names::HANDOFFS) {
                match s.labels.get("kind") {
                    Some("taken_over") => row.taken_over = value,
                    Some("lost") => row.lost = value,
                    _ => {}
                }
            } else if m == counter(names::HANDOFF_DROPPED) {
                row.handoff_dropped = value;
            } else if m == counter(names::SPOOL_DROPPED) {
                row.spool.get_or_insert_default().dropped += value;
            } else if m == metric(names::BATCH_SECONDS)
                && let Value::Histogram(buckets) = &s.value
            {
                row.buckets = buckets.iter().map(|b| (b.less_than, b.count)).collect();
            }
        }
        Ok(snap)
    }
}

/// The `q` quantile of the observations between two cumulative bucket lists.
fn quantile(q: f64, now: &[(f64, f64)], before: &[(f64, f64)]) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = now
        .iter()
        .map(|&(le, n)| {
            let earlier = before
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, c)| *c);
            (le, n - earlier)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let within = (count - below).max(f64::MIN_POSITIVE);
            return Some(lower + (le - lower) * (rank - below) / within);
        }
        (lower, below) = (le, count);
    }
    None
}

fn rate(now: Option<f64>, before: Option<f64>, seconds: f64) -> Option<f64> {
    Some((now? - before?).max(0.0) / seconds)
}

fn count(v: f64) -> String {
    let n = v.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn seconds(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(s) if s < 1.0 => format!("{:.1} ms", s * 1e3),
        Some(s) => format!("{s:.2} s"),
    }
}

fn render(addr: &str, now: &Snapshot, before: Option<&Snapshot>) -> String {
    let elapsed = match (now.taken, before.and_then(|b| b.taken)) {
        (Some(n), Some(b)) => n.duration_since(b).as_secs_f64().max(1e-3),
        _ => 0.0,
    };
    let previous = |stage: &str| before.and_then(|b| b.stages.get(stage));
    let not_ready: Vec<&str> = now
        .stages
        .iter()
        .filter(|(_, r)| r.ready == Some(false))
        .map(|(s, _)| s.as_str())
        .collect();
    let mut out = String::new();
    let _ = write!(out, "sluice top: pipeline `{}` at {addr}", now.pipeline);
    if not_ready.is_empty() {
        out.push_str("  ready");
    } else {
        let _ = write!(out, "  NOT READY: {}", not_ready.join(", "));
    }
    if let Some(workers) = now.workers.filter(|&w| w > 0.0) {
        let _ = write!(out, "  chain workers {workers}");
    }
    if let Some(rss) = now.rss {
        let _ = write!(out, "  rss {:.1} MiB", rss / (1 << 20) as f64);
    }
    if let (Some(cpu), Some(b)) = (now.cpu_seconds, before.and_then(|b| b.cpu_seconds))
        && elapsed > 0.0
    {
        let _ = write!(out, "  cpu {:.0}%", (cpu - b) / elapsed * 100.0);
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{:<24} {:>10} {:>10} {:>12} {:>12} {:>14} {:>10} {:>10} {:>10}",
        "STAGE", "IN/S", "OUT/S", "IN", "DROPPED", "DEAD-LETTERED", "P50", "P99", "LAG"
    );
    // Stages that only report readiness (`pipeline`) are in the header line.
    let mut stages: Vec<(&String, &StageRow)> = now
        .stages
        .iter()
        .filter(|(_, r)| r.records_in.is_some() || r.records_out.is_some())
        .collect();
    stages.sort_by(|a, b| a.1.index.total_cmp(&b.1.index).then(a.0.cmp(b.0)));
    for (stage, row) in stages {
        let prev = previous(stage);
        let per_second = |n: Option<f64>, b: Option<f64>| {
            if elapsed == 0.0 {
                return "-".to_string();
            }
            rate(n, b, elapsed).map_or("-".into(), count)
        };
        let (p50, p99) = match prev {
            Some(p) => (
                quantile(0.5, &row.buckets, &p.buckets),
                quantile(0.99, &row.buckets, &p.buckets),
            ),
            None => (None, None),
        };
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>10} {:>12} {:>12} {:>14} {:>10} {:>10} {:>10}",
            stage,
            per_second(row.records_in, prev.and_then(|p| p.records_in)),
            per_second(row.records_out, prev.and_then(|p| p.records_out)),
            row.records_in.map_or("-".into(), count),
            count(row.dropped),
            count(row.dead_lettered),
            seconds(p50),
            seconds(p99),
            row.lag.map_or("-".into(), count),
        );
    }
    for (stage, spool) in now
        .stages
        .iter()
        .filter_map(|(s, r)| Some((s, r.spool.as_ref()?)))
    {
        let _ = writeln!(
            out,
            "spool of {stage}: {} records not yet committed, {:.1} MiB, {} dropped",
            count(spool.records),
            spool.bytes / (1 << 20) as f64,
            count(spool.dropped)
        );
    }
    for (stage, row) in now
        .stages
        .iter()
        .filter(|(_, r)| r.taken_over + r.lost + r.handoff_dropped > 0.0)
    {
        let _ = writeln!(
            out,
            "{stage} took over {} streams from other hosts, lost {} while writing them, \
             dropped {} records that moved",
            count(row.taken_over),
            count(row.lost),
            count(row.handoff_dropped)
        );
    }
    for (stage, row) in now.stages.iter().filter(|(_, r)| r.duplicates > 0.0) {
        let _ = writeln!(
            out,
            "{stage} dropped {} duplicates (delivered before)",
            count(row.duplicates)
        );
    }
    out
}

/// Options of `host top`.
#[derive(Debug, Clone)]
pub struct TopOptions {
    /// `host:port` of the endpoint, or a URL.
    pub addr: String,
    pub interval: Duration,
    /// Stop after this many frames (`None`: until interrupted).
    pub frames: Option<u64>,
}

/// Scrapes the endpoint every `interval` and redraws the table (in place on a terminal; one
/// frame after another otherwise).
pub async fn run(options: TopOptions) -> anyhow::Result<()> {
    let base = if options.addr.contains("://") {
        options.addr.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", options.addr)
    };
    let url = format!("{base}/metrics");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let terminal = std::io::stdout().is_terminal();
    let mut previous: Option<Snapshot> = None;
    let mut tick = tokio::time::interval(options.interval);
    let mut drawn = 0u64;
    loop {
        tick.tick().await;
        let frame = match scrape(&client, &url).await {
            Ok(snapshot) => {
                let frame = render(&options.addr, &snapshot, previous.as_ref());
                previous = Some(snapshot);
                frame
            }
            Err(e) => format!("sluice top: cannot read {url}: {e:#} (retrying)\n"),
        };
        let mut stdout = std::io::stdout().lock();
        if terminal {
            // Home and clear, then the frame: redrawn in place.
            write!(stdout, "\x1b[H\x1b[2J{frame}")?;
        } else {
            writeln!(stdout, "{frame}")?;
        }
        stdout.flush()?;
        drawn += 1;
        if options.frames.is_some_and(|n| drawn >= n) {
            return Ok(());
        }
    }
}

async fn scrape(client: &reqwest::Client, url: &str) -> anyhow::Result<Snapshot> {
    let response = client.get(url).send().await?.error_for_status()?;
    let taken = Instant::now();
    Snapshot::parse(&response.text().await?, taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Telemetry;

    #[test]
    fn quantiles_interpolate_within_the_bucket_of_the_increase() {
        let before = [(0.001, 0.0), (0.01, 0.0), (f64::INFINITY, 0.0)];
        let now = [(0.001, 50.0), (0.01, 100.0), (f64::INFINITY, 100.0)];
        assert!((quantile(0.5, &now, &before).unwrap() - 0.001).abs() < 1e-9);
        let p99 = quantile(0.99, &now, &before).unwrap();
        assert!(p99 > 0.009 && p99 <= 0.01, "{p99}");
        assert_eq!(quantile(0.5, &now, &now), None);
    }

    #[test]
    fn renders_rates_between_two_scrapes_of_a_real_registry() {
        let t = Telemetry::new("demo");
        let source = t.stage("source");
        let sink = t.stage("sinks.out");
        t.readiness("sinks.out", "connecting");
        let start = Instant::now();
        let first = Snapshot::parse(&t.encode(), start).unwrap();
        source.records_out.inc_by(2_000);
        sink.records_in.inc_by(1_000);
        sink.dead_lettered.inc_by(3);
        sink.batch_seconds.observe(0.004);
        let second = Snapshot::parse(&t.encode(), start + Duration::from_secs(2)).unwrap();
        let frame = render("127.0.0.1:9598", &second, Some(&first));
        assert!(frame.contains("pipeline `demo`"), "{frame}");
        assert!(frame.contains("NOT READY: sinks.out"), "{frame}");
        assert!(!frame.contains("chain workers"), "{frame}");
        let source_line = frame.lines().find(|l| l.starts_with("source")).unwrap();
        assert!(source_line.contains(" 1,000 "), "{source_line}");
        let sink_line = frame.lines().find(|l| l.starts_with("sinks.out")).unwrap();
        assert!(
            sink_line.contains(" 500 ") && sink_line.contains(" 3 "),
            "{sink_line}"
        );
        assert!(sink_line.contains(" ms"), "{sink_line}");
        // Stages in pipeline order, not alphabetical.
        let row = |name: &str| frame.lines().position(|l| l.starts_with(name)).unwrap();
        assert!(row("source") < row("sinks.out"), "{frame}");
        assert!(!frame.contains("spool"), "{frame}");

        t.chain_workers().set(3);
        let spool = t.spool("source");
        spool.records.set(12_345);
        spool.bytes.set(3 << 20);
        spool.dropped_full.inc_by(7);
        let third = Snapshot::parse(&t.encode(), start + Duration::from_secs(4)).unwrap();
        let frame = render("127.0.0.1:9598", &third, Some(&second));
        assert!(
            frame.contains("spool of source: 12,345 records not yet committed, 3.0 MiB, 7 dropped"),
            "{frame}"
        );
        assert!(frame.contains("  chain workers 3"), "{frame}");
        assert!(!frame.contains("duplicates"), "{frame}");

        t.kafka("source").duplicates.inc_by(4);
        let fourth = Snapshot::parse(&t.encode(), start + Duration::from_secs(6)).unwrap();
        let frame = render("127.0.0.1:9598", &fourth, Some(&third));
        assert!(
            frame.contains("source dropped 4 duplicates (delivered before)"),
            "{frame}"
        );
        assert!(!frame.contains("took over"), "{frame}");

        let handoffs = t.handoffs("sinks.out");
        handoffs.taken_over.inc_by(2);
        handoffs.lost.inc();
        handoffs.dropped.inc_by(250);
        let fifth = Snapshot::parse(&t.encode(), start + Duration::from_secs(8)).unwrap();
        let frame = render("127.0.0.1:9598", &fifth, Some(&fourth));
        assert!(
            frame.contains(
                "sinks.out took over 2 streams from other hosts, lost 1 while writing them, \
                 dropped 250 records that moved"
            ),
            "{frame}"
        );
    }
}
