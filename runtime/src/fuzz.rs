//! Fuzzing entry points for the runtime's hostile inputs, shared by the cargo-fuzz targets in
//! `fuzz/` (nightly) and by the corpus replay tests in `runtime/tests/fuzz_corpus.rs` (stable).
//!
//! Each function takes arbitrary bytes and must never panic, abort or write outside its
//! sandbox; each also checks a property of what it accepted (a round trip, a containment),
//! so a silent misbehaviour is a crash too. Each returns whether the input was accepted (so
//! the replay tests can check that a corpus reaches past the first refusal). They are not
//! meant for anything but fuzzing.

use crate::code_server::{CodeServer, LoadedModule};
use crate::config::{LiveConfig, parse_batch, toml_value};
use crate::install::config_value;
use crate::release::{Limits, ReleaseRoot, unpack_with};
use relup_appup::Release;
use relup_module::{ConfigChange, ConfigValue, Context, Direction, ExitReason, OldState, Server};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// A release declaring a config key of every type (with a range and allowed values), against
/// which fuzzed change lines are validated.
const RELEASE: &str = r#"name = "fuzz"
version = "1.0.0"

[[applications]]
name = "app"
version = "1.0.0"

[[applications.modules]]
name = "m"
file = "lib/libm.so"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[applications.supervisor]
strategy = "one_for_one"

[[applications.supervisor.children]]
id = "child"
module = "m"

[[applications.config]]
module = "m"
key = "i"
type = "integer"
default = 1
range = [0, 100]

[[applications.config]]
module = "m"
key = "f"
type = "float"
default = 1.5

[[applications.config]]
module = "m"
key = "b"
type = "boolean"
default = true

[[applications.config]]
module = "m"
key = "s"
type = "string"
default = "a"
allowed = ["a", "b"]

[[applications.config]]
module = "m"
key = "d"
type = "duration_ms"
default = 10

[[applications.config]]
module = "m"
key = "l"
type = "list"
default = []

[[applications.config]]
module = "m"
key = "t"
type = "table"
default = {}
"#;

fn release() -> &'static Release {
    static RELEASE_CELL: OnceLock<Release> = OnceLock::new();
    RELEASE_CELL.get_or_init(|| match Release::parse(RELEASE, "fuzz/release.toml") {
        Ok(r) => r,
        Err(e) => panic!("the fuzz release does not parse: {e:?}"),
    })
}

/// Renders `live`, parses it back and renders again: the file relup writes must read back
/// as what it wrote (compared as text, so NaN values compare equal).
fn assert_renders_back(live: &LiveConfig) {
    let text = live.render();
    match LiveConfig::parse(&text, "fuzz/config.toml") {
        Ok(again) => assert_eq!(
            again.render(),
            text,
            "config.toml does not read back as written"
        ),
        Err(e) => panic!("relup wrote a config.toml it cannot read: {e}\n{text}"),
    }
}

/// Bytes as a `config.toml.new` batch (every line through parsing, child-id resolution and
/// the declared-key checks, every accepted value persisted and read back and through the
/// module codec) and as a `config.toml`. Accepted: some line passed the declared-key checks.
pub fn config_line(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let mut accepted = false;
    let release = release();
    let batch = parse_batch(text);
    let mut live = LiveConfig::default();
    for (_, _, parsed) in batch.lines {
        let Ok(change) = parsed else { continue };
        let change = crate::config::resolve_child_id(release, change);
        accepted |= crate::config::check_declared(release, &change).is_ok();
        let value = config_value(&change.value);
        let _ = toml_value(&value);
        // What a module's validator receives must decode as it was sent.
        if let Ok(bytes) = relup_module::codec::encode(&(change.key.clone(), value.clone())) {
            match relup_module::codec::decode::<(String, ConfigValue)>(&bytes) {
                Ok((key, back)) => {
                    assert_eq!(key, change.key);
                    assert!(
                        back == value || format!("{back:?}") == format!("{value:?}"),
                        "codec round trip changed {value:?} into {back:?}"
                    );
                }
                Err(e) => panic!("a config value does not decode back: {e}"),
            }
        }
        live.set(&change.app, &change.module, &change.key, change.value);
    }
    assert_renders_back(&live);
    if let Ok(parsed) = LiveConfig::parse(text, "fuzz/config.toml") {
        let _ = parsed.entries();
        assert_renders_back(&parsed);
    }
    accepted
}

/// Bytes as what a client writes on the control socket: the server's own request reader, and
/// a request it accepts must survive a JSON round trip unchanged.
pub fn control_request(data: &[u8]) -> bool {
    match crate::control::read_request(data) {
        Ok(request) => {
            let text = match serde_json::to_string(&request) {
                Ok(t) => t,
                Err(e) => panic!("an accepted request does not encode: {e}"),
            };
            match serde_json::from_str::<crate::control::Request>(&text) {
                Ok(back) => assert_eq!(back, request, "request round trip"),
                Err(e) => panic!("an accepted request does not decode back: {e}: {text}"),
            }
            true
        }
        Err(message) => {
            assert!(!message.is_empty(), "an error must say why");
            false
        }
    }
}

/// The sandbox of [`tarball_unpack`]: a directory holding only `in.tar.gz` and an empty
/// release root `root/`.
struct Sandbox {
    dir: PathBuf,
    root: ReleaseRoot,
}

fn sandbox() -> &'static Mutex<Sandbox> {
    static SANDBOX: OnceLock<Mutex<Sandbox>> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        // tmpfs when there is one: unpacking fsyncs every file.
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        remove_stale(&base, "relup-fuzz-unpack-");
        let dir = base.join(format!("relup-fuzz-unpack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = match ReleaseRoot::create(dir.join("root")) {
            Ok(root) => root,
            Err(e) => panic!("cannot create the fuzz sandbox {}: {e}", dir.display()),
        };
        Mutex::new(Sandbox { dir, root })
    })
}

/// Removes the `<prefix><pid>` directories in `base` of processes that are gone (earlier
/// fuzzing or replay runs cannot clean up at exit).
fn remove_stale(base: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Every path under `dir` (relative, sorted).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if let Ok(rel) = path.strip_prefix(dir) {
                out.push(rel.to_string_lossy().into_owned());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Recomputes the header checksum of every tar header it can find walking `tar` (header,
/// data rounded to 512 bytes, next header), so the fuzzer's mutations reach the unpacker's
/// checks instead of stopping at the checksum.
fn fix_tar_checksums(tar: &mut [u8]) {
    let mut at = 0usize;
    while at + 512 <= tar.len() {
        let header = &mut tar[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        let field = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(field.as_bytes());
        let size_field = String::from_utf8_lossy(&header[124..136]).into_owned();
        let size = u64::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
            .unwrap_or(0);
        let blocks = size.div_ceil(512).saturating_add(1);
        let Some(next) = usize::try_from(blocks)
            .ok()
            .and_then(|b| b.checked_mul(512))
            .and_then(|b| at.checked_add(b))
        else {
            break;
        };
        at = next;
    }
}

/// Wraps tar bytes in a gzip stream (stored, no compression: cheap).
fn gzip(tar: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    let _ = gz.write_all(tar);
    gz.finish().unwrap_or_default()
}

/// Bytes as a release tarball unpacked into an empty root: the first byte chooses whether
/// the rest is a tar stream (checksums fixed up, gzipped here) or the raw `.tar.gz` file.
/// Whatever happens, nothing may be written outside `releases/`, no temporary directory
/// may be left, and an unpacked release must be inside `releases/<vsn>/`.
pub fn tarball_unpack(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let bytes = if mode & 1 == 0 {
        let mut tar = rest.to_vec();
        fix_tar_checksums(&mut tar);
        gzip(&tar)
    } else {
        rest.to_vec()
    };
    let sandbox = match sandbox().lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    let tarball = sandbox.dir.join("in.tar.gz");
    if let Err(e) = std::fs::write(&tarball, &bytes) {
        panic!("cannot write {}: {e}", tarball.display());
    }
    let limits = Limits {
        max_total: 1 << 20,
        max_entry: 256 << 10,
        max_entries: 64,
    };
    let root = &sandbox.root;
    let before = tree(&sandbox.dir);
    let accepted = match unpack_with(root, &tarball, limits) {
        Ok(unpacked) => {
            let releases = root.releases_dir();
            assert_eq!(
                unpacked.dir,
                root.release_dir(&unpacked.release.version),
                "unpacked outside releases/<vsn>/"
            );
            assert!(unpacked.dir.starts_with(&releases));
            for path in tree(&sandbox.dir) {
                // The lock every writer of RELEASES takes (created at the first unpack).
                let inside = path.starts_with("root/releases/") || path == "root/run/releases.lock";
                assert!(
                    before.contains(&path) || inside,
                    "unpack wrote {path} outside releases/"
                );
            }
            let _ = std::fs::remove_dir_all(&unpacked.dir);
            let _ = std::fs::remove_file(root.releases_file());
            true
        }
        Err(error) => {
            assert!(!error.to_string().is_empty());
            let after = tree(&sandbox.dir);
            assert_eq!(
                after, before,
                "a refused tarball ({error}) changed the sandbox"
            );
            false
        }
    };
    let left: Vec<String> = tree(&root.releases_dir());
    assert!(left.is_empty(), "left behind in releases/: {left:?}");
    accepted
}

/// A module state of the shapes real states have (maps, lists, options, nested enums, a
/// field added later), migrated through the real module entry points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FuzzState {
    count: i64,
    name: String,
    seen: BTreeMap<u64, u64>,
    notes: Vec<ConfigValue>,
    last: Option<ExitReason>,
    change: ConfigChange,
    #[serde(default)]
    added_later: Option<Box<FuzzState>>,
}

impl Server for FuzzState {
    type Args = ();
    type Call = ConfigValue;
    type Reply = ConfigValue;
    type Cast = ();
    type Info = ();

    fn init(_args: (), _ctx: &mut Context<'_>) -> Result<Self, String> {
        Err("not started by the fuzzer".into())
    }

    fn handle_call(&mut self, request: ConfigValue, _ctx: &mut Context<'_>) -> ConfigValue {
        request
    }

    fn code_change(old: OldState<'_>) -> Result<Self, String> {
        let _ = old.extra::<Option<String>>();
        old.decode::<Self>().map_err(|e| e.to_string())
    }
}

fn fuzz_module() -> &'static Arc<LoadedModule> {
    static MODULE: OnceLock<Arc<LoadedModule>> = OnceLock::new();
    MODULE.get_or_init(|| {
        remove_stale(&std::env::temp_dir(), "relup-fuzz-code-");
        let dir = std::env::temp_dir().join(format!("relup-fuzz-code-{}", std::process::id()));
        let registered = CodeServer::new(dir)
            .map_err(|e| e.to_string())
            .and_then(|code| {
                code.register_native::<FuzzState>("fuzz_state", "1.0.0")
                    .map_err(|e| e.to_string())
            });
        match registered {
            Ok(module) => module,
            Err(e) => panic!("cannot register the fuzz module: {e}"),
        }
    })
}

/// A job for the decode thread, and where its outcome goes.
type Job = (Vec<u8>, fn(&[u8]) -> bool);
type Outcome = std::thread::Result<bool>;

/// Runs `body(data)` on a thread with the default 2 MiB stack of the node's scheduler
/// threads (a decoder that recurses too deep for them must be caught here, not on the
/// fuzzer's main thread with its larger stack). One such thread serves every call.
fn on_node_stack(data: &[u8], body: fn(&[u8]) -> bool) -> bool {
    type Channels = (
        crossbeam_channel::Sender<Job>,
        crossbeam_channel::Receiver<Outcome>,
    );
    static WORKER: OnceLock<Mutex<Channels>> = OnceLock::new();
    let worker = WORKER.get_or_init(|| {
        let (job_tx, job_rx) = crossbeam_channel::unbounded::<Job>();
        let (out_tx, out_rx) = crossbeam_channel::unbounded::<Outcome>();
        let spawned = std::thread::Builder::new()
            .name("relup-fuzz-decode".into())
            .stack_size(2 << 20)
            .spawn(move || {
                for (data, body) in job_rx {
                    let outcome =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&data)));
                    if out_tx.send(outcome).is_err() {
                        return;
                    }
                }
            });
        if let Err(e) = spawned {
            panic!("cannot start the decode thread: {e}");
        }
        Mutex::new((job_tx, out_rx))
    });
    let channels = match worker.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if channels.0.send((data.to_vec(), body)).is_err() {
        panic!("the decode thread is gone");
    }
    match channels.1.recv() {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("the decode thread is gone"),
    }
}

/// The decodings of [`abi_decode`] that recurse (run on a node-sized stack).
fn decode_as_module_buffers(data: &[u8]) -> bool {
    // Replies and values, decoded as the runtime and modules decode them.
    let _ = relup_module::codec::decode::<ConfigValue>(data);
    let _ = relup_module::codec::decode::<ConfigChange>(data);
    let _ = relup_module::codec::decode::<(String, ConfigValue)>(data);
    let _ = relup_module::codec::decode::<ExitReason>(data);
    let _ = relup_module::codec::decode::<Result<Vec<u8>, String>>(data);
    // An exported state handed to another version's code_change, through the runtime.
    let module = fuzz_module().clone();
    let mut accepted = false;
    for (state, extra) in [(data, &[0xc0u8][..]), (&[0x80u8][..], data)] {
        if let Ok(mut instance) = crate::behaviour::ModuleInstance::code_change(
            module.clone(),
            "0.9.0",
            Direction::Up,
            state,
            extra,
        ) {
            // A state it accepted exports and migrates again to the same bytes.
            let exported = match instance.export_state() {
                Ok(bytes) => bytes,
                Err(e) => panic!("an accepted state does not export: {e}"),
            };
            match crate::behaviour::ModuleInstance::code_change(
                module.clone(),
                "1.0.0",
                Direction::Down,
                &exported,
                &[0xc0],
            ) {
                Ok(mut again) => assert_eq!(again.export_state().ok(), Some(exported)),
                Err(e) => panic!("an exported state does not migrate back: {e}"),
            }
            let _ = instance.health();
            accepted = true;
        }
    }
    accepted
}

/// Bytes as buffers coming back from a module across the ABI: as a reply, an exported state
/// (through the runtime's `code_change` into the real shim of a module), an `extra`, a
/// config value, a config change, a validator's answer, an exit reason or error text, and
/// a descriptor's name and version. Accepted: the bytes migrated as a state or an `extra`.
pub fn abi_decode(data: &[u8]) -> bool {
    let accepted = on_node_stack(data, decode_as_module_buffers);
    // Error texts and exit reasons cross as bytes of any kind.
    let text = String::from_utf8_lossy(data);
    let reason = ExitReason::from_text(&text);
    assert_eq!(ExitReason::from_text(&reason.to_text()), reason);
    // A descriptor's name and version are slices into the module's memory.
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (name, version) = data.split_at(split);
    let mut descriptor = relup_module::descriptor::<FuzzState>("x", "1.0.0");
    descriptor.name = relup_module::abi::Slice::new(name);
    descriptor.version = relup_module::abi::Slice::new(version);
    if let Ok((name, version)) = crate::loader::describe(&descriptor) {
        assert!(!name.is_empty());
        let _ = version.to_string();
    }
    accepted
}
