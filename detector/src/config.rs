//! Detection configuration: every threshold a user may want to change.
//!
//! Each struct documents its fields; the defaults are the ones the README
//! describes and the test-suite relies on.

use serde::Deserialize;
use thiserror::Error;

/// Why a detection config is unusable.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A field is out of its valid range.
    #[error("detection.{field}: {reason}")]
    Invalid {
        /// Dotted path of the field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A pattern does not compile.
    #[error("detection.{field}: pattern {pattern:?} is not a valid regular expression: {source}")]
    BadPattern {
        /// Dotted path of the field.
        field: &'static str,
        /// The offending pattern.
        pattern: String,
        /// The regex error.
        source: regex::Error,
    },
}

/// What per-client state is keyed on.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientKeyMode {
    /// The client address (IPv6 grouped by `ipv6_prefix`).
    #[default]
    Ip,
    /// The authenticated identity when the log carries one, else the address.
    Identity,
}

/// The `[detection]` section.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// What a "client" is: `ip` (default) or `identity`.
    pub client_key: ClientKeyMode,
    /// IPv6 clients are grouped by this many prefix bits (64 = one subscriber).
    pub ipv6_prefix: u8,
    /// Upper bound on clients tracked by each detector, over all shards; the
    /// least recently seen are evicted beyond it, so a flood of spoofed
    /// addresses cannot exhaust memory.
    pub max_tracked_clients: usize,
    /// Seconds of event time after which an idle client's state is dropped.
    pub idle_expiry_secs: u64,
    /// Seconds that events may arrive out of order (the watermark lags the
    /// newest event time by this much).
    pub allowed_lateness_secs: u64,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            client_key: ClientKeyMode::Ip,
            ipv6_prefix: 64,
            max_tracked_clients: 1_000_000,
            idle_expiry_secs: 6 * 3600,
            allowed_lateness_secs: 5,
        }
    }
}

impl DetectionConfig {
    /// Checks cross-field rules before anything is built.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ipv6_prefix == 0 || self.ipv6_prefix > 128 {
            return Err(ConfigError::Invalid {
                field: "ipv6_prefix",
                reason: format!("must be 1..=128, got {}", self.ipv6_prefix),
            });
        }
        if self.max_tracked_clients < 1000 {
            return Err(ConfigError::Invalid {
                field: "max_tracked_clients",
                reason: format!("must be at least 1000, got {}", self.max_tracked_clients),
            });
        }
        Ok(())
    }
}
