//! relup-module: what a relup module author depends on.
//!
//! A module is an ordinary Rust type implementing [`Server`] (a gen_server-like behaviour),
//! exported from a `cdylib` with [`export_module!`]. The runtime loads the library with
//! `libloading`, checks its [`abi::ModuleDescriptor`] (ABI version, module name, module version)
//! and calls it through plain `extern "C"` function pointers. Messages and migrated state cross
//! the boundary as serde-encoded bytes ([`codec`]); every entry point catches panics.
//!
//! TCP: a process opens listeners with [`Context::tcp_listen`], gets each accepted connection
//! and its bytes as [`Info`] messages, and writes with [`Context::tcp_send`]. The sockets
//! belong to the node, not to module code, so they stay open across upgrades, downgrades and
//! rollbacks of the modules that handle them (see the runtime's `ports` module).
//!
//! Tables: [`Context::table_open`] gives a process a node-owned ordered key-value table
//! (ETS-like: bytes or serde values, concurrent readers, an owner and an optional heir). Tables
//! are not process state, so upgrades, downgrades and rollbacks never copy or migrate them;
//! [`Context::table_transform`] changes their values' shape explicitly, all or nothing.
//!
//! The same descriptor also serves statically linked ("native") server types: the runtime calls
//! [`descriptor`] directly, so native and dynamically loaded modules share one code path.

pub mod abi;
pub mod codec;
mod context;
mod server;
mod shim;
mod table;
mod types;

pub use context::{CallError, Context, LogLevel, Target, TcpError};
pub use server::{Direction, OldState, Server};
pub use shim::descriptor;
pub use table::{Row, TableError, TableOptions, TableRows};
pub use types::{
    CloseReason, ConfigChange, ConfigValue, ExitReason, Info, MonitorRef, Pid, PortId, TableId,
    TimerRef,
};

/// Exports a [`Server`] type from a cdylib as a relup module.
///
/// `export_module!(Counter, "counter")` takes the module version from the crate's
/// `CARGO_PKG_VERSION`; `export_module!(Counter, "counter", "1.2.0")` names it explicitly.
/// It defines the one symbol the runtime looks for, [`abi::DESCRIPTOR_SYMBOL`].
#[macro_export]
macro_rules! export_module {
    ($server:ty, $name:expr) => {
        $crate::export_module!($server, $name, env!("CARGO_PKG_VERSION"));
    };
    ($server:ty, $name:expr, $version:expr) => {
        /// The relup module descriptor of this library (see `relup_module::abi`).
        #[unsafe(no_mangle)]
        pub extern "C" fn relup_module_descriptor() -> *const $crate::abi::ModuleDescriptor {
            static DESCRIPTOR: ::std::sync::OnceLock<$crate::abi::ModuleDescriptor> =
                ::std::sync::OnceLock::new();
            DESCRIPTOR.get_or_init(|| $crate::descriptor::<$server>($name, $version))
        }
    };
}
