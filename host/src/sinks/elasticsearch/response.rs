//! Reading Elasticsearch's error answers: the error type and reason with their causes, as
//! dead-letter reasons and log messages.

use serde::Deserialize;
use serde_json::Value;

use crate::util::excerpt;

#[derive(Deserialize)]
pub(super) struct EsError {
    #[serde(rename = "type")]
    kind: Option<String>,
    reason: Option<String>,
    caused_by: Option<Box<EsError>>,
}

/// `type: reason (caused by: type: reason)`, as Elasticsearch gives it.
pub(super) fn error_reason(error: Option<&EsError>) -> String {
    let Some(e) = error else {
        return "unknown error (no error in the bulk item)".into();
    };
    let mut out = String::new();
    let mut cur = Some(e);
    let mut depth = 0;
    while let Some(e) = cur {
        if depth > 0 {
            out.push_str(" (caused by: ");
        }
        out.push_str(e.kind.as_deref().unwrap_or("error"));
        if let Some(r) = &e.reason {
            out.push_str(": ");
            out.push_str(r);
        }
        depth += 1;
        cur = e.caused_by.as_deref().filter(|_| depth < 4);
    }
    for _ in 1..depth {
        out.push(')');
    }
    out
}

/// The error in an Elasticsearch error response body, else the body's start.
pub(super) fn body_reason(bytes: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: Option<Value>,
    }
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(ErrorBody {
            error: Some(Value::String(s)),
        }) => s,
        Ok(ErrorBody {
            error: Some(e @ Value::Object(_)),
        }) => match serde_json::from_value::<EsError>(e) {
            Ok(e) => error_reason(Some(&e)),
            Err(_) => excerpt(&String::from_utf8_lossy(bytes), 300),
        },
        _ => excerpt(&String::from_utf8_lossy(bytes), 300),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn error_reasons_nest_causes() {
        let e: EsError = serde_json::from_value(json!({
            "type": "mapper_parsing_exception",
            "reason": "failed to parse field [created_at]",
            "caused_by": {"type": "illegal_argument_exception", "reason": "bad date"}
        }))
        .unwrap();
        assert_eq!(
            error_reason(Some(&e)),
            "mapper_parsing_exception: failed to parse field [created_at] (caused by: \
             illegal_argument_exception: bad date)"
        );
        assert_eq!(
            body_reason(br#"{"error":{"type":"x","reason":"y"},"status":500}"#),
            "x: y"
        );
        assert_eq!(body_reason(b"plain"), "plain");
    }
}
