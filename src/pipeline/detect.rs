//! The detection stage: route each event, run the detectors.
//!
//! The [`DetectStage`] takes the parse threads' batches back in the order
//! the sources delivered them ([`ParsedInput`]), runs the detectors on their
//! events, and sends findings plus a per-batch completion marker, in order,
//! to the incident stage, which acknowledges a batch only after the findings
//! sent before its marker are stored. Kafka batches (one partition each)
//! first go through the [`PartitionMerger`], which hands their events to
//! the detectors in event-time order across partitions. Detection sees the
//! same events in the same order whatever the threads, so findings do not
//! depend on them.

use super::activity::ActivityTracker;
use super::order::{PartitionMerger, Released};
use super::parse::{Parsed, ParsedInput};
use super::shards::ShardPool;
use super::stats::PipelineStats;
use super::StageMsg;
use gatewatch_alerting::Watermark;
use gatewatch_detector::{Engine, EngineState, Event, EventTime, Finding, RequestClass};
use gatewatch_ingest::Acknowledge;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The detection thread: ordering, detecting.
pub struct DetectStage {
    /// Kafka partitions back into event-time order.
    pub merger: PartitionMerger,
    /// Events to findings.
    pub detecting: Detecting,
    /// Set when the service is stopping: the merger stops waiting for
    /// quiet partitions and lets everything it holds through, so those
    /// batches are acknowledged (and their offsets committed) before the
    /// sources give up waiting.
    pub draining: Arc<AtomicBool>,
}

/// How often a merger holding events looks at [`DetectStage::draining`].
const DRAIN_CHECK: Duration = Duration::from_millis(100);

/// What the receive loop got.
enum Received {
    Batch(Parsed),
    Timeout,
    Closed,
}

impl DetectStage {
    /// Consumes parsed batches until the input channel closes, then
    /// flushes. `runtime` lets this plain thread wait for a batch with a
    /// timeout (while the merger waits for a quiet partition).
    /// Returns detection's state when it is kept
    /// ([`Detecting::keep_state`]).
    pub fn run(
        mut self,
        input: ParsedInput,
        output: mpsc::Sender<StageMsg>,
        runtime: tokio::runtime::Handle,
    ) -> Option<EngineState> {
        self.detect(input, &output, runtime);
        drop(output);
        self.detecting.finish()
    }

    fn detect(
        &mut self,
        mut input: ParsedInput,
        output: &mpsc::Sender<StageMsg>,
        runtime: tokio::runtime::Handle,
    ) {
        loop {
            let wait = self
                .merger
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()).min(DRAIN_CHECK));
            let received = match wait {
                None => input
                    .blocking_recv()
                    .map_or(Received::Closed, Received::Batch),
                Some(wait) => runtime.block_on(async {
                    match tokio::time::timeout(wait, input.recv()).await {
                        Ok(Some(batch)) => Received::Batch(batch),
                        Ok(None) => Received::Closed,
                        Err(_) => Received::Timeout,
                    }
                }),
            };
            let closed = matches!(received, Received::Closed);
            match received {
                Received::Batch(Parsed::Partition {
                    lane,
                    caught_up: true,
                    ..
                }) => self.merger.caught_up(&lane),
                Received::Batch(Parsed::Partition {
                    lane,
                    events,
                    ack,
                    backlog,
                    ..
                }) => self.merger.push(lane, events, ack, backlog, Instant::now()),
                Received::Batch(Parsed::Lines { text, events, ack }) => {
                    for ev in events {
                        let class = ev.class();
                        self.detecting.observe(ev.unpark(&text), Some(class));
                    }
                    if !self.detecting.end_batch(ack, output) {
                        return;
                    }
                }
                Received::Timeout | Received::Closed => {}
            }
            let flush = closed || self.draining.load(Relaxed);
            while let Some(released) = self.merger.pop(Instant::now(), flush) {
                match released {
                    Released::Event(ev) => self.detecting.observe(ev, None),
                    Released::Done(ack) => {
                        if !self.detecting.end_batch(ack, output) {
                            return;
                        }
                    }
                }
            }
            if closed {
                return;
            }
        }
    }
}

/// Running the detectors on events in order, and handing their findings on.
pub struct Detecting {
    /// The detectors, on this thread or on shard threads.
    pub detectors: Detectors,
    /// Shared counters.
    pub stats: Arc<PipelineStats>,
    /// Told the newest event time after every batch, for auto-resolve.
    pub watermark: Option<Watermark>,
    /// Newest event time seen (ms).
    pub newest: i64,
    /// Hand detection's state back at the end, to be saved.
    pub keep_state: bool,
}

/// Where the detectors run.
pub enum Detectors {
    /// On the detection thread (one shard; the default).
    Inline(InlineDetectors),
    /// Routed here, run on shard threads ([`ShardPool`]).
    Sharded(ShardPool),
}

impl Detecting {
    /// Runs the detectors on one event, of class `class` when a parse
    /// thread classified it already.
    fn observe(&mut self, ev: Event<'_>, class: Option<RequestClass>) {
        self.newest = self.newest.max(ev.ts.millis());
        match &mut self.detectors {
            Detectors::Inline(inline) => inline.observe(&ev, class, &self.stats),
            Detectors::Sharded(pool) => pool.observe(&ev, class),
        }
    }

    /// Closes a batch: publishes the event-time watermark and hands the
    /// batch's findings and completion marker on. `false` when the incident
    /// stage is gone.
    fn end_batch(
        &mut self,
        ack: Option<Box<dyn Acknowledge>>,
        output: &mpsc::Sender<StageMsg>,
    ) -> bool {
        if self.newest > 0 {
            self.stats
                .newest_event_ms
                .fetch_max(self.newest as u64, Relaxed);
            if let Some(w) = &self.watermark {
                w.advance(EventTime::from_millis(self.newest));
            }
        }
        match &mut self.detectors {
            Detectors::Inline(inline) => inline.end_batch(ack, output, &self.stats),
            Detectors::Sharded(pool) => pool.end_batch(ack),
        }
    }

    /// Waits for the shard threads after the last batch (their input
    /// closes with the pool), passing a shard's panic on; then gives
    /// detection's state when it is kept.
    fn finish(self) -> Option<EngineState> {
        let saved = match self.detectors {
            Detectors::Inline(inline) => self.keep_state.then(|| inline.engine.save()),
            Detectors::Sharded(pool) => {
                let (router, shards) = pool.finish();
                self.keep_state
                    .then(|| EngineState::gather(&router, &shards))
            }
        };
        match saved? {
            Ok(state) => Some(state),
            Err(e) => {
                tracing::error!(error = %e, "Cannot save the detector state.");
                None
            }
        }
    }
}

/// Router and shards inline on the detection thread.
pub struct InlineDetectors {
    /// The detectors.
    pub engine: Engine,
    /// Per-minute counts of clients with findings, when recorded.
    pub activity: Option<ActivityTracker>,
    /// Findings since the last batch ended.
    pub findings: Vec<Finding>,
    /// Batches ended (paces the tracked-client gauges).
    pub batches: u64,
}

impl InlineDetectors {
    fn observe(&mut self, ev: &Event<'_>, class: Option<RequestClass>, stats: &PipelineStats) {
        let before = self.findings.len();
        match class {
            Some(class) => self
                .engine
                .observe_classified(ev, class, &mut self.findings),
            None => self.engine.observe(ev, &mut self.findings),
        }
        if let Some(a) = &mut self.activity {
            a.observe(ev);
        }
        stats.count_findings(&self.findings[before..]);
    }

    /// Advances the detectors, publishes counters, and sends activity,
    /// findings and the batch's completion marker downstream.
    fn end_batch(
        &mut self,
        ack: Option<Box<dyn Acknowledge>>,
        output: &mpsc::Sender<StageMsg>,
        stats: &PipelineStats,
    ) -> bool {
        self.engine.advance(&mut self.findings);
        self.batches += 1;
        if self.batches % 64 == 1 {
            self.publish_tracked(stats);
        }
        if let Some(activity) = &mut self.activity {
            activity.watch(&self.findings);
            let counts = activity.flush();
            if !counts.is_empty() && output.blocking_send(StageMsg::Activity(counts)).is_err() {
                return false;
            }
        }
        if !self.findings.is_empty()
            && output
                .blocking_send(StageMsg::Findings(std::mem::take(&mut self.findings)))
                .is_err()
        {
            return false;
        }
        output.blocking_send(StageMsg::BatchDone(ack)).is_ok()
    }

    /// Copies each shard's tracked-client count into the shared gauges
    /// (every few batches: it walks every detector).
    fn publish_tracked(&self, stats: &PipelineStats) {
        for (shard, detectors) in self.engine.stats().iter().enumerate() {
            stats.publish_tracked(shard, detectors);
        }
    }
}
