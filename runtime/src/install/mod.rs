//! Installing releases on a running node: boot a release's applications, and evaluate an
//! upgrade or downgrade plan (from relup-appup) hop by hop with rollback.
//!
//! The promise: a hop either completes or leaves exactly the old release running — old code,
//! old states, every process resumed — and the error names the step, the module and the
//! process. Until a hop commits, the old code stays loaded and the old states stay alive.

pub(crate) mod boot;
mod convert;
mod defaults;
mod error;
mod evaluate;
mod journal;

pub(crate) use boot::load_checked;
pub use boot::{BootedRelease, boot_release, stop_release};
pub use convert::{child_spec, config_value, encode_value, supervisor_spec};
pub use error::InstallError;
pub use evaluate::{HopOutcome, HopTarget, InstallOptions, Progress, RestoreSet, run_hop};
pub use journal::{Batch, Journal, rfc3339};
