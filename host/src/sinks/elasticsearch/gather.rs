//! Records gathered across batches, so that small pipeline batches still make full `_bulk`
//! requests. The sink reports what it gathered through `Sink::holds`, so no batch is
//! acknowledged to the source before its records are indexed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::{Positions, Record, StageOutput};

#[derive(Debug, Default)]
pub(super) struct Gathered {
    pub records: Vec<Record>,
    /// Per record, its index in the batch it came with (for the dead letter).
    pub origins: Vec<u32>,
    bytes: usize,
    /// Per input stream, the first position of the batches gathered here.
    first: BTreeMap<Arc<str>, u64>,
    /// When the oldest record here arrived.
    since: Option<Instant>,
}

impl Gathered {
    /// Takes a copy of the batch's records.
    pub fn add(&mut self, out: &StageOutput, positions: &Positions) {
        if out.records.is_empty() {
            return;
        }
        self.records.extend_from_slice(&out.records);
        self.origins.extend_from_slice(&out.origins);
        self.bytes += out.records.iter().map(|r| r.value.len()).sum::<usize>();
        let streams = positions.streams();
        for (s, first, _) in positions.ranges() {
            self.first.entry(streams[s].clone()).or_insert(first);
        }
        self.since.get_or_insert_with(Instant::now);
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Whether there is enough for `docs` documents or `bytes` bytes.
    pub fn reaches(&self, docs: usize, bytes: usize) -> bool {
        self.records.len() >= docs || self.bytes >= bytes
    }

    /// Whether records of `stream` at or before `last` are here.
    pub fn holds(&self, stream: &str, last: u64) -> bool {
        self.first.get(stream).is_some_and(|&first| first <= last)
    }

    /// When the oldest record here has waited `linger`.
    pub fn due(&self, linger: Duration) -> Option<Instant> {
        self.since.map(|t| t + linger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize, stream: &Arc<str>, first: u64) -> (StageOutput, Positions) {
        let mut out = StageOutput::default();
        for i in 0..n {
            let record = Record {
                key: None,
                value: vec![b'x'; 10],
                headers: Vec::new(),
                timestamp: None,
            };
            out.push(record, i as u32);
        }
        let positions = Positions::Sequence {
            stream: stream.clone(),
            first,
            len: n as u64,
        };
        (out, positions)
    }

    #[test]
    fn holds_from_the_first_gathered_position_on_and_counts_docs_and_bytes() {
        let s: Arc<str> = "t-0".into();
        let mut g = Gathered::default();
        assert!(g.is_empty() && g.due(Duration::from_secs(1)).is_none());
        let (out, pos) = batch(3, &s, 100);
        g.add(&out, &pos);
        let (out, pos) = batch(2, &s, 103);
        g.add(&out, &pos);
        assert_eq!(g.origins, vec![0, 1, 2, 0, 1]);
        assert!(!g.holds(&s, 99), "before the first gathered position");
        assert!(g.holds(&s, 100) && g.holds(&s, 104));
        assert!(!g.holds("t-1", 104), "another stream");
        assert!(g.reaches(5, usize::MAX) && g.reaches(usize::MAX, 50));
        assert!(!g.reaches(6, 51));
        assert!(g.due(Duration::from_secs(1)).is_some());
        // A batch the chain dropped entirely adds nothing.
        let mut empty = Gathered::default();
        empty.add(&StageOutput::default(), &batch(0, &s, 7).1);
        assert!(empty.is_empty() && !empty.holds(&s, 7));
    }
}
