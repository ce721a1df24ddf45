//! The `relup` command line, as a library: the `relup` binary runs [`main`], and a service's
//! own binary runs [`main_with`] with its native server types, so that the same commands
//! (`start`, `stop`, `status`, `upgrade`, `downgrade`, ...) work with that binary, packed in a
//! self-contained release and run by `bin/<name>`.
//!
//! ```no_run
//! # use relup_module::{Context, Server};
//! # #[derive(serde::Serialize, serde::Deserialize)]
//! # struct Greeter;
//! # impl Server for Greeter {
//! #     type Args = (); type Call = (); type Reply = (); type Cast = (); type Info = ();
//! #     fn init(_: (), _: &mut Context<'_>) -> Result<Self, String> { Ok(Greeter) }
//! #     fn handle_call(&mut self, _: (), _: &mut Context<'_>) {}
//! # }
//! use relup::runtime::service::Natives;
//!
//! fn main() -> std::process::ExitCode {
//!     relup::cli::main_with(Natives::new().add::<Greeter>("greeter", "1.0.0"))
//! }
//! ```

mod build;
mod config;
mod daemon;
mod new;
mod output;
mod remote;

use clap::{Parser, Subcommand};
use relup_runtime::service::{Beside, Natives};
use std::path::PathBuf;
use std::process::ExitCode;

/// Erlang/OTP-style hot code upgrades for long-lived Rust services.
#[derive(Parser, Debug)]
#[command(name = "relup", version, about, propagate_version = true)]
struct Cli {
    /// The release root (default: $RELUP_ROOT).
    #[arg(long, global = true, env = "RELUP_ROOT")]
    root: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// The commands (DESIGN.md §4).
#[derive(Subcommand, Debug)]
enum Command {
    /// Build a release's cdylibs and pack <name>-<vsn>.tar.gz.
    Release {
        /// The release directory (Cargo.toml of the module crate, release.toml, appup.toml).
        dir: PathBuf,
        /// Where to write the tarball (default: the current directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Pack this node executable (the `relup` binary, or the service's own binary built
        /// on `relup::cli::main_with`) as bin/relup-node: a self-contained release, whose
        /// `bin/<name>` runs it instead of `relup` from PATH. `self` packs the executable
        /// running this command.
        #[arg(long, value_name = "PATH")]
        exe: Option<PathBuf>,
    },
    /// Write a new project for a service on relup: a workspace with a module crate,
    /// release.toml, the next version's appup and a README of the next steps.
    New {
        /// The project (and release) name: a lowercase letter, then lowercase letters,
        /// digits or `_`.
        name: String,
        /// Add a node binary of the service's own (`node/`, on relup::cli::main_with), to
        /// register native server types and pack into self-contained releases.
        #[arg(long)]
        host: bool,
        /// Where to create the project directory (default: the current directory).
        #[arg(long, value_name = "PARENT")]
        dir: Option<PathBuf>,
        /// The relup checkout the project depends on by path (default: the one this relup
        /// was built from).
        #[arg(long, value_name = "DIR")]
        relup_path: Option<PathBuf>,
    },
    /// Unpack a first release into an empty root and make it permanent.
    Deploy {
        /// The release tarball.
        tarball: PathBuf,
        /// The root to create.
        root: PathBuf,
    },
    /// Boot the permanent release (in the background, or as a console with --foreground).
    Start {
        /// Run in the foreground until stopped (Ctrl-C or `relup stop`).
        #[arg(long)]
        foreground: bool,
    },
    /// Stop the node.
    Stop,
    /// Hand the node over to a new node process (the running release's executable, else
    /// this one), keeping every connection and process state: for what cannot be hot-loaded
    /// (a new relup runtime, new native code in the node executable).
    Restart,
    /// The running release, supervision tree, processes and module versions.
    Status,
    /// Every release with its status.
    Releases,
    /// Unpack a release tarball into the root (verified, recorded as unpacked).
    Unpack {
        /// The tarball.
        tarball: PathBuf,
        /// Replace a version that is only unpacked (a permanent or current one never is).
        #[arg(long)]
        force: bool,
    },
    /// Reboot into an old release: it becomes permanent and its processes start afresh.
    RebootOld {
        /// The version (a previous permanent release).
        #[arg(value_name = "VERSION")]
        vsn: String,
    },
    /// The plan from the running release to <version>; nothing is changed.
    Plan {
        /// Target version.
        #[arg(value_name = "VERSION")]
        vsn: String,
    },
    /// Install a newer release (through a chain when needed): snapshot, check, install,
    /// probation (automatic rollback on failure), then permanent.
    Upgrade {
        /// Target version.
        #[arg(value_name = "VERSION")]
        vsn: String,
        #[command(flatten)]
        how: InstallFlags,
    },
    /// Install an older release (states migrated down, or restored from a snapshot).
    Downgrade {
        /// Target version.
        #[arg(value_name = "VERSION")]
        vsn: String,
        #[command(flatten)]
        how: InstallFlags,
        /// Put back the states of this snapshot (see `relup snapshots`) instead of running
        /// code_change down.
        #[arg(long, value_name = "ID")]
        restore_snapshot: Option<u64>,
    },
    /// Load a release's code and dry-run its code changes on copies of the live states;
    /// nothing is switched.
    Check {
        /// Target version.
        #[arg(value_name = "VERSION")]
        vsn: String,
    },
    /// The snapshots of process states taken before each install.
    Snapshots,
    /// Cancel a scheduled upgrade (every one without an id).
    Cancel {
        /// The scheduled upgrade's id (see `relup status`).
        id: Option<u64>,
    },
    /// Make the running release permanent.
    Permanent {
        /// The version (the running one).
        #[arg(value_name = "VERSION")]
        vsn: String,
    },
    /// Remove a release (never the permanent or the running one).
    Remove {
        /// The version.
        #[arg(value_name = "VERSION")]
        vsn: String,
    },
    /// The upgrade journal.
    Log,
    /// Read or set the application configuration (validated by the node).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Appup tools.
    Appup {
        #[command(subcommand)]
        command: AppupCommand,
    },
}

/// How `upgrade` and `downgrade` run.
#[derive(clap::Args, Debug)]
struct InstallFlags {
    /// Leave the release current but not permanent (a restart boots the permanent one).
    #[arg(long)]
    no_permanent: bool,
    /// The probation window (e.g. 30s, 2m; 0 for none; at most 7d), instead of the release's.
    #[arg(long, value_name = "DURATION", value_parser = remote::parse_probation)]
    probation: Option<std::time::Duration>,
    /// Run at this time instead of now (RFC 3339, e.g. 2026-12-01T03:00:00Z, or `now`; at
    /// most 3650 days ahead).
    #[arg(long, value_name = "TIME", conflicts_with = "delay")]
    at: Option<String>,
    /// Run after this delay (e.g. 10m, 1h30m; at most 3650d).
    #[arg(long = "in", value_name = "DURATION", value_parser = remote::parse_delay)]
    delay: Option<std::time::Duration>,
    /// Skip the dry run of the code changes on copies of the live states.
    #[arg(long)]
    skip_check: bool,
}

/// `relup appup ...`
#[derive(Subcommand, Debug)]
enum AppupCommand {
    /// Write an appup from two release manifests' differences (to standard output).
    Generate {
        /// The older release directory (with release.toml).
        old: PathBuf,
        /// The newer release directory.
        new: PathBuf,
    },
}

/// `relup config ...`
#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// The running release's config keys with their values and origins.
    Get {
        /// `app` or `app:key` (default: every key).
        #[arg(value_name = "APP[:KEY]")]
        selector: Option<String>,
    },
    /// Set a key as the operator: checked like a config.toml.new line, saved in
    /// config/config.toml, delivered to the application's processes.
    Set {
        /// `app:module:key:value`, the value a TOML value (quote strings).
        #[arg(value_name = "APP:MODULE:KEY:VALUE", allow_hyphen_values = true)]
        line: String,
    },
}

impl InstallFlags {
    fn request(
        &self,
        direction: remote::Direction,
        restore: Option<u64>,
    ) -> remote::InstallRequest {
        remote::InstallRequest {
            direction,
            permanent: !self.no_permanent,
            probation: self.probation,
            at: self.at.clone(),
            delay: self.delay,
            skip_check: self.skip_check,
            restore,
        }
    }
}

/// A failure to report: one line on stderr, exit code 1; with `--json`, also one JSON object
/// on stdout ([`output::error_json`]).
pub(crate) struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure(error.to_string())
    }
}

fn root(cli: &Cli) -> Result<PathBuf, Failure> {
    cli.root
        .clone()
        .ok_or_else(|| Failure("no release root: pass --root <dir> or set RELUP_ROOT".into()))
}

fn run(cli: Cli, natives: Natives, beside: Option<Beside>) -> Result<(), Failure> {
    let json = cli.json;
    match &cli.command {
        Command::Release { dir, out, exe } => {
            build::release(dir, out.as_deref(), exe.as_deref(), json)
        }
        Command::New {
            name,
            host,
            dir,
            relup_path,
        } => new::new_project(name, *host, dir.as_deref(), relup_path.as_deref(), json),
        Command::Deploy { tarball, root } => build::deploy(tarball, root, json),
        Command::Start { foreground } => {
            daemon::start(&root(&cli)?, *foreground, natives, beside, json)
        }
        Command::Stop => daemon::stop(&root(&cli)?, json),
        Command::Restart => remote::restart(&root(&cli)?, json),
        Command::Status => remote::status(&root(&cli)?, json),
        Command::Releases => remote::releases(&root(&cli)?, json),
        Command::Unpack { tarball, force } => remote::unpack(&root(&cli)?, tarball, *force, json),
        Command::RebootOld { vsn } => remote::reboot_old(&root(&cli)?, vsn, json),
        Command::Plan { vsn } => remote::plan(&root(&cli)?, vsn, json),
        Command::Upgrade { vsn, how } => remote::install(
            &root(&cli)?,
            vsn,
            &how.request(remote::Direction::Up, None),
            json,
        ),
        Command::Downgrade {
            vsn,
            how,
            restore_snapshot,
        } => remote::install(
            &root(&cli)?,
            vsn,
            &how.request(remote::Direction::Down, *restore_snapshot),
            json,
        ),
        Command::Check { vsn } => remote::check(&root(&cli)?, vsn, json),
        Command::Snapshots => remote::snapshots(&root(&cli)?, json),
        Command::Cancel { id } => remote::cancel(&root(&cli)?, *id, json),
        Command::Permanent { vsn } => remote::permanent(&root(&cli)?, vsn, json),
        Command::Remove { vsn } => remote::remove(&root(&cli)?, vsn, json),
        Command::Log => remote::log(&root(&cli)?, json),
        Command::Config {
            command: ConfigCommand::Get { selector },
        } => config::get(&root(&cli)?, selector.as_deref(), json),
        Command::Config {
            command: ConfigCommand::Set { line },
        } => config::set(&root(&cli)?, line, json),
        Command::Appup {
            command: AppupCommand::Generate { old, new },
        } => build::generate(old, new),
    }
}

/// The `relup` command line with no native server types: [`main_with`] an empty [`Natives`].
pub fn main() -> ExitCode {
    main_with(Natives::new())
}

/// Parses the process's arguments as the `relup` command line and runs the command; a node
/// this process runs (`start --foreground`, or the background node `start` re-runs this
/// executable as) registers `natives` before it boots the release. A failure is exit code 1
/// (2 and 3 for an upgrade or downgrade rolled back or refused): a line on stderr for people
/// and, with `--json`, `{"error": ..., "running": ...}` on stdout for programs (the last line
/// there, after any events the command streamed).
///
/// Call it from `main` before starting threads: it restores the default SIGPIPE disposition
/// (a reader that goes away, as in `status | head -1`, ends the process quietly).
pub fn main_with(natives: Natives) -> ExitCode {
    main_with_beside(natives, None)
}

/// [`main_with`], and a node this process runs also runs `beside` once it serves (an HTTP
/// server, say: see [`Beside`] and `examples/http`), so that `start` of the service's own
/// binary, or `bin/<name> start` of a root whose release carries it, runs all it serves.
pub fn main_with_beside(natives: Natives, beside: Option<Beside>) -> ExitCode {
    // SAFETY: restores the default disposition of SIGPIPE, before this function starts any
    // thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli, natives, beside) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            if json {
                output::print_json(&output::error_json(&message));
            }
            eprintln!("relup: {message}");
            ExitCode::from(output::failure_exit_code())
        }
    }
}
