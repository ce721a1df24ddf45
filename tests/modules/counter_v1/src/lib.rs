//! Test module `counter` version 1.0.0 (see server.rs).
mod server;
relup_module::export_module!(server::Counter, "counter");
