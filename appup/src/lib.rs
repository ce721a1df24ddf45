//! relup-appup: release manifests (`release.toml`), appup files (`appup.toml`), their
//! validation, the upgrade/downgrade planner, and appup generation.
//!
//! Pure: every function takes the text it parses (plus a file name for error messages) or
//! already parsed values, and returns typed data or errors. No file system, no threads.

// Errors carry a file name, a position and the expected text; they are on the cold path, so
// returning them by value is fine.
#![allow(clippy::result_large_err)]

pub mod appup;
pub mod error;
pub mod fuzz;
pub mod generate;
pub mod instruction;
pub mod path;
pub mod plan;
pub mod release;
pub mod span;
pub mod validate;

pub use appup::{Appup, Direction, Entry, VersionMatch};
pub use error::{Error, Errors, PlanError};
pub use generate::{generate, generate_app};
pub use instruction::{Instruction, LocatedInstruction, Purge, StartType};
pub use path::{KnownRelease, ReleaseStatus};
pub use plan::{CodeChange, Hop, Plan, Step, plan};
pub use release::{
    Application, Child, ChildKind, ConfigKey, ConfigType, Module, Probation, Release, Restart,
    Shutdown, Snapshots, Strategy, Supervisor,
};
pub use span::{Location, Pos};
pub use validate::{validate, validate_entry};
