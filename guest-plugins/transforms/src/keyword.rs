//! The keyword filter: keeps (or, inverted, drops) tweets that mention any of the keywords.

use crate::config::{Config, unescape_plain};
use crate::json;
use crate::matcher::Matcher;
use crate::path::{Path, PathTrie, parse_paths};
use crate::tweet;
use crate::{Outcome, Transform};

/// Keeps a record when any keyword occurs in its tweet text, drops it otherwise (or the other
/// way around with `invert`). See the crate's README for the config keys.
///
/// The document is streamed: only the strings at the searched paths are looked at, borrowed
/// from the input, and no JSON tree is built.
#[derive(Debug, Clone)]
pub struct KeywordFilter {
    search: KeywordSearch,
    invert: bool,
}

const KEYS: &[&str] = &[
    "keywords",
    "fields",
    "case_sensitive",
    "whole_word",
    "invert",
];

impl Transform for KeywordFilter {
    fn from_config(config: &[(String, String)]) -> Result<Self, String> {
        let c = Config::new(config, KEYS)?;
        let search = KeywordSearch::from_config(&c)?.ok_or_else(|| {
            "config key `keywords` is required: comma-separated keywords, e.g. \"bts,방탄소년단\""
                .to_string()
        })?;
        Ok(KeywordFilter {
            search,
            invert: c.bool("invert", false)?,
        })
    }

    fn apply(&self, value: &[u8]) -> Outcome {
        let mut found = false;
        let walked = json::for_each_string(value, &self.search.trie, &mut |text: &str| {
            if !found {
                found = self.search.matcher.matches_any(text);
            }
        });
        match walked {
            Err(reason) => Outcome::Fail(reason),
            Ok(()) if found != self.invert => Outcome::Keep,
            Ok(()) => Outcome::Drop,
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} tweets matching {}",
            if self.invert { "drops" } else { "keeps only" },
            self.search.describe()
        )
    }
}

/// Keyword search over a set of fields: shared by the filter and by enrich.
#[derive(Debug, Clone)]
pub(crate) struct KeywordSearch {
    pub(crate) matcher: Matcher,
    pub(crate) trie: PathTrie,
    fields: Option<Vec<Path>>,
    case_sensitive: bool,
}

impl KeywordSearch {
    /// Reads `keywords`, `fields`, `case_sensitive` and `whole_word`; `None` if no keywords.
    pub(crate) fn from_config(c: &Config) -> Result<Option<KeywordSearch>, String> {
        let case_sensitive = c.bool("case_sensitive", false)?;
        let whole_word = c.bool("whole_word", true)?;
        let fields = match c.list("fields")? {
            Some(items) => Some(parse_paths("fields", &items)?),
            None => None,
        };
        let Some(keywords) = c.list("keywords")? else {
            if c.get("fields").is_some() {
                return Err("config key `fields` needs `keywords`".to_string());
            }
            return Ok(None);
        };
        let keywords = keywords.iter().map(|k| unescape_plain(k)).collect();
        let matcher = Matcher::new(keywords, case_sensitive, whole_word)?;
        let trie = match &fields {
            Some(paths) => PathTrie::new(paths),
            None => tweet::default_text_trie().1,
        };
        Ok(Some(KeywordSearch {
            matcher,
            trie,
            fields,
            case_sensitive,
        }))
    }

    pub(crate) fn describe(&self) -> String {
        let fields = match &self.fields {
            None => "the default tweet text fields".to_string(),
            Some(paths) => paths
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        };
        format!(
            "{}, case_sensitive={}, in {fields}",
            self.matcher.describe(),
            self.case_sensitive
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(pairs: &[(&str, &str)]) -> Result<KeywordFilter, String> {
        let config: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        KeywordFilter::from_config(&config)
    }

    #[test]
    fn config_errors() {
        let err = filter(&[]).unwrap_err();
        assert!(err.contains("`keywords` is required"), "{err}");
        let err = filter(&[("keywords", " , ")]).unwrap_err();
        assert!(err.contains("`keywords`"), "{err}");
        let err = filter(&[("keywords", "bts"), ("whole_words", "true")]).unwrap_err();
        assert!(err.contains("`whole_words`"), "{err}");
        let err = filter(&[("keywords", "bts"), ("invert", "perhaps")]).unwrap_err();
        assert!(err.contains("`invert`"), "{err}");
        let err = filter(&[("keywords", "bts"), ("fields", "text,,a..b")]).unwrap_err();
        assert!(err.contains("`fields`") && err.contains("a..b"), "{err}");
    }

    #[test]
    fn keeps_drops_and_inverts() {
        let f = filter(&[("keywords", "bts, army")]).unwrap();
        assert_eq!(f.apply(br#"{"text":"Go ARMY"}"#), Outcome::Keep);
        assert_eq!(f.apply(br#"{"text":"nothing here"}"#), Outcome::Drop);
        assert_eq!(f.apply(br#"{"user":{"name":"bts"}}"#), Outcome::Drop);
        let inv = filter(&[("keywords", "bts"), ("invert", "true")]).unwrap();
        assert_eq!(inv.apply(br#"{"text":"BTS"}"#), Outcome::Drop);
        assert_eq!(inv.apply(br#"{"text":"other"}"#), Outcome::Keep);
        assert!(matches!(inv.apply(b"[]"), Outcome::Fail(_)));
    }

    #[test]
    fn custom_fields_replace_the_defaults() {
        let f = filter(&[("keywords", "bts"), ("fields", "user.description, place.*")]).unwrap();
        assert_eq!(f.apply(br#"{"text":"BTS"}"#), Outcome::Drop);
        assert_eq!(
            f.apply(br#"{"user":{"description":"BTS fan"}}"#),
            Outcome::Keep
        );
        assert_eq!(
            f.apply(br#"{"place":{"full_name":"BTS town","bounding_box":{}}}"#),
            Outcome::Keep
        );
    }

    #[test]
    fn escaped_text_is_searched() {
        let f = filter(&[("keywords", "방탄소년단")]).unwrap();
        let escaped = br#"{"text":"\ubc29\ud0c4\uc18c\ub144\ub2e8\uc774 \ucef4\ubc31"}"#;
        assert_eq!(f.apply(escaped), Outcome::Keep);
    }
}
