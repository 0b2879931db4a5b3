//! Every implementation of a plugin, whatever its language, held to the same test vectors
//! (guest-plugins/vectors): the Rust plugins and their Python (componentize-py), JavaScript
//! (jco), Go (wasip1) and, for keyword-filter, C (clang and wasi-libc) ports, through the
//! host's real runtime. Outcomes must be byte-identical; the only tolerance is the documented
//! one: after `not valid JSON: `, the parser's own words.
//!
//! `SLUICE_BLESS_VECTORS=1 cargo test -p sluice-tests --test polyglot` rewrites
//! guest-plugins/vectors/expected from the Rust plugins (review the diff before committing).

mod common;
mod common_polyglot;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use serde_json::{Map, Value, json};
use sluice::transform::vectors::{self, Case, Vectors};
use sluice::transform::{Outcome, Plugin, PluginSpec};
use tweetgen::{GenerateOptions, TweetGenerator};

/// One implementation of a plugin: its language, its component in guest-plugins/dist, and
/// the grants it needs: the empty WASI (componentize-py and the Go runtime import WASI), and
/// real clocks (the Go runtime refuses to start on a clock frozen at zero). The C plugin
/// imports nothing but `log`.
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

const fn go(component: &'static str) -> Implementation {
    Implementation {
        clocks: true,
        ..imp("go", component, true)
    }
}

/// The Rust plugin first: it is the reference the vectors are blessed from.
fn implementations(plugin: &str) -> Vec<Implementation> {
    match plugin {
        "keyword-filter" => vec![
            imp("rust", "keyword_filter", false),
            imp("python", "keyword_filter_py", true),
            imp("javascript", "keyword_filter_js", false),
            go("keyword_filter_go"),
            imp("c", "keyword_filter_c", false),
        ],
        "enrich" => vec![
            imp("rust", "enrich", false),
            imp("python", "enrich_py", true),
            imp("javascript", "enrich_js", false),
            go("enrich_go"),
        ],
        other => panic!("no implementations of {other}"),
    }
}

fn vectors() -> PathBuf {
    root().join("guest-plugins/vectors")
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
    let out = vectors::outcomes(&mut instance, values, batch)
        .unwrap_or_else(|e| panic!("{} failed a batch: {e:?}", i.component));
    assert_eq!(out.len(), values.len(), "{}", i.component);
    out
}

/// Checks one implementation against one case's expected outcomes; returns the mismatches.
fn check_case(
    i: Implementation,
    case: &Case,
    v: &Vectors,
    expected: &Map<String, Value>,
    batch: usize,
) -> Vec<String> {
    let got = run(i, &case.config, &v.values(), batch);
    vectors::compare(&v.inputs, &got, expected)
        .iter()
        .map(|m| format!("{} (batch {batch}) on {m}", i.lang))
        .collect()
}

fn bless(case: &Case, v: &Vectors) {
    let rust = implementations(&case.plugin)[0];
    let values = v.values();
    let outcomes = run(rust, &case.config, &values, values.len());
    let mut map = Map::new();
    for (input, o) in v.inputs.iter().zip(&outcomes) {
        map.insert(input.name.clone(), vectors::describe(o));
    }
    let doc = json!({
        "case": case.name,
        "plugin": case.plugin,
        "config": case.raw_config,
        "outcomes": map,
    });
    let path = v.expected_path(case);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
}

#[test]
fn every_implementation_matches_the_vectors() {
    let v = Vectors::load(&vectors()).unwrap();
    let blessing = std::env::var_os("SLUICE_BLESS_VECTORS").is_some();
    let mut problems = Vec::new();
    let mut checked = 0;
    for case in &v.cases {
        if blessing {
            bless(case, &v);
        }
        let expected = v
            .expected(case)
            .unwrap_or_else(|e| panic!("{e:#}: re-bless"));
        for i in implementations(&case.plugin) {
            // The whole list as one batch, and record by record.
            for batch in [v.inputs.len(), 1] {
                let found = check_case(i, case, &v, &expected, batch);
                problems.extend(found.into_iter().map(|p| format!("[{}] {p}", case.name)));
                checked += v.inputs.len();
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
    let v = Vectors::load(&vectors()).unwrap();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for case in &v.cases {
        for o in v.expected(case).unwrap().values() {
            let mut kind = o["outcome"].as_str().unwrap().to_string();
            if let Some(reason) = o["reason"].as_str() {
                kind.push_str(if reason.starts_with(vectors::PARSER_REASON) {
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

#[test]
fn config_errors_are_the_same_in_every_language() {
    let v = Vectors::load(&vectors()).unwrap();
    let mut problems = Vec::new();
    for case in &v.config_errors {
        let (config, want) = (&case.config, &case.error);
        for i in implementations(&case.plugin) {
            let err = match load_impl(i, config).and_then(|p| p.instantiate()) {
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
            .map(vectors::describe)
            .collect();
        for &i in others {
            let got = run(i, config, &values, 100);
            for (n, (w, g)) in want
                .iter()
                .zip(got.iter().map(vectors::describe))
                .enumerate()
            {
                if !vectors::matches(w, &g) {
                    let m = vectors::Mismatch {
                        input: format!("tweet {n}"),
                        expected: w.clone(),
                        got: g,
                    };
                    problems.push(format!("{plugin} {} (expected: rust) on {m}", i.lang));
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
