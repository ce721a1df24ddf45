//! The ticker tutorial, release 0.4.0: module `ticker_server` (see `server.rs`).

/// The `ticker_server` state and callbacks.
mod server;

relup_module::export_module!(server::TickerServer, "ticker_server", server::VERSION);

#[cfg(test)]
mod tests {
    #[test]
    fn module_version_is_the_crate_version() {
        assert_eq!(super::server::VERSION, env!("CARGO_PKG_VERSION"));
    }
}
