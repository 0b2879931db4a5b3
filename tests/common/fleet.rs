//! Several hosts in one consumer group, as a fleet runs them: started, killed with SIGKILL and
//! added while tweets are still arriving, each host with a log of its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::KillOnDrop;

/// Appended to a consumer pipeline: a killed member's partitions move after 6 s (the broker's
/// minimum session timeout) instead of librdkafka's default 45 s.
pub const FAST_FAILOVER: &str = r#"
[source.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"#;

pub struct Fleet {
    pipeline: PathBuf,
    dir: PathBuf,
    hosts: BTreeMap<String, KillOnDrop>,
}

impl Fleet {
    /// Hosts running `pipeline`, logging to `dir/<name>.log`.
    pub fn new(pipeline: &Path, dir: &Path) -> Self {
        Fleet {
            pipeline: pipeline.to_path_buf(),
            dir: dir.to_path_buf(),
            hosts: BTreeMap::new(),
        }
    }

    pub fn start(&mut self, name: &str) {
        let log = std::fs::File::create(self.log_path(name)).unwrap();
        let child = super::host_run(&self.pipeline)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.hosts.insert(name.to_string(), KillOnDrop(Some(child)));
    }

    /// SIGKILL: no drain, no commit, no goodbye to the group.
    pub fn kill(&mut self, name: &str) {
        drop(self.hosts.remove(name).expect("a running host"));
    }

    /// SIGINT to every host, then waits for each to drain and exit.
    pub fn stop_all(&mut self) {
        for (name, host) in &mut self.hosts {
            let child = host.0.as_mut().expect("running");
            let status = super::interrupt(child, Duration::from_secs(90));
            assert!(status.success(), "{name} exited with {status}");
        }
        self.hosts.clear();
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// The standard run: three hosts start; once `progress()` reaches a quarter of `total`,
    /// `h2` is killed; at half, `h4` joins; returns when `progress()` reaches `total`.
    pub fn kill_one_add_one(
        &mut self,
        total: u64,
        timeout: Duration,
        mut progress: impl FnMut() -> u64,
    ) {
        for h in ["h1", "h2", "h3"] {
            self.start(h);
        }
        let mut wait = |what: &str, at: u64| {
            super::wait_until(what, timeout, Duration::from_millis(250), || {
                progress() >= at
            });
        };
        wait("a quarter delivered", total / 4);
        self.kill("h2");
        wait("half delivered", total / 2);
        self.start("h4");
        wait("everything delivered", total);
    }
}

/// Produces `count` generated tweets (`seed`) into a new `topic` of `partitions` partitions,
/// `rate` a second, from a host in the background.
pub fn produce_paced(
    dir: &Path,
    topic: &str,
    seed: u64,
    count: usize,
    partitions: u32,
    rate: u32,
) -> KillOnDrop {
    let p = dir.join(format!("produce-{topic}.toml"));
    let toml = super::kafka::producer_toml(
        &super::kafka_bootstrap(),
        topic,
        seed,
        count,
        partitions,
        &format!("rate = {rate}"),
    );
    std::fs::write(&p, toml).unwrap();
    let child = super::host_run(&p)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("produce.log")).unwrap())
        .spawn()
        .unwrap();
    KillOnDrop(Some(child))
}

/// Whether a host was given partitions (its log names some in an assignment).
pub fn was_assigned(log: &str) -> bool {
    log.lines()
        .any(|l| l.contains("partitions assigned: ") && !l.ends_with("partitions assigned: none"))
}
