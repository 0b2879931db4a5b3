//! `host plugin new`: writes a new plugin, in Rust, Python, JavaScript, Go or C, that builds as
//! it is.
//!
//! The templates live in `host/templates/` and are compiled into the binary, with a copy of
//! the WIT contract, so the command works anywhere. Each is the smallest working plugin: it
//! keeps the records containing its `needle` config and drops the others.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// A plugin language the scaffold knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
    Go,
    C,
}

use crate::event::wit::SOURCE as WIT;

/// (path in the new plugin, template text, executable)
fn files(lang: Lang) -> &'static [(&'static str, &'static str, bool)] {
    match lang {
        Lang::Rust => &[
            (
                "Cargo.toml",
                include_str!("../templates/rust/Cargo.toml"),
                false,
            ),
            (
                "src/lib.rs",
                include_str!("../templates/rust/lib.rs"),
                false,
            ),
            ("build.sh", include_str!("../templates/rust/build.sh"), true),
        ],
        Lang::Python => &[
            ("app.py", include_str!("../templates/python/app.py"), false),
            (
                "build.sh",
                include_str!("../templates/python/build.sh"),
                true,
            ),
        ],
        Lang::Js => &[
            (
                "plugin.js",
                include_str!("../templates/js/plugin.js"),
                false,
            ),
            ("build.sh", include_str!("../templates/js/build.sh"), true),
        ],
        // abi.go is the one the repository's Go plugins are built with.
        Lang::Go => &[
            (
                "plugin.go",
                include_str!("../templates/go/plugin.go"),
                false,
            ),
            (
                "abi.go",
                include_str!("../../guest-plugins/transforms-go/abi.go"),
                false,
            ),
            ("go.mod", include_str!("../templates/go/go.mod"), false),
            ("build.sh", include_str!("../templates/go/build.sh"), true),
        ],
        // The bindings are the ones the repository's C plugins are built with.
        Lang::C => &[
            ("plugin.c", include_str!("../templates/c/plugin.c"), false),
            (
                "transform.c",
                include_str!("../../guest-plugins/c-bindings/transform.c"),
                false,
            ),
            (
                "transform.h",
                include_str!("../../guest-plugins/c-bindings/transform.h"),
                false,
            ),
            ("build.sh", include_str!("../templates/c/build.sh"), true),
        ],
    }
}

/// How to build and try the plugin, for its README and the command's output.
fn usage(lang: Lang, name: &str) -> String {
    let grants = match lang {
        Lang::Rust | Lang::Python => " --grant wasi",
        Lang::Go => " --grant wasi,clocks",
        Lang::Js | Lang::C => "",
    };
    let (toolchain, grant) = match lang {
        Lang::Rust => (
            "Rust with the `wasm32-wasip2` target (build.sh adds it with rustup)",
            "\n[transforms.NAME.grants]\nwasi = true   # Rust std on wasm32-wasip2 imports WASI; it gets an empty one",
        ),
        Lang::Python => (
            "componentize-py 0.25.1 (`pip install componentize-py==0.25.1`)",
            "\n[transforms.NAME.grants]\nwasi = true   # Python components always import WASI; it gets an empty one",
        ),
        Lang::Js => (
            "Node.js and @bytecodealliance/jco 1.35.0 (build.sh installs it with npm)",
            "",
        ),
        Lang::Go => (
            "Go 1.24 or later, and this `host` on PATH or in $SLUICE_HOST",
            "\n[transforms.NAME.grants]\nwasi = true     # the Go runtime imports WASI; it gets an empty one\nclocks = true   # and refuses to start on a clock that reads zero",
        ),
        Lang::C => (
            "clang and wasi-libc (Debian: clang lld wasi-libc libclang-rt-14-dev-wasm32), and this `host` on PATH or in $SLUICE_HOST",
            "",
        ),
    };
    format!(
        "Build (needs {toolchain}):\n\n    sh build.sh\n\n\
         Try it on NDJSON, one JSON line out per line in:\n\n    \
         echo '{{\"text\":\"hello\"}}' | host plugin run {name}.wasm{grants} -c needle=hello\n\n\
         Use it in pipeline.toml, pinned by digest (`sha256sum {name}.wasm`):\n\n    \
         [transforms.NAME]\n    plugin = \"path/to/{name}.wasm\"\n    sha256 = \"<digest>\"\n    \
         config = {{ needle = \"hello\" }}{}\n",
        grant.replace('\n', "\n    ")
    )
}

/// Writes plugin `name` in `lang` into `dir/name`, which must not exist yet. Returns the
/// plugin's directory.
pub fn new_plugin(name: &str, lang: Lang, dir: &Path) -> anyhow::Result<PathBuf> {
    let valid = !name.is_empty()
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "plugin name {name:?}: use lowercase ASCII letters, digits, `-` and `_`, starting with a letter"
        );
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let crate_name = name.replace('-', "_");
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
    };
    let mut written: Vec<(PathBuf, String, bool)> = files(lang)
        .iter()
        .map(|(path, text, exec)| (root.join(path), fill(text), *exec))
        .collect();
    written.push((root.join("wit/transform.wit"), WIT.to_string(), false));
    written.push((
        root.join("README.md"),
        format!(
            "# {name}\n\nA Sluice transform plugin ({}). It keeps the records whose value contains \
             its `needle` config and drops the others.\n\n{}",
            match lang {
                Lang::Rust => "Rust",
                Lang::Python => "Python, componentize-py",
                Lang::Js => "JavaScript, jco",
                Lang::Go => "Go, GOOS=wasip1",
                Lang::C => "C, clang and wasi-libc",
            },
            usage(lang, name)
        ),
        false,
    ));
    for (path, text, exec) in written {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        #[cfg(unix)]
        if exec {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        #[cfg(not(unix))]
        let _ = exec;
    }
    Ok(root)
}

/// What `host plugin new` prints after writing the plugin.
pub fn next_steps(lang: Lang, name: &str, root: &Path) -> String {
    format!(
        "created {}\n\ncd {}\n\n{}",
        root.display(),
        root.display(),
        usage(lang, name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_file_with_the_name_filled_in() {
        let dir = std::env::temp_dir().join(format!("sluice-scaffold-{}", std::process::id()));
        for lang in [Lang::Rust, Lang::Python, Lang::Js, Lang::Go, Lang::C] {
            let name = format!("my-plugin-{lang:?}").to_lowercase();
            let root = new_plugin(&name, lang, &dir).unwrap();
            assert_eq!(
                std::fs::read_to_string(root.join("wit/transform.wit")).unwrap(),
                WIT
            );
            for (path, _, _) in files(lang) {
                let text = std::fs::read_to_string(root.join(path)).unwrap();
                assert!(!text.contains("{{"), "{path}: {text}");
            }
            let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
            assert!(readme.contains(&format!("{name}.wasm")), "{readme}");
            assert!(new_plugin(&name, lang, &dir).is_err(), "must not overwrite");
        }
        assert!(new_plugin("Bad Name", Lang::Js, &dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
