//! {{name}}: a Sluice transform plugin. It keeps the records whose value contains the
//! configured `needle` and drops the others; a value that is not UTF-8 is dead-lettered.

use std::sync::Mutex;

wit_bindgen::generate!({ path: "wit", world: "transform" });

use sluice::transform::log::{Level, log};

static NEEDLE: Mutex<Option<String>> = Mutex::new(None);

struct Plugin;

impl Guest for Plugin {
    /// Called once per instance with the `config` table of pipeline.toml; `Err` rejects it.
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let mut needle = None;
        for (key, value) in config {
            match key.as_str() {
                "needle" => needle = Some(value),
                other => return Err(format!("unknown config key `{other}` (known keys: needle)")),
            }
        }
        let needle = needle.ok_or("config key `needle` is required")?;
        log(Level::Info, &format!("keeping records that contain {needle:?}"));
        *NEEDLE.lock().unwrap() = Some(needle);
        Ok(())
    }

    /// One outcome per record, in order.
    fn process(batch: Vec<Record>) -> Vec<Outcome> {
        let needle = NEEDLE.lock().unwrap().clone().unwrap_or_default();
        batch
            .iter()
            .map(|record| match std::str::from_utf8(&record.value) {
                Ok(text) if text.contains(&needle) => Outcome::Keep,
                Ok(_) => Outcome::Drop,
                Err(e) => Outcome::Fail(format!("not valid UTF-8: {e}")),
            })
            .collect()
    }
}

export!(Plugin);
