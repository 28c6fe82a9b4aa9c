//! The parse and detection stages: parse each line, route it, run the
//! detectors.
//!
//! Both are pure CPU, so each runs on its own thread and a replay keeps two
//! cores busy: the [`ParseStage`] turns batches of raw lines into events,
//! the [`DetectStage`] runs the detectors on them in the same order, and
//! sends findings plus a per-batch completion marker, in order, to the
//! incident stage, which acknowledges a batch only after the findings sent
//! before its marker are stored. Kafka batches (one partition each) first go
//! through the [`PartitionMerger`], which hands their events to the
//! detectors in event-time order across partitions. Detection sees the same
//! events in the same order whatever the threads, so findings do not depend
//! on them.
//!
//! Events borrow their strings from their batch's bytes. To cross to the
//! detection thread, the parse thread copies the event's strings into one
//! text buffer per batch and keeps their ranges ([`Parked`]); the
//! detection thread borrows them again from that buffer.
//! The batch's bytes go back to their reader at once, and the detection
//! thread never re-checks UTF-8: the buffer is a `String`.

use super::activity::ActivityTracker;
use super::order::{PartitionMerger, Released};
use super::stats::PipelineStats;
use super::StageMsg;
use gatewatch_alerting::Watermark;
use gatewatch_detector::{Engine, Event, EventTime, Finding};
use gatewatch_ingest::{Acknowledge, Format, FormatKind, Origin, ParseError, RecordBatch};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;
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

/// What the parse thread hands the detection thread, in batch order.
pub enum Parsed {
    /// A batch's events in line order, their strings parked in `text`.
    Lines {
        /// The events' strings.
        text: String,
        /// Its events.
        events: Vec<Parked>,
        /// The batch's acknowledgement.
        ack: Option<Box<dyn Acknowledge>>,
    },
    /// A Kafka partition's batch, for the [`PartitionMerger`].
    Partition {
        /// Source, topic and partition.
        lane: super::order::LaneId,
        /// Its events.
        events: Vec<Event<'static>>,
        /// Its acknowledgement.
        ack: Option<Box<dyn Acknowledge>>,
        /// Whether the broker held more messages past it.
        backlog: bool,
    },
}

/// The parse thread.
pub struct ParseStage {
    /// Lines to events.
    pub parsing: Parsing,
    /// Bytes to reserve for a batch's text (the last batch's, and some).
    pub text_hint: usize,
}

impl ParseStage {
    /// Parses batches until the input channel closes or the detection
    /// thread is gone.
    pub fn run(mut self, mut input: mpsc::Receiver<RecordBatch>, output: mpsc::Sender<Parsed>) {
        while let Some(mut batch) = input.blocking_recv() {
            let parsed = match batch.origin {
                Origin::Kafka {
                    ref topic,
                    partition,
                    backlog,
                    ..
                } => {
                    let mut events = Vec::with_capacity(batch.len());
                    self.parsing
                        .parse(&batch, |ev| events.push(ev.into_owned()));
                    Parsed::Partition {
                        lane: (batch.source, topic.clone(), partition),
                        events,
                        ack: batch.ack.take(),
                        backlog,
                    }
                }
                _ => {
                    let mut events = Vec::with_capacity(batch.len());
                    let mut text = String::with_capacity(self.text_hint);
                    self.parsing
                        .parse(&batch, |ev| events.push(Parked::park(ev, &mut text)));
                    self.text_hint = text.len() + text.len() / 8;
                    Parsed::Lines {
                        text,
                        events,
                        ack: batch.ack.take(),
                    }
                }
            };
            if output.blocking_send(parsed).is_err() {
                return;
            }
        }
    }
}

/// One of a parked event's strings: a range of its batch's text buffer.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// An absent optional string.
    const NONE: Span = Span {
        start: u32::MAX,
        end: u32::MAX,
    };

    /// Copies `s` to the end of `text`.
    fn park(s: &str, text: &mut String) -> Span {
        let start = text.len();
        text.push_str(s);
        match (u32::try_from(start), u32::try_from(text.len())) {
            (Ok(start), Ok(end)) => Span { start, end },
            // Beyond 4 GiB of text in one batch: cannot happen with
            // bounded batches; an empty string rather than a panic.
            _ => Span { start: 0, end: 0 },
        }
    }

    fn park_opt(s: Option<&str>, text: &mut String) -> Span {
        s.map_or(Span::NONE, |s| Span::park(s, text))
    }

    fn unpark(self, text: &str) -> Option<Cow<'_, str>> {
        // A span was cut at string ends when parked, so it is always found.
        (self.start != u32::MAX).then(|| {
            Cow::Borrowed(
                text.get(self.start as usize..self.end as usize)
                    .unwrap_or(""),
            )
        })
    }

    fn unpark_str(self, text: &str) -> Cow<'_, str> {
        self.unpark(text).unwrap_or(Cow::Borrowed(""))
    }
}

/// An event whose strings are ranges of its batch's text buffer, so it can
/// be sent to another thread without an allocation per string; small, as
/// a batch holds thousands.
pub struct Parked {
    ts: EventTime,
    ip: std::net::IpAddr,
    method: gatewatch_detector::Method,
    status: u16,
    source: gatewatch_detector::SourceId,
    latency_ms: Option<u32>,
    bytes: u64,
    identity: Span,
    user: Span,
    host: Span,
    path: Span,
    query: Span,
    route: Span,
    user_agent: Span,
}

impl Parked {
    /// Parks `ev`, copying its strings to the end of `text`.
    fn park(ev: Event<'_>, text: &mut String) -> Parked {
        Parked {
            ts: ev.ts,
            ip: ev.ip,
            method: ev.method,
            status: ev.status,
            source: ev.source,
            latency_ms: ev.latency_ms,
            bytes: ev.bytes,
            identity: Span::park_opt(ev.identity.as_deref(), text),
            user: Span::park_opt(ev.user.as_deref(), text),
            host: Span::park(&ev.host, text),
            path: Span::park(&ev.path, text),
            query: Span::park(&ev.query, text),
            route: Span::park_opt(ev.route.as_deref(), text),
            user_agent: Span::park(&ev.user_agent, text),
        }
    }

    /// The event again, borrowing from `text` (the buffer it was parked in).
    fn unpark(self, text: &str) -> Event<'_> {
        Event {
            ts: self.ts,
            ip: self.ip,
            identity: self.identity.unpark(text),
            user: self.user.unpark(text),
            method: self.method,
            host: self.host.unpark_str(text),
            path: self.path.unpark_str(text),
            query: self.query.unpark_str(text),
            route: self.route.unpark(text),
            status: self.status,
            bytes: self.bytes,
            latency_ms: self.latency_ms,
            user_agent: self.user_agent.unpark_str(text),
            source: self.source,
        }
    }
}

/// The detection thread: ordering, detecting.
pub struct DetectStage {
    /// Kafka partitions back into event-time order.
    pub merger: PartitionMerger,
    /// Events to findings.
    pub detecting: Detecting,
}

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
    pub fn run(
        mut self,
        mut input: mpsc::Receiver<Parsed>,
        output: mpsc::Sender<StageMsg>,
        runtime: tokio::runtime::Handle,
    ) {
        loop {
            let wait = self
                .merger
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
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
                    events,
                    ack,
                    backlog,
                }) => self.merger.push(lane, events, ack, backlog, Instant::now()),
                Received::Batch(Parsed::Lines { text, events, ack }) => {
                    for ev in events {
                        self.detecting.observe(ev.unpark(&text));
                    }
                    if !self.detecting.end_batch(ack, &output) {
                        return;
                    }
                }
                Received::Timeout | Received::Closed => {}
            }
            while let Some(released) = self.merger.pop(Instant::now(), closed) {
                match released {
                    Released::Event(ev) => self.detecting.observe(ev),
                    Released::Done(ack) => {
                        if !self.detecting.end_batch(ack, &output) {
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

/// Turning lines into events; counting and sampling the lines that fail.
pub struct Parsing {
    /// The parsers of each source, indexed by `SourceId`.
    pub formats: Vec<Parsers>,
    /// Shared counters.
    pub stats: Arc<PipelineStats>,
    /// Rejected lines logged per (source, reason) before going quiet.
    pub samples_per_reason: u32,
    /// Rejected lines logged so far per (source, reason).
    pub sampled: BTreeMap<(u16, &'static str), u32>,
}

impl Parsing {
    /// Parses every line of `batch`, handing each event to `each`.
    pub(crate) fn parse<'b>(&mut self, batch: &'b RecordBatch, mut each: impl FnMut(Event<'b>)) {
        let source = usize::from(batch.source);
        let Some(parsers) = self.formats.get(source) else {
            tracing::error!(source, "Batch from an unknown source dropped.");
            return;
        };
        let format = parsers.for_origin(&batch.origin);
        let mut parsed = 0u64;
        let mut rejected: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut many = Vec::new();
        let mut accept = |mut ev: Event<'b>| {
            ev.source = batch.source;
            parsed += 1;
            each(ev);
        };
        for i in 0..batch.len() {
            let line = batch.line(i);
            match format.parse(line) {
                Ok(ev) => accept(ev),
                // A batched JSON array (Kong http-log, APISIX http-logger):
                // every element is a request.
                Err(ParseError::Batch { .. }) => {
                    format.parse_many(line, &mut many);
                    for r in many.drain(..) {
                        match r {
                            Ok(ev) => accept(ev),
                            Err(err) => *rejected.entry(err.reason()).or_insert(0) += 1,
                        }
                    }
                }
                Err(err) => {
                    *rejected.entry(err.reason()).or_insert(0) += 1;
                    let seen = self
                        .sampled
                        .entry((batch.source, err.reason()))
                        .or_insert(0);
                    if *seen < self.samples_per_reason {
                        *seen += 1;
                        log_rejected(batch, i, &err);
                    }
                }
            }
        }
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
    }
}

/// Running the detectors on events in order, and handing their findings on.
pub struct Detecting {
    /// The detectors.
    pub engine: Engine,
    /// Shared counters.
    pub stats: Arc<PipelineStats>,
    /// Told the newest event time after every batch, for auto-resolve.
    pub watermark: Option<Watermark>,
    /// Per-minute counts of clients with findings, when recorded.
    pub activity: Option<ActivityTracker>,
    /// Findings since the last batch ended.
    pub findings: Vec<Finding>,
    /// Newest event time seen (ms).
    pub newest: i64,
    /// Batches ended (paces the tracked-client gauges).
    pub batches: u64,
}

impl Detecting {
    /// Runs the detectors on one event.
    fn observe(&mut self, ev: Event<'_>) {
        self.newest = self.newest.max(ev.ts.millis());
        let before = self.findings.len();
        self.engine.observe(&ev, &mut self.findings);
        if let Some(a) = &mut self.activity {
            a.observe(&ev);
        }
        for f in &self.findings[before..] {
            self.stats.findings[PipelineStats::kind_index(f.kind)].fetch_add(1, Relaxed);
        }
    }

    /// Closes a batch: advances the detectors, publishes counters, and sends
    /// activity, findings and the batch's completion marker downstream.
    /// `false` when the incident stage is gone.
    fn end_batch(
        &mut self,
        ack: Option<Box<dyn Acknowledge>>,
        output: &mpsc::Sender<StageMsg>,
    ) -> bool {
        self.engine.advance(&mut self.findings);
        if self.newest > 0 {
            self.stats
                .newest_event_ms
                .fetch_max(self.newest as u64, Relaxed);
            if let Some(w) = &self.watermark {
                w.advance(EventTime::from_millis(self.newest));
            }
        }
        self.batches += 1;
        if self.batches % 64 == 1 {
            self.publish_tracked();
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
    fn publish_tracked(&self) {
        for (shard, detectors) in self.engine.stats().iter().enumerate() {
            let tracked = detectors.iter().map(|d| d.tracked).max().unwrap_or(0);
            if let Some(g) = self.stats.tracked_clients.get(shard) {
                g.store(tracked as u64, Relaxed);
            }
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
