//! Pipeline counters: read by the replay summary, `/metrics` and tests.
//!
//! Counters are plain atomics bumped once per batch (never per line) from a
//! stage-local tally, so counting costs nothing on the hot path.

use gatewatch_detector::IncidentKind;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Counters for one source.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Lines received.
    pub lines: AtomicU64,
    /// Lines that became events.
    pub parsed: AtomicU64,
    /// Lines cut at the maximum line length.
    pub truncated: AtomicU64,
    /// Rejected lines by reason (`ParseError::reason`).
    pub rejected: Mutex<BTreeMap<&'static str, u64>>,
}

/// Counters for the whole pipeline.
#[derive(Debug)]
pub struct PipelineStats {
    /// Per source, indexed by `SourceId`.
    pub sources: Vec<SourceStats>,
    /// Findings emitted by detectors, by kind.
    pub findings: [AtomicU64; 3],
    /// Incidents created, by kind.
    pub incidents_created: [AtomicU64; 3],
    /// Incident updates (same incident, new information), by kind.
    pub incidents_updated: [AtomicU64; 3],
    /// Findings the store refused as data (see `StoreError::is_data_error`),
    /// by kind.
    pub incidents_refused: [AtomicU64; 3],
    /// Newest event time seen (ms), for lag.
    pub newest_event_ms: AtomicU64,
    /// Clients tracked by each detector shard (the largest detector table).
    pub tracked_clients: Vec<AtomicU64>,
}

impl PipelineStats {
    /// Counters for `sources` sources and `shards` detector shards.
    pub fn new(sources: usize, shards: usize) -> PipelineStats {
        PipelineStats {
            sources: (0..sources).map(|_| SourceStats::default()).collect(),
            findings: Default::default(),
            incidents_created: Default::default(),
            incidents_updated: Default::default(),
            incidents_refused: Default::default(),
            newest_event_ms: AtomicU64::new(0),
            tracked_clients: (0..shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Index of a kind in the per-kind arrays.
    pub fn kind_index(kind: IncidentKind) -> usize {
        IncidentKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0)
    }

    /// Counts findings by kind.
    pub fn count_findings(&self, findings: &[gatewatch_detector::Finding]) {
        for f in findings {
            self.findings[Self::kind_index(f.kind)].fetch_add(1, Relaxed);
        }
    }

    /// Sets shard `shard`'s tracked-client gauge from its detectors' sizes
    /// (the largest table, as that is what the client cap bounds).
    pub fn publish_tracked(
        &self,
        shard: usize,
        detectors: &[gatewatch_detector::engine::DetectorStats],
    ) {
        let tracked = detectors.iter().map(|d| d.tracked).max().unwrap_or(0);
        if let Some(g) = self.tracked_clients.get(shard) {
            g.store(tracked as u64, Relaxed);
        }
    }

    /// Totals over every source: (lines, parsed, truncated, rejected by reason).
    pub fn totals(&self) -> (u64, u64, u64, BTreeMap<&'static str, u64>) {
        let mut rejected = BTreeMap::new();
        let (mut lines, mut parsed, mut truncated) = (0, 0, 0);
        for s in &self.sources {
            lines += s.lines.load(Relaxed);
            parsed += s.parsed.load(Relaxed);
            truncated += s.truncated.load(Relaxed);
            for (reason, n) in s.rejected.lock().map(|m| m.clone()).unwrap_or_default() {
                *rejected.entry(reason).or_insert(0) += n;
            }
        }
        (lines, parsed, truncated, rejected)
    }

    /// Incidents created per kind, by name.
    pub fn incidents_by_kind(&self) -> BTreeMap<&'static str, u64> {
        IncidentKind::ALL
            .iter()
            .map(|k| {
                (
                    k.as_str(),
                    self.incidents_created[Self::kind_index(*k)].load(Relaxed),
                )
            })
            .collect()
    }
}
