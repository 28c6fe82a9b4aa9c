//! Detector state across a restart.
//!
//! Detectors learn as they go: each client's baseline, the windows an
//! attack is counted in, the evidence of one not reported yet. A process
//! that stops cleanly (every batch it read acknowledged) saves all of it,
//! and the next start takes it back, so a deploy neither resets every
//! client to "new" nor cuts a slow attack's count in half. Detection runs on
//! event time, so a replay split in two with the state carried between the
//! halves finds exactly what one replay of the whole finds.
//!
//! A saved state is taken back only by the same format version, under the
//! same detection configuration (a hash of it) and the same shard count:
//! a state learned with other thresholds or windows would not mean what the
//! detectors think it means. Otherwise decoding fails with
//! [`StateError::Mismatch`], and the caller starts fresh and says why.

use crate::config::DetectionConfig;
use crate::event::StableHasher;
use crate::population::{PopulationState, PopulationView};
use crate::time::EventTime;
use serde::{Deserialize, Serialize};
use std::hash::Hasher;
use thiserror::Error;

/// Why a state could not be saved or taken back.
#[derive(Debug, Error)]
pub enum StateError {
    /// Encoding failed (a detector holds something the encoding refuses).
    #[error("detector state could not be encoded: {0}")]
    Encode(postcard::Error),
    /// The bytes are not a state this version wrote (cut off, damaged).
    #[error("detector state is damaged: {0}")]
    Decode(postcard::Error),
    /// A sound state, saved under other conditions.
    #[error("detector state was saved {0}")]
    Mismatch(String),
}

/// Encodes one part of a state.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StateError> {
    postcard::to_stdvec(value).map_err(StateError::Encode)
}

/// Decodes one part of a state, which must use every byte: bytes left
/// over mean a layout this version does not know.
pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StateError> {
    match postcard::take_from_bytes(bytes).map_err(StateError::Decode)? {
        (value, []) => Ok(value),
        (_, rest) => Err(StateError::Mismatch(format!(
            "in a layout this version does not read ({} bytes left over)",
            rest.len()
        ))),
    }
}

/// The refusal of a state saved for another number of shards.
pub(crate) fn shard_mismatch(saved: usize, now: usize) -> StateError {
    StateError::Mismatch(format!("with {saved} detection shards (now {now})"))
}

/// Leads every state file, so that another file is refused at once.
const MAGIC: [u8; 8] = *b"gwstate\0";
/// Bumped whenever any saved type changes shape.
const FORMAT: u32 = 1;

/// What the router keeps: site-wide figures and the newest event time
/// (from which the watermark and the lateness clamp follow).
#[derive(Serialize, Deserialize)]
pub struct RouterState {
    pub(crate) population: PopulationState,
    pub(crate) newest: EventTime,
}

/// What one shard keeps: the population view it was last sent, and each
/// detector's own encoding under its name.
#[derive(Serialize, Deserialize)]
pub struct ShardState {
    pub(crate) population: PopulationView,
    pub(crate) detectors: Vec<(String, Vec<u8>)>,
}

/// Under which conditions a state was saved.
#[derive(Serialize, Deserialize, PartialEq)]
struct Conditions {
    format: u32,
    config: u64,
    shards: u32,
}

impl Conditions {
    fn of(cfg: &DetectionConfig, shards: usize) -> Conditions {
        Conditions {
            format: FORMAT,
            config: config_hash(cfg),
            shards: u32::try_from(shards).unwrap_or(u32::MAX),
        }
    }
}

/// A hash of every detection setting. The configuration holds only
/// scalars, strings and lists, so its `Debug` text is the same for the same
/// settings in every process.
fn config_hash(cfg: &DetectionConfig) -> u64 {
    let mut h = StableHasher::default();
    h.write(format!("{cfg:?}").as_bytes());
    h.finish()
}

/// The whole detection state of a process: its router and every shard.
#[derive(Serialize, Deserialize)]
pub struct EngineState {
    /// The router's part.
    pub router: RouterState,
    /// Each shard's part, in shard order.
    pub shards: Vec<ShardState>,
}

impl EngineState {
    /// The state as bytes, marked with the configuration and shard count
    /// it was learned under.
    pub fn encode(&self, cfg: &DetectionConfig) -> Result<Vec<u8>, StateError> {
        let mut out = MAGIC.to_vec();
        out.extend(encode(&Conditions::of(cfg, self.shards.len()))?);
        out.extend(encode(self)?);
        Ok(out)
    }

    /// Reads a state saved by [`EngineState::encode`], refusing one saved by
    /// another format version, under another configuration or for another
    /// number of shards.
    pub fn decode(
        bytes: &[u8],
        cfg: &DetectionConfig,
        shards: usize,
    ) -> Result<EngineState, StateError> {
        let rest = bytes
            .strip_prefix(&MAGIC[..])
            .ok_or_else(|| StateError::Mismatch("by something else (not a state file)".into()))?;
        let (saved, rest): (Conditions, _) =
            postcard::take_from_bytes(rest).map_err(StateError::Decode)?;
        let now = Conditions::of(cfg, shards);
        if saved.format != now.format {
            return Err(StateError::Mismatch(format!(
                "in format {} (this version reads {})",
                saved.format, now.format
            )));
        }
        if saved.config != now.config {
            return Err(StateError::Mismatch(
                "under another detection configuration".into(),
            ));
        }
        if saved.shards != now.shards {
            return Err(shard_mismatch(saved.shards as usize, shards));
        }
        decode(rest)
    }
}
