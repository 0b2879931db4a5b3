//! Error text for logs, dead letters and status: one formatter for error chains and one for
//! excerpts of server responses.

/// An error with its sources, e.g. "error sending request: connection refused": HTTP clients
/// hide the useful cause a few levels down. A source already contained in the text so far is
/// skipped, and reqwest's "error sending request for url (...)" preamble is dropped when
/// there is a cause.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    if parts.len() > 1 && parts[0].starts_with("error sending request") {
        parts.remove(0);
    }
    parts.join(": ")
}

/// At most `max_chars` characters of `s`, trimmed, with `...` when cut: server responses can
/// be whole HTML pages.
pub fn excerpt(s: &str, max_chars: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn chain_names_the_cause_once_without_the_preamble() {
        let e = Layer(
            "error sending request for url (http://x/)",
            Some(Box::new(Layer(
                "client error (Connect)",
                Some(Box::new(Layer("Connection refused", None))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "client error (Connect): Connection refused"
        );
        let repeated = Layer(
            "timed out: deadline",
            Some(Box::new(Layer("deadline", None))),
        );
        assert_eq!(error_chain(&repeated), "timed out: deadline");
    }

    #[test]
    fn excerpt_cuts_on_a_character_boundary() {
        assert_eq!(excerpt("  short  ", 10), "short");
        assert_eq!(excerpt("ééééé", 3), "ééé...");
    }
}
