//! The release root's directory layout (DESIGN.md §4) and its path helpers.
//!
//! ```text
//! <root>/bin/<name>                 launcher script
//! <root>/releases/RELEASES          every known release and its status
//! <root>/releases/<vsn>/            release.toml, appup/*.toml, lib/*.so, config.toml,
//!                                   bin/relup-node (the node executable, if the release has one)
//! <root>/releases/<vsn>/<name>-<vsn>.tar.gz
//! <root>/config/config.toml         live config (+ .new and .rej)
//! <root>/log/upgrade.log            journal
//! <root>/run/control.sock           control socket (run/ is mode 0700)
//! ```

use semver::Version;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A release root on disk: the directory `relup --root` manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRoot {
    /// The root directory.
    pub path: PathBuf,
}

impl ReleaseRoot {
    /// A handle on `path` without touching the disk.
    pub fn new(path: impl Into<PathBuf>) -> ReleaseRoot {
        ReleaseRoot { path: path.into() }
    }

    /// Creates the root (if missing) and every standard subdirectory that is missing
    /// (`bin`, `releases`, `config`, `log`, and `run` with mode 0700).
    pub fn create(path: impl Into<PathBuf>) -> io::Result<ReleaseRoot> {
        let root = ReleaseRoot::new(path);
        fs::create_dir_all(&root.path)
            .map_err(|e| ctx(e, format!("creating release root {}", root.path.display())))?;
        root.ensure_dirs()?;
        Ok(root)
    }

    /// Opens an existing root: fails if the directory does not exist, then creates any
    /// missing standard subdirectory (as [`ReleaseRoot::create`]).
    pub fn open(path: impl Into<PathBuf>) -> io::Result<ReleaseRoot> {
        let root = ReleaseRoot::new(path);
        let meta = fs::metadata(&root.path)
            .map_err(|e| ctx(e, format!("opening release root {}", root.path.display())))?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!(
                    "release root {} is not a directory; expected a directory",
                    root.path.display()
                ),
            ));
        }
        root.ensure_dirs()?;
        Ok(root)
    }

    fn ensure_dirs(&self) -> io::Result<()> {
        for dir in [
            self.bin_dir(),
            self.releases_dir(),
            self.config_dir(),
            self.log_dir(),
            self.run_dir(),
        ] {
            refuse_dangling_link(&dir)?;
        }
        for dir in [
            self.bin_dir(),
            self.releases_dir(),
            self.config_dir(),
            self.log_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(|e| ctx(e, format!("creating {}", dir.display())))?;
        }
        let run = self.run_dir();
        match DirBuilder::new().mode(0o700).create(&run) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::set_permissions(&run, fs::Permissions::from_mode(0o700))
                    .map_err(|e| ctx(e, format!("setting mode 0700 on {}", run.display())))?;
            }
            Err(e) => return Err(ctx(e, format!("creating {}", run.display()))),
        }
        Ok(())
    }

    /// `<root>/bin`.
    pub fn bin_dir(&self) -> PathBuf {
        self.path.join("bin")
    }

    /// `<root>/bin/<name>`: the launcher script.
    pub fn launcher(&self, name: &str) -> PathBuf {
        self.bin_dir().join(name)
    }

    /// `<root>/releases`.
    pub fn releases_dir(&self) -> PathBuf {
        self.path.join("releases")
    }

    /// `<root>/releases/RELEASES`.
    pub fn releases_file(&self) -> PathBuf {
        self.releases_dir().join("RELEASES")
    }

    /// `<root>/releases/<vsn>`.
    pub fn release_dir(&self, vsn: &Version) -> PathBuf {
        self.releases_dir().join(vsn.to_string())
    }

    /// `<root>/releases/<vsn>/release.toml`.
    pub fn release_manifest(&self, vsn: &Version) -> PathBuf {
        self.release_dir(vsn).join("release.toml")
    }

    /// `<root>/releases/<vsn>/appup`.
    pub fn appup_dir(&self, vsn: &Version) -> PathBuf {
        self.release_dir(vsn).join("appup")
    }

    /// `<root>/releases/<vsn>/bin/relup-node`: the node executable a self-contained release
    /// carries (the `relup` binary or the service's own), which `bin/<name>` runs.
    pub fn release_executable(&self, vsn: &Version) -> PathBuf {
        self.release_dir(vsn).join(NODE_EXECUTABLE)
    }

    /// `<root>/releases/<vsn>/config.toml`: the release's default config.
    pub fn release_config(&self, vsn: &Version) -> PathBuf {
        self.release_dir(vsn).join("config.toml")
    }

    /// `<root>/releases/<vsn>/<name>-<vsn>.tar.gz`: where a tarball is dropped to be
    /// unpacked on upgrade.
    pub fn release_tarball(&self, name: &str, vsn: &Version) -> PathBuf {
        self.release_dir(vsn).join(tarball_name(name, vsn))
    }

    /// `<root>/config`.
    pub fn config_dir(&self) -> PathBuf {
        self.path.join("config")
    }

    /// `<root>/config/config.toml`: the live config.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir().join("config.toml")
    }

    /// `<root>/config/config.toml.new`: pending changes, one `app:module:key:value` a line.
    pub fn config_new(&self) -> PathBuf {
        self.config_dir().join("config.toml.new")
    }

    /// `<root>/config/config.toml.rej`: rejected changes with their reasons.
    pub fn config_rej(&self) -> PathBuf {
        self.config_dir().join("config.toml.rej")
    }

    /// `<root>/log`.
    pub fn log_dir(&self) -> PathBuf {
        self.path.join("log")
    }

    /// `<root>/log/upgrade.log`: the journal.
    pub fn upgrade_log(&self) -> PathBuf {
        self.log_dir().join("upgrade.log")
    }

    /// `<root>/snapshots`: process states and config saved before each install.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.path.join("snapshots")
    }

    /// `<root>/releases/SCHEDULE`: upgrades scheduled for later (they survive a restart).
    pub fn schedule_file(&self) -> PathBuf {
        self.releases_dir().join("SCHEDULE")
    }

    /// `<root>/run` (mode 0700).
    pub fn run_dir(&self) -> PathBuf {
        self.path.join("run")
    }

    /// `<root>/run/releases.lock`: the lock every writer of `RELEASES` holds while it reads,
    /// changes and writes the file (see [`super::ReleasesLock`]).
    pub fn releases_lock(&self) -> PathBuf {
        self.run_dir().join("releases.lock")
    }

    /// `<root>/run/control.sock`.
    pub fn control_socket(&self) -> PathBuf {
        self.run_dir().join("control.sock")
    }

    /// `<root>/run/node.pid`: the pid of the node that runs on the root, written before its
    /// control socket answers and removed when it stops.
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir().join("node.pid")
    }

    /// `<root>/run/node.lock`: locked (`flock`) by the node that runs on the root for its
    /// whole life, and holding its pid; never removed (a removed lock file could be locked
    /// twice).
    pub fn node_lock(&self) -> PathBuf {
        self.run_dir().join("node.lock")
    }

    /// `<root>/log/node.log`: the output of a node started in the background.
    pub fn node_log(&self) -> PathBuf {
        self.log_dir().join("node.log")
    }
}

/// Where a release carries its node executable, relative to the release directory (and in
/// the tarball).
pub const NODE_EXECUTABLE: &str = "bin/relup-node";

/// `<name>-<vsn>.tar.gz`.
pub fn tarball_name(name: &str, vsn: &Version) -> String {
    format!("{name}-{vsn}.tar.gz")
}

/// The launcher script. With `root`, the root is that directory; without, it is the parent
/// of the directory holding the script (`<root>/bin/<name>`).
///
/// It runs the node executable of the permanent release (`releases/<vsn>/bin/relup-node`,
/// the release a start boots), as `<exe> --root <root> "$@"`, and falls back to `relup` on
/// `PATH` only when that release carries none. The permanent version is read from
/// `releases/RELEASES` with the shell alone (no awk, no relup), so the launcher works on a
/// server whose `PATH` has nothing but `/usr/bin:/bin`.
pub fn launcher_script(root: Option<&Path>) -> String {
    let root_line = match root {
        Some(root) => format!("ROOT={}\n", shell_quote(&root.to_string_lossy())),
        None => "ROOT=\"$(cd \"$(dirname \"$0\")/..\" && pwd)\" || exit 1\n".to_string(),
    };
    format!(
        "#!/bin/sh\n\
         # relup launcher: runs the node executable of the permanent release of this root\n\
         # (releases/<vsn>/{NODE_EXECUTABLE}), else `relup` from PATH.\n\
         {root_line}\
         vsn=\n\
         permanent=\n\
         if [ -r \"$ROOT/releases/RELEASES\" ]; then\n\
         \x20   while IFS= read -r line; do\n\
         \x20       case \"$line\" in\n\
         \x20           'version = \"'*) vsn=${{line#version = \\\"}}; vsn=${{vsn%%\\\"*}} ;;\n\
         \x20           'status = \"permanent\"'*) permanent=$vsn ;;\n\
         \x20       esac\n\
         \x20   done < \"$ROOT/releases/RELEASES\"\n\
         fi\n\
         EXE=\"$ROOT/releases/$permanent/{NODE_EXECUTABLE}\"\n\
         if [ -n \"$permanent\" ] && [ -x \"$EXE\" ]; then\n\
         \x20   exec \"$EXE\" --root \"$ROOT\" \"$@\"\n\
         fi\n\
         exec relup --root \"$ROOT\" \"$@\"\n"
    )
}

/// Single-quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A symlink at `dir` whose target does not exist is an error that names both ("File
/// exists" is what creating the directory would say).
fn refuse_dangling_link(dir: &Path) -> io::Result<()> {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return Ok(());
    };
    if meta.file_type().is_symlink() && fs::metadata(dir).is_err() {
        let target = fs::read_link(dir)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|_| "?".into());
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} is a dangling symlink to {target}; create {target} (mkdir -p) or remove the link",
                dir.display()
            ),
        ));
    }
    Ok(())
}

fn ctx(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    /// A root whose RELEASES names `permanent`, with `releases/<vsn>/bin/relup-node` a script
    /// that prints its version and arguments for each of `with_exe`.
    fn fake_root(name: &str, permanent: &str, with_exe: &[&str]) -> std::path::PathBuf {
        let tmp =
            std::env::temp_dir().join(format!("relup-launcher-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("releases")).unwrap();
        std::fs::write(
            tmp.join("releases/RELEASES"),
            format!(
                "name = \"demo\"\n\n[[release]]\nversion = \"0.1.0\"\nstatus = \"old\"\nunpacked_at = 1\n\n[[release]]\nversion = \"{permanent}\"\nstatus = \"permanent\"\nunpacked_at = 2\n"
            ),
        )
        .unwrap();
        for vsn in with_exe {
            let exe = tmp.join("releases").join(vsn).join(super::NODE_EXECUTABLE);
            std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
            std::fs::write(&exe, format!("#!/bin/sh\necho \"exe {vsn}: $*\"\n")).unwrap();
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        tmp
    }

    fn launch(root: &std::path::Path, script: &str) -> std::process::Output {
        let path = root.join("launcher");
        std::fs::write(&path, script).unwrap();
        std::process::Command::new("/bin/sh")
            .arg(&path)
            .args(["upgrade", "0.3.0"])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap()
    }

    #[test]
    fn the_launcher_runs_the_permanent_release_executable_with_a_bare_path() {
        let root = fake_root("exe", "0.2.0", &["0.1.0", "0.2.0"]);
        let out = launch(&root, &super::launcher_script(Some(&root)));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.trim(),
            format!("exe 0.2.0: --root {} upgrade 0.3.0", root.display()),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn without_an_executable_the_launcher_falls_back_to_relup_on_path() {
        let root = fake_root("noexe", "0.2.0", &["0.1.0"]);
        let out = launch(&root, &super::launcher_script(Some(&root)));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("relup"), "{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("exe 0.1.0"));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_dangling_symlink_for_a_standard_directory_is_named() {
        let tmp = std::env::temp_dir().join(format!("relup-layout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        std::os::unix::fs::symlink(tmp.join("gone"), tmp.join("log")).unwrap();
        let err = super::ReleaseRoot::create(&tmp).unwrap_err().to_string();
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(err.contains("is a dangling symlink to"), "{err}");
    }
}
