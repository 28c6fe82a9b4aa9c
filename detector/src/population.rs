//! Site-wide figures that per-client detectors judge against.

/// What the whole site looks like at one point of the stream, as seen by the
/// router (which sees every event, in order, whatever the shard count).
///
/// Broadcast to every shard in-band whenever it changes, so every shard sees
/// the same view at the same position of the stream: detection stays
/// independent of how many shards there are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PopulationView {
    /// How far site-wide traffic is above its own baseline (1.0 = normal).
    /// A per-client spike is judged against `baseline × surge`, so a
    /// site-wide surge does not make every client an incident.
    pub surge: f64,
}

impl Default for PopulationView {
    fn default() -> Self {
        PopulationView { surge: 1.0 }
    }
}

/// Keeps the site-wide figures. (Placeholder until the detector work lands.)
pub struct PopulationTracker {
    pending: Option<PopulationView>,
}

impl PopulationTracker {
    /// Builds a tracker.
    pub fn new(_cfg: &crate::config::DetectionConfig) -> Self {
        PopulationTracker { pending: None }
    }

    /// Counts one event.
    pub fn observe(
        &mut self,
        _ev: &crate::event::Event<'_>,
        _key: crate::event::ClientKey,
        _class: crate::classify::RequestClass,
    ) {
    }

    /// The view, when it changed.
    pub fn take_update(&mut self) -> Option<PopulationView> {
        self.pending.take()
    }
}
