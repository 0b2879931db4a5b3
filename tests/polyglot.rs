//! Every implementation of a plugin, whatever its language, held to the same test vectors
//! (guest-plugins/vectors): the Rust plugins and their Python (componentize-py), JavaScript
//! (jco) and, for keyword-filter, Go (wasip1) ports, through the host's real runtime. Outcomes must be byte-identical; the only
//! tolerance is the documented one: after `not valid JSON: `, the parser's own words.
//!
//! `SLUICE_BLESS_VECTORS=1 cargo test -p sluice-tests --test polyglot` rewrites
//! guest-plugins/vectors/expected from the Rust plugins (review the diff before committing).

mod common;
mod common_polyglot;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sluice::transform::{Outcome, Plugin, PluginSpec, Record};
use tweetgen::{GenerateOptions, TweetGenerator};

/// One implementation of a plugin: its language, its component in guest-plugins/dist, and
/// the grants it needs: the empty WASI (componentize-py and the Go runtime import WASI), and
/// real clocks (the Go runtime refuses to start on a clock frozen at zero).
#[derive(Clone, Copy, Debug)]
struct Implementation {
    lang: &'static str,
    component: &'static str,
    wasi: bool,
    clocks: bool,
}

const fn imp(lang: &'static str, component: &'static str, wasi: bool) -> Implementation {
    Implementation {
        lang,
        component,
        wasi,
        clocks: false,
    }
}

/// The Rust plugin first: it is the reference the vectors are blessed from.
fn implementations(plugin: &str) -> Vec<Implementation> {
    match plugin {
        "keyword-filter" => vec![
            imp("rust", "keyword_filter", false),
            imp("python", "keyword_filter_py", true),
            imp("javascript", "keyword_filter_js", false),
            Implementation {
                clocks: true,
                ..imp("go", "keyword_filter_go", true)
            },
        ],
        "enrich" => vec![
            imp("rust", "enrich", false),
            imp("python", "enrich_py", true),
            imp("javascript", "enrich_js", false),
        ],
        other => panic!("no implementations of {other}"),
    }
}

/// Values longer than this are compared by SHA-256 and length in the vectors.
const INLINE_VALUE: usize = 4096;
/// Reasons with this prefix match on the prefix: the rest is the JSON parser's own message.
const PARSER_REASON: &str = "not valid JSON: ";

fn vectors() -> PathBuf {
    root().join("guest-plugins/vectors")
}

fn read_json(name: &str) -> Value {
    let path = vectors().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The named inputs of inputs.json, as record values.
fn inputs() -> Vec<(String, Vec<u8>)> {
    let doc = read_json("inputs.json");
    doc["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let name = item["name"].as_str().unwrap().to_string();
            let bytes = if let Some(text) = item["text"].as_str() {
                text.as_bytes().to_vec()
            } else if let Some(b64) = item["base64"].as_str() {
                base64_decode(b64)
            } else {
                let r = &item["repeat"];
                let unit = r["unit"].as_str().unwrap();
                let mut s = r["head"].as_str().unwrap().to_string();
                for i in 0..r["count"].as_u64().unwrap() {
                    s.push_str(&unit.replace("{i}", &i.to_string()));
                }
                s.push_str(r["tail"].as_str().unwrap());
                s.into_bytes()
            };
            (name, bytes)
        })
        .collect()
}

fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn config_pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn load_impl(i: Implementation, config: &[(String, String)]) -> anyhow::Result<Arc<Plugin>> {
    let mut spec = PluginSpec::new(i.component, plugin(i.component));
    spec.config = config.to_vec();
    spec.grants.wasi = i.wasi;
    spec.grants.clocks = i.clocks;
    spec.memory = 256 << 20;
    spec.timeout = std::time::Duration::from_secs(30);
    common_polyglot::warm(&spec.path, false);
    Plugin::load(common_polyglot::runtime(), spec)
}

/// Runs `values` through `i` as batches of `batch` records; one outcome per value.
fn run(
    i: Implementation,
    config: &[(String, String)],
    values: &[&[u8]],
    batch: usize,
) -> Vec<Outcome> {
    let plugin = load_impl(i, config).unwrap();
    let mut instance = plugin.instantiate().unwrap();
    let mut out = Vec::new();
    for chunk in values.chunks(batch) {
        let records: Vec<Record> = chunk.iter().map(|v| record(v)).collect();
        let outcomes = instance
            .process(&records)
            .unwrap_or_else(|e| panic!("{} failed a batch: {e:?}", i.component));
        assert_eq!(outcomes.len(), records.len(), "{}", i.component);
        out.extend(outcomes);
    }
    out
}

/// The vectors' form of an outcome.
fn describe(o: &Outcome) -> Value {
    match o {
        Outcome::Keep => json!({"outcome": "keep"}),
        Outcome::Drop => json!({"outcome": "drop"}),
        Outcome::SetValue(v) if v.len() <= INLINE_VALUE => match std::str::from_utf8(v) {
            Ok(s) => json!({"outcome": "set-value", "value": s}),
            Err(_) => json!({"outcome": "set-value", "value_sha256": sha256(v), "len": v.len()}),
        },
        Outcome::SetValue(v) => {
            json!({"outcome": "set-value", "value_sha256": sha256(v), "len": v.len()})
        }
        Outcome::Fail(reason) => json!({"outcome": "fail", "reason": reason}),
        Outcome::Replace(_) | Outcome::Expand(_) => {
            json!({"outcome": "unexpected", "debug": format!("{o:?}")})
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether an outcome matches the expected one: exactly, except that a `not valid JSON: `
/// reason matches on that prefix (the parser's message after it is its own).
fn matches(expected: &Value, got: &Value) -> bool {
    if expected == got {
        return true;
    }
    let (Some(want), Some(have)) = (expected["reason"].as_str(), got["reason"].as_str()) else {
        return false;
    };
    want.starts_with(PARSER_REASON)
        && have.starts_with(PARSER_REASON)
        && have.len() > PARSER_REASON.len()
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 400 {
        format!("{}…", s.chars().take(400).collect::<String>())
    } else {
        s
    }
}

/// Checks one implementation against one case's expected outcomes; returns the mismatches.
fn check_case(
    i: Implementation,
    config: &[(String, String)],
    inputs: &[(String, Vec<u8>)],
    expected: &Value,
    batch: usize,
) -> Vec<String> {
    let values: Vec<&[u8]> = inputs.iter().map(|(_, v)| v.as_slice()).collect();
    let got = run(i, config, &values, batch);
    let mut problems = Vec::new();
    for ((name, _), outcome) in inputs.iter().zip(&got) {
        let want = &expected["outcomes"][name];
        let have = describe(outcome);
        if want.is_null() {
            problems.push(format!(
                "{}: no expected outcome for input `{name}`",
                i.lang
            ));
        } else if !matches(want, &have) {
            problems.push(format!(
                "{} (batch {batch}) on `{name}`:\n    expected {}\n    got      {}",
                i.lang,
                short(want),
                short(&have)
            ));
        }
    }
    problems
}

fn bless(case: &Value, inputs: &[(String, Vec<u8>)]) {
    let plugin = case["plugin"].as_str().unwrap();
    let config = config_pairs(&case["config"]);
    let rust = implementations(plugin)[0];
    let values: Vec<&[u8]> = inputs.iter().map(|(_, v)| v.as_slice()).collect();
    let outcomes = run(rust, &config, &values, values.len());
    let mut map = serde_json::Map::new();
    for ((name, _), o) in inputs.iter().zip(&outcomes) {
        map.insert(name.clone(), describe(o));
    }
    let doc = json!({
        "case": case["name"],
        "plugin": plugin,
        "config": case["config"],
        "outcomes": map,
    });
    let path = vectors()
        .join("expected")
        .join(format!("{}.json", case["name"].as_str().unwrap()));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
}

#[test]
fn every_implementation_matches_the_vectors() {
    let inputs = inputs();
    let cases = read_json("cases.json");
    let blessing = std::env::var_os("SLUICE_BLESS_VECTORS").is_some();
    let mut problems = Vec::new();
    let mut checked = 0;
    for case in cases["cases"].as_array().unwrap() {
        if blessing {
            bless(case, &inputs);
        }
        let name = case["name"].as_str().unwrap();
        let expected = read_json(&format!("expected/{name}.json"));
        assert_eq!(
            expected["config"], case["config"],
            "expected/{name}.json is stale: re-bless"
        );
        let config = config_pairs(&case["config"]);
        for i in implementations(case["plugin"].as_str().unwrap()) {
            // The whole list as one batch, and record by record.
            for batch in [inputs.len(), 1] {
                let found = check_case(i, &config, &inputs, &expected, batch);
                problems.extend(found.into_iter().map(|p| format!("[{name}] {p}")));
                checked += inputs.len();
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(checked > 500, "only {checked} outcomes checked");
}

#[test]
fn the_vectors_cover_every_kind_of_outcome() {
    let cases = read_json("cases.json");
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for case in cases["cases"].as_array().unwrap() {
        let expected = read_json(&format!("expected/{}.json", case["name"].as_str().unwrap()));
        for o in expected["outcomes"].as_object().unwrap().values() {
            let mut kind = o["outcome"].as_str().unwrap().to_string();
            if let Some(reason) = o["reason"].as_str() {
                kind.push_str(if reason.starts_with(PARSER_REASON) {
                    " (parser)"
                } else {
                    " (exact)"
                });
            }
            if o.get("value_sha256").is_some() {
                kind.push_str(" (hashed)");
            }
            *kinds.entry(kind).or_default() += 1;
        }
    }
    for kind in [
        "keep",
        "drop",
        "set-value",
        "set-value (hashed)",
        "fail (exact)",
        "fail (parser)",
    ] {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) >= 2,
            "vectors have too few `{kind}` outcomes: {kinds:?}"
        );
    }
}

/// The comparison itself must be able to fail: a changed byte, a changed outcome or a changed
/// exact reason are all caught; only the parser's words after `not valid JSON: ` are free.
#[test]
fn the_comparison_catches_differences() {
    let set = |s: &str| describe(&Outcome::SetValue(s.as_bytes().to_vec()));
    let fail = |s: &str| describe(&Outcome::Fail(s.to_string()));
    assert!(matches(&set(r#"{"a":1}"#), &set(r#"{"a":1}"#)));
    assert!(!matches(&set(r#"{"a":1}"#), &set(r#"{"a": 1}"#)));
    assert!(!matches(&set("x"), &describe(&Outcome::Keep)));
    assert!(!matches(
        &describe(&Outcome::Keep),
        &describe(&Outcome::Drop)
    ));
    assert!(matches(
        &fail("not valid JSON: expected value at line 1 column 1"),
        &fail("not valid JSON: Expecting value: line 1 column 1 (char 0)")
    ));
    assert!(!matches(
        &fail("not valid JSON: x"),
        &fail("not valid JSON: ")
    ));
    assert!(!matches(
        &fail("not a JSON object: the document is an array"),
        &fail("not a JSON object: the document is a string")
    ));
    assert!(!matches(
        &fail("not valid UTF-8: invalid utf-8 sequence of 1 bytes from index 9"),
        &fail("not valid UTF-8: invalid utf-8 sequence of 1 bytes from index 8")
    ));
    let big = "x".repeat(INLINE_VALUE + 1);
    let mut other = big.clone();
    other.replace_range(100..101, "y");
    assert!(!matches(&set(&big), &set(&other)));
}

#[test]
fn config_errors_are_the_same_in_every_language() {
    let cases = read_json("cases.json");
    let mut problems = Vec::new();
    for case in cases["config_errors"].as_array().unwrap() {
        let config = config_pairs(&case["config"]);
        let want = case["error"].as_str().unwrap();
        for i in implementations(case["plugin"].as_str().unwrap()) {
            let err = match load_impl(i, &config).and_then(|p| p.instantiate()) {
                Ok(_) => "accepted the config".to_string(),
                Err(e) => format!("{e:#}"),
            };
            let expected = format!("rejected its config: {want}");
            if !err.ends_with(&expected) {
                problems.push(format!(
                    "{} {config:?}:\n    expected …{expected}\n    got {err}",
                    i.lang
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Beyond the vectors: generated tweets of both shapes (2% of them over 1,000 fields), each
/// implementation against the Rust plugin, byte for byte.
#[test]
fn generated_tweets_agree_with_the_rust_plugins() {
    let mut generator = TweetGenerator::new(&GenerateOptions {
        seed: 11,
        wide_share: 0.02,
        ..GenerateOptions::default()
    });
    let tweets: Vec<Vec<u8>> = (0..600)
        .map(|_| {
            let mut buf = Vec::new();
            generator.next_into(&mut buf);
            buf
        })
        .collect();
    let values: Vec<&[u8]> = tweets.iter().map(Vec::as_slice).collect();
    let configs: [(&str, Vec<(String, String)>); 3] = [
        (
            "keyword-filter",
            vec![("keywords".into(), "bts,방탄소년단".into())],
        ),
        ("enrich", vec![]),
        (
            "enrich",
            vec![("keywords".into(), "bts,army,방탄소년단".into())],
        ),
    ];
    let mut problems = Vec::new();
    for (plugin, config) in &configs {
        let all = implementations(plugin);
        let (rust, others) = (all[0], &all[1..]);
        let want: Vec<Value> = run(rust, config, &values, 100)
            .iter()
            .map(describe)
            .collect();
        for &i in others {
            let got = run(i, config, &values, 100);
            for (n, (w, g)) in want.iter().zip(got.iter().map(describe)).enumerate() {
                if !matches(w, &g) {
                    problems.push(format!(
                        "{plugin} {}: tweet {n}:\n    rust {}\n    got  {}",
                        i.lang,
                        short(w),
                        short(&g)
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
