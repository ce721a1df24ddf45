//! `relup`: drive hot upgrades of a relup service on a server.
//!
//! Every command prints a clear error and exits non-zero on failure; `--root` defaults to
//! `RELUP_ROOT` (which a deployed release's `bin/<name>` launcher sets).

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
