//! The detectors: one file each, built in one place.

use crate::config::{ConfigError, DetectionConfig};
use crate::detector::Detector;
use crate::event::{stable_hash, Event};

/// Builds every enabled detector for one shard.
pub fn build_all(
    _cfg: &DetectionConfig,
    _shards: usize,
) -> Result<Vec<Box<dyn Detector>>, ConfigError> {
    Ok(Vec::new())
}

/// The hash of an event's target (host and path of a login request), which
/// picks the shard that sees every source attacking that target.
pub fn target_hash(ev: &Event<'_>) -> u64 {
    stable_hash(ev.host.as_bytes()) ^ stable_hash(ev.path.as_bytes())
}
