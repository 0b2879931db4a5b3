//! Enrichment: derives search-friendly fields from a tweet of either shape.
//!
//! Two paths derive the same fields. The fast path streams over the document (see
//! `facts.rs`), builds no JSON tree, and splices the derived fields in before the closing
//! brace, so the original bytes are kept as they are. The `Value` path parses the document,
//! merges the fields and re-serializes it; it is taken when the document already has
//! `@timestamp` or the target key (fields must be replaced or merged, not duplicated), and
//! when the fast path's strict structures meet unexpected types.

use serde_json::{Map, Value};

use crate::config::Config;
use crate::facts::{self, Kind, TopLevel, TopLevelSeed, text};
use crate::json;
use crate::keyword::KeywordSearch;
use crate::time;
use crate::tweet::{Shape, get_in, get_str, id_string, objects};
use crate::{Outcome, Transform};

/// Adds derived fields to a tweet: `@timestamp` at the top level, and `hashtags`, `mentions`,
/// `matched_keywords`, `tweet_url`, `is_retweet`, `is_quote`, `text_length` and `shape` in
/// the `target` object. See the crate's README for the config keys and the exact rules.
#[derive(Debug, Clone)]
pub struct Enrich {
    search: Option<KeywordSearch>,
    target: String,
}

const KEYS: &[&str] = &[
    "keywords",
    "fields",
    "case_sensitive",
    "whole_word",
    "target",
];

const TIMESTAMP: &str = "@timestamp";

impl Transform for Enrich {
    fn from_config(config: &[(String, String)]) -> Result<Self, String> {
        let c = Config::new(config, KEYS)?;
        let target = c.get("target").map_or("sluice", str::trim).to_string();
        if target.is_empty() || target == TIMESTAMP {
            return Err(format!(
                "config key `target`: {target:?} cannot hold the derived fields"
            ));
        }
        Ok(Enrich {
            search: KeywordSearch::from_config(&c)?,
            target,
        })
    }

    fn apply(&self, value: &[u8]) -> Outcome {
        match self.apply_streaming(value) {
            Some(outcome) => outcome,
            None => self.apply_tree(value),
        }
    }

    fn summary(&self) -> String {
        let keywords = match &self.search {
            Some(search) => format!("matched_keywords from {}", search.describe()),
            None => "no keywords".to_string(),
        };
        format!("derived fields in `{}`, {keywords}", self.target)
    }
}

impl Enrich {
    /// The fast path; `None` hands the record over to the `Value` path.
    fn apply_streaming(&self, value: &[u8]) -> Option<Outcome> {
        let text = match json::utf8(value).and_then(json::object_start) {
            Ok(text) => text,
            Err(reason) => return Some(Outcome::Fail(reason)),
        };
        let seed = TopLevelSeed {
            target: &self.target,
        };
        let top = match json::with_fast(text, seed) {
            Some(top) => top,
            None => match json::with_serde(text, seed) {
                Ok(top) => top,
                Err(e) if facts::is_data_error(&e) => return None,
                Err(e) => return Some(Outcome::Fail(json::json_error(e))),
            },
        };
        if top.has_timestamp || top.has_target {
            return None;
        }
        let (shape, facts) = streamed_facts(&top);
        let matched = match &self.search {
            None => None,
            Some(search) => {
                let mut found = vec![false; search.matcher.len()];
                let walked = json::walk_strings(text, &search.trie, &mut |s: &str| {
                    search.matcher.mark_matches(s, &mut found);
                });
                if let Err(reason) = walked {
                    return Some(Outcome::Fail(reason));
                }
                Some(matched_keywords(search, &found))
            }
        };
        let (timestamp, derived) = build(shape, facts, matched);

        // Splice `,"@timestamp":"...","<target>":{...}` in before the closing brace.
        let close = text
            .bytes()
            .rposition(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))?;
        let mut out = Vec::with_capacity(value.len() + 256);
        out.extend_from_slice(&value[..close]);
        let mut first = top.keys == 0;
        let mut field = |out: &mut Vec<u8>, key: &str, v: &Value| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            // Writing to a Vec cannot fail, and JSON values always serialize.
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            let _ = serde_json::to_writer(&mut *out, v);
        };
        if let Some(ts) = &timestamp {
            field(&mut out, TIMESTAMP, ts);
        }
        field(&mut out, &self.target, &Value::Object(derived));
        out.extend_from_slice(&value[close..]);
        Some(Outcome::SetValue(out))
    }

    /// The `Value` path.
    fn apply_tree(&self, value: &[u8]) -> Outcome {
        let mut doc = match json::parse_object(value) {
            Ok(doc) => doc,
            Err(reason) => return Outcome::Fail(reason),
        };
        let shape = Shape::of(&doc);
        let facts = match shape {
            Shape::V1 => v1_facts(&doc),
            Shape::V2 => v2_facts(&doc),
            Shape::Unknown => Facts::default(),
        };
        let matched = self.search.as_ref().map(|search| {
            let mut found = vec![false; search.matcher.len()];
            json::for_each_string_in(&doc, &search.trie, &mut |s: &str| {
                search.matcher.mark_matches(s, &mut found);
            });
            matched_keywords(search, &found)
        });
        let (timestamp, derived) = build(shape, facts, matched);
        let mut changed = false;
        if let Some(ts) = timestamp
            && doc.get(TIMESTAMP) != Some(&ts)
        {
            doc.insert(TIMESTAMP.to_string(), ts);
            changed = true;
        }
        match doc.get_mut(&self.target) {
            Some(Value::Object(existing)) => {
                for (key, value) in derived {
                    if existing.get(&key) != Some(&value) {
                        existing.insert(key, value);
                        changed = true;
                    }
                }
            }
            _ => {
                doc.insert(self.target.clone(), Value::Object(derived));
                changed = true;
            }
        }
        if !changed {
            return Outcome::Keep;
        }
        match serde_json::to_vec(&doc) {
            Ok(bytes) => Outcome::SetValue(bytes),
            Err(e) => Outcome::Fail(format!("cannot serialize the enriched document: {e}")),
        }
    }
}

fn matched_keywords(search: &KeywordSearch, found: &[bool]) -> Vec<String> {
    found
        .iter()
        .enumerate()
        .filter(|(_, f)| **f)
        .map(|(i, _)| search.matcher.keyword(i).to_string())
        .collect()
}

/// The `@timestamp` value, if any, and the derived fields for the target object.
fn build(
    shape: Shape,
    facts: Facts<'_>,
    matched: Option<Vec<String>>,
) -> (Option<Value>, Map<String, Value>) {
    let mut out = Map::new();
    out.insert("hashtags".into(), strings(facts.hashtags));
    out.insert("mentions".into(), strings(facts.mentions));
    if let Some(matched) = matched {
        out.insert("matched_keywords".into(), strings(matched));
    }
    if let Some(id) = facts.id {
        let author = facts.author.unwrap_or("i/web");
        out.insert(
            "tweet_url".into(),
            Value::String(format!("https://twitter.com/{author}/status/{id}")),
        );
    }
    out.insert("is_retweet".into(), Value::Bool(facts.is_retweet));
    out.insert("is_quote".into(), Value::Bool(facts.is_quote));
    if let Some(text) = facts.full_text {
        out.insert("text_length".into(), Value::from(text.chars().count()));
    }
    out.insert("shape".into(), Value::String(shape.name().to_string()));
    let timestamp = facts
        .epoch_millis
        .and_then(time::format_iso_millis)
        .map(Value::String);
    (timestamp, out)
}

/// What enrich learns from a tweet, whatever its shape and whichever path read it.
#[derive(Default)]
struct Facts<'a> {
    hashtags: Vec<String>,
    mentions: Vec<String>,
    id: Option<String>,
    author: Option<&'a str>,
    is_retweet: bool,
    is_quote: bool,
    full_text: Option<&'a str>,
    epoch_millis: Option<i64>,
}

fn strings(items: Vec<String>) -> Value {
    Value::Array(items.into_iter().map(Value::String).collect())
}

/// Adds `value` lowercased unless already present.
fn push_folded(list: &mut Vec<String>, value: &str) {
    if value.is_empty() {
        return;
    }
    let folded = value.to_lowercase();
    if !list.contains(&folded) {
        list.push(folded);
    }
}

// ---- the streaming path ----

fn streamed_facts<'a>(top: &'a TopLevel<'a>) -> (Shape, Facts<'a>) {
    let mut facts = Facts::default();
    if let Some(data) = &top.data {
        let references = || {
            data.referenced_tweets
                .iter()
                .flatten()
                .filter_map(|r| Some((text(&r.kind)?, text(&r.id)?)))
        };
        let retweeted_id = references()
            .find(|(kind, _)| *kind == "retweeted")
            .map(|(_, id)| id);
        let included = top.includes.as_ref();
        let retweeted = retweeted_id.and_then(|id| {
            included?
                .tweets
                .iter()
                .flatten()
                .find(|t| text(&t.id) == Some(id))
        });
        let own = [
            data.entities.as_ref(),
            data.note_tweet.as_ref().and_then(|n| n.entities.as_ref()),
        ];
        let theirs = [
            retweeted.and_then(|t| t.entities.as_ref()),
            retweeted.and_then(|t| t.note_tweet.as_ref()?.entities.as_ref()),
        ];
        for entities in own.into_iter().chain(theirs).flatten() {
            entities
                .v2_hashtags()
                .for_each(|h| push_folded(&mut facts.hashtags, h));
            entities
                .v2_mentions()
                .for_each(|m| push_folded(&mut facts.mentions, m));
        }
        facts.id = text(&data.id).filter(|s| !s.is_empty()).map(str::to_string);
        facts.author = text(&data.author_id)
            .and_then(|author| {
                included?
                    .users
                    .iter()
                    .flatten()
                    .find(|u| text(&u.id) == Some(author))
            })
            .and_then(|u| text(&u.username))
            .filter(|s| !s.is_empty());
        facts.is_retweet = retweeted_id.is_some();
        facts.is_quote = references().any(|(kind, _)| kind == "quoted");
        facts.full_text = data
            .note_tweet
            .as_ref()
            .and_then(|n| text(&n.text))
            .or_else(|| text(&data.text));
        facts.epoch_millis = text(&data.created_at).and_then(time::parse_rfc3339);
        return (Shape::V2, facts);
    }
    if !top.v1_marker {
        return (Shape::Unknown, facts);
    }
    let rt = top.retweeted_status.as_ref();
    let all = [
        top.entities.as_ref(),
        top.extended_tweet
            .as_ref()
            .and_then(|e| e.entities.as_ref()),
        rt.and_then(|s| s.entities.as_ref()),
        rt.and_then(|s| s.extended_tweet.as_ref()?.entities.as_ref()),
    ];
    for entities in all.into_iter().flatten() {
        entities
            .v1_hashtags()
            .for_each(|h| push_folded(&mut facts.hashtags, h));
        entities
            .v1_mentions()
            .for_each(|m| push_folded(&mut facts.mentions, m));
    }
    let id = |id: &'a Option<facts::Id<'a>>| id.as_ref().and_then(|i| i.0.as_deref());
    facts.id = id(&top.id_str).or_else(|| id(&top.id)).map(str::to_string);
    facts.author = top
        .user
        .as_ref()
        .and_then(|u| text(&u.screen_name))
        .filter(|s| !s.is_empty());
    facts.is_retweet = rt.is_some();
    facts.is_quote =
        top.is_quote_status == Some(Kind::True) || top.quoted_status == Some(Kind::Object);
    facts.full_text = top
        .extended_tweet
        .as_ref()
        .and_then(|e| text(&e.full_text))
        .or_else(|| text(&top.full_text))
        .or_else(|| text(&top.text));
    facts.epoch_millis = text(&top.created_at)
        .and_then(time::parse_twitter_v1)
        .or_else(|| top.timestamp_ms.as_ref()?.0);
    (Shape::V1, facts)
}

// ---- the Value path ----

/// Collects `field` of each object of the array `entities.<kind>`.
fn collect(list: &mut Vec<String>, entities: Option<&Value>, kind: &str, field: &str) {
    let items = entities.and_then(|e| e.get(kind));
    for item in objects(items) {
        if let Some(value) = item.get(field).and_then(Value::as_str) {
            push_folded(list, value);
        }
    }
}

fn v1_facts(doc: &Map<String, Value>) -> Facts<'_> {
    let retweeted = doc.get("retweeted_status").and_then(Value::as_object);
    let mut facts = Facts::default();
    // A retweet's own entities cover its truncated "RT @user: ..." text; the retweeted
    // status has the rest.
    for status in std::iter::once(doc).chain(retweeted) {
        for entities in [
            status.get("entities"),
            get_in(status, "extended_tweet.entities"),
        ] {
            collect(&mut facts.hashtags, entities, "hashtags", "text");
            collect(
                &mut facts.mentions,
                entities,
                "user_mentions",
                "screen_name",
            );
        }
    }
    facts.id = id_string(doc.get("id_str")).or_else(|| id_string(doc.get("id")));
    facts.author = get_str(doc, "user.screen_name").filter(|s| !s.is_empty());
    facts.is_retweet = retweeted.is_some();
    facts.is_quote = doc.get("is_quote_status") == Some(&Value::Bool(true))
        || doc.get("quoted_status").is_some_and(Value::is_object);
    facts.full_text = get_str(doc, "extended_tweet.full_text")
        .or_else(|| get_str(doc, "full_text"))
        .or_else(|| get_str(doc, "text"));
    facts.epoch_millis = get_str(doc, "created_at")
        .and_then(time::parse_twitter_v1)
        .or_else(|| match doc.get("timestamp_ms")? {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_i64(),
            _ => None,
        });
    facts
}

fn v2_facts(doc: &Map<String, Value>) -> Facts<'_> {
    let mut facts = Facts::default();
    let Some(data) = doc.get("data").and_then(Value::as_object) else {
        return facts;
    };
    let references: Vec<(&str, &str)> = objects(data.get("referenced_tweets"))
        .filter_map(|r| Some((r.get("type")?.as_str()?, r.get("id")?.as_str()?)))
        .collect();
    let retweeted_id = references
        .iter()
        .find(|(kind, _)| *kind == "retweeted")
        .map(|(_, id)| *id);
    let retweeted = retweeted_id.and_then(|id| {
        objects(get_in(doc, "includes.tweets"))
            .find(|t| t.get("id").and_then(Value::as_str) == Some(id))
    });
    for tweet in std::iter::once(data).chain(retweeted) {
        for entities in [tweet.get("entities"), get_in(tweet, "note_tweet.entities")] {
            collect(&mut facts.hashtags, entities, "hashtags", "tag");
            collect(&mut facts.mentions, entities, "mentions", "username");
        }
    }
    facts.id = data
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    facts.author = data
        .get("author_id")
        .and_then(Value::as_str)
        .and_then(|author| {
            objects(get_in(doc, "includes.users"))
                .find(|u| u.get("id").and_then(Value::as_str) == Some(author))
        })
        .and_then(|u| u.get("username")?.as_str())
        .filter(|s| !s.is_empty());
    facts.is_retweet = retweeted_id.is_some();
    facts.is_quote = references.iter().any(|(kind, _)| *kind == "quoted");
    facts.full_text = get_str(data, "note_tweet.text").or_else(|| get_str(data, "text"));
    facts.epoch_millis = get_str(data, "created_at").and_then(time::parse_rfc3339);
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enrich(pairs: &[(&str, &str)]) -> Result<Enrich, String> {
        let config: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Enrich::from_config(&config)
    }

    fn run(e: &Enrich, doc: &Value) -> Value {
        match e.apply(doc.to_string().as_bytes()) {
            Outcome::SetValue(bytes) => serde_json::from_slice(&bytes).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn minimal_v1_status() {
        let e = enrich(&[]).unwrap();
        let doc = json!({
            "created_at": "Wed Oct 10 20:19:24 +0000 2018",
            "id": 1050118621198921728u64,
            "text": "Hello #World @Jack 👋🏽",
            "user": {"screen_name": "jack"},
            "entities": {"hashtags": [{"text": "World"}], "user_mentions": [{"screen_name": "Jack"}]}
        });
        let out = run(&e, &doc);
        assert_eq!(out["@timestamp"], "2018-10-10T20:19:24.000Z");
        assert_eq!(
            out["sluice"],
            json!({
                "hashtags": ["world"],
                "mentions": ["jack"],
                "tweet_url": "https://twitter.com/jack/status/1050118621198921728",
                "is_retweet": false,
                "is_quote": false,
                "text_length": 21,
                "shape": "v1.1"
            })
        );
        assert_eq!(out["text"], doc["text"]);
    }

    #[test]
    fn enriching_twice_is_a_no_op() {
        let e = enrich(&[("keywords", "world"), ("target", "meta")]).unwrap();
        let doc = json!({"id_str": "5", "text": "hello world", "created_at": "Wed Oct 10 20:19:24 +0000 2018"});
        let once = run(&e, &doc);
        assert_eq!(once["meta"]["matched_keywords"], json!(["world"]));
        assert_eq!(
            once["meta"]["tweet_url"],
            "https://twitter.com/i/web/status/5"
        );
        assert_eq!(e.apply(once.to_string().as_bytes()), Outcome::Keep);
    }

    #[test]
    fn target_merges_into_an_existing_object() {
        let e = enrich(&[]).unwrap();
        let out = run(
            &e,
            &json!({"text": "x", "sluice": {"pipeline": "p1", "shape": "old"}}),
        );
        assert_eq!(out["sluice"]["pipeline"], "p1");
        assert_eq!(out["sluice"]["shape"], "v1.1");
        assert!(out.get("@timestamp").is_none());
    }

    #[test]
    fn timestamp_ms_is_a_fallback_and_bad_dates_are_skipped() {
        let e = enrich(&[]).unwrap();
        let out = run(
            &e,
            &json!({"text": "x", "created_at": "yesterday", "timestamp_ms": "1539202764123"}),
        );
        assert_eq!(out["@timestamp"], "2018-10-10T20:19:24.123Z");
        let out = run(
            &e,
            &json!({"text": "x", "created_at": "yesterday", "@timestamp": "keep me"}),
        );
        assert_eq!(out["@timestamp"], "keep me");
    }

    #[test]
    fn unknown_shape_and_failures() {
        let e = enrich(&[]).unwrap();
        let out = run(&e, &json!({"foo": 1}));
        assert_eq!(out["sluice"]["shape"], "unknown");
        assert_eq!(out["sluice"]["is_retweet"], false);
        assert!(matches!(e.apply(b"[1]"), Outcome::Fail(r) if r.contains("not a JSON object")));
        assert!(
            matches!(e.apply(b"{\"text\":"), Outcome::Fail(r) if r.starts_with("not valid JSON"))
        );
        assert!(
            matches!(e.apply(b"{\"text\":\"\xc0\"}"), Outcome::Fail(r) if r.starts_with("not valid UTF-8"))
        );
    }

    /// Both paths derive the same fields (the fast one splices them into the original bytes).
    fn assert_paths_agree(e: &Enrich, doc: &[u8]) {
        let fast = e.apply_streaming(doc);
        let tree = e.apply_tree(doc);
        match (fast, tree) {
            (Some(Outcome::SetValue(a)), Outcome::SetValue(b)) => {
                let a: Value = serde_json::from_slice(&a).unwrap();
                let b: Value = serde_json::from_slice(&b).unwrap();
                assert_eq!(a, b, "{}", String::from_utf8_lossy(doc));
            }
            (Some(Outcome::Fail(a)), Outcome::Fail(b)) => assert_eq!(a, b),
            (None, _) => {}
            (fast, tree) => panic!("paths disagree: {fast:?} vs {tree:?}"),
        }
    }

    #[test]
    fn streaming_and_tree_paths_agree() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
        let plain = enrich(&[]).unwrap();
        let keywords = enrich(&[("keywords", "bts,방탄소년단,army"), ("target", "x")]).unwrap();
        let ndjson = std::fs::read_to_string(format!("{dir}/tweets.ndjson")).unwrap();
        for line in ndjson.lines() {
            for e in [&plain, &keywords] {
                assert!(
                    e.apply_streaming(line.as_bytes()).is_some(),
                    "fast path for {line}"
                );
                let seed = TopLevelSeed { target: &e.target };
                assert!(
                    json::with_fast(line, seed).is_some(),
                    "fast parser on {line}"
                );
                assert_paths_agree(e, line.as_bytes());
            }
        }
        let synthetic = [
            "{}",
            " { } \n",
            r#"{"foo":1}"#,
            r#"{"id":123,"text":"a \"quoted\" \u00e9 #x","entities":{"hashtags":[{"text":"X"},{"text":"x"}]}}"#,
            r#"{"id":-5,"id_str":"","text":null,"user":{"screen_name":""},"timestamp_ms":1539202764000}"#,
            r#"{"is_quote_status":true,"quoted_status":null,"retweeted_status":null,"created_at":"bad"}"#,
            r#"{"data":{"id":"1","text":"t","referenced_tweets":[{"type":"retweeted","id":"2"},{"type":"quoted"}]},
                "includes":{"tweets":[{"id":"2","note_tweet":{"text":"n","entities":{"mentions":[{"username":"U"}]}}}]}}"#,
            r#"{"data":null,"text":"v1 after all"}"#,
        ];
        for doc in synthetic {
            assert!(
                plain.apply_streaming(doc.as_bytes()).is_some(),
                "fast path for {doc}"
            );
            assert_paths_agree(&plain, doc.as_bytes());
            assert_paths_agree(&keywords, doc.as_bytes());
        }
        // Unexpected types, repeated keys and existing derived fields take the Value path.
        let fallback = [
            r#"{"text":5}"#,
            r#"{"entities":{"hashtags":{"text":"solo"}}}"#,
            r#"{"data":{"id":7}}"#,
            r#"{"text":"a","text":"b"}"#,
            r#"{"text":"a","@timestamp":"2020-01-01T00:00:00.000Z"}"#,
            r#"{"text":"a","sluice":{}}"#,
        ];
        for doc in fallback {
            assert!(
                plain.apply_streaming(doc.as_bytes()).is_none(),
                "value path for {doc}"
            );
            assert!(
                matches!(plain.apply(doc.as_bytes()), Outcome::SetValue(_)),
                "{doc}"
            );
        }
        let out = run(
            &plain,
            &json!({"entities": {"hashtags": {"text": "Solo"}}, "text": "x"}),
        );
        assert_eq!(out["sluice"]["hashtags"], json!(["solo"]));
    }

    #[test]
    fn streaming_path_keeps_the_original_bytes() {
        let e = enrich(&[]).unwrap();
        let doc = b"{\"text\": \"x\",\n  \"z\": 1.50, \"a\": 2}\n";
        let Outcome::SetValue(out) = e.apply(doc) else {
            panic!()
        };
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("{\"text\": \"x\",\n  \"z\": 1.50, \"a\": 2,\"sluice\":{"),
            "{out}"
        );
        assert!(out.ends_with("}}\n"), "{out}");
        let Outcome::SetValue(out) = e.apply(b"{}") else {
            panic!()
        };
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"sluice":{"hashtags":[],"is_quote":false,"is_retweet":false,"mentions":[],"shape":"unknown"}}"#
        );
    }

    #[test]
    fn config_errors() {
        assert!(enrich(&[("target", " ")]).unwrap_err().contains("`target`"));
        assert!(
            enrich(&[("target", "@timestamp")])
                .unwrap_err()
                .contains("`target`")
        );
        assert!(
            enrich(&[("keyword", "x")])
                .unwrap_err()
                .contains("`keyword`")
        );
        assert!(
            enrich(&[("fields", "text")])
                .unwrap_err()
                .contains("`fields`")
        );
        assert!(
            enrich(&[("keywords", "a"), ("whole_word", "2")])
                .unwrap_err()
                .contains("`whole_word`")
        );
    }
}
