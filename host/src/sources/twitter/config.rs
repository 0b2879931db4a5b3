//! The `[source] type = "twitter"` options: defaults, checks, and the URLs they make. A leaf of
//! its own because the rules and the stream both read it.

use std::time::Duration;

use anyhow::Context;
use reqwest::Url;
use serde::Deserialize;

use crate::sources::spool::SpoolConfig;
use crate::util::Invalid;

pub(super) const STREAM_PATH: &str = "/2/tweets/search/stream";
/// Longest rule the API accepts at the basic level.
const MAX_RULE_LEN: usize = 512;

/// `[source] type = "twitter"` options.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwitterConfig {
    /// API root; point it at a local simulator in tests.
    pub base_url: String,
    /// Name of the environment variable that holds the bearer token.
    pub bearer_token_env: String,
    /// Each keyword becomes one stream rule with `value = tag = keyword` (any rule expression
    /// works, e.g. `bts lang:en`).
    pub keywords: Vec<String>,
    /// `tweet.fields` of the stream request.
    pub tweet_fields: Vec<String>,
    /// `expansions` of the stream request.
    pub expansions: Vec<String>,
    /// `user.fields` of the stream request.
    pub user_fields: Vec<String>,
    /// `media.fields` of the stream request.
    pub media_fields: Vec<String>,
    /// `place.fields` of the stream request.
    pub place_fields: Vec<String>,
    /// `poll.fields` of the stream request.
    pub poll_fields: Vec<String>,
    /// A connection on which nothing (not even a keep-alive) arrives for this long is reopened.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// TCP/TLS connect timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Timeout of one rules request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Multiplies every documented backoff (tests use e.g. 0.01); 1.0 in production.
    pub backoff_scale: f64,
    /// No single wait between reconnects is longer than this.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Ask every connect for the tweets of up to this many minutes before it (1 to 5; 0: do
    /// not ask), so that a reconnect or a restart recovers what was sent while the stream was
    /// down. Needs an access level that has the parameter; the overlap arrives twice and is
    /// dropped by `dedup_window`.
    pub backfill_minutes: u32,
    /// Tweet ids remembered to drop the ones a backfill sends again (0: none).
    pub dedup_window: usize,
    /// `[source.spool]`: read the stream into a disk spool, so that a crash or a slow sink
    /// loses nothing the stream delivered.
    pub spool: Option<SpoolConfig>,
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Default for TwitterConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.twitter.com".to_string(),
            bearer_token_env: "TWITTER_BEARER_TOKEN".to_string(),
            keywords: Vec::new(),
            tweet_fields: strings(&[
                "attachments",
                "author_id",
                "context_annotations",
                "conversation_id",
                "created_at",
                "edit_controls",
                "entities",
                "geo",
                "in_reply_to_user_id",
                "lang",
                "note_tweet",
                "possibly_sensitive",
                "public_metrics",
                "referenced_tweets",
                "reply_settings",
                "source",
                "withheld",
            ]),
            expansions: strings(&[
                "author_id",
                "referenced_tweets.id",
                "referenced_tweets.id.author_id",
                "in_reply_to_user_id",
                "attachments.media_keys",
                "attachments.poll_ids",
                "geo.place_id",
                "entities.mentions.username",
                "edit_history_tweet_ids",
            ]),
            user_fields: strings(&[
                "created_at",
                "description",
                "entities",
                "location",
                "name",
                "pinned_tweet_id",
                "profile_image_url",
                "protected",
                "public_metrics",
                "url",
                "username",
                "verified",
                "verified_type",
                "withheld",
            ]),
            media_fields: strings(&[
                "alt_text",
                "duration_ms",
                "height",
                "media_key",
                "preview_image_url",
                "public_metrics",
                "type",
                "url",
                "variants",
                "width",
            ]),
            place_fields: strings(&[
                "contained_within",
                "country",
                "country_code",
                "full_name",
                "geo",
                "id",
                "name",
                "place_type",
            ]),
            poll_fields: strings(&[
                "duration_minutes",
                "end_datetime",
                "id",
                "options",
                "voting_status",
            ]),
            stall_timeout: Duration::from_secs(90),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            backoff_scale: 1.0,
            max_backoff: Duration::from_secs(15 * 60),
            backfill_minutes: 0,
            dedup_window: 50_000,
            spool: None,
        }
    }
}

impl TwitterConfig {
    /// Checks the options; the error names the offending key.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.keywords.iter().all(|k| k.trim().is_empty()) {
            return Err(Invalid::new(
                "keywords",
                "is empty: the stream would deliver nothing",
            ));
        }
        if let Some(k) = self.keywords.iter().find(|k| k.trim().len() > MAX_RULE_LEN) {
            return Err(Invalid::new(
                "keywords",
                format!("{k:?} is longer than {MAX_RULE_LEN} characters"),
            ));
        }
        Invalid::non_empty("bearer_token_env", &self.bearer_token_env)?;
        if !(self.backoff_scale.is_finite() && self.backoff_scale > 0.0) {
            return Err(Invalid::new(
                "backoff_scale",
                format!("must be a positive number, got {}", self.backoff_scale),
            ));
        }
        if self.stall_timeout.is_zero() {
            return Err(Invalid::new("stall_timeout", "must be more than zero"));
        }
        if let Err(e) = Url::parse(&self.base_url) {
            return Err(Invalid::new(
                "base_url",
                format!("{:?} is not a URL: {e}", self.base_url),
            ));
        }
        if self.backfill_minutes > 5 {
            return Err(Invalid::new(
                "backfill_minutes",
                format!(
                    "is {}: the API gives at most 5 minutes",
                    self.backfill_minutes
                ),
            ));
        }
        if let Some(spool) = &self.spool {
            spool.validate().map_err(|e| e.within("spool"))?;
        }
        Ok(())
    }

    /// The configured keywords, trimmed, without blanks and duplicates, in order.
    pub(super) fn wanted_rules(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for k in &self.keywords {
            let k = k.trim();
            if !k.is_empty() && !out.iter().any(|o| o == k) {
                out.push(k.to_string());
            }
        }
        out
    }

    pub(super) fn url(&self, path: &str) -> anyhow::Result<Url> {
        let base = self.base_url.trim_end_matches('/');
        Url::parse(&format!("{base}{path}")).with_context(|| {
            format!(
                "twitter source: `base_url` {:?} is not a URL",
                self.base_url
            )
        })
    }

    pub(super) fn stream_url(&self) -> anyhow::Result<Url> {
        let mut url = self.url(STREAM_PATH)?;
        {
            let mut q = url.query_pairs_mut();
            for (name, list) in [
                ("tweet.fields", &self.tweet_fields),
                ("expansions", &self.expansions),
                ("user.fields", &self.user_fields),
                ("media.fields", &self.media_fields),
                ("place.fields", &self.place_fields),
                ("poll.fields", &self.poll_fields),
            ] {
                if !list.is_empty() {
                    q.append_pair(name, &list.join(","));
                }
            }
            if self.backfill_minutes > 0 {
                q.append_pair("backfill_minutes", &self.backfill_minutes.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn stream_url_carries_the_fields() {
        let cfg = TwitterConfig {
            base_url: "http://127.0.0.1:9/".into(),
            keywords: vec!["bts".into()],
            ..TwitterConfig::default()
        };
        let url = cfg.stream_url().unwrap();
        assert_eq!(url.path(), STREAM_PATH);
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(
            q.iter()
                .any(|(k, v)| k == "tweet.fields" && v.contains("created_at"))
        );
        assert!(
            q.iter()
                .any(|(k, v)| k == "expansions" && v.contains("author_id"))
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = TwitterConfig::default();
        assert!(bad.validate().unwrap_err().to_string().contains("keywords"));
        let bad = TwitterConfig {
            keywords: vec!["bts".into()],
            backoff_scale: 0.0,
            ..TwitterConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("backoff_scale")
        );
        let cfg: TwitterConfig =
            serde_json::from_value(json!({"keywords": ["bts"], "stall_timeout": "5s"})).unwrap();
        assert_eq!(cfg.stall_timeout, Duration::from_secs(5));
        assert!(serde_json::from_value::<TwitterConfig>(json!({"bearer_token": "x"})).is_err());
    }
}
