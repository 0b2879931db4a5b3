//! The `host` binary end to end: `run` on the bundled pipeline.toml, `check`, config errors,
//! the file source with malformed input, and `plugin run`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::Value;
use tweetgen::{GenerateOptions, TweetGenerator};

fn host(args: &[&str], env: &[(&str, &str)]) -> Output {
    build_plugins();
    let mut cmd = Command::new(host_bin());
    cmd.args(args).current_dir(root()).env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn summary(o: &Output) -> Value {
    assert!(o.status.success(), "host failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The JSON summary of `host run pipeline` (which must succeed).
fn run_summary(pipeline: &Path) -> Value {
    let args = [
        "run",
        pipeline.to_str().unwrap(),
        "--json-summary",
        "--quiet",
    ];
    summary(&host(&args, &[]))
}

#[test]
fn example_pipeline_accounts_for_every_record() {
    let dir = tempdir();
    let out = dir.path().join("out.ndjson");
    let dead = dir.path().join("dead.ndjson");
    let n = 4000;
    let o = host(
        &["run", "pipeline.toml", "--json-summary", "--quiet"],
        &[
            ("SLUICE_SOURCE__COUNT", &n.to_string()),
            ("SLUICE_SOURCE__TWEETS__START_TIME", generate_start()),
            ("SLUICE_SINKS__OUT__PATH", out.to_str().unwrap()),
            ("SLUICE_DEAD_LETTER__PATH", dead.to_str().unwrap()),
        ],
    );
    let s = summary(&o);
    let count = |k: &str| s[k].as_u64().unwrap();
    assert_eq!(count("records_in"), n);
    assert_eq!(
        count("records_in"),
        count("records_out") + count("dropped") + count("dead_lettered")
    );

    // Ground truth from the generator with the same options as pipeline.toml.
    let opts = GenerateOptions {
        bts_share: 0.3,
        v2_share: 0.5,
        wide_share: 0.02,
        ..generate_options(42)
    };
    let mut generator = TweetGenerator::new(&opts);
    let mut buf = Vec::new();
    let bts: Vec<u64> = (0..n)
        .map(|_| generator.next_into(&mut buf))
        .filter(|g| g.mentions_bts)
        .map(|g| g.id)
        .collect();
    assert_eq!(count("records_out"), bts.len() as u64);
    assert_eq!(count("dead_lettered"), 0);

    let written = lines(&out);
    assert_eq!(written.len(), bts.len());
    for (doc, id) in written.iter().zip(&bts) {
        let doc_id = doc["id_str"]
            .as_str()
            .or(doc["data"]["id"].as_str())
            .unwrap();
        assert_eq!(doc_id, id.to_string());
        // enrich ran...
        assert!(doc["@timestamp"].is_string());
        assert!(
            doc["sluice"]["matched_keywords"]
                .as_array()
                .is_some_and(|k| !k.is_empty()),
            "{doc}"
        );
        // ...and prune removed the bulky subtrees and nulls.
        assert!(doc.get("card").is_none() && doc["data"].get("card").is_none());
        assert!(doc.get("translations").is_none());
        assert!(!doc.to_string().contains(":null"), "{doc}");
    }
    assert_eq!(std::fs::read_to_string(&dead).unwrap(), "");
}

#[test]
fn file_source_dead_letters_malformed_and_oversized_records() {
    let dir = tempdir();
    let input = dir.path().join("in.ndjson");
    let mut data = fixture("tweets.ndjson");
    data.extend_from_slice(b"not json at all\n");
    data.extend_from_slice(b"{\"text\":\"bts \xc3\x28 broken utf-8\"}\n");
    data.extend_from_slice(format!("{{\"text\":\"bts {}\"}}\n", "x".repeat(2 << 20)).as_bytes());
    data.extend_from_slice(b"\r\n\n");
    std::fs::write(&input, data).unwrap();
    let pipeline = dir.path().join("p.toml");
    let plugins = root().join("guest-plugins/dist");
    std::fs::write(
        &pipeline,
        format!(
            r#"
[pipeline]
chain = ["bts", "enrich"]
batch_size = 4
max_record_bytes = "1MiB"
[source]
type = "file"
paths = ["in*.ndjson"]
[transforms.bts]
plugin = "{p}/keyword_filter.wasm"
config = {{ keywords = "bts,방탄소년단" }}
[transforms.enrich]
plugin = "{p}/enrich.wasm"
[sinks.out]
type = "file"
path = "out/tweets.ndjson"
rotate_bytes = "4KiB"
[dead_letter]
type = "file"
path = "out/dead.ndjson"
"#,
            p = plugins.display()
        ),
    )
    .unwrap();
    let s = run_summary(&pipeline);
    assert_eq!(s["records_in"], 10);
    assert_eq!(s["records_out"], 5);
    assert_eq!(s["dropped"], 2);
    assert_eq!(s["dead_lettered"], 3);

    let dead = lines(&dir.path().join("out/dead.ndjson"));
    let reasons: Vec<(&str, &str)> = dead
        .iter()
        .map(|d| (d["stage"].as_str().unwrap(), d["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons.len(), 3);
    assert!(
        reasons
            .iter()
            .any(|(st, r)| *st == "bts" && r.starts_with("not valid JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(st, r)| *st == "bts" && r.starts_with("not valid UTF-8")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(st, r)| *st == "host" && r.contains("max_record_bytes")),
        "{reasons:?}"
    );
    // Invalid UTF-8 survives byte for byte (as base64) in the dead letter.
    let raw = dead
        .iter()
        .find(|d| d["value"].get("base64").is_some())
        .expect("base64 value");
    assert!(raw["value"]["base64"].as_str().unwrap().len() > 10);

    // Output rotated by size; together the files hold every kept tweet once.
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("out")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("tweets")
        {
            assert!(
                std::fs::metadata(&path).unwrap().len() < 4096 + 4096,
                "{}",
                path.display()
            );
            docs.extend(lines(&path));
        }
    }
    assert_eq!(docs.len(), 5);
    assert!(
        std::fs::read_dir(dir.path().join("out")).unwrap().count() > 2,
        "expected rotation"
    );
}

#[test]
fn check_loads_every_plugin_without_running() {
    let o = host(&["check", "pipeline.toml"], &[]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in ["bts", "prune", "enrich"] {
        assert!(
            stdout.contains(&format!("transform `{name}`: loaded")),
            "{stdout}"
        );
    }
}

fn check_fails(env: &[(&str, &str)]) -> String {
    let o = host(&["check", "pipeline.toml"], env);
    assert!(!o.status.success(), "check should fail with {env:?}");
    stderr(&o)
}

#[test]
fn config_errors_name_the_key_and_the_origin() {
    // A bad value from the environment: the key and the variable's origin.
    let err = check_fails(&[("SLUICE_PIPELINE__BATCH_SIZE", "lots")]);
    assert!(
        err.contains("`pipeline.batch_size`")
            && err.contains("environment variable SLUICE_PIPELINE__BATCH_SIZE"),
        "{err}"
    );
    // A chain naming a transform that does not exist.
    let err = check_fails(&[("SLUICE_PIPELINE__CHAIN", "[bts,nope]")]);
    assert!(
        err.contains("pipeline.chain[1]")
            && err.contains("nope")
            && err.contains("SLUICE_PIPELINE__CHAIN"),
        "{err}"
    );
    // A plugin rejecting its config names the transform and says why.
    let err = check_fails(&[("SLUICE_TRANSFORMS__ENRICH__CONFIG__COLOUR", "red")]);
    assert!(
        err.contains("enrich") && err.contains("colour") && err.contains("pipeline.toml"),
        "{err}"
    );
    // A memory cap above the runtime's pool.
    let err = check_fails(&[("SLUICE_TRANSFORMS__BTS__MEMORY", "8GiB")]);
    assert!(
        err.contains("transforms.bts.memory") && err.contains("SLUICE_TRANSFORMS__BTS__MEMORY"),
        "{err}"
    );
    // More chain workers than the instance pool holds (3 transforms x 2 x 11 > 64), and none.
    let err = check_fails(&[("SLUICE_PIPELINE__WORKERS", "11")]);
    assert!(
        err.contains("`pipeline.workers`")
            && err.contains("runtime.max_instances (64)")
            && err.contains("SLUICE_PIPELINE__WORKERS"),
        "{err}"
    );
    let err = check_fails(&[("SLUICE_PIPELINE__WORKERS", "0")]);
    assert!(
        err.contains("`pipeline.workers`: must be at least 1"),
        "{err}"
    );
    let err = check_fails(&[("SLUICE_RUNTIME__MAX_CALL_BYTES", "0")]);
    assert!(
        err.contains("`runtime.max_call_bytes`: must be greater than zero")
            && err.contains("SLUICE_RUNTIME__MAX_CALL_BYTES"),
        "{err}"
    );
    // A wrong pin.
    let err = check_fails(&[("SLUICE_TRANSFORMS__BTS__SHA256", &"ab".repeat(32))]);
    assert!(err.contains("refusing to load"), "{err}");
}

#[test]
fn unknown_key_in_the_file_is_named_with_the_file() {
    let dir = tempdir();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, "[pipeline]\nbatchsize = 10\n[source]\ntype = \"generate\"\ncount = 1\n[sinks.o]\ntype = \"stdout\"\n").unwrap();
    let o = host(&["check", p.to_str().unwrap()], &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("bad.toml") && err.contains("batchsize"),
        "{err}"
    );
}

/// `host check` on `toml` (written as `bad.toml`): it must fail; returns stderr.
fn check_file_fails(dir: &Path, toml: &str) -> String {
    let p = dir.join("bad.toml");
    std::fs::write(&p, toml).unwrap();
    let o = host(&["check", p.to_str().unwrap()], &[]);
    assert!(!o.status.success(), "check accepted:\n{toml}");
    stderr(&o)
}

/// Every component's settings are checked by `host check`, without a network, and the error
/// names the key and the file.
#[test]
fn check_names_the_key_and_file_of_every_component_setting() {
    let dir = tempdir();
    let source = "[source]\ntype = \"generate\"\ncount = 1\n";
    let es = "[sinks.es]\ntype = \"elasticsearch\"\nurl = \"http://127.0.0.1:1\"\n";
    let gcs = "[sinks.g]\ntype = \"gcs\"\n";
    let bq =
        "[sinks.bq]\ntype = \"bigquery\"\nproject = \"p\"\ndataset = \"d\"\nmode = \"stream\"\n";
    let kafka = "[sinks.k]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:1\"\n";
    let cases: &[(String, &[&str])] = &[
        // Elasticsearch: an index pattern with an unclosed date, one with capitals, no docs
        // per request, a template without patterns.
        (
            format!("{source}{es}index = \"t-%{{+YYYY\"\n"),
            &["`sinks.es.index`", "unclosed"],
        ),
        (
            format!("{source}{es}index = \"Twitter-%{{+YYYYMMdd}}\"\n"),
            &["`sinks.es.index`", "lowercase"],
        ),
        (
            format!("{source}{es}bulk_max_docs = 0\n"),
            &["`sinks.es.bulk_max_docs`"],
        ),
        (
            format!("{source}{es}[sinks.es.template]\npatterns = []\n"),
            &["`sinks.es.template.patterns`"],
        ),
        (
            format!("{source}{es}username_env = \"U\"\n"),
            &["`sinks.es.password_env`"],
        ),
        // GCS without a bucket, or with an empty one; its BigQuery table without a name.
        (
            format!("{source}{gcs}prefix = \"x/\"\n"),
            &["sinks.g", "bucket"],
        ),
        (
            format!("{source}{gcs}bucket = \"\"\n"),
            &["`sinks.g.bucket`"],
        ),
        (
            format!(
                "{source}{gcs}bucket = \"b\"\n[sinks.g.bigquery]\nproject = \"p\"\ndataset = \"d\"\ntable = \" \"\n"
            ),
            &["`sinks.g.bigquery.table`"],
        ),
        // A BigQuery streaming sink without a table, or loading instead of streaming.
        (format!("{source}{bq}"), &["sinks.bq", "table"]),
        (format!("{source}{bq}table = \"\"\n"), &["`sinks.bq.table`"]),
        (
            format!("{source}{bq}table = \"t\"\nmode = \"load\"\n")
                .replace("mode = \"stream\"\n", ""),
            &["`sinks.bq.mode`"],
        ),
        (
            format!("{source}{bq}table = \"t\"\ndataset = \"my-data\"\n")
                .replace("dataset = \"d\"\n", ""),
            &["`sinks.bq.dataset`"],
        ),
        // A Kafka sink without a topic.
        (format!("{source}{kafka}"), &["sinks.k", "topic"]),
        (
            format!("{source}{kafka}topic = \" \"\n"),
            &["`sinks.k.topic`"],
        ),
        // An unknown key in every kind of component.
        (
            format!("{source}colour = 1\n[sinks.o]\ntype = \"stdout\"\n"),
            &["source", "colour"],
        ),
        (format!("{source}{es}colour = 1\n"), &["sinks.es", "colour"]),
        (
            format!("{source}{gcs}bucket = \"b\"\ncolour = 1\n"),
            &["sinks.g", "colour"],
        ),
        (
            format!("{source}{bq}table = \"t\"\ncolour = 1\n"),
            &["sinks.bq", "colour"],
        ),
        (
            format!("{source}{kafka}topic = \"t\"\ncolour = 1\n"),
            &["sinks.k", "colour"],
        ),
        (
            format!(
                "{source}[sinks.o]\ntype = \"stdout\"\n[dead_letter]\ntype = \"file\"\npath = \"d\"\ncolour = 1\n"
            ),
            &["dead_letter", "colour"],
        ),
        (
            format!("{source}[sinks.o]\ntype = \"stdout\"\n[runtime]\ncolour = 1\n"),
            &["runtime", "colour"],
        ),
        (
            format!(
                "[pipeline]\nchain = [\"t\"]\n{source}[sinks.o]\ntype = \"stdout\"\n[transforms.t]\nplugin = \"x.wasm\"\ncolour = 1\n"
            ),
            &["transforms.t", "colour"],
        ),
    ];
    for (toml, wanted) in cases {
        let err = check_file_fails(dir.path(), toml);
        for w in wanted.iter().chain(&["bad.toml"]) {
            assert!(err.contains(w), "{w:?} not in the error for\n{toml}\n{err}");
        }
    }
    // A TOML syntax error: the file, the line and the column.
    let err = check_file_fails(dir.path(), &format!("{source}[sinks.o]\ntype = \"stdout\n"));
    assert!(
        err.contains("bad.toml") && err.contains("line 5") && err.contains("column"),
        "{err}"
    );
}

#[test]
fn plugin_run_reports_one_outcome_per_input_line() {
    build_plugins();
    let mut input = fixture("tweets.ndjson");
    input.extend_from_slice(b"garbage\n");
    let mut child = Command::new(host_bin())
        .args([
            "plugin",
            "run",
            "guest-plugins/dist/keyword_filter.wasm",
            "guest-plugins/dist/enrich.wasm",
        ])
        .args([
            "--config",
            "keyword_filter.keywords=bts",
            "--batch-size",
            "3",
        ])
        .current_dir(root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let results: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 8);
    let outcomes: Vec<&str> = results
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "out",
            "out",
            "out",
            "drop",
            "out",
            "out",
            "drop",
            "dead-letter"
        ]
    );
    assert_eq!(results[0]["line"], 1);
    assert!(results[0]["records"][0]["sluice"]["hashtags"].is_array());
    assert_eq!(results[7]["stage"], "keyword_filter");
}

#[test]
fn file_source_loops_at_its_rate_until_stopped() {
    build_plugins();
    let dir = tempdir();
    std::fs::write(dir.path().join("in.ndjson"), fixture("tweets.ndjson")).unwrap();
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
[pipeline]
chain = ["bts"]
batch_size = 50
[source]
type = "file"
paths = ["in.ndjson"]
rate = 500
loop = true
[transforms.bts]
plugin = "{}"
config = {{ keywords = "bts,방탄소년단" }}
[sinks.out]
type = "file"
path = "out.ndjson"
"#,
            plugin("keyword_filter").display()
        ),
    )
    .unwrap();
    let p = sluice::config::Pipeline::load(&pipeline).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = std::time::Instant::now();
    let summary = rt.block_on(async {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            stop.send(true).unwrap();
        });
        sluice::pipeline::run(&p, Default::default(), stopped)
            .await
            .unwrap()
    });
    let elapsed = started.elapsed().as_secs_f64();
    // The 7-line file was replayed (loop), paced by `rate` (never ahead of 500/s), and the
    // drain after the stop lost nothing: 5 of every 7 fixtures mention BTS.
    assert!(summary.records_in > 7, "{summary:?}");
    assert!(
        summary.records_in as f64 <= 500.0 * elapsed + 50.0,
        "{summary:?} in {elapsed}s"
    );
    assert_eq!(summary.records_in, summary.records_out + summary.dropped);
    let written = std::fs::read_to_string(dir.path().join("out.ndjson")).unwrap();
    assert_eq!(written.lines().count() as u64, summary.records_out);
}

#[test]
fn schema_bigquery_is_derived_from_what_leaves_the_chain() {
    let o = host(
        &["schema", "bigquery", "pipeline.toml", "--sample", "1500"],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let fields: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let field = |fs: &[Value], name: &str| fs.iter().find(|f| f["name"] == name).cloned();
    // enrich's @timestamp, renamed to a legal column, typed as a timestamp.
    let ts = field(&fields, "_timestamp").expect("_timestamp");
    assert_eq!(ts["type"], "TIMESTAMP");
    // Both tweet shapes are in one table: v1.1 top-level fields and the v2 `data` record.
    assert_eq!(field(&fields, "data").unwrap()["type"], "RECORD");
    assert_eq!(field(&fields, "user").unwrap()["type"], "RECORD");
    let sluice = field(&fields, "sluice").unwrap();
    let hashtags = field(sluice["fields"].as_array().unwrap(), "hashtags").unwrap();
    assert_eq!(
        (hashtags["type"].as_str(), hashtags["mode"].as_str()),
        (Some("STRING"), Some("REPEATED"))
    );
    // What field-prune removed is not in the schema.
    assert!(field(&fields, "card").is_none() && field(&fields, "translations").is_none());
    assert!(stderr(&o).contains("out of 1500 read"), "{}", stderr(&o));
}

/// A pipeline with an endless generated source; `sink` is its `[sinks.*]` table.
fn endless_pipeline(dir: &Path, sink: &str, pipeline: &str) -> std::path::PathBuf {
    let p = dir.join("endless.toml");
    std::fs::write(
        &p,
        format!(
            "[pipeline]\nbatch_size = 100\n{pipeline}\n[source]\ntype = \"generate\"\n\
             count = 0\nrate = 5000\n{sink}\n[dead_letter]\ntype = \"file\"\npath = \"dead.ndjson\"\n"
        ),
    )
    .unwrap();
    p
}

/// `host run` with stdout and stderr captured.
fn spawn_piped(pipeline: &Path) -> KillOnDrop {
    KillOnDrop(Some(
        host_run(pipeline)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

/// Sends SIGTERM, waits at most 30 s, and returns how the host ended with what it printed.
fn terminate(host: &mut KillOnDrop) -> (std::process::ExitStatus, Output) {
    let child = host.0.as_mut().unwrap();
    let status = stop_with(child, "TERM", std::time::Duration::from_secs(30));
    (status, host.0.take().unwrap().wait_with_output().unwrap())
}

#[test]
fn sigterm_drains_every_batch_and_exits_cleanly() {
    let dir = tempdir();
    let out = dir.path().join("out.ndjson");
    let sink = format!("[sinks.out]\ntype = \"file\"\npath = \"{}\"", out.display());
    let pipeline = endless_pipeline(dir.path(), &sink, "");
    let mut host = spawn_piped(&pipeline);
    wait_until(
        "records in the output",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(100),
        || std::fs::metadata(&out).is_ok_and(|m| m.len() > 0),
    );
    let (status, o) = terminate(&mut host);
    assert!(status.success(), "{status}: {}", stderr(&o));
    assert!(stderr(&o).contains("SIGTERM: draining"), "{}", stderr(&o));
    let s = summary(&o);
    let n = |k: &str| s[k].as_u64().unwrap();
    assert!(n("records_in") > 0, "{s}");
    // Everything read was delivered before the exit: no batch was cut off.
    assert_eq!(
        n("records_in"),
        n("records_out") + n("dropped") + n("dead_lettered")
    );
    assert_eq!(lines(&out).len() as u64, n("records_out"));
}

#[test]
fn a_drain_that_cannot_finish_ends_at_shutdown_timeout() {
    let dir = tempdir();
    // A broker nobody listens on: the first batch waits for acknowledgements forever.
    let sink = format!(
        "[sinks.k]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:{}\"\ntopic = \"t\"",
        free_port()
    );
    let pipeline = endless_pipeline(dir.path(), &sink, "shutdown_timeout = \"1s\"");
    let mut host = spawn_piped(&pipeline);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (status, o) = terminate(&mut host);
    assert_eq!(status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("pipeline.shutdown_timeout (1s)"),
        "{}",
        stderr(&o)
    );
    assert!(
        o.stdout.is_empty(),
        "no summary for a run that did not finish"
    );
}

/// `[runtime.metrics]` on a running pipeline: `/health` and `/ready` answer, and `host top`
/// under a pseudo-terminal redraws a table of every stage in place, with numbers that move.
#[test]
fn host_top_shows_the_stages_of_a_running_pipeline() {
    build_plugins();
    let dir = tempdir();
    let addr = format!("127.0.0.1:{}", free_port());
    let out = dir.path().join("out.ndjson");
    let stages = format!(
        "[transforms.bts]\nplugin = \"{}\"\nconfig = {{ keywords = [\"bts\"] }}\n\
         [sinks.out]\ntype = \"file\"\npath = \"{}\"\n[runtime.metrics]\nlisten = \"{addr}\"\n",
        plugin("keyword_filter").display(),
        out.display()
    );
    let pipeline = endless_pipeline(dir.path(), &stages, "name = \"topped\"\nchain = [\"bts\"]");
    let mut host = spawn_piped(&pipeline);
    wait_until(
        "/ready did not answer 200",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(100),
        || common::metrics::ready(&addr).is_some_and(|(status, _)| status == 200),
    );
    assert_eq!(
        http::get_status(&format!("http://{addr}/health")),
        Some(200)
    );

    // `script` gives `host top` a terminal, as an operator's shell would.
    let top = format!("{} top {addr} --interval 300ms -n 4", host_bin().display());
    let o = Command::new("script")
        .args(["-qfec", &top, "/dev/null"])
        .output()
        .unwrap();
    assert_success(&o);
    let screen = String::from_utf8_lossy(&o.stdout).replace('\r', "");
    let frames: Vec<&str> = screen
        .split("\x1b[H\x1b[2J")
        .filter(|f| !f.trim().is_empty())
        .collect();
    assert_eq!(
        frames.len(),
        4,
        "four frames, each drawn over the last:\n{screen}"
    );
    let column = |frame: &str, stage: &str, col: usize| -> u64 {
        let row = frame
            .lines()
            .find(|l| l.starts_with(stage))
            .unwrap_or_else(|| panic!("no row for {stage} in\n{frame}"));
        row.split_whitespace()
            .nth(col)
            .unwrap()
            .replace(',', "")
            .parse()
            .unwrap_or(0)
    };
    let last = frames[3];
    assert!(
        last.contains("pipeline `topped`") && last.contains("ready"),
        "{last}"
    );
    for stage in ["source", "transforms.bts", "sinks.out", "dead_letter"] {
        assert!(
            last.lines().any(|l| l.starts_with(stage)),
            "{stage} in\n{last}"
        );
    }
    // Column 3 is the total in, column 1 the rate in.
    assert!(
        column(last, "source", 3) > column(frames[0], "source", 3),
        "the numbers move:\n{}\n{last}",
        frames[0]
    );
    assert!(column(last, "transforms.bts", 1) > 0, "a rate in:\n{last}");
    let (status, _) = terminate(&mut host);
    assert!(status.success());
}

/// SIGHUP swaps the transforms between two batches while a stream runs. A reload that cannot
/// load (a missing plugin file) is reported and the running chain kept; a good one, from
/// keywords `bts` to `army`, takes over from one batch on. Every record is decided by exactly
/// one of the two configs, in order: none lost, none twice.
#[test]
fn sighup_reloads_the_transforms_without_losing_or_repeating_a_record() {
    build_plugins();
    let dir = tempdir();
    let (n, seed, batch) = (24_000usize, 7u64, 100usize);
    let addr = format!("127.0.0.1:{}", free_port());
    let out = dir.path().join("out.ndjson");
    let file = dir.path().join("reloaded.toml");
    let write = |plugin: &Path, keywords: &str| {
        let toml = format!(
            r#"
[pipeline]
name = "reloaded"
chain = ["filter"]
batch_size = {batch}
[source]
type = "generate"
count = {n}
rate = 3000
[source.tweets]
seed = {seed}
start_time = "{start}"
[transforms.filter]
plugin = "{plugin}"
config = {{ keywords = ["{keywords}"] }}
[sinks.out]
type = "file"
path = "{out}"
[dead_letter]
type = "file"
path = "dead.ndjson"
[runtime.metrics]
listen = "{addr}"
"#,
            start = generate_start(),
            plugin = plugin.display(),
            out = out.display(),
        );
        std::fs::write(&file, toml).unwrap();
    };
    let filter = plugin("keyword_filter");
    write(&filter, "bts");
    let mut host = spawn_piped(&file);
    let pid = host.0.as_ref().unwrap().id().to_string();
    let hangup = || {
        let sent = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(sent.success());
    };
    let reloads = |outcome: &str| {
        common::metrics::Scrape::get(&addr)
            .and_then(|s| s.value("sluice_reloads_total", &[("outcome", outcome)]))
            .unwrap_or(0.0)
    };
    let every = std::time::Duration::from_millis(50);
    let limit = std::time::Duration::from_secs(60);
    wait_until("no output yet", limit, every, || {
        out.exists() && std::fs::metadata(&out).unwrap().len() > 0
    });

    write(&dir.path().join("missing.wasm"), "army");
    hangup();
    wait_until("the failed reload was not counted", limit, every, || {
        reloads("error") == 1.0
    });
    write(&filter, "army");
    hangup();
    wait_until("the good reload was not counted", limit, every, || {
        reloads("ok") == 1.0
    });
    let o = host.0.take().unwrap().wait_with_output().unwrap();
    assert_success(&o);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.contains("reload failed, keeping the running transforms")
            && log.contains("missing.wasm"),
        "{log}"
    );

    // What each config keeps, decided by the same plugin in this process.
    let mut generator = TweetGenerator::new(&generate_options(seed));
    let mut buf = Vec::new();
    let mut ids = Vec::with_capacity(n);
    let mut records = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(generator.next_into(&mut buf).id.to_string());
        records.push(record(&buf));
    }
    let rt = runtime(dir.path());
    let keeps = |keywords: &str| -> Vec<bool> {
        let p = load(&rt, spec("keyword_filter", &[("keywords", keywords)]));
        let mut chain = sluice::transform::chain::Chain::from_plugins(vec![p]).unwrap();
        let mut kept = vec![false; n];
        let mut stage_out = sluice::transform::StageOutput::default();
        for (c, chunk) in records.chunks(1000).enumerate() {
            chain.process(chunk.to_vec(), &mut stage_out);
            for &o in &stage_out.origins {
                kept[c * 1000 + o as usize] = true;
            }
        }
        kept
    };
    let (bts, army) = (keeps("bts"), keeps("army"));
    let got: Vec<String> = lines(&out).iter().map(|d| tweet_id(d).unwrap()).collect();
    let decided_at = |swap: usize| -> Vec<&String> {
        (0..n)
            .filter(|&i| if i < swap { bts[i] } else { army[i] })
            .map(|i| &ids[i])
            .collect()
    };
    let swap = (batch..n)
        .step_by(batch)
        .find(|&k| decided_at(k).into_iter().eq(got.iter()));
    assert!(
        swap.is_some(),
        "the output is not `bts` up to a batch boundary and `army` after it ({} records out)",
        got.len()
    );
}

/// `--log-format json` (or `SLUICE_LOG_FORMAT=json`): every log line is one JSON object with
/// the time, level, target, message and the event's fields; the summary stays the last line.
#[test]
fn json_logs_are_one_object_per_line() {
    let o = host(
        &["run", "pipeline.toml", "--quiet"],
        &[
            ("RUST_LOG", "info"),
            ("SLUICE_LOG_FORMAT", "json"),
            ("SLUICE_SOURCE__COUNT", "500"),
            ("SLUICE_SINKS__OUT__PATH", "/dev/null"),
        ],
    );
    assert_success(&o);
    let err = stderr(&o);
    let mut lines: Vec<&str> = err.lines().collect();
    let summary = lines.pop().unwrap();
    assert!(summary.starts_with("bts-demo: 500 in"), "{summary}");
    assert!(lines.len() >= 3, "{err}");
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v[key].is_string(), "no {key} in {line}");
        }
    }
    // A plugin's own log line carries the transform's name as a field.
    assert!(err.contains(r#""plugin":"bts""#), "{err}");
}

/// A dead letter on a full disk (`/dev/full`): the host stops, naming the dead letter and the
/// cause, rather than dropping the record it could not write.
#[test]
fn a_dead_letter_on_a_full_disk_stops_the_host_with_the_cause() {
    let dir = tempdir();
    std::fs::write(
        dir.path().join("in.ndjson"),
        b"{\"text\":\"fine\"}\nnot json at all\n",
    )
    .unwrap();
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
[pipeline]
chain = ["enrich"]
[source]
type = "file"
paths = ["in.ndjson"]
[transforms.enrich]
plugin = "{p}/enrich.wasm"
[sinks.out]
type = "file"
path = "out.ndjson"
[dead_letter]
type = "file"
path = "/dev/full"
"#,
            p = root().join("guest-plugins/dist").display()
        ),
    )
    .unwrap();
    let o = host(&["run", pipeline.to_str().unwrap()], &[]);
    let err = stderr(&o);
    assert!(!o.status.success(), "the host went on: {err}");
    assert!(
        err.contains("`dead_letter`") && err.contains("No space left on device"),
        "{err}"
    );
}

/// Four chain workers finish out of turn: the one that meets a record spinning its plugin
/// into the deadline is seconds late, the others run on. The sinks still receive every batch in
/// source order, and the stalled records alone are dead-lettered.
#[test]
fn chain_workers_deliver_in_source_order_when_one_stalls() {
    let dir = tempdir();
    let stalls = [130, 777, 1501];
    let input: String = (0..2000)
        .map(|n| {
            let tag = if stalls.contains(&n) { "stall" } else { "go" };
            format!("{{\"n\":{n},\"tag\":\"{tag}\"}}\n")
        })
        .collect();
    std::fs::write(dir.path().join("in.ndjson"), input).unwrap();
    let pipeline = dir.path().join("p.toml");
    let toml = format!(
        r#"
[pipeline]
chain = ["slow"]
batch_size = 50
workers = 4
[source]
type = "file"
paths = ["in.ndjson"]
{FILE_OUT_AND_DEAD}{}"#,
        stalling_transform("150ms")
    );
    std::fs::write(&pipeline, toml).unwrap();
    let s = run_summary(&pipeline);
    assert_eq!(s["workers"], 4, "{s}");
    let numbers = |file: &str| -> Vec<u64> {
        lines(&dir.path().join(file))
            .iter()
            .map(|l| {
                let record = l.get("record").unwrap_or(l);
                let value = record.get("value").unwrap_or(record);
                value["n"].as_u64().unwrap()
            })
            .collect()
    };
    let want: Vec<u64> = (0..2000).filter(|n| !stalls.contains(n)).collect();
    let got = numbers("out.ndjson");
    let first_wrong = got.iter().zip(&want).position(|(g, w)| g != w);
    assert!(
        got.len() == want.len() && first_wrong.is_none(),
        "{} records out of {}; first out of order at line {first_wrong:?}",
        got.len(),
        want.len()
    );
    let dead = lines(&dir.path().join("dead.ndjson"));
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert!(
        dead.iter().all(|d| d.to_string().contains("stall")),
        "{dead:?}"
    );
}
