//! What each import of a plugin asks of `[transforms.NAME.grants]`: read by the load-time
//! import check, by `host plugin inspect`, and to explain a plugin that fails at start-up.

use super::WIT_PACKAGE;
use super::config::Grants;

/// The grant that opens one import, by its name in `[transforms.NAME.grants]` (and in
/// `--grant` on the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// The world's own interfaces: always linked.
    Contract,
    /// Links with `wasi = true` and gives the plugin nothing of the host's.
    Wasi,
    /// Links with `wasi = true`; both clocks read zero unless `clocks` is granted too.
    Clocks,
    /// Links with `wasi = true`; no variables unless `env` names some.
    Env,
    /// Links with `wasi = true`; no directories unless `dirs` maps some.
    Dirs,
    /// Links with `wasi = true`; output is discarded unless `stdio` is granted.
    Stdio,
    /// Never linked, whatever the grants.
    Refused,
}

impl Need {
    /// What `import` (an import name of a component, such as
    /// `wasi:clocks/wall-clock@0.2.6`) needs.
    pub fn of(import: &str) -> Need {
        let iface = import.split('@').next().unwrap_or(import);
        if import.starts_with(&format!("{}/", package_name())) {
            // Another version of our package does not link.
            return if import.ends_with(&format!("@{}", package_version())) {
                Need::Contract
            } else {
                Need::Refused
            };
        }
        match iface.split_once('/') {
            Some(("wasi:clocks", _)) => Need::Clocks,
            Some(("wasi:cli", "environment")) => Need::Env,
            Some(("wasi:cli", "stdout" | "stderr")) => Need::Stdio,
            Some(("wasi:filesystem", _)) => Need::Dirs,
            Some(("wasi:http", _)) => Need::Refused,
            Some((ns, _)) if ns.starts_with("wasi:") => Need::Wasi,
            _ => Need::Refused,
        }
    }

    /// The grant's name, `None` for the contract and for what is never granted.
    pub fn grant(self) -> Option<&'static str> {
        match self {
            Need::Contract | Need::Refused => None,
            Need::Wasi => Some("wasi"),
            Need::Clocks => Some("clocks"),
            Need::Env => Some("env"),
            Need::Dirs => Some("dirs"),
            Need::Stdio => Some("stdio"),
        }
    }

    /// Whether `grants` link this import.
    pub fn links(self, grants: &Grants) -> bool {
        match self {
            Need::Contract => true,
            Need::Refused => false,
            _ => grants.wasi,
        }
    }

    /// Whether `grants` open this import fully (it links and sees what it asks for).
    pub fn opened_by(self, grants: &Grants) -> bool {
        self.links(grants)
            && match self {
                Need::Clocks => grants.clocks,
                Need::Env => !grants.env.is_empty(),
                Need::Dirs => !grants.dirs.is_empty(),
                Need::Stdio => grants.stdio,
                _ => true,
            }
    }

    /// What the import sees when its grant is missing (for the grants beyond `wasi`).
    fn without(self) -> &'static str {
        match self {
            Need::Clocks => "its clocks read zero, and language runtimes may refuse to start",
            Need::Env => "it sees no variables",
            Need::Dirs => "it sees no files",
            Need::Stdio => "its output is discarded",
            _ => "",
        }
    }

    /// One line on what the import gets, for `host plugin inspect`.
    pub fn explain(self, import: &str) -> &'static str {
        match self {
            Need::Contract => "the transform world's own",
            Need::Wasi if import.starts_with("wasi:sockets/") => {
                "needs wasi = true; every connection is denied"
            }
            Need::Wasi => "needs wasi = true",
            Need::Clocks => "needs wasi = true; both clocks read zero unless clocks is granted",
            Need::Env => "needs wasi = true; no variables unless env names some",
            Need::Dirs => "needs wasi = true; no files unless dirs maps a directory",
            Need::Stdio => "needs wasi = true; output is discarded unless stdio is granted",
            Need::Refused if import.starts_with(&format!("{}/", package_name())) => {
                "another version of the contract: this host implements only its own"
            }
            Need::Refused => "never granted: the plugin does not load",
        }
    }
}

/// `sluice:transform`.
pub fn package_name() -> &'static str {
    WIT_PACKAGE.split('@').next().unwrap_or(WIT_PACKAGE)
}

/// `0.1.0`.
pub fn package_version() -> &'static str {
    WIT_PACKAGE.split_once('@').map_or("", |(_, v)| v)
}

/// The imports `grants` link but do not open, one per grant, the likeliest culprit first:
/// language runtimes (Go's) refuse to start on a clock that stands still.
pub fn unopened<'a>(
    imports: impl IntoIterator<Item = &'a str>,
    grants: &Grants,
) -> Vec<(Need, &'a str)> {
    let mut found: Vec<(Need, &str)> = Vec::new();
    for import in imports {
        let need = Need::of(import);
        if need.grant().is_some_and(|g| g != "wasi")
            && need.links(grants)
            && !need.opened_by(grants)
            && !found.iter().any(|(n, _)| *n == need)
        {
            found.push((need, import));
        }
    }
    found.sort();
    found
}

/// Why a plugin that failed before its first batch may have failed, from the imports its
/// grants leave closed: `None` if they leave none closed.
pub fn startup_hint<'a>(
    transform: &str,
    imports: impl IntoIterator<Item = &'a str>,
    grants: &Grants,
) -> Option<String> {
    let closed = unopened(imports, grants);
    let (need, import) = closed.first()?;
    let grant = need.grant().unwrap_or_default();
    let value = match need {
        Need::Env => "[\"NAME\"]",
        Need::Dirs => "{ \"/guest\" = \"host-dir\" }",
        _ => "true",
    };
    let mut hint = format!(
        "likely cause: the plugin imports `{import}` without the `{grant}` grant ({}); grant \
         {grant} (`--grant {grant}` for `host plugin run`, `{grant} = {value}` in \
         `[transforms.{transform}.grants]`)",
        need.without()
    );
    let others: Vec<&str> = closed[1..].iter().filter_map(|(n, _)| n.grant()).collect();
    if !others.is_empty() {
        hint.push_str(&format!("; also not granted: {}", others.join(", ")));
    }
    Some(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_import_needs_its_grant() {
        let cases = [
            ("sluice:transform/log@0.1.0", Need::Contract),
            ("sluice:transform/types@0.2.0", Need::Refused),
            ("wasi:clocks/monotonic-clock@0.2.12", Need::Clocks),
            ("wasi:cli/environment@0.2.0", Need::Env),
            ("wasi:cli/stderr@0.2.6", Need::Stdio),
            ("wasi:cli/stdin@0.2.6", Need::Wasi),
            ("wasi:filesystem/preopens@0.2.6", Need::Dirs),
            ("wasi:random/random@0.2.6", Need::Wasi),
            ("wasi:sockets/tcp@0.2.6", Need::Wasi),
            ("wasi:http/outgoing-handler@0.2.6", Need::Refused),
            ("evil:net/socket@1.0.0", Need::Refused),
        ];
        for (import, need) in cases {
            assert_eq!(Need::of(import), need, "{import}");
        }
    }

    #[test]
    fn the_hint_names_the_clock_first_and_only_what_is_closed() {
        let imports = [
            "wasi:cli/environment@0.2.12",
            "wasi:clocks/wall-clock@0.2.12",
            "wasi:clocks/monotonic-clock@0.2.12",
        ];
        let mut grants = Grants {
            wasi: true,
            ..Grants::default()
        };
        let hint = startup_hint("go", imports, &grants).unwrap();
        assert!(
            hint.starts_with(
                "likely cause: the plugin imports `wasi:clocks/wall-clock@0.2.12` without the `clocks` grant ("
            ),
            "{hint}"
        );
        assert!(
            hint.ends_with(
                "grant clocks (`--grant clocks` for `host plugin run`, `clocks = true` in `[transforms.go.grants]`); also not granted: env"
            ),
            "{hint}"
        );
        grants.clocks = true;
        grants.env = vec!["HOME".into()];
        assert_eq!(startup_hint("go", imports, &grants), None);
        // Not linked at all is the import check's to report, not a start-up hint.
        assert_eq!(startup_hint("go", imports, &Grants::default()), None);
    }
}
