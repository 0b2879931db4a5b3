//! `host plugin new`: a plugin scaffolded in each language builds with its own `build.sh` and
//! runs through `host plugin run`: it keeps the records containing its `needle`, drops the
//! others and dead-letters a value that is not UTF-8.

mod common;
mod common_polyglot;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn scaffold_build_and_run(lang: &str, grants: &[&str]) {
    build_plugins(); // installs componentize-py and jco into the cache, as CI does
    let dir = tempdir();
    let name = format!("demo-{lang}");
    let out = Command::new(host_bin())
        .args(["plugin", "new", &name, "--lang", lang, "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    common::assert_success(&out);
    let root = dir.path().join(&name);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("sh build.sh"), "{printed}");
    assert!(
        root.join("wit/transform.wit").is_file() && root.join("README.md").is_file(),
        "{}",
        root.display()
    );

    // Rust: build into the workspace's target directory rather than a new one.
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let build = Command::new("sh")
        .arg("build.sh")
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("SLUICE_HOST", host_bin())
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "build.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let component = root.join(format!("{name}.wasm"));
    assert!(component.is_file(), "{} missing", component.display());

    // The host compiles the component once into the shared cache (see common_polyglot).
    let mut cmd = Command::new(common::host_bin());
    cmd.args(["plugin", "run"])
        .arg(&component)
        .args(["-c", "needle=hello"])
        .env("XDG_CACHE_HOME", common_polyglot::xdg())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for grant in grants {
        cmd.args(["--grant", grant]);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"text\":\"hello world\"}\n{\"text\":\"bye\"}\n{\"text\":\"\xff\"}\n")
        .unwrap();
    let run = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0]["outcome"], "out", "{stdout}");
    assert_eq!(lines[0]["records"][0]["text"], "hello world", "{stdout}");
    assert_eq!(lines[1]["outcome"], "drop", "{stdout}");
    assert_eq!(lines[2]["outcome"], "dead-letter", "{stdout}");
    let reason = lines[2]["reason"].as_str().unwrap();
    assert!(reason.starts_with("not valid UTF-8"), "{reason}");

    // The config is checked in init, in every language.
    let refused = Command::new(common::host_bin())
        .args(["plugin", "run"])
        .arg(&component)
        .args(["-c", "colour=red"])
        .args(grants.iter().flat_map(|g| ["--grant", g]))
        .env("XDG_CACHE_HOME", common_polyglot::xdg())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("unknown config key `colour`"), "{err}");
}

#[test]
fn scaffolded_rust_plugin_builds_and_runs() {
    // wasm32-wasip2 std imports WASI.
    scaffold_build_and_run("rust", &["wasi"]);
}

#[test]
fn scaffolded_python_plugin_builds_and_runs() {
    scaffold_build_and_run("python", &["wasi"]);
}

#[test]
fn scaffolded_js_plugin_builds_and_runs() {
    scaffold_build_and_run("js", &[]);
}

#[test]
fn scaffolded_go_plugin_builds_and_runs() {
    // The Go runtime imports WASI and reads the clock as it starts.
    scaffold_build_and_run("go", &["wasi", "clocks"]);
}

#[test]
fn scaffolded_c_plugin_builds_and_runs() {
    // wasi-libc's malloc and string functions need no WASI import.
    scaffold_build_and_run("c", &[]);
}
