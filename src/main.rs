//! `relup`: drive hot upgrades of a relup service on a server.
//!
//! Every command prints a clear error and exits non-zero on failure; `--root` defaults to
//! `RELUP_ROOT` (which a deployed release's `bin/<name>` launcher sets).

mod cli;

fn main() -> std::process::ExitCode {
    // Like any Unix filter: a reader that goes away (`relup releases | head -1`) ends the
    // process quietly instead of making `println!` panic on EPIPE.
    // SAFETY: restores the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    cli::main()
}
