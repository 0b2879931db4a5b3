//! Reading a host's `/metrics`, `/health` and `/ready` in tests.
#![allow(dead_code)]

use serde_json::Value;

use super::http;

/// One scrape of `/metrics` in the Prometheus text format.
pub struct Scrape(String);

impl Scrape {
    /// `GET http://ADDR/metrics`, or `None` while nothing answers.
    pub fn get(addr: &str) -> Option<Scrape> {
        match http::get_text(&format!("http://{addr}/metrics")) {
            Some((200, text)) => Some(Scrape(text)),
            _ => None,
        }
    }

    /// A scrape of this text (e.g. `Telemetry::encode` of an in-process pipeline).
    pub fn parse(text: String) -> Scrape {
        Scrape(text)
    }

    /// The sum of the samples of `name` whose labels include every one of `labels`; `None`
    /// when no sample matches.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for line in self.0.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            if metric != name {
                continue;
            }
            let matches = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            if matches && let Ok(v) = value.parse::<f64>() {
                *found.get_or_insert(0.0) += v;
            }
        }
        found
    }

    /// A stage's counter (`sluice_<what>_total{stage=...}`), 0 when absent.
    pub fn stage(&self, what: &str, stage: &str) -> f64 {
        self.value(&format!("sluice_{what}_total"), &[("stage", stage)])
            .unwrap_or(0.0)
    }

    pub fn text(&self) -> &str {
        &self.0
    }
}

/// `GET /ready`: the status and the JSON body.
pub fn ready(addr: &str) -> Option<(u16, Value)> {
    let (status, body) = http::get_text(&format!("http://{addr}/ready"))?;
    Some((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}
