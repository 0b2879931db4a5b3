//! The Rust plugins (keyword-filter, field-prune, enrich) as compiled components, through the
//! real host, on both tweet shapes: the fixtures of guest-plugins/transforms and generated
//! tweets. WASM results must equal the same library run natively, byte for byte.

mod common;

use common::*;
use serde_json::Value;
use sluice::transform::{Record, Stage, StageOutput};
use sluice_transforms::{Enrich, FieldPrune, KeywordFilter, Outcome, Transform};
use tweetgen::{GenerateOptions, TweetGenerator};

const FIXTURES: [&str; 7] = [
    "v1_extended.json",
    "v1_retweet.json",
    "v1_quote.json",
    "v1_unrelated.json",
    "v2_tweet.json",
    "v2_retweet.json",
    "v2_unrelated.json",
];

fn fixtures() -> Vec<Record> {
    let ndjson = fixture("tweets.ndjson");
    ndjson
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(record)
        .collect()
}

fn run(plugin: &str, config: &[(&str, &str)], input: Vec<Record>) -> StageOutput {
    let dir = tempdir();
    let mut stage = Stage::new(load(&runtime(dir.path()), spec(plugin, config))).unwrap();
    let origins: Vec<u32> = (0..input.len() as u32).collect();
    let mut out = StageOutput::default();
    stage.process(input, &origins, &mut out);
    out
}

fn json(r: &Record) -> Value {
    serde_json::from_slice(&r.value).unwrap()
}

fn kept_fixtures(out: &StageOutput) -> Vec<&'static str> {
    out.origins.iter().map(|&o| FIXTURES[o as usize]).collect()
}

#[test]
fn keyword_filter_keeps_bts_tweets_of_both_shapes() {
    let out = run(
        "keyword_filter",
        &[("keywords", "bts,방탄소년단")],
        fixtures(),
    );
    assert_eq!(
        kept_fixtures(&out),
        vec![
            "v1_extended.json",
            "v1_retweet.json",
            "v1_quote.json",
            "v2_tweet.json",
            "v2_retweet.json"
        ]
    );
    assert_eq!(out.dropped, 2);
    // Kept records are passed through untouched (the `keep` outcome copies nothing back).
    let input = fixtures();
    assert_eq!(out.records[0].value, input[0].value);
    assert_eq!(out.records[0].key, input[0].key);
}

#[test]
fn keyword_filter_options_change_the_outcome() {
    // `@BTS_ARMY_Peru` is not the whole word "bts"...
    let strict = run("keyword_filter", &[("keywords", "bts")], fixtures());
    assert!(!kept_fixtures(&strict).contains(&"v1_unrelated.json"));
    // ...but contains it.
    let loose = run(
        "keyword_filter",
        &[("keywords", "bts"), ("whole_word", "false")],
        fixtures(),
    );
    assert!(kept_fixtures(&loose).contains(&"v1_unrelated.json"));
    // Case-sensitive lower-case "bts" matches none of the "BTS" tweets' texts.
    let inverted = run(
        "keyword_filter",
        &[("keywords", "bts,방탄소년단"), ("invert", "true")],
        fixtures(),
    );
    assert_eq!(
        kept_fixtures(&inverted),
        vec!["v1_unrelated.json", "v2_unrelated.json"]
    );
}

#[test]
fn keyword_filter_rejects_bad_config_at_init() {
    let dir = tempdir();
    let rt = runtime(dir.path());
    for (config, needle) in [
        (vec![], "keywords"),
        (vec![("keywords", "bts"), ("colour", "red")], "colour"),
    ] {
        let err = format!(
            "{:#}",
            load(&rt, spec("keyword_filter", &config))
                .instantiate()
                .err()
                .unwrap()
        );
        assert!(
            err.contains("rejected its config") && err.contains(needle),
            "{err}"
        );
    }
}

#[test]
fn malformed_input_is_dead_lettered_with_the_reason() {
    let mut input = fixtures();
    input.push(record(b"this is not json"));
    input.push(record(b"{\"text\":\"bts \xff\xfe\"}"));
    input.push(record(b"[1,2,3]"));
    let n = input.len();
    let configs: [(&str, &[(&str, &str)]); 3] = [
        ("keyword_filter", &[("keywords", "bts")]),
        ("field_prune", &[("drop_nulls", "true")]),
        ("enrich", &[]),
    ];
    for (plugin, config) in configs {
        let out = run(plugin, config, input.clone());
        let reasons: Vec<(u32, &str)> = out
            .dead
            .iter()
            .map(|d| (d.origin, d.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3, "{plugin}: {reasons:?}");
        assert!(
            reasons[0].1.starts_with("not valid JSON"),
            "{plugin}: {reasons:?}"
        );
        assert!(
            reasons[1].1.starts_with("not valid UTF-8"),
            "{plugin}: {reasons:?}"
        );
        assert!(
            reasons[2].1.starts_with("not a JSON object"),
            "{plugin}: {reasons:?}"
        );
        assert_eq!(
            reasons.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        assert_eq!(
            out.records.len() + out.dropped as usize + out.dead.len(),
            n,
            "{plugin}"
        );
    }
}

#[test]
fn a_10_mb_record_is_processed_or_dead_lettered_never_lost() {
    let text = "bts ".repeat(10 << 18);
    let big = format!("{{\"id_str\":\"1\",\"text\":\"{text}\"}}");
    assert!(big.len() > 10 << 20);
    let mut input = fixtures();
    input.insert(3, record(big.as_bytes()));
    // 64 MiB is enough for keyword-filter to stream through it.
    let out = run("keyword_filter", &[("keywords", "bts")], input.clone());
    assert!(out.origins.contains(&3));
    assert_eq!(out.records.len() + out.dropped as usize + out.dead.len(), 8);
    // With an 8 MiB cap the plugin cannot even receive it: only that record is dead-lettered.
    let dir = tempdir();
    let mut s = spec("keyword_filter", &[("keywords", "bts")]);
    s.memory = 8 << 20;
    let mut stage = Stage::new(load(&runtime(dir.path()), s)).unwrap();
    let mut out = StageOutput::default();
    stage.process(input, &(0..8).collect::<Vec<u32>>(), &mut out);
    assert_eq!(out.dead.len(), 1);
    assert_eq!(out.dead[0].origin, 3);
    assert!(
        out.dead[0].reason.contains("memory cap"),
        "{}",
        out.dead[0].reason
    );
    assert_eq!(out.records.len() + out.dropped as usize, 7);
}

#[test]
fn field_prune_allow_and_deny_on_both_shapes() {
    let config = [
        (
            "allow",
            "id_str,text,user.screen_name,entities.hashtags.text,data.id,data.text,data.entities.hashtags.tag,includes.users.username",
        ),
        ("deny", "user.screen_name"),
    ];
    let out = run("field_prune", &config, fixtures());
    assert_eq!(out.records.len(), 7);
    let v1 = json(&out.records[0]);
    assert!(v1["id_str"].is_string() && v1["text"].is_string());
    assert!(
        v1.get("user").is_none(),
        "deny removes user.screen_name, leaving user empty: {v1}"
    );
    assert!(v1.get("extended_tweet").is_none() && v1.get("created_at").is_none());
    assert!(v1["entities"]["hashtags"][0]["text"].is_string());
    assert!(v1["entities"]["hashtags"][0].get("indices").is_none());
    let v2 = json(&out.records[4]);
    assert!(v2["data"]["id"].is_string() && v2["data"]["text"].is_string());
    assert!(v2["data"].get("created_at").is_none() && v2.get("matching_rules").is_none());
    assert!(v2["includes"]["users"][0]["username"].is_string());
    assert!(v2["includes"]["users"][0].get("id").is_none());
}

#[test]
fn field_prune_guards_the_elasticsearch_field_limit() {
    let mut generator = TweetGenerator::new(&GenerateOptions {
        wide_share: 1.0,
        ..GenerateOptions::default()
    });
    let mut buf = Vec::new();
    let wide: Vec<Record> = (0..20)
        .map(|_| {
            generator.next_into(&mut buf);
            record(&buf)
        })
        .collect();
    // Unpruned, a wide tweet has well over 1000 fields: max_fields dead-letters it with the count.
    let guarded = run("field_prune", &[("max_fields", "1000")], wide.clone());
    assert_eq!(guarded.dead.len(), 20);
    assert!(
        guarded.dead[0].reason.contains("exceeds max_fields 1000"),
        "{}",
        guarded.dead[0].reason
    );
    // Denying the bulky subtrees brings every one of them under the limit.
    let pruned = run(
        "field_prune",
        &[
            ("deny", "card,translations,data.card,data.translations"),
            ("max_fields", "1000"),
        ],
        wide,
    );
    assert!(
        pruned.dead.is_empty(),
        "{:?}",
        pruned.dead.first().map(|d| &d.reason)
    );
    assert_eq!(pruned.records.len(), 20);
}

#[test]
fn enrich_derives_fields_for_both_shapes() {
    let out = run("enrich", &[("keywords", "bts,방탄소년단")], fixtures());
    assert_eq!(out.records.len(), 7);
    let by_name =
        |name: &str| json(&out.records[FIXTURES.iter().position(|f| *f == name).unwrap()]);

    let v1 = by_name("v1_extended.json");
    assert_eq!(v1["sluice"]["shape"], "v1.1");
    assert_eq!(v1["sluice"]["text_length"], 193);
    assert!(v1["@timestamp"].as_str().unwrap().ends_with('Z'));
    let tags: Vec<&str> = v1["sluice"]["hashtags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"bts") && tags.contains(&"방탄소년단"),
        "{tags:?}"
    );
    assert!(
        v1["sluice"]["tweet_url"]
            .as_str()
            .unwrap()
            .contains("/status/")
    );
    assert!(
        !v1["sluice"]["matched_keywords"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    assert_eq!(by_name("v1_retweet.json")["sluice"]["is_retweet"], true);
    assert_eq!(by_name("v1_quote.json")["sluice"]["is_quote"], true);

    let v2 = by_name("v2_tweet.json");
    assert_eq!(v2["sluice"]["shape"], "v2");
    assert_eq!(v2["sluice"]["text_length"], 392);
    assert_eq!(v2["@timestamp"], v2["data"]["created_at"]);
    assert!(
        !v2["sluice"]["tweet_url"]
            .as_str()
            .unwrap()
            .contains("/i/web/")
    );
    assert_eq!(by_name("v2_retweet.json")["sluice"]["is_retweet"], true);
    assert_eq!(by_name("v2_unrelated.json")["sluice"]["is_quote"], true);
    assert_eq!(
        by_name("v2_unrelated.json")["sluice"]["matched_keywords"],
        serde_json::json!([])
    );
}

fn native<T: Transform>(config: &[(&str, &str)], value: &[u8]) -> Outcome {
    let config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    T::from_config(&config).unwrap().apply(value)
}

/// The plugin's answer for each input, rebuilt from the stage output.
fn wasm_outcomes(input: &[Record], out: &StageOutput) -> Vec<Outcome> {
    let mut result = vec![Outcome::Drop; input.len()];
    for (r, &o) in out.records.iter().zip(&out.origins) {
        let same = r.value == input[o as usize].value;
        result[o as usize] = if same {
            Outcome::Keep
        } else {
            Outcome::SetValue(r.value.clone())
        };
    }
    for d in &out.dead {
        result[d.origin as usize] = Outcome::Fail(d.reason.clone());
    }
    result
}

#[test]
fn wasm_and_native_agree_byte_for_byte() {
    let mut generator = TweetGenerator::new(&GenerateOptions {
        wide_share: 0.05,
        ..GenerateOptions::default()
    });
    let mut buf = Vec::new();
    let mut input = fixtures();
    for _ in 0..1500 {
        generator.next_into(&mut buf);
        input.push(record(&buf));
    }
    input.push(record(b"{broken"));
    let filter = [("keywords", "bts,방탄소년단")];
    let prune = [
        ("deny", "card,translations,data.card,*.user.entities"),
        ("drop_nulls", "true"),
        ("max_fields", "600"),
    ];
    let enrich = [("keywords", "bts")];
    type Config<'a> = &'a [(&'a str, &'a str)];
    type Native = fn(Config, &[u8]) -> Outcome;
    let cases: [(&str, Config, Native); 3] = [
        ("keyword_filter", &filter, native::<KeywordFilter>),
        ("field_prune", &prune, native::<FieldPrune>),
        ("enrich", &enrich, native::<Enrich>),
    ];
    for (plugin, config, native_fn) in cases {
        let out = run(plugin, config, input.clone());
        let wasm = wasm_outcomes(&input, &out);
        for (i, (w, r)) in wasm.iter().zip(&input).enumerate() {
            let n = native_fn(config, &r.value);
            assert!(
                *w == n,
                "{plugin}: record {i} differs: wasm {w:?} native {n:?}"
            );
        }
    }
}
