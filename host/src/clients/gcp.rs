//! What the GCS sink and the BigQuery loader share: how they authenticate, and the finished
//! objects one uploads and the other loads.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::util::{Backoff, Invalid};

/// How the client authenticates (shared with the BigQuery loader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    /// Application Default Credentials.
    Default,
    ServiceAccountFile(PathBuf),
}

impl Credentials {
    /// `"anonymous"`, `"default"` or a key file path; unset means anonymous when an emulator
    /// endpoint is configured and ADC otherwise.
    pub fn from_setting(setting: Option<&str>, has_endpoint: bool) -> Self {
        match setting.map(str::trim) {
            None | Some("") if has_endpoint => Credentials::Anonymous,
            None | Some("") => Credentials::Default,
            Some(s) if s.eq_ignore_ascii_case("anonymous") => Credentials::Anonymous,
            Some(s) if s.eq_ignore_ascii_case("default") => Credentials::Default,
            Some(path) => Credentials::ServiceAccountFile(PathBuf::from(path)),
        }
    }

    /// A key file that cannot be opened, named with its path: `host check` and the start say
    /// so before any upload. The key itself is read only when the client is built.
    pub fn check(&self) -> Result<(), Invalid> {
        if let Credentials::ServiceAccountFile(path) = self {
            std::fs::File::open(path).map_err(|e| {
                Invalid::new(
                    "credentials",
                    format!(
                        "cannot read the service-account key {}: {e}",
                        path.display()
                    ),
                )
            })?;
        }
        Ok(())
    }
}

/// An object that is in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedObject {
    /// `gs://bucket/name`
    pub uri: String,
    pub name: String,
    pub rows: u64,
    /// Compressed size.
    pub bytes: u64,
    /// The source range it holds (see the module docs).
    pub stream: String,
    pub first: u64,
    pub last: u64,
}

impl FinishedObject {
    /// `"<stream>-<first>-<last>"`, the position form `write` takes.
    pub fn position(&self) -> String {
        format!("{}-{}-{}", self.stream, self.first, self.last)
    }
}

/// Waits between tries of work that is kept until the service is back (GCS uploads, BigQuery
/// streaming inserts of a batch): 1 s doubling to at most 30 s.
pub fn outage_backoff() -> Backoff {
    Backoff::doubling(Duration::from_secs(1), Duration::from_secs(30))
}
