//! The `keyword-filter` Sluice plugin: see README.md for its config.

sluice_transforms::plugin!(sluice_transforms::KeywordFilter);
