//! `relup new <name>`: writes a ready project for a service on relup (as `rebar3 new
//! release` does): a workspace with the module crate, release.toml, the appup of the next
//! version, optionally a node binary of its own (`--host`), and a README of the next steps.
//!
//! The project depends on relup's crates by path, on the checkout this `relup` was built
//! from (or `--relup-path`), until they are published.

use super::Failure;
use std::path::{Path, PathBuf};

const WORKSPACE: &str = include_str!("new_project/workspace.toml");
const SERVER_MANIFEST: &str = include_str!("new_project/server.toml");
const SERVER: &str = include_str!("new_project/server.rs");
const RELEASE: &str = include_str!("new_project/release.toml");
const APPUP: &str = include_str!("new_project/appup.toml");
const HOST_MANIFEST: &str = include_str!("new_project/host.toml");
const HOST: &str = include_str!("new_project/host.rs");
const README: &str = include_str!("new_project/README.md");
const GITIGNORE: &str = include_str!("new_project/gitignore");

/// The relup checkout this binary was built from: the project's dependencies point there.
const BUILT_FROM: &str = env!("CARGO_MANIFEST_DIR");

/// Whether `name` can name the release, its application, crates and files: a lowercase
/// letter, then lowercase letters, digits or `_`.
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `shop_floor` -> `ShopFloor`: the name of the module's server type.
fn type_name(name: &str) -> String {
    name.split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// The relup checkout to depend on: `--relup-path`, else the one this binary was built from;
/// it must hold the `relup-module` crate.
fn relup_checkout(relup_path: Option<&Path>) -> Result<PathBuf, Failure> {
    let path = relup_path.unwrap_or(Path::new(BUILT_FROM));
    let module = path.join("module").join("Cargo.toml");
    if !module.is_file() {
        return Err(Failure(format!(
            "{} is not a relup checkout (no module/Cargo.toml); pass --relup-path <dir of a relup checkout>",
            path.display()
        )));
    }
    std::fs::canonicalize(path).map_err(|e| Failure(format!("{}: {e}", path.display())))
}

/// The text of one file of the project.
struct Templates<'a> {
    name: &'a str,
    relup: String,
    host: bool,
}

impl Templates<'_> {
    fn fill(&self, template: &str) -> String {
        let (host_exe, exe) = if self.host {
            (
                format!(
                    " (here the service's own binary, `target/release/{}-node`, which `relup release` builds; with another CARGO_TARGET_DIR, its release/{}-node):",
                    self.name, self.name
                ),
                format!("target/release/{}-node", self.name),
            )
        } else {
            (
                format!(
                    " (here the relup binary itself; `relup new {} --host` makes a project with a node binary of its own, for native server types):",
                    self.name
                ),
                "\"$(command -v relup)\"".to_string(),
            )
        };
        let members = if self.host {
            "\"server\", \"node\""
        } else {
            "\"server\""
        };
        let host_dependency = if self.host {
            format!(
                "# The node binary's dependency: relup's command line and node, as a library.\nrelup = {{ path = \"{}\" }}\n",
                self.relup
            )
        } else {
            String::new()
        };
        template
            .replace("@MEMBERS@", members)
            .replace("@HOST_DEPENDENCY@", &host_dependency)
            .replace("@HOST_EXE@", &host_exe)
            .replace("@EXE@", &exe)
            .replace("@RELUP@", &self.relup)
            .replace("@TYPE@", &type_name(self.name))
            .replace("@NAME@", self.name)
    }

    /// Every file of the project: path relative to its directory, and contents.
    fn files(&self) -> Vec<(String, String)> {
        let name = self.name;
        let mut files = vec![
            ("Cargo.toml".to_string(), self.fill(WORKSPACE)),
            ("release.toml".to_string(), self.fill(RELEASE)),
            (format!("appup/{name}.toml.next"), self.fill(APPUP)),
            ("server/Cargo.toml".to_string(), self.fill(SERVER_MANIFEST)),
            ("server/src/lib.rs".to_string(), self.fill(SERVER)),
            ("README.md".to_string(), self.fill(README)),
            (".gitignore".to_string(), GITIGNORE.to_string()),
        ];
        if self.host {
            files.push(("node/Cargo.toml".to_string(), self.fill(HOST_MANIFEST)));
            files.push(("node/src/main.rs".to_string(), self.fill(HOST)));
        }
        files
    }
}

/// `relup new <name> [--host] [--dir PARENT] [--relup-path DIR]`.
pub fn new_project(
    name: &str,
    host: bool,
    parent: Option<&Path>,
    relup_path: Option<&Path>,
    json: bool,
) -> Result<(), Failure> {
    if !valid_name(name) {
        return Err(Failure(format!(
            "invalid project name {name:?}; expected a lowercase letter, then lowercase letters, digits or `_` (it names the release, its application and crates)"
        )));
    }
    let relup = relup_checkout(relup_path)?;
    let dir = parent.unwrap_or(Path::new(".")).join(name);
    if dir.exists() {
        return Err(Failure(format!(
            "{} already exists; nothing was written (choose another name or directory)",
            dir.display()
        )));
    }
    let templates = Templates {
        name,
        relup: relup.display().to_string(),
        host,
    };
    let files = templates.files();
    for (path, text) in &files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Failure(format!("{}: {e}", parent.display())))?;
        }
        std::fs::write(&path, text).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    }
    if json {
        let paths: Vec<&String> = files.iter().map(|(p, _)| p).collect();
        println!(
            "{}",
            serde_json::json!({ "created": dir, "files": paths, "relup": relup })
        );
    } else {
        println!(
            "created {} ({} files; relup's crates by path from {}); next steps: {}/README.md",
            dir.display(),
            files.len(),
            relup.display(),
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_give_a_type_name() {
        assert!(valid_name("shop") && valid_name("shop_floor2"));
        for bad in ["", "Shop", "2shop", "shop-floor", "shop floor", "../x"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(type_name("shop"), "Shop");
        assert_eq!(type_name("shop_floor2"), "ShopFloor2");
    }

    #[test]
    fn every_placeholder_is_filled() {
        for host in [false, true] {
            let templates = Templates {
                name: "shop",
                relup: "/opt/relup".into(),
                host,
            };
            for (path, text) in templates.files() {
                assert!(!text.contains('@'), "{path} keeps a placeholder:\n{text}");
            }
        }
    }
}
