//! Dot paths into JSON documents, and a trie that matches many of them at once.
//!
//! Syntax: segments separated by `.`, each one an object key; `*` alone matches any single key;
//! arrays are transparent (a path never names an index: `entities.hashtags.text` reaches the
//! `text` of every element of the `hashtags` array, and so does it through nested arrays). In a
//! key, `\.` is a literal dot, `\*` a literal star and `\\` a backslash.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Any,
}

/// A parsed path: at least one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path(pub(crate) Vec<Segment>);

impl Path {
    pub(crate) fn parse(raw: &str) -> Result<Path, String> {
        let mut segments = Vec::new();
        let mut key = String::new();
        // Whether the current segment contains an escape (so `\*` is a key, not a wildcard).
        let mut escaped = false;
        let mut chars = raw.trim().chars();
        loop {
            let next = chars.next();
            match next {
                Some('\\') => match chars.next() {
                    Some(c @ ('.' | '*' | '\\' | ',')) => {
                        key.push(c);
                        escaped = true;
                    }
                    Some(c) => {
                        return Err(format!(
                            r"path {raw:?}: unknown escape `\{c}` (use \. \* or \\)"
                        ));
                    }
                    None => return Err(format!("path {raw:?}: ends with a lone backslash")),
                },
                Some('.') | None => {
                    if key.is_empty() {
                        return Err(format!("path {raw:?}: empty segment"));
                    }
                    let segment = std::mem::take(&mut key);
                    segments.push(if segment == "*" && !escaped {
                        Segment::Any
                    } else {
                        Segment::Key(segment)
                    });
                    escaped = false;
                    if next.is_none() {
                        return Ok(Path(segments));
                    }
                }
                Some(c) => key.push(c),
            }
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            match segment {
                Segment::Any => f.write_str("*")?,
                Segment::Key(key) => {
                    for c in key.chars() {
                        if matches!(c, '.' | '*' | '\\') {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A deterministic trie of paths: from any node, a key leads to at most one child, so matching
/// a document against many paths (with wildcards) costs one lookup per key and no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PathTrie {
    /// A path ends here.
    terminal: bool,
    /// Children by exact key, in [`key_order`]. Each already includes what `any` would match.
    exact: Vec<(String, PathTrie)>,
    /// The child for every key not in `exact`.
    any: Option<Box<PathTrie>>,
}

impl PathTrie {
    pub(crate) fn new(paths: &[Path]) -> PathTrie {
        let mut raw = PathTrie::default();
        for path in paths {
            raw.insert(&path.0);
        }
        raw.determinize()
    }

    /// Whether a path ends at this node.
    pub(crate) fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// The node reached from here through `key`.
    #[inline]
    pub(crate) fn child(&self, key: &str) -> Option<&PathTrie> {
        match self.exact.binary_search_by(|(k, _)| key_order(k, key)) {
            Ok(i) => Some(&self.exact[i].1),
            Err(_) => self.any.as_deref(),
        }
    }

    fn insert(&mut self, segments: &[Segment]) {
        let Some((first, rest)) = segments.split_first() else {
            self.terminal = true;
            return;
        };
        let node = match first {
            Segment::Any => &mut **self.any.get_or_insert_with(Default::default),
            Segment::Key(key) => {
                let i = match self.exact.binary_search_by(|(k, _)| key_order(k, key)) {
                    Ok(i) => i,
                    Err(i) => {
                        self.exact.insert(i, (key.clone(), PathTrie::default()));
                        i
                    }
                };
                &mut self.exact[i].1
            }
        };
        node.insert(rest);
    }

    /// Turns a trie whose `exact` and `any` children may both match a key into one where the
    /// exact child alone suffices.
    fn determinize(self) -> PathTrie {
        let any = self.any.map(|a| Box::new(a.determinize()));
        let exact = self
            .exact
            .into_iter()
            .map(|(key, child)| {
                let child = child.determinize();
                let merged = match &any {
                    Some(a) => union(&child, a),
                    None => child,
                };
                (key, merged)
            })
            .collect();
        PathTrie {
            terminal: self.terminal,
            exact,
            any,
        }
    }
}

/// The order of a node's children: by length, then bytes. Keys mostly differ in length, so a
/// lookup seldom compares bytes (a call to `memcmp` per step, in WASM as well).
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// The union of two deterministic tries, itself deterministic.
fn union(a: &PathTrie, b: &PathTrie) -> PathTrie {
    let mut keys: Vec<&str> = a
        .exact
        .iter()
        .chain(&b.exact)
        .map(|(k, _)| k.as_str())
        .collect();
    keys.sort_unstable_by(|a, b| key_order(a, b));
    keys.dedup();
    let exact = keys
        .into_iter()
        .map(|key| {
            let child = match (a.child(key), b.child(key)) {
                (Some(x), Some(y)) => union(x, y),
                (Some(x), None) | (None, Some(x)) => x.clone(),
                (None, None) => unreachable!("key comes from one of the two tries"),
            };
            (key.to_string(), child)
        })
        .collect();
    let any = match (&a.any, &b.any) {
        (Some(x), Some(y)) => Some(Box::new(union(x, y))),
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    };
    PathTrie {
        terminal: a.terminal || b.terminal,
        exact,
        any,
    }
}

/// Parses a list of raw paths.
pub(crate) fn parse_paths(key: &str, items: &[String]) -> Result<Vec<Path>, String> {
    items
        .iter()
        .map(|item| Path::parse(item).map_err(|e| format!("config key `{key}`: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(paths: &[&str]) -> PathTrie {
        let paths: Vec<Path> = paths.iter().map(|p| Path::parse(p).unwrap()).collect();
        PathTrie::new(&paths)
    }

    fn reaches(t: &PathTrie, path: &[&str]) -> bool {
        let mut node = t;
        for key in path {
            match node.child(key) {
                Some(n) => node = n,
                None => return false,
            }
        }
        node.is_terminal()
    }

    #[test]
    fn parse_paths_with_escapes_and_wildcards() {
        let p = Path::parse("user.*.screen_name").unwrap();
        assert_eq!(
            p.0,
            [
                Segment::Key("user".into()),
                Segment::Any,
                Segment::Key("screen_name".into())
            ]
        );
        let p = Path::parse(r"a\.b.\*.c\\").unwrap();
        assert_eq!(
            p.0,
            [
                Segment::Key("a.b".into()),
                Segment::Key("*".into()),
                Segment::Key("c\\".into())
            ]
        );
        assert_eq!(p.to_string(), r"a\.b.\*.c\\");
        assert_eq!(Path::parse("@timestamp").unwrap().to_string(), "@timestamp");
        assert_eq!(Path::parse(r"a\.").unwrap().0, [Segment::Key("a.".into())]);
    }

    #[test]
    fn bad_paths_are_rejected() {
        for bad in ["", "a..b", ".a", "a.", r"a\", r"a\x"] {
            assert!(Path::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn trie_matches_exact_and_wildcard_paths() {
        let t = trie(&["user.screen_name", "*.id", "entities.*.text", "lang"]);
        assert!(reaches(&t, &["user", "screen_name"]));
        assert!(reaches(&t, &["user", "id"]), "wildcard merged into exact");
        assert!(reaches(&t, &["place", "id"]));
        assert!(reaches(&t, &["entities", "hashtags", "text"]));
        assert!(reaches(&t, &["entities", "id"]));
        assert!(reaches(&t, &["lang"]));
        assert!(!reaches(&t, &["user", "name"]));
        assert!(!reaches(&t, &["user"]));
        assert!(!reaches(&t, &["text"]));
    }
}
