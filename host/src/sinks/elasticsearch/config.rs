//! `[sinks.NAME] type = "elasticsearch"`: the sink's settings and their checks.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bytesize::ByteSize;
use elasticsearch::http::Url;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::index::{IndexPattern, IndexTime};
use super::template::{TemplateConfig, template_body};
use crate::util::secret::inline_secret;
use crate::util::{Invalid, SecretRef, json_key};

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
    /// Longest a record waits in the sink for fuller requests: batches are gathered until
    /// they fill `concurrency` requests, so small pipeline batches still send large ones
    /// (fewer round trips to a remote cluster). Their offsets are committed once written.
    /// `0s`, the default, writes each batch as it comes.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
    /// First delay before retrying a transient failure; doubled on each failed round.
    #[serde(default = "default_retry_initial", with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Longest delay between retries.
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
    /// Give up once transient failures have lasted this long: the documents not yet written
    /// are dead-lettered with the last error, and the pipeline goes on. Unset: retry for as
    /// long as it takes.
    #[serde(default, with = "humantime_serde")]
    pub retry_give_up: Option<Duration>,
    /// Client-side timeout of one HTTP request; a timed-out request is retried.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Gzip request bodies (saves bandwidth to a remote cluster; costs CPU).
    #[serde(default)]
    pub compress_requests: bool,
    /// Basic auth: the user, written here or read from an environment variable, and the
    /// password from an environment variable or a file (never from the pipeline file).
    pub username: Option<String>,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// An API key instead of basic auth: `id:key`, or the base64 form that Kibana and Elastic
    /// Cloud show, from an environment variable or a file.
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    /// PEM file of the CA(s) that signed the cluster's certificate, trusted besides the
    /// system's (a self-managed cluster's own CA).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and its unencrypted key, for clusters that require mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Verify the cluster's certificate and that it names the host in `url`. Off only to
    /// diagnose: anyone on the path can then read and change what is sent.
    #[serde(default = "default_tls_verify")]
    pub tls_verify: bool,
    /// Never accepted (secrets are not written in the pipeline file); here so the refusal can
    /// say what to write instead.
    pub password: Option<IgnoredAny>,
    pub api_key: Option<IgnoredAny>,
    /// The index template created or updated at start.
    #[serde(default)]
    pub template: TemplateConfig,
}

fn default_tls_verify() -> bool {
    true
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
fn default_linger() -> Duration {
    Duration::ZERO
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
            linger: default_linger(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            retry_give_up: None,
            request_timeout: default_request_timeout(),
            compress_requests: false,
            username: None,
            username_env: None,
            password_env: None,
            password_file: None,
            api_key_env: None,
            api_key_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            tls_verify: true,
            password: None,
            api_key: None,
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
        self.validate_connection()?;
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

impl ElasticsearchConfig {
    pub(super) fn password_ref(&self) -> SecretRef<'_> {
        SecretRef::new("password", &self.password_env, &self.password_file)
    }

    pub(super) fn api_key_ref(&self) -> SecretRef<'_> {
        SecretRef::new("api_key", &self.api_key_env, &self.api_key_file)
    }

    /// The same settings with relative file paths taken from `base` (the pipeline file's
    /// directory).
    pub fn relative_to(&self, base: &std::path::Path) -> Self {
        let join = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
        Self {
            password_file: join(&self.password_file),
            api_key_file: join(&self.api_key_file),
            ca_file: join(&self.ca_file),
            cert_file: join(&self.cert_file),
            key_file: join(&self.key_file),
            ..self.clone()
        }
    }

    /// Credentials and TLS settings: one way to authenticate, secrets never inline, TLS
    /// settings only for an `https` URL.
    fn validate_connection(&self) -> Result<(), Invalid> {
        if self.password.is_some() {
            return Err(inline_secret("password"));
        }
        if self.api_key.is_some() {
            return Err(inline_secret("api_key"));
        }
        let url = base_url(&self.url).map_err(|e| Invalid::new("url", format!("{e:#}")))?;
        if url.password().is_some() || !url.username().is_empty() {
            return Err(Invalid::new(
                "url",
                "credentials do not go in the URL (it is logged): use `username` with \
                 `password_env` or `password_file`, or `api_key_env`",
            ));
        }
        let (password, api_key) = (self.password_ref(), self.api_key_ref());
        password.validate()?;
        api_key.validate()?;
        let user = self.username.is_some() || self.username_env.is_some();
        if self.username.is_some() && self.username_env.is_some() {
            return Err(Invalid::new(
                "username_env",
                "set `username` or `username_env`, not both",
            ));
        }
        if user != password.is_set() {
            return Err(Invalid::new(
                "password_env",
                "basic auth needs a user (`username` or `username_env`) and a password \
                 (`password_env` or `password_file`)",
            ));
        }
        if user && api_key.is_set() {
            return Err(Invalid::new(
                "api_key_env",
                "set an API key or basic auth, not both",
            ));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(Invalid::new(
                "key_file",
                "set both `cert_file` and `key_file` (mutual TLS), or neither",
            ));
        }
        if url.scheme() != "https" {
            let tls_only = [
                ("ca_file", self.ca_file.is_some()),
                ("cert_file", self.cert_file.is_some()),
                ("tls_verify", !self.tls_verify),
            ];
            if let Some((key, _)) = tls_only.iter().find(|(_, set)| *set) {
                return Err(Invalid::new(
                    *key,
                    format!("is a TLS setting, and `url` is not https: {}", self.url),
                ));
            }
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
    fn credentials_and_tls_settings_are_checked() {
        let key = |json: &str| {
            serde_json::from_str::<ElasticsearchConfig>(json)
                .unwrap()
                .validate()
                .unwrap_err()
                .key
        };
        assert_eq!(key(r#"{"url":"https://h","password":"x"}"#), "password");
        assert_eq!(key(r#"{"url":"https://h","api_key":"x"}"#), "api_key");
        assert_eq!(key(r#"{"url":"https://u:p@h"}"#), "url");
        assert_eq!(key(r#"{"url":"https://h","username":"u"}"#), "password_env");
        assert_eq!(
            key(r#"{"url":"https://h","username":"u","password_env":"P","api_key_env":"K"}"#),
            "api_key_env"
        );
        assert_eq!(
            key(r#"{"url":"https://h","api_key_env":"K","api_key_file":"f"}"#),
            "api_key_file"
        );
        assert_eq!(key(r#"{"url":"http://h","ca_file":"ca.pem"}"#), "ca_file");
        assert_eq!(
            key(r#"{"url":"https://h","cert_file":"c.pem"}"#),
            "key_file"
        );
        let ok: ElasticsearchConfig = serde_json::from_str(
            r#"{"url":"https://h","api_key_file":"k","ca_file":"ca.pem","cert_file":"c","key_file":"k"}"#,
        )
        .unwrap();
        assert!(ok.validate().is_ok() && ok.tls_verify);
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let c: ElasticsearchConfig =
            serde_json::from_str(r#"{"url":"http://127.0.0.1:9200"}"#).unwrap();
        assert_eq!(c.index, "twitter-%{+YYYYMMdd}");
        assert_eq!(c.bulk_max_bytes, ByteSize::mib(5));
        assert_eq!(c.template.total_fields_limit, 2000);
        assert!(c.template.enabled && c.retry_give_up.is_none());
        assert_eq!(c.linger, Duration::ZERO);
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
