//! The detectors: one file each, built in one place.
//!
//! * [`traffic_spike`]: a client far above its own learned rate.
//! * [`credential_stuffing`]: brute force, spraying, distributed and
//!   low-and-slow login abuse, and a success after a failure run.
//! * [`privilege_probing`]: admin probing, sensitive-file scans, object walks,
//!   ID enumeration and broad path enumeration.

pub mod credential_stuffing;
pub mod privilege_probing;
pub mod traffic_spike;

use crate::config::{ConfigError, DetectionConfig};
use crate::detector::{Detector, Observation};
use crate::event::{mix64, Event};

/// Builds every enabled detector for one shard.
pub fn build_all(
    cfg: &DetectionConfig,
    shards: usize,
) -> Result<Vec<Box<dyn Detector>>, ConfigError> {
    cfg.validate()?;
    let mut out: Vec<Box<dyn Detector>> = Vec::new();
    if cfg.traffic_spike.enabled {
        out.push(Box::new(traffic_spike::TrafficSpike::new(cfg, shards)));
    }
    if cfg.credential_stuffing.enabled {
        out.push(Box::new(credential_stuffing::CredentialStuffing::new(
            cfg, shards,
        )));
    }
    if cfg.privilege_probing.enabled {
        out.push(Box::new(privilege_probing::PrivilegeProbing::new(
            cfg, shards,
        )));
    }
    Ok(out)
}

/// Per-shard cap on tracked keys for one detector.
pub(crate) fn shard_cap(cfg: &DetectionConfig, shards: usize) -> usize {
    (cfg.max_tracked_clients / shards.max(1)).max(1)
}

/// Idle expiry in milliseconds.
pub(crate) fn idle_ms(cfg: &DetectionConfig) -> i64 {
    i64::try_from(cfg.idle_expiry_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Seconds → milliseconds, saturating.
pub(crate) fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn fnv_lower(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The hash of an event's target (host and path of a login request,
/// case-insensitive, trailing slash ignored), which picks the shard that sees
/// every source attacking that target.
pub fn target_hash(ev: &Event<'_>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325;
    h = fnv_lower(h, ev.host.as_bytes());
    h = fnv_lower(h, b"\0");
    h = fnv_lower(h, ev.path.trim_end_matches('/').as_bytes());
    mix64(h)
}

/// How a distributed attack's target is shown: `target:<host><path>`.
pub fn target_display(ev: &Event<'_>) -> String {
    format!(
        "target:{}{}",
        ev.host.to_ascii_lowercase(),
        ev.path.trim_end_matches('/').to_ascii_lowercase()
    )
}

/// How the observation's client is shown in a finding.
pub(crate) fn client_display(obs: &Observation<'_, '_>) -> String {
    obs.key.display_with(obs.event.identity.as_deref())
}

/// A case-sensitive hash of a string (paths, usernames) for sketches.
pub(crate) fn hash_str(s: &str) -> u64 {
    crate::event::stable_hash(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::EventTime;
    use std::borrow::Cow;

    #[test]
    fn target_hash_ignores_case_and_trailing_slash() {
        let mut a = Event::new(EventTime::from_secs(0), "1.1.1.1".parse().unwrap());
        a.host = Cow::Borrowed("Shop.example");
        a.path = Cow::Borrowed("/Login/");
        let mut b = a.clone();
        b.host = Cow::Borrowed("shop.example");
        b.path = Cow::Borrowed("/login");
        assert_eq!(target_hash(&a), target_hash(&b));
        assert_eq!(target_display(&a), "target:shop.example/login");
        b.path = Cow::Borrowed("/signin");
        assert_ne!(target_hash(&a), target_hash(&b));
    }
}
