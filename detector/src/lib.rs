//! gatewatch-detector: the pure heart of gatewatch.
//!
//! It owns the normalised [`Event`] that every log format is turned into, the
//! [`Finding`] a detector emits, and the detectors themselves. Everything here
//! is synchronous and deterministic: no I/O, no async, no wall clock. Time only
//! moves when events (or an explicit watermark) say so, which is what makes a
//! replay of a file give exactly the incidents a live run gives.
//!
//! This crate is the leaf of the workspace: it must not depend on any other
//! gatewatch crate.

pub mod baseline;
pub mod classify;
pub mod config;
pub mod detector;
pub mod detectors;
pub mod engine;
pub mod episode;
pub mod event;
pub mod finding;
pub mod population;
pub mod record;
pub mod state;
pub mod table;
pub mod time;
pub mod window;

pub use classify::RequestClass;
pub use config::DetectionConfig;
pub use detector::{Detector, Observation, Role};
pub use engine::{Engine, Routed, Router, Shard};
pub use event::{ClientKey, Event, Method, SourceId};
pub use finding::{Finding, IncidentKind, Severity};
pub use population::PopulationView;
pub use record::EventRecord;
pub use state::{EngineState, StateError};
pub use time::EventTime;
