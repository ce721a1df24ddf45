//! relup-module
