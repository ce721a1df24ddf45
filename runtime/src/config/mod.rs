//! The watched configuration of a release root (DESIGN.md §4, "Config file changes"): the
//! live `config.toml`, the change file `config.toml.new` and the rejects `config.toml.rej`,
//! all in `<root>/config/`.
//!
//! # `config.toml`: the operator's values
//!
//! Written by relup (atomically: temp file, fsync, rename, fsync of the directory), one table
//! per application and module; only keys the operator set are in it (release defaults are in
//! each release's manifest):
//!
//! ```toml
//! [ticker.ticker_server]
//! ticker = 1500
//! ```
//!
//! At boot the node reads it before starting the applications, so processes start with the
//! operator's values. A key the booted release does not declare, or whose value no longer
//! passes the declared type and range, is skipped with a warning in the node log. A file that
//! is not valid TOML (or not shaped `[app.module] key = value`) stops the boot with an error
//! naming the file and the line.
//!
//! # `config.toml.new`: changes
//!
//! One change a line, `app:module:key:value`, where `value` is a TOML value (`1500`,
//! `"fast"`, `true`, `[1, 2]`, `{ a = 1 }`); the value may contain colons. `module` is the
//! module's name, or the id of the supervisor child that runs it (so the Erlang tutorial's
//! `ticker:ticker:ticker:1500` works: child `ticker` runs module `ticker_server`). Blank lines and
//! lines starting with `#` are ignored. If the first non-blank line is `# atomic`, the whole
//! file is one all-or-nothing batch. Within a file, when several valid lines set one key, the
//! last one wins.
//!
//! Each line is checked in order: syntax; the application is in the running release; the
//! module is one of its modules; the module declares the key; the value parses as TOML and
//! passes the key's declared type, range and allowed values ([`relup_appup::ConfigKey::check`]);
//! and the module's own validator accepts it.
//!
//! **Validators.** A module exports a validator through its existing `apply` entry point (the
//! ABI is unchanged): the runtime calls `apply("validate_config", args)` on the module's current
//! version, with `args = relup_module::codec::encode(&(key: String, value: ConfigValue))`.
//! `Ok(_)` accepts the value, `Err(reason)` rejects it with that reason, and the default answer
//! `Err("no exported function validate_config")` means the module has no validator.
//!
//! Processing a file (the watcher does it when the file appears or grows, debounced):
//! 1. `config.toml.new` is renamed to `config.toml.new.work` (so lines appended meanwhile go to
//!    a fresh `config.toml.new`, processed next).
//! 2. Every line is validated.
//! 3. Rejected lines are appended to `config.toml.rej` (and fsynced) as a comment with the time,
//!    the file, the line number and the reason, followed by the line itself:
//!    ```text
//!    # 2025-01-01T10:00:00Z config.toml.new line 1: expected app:module:key:value, ...
//!    broken
//!    ```
//! 4. Accepted values are written to `config.toml` atomically.
//! 5. They are set in the application env (operator origin: they survive upgrades and
//!    downgrades unless a release stops declaring the key), and every process of the
//!    application hears of them through `config_change(changed, new, removed)`.
//! 6. `config.toml.new.work` is removed.
//!
//! A crash (even SIGKILL) before step 4 leaves `config.toml` as it was and the work file in
//! place; a crash after it leaves the new `config.toml`. On start the node loads `config.toml`,
//! then processes a leftover work file and a pending `config.toml.new`: re-processing applies
//! the same values again (idempotent), so no accepted change is lost and no rejected one is
//! applied. (A crash between steps 3 and 6 can repeat that batch's entries in the `.rej` file.)
//!
//! `relup config set app:module:key:value` goes through the same checks (over the control
//! socket) and `relup config get [app[:key]]` reads the env.

mod live;
mod parse;
mod store;
mod watch;

pub use live::{LiveConfig, toml_value};
pub use parse::{Batch, ChangeLine, LineError, parse_batch, parse_line};
pub use store::{Applied, BatchReport, ConfigEntry, ConfigError, ConfigStore, Rejected};
pub(crate) use store::{check_declared, resolve_child_id};
pub use watch::{ConfigWatcher, CurrentRelease, WatchMode, WatchOptions};
