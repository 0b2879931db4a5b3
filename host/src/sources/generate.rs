//! `type = "generate"`: synthetic tweets from the `tweetgen` crate (both API shapes, wide
//! tweets, retweets), for demos, benchmarks and soak runs.

use serde::Deserialize;
use tweetgen::{GenerateOptions, TweetGenerator};

use super::api::{Batch, Source, SourceContext, SourceSettings};
use super::pace::{Pacer, check_rate, chunk_size};
use crate::event::Record;
use crate::util::Invalid;

/// `[source] type = "generate"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateConfig {
    /// Records to produce; 0 means endless.
    pub count: u64,
    /// Records per second; 0 means as fast as the pipeline takes them.
    #[serde(default)]
    pub rate: f64,
    /// Shape of the tweets: seed, shares of bts/v2/retweets/wide tweets, timing.
    #[serde(default)]
    pub tweets: GenerateOptions,
}

impl SourceSettings for GenerateConfig {
    fn validate(&self) -> Result<(), Invalid> {
        self.tweets
            .validate()
            .map_err(|m| Invalid::new("tweets", m))?;
        check_rate(self.rate)
    }

    fn open(&self, cx: &SourceContext) -> anyhow::Result<Box<dyn Source>> {
        Ok(Box::new(GenerateSource {
            generator: TweetGenerator::new(&self.tweets),
            remaining: (self.count > 0).then_some(self.count),
            pacer: Pacer::new(self.rate),
            chunk: chunk_size(self.rate, cx.batch_size, cx.batch_timeout),
            buf: Vec::new(),
        }))
    }
}

pub struct GenerateSource {
    generator: TweetGenerator,
    remaining: Option<u64>,
    pacer: Pacer,
    chunk: usize,
    buf: Vec<u8>,
}

#[async_trait::async_trait]
impl Source for GenerateSource {
    async fn next_batch(&mut self) -> anyhow::Result<Option<Batch>> {
        let n = match self.remaining {
            Some(0) => return Ok(None),
            Some(left) => left.min(self.chunk as u64) as usize,
            None => self.chunk,
        };
        self.pacer.admit(n).await;
        let mut batch = Vec::with_capacity(n);
        for _ in 0..n {
            let meta = self.generator.next_into(&mut self.buf);
            batch.push(Record {
                key: Some(meta.id.to_string().into_bytes()),
                value: self.buf.clone(),
                headers: Vec::new(),
                timestamp: Some(meta.created_at_ms),
            });
        }
        if let Some(left) = &mut self.remaining {
            *left -= n as u64;
        }
        Ok(Some(Batch::of(batch)))
    }
}
