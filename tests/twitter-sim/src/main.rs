//! `twitter-sim`: the Twitter API v2 filtered-stream simulator as a process.
//!
//! Prints `listening on http://127.0.0.1:PORT` as its first line, then serves until killed
//! (or Ctrl-C). The scenario flags set the initial [`twitter_sim::Scenario`];
//! `POST /_sim/scenario` changes it at run time.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};

use clap::Parser;
use twitter_sim::{Scenario, Sim};

#[derive(Parser)]
#[command(
    version,
    about = "Local stand-in for the Twitter API v2 filtered stream"
)]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, env = "TWITTER_SIM_PORT", default_value_t = 0)]
    port: u16,
    /// Bearer token clients must send.
    #[arg(long, env = "TWITTER_SIM_TOKEN", default_value = "sim-token")]
    token: String,
    /// Seed of the tweet sequence.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Tweets to send in all, then only keep-alives (or the end, with --end-when-done).
    #[arg(long)]
    total: Option<u64>,
    /// End the stream response once --total tweets are sent.
    #[arg(long)]
    end_when_done: bool,
    /// Tweets per second (0: as fast as the client reads).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Keep-alive interval in milliseconds (0: none).
    #[arg(long, default_value_t = 20_000)]
    keepalive_ms: u64,
    /// Drop the connection after this many tweets on it.
    #[arg(long)]
    drop_after: Option<u64>,
    /// Drop every connection after --drop-after tweets (default: only once).
    #[arg(long)]
    drop_every: bool,
    /// Cut the connection mid-line when dropping.
    #[arg(long)]
    drop_mid_line: bool,
    /// Send each tweet line in two chunks.
    #[arg(long)]
    split_lines: bool,
    /// Answer the next this-many stream connects with --reject-status.
    #[arg(long, default_value_t = 0)]
    reject_next: u32,
    /// Status for rejected connects (429 or e.g. 503).
    #[arg(long, default_value_t = 429)]
    reject_status: u16,
    /// A 429's x-rate-limit-reset is now plus this many seconds.
    #[arg(long, default_value_t = 60)]
    rate_limit_reset_secs: u64,
    /// Stall (send nothing, keep the socket) after this many tweets on a connection.
    #[arg(long)]
    stall_after: Option<u64>,
    /// Stall every connection (default: only once).
    #[arg(long)]
    stall_every: bool,
    /// Send one non-JSON line after this many tweets.
    #[arg(long)]
    garbage_after: Option<u64>,
    /// Length of that line in bytes (0: a short HTML line).
    #[arg(long, default_value_t = 0)]
    garbage_bytes: usize,
    /// Realtime mode: tweets happen at --rate candidates per second from the first connection
    /// on, and a client that is away loses them unless it asks for backfill_minutes.
    #[arg(long)]
    realtime: bool,
    /// Realtime mode: drop a connection more than this many candidates behind.
    #[arg(long)]
    slow_reader_lag: Option<u64>,
    /// Pre-existing rule as VALUE or VALUE=TAG (repeatable).
    #[arg(long = "rule")]
    rules: Vec<String>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let scenario = Scenario {
        seed: a.seed,
        total: a.total,
        end_when_done: a.end_when_done,
        rate: a.rate,
        keepalive_ms: a.keepalive_ms,
        drop_after: a.drop_after,
        drop_every: a.drop_every,
        drop_mid_line: a.drop_mid_line,
        split_lines: a.split_lines,
        reject_next: a.reject_next,
        reject_status: a.reject_status,
        rate_limit_reset_secs: a.rate_limit_reset_secs,
        stall_after: a.stall_after,
        stall_every: a.stall_every,
        garbage_after: a.garbage_after,
        garbage_bytes: a.garbage_bytes,
        realtime: a.realtime,
        slow_reader_lag: a.slow_reader_lag,
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, a.port));
    let sim = Sim::start(addr, &a.token, scenario).await?;
    for rule in &a.rules {
        match rule.split_once('=') {
            Some((value, tag)) => sim.add_rule(value, Some(tag)),
            None => sim.add_rule(rule, None),
        };
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", sim.base_url())?;
    out.flush()?;
    drop(out);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
