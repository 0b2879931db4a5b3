//! A chain of transform stages applied to a batch, in order.

use std::sync::Arc;

use crate::telemetry::Telemetry;
use crate::transform::{Plugin, PluginSpec, Record, Runtime, Stage, StageOutput};

pub struct Chain {
    stages: Vec<Stage>,
}

impl Chain {
    pub fn load(runtime: &Runtime, specs: Vec<PluginSpec>) -> anyhow::Result<Self> {
        let mut stages = Vec::with_capacity(specs.len());
        for spec in specs {
            stages.push(Stage::new(Plugin::load(runtime, spec)?)?);
        }
        Ok(Self { stages })
    }

    pub fn from_plugins(plugins: Vec<Arc<Plugin>>) -> anyhow::Result<Self> {
        let stages = plugins
            .into_iter()
            .map(Stage::new)
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { stages })
    }

    /// Reports each stage's records and plugin calls as `transforms.NAME`.
    pub fn observe(&mut self, telemetry: &Telemetry) {
        for stage in &mut self.stages {
            stage.observe(telemetry);
        }
    }

    /// The same plugins with instances of their own, for another chain worker.
    pub fn replicate(&self) -> anyhow::Result<Self> {
        let stages = self
            .stages
            .iter()
            .map(Stage::replicate)
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { stages })
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Runs `batch` through every stage. `out` is cleared first; its `origins` index `batch`.
    pub fn process(&mut self, batch: Vec<Record>, out: &mut StageOutput) {
        out.clear();
        let mut records = batch;
        let mut origins: Vec<u32> = (0..records.len() as u32).collect();
        for stage in &mut self.stages {
            let mut next = StageOutput {
                records: Vec::with_capacity(records.len()),
                origins: Vec::with_capacity(records.len()),
                dropped: 0,
                dead: std::mem::take(&mut out.dead),
            };
            stage.process(records, &origins, &mut next);
            out.dropped += next.dropped;
            out.dead = next.dead;
            records = next.records;
            origins = next.origins;
        }
        out.records = records;
        out.origins = origins;
    }
}
