//! Native server types: Rust types implementing [`Server`], linked into the service's own
//! executable and registered on its node before the release boots, so that `release.toml`
//! can name them (`native = true`) as children beside cdylib modules.

use super::error::ServiceError;
use crate::code_server::CodeServer;
use relup_module::Server;
use std::sync::Arc;

type Register = dyn Fn(&CodeServer) -> Result<(), ServiceError> + Send + Sync;

/// The native server types a node executable registers, each under a module name and version.
///
/// ```
/// # use relup_module::{Context, Server};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct Greeter;
/// # impl Server for Greeter {
/// #     type Args = (); type Call = (); type Reply = (); type Cast = (); type Info = ();
/// #     fn init(_: (), _: &mut Context<'_>) -> Result<Self, String> { Ok(Greeter) }
/// #     fn handle_call(&mut self, _: (), _: &mut Context<'_>) {}
/// # }
/// let natives = relup_runtime::service::Natives::new().add::<Greeter>("greeter", "1.0.0");
/// assert_eq!(natives.names(), ["greeter"]);
/// ```
#[derive(Clone, Default)]
pub struct Natives {
    entries: Vec<(&'static str, Arc<Register>)>,
}

impl std::fmt::Debug for Natives {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Natives {
    /// No native server types.
    pub fn new() -> Natives {
        Natives::default()
    }

    /// Adds server type `S` as module `name` at `version` (semver). In `release.toml` it is
    /// declared as `[[applications.modules]] name = "<name>" version = "<version>" native =
    /// true`, and children run it with `module = "<name>"`.
    pub fn add<S: Server>(mut self, name: &'static str, version: &'static str) -> Natives {
        let register = move |code: &CodeServer| {
            code.register_native::<S>(name, version)
                .map(drop)
                .map_err(|source| ServiceError::Native {
                    name: name.to_string(),
                    source: Box::new(source),
                })
        };
        self.entries.push((name, Arc::new(register)));
        self
    }

    /// Adds every type of `other` after those of `self`.
    pub fn extend(&mut self, other: Natives) {
        self.entries.extend(other.entries);
    }

    /// The module names, in the order they were added.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|(name, _)| *name).collect()
    }

    /// Registers every type on `code` (each becomes the current version of its module).
    pub fn register(&self, code: &CodeServer) -> Result<(), ServiceError> {
        self.entries
            .iter()
            .try_for_each(|(_, register)| register(code))
    }
}
