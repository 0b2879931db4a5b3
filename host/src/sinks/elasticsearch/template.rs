//! The index template the sink creates or updates at start: settings, explicit mappings for
//! the known tweet fields (so nobody hits the 1000-field default), and the same dynamic
//! settings applied to indices that already exist.

use std::time::Duration;

use anyhow::{Context, bail};
use elasticsearch::Elasticsearch;
use elasticsearch::indices::{IndicesPutIndexTemplateParts, IndicesPutSettingsParts};
use serde::Deserialize;
use serde_json::{Value, json};

use super::response::body_reason;

/// `[sinks.NAME.template]`: the index template managed by the host.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemplateConfig {
    /// Create or update the template at start.
    pub enabled: bool,
    pub name: String,
    /// Index patterns the template applies to; they should cover `index`.
    pub patterns: Vec<String>,
    /// Template priority; overlapping templates need different priorities.
    pub priority: u32,
    pub shards: u32,
    /// The seed ran one node with 0 replicas (a replica could never be assigned there).
    pub replicas: u32,
    /// `index.mapping.total_fields.limit` (Elasticsearch's default is 1000).
    pub total_fields_limit: u64,
    /// `index.refresh_interval`; unset keeps the server's default (1s). Longer is faster to
    /// index, documents become searchable later.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Option<Duration>,
    /// A JSON object merged (recursively) into the template's `mappings`, e.g.
    /// `{"properties":{"user":{"properties":{"screen_name":{"type":"keyword"}}}}}`.
    pub extra_mappings: Option<String>,
    /// Also apply replicas, the field limit and the refresh interval to indices that already
    /// exist and match `patterns` (a template only affects indices created after it).
    pub apply_to_existing: bool,
    /// Fields the template does not map: `index` them as Elasticsearch guesses (dynamic
    /// mapping; each counts against `total_fields_limit`), or `store` them in `_source` only,
    /// not searchable (`dynamic: false`): no document is ever refused for its width.
    pub unmapped: Unmapped,
}

/// What happens to a field the template does not map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmapped {
    Index,
    Store,
}

impl Default for TemplateConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            name: "sluice-twitter".into(),
            patterns: vec!["twitter-*".into()],
            priority: 100,
            shards: 1,
            replicas: 0,
            total_fields_limit: 2000,
            refresh_interval: None,
            extra_mappings: None,
            apply_to_existing: true,
            unmapped: Unmapped::Index,
        }
    }
}

pub(super) async fn put_template(
    client: &Elasticsearch,
    url: &str,
    t: &TemplateConfig,
) -> anyhow::Result<()> {
    if t.patterns.is_empty() {
        bail!("elasticsearch sink: `template.patterns` is empty");
    }
    let body = template_body(t)?;
    let response = client
        .indices()
        .put_index_template(IndicesPutIndexTemplateParts::Name(&t.name))
        .body(&body)
        .send()
        .await
        .with_context(|| format!("Elasticsearch at {url} did not answer"))?;
    let status = response.status_code();
    if !status.is_success() {
        let text = response.bytes().await.unwrap_or_default();
        bail!(
            "Elasticsearch at {url} refused index template {:?}: HTTP {status}: {}",
            t.name,
            body_reason(&text)
        );
    }
    tracing::info!(name = %t.name, patterns = ?t.patterns, "elasticsearch index template put");

    if t.apply_to_existing {
        let patterns: Vec<&str> = t.patterns.iter().map(String::as_str).collect();
        let response = client
            .indices()
            .put_settings(IndicesPutSettingsParts::Index(&patterns))
            .allow_no_indices(true)
            .ignore_unavailable(true)
            .body(json!({ "index": dynamic_settings(t) }))
            .send()
            .await
            .with_context(|| format!("Elasticsearch at {url} did not answer"))?;
        let status = response.status_code();
        if !status.is_success() {
            let text = response.bytes().await.unwrap_or_default();
            bail!(
                "Elasticsearch at {url} refused the settings of existing indices {patterns:?}: \
                 HTTP {status}: {}",
                body_reason(&text)
            );
        }
    }
    Ok(())
}

/// The settings that can change on an existing index.
fn dynamic_settings(t: &TemplateConfig) -> Value {
    let mut s = json!({
        "number_of_replicas": t.replicas,
        "mapping": { "total_fields": { "limit": t.total_fields_limit } },
    });
    if let Some(r) = t.refresh_interval {
        s["refresh_interval"] = Value::String(format!("{}ms", r.as_millis()));
    }
    s
}

/// The `PUT _index_template/NAME` body.
pub fn template_body(t: &TemplateConfig) -> anyhow::Result<Value> {
    let mut settings = dynamic_settings(t);
    settings["number_of_shards"] = json!(t.shards);
    let mut mappings = tweet_mappings();
    if t.unmapped == Unmapped::Store {
        mappings["dynamic"] = json!(false);
    }
    if let Some(extra) = t.extra_mappings.as_deref().filter(|s| !s.trim().is_empty()) {
        let extra: Value = serde_json::from_str(extra).context("not JSON")?;
        if !extra.is_object() {
            bail!("must be a JSON object");
        }
        merge(&mut mappings, extra);
    }
    Ok(json!({
        "index_patterns": t.patterns,
        "priority": t.priority,
        "template": { "settings": { "index": settings }, "mappings": mappings },
        "_meta": { "managed_by": "sluice" },
    }))
}

/// Explicit mappings for the tweet fields people search and chart, for API v1.1 and v2
/// tweets and the `enrich` plugin's fields (`@timestamp`, `sluice.*`). Everything else is
/// mapped dynamically, or only kept in `_source` (`unmapped = "store"`).
fn tweet_mappings() -> Value {
    let keyword = || json!({ "type": "keyword" });
    let text = || json!({ "type": "text" });
    let long = || json!({ "type": "long" });
    // v1.1: "Wed Oct 10 20:19:24 +0000 2018"; also accepts ISO dates.
    let v1_date = || json!({ "type": "date", "format": "EEE MMM dd HH:mm:ss Z yyyy||strict_date_optional_time" });
    let iso_date =
        || json!({ "type": "date", "format": "strict_date_optional_time||epoch_millis" });
    let object = |props: Value| json!({ "properties": props });
    json!({
        "properties": {
            "@timestamp": { "type": "date" },
            "id_str": keyword(),
            "created_at": v1_date(),
            "timestamp_ms": { "type": "date", "format": "epoch_millis" },
            "text": text(),
            "full_text": text(),
            "lang": keyword(),
            "in_reply_to_status_id_str": keyword(),
            "in_reply_to_user_id_str": keyword(),
            "retweet_count": long(),
            "favorite_count": long(),
            "extended_tweet": object(json!({ "full_text": text() })),
            "entities": object(json!({
                "hashtags": object(json!({ "text": keyword() })),
                "user_mentions": object(json!({ "screen_name": keyword() })),
            })),
            "user": object(json!({
                "id_str": keyword(),
                "screen_name": keyword(),
                "name": text(),
                "followers_count": long(),
                "created_at": v1_date(),
            })),
            "retweeted_status": object(json!({ "id_str": keyword() })),
            "quoted_status": object(json!({ "id_str": keyword() })),
            "data": object(json!({
                "id": keyword(),
                "text": text(),
                "author_id": keyword(),
                "conversation_id": keyword(),
                "lang": keyword(),
                "created_at": iso_date(),
                "note_tweet": object(json!({ "text": text() })),
                "entities": object(json!({
                    "hashtags": object(json!({ "tag": keyword() })),
                    "mentions": object(json!({ "username": keyword() })),
                })),
                "public_metrics": object(json!({
                    "retweet_count": long(),
                    "reply_count": long(),
                    "like_count": long(),
                    "quote_count": long(),
                })),
            })),
            "includes": object(json!({
                "users": object(json!({ "id": keyword(), "username": keyword() })),
            })),
            "matching_rules": object(json!({ "tag": keyword() })),
            "sluice": object(json!({
                "hashtags": keyword(),
                "mentions": keyword(),
                "matched_keywords": keyword(),
                "tweet_url": keyword(),
                "shape": keyword(),
                "is_retweet": { "type": "boolean" },
                "is_quote": { "type": "boolean" },
                "text_length": { "type": "integer" },
            })),
        }
    })
}

/// Merges `extra` into `base`: objects key by key, anything else replaces.
fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub(super) fn wildcard_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(at) => rest = &rest[at + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("twitter-*", "twitter-20261126"));
        assert!(!wildcard_match("twitter-*", "logs-20261126"));
        assert!(wildcard_match("*-2026*", "x-20261126"));
        assert!(wildcard_match("exact", "exact"));
        assert!(!wildcard_match("a*b*c", "abx"));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
    }

    #[test]
    fn template_merges_extra_mappings() {
        let t = TemplateConfig {
            extra_mappings: Some(
                r#"{"properties":{"user":{"properties":{"name":{"type":"text"}}},"text":{"type":"keyword"}},"dynamic":"true"}"#
                    .into(),
            ),
            refresh_interval: Some(Duration::from_secs(5)),
            ..TemplateConfig::default()
        };
        let b = template_body(&t).unwrap();
        let m = &b["template"]["mappings"];
        assert_eq!(
            m["properties"]["user"]["properties"]["name"]["type"],
            "text"
        );
        assert_eq!(
            m["properties"]["user"]["properties"]["id_str"]["type"],
            "keyword"
        );
        assert_eq!(m["properties"]["text"]["type"], "keyword");
        assert_eq!(m["dynamic"], "true");
        let s = &b["template"]["settings"]["index"];
        assert_eq!(s["mapping"]["total_fields"]["limit"], 2000);
        assert_eq!(s["number_of_replicas"], 0);
        assert_eq!(s["refresh_interval"], "5000ms");
        assert_eq!(b["index_patterns"], json!(["twitter-*"]));
        assert!(
            b["template"]["mappings"].get("dynamic").is_some(),
            "extra sets it here"
        );
        let store = TemplateConfig {
            unmapped: Unmapped::Store,
            ..TemplateConfig::default()
        };
        let b = template_body(&store).unwrap();
        assert_eq!(b["template"]["mappings"]["dynamic"], false);
        let index = template_body(&TemplateConfig::default()).unwrap();
        assert!(index["template"]["mappings"].get("dynamic").is_none());
        let bad = TemplateConfig {
            extra_mappings: Some("[1]".into()),
            ..TemplateConfig::default()
        };
        assert!(template_body(&bad).is_err());
    }
}
