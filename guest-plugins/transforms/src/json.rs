//! JSON helpers: input validation with clear failure reasons, the two-step streaming parse
//! (the fast deserializer of [`fast`], then serde_json where it gives up), and walks that
//! visit the strings found at a set of paths, either streaming over the raw text (no `Value` is
//! built, strings are borrowed from the input where they have no escapes) or over a parsed
//! `Value`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::path::PathTrie;

pub(crate) mod fast;

/// Deserializes the whole document `text` with `seed` on the fast path; `None` if it gave up,
/// and then the caller runs [`with_serde`] with a fresh seed, which decides.
pub(crate) fn with_fast<'de, S: DeserializeSeed<'de>>(text: &'de str, seed: S) -> Option<S::Value> {
    let mut de = fast::Deserializer::new(text);
    let value = seed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}

/// Deserializes the whole document `text` with `seed` with serde_json.
pub(crate) fn with_serde<'de, S: DeserializeSeed<'de>>(
    text: &'de str,
    seed: S,
) -> Result<S::Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = seed.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Checks that `value` is UTF-8. The SIMD validator does 16 bytes a step where std does a word
/// (4 bytes in wasm32); std only words the error, so reasons match the other languages'.
pub(crate) fn utf8(value: &[u8]) -> Result<&str, String> {
    simdutf8::basic::from_utf8(value)
        .or_else(|_| std::str::from_utf8(value))
        .map_err(|e| format!("not valid UTF-8: {e}"))
}

pub(crate) fn json_error(e: serde_json::Error) -> String {
    format!("not valid JSON: {e}")
}

/// Parses `value` as a JSON object.
pub(crate) fn parse_object(value: &[u8]) -> Result<Map<String, Value>, String> {
    let text = object_start(utf8(value)?)?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => unreachable!("checked that the document starts with `{{`"),
        Err(e) => Err(json_error(e)),
    }
}

/// Passes `text` through if its first token opens an object; fails otherwise, and for another
/// valid JSON value the reason says what was found instead.
pub(crate) fn object_start(text: &str) -> Result<&str, String> {
    let first = text
        .bytes()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first == Some(b'{') {
        return Ok(text);
    }
    serde_json::from_str::<IgnoredAny>(text).map_err(json_error)?;
    let kind = match first {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    };
    Err(format!("not a JSON object: the document is {kind}"))
}

/// Streams over the JSON object `value` and calls `f` with every string value at a path of
/// `trie`, or anywhere beneath one (a path naming an object or array covers all strings in
/// it). Arrays are transparent. The whole document is validated.
pub(crate) fn for_each_string<F: FnMut(&str)>(
    value: &[u8],
    trie: &PathTrie,
    f: &mut F,
) -> Result<(), String> {
    walk_strings(object_start(utf8(value)?)?, trie, f)
}

/// [`for_each_string`] over a document already checked to be UTF-8 that opens an object.
/// `f` must not mind seeing a string twice: where the fast path gives up part-way, serde_json
/// walks the document again.
pub(crate) fn walk_strings<F: FnMut(&str)>(
    text: &str,
    trie: &PathTrie,
    f: &mut F,
) -> Result<(), String> {
    let fast = Walk {
        node: Some(trie),
        f: &mut *f,
    };
    match with_fast(text, fast) {
        Some(()) => Ok(()),
        None => with_serde(
            text,
            Walk {
                node: Some(trie),
                f,
            },
        )
        .map_err(json_error),
    }
}

/// The streaming walk. `node` is `None` beneath a terminal node: every string counts there.
struct Walk<'t, 'f, F> {
    node: Option<&'t PathTrie>,
    f: &'f mut F,
}

impl<'de, F: FnMut(&str)> DeserializeSeed<'de> for Walk<'_, '_, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, F: FnMut(&str)> Visitor<'de> for Walk<'_, '_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if self.node.is_none() {
            (self.f)(v);
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Walk {
                node: self.node,
                f: &mut *self.f,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self.node {
            None => {
                while map.next_key::<IgnoredAny>()?.is_some() {
                    map.next_value_seed(Walk {
                        node: None,
                        f: &mut *self.f,
                    })?;
                }
            }
            Some(node) => {
                while let Some(Key(key)) = map.next_key::<Key>()? {
                    match node.child(&key) {
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        Some(child) => map.next_value_seed(Walk {
                            node: (!child.is_terminal()).then_some(child),
                            f: &mut *self.f,
                        })?,
                    }
                }
            }
        }
        Ok(())
    }
}

/// An object key, borrowed from the input unless it contains escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Like [`for_each_string`], over an already parsed document.
pub(crate) fn for_each_string_in<F: FnMut(&str)>(
    object: &Map<String, Value>,
    trie: &PathTrie,
    f: &mut F,
) {
    walk_map(object, Some(trie), f);
}

fn walk_value<F: FnMut(&str)>(value: &Value, node: Option<&PathTrie>, f: &mut F) {
    match value {
        Value::String(s) if node.is_none() => f(s),
        Value::Array(items) => items.iter().for_each(|v| walk_value(v, node, f)),
        Value::Object(map) => walk_map(map, node, f),
        _ => {}
    }
}

fn walk_map<F: FnMut(&str)>(map: &Map<String, Value>, node: Option<&PathTrie>, f: &mut F) {
    match node {
        None => map.values().for_each(|v| walk_value(v, None, f)),
        Some(node) => {
            for (key, value) in map {
                if let Some(child) = node.child(key) {
                    walk_value(value, (!child.is_terminal()).then_some(child), f);
                }
            }
        }
    }
}

/// Test inputs: `count` copies of `text`, each with a byte of `special` put in, or a byte
/// replaced by one or taken out, at a random place; those that are still UTF-8.
#[cfg(test)]
pub(crate) fn mutations(text: &str, count: usize, special: &[u8], seed: &mut u64) -> Vec<String> {
    let mut random = |n: usize| {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % n as u64) as usize
    };
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let mut bytes = text.as_bytes().to_vec();
        let at = random(bytes.len());
        match random(3) {
            0 => bytes[at] = special[random(special.len())],
            1 => bytes.insert(at, special[random(special.len())]),
            _ => {
                bytes.remove(at);
            }
        }
        out.extend(String::from_utf8(bytes));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::Path;

    fn trie(paths: &[&str]) -> PathTrie {
        let paths: Vec<Path> = paths.iter().map(|p| Path::parse(p).unwrap()).collect();
        PathTrie::new(&paths)
    }

    fn streamed(json: &str, paths: &[&str]) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for_each_string(json.as_bytes(), &trie(paths), &mut |s: &str| {
            out.push(s.to_string())
        })?;
        Ok(out)
    }

    fn from_value(json: &str, paths: &[&str]) -> Vec<String> {
        let map = parse_object(json.as_bytes()).unwrap();
        let mut out = Vec::new();
        for_each_string_in(&map, &trie(paths), &mut |s: &str| out.push(s.to_string()));
        out
    }

    #[test]
    fn walks_paths_through_arrays_and_subtrees() {
        let doc = r#"{"text":"a","n":1,"entities":{"hashtags":[{"text":"b","indices":[0,1]},{"text":"c"}]},
            "user":{"name":"d","screen_name":"e","nested":{"x":["f",{"y":"g"}]}},"other":"z","esc\"aped":"\u00e9"}"#;
        let paths = ["text", "entities.hashtags.text", "user.nested", "esc\"aped"];
        let expected = ["a", "b", "c", "f", "g", "é"];
        assert_eq!(streamed(doc, &paths).unwrap(), expected);
        let mut from_value = from_value(doc, &paths);
        from_value.sort();
        assert_eq!(from_value, expected);
    }

    #[test]
    fn non_string_values_at_paths_are_ignored() {
        let doc = r#"{"text":5,"entities":"oops","user":null}"#;
        assert!(
            streamed(doc, &["text", "entities.hashtags.text", "user.name"])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn invalid_input_fails_with_a_reason() {
        let err = streamed("", &["text"]).unwrap_err();
        assert!(err.starts_with("not valid JSON: "), "{err}");
        let err = streamed("{\"text\":\"a\"", &["text"]).unwrap_err();
        assert!(err.starts_with("not valid JSON: EOF"), "{err}");
        let err = streamed("{\"text\":\"a\"} x", &["text"]).unwrap_err();
        assert!(err.contains("trailing characters"), "{err}");
        let err = streamed("nope", &["text"]).unwrap_err();
        assert_eq!(err, "not valid JSON: expected ident at line 1 column 2");
        let err = streamed(" [1, 2]", &["text"]).unwrap_err();
        assert_eq!(err, "not a JSON object: the document is an array");
        let err = streamed("\"x\"", &["text"]).unwrap_err();
        assert_eq!(err, "not a JSON object: the document is a string");
        let err = parse_object(b"42").unwrap_err();
        assert_eq!(err, "not a JSON object: the document is a number");
        let err =
            for_each_string(b"{\"text\":\"\xff\"}", &trie(&["text"]), &mut |_| {}).unwrap_err();
        assert!(err.starts_with("not valid UTF-8: "), "{err}");
        // Invalid UTF-8 in a field no path looks at is still caught.
        let err = for_each_string(b"{\"other\":\"\xc3\x28\"}", &trie(&["text"]), &mut |_| {})
            .unwrap_err();
        assert!(err.starts_with("not valid UTF-8: "), "{err}");
    }
}
