//! Error types: every error names the file, the 1-based line and column, and what was expected.

use crate::span::Location;
use std::fmt;
use thiserror::Error;

/// A problem in a `release.toml` or `appup.toml` text, found while parsing it or while
/// validating an appup against the two releases it connects.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// The text is not valid TOML, or a value has the wrong shape.
    #[error("{at}: {message}; expected {expected}")]
    Syntax {
        /// Where.
        at: Location,
        /// What the parser said.
        message: String,
        /// What would have been accepted.
        expected: String,
    },
    /// A value is well-formed TOML but not an accepted value.
    #[error("{at}: invalid {what} `{found}`; expected {expected}")]
    InvalidValue {
        /// Where.
        at: Location,
        /// Which field or item.
        what: String,
        /// The value found.
        found: String,
        /// What would have been accepted.
        expected: String,
    },
    /// An instruction, child or config key names a module that the release does not have.
    #[error("{at}: unknown module `{module}` in {scope}; expected one of: {known}")]
    UnknownModule {
        /// Where.
        at: Location,
        /// The module named.
        module: String,
        /// Where it was looked for (e.g. "application ticker of release 0.2.0").
        scope: String,
        /// The modules that do exist there.
        known: String,
    },
    /// An instruction names an application that the release does not have.
    #[error("{at}: unknown application `{application}` in {scope}; expected one of: {known}")]
    UnknownApplication {
        /// Where.
        at: Location,
        /// The application named.
        application: String,
        /// Where it was looked for.
        scope: String,
        /// The applications that do exist there.
        known: String,
    },
    /// A supervisor instruction names a supervisor or child that does not exist.
    #[error("{at}: unknown {what} `{name}` in {scope}; expected one of: {known}")]
    UnknownChild {
        /// Where.
        at: Location,
        /// "supervisor" or "child".
        what: String,
        /// The name used.
        name: String,
        /// Where it was looked for.
        scope: String,
        /// What exists there.
        known: String,
    },
    /// An instruction applies to a module that exists on one side of the change but not on the
    /// side it needs (e.g. `update` of a module that the target release does not have).
    #[error(
        "{at}: {instruction} of module `{module}`, which {release} does not have; expected {expected}"
    )]
    ModuleNotInRelease {
        /// Where.
        at: Location,
        /// The instruction kind (`update`, `load_module`, ...).
        instruction: String,
        /// The module.
        module: String,
        /// The release lacking it, e.g. "release 0.2.0".
        release: String,
        /// What to write instead.
        expected: String,
    },
    /// The same thing is listed twice.
    #[error("{at}: duplicate {what}; first given at {first}; expected each {what} once")]
    Duplicate {
        /// Where the second one is.
        at: Location,
        /// What is duplicated, e.g. "module `x`".
        what: String,
        /// Where the first one is.
        first: Location,
    },
    /// An instruction follows `restart_node`, which must be last.
    #[error(
        "{at}: `{instruction}` after restart_node (at {restart_at}); expected restart_node to be the last instruction"
    )]
    AfterRestartNode {
        /// Where the offending instruction is.
        at: Location,
        /// Its kind.
        instruction: String,
        /// Where restart_node is.
        restart_at: Location,
    },
    /// `depends_on` lists form a cycle. Instructions in a cycle keep their appup order.
    #[error("{at}: dependency cycle {}; expected depends_on without cycles (instructions in a cycle keep their appup order)", .cycle.join(" -> "))]
    DependencyCycle {
        /// Where the first instruction of the cycle is.
        at: Location,
        /// The modules in the cycle, first repeated at the end.
        cycle: Vec<String>,
    },
    /// A module changed between the two releases (or was added or removed) and no instruction
    /// of the appup entry covers it.
    #[error(
        "{at}: incomplete appup: module `{module}` of application {application} {change} between {from} and {to} but no instruction covers it; expected {expected}"
    )]
    Incomplete {
        /// Where the up/down entry is.
        at: Location,
        /// The module.
        module: String,
        /// Its application.
        application: String,
        /// "changed (sha256 <a>.. -> <b>..)", "was added", "was removed".
        change: String,
        /// The release the change starts from.
        from: String,
        /// The release the change goes to.
        to: String,
        /// The instruction that would cover it.
        expected: String,
    },
    /// The appup does not belong to the releases it is checked against.
    #[error("{at}: {message}; expected {expected}")]
    Mismatch {
        /// Where.
        at: Location,
        /// What does not match.
        message: String,
        /// What was expected.
        expected: String,
    },
}

impl Error {
    /// Where the error is.
    pub fn location(&self) -> &Location {
        match self {
            Error::Syntax { at, .. }
            | Error::InvalidValue { at, .. }
            | Error::UnknownModule { at, .. }
            | Error::UnknownApplication { at, .. }
            | Error::UnknownChild { at, .. }
            | Error::ModuleNotInRelease { at, .. }
            | Error::Duplicate { at, .. }
            | Error::AfterRestartNode { at, .. }
            | Error::DependencyCycle { at, .. }
            | Error::Incomplete { at, .. }
            | Error::Mismatch { at, .. } => at,
        }
    }
}

/// Every problem found by one validation, in text order; displays one per line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct Errors(pub Vec<Error>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl Errors {
    /// `Ok(())` when there is no error, the errors otherwise.
    pub fn into_result(self) -> Result<(), Errors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl From<Error> for Errors {
    fn from(e: Error) -> Self {
        Errors(vec![e])
    }
}

/// Why no plan could be made from one release to another.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlanError {
    /// Current and target are the same release.
    #[error("{version} is already the current release; nothing to plan")]
    SameVersion {
        /// The version.
        version: String,
    },
    /// The two releases are of different products.
    #[error(
        "release {target} is named `{target_name}` but the current release is named `{current_name}`; expected releases of the same name"
    )]
    DifferentNames {
        /// Target version.
        target: String,
        /// Target name.
        target_name: String,
        /// Current name.
        current_name: String,
    },
    /// A native module (linked into the node executable) has another version in the target
    /// release: a hot upgrade keeps the running executable, so it cannot change it.
    #[error(
        "native module `{module}` is {} and {}; a native module is linked into the node executable, which a hot upgrade does not replace: expected the same version in both (relup has no restart into a new release yet; a new executable with another native version needs a fresh deploy)",
        versions[0],
        versions[1]
    )]
    NativeChanged {
        /// The module.
        module: String,
        /// Its version in the current release, then the target release's, e.g.
        /// `["1.0.0 in release 0.1.0", "1.1.0 in release 0.2.0"]`.
        versions: Box<[String; 2]>,
    },
    /// No direct path and no chain through known releases.
    #[error("no {direction} path from {from} to {to}; {hint}; known releases: {known}")]
    NoPath {
        /// "upgrade" or "downgrade".
        direction: String,
        /// Current version.
        from: String,
        /// Target version.
        to: String,
        /// What does exist, e.g. "0.3.0 upgrades from 0.2.0".
        hint: String,
        /// Every known release with its status.
        known: String,
    },
    /// An appup on the chosen path is invalid.
    #[error("the appups from {from} to {to} are invalid:\n{errors}")]
    Invalid {
        /// Start of the hop.
        from: String,
        /// End of the hop.
        to: String,
        /// The problems.
        errors: Errors,
    },
}
