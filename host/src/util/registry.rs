//! How a kind of component (sources, sinks) lists its members: one line per member.
//!
//! [`registry!`] declares the `type`-tagged enum that pipeline.toml deserialises into, one
//! variant per member holding that member's settings struct, and `settings()`, which hands out
//! the chosen member's settings as the kind's trait object (`&dyn SinkSettings`). Everything
//! else (checks, opening, I/O) goes through that trait, so adding a member is its module plus
//! one line in the registry, and nothing else matches on the variants.

/// `registry! { pub enum SinkConfig: SinkSettings { File(file::FileConfig), ... } }`; a
/// member may carry `#[cfg(feature = "...")]`.
macro_rules! registry {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $settings:ident {
            $( $(#[cfg($cfg:meta)])? $variant:ident($config:ty), )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum $name {
            $( $(#[cfg($cfg)])? $variant($config), )*
        }

        impl $name {
            /// The chosen member's settings.
            pub fn settings(&self) -> &dyn $settings {
                match self {
                    $( $(#[cfg($cfg)])? Self::$variant(c) => c, )*
                }
            }
        }
    };
}

pub(crate) use registry;
