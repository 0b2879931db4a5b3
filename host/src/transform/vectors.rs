//! Test vectors in the format of `guest-plugins/vectors` (its README is the reference): named
//! inputs, the configs a plugin runs with, the outcome expected of each input in each config,
//! and configs it must refuse. `host plugin test` holds a plugin to them; so does the polyglot
//! suite, every implementation of the repository's own plugins.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::plugin::{CallError, Instance};
use super::{Outcome, Record};

/// Values longer than this are compared by SHA-256 and length.
pub const INLINE_VALUE: usize = 4096;
/// A reason with this prefix matches any other with it and a non-empty rest: the rest is the
/// JSON parser's own words, which no implementation is asked to copy.
pub const PARSER_REASON: &str = "not valid JSON: ";

/// A vectors directory: `inputs.json`, `cases.json` and `expected/<case>.json`.
#[derive(Debug)]
pub struct Vectors {
    pub dir: PathBuf,
    pub inputs: Vec<Input>,
    pub cases: Vec<Case>,
    pub config_errors: Vec<ConfigError>,
}

/// One named record value.
#[derive(Debug)]
pub struct Input {
    pub name: String,
    pub value: Vec<u8>,
}

/// A config a plugin runs every input with.
#[derive(Debug)]
pub struct Case {
    pub name: String,
    /// The plugin the case is for, as `cases.json` names it (`keyword-filter`).
    pub plugin: String,
    pub config: Vec<(String, String)>,
    /// The config as written in `cases.json`, which `expected/<case>.json` repeats.
    pub raw_config: Value,
}

/// A config the plugin's `init` must refuse with exactly this message.
#[derive(Debug)]
pub struct ConfigError {
    pub plugin: String,
    pub config: Vec<(String, String)>,
    pub error: String,
}

impl Vectors {
    pub fn load(dir: &Path) -> anyhow::Result<Vectors> {
        let inputs = read_json(&dir.join("inputs.json"))?;
        let inputs = inputs["inputs"]
            .as_array()
            .context("inputs.json: no `inputs` array")?
            .iter()
            .map(input)
            .collect::<anyhow::Result<_>>()
            .context("inputs.json")?;
        let cases = read_json(&dir.join("cases.json"))?;
        let list = |key: &str| cases[key].as_array().cloned().unwrap_or_default();
        let config_errors = list("config_errors")
            .iter()
            .map(|c| {
                Ok(ConfigError {
                    plugin: string(c, "plugin")?,
                    config: config_pairs(&c["config"])?,
                    error: string(c, "error")?,
                })
            })
            .collect::<anyhow::Result<_>>()
            .context("cases.json: config_errors")?;
        let cases = list("cases")
            .iter()
            .map(|c| {
                Ok(Case {
                    name: string(c, "name")?,
                    plugin: string(c, "plugin")?,
                    config: config_pairs(&c["config"])?,
                    raw_config: c["config"].clone(),
                })
            })
            .collect::<anyhow::Result<_>>()
            .context("cases.json: cases")?;
        Ok(Vectors {
            dir: dir.to_path_buf(),
            inputs,
            cases,
            config_errors,
        })
    }

    /// The plugin names the cases are for, in the order they first appear.
    pub fn plugins(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for c in &self.cases {
            if !names.contains(&c.plugin.as_str()) {
                names.push(&c.plugin);
            }
        }
        names
    }

    /// The expected outcome of each input for `case`, by input name.
    pub fn expected(&self, case: &Case) -> anyhow::Result<Map<String, Value>> {
        let path = self.expected_path(case);
        let doc = read_json(&path)?;
        if doc["config"] != case.raw_config {
            bail!(
                "{}: its config differs from the case's in cases.json (stale?)",
                path.display()
            );
        }
        doc["outcomes"]
            .as_object()
            .cloned()
            .with_context(|| format!("{}: no `outcomes` object", path.display()))
    }

    pub fn expected_path(&self, case: &Case) -> PathBuf {
        self.dir
            .join("expected")
            .join(format!("{}.json", case.name))
    }

    /// The values of the inputs, in order.
    pub fn values(&self) -> Vec<&[u8]> {
        self.inputs.iter().map(|i| i.value.as_slice()).collect()
    }
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn string(v: &Value, key: &str) -> anyhow::Result<String> {
    v[key]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("`{key}` is missing or not a string in {v}"))
}

/// `[["key", "value"], ...]`.
fn config_pairs(v: &Value) -> anyhow::Result<Vec<(String, String)>> {
    let pairs = v.as_array().context("a config is not an array of pairs")?;
    pairs
        .iter()
        .map(|p| match (p[0].as_str(), p[1].as_str()) {
            (Some(k), Some(v)) => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("config entry {p} is not a [key, value] pair of strings"),
        })
        .collect()
}

/// An input is `text` (UTF-8), `base64` (other bytes) or `repeat` (a big value: `head`, then
/// `unit` `count` times with `{i}` replaced by 0, 1, 2, ..., then `tail`).
fn input(item: &Value) -> anyhow::Result<Input> {
    let name = string(item, "name")?;
    let value = if let Some(text) = item["text"].as_str() {
        text.as_bytes().to_vec()
    } else if let Some(b64) = item["base64"].as_str() {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .with_context(|| format!("input `{name}`: base64"))?
    } else {
        let r = &item["repeat"];
        let unit = string(r, "unit").with_context(|| format!("input `{name}`"))?;
        let mut s = string(r, "head")?;
        for i in 0..r["count"].as_u64().unwrap_or(0) {
            s.push_str(&unit.replace("{i}", &i.to_string()));
        }
        s.push_str(&string(r, "tail")?);
        s.into_bytes()
    };
    Ok(Input { name, value })
}

/// The outcome of each value, `batch` records per call. An input is a record with that value
/// and no key, headers or timestamp.
pub fn outcomes(
    instance: &mut Instance,
    values: &[&[u8]],
    batch: usize,
) -> Result<Vec<Outcome>, CallError> {
    let mut out = Vec::with_capacity(values.len());
    for chunk in values.chunks(batch.max(1)) {
        let records: Vec<Record> = chunk.iter().map(|v| crate::event::from_line(v)).collect();
        out.extend(instance.process(&records)?);
    }
    Ok(out)
}

/// An outcome in the vectors' form.
pub fn describe(o: &Outcome) -> Value {
    let hashed =
        |v: &[u8]| json!({"outcome": "set-value", "value_sha256": sha256_hex(v), "len": v.len()});
    match o {
        Outcome::Keep => json!({"outcome": "keep"}),
        Outcome::Drop => json!({"outcome": "drop"}),
        Outcome::SetValue(v) if v.len() <= INLINE_VALUE => match std::str::from_utf8(v) {
            Ok(s) => json!({"outcome": "set-value", "value": s}),
            Err(_) => hashed(v),
        },
        Outcome::SetValue(v) => hashed(v),
        Outcome::Fail(reason) => json!({"outcome": "fail", "reason": reason}),
        Outcome::Replace(_) | Outcome::Expand(_) => {
            json!({"outcome": "unexpected", "debug": format!("{o:?}")})
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether an outcome matches the expected one: exactly, except that a `not valid JSON: `
/// reason matches on that prefix.
pub fn matches(expected: &Value, got: &Value) -> bool {
    if expected == got {
        return true;
    }
    let (Some(want), Some(have)) = (expected["reason"].as_str(), got["reason"].as_str()) else {
        return false;
    };
    want.starts_with(PARSER_REASON)
        && have.starts_with(PARSER_REASON)
        && have.len() > PARSER_REASON.len()
}

/// An input whose outcome is not the expected one (`expected` is null when the vectors
/// have none for it).
#[derive(Debug)]
pub struct Mismatch {
    pub input: String,
    pub expected: Value,
    pub got: Value,
}

/// The inputs whose outcome in `got` differs from `expected`.
pub fn compare(inputs: &[Input], got: &[Outcome], expected: &Map<String, Value>) -> Vec<Mismatch> {
    inputs
        .iter()
        .zip(got)
        .filter_map(|(input, outcome)| {
            let want = expected.get(&input.name).cloned().unwrap_or(Value::Null);
            let have = describe(outcome);
            (!matches(&want, &have)).then(|| Mismatch {
                input: input.name.clone(),
                expected: want,
                got: have,
            })
        })
        .collect()
}

impl std::fmt::Display for Mismatch {
    /// Input name, then expected and got on their own lines; for two values, where they part.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "input `{}`:", self.input)?;
        if self.expected.is_null() {
            writeln!(f, "    no expected outcome in the vectors")?;
        } else {
            writeln!(f, "    - expected {}", short(&self.expected.to_string()))?;
        }
        writeln!(f, "    + got      {}", short(&self.got.to_string()))?;
        if let (Some(want), Some(have)) =
            (self.expected["value"].as_str(), self.got["value"].as_str())
        {
            let at = want
                .char_indices()
                .zip(have.chars())
                .find(|((_, w), h)| w != h)
                .map_or(want.len().min(have.len()), |((i, _), _)| i);
            writeln!(
                f,
                "    values part at byte {at}: expected …{}… got …{}…",
                around(want, at),
                around(have, at)
            )?;
        }
        Ok(())
    }
}

/// At most 300 characters of `s`.
fn short(s: &str) -> String {
    match s.char_indices().nth(300) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

/// A few characters either side of byte `at` (a char boundary, or the end) of `s`.
fn around(s: &str, at: usize) -> String {
    let start = s[..at.min(s.len())]
        .char_indices()
        .rev()
        .nth(19)
        .map_or(0, |(i, _)| i);
    let rest = &s[start..];
    let end = rest.char_indices().nth(40).map_or(rest.len(), |(i, _)| i);
    format!("{:?}", &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The comparison must be able to fail: a changed byte, outcome or exact reason are all
    /// caught; only the parser's words after `not valid JSON: ` are free.
    #[test]
    fn the_comparison_catches_differences() {
        let set = |s: &str| describe(&Outcome::SetValue(s.as_bytes().to_vec()));
        let fail = |s: &str| describe(&Outcome::Fail(s.to_string()));
        assert!(matches(&set(r#"{"a":1}"#), &set(r#"{"a":1}"#)));
        assert!(!matches(&set(r#"{"a":1}"#), &set(r#"{"a": 1}"#)));
        assert!(!matches(&set("x"), &describe(&Outcome::Keep)));
        assert!(!matches(
            &describe(&Outcome::Keep),
            &describe(&Outcome::Drop)
        ));
        assert!(matches(
            &fail("not valid JSON: expected value at line 1 column 1"),
            &fail("not valid JSON: Expecting value: line 1 column 1 (char 0)")
        ));
        assert!(!matches(
            &fail("not valid JSON: x"),
            &fail("not valid JSON: ")
        ));
        assert!(!matches(
            &fail("not a JSON object: the document is an array"),
            &fail("not a JSON object: the document is a string")
        ));
        let big = "x".repeat(INLINE_VALUE + 1);
        let mut other = big.clone();
        other.replace_range(100..101, "y");
        assert!(!matches(&set(&big), &set(&other)));
    }

    #[test]
    fn a_mismatch_shows_where_two_values_part() {
        let m = Mismatch {
            input: "tweet".into(),
            expected: describe(&Outcome::SetValue(br#"{"a":1,"b":"caf\u00e9"}"#.to_vec())),
            got: describe(&Outcome::SetValue(
                r#"{"a":1,"b":"café"}"#.as_bytes().to_vec(),
            )),
        };
        let text = m.to_string();
        assert!(
            text.starts_with("input `tweet`:\n    - expected "),
            "{text}"
        );
        assert!(text.contains("values part at byte 15"), "{text}");
    }
}
