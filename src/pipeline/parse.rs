//! The parse stage: raw lines to events, on one or more threads.
//!
//! Parsing is the costliest step of the pipeline (a Kong JSON line is
//! about 1.6 KB), and batches are independent of each other, so it runs on
//! a [pool](start_pool) of threads: a dispatcher hands batch *i* to thread
//! *i mod n*, and the detection thread takes the results back in the same
//! round-robin order ([`ParsedInput`]). Detection therefore sees the events
//! in exactly the order the sources delivered them, whatever the thread
//! count: no reorder buffer, no sequence numbers, the same findings.
//!
//! Events borrow their strings from their batch's bytes. To cross to the
//! detection thread, a parse thread copies the event's strings into one
//! text buffer per batch and keeps their ranges ([`Parked`]); the
//! detection thread borrows them again from that buffer.
//! The batch's bytes go back to their reader at once, and the detection
//! thread never re-checks UTF-8: the buffer is a `String`.

use super::order::LaneId;
use super::stats::PipelineStats;
use gatewatch_detector::classify::Classifier;
use gatewatch_detector::{Event, EventTime, RequestClass};
use gatewatch_ingest::{Acknowledge, Format, FormatKind, Origin, ParseError, RecordBatch};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Rejected lines logged so far per (source, reason), shared by the parse
/// threads so the sampling limit holds for the pipeline, not per thread.
pub type RejectSamples = Arc<Mutex<BTreeMap<(u16, &'static str), u32>>>;

/// The parse threads' output, read back in dispatch order.
pub struct ParsedInput {
    lanes: Vec<mpsc::Receiver<Parsed>>,
    next: usize,
}

impl ParsedInput {
    /// The next batch in dispatch order, or `None` once every thread is done.
    pub async fn recv(&mut self) -> Option<Parsed> {
        let parsed = self.lanes[self.next].recv().await;
        self.advance(parsed.is_some());
        parsed
    }

    /// [`ParsedInput::recv`] for a plain thread.
    pub fn blocking_recv(&mut self) -> Option<Parsed> {
        let parsed = self.lanes[self.next].blocking_recv();
        self.advance(parsed.is_some());
        parsed
    }

    /// Moves to the next thread's lane after a batch. The dispatcher closes
    /// every lane at once, so when the expected lane is closed, every batch
    /// before it has been read and the others are closed too.
    fn advance(&mut self, got: bool) {
        if got {
            self.next = (self.next + 1) % self.lanes.len();
        }
    }
}

/// The started parse threads.
pub struct ParsePool {
    /// Their output, in dispatch order.
    pub output: ParsedInput,
    /// The threads, to join at shutdown.
    pub threads: Vec<std::thread::JoinHandle<()>>,
}

/// Starts one thread per parse stage and a dispatcher task handing them
/// batches from `input` in turn. Each thread may hold `queue` parsed
/// batches for detection. Must be called inside a tokio runtime.
pub fn start_pool(
    stages: Vec<ParseStage>,
    mut input: mpsc::Receiver<RecordBatch>,
    queue: usize,
) -> std::io::Result<ParsePool> {
    let mut senders = Vec::with_capacity(stages.len());
    let mut lanes = Vec::with_capacity(stages.len());
    let mut threads = Vec::with_capacity(stages.len());
    for (i, stage) in stages.into_iter().enumerate() {
        let (batch_tx, batch_rx) = mpsc::channel::<RecordBatch>(2);
        let (parsed_tx, parsed_rx) = mpsc::channel::<Parsed>(queue.max(1));
        threads.push(
            std::thread::Builder::new()
                .name(format!("gatewatch-parse-{i}"))
                .spawn(move || stage.run(batch_rx, parsed_tx))?,
        );
        senders.push(batch_tx);
        lanes.push(parsed_rx);
    }
    tokio::spawn(async move {
        let mut next = 0;
        while let Some(batch) = input.recv().await {
            if senders[next].send(batch).await.is_err() {
                return;
            }
            next = (next + 1) % senders.len();
        }
    });
    Ok(ParsePool {
        output: ParsedInput { lanes, next: 0 },
        threads,
    })
}

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
    /// A Kafka partition's batch, for the detection thread's
    /// [`PartitionMerger`](super::order::PartitionMerger).
    Partition {
        /// Source, topic and partition.
        lane: LaneId,
        /// Its events.
        events: Vec<Event<'static>>,
        /// Its acknowledgement.
        ack: Option<Box<dyn Acknowledge>>,
        /// Whether the broker held more messages past it.
        backlog: bool,
        /// An empty batch saying the partition is caught up.
        caught_up: bool,
    },
}

/// The parse thread.
pub struct ParseStage {
    /// Lines to events.
    pub parsing: Parsing,
    /// Classifies each event of a line batch here, in parallel, instead of
    /// on the sequential detection thread.
    pub classifier: Classifier,
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
                    caught_up,
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
                        caught_up,
                    }
                }
                _ => {
                    let mut events = Vec::with_capacity(batch.len());
                    let mut text = String::with_capacity(self.text_hint);
                    let classifier = &self.classifier;
                    self.parsing.parse(&batch, |ev| {
                        events.push(Parked::park(&ev, classifier.classify(&ev), &mut text));
                    });
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
    class: RequestClass,
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
    /// Parks `ev` of class `class`, copying its strings to the end of
    /// `text`.
    pub(super) fn park(ev: &Event<'_>, class: RequestClass, text: &mut String) -> Parked {
        Parked {
            ts: ev.ts,
            ip: ev.ip,
            class,
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

    /// The request class it was parked with.
    pub(super) fn class(&self) -> RequestClass {
        self.class
    }

    /// The event again, borrowing from `text` (the buffer it was parked in).
    pub(super) fn unpark(self, text: &str) -> Event<'_> {
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

/// Turning lines into events; counting and sampling the lines that fail.
pub struct Parsing {
    /// The parsers of each source, indexed by `SourceId`.
    pub formats: Vec<Parsers>,
    /// Shared counters.
    pub stats: Arc<PipelineStats>,
    /// Rejected lines logged per (source, reason) before going quiet.
    pub samples_per_reason: u32,
    /// Rejected lines logged so far per (source, reason).
    pub sampled: RejectSamples,
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
                    if self.take_sample(batch.source, err.reason()) {
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

    /// Whether one more rejected line of `reason` from `source` may be logged.
    fn take_sample(&self, source: u16, reason: &'static str) -> bool {
        let Ok(mut sampled) = self.sampled.lock() else {
            return false;
        };
        let seen = sampled.entry((source, reason)).or_insert(0);
        let take = *seen < self.samples_per_reason;
        *seen += u32::from(take);
        take
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

#[cfg(test)]
mod tests {
    use super::*;
    use gatewatch_detector::DetectionConfig;
    use gatewatch_ingest::formats;

    fn stage(stats: &Arc<PipelineStats>) -> ParseStage {
        let spec = super::super::SourceFormat::plain(FormatKind::NginxCombined);
        ParseStage {
            parsing: Parsing {
                formats: vec![
                    Parsers::build(&spec, |k| formats::build(k, &Default::default())).unwrap(),
                ],
                stats: stats.clone(),
                samples_per_reason: 1,
                sampled: RejectSamples::default(),
            },
            classifier: Classifier::new(&DetectionConfig::default()).unwrap(),
            text_hint: 0,
        }
    }

    /// Batches parsed on several threads come back in the order they were
    /// sent, however long each takes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_come_back_in_dispatch_order() {
        let stats = Arc::new(PipelineStats::new(1, 1));
        let (tx, rx) = mpsc::channel(4);
        let mut pool = start_pool((0..3).map(|_| stage(&stats)).collect(), rx, 2).unwrap();
        let feeder = tokio::spawn(async move {
            for b in 0..40u32 {
                let mut batch =
                    RecordBatch::with_capacity(0, Origin::Stdin { first_line: 1 }, 1 << 16);
                // Uneven batch sizes make the threads finish out of order.
                for l in 0..(1 + (b * 37) % 300) {
                    let line = format!(
                        "10.0.{}.{} - - [10/Oct/2025:13:55:36 +0000] \"GET /b{b} HTTP/1.1\" 200 5 \"-\" \"ua\"",
                        b, l % 250
                    );
                    batch.push_line(line.as_bytes(), 4096);
                }
                tx.send(batch).await.unwrap();
            }
        });
        let order = tokio::task::spawn_blocking(move || {
            let mut order = Vec::new();
            while let Some(parsed) = pool.output.blocking_recv() {
                let Parsed::Lines { text, events, .. } = parsed else {
                    panic!("stdin batches are lines");
                };
                let first = events.into_iter().next().unwrap().unpark(&text);
                order.push(first.path.trim_start_matches("/b").parse::<u32>().unwrap());
            }
            for t in pool.threads {
                t.join().unwrap();
            }
            order
        })
        .await
        .unwrap();
        feeder.await.unwrap();
        assert_eq!(order, (0..40).collect::<Vec<_>>());
        assert_eq!(stats.sources[0].rejected.lock().unwrap().len(), 0);
    }
}
