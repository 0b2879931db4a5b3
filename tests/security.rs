//! Secured services, for real: the host against Kafka's SASL_SSL (SCRAM) and mutual-TLS
//! listeners (`compose/kafka.sh` runs them beside the plaintext one), and against OpenSearch
//! behind a TLS proxy that checks basic auth, API keys and client certificates
//! (`compose/tls-proxy.sh`). Certificates come from `compose/pki.sh` and name "localhost" only.
//!
//! Every refusal (wrong password, unknown CA, wrong host name, missing client certificate)
//! must end the start quickly with the cause and the key to fix, and no secret may appear in
//! anything the host prints.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use common::{http, metrics};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

/// What `compose/kafka.sh env` prints: the secured listeners and their files.
struct SecureKafka {
    plaintext: String,
    sasl_ssl: String,
    mtls: String,
    dir: PathBuf,
}

/// `bash compose/SCRIPT CMD` with `env`.
fn script(script: &str, cmd: &str, env: &[(&'static str, String)]) -> Output {
    Command::new("bash")
        .args([format!("compose/{script}"), cmd.to_string()])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(root())
        .output()
        .unwrap()
}

/// The `KEY=VALUE` lines a script's `env` prints.
fn script_env(name: &str, env: &[(&'static str, String)]) -> BTreeMap<String, String> {
    String::from_utf8(script(name, "env", env).stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl SecureKafka {
    fn get() -> Self {
        let env = script_env("kafka.sh", &[]);
        let var = |k: &str| {
            env.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("compose/kafka.sh env printed no {k}"))
        };
        Self {
            plaintext: kafka_bootstrap(),
            sasl_ssl: var("KAFKA_SASL_SSL"),
            mtls: var("KAFKA_MTLS"),
            dir: PathBuf::from(var("KAFKA_SECURE_DIR")),
        }
    }

    fn pki(&self, file: &str) -> String {
        self.dir.join("pki").join(file).display().to_string()
    }

    fn password_file(&self) -> String {
        self.dir.join("scram.password").display().to_string()
    }

    fn password(&self) -> String {
        std::fs::read_to_string(self.password_file())
            .unwrap()
            .trim()
            .to_string()
    }
}

/// `[X.security]` for SCRAM-SHA-512 over TLS, the password from `$SLUICE_TEST_KAFKA_PASSWORD`.
fn scram(k: &SecureKafka, ca: &str) -> String {
    sasl(k, "SCRAM-SHA-512", ca)
}

/// `[X.security]` for SASL `mechanism` over TLS, the password from
/// `$SLUICE_TEST_KAFKA_PASSWORD`.
fn sasl(k: &SecureKafka, mechanism: &str, ca: &str) -> String {
    format!(
        r#"protocol = "sasl_ssl"
sasl_mechanism = "{mechanism}"
username = "sluice"
password_env = "SLUICE_TEST_KAFKA_PASSWORD"
ca_file = "{}""#,
        k.pki(ca)
    )
}

fn mtls(k: &SecureKafka) -> String {
    format!(
        r#"protocol = "ssl"
ca_file = "{}"
cert_file = "{}"
key_file = "{}""#,
        k.pki("ca.pem"),
        k.pki("client.pem"),
        k.pki("client.key")
    )
}

/// Generated tweets (seed `seed`) into `topic` through a Kafka sink with `security`.
fn producer(brokers: &str, topic: &str, seed: u64, count: usize, security: &str) -> String {
    let toml = kafka::producer_toml(brokers, topic, seed, count, 2, "");
    format!("{toml}\n[sinks.kafka.security]\n{security}\n")
}

fn generated_ids(seed: u64, count: usize) -> BTreeSet<String> {
    kafka::generated_ids(seed, count)
}

/// Runs `host run` on `toml` (in `dir`) with `env`; returns the output and how long it took.
fn run(dir: &Path, toml: &str, env: &[(&str, &str)]) -> (Output, Duration) {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, toml).unwrap();
    let mut cmd = host_run(&path);
    cmd.current_dir(dir).env("RUST_LOG", "debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t0 = Instant::now();
    let out = cmd.output().unwrap();
    (out, t0.elapsed())
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_no_secret(output: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !output.contains(s),
            "a secret appears in the host's output:\n{output}"
        );
    }
}

/// The ids in `topic`, read over plaintext (an independent client).
fn ids_in_topic(brokers: &str, topic: &str, n: usize) -> BTreeSet<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("security-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ids = BTreeSet::new();
    let mut read = 0;
    while read < n {
        assert!(Instant::now() < deadline, "read {read} of {n} from {topic}");
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let doc: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            ids.insert(tweet_id(&doc).unwrap());
            read += 1;
        }
    }
    ids
}

#[test]
fn scram_sha_512_over_tls_produces_and_consumes_through_the_host() {
    let k = SecureKafka::get();
    let password = k.password();
    let dir = tempdir();
    let topic = unique("secure-scram");
    let (o, _) = run(
        dir.path(),
        &producer(&k.sasl_ssl, &topic, 41, 500, &scram(&k, "ca.pem")),
        &[("SLUICE_TEST_KAFKA_PASSWORD", &password)],
    );
    assert_success(&o);
    assert_no_secret(&text(&o), &[&password]);
    let want = generated_ids(41, 500);
    assert_eq!(ids_in_topic(&k.plaintext, &topic, 500), want);

    // Back out over SASL_SSL, the password from a file this time, the dead letter secured too.
    let out = dir.path().join("out.ndjson");
    let consumer = format!(
        r#"
[pipeline]
batch_size = 100
batch_timeout = "50ms"
[source]
type = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "{group}"
[source.security]
protocol = "sasl_ssl"
sasl_mechanism = "SCRAM-SHA-512"
username = "sluice"
password_file = "{password_file}"
ca_file = "{ca}"
[sinks.out]
type = "file"
path = "{out}"
[dead_letter]
type = "kafka"
brokers = "{brokers}"
topic = "{topic}-dead"
[dead_letter.security]
{security}
"#,
        brokers = k.sasl_ssl,
        group = unique("secure-group"),
        password_file = k.password_file(),
        ca = k.pki("ca.pem"),
        out = out.display(),
        security = scram(&k, "ca.pem"),
    );
    std::fs::write(dir.path().join("consumer.toml"), consumer).unwrap();
    let log = dir.path().join("consumer.log");
    let endpoint = format!("127.0.0.1:{}", free_port());
    let mut host = KillOnDrop(Some(
        host_run(&dir.path().join("consumer.toml"))
            .args(["--metrics", &endpoint])
            .env("SLUICE_TEST_KAFKA_PASSWORD", &password)
            .env("RUST_LOG", "debug")
            .stdout(std::fs::File::create(dir.path().join("consumer.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    ));
    wait_until(
        "every record consumed over SASL_SSL",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() >= 500),
    );
    // Nothing the endpoint serves carries the password either.
    let scrape = metrics::Scrape::get(&endpoint).expect("/metrics answers");
    let (_, ready) = metrics::ready(&endpoint).expect("/ready answers");
    assert_no_secret(&format!("{}{ready}", scrape.text()), &[&password]);
    let status = interrupt(host.0.as_mut().unwrap(), Duration::from_secs(30));
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let got: BTreeSet<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| tweet_id(&serde_json::from_str(l).unwrap()).unwrap())
        .collect();
    assert_eq!(got, want);
    assert_no_secret(&std::fs::read_to_string(&log).unwrap(), &[&password]);
}

#[test]
fn mutual_tls_produces_with_a_client_certificate() {
    let k = SecureKafka::get();
    let dir = tempdir();
    let topic = unique("secure-mtls");
    let (o, _) = run(
        dir.path(),
        &producer(&k.mtls, &topic, 42, 300, &mtls(&k)),
        &[],
    );
    assert_success(&o);
    assert_eq!(
        ids_in_topic(&k.plaintext, &topic, 300),
        generated_ids(42, 300)
    );
}

#[test]
fn scram_sha_256_and_plain_authenticate_too() {
    let k = SecureKafka::get();
    let password = k.password();
    let dir = tempdir();
    for (seed, mechanism) in [(44, "SCRAM-SHA-256"), (45, "PLAIN")] {
        let topic = unique("secure-sasl");
        let (o, _) = run(
            dir.path(),
            &producer(
                &k.sasl_ssl,
                &topic,
                seed,
                100,
                &sasl(&k, mechanism, "ca.pem"),
            ),
            &[("SLUICE_TEST_KAFKA_PASSWORD", &password)],
        );
        assert!(o.status.success(), "{mechanism}:\n{}", text(&o));
        assert_eq!(
            ids_in_topic(&k.plaintext, &topic, 100),
            generated_ids(seed, 100),
            "{mechanism}"
        );
    }
}

#[test]
fn refused_connections_fail_fast_naming_the_cause_and_the_key() {
    let k = SecureKafka::get();
    let password = k.password();
    let wrong = "wrong-PASSWORD-4f1c9e";
    let dir = tempdir();
    let cases: Vec<(&str, String, &str, Vec<&str>)> = vec![
        (
            "wrong password",
            producer(&k.sasl_ssl, &unique("refused"), 1, 10, &scram(&k, "ca.pem")),
            wrong,
            vec!["SASL authentication", "security.password_env"],
        ),
        (
            "unknown CA",
            producer(
                &k.sasl_ssl,
                &unique("refused"),
                1,
                10,
                &scram(&k, "other-ca.pem"),
            ),
            &password,
            vec!["certificate verify failed", "security.ca_file"],
        ),
        (
            "wrong host name",
            producer(
                &k.sasl_ssl.replace("localhost", "127.0.0.1"),
                &unique("refused"),
                1,
                10,
                &scram(&k, "ca.pem"),
            ),
            &password,
            vec!["does not name the host in `brokers`"],
        ),
        (
            "no client certificate",
            producer(
                &k.mtls,
                &unique("refused"),
                1,
                10,
                &format!("protocol = \"ssl\"\nca_file = \"{}\"", k.pki("ca.pem")),
            ),
            &password,
            vec!["security.cert_file"],
        ),
    ];
    for (case, toml, pw, expect) in cases {
        let (o, took) = run(dir.path(), &toml, &[("SLUICE_TEST_KAFKA_PASSWORD", pw)]);
        let all = text(&o);
        eprintln!("{case}: exit {:?} after {took:?}", o.status.code());
        assert!(!o.status.success(), "{case}: the host started:\n{all}");
        assert!(
            took < Duration::from_secs(10),
            "{case}: took {took:?} to fail"
        );
        for e in expect {
            assert!(all.contains(e), "{case}: no {e:?} in:\n{all}");
        }
        assert_no_secret(&all, &[wrong, &password]);
    }
}

#[test]
fn the_secured_example_passes_host_check_without_its_secrets() {
    let o = Command::new(host_bin())
        .args(["check", "examples/kafka-to-es-secured.toml"])
        .current_dir(root())
        .env_remove("KAFKA_PASSWORD")
        .env_remove("ES_API_KEY")
        .output()
        .unwrap();
    assert_success(&o);
}

#[test]
fn secrets_written_in_the_pipeline_file_are_refused_without_echoing_them() {
    let dir = tempdir();
    let secret = "inline-SECRET-7d2a";
    for (table, expect_key) in [
        (
            format!("[sinks.kafka.security]\nprotocol = \"sasl_ssl\"\npassword = \"{secret}\""),
            "sinks.kafka.security.password",
        ),
        (
            format!("[sinks.kafka.properties]\n\"sasl.password\" = \"{secret}\""),
            "sinks.kafka.properties.\"sasl.password\"",
        ),
    ] {
        let toml = format!(
            "[source]\ntype = \"generate\"\ncount = 1\n[sinks.kafka]\ntype = \"kafka\"\n\
             brokers = \"localhost:1\"\ntopic = \"t\"\n{table}\n"
        );
        let path = dir.path().join("inline.toml");
        std::fs::write(&path, toml).unwrap();
        let o = Command::new(host_bin())
            .args(["check", path.to_str().unwrap()])
            .output()
            .unwrap();
        let all = text(&o);
        assert!(!o.status.success(), "accepted:\n{all}");
        assert!(all.contains(expect_key), "no {expect_key} in:\n{all}");
        assert!(all.contains("inline.toml"), "the file is not named:\n{all}");
        assert_no_secret(&all, &[secret]);
    }
}

// ---------------------------------------------------------------- Elasticsearch over TLS

/// OpenSearch (the shared one, `compose/elasticsearch.sh`) behind a TLS proxy of this test's
/// own (`compose/tls-proxy.sh`, its own ports, state and CA), stopped when dropped.
struct SecureEs {
    env: Vec<(&'static str, String)>,
    upstream: String,
    url: String,
    mtls_url: String,
    dir: PathBuf,
    _state: tempfile::TempDir,
}

impl SecureEs {
    fn start() -> Self {
        let es = script("elasticsearch.sh", "start", &[]);
        assert!(es.status.success(), "elasticsearch.sh start: {}", text(&es));
        let state = tempdir();
        let upstream = "http://127.0.0.1:9200".to_string();
        let env = vec![
            ("TLS_PROXY_PORT", free_port().to_string()),
            ("TLS_PROXY_MTLS_PORT", free_port().to_string()),
            ("ES_UPSTREAM", upstream.clone()),
            ("SLUICE_STATE", state.path().display().to_string()),
        ];
        let started = script("tls-proxy.sh", "start", &env);
        assert!(
            started.status.success(),
            "tls-proxy.sh start: {}",
            text(&started)
        );
        let printed = script_env("tls-proxy.sh", &env);
        Self {
            url: printed["ES_TLS_URL"].clone(),
            mtls_url: printed["ES_MTLS_URL"].clone(),
            dir: PathBuf::from(&printed["ES_TLS_DIR"]),
            env,
            upstream,
            _state: state,
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Deletes the indices matching `pattern` (directly, as the test's cleanup).
    fn delete(&self, pattern: &str) {
        http::json("DELETE", &format!("{}/{pattern}", self.upstream), None);
    }

    /// Documents in `index`, asked of OpenSearch directly.
    fn count(&self, index: &str) -> u64 {
        http::json("POST", &format!("{}/{index}/_refresh", self.upstream), None);
        http::json("GET", &format!("{}/{index}/_count", self.upstream), None)["count"]
            .as_u64()
            .unwrap_or(0)
    }
}

impl Drop for SecureEs {
    fn drop(&mut self) {
        script("tls-proxy.sh", "stop", &self.env);
    }
}

/// Generated tweets into `index` through an Elasticsearch sink at `url` with `settings`.
fn to_es(url: &str, index: &str, count: usize, settings: &str) -> String {
    format!(
        r#"
[pipeline]
batch_size = 100
[source]
type = "generate"
count = {count}
[source.tweets]
start_time = "{start}"
# Only ordinary tweets: this test is about the connection, not the field limit.
wide_share = 0.0
[sinks.es]
type = "elasticsearch"
url = "{url}"
index = "{index}"
[sinks.es.template]
name = "{index}"
patterns = ["{index}"]
[dead_letter]
type = "file"
path = "dead.ndjson"
"#,
        start = generate_start(),
    )
    .replace(
        "[sinks.es.template]",
        &format!("{settings}\n[sinks.es.template]"),
    )
}

#[test]
fn elasticsearch_over_tls_with_api_keys_basic_auth_and_client_certificates() {
    let es = SecureEs::start();
    let dir = tempdir();
    let (id, secret) = (es.read("api-key.id"), es.read("api-key.secret"));
    let (user, password) = (es.read("basic.user"), es.read("basic.password"));
    let encoded_key = dir.path().join("encoded-api-key");
    // The base64 form Kibana and Elastic Cloud show.
    let encoded = Command::new("base64")
        .args(["-w0"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(format!("{id}:{secret}").as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    std::fs::write(&encoded_key, &encoded.stdout).unwrap();
    let ca = es.file("pki/ca.pem");
    let cases = [
        (
            "api key id:key from the environment",
            es.url.clone(),
            format!("ca_file = \"{ca}\"\napi_key_env = \"SLUICE_TEST_ES_API_KEY\""),
        ),
        (
            "encoded api key from a file",
            es.url.clone(),
            format!(
                "ca_file = \"{ca}\"\napi_key_file = \"{}\"",
                encoded_key.display()
            ),
        ),
        (
            "basic auth, password from a file",
            es.url.clone(),
            format!(
                "ca_file = \"{ca}\"\nusername = \"{user}\"\npassword_file = \"{}\"",
                es.file("basic.password")
            ),
        ),
        (
            "client certificate",
            es.mtls_url.clone(),
            format!(
                "ca_file = \"{ca}\"\ncert_file = \"{}\"\nkey_file = \"{}\"",
                es.file("pki/client.pem"),
                es.file("pki/client.key")
            ),
        ),
    ];
    let api_key = format!("{id}:{secret}");
    for (case, url, settings) in cases {
        let index = unique("secure-es");
        let (o, _) = run(
            dir.path(),
            &to_es(&url, &index, 150, &settings),
            &[("SLUICE_TEST_ES_API_KEY", &api_key)],
        );
        assert!(o.status.success(), "{case}:\n{}", text(&o));
        assert_eq!(es.count(&index), 150, "{case}");
        assert_no_secret(&text(&o), &[&secret, &password, &api_key]);
        es.delete(&index);
    }
}

#[test]
fn elasticsearch_refusals_are_clear_errors_at_start() {
    let es = SecureEs::start();
    let dir = tempdir();
    let ca = es.file("pki/ca.pem");
    let wrong = "wrong-API-KEY-9b3e:c0ffee";
    let cases: Vec<(&str, String, String, Vec<&str>)> = vec![
        (
            "wrong API key",
            es.url.clone(),
            format!("ca_file = \"{ca}\"\napi_key_env = \"SLUICE_TEST_ES_API_KEY\""),
            vec!["HTTP 401", "`api_key_env`"],
        ),
        (
            "unknown CA",
            es.url.clone(),
            format!(
                "ca_file = \"{}\"\napi_key_env = \"SLUICE_TEST_ES_API_KEY\"",
                es.file("pki/other-ca.pem")
            ),
            vec!["UnknownIssuer", "`ca_file`"],
        ),
        (
            "wrong host name",
            es.url.replace("localhost", "127.0.0.1"),
            format!("ca_file = \"{ca}\"\napi_key_env = \"SLUICE_TEST_ES_API_KEY\""),
            vec!["does not name the host in `url`"],
        ),
        (
            "missing CA file",
            es.url.clone(),
            "ca_file = \"/nonexistent/ca.pem\"".to_string(),
            vec!["ca_file", "/nonexistent/ca.pem"],
        ),
    ];
    for (case, url, settings, expect) in cases {
        let (o, took) = run(
            dir.path(),
            &to_es(&url, &unique("refused-es"), 10, &settings),
            &[("SLUICE_TEST_ES_API_KEY", wrong)],
        );
        let all = text(&o);
        eprintln!("{case}: exit {:?} after {took:?}", o.status.code());
        assert!(!o.status.success(), "{case}: the host started:\n{all}");
        assert!(took < Duration::from_secs(10), "{case}: took {took:?}");
        for e in expect {
            assert!(all.contains(e), "{case}: no {e:?} in:\n{all}");
        }
        assert_no_secret(&all, &[wrong, "c0ffee"]);
    }
}

#[test]
fn the_secured_example_carries_the_seed_hop_from_kafka_to_elasticsearch() {
    let (k, es) = (SecureKafka::get(), SecureEs::start());
    let password = k.password();
    let api_key = format!("{}:{}", es.read("api-key.id"), es.read("api-key.secret"));
    let dir = tempdir();
    let topic = unique("secure-seed");
    let n = 400;
    let (o, _) = run(
        dir.path(),
        &producer(&k.sasl_ssl, &topic, 46, n, &scram(&k, "ca.pem")),
        &[("SLUICE_TEST_KAFKA_PASSWORD", &password)],
    );
    assert_success(&o);

    // The example as shipped; only where things are comes from the environment.
    let prefix = unique("secure-seed");
    let dead = dir.path().join("dead.ndjson");
    let log = dir.path().join("host.log");
    let env = [
        ("KAFKA_PASSWORD", password.clone()),
        ("ES_API_KEY", api_key.clone()),
        ("SLUICE_SOURCE__BROKERS", k.sasl_ssl.clone()),
        ("SLUICE_SOURCE__TOPICS", format!("[\"{topic}\"]")),
        ("SLUICE_SOURCE__GROUP_ID", unique("secure-seed-group")),
        ("SLUICE_SOURCE__SECURITY__CA_FILE", k.pki("ca.pem")),
        ("SLUICE_SINKS__ES__URL", es.url.clone()),
        ("SLUICE_SINKS__ES__CA_FILE", es.file("pki/ca.pem")),
        (
            "SLUICE_SINKS__ES__INDEX",
            format!("{prefix}-%{{+YYYYMMdd}}"),
        ),
        ("SLUICE_SINKS__ES__TEMPLATE__NAME", prefix.clone()),
        (
            "SLUICE_SINKS__ES__TEMPLATE__PATTERNS",
            format!("[\"{prefix}-*\"]"),
        ),
        ("SLUICE_DEAD_LETTER__PATH", dead.display().to_string()),
    ];
    let mut host = KillOnDrop(Some(
        host_run(&root().join("examples/kafka-to-es-secured.toml"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "debug")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    ));
    let want = generated_ids(46, n);
    let dead_ids = || -> BTreeSet<String> {
        std::fs::read_to_string(&dead)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|d| d["key"].as_str().map(str::to_string))
            .collect()
    };
    let indexed = || -> BTreeSet<String> {
        http::json(
            "POST",
            &format!("{}/{prefix}-*/_refresh", es.upstream),
            None,
        );
        let hits = http::json(
            "GET",
            &format!(
                "{}/{prefix}-*/_search?size=10000&_source=false",
                es.upstream
            ),
            None,
        );
        hits["hits"]["hits"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter_map(|d| d["_id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_until(
        "every tweet indexed or dead-lettered",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || indexed().len() + dead_ids().len() >= n,
    );
    let status = interrupt(host.0.as_mut().unwrap(), Duration::from_secs(30));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{log}");
    let got: BTreeSet<String> = indexed().union(&dead_ids()).cloned().collect();
    assert_eq!(got, want);
    assert!(indexed().len() > n * 9 / 10, "most tweets are indexed");
    assert_no_secret(&log, &[&password, &api_key, &es.read("api-key.secret")]);
    es.delete(&format!("{prefix}-*"));
}
