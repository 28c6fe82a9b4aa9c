//! The contract every detector implements.

use crate::classify::RequestClass;
use crate::event::{ClientKey, Event};
use crate::finding::Finding;
use crate::population::PopulationView;
use crate::state::StateError;
use crate::time::EventTime;

/// Why an event was delivered to a shard: because the shard owns the event's
/// client, or because it owns the event's *target* (a login route, an
/// account), which detectors of attacks spread over many sources key on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The shard owns `Observation::key`.
    Client,
    /// The shard owns the event's target key; the client is owned elsewhere.
    Target,
}

/// One event as a detector sees it: the event plus what the router worked
/// out once for all detectors.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'e, 'a> {
    /// The request.
    pub event: &'e Event<'a>,
    /// The client key the event belongs to.
    pub key: ClientKey,
    /// The event's effective time (see [`crate::Routed::time`]): what
    /// detectors use as "now", never the wall clock.
    pub now: EventTime,
    /// What kind of request it is (login, privileged route, sensitive file…),
    /// classified once by the router.
    pub class: RequestClass,
    /// Site-wide figures in force at this point of the stream.
    pub population: &'e PopulationView,
    /// Why this shard received the event.
    pub role: Role,
}

/// A detector: sync, pure and driven only by event time.
///
/// Determinism rule: whatever `advance` does must not change what a later
/// `observe` concludes. `advance` may only drop state that `observe` would
/// itself treat as expired, so findings do not depend on how often the
/// watermark is delivered (batch sizes, shard counts, live or replay).
pub trait Detector: Send {
    /// Short stable name, used in findings, metrics and config.
    fn name(&self) -> &'static str;

    /// Takes in one event; pushes any finding it causes to `out`.
    fn observe(&mut self, obs: &Observation<'_, '_>, out: &mut Vec<Finding>);

    /// Event time has reached `watermark`: drop idle state.
    fn advance(&mut self, watermark: EventTime, out: &mut Vec<Finding>);

    /// How many keys (clients or targets) this detector holds state for.
    fn tracked(&self) -> usize;

    /// Approximate bytes of state held, for the memory benchmark and metrics.
    fn state_bytes(&self) -> usize;

    /// This detector's state (not its configuration), encoded, so that a
    /// restarted process carries on where this one stopped.
    fn save_state(&self) -> Result<Vec<u8>, StateError>;

    /// Takes back what [`Detector::save_state`] wrote under the same
    /// configuration, replacing the current state.
    fn restore_state(&mut self, state: &[u8]) -> Result<(), StateError>;
}
