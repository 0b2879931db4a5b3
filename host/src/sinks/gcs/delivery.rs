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
//! job. The first time a run sees a stream whose input can be re-read (Kafka partitions), it
//! reads that file, finishes the recorded job (load job ids derive from the objects, so a job
//! that already ran is found and not run again) and skips input at or before the recorded
//! position. Within a run, the sink remembers the last position it took per stream, so a
//! partition revoked and assigned again (re-read from its last commit) adds nothing twice
//! either. Run one host per group against one bucket and prefix.
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
use crate::event::{DeadLetter, Positions, Record, Rejected, StageOutput};
use crate::sinks::api::{Sink, SinkContext};
use crate::sinks::bigquery::{BigQueryLoader, LoadFailed, SchemaSetting};
use crate::telemetry::Readiness;

/// What `_sluice/<prefix><stream>.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct StreamState {
    /// Last position of the stream that is in an uploaded object (and loaded, or dead-lettered).
    through: u64,
    /// The objects of the last load job, to finish it after a crash.
    job: Vec<FinishedObject>,
}

pub struct GcsDelivery {
    objects: GcsSink,
    loader: Option<BigQueryLoader>,
    /// Feed every record to the loader's schema derivation.
    derive: bool,
    stage: Arc<str>,
    /// Input streams that can be re-read (Kafka partitions), by name: positions at or before
    /// the value are taken already, held in an object or delivered (by this run or, as the
    /// stream's state file says, an earlier one). A partition that is revoked and assigned
    /// again is re-read from its last commit; this is what keeps those records out a second time.
    taken: HashMap<Arc<str>, Option<u64>>,
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
            taken: HashMap::new(),
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
            for (s, name) in streams.iter().enumerate() {
                skip[s] = self.recovered(name).await;
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
            if self.replayable {
                self.taken.insert(streams[s].clone(), Some(last));
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
    async fn tick(&mut self) {
        let finished = match self.objects.flush_expired().await {
            Ok(done) => done,
            Err(e) => self.retry_uploads(e).await,
        };
        self.complete(finished).await;
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

    /// Records the objects in each stream's state, then loads them.
    async fn complete(&mut self, finished: Vec<FinishedObject>) {
        if finished.is_empty() {
            return;
        }
        if self.replayable {
            let mut through: HashMap<&str, u64> = HashMap::new();
            for o in &finished {
                let t = through.entry(o.stream.as_str()).or_insert(o.last);
                *t = (*t).max(o.last);
            }
            for (stream, last) in through {
                let state = StreamState {
                    through: last,
                    job: finished.clone(),
                };
                let body = serde_json::to_vec(&state).expect("state serialises");
                let name = self.state_name(stream);
                let mut waits = outage_backoff();
                while let Err(e) = self.objects.put(&name, body.clone()).await {
                    tracing::error!("{}: {e:#}; retrying", self.stage);
                    tokio::time::sleep(waits.next_wait()).await;
                }
            }
        }
        self.load(&finished).await;
    }

    /// Runs the load job until it succeeds, or dead-letters the objects' rows when BigQuery
    /// refuses them for good.
    async fn load(&mut self, objects: &[FinishedObject]) {
        let Some(loader) = self.loader.as_mut() else {
            return;
        };
        let mut waits = outage_backoff();
        let failing_since = Instant::now();
        loop {
            let started = Instant::now();
            let loaded = loader.load(objects, &[]).await;
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
            let mut waits = outage_backoff();
            let body = loop {
                match self.objects.get(&o.name).await {
                    Ok(Some(b)) => break b,
                    Ok(None) => {
                        tracing::error!("{}: {} vanished; {} rows lost", self.stage, o.uri, o.rows);
                        break Vec::new();
                    }
                    Err(e) => {
                        tracing::error!("{}: {e:#}; retrying", self.stage);
                        tokio::time::sleep(waits.next_wait()).await;
                    }
                }
            };
            self.dead_letter_rows(o, &body, reason);
        }
    }

    /// Dead-letters every row of an object's gzip NDJSON body, as it was written.
    fn dead_letter_rows(&mut self, o: &FinishedObject, body: &[u8], reason: &str) {
        let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(body));
        for line in reader.split(b'\n') {
            let value = match line {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!("{}: {} is not valid gzip: {e}", self.stage, o.uri);
                    break;
                }
            };
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

    /// The last position of `stream` taken already: known in this run, or read from the
    /// stream's state (after finishing the last load job an earlier run recorded there).
    async fn recovered(&mut self, stream: &Arc<str>) -> Option<u64> {
        if let Some(taken) = self.taken.get(stream) {
            return *taken;
        }
        let name = self.state_name(stream);
        let mut waits = outage_backoff();
        let state = loop {
            match self.objects.get(&name).await.and_then(|b| {
                b.map(|b| {
                    serde_json::from_slice::<StreamState>(&b)
                        .with_context(|| format!("gcs: {name} is not a Sluice stream state"))
                })
                .transpose()
            }) {
                Ok(s) => break s,
                Err(e) => {
                    tracing::error!("{}: {e:#}; retrying", self.stage);
                    tokio::time::sleep(waits.next_wait()).await;
                }
            }
        };
        let through = match state {
            Some(state) => {
                tracing::info!(
                    "{}: {stream} was delivered through position {} by an earlier run",
                    self.stage,
                    state.through
                );
                self.load(&state.job).await;
                Some(state.through)
            }
            None => None,
        };
        self.taken.insert(stream.clone(), through);
        through
    }

    fn state_name(&self, stream: &str) -> String {
        format!("_sluice/{}{stream}.json", self.objects.config().prefix)
    }
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
