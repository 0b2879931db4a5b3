//! Index names from the `index` pattern (`twitter-%{+YYYYMMdd}`): parsing, checking against
//! Elasticsearch's naming rules, and a cache of the names of recent time buckets.

use anyhow::bail;
use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Deserialize;

/// Which time chooses the index of a record.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IndexTime {
    /// The record's timestamp (the Kafka message time, or the tweet's `created_at` for the
    /// generate source); records without one use the time of writing.
    #[default]
    Event,
    /// The time the batch is written.
    Ingest,
}

/// A parsed `index` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPattern {
    parts: Vec<Part>,
    /// Milliseconds per bucket of equal names (an hour or a day), `None` for a fixed name.
    bucket_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Year,
    Month,
    Day,
    Hour,
}

impl IndexPattern {
    /// Parses `twitter-%{+YYYYMMdd}`-style patterns (see [`ElasticsearchConfig::index`]).
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let mut parts = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let Some(at) = rest.find("%{") else {
                parts.push(Part::Lit(rest.to_string()));
                break;
            };
            if at > 0 {
                parts.push(Part::Lit(rest[..at].to_string()));
            }
            let Some(end) = rest[at..].find('}') else {
                bail!("unclosed `%{{`");
            };
            let inner = &rest[at + 2..at + end];
            let Some(format) = inner.strip_prefix('+') else {
                bail!(
                    "`%{{{inner}}}`: only date formats (`%{{+YYYYMMdd}}`) are supported, not \
                     field references"
                );
            };
            parse_date_format(format, &mut parts)?;
            rest = &rest[at + end + 1..];
        }
        let has = |p: &Part| parts.contains(p);
        let bucket_ms = if has(&Part::Hour) {
            Some(3_600_000)
        } else if has(&Part::Day) || has(&Part::Month) || has(&Part::Year) {
            Some(86_400_000)
        } else {
            None
        };
        let pattern = IndexPattern { parts, bucket_ms };
        let sample = pattern.format(&DateTime::<Utc>::UNIX_EPOCH);
        validate_index_name(&sample)?;
        Ok(pattern)
    }

    /// The index name for a time.
    pub fn format(&self, t: &DateTime<Utc>) -> String {
        let mut out = String::with_capacity(32);
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Year => out.push_str(&format!("{:04}", t.year())),
                Part::Month => out.push_str(&format!("{:02}", t.month())),
                Part::Day => out.push_str(&format!("{:02}", t.day())),
                Part::Hour => out.push_str(&format!("{:02}", t.hour())),
            }
        }
        out
    }
}

fn parse_date_format(format: &str, parts: &mut Vec<Part>) -> anyhow::Result<()> {
    let bytes = format.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_alphabetic() {
            let run = bytes[i..].iter().take_while(|&&b| b == c).count();
            let token = &format[i..i + run];
            parts.push(match token {
                "YYYY" | "yyyy" => Part::Year,
                "MM" => Part::Month,
                "dd" => Part::Day,
                "HH" => Part::Hour,
                _ => bail!(
                    "date token `{token}` in `%{{+{format}}}` is not supported (use YYYY, MM, dd, HH)"
                ),
            });
            i += run;
        } else {
            let run = bytes[i..]
                .iter()
                .take_while(|b| !b.is_ascii_alphabetic())
                .count();
            parts.push(Part::Lit(format[i..i + run].to_string()));
            i += run;
        }
    }
    Ok(())
}

/// Elasticsearch's rules for index names (lowercase, no `\/*?"<>| ,#:`, not starting with
/// `-_+`, not `.` or `..`, at most 255 bytes).
fn validate_index_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name == "." || name == ".." {
        bail!("{name:?} is not a valid index name");
    }
    if name.starts_with(['-', '_', '+']) {
        bail!("index name {name:?} must not start with `-`, `_` or `+`");
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_uppercase() || "\\/*?\"<>| ,#:".contains(*c))
    {
        bail!("index name {name:?} must be lowercase and must not contain {c:?}");
    }
    if name.len() > 255 {
        bail!("index name {name:?} is longer than 255 bytes");
    }
    Ok(())
}

/// Formatted names by bucket, so a record costs a division and a comparison, not a format.
#[derive(Default)]
pub(super) struct NameCache {
    entries: Vec<(i64, String)>,
    last: usize,
}

impl NameCache {
    pub(super) fn get(&mut self, pattern: &IndexPattern, ms: i64) -> &str {
        let key = pattern.bucket_ms.map_or(0, |b| ms.div_euclid(b));
        if self.entries.get(self.last).is_none_or(|(k, _)| *k != key) {
            match self.entries.iter().position(|(k, _)| *k == key) {
                Some(i) => self.last = i,
                None => {
                    if self.entries.len() >= 256 {
                        self.entries.clear();
                    }
                    let t = DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH);
                    self.entries.push((key, pattern.format(&t)));
                    self.last = self.entries.len() - 1;
                }
            }
        }
        &self.entries[self.last].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_patterns() {
        let t = DateTime::parse_from_rfc3339("2026-11-26T07:05:09Z")
            .unwrap()
            .with_timezone(&Utc);
        let name = |p: &str| IndexPattern::parse(p).unwrap().format(&t);
        assert_eq!(name("twitter-%{+YYYYMMdd}"), "twitter-20261126");
        assert_eq!(name("logs-%{+YYYY.MM.dd}"), "logs-2026.11.26");
        assert_eq!(name("t-%{+yyyy}-%{+MM}-x-%{+dd.HH}"), "t-2026-11-x-26.07");
        assert_eq!(name("fixed"), "fixed");
        assert_eq!(IndexPattern::parse("fixed").unwrap().bucket_ms, None);
        assert!(IndexPattern::parse("Twitter-%{+YYYY}").is_err());
        assert!(IndexPattern::parse("t-%{+YYYY.ww}").is_err());
        assert!(IndexPattern::parse("t-%{[user][name]}").is_err());
        assert!(IndexPattern::parse("t-%{+YYYY").is_err());
        assert!(IndexPattern::parse("_t").is_err());
    }

    #[test]
    fn name_cache_follows_buckets() {
        let p = IndexPattern::parse("t-%{+YYYYMMdd}").unwrap();
        let mut c = NameCache::default();
        let day = 86_400_000;
        assert_eq!(c.get(&p, 0), "t-19700101");
        assert_eq!(c.get(&p, day - 1), "t-19700101");
        assert_eq!(c.get(&p, day), "t-19700102");
        assert_eq!(c.get(&p, -1), "t-19691231");
        assert_eq!(c.get(&p, 5), "t-19700101");
        assert_eq!(c.entries.len(), 3);
    }
}
