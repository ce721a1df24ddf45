//! relup-runtime
