//! Test module `counter` version 2.0.0: the same server with a `bonus` state field.
#[path = "../../counter_v1/src/server.rs"]
mod server;
relup_module::export_module!(server::Counter, "counter");
