//! Test module `echo` version 2.0.0: the same server, its version from its own crate.
#[path = "../../echo_v1/src/server.rs"]
mod server;
relup_module::export_module!(server::Echo, "echo");
