//! Field pruning: allow/deny lists of paths, depth and emptiness limits, and a field-count
//! guard for Elasticsearch's mapping limit.
//!
//! The document is pruned in one streaming pass that cuts what goes out of the input text: no
//! JSON tree is built, nothing is re-serialized, and what stays keeps its bytes, copied in as
//! many pieces as there were cuts (a document with nothing to cut is not copied at all). Where
//! the fast deserializer gives up, a serde_json pass decides instead, writing what stays token
//! by token. The tests hold a straightforward `Value`-based implementation as the reference,
//! and check the two passes against each other on mutated tweets.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::Config;
use crate::facts::Text;
use crate::json::{self, fast};
use crate::path::{Path, PathTrie, parse_paths};
use crate::{Outcome, Transform};

/// Removes fields from a JSON object. See the crate's README for the config keys and the path
/// syntax.
#[derive(Debug, Clone)]
pub struct FieldPrune {
    allow: Option<(Vec<Path>, PathTrie)>,
    deny: Option<(Vec<Path>, PathTrie)>,
    max_depth: Option<usize>,
    drop_nulls: bool,
    drop_empty: bool,
    max_fields: Option<usize>,
}

const KEYS: &[&str] = &[
    "allow",
    "deny",
    "max_depth",
    "drop_nulls",
    "drop_empty",
    "max_fields",
];

impl Transform for FieldPrune {
    fn from_config(config: &[(String, String)]) -> Result<Self, String> {
        let c = Config::new(config, KEYS)?;
        let paths = |key: &str| -> Result<Option<(Vec<Path>, PathTrie)>, String> {
            Ok(match c.list(key)? {
                Some(items) => {
                    let paths = parse_paths(key, &items)?;
                    let trie = PathTrie::new(&paths);
                    Some((paths, trie))
                }
                None => None,
            })
        };
        let max_fields = c.usize("max_fields")?;
        if max_fields == Some(0) {
            return Err("config key `max_fields`: must be at least 1".to_string());
        }
        Ok(FieldPrune {
            allow: paths("allow")?,
            deny: paths("deny")?,
            max_depth: c.usize("max_depth")?,
            drop_nulls: c.bool("drop_nulls", false)?,
            drop_empty: c.bool("drop_empty", false)?,
            max_fields,
        })
    }

    fn apply(&self, value: &[u8]) -> Outcome {
        let text = match json::utf8(value).and_then(json::object_start) {
            Ok(text) => text,
            Err(reason) => return Outcome::Fail(reason),
        };
        let mut out = Output {
            buf: Vec::new(),
            changed: false,
        };
        if self.cut(text, &mut out.buf).is_none() {
            out.buf.clear();
            if let Err(e) = json::with_serde(text, self.walk(&mut out)) {
                return Outcome::Fail(json::json_error(e));
            }
        } else {
            out.changed = !out.buf.is_empty();
        }
        if let Some(max) = self.max_fields {
            let result = if out.changed {
                json::utf8(&out.buf)
            } else {
                Ok(text)
            };
            let fields = match result {
                Ok(result) => count_fields(result),
                Err(reason) => return Outcome::Fail(reason),
            };
            if fields > max {
                return Outcome::Fail(format!("{fields} fields exceeds max_fields {max}"));
            }
        }
        if out.changed {
            Outcome::SetValue(out.buf)
        } else {
            Outcome::Keep
        }
    }

    fn summary(&self) -> String {
        let list = |paths: &Option<(Vec<Path>, PathTrie)>| match paths {
            None => "-".to_string(),
            Some((paths, _)) => paths
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        };
        let num = |n: Option<usize>| n.map_or("-".to_string(), |n| n.to_string());
        format!(
            "allow=[{}] deny=[{}] max_depth={} drop_nulls={} drop_empty={} max_fields={}",
            list(&self.allow),
            list(&self.deny),
            num(self.max_depth),
            self.drop_nulls,
            self.drop_empty,
            num(self.max_fields)
        )
    }
}

/// What the allow list lets through at some point of the document.
#[derive(Clone, Copy)]
enum Allow<'a> {
    /// Everything here and beneath (no allow list, or beneath an allowed path).
    All,
    /// Only what the paths continuing from this (non-terminal) node reach.
    Under(&'a PathTrie),
}

impl FieldPrune {
    fn root_allow(&self) -> Allow<'_> {
        self.allow
            .as_ref()
            .map_or(Allow::All, |(_, t)| Allow::Under(t))
    }

    /// The fast pass: cuts what goes out of the text, so what stays keeps its bytes, copied
    /// in as many pieces as there were cuts. Leaves `out` empty if nothing was cut; `None` if
    /// the fast deserializer gave up (then [`walk`](Self::walk) decides).
    fn cut(&self, text: &str, out: &mut Vec<u8>) -> Option<()> {
        let mut de = fast::Deserializer::new(text);
        let mut cuts = Cuts {
            text,
            out,
            copied: 0,
        };
        self.cut_value(&mut de, &mut cuts, self.root()).ok()?;
        de.end().ok()?;
        if !cuts.out.is_empty() || cuts.copied > 0 {
            cuts.out.extend_from_slice(&text.as_bytes()[cuts.copied..]);
        }
        Some(())
    }

    /// Cuts within the value at the deserializer's position; yields whether the value stays.
    fn cut_value(
        &self,
        de: &mut fast::Deserializer,
        cuts: &mut Cuts,
        at: Place,
    ) -> Result<bool, fast::GaveUp> {
        match de.peek()? {
            b'{' => {
                if at.depth > 0 && self.too_deep(at) {
                    de.skip()?;
                    return Ok(false);
                }
                let kept = cut_entries(de, cuts, b'}', |de, cuts| {
                    if de.peek()? != b'"' {
                        return Err(fast::GaveUp);
                    }
                    let key = match de.string()? {
                        (token, false) => Cow::Borrowed(&token[1..token.len() - 1]),
                        (token, true) => {
                            Cow::Owned(serde_json::from_str(token).map_err(|_| fast::GaveUp)?)
                        }
                    };
                    de.expect(b':')?;
                    match at.field(&key) {
                        None => de.skip().map(|()| false),
                        Some(inner) if self.reaches_into(inner) => self.cut_value(de, cuts, inner),
                        Some(_) => de.skip().map(|()| true),
                    }
                })?;
                Ok(at.depth == 0 || self.container_stays(at, kept))
            }
            b'[' => {
                if self.too_deep(at) {
                    de.skip()?;
                    return Ok(false);
                }
                // Arrays are transparent: elements are at the array's own path and depth.
                let kept = cut_entries(de, cuts, b']', |de, cuts| self.cut_value(de, cuts, at))?;
                Ok(self.container_stays(at, kept))
            }
            _ => {
                let (empty, null) = match de.read_scalar()? {
                    fast::Scalar::Null => (false, true),
                    fast::Scalar::EmptyString => (true, false),
                    fast::Scalar::Other => (false, false),
                };
                Ok(self.scalar_stays(at, empty, null))
            }
        }
    }

    /// The serde_json pass over a whole document, where the cutting pass gave up.
    fn walk<'o>(&self, out: &'o mut Output) -> Walk<'_, 'o> {
        Walk {
            cfg: self,
            at: self.root(),
            out,
        }
    }

    /// Where the top-level object sits.
    fn root(&self) -> Place<'_> {
        Place {
            allow: self.root_allow(),
            deny: self.deny.as_ref().map(|(_, t)| t),
            depth: 0,
        }
    }

    /// Whether the rules can change anything inside a value at `at`.
    fn reaches_into(&self, at: Place) -> bool {
        at.under_allow()
            || at.deny.is_some()
            || self.drop_nulls
            || self.drop_empty
            || self.max_depth.is_some()
    }

    fn too_deep(&self, at: Place) -> bool {
        self.max_depth.is_some_and(|max| at.depth > max)
    }

    /// Whether a scalar stays: an allow list keeps a scalar only when a path reaches it.
    fn scalar_stays(&self, at: Place, empty: bool, null: bool) -> bool {
        !(at.under_allow() || (null && self.drop_nulls) || (empty && self.drop_empty))
    }

    /// Whether a container left with `kept` entries stays: beneath a partial allow, or with
    /// `drop_empty`, only for what it holds.
    fn container_stays(&self, at: Place, kept: usize) -> bool {
        kept > 0 || !(at.under_allow() || self.drop_empty)
    }
}

/// Goes through the entries of the object or array the deserializer is at, up to `close`;
/// `entry` reads one (after the key, for an object) and says whether it stays. Removed entries
/// are cut with their separator. Returns how many entries stay.
fn cut_entries(
    de: &mut fast::Deserializer,
    cuts: &mut Cuts,
    close: u8,
    mut entry: impl FnMut(&mut fast::Deserializer, &mut Cuts) -> Result<bool, fast::GaveUp>,
) -> Result<usize, fast::GaveUp> {
    de.enter()?;
    let mut entries = Entries::default();
    while de.peek()? != close {
        if entries.seen > 0 {
            de.expect(b',')?;
        }
        let (start, mark) = (de.pos(), cuts.mark());
        let stays = entry(de, cuts)?;
        entries.next(de, cuts, mark, start, stays);
    }
    de.leave(close)?;
    Ok(entries.kept)
}

/// Where a value sits, as the rules see it.
#[derive(Clone, Copy)]
struct Place<'a> {
    allow: Allow<'a>,
    deny: Option<&'a PathTrie>,
    /// The top-level object is at 0, its fields' values at 1, array elements at their
    /// array's depth.
    depth: usize,
}

impl<'a> Place<'a> {
    fn under_allow(self) -> bool {
        matches!(self.allow, Allow::Under(_))
    }

    /// Where the value of field `key` of an object here sits; `None` if the rules remove the
    /// field.
    fn field(self, key: &str) -> Option<Place<'a>> {
        let allow = match self.allow {
            Allow::All => Allow::All,
            Allow::Under(node) => match node.child(key)? {
                child if child.is_terminal() => Allow::All,
                child => Allow::Under(child),
            },
        };
        let deny = self.deny.and_then(|node| node.child(key));
        if deny.is_some_and(PathTrie::is_terminal) {
            return None;
        }
        Some(Place {
            allow,
            deny,
            depth: self.depth + 1,
        })
    }
}

/// The output of the cutting pass: the text up to `copied`, less what was cut.
struct Cuts<'t, 'o> {
    text: &'t str,
    out: &'o mut Vec<u8>,
    copied: usize,
}

impl Cuts<'_, '_> {
    fn mark(&self) -> (usize, usize) {
        (self.out.len(), self.copied)
    }

    /// Takes the text from `from` (or from the end of the last cut, if that is further on:
    /// entries removed one after another) to `to` out.
    fn cut(&mut self, from: usize, to: usize) {
        let from = from.max(self.copied);
        self.out
            .extend_from_slice(&self.text.as_bytes()[self.copied..from]);
        self.copied = to;
    }
}

/// The entries of an object or array as the cutting pass goes through them.
#[derive(Default)]
struct Entries {
    seen: usize,
    kept: usize,
    /// Where the last entry that stays ends.
    last_kept_end: Option<usize>,
}

impl Entries {
    /// After the entry from `start` to the deserializer's position: a removed entry is cut
    /// with the comma before it, or, if no entry before it stays, with the comma after it.
    fn next(
        &mut self,
        de: &fast::Deserializer,
        cuts: &mut Cuts,
        mark: (usize, usize),
        start: usize,
        stays: bool,
    ) {
        self.seen += 1;
        if stays {
            self.kept += 1;
            self.last_kept_end = Some(de.pos());
            return;
        }
        // Whatever was cut inside the entry goes with it.
        cuts.out.truncate(mark.0);
        cuts.copied = mark.1;
        match self.last_kept_end {
            Some(end) => cuts.cut(end, de.pos()),
            None => cuts.cut(start, de.after_separator()),
        }
    }
}

struct Output {
    buf: Vec<u8>,
    /// Whether anything was removed.
    changed: bool,
}

impl Output {
    fn write_str(&mut self, s: &str, escape: bool) {
        if escape {
            // Writing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.buf, s);
        } else {
            // Borrowed from the input, so it had no escapes and needs none.
            self.buf.push(b'"');
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.push(b'"');
        }
    }

    fn write<T: serde::Serialize>(&mut self, value: T) {
        let _ = serde_json::to_writer(&mut self.buf, &value);
    }
}

/// Prunes one value, writing what stays to the output; yields whether the value stays.
struct Walk<'c, 'o> {
    cfg: &'c FieldPrune,
    at: Place<'c>,
    out: &'o mut Output,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        if self.at.depth > 0 && self.cfg.too_deep(self.at) {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(false);
        }
        self.out.buf.push(b'{');
        let mut kept = 0;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let Some(at) = self.at.field(&key) else {
                map.next_value::<IgnoredAny>()?;
                self.out.changed = true;
                continue;
            };
            let mark = self.out.buf.len();
            if kept > 0 {
                self.out.buf.push(b',');
            }
            self.out.write_str(&key, matches!(key, Cow::Owned(_)));
            self.out.buf.push(b':');
            let stays = if self.cfg.reaches_into(at) {
                map.next_value_seed(Walk {
                    cfg: self.cfg,
                    at,
                    out: &mut *self.out,
                })?
            } else {
                let raw: &RawValue = map.next_value()?;
                self.out.buf.extend_from_slice(raw.get().as_bytes());
                true
            };
            if stays {
                kept += 1;
            } else {
                self.out.buf.truncate(mark);
                self.out.changed = true;
            }
        }
        self.out.buf.push(b'}');
        // Beneath a partial allow, a container is kept only for what it holds.
        Ok(self.at.depth == 0 || self.cfg.container_stays(self.at, kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        if self.cfg.too_deep(self.at) {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(false);
        }
        self.out.buf.push(b'[');
        let mut kept = 0;
        loop {
            let mark = self.out.buf.len();
            if kept > 0 {
                self.out.buf.push(b',');
            }
            // Arrays are transparent: elements are at the array's own path and depth.
            let element = seq.next_element_seed(Walk {
                cfg: self.cfg,
                at: self.at,
                out: &mut *self.out,
            })?;
            match element {
                None => {
                    self.out.buf.truncate(mark);
                    break;
                }
                Some(true) => kept += 1,
                Some(false) => {
                    self.out.buf.truncate(mark);
                    self.out.changed = true;
                }
            }
        }
        self.out.buf.push(b']');
        Ok(self.cfg.container_stays(self.at, kept))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<bool, E> {
        let stays = self.cfg.scalar_stays(self.at, v.is_empty(), false);
        if stays {
            self.out.write_str(v, false);
        }
        Ok(stays)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        let stays = self.cfg.scalar_stays(self.at, v.is_empty(), false);
        if stays {
            self.out.write_str(v, true);
        }
        Ok(stays)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        let stays = self.cfg.scalar_stays(self.at, false, true);
        if stays {
            self.out.buf.extend_from_slice(b"null");
        }
        Ok(stays)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        let stays = self.cfg.scalar_stays(self.at, false, false);
        if stays {
            self.out.write(v);
        }
        Ok(stays)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        let stays = self.cfg.scalar_stays(self.at, false, false);
        if stays {
            self.out.write(v);
        }
        Ok(stays)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        let stays = self.cfg.scalar_stays(self.at, false, false);
        if stays {
            self.out.write(v);
        }
        Ok(stays)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        let stays = self.cfg.scalar_stays(self.at, false, false);
        if stays {
            self.out.write(v);
        }
        Ok(stays)
    }
}

/// Counts the distinct field paths of a JSON object, as a mapping would: every key is one
/// field, whether it holds a value or an object, and arrays are transparent, so the `text` of
/// 50 hashtags counts once.
fn count_fields(json: &str) -> usize {
    let mut root = KeyTree::default();
    if json::with_fast(json, Count(&mut root)).is_none() {
        root = KeyTree::default();
        // The document was validated (or written) by the pruning pass.
        let _ = json::with_serde(json, Count(&mut root));
    }
    root.size()
}

#[derive(Default)]
struct KeyTree<'a> {
    children: Vec<(Cow<'a, str>, KeyTree<'a>)>,
}

impl KeyTree<'_> {
    fn size(&self) -> usize {
        self.children.iter().map(|(_, c)| 1 + c.size()).sum()
    }
}

struct Count<'t, 'a>(&'t mut KeyTree<'a>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for Count<'_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Count<'_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Text(key)) = map.next_key::<Text<'a>>()? {
            let children = &mut self.0.children;
            let i = match children.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    children.push((key, KeyTree::default()));
                    children.len() - 1
                }
            };
            map.next_value_seed(Count(&mut children[i].1))?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Count(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
/// The reference implementation: prune a parsed `Value`.
mod reference {
    use std::collections::BTreeMap;

    use serde_json::{Map, Value};

    use super::{Allow, FieldPrune};
    use crate::path::PathTrie;
    use crate::{Outcome, json};

    impl FieldPrune {
        pub(super) fn apply_tree(&self, value: &[u8]) -> Outcome {
            let mut doc = match json::parse_object(value) {
                Ok(doc) => doc,
                Err(reason) => return Outcome::Fail(reason),
            };
            let mut changed = false;
            self.tree_prune_map(
                &mut doc,
                self.root_allow(),
                self.deny.as_ref().map(|(_, t)| t),
                0,
                &mut changed,
            );
            if let Some(max) = self.max_fields {
                let fields = tree_count_fields(&[&doc]);
                if fields > max {
                    return Outcome::Fail(format!("{fields} fields exceeds max_fields {max}"));
                }
            }
            if !changed {
                return Outcome::Keep;
            }
            Outcome::SetValue(serde_json::to_vec(&doc).unwrap())
        }
    }

    impl FieldPrune {
        /// Prunes the fields of an object at `depth` (the top-level object is at depth 0).
        fn tree_prune_map(
            &self,
            map: &mut Map<String, Value>,
            allow: Allow,
            deny: Option<&PathTrie>,
            depth: usize,
            changed: &mut bool,
        ) {
            let before = map.len();
            map.retain(|key, value| {
                let child_allow = match allow {
                    Allow::All => Allow::All,
                    Allow::Under(node) => match node.child(key) {
                        None => return false,
                        Some(child) if child.is_terminal() => Allow::All,
                        Some(child) => Allow::Under(child),
                    },
                };
                let child_deny = match deny.and_then(|node| node.child(key)) {
                    Some(child) if child.is_terminal() => return false,
                    other => other,
                };
                self.tree_keep_value(value, child_allow, child_deny, depth + 1, changed)
            });
            if map.len() != before {
                *changed = true;
            }
        }

        /// Prunes `value` at `depth` and says whether it stays in its parent.
        fn tree_keep_value(
            &self,
            value: &mut Value,
            allow: Allow,
            deny: Option<&PathTrie>,
            depth: usize,
            changed: &mut bool,
        ) -> bool {
            let under_allow = matches!(allow, Allow::Under(_));
            match value {
                Value::Object(map) => {
                    if self.max_depth.is_some_and(|max| depth > max) {
                        return false;
                    }
                    self.tree_prune_map(map, allow, deny, depth, changed);
                    // Beneath a partial allow, a container is kept only for what it holds.
                    !(map.is_empty() && (under_allow || self.drop_empty))
                }
                Value::Array(items) => {
                    if self.max_depth.is_some_and(|max| depth > max) {
                        return false;
                    }
                    let before = items.len();
                    // Arrays are transparent: elements are at the array's own path and depth.
                    items
                        .retain_mut(|item| self.tree_keep_value(item, allow, deny, depth, changed));
                    if items.len() != before {
                        *changed = true;
                    }
                    !(items.is_empty() && (under_allow || self.drop_empty))
                }
                // A scalar is kept by an allow list only when a path reaches it.
                _ if under_allow => false,
                Value::Null => !self.drop_nulls,
                Value::String(s) => !(s.is_empty() && self.drop_empty),
                _ => true,
            }
        }
    }

    /// Counts the distinct field paths of a set of objects (that sit at one path), as a mapping
    /// would: every key is one field, whether it holds a value or an object, and arrays are
    /// transparent, so the `text` of 50 hashtags counts once.
    fn tree_count_fields(objects: &[&Map<String, Value>]) -> usize {
        let mut children: BTreeMap<&str, Vec<&Map<String, Value>>> = BTreeMap::new();
        for object in objects {
            for (key, value) in object.iter() {
                let nested = children.entry(key.as_str()).or_default();
                collect_objects(value, nested);
            }
        }
        children
            .values()
            .map(|nested| {
                1 + if nested.is_empty() {
                    0
                } else {
                    tree_count_fields(nested)
                }
            })
            .sum()
    }

    fn collect_objects<'a>(value: &'a Value, out: &mut Vec<&'a Map<String, Value>>) {
        match value {
            Value::Object(map) => out.push(map),
            Value::Array(items) => items.iter().for_each(|v| collect_objects(v, out)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn prune(pairs: &[(&str, &str)]) -> FieldPrune {
        try_prune(pairs).unwrap()
    }

    fn try_prune(pairs: &[(&str, &str)]) -> Result<FieldPrune, String> {
        let config: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        FieldPrune::from_config(&config)
    }

    fn run(p: &FieldPrune, doc: Value) -> Value {
        match p.apply(doc.to_string().as_bytes()) {
            Outcome::Keep => doc,
            Outcome::SetValue(bytes) => serde_json::from_slice(&bytes).unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn allow_keeps_only_the_paths_and_their_containers() {
        let p = prune(&[(
            "allow",
            "id_str, user.screen_name, entities.hashtags.text, place.*.type",
        )]);
        let doc = json!({
            "id_str": "1", "text": "t",
            "user": {"screen_name": "a", "name": "A", "entities": {"url": {}}},
            "entities": {"hashtags": [{"text": "x", "indices": [0, 2]}, {"indices": [3, 4]}], "urls": []},
            "place": {"bounding_box": {"type": "Polygon", "coordinates": []}, "name": "n"},
            "coordinates": null
        });
        assert_eq!(
            run(&p, doc),
            json!({
                "id_str": "1",
                "user": {"screen_name": "a"},
                "entities": {"hashtags": [{"text": "x"}]},
                "place": {"bounding_box": {"type": "Polygon"}}
            })
        );
    }

    #[test]
    fn an_allowed_object_is_kept_whole_and_deny_applies_after_allow() {
        let p = prune(&[("allow", "user, text"), ("deny", "user.entities, *.id")]);
        let doc =
            json!({"text": "t", "id": 1, "user": {"id": 2, "name": "n", "entities": {"a": 1}}});
        assert_eq!(run(&p, doc), json!({"text": "t", "user": {"name": "n"}}));
    }

    #[test]
    fn deny_reaches_into_arrays() {
        let p = prune(&[("deny", "entities.*.indices, extended_tweet")]);
        let doc = json!({
            "entities": {"hashtags": [{"text": "a", "indices": [1, 2]}], "user_mentions": [{"screen_name": "b", "indices": [3, 4]}]},
            "extended_tweet": {"full_text": "long"}
        });
        assert_eq!(
            run(&p, doc),
            json!({"entities": {"hashtags": [{"text": "a"}], "user_mentions": [{"screen_name": "b"}]}})
        );
    }

    #[test]
    fn max_depth_removes_deep_containers() {
        let doc =
            json!({"a": 1, "o": {"b": 2, "p": {"c": 3}, "l": [1, [2]], "lo": [{"d": 4, "q": {}}]}});
        assert_eq!(
            run(&prune(&[("max_depth", "0")]), doc.clone()),
            json!({"a": 1})
        );
        assert_eq!(
            run(&prune(&[("max_depth", "1")]), doc.clone()),
            json!({"a": 1, "o": {"b": 2}})
        );
        assert_eq!(
            run(&prune(&[("max_depth", "2")]), doc.clone()),
            json!({"a": 1, "o": {"b": 2, "p": {"c": 3}, "l": [1, [2]], "lo": [{"d": 4}]}})
        );
        assert_eq!(run(&prune(&[("max_depth", "3")]), doc.clone()), doc);
    }

    #[test]
    fn drop_nulls_and_empties() {
        let doc = json!({"a": null, "b": "", "c": [], "d": {}, "e": [null, "", {"f": null}], "g": 0, "h": false});
        assert_eq!(
            run(&prune(&[("drop_nulls", "true")]), doc.clone()),
            json!({"b": "", "c": [], "d": {}, "e": ["", {}], "g": 0, "h": false})
        );
        assert_eq!(
            run(&prune(&[("drop_empty", "true")]), doc.clone()),
            json!({"a": null, "e": [null, {"f": null}], "g": 0, "h": false})
        );
        assert_eq!(
            run(
                &prune(&[("drop_empty", "true"), ("drop_nulls", "true")]),
                doc
            ),
            json!({"g": 0, "h": false})
        );
    }

    #[test]
    fn unchanged_documents_are_kept_as_they_are() {
        let p = prune(&[("deny", "user.email"), ("drop_nulls", "yes")]);
        let raw = br#"{"text":"x",  "user":{"name":"n"}}"#;
        assert_eq!(p.apply(raw), Outcome::Keep);
        assert_eq!(prune(&[]).apply(raw), Outcome::Keep);
    }

    #[test]
    fn max_fields_counts_distinct_paths() {
        let doc =
            json!({"a": 1, "o": {"b": 2, "c": {"d": 3}}, "l": [{"x": 1}, {"x": 2, "y": 3}, 5]});
        // a, o, o.b, o.c, o.c.d, l, l.x, l.y
        assert_eq!(count_fields(&doc.to_string()), 8);
        let ok = prune(&[("max_fields", "8")]);
        assert_eq!(ok.apply(doc.to_string().as_bytes()), Outcome::Keep);
        let tight = prune(&[("max_fields", "7")]);
        assert_eq!(
            tight.apply(doc.to_string().as_bytes()),
            Outcome::Fail("8 fields exceeds max_fields 7".to_string())
        );
        // Counted after pruning.
        // o, o.b, o.c, o.c.d
        let pruned = prune(&[("max_fields", "4"), ("allow", "o")]);
        assert!(matches!(
            pruned.apply(doc.to_string().as_bytes()),
            Outcome::SetValue(_)
        ));
    }

    #[test]
    fn streaming_matches_the_reference() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
        let ndjson = std::fs::read_to_string(format!("{dir}/tweets.ndjson")).unwrap();
        let pretty = std::fs::read_to_string(format!("{dir}/v1_retweet.json")).unwrap();
        let mut docs: Vec<String> = ndjson.lines().map(str::to_string).collect();
        docs.push(pretty);
        docs.push(r#"{"a":null,"b":"","c":[],"d":{},"e":[null,"",{"f":null},[[]]],"g":0,"h":-1.5e3,"i":"\u00e9\n","j\"k":{"l":[1,{"m":{}}]}}"#.to_string());
        docs.push("{}".to_string());
        let configs: &[&[(&str, &str)]] = &[
            &[],
            &[("drop_nulls", "true")],
            &[("drop_empty", "true")],
            &[("drop_nulls", "true"), ("drop_empty", "true")],
            &[("max_depth", "0")],
            &[("max_depth", "1")],
            &[("max_depth", "2"), ("drop_empty", "true")],
            &[(
                "deny",
                "user, *.indices, entities.*.indices, data.entities, j\"k.l.m",
            )],
            &[(
                "allow",
                "text, user.screen_name, entities.hashtags, *.id, e, j\"k",
            )],
            &[
                ("allow", "retweeted_status, data, includes.users.username"),
                ("deny", "*.user.id, data.entities.*.start"),
            ],
            &[("allow", "user"), ("max_fields", "20")],
            &[("max_fields", "50")],
        ];
        for config in configs {
            let p = prune(config);
            for doc in &docs {
                let fast = p.apply(doc.as_bytes());
                let tree = p.apply_tree(doc.as_bytes());
                match (&fast, &tree) {
                    (Outcome::SetValue(a), Outcome::SetValue(b)) => {
                        let a: Value = serde_json::from_slice(a).unwrap();
                        let b: Value = serde_json::from_slice(b).unwrap();
                        assert_eq!(a, b, "{config:?} on {doc}");
                    }
                    _ => assert_eq!(fast, tree, "{config:?} on {doc}"),
                }
            }
        }
    }

    #[test]
    fn the_fast_parser_prunes_every_fixture() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
        let ndjson = std::fs::read_to_string(format!("{dir}/tweets.ndjson")).unwrap();
        // pipeline.toml's rules, which reach into everything, and a deny list alone, which
        // copies kept subtrees as raw text.
        let rules = prune(&[
            (
                "deny",
                "card, extended_entities, *.extended_entities, user.entities",
            ),
            ("drop_nulls", "true"),
            ("drop_empty", "true"),
            ("max_depth", "8"),
        ]);
        let deny = prune(&[("deny", "card, extended_entities, user.entities")]);
        for line in ndjson.lines() {
            for p in [&rules, &deny] {
                assert!(p.cut(line, &mut Vec::new()).is_some(), "{line}");
                let mut root = KeyTree::default();
                assert!(json::with_fast(line, Count(&mut root)).is_some(), "{line}");
            }
        }
    }

    #[test]
    fn cutting_agrees_with_the_serde_pass_on_mutated_tweets() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
        let ndjson = std::fs::read_to_string(format!("{dir}/tweets.ndjson")).unwrap();
        let configs: [&[(&str, &str)]; 5] = [
            &[("drop_nulls", "true")],
            &[
                ("drop_nulls", "true"),
                ("drop_empty", "true"),
                ("max_depth", "3"),
            ],
            &[("deny", "user, *.indices, entities.urls")],
            &[("allow", "text, user.screen_name, entities.hashtags, *.id")],
            &[
                ("allow", "data, includes.users"),
                ("deny", "data.entities.*.start"),
            ],
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let special = b"\"{}[],:0n -";
        let (mut cut, mut gave_up) = (0, 0);
        for line in ndjson.lines() {
            for text in json::mutations(line, 60, special, &mut seed) {
                for config in configs {
                    let p = prune(config);
                    let mut out = Vec::new();
                    if p.cut(&text, &mut out).is_none() {
                        gave_up += 1;
                        continue;
                    }
                    cut += 1;
                    let mut reference = Output {
                        buf: Vec::new(),
                        changed: false,
                    };
                    json::with_serde(&text, p.walk(&mut reference))
                        .unwrap_or_else(|e| panic!("{e}: {config:?} on {text}"));
                    assert_eq!(!out.is_empty(), reference.changed, "{config:?} on {text}");
                    if reference.changed {
                        let a: Value = serde_json::from_slice(&out).unwrap();
                        let b: Value = serde_json::from_slice(&reference.buf).unwrap();
                        assert_eq!(a, b, "{config:?} on {text}");
                    }
                }
            }
        }
        assert!(cut > 100 && gave_up > 100, "{cut} cut, {gave_up} gave up");
    }

    #[test]
    fn readme_examples() {
        let doc = json!({"user": {"screen_name": "a", "id": 1}, "entities": {"hashtags": [{"text": "x", "indices": [0, 2]}], "urls": []}, "lang": "ko"});
        let cases: [(&[(&str, &str)], Value); 6] = [
            (
                &[("allow", "user.screen_name, entities.hashtags.text")],
                json!({"user":{"screen_name":"a"},"entities":{"hashtags":[{"text":"x"}]}}),
            ),
            (
                &[("allow", "user, lang")],
                json!({"user":{"screen_name":"a","id":1},"lang":"ko"}),
            ),
            (
                &[("deny", "*.id, entities.*.indices")],
                json!({"user":{"screen_name":"a"},"entities":{"hashtags":[{"text":"x"}],"urls":[]},"lang":"ko"}),
            ),
            (
                &[("allow", "user"), ("deny", "user.id")],
                json!({"user":{"screen_name":"a"}}),
            ),
            (
                &[("drop_empty", "true")],
                json!({"user": {"screen_name": "a", "id": 1}, "entities": {"hashtags": [{"text": "x", "indices": [0, 2]}]}, "lang": "ko"}),
            ),
            (
                &[("max_depth", "1")],
                json!({"user":{"screen_name":"a","id":1},"entities":{},"lang":"ko"}),
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(run(&prune(config), doc.clone()), expected, "{config:?}");
        }
        let counted = json!({"a": 1, "o": {"b": 2}, "l": [{"x": 1}, {"x": 2, "y": 3}]});
        assert_eq!(count_fields(&counted.to_string()), 6);
    }

    #[test]
    fn config_errors_and_bad_input() {
        for (pairs, needle) in [
            (vec![("allow", "")], "`allow`"),
            (vec![("deny", "a..b")], "`deny`"),
            (vec![("max_depth", "-1")], "`max_depth`"),
            (vec![("max_fields", "0")], "`max_fields`"),
            (vec![("drop_null", "true")], "`drop_null`"),
        ] {
            let err = try_prune(&pairs).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
        let p = prune(&[("drop_nulls", "true")]);
        assert!(matches!(p.apply(b"{"), Outcome::Fail(r) if r.starts_with("not valid JSON")));
        assert!(matches!(p.apply(b"null"), Outcome::Fail(r) if r.starts_with("not a JSON object")));
        assert!(
            matches!(p.apply(b"{\"a\":\"\xe2\x82\"}"), Outcome::Fail(r) if r.starts_with("not valid UTF-8"))
        );
    }
}
