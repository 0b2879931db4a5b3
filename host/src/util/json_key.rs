//! Keys (Kafka message keys, Elasticsearch document ids) from JSON fields, found without
//! building a document tree.
//!
//! A path like `data.id` is followed with serde's streaming deserializer: objects on the way
//! are scanned with `IgnoredAny` and the walk stops as soon as the value is found, so finding a
//! tweet id costs a partial scan of the record and no allocation.

use std::fmt;
use std::io::Write as _;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

/// `id_str,data.id` as `[["id_str"], ["data", "id"]]`.
pub fn parse_paths(spec: &str) -> Vec<Vec<String>> {
    spec.split(',')
        .map(|p| p.trim().split('.').map(str::to_owned).collect())
        .collect()
}

/// Checks a comma-separated list of paths (`key` names the setting): none may be empty.
pub fn check_paths(key: &str, spec: &str) -> Result<(), super::Invalid> {
    if spec.split(',').any(|p| p.trim().is_empty()) {
        return Err(super::Invalid::new(key, "has an empty path"));
    }
    Ok(())
}

/// Writes the first of `paths` present in `json` (a non-empty string or an integer) into
/// `out`. Returns false (leaving `out` unspecified) when none is, or `json` is not a JSON
/// object. An empty string counts as absent: it is no use as a message key or document id.
pub fn find(json: &[u8], paths: &[Vec<String>], out: &mut Vec<u8>) -> bool {
    paths.iter().any(|path| {
        out.clear();
        let mut seek = Seek {
            path,
            out: &mut *out,
            found: false,
        };
        // Stopping early leaves the document unfinished, which serde reports as an error:
        // only `found` matters.
        let _ = (&mut seek).deserialize(&mut serde_json::Deserializer::from_slice(json));
        seek.found && !out.is_empty()
    })
}

struct Seek<'a> {
    path: &'a [String],
    out: &'a mut Vec<u8>,
    found: bool,
}

impl<'de> DeserializeSeed<'de> for &mut Seek<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.path.is_empty() {
            d.deserialize_any(self)
        } else {
            d.deserialize_map(self)
        }
    }
}

impl<'de> Visitor<'de> for &mut Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if self.path.is_empty() {
            "a string or an integer"
        } else {
            "an object"
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // At the end of the path an object is not a key.
        let Some((field, rest)) = self.path.split_first() else {
            return Err(de::Error::invalid_type(de::Unexpected::Map, &self));
        };
        while let Some(hit) = map.next_key_seed(KeyIs(field))? {
            if hit {
                self.path = rest;
                return map.next_value_seed(self);
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.out.extend_from_slice(v.as_bytes());
        self.found = true;
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        self.found = true;
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        self.found = true;
        Ok(())
    }
}

/// Deserializes an object key as "is it this one?".
struct KeyIs<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(json: &str, spec: &str) -> Option<String> {
        let mut out = Vec::new();
        find(json.as_bytes(), &parse_paths(spec), &mut out).then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn finds_the_first_present_path() {
        let v1 = r#"{"a":[1,{"id_str":"x"}],"id":5,"id_str":"123","user":{"id_str":"9"}}"#;
        assert_eq!(key(v1, "id_str,data.id").as_deref(), Some("123"));
        let v2 = r#"{"data":{"text":"hi \"id\"","id":"456"},"includes":{}}"#;
        assert_eq!(key(v2, "id_str,data.id").as_deref(), Some("456"));
        assert_eq!(key(r#"{"n":{"id":42}}"#, "n.id").as_deref(), Some("42"));
        assert_eq!(key(r#"{"k\u0041":"esc"}"#, "kA").as_deref(), Some("esc"));
    }

    #[test]
    fn missing_or_unusable_values_are_not_keys() {
        assert_eq!(key(r#"{"data":{"id":null}}"#, "data.id"), None);
        assert_eq!(key(r#"{"data":{"id":{}}}"#, "data.id"), None);
        assert_eq!(key(r#"{"data":"x"}"#, "data.id"), None);
        assert_eq!(key("not json", "id_str"), None);
        assert_eq!(key("[1,2]", "id_str"), None);
    }
}
