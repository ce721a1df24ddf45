//! Bench module `worker` version 2.0.0: the same server with a `ticks` state field.
#[path = "../../worker_v1/src/api.rs"]
mod api;
#[path = "../../worker_v1/src/server.rs"]
mod server;
relup_module::export_module!(server::Worker, "worker");
