//! `release.toml`: a release manifest (name, version, applications, modules, supervision
//! trees, declared config keys), parsed from text and checked for internal consistency.

use crate::error::{Error, Errors};
use crate::span::{Location, Pos, Source};
use semver::Version;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use toml::Spanned;

/// A parsed `release.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// The file name given to [`Release::parse`], used in error messages.
    pub file: String,
    /// The release (product) name, e.g. `ticker`.
    pub name: String,
    /// The release version.
    pub version: Version,
    /// Probation settings used by the runtime after an install, if given.
    pub probation: Option<Probation>,
    /// Snapshot retention used by the runtime, if given.
    pub snapshots: Option<Snapshots>,
    /// The node's metrics endpoint, if given.
    #[serde(default)]
    pub metrics: Option<Metrics>,
    /// The applications of the release, in file order.
    pub applications: Vec<Application>,
}

/// `[probation]`: how long and how many crashes the runtime tolerates before it rolls back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probation {
    /// Window in seconds.
    pub seconds: Option<u64>,
    /// Crashes tolerated in the window.
    pub max_crashes: Option<u32>,
    /// How often every process's health check runs during the window, in milliseconds.
    pub health_interval_ms: Option<u64>,
}

/// `[snapshots]`: how many snapshots of process states (taken before each install) the
/// release root keeps; older ones are pruned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshots {
    /// Snapshots kept.
    pub keep: Option<usize>,
}

/// `[metrics]`: where the node serves its Prometheus metrics (read when the node starts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// A loopback `IP:PORT` such as `127.0.0.1:9568`; `None` serves none.
    pub listen: Option<std::net::SocketAddr>,
}

/// One application of a release: its modules, supervision tree and config keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    /// Application name.
    pub name: String,
    /// Application version (the version its appup.toml is for).
    pub version: Version,
    /// Modules (cdylibs) of the application.
    pub modules: Vec<Module>,
    /// The application's root supervisor, if it runs processes.
    pub supervisor: Option<Supervisor>,
    /// Declared config keys.
    pub config: Vec<ConfigKey>,
    /// Where the application table starts.
    #[serde(skip)]
    pub pos: Pos,
}

/// One module: a cdylib file with its checksum and version, or a native server type linked
/// into the node executable (`native = true`, no file and no sha256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    /// Module name (unique within the release).
    pub name: String,
    /// Library file, relative to the release directory; empty for a native module.
    pub file: String,
    /// sha256 of the library file, 64 lowercase hex digits; empty for a native module, and
    /// for a cdylib of a source manifest read with [`Release::parse_source`] that gives none.
    pub sha256: String,
    /// A server type statically linked into the node executable and registered by it (see
    /// `relup_runtime::service::Natives`): nothing is loaded from a file, and its code changes
    /// only with a new executable (a node restart), never in a hot upgrade.
    #[serde(default)]
    pub native: bool,
    /// Module version; the application version when not given.
    pub version: Version,
    /// Where the module table starts.
    #[serde(skip)]
    pub pos: Pos,
}

/// Supervisor restart strategy (as OTP's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Restart only the child that died.
    OneForOne,
    /// Restart every child when one dies.
    OneForAll,
    /// Restart the child that died and every child started after it.
    RestForOne,
    /// One child spec, many dynamically started instances.
    SimpleOneForOne,
}

/// A supervisor's flags and children.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Supervisor {
    /// Restart strategy.
    pub strategy: Strategy,
    /// Maximum restarts within `period_secs` before the supervisor gives up.
    pub intensity: u32,
    /// The window for `intensity`, in seconds.
    pub period_secs: u32,
    /// Children in start order.
    pub children: Vec<Child>,
}

/// When a child is restarted (as OTP's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// Always restarted.
    Permanent,
    /// Restarted only after an abnormal exit.
    Transient,
    /// Never restarted.
    Temporary,
}

/// How long a child gets to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shutdown {
    /// Killed at once.
    BrutalKill,
    /// Waits as long as it takes (usual for supervisors).
    Infinity,
    /// Milliseconds before it is killed.
    Millis(u64),
}

/// A child's kind: a worker, or a nested supervisor with its own flags and children.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildKind {
    /// A worker process running `module`.
    Worker,
    /// A nested supervisor.
    Supervisor(Supervisor),
}

/// One child spec of a supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Child {
    /// Child id, unique within its supervisor.
    pub id: String,
    /// The module the child's process runs (for a nested supervisor: its callback module, if any).
    pub module: Option<String>,
    /// Arguments given to the module's init, any TOML value.
    pub args: toml::Value,
    /// Restart type.
    pub restart: Restart,
    /// Shutdown.
    pub shutdown: Shutdown,
    /// Worker or nested supervisor.
    pub kind: ChildKind,
    /// Where the child table starts.
    #[serde(skip)]
    pub pos: Pos,
}

/// The type of a config key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigType {
    /// A TOML integer.
    Integer,
    /// A TOML float (integers accepted).
    Float,
    /// A TOML boolean.
    Boolean,
    /// A TOML string.
    String,
    /// A non-negative integer of milliseconds.
    DurationMs,
    /// A TOML array.
    List,
    /// A TOML table.
    Table,
}

impl ConfigType {
    /// Whether `v` is a value of this type.
    pub fn accepts(self, v: &toml::Value) -> bool {
        match (self, v) {
            (ConfigType::Integer, toml::Value::Integer(_)) => true,
            (ConfigType::Float, toml::Value::Float(_) | toml::Value::Integer(_)) => true,
            (ConfigType::Boolean, toml::Value::Boolean(_)) => true,
            (ConfigType::String, toml::Value::String(_)) => true,
            (ConfigType::DurationMs, toml::Value::Integer(i)) => *i >= 0,
            (ConfigType::List, toml::Value::Array(_)) => true,
            (ConfigType::Table, toml::Value::Table(_)) => true,
            _ => false,
        }
    }
}

/// A declared config key of a module: its type, default, and optional limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigKey {
    /// The module the key belongs to.
    pub module: String,
    /// Key name.
    pub key: String,
    /// Value type.
    #[serde(rename = "type")]
    pub ty: ConfigType,
    /// Default value.
    pub default: toml::Value,
    /// Inclusive numeric range, for integer, float and duration_ms keys.
    pub range: Option<(f64, f64)>,
    /// The only values accepted, if given.
    pub allowed: Option<Vec<toml::Value>>,
    /// Where the key table starts.
    #[serde(skip)]
    pub pos: Pos,
}

impl ConfigKey {
    /// Checks a value against the key's type, range and allowed values; the error says what
    /// was expected.
    pub fn check(&self, v: &toml::Value) -> Result<(), String> {
        if !self.ty.accepts(v) {
            return Err(format!("a value of type {}", type_name(self.ty)));
        }
        if let Some((lo, hi)) = self.range {
            let x = match v {
                toml::Value::Integer(i) => *i as f64,
                toml::Value::Float(f) => *f,
                _ => lo,
            };
            if !(lo..=hi).contains(&x) {
                return Err(format!("a value in [{lo}, {hi}]"));
            }
        }
        if let Some(allowed) = &self.allowed
            && !allowed.contains(v)
        {
            let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            return Err(format!("one of {}", list.join(", ")));
        }
        Ok(())
    }
}

fn type_name(t: ConfigType) -> &'static str {
    match t {
        ConfigType::Integer => "integer",
        ConfigType::Float => "float",
        ConfigType::Boolean => "boolean",
        ConfigType::String => "string",
        ConfigType::DurationMs => "duration_ms",
        ConfigType::List => "list",
        ConfigType::Table => "table",
    }
}

impl Release {
    /// Parses and checks a `release.toml` text; `file` names it in errors.
    ///
    /// Checks: TOML syntax and shapes, semver versions, sha256 format, duplicate
    /// applications / modules (module names are unique across the release) / child ids,
    /// children and config keys naming known modules, config defaults matching their type.
    pub fn parse(text: &str, file: &str) -> Result<Release, Errors> {
        Release::parse_as(text, file, Digests::Required)
    }

    /// Parses a source `release.toml` (what `relup release` packs): as [`Release::parse`],
    /// except that a cdylib module may leave out `sha256` (the packer computes it; the field
    /// is then empty). A `sha256` that is given must still be 64 hex digits.
    pub fn parse_source(text: &str, file: &str) -> Result<Release, Errors> {
        Release::parse_as(text, file, Digests::Optional)
    }

    fn parse_as(text: &str, file: &str, digests: Digests) -> Result<Release, Errors> {
        let src = Source::new(text, file);
        let raw: RawRelease = toml::from_str(text).map_err(|e| syntax(&src, &e, RELEASE_SHAPE))?;
        let mut errs = Vec::new();
        let rel = convert_release(&src, raw, digests, &mut errs);
        if errs.is_empty()
            && let Some(rel) = rel
        {
            check_release(&src, &rel, &mut errs);
            if errs.is_empty() {
                return Ok(rel);
            }
        }
        Err(Errors(errs))
    }

    /// The application named `name`.
    pub fn application(&self, name: &str) -> Option<&Application> {
        self.applications.iter().find(|a| a.name == name)
    }

    /// The module named `name` and its application.
    pub fn module(&self, name: &str) -> Option<(&Application, &Module)> {
        self.applications
            .iter()
            .find_map(|a| a.modules.iter().find(|m| m.name == name).map(|m| (a, m)))
    }

    /// Every module run by some process (a child of a supervision tree) of the release.
    pub fn running_modules(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for a in &self.applications {
            if let Some(s) = &a.supervisor {
                collect_modules(s, &mut out);
            }
        }
        out
    }

    /// The supervisor at `path`: an application name for its root supervisor, then child ids of
    /// nested supervisors separated by `/` (e.g. `ticker/workers`).
    pub fn supervisor(&self, path: &str) -> Option<&Supervisor> {
        let mut parts = path.split('/');
        let app = self.application(parts.next()?)?;
        let mut sup = app.supervisor.as_ref()?;
        for id in parts {
            let child = sup.children.iter().find(|c| c.id == id)?;
            match &child.kind {
                ChildKind::Supervisor(s) => sup = s,
                ChildKind::Worker => return None,
            }
        }
        Some(sup)
    }

    /// Every supervisor path of the release (see [`Release::supervisor`]), in tree order.
    pub fn supervisor_paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in &self.applications {
            if let Some(s) = &a.supervisor {
                collect_paths(a.name.clone(), s, &mut out);
            }
        }
        out
    }

    /// A short label, `name version`.
    pub fn label(&self) -> String {
        format!("release {} {}", self.name, self.version)
    }
}

fn collect_modules<'a>(s: &'a Supervisor, out: &mut Vec<&'a str>) {
    for c in &s.children {
        if let Some(m) = &c.module
            && !out.contains(&m.as_str())
        {
            out.push(m);
        }
        if let ChildKind::Supervisor(n) = &c.kind {
            collect_modules(n, out);
        }
    }
}

fn collect_paths(path: String, s: &Supervisor, out: &mut Vec<String>) {
    out.push(path.clone());
    for c in &s.children {
        if let ChildKind::Supervisor(n) = &c.kind {
            collect_paths(format!("{path}/{}", c.id), n, out);
        }
    }
}

/// Whether a cdylib module must carry its `sha256` (a packed manifest) or may leave it out
/// (a source manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digests {
    Required,
    Optional,
}

const RELEASE_SHAPE: &str = "a release.toml: name, version, [[applications]] with name, version, [[applications.modules]], optional [applications.supervisor] and [[applications.config]]";

pub(crate) fn syntax(src: &Source<'_>, e: &toml::de::Error, expected: &str) -> Errors {
    let span = e.span().unwrap_or(0..0);
    Errors(vec![Error::Syntax {
        at: src.loc(&span),
        message: e.message().trim().replace('\n', " "),
        expected: expected.to_string(),
    }])
}

pub(crate) fn parse_version(
    src: &Source<'_>,
    v: &Spanned<String>,
    what: &str,
    errs: &mut Vec<Error>,
) -> Option<Version> {
    match Version::parse(v.get_ref().trim()) {
        Ok(ver) => Some(ver),
        Err(e) => {
            errs.push(Error::InvalidValue {
                at: src.loc(&v.span()),
                what: what.to_string(),
                found: v.get_ref().clone(),
                expected: format!("a semver version like 1.2.3 ({e})"),
            });
            None
        }
    }
}

#[derive(Deserialize)]
struct RawRelease {
    name: Spanned<String>,
    version: Spanned<String>,
    #[serde(default)]
    probation: Option<RawProbation>,
    #[serde(default)]
    snapshots: Option<RawSnapshots>,
    #[serde(default)]
    metrics: Option<RawMetrics>,
    #[serde(default)]
    applications: Vec<Spanned<RawApplication>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbation {
    seconds: Option<u64>,
    max_crashes: Option<u32>,
    health_interval_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnapshots {
    keep: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    name: Spanned<String>,
    version: Spanned<String>,
    #[serde(default)]
    modules: Vec<Spanned<RawModule>>,
    #[serde(default)]
    supervisor: Option<Spanned<RawSupervisor>>,
    #[serde(default)]
    config: Vec<Spanned<RawConfig>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    name: Spanned<String>,
    #[serde(default)]
    file: Option<Spanned<String>>,
    #[serde(default)]
    sha256: Option<Spanned<String>>,
    #[serde(default)]
    native: bool,
    #[serde(default)]
    version: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSupervisor {
    strategy: Spanned<String>,
    #[serde(default = "default_intensity")]
    intensity: u32,
    #[serde(default = "default_period")]
    period_secs: u32,
    #[serde(default)]
    children: Vec<Spanned<RawChild>>,
}

fn default_intensity() -> u32 {
    1
}
fn default_period() -> u32 {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChild {
    id: Spanned<String>,
    #[serde(default)]
    module: Option<Spanned<String>>,
    #[serde(default)]
    args: Option<toml::Value>,
    #[serde(default)]
    restart: Option<Spanned<String>>,
    #[serde(default)]
    shutdown_ms: Option<Spanned<toml::Value>>,
    #[serde(default)]
    kind: Option<Spanned<String>>,
    #[serde(default)]
    strategy: Option<Spanned<String>>,
    #[serde(default)]
    intensity: Option<u32>,
    #[serde(default)]
    period_secs: Option<u32>,
    #[serde(default)]
    children: Option<Vec<Spanned<RawChild>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    module: Spanned<String>,
    key: Spanned<String>,
    #[serde(rename = "type")]
    ty: Spanned<String>,
    default: Spanned<toml::Value>,
    #[serde(default)]
    range: Option<Spanned<Vec<toml::Value>>>,
    #[serde(default)]
    allowed: Option<Vec<toml::Value>>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

fn invalid(src: &Source<'_>, s: &Spanned<String>, what: &str, expected: &str) -> Error {
    Error::InvalidValue {
        at: src.loc(&s.span()),
        what: what.to_string(),
        found: s.get_ref().clone(),
        expected: expected.to_string(),
    }
}

/// `[metrics] listen`: a loopback `IP:PORT` (the endpoint serves loopback only).
fn parse_listen(
    src: &Source<'_>,
    listen: &Spanned<String>,
    errs: &mut Vec<Error>,
) -> Option<std::net::SocketAddr> {
    let expected = "a loopback IP:PORT such as 127.0.0.1:9568 or [::1]:9568";
    match listen.get_ref().trim().parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_loopback() => Some(addr),
        _ => {
            errs.push(invalid(src, listen, "[metrics] listen", expected));
            None
        }
    }
}

fn convert_release(
    src: &Source<'_>,
    raw: RawRelease,
    digests: Digests,
    errs: &mut Vec<Error>,
) -> Option<Release> {
    let version = parse_version(src, &raw.version, "release version", errs);
    if raw.name.get_ref().trim().is_empty() {
        errs.push(invalid(src, &raw.name, "release name", "a non-empty name"));
    }
    let metrics = raw.metrics.map(|m| Metrics {
        listen: m.listen.and_then(|l| parse_listen(src, &l, errs)),
    });
    let mut apps = Vec::new();
    for a in raw.applications {
        let pos = src.pos(&a.span());
        let a = a.into_inner();
        if let Some(app) = convert_app(src, a, pos, digests, errs) {
            apps.push(app);
        }
    }
    Some(Release {
        file: src.file.to_string(),
        name: raw.name.into_inner(),
        version: version?,
        probation: raw.probation.map(|p| Probation {
            seconds: p.seconds,
            max_crashes: p.max_crashes,
            health_interval_ms: p.health_interval_ms,
        }),
        snapshots: raw.snapshots.map(|s| Snapshots { keep: s.keep }),
        metrics,
        applications: apps,
    })
}

fn convert_app(
    src: &Source<'_>,
    a: RawApplication,
    pos: Pos,
    digests: Digests,
    errs: &mut Vec<Error>,
) -> Option<Application> {
    let version = parse_version(src, &a.version, "application version", errs);
    let mut modules = Vec::new();
    for m in a.modules {
        let mpos = src.pos(&m.span());
        let m = m.into_inner();
        let mver = match &m.version {
            Some(v) => parse_version(src, v, "module version", errs),
            None => version.clone(),
        };
        let (file, sha256) = module_source(src, &m, mpos, digests, errs);
        if let Some(mver) = mver {
            modules.push(Module {
                name: m.name.into_inner(),
                file,
                sha256,
                native: m.native,
                version: mver,
                pos: mpos,
            });
        }
    }
    let supervisor = a
        .supervisor
        .and_then(|s| convert_sup(src, s.into_inner(), errs));
    let mut config = Vec::new();
    for c in a.config {
        let cpos = src.pos(&c.span());
        let c = c.into_inner();
        if let Some(k) = convert_config(src, c, cpos, errs) {
            config.push(k);
        }
    }
    Some(Application {
        name: a.name.into_inner(),
        version: version?,
        modules,
        supervisor,
        config,
        pos,
    })
}

/// A module's `file` and `sha256` (lowercase): both required for a cdylib of a packed
/// manifest, `sha256` optional in a source one, neither allowed for a native module.
fn module_source(
    src: &Source<'_>,
    m: &RawModule,
    pos: Pos,
    digests: Digests,
    errs: &mut Vec<Error>,
) -> (String, String) {
    let name = m.name.get_ref();
    if m.native {
        if m.file.is_some() || m.sha256.is_some() {
            errs.push(Error::InvalidValue {
                at: Location::new(src.file, pos),
                what: format!("native module `{name}`"),
                found: "with file or sha256".into(),
                expected: "neither: a native module is linked into the node executable".into(),
            });
        }
        return (String::new(), String::new());
    }
    let Some(file) = &m.file else {
        errs.push(Error::InvalidValue {
            at: Location::new(src.file, pos),
            what: format!("module `{name}`"),
            found: "without file".into(),
            expected: "`file = \"lib/<library>.so\"`, or `native = true` for a server type linked into the node executable".into(),
        });
        return (String::new(), String::new());
    };
    let sha256 = match &m.sha256 {
        Some(sha) => {
            let text = sha.get_ref();
            if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                errs.push(invalid(src, sha, "sha256", "64 hex digits"));
            }
            text.to_ascii_lowercase()
        }
        None if digests == Digests::Optional => String::new(),
        None => {
            errs.push(Error::InvalidValue {
                at: Location::new(src.file, pos),
                what: format!("module `{name}`"),
                found: "without sha256".into(),
                expected: "the sha256 of its library (64 hex digits), as `relup release` writes it into a packed release.toml".into(),
            });
            String::new()
        }
    };
    (file.get_ref().clone(), sha256)
}

fn strategy(src: &Source<'_>, s: &Spanned<String>, errs: &mut Vec<Error>) -> Option<Strategy> {
    let st = match s.get_ref().as_str() {
        "one_for_one" => Strategy::OneForOne,
        "one_for_all" => Strategy::OneForAll,
        "rest_for_one" => Strategy::RestForOne,
        "simple_one_for_one" => Strategy::SimpleOneForOne,
        _ => {
            errs.push(invalid(
                src,
                s,
                "strategy",
                "one_for_one, one_for_all, rest_for_one or simple_one_for_one",
            ));
            return None;
        }
    };
    Some(st)
}

fn convert_sup(src: &Source<'_>, s: RawSupervisor, errs: &mut Vec<Error>) -> Option<Supervisor> {
    let st = strategy(src, &s.strategy, errs);
    let children = convert_children(src, s.children, errs);
    Some(Supervisor {
        strategy: st?,
        intensity: s.intensity,
        period_secs: s.period_secs,
        children,
    })
}

fn convert_children(
    src: &Source<'_>,
    raw: Vec<Spanned<RawChild>>,
    errs: &mut Vec<Error>,
) -> Vec<Child> {
    let mut out = Vec::new();
    for c in raw {
        let pos = src.pos(&c.span());
        if let Some(child) = convert_child(src, c.into_inner(), pos, errs) {
            out.push(child);
        }
    }
    out
}

fn convert_child(src: &Source<'_>, c: RawChild, pos: Pos, errs: &mut Vec<Error>) -> Option<Child> {
    let is_sup = match &c.kind {
        None => false,
        Some(k) => match k.get_ref().as_str() {
            "worker" => false,
            "supervisor" => true,
            _ => {
                errs.push(invalid(src, k, "child kind", "worker or supervisor"));
                return None;
            }
        },
    };
    let restart = match &c.restart {
        None => Some(Restart::Permanent),
        Some(r) => match r.get_ref().as_str() {
            "permanent" => Some(Restart::Permanent),
            "transient" => Some(Restart::Transient),
            "temporary" => Some(Restart::Temporary),
            _ => {
                errs.push(invalid(
                    src,
                    r,
                    "restart",
                    "permanent, transient or temporary",
                ));
                None
            }
        },
    };
    let shutdown = match &c.shutdown_ms {
        None if is_sup => Some(Shutdown::Infinity),
        None => Some(Shutdown::Millis(5000)),
        Some(v) => match v.get_ref() {
            toml::Value::Integer(i) if *i >= 0 => Some(Shutdown::Millis(*i as u64)),
            toml::Value::String(s) if s == "brutal_kill" => Some(Shutdown::BrutalKill),
            toml::Value::String(s) if s == "infinity" => Some(Shutdown::Infinity),
            other => {
                errs.push(Error::InvalidValue {
                    at: src.loc(&v.span()),
                    what: "shutdown_ms".into(),
                    found: other.to_string(),
                    expected:
                        "milliseconds (a non-negative integer), \"brutal_kill\" or \"infinity\""
                            .into(),
                });
                None
            }
        },
    };
    let kind = if is_sup {
        let st = match &c.strategy {
            Some(s) => strategy(src, s, errs),
            None => {
                errs.push(Error::InvalidValue {
                    at: Location::new(src.file, pos),
                    what: "nested supervisor".into(),
                    found: c.id.get_ref().clone(),
                    expected: "a `strategy` for a child of kind = \"supervisor\"".into(),
                });
                None
            }
        };
        let children = convert_children(src, c.children.unwrap_or_default(), errs);
        ChildKind::Supervisor(Supervisor {
            strategy: st?,
            intensity: c.intensity.unwrap_or_else(default_intensity),
            period_secs: c.period_secs.unwrap_or_else(default_period),
            children,
        })
    } else {
        if c.strategy.is_some() || c.children.is_some() {
            errs.push(Error::InvalidValue {
                at: Location::new(src.file, pos),
                what: "worker child".into(),
                found: c.id.get_ref().clone(),
                expected: "kind = \"supervisor\" on a child with strategy or children".into(),
            });
            return None;
        }
        if c.module.is_none() {
            errs.push(Error::InvalidValue {
                at: Location::new(src.file, pos),
                what: "worker child".into(),
                found: c.id.get_ref().clone(),
                expected: "a `module` for a worker child".into(),
            });
            return None;
        }
        ChildKind::Worker
    };
    Some(Child {
        id: c.id.into_inner(),
        module: c.module.map(|m| m.into_inner()),
        args: c
            .args
            .unwrap_or_else(|| toml::Value::Table(toml::Table::new())),
        restart: restart?,
        shutdown: shutdown?,
        kind,
        pos,
    })
}

fn convert_config(
    src: &Source<'_>,
    c: RawConfig,
    pos: Pos,
    errs: &mut Vec<Error>,
) -> Option<ConfigKey> {
    let ty = match c.ty.get_ref().as_str() {
        "integer" => ConfigType::Integer,
        "float" => ConfigType::Float,
        "boolean" => ConfigType::Boolean,
        "string" => ConfigType::String,
        "duration_ms" => ConfigType::DurationMs,
        "list" => ConfigType::List,
        "table" => ConfigType::Table,
        _ => {
            errs.push(invalid(
                src,
                &c.ty,
                "config type",
                "integer, float, boolean, string, duration_ms, list or table",
            ));
            return None;
        }
    };
    let range = match &c.range {
        None => None,
        Some(r) => {
            let nums: Vec<f64> = r
                .get_ref()
                .iter()
                .filter_map(|v| match v {
                    toml::Value::Integer(i) => Some(*i as f64),
                    toml::Value::Float(f) if f.is_finite() => Some(*f),
                    _ => None,
                })
                .collect();
            let numeric = matches!(
                ty,
                ConfigType::Integer | ConfigType::Float | ConfigType::DurationMs
            );
            match nums.as_slice() {
                [lo, hi] if r.get_ref().len() == 2 && lo <= hi && numeric => Some((*lo, *hi)),
                _ => {
                    errs.push(Error::InvalidValue {
                        at: src.loc(&r.span()),
                        what: "range".into(),
                        found: toml::Value::Array(r.get_ref().clone()).to_string(),
                        expected:
                            "[min, max] with min <= max, on an integer, float or duration_ms key"
                                .into(),
                    });
                    return None;
                }
            }
        }
    };
    let key = ConfigKey {
        module: c.module.into_inner(),
        key: c.key.into_inner(),
        ty,
        default: c.default.get_ref().clone(),
        range,
        allowed: c.allowed,
        pos,
    };
    if let Err(expected) = key.check(c.default.get_ref()) {
        errs.push(Error::InvalidValue {
            at: src.loc(&c.default.span()),
            what: format!("default of config key `{}`", key.key),
            found: c.default.get_ref().to_string(),
            expected,
        });
    }
    Some(key)
}

fn check_release(src: &Source<'_>, rel: &Release, errs: &mut Vec<Error>) {
    let at = |p: Pos| Location::new(src.file, p);
    let mut apps: BTreeMap<&str, Pos> = BTreeMap::new();
    let mut mods: BTreeMap<&str, Pos> = BTreeMap::new();
    for a in &rel.applications {
        if let Some(first) = apps.insert(&a.name, a.pos) {
            errs.push(Error::Duplicate {
                at: at(a.pos),
                what: format!("application `{}`", a.name),
                first: at(first),
            });
        }
        for m in &a.modules {
            if let Some(first) = mods.insert(&m.name, m.pos) {
                errs.push(Error::Duplicate {
                    at: at(m.pos),
                    what: format!("module `{}`", m.name),
                    first: at(first),
                });
            }
        }
    }
    for a in &rel.applications {
        let known = a
            .modules
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if let Some(s) = &a.supervisor {
            check_sup(src, rel, a, s, &known, errs);
        }
        let mut keys: BTreeMap<(&str, &str), Pos> = BTreeMap::new();
        for k in &a.config {
            if !a.modules.iter().any(|m| m.name == k.module) {
                errs.push(Error::UnknownModule {
                    at: at(k.pos),
                    module: k.module.clone(),
                    scope: format!("application {}", a.name),
                    known: known.clone(),
                });
            }
            if let Some(first) = keys.insert((&k.module, &k.key), k.pos) {
                errs.push(Error::Duplicate {
                    at: at(k.pos),
                    what: format!("config key `{}:{}`", k.module, k.key),
                    first: at(first),
                });
            }
        }
    }
}

fn check_sup(
    src: &Source<'_>,
    rel: &Release,
    app: &Application,
    s: &Supervisor,
    known: &str,
    errs: &mut Vec<Error>,
) {
    let at = |p: Pos| Location::new(src.file, p);
    let mut ids: BTreeMap<&str, Pos> = BTreeMap::new();
    for c in &s.children {
        if let Some(first) = ids.insert(&c.id, c.pos) {
            errs.push(Error::Duplicate {
                at: at(c.pos),
                what: format!("child id `{}`", c.id),
                first: at(first),
            });
        }
        if c.id.contains('/') {
            errs.push(Error::InvalidValue {
                at: at(c.pos),
                what: "child id".into(),
                found: c.id.clone(),
                expected: "an id without `/`".into(),
            });
        }
        if let Some(m) = &c.module
            && rel.module(m).is_none()
        {
            errs.push(Error::UnknownModule {
                at: at(c.pos),
                module: m.clone(),
                scope: format!("application {}", app.name),
                known: known.to_string(),
            });
        }
        if let ChildKind::Supervisor(n) = &c.kind {
            check_sup(src, rel, app, n, known, errs);
        }
    }
    if s.strategy == Strategy::SimpleOneForOne && s.children.len() != 1 {
        let p = s.children.get(1).map(|c| c.pos).unwrap_or(app.pos);
        errs.push(Error::InvalidValue {
            at: at(p),
            what: "simple_one_for_one supervisor".into(),
            found: format!("{} children", s.children.len()),
            expected: "exactly one child spec".into(),
        });
    }
}
