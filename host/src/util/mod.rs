//! Small pieces every component may use and that use nothing else of the crate: settings
//! values and checks, secrets, retry waits, error text and JSON key lookup.

pub mod backoff;
pub mod errors;
pub mod json_key;
mod registry;
pub mod secret;
pub mod settings;

pub use backoff::Backoff;
pub use errors::{error_chain, excerpt};
pub(crate) use registry::registry;
pub use secret::{Secret, SecretRef};
pub use settings::{ConfigValue, Invalid};
