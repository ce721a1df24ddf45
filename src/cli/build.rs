//! Commands that work on files, without a node: build and pack a release, deploy one, and
//! generate an appup.

use super::Failure;
use relup_appup::Release;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The cdylib files cargo built for the crate at `dir` (release profile).
fn build_cdylibs(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let manifest = dir.join("Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Failure(format!("cannot run cargo: {e}")))?;
    if !output.status.success() {
        return Err(Failure(format!(
            "cargo build of {} failed",
            manifest.display()
        )));
    }
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message.get("reason").and_then(|r| r.as_str()) != Some("compiler-artifact") {
            continue;
        }
        // A crate of the release directory: the one at its top, or a member of the
        // workspace it holds (a project of `relup new`).
        let manifest_path = message
            .get("manifest_path")
            .and_then(|m| m.as_str())
            .map(PathBuf::from);
        let ours = manifest_path
            .zip(std::fs::canonicalize(dir).ok())
            .is_some_and(|(a, dir)| std::fs::canonicalize(a).is_ok_and(|a| a.starts_with(dir)));
        let cdylib = message
            .pointer("/target/kind")
            .and_then(|k| k.as_array())
            .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"));
        if !(ours && cdylib) {
            continue;
        }
        for file in message
            .get("filenames")
            .and_then(|f| f.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(file) = file.as_str().filter(|f| f.ends_with(".so")) {
                libs.push(PathBuf::from(file));
            }
        }
    }
    Ok(libs)
}

fn copy(from: &Path, to: &Path) -> Result<(), Failure> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Failure(format!("{}: {e}", dir.display())))?;
    }
    std::fs::copy(from, to).map_err(|e| {
        Failure(format!(
            "copying {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })?;
    Ok(())
}

/// The executable `--exe` names: `self` is the one running this command.
fn node_executable(exe: &Path) -> Result<PathBuf, Failure> {
    let path = if exe == Path::new("self") {
        std::env::current_exe()
            .map_err(|e| Failure(format!("--exe self: cannot find this executable: {e}")))?
    } else {
        exe.to_path_buf()
    };
    if !path.is_file() {
        return Err(Failure(format!(
            "--exe {}: not a file; expected the node executable to pack (the relup binary, your service's binary, or `self`)",
            path.display()
        )));
    }
    Ok(path)
}

/// `relup release <dir>`: builds the crate's cdylib(s), stages release.toml, the appups, the
/// config, the libraries at the paths release.toml names and, with `exe`, the node executable
/// as bin/relup-node, and packs the tarball.
pub fn release(
    dir: &Path,
    out: Option<&Path>,
    exe: Option<&Path>,
    json: bool,
) -> Result<(), Failure> {
    let exe = exe.map(node_executable).transpose()?;
    let manifest_path = dir.join("release.toml");
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| Failure(format!("{}: {e}", manifest_path.display())))?;
    // A source manifest may leave out the modules' sha256: the packer computes them (and the
    // packed release.toml, which unpack reads strictly, carries every one).
    let release = Release::parse_source(&text, &manifest_path.display().to_string())?;
    let libs = if dir.join("Cargo.toml").is_file() {
        build_cdylibs(dir)?
    } else {
        Vec::new()
    };
    let staging = std::env::temp_dir().join(format!(
        "relup-release-{}-{}",
        std::process::id(),
        release.version
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    std::fs::write(staging.join("release.toml"), &text)?;
    for name in ["appup.toml", "config.toml"] {
        if dir.join(name).is_file() {
            copy(&dir.join(name), &staging.join(name))?;
        }
    }
    if dir.join("appup").is_dir() {
        for entry in std::fs::read_dir(dir.join("appup"))? {
            let entry = entry?;
            copy(
                &entry.path(),
                &staging.join("appup").join(entry.file_name()),
            )?;
        }
    }
    let modules: Vec<&relup_appup::Module> = release
        .applications
        .iter()
        .flat_map(|a| a.modules.iter())
        .filter(|m| !m.native)
        .collect();
    for module in &modules {
        let wanted = Path::new(&module.file)
            .file_name()
            .map(|f| f.to_os_string());
        let built = libs
            .iter()
            .find(|lib| lib.file_name().map(|f| f.to_os_string()) == wanted)
            .or_else(|| (libs.len() == 1 && modules.len() == 1).then(|| &libs[0]));
        let source = match built {
            Some(lib) => lib.clone(),
            None if dir.join(&module.file).is_file() => dir.join(&module.file),
            None => {
                return Err(Failure(format!(
                    "no library for module {} ({}): cargo built {:?}",
                    module.name, module.file, libs
                )));
            }
        };
        copy(&source, &staging.join(&module.file))?;
    }
    if let Some(exe) = &exe {
        copy(exe, &staging.join(relup_runtime::release::NODE_EXECUTABLE))?;
    }
    let out_dir = out.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let options = relup_runtime::release::PackOptions {
        refresh_sha256: true,
    };
    let tarball = relup_runtime::release::pack_with(&staging, &out_dir, options);
    let _ = std::fs::remove_dir_all(&staging);
    let tarball = tarball?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "tarball": tarball, "name": release.name, "version": release.version.to_string(), "executable": exe })
        );
    } else {
        let with = exe.map_or_else(String::new, |exe| {
            format!(" with node executable {}", exe.display())
        });
        println!(
            "packed {} {}{with} into {}",
            release.name,
            release.version,
            tarball.display()
        );
    }
    Ok(())
}

/// `relup deploy <tarball> <root>`.
pub fn deploy(tarball: &Path, root: &Path, json: bool) -> Result<(), Failure> {
    let unpacked = relup_runtime::release::deploy(tarball, root)?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "deployed": unpacked.release.version.to_string(), "root": root })
        );
    } else {
        println!(
            "deployed {} {} into {} (permanent); start it with `relup start --root {}`",
            unpacked.release.name,
            unpacked.release.version,
            root.display(),
            root.display()
        );
    }
    Ok(())
}

const PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Source directories carry no sha256, or placeholders (the packer fills them in). Use the
/// library's real digest when it is in the directory; otherwise the module cannot be compared,
/// so it gets a digest of its version and is treated as changed when the version changes.
fn fill_digests(release: &mut Release, dir: &Path) {
    for app in &mut release.applications {
        for module in &mut app.modules {
            if module.native || !(module.sha256.is_empty() || module.sha256 == PLACEHOLDER) {
                continue;
            }
            match relup_runtime::release::sha256_file(&dir.join(&module.file)) {
                Ok((digest, _)) => module.sha256 = digest,
                Err(_) => {
                    eprintln!(
                        "note: {} has no built library in {}; comparing it by version ({})",
                        module.name,
                        dir.display(),
                        module.version
                    );
                    let tag = format!("{}@{}", module.name, module.version);
                    module.sha256 = relup_runtime::release::sha256_hex(tag.as_bytes());
                }
            }
        }
    }
}

/// `relup appup generate <old> <new>`: prints the generated appup(s).
pub fn generate(old_dir: &Path, new_dir: &Path) -> Result<(), Failure> {
    let read = |dir: &Path| -> Result<Release, Failure> {
        let path = dir.join("release.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
        Ok(Release::parse_source(&text, &path.display().to_string())?)
    };
    let (mut old, mut new) = (read(old_dir)?, read(new_dir)?);
    fill_digests(&mut old, old_dir);
    fill_digests(&mut new, new_dir);
    let appups = relup_appup::generate(&old, &new);
    if appups.is_empty() {
        return Err(Failure(format!(
            "no application changed version between {} and {}",
            old.version, new.version
        )));
    }
    for appup in appups {
        print!("{}", appup.to_toml());
    }
    Ok(())
}
