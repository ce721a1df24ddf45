//! Bench module `worker` version 1.0.0 (see server.rs).
mod api;
mod server;
relup_module::export_module!(server::Worker, "worker");
