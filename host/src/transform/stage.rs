//! One transform of a chain, with failure isolation.
//!
//! A batch that makes the plugin trap, time out, exhaust its fuel or hit its memory cap is
//! split in halves and retried on fresh instances until the records that cause the failure
//! are alone; those are dead-lettered with the reason and the rest go on. A batch costs
//! O(k log n) extra calls for k poison records among n.

use std::sync::Arc;
use std::time::Instant;

use super::plugin::{CallError, Instance, Plugin};
use super::{Outcome, Record};
use crate::event::{DeadLetter, StageOutput};
use crate::telemetry::{PluginMetrics, StageMetrics, Telemetry};

/// After this many isolated failures within one batch the plugin is considered broken for
/// that batch: the remaining records are dead-lettered with the last error instead of being
/// bisected one by one (each probe may cost a full timeout).
const MAX_ISOLATED_FAILURES_PER_BATCH: usize = 16;

/// A plugin in a chain and its current instance, re-created on failure or when worn out.
pub struct Stage {
    plugin: Arc<Plugin>,
    name: Arc<str>,
    instance: Option<Instance>,
    /// Instances created after a failure or recycling (for stats and tests).
    pub restarts: u64,
    metrics: StageMetrics,
    calls: PluginMetrics,
}

impl Stage {
    /// Creates the stage and its first instance, so config errors surface at start.
    pub fn new(plugin: Arc<Plugin>) -> anyhow::Result<Self> {
        let instance = plugin.instantiate()?;
        Ok(Self {
            name: plugin.spec.name.as_str().into(),
            plugin,
            instance: Some(instance),
            restarts: 0,
            metrics: StageMetrics::default(),
            calls: PluginMetrics::default(),
        })
    }

    /// Reports to `telemetry` as stage `transforms.NAME`.
    pub fn observe(&mut self, telemetry: &Telemetry) {
        let stage = format!("transforms.{}", self.name);
        self.metrics = telemetry.stage(&stage);
        self.calls = telemetry.plugin(&stage);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Another stage of the same compiled plugin, with an instance of its own, reporting to
    /// the same counters (a chain worker's copy).
    pub fn replicate(&self) -> anyhow::Result<Self> {
        let mut stage = Self::new(self.plugin.clone())?;
        stage.metrics = self.metrics.clone();
        stage.calls = self.calls.clone();
        Ok(stage)
    }

    /// Runs `batch` (whose records came from input indexes `origins`) through the plugin,
    /// appending to `out`, in calls of at most the runtime's `max_call_bytes` of values (a
    /// larger record goes alone): the guest's memory grows with a call, not with the batch.
    pub fn process(&mut self, batch: Vec<Record>, origins: &[u32], out: &mut StageOutput) {
        let started = Instant::now();
        let records_in = batch.len() as u64;
        let bytes_in = batch.iter().map(|r| r.value.len() as u64).sum();
        let before = (out.records.len(), out.dropped, out.dead.len());
        let mut failures = 0;
        let ends = call_ends(&batch, self.plugin.max_call_bytes());
        if ends.len() == 1 {
            self.run(batch, origins, out, &mut failures);
        } else {
            let (mut records, mut start) = (batch.into_iter(), 0);
            for end in ends {
                let call: Vec<Record> = records.by_ref().take(end - start).collect();
                self.run(call, &origins[start..end], out, &mut failures);
                start = end;
            }
        }
        // Every counter after the batch, so that a scrape sees in = out + dropped + dead.
        let m = &self.metrics;
        m.records_in.inc_by(records_in);
        m.bytes_in.inc_by(bytes_in);
        let new = &out.records[before.0..];
        m.records_out.inc_by(new.len() as u64);
        m.bytes_out
            .inc_by(new.iter().map(|r| r.value.len() as u64).sum());
        m.dropped.inc_by(out.dropped - before.1);
        m.dead_lettered.inc_by((out.dead.len() - before.2) as u64);
        m.batch_seconds.observe(started.elapsed().as_secs_f64());
    }

    fn run(
        &mut self,
        batch: Vec<Record>,
        origins: &[u32],
        out: &mut StageOutput,
        failures: &mut usize,
    ) {
        if batch.is_empty() {
            return;
        }
        let error = match self.call(&batch) {
            Ok(outcomes) => {
                self.apply(batch, origins, outcomes, out);
                return;
            }
            Err(e) => e,
        };
        if batch.len() == 1 || *failures >= MAX_ISOLATED_FAILURES_PER_BATCH {
            *failures += batch.len();
            let reason = if batch.len() == 1 {
                error.to_string()
            } else {
                format!(
                    "{error} (plugin failed {failures} times in this batch; not isolating further)"
                )
            };
            tracing::warn!(plugin = %self.name, records = batch.len(), "dead-lettering: {reason}");
            for (record, &origin) in batch.into_iter().zip(origins) {
                out.dead.push(DeadLetter {
                    record,
                    stage: self.name.clone(),
                    reason: reason.clone(),
                    origin,
                });
            }
            return;
        }
        tracing::debug!(plugin = %self.name, records = batch.len(), "isolating failure: {error}");
        let mut left = batch;
        let right = left.split_off(left.len() / 2);
        let (lo, ro) = origins.split_at(left.len());
        self.run(left, lo, out, failures);
        self.run(right, ro, out, failures);
    }

    /// One call on a healthy instance; the instance is discarded if the call fails.
    fn call(&mut self, batch: &[Record]) -> Result<Vec<Outcome>, CallError> {
        let instance = match self.instance.take() {
            Some(i) if !i.worn_out() => i,
            _ => {
                self.restarts += 1;
                self.calls.restarts.inc();
                self.plugin
                    .instantiate()
                    .map_err(|e| CallError::Trap(format!("could not re-create instance: {e:#}")))?
            }
        };
        let mut instance = instance;
        let started = Instant::now();
        let result = instance.process(batch);
        let calls = &self.calls;
        calls.call_seconds.observe(started.elapsed().as_secs_f64());
        if let Some(fuel) = instance.fuel_used() {
            calls.fuel.inc_by(fuel);
        }
        match &result {
            Ok(_) => self.instance = Some(instance),
            Err(e) => {
                match e {
                    CallError::Timeout(_) => &calls.timeouts,
                    CallError::OutOfFuel(_) => &calls.out_of_fuel,
                    CallError::Memory(_) => &calls.memory,
                    CallError::Trap(_) => &calls.traps,
                    CallError::WrongCount { .. } => &calls.contract,
                }
                .inc();
            }
        }
        result
    }

    fn apply(
        &self,
        batch: Vec<Record>,
        origins: &[u32],
        outcomes: Vec<Outcome>,
        out: &mut StageOutput,
    ) {
        for ((mut record, &origin), outcome) in batch.into_iter().zip(origins).zip(outcomes) {
            match outcome {
                Outcome::Keep => out.push(record, origin),
                Outcome::Drop => out.dropped += 1,
                Outcome::SetValue(value) => {
                    record.value = value;
                    out.push(record, origin);
                }
                Outcome::Replace(r) => out.push(r, origin),
                Outcome::Expand(rs) => {
                    if rs.is_empty() {
                        out.dropped += 1;
                    }
                    for r in rs {
                        out.push(r, origin);
                    }
                }
                Outcome::Fail(reason) => out.dead.push(DeadLetter {
                    record,
                    stage: self.name.clone(),
                    reason,
                    origin,
                }),
            }
        }
    }
}

/// Where each call's records end: consecutive runs of `batch` of at most `limit` value bytes,
/// each with at least one record.
fn call_ends(batch: &[Record], limit: usize) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut bytes = 0;
    for (i, r) in batch.iter().enumerate() {
        if bytes > 0 && bytes + r.value.len() > limit {
            ends.push(i);
            bytes = 0;
        }
        bytes += r.value.len().max(1);
    }
    ends.push(batch.len());
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(lens: &[usize]) -> Vec<Record> {
        lens.iter()
            .map(|&n| Record {
                key: None,
                value: vec![b'x'; n],
                headers: Vec::new(),
                timestamp: None,
            })
            .collect()
    }

    #[test]
    fn calls_are_cut_at_the_byte_limit_and_a_big_record_goes_alone() {
        assert_eq!(call_ends(&sized(&[4, 4, 4, 4, 4]), 8), vec![2, 4, 5]);
        assert_eq!(call_ends(&sized(&[3, 20, 3, 3]), 8), vec![1, 2, 4]);
        assert_eq!(call_ends(&sized(&[8, 8]), 8), vec![1, 2]);
        assert_eq!(call_ends(&sized(&[1, 1, 1]), 1 << 20), vec![3]);
        assert_eq!(call_ends(&sized(&[]), 8), vec![0]);
    }
}
