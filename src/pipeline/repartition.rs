//! The ingest stage (`[repartition]`): parse every source's lines and
//! publish the events, keyed by client, to the internal topic that
//! detection instances consume (format `gatewatch_event`).
//!
//! ```text
//! sources ──RecordBatch──▶ publisher task ──InFlight──▶ acker task
//!          (bounded)       parse, merge     (bounded)    await every delivery
//!                          partitions by                 of the batch, then ack
//!                          event time, key,
//!                          enqueue
//! ```
//! Kafka batches go through the same [`PartitionMerger`] as in detection:
//! an unkeyed upstream topic read with a backlog would otherwise interleave
//! partitions hours apart into each internal partition, beyond what the
//! detectors' lateness allows.
//! A source batch is acknowledged (Kafka offsets committed, file position
//! checkpointed) only after every event parsed from it has been delivered to
//! the broker (idempotent producer, `acks=all`): at-least-once. Batches are
//! acknowledged in the order they arrived. A delivery that fails (after
//! librdkafka's own retries within `message.timeout.ms`) is counted and
//! published again with backoff, holding back that batch and, through the
//! bounded channels, the sources. At shutdown a batch that still cannot be
//! delivered is left unacknowledged (it is read again after a restart) and
//! so is every batch after it.
//!
//! The key is the detection key (`ClientKey`: the address, an IPv6 network
//! per `detection.ipv6_prefix`, or the identity with `client_key =
//! "identity"`), so all of a client's events land on one partition, hence
//! one detection instance. Events of one key keep their order, except that
//! a retried delivery lands after later ones (detection tolerates
//! `detection.allowed_lateness_secs` of disorder).

use super::order::{PartitionMerger, Released};
use super::parse::{Parsers, Parsing};
use super::stats::PipelineStats;
use super::SourceFormat;
use crate::api::metrics::{MetricSource, MetricsWriter};
use crate::config::{Config, RepartitionConfig};
use anyhow::Context;
use gatewatch_detector::config::ClientKeyMode;
use gatewatch_detector::{ClientKey, Event};
use gatewatch_ingest::formats::{self, gatewatch_event::write_event};
use gatewatch_ingest::sources::repartition::{Delivered, RepartitionError, RepartitionProducer};
use gatewatch_ingest::{Acknowledge, Origin, RecordBatch};
use std::fmt::Write as _;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Counters of the ingest stage, for `/metrics`.
#[derive(Debug, Default)]
pub struct RepartitionMetrics {
    /// Events delivered to the internal topic.
    pub published: AtomicU64,
    /// Deliveries that failed (each is retried).
    pub failures: AtomicU64,
    /// Events enqueued and not yet delivered.
    pub in_flight: AtomicU64,
}

impl MetricSource for RepartitionMetrics {
    fn collect(&self, out: &mut MetricsWriter) {
        out.sample(
            "gatewatch_repartition_published_total",
            &[],
            self.published.load(Relaxed) as f64,
        );
        out.sample(
            "gatewatch_repartition_failures_total",
            &[],
            self.failures.load(Relaxed) as f64,
        );
        out.sample(
            "gatewatch_repartition_in_flight",
            &[],
            self.in_flight.load(Relaxed) as f64,
        );
    }
}

/// The Kafka message key of an event: its detection key, as shown in
/// incidents (`203.0.113.9`, `2001:db8:1:2::/64`, `identity:consumer-7`).
pub fn client_key(ev: &Event<'_>, mode: ClientKeyMode, ipv6_prefix: u8, out: &mut String) {
    out.clear();
    match (mode, ev.identity.as_deref()) {
        (ClientKeyMode::Identity, Some(id)) if !id.is_empty() => {
            let _ = write!(out, "identity:{id}");
        }
        _ => match ClientKey::for_ip(ev.ip, ipv6_prefix) {
            ClientKey::Ip(ip) => {
                let _ = write!(out, "{ip}");
            }
            ClientKey::Ipv6Net(net, len) => {
                let _ = write!(out, "{net}/{len}");
            }
            ClientKey::Identity(h) => {
                let _ = write!(out, "identity:#{h:016x}");
            }
        },
    }
}

/// The parsers of one source: its format, and per-topic formats for Kafka.
/// Events serialised and ready to publish: keys and payloads in two
/// buffers (no allocation per event).
#[derive(Default)]
struct Encoded {
    keys: String,
    payloads: Vec<u8>,
    spans: Vec<(Range<usize>, Range<usize>)>,
}

impl Encoded {
    fn get(&self, i: usize) -> (&[u8], &[u8]) {
        let (k, p) = &self.spans[i];
        (&self.keys.as_bytes()[k.clone()], &self.payloads[p.clone()])
    }

    fn len(&self) -> usize {
        self.spans.len()
    }
}

/// Keys and serialises events.
struct Keyer {
    mode: ClientKeyMode,
    ipv6_prefix: u8,
    key: String,
}

impl Keyer {
    fn encode(&mut self, ev: &Event<'_>, enc: &mut Encoded) {
        client_key(ev, self.mode, self.ipv6_prefix, &mut self.key);
        let k0 = enc.keys.len();
        enc.keys.push_str(&self.key);
        let p0 = enc.payloads.len();
        write_event(ev, &mut enc.payloads);
        enc.spans.push((k0..enc.keys.len(), p0..enc.payloads.len()));
    }
}

type Delivery = Pin<Box<dyn Future<Output = Result<Delivered, RepartitionError>> + Send>>;

/// Where one event of a batch is.
enum Slot {
    /// Enqueued; its delivery is pending.
    Pending(Delivery),
    /// Not delivered (or not even enqueued): to publish again.
    Failed,
    /// Delivered.
    Done,
}

/// One source batch whose events are on their way to the broker.
struct InFlight {
    events: Encoded,
    /// Event `i`'s delivery.
    deliveries: Vec<Slot>,
    ack: Option<Box<dyn Acknowledge>>,
}

/// A started ingest stage.
pub struct RunningIngest {
    /// Where sources send batches. Dropping every clone ends the stage.
    pub batches: mpsc::Sender<RecordBatch>,
    /// Per-source line counters (same as the detection pipeline's).
    pub stats: Arc<PipelineStats>,
    /// Publishing counters.
    pub metrics: Arc<RepartitionMetrics>,
    producer: RepartitionProducer,
    publisher: tokio::task::JoinHandle<()>,
    acker: tokio::task::JoinHandle<()>,
}

impl RunningIngest {
    /// Waits until every batch received is published and acknowledged (or,
    /// once `give_up` is cancelled, left unacknowledged after a failure),
    /// then flushes the producer.
    pub async fn finish(self) -> anyhow::Result<Arc<PipelineStats>> {
        drop(self.batches);
        self.publisher.await.context("The publisher task failed")?;
        self.acker.await.context("The acknowledging task failed")?;
        let producer = self.producer;
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10)))
            .await?
            .context("Flushing the repartition producer")?;
        Ok(self.stats)
    }
}

/// Starts the ingest stage for sources with the given formats (indexed by
/// `SourceId`). `give_up` is cancelled at shutdown: from then on a batch
/// whose delivery failed is left unacknowledged instead of retried.
pub fn start(
    cfg: &Config,
    repartition: &RepartitionConfig,
    source_formats: &[SourceFormat],
    give_up: CancellationToken,
) -> anyhow::Result<RunningIngest> {
    let build = |k| formats::build(k, &cfg.parser);
    let formats = source_formats
        .iter()
        .map(|f| Parsers::build(f, build))
        .collect::<Result<Vec<_>, formats::FormatError>>()
        .context("Invalid parser configuration")?;
    let producer = RepartitionProducer::new(
        &repartition.brokers,
        &repartition.topic,
        &repartition.properties,
    )
    .context("Invalid [repartition] producer configuration")?;
    let stats = Arc::new(PipelineStats::new(source_formats.len(), 0));
    let metrics = Arc::new(RepartitionMetrics::default());
    let stage = Publisher {
        parsing: Parsing {
            formats,
            stats: stats.clone(),
            samples_per_reason: cfg.pipeline.rejected_samples_per_reason,
            sampled: Default::default(),
        },
        merger: PartitionMerger::new(
            Duration::from_millis(cfg.pipeline.partition_idle_ms),
            cfg.pipeline.merge_max_events,
        ),
        keyer: Keyer {
            mode: cfg.detection.client_key,
            ipv6_prefix: cfg.detection.ipv6_prefix,
            key: String::new(),
        },
        producer: producer.clone(),
        metrics: metrics.clone(),
        group: Encoded::default(),
        slots: Vec::new(),
    };
    let (batch_tx, batch_rx) = mpsc::channel::<RecordBatch>(cfg.pipeline.queue_batches);
    let (flight_tx, flight_rx) = mpsc::channel::<InFlight>(cfg.pipeline.queue_batches);
    let publisher = tokio::spawn(stage.run(batch_rx, flight_tx));
    let acker = tokio::spawn(acknowledge(
        producer.clone(),
        metrics.clone(),
        flight_rx,
        give_up,
    ));
    Ok(RunningIngest {
        batches: batch_tx,
        stats,
        metrics,
        producer,
        publisher,
        acker,
    })
}

/// Enqueues one event; a failure to enqueue is a failed delivery.
async fn enqueue(
    producer: &RepartitionProducer,
    metrics: &RepartitionMetrics,
    key: &[u8],
    payload: &[u8],
) -> Slot {
    match producer.enqueue(key, payload).await {
        Ok(d) => {
            metrics.in_flight.fetch_add(1, Relaxed);
            Slot::Pending(Box::pin(d))
        }
        Err(error) => {
            metrics.failures.fetch_add(1, Relaxed);
            tracing::warn!(error = %error, "Could not enqueue an event for the repartition topic; will retry.");
            Slot::Failed
        }
    }
}

/// What the receive loop got.
enum Received {
    Batch(RecordBatch),
    Timeout,
    Closed,
}

/// The publishing task: parse, put Kafka partitions back into event-time
/// order (as detection does, so the internal topic is as ordered as a
/// keyed upstream topic would be), key, enqueue.
struct Publisher {
    parsing: Parsing,
    merger: PartitionMerger,
    keyer: Keyer,
    producer: RepartitionProducer,
    metrics: Arc<RepartitionMetrics>,
    /// Events released since the last acknowledgement handed on.
    group: Encoded,
    /// Their deliveries.
    slots: Vec<Slot>,
}

impl Publisher {
    /// Records the newest event time parsed (for the pipeline-lag metric).
    fn note_newest(&self, newest_ms: i64) {
        if newest_ms > 0 {
            self.parsing
                .stats
                .newest_event_ms
                .fetch_max(newest_ms as u64, Relaxed);
        }
    }

    async fn run(mut self, mut input: mpsc::Receiver<RecordBatch>, output: mpsc::Sender<InFlight>) {
        loop {
            let wait = self
                .merger
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            let received = match wait {
                None => input.recv().await.map_or(Received::Closed, Received::Batch),
                Some(wait) => match tokio::time::timeout(wait, input.recv()).await {
                    Ok(Some(batch)) => Received::Batch(batch),
                    Ok(None) => Received::Closed,
                    Err(_) => Received::Timeout,
                },
            };
            let closed = matches!(received, Received::Closed);
            if let Received::Batch(mut batch) = received {
                let ack = batch.ack.take();
                match batch.origin {
                    Origin::Kafka {
                        ref topic,
                        partition,
                        caught_up: true,
                        ..
                    } => self
                        .merger
                        .caught_up(&(batch.source, topic.clone(), partition)),
                    Origin::Kafka {
                        ref topic,
                        partition,
                        backlog,
                        ..
                    } => {
                        let mut events = Vec::with_capacity(batch.len());
                        let mut newest = 0;
                        self.parsing.parse(&batch, |ev| {
                            newest = newest.max(ev.ts.millis());
                            events.push(ev.into_owned());
                        });
                        self.note_newest(newest);
                        let lane = (batch.source, topic.clone(), partition);
                        self.merger.push(lane, events, ack, backlog, Instant::now());
                    }
                    _ => {
                        let (keyer, group) = (&mut self.keyer, &mut self.group);
                        let mut newest = 0;
                        self.parsing.parse(&batch, |ev| {
                            newest = newest.max(ev.ts.millis());
                            keyer.encode(&ev, group);
                        });
                        self.note_newest(newest);
                        drop(batch);
                        if !self.hand_on(ack, &output).await {
                            return;
                        }
                    }
                }
            }
            while let Some(released) = self.merger.pop(Instant::now(), closed) {
                match released {
                    Released::Event(ev) => self.keyer.encode(&ev, &mut self.group),
                    Released::Done(ack) => {
                        if !self.hand_on(ack, &output).await {
                            return;
                        }
                    }
                }
            }
            self.enqueue_new().await;
            if closed {
                // Whatever was released without a batch ending: deliver it
                // before exiting (nothing to acknowledge).
                if !self.group.spans.is_empty() {
                    self.hand_on(None, &output).await;
                }
                return;
            }
        }
    }

    /// Enqueues the events encoded since the last call, in order.
    async fn enqueue_new(&mut self) {
        for i in self.slots.len()..self.group.len() {
            let (key, payload) = self.group.get(i);
            let slot = enqueue(&self.producer, &self.metrics, key, payload).await;
            self.slots.push(slot);
        }
    }

    /// Enqueues what is pending and hands the group, with the
    /// acknowledgement of the batch it completes, to the acker. `false`
    /// when the acker is gone.
    async fn hand_on(
        &mut self,
        ack: Option<Box<dyn Acknowledge>>,
        output: &mpsc::Sender<InFlight>,
    ) -> bool {
        self.enqueue_new().await;
        let flight = InFlight {
            events: std::mem::take(&mut self.group),
            deliveries: std::mem::take(&mut self.slots),
            ack,
        };
        output.send(flight).await.is_ok()
    }
}

/// Acknowledges batches in order once every event of each is delivered;
/// publishes failed events again with backoff.
async fn acknowledge(
    producer: RepartitionProducer,
    metrics: Arc<RepartitionMetrics>,
    mut input: mpsc::Receiver<InFlight>,
    give_up: CancellationToken,
) {
    // Once a batch is abandoned, no later batch may be acknowledged (a
    // source's position must never pass an unpublished event).
    let mut abandoned = false;
    while let Some(flight) = input.recv().await {
        let InFlight {
            events,
            mut deliveries,
            ack,
        } = flight;
        let mut backoff = Duration::from_millis(250);
        loop {
            let mut failed = Vec::new();
            for (i, slot) in deliveries.iter_mut().enumerate() {
                let delivery = match std::mem::replace(slot, Slot::Done) {
                    Slot::Pending(d) => d,
                    Slot::Failed => {
                        *slot = Slot::Failed;
                        failed.push(i);
                        continue;
                    }
                    Slot::Done => continue,
                };
                let result = delivery.await;
                metrics.in_flight.fetch_sub(1, Relaxed);
                match result {
                    Ok(_) => {
                        metrics.published.fetch_add(1, Relaxed);
                    }
                    Err(error) => {
                        *slot = Slot::Failed;
                        metrics.failures.fetch_add(1, Relaxed);
                        if failed.is_empty() {
                            tracing::warn!(error = %error, "An event was not delivered to the repartition topic; will retry.");
                        }
                        failed.push(i);
                    }
                }
            }
            if failed.is_empty() {
                break;
            }
            if abandoned || give_up.is_cancelled() {
                abandoned = true;
                break;
            }
            tracing::warn!(
                events = failed.len(),
                retry_in_ms = backoff.as_millis() as u64,
                "Publishing events of a batch again."
            );
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = give_up.cancelled() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
            for i in failed {
                let (key, payload) = events.get(i);
                deliveries[i] = enqueue(&producer, &metrics, key, payload).await;
            }
        }
        if abandoned {
            tracing::warn!("A batch was not fully published before shutdown; it stays unacknowledged and is read again after a restart.");
            drop(ack);
        } else if let Some(ack) = ack {
            ack.ack();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatewatch_detector::EventTime;
    use std::net::IpAddr;

    fn key(ip: &str, identity: Option<&str>, mode: ClientKeyMode, prefix: u8) -> String {
        let mut ev = Event::new(EventTime::from_millis(0), ip.parse::<IpAddr>().unwrap());
        ev.identity = identity.map(Into::into);
        let mut out = String::from("stale");
        client_key(&ev, mode, prefix, &mut out);
        out
    }

    #[test]
    fn keys_are_the_detection_keys() {
        use ClientKeyMode::{Identity, Ip};
        assert_eq!(key("203.0.113.9", None, Ip, 64), "203.0.113.9");
        assert_eq!(key("2001:db8:1:2:aa::1", None, Ip, 64), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8::1", None, Ip, 128), "2001:db8::1");
        assert_eq!(key("::ffff:10.0.0.1", None, Ip, 64), "10.0.0.1");
        assert_eq!(key("10.0.0.1", Some("c-7"), Ip, 64), "10.0.0.1");
        assert_eq!(key("10.0.0.1", Some("c-7"), Identity, 64), "identity:c-7");
        assert_eq!(key("10.0.0.1", Some(""), Identity, 64), "10.0.0.1");
        // Same text as the incident's client field.
        let ev = Event::new(
            EventTime::from_millis(0),
            "2001:db8:1:2:aa::1".parse().unwrap(),
        );
        let mut k = String::new();
        client_key(&ev, Ip, 48, &mut k);
        assert_eq!(k, ClientKey::for_ip(ev.ip, 48).display_with(None));
    }
}
