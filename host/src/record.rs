//! Record helpers: building records from lines and writing dead-letter entries.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::transform::{DeadLetter, Record};

/// A record whose value is `line` (no key, headers or timestamp).
pub fn from_line(line: &[u8]) -> Record {
    Record {
        key: None,
        value: line.to_vec(),
        headers: Vec::new(),
        timestamp: None,
    }
}

/// Bytes as a JSON string when they are UTF-8, else as `{"base64": ...}`.
fn bytes_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    }
}

/// One dead-letter line: the reason and stage first, then the whole record. The value is kept
/// as a string (not re-parsed) so malformed input survives byte for byte.
pub fn dead_letter_json(dl: &DeadLetter) -> Vec<u8> {
    let r = &dl.record;
    let headers: Map<String, Value> = r
        .headers
        .iter()
        .map(|h| (h.key.clone(), bytes_json(&h.value)))
        .collect();
    let entry = json!({
        "stage": &*dl.stage,
        "reason": dl.reason,
        "key": r.key.as_deref().map(bytes_json),
        "timestamp": r.timestamp,
        "headers": headers,
        "value": bytes_json(&r.value),
    });
    serde_json::to_vec(&entry).expect("serialising a JSON value cannot fail")
}
