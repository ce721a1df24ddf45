//! Test module `echo` version 1.0.0 (see server.rs).
mod server;
relup_module::export_module!(server::Echo, "echo");
