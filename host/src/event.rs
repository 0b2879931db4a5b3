//! The vocabulary every part of the pipeline speaks, and nothing else: records (the WIT
//! contract's type), what a chain makes of a batch, where a batch came from, and what could
//! not be processed or delivered. It depends on nothing else in the crate, so sources, the
//! transform engine and sinks can all use it without using each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// Bindings generated from `wit/transform.wit`: the record types here, the plugin's exports
/// for the transform engine.
pub mod wit {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
    });

    /// The contract's text, for the plugin tools (scaffolds, componentize).
    pub const SOURCE: &str = include_str!("../../wit/transform.wit");
}

pub use wit::sluice::transform::types::{Header, Record};

/// A record the pipeline could not deliver, and why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub record: Record,
    /// The transform (or `host`) that gave up on it.
    pub stage: Arc<str>,
    pub reason: String,
    /// Index of the input record (of the batch given to the chain) it came from.
    pub origin: u32,
}

/// What a stage (or a whole chain) made of a batch.
#[derive(Debug, Default)]
pub struct StageOutput {
    pub records: Vec<Record>,
    /// `origins[i]` is the input index that `records[i]` came from.
    pub origins: Vec<u32>,
    pub dropped: u64,
    pub dead: Vec<DeadLetter>,
}

impl StageOutput {
    pub fn clear(&mut self) {
        self.records.clear();
        self.origins.clear();
        self.dropped = 0;
        self.dead.clear();
    }

    pub fn push(&mut self, record: Record, origin: u32) {
        self.records.push(record);
        self.origins.push(origin);
    }
}

/// Where a batch's records came from. Sinks that name their output after its input (GCS
/// objects) use it so that re-reading the same input after a crash gives the same names.
#[derive(Debug, Clone)]
pub enum Positions {
    /// Records `first..first + len` of one stream that cannot be re-read (generated, files,
    /// Twitter): numbered from 0 in each run, under a stream name unique to the run.
    Sequence {
        stream: Arc<str>,
        first: u64,
        len: u64,
    },
    /// Kafka: per record, its topic-partition (an index into `streams`, named
    /// `<topic>-<partition>`) and its offset; per stream, the assignment it was read under
    /// (see [`Ownership`]).
    Offsets {
        streams: Vec<Arc<str>>,
        epochs: Vec<u64>,
        of: Vec<(u32, u64)>,
    },
}

impl Positions {
    /// Whether the source re-delivers the same positions after a restart (so work already
    /// done for them can be recognised).
    pub fn replayable(&self) -> bool {
        matches!(self, Positions::Offsets { .. })
    }

    pub fn streams(&self) -> &[Arc<str>] {
        match self {
            Positions::Sequence { stream, .. } => std::slice::from_ref(stream),
            Positions::Offsets { streams, .. } => streams,
        }
    }

    /// The assignment epoch stream `s` was read under (0 for streams that are never
    /// reassigned).
    pub fn epoch(&self, s: usize) -> u64 {
        match self {
            Positions::Sequence { .. } => 0,
            Positions::Offsets { epochs, .. } => epochs[s],
        }
    }

    /// The stream (index into [`Positions::streams`]) and position of input record `i`.
    pub fn of(&self, i: usize) -> (usize, u64) {
        match self {
            Positions::Sequence { first, .. } => (0, first + i as u64),
            Positions::Offsets { of, .. } => (of[i].0 as usize, of[i].1),
        }
    }

    /// Per stream (index into [`Positions::streams`]), the first and last position of the
    /// batch; streams without records are left out.
    pub fn ranges(&self) -> Vec<(usize, u64, u64)> {
        match self {
            Positions::Sequence { len: 0, .. } => Vec::new(),
            Positions::Sequence { first, len, .. } => vec![(0, *first, first + len - 1)],
            Positions::Offsets { streams, of, .. } => {
                let mut r: Vec<Option<(u64, u64)>> = vec![None; streams.len()];
                for &(s, o) in of {
                    let e = r[s as usize].get_or_insert((o, o));
                    e.0 = e.0.min(o);
                    e.1 = e.1.max(o);
                }
                r.into_iter()
                    .enumerate()
                    .filter_map(|(s, e)| e.map(|(a, b)| (s, a, b)))
                    .collect()
            }
        }
    }
}

/// The input streams (Kafka partitions) this host owns now, each with the epoch of its
/// assignment: the Kafka source keeps it up to date through rebalances, and a sink that holds
/// records across batches (GCS objects) drops what it holds of a stream that moved to another
/// host instead of writing it. Until a source tracks ownership, every stream counts as owned.
#[derive(Clone, Debug, Default)]
pub struct Ownership(Arc<Mutex<Option<Owned>>>);

/// Stream name -> assignment epoch; `None` in [`Ownership`] until a source tracks it.
type Owned = HashMap<Arc<str>, u64>;

impl Ownership {
    /// From now on only streams [`Ownership::assign`]ed are owned.
    pub fn track(&self) {
        self.0.lock().unwrap().get_or_insert_with(HashMap::new);
    }

    pub fn assign(&self, stream: Arc<str>, epoch: u64) {
        if let Some(owned) = self.0.lock().unwrap().as_mut() {
            owned.insert(stream, epoch);
        }
    }

    pub fn revoke(&self, stream: &str) {
        if let Some(owned) = self.0.lock().unwrap().as_mut() {
            owned.remove(stream);
        }
    }

    /// Whether this host owns `stream` (under any epoch: a stream revoked and assigned back
    /// is still this host's).
    pub fn owns(&self, stream: &str) -> bool {
        self.0
            .lock()
            .unwrap()
            .as_ref()
            .is_none_or(|owned| owned.contains_key(stream))
    }
}

/// A source's position after a batch, handed back to the source once every sink holds the
/// batch. This is what makes delivery at-least-once: a source never moves past records that
/// are not yet acknowledged.
#[derive(Debug, Default)]
pub struct Checkpoint {
    /// Per partition read in the batch, the next offset to read; empty for sources that
    /// cannot re-read their input (generated records, files, the Twitter stream).
    pub offsets: Vec<PartitionOffset>,
    /// A source read through a spool: the sequence number of the first record after the batch.
    pub spooled: Option<u64>,
}

/// One partition of a partitioned log (a Kafka topic-partition) in a [`Checkpoint`].
#[derive(Debug)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    /// The assignment the records were read under: a checkpoint from an earlier ownership
    /// of the partition is never committed.
    pub epoch: u64,
    pub next: i64,
}

/// A record a sink finally could not deliver (after its own retries), to be dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Index in the slice given to [`Sink::write`].
    pub index: usize,
    pub reason: String,
}

/// A record whose value is `line` (no key, headers or timestamp).
pub fn from_line(line: &[u8]) -> Record {
    Record {
        key: None,
        value: line.to_vec(),
        headers: Vec::new(),
        timestamp: None,
    }
}

/// Bytes as a JSON string when they are UTF-8, else as `{"base64": ...}`.
fn bytes_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    }
}

/// One dead-letter line: the reason and stage first, then the whole record. The value is kept
/// as a string (not re-parsed) so malformed input survives byte for byte.
pub fn dead_letter_json(dl: &DeadLetter) -> Vec<u8> {
    let r = &dl.record;
    let headers: Map<String, Value> = r
        .headers
        .iter()
        .map(|h| (h.key.clone(), bytes_json(&h.value)))
        .collect();
    let entry = json!({
        "stage": &*dl.stage,
        "reason": dl.reason,
        "key": r.key.as_deref().map(bytes_json),
        "timestamp": r.timestamp,
        "headers": headers,
        "value": bytes_json(&r.value),
    });
    serde_json::to_vec(&entry).expect("serialising a JSON value cannot fail")
}
