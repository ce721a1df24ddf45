//! The config store: validates change lines against the running release, persists accepted
//! values to `config.toml`, applies them to the node env and delivers `config_change`.

use super::live::{LiveConfig, toml_value};
use super::parse::{ChangeLine, parse_batch, parse_line};
use crate::install::{config_value, rfc3339};
use crate::node::{EnvOrigin, Node};
use crate::release::{ReleaseRoot, sync_dir, write_atomic};
use parking_lot::{Mutex, MutexGuard};
use relup_appup::{ConfigKey, Release};
use relup_module::ConfigChange;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Why the config store could not do its work (the node keeps running).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// `config.toml` is not valid.
    #[error("{0}")]
    Live(String),
    /// A change was rejected (the reason says what was expected).
    #[error("{0}")]
    Rejected(String),
    /// A `get` named something the running release does not have.
    #[error("{0}")]
    Unknown(String),
}

/// An accepted change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// Line number in its file (0 for `relup config set`).
    pub line: usize,
    /// Application.
    pub app: String,
    /// Module.
    pub module: String,
    /// Key.
    pub key: String,
    /// The new value, as TOML text.
    pub value: String,
}

/// A rejected line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    /// Line number in its file.
    pub line: usize,
    /// The line as written.
    pub text: String,
    /// Why.
    pub reason: String,
}

/// What processing one change file did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchReport {
    /// The file name.
    pub file: String,
    /// Whether the batch was marked `# atomic`.
    pub atomic: bool,
    /// Accepted lines (after "last line wins").
    pub applied: Vec<Applied>,
    /// Rejected lines.
    pub rejected: Vec<Rejected>,
}

/// A key of the running release with its value, for `relup config get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// Application.
    pub app: String,
    /// Module declaring the key.
    pub module: String,
    /// Key.
    pub key: String,
    /// Current value as TOML text (None if unset).
    pub value: Option<String>,
    /// "default" or "operator".
    pub origin: Option<String>,
    /// Declared type.
    #[serde(rename = "type")]
    pub ty: String,
}

/// The node's config store for one release root.
pub struct ConfigStore {
    node: Node,
    root: ReleaseRoot,
    lock: Mutex<()>,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> ConfigError {
    move |e| ConfigError::Io(format!("{what}: {e}"))
}

impl ConfigStore {
    /// A store for `root`'s `config/` directory on `node`.
    pub fn new(node: Node, root: ReleaseRoot) -> ConfigStore {
        ConfigStore {
            node,
            root,
            lock: Mutex::new(()),
        }
    }

    /// The root.
    pub fn root(&self) -> &ReleaseRoot {
        &self.root
    }

    /// Holds the store's lock (an install holds it so no change is validated against a
    /// release that is being replaced).
    pub fn hold(&self) -> MutexGuard<'_, ()> {
        self.lock.lock()
    }

    /// `config.toml.new.work`: a change file being processed.
    pub fn work_file(&self) -> PathBuf {
        self.root.config_dir().join("config.toml.new.work")
    }

    pub(crate) fn log(&self, level: u32, text: &str) {
        self.node.inner.log(level, None, text);
    }

    /// Loads `config.toml` into the env as operator values, before the release boots. Keys the
    /// release does not declare, or whose value it no longer accepts, are skipped and returned
    /// as warnings (also logged).
    pub fn load_live(&self, release: &Release) -> Result<Vec<String>, ConfigError> {
        let _g = self.lock.lock();
        let path = self.root.config_file();
        let live = LiveConfig::load(&path).map_err(ConfigError::Live)?;
        let mut warnings = Vec::new();
        for (app, module, key, value) in live.entries() {
            let line = ChangeLine {
                app: app.clone(),
                module,
                key: key.clone(),
                value: value.clone(),
            };
            match check_declared(release, &line) {
                Ok(_) => self.node.set_env(&app, &key, config_value(&value)),
                Err(why) => {
                    let text = format!("{}: skipped: {why}", path.display());
                    self.log(1, &text);
                    warnings.push(text);
                }
            }
        }
        Ok(warnings)
    }

    /// Checks one change against `release` and the module's validator; the error says what
    /// was expected.
    pub fn validate(&self, release: &Release, change: &ChangeLine) -> Result<(), String> {
        check_declared(release, change)?;
        let Some(loaded) = self.node.code().current(&change.module) else {
            return Ok(());
        };
        let args = relup_module::codec::encode(&(change.key.clone(), config_value(&change.value)))
            .map_err(|e| format!("cannot encode the value for the validator: {e}"))?;
        match self.node.apply(&loaded, "validate_config", &args) {
            Ok(_) => Ok(()),
            Err(e) if e.contains("no exported function") => Ok(()),
            Err(e) => Err(format!(
                "{}:{}:{} = {}: rejected by {}'s validator: {e}",
                change.app, change.module, change.key, change.value, change.module
            )),
        }
    }

    /// The file the live config is written to: `config/config.toml`, or the file it links to
    /// when it is a symlink (an operator's config kept elsewhere), so that a write replaces
    /// the target's contents rather than the link. A dangling link is written as it is.
    pub fn live_file(&self) -> PathBuf {
        let path = self.root.config_file();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(&path).unwrap_or(path),
            _ => path,
        }
    }

    /// `config.toml.new.offset`: how far each change file (by inode) has been processed.
    pub fn offset_file(&self) -> PathBuf {
        self.root.config_dir().join("config.toml.new.offset")
    }

    /// Processes the complete lines of a leftover work file, then of `config.toml.new`.
    ///
    /// The change file is read in place, never claimed while it may still be written: only
    /// lines that end with a newline count, and how far the file was processed is kept in
    /// [`ConfigStore::offset_file`] (by inode), so an unterminated tail waits for the rest of
    /// its line, and lines a writer appends later (with the file held open, or reopened by
    /// path) are taken in the next round. A file is removed only once every byte of it was
    /// processed and it has not changed for [`CHANGE_FILE_IDLE`]: it is renamed to the work
    /// file first, and removed only if it did not grow in between.
    pub fn process_pending(&self, release: &Release) -> Result<Vec<BatchReport>, ConfigError> {
        let _g = self.lock.lock();
        let mut reports = Vec::new();
        for path in [self.work_file(), self.root.config_new()] {
            for _ in 0..1000 {
                match self.process_file(release, &path)? {
                    Some(report) => reports.push(report),
                    None => break,
                }
            }
            self.retire_if_done(&path)?;
        }
        Ok(reports)
    }

    /// Processes the complete lines of `path` past its recorded offset, as one batch; `None`
    /// when there are none.
    fn process_file(
        &self,
        release: &Release,
        path: &Path,
    ) -> Result<Option<BatchReport>, ConfigError> {
        let Some((ino, bytes)) = read_change_file(path)? else {
            return Ok(None);
        };
        let offsets = Offsets::load(&self.offset_file());
        // A file shorter than its offset was rewritten: start again from its first byte.
        // An offset must fall after a newline of this file; one that does not belongs to an
        // older file whose inode was reused.
        let from = offsets
            .get(ino)
            .filter(|&o| o <= bytes.len() && (o == 0 || bytes[o - 1] == b'\n'))
            .unwrap_or(0);
        // A batch cut short (a crash) may have appended its rejects already: they go, and the
        // batch runs again, so each rejected line is in `.rej` exactly once.
        if let Some(rej_len) = offsets.pending(ino) {
            self.truncate_rejects(rej_len)?;
        }
        let Some(end) = bytes[from..].iter().rposition(|&b| b == b'\n') else {
            return Ok(None);
        };
        let end = from + end + 1;
        let lines_before = bytes[..from].iter().filter(|&&b| b == b'\n').count();
        let text = String::from_utf8_lossy(&bytes[from..end]).into_owned();
        let offset_file = self.offset_file();
        let rej_len = std::fs::metadata(self.root.config_rej()).map_or(0, |m| m.len());
        offsets
            .clone()
            .with(ino, from, Some(rej_len))
            .save(&offset_file)
            .map_err(io(format!("cannot write {}", offset_file.display())))?;
        crate::fault::crash_point(|| {
            format!("config: {} batch to byte {end} begins", path.display())
        });
        let report = self.apply_batch_locked(release, &text, "config.toml.new", lines_before)?;
        offsets
            .with(ino, end, None)
            .save(&offset_file)
            .map_err(io(format!("cannot write {}", offset_file.display())))?;
        crate::fault::crash_point(|| format!("config: {} processed to byte {end}", path.display()));
        Ok(Some(report))
    }

    /// Removes `path` once it is processed to its last byte and idle (see
    /// [`ConfigStore::process_pending`]); `config.toml.new` goes through the work file.
    fn retire_if_done(&self, path: &Path) -> Result<(), ConfigError> {
        let offsets = Offsets::load(&self.offset_file());
        let Some((ino, len, idle)) = change_file_state(path)? else {
            return Ok(());
        };
        if offsets.get(ino) != Some(len) || idle < CHANGE_FILE_IDLE {
            return Ok(());
        }
        let dir = self.root.config_dir();
        let work = self.work_file();
        if path != work {
            if work.exists() {
                return Ok(());
            }
            std::fs::rename(path, &work).map_err(io(format!("cannot claim {}", path.display())))?;
            crate::fault::crash_point(|| {
                format!("config: {} renamed to the work file", path.display())
            });
        }
        // A writer that had it open may have written since the check above.
        match change_file_state(&work)? {
            Some((ino_now, len_now, _)) if ino_now == ino && len_now == len => {}
            _ => return Ok(()),
        }
        // The offset goes first: a crash in between processes the work file again (lines
        // applied twice) rather than letting a later file on the same inode skip lines.
        let rest = offsets.without(ino);
        let offset_file = self.offset_file();
        if rest.0.is_empty() {
            match std::fs::remove_file(&offset_file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(format!("cannot remove {}", offset_file.display()))(e)),
            }
        } else {
            rest.save(&offset_file)
                .map_err(io(format!("cannot write {}", offset_file.display())))?;
        }
        std::fs::remove_file(&work).map_err(io(format!("cannot remove {}", work.display())))?;
        sync_dir(&dir).map_err(|e| ConfigError::Io(e.to_string()))?;
        crate::fault::crash_point(|| format!("config: removed {}", work.display()));
        Ok(())
    }

    /// Cuts `config.toml.rej` back to `len` bytes (what it held before a batch that a crash
    /// cut short), synced.
    fn truncate_rejects(&self, len: u64) -> Result<(), ConfigError> {
        let path = self.root.config_rej();
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > len => {}
            _ => return Ok(()),
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io(format!("cannot open {}", path.display())))?;
        file.set_len(len)
            .and_then(|()| file.sync_all())
            .map_err(io(format!("cannot truncate {}", path.display())))?;
        self.log(
            1,
            &format!(
                "config: {} cut back to {len} bytes: the rejects of a batch interrupted by a crash (the batch runs again)",
                path.display()
            ),
        );
        Ok(())
    }

    /// Validates, rejects, persists and applies one batch text (the store lock is held).
    fn apply_batch_locked(
        &self,
        release: &Release,
        text: &str,
        file: &str,
        line_offset: usize,
    ) -> Result<BatchReport, ConfigError> {
        let batch = parse_batch(text);
        let mut accepted: Vec<(usize, ChangeLine)> = Vec::new();
        let mut rejected: Vec<Rejected> = Vec::new();
        for (n, raw, parsed) in batch.lines {
            let line = n + line_offset;
            if raw.len() > MAX_CHANGE_LINE {
                let mut cut = 200;
                while !raw.is_char_boundary(cut) {
                    cut -= 1;
                }
                rejected.push(Rejected {
                    line,
                    text: format!("{}... ({} bytes, cut here)", &raw[..cut], raw.len()),
                    reason: format!(
                        "the line is {} bytes long; expected at most {MAX_CHANGE_LINE}",
                        raw.len()
                    ),
                });
                continue;
            }
            match parsed.and_then(|c| {
                let c = resolve_child_id(release, c);
                self.validate(release, &c).map(|()| c)
            }) {
                Ok(change) => accepted.push((line, change)),
                Err(reason) => rejected.push(Rejected {
                    line,
                    text: raw,
                    reason,
                }),
            }
        }
        if batch.atomic && !rejected.is_empty() {
            let first = rejected[0].line;
            for (line, change) in accepted.drain(..) {
                rejected.push(Rejected {
                    line,
                    text: format!(
                        "{}:{}:{}:{}",
                        change.app, change.module, change.key, change.value
                    ),
                    reason: format!(
                        "not applied: the batch is atomic (# atomic) and line {first} was rejected"
                    ),
                });
            }
            rejected.sort_by_key(|r| r.line);
        }
        // The last valid line for a key wins.
        let mut last: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (i, (_, c)) in accepted.iter().enumerate() {
            last.insert((c.app.clone(), c.key.clone()), i);
        }
        let accepted: Vec<(usize, ChangeLine)> = accepted
            .into_iter()
            .enumerate()
            .filter(|(i, (_, c))| last.get(&(c.app.clone(), c.key.clone())) == Some(i))
            .map(|(_, x)| x)
            .collect();
        self.append_rejects(&rejected, file)?;
        crate::fault::crash_point(|| {
            format!("config: {} rejected line(s) appended", rejected.len())
        });
        let changes: Vec<ChangeLine> = accepted.iter().map(|(_, c)| c.clone()).collect();
        self.commit(release, &changes)?;
        crate::fault::crash_point(|| format!("config: {} change(s) applied", changes.len()));
        for r in &rejected {
            self.log(
                1,
                &format!("config: {file} line {} rejected: {}", r.line, r.reason),
            );
        }
        let applied: Vec<Applied> = accepted
            .into_iter()
            .map(|(line, c)| {
                self.log(
                    2,
                    &format!(
                        "config: {file} line {line} applied: {}:{}:{} = {}",
                        c.app, c.module, c.key, c.value
                    ),
                );
                applied(line, &c)
            })
            .collect();
        let metrics = &self.node.inner.metrics;
        metrics.config_lines(applied.len(), rejected.len());
        Ok(BatchReport {
            file: file.to_string(),
            atomic: batch.atomic,
            applied,
            rejected,
        })
    }

    /// Appends rejected lines to `config.toml.rej` (fsynced).
    fn append_rejects(&self, rejected: &[Rejected], file: &str) -> Result<(), ConfigError> {
        if rejected.is_empty() {
            return Ok(());
        }
        let now = rfc3339(SystemTime::now());
        let mut text = String::new();
        for r in rejected {
            text.push_str(&format!(
                "# {now} {file} line {}: {}\n{}\n",
                r.line,
                r.reason.replace('\n', " "),
                r.text.trim_end()
            ));
        }
        let path = self.root.config_rej();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(format!("cannot open {}", path.display())))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io(format!("cannot append to {}", path.display())))
    }

    /// Persists `changes` to `config.toml` (atomically), then sets them in the env and
    /// delivers `config_change` to each application's processes.
    fn commit(&self, release: &Release, changes: &[ChangeLine]) -> Result<(), ConfigError> {
        if changes.is_empty() {
            return Ok(());
        }
        let path = self.live_file();
        let mut live = LiveConfig::load(&path).map_err(ConfigError::Live)?;
        for c in changes {
            live.set(&c.app, &c.module, &c.key, c.value.clone());
        }
        write_atomic(&path, live.render_for(release).as_bytes())
            .map_err(|e| ConfigError::Io(e.to_string()))?;
        let mut per_app: BTreeMap<&str, ConfigChange> = BTreeMap::new();
        for c in changes {
            let value = config_value(&c.value);
            let before = self.node.env(&c.app, &c.key);
            self.node.set_env(&c.app, &c.key, value.clone());
            let change = per_app.entry(&c.app).or_default();
            match before {
                None => change.new.push((c.key.clone(), value)),
                Some(old) if old != value => change.changed.push((c.key.clone(), value)),
                Some(_) => {}
            }
        }
        for (app, change) in per_app {
            if change.changed.is_empty() && change.new.is_empty() {
                continue;
            }
            for pid in self.node.processes_of_app(app) {
                self.node.config_change(pid, &change);
            }
        }
        Ok(())
    }

    /// `relup config set app:module:key:value`: the same checks as a `config.toml.new` line.
    pub fn set(&self, release: &Release, line: &str) -> Result<Applied, ConfigError> {
        let _g = self.lock.lock();
        let change = resolve_child_id(release, parse_line(line).map_err(ConfigError::Rejected)?);
        self.validate(release, &change)
            .map_err(ConfigError::Rejected)?;
        self.commit(release, std::slice::from_ref(&change))?;
        self.node.inner.metrics.config_lines(1, 0);
        self.log(
            2,
            &format!(
                "config: set {}:{}:{} = {}",
                change.app, change.module, change.key, change.value
            ),
        );
        Ok(applied(0, &change))
    }

    /// `relup config get [app[:key]]`: the running release's keys with their values.
    pub fn get(
        &self,
        release: &Release,
        app: Option<&str>,
        key: Option<&str>,
    ) -> Result<Vec<ConfigEntry>, ConfigError> {
        if let Some(app) = app
            && release.application(app).is_none()
        {
            return Err(ConfigError::Unknown(format!(
                "unknown application {app:?}; release {} {} has {}",
                release.name,
                release.version,
                app_names(release)
            )));
        }
        let mut out = Vec::new();
        for a in &release.applications {
            if app.is_some_and(|x| x != a.name) {
                continue;
            }
            for k in &a.config {
                if key.is_some_and(|x| x != k.key) {
                    continue;
                }
                let current = self.node.env_with_origin(&a.name, &k.key);
                out.push(ConfigEntry {
                    app: a.name.clone(),
                    module: k.module.clone(),
                    key: k.key.clone(),
                    value: current.as_ref().map(|(v, _)| toml_value(v).to_string()),
                    origin: current.map(|(_, o)| {
                        match o {
                            EnvOrigin::Default => "default",
                            EnvOrigin::Operator => "operator",
                        }
                        .to_string()
                    }),
                    ty: serde_json::to_value(k.ty)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                });
            }
        }
        if let (Some(app), Some(key)) = (app, key)
            && out.is_empty()
        {
            let keys: Vec<String> = release
                .application(app)
                .map(|a| a.config.iter().map(|k| k.key.clone()).collect())
                .unwrap_or_default();
            return Err(ConfigError::Unknown(format!(
                "application {app} declares no key {key:?}; its keys: {}",
                list(&keys)
            )));
        }
        Ok(out)
    }

    /// Brings `config.toml` in line with `release` after an install (call it while holding
    /// [`ConfigStore::hold`]): the file lists the release's keys (see
    /// [`LiveConfig::render_for`]); keys the release no longer declares are dropped (the env
    /// already lost them), and an operator's value that the release no longer accepts (a
    /// narrowed range, a type change, a value no longer allowed) is reset to the release's
    /// default, in the file and in the env, and delivered through `config_change`. Without the
    /// reset such a value would keep running until the next restart and then change silently
    /// (the boot skips it). Returns one line per key dropped or reset, for the journal.
    pub fn prune(&self, release: &Release) -> Result<Vec<String>, ConfigError> {
        let path = self.live_file();
        let mut live = LiveConfig::load(&path).map_err(ConfigError::Live)?;
        let mut removed = Vec::new();
        let mut lines = Vec::new();
        let mut per_app: BTreeMap<String, ConfigChange> = BTreeMap::new();
        for (app, module, key, value) in live.entries() {
            let declared = release
                .application(&app)
                .and_then(|a| a.config.iter().find(|k| k.module == module && k.key == key));
            match declared {
                None => {
                    if live.remove(&app, &module, &key) {
                        removed.push(format!("{app}:{module}:{key}"));
                    }
                }
                Some(declared) => {
                    let Err(why) = declared.check(&value) else {
                        continue;
                    };
                    if !live.remove(&app, &module, &key) {
                        continue;
                    }
                    let default = config_value(&declared.default);
                    self.node.set_env_default(&app, &key, default.clone());
                    per_app
                        .entry(app.clone())
                        .or_default()
                        .changed
                        .push((key.clone(), default));
                    lines.push(format!(
                        "{app}:{module}:{key} = {value} is not accepted by release {} (expected {why}); reset to its default {}",
                        release.version, declared.default
                    ));
                }
            }
        }
        // Rewritten when anything changed, and when the release's keys differ from those the
        // file lists (an install of a release that declares other keys or defaults).
        let text = live.render_for(release);
        let listed = std::fs::read_to_string(&path).unwrap_or_default();
        if !removed.is_empty() || !lines.is_empty() || (text != listed && path.exists()) {
            write_atomic(&path, text.as_bytes()).map_err(|e| ConfigError::Io(e.to_string()))?;
        }
        if !removed.is_empty() {
            let line = format!(
                "release {} no longer declares {}; removed from config.toml",
                release.version,
                removed.join(", ")
            );
            self.log(2, &format!("config: {line}"));
            lines.insert(0, line);
        }
        for line in lines.iter().filter(|l| l.contains("reset to its default")) {
            self.log(1, &format!("config: {line}"));
        }
        for (app, change) in per_app {
            for pid in self.node.processes_of_app(&app) {
                self.node.config_change(pid, &change);
            }
        }
        Ok(lines)
    }
}

fn applied(line: usize, c: &ChangeLine) -> Applied {
    Applied {
        line,
        app: c.app.clone(),
        module: c.module.clone(),
        key: c.key.clone(),
        value: c.value.to_string(),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn app_names(release: &Release) -> String {
    let names: Vec<String> = release
        .applications
        .iter()
        .map(|a| a.name.clone())
        .collect();
    list(&names)
}

/// The declared key of a change, after the application, module, key, type, range and allowed
/// values checks.
pub(crate) fn check_declared<'r>(
    release: &'r Release,
    c: &ChangeLine,
) -> Result<&'r ConfigKey, String> {
    let app = release.application(&c.app).ok_or_else(|| {
        format!(
            "unknown application {:?}; release {} {} has {}",
            c.app,
            release.name,
            release.version,
            app_names(release)
        )
    })?;
    if !app.modules.iter().any(|m| m.name == c.module) {
        let modules: Vec<String> = app.modules.iter().map(|m| m.name.clone()).collect();
        return Err(format!(
            "application {} has no module {:?}; its modules: {}",
            c.app,
            c.module,
            list(&modules)
        ));
    }
    let key = app
        .config
        .iter()
        .find(|k| k.module == c.module && k.key == c.key)
        .ok_or_else(|| {
            let keys: Vec<String> = app
                .config
                .iter()
                .filter(|k| k.module == c.module)
                .map(|k| k.key.clone())
                .collect();
            format!(
                "module {} of application {} declares no key {:?}; its keys: {}",
                c.module,
                c.app,
                c.key,
                list(&keys)
            )
        })?;
    key.check(&c.value).map_err(|what| {
        format!(
            "{}:{}:{}: expected {what}, found {}",
            c.app, c.module, c.key, c.value
        )
    })?;
    Ok(key)
}

/// The module field may also name the supervisor child that runs the module (the tutorial's
/// `ticker:ticker:ticker:1500`: child `ticker` runs module `ticker_server`); it is replaced by
/// the module's name. A real module name always wins.
pub(crate) fn resolve_child_id(release: &Release, mut c: ChangeLine) -> ChangeLine {
    let Some(app) = release.application(&c.app) else {
        return c;
    };
    if app.modules.iter().any(|m| m.name == c.module) {
        return c;
    }
    fn find(sup: &relup_appup::Supervisor, id: &str) -> Option<String> {
        sup.children.iter().find_map(|child| match &child.kind {
            relup_appup::ChildKind::Worker if child.id == id => child.module.clone(),
            relup_appup::ChildKind::Supervisor(inner) => find(inner, id),
            _ => None,
        })
    }
    if let Some(module) = app.supervisor.as_ref().and_then(|s| find(s, &c.module)) {
        c.module = module;
    }
    c
}

/// How long a fully processed change file must stay unchanged before it is removed: a writer
/// that holds it open and pauses longer than this, then writes again, writes into a removed
/// file (a writer that reopens it by path, as `>>` does, is never affected).
pub const CHANGE_FILE_IDLE: std::time::Duration = std::time::Duration::from_millis(500);

/// The longest change line taken (bytes); a longer one is rejected with its start only, so a
/// runaway writer cannot fill the disk with copies of it in `.rej` and the log.
pub const MAX_CHANGE_LINE: usize = 64 * 1024;

/// Reads a change file: its inode and bytes, `None` when it does not exist. A directory or
/// anything else that is not a file at that name is an error that says so (it would
/// otherwise silence every later change).
fn read_change_file(path: &Path) -> Result<Option<(u64, Vec<u8>)>, ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(format!("cannot read {}", path.display()))(e)),
    };
    if !meta.is_file() {
        return Err(ConfigError::Io(format!(
            "{} is not a regular file; expected a file of change lines (remove it: changes written there are not seen)",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(io(format!("cannot read {}", path.display())))?;
    Ok(Some((meta.ino(), bytes)))
}

/// A change file's inode, length and time since its last change; `None` when absent.
fn change_file_state(
    path: &Path,
) -> Result<Option<(u64, usize, std::time::Duration)>, ConfigError> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {
            let idle = m
                .modified()
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            Ok(Some((m.ino(), m.len() as usize, idle)))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("cannot read {}", path.display()))(e)),
    }
}

/// `config.toml.new.offset`: `<inode> <bytes processed>` a line, followed by
/// `rej=<length of config.toml.rej>` while a batch from that offset is being processed (its
/// rejects may be appended past that length).
#[derive(Debug, Default, Clone)]
struct Offsets(Vec<(u64, usize, Option<u64>)>);

impl Offsets {
    /// Reads the file; an absent or unreadable one is empty (every file from its start).
    fn load(path: &Path) -> Offsets {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Offsets(
            text.lines()
                .filter_map(|l| {
                    let mut words = l.split_whitespace();
                    let ino = words.next()?.parse().ok()?;
                    let offset = words.next()?.parse().ok()?;
                    let pending = words
                        .next()
                        .and_then(|w| w.strip_prefix("rej="))
                        .and_then(|n| n.parse().ok());
                    Some((ino, offset, pending))
                })
                .collect(),
        )
    }

    fn get(&self, ino: u64) -> Option<usize> {
        self.0.iter().find(|(i, ..)| *i == ino).map(|(_, o, _)| *o)
    }

    /// The `.rej` length recorded before a batch of `ino` that did not finish.
    fn pending(&self, ino: u64) -> Option<u64> {
        self.0
            .iter()
            .find(|(i, ..)| *i == ino)
            .and_then(|(.., p)| *p)
    }

    fn with(mut self, ino: u64, offset: usize, pending: Option<u64>) -> Offsets {
        self.0.retain(|(i, ..)| *i != ino);
        self.0.push((ino, offset, pending));
        // At most the work file and config.toml.new are live; older entries are stale.
        while self.0.len() > 2 {
            self.0.remove(0);
        }
        self
    }

    fn without(mut self, ino: u64) -> Offsets {
        self.0.retain(|(i, ..)| *i != ino);
        self
    }

    fn save(&self, path: &Path) -> std::io::Result<()> {
        let text: String = self
            .0
            .iter()
            .map(|(i, o, p)| match p {
                Some(rej) => format!("{i} {o} rej={rej}\n"),
                None => format!("{i} {o}\n"),
            })
            .collect();
        crate::release::write_atomic(path, text.as_bytes())
    }
}
