//! The kv example, release 0.3.0 (and 0.3.1, the same source): module `kv_server` (see
//! `server.rs`), its data in a node table.

/// The `kv_server` state, commands and migrations.
mod server;

relup_module::export_module!(server::KvServer, "kv_server", server::VERSION);
