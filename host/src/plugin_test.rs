//! `host plugin test`: one plugin against a vectors directory, as a plugin author's CI runs
//! it. Every case runs as one batch and one record at a time; every refused config must be
//! refused with its exact message. Prints a diff per failing case and a summary line.

use std::io::Write;
use std::path::Path;

use anyhow::bail;

use crate::transform::plugin::ConfigRejected;
use crate::transform::vectors::{self, Vectors};
use crate::transform::{Plugin, PluginSpec, Runtime};

/// How many mismatching inputs a failing case lists before it only counts them.
const MISMATCHES_SHOWN: usize = 10;

/// What the run found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

/// Checks the plugin of `spec` (its config is replaced by each case's) against `vectors`,
/// the cases for `plugin` only, writing the report to `out`.
pub fn run(
    runtime: &Runtime,
    spec: &PluginSpec,
    vectors: &Vectors,
    plugin: &str,
    out: &mut impl Write,
) -> anyhow::Result<Summary> {
    let cases: Vec<_> = vectors
        .cases
        .iter()
        .filter(|c| c.plugin == plugin)
        .collect();
    let refusals: Vec<_> = vectors
        .config_errors
        .iter()
        .filter(|c| c.plugin == plugin)
        .collect();
    if cases.is_empty() && refusals.is_empty() {
        bail!(
            "{} has no cases for `{plugin}` (it has: {})",
            vectors.dir.display(),
            vectors.plugins().join(", ")
        );
    }
    writeln!(
        out,
        "{} against {} (plugin `{plugin}`: {} cases, {} refused configs, {} inputs)",
        spec.path.display(),
        vectors.dir.display(),
        cases.len(),
        refusals.len(),
        vectors.inputs.len()
    )?;
    let mut summary = Summary::default();
    let values = vectors.values();
    for case in cases {
        let expected = vectors.expected(case)?;
        let mut spec = spec.clone();
        spec.config = case.config.clone();
        let plugin = Plugin::load(runtime, spec)?;
        let mut failures: Vec<String> = Vec::new();
        let mut previous = None;
        for (batch, how) in [(values.len(), "as one batch"), (1, "one record at a time")] {
            let found = plugin
                .instantiate()
                .map_err(|e| format!("{e:#}"))
                .and_then(|mut i| {
                    vectors::outcomes(&mut i, &values, batch).map_err(|e| e.to_string())
                })
                .map(|got| {
                    let mismatches = vectors::compare(&vectors.inputs, &got, &expected);
                    render(&mismatches, values.len())
                });
            match &found {
                Ok(diff) if diff.is_empty() => {}
                // Mostly a plugin fails both ways alike: show that once.
                _ if previous.as_ref() == Some(&found) => {
                    failures.push(format!("{how}: the same as above\n"));
                }
                Ok(diff) => failures.push(format!("{how}: {diff}")),
                Err(e) => failures.push(format!("{how}: the plugin failed: {e}\n")),
            }
            previous = Some(found);
        }
        if failures.is_empty() {
            summary.passed += 1;
            writeln!(out, "ok    {}", case.name)?;
        } else {
            summary.failed += 1;
            writeln!(
                out,
                "FAIL  {} (expected: {})",
                case.name,
                vectors.expected_path(case).display()
            )?;
            for f in failures {
                write!(out, "  {f}")?;
            }
        }
    }
    for refusal in refusals {
        let mut spec = spec.clone();
        spec.config = refusal.config.clone();
        let answer = match Plugin::load(runtime, spec)?.instantiate() {
            Ok(_) => Err("it accepted the config".to_string()),
            Err(e) => match e.downcast_ref::<ConfigRejected>() {
                Some(r) if r.reason == refusal.error => Ok(()),
                Some(r) => Err(format!("it refused it with {:?}", r.reason)),
                None => Err(format!("it failed to start: {e:#}")),
            },
        };
        let config = serde_json::to_string(&refusal.config)?;
        match answer {
            Ok(()) => {
                summary.passed += 1;
                writeln!(out, "ok    refuses {config}")?;
            }
            Err(got) => {
                summary.failed += 1;
                writeln!(out, "FAIL  refuses {config}")?;
                writeln!(
                    out,
                    "    - expected init to refuse it with {:?}",
                    refusal.error
                )?;
                writeln!(out, "    + but {got}")?;
            }
        }
    }
    writeln!(
        out,
        "{}: {} passed, {} failed",
        if summary.failed == 0 { "ok" } else { "FAILED" },
        summary.passed,
        summary.failed
    )?;
    Ok(summary)
}

/// The mismatches of one run, the first [`MISMATCHES_SHOWN`] in full; empty if none.
fn render(mismatches: &[vectors::Mismatch], inputs: usize) -> String {
    if mismatches.is_empty() {
        return String::new();
    }
    let mut text = format!("{} of {inputs} inputs differ\n", mismatches.len());
    for m in mismatches.iter().take(MISMATCHES_SHOWN) {
        text.push_str(&format!("  {m}"));
    }
    if mismatches.len() > MISMATCHES_SHOWN {
        text.push_str(&format!(
            "  … and {} more\n",
            mismatches.len() - MISMATCHES_SHOWN
        ));
    }
    text
}

/// Which of the vectors' plugins `component` is: `--plugin` if given, the only one if there
/// is one, else the one its file stem names (`keyword_filter_go.wasm` is `keyword-filter`).
pub fn plugin_name<'a>(
    vectors: &'a Vectors,
    component: &Path,
    given: Option<&'a str>,
) -> anyhow::Result<&'a str> {
    let names = vectors.plugins();
    if let Some(name) = given {
        return Ok(name);
    }
    if let [only] = names[..] {
        return Ok(only);
    }
    let stem = component
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .replace('_', "-");
    names
        .iter()
        .copied()
        .filter(|n| stem == *n || stem.starts_with(&format!("{n}-")))
        .max_by_key(|n| n.len())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "cannot tell which plugin of {} `{}` is: pass --plugin with one of {}",
                vectors.dir.display(),
                component.display(),
                names.join(", ")
            )
        })
}
