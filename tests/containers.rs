//! The integration suite on containers (testcontainers): every test starts the services it needs
//! as containers with host networking, on free ports, drives the real `host` binary against
//! them, and removes them at the end.
//!
//! Images come from `SLUICE_IMAGE_*` (see [`Service`]); the defaults are the upstream images. On
//! a machine without a registry, `bash compose/docker.sh start && bash compose/docker.sh build`
//! builds local equivalents and `bash compose/docker.sh env` prints the variables that select them.
//!
//! Without a Docker engine every test prints a SKIPPED banner and passes, unless
//! `SLUICE_REQUIRE_DOCKER=1` (CI), which makes it fail. The tests run one at a time (each holds
//! a lock while its containers run): the services are big for a 2-core machine.

#[path = "containers/chaos.rs"]
mod chaos;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::kafka::{Msg, messages_in, topic_end};
use common::{
    free_port, generate_options, generate_start, host_run, http, root, tempdir, tweet_id,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};
use testcontainers::core::WaitFor;
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, Image, ImageExt};
use tweetgen::{GenerateOptions, TweetGenerator};

// ---------------------------------------------------------------- Docker, or a loud skip

const REQUIRE_DOCKER: &str = "SLUICE_REQUIRE_DOCKER";

/// Takes the suite's lock and checks the engine. `None`: no engine, the test is skipped (after a
/// banner on stderr); with `SLUICE_REQUIRE_DOCKER=1` it panics instead.
fn docker(test: &str) -> Option<MutexGuard<'static, ()>> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Err(why) = docker_ping() else {
        return Some(guard);
    };
    let bar = "!".repeat(96);
    let required = std::env::var(REQUIRE_DOCKER).is_ok_and(|v| v == "1");
    let verdict = if required { "FAILED" } else { "SKIPPED" };
    let banner = format!(
        "\n{bar}\n!! {verdict} containers::{test}: no Docker engine ({why}).\n\
         !! Run `bash compose/docker.sh start && bash compose/docker.sh build` and export the\n\
         !! output of `bash compose/docker.sh env`. {REQUIRE_DOCKER}=1 turns this skip into a failure.\n{bar}\n"
    );
    assert!(!required, "{banner}");
    // Straight to the process's stderr: the test harness captures eprintln! of passing tests.
    let _ = std::io::stderr().write_all(banner.as_bytes());
    None
}

/// `GET /_ping` on the engine that testcontainers will use; then removes stopped containers
/// that earlier runs of this suite left behind (those carry the label `sluice.test`).
fn docker_ping() -> Result<(), String> {
    let answer = docker_api("GET", "/_ping")?;
    if !answer.ends_with("OK") {
        return Err(format!("the engine answered {answer:?}"));
    }
    docker_api(
        "POST",
        "/containers/prune?filters=%7B%22label%22%3A%5B%22sluice.test%22%5D%7D",
    )?;
    Ok(())
}

/// One request to the engine's API (`DOCKER_HOST`, else the default socket): the raw answer.
fn docker_api(method: &str, path: &str) -> Result<String, String> {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let req = format!("{method} {path} HTTP/1.0\r\nHost: docker\r\n\r\n");
    let mut answer = String::new();
    let io = |e: std::io::Error| format!("{host}: {e}");
    let mut stream: Box<dyn ReadWrite> = if let Some(path) = host.strip_prefix("unix://") {
        Box::new(std::os::unix::net::UnixStream::connect(path).map_err(io)?)
    } else if let Some(addr) = host.strip_prefix("tcp://") {
        Box::new(std::net::TcpStream::connect(addr).map_err(io)?)
    } else {
        return Err(format!("unsupported DOCKER_HOST {host}"));
    };
    stream.write_all(req.as_bytes()).map_err(io)?;
    stream.read_to_string(&mut answer).map_err(io)?;
    Ok(answer)
}

/// `GET /containers/ID/json`: what the engine knows of a container (state, exit code, health).
fn inspect(id: &str) -> Value {
    let answer = docker_api("GET", &format!("/containers/{id}/json")).unwrap();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("inspecting {id}: {e}: {answer}"))
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

// ---------------------------------------------------------------- the services

/// A service image: `SLUICE_IMAGE_<var>` or the upstream default.
#[derive(Clone, Copy)]
enum Service {
    Kafka,
    Elasticsearch,
    FakeGcs,
    BigQuery,
    TwitterSim,
    Host,
}

impl Service {
    fn image(self) -> GenericImage {
        let (var, default) = match self {
            Service::Kafka => ("SLUICE_IMAGE_KAFKA", "apache/kafka:4.4.0"),
            Service::Elasticsearch => (
                "SLUICE_IMAGE_ELASTICSEARCH",
                "opensearchproject/opensearch:2.19.6",
            ),
            Service::FakeGcs => ("SLUICE_IMAGE_FAKE_GCS", "fsouza/fake-gcs-server:1.54.0"),
            // bqemulator and the simulator have no upstream image: compose/docker.sh builds them.
            Service::BigQuery => ("SLUICE_IMAGE_BIGQUERY", "sluice-local/bqemulator:1.4.0"),
            Service::TwitterSim => (
                "SLUICE_IMAGE_TWITTER_SIM",
                "sluice-local/twitter-sim:latest",
            ),
            Service::Host => ("SLUICE_IMAGE_HOST", "sluice-local/host:latest"),
        };
        let name = std::env::var(var).unwrap_or_else(|_| default.into());
        let (repo, tag) = match name.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
            _ => (name.clone(), "latest".into()),
        };
        GenericImage::new(repo, tag)
    }
}

/// Starts a container; a failure names the image and how to get it.
fn start(
    what: &str,
    req: testcontainers::ContainerRequest<GenericImage>,
) -> Container<GenericImage> {
    let image = format!("{}:{}", req.image().name(), req.image().tag());
    req.with_network("host")
        .with_label("sluice.test", "containers")
        .with_startup_timeout(Duration::from_secs(180))
        .start()
        .unwrap_or_else(|e| {
            panic!(
                "starting {what} from {image}: {e}\n(no such image? `bash compose/docker.sh build` \
                 builds local ones; export `bash compose/docker.sh env` to use them)"
            )
        })
}

/// The last lines a container printed, for failure messages.
fn logs(c: &Container<GenericImage>) -> String {
    let mut all = c.stdout_to_vec().unwrap_or_default();
    all.extend(c.stderr_to_vec().unwrap_or_default());
    let text = String::from_utf8_lossy(&all);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Polls `ready` every 250 ms until it holds; panics with `what` after `limit`.
fn wait_until(what: &str, limit: Duration, ready: impl FnMut() -> bool) {
    common::wait_until(what, limit, Duration::from_millis(250), ready);
}

/// Apache Kafka (KRaft, one node), configured the way the official image is: `KAFKA_*` variables.
struct Kafka {
    c: Container<GenericImage>,
    bootstrap: String,
}

impl Kafka {
    fn start() -> Kafka {
        let (port, controller) = (free_port(), free_port());
        let env = [
            ("KAFKA_NODE_ID", "1".to_string()),
            ("KAFKA_PROCESS_ROLES", "broker,controller".into()),
            (
                "KAFKA_LISTENERS",
                format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}"),
            ),
            (
                "KAFKA_ADVERTISED_LISTENERS",
                format!("PLAINTEXT://127.0.0.1:{port}"),
            ),
            ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER".into()),
            ("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT".into()),
            (
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".into(),
            ),
            (
                "KAFKA_CONTROLLER_QUORUM_VOTERS",
                format!("1@127.0.0.1:{controller}"),
            ),
            ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1".into()),
            ("KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS", "3".into()),
            ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1".into()),
            ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1".into()),
            ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0".into()),
            ("KAFKA_NUM_PARTITIONS", "3".into()),
            ("KAFKA_HEAP_OPTS", "-Xms256m -Xmx512m".into()),
        ];
        let mut req = Service::Kafka
            .image()
            .with_wait_for(WaitFor::message_on_stdout("Kafka Server started"))
            .with_env_var("CLUSTER_ID", "5L6g3nShT-eMCtK--X86sw");
        for (k, v) in env {
            req = req.with_env_var(k, v);
        }
        let kafka = Kafka {
            c: start("Kafka", req),
            bootstrap: format!("127.0.0.1:{port}"),
        };
        kafka.wait_ready();
        kafka
    }

    /// Until the broker answers a metadata request.
    fn wait_ready(&self) {
        let consumer: BaseConsumer = reader_config(&self.bootstrap).create().unwrap();
        wait_until(
            &format!("no Kafka metadata from {}", self.bootstrap),
            Duration::from_secs(120),
            || {
                consumer
                    .fetch_metadata(None, Duration::from_secs(2))
                    .is_ok_and(|m| !m.brokers().is_empty())
            },
        );
    }

    /// Stops the broker container (SIGTERM, controlled shutdown), waits `down`, starts it again.
    fn restart(&self, down: Duration) {
        self.stop();
        std::thread::sleep(down);
        self.start_again();
    }

    fn stop(&self) {
        self.c.stop_with_timeout(Some(20)).unwrap();
    }

    fn start_again(&self) {
        self.c.start().unwrap();
        self.wait_ready();
    }
}

/// The Elasticsearch-API engine, configured the way opensearchproject/opensearch is: settings as
/// variables with a dot, security off.
struct Elasticsearch {
    c: Container<GenericImage>,
    url: String,
}

impl Elasticsearch {
    fn start() -> Elasticsearch {
        let (port, transport) = (free_port(), free_port());
        let req = Service::Elasticsearch
            .image()
            .with_env_var("discovery.type", "single-node")
            .with_env_var("network.host", "127.0.0.1")
            .with_env_var("http.port", port.to_string())
            .with_env_var("transport.port", transport.to_string())
            .with_env_var("DISABLE_SECURITY_PLUGIN", "true")
            .with_env_var("DISABLE_INSTALL_DEMO_CONFIG", "true")
            .with_env_var("OPENSEARCH_JAVA_OPTS", "-Xms512m -Xmx512m");
        let es = Elasticsearch {
            c: start("Elasticsearch", req),
            url: format!("http://127.0.0.1:{port}"),
        };
        es.wait_ready();
        es
    }

    fn healthy(&self) -> bool {
        http::get_status(&format!(
            "{}/_cluster/health?wait_for_status=yellow&timeout=1s",
            self.url
        )) == Some(200)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while !self.healthy() {
            assert!(
                Instant::now() < deadline && self.c.is_running().unwrap_or(false),
                "no healthy cluster at {}; container log:\n{}",
                self.url,
                logs(&self.c)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Every document of `pattern` (up to 10,000): `_id` -> (`_index`, `_source`).
    fn documents(&self, pattern: &str) -> BTreeMap<String, (String, Value)> {
        http::json("POST", &format!("{}/{pattern}/_refresh", self.url), None);
        let hits = http::json(
            "POST",
            &format!("{}/{pattern}/_search", self.url),
            Some(&json!({"size": 10000, "query": {"match_all": {}}})),
        );
        assert!(
            hits["hits"]["total"]["value"].as_u64().unwrap_or(0) < 10_000,
            "too many documents for one page"
        );
        hits["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                let id = h["_id"].as_str().unwrap().to_string();
                let index = h["_index"].as_str().unwrap().to_string();
                (id, (index, h["_source"].clone()))
            })
            .collect()
    }

    /// Stops the container (SIGTERM), as an outage.
    fn stop(&self) {
        self.c.stop_with_timeout(Some(20)).unwrap();
    }

    fn start_again(&self) {
        self.c.start().unwrap();
        self.wait_ready();
    }

    fn count(&self, pattern: &str) -> u64 {
        http::json("POST", &format!("{}/{pattern}/_refresh", self.url), None);
        http::json("GET", &format!("{}/{pattern}/_count", self.url), None)["count"]
            .as_u64()
            .unwrap()
    }
}

const SIM_TOKEN: &str = "sim-token-containers";
/// The one non-JSON line the simulator sends with `--garbage-after`.
const SIM_GARBAGE: &str = "<html>this line is not JSON";
const SIM_SEED: u64 = 42;

/// The Twitter API simulator (tests/twitter-sim) as a container.
struct TwitterSim {
    _c: Container<GenericImage>,
    url: String,
}

impl TwitterSim {
    /// `total` tweets at `rate` per second; the non-JSON line after `garbage_after` tweets.
    fn start(total: u64, rate: f64, garbage_after: u64) -> TwitterSim {
        Self::launch(
            total,
            rate,
            &["--garbage-after".into(), garbage_after.to_string()],
        )
    }

    /// Realtime mode: `rate` candidates a second happen whether or not anyone reads, until
    /// `total` of them have matched the rules; a reader that is away loses them unless it asks
    /// for backfill.
    fn realtime(total: u64, rate: f64) -> TwitterSim {
        Self::launch(total, rate, &["--realtime".into()])
    }

    fn launch(total: u64, rate: f64, extra: &[String]) -> TwitterSim {
        let port = free_port();
        let mut args = vec![
            "--port".to_string(),
            port.to_string(),
            "--token".into(),
            SIM_TOKEN.into(),
            "--seed".into(),
            SIM_SEED.to_string(),
            "--total".into(),
            total.to_string(),
            "--rate".into(),
            rate.to_string(),
            "--keepalive-ms".into(),
            "300".into(),
            // A reconnect after a kill -9 may meet the old connection: no minute-long 429 floor.
            "--rate-limit-reset-secs".into(),
            "0".into(),
        ];
        args.extend_from_slice(extra);
        let req = Service::TwitterSim
            .image()
            .with_wait_for(WaitFor::message_on_stdout("listening on"))
            .with_cmd(args);
        TwitterSim {
            _c: start("the Twitter API simulator", req),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn stats(&self) -> Value {
        http::json("GET", &format!("{}/_sim/stats", self.url), None)
    }

    fn sent(&self) -> u64 {
        self.stats()["tweets_sent"].as_u64().unwrap()
    }

    /// Realtime mode: the ids of the matching tweets that have happened, and whether all have.
    fn happened(&self) -> (Vec<String>, bool) {
        let h = http::json("GET", &format!("{}/_sim/happened", self.url), None);
        let ids = h["ids"].as_array().unwrap();
        let ids = ids.iter().map(|i| i.as_str().unwrap().to_string());
        (ids.collect(), h["all_happened"].as_bool().unwrap())
    }
}

/// The tweets the simulator sends for the rules `bts` and `army`, in order: (id, mentions bts).
fn sim_sequence(n: u64) -> Vec<(String, bool)> {
    (0..)
        .map(|i| twitter_sim::Tweet::new(SIM_SEED, i))
        .filter_map(|t| {
            let text = t.text.to_lowercase();
            (text.contains("bts") || text.contains("army"))
                .then(|| (t.id.to_string(), text.contains("bts")))
        })
        .take(n as usize)
        .collect()
}

/// fake-gcs-server and the BigQuery emulator on one object root (a temp dir mounted as
/// fake-gcs-server's `/storage` and the emulator's `/gcs`), so a load job reads `gs://` URIs of
/// what was uploaded.
struct Emulators {
    gcs_c: Container<GenericImage>,
    bq_c: Container<GenericImage>,
    _root: tempfile::TempDir,
    _bq_data: tempfile::TempDir,
    gcs: String,
    /// `.../bigquery/v2`
    bq: String,
}

const BQ_PROJECT: &str = "test-proj";

impl Emulators {
    /// `persistent`: the BigQuery emulator keeps its catalog, jobs and tables on disk, so they
    /// outlive a restart of its container.
    fn start(persistent: bool) -> Emulators {
        let root = tempdir();
        let bq_data = tempdir();
        let (gcs_port, bq_port, grpc_port) = (free_port(), free_port(), free_port());
        let mount_at = |dir: &Path, target: &str| {
            testcontainers::core::Mount::bind_mount(dir.display().to_string(), target)
        };
        let mount = |target: &str| mount_at(root.path(), target);
        let args = |fixed: &[&str], tail: Vec<String>| {
            fixed
                .iter()
                .map(|a| a.to_string())
                .chain(tail)
                .collect::<Vec<_>>()
        };
        let gcs = start(
            "fake-gcs-server",
            Service::FakeGcs
                .image()
                .with_wait_for(WaitFor::message_on_stderr("server started"))
                .with_cmd(args(
                    &[
                        "-scheme",
                        "http",
                        "-host",
                        "127.0.0.1",
                        "-backend",
                        "filesystem",
                        "-filesystem-root",
                        "/storage",
                        "-port",
                    ],
                    vec![gcs_port.to_string()],
                ))
                .with_mount(mount("/storage")),
        );
        let bq = start(
            "the BigQuery emulator",
            Service::BigQuery
                .image()
                .with_cmd(args(
                    &[
                        "start",
                        "--rest-host",
                        "127.0.0.1",
                        "--grpc-host",
                        "127.0.0.1",
                        "--project",
                        BQ_PROJECT,
                        "--rest-port",
                    ],
                    [
                        bq_port.to_string(),
                        "--grpc-port".into(),
                        grpc_port.to_string(),
                    ]
                    .into_iter()
                    .chain(if persistent {
                        ["--persistent", "--data-dir", "/data"]
                            .map(String::from)
                            .to_vec()
                    } else {
                        vec!["--ephemeral".into()]
                    })
                    .collect(),
                ))
                .with_env_var("BQEMU_GCS_LOCAL_ROOT", "/gcs")
                .with_mount(mount("/gcs"))
                .with_mount(mount_at(bq_data.path(), "/data")),
        );
        let e = Emulators {
            gcs: format!("http://127.0.0.1:{gcs_port}"),
            bq: format!("http://127.0.0.1:{bq_port}/bigquery/v2"),
            gcs_c: gcs,
            bq_c: bq,
            _root: root,
            _bq_data: bq_data,
        };
        e.wait_ready();
        e
    }

    /// Until the BigQuery emulator answers.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while http::get_status(&format!("{}/datasets", self.project_url())) != Some(200) {
            assert!(
                Instant::now() < deadline && self.bq_c.is_running().unwrap_or(false),
                "the BigQuery emulator did not answer:\n{}",
                logs(&self.bq_c)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn project_url(&self) -> String {
        format!("{}/projects/{BQ_PROJECT}", self.bq)
    }

    /// The rows of a standard-SQL query, each as its list of values.
    fn query(&self, sql: &str) -> Vec<Vec<Value>> {
        let q = http::json(
            "POST",
            &format!("{}/queries", self.project_url()),
            Some(&json!({"useLegacySql": false, "query": sql, "maxResults": 100_000})),
        );
        let rows: Vec<Vec<Value>> = q["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        r["f"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|c| c["v"].clone())
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let total: usize = q["totalRows"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        assert_eq!(rows.len(), total, "a query answer in pages: {sql}");
        rows
    }
}

/// A temp dir for pipelines and host logs, kept (and named on stderr) when the test fails.
struct WorkDir(Option<tempfile::TempDir>);

impl WorkDir {
    fn new() -> WorkDir {
        WorkDir(Some(tempdir()))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let kept = self.0.take().unwrap().keep();
            let _ = writeln!(std::io::stderr(), "host logs kept in {}", kept.display());
        }
    }
}

// ---------------------------------------------------------------- the host

/// A host process (`host run PIPELINE --json-summary --quiet`), killed when dropped.
struct Host {
    child: Option<Child>,
    pipeline: PathBuf,
    log: PathBuf,
    runs: usize,
}

impl Host {
    fn spawn(dir: &Path, name: &str, toml: &str) -> Host {
        let pipeline = dir.join(format!("{name}.toml"));
        std::fs::write(&pipeline, toml).unwrap();
        let mut h = Host {
            child: None,
            pipeline,
            log: dir.join(name),
            runs: 0,
        };
        h.restart();
        h
    }

    fn command(pipeline: &Path) -> Command {
        let mut c = host_run(pipeline);
        c.env("SLUICE_TEST_SIM_TOKEN", SIM_TOKEN);
        c
    }

    /// Runs a pipeline that ends by itself; returns its summary.
    fn run(dir: &Path, name: &str, toml: &str) -> Value {
        let pipeline = dir.join(format!("{name}.toml"));
        std::fs::write(&pipeline, toml).unwrap();
        let o = Self::command(&pipeline).output().unwrap();
        assert!(
            o.status.success(),
            "host {name} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// (Re)starts the process; its stderr goes to `<log>.<run>.log`.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.log_path(self.runs)).unwrap();
        self.runs += 1;
        self.child = Some(
            Self::command(&self.pipeline)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    fn log_path(&self, run: usize) -> PathBuf {
        self.log.with_extension(format!("{run}.log"))
    }

    /// kill -9.
    fn kill(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// SIGINT: the host drains what is in flight, commits and exits 0.
    fn stop(&mut self) {
        self.stop_with("INT");
    }

    /// `signal` (`INT`, `TERM`): the host drains what is in flight, commits and exits 0.
    fn stop_with(&mut self, signal: &str) {
        let mut c = self.child.take().expect("running");
        let status = common::stop_with(&mut c, signal, Duration::from_secs(60));
        assert!(
            status.success(),
            "host exited with {status}: {}",
            self.tail()
        );
    }

    /// Panics with the log when the process has exited.
    fn assert_alive(&mut self) {
        if let Some(c) = &mut self.child
            && let Some(status) = c.try_wait().unwrap()
        {
            panic!("host exited with {status}: {}", self.tail());
        }
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path(self.runs - 1)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn plugin_path(name: &str) -> String {
    root()
        .join("guest-plugins/dist")
        .join(format!("{name}.wasm"))
        .display()
        .to_string()
}

/// The seed's first hop: the Twitter stream (rules `bts`, `army`) -> keyword-filter `bts` ->
/// topic `twitter`; dead letters to `twitter-dead-letter`.
fn twitter_to_kafka_toml(sim: &TwitterSim, brokers: &str) -> String {
    twitter_to_kafka_toml_with(sim, brokers, "")
}

/// [`twitter_to_kafka_toml`] with `source` added to the `[source]` table (keys, then subtables).
fn twitter_to_kafka_toml_with(sim: &TwitterSim, brokers: &str, source: &str) -> String {
    format!(
        r#"
[pipeline]
name = "twitter-to-kafka"
chain = ["bts"]
batch_size = 100
batch_timeout = "100ms"
workers = 2
[source]
type = "twitter"
base_url = "{sim}"
keywords = ["bts", "army"]
bearer_token_env = "SLUICE_TEST_SIM_TOKEN"
backoff_scale = 0.02
stall_timeout = "60s"
{source}
[transforms.bts]
plugin = "{bts}"
config = {{ keywords = ["bts"] }}
[sinks.kafka]
type = "kafka"
brokers = "{brokers}"
topic = "twitter"
acks = "all"
compression = "zstd"
[sinks.kafka.create_topic]
partitions = 3
[dead_letter]
type = "kafka"
brokers = "{brokers}"
topic = "twitter-dead-letter"
"#,
        sim = sim.url,
        bts = plugin_path("keyword_filter"),
    )
}

/// The part the seed's consumer hops share: pipeline `twitter-log-to-NAME`, chain [prune,
/// enrich], topic `twitter` as group `twitter_log_to_NAME` (a tweet the first hop wrote twice
/// passes once), dead letters to `twitter-dead-letter`.
fn consumer_head(brokers: &str, name: &str) -> String {
    format!(
        r#"
[pipeline]
name = "twitter-log-to-{name}"
chain = ["prune", "enrich"]
batch_size = 200
batch_timeout = "100ms"
[source]
type = "kafka"
brokers = "{brokers}"
topics = ["twitter"]
group_id = "twitter_log_to_{name}"
start = "earliest"
dedup_window = 20000
[source.properties]
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500
[dead_letter]
type = "kafka"
brokers = "{brokers}"
topic = "twitter-dead-letter"
"#
    )
}

/// Fields the seed's second hop prunes from the simulator's v2 tweets.
const PRUNED: [&str; 3] = [
    "matching_rules",
    "data.public_metrics",
    "data.edit_history_tweet_ids",
];

/// The seed's second hop: topic `twitter` (group `twitter_log_to_es`) -> prune -> enrich ->
/// daily indices `twitter-YYYYMMdd`; dead letters to `twitter-dead-letter`.
fn kafka_to_es_toml(brokers: &str, es: &str) -> String {
    let name = "es";
    format!(
        r#"{head}
[transforms.prune]
plugin = "{prune}"
config = {{ deny = {pruned:?}, drop_nulls = true, max_fields = 900 }}
[transforms.enrich]
plugin = "{enrich}"
config = {{ keywords = ["bts"] }}
[sinks.es]
type = "elasticsearch"
url = "{es}"
index = "twitter-%{{+YYYYMMdd}}"
id_field = "id_str,data.id"
bulk_max_docs = 200
retry_initial = "100ms"
retry_max = "2s"
[sinks.es.template]
name = "sluice-twitter"
patterns = ["twitter-*"]
replicas = 0
total_fields_limit = 2000
"#,
        head = consumer_head(brokers, name),
        prune = plugin_path("field_prune"),
        enrich = plugin_path("enrich"),
        pruned = PRUNED,
    )
}

/// The seed's third hop: topic `twitter` (group `twitter_log_to_gcs`) -> prune (allow-list) ->
/// enrich -> gzip NDJSON objects in GCS, each loaded into BigQuery `twitter.tweets` (schema
/// derived by the host); dead letters to `twitter-dead-letter`.
fn kafka_to_gcs_toml(brokers: &str, lake: &Emulators) -> String {
    let name = "gcs";
    format!(
        r#"{head}
[transforms.prune]
plugin = "{prune}"
config = {{ allow = {allowed:?} }}
[transforms.enrich]
plugin = "{enrich}"
config = {{ keywords = ["bts"] }}
[sinks.lake]
type = "gcs"
endpoint = "{gcs}"
bucket = "twitter-archive"
prefix = "twitter/"
create_bucket = true
bigquery_names = true
max_object_bytes = "256KB"
max_object_age = "2s"
[sinks.lake.bigquery]
endpoint = "{bq}"
project = "{BQ_PROJECT}"
dataset = "twitter"
table = "tweets"
partition_by_day = "_timestamp"
"#,
        head = consumer_head(brokers, name),
        prune = plugin_path("field_prune"),
        enrich = plugin_path("enrich"),
        allowed = GCS_ALLOWED,
        gcs = lake.gcs,
        bq = lake.bq,
    )
}

/// What the GCS hop keeps of a tweet (before enrich adds `@timestamp` and `sluice`).
const GCS_ALLOWED: [&str; 5] = [
    "data.id",
    "data.text",
    "data.created_at",
    "data.author_id",
    "data.lang",
];

// ---------------------------------------------------------------- Kafka reads

fn reader_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", "containers-reader")
        .set("enable.auto.commit", "false");
    c
}

fn ids_of(messages: &[Msg]) -> Vec<String> {
    messages
        .iter()
        .map(|(_, v, _)| tweet_id(&serde_json::from_slice(v).expect("JSON")).expect("an id"))
        .collect()
}

/// `got` == `want`, or a panic naming how many are missing or unexpected, with a few of each.
fn assert_same_ids(got: &BTreeSet<String>, want: &BTreeSet<String>, what: &str) {
    let missing: Vec<&String> = want.difference(got).collect();
    let extra: Vec<&String> = got.difference(want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} ids missing (e.g. {:?}), {} unexpected (e.g. {:?})",
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)]
    );
}

/// `YYYYMMdd` of an RFC 3339 time.
fn ymd(rfc3339: &str) -> String {
    rfc3339[..10].replace('-', "")
}

// ---------------------------------------------------------------- tests

#[test]
fn kafka_round_trip_through_the_host() {
    let Some(_lock) = docker("kafka_round_trip_through_the_host") else {
        return;
    };
    let kafka = Kafka::start();
    let dir = tempdir();
    let n = 2000;
    let seed = 5;
    let produced = Host::run(
        dir.path(),
        "produce",
        &common::kafka::producer_toml(&kafka.bootstrap, "roundtrip", seed, n, 3, ""),
    );
    assert_eq!(produced["records_out"], n);

    let out = dir.path().join("out.ndjson");
    let mut consumer = Host::spawn(
        dir.path(),
        "consume",
        &format!(
            r#"
[pipeline]
chain = ["enrich"]
batch_size = 100
batch_timeout = "50ms"
[source]
type = "kafka"
brokers = "{b}"
topics = ["roundtrip"]
group_id = "roundtrip"
start = "earliest"
[transforms.enrich]
plugin = "{enrich}"
[sinks.out]
type = "file"
path = "{out}"
[dead_letter]
type = "file"
path = "{out}.dead"
"#,
            b = kafka.bootstrap,
            enrich = plugin_path("enrich"),
            out = out.display(),
        ),
    );
    let lines = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_until(
        "records missing in the sink",
        Duration::from_secs(120),
        || {
            consumer.assert_alive();
            lines() >= n
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    consumer.stop();

    let mut g = TweetGenerator::new(&generate_options(seed));
    let mut buf = Vec::new();
    let want: BTreeSet<String> = (0..n)
        .map(|_| g.next_into(&mut buf).id.to_string())
        .collect();
    let text = std::fs::read_to_string(&out).unwrap();
    let docs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), n, "exactly once without faults");
    assert_same_ids(
        &docs.iter().filter_map(tweet_id).collect(),
        &want,
        "the file",
    );
    assert!(docs.iter().all(|d| d["@timestamp"].is_string()), "enriched");
}

#[test]
fn elasticsearch_sink_writes_daily_indices() {
    let Some(_lock) = docker("elasticsearch_sink_writes_daily_indices") else {
        return;
    };
    let es = Elasticsearch::start();
    let dir = tempdir();
    let (n, seed) = (1500, 9);
    let summary = Host::run(
        dir.path(),
        "to-es",
        &format!(
            r#"
[pipeline]
chain = ["enrich"]
batch_size = 300
[source]
type = "generate"
count = {n}
[source.tweets]
seed = {seed}
start_time = "{start}"
wide_share = 0.0
interval_ms = 120000
[transforms.enrich]
plugin = "{enrich}"
[sinks.es]
type = "elasticsearch"
url = "{url}"
index = "tweets-%{{+YYYYMMdd}}"
[sinks.es.template]
name = "tweets"
patterns = ["tweets-*"]
replicas = 0
[dead_letter]
type = "file"
path = "{dead}"
"#,
            enrich = plugin_path("enrich"),
            url = es.url,
            dead = dir.path().join("dead.ndjson").display(),
            start = generate_start(),
        ),
    );
    assert_eq!(summary["records_out"], n, "{summary}");
    assert_eq!(summary["dead_lettered"], 0, "{summary}");

    let mut g = TweetGenerator::new(&GenerateOptions {
        wide_share: 0.0,
        interval_ms: 120_000,
        ..generate_options(seed)
    });
    let mut buf = Vec::new();
    let want: BTreeSet<String> = (0..n)
        .map(|_| g.next_into(&mut buf).id.to_string())
        .collect();
    let docs = es.documents("tweets-*");
    assert_eq!(es.count("tweets-*"), n as u64);
    assert_same_ids(&docs.keys().cloned().collect(), &want, "Elasticsearch");
    let mut days = BTreeSet::new();
    for (id, (index, doc)) in &docs {
        let ts = doc["@timestamp"].as_str().expect("@timestamp");
        assert_eq!(index, &format!("tweets-{}", ymd(ts)), "{id}");
        days.insert(index.clone());
    }
    assert!(
        days.len() >= 2,
        "2 minutes apart, 1500 tweets span days: {days:?}"
    );
    let template = http::json("GET", &format!("{}/_index_template/tweets", es.url), None);
    assert_eq!(
        template["index_templates"][0]["index_template"]["index_patterns"],
        json!(["tweets-*"])
    );
}

#[test]
fn twitter_sim_to_kafka_through_the_host() {
    let Some(_lock) = docker("twitter_sim_to_kafka_through_the_host") else {
        return;
    };
    let kafka = Kafka::start();
    let total = 300;
    let sim = TwitterSim::start(total, 0.0, 100);
    let dir = tempdir();
    let mut host = Host::spawn(
        dir.path(),
        "twitter-to-kafka",
        &twitter_to_kafka_toml(&sim, &kafka.bootstrap),
    );
    let seq = sim_sequence(total);
    let want: Vec<String> = seq.iter().filter(|t| t.1).map(|t| t.0.clone()).collect();
    assert!(want.len() > 50 && want.len() < seq.len(), "a mix");
    wait_until("tweets missing in Kafka", Duration::from_secs(90), || {
        host.assert_alive();
        messages_in(&kafka.bootstrap, "twitter").len() >= want.len()
            && !messages_in(&kafka.bootstrap, "twitter-dead-letter").is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    host.stop();
    assert_eq!(sim.stats()["tweets_sent"], total);

    let messages = messages_in(&kafka.bootstrap, "twitter");
    let got = ids_of(&messages);
    assert_eq!(got.len(), want.len(), "exactly once");
    assert_eq!(
        got.iter().collect::<BTreeSet<_>>(),
        want.iter().collect::<BTreeSet<_>>()
    );
    for (key, _, headers) in &messages {
        assert!(key.is_some(), "keyed by tweet id");
        assert!(headers.contains_key("twitter.matching_rules"));
    }
    let dead = messages_in(&kafka.bootstrap, "twitter-dead-letter");
    assert_eq!(dead.len(), 1);
    assert_eq!(String::from_utf8_lossy(&dead[0].1), SIM_GARBAGE);
    assert_eq!(
        dead[0].2.get("sluice.stage").map(String::as_str),
        Some("bts")
    );
}

/// The seed: the Twitter API (simulator) -> host (keyword-filter `bts`) -> Kafka `twitter` ->
/// host (group `twitter_log_to_es`: prune, enrich) -> Elasticsearch `twitter-YYYYMMdd`. With
/// `faults`, mid-stream: kill -9 of each host (restarted), the Elasticsearch container stopped
/// for a while, the broker restarted.
fn seed_pipeline(test: &str, faults: bool) {
    let Some(_lock) = docker(test) else {
        return;
    };
    let kafka = Kafka::start();
    let es = Elasticsearch::start();
    let (total, rate) = if faults { (3000, 60.0) } else { (1500, 300.0) };
    let sim = TwitterSim::start(total, rate, total / 20);
    let dir = WorkDir::new();
    let mut to_es = Host::spawn(
        dir.path(),
        "kafka-to-es",
        &kafka_to_es_toml(&kafka.bootstrap, &es.url),
    );
    let lake = Emulators::start(false);
    let mut to_gcs = Host::spawn(
        dir.path(),
        "kafka-to-gcs",
        &kafka_to_gcs_toml(&kafka.bootstrap, &lake),
    );
    let mut to_kafka = Host::spawn(
        dir.path(),
        "twitter-to-kafka",
        &twitter_to_kafka_toml(&sim, &kafka.bootstrap),
    );

    // Tweets the simulator had sent when a kill -9 cut the first hop: those it sent on the cut
    // connection can be lost (the stream has no replay), nothing else.
    let mut kill_window = None;
    let mut at_fault = Vec::new();
    if faults {
        let at = |share: f64| (total as f64 * share) as u64;
        let wait_sent = |n: u64, hosts: &mut [&mut Host]| {
            wait_until("the stream stopped", Duration::from_secs(180), || {
                hosts.iter_mut().for_each(|h| h.assert_alive());
                sim.sent() >= n
            })
        };
        wait_sent(at(0.15), &mut [&mut to_kafka, &mut to_es, &mut to_gcs]);
        // The malformed line went through before the kill, so it cannot be lost with it.
        wait_until("no dead letter", Duration::from_secs(60), || {
            !messages_in(&kafka.bootstrap, "twitter-dead-letter").is_empty()
        });
        let before = sim.sent();
        to_kafka.kill();
        std::thread::sleep(Duration::from_secs(1));
        kill_window = Some((before, sim.sent()));
        to_kafka.restart();
        at_fault.push(("kill -9 twitter-to-kafka", before));

        wait_sent(at(0.3), &mut [&mut to_kafka, &mut to_es, &mut to_gcs]);
        at_fault.push(("kill -9 kafka-to-es", sim.sent()));
        to_es.kill();
        std::thread::sleep(Duration::from_secs(1));
        to_es.restart();

        wait_sent(at(0.38), &mut [&mut to_kafka, &mut to_es, &mut to_gcs]);
        at_fault.push(("kill -9 kafka-to-gcs", sim.sent()));
        to_gcs.kill();
        std::thread::sleep(Duration::from_secs(1));
        to_gcs.restart();

        wait_sent(at(0.45), &mut [&mut to_kafka, &mut to_es, &mut to_gcs]);
        at_fault.push(("Elasticsearch stopped", sim.sent()));
        es.c.stop_with_timeout(Some(20)).unwrap();
        std::thread::sleep(Duration::from_secs(8));
        es.c.start().unwrap();

        wait_sent(at(0.65), &mut [&mut to_kafka, &mut to_es, &mut to_gcs]);
        at_fault.push(("broker restarted", sim.sent()));
        kafka.restart(Duration::from_secs(5));
        eprintln!("faults at tweets sent: {at_fault:?}");
    }

    wait_until("the stream did not end", Duration::from_secs(300), || {
        to_kafka.assert_alive();
        to_es.assert_alive();
        to_gcs.assert_alive();
        sim.sent() >= total
    });
    for (fault, sent) in &at_fault {
        assert!(*sent < total, "{fault} came after the stream ended");
    }
    // After the broker restart the Twitter hop may be behind the stream (tweets in its socket
    // and queues): stop it only once the topic has stopped growing, or what it holds is cut
    // off with it (the stream cannot be replayed).
    let mut end = topic_end(&kafka.bootstrap, "twitter");
    wait_until(
        "the Twitter hop to catch up",
        Duration::from_secs(120),
        || {
            std::thread::sleep(Duration::from_secs(3));
            let now = topic_end(&kafka.bootstrap, "twitter");
            std::mem::replace(&mut end, now) == now
        },
    );
    to_kafka.stop(); // drains what it read
    let in_kafka = messages_in(&kafka.bootstrap, "twitter");
    let kafka_ids: BTreeSet<String> = ids_of(&in_kafka).into_iter().collect();
    es.wait_ready();
    wait_until(
        "Elasticsearch behind Kafka",
        Duration::from_secs(240),
        || {
            to_es.assert_alive();
            es.count("twitter-*") >= kafka_ids.len() as u64
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    to_es.stop();
    let table = format!("`{BQ_PROJECT}.twitter.tweets`");
    wait_until("BigQuery behind Kafka", Duration::from_secs(240), || {
        to_gcs.assert_alive();
        http::get_status(&format!(
            "{}/datasets/twitter/tables/tweets",
            lake.project_url()
        )) == Some(200)
            && lake.query(&format!("SELECT COUNT(*) FROM {table}"))[0][0]
                .as_str()
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n >= kafka_ids.len())
    });
    to_gcs.stop();

    // What the simulator sent: bts tweets must all arrive, the others nowhere.
    let seq = sim_sequence(total);
    let non_bts: BTreeSet<&String> = seq.iter().filter(|t| !t.1).map(|t| &t.0).collect();
    assert!(non_bts.len() > 100, "a mix of tweets");
    let lost: Vec<usize> = (0..seq.len())
        .filter(|&i| seq[i].1 && !kafka_ids.contains(&seq[i].0))
        .collect();
    match kill_window {
        None => assert!(lost.is_empty(), "{} bts tweets lost", lost.len()),
        Some((before, after)) => {
            eprintln!(
                "kill -9 of twitter-to-kafka with {before}..{after} tweets sent: {} bts tweets lost",
                lost.len()
            );
            // Only what was in flight can be lost: tweets of the last two seconds before the
            // kill, or sent on the cut connection. The topic's 3 partitions are delivered each
            // in its own order, so the losses need not be one run.
            let in_flight = (2.0 * rate) as usize;
            if let (Some(&first), Some(&last)) = (lost.first(), lost.last()) {
                assert!(
                    last < after as usize && first + in_flight >= before as usize,
                    "losses other than those in flight at the kill: {lost:?} (kill at \
                     {before}..{after}, {in_flight} tweets in flight at most)"
                );
            }
        }
    }
    assert!(
        kafka_ids.iter().all(|id| !non_bts.contains(id)),
        "a non-bts tweet in Kafka"
    );
    // The pruned fields were there before the second hop.
    let raw: Value = serde_json::from_slice(&in_kafka[0].1).unwrap();
    assert!(raw["matching_rules"].is_array() && raw["data"]["public_metrics"].is_object());

    let docs = es.documents("twitter-*");
    assert_eq!(es.count("twitter-*"), docs.len() as u64);
    assert_same_ids(
        &docs.keys().cloned().collect(),
        &kafka_ids,
        "Elasticsearch vs Kafka",
    );
    for (id, (index, doc)) in &docs {
        let created = doc["data"]["created_at"].as_str().expect("created_at");
        assert_eq!(index, &format!("twitter-{}", ymd(created)), "{id}");
        for path in PRUNED {
            let v = path.split('.').fold(doc, |v, k| &v[k]);
            assert!(v.is_null(), "{id}: {path} not pruned");
        }
        assert_eq!(
            doc["@timestamp"].as_str().map(|t| &t[..19]),
            Some(&created[..19])
        );
        let kw = &doc["sluice"]["matched_keywords"];
        assert!(
            kw.as_array().is_some_and(|k| k.contains(&json!("bts"))),
            "{id}: {kw}"
        );
        assert!(doc["sluice"]["text_length"].is_u64(), "{id}: enriched");
    }

    let rows = lake.query(&format!(
        "SELECT data.id, _timestamp, sluice.text_length FROM {table}"
    ));
    let bq_ids: Vec<String> = rows
        .iter()
        .map(|r| r[0].as_str().expect("data.id").to_string())
        .collect();
    let bq_set: BTreeSet<String> = bq_ids.iter().cloned().collect();
    assert_same_ids(&bq_set, &kafka_ids, "BigQuery vs Kafka");
    assert_eq!(bq_ids.len(), bq_set.len(), "BigQuery rows: once each");
    assert!(
        rows.iter().all(|r| !r[1].is_null() && !r[2].is_null()),
        "enriched"
    );
    let schema = http::json(
        "GET",
        &format!("{}/datasets/twitter/tables/tweets", lake.project_url()),
        None,
    );
    let names = |fields: &Value| -> BTreeSet<String> {
        fields
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| f["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let top = names(&schema["schema"]["fields"]);
    assert_eq!(
        top,
        BTreeSet::from(["data", "_timestamp", "sluice"].map(String::from)),
        "only the allowed fields and the enrichment"
    );
    let data = schema["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "data")
        .unwrap();
    let data_fields = names(&data["fields"]);
    let allowed: BTreeSet<String> = GCS_ALLOWED
        .iter()
        .map(|p| p.trim_start_matches("data.").to_string())
        .collect();
    assert!(data_fields.is_subset(&allowed), "pruned: {data_fields:?}");

    let dead = messages_in(&kafka.bootstrap, "twitter-dead-letter");
    let dead_values: Vec<String> = dead
        .iter()
        .map(|m| String::from_utf8_lossy(&m.1).into_owned())
        .collect();
    assert_eq!(
        dead_values,
        [SIM_GARBAGE],
        "the dead letter holds the malformed line only"
    );
    assert_eq!(
        dead[0].2.get("sluice.stage").map(String::as_str),
        Some("bts")
    );
    eprintln!(
        "seed pipeline: {} tweets sent, {} bts in Kafka, Elasticsearch and BigQuery, {} dead-lettered",
        total,
        kafka_ids.len(),
        dead.len()
    );
}

#[test]
fn seed_pipeline_end_to_end() {
    seed_pipeline("seed_pipeline_end_to_end", false);
}

/// Every assertion of the seed, BigQuery exactly once included, after kill -9 of each host,
/// Elasticsearch stopped for a while and a broker restart.
#[test]
fn seed_pipeline_survives_kills_and_outages() {
    seed_pipeline("seed_pipeline_survives_kills_and_outages", true);
}

/// fake-gcs-server and the BigQuery emulator on one object root: an object uploaded through the
/// GCS JSON API is loaded by a BigQuery load job from its gs:// URI (the services of the seed's
/// GCS -> BigQuery leg, without the host).
#[test]
fn emulators_share_one_object_root() {
    let Some(_lock) = docker("emulators_share_one_object_root") else {
        return;
    };
    let lake = Emulators::start(false);
    let gcs = &lake.gcs;
    let bq_url = lake.project_url();

    http::json(
        "POST",
        &format!("{gcs}/storage/v1/b?project=test-proj"),
        Some(&json!({"name": "sluice-test"})),
    );
    let n = 250u64;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..n {
        writeln!(gz, "{}", json!({"id": i, "text": format!("bts {i}")})).unwrap();
    }
    let body = gz.finish().unwrap();
    let (status, _) = http::request(
        "POST",
        &format!(
            "{gcs}/upload/storage/v1/b/sluice-test/o?uploadType=media&name=twitter%2Fpart-0.ndjson.gz"
        ),
        "application/gzip",
        &body,
    )
    .unwrap();
    assert_eq!(status, 200);

    http::json(
        "POST",
        &format!("{bq_url}/datasets"),
        Some(&json!({"datasetReference": {"projectId": "test-proj", "datasetId": "sluice"}})),
    );
    http::json(
        "POST",
        &format!("{bq_url}/datasets/sluice/tables"),
        Some(&json!({
            "tableReference": {"projectId": "test-proj", "datasetId": "sluice", "tableId": "tweets"},
            "schema": {"fields": [{"name": "id", "type": "INTEGER"}, {"name": "text", "type": "STRING"}]}
        })),
    );
    let job = http::json(
        "POST",
        &format!("{bq_url}/jobs"),
        Some(&json!({
            "jobReference": {"projectId": "test-proj", "jobId": "load-1"},
            "configuration": {"load": {
                "sourceUris": ["gs://sluice-test/twitter/part-0.ndjson.gz"],
                "sourceFormat": "NEWLINE_DELIMITED_JSON",
                "destinationTable": {"projectId": "test-proj", "datasetId": "sluice", "tableId": "tweets"}
            }}
        })),
    );
    wait_until(
        "the load job did not finish",
        Duration::from_secs(60),
        || http::json("GET", &format!("{bq_url}/jobs/load-1"), None)["status"]["state"] == "DONE",
    );
    let done = http::json("GET", &format!("{bq_url}/jobs/load-1"), None);
    assert!(done["status"]["errorResult"].is_null(), "{job}\n{done}");
    let q = http::json(
        "POST",
        &format!("{bq_url}/queries"),
        Some(&json!({"useLegacySql": false,
            "query": "SELECT COUNT(*), SUM(id) FROM `test-proj.sluice.tweets`"})),
    );
    let row = &q["rows"][0]["f"];
    assert_eq!(row[0]["v"], json!(n.to_string()), "{q}");
    assert_eq!(row[1]["v"], json!((n * (n - 1) / 2).to_string()), "{q}");
}

/// The seed's Kafka -> Elasticsearch hop as an operator runs it, with `[runtime.metrics]`:
/// `/metrics` adds up per stage and the consumer lag falls to 0; `/ready` turns 503 within 10 s
/// of the broker or OpenSearch stopping, naming the stage, and 200 again once they are back; a
/// SIGTERM in the middle of a run exits 0 having committed only what Elasticsearch holds, and a
/// restart delivers the rest: every id the chain keeps is in Elasticsearch, once.
#[test]
fn operating_kafka_to_elasticsearch() {
    use common::metrics::{Scrape, ready};
    let Some(_lock) = docker("operating_kafka_to_elasticsearch") else {
        return;
    };
    let kafka = Kafka::start();
    let es = Elasticsearch::start();
    let dir = WorkDir::new();
    let topic = "ops";
    let produce = |seed: u64, n: usize| {
        let toml = common::kafka::producer_toml(&kafka.bootstrap, topic, seed, n, 3, "");
        let summary = Host::run(dir.path(), &format!("produce-{seed}"), &toml);
        assert_eq!(summary["records_out"], n);
    };
    // Chain [bts, enrich]: the keyword filter drops what does not mention bts.
    let pipeline = |group: &str, addr: &str, sink: &str| {
        format!(
            r#"
[pipeline]
name = "{group}"
chain = ["bts", "enrich"]
batch_size = 200
batch_timeout = "100ms"
[source]
type = "kafka"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "{group}"
[source.properties]
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500
[transforms.bts]
plugin = "{bts}"
config = {{ keywords = ["bts"] }}
[transforms.enrich]
plugin = "{enrich}"
config = {{ keywords = ["bts"] }}
{sink}
[dead_letter]
type = "file"
path = "{dead}"
[runtime.metrics]
listen = "{addr}"
"#,
            brokers = kafka.bootstrap,
            bts = plugin_path("keyword_filter"),
            enrich = plugin_path("enrich"),
            dead = dir.path().join(format!("{group}.dead.ndjson")).display(),
        )
    };
    let es_sink = format!(
        "[sinks.es]\ntype = \"elasticsearch\"\nurl = \"{}\"\nindex = \"ops\"\n\
         id_field = \"id_str,data.id\"\nretry_initial = \"100ms\"\nretry_max = \"1s\"\n\
         [sinks.es.template]\nenabled = false\n",
        es.url
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let scrape = || Scrape::get(&addr);
    let caught_up = |host: &mut Host, want: f64| {
        wait_until(
            "the host did not read every record with a lag of 0",
            Duration::from_secs(180),
            || {
                host.assert_alive();
                scrape().is_some_and(|s| {
                    s.stage("records_out", "source") >= want
                        && s.value("sluice_kafka_consumer_lag", &[("stage", "source")]) == Some(0.0)
                })
            },
        )
    };

    // Metrics add up, and the lag falls to 0.
    let first = 3000;
    produce(11, first);
    let mut host = Host::spawn(dir.path(), "to-es", &pipeline("ops-es", &addr, &es_sink));
    caught_up(&mut host, first as f64);
    let s = scrape().unwrap();
    assert_eq!(
        s.stage("records_out", "source"),
        first as f64,
        "{}",
        s.text()
    );
    for t in ["transforms.bts", "transforms.enrich"] {
        let (input, out) = (s.stage("records_in", t), s.stage("records_out", t));
        let (dropped, dead) = (
            s.stage("records_dropped", t),
            s.stage("records_dead_lettered", t),
        );
        assert_eq!(
            input,
            out + dropped + dead,
            "{t}: in = out + dropped + dead-lettered"
        );
    }
    assert_eq!(s.stage("records_in", "transforms.bts"), first as f64);
    assert!(
        s.stage("records_dropped", "transforms.bts") > 0.0,
        "the filter dropped some"
    );
    // Without a template, the widest tweets pass OpenSearch's 1,000-field limit: refused per
    // item and dead-lettered by the sink.
    let kept = s.stage("records_out", "transforms.enrich");
    let indexed = s.stage("records_out", "sinks.es");
    assert_eq!(s.stage("records_in", "sinks.es"), kept);
    assert_eq!(indexed + s.stage("records_dead_lettered", "sinks.es"), kept);
    assert_eq!(
        es.count("ops") as f64,
        indexed,
        "Elasticsearch holds what the sink reports"
    );
    let ok_requests = s.value(
        "sluice_sink_requests_total",
        &[
            ("stage", "sinks.es"),
            ("request", "bulk"),
            ("outcome", "ok"),
        ],
    );
    assert!(ok_requests.unwrap_or(0.0) >= 1.0, "{}", s.text());
    assert!(s.value("process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert_eq!(
        common::http::get_status(&format!("http://{addr}/health")),
        Some(200)
    );
    assert_eq!(ready(&addr).unwrap().0, 200, "{:?}", ready(&addr));

    // Readiness follows the services.
    let not_ready_within_10s = |stage: &str| {
        let since = Instant::now();
        wait_until(
            &format!("/ready did not name {stage} within 10 s"),
            Duration::from_secs(10),
            || {
                ready(&addr).is_some_and(|(status, body)| {
                    status == 503 && body["stages"][stage]["ready"] == false
                })
            },
        );
        eprintln!("/ready: {stage} not ready after {:?}", since.elapsed());
    };
    let ready_again = |host: &mut Host| {
        wait_until(
            "/ready did not return to 200",
            Duration::from_secs(120),
            || {
                host.assert_alive();
                ready(&addr).is_some_and(|(status, _)| status == 200)
            },
        )
    };
    kafka.stop();
    not_ready_within_10s("source");
    kafka.start_again();
    ready_again(&mut host);
    es.stop();
    not_ready_within_10s("sinks.es");
    let (_, body) = ready(&addr).unwrap();
    let reason = body["stages"]["sinks.es"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains(&es.url),
        "the reason names the cluster: {body}"
    );
    es.start_again();
    ready_again(&mut host);

    // SIGTERM in the middle of a run, then a restart: nothing lost.
    let second = 6000;
    produce(12, second);
    let before = es.count("ops");
    wait_until(
        "no progress into Elasticsearch",
        Duration::from_secs(120),
        || {
            host.assert_alive();
            es.count("ops") > before + 200
        },
    );
    host.stop_with("TERM");
    host.restart();
    // The restart reads from the last commit: what the drain did not deliver, or nothing when
    // the first run had read the whole topic (two chain workers read ahead quickly); the
    // comparison with a fault-free run below says whether anything was lost.
    caught_up(&mut host, 0.0);
    host.stop();

    // What the same chain keeps from the whole topic without faults, read into a file.
    let reference = dir.path().join("reference.ndjson");
    let file_sink = format!(
        "[sinks.out]\ntype = \"file\"\npath = \"{}\"\n",
        reference.display()
    );
    let mut reader = Host::spawn(
        dir.path(),
        "reference",
        &pipeline("ops-reference", &addr, &file_sink),
    );
    caught_up(&mut reader, (first + second) as f64);
    reader.stop();
    let want: BTreeSet<String> = std::fs::read_to_string(&reference)
        .unwrap()
        .lines()
        .map(|l| tweet_id(&serde_json::from_str(l).unwrap()).expect("an id"))
        .collect();
    // What the sink refused is in the dead letter; everything else is in Elasticsearch, once.
    let refused: BTreeSet<String> = std::fs::read_to_string(dir.path().join("ops-es.dead.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|d| d["stage"] == "sinks.es")
        .map(|d| tweet_id(&serde_json::from_str(d["value"].as_str().unwrap()).unwrap()).unwrap())
        .collect();
    let docs = es.documents("ops");
    assert_eq!(docs.len() as u64, es.count("ops"));
    let mut got: BTreeSet<String> = docs.keys().cloned().collect();
    assert!(
        got.is_disjoint(&refused),
        "a document both indexed and dead-lettered"
    );
    got.extend(refused);
    assert_same_ids(
        &got,
        &want,
        "Elasticsearch and its dead letters after SIGTERM",
    );
}

/// The host image (`compose/docker.sh build host`) as a supervisor runs it: the bundled
/// generate -> [bts] -> Kafka example, pointed at a Kafka container by `SLUICE_*` overrides, with
/// `--metrics` on a free port. `/ready` answers 200, `/metrics` shows every stage with counts
/// that grow, Docker's HEALTHCHECK reports healthy, and `docker stop` (SIGTERM to the host, PID 1
/// as a non-root user) drains and exits 0.
#[test]
fn host_image_serves_metrics_and_stops_on_sigterm() {
    use common::metrics::{Scrape, ready};
    let Some(_lock) = docker("host_image_serves_metrics_and_stops_on_sigterm") else {
        return;
    };
    let kafka = Kafka::start();
    let addr = format!("127.0.0.1:{}", free_port());
    let topic = "image";
    let req = Service::Host
        .image()
        .with_cmd([
            "run",
            "/etc/sluice/examples/generate-to-kafka.toml",
            "--metrics",
            addr.as_str(),
        ])
        .with_env_var("SLUICE_SOURCE__COUNT", "0")
        .with_env_var("SLUICE_SOURCE__RATE", "2000")
        .with_env_var("SLUICE_SINKS__KAFKA__BROKERS", &kafka.bootstrap)
        .with_env_var("SLUICE_SINKS__KAFKA__TOPIC", topic)
        .with_env_var("SLUICE_DEAD_LETTER__BROKERS", &kafka.bootstrap);
    let host = start("the host image", req);
    let config = inspect(host.id());
    assert_eq!(
        config["Config"]["User"], "sluice",
        "runs as a non-root user"
    );

    wait_until("/ready did not answer 200", Duration::from_secs(60), || {
        assert!(
            host.is_running().unwrap_or(false),
            "the host exited: {}",
            logs(&host)
        );
        ready(&addr).is_some_and(|(status, _)| status == 200)
    });
    assert_eq!(
        common::http::get_status(&format!("http://{addr}/health")),
        Some(200)
    );
    let stages = ["source", "transforms.bts", "sinks.kafka"];
    let counts = |s: &Scrape| stages.map(|stage| s.stage("records_out", stage));
    wait_until(
        "no records through every stage",
        Duration::from_secs(30),
        || Scrape::get(&addr).is_some_and(|s| counts(&s).iter().all(|&n| n > 0.0)),
    );
    let before = counts(&Scrape::get(&addr).unwrap());
    std::thread::sleep(Duration::from_millis(1500));
    let s = Scrape::get(&addr).unwrap();
    let after = counts(&s);
    for ((stage, b), a) in stages.iter().zip(before).zip(after) {
        assert!(
            a > b,
            "{stage}: records_out went from {b} to {a}\n{}",
            s.text()
        );
    }
    let bts = "transforms.bts";
    assert_eq!(
        s.stage("records_in", bts),
        s.stage("records_out", bts) + s.stage("records_dropped", bts),
        "{bts}: in = out + dropped"
    );
    assert!(
        s.text().contains("pipeline=\"generate-to-kafka\""),
        "{}",
        s.text()
    );

    // The image's HEALTHCHECK finds the listener from PID 1's --metrics.
    wait_until(
        "Docker's healthcheck did not report healthy",
        Duration::from_secs(40),
        || inspect(host.id())["State"]["Health"]["Status"] == "healthy",
    );

    let since = Instant::now();
    host.stop_with_timeout(Some(30)).unwrap();
    let stopped = since.elapsed();
    let state = inspect(host.id())["State"].clone();
    let log = logs(&host);
    assert_eq!(
        state["ExitCode"], 0,
        "exit code after docker stop: {state}\n{log}"
    );
    assert!(
        stopped < Duration::from_secs(20),
        "docker stop took {stopped:?}"
    );
    let stderr = String::from_utf8_lossy(&host.stderr_to_vec().unwrap()).into_owned();
    assert!(stderr.contains("SIGTERM: draining"), "{log}");
    // Drained: the topic holds at least what the sink had reported before the stop.
    let delivered = topic_end(&kafka.bootstrap, topic) as f64;
    assert!(
        delivered >= after[2],
        "{delivered} in {topic}, {} reported",
        after[2]
    );
}
