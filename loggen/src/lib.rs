//! gatewatch-loggen: seeded, labelled, realistic gateway traffic.
//!
//! The end-to-end tests replay what it writes and check every labelled
//! attack becomes the right incident while the benign look-alikes stay
//! quiet; `scripts/bench` uses it for million-line logs. Equal seeds give
//! byte-identical output on every machine.

pub mod actors;
pub mod flood;
pub mod render;
pub mod request;
pub mod rng;
pub mod scenario;
pub mod site;

pub use render::{render, LogFormat};
pub use request::Request;
pub use scenario::{generate, Generated, Label, Scenario};
