//! A plugin that misbehaves on purpose, for the sandbox tests. Its `mode` config picks how:
//!
//! - `pass`: keeps every record (the control case)
//! - `loop`: spins forever in `process` (must be stopped by the deadline or fuel)
//! - `oom`: allocates until memory runs out (must be stopped by the memory cap)
//! - `trap-on`: panics (a wasm trap) on records whose value contains `needle`
//! - `loop-on`: spins forever on records whose value contains `needle`
//! - `reject`: refuses its config in `init`
//! - `wrong-count`: returns one outcome too few
//! - `leak`: keeps `leak_kib` KiB per call alive forever (a leaking guest)
//! - `log-flood`: logs 10,000 lines per call
//! - `outcomes`: exercises every outcome, by record index modulo 6: keep, drop, set-value
//!   (upper-cased), replace (key `replaced`), expand into two copies, expand into nothing
//! - `stack-on`: recurses without end on records whose value contains `needle` (the stack
//!   overflows)
//! - `expand-bomb`: expands each record into `copies` copies of itself
//! - `trap-in-init`: panics in `init`

use std::sync::Mutex;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "transform",
});

use sluice::transform::log::{Level, log};

struct Config {
    mode: String,
    needle: Vec<u8>,
    leak_kib: usize,
    copies: usize,
}

static CONFIG: Mutex<Option<Config>> = Mutex::new(None);
static LEAKED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

struct Hostile;

impl Guest for Hostile {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let get = |k: &str| {
            config
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let mode = get("mode").unwrap_or_else(|| "pass".into());
        if mode == "reject" {
            return Err("mode=reject: this plugin refuses every config".into());
        }
        if mode == "trap-in-init" {
            panic!("mode=trap-in-init");
        }
        let known = [
            "pass",
            "loop",
            "oom",
            "trap-on",
            "loop-on",
            "wrong-count",
            "outcomes",
            "leak",
            "log-flood",
            "stack-on",
            "expand-bomb",
        ];
        if !known.contains(&mode.as_str()) {
            return Err(format!("unknown mode `{mode}`"));
        }
        let number = |k: &str| {
            get(k)
                .map(|v| v.parse().map_err(|_| format!("{k}: not a number")))
                .transpose()
        };
        let leak_kib = number("leak_kib")?;
        *CONFIG.lock().unwrap() = Some(Config {
            mode,
            needle: get("needle").unwrap_or_default().into_bytes(),
            leak_kib: leak_kib.unwrap_or(1024),
            copies: number("copies")?.unwrap_or(2),
        });
        Ok(())
    }

    fn process(batch: Vec<Record>) -> Vec<Outcome> {
        let guard = CONFIG.lock().unwrap();
        let config = guard.as_ref().expect("init ran");
        let hit = |r: &Record| {
            !config.needle.is_empty()
                && r.value
                    .windows(config.needle.len())
                    .any(|w| w == config.needle)
        };
        match config.mode.as_str() {
            "loop" => spin(),
            "oom" => {
                let mut hog: Vec<Vec<u8>> = Vec::new();
                loop {
                    hog.push(vec![1u8; 1 << 20]);
                }
            }
            "trap-on" if batch.iter().any(hit) => panic!("poison record"),
            "loop-on" if batch.iter().any(hit) => spin(),
            "stack-on" if batch.iter().any(hit) => {
                std::hint::black_box(recurse(0));
            }
            "expand-bomb" => {
                return batch
                    .into_iter()
                    .map(|r| Outcome::Expand(vec![r; config.copies]))
                    .collect();
            }
            "wrong-count" => return vec![Outcome::Keep; batch.len().saturating_sub(1)],
            "outcomes" => {
                return batch
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| every_outcome(i, r))
                    .collect();
            }
            "leak" => LEAKED
                .lock()
                .unwrap()
                .push(vec![7u8; config.leak_kib << 10]),
            "log-flood" => (0..10_000).for_each(|i| log(Level::Info, &format!("flood {i}"))),
            _ => {}
        }
        vec![Outcome::Keep; batch.len()]
    }
}

fn every_outcome(i: usize, r: Record) -> Outcome {
    match i % 6 {
        0 => Outcome::Keep,
        1 => Outcome::Drop,
        2 => Outcome::SetValue(r.value.to_ascii_uppercase()),
        3 => Outcome::Replace(Record {
            key: Some(b"replaced".to_vec()),
            ..r
        }),
        4 => Outcome::Expand(vec![r.clone(), r]),
        _ => Outcome::Expand(Vec::new()),
    }
}

/// Recursion the optimiser cannot turn into a loop, on wasm's own call stack (no frame in
/// linear memory), until the host's stack limit stops it.
fn recurse(depth: u64) -> u64 {
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    1 + recurse(std::hint::black_box(depth + 1))
}

fn spin() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

export!(Hostile);
