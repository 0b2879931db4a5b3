//! The Elasticsearch sink against a real engine (OpenSearch 2.19 from `compose/elasticsearch.sh`).
//!
//! The server is `ELASTICSEARCH_URL` when that answers; otherwise these tests run
//! `bash compose/elasticsearch.sh start` (on the port of `ELASTICSEARCH_URL`, default 9200) and
//! fail when no server comes up: they never skip. Every test uses its own index pattern and
//! template, so they run in parallel; the outage test starts a second server of its own (own
//! ports, own `SLUICE_STATE`) so stopping it disturbs no other test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sluice::sinks::elasticsearch::{
    ElasticsearchConfig, ElasticsearchSink, IndexTime, TemplateConfig,
};
use sluice::transform::{Header, Record};

use common::metrics::Scrape;
use common::{build_plugins, free_port, http, kafka_bootstrap, root, tempdir, tweet_id};

// ---------------------------------------------------------------- the server

fn compose(args: &[&str], envs: &[(&str, String)]) -> bool {
    let mut c = Command::new("bash");
    c.arg(root().join("compose/elasticsearch.sh"))
        .args(args)
        .current_dir(root());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.status()
        .expect("running compose/elasticsearch.sh")
        .success()
}

/// The shared server's URL; starts it when nothing answers. Indices that earlier runs of the
/// suites left behind (a failed test keeps its own) are deleted first: on a machine that runs
/// the suites day after day they add up until the 512 MB heap trips its circuit breaker.
fn es_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let url = shared_server();
        http::json("DELETE", &format!("{url}/sluicetest-*,secure-*"), None);
        url
    })
    .clone()
}

fn shared_server() -> String {
    let given = std::env::var("ELASTICSEARCH_URL").ok();
    if let Some(u) = given.as_deref().filter(|u| healthy(u)) {
        return u.trim_end_matches('/').to_string();
    }
    let port = given
        .as_deref()
        .and_then(|u| {
            u.strip_prefix("http://127.0.0.1:")
                .or(u.strip_prefix("http://localhost:"))
        })
        .map(|p| p.trim_end_matches('/').to_string())
        .unwrap_or_else(|| "9200".into());
    let started = compose(&["start"], &[("ES_PORT", port.clone())]);
    let url = format!("http://127.0.0.1:{port}");
    assert!(
        started && healthy(&url),
        "no Elasticsearch-API server at {url}: `bash compose/elasticsearch.sh start` failed \
             (set ELASTICSEARCH_URL to a running server)"
    );
    url
}

fn healthy(url: &str) -> bool {
    http::get_status(&format!("{url}/_cluster/health")) == Some(200)
}

/// A second server on free ports with its own state dir; stopped (and its state removed) on drop.
struct Instance {
    state: tempfile::TempDir,
    port: u16,
    transport_port: u16,
}

impl Instance {
    fn start() -> Instance {
        let inst = Instance {
            state: tempdir(),
            port: free_port(),
            transport_port: free_port(),
        };
        assert!(inst.compose("start"), "starting a second OpenSearch failed");
        inst
    }

    fn envs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ES_PORT", self.port.to_string()),
            ("ES_TRANSPORT_PORT", self.transport_port.to_string()),
            ("SLUICE_STATE", self.state.path().display().to_string()),
        ]
    }

    fn compose(&self, cmd: &str) -> bool {
        compose(&[cmd], &self.envs())
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.compose("stop");
    }
}

fn refresh(url: &str, pattern: &str) {
    http::json("POST", &format!("{url}/{pattern}/_refresh"), None);
}

/// Deletes a test's indices and template (left in place when the test fails, for a look).
fn cleanup(url: &str, prefix: &str) {
    http::json("DELETE", &format!("{url}/{prefix}-*"), None);
    let _ = http::request(
        "DELETE",
        &format!("{url}/_index_template/{prefix}"),
        "application/json",
        b"",
    );
}

fn count(url: &str, index: &str) -> u64 {
    refresh(url, index);
    http::json("GET", &format!("{url}/{index}/_count"), None)["count"]
        .as_u64()
        .unwrap()
}

// ---------------------------------------------------------------- records

/// `prefix-<pid>-<nanos>`: names no other test or run uses (lowercase, valid index names).
fn unique(prefix: &str) -> String {
    common::unique(&format!("sluicetest-{prefix}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn record(value: &Value, timestamp: Option<i64>) -> Record {
    Record {
        key: None,
        value: serde_json::to_vec(value).unwrap(),
        headers: vec![Header {
            key: "source".into(),
            value: b"test".to_vec(),
        }],
        timestamp,
    }
}

/// 2026-11-24T00:00:00Z.
const DAY0_MS: i64 = 1_795_478_400_000;
const DAY_MS: i64 = 86_400_000;

/// `YYYYMMdd` (UTC) of a time in ms.
fn ymd(ms: i64) -> String {
    // Days to civil date (Howard Hinnant's algorithm).
    let z = ms.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000) % 86_400;
    let d = ymd(ms);
    format!(
        "{}-{}-{}T{:02}:{:02}:{:02}.{:03}Z",
        &d[..4],
        &d[4..6],
        &d[6..],
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms.rem_euclid(1000)
    )
}

/// A tweet of API v1.1 (even `n`) or v2 (odd `n`) shape with id `n`, as the enrich plugin
/// leaves it (`@timestamp`, `sluice.*`).
fn tweet(n: u64, ms: i64) -> Value {
    let enriched = json!({
        "hashtags": ["bts"], "mentions": ["bts_twt"], "is_retweet": false, "is_quote": n.is_multiple_of(3),
        "text_length": 20 + n % 50, "shape": if n.is_multiple_of(2) { "v1.1" } else { "v2" },
    });
    if n.is_multiple_of(2) {
        json!({
            "created_at": "Tue Nov 24 10:00:00 +0000 2026",
            "id": 1_000_000_000_000_000_000u64 + n,
            "id_str": n.to_string(),
            "text": format!("tweet {n} #BTS @BTS_twt"),
            "lang": "en",
            "user": {"id_str": "12", "screen_name": "army", "created_at": "Sat Jan 01 00:00:00 +0000 2011"},
            "entities": {"hashtags": [{"text": "BTS", "indices": [8, 12]}]},
            "@timestamp": iso(ms),
            "sluice": enriched,
        })
    } else {
        json!({
            "data": {"id": n.to_string(), "text": format!("tweet {n} #BTS"), "author_id": "12",
                     "created_at": iso(ms), "lang": "ko"},
            "includes": {"users": [{"id": "12", "username": "army"}]},
            "@timestamp": iso(ms),
            "sluice": enriched,
        })
    }
}

/// The fixture tweets (pretty-printed files), each with its `created_at` as record time.
fn fixtures() -> Vec<(String, Value, i64)> {
    let dir = root().join("guest-plugins/transforms/fixtures");
    [
        ("v1_extended", 1_539_202_764_000),
        ("v1_quote", 1_538_871_164_000),
        ("v1_retweet", 1_539_227_112_000),
        ("v1_unrelated", 1_540_745_229_000),
        ("v2_retweet", 1_685_577_933_000),
        ("v2_tweet", 1_689_307_212_000),
        ("v2_unrelated", 1_697_010_300_321),
    ]
    .into_iter()
    .map(|(name, ms)| {
        let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let id = tweet_id(&v).unwrap();
        (id, v, ms)
    })
    .collect()
}

fn config(url: &str, prefix: &str) -> ElasticsearchConfig {
    ElasticsearchConfig {
        url: url.into(),
        index: format!("{prefix}-%{{+YYYYMMdd}}"),
        bulk_max_docs: 40,
        concurrency: 3,
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_secs(1),
        template: TemplateConfig {
            name: prefix.into(),
            patterns: vec![format!("{prefix}-*")],
            ..TemplateConfig::default()
        },
        ..ElasticsearchConfig::default()
    }
}

// ---------------------------------------------------------------- tests

#[test]
fn tweets_land_in_daily_indices_one_doc_per_id_with_the_template() {
    let url = es_url();
    let prefix = unique("daily");
    let mut records = Vec::new();
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for n in 0..240u64 {
        let ms = DAY0_MS + (n as i64 % 3) * DAY_MS + (n as i64) * 7_000;
        records.push(record(&tweet(n, ms), Some(ms)));
        expected
            .entry(format!("{prefix}-{}", ymd(ms)))
            .or_default()
            .insert(n.to_string());
    }
    // Redelivered within the batch: still one document per id.
    for n in (0..240u64).step_by(12) {
        let ms = DAY0_MS + (n as i64 % 3) * DAY_MS + (n as i64) * 7_000;
        records.push(record(&tweet(n, ms), Some(ms)));
    }
    // The fixtures, pretty-printed as they are on disk.
    for (id, v, ms) in fixtures() {
        let mut r = record(&v, Some(ms));
        r.value = serde_json::to_vec_pretty(&v).unwrap();
        records.push(r);
        expected
            .entry(format!("{prefix}-{}", ymd(ms)))
            .or_default()
            .insert(id);
    }
    // No record time: the time of writing picks the index.
    let now_before = ymd(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64);
    records.push(record(&tweet(10_001, DAY0_MS), None));

    let rt = runtime();
    let mut cfg = config(&url, &prefix);
    cfg.template.total_fields_limit = 1500;
    let mut sink = rt.block_on(ElasticsearchSink::connect(&cfg)).unwrap();
    let rejected = rt.block_on(sink.write_records(&records)).unwrap();
    assert!(rejected.is_empty(), "{rejected:?}");

    let now_after = ymd(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64);
    let today = if count(&url, &format!("{prefix}-{now_before}")) > 0 || now_before == now_after {
        now_before
    } else {
        now_after
    };
    expected
        .entry(format!("{prefix}-{today}"))
        .or_default()
        .insert("10001".into());

    refresh(&url, &format!("{prefix}-*"));
    let total: usize = expected.values().map(BTreeSet::len).sum();
    assert_eq!(count(&url, &format!("{prefix}-*")), total as u64);
    for (index, ids) in &expected {
        assert_eq!(count(&url, index), ids.len() as u64, "documents in {index}");
        for id in ids.iter().take(3) {
            let doc = http::json("GET", &format!("{url}/{index}/_doc/{id}"), None);
            assert_eq!(doc["found"], true, "{index}/{id}");
        }
    }
    // A fixture document kept its content.
    let doc = http::json(
        "GET",
        &format!("{url}/{prefix}-20181010/_doc/1050118621198921728"),
        None,
    );
    assert!(doc["_source"]["user"]["screen_name"].is_string(), "{doc}");

    // The template shaped the indices.
    let index = format!("{prefix}-{}", ymd(DAY0_MS));
    let mapping = http::json("GET", &format!("{url}/{index}/_mapping"), None);
    let props = &mapping[&index]["mappings"]["properties"];
    assert_eq!(props["@timestamp"]["type"], "date", "{props}");
    assert_eq!(props["id_str"]["type"], "keyword");
    assert_eq!(props["text"]["type"], "text");
    assert_eq!(props["created_at"]["type"], "date");
    assert_eq!(props["data"]["properties"]["id"]["type"], "keyword");
    assert_eq!(props["data"]["properties"]["created_at"]["type"], "date");
    assert_eq!(props["user"]["properties"]["id_str"]["type"], "keyword");
    assert_eq!(props["sluice"]["properties"]["hashtags"]["type"], "keyword");
    assert_eq!(props["sluice"]["properties"]["is_quote"]["type"], "boolean");
    assert_eq!(
        props["sluice"]["properties"]["text_length"]["type"],
        "integer"
    );
    let settings = http::json("GET", &format!("{url}/{index}/_settings"), None);
    let s = &settings[&index]["settings"]["index"];
    assert_eq!(s["mapping"]["total_fields"]["limit"], "1500", "{s}");
    assert_eq!(s["number_of_replicas"], "0");
    assert_eq!(s["number_of_shards"], "1");
    // Searching by the keyword id works (it is not analysed text).
    let hits = http::json(
        "POST",
        &format!("{url}/{prefix}-*/_count"),
        Some(&json!({"query": {"term": {"data.id": "7"}}})),
    );
    assert_eq!(hits["count"], 1);
    cleanup(&url, &prefix);
}

#[test]
fn writing_the_same_records_again_leaves_the_count_unchanged() {
    let url = es_url();
    let prefix = unique("redeliver");
    let records: Vec<Record> = (0..150u64)
        .map(|n| {
            let ms = DAY0_MS + (n as i64 % 2) * DAY_MS;
            record(&tweet(n, ms), Some(ms))
        })
        .collect();
    let rt = runtime();
    let cfg = config(&url, &prefix);
    let mut sink = rt.block_on(ElasticsearchSink::connect(&cfg)).unwrap();
    assert!(
        rt.block_on(sink.write_records(&records))
            .unwrap()
            .is_empty()
    );
    let pattern = format!("{prefix}-*");
    assert_eq!(count(&url, &pattern), 150);

    // The same range again, and part of it through a fresh sink with another split (as after
    // a restart of the pipeline).
    assert!(
        rt.block_on(sink.write_records(&records))
            .unwrap()
            .is_empty()
    );
    assert_eq!(count(&url, &pattern), 150);
    let mut cfg2 = cfg.clone();
    cfg2.bulk_max_docs = 7;
    cfg2.concurrency = 1;
    let mut sink2 = rt.block_on(ElasticsearchSink::connect(&cfg2)).unwrap();
    assert!(
        rt.block_on(sink2.write_records(&records[40..90]))
            .unwrap()
            .is_empty()
    );
    assert_eq!(count(&url, &pattern), 150);
    assert_eq!(count(&url, &format!("{prefix}-{}", ymd(DAY0_MS))), 75);
    cleanup(&url, &prefix);
}

#[test]
fn a_document_over_the_field_limit_is_rejected_with_the_reason_and_the_rest_indexed() {
    let url = es_url();
    let prefix = unique("wide");
    let mut cfg = config(&url, &prefix);
    cfg.template.total_fields_limit = 1000;
    let mut wide = tweet(5000, DAY0_MS);
    wide["wide"] = Value::Object((0..1500).map(|i| (format!("f{i}"), json!(i))).collect());
    let mut records: Vec<Record> = (0..10u64)
        .map(|n| record(&tweet(n, DAY0_MS), Some(DAY0_MS)))
        .collect();
    records.insert(4, record(&wide, Some(DAY0_MS)));

    let rt = runtime();
    let mut sink = rt.block_on(ElasticsearchSink::connect(&cfg)).unwrap();
    let rejected = rt.block_on(sink.write_records(&records)).unwrap();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].index, 4);
    assert!(
        rejected[0]
            .reason
            .contains("Limit of total fields [1000] has been exceeded"),
        "{}",
        rejected[0].reason
    );
    assert!(
        rejected[0]
            .reason
            .starts_with("illegal_argument_exception: "),
        "{}",
        rejected[0].reason
    );
    assert_eq!(count(&url, &format!("{prefix}-*")), 10);
    cleanup(&url, &prefix);
}

#[test]
fn mapping_conflicts_and_non_documents_are_rejected_with_the_reason() {
    let url = es_url();
    let prefix = unique("conflict");
    let cfg = config(&url, &prefix);
    let mut bad_ts = tweet(100, DAY0_MS);
    bad_ts["@timestamp"] = json!("not a date");
    let mut bad_created = tweet(102, DAY0_MS);
    bad_created["created_at"] = json!("yesterday-ish");
    let mut records: Vec<Record> = (0..6u64)
        .map(|n| record(&tweet(n, DAY0_MS), Some(DAY0_MS)))
        .collect();
    records.push(record(&bad_ts, Some(DAY0_MS))); // 6
    records.push(record(&bad_created, Some(DAY0_MS))); // 7
    let mut garbage = record(&json!({}), Some(DAY0_MS));
    garbage.value = b"not json at all".to_vec();
    records.push(garbage); // 8
    let mut empty = record(&json!({}), Some(DAY0_MS));
    empty.value = b"  ".to_vec();
    records.push(empty); // 9

    let rt = runtime();
    let mut sink = rt.block_on(ElasticsearchSink::connect(&cfg)).unwrap();
    let rejected = rt.block_on(sink.write_records(&records)).unwrap();
    let at: Vec<usize> = rejected.iter().map(|r| r.index).collect();
    assert_eq!(at, [6, 7, 8, 9], "{rejected:?}");
    for r in &rejected[..2] {
        assert!(
            r.reason.starts_with("mapper_parsing_exception: "),
            "{}",
            r.reason
        );
        assert!(r.reason.contains("of type [date]"), "{}", r.reason);
    }
    assert!(
        rejected[0].reason.contains("@timestamp"),
        "{}",
        rejected[0].reason
    );
    assert!(
        rejected[1].reason.contains("created_at"),
        "{}",
        rejected[1].reason
    );
    assert!(
        rejected[2].reason.contains("mapper_parsing_exception"),
        "{}",
        rejected[2].reason
    );
    assert!(
        rejected[3].reason.contains("empty"),
        "{}",
        rejected[3].reason
    );
    assert_eq!(count(&url, &format!("{prefix}-*")), 6);
    cleanup(&url, &prefix);
}

#[test]
fn ingest_time_and_fixed_index_names() {
    let url = es_url();
    let prefix = unique("ingest");
    let rt = runtime();
    let mut cfg = config(&url, &prefix);
    cfg.index_time = IndexTime::Ingest;
    cfg.index = format!("{prefix}-%{{+YYYY.MM}}");
    let mut sink = rt.block_on(ElasticsearchSink::connect(&cfg)).unwrap();
    let before = ymd(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64);
    let records = [record(&tweet(1, DAY0_MS), Some(DAY0_MS))];
    assert!(
        rt.block_on(sink.write_records(&records))
            .unwrap()
            .is_empty()
    );
    let month = format!("{prefix}-{}.{}", &before[..4], &before[4..6]);
    assert_eq!(count(&url, &month), 1, "{month}");

    cfg.index = format!("{prefix}-fixed");
    let mut sink = rt.block_on(ElasticsearchSink::connect(&cfg)).unwrap();
    assert!(
        rt.block_on(sink.write_records(&records))
            .unwrap()
            .is_empty()
    );
    assert_eq!(count(&url, &format!("{prefix}-fixed")), 1);
    cleanup(&url, &prefix);
}

#[test]
fn connecting_to_nothing_fails_naming_the_url() {
    let port = free_port();
    let cfg = ElasticsearchConfig {
        url: format!("http://127.0.0.1:{port}"),
        ..ElasticsearchConfig::default()
    };
    let err = runtime()
        .block_on(ElasticsearchSink::connect(&cfg))
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
}

#[test]
fn server_down_mid_stream_then_back_loses_and_duplicates_nothing() {
    let inst = Instance::start();
    let url = inst.url();
    let prefix = unique("outage");
    let cfg = config(&url, &prefix);
    let rt = runtime();
    let mut sink = rt.block_on(ElasticsearchSink::connect(&cfg)).unwrap();
    let mut give_up_cfg = cfg.clone();
    give_up_cfg.retry_give_up = Some(Duration::from_secs(1));
    let mut impatient = rt
        .block_on(ElasticsearchSink::connect(&give_up_cfg))
        .unwrap();

    // 12 batches of 40; each overlaps the previous one by 10 ids (redelivery): 370 ids.
    let batches: Vec<Vec<Record>> = (0..12u64)
        .map(|b| {
            (b * 30..b * 30 + 40)
                .map(|n| record(&tweet(n, DAY0_MS + n as i64 * 1000), Some(DAY0_MS)))
                .collect()
        })
        .collect();
    let done = Arc::new(AtomicUsize::new(0));

    rt.block_on(async {
        let progress = done.clone();
        let stream = tokio::spawn(async move {
            for batch in &batches {
                let rejected = sink.write_records(batch).await?;
                anyhow::ensure!(rejected.is_empty(), "rejected: {rejected:?}");
                progress.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            anyhow::Ok(())
        });
        while done.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stop = tokio::task::spawn_blocking({
            let (url, envs) = (url.clone(), inst.envs());
            move || {
                let ok = compose(&["stop"], &envs);
                assert!(ok && !healthy(&url), "stopping the second server failed");
            }
        });
        stop.await.unwrap();
        let at_stop = done.load(Ordering::SeqCst);

        // Down: the stream stalls (backpressure) instead of failing or dropping records, and
        // a sink with `retry_give_up` hands its records to the dead letter once that is over.
        let t0 = Instant::now();
        let rejected = impatient
            .write_records(&[record(&tweet(9999, DAY0_MS), Some(DAY0_MS))])
            .await
            .unwrap();
        assert_eq!(rejected.len(), 1);
        assert!(
            rejected[0].reason.contains("gave up after"),
            "{}",
            rejected[0].reason
        );
        assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            !stream.is_finished(),
            "the stream should wait for the server"
        );
        assert!(done.load(Ordering::SeqCst) <= at_stop + 1);

        let envs = inst.envs();
        let start = tokio::task::spawn_blocking(move || compose(&["start"], &envs));
        assert!(start.await.unwrap(), "restarting the second server failed");
        tokio::time::timeout(Duration::from_secs(180), stream)
            .await
            .expect("the stream finished after the server came back")
            .unwrap()
            .unwrap();
    });
    assert_eq!(done.load(Ordering::SeqCst), 12);
    let pattern = format!("{prefix}-*");
    assert_eq!(count(&url, &pattern), 370, "one document per id, none lost");
    // Every id is there (and, with the count, each exactly once).
    let ids: Vec<String> = (0..370).map(|n: u64| n.to_string()).collect();
    let docs = http::json(
        "POST",
        &format!("{url}/{prefix}-{}/_mget", ymd(DAY0_MS)),
        Some(&json!({ "ids": ids })),
    );
    let docs = docs["docs"].as_array().unwrap();
    assert_eq!(docs.len(), 370);
    assert!(docs.iter().all(|d| d["found"] == true));
}

// ---------------------------------------------------------------- the pipeline

/// A short ES-safe allow-list (see guest-plugins/field-prune/README.md) for both tweet shapes.
/// The field limit counts the union of every document's fields in an index, so denying only
/// the bulky parts is not enough for a mix of v1.1 and v2 tweets.
const ES_SAFE: &str = "id_str, created_at, lang, text, extended_tweet.full_text, user.screen_name, \
    entities.hashtags.text, entities.user_mentions.screen_name, retweeted_status.id_str, \
    retweeted_status.text, quoted_status.id_str, quoted_status.text, data.id, data.text, \
    data.created_at, data.author_id, data.lang, data.referenced_tweets, data.note_tweet.text, \
    data.entities.hashtags.tag, data.entities.mentions.username, includes.users.id, \
    includes.users.username, includes.tweets.id, includes.tweets.text, matching_rules.tag";

/// Runs generated tweets (a fifth of them over 1000 fields) through `chain` into a daily index
/// with the field limit at 1000, `extra` added to the sinks (e.g. template settings); returns
/// (summary, dead-letter lines).
fn run_pipeline(
    url: &str,
    prefix: &str,
    chain: &[&str],
    extra: &str,
) -> (sluice::pipeline::Summary, Vec<Value>, Scrape) {
    build_plugins();
    let dist = root().join("guest-plugins/dist");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    let chain_list = chain
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(",");
    std::fs::write(
        &file,
        format!(
            r#"
[pipeline]
chain = [{chain_list}]
batch_size = 100
[source]
type = "generate"
count = 300
[source.tweets]
wide_share = 0.2
{transforms}{es}{extra}
[dead_letter]
type = "file"
path = "dead.ndjson"
"#,
            es = es_sink_toml(url, prefix, 1000, "1s"),
            transforms = chain
                .iter()
                .map(|name| match *name {
                    "prune" => format!(
                        "[transforms.prune]\nplugin = \"{}/field_prune.wasm\"\nconfig = {{ allow = \"{ES_SAFE}\" }}\n",
                        dist.display(),
                        ES_SAFE = ES_SAFE,
                    ),
                    other => format!("[transforms.{other}]\nplugin = \"{}/{other}.wasm\"\n", dist.display()),
                })
                .collect::<String>(),
        ),
    )
    .unwrap();
    let mut p = sluice::config::Pipeline::load(&file).unwrap();
    // `transforms` not in the chain would be rejected as unused: keep only the chain's.
    p.config
        .transforms
        .retain(|name, _| chain.contains(&name.as_str()));
    let telemetry = sluice::telemetry::Telemetry::new("es-test");
    let options = sluice::pipeline::RunOptions {
        telemetry: telemetry.clone(),
        ..Default::default()
    };
    let summary = runtime()
        .block_on(sluice::pipeline::run(
            &p,
            options,
            tokio::sync::watch::channel(false).1,
        ))
        .unwrap();
    let dead = std::fs::read_to_string(dir.path().join("dead.ndjson"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (summary, dead, Scrape::parse(telemetry.encode()))
}

#[test]
fn wide_tweets_are_dead_lettered_with_the_reason_unless_pruned() {
    let url = es_url();
    // Without prune, ES refuses the wide tweets; the sink dead-letters them with ES's reason.
    let prefix = unique("pipe-noprune");
    let (summary, dead, _) = run_pipeline(&url, &prefix, &["enrich"], "");
    assert_eq!(summary.records_in, 300);
    assert!(summary.dead_lettered > 0, "{summary:?}");
    assert_eq!(
        summary.records_in,
        summary.records_out + summary.dead_lettered
    );
    assert_eq!(dead.len() as u64, summary.dead_lettered);
    assert!(
        dead.iter().all(|d| d["stage"] == "sinks.es"),
        "{:?}",
        dead[0]
    );
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .contains("Limit of total fields [1000]"),
        "{:?}",
        dead[0]
    );
    assert_eq!(count(&url, &format!("{prefix}-*")), summary.records_out);
    cleanup(&url, &prefix);

    // With prune in front, every tweet is indexed, once per id.
    let prefix = unique("pipe-prune");
    let (summary, dead, metrics) = run_pipeline(&url, &prefix, &["prune", "enrich"], "");
    assert!(dead.is_empty(), "{:?}", dead.first());
    assert_eq!(summary.records_out, 300);
    assert_eq!(count(&url, &format!("{prefix}-*")), 300);
    // The three batches of 100 were gathered (`linger = "1s"`): they went out as one round of
    // `concurrency` requests, not two requests a batch.
    let bulk = [
        ("stage", "sinks.es"),
        ("request", "bulk"),
        ("outcome", "ok"),
    ];
    assert_eq!(
        metrics.value("sluice_sink_requests_total", &bulk),
        Some(2.0)
    );
    cleanup(&url, &prefix);
}

/// The field limit without dropping a field: with `unmapped = "store"` the template maps the
/// known tweet fields and keeps the rest in `_source` only, so a mix of v1.1, v2 and
/// 1,200-2,000-field tweets indexes completely under the default limit of 1,000, and every
/// document's `_source` is the enriched record, whole.
#[test]
fn wide_tweets_index_whole_when_unmapped_fields_are_only_stored() {
    let url = es_url();
    let prefix = unique("pipe-store");
    let copy = tempfile::tempdir().unwrap();
    let copy_path = copy.path().join("copy.ndjson");
    let (summary, dead, _) = run_pipeline(
        &url,
        &prefix,
        &["enrich"],
        &format!(
            "unmapped = \"store\"\n[sinks.copy]\ntype = \"file\"\npath = \"{}\"\n",
            copy_path.display()
        ),
    );
    assert!(dead.is_empty(), "{:?}", dead.first());
    assert_eq!((summary.records_in, summary.dead_lettered), (300, 0));
    let pattern = format!("{prefix}-*");
    assert_eq!(count(&url, &pattern), 300);
    let written: Vec<Value> = std::fs::read_to_string(&copy_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let hits = http::json(
        "POST",
        &format!("{url}/{pattern}/_search"),
        Some(&json!({ "size": 300, "query": { "match_all": {} } })),
    );
    let stored: std::collections::HashMap<String, &Value> = hits["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["_id"].as_str().unwrap().to_string(), &h["_source"]))
        .collect();
    let (mut wide, mut leaves_max) = (0, 0);
    for doc in &written {
        let id = tweet_id(doc).expect("a tweet id");
        assert_eq!(
            stored.get(&id),
            Some(&doc),
            "{id}: _source differs from the record"
        );
        let leaves = leaf_count(doc);
        leaves_max = leaves_max.max(leaves);
        wide += usize::from(leaves > 1000);
    }
    assert!(wide > 20, "{wide} wide tweets");
    // The mapping holds the known fields only, far below the limit.
    let mapping = http::json("GET", &format!("{url}/{pattern}/_mapping"), None);
    for (_, index) in mapping.as_object().unwrap() {
        let fields = leaf_count(&index["mappings"]["properties"]);
        assert!(fields < 200, "{fields} mapped fields");
    }
    eprintln!("{wide} of 300 tweets over 1,000 fields (widest {leaves_max}), all indexed whole");
    cleanup(&url, &prefix);
}

/// Leaves (values that are not objects or arrays) of a JSON value.
fn leaf_count(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(leaf_count).sum(),
        Value::Array(a) => a.iter().map(leaf_count).sum(),
        _ => 1,
    }
}

/// Runs `toml` (a Kafka-sourced pipeline that also writes `lines` to a file) until the file
/// holds `n` lines, then stops it.
fn run_until_lines(toml: &str, dir: &Path, lines: &Path, n: usize) {
    let file = dir.join(format!("p{}.toml", unique("")));
    std::fs::write(&file, toml).unwrap();
    let p = sluice::config::Pipeline::load(&file).unwrap();
    // Worker threads: the pipeline runs while this thread watches the file.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let run = rt.spawn(async move { sluice::pipeline::run(&p, Default::default(), stopped).await });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let have = std::fs::read_to_string(lines)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if have >= n {
            break;
        }
        assert!(Instant::now() < deadline, "{have} of {n} lines");
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.send(true).unwrap();
    let summary = rt.block_on(run).unwrap().unwrap();
    assert_eq!(summary.dead_lettered, 0, "{summary}");
}

/// Kafka -> Elasticsearch daily indices `PREFIX-YYYYMMDD` (with a template), in batches of 100
/// gathered for 200 ms at most, committing every 200 ms; callers append the other sinks and
/// the dead-letter table.
fn kafka_to_es_toml(brokers: &str, topic: &str, group: &str, url: &str, prefix: &str) -> String {
    format!(
        r#"
[pipeline]
batch_size = 100
batch_timeout = "50ms"
[source]
type = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "{group}"
start = "earliest"
commit_interval = "200ms"
{es}"#,
        es = es_sink_toml(url, prefix, 5000, "200ms")
    )
}

/// `[sinks.es]`: daily indices `PREFIX-YYYYMMDD`, with a template of that name, gathering
/// batches for `linger`.
fn es_sink_toml(url: &str, prefix: &str, total_fields_limit: u32, linger: &str) -> String {
    format!(
        r#"[sinks.es]
type = "elasticsearch"
url = "{url}"
index = "{prefix}-%{{+YYYYMMdd}}"
linger = "{linger}"
[sinks.es.template]
name = "{prefix}"
patterns = ["{prefix}-*"]
total_fields_limit = {total_fields_limit}
"#
    )
}

#[test]
fn redelivering_the_same_kafka_range_leaves_the_count_unchanged() {
    const N: usize = 400;
    let url = es_url();
    let brokers = kafka_bootstrap();
    let prefix = unique("redeliver");
    let topic = prefix.clone();
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.ndjson");
    // The producer dead-letters to `dead` too (`dead.ndjson` beside its pipeline file).
    let produce = dir.path().join("produce.toml");
    let toml = common::kafka::producer_toml(&brokers, &topic, 7, N, 2, "");
    std::fs::write(&produce, toml).unwrap();
    let p = sluice::config::Pipeline::load(&produce).unwrap();
    let summary = runtime()
        .block_on(sluice::pipeline::run(
            &p,
            Default::default(),
            tokio::sync::watch::channel(false).1,
        ))
        .unwrap();
    assert_eq!(summary.records_out, N as u64);

    // Two consumer groups read the same offsets: the second run re-delivers every record.
    for group in ["first", "second"] {
        let lines = dir.path().join(format!("{group}.ndjson"));
        let mut toml = kafka_to_es_toml(
            &brokers,
            &topic,
            &format!("{prefix}-{group}"),
            &url,
            &prefix,
        );
        toml.push_str(&format!(
            r#"
[sinks.copy]
type = "file"
path = "{lines}"
[dead_letter]
type = "file"
path = "{dead}"
"#,
            lines = lines.display(),
            dead = dead.display()
        ));
        run_until_lines(&toml, dir.path(), &lines, N);
        refresh(&url, &format!("{prefix}-*"));
        assert_eq!(
            count(&url, &format!("{prefix}-*")),
            N as u64,
            "after {group}"
        );
    }
    assert!(!dead.exists() || std::fs::read_to_string(&dead).unwrap().is_empty());
    cleanup(&url, &prefix);
}

#[test]
fn three_hosts_in_one_group_index_every_tweet_once_through_a_kill_and_a_join() {
    use common::fleet::{FAST_FAILOVER, Fleet};
    const N: usize = 3000;
    let url = es_url();
    let brokers = kafka_bootstrap();
    let prefix = unique("fleet");
    let (topic, group) = (prefix.clone(), format!("{prefix}-group"));
    let dir = tempdir();
    // 200 tweets a second over 6 partitions: the kill and the join happen mid-stream.
    let mut producer = common::fleet::produce_paced(dir.path(), &topic, 11, N, 6, 200);
    common::kafka::wait_for_messages(&brokers, &topic);
    let p = dir.path().join("fleet.toml");
    let mut toml = kafka_to_es_toml(&brokers, &topic, &group, &url, &prefix);
    toml.push_str(&format!(
        r#"
[dead_letter]
type = "file"
path = "dead.ndjson"
{FAST_FAILOVER}"#
    ));
    std::fs::write(&p, toml).unwrap();

    let mut fleet = Fleet::new(&p, dir.path());
    let pattern = format!("{prefix}-*");
    fleet.kill_one_add_one(N as u64, Duration::from_secs(240), || count(&url, &pattern));
    common::wait_until(
        "the offsets committed",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || common::kafka::committed(&brokers, &group, &topic) == N as i64,
    );
    fleet.stop_all();
    assert!(producer.0.take().unwrap().wait().unwrap().success());

    // Documents are keyed by tweet id: N documents are the N generated tweets, each once.
    assert_eq!(count(&url, &pattern), N as u64);
    assert!(
        common::fleet::was_assigned(&fleet.log("h4")),
        "{}",
        fleet.log("h4")
    );
    let dead = dir.path().join("dead.ndjson");
    assert!(!dead.exists() || std::fs::read_to_string(&dead).unwrap().is_empty());
    cleanup(&url, &prefix);
}
