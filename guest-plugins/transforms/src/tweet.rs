//! Knowledge of the two tweet shapes: Twitter API v1.1 statuses and v2 filtered-stream payloads.

use serde_json::{Map, Value};

use crate::path::{Path, PathTrie};

/// Where a tweet's text lives in a v1.1 status (relative to the status).
const V1_TEXT_FIELDS: [&str; 5] = [
    "text",
    "full_text",
    "extended_tweet.full_text",
    "entities.hashtags.text",
    "extended_tweet.entities.hashtags.text",
];

/// The statuses a v1.1 document carries: itself, the retweeted and quoted statuses, and the
/// status quoted by a retweeted one.
const V1_STATUSES: [&str; 4] = [
    "",
    "retweeted_status.",
    "quoted_status.",
    "retweeted_status.quoted_status.",
];

/// Where a tweet's text lives in a v2 payload.
const V2_TEXT_FIELDS: [&str; 7] = [
    "data.text",
    "data.note_tweet.text",
    "data.entities.hashtags.tag",
    "data.note_tweet.entities.hashtags.tag",
    "includes.tweets.text",
    "includes.tweets.note_tweet.text",
    "includes.tweets.entities.hashtags.tag",
];

/// The default fields searched for keywords: every place of tweet text and hashtags in both
/// shapes.
pub(crate) fn default_text_paths() -> Vec<String> {
    let mut paths = Vec::new();
    for status in V1_STATUSES {
        for field in V1_TEXT_FIELDS {
            paths.push(format!("{status}{field}"));
        }
    }
    paths.extend(V2_TEXT_FIELDS.iter().map(|f| f.to_string()));
    paths
}

pub(crate) fn default_text_trie() -> (Vec<Path>, PathTrie) {
    let paths: Vec<Path> = default_text_paths()
        .iter()
        .map(|p| Path::parse(p).expect("built-in paths are valid"))
        .collect();
    let trie = PathTrie::new(&paths);
    (paths, trie)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    V1,
    V2,
    Unknown,
}

impl Shape {
    pub(crate) fn of(doc: &Map<String, Value>) -> Shape {
        if doc.get("data").is_some_and(Value::is_object) {
            Shape::V2
        } else if ["id_str", "id", "text", "full_text", "created_at"]
            .iter()
            .any(|k| doc.contains_key(*k))
        {
            Shape::V1
        } else {
            Shape::Unknown
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Shape::V1 => "v1.1",
            Shape::V2 => "v2",
            Shape::Unknown => "unknown",
        }
    }
}

/// `value` at a dot path of plain keys (no wildcards, no arrays).
pub(crate) fn get<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

pub(crate) fn get_in<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let (first, rest) = match path.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    let v = map.get(first)?;
    match rest {
        Some(rest) => get(v, rest),
        None => Some(v),
    }
}

pub(crate) fn get_str<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a str> {
    get_in(map, path).and_then(Value::as_str)
}

/// The objects of `value` if it is an array (non-objects skipped), or `value` itself if it is
/// an object.
pub(crate) fn objects(value: Option<&Value>) -> impl Iterator<Item = &Map<String, Value>> {
    let (one, many) = match value {
        Some(Value::Object(map)) => (Some(map), None),
        Some(Value::Array(items)) => (None, Some(items.iter().filter_map(Value::as_object))),
        _ => (None, None),
    };
    one.into_iter().chain(many.into_iter().flatten())
}

/// A tweet id given as a string or a number.
pub(crate) fn id_string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}
