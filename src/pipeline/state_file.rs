//! The detector state file: what detection learned, saved when the
//! pipeline stops cleanly and taken back when it starts (the format and its
//! checks are `gatewatch_detector::state`'s).
//!
//! A state is taken back once: as it is read the file is renamed
//! `detector-state.taken`, and that copy is removed when the next clean
//! stop has saved its own. So only the state of a clean stop is ever used:
//! after a crash (or a start that failed half-way) the next start begins
//! fresh, because the state of the stop before no longer matches what the
//! sources deliver; the `.taken` copy stays for an operator who wants it
//! back anyway. A file that cannot be used is set aside as
//! `detector-state.refused`, and detection starts fresh.

use anyhow::Context;
use gatewatch_detector::state::RouterState;
use gatewatch_detector::{DetectionConfig, EngineState, Shard};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file's name in `state_dir`.
pub const STATE_FILE: &str = "detector-state.bin";

/// Where detection keeps its state, and under which configuration.
#[derive(Clone, Debug)]
pub struct StateFile {
    /// The file.
    pub path: PathBuf,
    /// The detection configuration the state is learned under.
    pub detection: DetectionConfig,
}

impl StateFile {
    /// The state file at `path`, for state learned under `detection`.
    pub fn at(path: &Path, detection: &DetectionConfig) -> StateFile {
        StateFile {
            path: path.to_owned(),
            detection: detection.clone(),
        }
    }

    /// The state saved for `shards` detection shards, rebuilt as the
    /// router's part and the shards, if a usable one is there; the file is
    /// moved aside afterwards (as `.taken`, or as `.refused` with a warning
    /// saying why it was not usable).
    pub fn take(&self, shards: usize) -> Option<(RouterState, Vec<Shard>)> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "Cannot read the detector state; detection starts fresh.");
                return None;
            }
        };
        let usable = EngineState::decode(&bytes, &self.detection, shards)
            .and_then(|state| state.into_parts(&self.detection, shards));
        match usable {
            Ok(parts) => {
                if let Err(e) = std::fs::rename(&self.path, self.taken()) {
                    tracing::warn!(path = %self.path.display(), error = %e, "Cannot move the detector state taken back aside; detection starts fresh.");
                    return None;
                }
                tracing::info!(path = %self.path.display(), bytes = bytes.len(), "Detector state taken back from the last clean stop.");
                Some(parts)
            }
            Err(e) => {
                let aside = self.path.with_extension("refused");
                let moved = std::fs::rename(&self.path, &aside);
                tracing::warn!(
                    path = %self.path.display(),
                    set_aside = %aside.display(),
                    moved = moved.is_ok(),
                    error = %e,
                    "Detector state not used; detection starts fresh."
                );
                None
            }
        }
    }

    /// Where a state taken back is kept until the next one is saved.
    fn taken(&self) -> PathBuf {
        self.path.with_extension("taken")
    }

    /// Writes `state` atomically: a temporary file beside it, synced, then
    /// renamed over the old one.
    pub fn save(&self, state: &EngineState) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let bytes = state
            .encode(&self.detection)
            .context("Cannot encode the detector state")?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("Cannot create {}", dir.display()))?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("Cannot write {}", tmp.display()))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("Cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("Cannot write {}", self.path.display()))?;
        match std::fs::remove_file(self.taken()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %self.taken().display(), error = %e, "Cannot remove the state taken back at start.");
            }
            _ => {}
        }
        tracing::info!(
            path = %self.path.display(),
            bytes = bytes.len(),
            millis = started.elapsed().as_millis() as u64,
            "Detector state saved."
        );
        Ok(())
    }
}
