//! The chaos soak: the seed's three hops (the Twitter simulator -> Kafka -> Elasticsearch, and
//! Kafka -> GCS -> BigQuery) under a seeded random schedule of faults, and at the end every
//! bts tweet that happened is in Elasticsearch and in BigQuery exactly once, and no other.
//!
//! `SLUICE_CHAOS_SEED` replays a schedule (the seed is printed first); `SLUICE_CHAOS_SECS` sets
//! how long tweets happen (default 120 s, the form CI runs).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;
use testcontainers::{Container, GenericImage};

use super::{
    BQ_PROJECT, Elasticsearch, Emulators, Host, Kafka, TwitterSim, WorkDir, assert_same_ids,
    docker, docker_api, http, ids_of, kafka_to_es_toml, kafka_to_gcs_toml, messages_in,
    sim_sequence, twitter_to_kafka_toml_with, wait_until,
};

/// Candidates of the simulated sequence that happen per second (about a third match `bts` or
/// `army`).
const RATE: f64 = 40.0;
/// What the Twitter hop asks for on every connect.
const BACKFILL_MINUTES: u64 = 1;
/// The Twitter hop's `batch_size`, (default) `queue_batches` and `workers`.
const BATCH: u64 = 100;
const QUEUE_BATCHES: u64 = 4;
const WORKERS: u64 = 2;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    KillTwitterHop,
    KillEsHop,
    KillGcsHop,
    KillBroker,
    KillOpenSearch,
    RestartGcs,
    RestartBigQuery,
}

const FAULTS: [Fault; 7] = [
    Fault::KillTwitterHop,
    Fault::KillEsHop,
    Fault::KillGcsHop,
    Fault::KillBroker,
    Fault::KillOpenSearch,
    Fault::RestartGcs,
    Fault::RestartBigQuery,
];

/// SplitMix64: a schedule that a seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// kill -9 of the container's main process (`docker kill`), no shutdown of any kind.
fn sigkill(c: &Container<GenericImage>) {
    let answer = docker_api("POST", &format!("/containers/{}/kill?signal=KILL", c.id())).unwrap();
    assert!(answer.starts_with("HTTP/1.0 204"), "docker kill: {answer}");
    wait_until(
        "a killed container to stop",
        Duration::from_secs(30),
        || !c.is_running().unwrap_or(true),
    );
}

impl Elasticsearch {
    /// The `_id` of every document of `pattern`, however many (a scroll).
    fn ids(&self, pattern: &str) -> Vec<String> {
        http::json("POST", &format!("{}/{pattern}/_refresh", self.url), None);
        let mut page = http::json(
            "POST",
            &format!("{}/{pattern}/_search?scroll=1m", self.url),
            Some(&json!({"size": 5000, "_source": false, "query": {"match_all": {}}})),
        );
        let mut ids = Vec::new();
        loop {
            let hits = page["hits"]["hits"].as_array().expect("hits").clone();
            if hits.is_empty() {
                return ids;
            }
            ids.extend(hits.iter().map(|h| h["_id"].as_str().unwrap().to_string()));
            let scroll = page["_scroll_id"]
                .as_str()
                .expect("a scroll id")
                .to_string();
            page = http::json(
                "POST",
                &format!("{}/_search/scroll", self.url),
                Some(&json!({"scroll": "1m", "scroll_id": scroll})),
            );
        }
    }
}

/// The three hops and the services under them.
struct Seed {
    kafka: Kafka,
    es: Elasticsearch,
    lake: Emulators,
    sim: TwitterSim,
    to_kafka: Host,
    to_es: Host,
    to_gcs: Host,
}

impl Seed {
    fn hosts_alive(&mut self) {
        self.to_kafka.assert_alive();
        self.to_es.assert_alive();
        self.to_gcs.assert_alive();
    }

    /// Sleeps `d`, checking every 250 ms that no host has died.
    fn sleep(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.hosts_alive();
            std::thread::sleep(Duration::from_millis(250).min(end - Instant::now()));
        }
    }

    /// Injects `fault`: the victim is down for `down`, then started again (without waiting for
    /// it to be ready: the next fault may come first).
    fn inject(&mut self, fault: Fault, down: Duration) {
        match fault {
            Fault::KillTwitterHop | Fault::KillEsHop | Fault::KillGcsHop => {
                let host = match fault {
                    Fault::KillTwitterHop => &mut self.to_kafka,
                    Fault::KillEsHop => &mut self.to_es,
                    _ => &mut self.to_gcs,
                };
                host.kill();
                std::thread::sleep(down);
                host.restart();
            }
            Fault::KillBroker => {
                sigkill(&self.kafka.c);
                self.sleep(down);
                self.kafka.c.start().unwrap();
            }
            Fault::KillOpenSearch => {
                sigkill(&self.es.c);
                self.sleep(down);
                self.es.c.start().unwrap();
            }
            Fault::RestartGcs => {
                self.lake.gcs_c.stop_with_timeout(Some(10)).unwrap();
                self.sleep(down);
                self.lake.gcs_c.start().unwrap();
            }
            Fault::RestartBigQuery => {
                self.lake.bq_c.stop_with_timeout(Some(10)).unwrap();
                self.sleep(down);
                self.lake.bq_c.start().unwrap();
            }
        }
    }
}

/// The seed's three hops while a seeded random schedule kill -9s any host, SIGKILLs the broker
/// and OpenSearch, and restarts the GCS and BigQuery emulators. The Twitter hop spools what it
/// reads and asks for a minute of backfill on every connect, so nothing that happened is lost.
#[test]
fn seed_pipeline_survives_chaos() {
    let Some(_lock) = docker("seed_pipeline_survives_chaos") else {
        return;
    };
    let seed = env_u64("SLUICE_CHAOS_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.unwrap().as_nanos() as u64
    });
    let secs = env_u64("SLUICE_CHAOS_SECS").unwrap_or(120);
    eprintln!("chaos: SLUICE_CHAOS_SEED={seed} SLUICE_CHAOS_SECS={secs}");
    let mut rng = Rng(seed);

    // `total` counts matching tweets: as many as match among `secs * RATE` candidates.
    let candidates = (secs as f64 * RATE) as u64;
    let total = (0..candidates)
        .filter(|&i| {
            let text = twitter_sim::Tweet::new(super::SIM_SEED, i)
                .text
                .to_lowercase();
            text.contains("bts") || text.contains("army")
        })
        .count() as u64;
    let dir = WorkDir::new();
    let kafka = Kafka::start();
    let es = Elasticsearch::start();
    let lake = Emulators::start(true);
    let sim = TwitterSim::realtime(total, RATE);
    let to_es = Host::spawn(
        dir.path(),
        "kafka-to-es",
        &kafka_to_es_toml(&kafka.bootstrap, &es.url),
    );
    let to_gcs = Host::spawn(
        dir.path(),
        "kafka-to-gcs",
        &kafka_to_gcs_toml(&kafka.bootstrap, &lake),
    );
    let spool = dir.path().join("spool");
    let lossless = format!(
        "backfill_minutes = {BACKFILL_MINUTES}\n[source.spool]\ndir = \"{}\"",
        spool.display()
    );
    let to_kafka = Host::spawn(
        dir.path(),
        "twitter-to-kafka",
        &twitter_to_kafka_toml_with(&sim, &kafka.bootstrap, &lossless),
    );
    let mut seed_hops = Seed {
        kafka,
        es,
        lake,
        sim,
        to_kafka,
        to_es,
        to_gcs,
    };
    let s = &mut seed_hops;

    // The schedule: a fault every 4-10 s, its victim down 0.5-5 s, while tweets happen.
    let started = Instant::now();
    let mut schedule = Vec::new();
    loop {
        s.sleep(rng.millis(4_000, 10_000));
        let (happened, all) = s.sim.happened();
        if all {
            break;
        }
        let fault = FAULTS[(rng.next() % FAULTS.len() as u64) as usize];
        let down = rng.millis(500, 5_000);
        eprintln!(
            "chaos: {:>5.1} s, {} tweets happened: {fault:?}, down {:.1} s",
            started.elapsed().as_secs_f64(),
            happened.len(),
            down.as_secs_f64()
        );
        s.inject(fault, down);
        schedule.push(fault);
    }
    let stream_secs = started.elapsed().as_secs_f64();

    // Every service up again; then each hop catches up and drains.
    s.kafka.wait_ready();
    s.es.wait_ready();
    s.lake.wait_ready();
    let (happened, _) = s.sim.happened();
    let is_bts: BTreeMap<String, bool> = sim_sequence(total).into_iter().collect();
    assert_eq!(
        is_bts.len(),
        happened.len(),
        "the simulator's matching tweets"
    );
    let want: BTreeSet<String> = happened.iter().filter(|id| is_bts[*id]).cloned().collect();
    let in_kafka = |s: &mut Seed| -> BTreeSet<String> {
        s.hosts_alive();
        ids_of(&messages_in(&s.kafka.bootstrap, "twitter"))
            .into_iter()
            .collect()
    };
    wait_until("every bts tweet in Kafka", Duration::from_secs(300), || {
        in_kafka(s).is_superset(&want)
    });
    s.to_kafka.stop();
    let messages = ids_of(&messages_in(&s.kafka.bootstrap, "twitter"));
    let kafka_ids: BTreeSet<String> = messages.iter().cloned().collect();
    assert_same_ids(&kafka_ids, &want, "Kafka vs the bts tweets that happened");
    wait_until(
        "Elasticsearch behind Kafka",
        Duration::from_secs(300),
        || {
            s.hosts_alive();
            s.es.count("twitter-*") >= want.len() as u64
        },
    );
    let table = format!("`{BQ_PROJECT}.twitter.tweets`");
    let bq_rows = |s: &Seed| -> usize {
        let table_url = format!("{}/datasets/twitter/tables/tweets", s.lake.project_url());
        if http::get_status(&table_url) != Some(200) {
            return 0;
        }
        let n = &s.lake.query(&format!("SELECT COUNT(*) FROM {table}"))[0][0];
        n.as_str().and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    wait_until("BigQuery behind Kafka", Duration::from_secs(300), || {
        s.hosts_alive();
        bq_rows(s) >= want.len()
    });
    // A moment for anything still in flight to land where the checks would see it.
    s.sleep(Duration::from_secs(2));
    s.to_es.stop();
    s.to_gcs.stop();

    // Elasticsearch and BigQuery: each bts tweet exactly once, no other.
    let es_ids = s.es.ids("twitter-*");
    let es_set: BTreeSet<String> = es_ids.iter().cloned().collect();
    assert_eq!(es_ids.len(), es_set.len(), "an id in two daily indices");
    assert_same_ids(
        &es_set,
        &want,
        "Elasticsearch vs the bts tweets that happened",
    );
    let bq_ids: Vec<String> = s
        .lake
        .query(&format!("SELECT data.id FROM {table}"))
        .iter()
        .map(|r| r[0].as_str().expect("data.id").to_string())
        .collect();
    let bq_set: BTreeSet<String> = bq_ids.iter().cloned().collect();
    assert_same_ids(&bq_set, &want, "BigQuery vs the bts tweets that happened");
    assert_eq!(bq_ids.len(), bq_set.len(), "BigQuery rows: once each");
    let dead = messages_in(&s.kafka.bootstrap, "twitter-dead-letter");
    assert!(
        dead.is_empty(),
        "dead letters: {:?}",
        dead.iter().map(|m| &m.2).collect::<Vec<_>>()
    );

    // Duplicates in Kafka come only from restarts of the Twitter hop: the backfill it asks for
    // on connect sends again up to BACKFILL_MINUTES of candidates (its recent-id window starts
    // empty), and the spool replays what was in flight (written to Kafka, not yet committed):
    // at most the pipeline's queues and the batch at the sink. A broker kill adds none (the
    // producer is idempotent), nor do kills of the consuming hops (they only read).
    let hop_kills = schedule
        .iter()
        .filter(|&&f| f == Fault::KillTwitterHop)
        .count() as u64;
    let in_flight = 2 * QUEUE_BATCHES.div_ceil(WORKERS) * WORKERS + WORKERS + 2;
    let per_kill = (RATE as u64) * 60 * BACKFILL_MINUTES + in_flight * BATCH;
    let duplicates = (messages.len() - kafka_ids.len()) as u64;
    let count = |f: Fault| schedule.iter().filter(|&&g| g == f).count();
    let faults: Vec<String> = FAULTS
        .iter()
        .map(|&f| format!("{f:?} x{}", count(f)))
        .collect();
    eprintln!(
        "chaos: seed {seed}, {stream_secs:.0} s of tweets, {} faults ({}); {} tweets happened, \
         {} bts checked in Kafka, Elasticsearch and BigQuery; {duplicates} duplicates in Kafka \
         (bound {} = {hop_kills} Twitter hop kills x {per_kill})",
        schedule.len(),
        faults.join(", "),
        happened.len(),
        want.len(),
        hop_kills * per_kill,
    );
    assert!(
        duplicates <= hop_kills * per_kill,
        "{duplicates} duplicates in Kafka with {hop_kills} kills of the Twitter hop"
    );
    assert!(!schedule.is_empty(), "no fault was injected");
}
