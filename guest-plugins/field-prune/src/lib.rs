//! The `field-prune` Sluice plugin: see README.md for its config.

sluice_transforms::plugin!(sluice_transforms::FieldPrune);
