//! The `enrich` Sluice plugin: see README.md for its config.

sluice_transforms::plugin!(sluice_transforms::Enrich);
