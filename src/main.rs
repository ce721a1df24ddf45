//! `relup`: drive hot upgrades of a relup service on a server.
//!
//! Every command prints a clear error and exits non-zero on failure; `--root` defaults to
//! `RELUP_ROOT` (which a deployed release's `bin/<name>` launcher sets). The command line
//! lives in the library ([`relup::cli`]), so that a service's own binary can run it too.

fn main() -> std::process::ExitCode {
    relup::cli::main()
}
