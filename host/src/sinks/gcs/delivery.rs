//! The GCS sink inside a pipeline: records grouped by the input stream they came from, objects
//! named after the input range they hold, each finalized object loaded into BigQuery (when
//! `[sinks.NAME.bigquery]` is set) before its records count as delivered.
//!
//! # Restarts do not duplicate rows
//!
//! A Kafka offset is committed only after the object holding its record is uploaded and
//! loaded, so a crash re-delivers whatever was not committed, and that can include records an
//! uploaded (even loaded) object already holds. Objects are cut at batch boundaries, and batches
//! need not fall the same way twice, so names alone cannot prevent duplicates. Instead, before
//! the load job of finalized objects starts, the sink writes a small state object per stream,
//! `_sluice/<prefix><stream>.json`, holding the last position loaded and the objects of that
//! job. Within a run, the sink remembers the last position it took per stream, so a partition
//! revoked and assigned again (re-read from its last commit) adds nothing twice either.
//!
//! # Many hosts, one consumer group
//!
//! The state object is also the stream's lease. Every write of it is conditional on the
//! generation this host last read or wrote (GCS `ifGenerationMatch`), so the writes of all
//! hosts to one stream fall in one order and none overwrites another's unseen:
//! - When a batch of a new assignment of a stream arrives (the first after a start or a
//!   rebalance), the host claims the stream: it reads the state, finishes the recorded job
//!   (load job ids derive from the objects, so a job that already ran is found and not run
//!   again), and writes the state back. Input at or before the recorded position is skipped.
//!   If another host wrote the state since this one last did, what this one still holds of
//!   the stream came from an older assignment: it is dropped, and read again.
//! - Before each load, the host writes the stream's new position and job. If that write
//!   fails its condition, another host claimed the stream meanwhile: this host leaves those
//!   objects unloaded and drops what it holds of the stream; the new owner loads the records
//!   from its own reading, once.
//! - A stream revoked from this host (`Ownership`) is dropped before it is written.
//!
//! Objects are named after the input they hold, so two hosts writing the same range write the
//! same records under one name; an object a host wrote just before losing its stream is left
//! in the bucket unloaded (logged, and counted as `lost`).
//!
//! # Failures
//!
//! An upload or load that fails for a transient reason (service down, 5xx, rate limit) is
//! retried with backoff until it succeeds: the records stay buffered, the source is held back
//! through the bounded queues, and nothing is committed past them. With `retry_give_up`, once
//! the failures of an upload or a load have lasted that long, the rows of the objects
//! concerned are dead-lettered with the last error instead, and the pipeline goes on. A load job that BigQuery
//! refuses for good (bad rows beyond `max_bad_records`, schema mismatch) dead-letters the rows
//! of its objects, as they were written, with BigQuery's reason. With a load configured,
//! records that are not JSON objects are dead-lettered before they reach an object.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{GcsConfig, GcsSink};
use crate::clients::gcp::{FinishedObject, outage_backoff};
use crate::event::{DeadLetter, Ownership, Positions, Record, Rejected, StageOutput};
use crate::sinks::api::{Sink, SinkContext};
use crate::sinks::bigquery::{BigQueryLoader, LoadFailed, NoSchema, SchemaSetting};
use crate::telemetry::{HandoffMetrics, Readiness};

/// What `_sluice/<prefix><stream>.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct StreamState {
    /// Last position of the stream that is in an uploaded object (and loaded, or
    /// dead-lettered); none before any was.
    through: Option<u64>,
    /// The objects of the last load job, to finish it after a crash or a handover.
    job: Vec<FinishedObject>,
    /// The host process that wrote it, and which of its writes this is: a write retried after
    /// a lost answer recognises itself by them.
    #[serde(default)]
    owner: String,
    #[serde(default)]
    write: u64,
}

/// A stream this host holds the lease of, as far as it knows.
struct Claim {
    /// The assignment (see `Positions::epoch`) whose records the sink takes.
    epoch: u64,
    /// The generation of the state object this host wrote last.
    generation: i64,
    /// Positions at or before this are taken already: held in an object, or delivered.
    taken: Option<u64>,
    /// Another host claimed the stream while this one held it under `epoch`: the rest of
    /// that assignment's records are left to the new owner.
    lost: bool,
}

pub struct GcsDelivery {
    objects: GcsSink,
    loader: Option<BigQueryLoader>,
    /// Feed every record to the loader's schema derivation.
    derive: bool,
    stage: Arc<str>,
    /// Input streams that can be re-read (Kafka partitions) whose lease this host holds.
    claims: HashMap<Arc<str>, Claim>,
    ownership: Ownership,
    /// Names this host process in the state objects.
    owner: String,
    /// Writes of state objects so far.
    writes: u64,
    handoffs: HandoffMetrics,
    replayable: bool,
    dead: Vec<DeadLetter>,
    /// Not ready while uploads or loads keep failing.
    readiness: Readiness,
    /// `retry_give_up`.
    give_up: Option<Duration>,
}

impl GcsDelivery {
    pub async fn open(config: &GcsConfig, cx: &SinkContext) -> anyhow::Result<Self> {
        let stage = cx.stage.clone();
        let readiness = cx.telemetry.readiness(&stage, "connecting to GCS");
        // Opened first: it validates the whole config, the `bigquery` table included.
        let mut objects = GcsSink::open(config.clone()).await?;
        objects.uploads = cx.telemetry.requests(&stage, "upload");
        let loader = match &config.bigquery {
            Some(bq) => {
                let mut loader = BigQueryLoader::open(bq.clone()).await?;
                loader.requests = cx.telemetry.requests(&stage, "load");
                Some(loader)
            }
            None => None,
        };
        readiness.ready();
        let derive = loader
            .as_ref()
            .is_some_and(|l| l.config().schema == SchemaSetting::Derive);
        Ok(GcsDelivery {
            objects,
            loader,
            derive,
            stage,
            claims: HashMap::new(),
            ownership: cx.ownership.clone(),
            owner: process_name(),
            writes: 0,
            handoffs: cx.telemetry.handoffs(&cx.stage),
            replayable: false,
            dead: Vec::new(),
            readiness,
            give_up: config.retry_give_up,
        })
    }
}

#[async_trait::async_trait]
impl Sink for GcsDelivery {
    /// Adds a batch's output. Objects that fill up on the way are uploaded and loaded before
    /// this returns. Returns the records refused up front (not JSON objects, with a load).
    async fn write(
        &mut self,
        out: &StageOutput,
        positions: &Positions,
    ) -> anyhow::Result<Vec<Rejected>> {
        self.replayable = positions.replayable();
        let streams = positions.streams();
        // Positions at or before `skip[s]` are held or delivered already.
        let mut skip = vec![None; streams.len()];
        if self.replayable {
            self.drop_moved();
            for (s, name) in streams.iter().enumerate() {
                skip[s] = self.claim(name, positions.epoch(s)).await;
            }
        }
        let mut rejected = Vec::new();
        let mut by_stream: Vec<Vec<&Record>> = vec![Vec::new(); streams.len()];
        for (i, (r, &origin)) in out.records.iter().zip(&out.origins).enumerate() {
            let (s, pos) = positions.of(origin as usize);
            if skip[s].is_some_and(|done| pos <= done) {
                continue;
            }
            if let Some(loader) = &mut self.loader {
                match serde_json::from_slice::<Value>(&r.value) {
                    Ok(v @ Value::Object(_)) => {
                        if self.derive {
                            loader.observe(&v);
                        }
                    }
                    Ok(_) => {
                        rejected.push(refuse(i, "not a JSON object: BigQuery loads objects"));
                        continue;
                    }
                    Err(e) => {
                        rejected.push(refuse(i, &format!("not JSON: {e}")));
                        continue;
                    }
                }
            }
            by_stream[s].push(r);
        }
        let mut finished = Vec::new();
        for (s, first, last) in positions.ranges() {
            let first = match skip[s] {
                Some(done) if done >= last => continue,
                Some(done) => first.max(done + 1),
                None => first,
            };
            if let Some(claim) = self.claims.get_mut(&streams[s]) {
                claim.taken = Some(last);
            }
            let position = format!("{}-{first}-{last}", streams[s]);
            match self.objects.write(&by_stream[s], &position).await {
                Ok(done) => finished.extend(done),
                Err(e) => finished.extend(self.retry_uploads(e).await),
            }
        }
        self.complete(finished).await;
        Ok(rejected)
    }

    /// Finalizes objects that reached `max_object_age`.
    async fn tick(&mut self) -> anyhow::Result<()> {
        self.drop_moved();
        let finished = match self.objects.flush_expired().await {
            Ok(done) => done,
            Err(e) => self.retry_uploads(e).await,
        };
        self.complete(finished).await;
        Ok(())
    }

    /// Finalizes every open object (at shutdown).
    async fn finish(&mut self) -> anyhow::Result<()> {
        let mut finished = Vec::new();
        while self.objects.buffered_rows() > 0 {
            match self.objects.flush().await {
                Ok(done) => finished.extend(done),
                Err(e) => finished.extend(self.retry_uploads(e).await),
            }
        }
        self.complete(finished).await;
        Ok(())
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.objects.next_deadline()
    }

    /// Whether records of `stream` at or before `last` are still held (not yet in the bucket,
    /// or not yet loaded).
    fn holds(&self, stream: &str, last: u64) -> bool {
        self.objects
            .buffered_from(stream)
            .is_some_and(|first| first <= last)
    }

    /// Records of earlier batches that could not be delivered, with the reason.
    fn take_dead(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead)
    }
}

impl GcsDelivery {
    /// Uploads failed after the client's own retries: the records are buffered, so try again
    /// (with backoff) until the service takes them.
    async fn retry_uploads(&mut self, first_error: anyhow::Error) -> Vec<FinishedObject> {
        let mut error = first_error;
        let mut waits = outage_backoff();
        // The client had retried the upload this long before it failed.
        let failing_since = Instant::now()
            .checked_sub(self.objects.upload_retry_limit())
            .unwrap_or_else(Instant::now);
        loop {
            let mut wait = waits.next_wait();
            if let Some(give_up) = self.give_up {
                let spent = failing_since.elapsed();
                if spent >= give_up {
                    let why = gave_up("GCS upload", spent, &error);
                    let abandoned = self.objects.abandon_sealed();
                    let rows: u64 = abandoned.iter().map(|(o, _)| o.rows).sum();
                    tracing::error!("{}: {why}; {rows} rows dead-lettered", self.stage);
                    for (object, body) in abandoned {
                        self.dead_letter_rows(&object, &body, &why);
                    }
                    self.readiness.ready();
                    return Vec::new();
                }
                wait = wait.min(give_up - spent);
            }
            tracing::error!(
                "{}: {error:#}; {} records kept, retrying in {wait:?}",
                self.stage,
                self.objects.buffered_rows()
            );
            self.readiness
                .not_ready(format!("GCS uploads failing: {error:#}"));
            self.objects.uploads.retries.inc();
            tokio::time::sleep(wait).await;
            match self.objects.flush_expired().await {
                Ok(done) => {
                    self.readiness.ready();
                    return done;
                }
                Err(e) => error = e,
            }
        }
    }

    /// Records the objects in each stream's state, then loads them. A stream whose state
    /// another host wrote meanwhile is left out: its objects stay unloaded.
    async fn complete(&mut self, mut finished: Vec<FinishedObject>) {
        if self.replayable {
            // Until every stream's state names exactly the job that runs.
            loop {
                let mut through: HashMap<String, u64> = HashMap::new();
                for o in &finished {
                    let t = through.entry(o.stream.clone()).or_insert(o.last);
                    *t = (*t).max(o.last);
                }
                let mut lost = Vec::new();
                for (stream, last) in through {
                    if !self.record_job(&stream, last, &finished).await {
                        lost.push(stream);
                    }
                }
                if lost.is_empty() {
                    break;
                }
                for stream in &lost {
                    let (gone, kept): (Vec<_>, Vec<_>) =
                        finished.into_iter().partition(|o| &o.stream == stream);
                    finished = kept;
                    self.lose(stream, &gone);
                }
            }
        }
        if !finished.is_empty() {
            self.load(&finished).await;
        }
    }

    /// Runs the load job until it succeeds, or dead-letters the objects' rows when BigQuery
    /// refuses them for good.
    async fn load(&mut self, objects: &[FinishedObject]) {
        let Some(loader) = self.loader.as_mut() else {
            return;
        };
        let mut waits = outage_backoff();
        let failing_since = Instant::now();
        let (mut sample, mut sampled) = (Vec::new(), false);
        loop {
            let started = Instant::now();
            let loaded = loader.load(objects, &sample).await;
            loader.requests.observe(loaded.is_ok(), started.elapsed());
            match loaded {
                Ok(report) => {
                    tracing::info!(
                        job = %report.job_id,
                        rows = report.rows,
                        deduplicated = report.deduplicated,
                        elapsed = ?report.elapsed,
                        "{}: loaded {} object(s)",
                        self.stage,
                        objects.len()
                    );
                    self.readiness.ready();
                    return;
                }
                Err(e) if e.is::<NoSchema>() && !sampled => {
                    // Objects taken over from another host, into a table that does not exist
                    // yet: their rows show its columns (once; then the load fails as any).
                    sampled = true;
                    for o in objects {
                        let body = fetch(&self.objects, &self.stage, o).await;
                        sample.extend(
                            rows(&body, &self.stage, o)
                                .filter_map(|r| serde_json::from_slice(&r).ok()),
                        );
                    }
                }
                Err(e) => {
                    if let Some(failed) = e.downcast_ref::<LoadFailed>()
                        && !failed.is_transient()
                    {
                        let reason = format!("bigquery load refused: {failed}");
                        self.dead_letter_objects(objects, &reason).await;
                        return;
                    }
                    let mut wait = waits.next_wait();
                    if let Some(give_up) = self.give_up {
                        let spent = failing_since.elapsed();
                        if spent >= give_up {
                            let why = gave_up("BigQuery load", spent, &e);
                            tracing::error!(
                                "{}: {why}; the objects' rows are dead-lettered",
                                self.stage
                            );
                            self.readiness.ready();
                            self.dead_letter_objects(objects, &why).await;
                            return;
                        }
                        wait = wait.min(give_up - spent);
                    }
                    tracing::error!("{}: {e:#}; retrying the load in {wait:?}", self.stage);
                    self.readiness
                        .not_ready(format!("BigQuery loads failing: {e:#}"));
                    loader.requests.retries.inc();
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn dead_letter_objects(&mut self, objects: &[FinishedObject], reason: &str) {
        for o in objects {
            let body = fetch(&self.objects, &self.stage, o).await;
            self.dead_letter_rows(o, &body, reason);
        }
    }

    /// Dead-letters every row of an object's gzip NDJSON body, as it was written.
    fn dead_letter_rows(&mut self, o: &FinishedObject, body: &[u8], reason: &str) {
        for value in rows(body, &self.stage, o) {
            self.dead.push(DeadLetter {
                record: Record {
                    key: None,
                    value,
                    headers: Vec::new(),
                    timestamp: None,
                },
                stage: self.stage.clone(),
                reason: format!("{reason} (object {})", o.uri),
                origin: 0,
            });
        }
    }

    /// Claims `stream` for the assignment `epoch` (see the module docs) unless this host holds
    /// it under that assignment already; returns the last position taken.
    async fn claim(&mut self, stream: &Arc<str>, epoch: u64) -> Option<u64> {
        if let Some(claim) = self.claims.get(stream)
            && claim.epoch == epoch
        {
            return if claim.lost {
                Some(u64::MAX)
            } else {
                claim.taken
            };
        }
        loop {
            let (state, generation) = self.read_state(stream).await;
            if let Some(claim) = self.claims.get_mut(stream)
                && claim.generation == generation
                && !claim.lost
            {
                // No other host wrote the state since this one did: what it holds stays valid.
                claim.epoch = epoch;
                return claim.taken;
            }
            if self.claims.remove(stream).is_some() {
                // Read under an older assignment; the new one reads it again.
                self.drop_stream(stream, "it was taken by another host meanwhile");
            }
            if let Some(state) = &state {
                if !state.job.is_empty() {
                    self.load(&state.job).await;
                }
                if state.owner != self.owner {
                    self.handoffs.taken_over.inc();
                    tracing::info!(
                        "{}: {stream} was delivered through position {} by an earlier run or \
                         another host ({})",
                        self.stage,
                        state.through.map_or("none".into(), |t| t.to_string()),
                        state.owner
                    );
                }
            }
            let through = state.and_then(|s| s.through);
            if !self.ownership.owns(stream) {
                // Revoked while claiming: the records are left to the next owner (this
                // assignment's offsets are never committed).
                return Some(u64::MAX);
            }
            if let Some(generation) = self.write_state(stream, through, &[], generation).await {
                self.claims.insert(
                    stream.clone(),
                    Claim {
                        epoch,
                        generation,
                        taken: through,
                        lost: false,
                    },
                );
                return through;
            }
            // Another host wrote it between the read and the write: read it again.
        }
    }

    /// Writes `stream`'s state before a load of `job` that takes it through `last`; false
    /// when the stream is no longer this host's.
    async fn record_job(&mut self, stream: &str, last: u64, job: &[FinishedObject]) -> bool {
        let Some(generation) = self
            .claims
            .get(stream)
            .filter(|c| !c.lost)
            .map(|c| c.generation)
        else {
            return false;
        };
        match self.write_state(stream, Some(last), job, generation).await {
            Some(generation) => {
                if let Some(claim) = self.claims.get_mut(stream) {
                    claim.generation = generation;
                }
                true
            }
            None => false,
        }
    }

    /// Writes a stream's state if it is still at `generation`; the new generation, or `None`
    /// when another host wrote it since. Retried until GCS answers.
    async fn write_state(
        &mut self,
        stream: &str,
        through: Option<u64>,
        job: &[FinishedObject],
        generation: i64,
    ) -> Option<i64> {
        self.writes += 1;
        let state = StreamState {
            through,
            job: job.to_vec(),
            owner: self.owner.clone(),
            write: self.writes,
        };
        let body = serde_json::to_vec(&state).expect("state serialises");
        let name = self.state_name(stream);
        let mut waits = outage_backoff();
        loop {
            match self.objects.put_if(&name, body.clone(), generation).await {
                Ok(Some(generation)) => return Some(generation),
                Ok(None) => {
                    // A retry can meet the write it retries, which landed.
                    let (now, generation) = self.read_state(stream).await;
                    return now
                        .is_some_and(|s| s.owner == self.owner && s.write == self.writes)
                        .then_some(generation);
                }
                Err(e) => {
                    tracing::error!("{}: {e:#}; retrying", self.stage);
                    tokio::time::sleep(waits.next_wait()).await;
                }
            }
        }
    }

    /// A stream's state and its generation (0 when there is none yet), read until GCS answers.
    async fn read_state(&self, stream: &str) -> (Option<StreamState>, i64) {
        let name = self.state_name(stream);
        let mut waits = outage_backoff();
        loop {
            let read = self.objects.get(&name).await.and_then(|found| match found {
                Some((body, generation)) => serde_json::from_slice::<StreamState>(&body)
                    .map(|s| (Some(s), generation))
                    .with_context(|| format!("gcs: {name} is not a Sluice stream state")),
                None => Ok((None, 0)),
            });
            match read {
                Ok(read) => return read,
                Err(e) => {
                    tracing::error!("{}: {e:#}; retrying", self.stage);
                    tokio::time::sleep(waits.next_wait()).await;
                }
            }
        }
    }

    /// Drops what the sink holds of streams revoked from this host, before it writes them.
    fn drop_moved(&mut self) {
        let moved: Vec<Arc<str>> = self
            .claims
            .keys()
            .filter(|s| !self.ownership.owns(s))
            .cloned()
            .collect();
        for stream in moved {
            self.claims.remove(&stream);
            self.drop_stream(&stream, "it was revoked from this host");
        }
    }

    /// Another host claimed `stream` while this one wrote `objects` of it: they stay unloaded.
    fn lose(&mut self, stream: &str, objects: &[FinishedObject]) {
        self.handoffs.lost.inc();
        if let Some(claim) = self.claims.get_mut(stream) {
            claim.lost = true;
        }
        let names: Vec<&str> = objects.iter().map(|o| o.uri.as_str()).collect();
        tracing::warn!(
            "{}: {stream} was claimed by another host while this one wrote it; left unloaded \
             (the new owner loads these records from its own reading): {}",
            self.stage,
            names.join(" ")
        );
        self.drop_stream(stream, "it was claimed by another host");
    }

    fn drop_stream(&mut self, stream: &str, why: &str) {
        let rows = self.objects.discard(stream);
        if rows > 0 {
            self.handoffs.dropped.inc_by(rows);
            tracing::info!(
                "{}: dropped {rows} buffered records of {stream}, unwritten: {why}; its owner \
                 reads them again",
                self.stage
            );
        }
    }

    fn state_name(&self, stream: &str) -> String {
        format!("_sluice/{}{stream}.json", self.objects.config().prefix)
    }
}

/// Names this host process in the state objects it writes (a restart is another process).
fn process_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{host} pid {} ({started:x})", std::process::id())
}

/// The dead letters' reason when `retry_give_up` ran out.
fn gave_up(what: &str, spent: Duration, last: &anyhow::Error) -> String {
    let spent = Duration::from_secs(spent.as_secs());
    format!(
        "{what} gave up after {} of failures (retry_give_up); last error: {last:#}",
        humantime::format_duration(spent)
    )
}

fn refuse(index: usize, reason: &str) -> Rejected {
    Rejected {
        index,
        reason: reason.to_string(),
    }
}

/// An object's body, read again until GCS answers; empty (and logged) if it vanished.
async fn fetch(gcs: &GcsSink, stage: &str, o: &FinishedObject) -> Vec<u8> {
    let mut waits = outage_backoff();
    loop {
        match gcs.get(&o.name).await {
            Ok(Some((body, _))) => return body,
            Ok(None) => {
                tracing::error!("{stage}: {} vanished; {} rows lost", o.uri, o.rows);
                return Vec::new();
            }
            Err(e) => {
                tracing::error!("{stage}: {e:#}; retrying");
                tokio::time::sleep(waits.next_wait()).await;
            }
        }
    }
}

/// The rows of object `o`'s gzip NDJSON body, as they were written; they end where the gzip
/// stops being valid (logged).
fn rows<'a>(
    body: &'a [u8],
    stage: &'a str,
    o: &'a FinishedObject,
) -> impl Iterator<Item = Vec<u8>> + 'a {
    std::io::BufReader::new(flate2::read::GzDecoder::new(body))
        .split(b'\n')
        .map_while(move |line| {
            line.inspect_err(|e| tracing::error!("{stage}: {} is not valid gzip: {e}", o.uri))
                .ok()
        })
}
