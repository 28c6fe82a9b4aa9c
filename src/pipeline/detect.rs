//! The detection stage: parse each line, route it, run the detectors.
//!
//! Runs on its own thread because it is pure CPU; it receives batches of raw
//! lines and sends findings plus a per-batch completion marker, in order, to
//! the incident stage, which acknowledges a batch only after the findings
//! sent before its marker are stored.

use super::activity::ActivityTracker;
use super::stats::PipelineStats;
use super::StageMsg;
use gatewatch_alerting::Watermark;
use gatewatch_detector::{Engine, Event, EventTime, Finding};
use gatewatch_ingest::{Format, FormatKind, Origin, ParseError, RecordBatch};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The parsers of one source: its format, and per-topic formats for Kafka.
pub struct Parsers {
    default: Box<dyn Format>,
    by_topic: Vec<(String, Box<dyn Format>)>,
}

impl Parsers {
    /// Builds the parsers of `spec` with `build`.
    pub fn build<E>(
        spec: &super::SourceFormat,
        build: impl Fn(FormatKind) -> Result<Box<dyn Format>, E>,
    ) -> Result<Parsers, E> {
        Ok(Parsers {
            default: build(spec.default)?,
            by_topic: spec
                .by_topic
                .iter()
                .map(|(t, k)| Ok((t.clone(), build(*k)?)))
                .collect::<Result<_, E>>()?,
        })
    }

    /// The parser for a batch from `origin`.
    fn for_origin(&self, origin: &Origin) -> &dyn Format {
        if let Origin::Kafka { topic, .. } = origin {
            if let Some((_, f)) = self.by_topic.iter().find(|(t, _)| t.as_str() == &**topic) {
                return f.as_ref();
            }
        }
        self.default.as_ref()
    }
}

/// Everything the detection thread owns.
pub struct DetectStage {
    /// The parsers of each source, indexed by `SourceId`.
    pub formats: Vec<Parsers>,
    /// The detectors.
    pub engine: Engine,
    /// Shared counters.
    pub stats: Arc<PipelineStats>,
    /// Rejected lines logged per (source, reason) before going quiet.
    pub samples_per_reason: u32,
    /// Told the newest event time after every batch, for auto-resolve.
    pub watermark: Option<Watermark>,
    /// Batches processed (paces the tracked-client gauges).
    pub batches: u64,
    /// Per-minute counts of clients with findings, when recorded.
    pub activity: Option<ActivityTracker>,
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
        let Some(parsers) = self.formats.get(source) else {
            tracing::error!(source, "Batch from an unknown source dropped.");
            return;
        };
        let format = parsers.for_origin(&batch.origin);
        let mut tally = Tally::default();
        let mut many = Vec::new();
        let before = findings.len();
        for i in 0..batch.len() {
            let line = batch.line(i);
            match format.parse(line) {
                Ok(ev) => tally.accept(
                    ev,
                    batch.source,
                    &mut self.engine,
                    self.activity.as_mut(),
                    findings,
                ),
                // A batched JSON array (Kong http-log, APISIX http-logger):
                // every element is a request.
                Err(ParseError::Batch { .. }) => {
                    format.parse_many(line, &mut many);
                    for r in many.drain(..) {
                        match r {
                            Ok(ev) => tally.accept(
                                ev,
                                batch.source,
                                &mut self.engine,
                                self.activity.as_mut(),
                                findings,
                            ),
                            Err(err) => tally.reject(&err),
                        }
                    }
                }
                Err(err) => {
                    tally.reject(&err);
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
        s.parsed.fetch_add(tally.parsed, Relaxed);
        s.truncated.fetch_add(u64::from(batch.truncated), Relaxed);
        if !tally.rejected.is_empty() {
            if let Ok(mut m) = s.rejected.lock() {
                for (reason, n) in tally.rejected {
                    *m.entry(reason).or_insert(0) += n;
                }
            }
        }
        if tally.newest > 0 {
            self.stats
                .newest_event_ms
                .fetch_max(tally.newest as u64, Relaxed);
            if let Some(w) = &self.watermark {
                w.advance(EventTime::from_millis(tally.newest));
            }
        }
        for f in &findings[before..] {
            self.stats.findings[PipelineStats::kind_index(f.kind)].fetch_add(1, Relaxed);
        }
        self.batches += 1;
        if self.batches % 64 == 1 {
            self.publish_tracked();
        }
    }

    /// Copies each shard's tracked-client count into the shared gauges
    /// (every few batches: it walks every detector).
    fn publish_tracked(&self) {
        for (shard, detectors) in self.engine.stats().iter().enumerate() {
            let tracked = detectors.iter().map(|d| d.tracked).max().unwrap_or(0);
            if let Some(g) = self.stats.tracked_clients.get(shard) {
                g.store(tracked as u64, Relaxed);
            }
        }
    }
}

/// Per-batch counts, added to the shared counters once per batch.
#[derive(Default)]
struct Tally {
    parsed: u64,
    newest: i64,
    rejected: BTreeMap<&'static str, u64>,
}

impl Tally {
    /// Runs the detectors on a parsed event.
    fn accept(
        &mut self,
        mut ev: Event<'_>,
        source: u16,
        engine: &mut Engine,
        activity: Option<&mut ActivityTracker>,
        findings: &mut Vec<Finding>,
    ) {
        ev.source = source;
        self.newest = self.newest.max(ev.ts.millis());
        engine.observe(&ev, findings);
        if let Some(a) = activity {
            a.observe(&ev);
        }
        self.parsed += 1;
    }

    fn reject(&mut self, err: &ParseError) {
        *self.rejected.entry(err.reason()).or_insert(0) += 1;
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
