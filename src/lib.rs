//! The `gatewatch` service as a library: the wiring of the pipeline, the
//! configuration, the commands and the HTTP API. `main.rs` is only the CLI
//! on top; the end-to-end tests boot the same router and pipeline from here.
//!
//! The crates below do the work: `gatewatch-ingest` (sources, formats),
//! `gatewatch-detector` (detection), `gatewatch-alerting` (incidents,
//! store, notifications). This package connects them.

pub mod api;
pub mod commands;
pub mod config;
pub mod pipeline;
pub mod sinks;
