//! The @NAME@ node executable: the whole `relup` command line, with this service's native
//! (statically linked) server types registered on the node it runs. Packed into a release
//! (`relup release . --out dist --exe target/release/@NAME@-node`), it is what the deployed
//! root's `bin/@NAME@` runs, so the server needs neither relup nor cargo.

use relup::runtime::service::Natives;

fn main() -> std::process::ExitCode {
    // Register native server types here, e.g. `Natives::new().add::<Audit>("audit", "1.0.0")`,
    // and declare each in release.toml:
    //   [[applications.modules]]
    //   name = "audit"
    //   version = "1.0.0"
    //   native = true
    // Children then run it with `module = "audit"`, beside the cdylib modules. A native type
    // changes only with a new executable (a restart), never in a hot upgrade.
    relup::cli::main_with(Natives::new())
}
