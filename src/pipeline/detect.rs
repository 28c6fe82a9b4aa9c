//! The detection stage: parse each line, route it, run the detectors.
//!
//! Runs on its own thread because it is pure CPU; it receives batches of raw
//! lines and sends findings plus a per-batch completion marker, in order, to
//! the incident stage, which acknowledges a batch only after the findings
//! sent before its marker are stored.

use super::stats::PipelineStats;
use super::StageMsg;
use gatewatch_detector::{Engine, Finding};
use gatewatch_ingest::{Format, ParseError, RecordBatch};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Everything the detection thread owns.
pub struct DetectStage {
    /// One parser per source, indexed by `SourceId`.
    pub formats: Vec<Box<dyn Format>>,
    /// The detectors.
    pub engine: Engine,
    /// Shared counters.
    pub stats: Arc<PipelineStats>,
    /// Rejected lines logged per (source, reason) before going quiet.
    pub samples_per_reason: u32,
}

impl DetectStage {
    /// Consumes batches until the input channel closes, then flushes.
    pub fn run(mut self, mut input: mpsc::Receiver<RecordBatch>, output: mpsc::Sender<StageMsg>) {
        let mut findings = Vec::new();
        let mut sampled: BTreeMap<(u16, &'static str), u32> = BTreeMap::new();
        while let Some(mut batch) = input.blocking_recv() {
            self.process(&batch, &mut findings, &mut sampled);
            if !findings.is_empty()
                && output
                    .blocking_send(StageMsg::Findings(std::mem::take(&mut findings)))
                    .is_err()
            {
                return;
            }
            if output
                .blocking_send(StageMsg::BatchDone(batch.ack.take()))
                .is_err()
            {
                return;
            }
        }
    }

    /// Parses and detects on every line of one batch.
    fn process(
        &mut self,
        batch: &RecordBatch,
        findings: &mut Vec<Finding>,
        sampled: &mut BTreeMap<(u16, &'static str), u32>,
    ) {
        let source = usize::from(batch.source);
        let Some(format) = self.formats.get(source) else {
            tracing::error!(source, "Batch from an unknown source dropped.");
            return;
        };
        let mut parsed = 0u64;
        let mut newest = 0i64;
        let mut rejected: BTreeMap<&'static str, u64> = BTreeMap::new();
        let before = findings.len();
        for i in 0..batch.len() {
            match format.parse(batch.line(i)) {
                Ok(mut ev) => {
                    ev.source = batch.source;
                    newest = newest.max(ev.ts.millis());
                    self.engine.observe(&ev, findings);
                    parsed += 1;
                }
                Err(err) => {
                    *rejected.entry(err.reason()).or_insert(0) += 1;
                    let seen = sampled.entry((batch.source, err.reason())).or_insert(0);
                    if *seen < self.samples_per_reason {
                        *seen += 1;
                        log_rejected(batch, i, &err);
                    }
                }
            }
        }
        self.engine.advance(findings);

        let s = &self.stats.sources[source];
        s.lines.fetch_add(batch.len() as u64, Relaxed);
        s.parsed.fetch_add(parsed, Relaxed);
        s.truncated.fetch_add(u64::from(batch.truncated), Relaxed);
        if !rejected.is_empty() {
            if let Ok(mut m) = s.rejected.lock() {
                for (reason, n) in rejected {
                    *m.entry(reason).or_insert(0) += n;
                }
            }
        }
        if newest > 0 {
            self.stats.newest_event_ms.fetch_max(newest as u64, Relaxed);
        }
        for f in &findings[before..] {
            self.stats.findings[PipelineStats::kind_index(f.kind)].fetch_add(1, Relaxed);
        }
    }
}

/// Logs one rejected line with its position and a bounded, escaped excerpt
/// (the line is attacker-influenced: `{:?}` escapes control characters and
/// quotes, so it cannot forge log lines).
fn log_rejected(batch: &RecordBatch, i: usize, err: &ParseError) {
    let line = batch.line(i);
    let excerpt = String::from_utf8_lossy(&line[..line.len().min(160)]);
    tracing::warn!(
        at = %batch.origin.locate(i),
        reason = err.reason(),
        error = %err,
        excerpt = ?excerpt,
        "Rejected a log line."
    );
}
