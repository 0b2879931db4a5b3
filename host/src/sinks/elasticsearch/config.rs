//! `[sinks.NAME] type = "elasticsearch"`: the sink's settings and their checks.

use std::time::Duration;

use anyhow::Context;
use bytesize::ByteSize;
use elasticsearch::http::Url;
use serde::Deserialize;

use super::index::{IndexPattern, IndexTime};
use super::template::{TemplateConfig, template_body};
use crate::util::{Invalid, json_key};

/// `[sinks.NAME] type = "elasticsearch"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URL of the cluster, e.g. `http://127.0.0.1:9200`.
    pub url: String,
    /// Index name pattern in Logstash syntax: literal text plus `%{+FORMAT}` where FORMAT
    /// uses `YYYY` (or `yyyy`), `MM`, `dd` and `HH` (UTC) and punctuation, e.g.
    /// `twitter-%{+YYYYMMdd}` or `logs-%{+YYYY.MM.dd}`. A name without `%{+...}` is used as is.
    #[serde(default = "default_index")]
    pub index: String,
    /// Which time picks the index: the record's timestamp or the time of writing.
    #[serde(default)]
    pub index_time: IndexTime,
    /// Comma-separated JSON dot paths tried in order for the document `_id` (a string or an
    /// integer). Without one, Elasticsearch assigns an id and redelivery can duplicate.
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// Most documents per `_bulk` request. A batch smaller than `concurrency` full requests
    /// is spread evenly over `concurrency` requests, so they all run at once.
    #[serde(default = "default_bulk_max_docs")]
    pub bulk_max_docs: usize,
    /// Bytes per `_bulk` request (a single larger document is sent alone).
    #[serde(default = "default_bulk_max_bytes")]
    pub bulk_max_bytes: ByteSize,
    /// `_bulk` requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// First delay before retrying a transient failure; doubled on each failed round.
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest delay between retries.
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// Give up (the write, and so the pipeline, fails) once transient failures have lasted
    /// this long. Unset: retry for as long as it takes.
    #[serde(default, with = "humantime_serde")]
    pub retry_give_up: Option<Duration>,
    /// Client-side timeout of one HTTP request; a timed-out request is retried.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Gzip request bodies (saves bandwidth to a remote cluster; costs CPU).
    #[serde(default)]
    pub compress_requests: bool,
    /// Names of environment variables holding the basic-auth user and password (secrets never
    /// go in the pipeline file).
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    /// The index template created or updated at start.
    #[serde(default)]
    pub template: TemplateConfig,
}

fn default_index() -> String {
    "twitter-%{+YYYYMMdd}".into()
}
fn default_id_field() -> String {
    "id_str,data.id".into()
}
fn default_bulk_max_docs() -> usize {
    500
}
fn default_bulk_max_bytes() -> ByteSize {
    ByteSize::mib(5)
}
fn default_concurrency() -> usize {
    2
}
fn default_retry_initial() -> Duration {
    Duration::from_millis(100)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9200".into(),
            index: default_index(),
            index_time: IndexTime::default(),
            id_field: default_id_field(),
            bulk_max_docs: default_bulk_max_docs(),
            bulk_max_bytes: default_bulk_max_bytes(),
            concurrency: default_concurrency(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            retry_give_up: None,
            request_timeout: default_request_timeout(),
            compress_requests: false,
            username_env: None,
            password_env: None,
            template: TemplateConfig::default(),
        }
    }
}

impl ElasticsearchConfig {
    /// Checks every setting without touching the network (`host check` runs it, and so does
    /// [`ElasticsearchSink::connect`]). The error names the offending key, relative to the sink.
    pub fn validate(&self) -> Result<(), Invalid> {
        IndexPattern::parse(&self.index).map_err(|e| Invalid::new("index", format!("{e:#}")))?;
        base_url(&self.url).map_err(|e| Invalid::new("url", format!("{e:#}")))?;
        if self.bulk_max_docs == 0 {
            return Err(Invalid::new("bulk_max_docs", "must be at least 1"));
        }
        if self.concurrency == 0 {
            return Err(Invalid::new("concurrency", "must be at least 1"));
        }
        if self.bulk_max_bytes.as_u64() == 0 {
            return Err(Invalid::new("bulk_max_bytes", "must be above 0"));
        }
        json_key::check_paths("id_field", &self.id_field)?;
        if self.username_env.is_some() != self.password_env.is_some() {
            return Err(Invalid::new(
                "password_env",
                "set both `username_env` and `password_env`, or neither",
            ));
        }
        if self.template.enabled {
            if self.template.name.trim().is_empty() {
                return Err(Invalid::new("template.name", "must not be empty"));
            }
            if self.template.patterns.is_empty() {
                return Err(Invalid::new(
                    "template.patterns",
                    "needs at least one index pattern",
                ));
            }
            template_body(&self.template)
                .map_err(|e| Invalid::new("template.extra_mappings", format!("{e:#}")))?;
        }
        Ok(())
    }
}

/// The cluster's base URL, with the trailing slash that keeps a path prefix (a proxy's) when
/// API paths are joined on.
pub(super) fn base_url(url: &str) -> anyhow::Result<Url> {
    let url = url.trim_end_matches('/');
    Url::parse(&format!("{url}/")).with_context(|| format!("{url:?} is not a URL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_unknown_keys() {
        let c: ElasticsearchConfig =
            serde_json::from_str(r#"{"url":"http://127.0.0.1:9200"}"#).unwrap();
        assert_eq!(c.index, "twitter-%{+YYYYMMdd}");
        assert_eq!(c.bulk_max_bytes, ByteSize::mib(5));
        assert_eq!(c.template.total_fields_limit, 2000);
        assert!(c.template.enabled && c.retry_give_up.is_none());
        let c: ElasticsearchConfig = serde_json::from_str(
            r#"{"url":"u","index_time":"ingest","retry_give_up":"5m","bulk_max_bytes":"1 MiB",
                "template":{"refresh_interval":"30s","replicas":1}}"#,
        )
        .unwrap();
        assert_eq!(c.index_time, IndexTime::Ingest);
        assert_eq!(c.retry_give_up, Some(Duration::from_secs(300)));
        assert_eq!(c.template.refresh_interval, Some(Duration::from_secs(30)));
        assert_eq!(c.template.shards, 1);
        assert!(serde_json::from_str::<ElasticsearchConfig>(r#"{"url":"u","nope":1}"#).is_err());
        assert!(
            serde_json::from_str::<ElasticsearchConfig>(r#"{"url":"u","template":{"x":1}}"#)
                .is_err()
        );
    }
}
