//! Keyword matching: substring search with optional case folding and word boundaries.
//!
//! Case-insensitive matching compares Unicode simple lowercase forms (plus final sigma `ς`
//! folded to `σ`). Keywords made only of ASCII and caseless characters (Hangul, CJK, kana,
//! Arabic, Hebrew, emoji, ...) are matched directly on the UTF-8 bytes with no allocation;
//! only keywords with non-ASCII cased letters (e.g. `Café`, `Ελλάδα`) fold the text first.
//!
//! Whole-word rule: a word character is a Unicode letter or digit or `_` (combining accents,
//! Hebrew points and Arabic harakat excluded: they decorate a letter). A match is rejected
//! when a word character of the text touches a word character at the keyword's edge, on either
//! side. Scripts written without spaces between words (Hangul, Han, kana, Thai, ...) never form
//! a boundary conflict, on either side: `방탄소년단` matches in `방탄소년단이`, and `bts` in
//! `BTS의`, but `bts` does not match in `@BTS_twt` or `BTSfan`, while `#BTS` and `BTS!` match.

use memchr::memmem;

#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    keywords: Vec<Keyword>,
    whole_word: bool,
}

#[derive(Debug, Clone)]
struct Keyword {
    /// As configured (reported by enrich's `matched_keywords`).
    original: String,
    /// What is searched for: the folded keyword when case-insensitive.
    needle: String,
    finder: memmem::Finder<'static>,
    /// Search in the folded text instead of the raw bytes.
    needs_folding: bool,
    /// Compare ASCII letters case-insensitively (the raw-bytes path of case-insensitive mode).
    ascii_ci: bool,
    /// Whether the boundary must be checked on each side.
    check_left: bool,
    check_right: bool,
}

impl Matcher {
    pub(crate) fn new(
        keywords: Vec<String>,
        case_sensitive: bool,
        whole_word: bool,
    ) -> Result<Matcher, String> {
        let mut out: Vec<Keyword> = Vec::with_capacity(keywords.len());
        for original in keywords {
            let (needle, needs_folding) = if case_sensitive {
                (original.clone(), false)
            } else {
                let needs = original.chars().any(|c| !c.is_ascii() && !is_caseless(c));
                (fold(&original), needs)
            };
            if out.iter().any(|k| k.needle == needle) {
                continue; // a duplicate (possibly differing only in case)
            }
            let (Some(first), Some(last)) = (needle.chars().next(), needle.chars().next_back())
            else {
                continue; // list items are never empty
            };
            out.push(Keyword {
                finder: memmem::Finder::new(needle.as_bytes()).into_owned(),
                needle,
                original,
                needs_folding,
                ascii_ci: !case_sensitive && !needs_folding,
                check_left: whole_word && bounded(first),
                check_right: whole_word && bounded(last),
            });
        }
        Ok(Matcher {
            keywords: out,
            whole_word,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.keywords.len()
    }

    pub(crate) fn keyword(&self, i: usize) -> &str {
        &self.keywords[i].original
    }

    /// Whether any keyword occurs in `text`.
    pub(crate) fn matches_any(&self, text: &str) -> bool {
        let mut folded = None;
        self.keywords.iter().any(|k| k.find_in(text, &mut folded))
    }

    /// Marks `found[i]` for each keyword `i` that occurs in `text`.
    pub(crate) fn mark_matches(&self, text: &str, found: &mut [bool]) {
        let mut folded = None;
        for (k, f) in self.keywords.iter().zip(found) {
            if !*f && k.find_in(text, &mut folded) {
                *f = true;
            }
        }
    }

    pub(crate) fn describe(&self) -> String {
        let list: Vec<&str> = self.keywords.iter().map(|k| k.original.as_str()).collect();
        format!(
            "{} keyword(s) [{}], whole_word={}",
            list.len(),
            list.join(", "),
            self.whole_word
        )
    }
}

impl Keyword {
    fn find_in(&self, text: &str, folded: &mut Option<String>) -> bool {
        if self.needs_folding {
            let folded = folded.get_or_insert_with(|| fold(text));
            self.find_raw(folded)
        } else {
            self.find_raw(text)
        }
    }

    fn find_raw(&self, text: &str) -> bool {
        let hay = text.as_bytes();
        let needle = self.needle.as_bytes();
        if hay.len() < needle.len() {
            return false;
        }
        if !self.ascii_ci {
            return self
                .finder
                .find_iter(hay)
                .any(|start| self.boundaries_ok(text, start));
        }
        // ASCII case-insensitive search. UTF-8 continuation and lead bytes are never ASCII, so a
        // byte-wise comparison only matches at character boundaries and compares non-ASCII
        // (caseless) characters exactly.
        let first = needle[0];
        let last_start = hay.len() - needle.len();
        let mut from = 0;
        while from <= last_start {
            let window = &hay[from..=last_start];
            let found = if first.is_ascii_alphabetic() {
                memchr::memchr2(
                    first.to_ascii_lowercase(),
                    first.to_ascii_uppercase(),
                    window,
                )
            } else {
                memchr::memchr(first, window)
            };
            let Some(offset) = found else {
                return false;
            };
            let start = from + offset;
            if hay[start + 1..start + needle.len()].eq_ignore_ascii_case(&needle[1..])
                && self.boundaries_ok(text, start)
            {
                return true;
            }
            from = start + 1;
        }
        false
    }

    fn boundaries_ok(&self, text: &str, start: usize) -> bool {
        if self.check_left && text[..start].chars().next_back().is_some_and(bounded) {
            return false;
        }
        let end = start + self.needle.len();
        !(self.check_right && text[end..].chars().next().is_some_and(bounded))
    }
}

/// Folds `s` for case-insensitive comparison: Unicode lowercase, final sigma as sigma.
pub(crate) fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            for l in c.to_lowercase() {
                out.push(if l == 'ς' { 'σ' } else { l });
            }
        }
    }
    out
}

/// A character with no case: its lowercase and uppercase forms are itself.
fn is_caseless(c: char) -> bool {
    let mut lower = c.to_lowercase();
    let mut upper = c.to_uppercase();
    lower.next() == Some(c)
        && lower.next().is_none()
        && upper.next() == Some(c)
        && upper.next().is_none()
}

/// A word character that takes part in whole-word boundaries: a letter, digit or `_`, except
/// in scripts written without spaces between words.
fn bounded(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    c.is_alphanumeric() && !is_unspaced_script(c) && !is_diacritic_mark(c)
}

/// Combining diacritics that decorate a letter without changing the word (Unicode counts some
/// as alphabetic): Latin combining accents, Hebrew points, Arabic harakat.
fn is_diacritic_mark(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F     // combining diacritical marks
        | 0x0591..=0x05C7   // Hebrew cantillation and points
        | 0x0610..=0x061A   // Arabic honorifics
        | 0x064B..=0x065F   // Arabic harakat
        | 0x0670            // Arabic superscript alef
        | 0x06D6..=0x06ED   // Arabic Quranic marks
        | 0x1AB0..=0x1AFF   // combining diacritical marks extended
        | 0x1DC0..=0x1DFF   // combining diacritical marks supplement
        | 0x20D0..=0x20FF   // combining marks for symbols
        | 0xFE20..=0xFE2F   // combining half marks
    )
}

/// Scripts that do not separate words with spaces, where a keyword is a substring of the
/// surrounding run of letters (Korean particles, Japanese and Chinese text, Thai, ...).
fn is_unspaced_script(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF     // Thai, Lao
        | 0x1000..=0x109F   // Myanmar
        | 0x1100..=0x11FF   // Hangul Jamo
        | 0x1780..=0x17FF   // Khmer
        | 0x3000..=0x303F   // CJK symbols and punctuation (々, 〇, ...)
        | 0x3040..=0x30FF   // Hiragana, Katakana
        | 0x3130..=0x318F   // Hangul compatibility Jamo
        | 0x31F0..=0x31FF   // Katakana phonetic extensions
        | 0x3400..=0x4DBF   // CJK extension A
        | 0x4E00..=0x9FFF   // CJK unified ideographs
        | 0xA960..=0xA97F   // Hangul Jamo extended A
        | 0xAC00..=0xD7FF   // Hangul syllables, Jamo extended B
        | 0xF900..=0xFAFF   // CJK compatibility ideographs
        | 0xFF66..=0xFFDC   // half-width Katakana and Hangul
        | 0x20000..=0x3FFFF // CJK extensions B and later
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(keywords: &[&str], case_sensitive: bool, whole_word: bool) -> Matcher {
        Matcher::new(
            keywords.iter().map(|s| s.to_string()).collect(),
            case_sensitive,
            whole_word,
        )
        .unwrap()
    }

    #[test]
    fn whole_word_rules() {
        let bts = m(&["bts"], false, true);
        for yes in [
            "BTS",
            "bts",
            "#BTS",
            "I love BTS!",
            "(bts)",
            "bts-army",
            "BTS의 새 앨범",
            "방탄BTS",
            "🎉BTS🎉",
            "«BTS»",
            "x\nbts",
        ] {
            assert!(bts.matches_any(yes), "{yes:?} should match");
        }
        for no in [
            "@BTS_twt", "BTSfan", "subts", "bts2", "_bts", "b ts", "", "btś", "ébts",
        ] {
            assert!(!bts.matches_any(no), "{no:?} should not match");
        }
        // A keyword that starts with a non-word character needs no boundary on that side.
        let tag = m(&["#bts"], false, true);
        assert!(tag.matches_any("love#BTS"));
        assert!(!tag.matches_any("#BTSArmy"));
        assert!(!tag.matches_any("BTS"));
    }

    #[test]
    fn whole_word_off_matches_substrings() {
        let bts = m(&["bts"], false, false);
        assert!(bts.matches_any("@BTS_twt"));
        assert!(bts.matches_any("subtsx"));
    }

    #[test]
    fn hangul_and_cjk_keywords_match_inside_runs() {
        let k = m(&["방탄소년단"], false, true);
        assert!(k.matches_any("방탄소년단"));
        assert!(k.matches_any("방탄소년단이 컴백했다"));
        assert!(k.matches_any("#방탄소년단"));
        assert!(!k.matches_any("방탄 소년단"));
        let j = m(&["東京"], false, true);
        assert!(j.matches_any("東京都に行く"));
    }

    #[test]
    fn case_sensitivity() {
        let cs = m(&["BTS"], true, true);
        assert!(cs.matches_any("#BTS"));
        assert!(!cs.matches_any("bts"));
        let ci = m(&["BTS"], false, true);
        assert!(ci.matches_any("bts"));
        assert!(ci.matches_any("Bts"));
    }

    #[test]
    fn unicode_case_folding() {
        let k = m(&["Café"], false, true);
        assert!(k.matches_any("CAFÉ au lait"));
        assert!(k.matches_any("café"));
        assert!(!k.matches_any("cafés"));
        let greek = m(&["ΟΔΟΣ"], false, true);
        assert!(greek.matches_any("η οδος"), "final sigma folds to sigma");
        assert!(!greek.matches_any("η οδός"), "accents are not folded");
        let cyr = m(&["москва"], false, true);
        assert!(cyr.matches_any("МОСКВА 2024"));
    }

    #[test]
    fn emoji_and_rtl_keywords() {
        let k = m(&["💜", "مرحبا", "שלום"], false, true);
        assert!(k.matches_any("I purple you 💜💜"));
        assert!(k.matches_any("!مرحبا بالعالم"));
        assert!(k.matches_any("שלום עולם"));
        assert!(
            k.matches_any("مرحباً"),
            "a combining mark is not a word character"
        );
        assert!(!k.matches_any("hello"));
    }

    #[test]
    fn mark_matches_reports_each_keyword() {
        let k = m(&["bts", "army", "Suga"], false, true);
        let mut found = [false; 3];
        k.mark_matches("ARMY loves BTS", &mut found);
        assert_eq!(found, [true, true, false]);
        assert_eq!(k.keyword(2), "Suga");
    }

    #[test]
    fn duplicate_keywords_collapse() {
        let k = m(&["bts", "BTS", "Bts"], false, true);
        assert_eq!(k.len(), 1);
        let k = m(&["bts", "BTS"], true, true);
        assert_eq!(k.len(), 2);
    }
}
