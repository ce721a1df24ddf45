//! The kv example, release 0.1.0: module `kv_server` (see `server.rs`).

/// The `kv_server` state, commands and migrations.
mod server;

relup_module::export_module!(server::KvServer, "kv_server", server::VERSION);

#[cfg(test)]
mod tests {
    #[test]
    fn module_version_is_the_crate_version() {
        assert_eq!(super::server::VERSION, env!("CARGO_PKG_VERSION"));
    }
}
