//! The plugin author's and operator's tools on real components: `host plugin inspect` on every
//! shipped plugin and the hostile test plugins, `host plugin test` against the shared vectors
//! (and against a deliberately wrong case), grants on the command line, with the start-up
//! hint that names the missing one, in `host plugin run` and `host check`, and what
//! `host plugin componentize` refuses.

mod common;
mod common_polyglot;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `host ARGS...` in the repository root, on the artifact cache the release host warmed for
/// `component` (the debug build takes minutes to compile a Python or JavaScript runtime).
fn host(component: &Path, args: &[&str]) -> Output {
    common_polyglot::warm(component, false);
    Command::new(host_bin())
        .args(args)
        .current_dir(root())
        .env("XDG_CACHE_HOME", common_polyglot::xdg())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `host plugin test` on a built plugin: (succeeded, stdout, stderr).
fn plugin_test(name: &str, vectors: &Path, extra: &[&str]) -> (bool, String, String) {
    let path = plugin(name);
    let mut args = vec!["plugin", "test", path.to_str().unwrap(), "--vectors"];
    args.push(vectors.to_str().unwrap());
    args.extend(extra);
    let out = host(&path, &args);
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A plugin and what `inspect` must say of it.
struct Expect {
    plugin: &'static str,
    /// Grants without which it does not load.
    required: &'static [&'static str],
    /// Grants among the optional ones (more may be listed).
    optional: &'static [&'static str],
    /// The `language` the producers section names, if the toolchain writes one.
    language: Option<&'static str>,
    /// Grants it starts with, as `inspect` finds out.
    starts_with: &'static [&'static str],
}

const fn expect(plugin: &'static str, required: &'static [&'static str]) -> Expect {
    Expect {
        plugin,
        required,
        optional: &[],
        language: None,
        starts_with: required,
    }
}

fn expectations() -> Vec<Expect> {
    const ALL_WASI: &[&str] = &["clocks", "env", "dirs", "stdio"];
    vec![
        expect("keyword_filter", &[]),
        expect("field_prune", &[]),
        expect("enrich", &[]),
        expect("hostile", &[]),
        Expect {
            optional: ALL_WASI,
            ..expect("wasi_probe", &["wasi"])
        },
        Expect {
            optional: ALL_WASI,
            ..expect("keyword_filter_py", &["wasi"])
        },
        Expect {
            optional: ALL_WASI,
            ..expect("enrich_py", &["wasi"])
        },
        expect("keyword_filter_js", &[]),
        expect("enrich_js", &[]),
        expect("hostile_js", &[]),
        Expect {
            optional: &["clocks"],
            language: Some("Go"),
            starts_with: &["wasi", "clocks"],
            ..expect("keyword_filter_go", &["wasi"])
        },
        Expect {
            optional: &["clocks"],
            language: Some("Go"),
            starts_with: &["wasi", "clocks"],
            ..expect("enrich_go", &["wasi"])
        },
        expect("keyword_filter_c", &[]),
    ]
}

fn inspect_json(component: &Path) -> Value {
    let out = host(
        component,
        &["plugin", "inspect", "--json", component.to_str().unwrap()],
    );
    assert_success(&out);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[test]
fn inspect_reports_every_plugin_with_its_imports_and_grants() {
    for e in expectations() {
        let path = plugin(e.plugin);
        let report = inspect_json(&path);
        let p = e.plugin;
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(report["size"], bytes.len(), "{p}");
        assert_eq!(
            report["sha256"],
            hex(&Sha256::digest(&bytes)),
            "{p}: sha256"
        );
        assert_eq!(report["world"]["matches"], true, "{p}: {}", report["world"]);
        assert_eq!(report["world"]["package_version"], "0.1.0", "{p}");

        // Every import is classified; the grant each needs follows its interface.
        let imports = report["imports"].as_array().unwrap();
        assert!(!imports.is_empty(), "{p}: no imports");
        for i in imports {
            let name = i["name"].as_str().unwrap();
            let want = if name.starts_with("sluice:transform/") {
                Value::Null
            } else if name.starts_with("wasi:clocks/") {
                "clocks".into()
            } else if name.starts_with("wasi:cli/environment") {
                "env".into()
            } else if name.starts_with("wasi:filesystem/") {
                "dirs".into()
            } else if name.starts_with("wasi:cli/stdout") || name.starts_with("wasi:cli/stderr") {
                "stdio".into()
            } else if name.starts_with("wasi:") {
                "wasi".into()
            } else {
                panic!("{p}: unexpected import {name}")
            };
            assert_eq!(i["grant"], want, "{p}: {name}");
            assert_eq!(i["refused"], false, "{p}: {name}");
        }
        let has = |prefix: &str| {
            imports
                .iter()
                .any(|i| i["name"].as_str().unwrap().starts_with(prefix))
        };
        assert!(has("sluice:transform/types@0.1.0"), "{p}: {imports:?}");
        assert_eq!(has("wasi:"), !e.required.is_empty(), "{p}: {imports:?}");

        assert_eq!(names(&report["grants"]["required"]), e.required, "{p}");
        let optional = names(&report["grants"]["optional"]);
        for g in e.optional {
            assert!(optional.contains(g), "{p}: {g} not in {optional:?}");
        }
        let exports = report["exports"].as_array().unwrap();
        for f in ["init", "process"] {
            assert!(
                exports
                    .iter()
                    .any(|x| x["name"] == f && x["kind"] == "func"),
                "{p}: {exports:?}"
            );
        }
        assert!(
            report["producers"]["processed-by"].is_object(),
            "{p}: {}",
            report["producers"]
        );
        if let Some(lang) = e.language {
            assert!(
                report["producers"]["language"][lang].is_string(),
                "{p}: {}",
                report["producers"]
            );
        }

        let load = &report["load"];
        assert_eq!(load["ok"], true, "{p}: {load}");
        assert_eq!(names(&load["grants"]), e.starts_with, "{p}: {load}");
    }
}

/// The Go runtime traps at start-up on clocks that read zero: `inspect` says so, names the
/// grant, and reports that it starts with it.
#[test]
fn inspect_explains_what_the_go_plugin_needs_to_start() {
    let path = plugin("keyword_filter_go");
    let report = inspect_json(&path);
    let first = report["load"]["without_optional"].as_str().unwrap();
    assert!(first.contains("grant clocks"), "{first}");
    assert!(first.contains("wasi:clocks/"), "{first}");

    let out = host(&path, &["plugin", "inspect", path.to_str().unwrap()]);
    assert_success(&out);
    let shown = text(&out.stdout);
    for line in [
        "world      transform of sluice:transform@0.1.0: matches this host",
        "grants     required: wasi; optional: clocks",
        "loads      yes, with grants: wasi, clocks",
        "language: Go",
    ] {
        assert!(shown.contains(line), "`{line}` missing from:\n{shown}");
    }
}

/// A component that is not a transform of this host's version is reported as such, and does
/// not load.
#[test]
fn inspect_refuses_what_the_host_would_refuse() {
    let dir = tempdir();
    let path = dir.path().join("not_a_transform.wasm");
    std::fs::write(&path, wat_component()).unwrap();
    let report = inspect_json(&path);
    assert_eq!(report["world"]["matches"], false, "{}", report["world"]);
    assert_eq!(report["world"]["package_version"], Value::Null);
    assert_eq!(report["load"]["ok"], false, "{}", report["load"]);
    assert!(
        report["load"]["error"]
            .as_str()
            .unwrap()
            .contains("does not fit the host"),
        "{}",
        report["load"]
    );
}

/// The smallest component: it exports nothing and imports nothing.
fn wat_component() -> Vec<u8> {
    // `(component)` in the binary format: magic, component-model version and layer.
    b"\0asm\x0d\0\x01\0".to_vec()
}

/// `plugin componentize` takes a core module only, and says what it was given instead.
#[test]
fn componentize_refuses_a_component_and_a_file_that_is_not_wasm() {
    let dir = tempdir();
    let out = dir.path().join("out.wasm");
    let source = dir.path().join("plugin.go");
    std::fs::write(&source, "package main\n").unwrap();
    for (input, says) in [
        (plugin("keyword_filter"), "a component already"),
        (source, "not a WebAssembly module"),
    ] {
        let run = Command::new(host_bin())
            .args(["plugin", "componentize"])
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let err = text(&run.stderr);
        assert!(!run.status.success(), "{}", input.display());
        assert!(err.contains(says), "{}: {err}", input.display());
        assert!(!out.exists());
    }
}

/// The repository's own vectors pass with every shipped plugin, each with the grants its
/// toolchain needs; `plugin test` tells which plugin a file is from its name.
#[test]
fn plugin_test_passes_every_shipped_plugin_on_the_vectors() {
    for (name, grants) in [
        ("keyword_filter", ""),
        ("enrich", ""),
        ("keyword_filter_py", "wasi"),
        ("enrich_py", "wasi"),
        ("keyword_filter_js", ""),
        ("enrich_js", ""),
        ("keyword_filter_go", "clocks"),
        ("enrich_go", "clocks"),
        ("keyword_filter_c", ""),
    ] {
        // Room for a 600 KB input through a JavaScript engine on a busy machine.
        let mut extra = vec!["--timeout", "30s"];
        if !grants.is_empty() {
            extra.extend(["--grant", grants]);
        }
        let (ok, report, err) = plugin_test(name, Path::new("guest-plugins/vectors"), &extra);
        assert!(ok, "{name}:\n{report}\n{err}");
        assert!(report.contains("\nok: "), "{name}:\n{report}");
        assert!(report.contains(" passed, 0 failed\n"), "{name}:\n{report}");
        assert!(!report.contains("FAIL"), "{name}:\n{report}");
    }
}

/// A copy of the vectors in which the default keyword-filter case looks for `army` instead of
/// BTS: the right plugin on the wrong config. The BTS tweets it then drops are shown as a diff.
#[test]
fn plugin_test_fails_a_wrong_config_with_a_readable_diff() {
    let dir = tempdir();
    let vectors = dir.path().join("vectors");
    let src = root().join("guest-plugins/vectors");
    std::fs::create_dir_all(vectors.join("expected")).unwrap();
    for file in ["inputs.json", "cases.json"] {
        std::fs::copy(src.join(file), vectors.join(file)).unwrap();
    }
    for entry in std::fs::read_dir(src.join("expected")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            vectors.join("expected").join(entry.file_name()),
        )
        .unwrap();
    }
    // The first occurrence in each file is the default keyword-filter case's config.
    let narrow = |file: &Path| {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.contains("\"bts,방탄소년단\""), "{}", file.display());
        std::fs::write(file, text.replacen("\"bts,방탄소년단\"", "\"army\"", 1)).unwrap();
    };
    narrow(&vectors.join("cases.json"));
    narrow(&vectors.join("expected/keyword-filter--default.json"));

    let (ok, report, err) = plugin_test("keyword_filter", &vectors, &[]);
    assert!(!ok, "{report}");
    assert!(err.contains("1 of 11 checks failed"), "{err}");
    assert!(
        report.contains("FAIL  keyword-filter--default (expected: "),
        "{report}"
    );
    assert!(report.contains("ok    keyword-filter--unicode"), "{report}");
    assert!(report.contains("  as one batch: "), "{report}");
    assert!(
        report.contains("  one record at a time: the same as above"),
        "{report}"
    );
    // A BTS tweet the case keeps, and what the plugin did instead.
    assert!(
        report.contains(
            "    - expected {\"outcome\":\"keep\"}\n    + got      {\"outcome\":\"drop\"}"
        ),
        "{report}"
    );
    assert!(report.contains("FAILED: 10 passed, 1 failed"), "{report}");
}

/// Another plugin under test than the vectors' cases are for: every set value is shown where it
/// parts from the expected one.
#[test]
fn plugin_test_fails_a_different_plugin() {
    let vectors = Path::new("guest-plugins/vectors");
    let (ok, report, _) = plugin_test("enrich", vectors, &["--plugin", "keyword-filter"]);
    assert!(!ok, "{report}");
    assert!(report.contains("FAIL  keyword-filter--default"), "{report}");
    assert!(
        report.contains("+ got      {\"outcome\":\"set-value\""),
        "{report}"
    );
    // enrich has no `keywords` requirement: the refusal checks fail with what it did.
    assert!(
        report.contains("    + but it accepted the config"),
        "{report}"
    );
}

/// Runs `host plugin run keyword_filter_go.wasm -c keywords=bts ARGS` on two records.
fn run_go(args: &[&str]) -> Output {
    let path = plugin("keyword_filter_go");
    common_polyglot::warm(&path, false);
    let mut child = Command::new(host_bin())
        .args([
            "plugin",
            "run",
            path.to_str().unwrap(),
            "-c",
            "keywords=bts",
        ])
        .args(args)
        .env("XDG_CACHE_HOME", common_polyglot::xdg())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"text\":\"I love bts\"}\n{\"text\":\"hello\"}\n")
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_go_filter_runs_with_the_clocks_grant_and_without_it_the_error_names_it() {
    let out = run_go(&["--grant", "clocks"]);
    assert_success(&out);
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["outcome"], "out", "{lines:?}");
    assert_eq!(lines[1]["outcome"], "drop", "{lines:?}");

    // `--wasi` is `--grant wasi`: it links, and the runtime traps on its frozen clock.
    for args in [&["--grant", "wasi"][..], &["--wasi"][..]] {
        let out = run_go(args);
        assert!(!out.status.success(), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains("instantiating: trap"), "{err}");
        assert!(
            err.contains("likely cause: the plugin imports `wasi:clocks/"),
            "{err}"
        );
        assert!(err.contains("grant clocks (`--grant clocks`"), "{err}");
    }

    let out = run_go(&["--grant", "clock"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown grant `clock`"),
        "{}",
        text(&out.stderr)
    );
}

/// `host check` loads plugins the way `host run` does: the same hint, with the table to edit.
#[test]
fn host_check_names_the_clocks_grant_for_the_go_filter() {
    let path = plugin("keyword_filter_go");
    let dir = tempdir();
    let pipeline = dir.path().join("pipeline.toml");
    let write = |clocks: bool| {
        std::fs::write(
            &pipeline,
            format!(
                r#"[pipeline]
name = "go"
chain = ["go"]

[source]
type = "generate"
count = 10

[transforms.go]
plugin = "{}"
config = {{ keywords = "bts" }}
[transforms.go.grants]
wasi = true
clocks = {clocks}

[sinks.out]
type = "stdout"
"#,
                path.display()
            ),
        )
        .unwrap();
    };
    write(false);
    let out = host(&path, &["check", pipeline.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("`clocks = true` in `[transforms.go.grants]`"),
        "{err}"
    );
    write(true);
    assert_success(&host(&path, &["check", pipeline.to_str().unwrap()]));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
