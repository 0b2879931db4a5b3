//! Helpers for reading a plugin's key/value config table.

/// A validated view of a config table: every key is known and appears once.
pub(crate) struct Config<'a> {
    pairs: &'a [(String, String)],
}

impl<'a> Config<'a> {
    /// Checks that every key is one of `known` and that no key is given twice.
    pub(crate) fn new(pairs: &'a [(String, String)], known: &[&str]) -> Result<Self, String> {
        for (i, (key, _)) in pairs.iter().enumerate() {
            if !known.contains(&key.as_str()) {
                return Err(format!(
                    "unknown config key `{key}` (known keys: {})",
                    known.join(", ")
                ));
            }
            if pairs[..i].iter().any(|(k, _)| k == key) {
                return Err(format!("config key `{key}` is given more than once"));
            }
        }
        Ok(Config { pairs })
    }

    /// The raw value of `key`, if set.
    pub(crate) fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean: `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`), case-insensitive.
    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool, String> {
        let Some(raw) = self.get(key) else {
            return Ok(default);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(format!(
                "config key `{key}`: expected true or false, got {raw:?}"
            )),
        }
    }

    /// A non-negative integer, if set.
    pub(crate) fn usize(&self, key: &str) -> Result<Option<usize>, String> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        raw.trim().parse::<usize>().map(Some).map_err(|_| {
            format!("config key `{key}`: expected a non-negative integer, got {raw:?}")
        })
    }

    /// A comma-separated list, if set. An empty list is an error: a key that is set must say
    /// something.
    pub(crate) fn list(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        let items = split_list(raw);
        if items.is_empty() {
            return Err(format!("config key `{key}`: the list is empty"));
        }
        Ok(Some(items))
    }
}

/// Splits a comma-separated list. Items are trimmed and empty items are skipped. `\,` stands
/// for a literal comma inside an item; every other backslash sequence is passed through
/// untouched for the item's own parser (paths use `\.`, `\*` and `\\`).
pub(crate) fn split_list(raw: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(',') => current.push(','),
                Some(next) => {
                    current.push('\\');
                    current.push(next);
                }
                None => current.push('\\'),
            },
            ',' => push_item(&mut items, &mut current),
            _ => current.push(c),
        }
    }
    push_item(&mut items, &mut current);
    items
}

fn push_item(items: &mut Vec<String>, current: &mut String) {
    let item = current.trim();
    if !item.is_empty() {
        items.push(item.to_string());
    }
    current.clear();
}

/// Resolves the `\\` escape in a list item that is not a path (keywords).
pub(crate) fn unescape_plain(item: &str) -> String {
    item.replace("\\\\", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn split_list_trims_skips_empties_and_unescapes_commas() {
        assert_eq!(split_list(" a, b ,,c ,"), ["a", "b", "c"]);
        assert_eq!(split_list(r"1\,000, x"), ["1,000", "x"]);
        assert_eq!(split_list(r"a\.b,c\\d"), [r"a\.b", r"c\\d"]);
        assert!(split_list(" , ").is_empty());
    }

    #[test]
    fn unknown_and_duplicate_keys_are_rejected() {
        let p = pairs(&[("keywords", "a"), ("colour", "red")]);
        let err = Config::new(&p, &["keywords"]).err().unwrap();
        assert!(err.contains("`colour`"), "{err}");
        let p = pairs(&[("keywords", "a"), ("keywords", "b")]);
        let err = Config::new(&p, &["keywords"]).err().unwrap();
        assert!(err.contains("more than once"), "{err}");
    }

    #[test]
    fn typed_values() {
        let p = pairs(&[("a", "Yes"), ("b", "0"), ("c", "maybe"), ("n", " 12 ")]);
        let c = Config::new(&p, &["a", "b", "c", "n", "m"]).unwrap();
        assert!(c.bool("a", false).unwrap());
        assert!(!c.bool("b", true).unwrap());
        assert!(c.bool("c", true).unwrap_err().contains("`c`"));
        assert!(c.bool("m", true).unwrap());
        assert_eq!(c.usize("n").unwrap(), Some(12));
        assert_eq!(c.usize("m").unwrap(), None);
    }
}
