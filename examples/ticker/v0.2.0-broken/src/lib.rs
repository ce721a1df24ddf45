//! The ticker tutorial's broken 0.2.0: `ticker_server` 0.2.0 built from the real 0.2.0's
//! source with the `broken` feature, whose migration from 0.1.0 stores the wall clock in the
//! field that holds the tick this version started at. The ticks are right; the health check
//! reports the broken invariant, so the release fails its probation and is rolled back.

/// The `ticker_server` state and callbacks (the real 0.2.0's file).
#[path = "../../v0.2.0/src/server.rs"]
mod server;

relup_module::export_module!(server::TickerServer, "ticker_server", server::VERSION);
