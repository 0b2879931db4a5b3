//! What component settings are made of: free-form values (plugin config, librdkafka
//! properties) and the error a component's `validate` returns.

use serde::Deserialize;

/// A setting a component refuses: the key, relative to the component's table (e.g. `topic`,
/// `bigquery.table`), and why. The pipeline prefixes the table's own key and names the file or
/// environment variable the value came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {message}")]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same problem seen from the enclosing table: `within("bigquery")` turns `table`
    /// into `bigquery.table`.
    pub fn within(self, table: &str) -> Self {
        Self {
            key: format!("{table}.{}", self.key),
            ..self
        }
    }

    /// `Err` unless `value` has something besides whitespace.
    pub fn non_empty(key: &str, value: &str) -> Result<(), Invalid> {
        if value.trim().is_empty() {
            return Err(Invalid::new(key, "must not be empty"));
        }
        Ok(())
    }
}

/// A value as written in TOML, handed on as a string (plugin `init` config, librdkafka
/// properties).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<ConfigValue>),
}

impl ConfigValue {
    /// The value as a string; arrays are joined with commas.
    pub fn to_plugin_string(&self) -> String {
        match self {
            ConfigValue::Bool(b) => b.to_string(),
            ConfigValue::Int(i) => i.to_string(),
            ConfigValue::Float(f) => f.to_string(),
            ConfigValue::Str(s) => s.clone(),
            ConfigValue::List(items) => items
                .iter()
                .map(ConfigValue::to_plugin_string)
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}
