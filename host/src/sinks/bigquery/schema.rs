//! BigQuery table schemas derived from JSON records.
//!
//! [`SchemaBuilder`] looks at the records that leave the transform chain and derives a table
//! schema: scalar types, nested `RECORD`s and `REPEATED` arrays. [`widen`] adds the fields a
//! newer sample has to an existing table schema without touching what is there, and
//! [`to_bq_json`] prints the schema in the JSON form that `bq mk --schema` and
//! `bq show --schema` use.
//!
//! # Rules
//!
//! | JSON | BigQuery |
//! | --- | --- |
//! | `true` / `false` | `BOOL` |
//! | integer (fits in i64) | `INT64` |
//! | other number (fraction, exponent, or > i64::MAX) | `FLOAT64` |
//! | string | `STRING`; `TIMESTAMP` when the key is one of [`DeriveOptions::timestamp_fields`] and every value seen parses as RFC 3339 |
//! | object | `RECORD` with its fields (objects nested deeper than [`MAX_DEPTH`] become `STRING`, see [`normalize_record`]) |
//! | array of scalars / of objects | `REPEATED` scalar / `REPEATED RECORD`; the element types are merged |
//! | array that holds an array (e.g. `place.bounding_box.coordinates`) | `STRING`: BigQuery has no arrays of arrays, so [`normalize_record`] replaces such a value by its JSON text |
//! | `null`, `[]`, `{}` | nothing yet: the field is added once a value with a type is seen |
//!
//! Merging across records: `INT64` + `FLOAT64` gives `FLOAT64`; `TIMESTAMP` + `STRING` gives
//! `STRING`; two `RECORD`s merge field by field; any other conflict (a number here and a string
//! there, an object here and a scalar there, an array here and a single value there) gives a
//! `NULLABLE STRING`. [`conform`] turns such values into strings so they still load (in load
//! jobs, rows whose value does not fit their column count against `max_bad_records`).
//!
//! # Column names
//!
//! BigQuery column names are ASCII letters, digits and underscores, start with a letter or an
//! underscore, are at most 300 characters, compare case-insensitively and must not start with
//! `_TABLE_`, `_FILE_`, `_PARTITION`, `_ROW_TIMESTAMP`, `__ROOT__` or `_COLIDENTIFIER`.
//! [`column_name`] maps a JSON key to such a name:
//! - every other character (`@`, `.`, `-`, space, non-ASCII letters, ...) becomes `_`, so
//!   `@timestamp` is `_timestamp` and `user-agent` is `user_agent`;
//! - a name that starts with a digit, or with a reserved prefix, gets a leading `_`
//!   (`1st` is `_1st`, `_PARTITIONTIME` is `__PARTITIONTIME`); the empty key is `_`;
//! - names are cut to 300 characters.
//!
//! When two keys of one object map to the same name (ignoring case), for example `@timestamp`
//! and `_timestamp`, or `Foo` and `foo`, the key that is already a valid name keeps it (of two
//! valid ones, the one that sorts first) and the other gets `_` plus 8 hex digits of a hash of
//! its original spelling. [`normalize_record`] applies the same mapping to a record, so records
//! written with it load into the derived schema.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// BigQuery allows 15 levels of nested `RECORD`s; deeper objects are kept as JSON text.
pub const MAX_DEPTH: usize = 15;
/// Longest column name BigQuery accepts.
pub const MAX_NAME_LEN: usize = 300;
const RESERVED_PREFIXES: &[&str] = &[
    "_table_",
    "_file_",
    "_partition",
    "_row_timestamp",
    "__root__",
    "_colidentifier",
];

/// A column type. Serialised with the GoogleSQL names; the legacy names the REST API returns
/// (`INTEGER`, `FLOAT`, `BOOLEAN`, `STRUCT`) are accepted when reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FieldType {
    #[serde(rename = "STRING")]
    String,
    #[serde(rename = "INT64", alias = "INTEGER")]
    Int64,
    #[serde(rename = "FLOAT64", alias = "FLOAT")]
    Float64,
    #[serde(rename = "BOOL", alias = "BOOLEAN")]
    Bool,
    #[serde(rename = "TIMESTAMP")]
    Timestamp,
    #[serde(rename = "JSON")]
    Json,
    #[serde(rename = "RECORD", alias = "STRUCT")]
    Record,
    /// Types this module never derives but that a given schema may use (`BYTES`, `DATE`,
    /// `NUMERIC`, `GEOGRAPHY`, ...): kept as they are, values passed through unchanged.
    #[serde(untagged)]
    Other(OtherType),
}

/// The other BigQuery types, so that a hand-written schema file round-trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OtherType {
    Bytes,
    Date,
    Time,
    Datetime,
    Numeric,
    Bignumeric,
    Geography,
    Interval,
    Range,
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).expect("enum serialises");
        f.write_str(s.as_str().unwrap_or("?"))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mode {
    #[default]
    Nullable,
    Repeated,
    Required,
}

/// One column, as in BigQuery's schema JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Field {
    pub fn new(name: impl Into<String>, field_type: FieldType, mode: Mode) -> Self {
        Field {
            name: name.into(),
            field_type,
            mode,
            fields: Vec::new(),
            description: None,
        }
    }

    pub fn record(name: impl Into<String>, mode: Mode, fields: Vec<Field>) -> Self {
        Field {
            fields,
            ..Field::new(name, FieldType::Record, mode)
        }
    }
}

/// Finds a field by name, ignoring case (as BigQuery does).
pub fn find<'a>(fields: &'a [Field], name: &str) -> Option<&'a Field> {
    fields.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

/// Options for [`SchemaBuilder`].
#[derive(Debug, Clone)]
pub struct DeriveOptions {
    /// JSON keys (original spelling, at any depth) whose RFC 3339 string values make a
    /// `TIMESTAMP` column. Default: `@timestamp` (what the enrich plugin adds, from either tweet
    /// shape). `created_at` is not in it by default because v1.1 tweets spell it
    /// `Wed Oct 10 20:19:24 +0000 2018`, and a table created from v2 tweets alone would then
    /// refuse the v1.1 ones.
    pub timestamp_fields: Vec<String>,
}

impl Default for DeriveOptions {
    fn default() -> Self {
        DeriveOptions {
            timestamp_fields: vec!["@timestamp".to_string()],
        }
    }
}

/// A type seen so far at one place in the records.
#[derive(Debug, Clone)]
enum Kind {
    Bool,
    Int,
    Float,
    String,
    Timestamp,
    Record(Node),
}

/// The fields of one object level, in first-seen order (a new record's new keys are appended
/// in the order serde_json iterates them).
#[derive(Debug, Clone, Default)]
struct Node {
    fields: Vec<Slot>,
    /// Lower-cased column name -> index in `fields`.
    index: HashMap<String, usize>,
}

#[derive(Debug, Clone)]
struct Slot {
    name: String,
    /// `None` while only nulls / empty containers were seen.
    kind: Option<Kind>,
    repeated: bool,
    /// Some values were arrays and others single values: the column is a `STRING`.
    mixed: bool,
}

/// Derives a schema from many records. Feed records with [`SchemaBuilder::add`], then call
/// [`SchemaBuilder::fields`].
#[derive(Debug, Clone, Default)]
pub struct SchemaBuilder {
    options: DeriveOptions,
    root: Node,
    records: u64,
}

impl SchemaBuilder {
    pub fn new(options: DeriveOptions) -> Self {
        SchemaBuilder {
            options,
            ..Default::default()
        }
    }

    /// Records seen so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Adds one record. It is normalised first (see [`normalize_record`]), so it may be given
    /// with its original keys. Values that are not objects are ignored.
    pub fn add(&mut self, record: &Value) {
        let Value::Object(_) = record else { return };
        self.records += 1;
        let normalized = normalize_with(record, &self.options, 0);
        // Timestamp detection looks at original keys: remember which column names they map to.
        if let Value::Object(map) = normalized.value {
            let ts = &normalized.timestamps;
            add_object(&mut self.root, &map, ts, "");
        }
    }

    /// The schema derived so far.
    pub fn fields(&self) -> Vec<Field> {
        node_fields(&self.root)
    }
}

/// Derives a schema from the given records with default options.
pub fn derive<'a>(records: impl IntoIterator<Item = &'a Value>) -> Vec<Field> {
    let mut b = SchemaBuilder::default();
    for r in records {
        b.add(r);
    }
    b.fields()
}

fn add_object(node: &mut Node, map: &Map<String, Value>, ts: &[String], path: &str) {
    for (key, value) in map {
        let path = join(path, key);
        let (kind, repeated) = match value {
            Value::Array(items) => {
                let mut kind: Option<Kind> = None;
                for item in items {
                    if let Some(k) = kind_of(item, ts, &path) {
                        kind = Some(match kind {
                            None => k,
                            Some(prev) => merge_kind(prev, k),
                        });
                    }
                }
                (kind, true)
            }
            v => (kind_of(v, ts, &path), false),
        };
        let lower = key.to_ascii_lowercase();
        let slot = match node.index.get(&lower) {
            Some(&i) => &mut node.fields[i],
            None => {
                if kind.is_none() {
                    // Only null / empty so far: wait for a typed value. A slot is not created,
                    // so nothing is known about repetition either.
                    continue;
                }
                node.index.insert(lower, node.fields.len());
                node.fields.push(Slot {
                    name: key.clone(),
                    kind: None,
                    repeated,
                    mixed: false,
                });
                node.fields.last_mut().expect("just pushed")
            }
        };
        let Some(kind) = kind else { continue };
        if slot.kind.is_some() && slot.repeated != repeated {
            slot.mixed = true;
        }
        if slot.kind.is_none() {
            slot.repeated = repeated;
        }
        slot.kind = Some(match slot.kind.take() {
            None => kind,
            Some(prev) => merge_kind(prev, kind),
        });
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The type of one (normalised) value; `None` for null and empty containers.
fn kind_of(value: &Value, ts: &[String], path: &str) -> Option<Kind> {
    match value {
        Value::Null => None,
        Value::Bool(_) => Some(Kind::Bool),
        Value::Number(n) => Some(if n.is_i64() { Kind::Int } else { Kind::Float }),
        Value::String(_) => Some(if ts.iter().any(|p| p == path) {
            Kind::Timestamp
        } else {
            Kind::String
        }),
        Value::Object(map) => {
            let mut node = Node::default();
            add_object(&mut node, map, ts, path);
            if node.fields.is_empty() {
                None
            } else {
                Some(Kind::Record(node))
            }
        }
        // Nested arrays were turned into strings by normalisation.
        Value::Array(_) => Some(Kind::String),
    }
}

fn merge_kind(a: Kind, b: Kind) -> Kind {
    match (a, b) {
        (Kind::Record(mut x), Kind::Record(y)) => {
            merge_node(&mut x, y);
            Kind::Record(x)
        }
        (Kind::Bool, Kind::Bool) => Kind::Bool,
        (Kind::Int, Kind::Int) => Kind::Int,
        (Kind::Int | Kind::Float, Kind::Int | Kind::Float) => Kind::Float,
        (Kind::Timestamp, Kind::Timestamp) => Kind::Timestamp,
        _ => Kind::String,
    }
}

fn merge_node(into: &mut Node, from: Node) {
    for slot in from.fields {
        let lower = slot.name.to_ascii_lowercase();
        match into.index.get(&lower) {
            None => {
                into.index.insert(lower, into.fields.len());
                into.fields.push(slot);
            }
            Some(&i) => {
                let s = &mut into.fields[i];
                match (s.kind.take(), slot.kind) {
                    (None, k) => {
                        s.kind = k;
                        s.repeated = slot.repeated;
                    }
                    (Some(a), None) => s.kind = Some(a),
                    (Some(a), Some(b)) => {
                        if s.repeated != slot.repeated {
                            s.mixed = true;
                        }
                        s.kind = Some(merge_kind(a, b));
                    }
                }
                s.mixed |= slot.mixed;
            }
        }
    }
}

fn node_fields(node: &Node) -> Vec<Field> {
    node.fields.iter().filter_map(slot_field).collect()
}

fn slot_field(slot: &Slot) -> Option<Field> {
    let kind = slot.kind.as_ref()?;
    if slot.mixed {
        return Some(Field::new(&slot.name, FieldType::String, Mode::Nullable));
    }
    let mode = if slot.repeated {
        Mode::Repeated
    } else {
        Mode::Nullable
    };
    let t = match kind {
        Kind::Bool => FieldType::Bool,
        Kind::Int => FieldType::Int64,
        Kind::Float => FieldType::Float64,
        Kind::String => FieldType::String,
        Kind::Timestamp => FieldType::Timestamp,
        Kind::Record(node) => {
            let fields = node_fields(node);
            if fields.is_empty() {
                return None;
            }
            return Some(Field::record(&slot.name, mode, fields));
        }
    };
    Some(Field::new(&slot.name, t, mode))
}

/// Adds to `existing` the fields of `derived` that it lacks, at any depth, as `NULLABLE`
/// (or `REPEATED` for arrays: BigQuery accepts new columns in either mode, never `REQUIRED`).
/// Existing fields keep their type and mode even where `derived` disagrees. Returns the merged
/// schema and the dotted paths of the added fields (a new `RECORD` is one path).
pub fn widen(existing: &[Field], derived: &[Field]) -> (Vec<Field>, Vec<String>) {
    let mut added = Vec::new();
    let merged = widen_level(existing, derived, "", &mut added);
    (merged, added)
}

fn widen_level(
    existing: &[Field],
    derived: &[Field],
    path: &str,
    added: &mut Vec<String>,
) -> Vec<Field> {
    let mut out = existing.to_vec();
    for d in derived {
        match out
            .iter_mut()
            .find(|f| f.name.eq_ignore_ascii_case(&d.name))
        {
            Some(e) => {
                if e.field_type == FieldType::Record && d.field_type == FieldType::Record {
                    let p = join(path, &e.name);
                    e.fields = widen_level(&e.fields, &d.fields, &p, added);
                }
            }
            None => {
                let mut f = d.clone();
                relax(&mut f);
                added.push(join(path, &f.name));
                out.push(f);
            }
        }
    }
    out
}

/// Turns `REQUIRED` into `NULLABLE`, recursively (new columns cannot be required).
fn relax(f: &mut Field) {
    if f.mode == Mode::Required {
        f.mode = Mode::Nullable;
    }
    f.fields.iter_mut().for_each(relax);
}

/// The schema as BigQuery schema JSON (an array of fields, pretty-printed), as accepted by
/// `bq mk --table --schema FILE` and printed by `bq show --schema --format=prettyjson`.
pub fn to_bq_json(fields: &[Field]) -> String {
    serde_json::to_string_pretty(fields).expect("a schema serialises")
}

/// Reads a schema file: an array of fields, `{"fields": [...]}` or a table resource
/// `{"schema": {"fields": [...]}}`.
pub fn from_bq_json(text: &str) -> anyhow::Result<Vec<Field>> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum File {
        Fields(Vec<Field>),
        Schema { fields: Vec<Field> },
        Table { schema: Box<File> },
    }
    fn unwrap(f: File) -> Vec<Field> {
        match f {
            File::Fields(v) | File::Schema { fields: v } => v,
            File::Table { schema } => unwrap(*schema),
        }
    }
    let file: File = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!("not a BigQuery schema (an array of {{name, type, mode, fields}}): {e}")
    })?;
    Ok(unwrap(file))
}

/// The BigQuery column name for a JSON key (see the module docs). Collisions between keys of
/// one object are resolved by [`normalize_record`], not here.
pub fn column_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let lower = name.to_ascii_lowercase();
    if name.is_empty()
        || name.as_bytes()[0].is_ascii_digit()
        || RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p))
    {
        name.insert(0, '_');
    }
    name.truncate(MAX_NAME_LEN);
    name
}

fn is_valid_name(key: &str) -> bool {
    column_name(key) == key
}

fn hashed_name(key: &str) -> String {
    // FNV-1a: stable across runs and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let mut base = column_name(key);
    base.truncate(MAX_NAME_LEN - 9);
    format!("{base}_{h:08x}")
}

struct Normalized {
    value: Value,
    /// Dotted column-name paths of values found under a timestamp key.
    timestamps: Vec<String>,
}

/// Rewrites a record so that it loads into a schema derived from such records: keys become
/// column names (see the module docs), arrays that hold arrays become their JSON text, `null`
/// elements are removed from arrays (BigQuery refuses them), and objects deeper than
/// [`MAX_DEPTH`] become their JSON text. Everything else is kept.
pub fn normalize_record(record: &Value) -> Value {
    normalize_owned(record.clone())
}

/// [`normalize_record`] on an owned value: keys and strings are moved, not copied.
pub fn normalize_owned(record: Value) -> Value {
    normalize_value(record, &DeriveOptions::default(), 0, None, &mut Vec::new())
}

fn normalize_with(value: &Value, options: &DeriveOptions, depth: usize) -> Normalized {
    let mut timestamps = Vec::new();
    let value = normalize_value(value.clone(), options, depth, Some(""), &mut timestamps);
    Normalized { value, timestamps }
}

/// `path` is the column path, tracked (for timestamp detection) only when `Some`.
fn normalize_value(
    value: Value,
    options: &DeriveOptions,
    depth: usize,
    path: Option<&str>,
    ts: &mut Vec<String>,
) -> Value {
    match value {
        Value::Object(map) => {
            if depth > MAX_DEPTH {
                return Value::String(Value::Object(map).to_string());
            }
            Value::Object(normalize_object(map, options, depth, path, ts))
        }
        Value::Array(items) => {
            if items.iter().any(Value::is_array) {
                return Value::String(Value::Array(items).to_string());
            }
            Value::Array(
                items
                    .into_iter()
                    .filter(|v| !v.is_null())
                    .map(|v| normalize_value(v, options, depth, path, ts))
                    .collect(),
            )
        }
        v => v,
    }
}

fn normalize_object(
    map: Map<String, Value>,
    options: &DeriveOptions,
    depth: usize,
    path: Option<&str>,
    ts: &mut Vec<String>,
) -> Map<String, Value> {
    let names = object_names(map.keys().map(String::as_str));
    let mut out = Map::new();
    for ((key, value), name) in map.into_iter().zip(names) {
        let is_ts = path.is_some()
            && options.timestamp_fields.contains(&key)
            && value.as_str().is_some_and(is_rfc3339);
        let name = name.unwrap_or(key);
        let p = path.map(|path| join(path, &name));
        if is_ts && let Some(p) = &p {
            ts.push(p.clone());
        }
        let v = normalize_value(value, options, depth + 1, p.as_deref(), ts);
        out.insert(name, v);
    }
    out
}

/// A key that is a valid column name as it is (no allocation).
fn valid_as_is(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && (b[0] != b'_'
            || !RESERVED_PREFIXES
                .iter()
                .any(|p| b.len() >= p.len() && b[..p.len()].eq_ignore_ascii_case(p.as_bytes())))
}

/// Column names for the keys of one object, in the same order, with collisions resolved;
/// `None` where the key is its own name.
fn object_names<'a>(keys: impl Iterator<Item = &'a str> + Clone) -> Vec<Option<String>> {
    // Fast path: valid lower-case keys cannot collide (object keys are distinct).
    if keys
        .clone()
        .all(|k| valid_as_is(k) && !k.bytes().any(|c| c.is_ascii_uppercase()))
    {
        return keys.map(|_| None).collect();
    }
    let names = resolve_names(keys.clone());
    keys.zip(names)
        .map(|(k, n)| if n == k { None } else { Some(n) })
        .collect()
}

/// Column names for the keys of one object, in the same order, with collisions resolved.
fn resolve_names<'a>(keys: impl Iterator<Item = &'a str> + Clone) -> Vec<String> {
    let mut names: Vec<String> = keys.clone().map(column_name).collect();
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, n) in names.iter().enumerate() {
        seen.entry(n.to_ascii_lowercase()).or_default().push(i);
    }
    if seen.len() == names.len() {
        return names;
    }
    let keys: Vec<&str> = keys.collect();
    for (_, mut idx) in seen.into_iter().filter(|(_, v)| v.len() > 1) {
        // The winner: a key that is already a valid name, else the smallest key.
        idx.sort_by_key(|&i| (!is_valid_name(keys[i]), keys[i]));
        for &i in &idx[1..] {
            names[i] = hashed_name(keys[i]);
        }
    }
    names
}

fn is_rfc3339(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// Makes a (normalised) record fit `schema`: keys without a column are dropped, values of
/// `STRING` columns that are not strings become their JSON text (`5` -> `"5"`, objects and
/// arrays -> JSON), a single value for a `REPEATED` column becomes a one-element array, and
/// `RECORD`s are conformed recursively. Other mismatches (a string in an `INT64` column) are
/// left for BigQuery to report. Used for streaming inserts and available to writers.
pub fn conform(record: &Value, schema: &[Field]) -> Value {
    match record {
        Value::Object(map) => Value::Object(conform_object(map, schema)),
        v => v.clone(),
    }
}

fn conform_object(map: &Map<String, Value>, schema: &[Field]) -> Map<String, Value> {
    let mut out = Map::with_capacity(map.len());
    for (key, value) in map {
        let Some(field) = find(schema, key) else {
            continue;
        };
        if let Some(v) = conform_field(value, field) {
            out.insert(field.name.clone(), v);
        }
    }
    out
}

fn conform_field(value: &Value, field: &Field) -> Option<Value> {
    if value.is_null() {
        return (field.mode != Mode::Repeated).then_some(Value::Null);
    }
    if field.mode == Mode::Repeated {
        let items: Vec<Value> = match value {
            Value::Array(items) => items
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| conform_scalar(v, field))
                .collect(),
            v => vec![conform_scalar(v, field)],
        };
        return Some(Value::Array(items));
    }
    Some(conform_scalar(value, field))
}

fn conform_scalar(value: &Value, field: &Field) -> Value {
    match (field.field_type, value) {
        (FieldType::String, Value::String(_)) => value.clone(),
        (FieldType::String, v) => Value::String(v.to_string()),
        (FieldType::Record, Value::Object(map)) => {
            Value::Object(conform_object(map, &field.fields))
        }
        (_, v) => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ty(fields: &[Field], path: &str) -> (FieldType, Mode) {
        let mut fs = fields;
        let mut parts = path.split('.').peekable();
        loop {
            let p = parts.next().unwrap();
            let f = find(fs, p).unwrap_or_else(|| panic!("no field {path} ({p})"));
            if parts.peek().is_none() {
                return (f.field_type, f.mode);
            }
            fs = &f.fields;
        }
    }

    fn has(fields: &[Field], path: &str) -> bool {
        let mut fs = fields;
        for p in path.split('.') {
            match find(fs, p) {
                Some(f) => fs = &f.fields,
                None => return false,
            }
        }
        true
    }

    #[test]
    fn scalar_types_and_merging() {
        let s = derive(&[
            json!({"a": 1, "b": 1.5, "c": true, "d": "x", "e": null, "f": 1, "g": 1}),
            json!({"a": 2, "b": 2, "f": 2.5, "g": "text", "h": 18446744073709551615u64}),
        ]);
        assert_eq!(ty(&s, "a"), (FieldType::Int64, Mode::Nullable));
        assert_eq!(ty(&s, "b"), (FieldType::Float64, Mode::Nullable));
        assert_eq!(ty(&s, "c"), (FieldType::Bool, Mode::Nullable));
        assert_eq!(ty(&s, "d"), (FieldType::String, Mode::Nullable));
        assert!(!has(&s, "e"), "null-only fields wait for a type");
        assert_eq!(ty(&s, "f"), (FieldType::Float64, Mode::Nullable));
        assert_eq!(ty(&s, "g"), (FieldType::String, Mode::Nullable));
        assert_eq!(ty(&s, "h"), (FieldType::Float64, Mode::Nullable));
        let names: Vec<&str> = s.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["a", "b", "c", "d", "f", "g", "h"],
            "first-seen order"
        );
    }

    #[test]
    fn nested_records_arrays_and_conflicts() {
        let s = derive(&[
            json!({"u": {"n": "a", "empty": {}}, "tags": ["x"], "objs": [{"i": 1}, {"j": "k"}],
                   "nested": [[1, 2], [3]], "mix": [1], "late": null, "none": []}),
            json!({"u": {"m": 2}, "mix": 3, "late": {"z": 1}, "o": {"p": 1}}),
            json!({"o": "now a string", "none": [1.5]}),
        ]);
        assert_eq!(ty(&s, "u"), (FieldType::Record, Mode::Nullable));
        assert_eq!(ty(&s, "u.n"), (FieldType::String, Mode::Nullable));
        assert_eq!(ty(&s, "u.m"), (FieldType::Int64, Mode::Nullable));
        assert!(!has(&s, "u.empty"));
        assert_eq!(ty(&s, "tags"), (FieldType::String, Mode::Repeated));
        assert_eq!(ty(&s, "objs"), (FieldType::Record, Mode::Repeated));
        assert_eq!(ty(&s, "objs.i"), (FieldType::Int64, Mode::Nullable));
        assert_eq!(ty(&s, "objs.j"), (FieldType::String, Mode::Nullable));
        assert_eq!(ty(&s, "nested"), (FieldType::String, Mode::Nullable));
        assert_eq!(ty(&s, "mix"), (FieldType::String, Mode::Nullable));
        assert_eq!(ty(&s, "late.z"), (FieldType::Int64, Mode::Nullable));
        let o = find(&s, "o").unwrap();
        assert_eq!((o.field_type, o.fields.len()), (FieldType::String, 0));
        assert_eq!(ty(&s, "none"), (FieldType::Float64, Mode::Repeated));
    }

    #[test]
    fn column_names() {
        assert_eq!(column_name("@timestamp"), "_timestamp");
        assert_eq!(column_name("user-agent"), "user_agent");
        assert_eq!(column_name("a.b c"), "a_b_c");
        assert_eq!(column_name("1st"), "_1st");
        assert_eq!(column_name(""), "_");
        assert_eq!(column_name("방탄"), "__");
        assert_eq!(column_name("_PARTITIONTIME"), "__PARTITIONTIME");
        assert_eq!(column_name("_table_x"), "__table_x");
        assert_eq!(column_name("id_str"), "id_str");
        assert_eq!(column_name(&"x".repeat(400)).len(), MAX_NAME_LEN);
        for k in [
            "a",
            "A_1",
            "_x",
            "_table_",
            "_TABLE_x",
            "__root__",
            "1a",
            "",
            "a-b",
            "é",
            "_file",
            "_partitiontime",
            "ok_name",
            &"y".repeat(300),
            &"y".repeat(301),
        ] {
            assert_eq!(valid_as_is(k), column_name(k) == k, "{k}");
        }
    }

    #[test]
    fn normalize_renames_keys_and_resolves_collisions() {
        let r = json!({"@timestamp": "2026-01-01T00:00:00Z", "_timestamp": 1, "Foo": 1, "foo": 2,
                       "a": {"b-c": [null, 1]}, "pts": [[1, 2]]});
        let n = normalize_record(&r);
        let m = n.as_object().unwrap();
        assert_eq!(m["_timestamp"], json!(1), "the valid key keeps its name");
        let hashed = hashed_name("@timestamp");
        assert!(hashed.starts_with("_timestamp_") && hashed.len() == "_timestamp_".len() + 8);
        assert_eq!(m[&hashed], json!("2026-01-01T00:00:00Z"));
        assert_eq!(
            m["Foo"],
            json!(1),
            "of two valid names the smaller one wins"
        );
        assert_eq!(m[&hashed_name("foo")], json!(2));
        assert_eq!(m["a"], json!({"b_c": [1]}));
        assert_eq!(m["pts"], json!("[[1,2]]"));
        // The derived schema uses exactly these names.
        let s = derive(&[r]);
        for k in m.keys() {
            assert!(find(&s, k).is_some(), "{k}");
        }
        assert_eq!(ty(&s, &hashed), (FieldType::Timestamp, Mode::Nullable));
    }

    #[test]
    fn deep_objects_become_strings() {
        let mut v = json!({"leaf": 1});
        for _ in 0..20 {
            v = json!({ "x": v });
        }
        let s = derive(&[v]);
        let mut depth = 0;
        let mut fs = &s;
        while let Some(f) = fs.first() {
            depth += 1;
            if f.field_type != FieldType::Record {
                assert_eq!(f.field_type, FieldType::String);
                break;
            }
            fs = &f.fields;
        }
        assert_eq!(depth, MAX_DEPTH + 1, "15 RECORD levels, then STRING");
    }

    #[test]
    fn timestamps_only_under_named_keys() {
        let s = derive(&[json!({"@timestamp": "2023-07-14T04:00:12.000Z",
                                  "created_at": "2023-07-14T04:00:12.000Z"})]);
        assert_eq!(ty(&s, "_timestamp"), (FieldType::Timestamp, Mode::Nullable));
        assert_eq!(ty(&s, "created_at"), (FieldType::String, Mode::Nullable));
        let s = derive(&[
            json!({"@timestamp": "2023-07-14T04:00:12.000Z"}),
            json!({"@timestamp": "Wed Oct 10 20:19:24 +0000 2018"}),
        ]);
        assert_eq!(ty(&s, "_timestamp"), (FieldType::String, Mode::Nullable));
        let mut b = SchemaBuilder::new(DeriveOptions {
            timestamp_fields: vec!["created_at".into()],
        });
        b.add(&json!({"data": {"created_at": "2023-07-14T04:00:12.000Z"}}));
        assert_eq!(
            ty(&b.fields(), "data.created_at"),
            (FieldType::Timestamp, Mode::Nullable)
        );
    }

    fn fixture(name: &str) -> Value {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../guest-plugins/transforms/fixtures"
        );
        let path = format!("{dir}/{name}");
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// The bundled pipeline's prune step (pipeline.toml), run natively through the same code
    /// as the field-prune plugin.
    fn prune(v: &Value) -> Option<Value> {
        use sluice_transforms::{FieldPrune, Outcome, Transform};
        let config: Vec<(String, String)> = [
            (
                "deny",
                "card, translations, data.card, data.translations, extended_entities, \
                 *.extended_entities, user.entities, *.user.entities, includes.media, \
                 includes.places",
            ),
            ("drop_nulls", "true"),
            ("drop_empty", "true"),
            ("max_depth", "8"),
            ("max_fields", "900"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let p = FieldPrune::from_config(&config).unwrap();
        let raw = serde_json::to_vec(v).unwrap();
        match p.apply(&raw) {
            Outcome::Keep => Some(v.clone()),
            Outcome::SetValue(out) => Some(serde_json::from_slice(&out).unwrap()),
            Outcome::Drop | Outcome::Fail(_) => None,
        }
    }

    #[test]
    fn pruned_v1_and_v2_tweets() {
        let names = [
            "v1_extended.json",
            "v1_quote.json",
            "v1_retweet.json",
            "v1_unrelated.json",
            "v2_retweet.json",
            "v2_tweet.json",
            "v2_unrelated.json",
        ];
        let mut docs: Vec<Value> = names.iter().map(|n| prune(&fixture(n)).unwrap()).collect();
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../guest-plugins/transforms/fixtures"
        );
        for line in std::fs::read_to_string(format!("{dir}/tweets.ndjson"))
            .unwrap()
            .lines()
        {
            docs.push(prune(&serde_json::from_str(line).unwrap()).unwrap());
        }
        // Enrich adds @timestamp.
        for d in &mut docs {
            d["@timestamp"] = json!("2023-07-14T04:00:12.000Z");
        }
        let s = derive(&docs);
        // v1.1
        assert_eq!(ty(&s, "id"), (FieldType::Int64, Mode::Nullable));
        assert_eq!(ty(&s, "id_str"), (FieldType::String, Mode::Nullable));
        assert_eq!(ty(&s, "user"), (FieldType::Record, Mode::Nullable));
        assert_eq!(
            ty(&s, "user.followers_count"),
            (FieldType::Int64, Mode::Nullable)
        );
        assert_eq!(ty(&s, "user.verified"), (FieldType::Bool, Mode::Nullable));
        assert_eq!(
            ty(&s, "entities.hashtags"),
            (FieldType::Record, Mode::Repeated)
        );
        assert_eq!(
            ty(&s, "entities.hashtags.text"),
            (FieldType::String, Mode::Nullable)
        );
        assert_eq!(
            ty(&s, "entities.hashtags.indices"),
            (FieldType::Int64, Mode::Repeated)
        );
        assert_eq!(
            ty(&s, "retweeted_status.user.screen_name").0,
            FieldType::String
        );
        // v2
        assert_eq!(ty(&s, "data.id"), (FieldType::String, Mode::Nullable));
        assert_eq!(
            ty(&s, "data.edit_history_tweet_ids"),
            (FieldType::String, Mode::Repeated)
        );
        assert_eq!(
            ty(&s, "data.public_metrics.like_count"),
            (FieldType::Int64, Mode::Nullable)
        );
        assert_eq!(
            ty(&s, "data.entities.hashtags.tag"),
            (FieldType::String, Mode::Nullable)
        );
        assert_eq!(
            ty(&s, "includes.users"),
            (FieldType::Record, Mode::Repeated)
        );
        assert_eq!(
            ty(&s, "matching_rules"),
            (FieldType::Record, Mode::Repeated)
        );
        // Shared and added.
        assert_eq!(ty(&s, "_timestamp"), (FieldType::Timestamp, Mode::Nullable));
        assert_eq!(ty(&s, "created_at"), (FieldType::String, Mode::Nullable));
        // Every record, normalised and conformed, keeps its values under the derived schema.
        for d in &docs {
            let n = normalize_record(d);
            assert_eq!(conform(&n, &s), n, "{d}");
        }
        // The JSON round-trips and uses BigQuery's spelling.
        let text = to_bq_json(&s);
        assert!(text.contains(r#""type": "RECORD""#) && text.contains(r#""mode": "REPEATED""#));
        assert_eq!(from_bq_json(&text).unwrap(), s);
        check_valid(&s, 1);
    }

    fn check_valid(fields: &[Field], depth: usize) {
        assert!(depth <= MAX_DEPTH);
        let mut seen = std::collections::HashSet::new();
        for f in fields {
            assert_eq!(column_name(&f.name), f.name);
            assert!(
                seen.insert(f.name.to_ascii_lowercase()),
                "duplicate {}",
                f.name
            );
            assert_eq!(f.field_type == FieldType::Record, !f.fields.is_empty());
            check_valid(&f.fields, depth + 1);
        }
    }

    #[test]
    fn widening_only_adds_nullable_fields() {
        let existing = derive(&[json!({"id": 1, "user": {"name": "a"}, "n": 1})]);
        let derived = derive(&[
            json!({"id": "now text", "user": {"name": "a", "followers": 5},
                                      "n": 1.5, "lang": "en", "tags": ["x"], "geo": {"lat": 1.0}}),
        ]);
        let (merged, added) = widen(&existing, &derived);
        assert_eq!(added, ["geo", "lang", "tags", "user.followers"]);
        assert_eq!(
            ty(&merged, "id"),
            (FieldType::Int64, Mode::Nullable),
            "types kept"
        );
        assert_eq!(ty(&merged, "n"), (FieldType::Int64, Mode::Nullable));
        assert_eq!(
            ty(&merged, "user.followers"),
            (FieldType::Int64, Mode::Nullable)
        );
        assert_eq!(ty(&merged, "tags"), (FieldType::String, Mode::Repeated));
        assert_eq!(ty(&merged, "geo.lat"), (FieldType::Float64, Mode::Nullable));
        let names = |fs: &[Field]| fs.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&merged[..existing.len()]),
            names(&existing),
            "existing columns first"
        );
        // Idempotent, and case-insensitive like BigQuery.
        let (again, none) = widen(&merged, &derived);
        assert_eq!((again, none.len()), (merged.clone(), 0));
        let (_, none) = widen(&merged, &derive(&[json!({"ID": 1, "User": {"Name": "x"}})]));
        assert!(none.is_empty());
        // A given schema with REQUIRED fields and legacy type names.
        let given = from_bq_json(
            r#"{"fields":[{"name":"id","type":"INTEGER","mode":"REQUIRED"},
                          {"name":"x","type":"DATE"}]}"#,
        )
        .unwrap();
        assert_eq!(given[0].field_type, FieldType::Int64);
        assert_eq!(given[1].field_type, FieldType::Other(OtherType::Date));
        assert_eq!(given[1].mode, Mode::Nullable);
        let (m, added) = widen(&given, &derived);
        assert_eq!(m[0].mode, Mode::Required, "existing modes are kept");
        assert_eq!(added.len(), 5);
    }

    #[test]
    fn conform_fits_values_to_the_schema() {
        let schema = derive(&[
            json!({"s": "x", "r": ["a"], "o": {"k": 1}, "os": [{"v": "a"}]}),
            json!({"s": 5, "o": {"k": 2.5}}),
        ]);
        let v = json!({"s": {"a": 1}, "r": "single", "o": {"k": 1, "gone": 1}, "unknown": 1,
                       "os": [{"v": 7}, null]});
        assert_eq!(
            conform(&v, &schema),
            json!({"s": "{\"a\":1}", "r": ["single"], "o": {"k": 1}, "os": [{"v": "7"}]})
        );
    }
}
