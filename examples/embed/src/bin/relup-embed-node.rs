//! The `relup` command line with the greeter linked in: a service's own node executable.
//!
//! Every `relup` command works with it (`relup-embed-node --root R start`, `status`,
//! `upgrade`, ...), and the node it runs registers the native `greeter` before it boots the
//! release, so `release.toml` can name it as a child beside cdylib modules. Packed with
//! `relup release <dir> --exe <this binary>`, it is what a deployed root's `bin/<name>` runs.

use relup::runtime::service::Natives;
use relup_example_embed::{GREETER, Greeter};

fn main() -> std::process::ExitCode {
    relup::cli::main_with(Natives::new().add::<Greeter>(GREETER.0, GREETER.1))
}
