//! gatewatch-alerting: what happens after a detector has spoken.
//!
//! Findings become [`Incident`]s with a stable fingerprint (one attack, one
//! incident, also across replays and restarts), are stored in PostgreSQL or
//! SQLite, and are delivered to people through a durable outbox. This crate
//! knows nothing of log formats: it depends on `gatewatch-detector` only for
//! `Finding` and its vocabulary.

pub mod incident;

pub use incident::{Incident, IncidentStatus};
