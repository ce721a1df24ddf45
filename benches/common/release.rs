//! A release root for the install benchmarks: release `bench` 0.1.0 (module `worker` 1.0.0)
//! and 0.2.0 (`worker` 2.0.0, with an appup that updates `worker` up from and down to 0.1.0),
//! packed as tarballs, 0.1.0 deployed and booted by a real [`ReleaseHandler`], 0.2.0 unpacked.
//! The application's supervisor `bench_sup` is a simple_one_for_one of `worker` processes, like
//! the OTP anchor's `ticker_worker_sup` of `ticker_server` processes.

use super::Fixtures;
use relup::runtime::Node;
use relup::runtime::handler::ReleaseHandler;
use relup::runtime::release::{PackOptions, ReleaseRoot, deploy, pack_with};
use std::path::{Path, PathBuf};

/// Registered name of the application supervisor that the workers are started under.
pub const SUPERVISOR: &str = "bench_sup";

const APPUP: &str = r#"application = "bench"
version = "0.2.0"

[[up]]
from = "0.1.0"
instructions = [ { update = "worker", extra = "" } ]

[[down]]
to = "0.1.0"
instructions = [ { update = "worker", extra = "" } ]
"#;

fn manifest(version: &str, module_vsn: &str) -> String {
    format!(
        r#"name = "bench"
version = "{version}"

[[applications]]
name = "bench"
version = "{version}"

[[applications.modules]]
name = "worker"
file = "lib/libworker.so"
sha256 = ""
version = "{module_vsn}"

[applications.supervisor]
strategy = "simple_one_for_one"
intensity = 10
period_secs = 1

[[applications.supervisor.children]]
id = "w"
module = "worker"
args = {{ id = 0, interval_ms = 0 }}
"#
    )
}

/// Writes a release source directory and packs it; the tarball's path.
fn pack(base: &Path, version: &str, lib: &Path, module_vsn: &str, appup: bool) -> PathBuf {
    let src = base.join("src").join(version);
    std::fs::create_dir_all(src.join("lib")).expect("release source dir");
    std::fs::copy(lib, src.join("lib/libworker.so")).expect("library copied");
    std::fs::write(src.join("release.toml"), manifest(version, module_vsn)).expect("manifest");
    if appup {
        std::fs::write(src.join("appup.toml"), APPUP).expect("appup");
    }
    pack_with(&src, &base.join("tarballs"), PackOptions::default()).expect("release packs")
}

/// A deployed release root with 0.1.0 running on `node` and 0.2.0 unpacked.
pub struct BenchRoot {
    /// The release handler that boots 0.1.0 and installs the others.
    pub handler: ReleaseHandler,
    base: PathBuf,
}

impl BenchRoot {
    /// Builds both releases under `base` (emptied first) and boots 0.1.0 on `node`.
    pub fn start(base: &Path, node: &Node, fixtures: &Fixtures) -> BenchRoot {
        let _ = std::fs::remove_dir_all(base);
        let v1 = pack(base, "0.1.0", &fixtures.worker_v1, "1.0.0", false);
        let v2 = pack(base, "0.2.0", &fixtures.worker_v2, "2.0.0", true);
        deploy(&v1, &base.join("root")).expect("0.1.0 deploys");
        let root = ReleaseRoot::open(base.join("root")).expect("release root");
        let handler = ReleaseHandler::start(node.clone(), root).expect("0.1.0 boots");
        handler.unpack(&v2, false).expect("0.2.0 unpacks");
        BenchRoot {
            handler,
            base: base.to_path_buf(),
        }
    }

    /// Stops the handler and removes the files.
    pub fn remove(self) {
        self.handler.stop(std::time::Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
