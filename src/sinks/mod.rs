//! Where incident changes go besides the store: today, stdout.

pub mod console;

use gatewatch_alerting::IncidentChange;

/// Receives every new or updated incident, in order.
pub trait IncidentSink: Send {
    /// Takes one change.
    fn emit(&mut self, change: &IncidentChange) -> anyhow::Result<()>;
    /// Pushes out anything buffered.
    fn flush(&mut self) -> anyhow::Result<()>;
}
