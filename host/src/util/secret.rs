//! Secrets (passwords, API keys, passphrases) are read from an environment variable or a file
//! that the settings name, never written in the settings themselves, and they never reach a
//! log, an error, a dead letter or a metric: [`Secret`] prints as `<redacted>`.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Invalid;

/// A secret value; `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that hands it to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a secret comes from: `NAME_env` (an environment variable) or `NAME_file` (a file, as
/// Docker and Kubernetes mount secrets), at most one of them.
#[derive(Debug, Clone, Copy)]
pub struct SecretRef<'a> {
    /// The settings' name for it, e.g. `password`: the keys are `password_env`, `password_file`.
    pub name: &'a str,
    pub env: Option<&'a str>,
    pub file: Option<&'a Path>,
}

impl<'a> SecretRef<'a> {
    pub fn new(name: &'a str, env: &'a Option<String>, file: &'a Option<PathBuf>) -> Self {
        Self {
            name,
            env: env.as_deref(),
            file: file.as_deref(),
        }
    }

    pub fn is_set(&self) -> bool {
        self.env.is_some() || self.file.is_some()
    }

    /// Checks the settings only (no reading): at most one source, names not empty.
    pub fn validate(&self) -> Result<(), Invalid> {
        let name = self.name;
        match (self.env, self.file) {
            (Some(_), Some(_)) => Err(Invalid::new(
                format!("{name}_file"),
                format!("set `{name}_env` or `{name}_file`, not both"),
            )),
            (Some(env), None) => Invalid::non_empty(&format!("{name}_env"), env),
            (None, Some(file)) if file.as_os_str().is_empty() => {
                Err(Invalid::new(format!("{name}_file"), "must not be empty"))
            }
            _ => Ok(()),
        }
    }

    /// The secret, if one is configured. A file's trailing line break is dropped. The error
    /// names the key and the variable or path, never the value.
    pub fn read(&self) -> Result<Option<Secret>, Invalid> {
        let name = self.name;
        if let Some(var) = self.env {
            return match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Some(Secret(v))),
                Ok(_) => Err(Invalid::new(
                    format!("{name}_env"),
                    format!("names ${var}, which is empty"),
                )),
                Err(_) => Err(Invalid::new(
                    format!("{name}_env"),
                    format!("names ${var}, which is not set"),
                )),
            };
        }
        let Some(path) = self.file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            Invalid::new(
                format!("{name}_file"),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let value = text.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(Invalid::new(
                format!("{name}_file"),
                format!("{} is empty", path.display()),
            ));
        }
        Ok(Some(Secret(value.to_string())))
    }
}

/// A key written in the settings where a secret would be: always refused, with the way to do it.
pub fn inline_secret(name: &str) -> Invalid {
    Invalid::new(
        name,
        format!(
            "secrets are not written in the pipeline file: name an environment variable with \
             `{name}_env` or a file with `{name}_file`"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn read_from_a_file_or_a_variable_naming_the_key() {
        let dir = std::env::temp_dir().join(format!("sluice-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let path = Some(file.clone());
        let r = SecretRef::new("password", &None, &path);
        assert_eq!(r.read().unwrap().unwrap().expose(), "s3cret");

        let missing = Some(dir.join("nope"));
        let e = SecretRef::new("password", &None, &missing)
            .read()
            .unwrap_err();
        assert_eq!(e.key, "password_file");
        assert!(e.message.contains("nope"), "{e}");

        let var = Some("SLUICE_TEST_SECRET_THAT_IS_NOT_SET".to_string());
        let e = SecretRef::new("api_key", &var, &None).read().unwrap_err();
        assert_eq!(e.key, "api_key_env");
        assert!(e.message.contains("$SLUICE_TEST_SECRET_THAT_IS_NOT_SET"));

        let e = SecretRef::new("password", &var, &path)
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "password_file");
        assert!(
            SecretRef::new("password", &None, &None)
                .read()
                .unwrap()
                .is_none()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
