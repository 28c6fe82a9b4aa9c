//! Kafka as a source: a consumer group over one or more topics, at least
//! once.
//!
//! * Offsets are committed only for acknowledged batches: auto commit is
//!   off, an acknowledgement records "offset of the batch's last message +
//!   1" for its partition, and the consumer thread commits those offsets
//!   asynchronously every `commit_interval_ms`, synchronously when
//!   partitions are revoked and on shutdown. A crash replays the messages
//!   after the last commit; nothing is skipped.
//! * Batches are per partition ([`Origin::Kafka`]); one line per message, a
//!   message holding several newline-separated lines gives several lines.
//!   Empty messages are counted and skipped; over-long lines are cut and
//!   counted. A bad message never stalls its partition: bytes go through,
//!   the pipeline counts what it cannot parse.
//! * Rebalances go through a custom [`ConsumerContext`]: on revoke, the
//!   thread waits (at most `rebalance_ack_timeout_ms`) for the batches of
//!   the revoked partitions that are still in the pipeline, commits what was
//!   acknowledged, and drops the batches of those partitions it has not sent
//!   yet. Acknowledgements arriving later for a revoked partition are
//!   ignored (the new owner replays them).
//! * Consumer lag per partition (high watermark − position) comes from
//!   librdkafka's statistics, every `lag_interval_ms`, into
//!   [`SourceMetrics::kafka_lag`]; the same high watermarks mark each batch
//!   whose partition holds more (`Origin::Kafka::backlog`), and an empty
//!   batch announces each assigned and revoked partition, and each assigned
//!   one the statistics first show caught up (`Origin::Kafka::caught_up`),
//!   so the pipeline can merge partitions by event time without guessing
//!   which exist or waiting for a quiet one as for a backlog.
//!
//! librdkafka's consumer API is blocking, so the consumer runs on a
//! dedicated thread that polls, batches, and hands batches to the async
//! pipeline (waiting while it is full). While that wait lasts longer than
//! `max.poll.interval.ms` (librdkafka's default: 5 minutes) the consumer
//! leaves the group and its partitions go elsewhere, which is the intended
//! behaviour for a wedged instance.

use super::reader::BatchShape;
use super::{check_shape, require_positive, send_blocking, Source, SourceError, SourceMetrics};
use crate::record::{Acknowledge, Origin, RecordBatch};
use async_trait::async_trait;
use gatewatch_detector::SourceId;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;

/// Where a consumer group with no committed offset for a partition starts.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OffsetReset {
    /// At the oldest retained message: nothing already in the topic is
    /// missed when gatewatch is first deployed.
    #[default]
    Earliest,
    /// At the end: only messages produced from now on.
    Latest,
}

impl OffsetReset {
    fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        }
    }
}

/// Configuration of the Kafka source (`type = "kafka"` in the binary's
/// source list).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Consumer group: gatewatch instances sharing it split the partitions,
    /// and committed offsets are kept per group.
    pub group_id: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Where to start in a partition the group has no committed offset for.
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// Extra librdkafka properties passed through as they are, e.g.
    /// `security.protocol = "SASL_SSL"`, `sasl.mechanism`,
    /// `sasl.username`, `ssl.ca.location`, `session.timeout.ms`. The
    /// properties that carry the at-least-once guarantee
    /// (`enable.auto.commit`, `enable.auto.offset.store`) and those set by
    /// the fields above cannot be overridden here. gatewatch's own
    /// defaults for librdkafka properties (`fetch.wait.max.ms = 100`) can.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// How often acknowledged offsets are committed (milliseconds). A crash
    /// replays at most about this much acknowledged traffic.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// How long a partially filled batch may wait for more messages before
    /// it is handed to the pipeline (milliseconds).
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// How often consumer lag per partition is refreshed (milliseconds);
    /// the same figures tell the pipeline which partitions hold a backlog.
    #[serde(default = "default_lag_interval_ms")]
    pub lag_interval_ms: u64,
    /// How long a rebalance or shutdown waits for batches of the revoked
    /// partitions that are still in the pipeline to be acknowledged before
    /// committing (milliseconds). Longer means fewer replays after a
    /// rebalance; it blocks the consumer (not the group) meanwhile.
    #[serde(default = "default_rebalance_ack_timeout_ms")]
    pub rebalance_ack_timeout_ms: u64,
}

fn default_commit_interval_ms() -> u64 {
    1000
}

fn default_linger_ms() -> u64 {
    50
}

fn default_lag_interval_ms() -> u64 {
    1000
}

fn default_rebalance_ack_timeout_ms() -> u64 {
    5000
}

impl KafkaConfig {
    /// A configuration with the defaults, for tests and programmatic use.
    pub fn new(
        brokers: impl Into<String>,
        group_id: impl Into<String>,
        topics: Vec<String>,
    ) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            group_id: group_id.into(),
            topics,
            auto_offset_reset: OffsetReset::default(),
            properties: BTreeMap::new(),
            commit_interval_ms: default_commit_interval_ms(),
            linger_ms: default_linger_ms(),
            lag_interval_ms: default_lag_interval_ms(),
            rebalance_ack_timeout_ms: default_rebalance_ack_timeout_ms(),
        }
    }
}

/// Properties that the fields of [`KafkaConfig`] own.
const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "statistics.interval.ms",
];

/// Validates `config` (no I/O) and builds the Kafka source.
pub fn build(
    config: KafkaConfig,
    source: SourceId,
    shape: BatchShape,
    metrics: Arc<SourceMetrics>,
) -> Result<Box<dyn Source>, SourceError> {
    check_shape(&shape)?;
    let invalid = |field, reason: &str| SourceError::InvalidConfig {
        field,
        reason: reason.into(),
    };
    if config.brokers.trim().is_empty() {
        return Err(invalid("brokers", "must name at least one broker"));
    }
    if config.group_id.trim().is_empty() {
        return Err(invalid("group_id", "must not be empty"));
    }
    if config.topics.is_empty() || config.topics.iter().any(|t| t.trim().is_empty()) {
        return Err(invalid("topics", "must list at least one non-empty topic"));
    }
    if let Some(key) = config
        .properties
        .keys()
        .find(|k| RESERVED.contains(&k.as_str()))
    {
        return Err(SourceError::InvalidConfig {
            field: "properties",
            reason: format!("must not set `{key}`: it is set by gatewatch or by another field"),
        });
    }
    require_positive("commit_interval_ms", config.commit_interval_ms)?;
    require_positive("linger_ms", config.linger_ms)?;
    require_positive("lag_interval_ms", config.lag_interval_ms)?;
    let client = client_config(&config);
    // librdkafka checks every property name and value here, without I/O.
    client
        .create_native_config()
        .map_err(|error| SourceError::InvalidConfig {
            field: "properties",
            reason: error.to_string(),
        })?;
    Ok(Box::new(KafkaSource {
        config,
        client,
        source,
        shape,
        metrics,
    }))
}

/// librdkafka properties whose defaults gatewatch changes; `properties`
/// in the config overrides them. Public so that benchmarks consume the way
/// gatewatch does.
///
/// * `fetch.wait.max.ms` (librdkafka: 500): how long the broker may hold a
///   fetch that has no data. Apache Kafka answers as soon as data arrives,
///   so a shorter hold only costs a few empty fetches per second on an idle
///   topic; tansu 0.6 holds every fetch for about this long even when data
///   is waiting, which capped consumption at ~150,000 messages/s and added
///   ~450 ms of delay. 100 ms keeps both well inside the targets.
pub const DEFAULT_PROPERTIES: &[(&str, &str)] = &[("fetch.wait.max.ms", "100")];

fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in DEFAULT_PROPERTIES {
        c.set(*k, *v);
    }
    for (k, v) in &config.properties {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", config.auto_offset_reset.as_str())
        .set("statistics.interval.ms", config.lag_interval_ms.to_string());
    c
}

/// The Kafka source, validated and ready to run.
struct KafkaSource {
    config: KafkaConfig,
    client: ClientConfig,
    source: SourceId,
    shape: BatchShape,
    metrics: Arc<SourceMetrics>,
}

#[async_trait]
impl Source for KafkaSource {
    async fn run(
        self: Box<Self>,
        out: Sender<RecordBatch>,
        stop: CancellationToken,
    ) -> Result<(), SourceError> {
        let handle = tokio::runtime::Handle::current();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("gatewatch-kafka".into())
            .spawn(move || {
                let _ = done_tx.send(self.consume(handle, out, stop));
            })
            .map_err(|error| SourceError::Io {
                path: "<kafka consumer thread>".into(),
                error,
            })?;
        done_rx.await.unwrap_or(Err(SourceError::Panicked {
            source_kind: "kafka",
        }))
    }
}

type Key = (Arc<str>, i32);

/// What the consumer knows of one assigned partition.
#[derive(Debug)]
struct PartState {
    /// Bumped at each assignment, so that acknowledgements of batches sent
    /// under an earlier assignment are ignored.
    epoch: u64,
    /// Next offset to commit: the last acknowledged message + 1.
    acked: Option<i64>,
    /// Last offset committed (or being committed).
    committed: Option<i64>,
    /// Batches sent to the pipeline and not yet acknowledged or dropped.
    in_flight: u32,
    /// A batch was dropped without acknowledgement: later acknowledgements
    /// of this assignment must not commit past it.
    gap: bool,
    /// The partition's high watermark in the last statistics (-1 before).
    high_watermark: i64,
    /// What the pipeline was last told: the partition may hold a backlog.
    /// True from the assignment until a batch or the statistics show it
    /// caught up.
    backlog_told: bool,
}

/// State shared by the consumer thread, the rebalance callbacks and the
/// acknowledgement handles.
#[derive(Debug, Default)]
struct Shared {
    parts: Mutex<HashMap<Key, PartState>>,
    /// Signalled when a batch is acknowledged or dropped.
    settled: Condvar,
    /// Partitions revoked since the consumer thread last looked: their
    /// unsent batches are dropped.
    revoked: Mutex<Vec<Key>>,
    /// Partitions assigned since the consumer thread last looked: it
    /// announces them to the pipeline (see [`announce`]).
    assigned: Mutex<Vec<Key>>,
    /// Partitions the statistics showed caught up while the pipeline still
    /// thought they might hold a backlog: the consumer thread tells it.
    caught_up: Mutex<Vec<Key>>,
    epochs: AtomicU64,
}

impl Shared {
    fn parts(&self) -> MutexGuard<'_, HashMap<Key, PartState>> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offsets acknowledged and not yet committed, marked as committed.
    fn take_commits(&self, only: Option<&[Key]>) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (key, st) in self.parts().iter_mut() {
            if only.is_some_and(|only| !only.contains(key)) {
                continue;
            }
            if let Some(acked) = st.acked {
                if st.committed.is_none_or(|c| c < acked) {
                    // Cannot fail for a valid offset.
                    let _ = tpl.add_partition_offset(&key.0, key.1, Offset::Offset(acked));
                    st.committed = Some(acked);
                }
            }
        }
        tpl
    }

    /// Waits until no batch of `keys` is in the pipeline, or `deadline`.
    fn wait_settled(&self, keys: Option<&[Key]>, deadline: Instant) -> u32 {
        let mut parts = self.parts();
        loop {
            let pending: u32 = parts
                .iter()
                .filter(|(k, _)| keys.is_none_or(|keys| keys.contains(k)))
                .map(|(_, st)| st.in_flight)
                .sum();
            let now = Instant::now();
            if pending == 0 || now >= deadline {
                return pending;
            }
            parts = self
                .settled
                .wait_timeout(parts, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The acknowledgement handle of one batch of one partition.
struct KafkaAck {
    shared: Arc<Shared>,
    key: Key,
    epoch: u64,
    next_offset: i64,
    acked: bool,
}

impl Acknowledge for KafkaAck {
    fn ack(mut self: Box<Self>) {
        self.acked = true;
        let mut parts = self.shared.parts();
        if let Some(st) = parts.get_mut(&self.key) {
            if st.epoch == self.epoch && !st.gap {
                st.acked = Some(
                    st.acked
                        .map_or(self.next_offset, |a| a.max(self.next_offset)),
                );
            }
        }
        // Drop settles the in-flight count.
    }
}

impl Drop for KafkaAck {
    fn drop(&mut self) {
        let mut parts = self.shared.parts();
        if let Some(st) = parts.get_mut(&self.key) {
            if st.epoch == self.epoch {
                st.in_flight = st.in_flight.saturating_sub(1);
                if !self.acked && !st.gap {
                    st.gap = true;
                    tracing::warn!(
                        topic = %self.key.0,
                        partition = self.key.1,
                        "A batch was dropped without acknowledgement; offsets of this partition stay uncommitted until it is reassigned."
                    );
                }
            }
        }
        drop(parts);
        self.shared.settled.notify_all();
    }
}

/// librdkafka callbacks: rebalances, commits, statistics, errors.
struct Context {
    shared: Arc<Shared>,
    metrics: Arc<SourceMetrics>,
    source: SourceId,
    ack_timeout: Duration,
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        let mut parts = self.shared.parts();
        for (key, st) in parts.iter_mut() {
            let Some(p) = stats
                .topics
                .get(&*key.0)
                .and_then(|t| t.partitions.get(&key.1))
            else {
                continue;
            };
            // The position is the offset after the last message handed to
            // gatewatch; before the first one, where fetching starts.
            let position = [p.app_offset, p.next_offset, p.committed_offset]
                .into_iter()
                .find(|&o| o >= 0)
                .unwrap_or(-1);
            st.high_watermark = p.hi_offset;
            if p.hi_offset >= 0 && position >= 0 {
                self.metrics
                    .set_lag(key.0.clone(), key.1, (p.hi_offset - position).max(0));
                if st.backlog_told && position >= p.hi_offset {
                    st.backlog_told = false;
                    self.shared
                        .caught_up
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(key.clone());
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka reconnects by itself; a fatal error ends the source.
        tracing::warn!(source = self.source, %error, reason, "Kafka client error.");
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let keys: Vec<Key> = tpl
            .elements()
            .iter()
            .map(|e| (Arc::<str>::from(e.topic()), e.partition()))
            .collect();
        if consumer.assignment_lost() {
            // Another member owns them already; committing would fail.
            tracing::warn!(source = self.source, partitions = keys.len(), "Kafka partitions lost without a clean revoke; their unacknowledged batches will be replayed by the new owner.");
        } else {
            let unsettled = self
                .shared
                .wait_settled(Some(&keys), Instant::now() + self.ack_timeout);
            let commits = self.shared.take_commits(Some(&keys));
            if commits.count() > 0 {
                match consumer.commit(&commits, CommitMode::Sync) {
                    Ok(()) => {
                        self.metrics.commits.fetch_add(1, Relaxed);
                    }
                    Err(error) => {
                        self.metrics.commit_failures.fetch_add(1, Relaxed);
                        tracing::warn!(source = self.source, %error, "Committing offsets of revoked Kafka partitions failed; they will be replayed.");
                    }
                }
            }
            tracing::info!(
                source = self.source,
                partitions = ?keys.iter().map(|(t, p)| format!("{t}[{p}]")).collect::<Vec<_>>(),
                unacknowledged_batches = unsettled,
                "Kafka partitions revoked."
            );
        }
        let mut parts = self.shared.parts();
        for key in &keys {
            parts.remove(key);
            self.metrics.forget_lag(&key.0, key.1);
        }
        self.metrics
            .assigned_partitions
            .store(parts.len() as u64, Relaxed);
        drop(parts);
        self.shared
            .revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(keys);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let mut parts = self.shared.parts();
                let mut names = Vec::new();
                for e in tpl.elements() {
                    let key = (Arc::<str>::from(e.topic()), e.partition());
                    names.push(format!("{}[{}]", key.0, key.1));
                    self.shared
                        .assigned
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(key.clone());
                    parts.entry(key).or_insert_with(|| PartState {
                        epoch: self.shared.epochs.fetch_add(1, Relaxed) + 1,
                        acked: None,
                        committed: None,
                        in_flight: 0,
                        gap: false,
                        high_watermark: -1,
                        backlog_told: true,
                    });
                }
                self.metrics
                    .assigned_partitions
                    .store(parts.len() as u64, Relaxed);
                drop(parts);
                tracing::info!(source = self.source, partitions = ?names, "Kafka partitions assigned.");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(source = self.source, %error, "Kafka rebalance failed.");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                self.metrics.commits.fetch_add(1, Relaxed);
            }
            Err(error) => {
                self.metrics.commit_failures.fetch_add(1, Relaxed);
                // Commit these again with the next round.
                let mut parts = self.shared.parts();
                for e in offsets.elements() {
                    if let Some(st) = parts.get_mut(&(Arc::<str>::from(e.topic()), e.partition())) {
                        st.committed = None;
                    }
                }
                tracing::warn!(source = self.source, %error, "Committing Kafka offsets failed; retrying with the next commit.");
            }
        }
    }
}

/// A batch being filled for one partition.
/// Records in the batch's origin whether its partition has more messages
/// at the broker: the last statistics showed a high watermark past the
/// batch, or none came yet (a fresh assignment starts with a backlog until
/// shown otherwise).
fn mark_backlog(shared: &Shared, key: &Key, p: &mut Pending) {
    let mut parts = shared.parts();
    let more = parts.get_mut(key).is_some_and(|st| {
        st.backlog_told = st.high_watermark < 0 || st.high_watermark > p.next_offset;
        st.backlog_told
    });
    drop(parts);
    if let Origin::Kafka { backlog, .. } = &mut p.batch.origin {
        *backlog = more;
    }
}

/// What an [`announce`]ment tells the pipeline of a partition.
#[derive(Clone, Copy)]
enum News {
    /// Assigned: it may hold a backlog, so ordering by event time waits
    /// for it.
    Assigned,
    /// Caught up: nothing at the broker past what was read (see
    /// `Origin::Kafka::caught_up`).
    CaughtUp,
    /// Revoked: it will not deliver any more, so waiting for it is
    /// pointless.
    Revoked,
}

/// An empty batch that tells the pipeline `news` of a partition.
fn announce(source: SourceId, key: Key, news: News) -> RecordBatch {
    RecordBatch::with_capacity(
        source,
        Origin::Kafka {
            topic: key.0,
            partition: key.1,
            first_offset: -1,
            backlog: matches!(news, News::Assigned),
            caught_up: matches!(news, News::CaughtUp),
        },
        0,
    )
}

struct Pending {
    batch: RecordBatch,
    /// The offset after the last message taken into the batch.
    next_offset: i64,
    started: Instant,
}

impl KafkaSource {
    /// The consumer thread: poll, batch, send, commit, until stopped.
    fn consume(
        self,
        handle: tokio::runtime::Handle,
        out: Sender<RecordBatch>,
        stop: CancellationToken,
    ) -> Result<(), SourceError> {
        let shared = Arc::new(Shared::default());
        let context = Context {
            shared: shared.clone(),
            metrics: self.metrics.clone(),
            source: self.source,
            ack_timeout: Duration::from_millis(self.config.rebalance_ack_timeout_ms),
        };
        let consumer: BaseConsumer<Context> =
            self.client
                .create_with_context(context)
                .map_err(|error| SourceError::Kafka {
                    operation: "consumer creation",
                    error,
                })?;
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|error| SourceError::Kafka {
                operation: "subscription",
                error,
            })?;
        tracing::info!(
            source = self.source,
            group = %self.config.group_id,
            topics = ?self.config.topics,
            "Kafka consumer started."
        );
        let interned: Vec<Arc<str>> = self
            .config
            .topics
            .iter()
            .map(|t| Arc::from(t.as_str()))
            .collect();
        let linger = Duration::from_millis(self.config.linger_ms);
        let commit_every = Duration::from_millis(self.config.commit_interval_ms);
        let batch_bytes = self.shape.batch_lines.saturating_mul(256).min(4 << 20);
        let mut pending: HashMap<Key, Pending> = HashMap::new();
        let mut next_commit = Instant::now() + commit_every;
        let mut result = Ok(());
        // A closed channel means the pipeline is gone: stop as if cancelled.
        'poll: while !stop.is_cancelled() && !out.is_closed() {
            let now = Instant::now();
            let oldest = pending.values().map(|p| p.started + linger).min();
            let wait = oldest
                .map_or(Duration::from_millis(100), |d| {
                    d.saturating_duration_since(now)
                })
                .min(Duration::from_millis(100));
            match consumer.poll(wait) {
                None => {}
                Some(Ok(msg)) => {
                    let topic = intern(&interned, msg.topic());
                    let key = (topic, msg.partition());
                    let offset = msg.offset();
                    let payload = msg.payload().unwrap_or_default();
                    self.metrics.received(1, payload.len() as u64);
                    let p = pending.entry(key.clone()).or_insert_with(|| Pending {
                        batch: RecordBatch::with_capacity(
                            self.source,
                            Origin::Kafka {
                                topic: key.0.clone(),
                                partition: key.1,
                                first_offset: offset,
                                backlog: false,
                                caught_up: false,
                            },
                            batch_bytes,
                        ),
                        next_offset: offset + 1,
                        started: Instant::now(),
                    });
                    let before = p.batch.len();
                    for line in payload.split(|&b| b == b'\n') {
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        if !line.is_empty() {
                            p.batch.push_line(line, self.shape.max_line_bytes);
                        }
                    }
                    if p.batch.len() == before {
                        self.metrics.empty.fetch_add(1, Relaxed);
                    }
                    p.next_offset = offset + 1;
                    if p.batch.len() >= self.shape.batch_lines || p.batch.bytes() >= batch_bytes {
                        let mut p = pending.remove(&key).expect("just inserted");
                        mark_backlog(&shared, &key, &mut p);
                        if !self.deliver(&shared, &handle, &out, &stop, key, p) {
                            break 'poll;
                        }
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(error @ KafkaError::MessageConsumptionFatal(_))) => {
                    result = Err(SourceError::Kafka {
                        operation: "consumption",
                        error,
                    });
                    break 'poll;
                }
                Some(Err(error)) => {
                    tracing::warn!(source = self.source, %error, "Kafka consumer error.");
                }
            }
            // Batches of partitions revoked during that poll are not sent.
            let revoked =
                std::mem::take(&mut *shared.revoked.lock().unwrap_or_else(|e| e.into_inner()));
            let assigned =
                std::mem::take(&mut *shared.assigned.lock().unwrap_or_else(|e| e.into_inner()));
            for key in &revoked {
                pending.remove(key);
            }
            let mut caught_up =
                std::mem::take(&mut *shared.caught_up.lock().unwrap_or_else(|e| e.into_inner()));
            // Seen caught up under an assignment revoked since.
            caught_up.retain(|key| !revoked.contains(key));
            let announcements = revoked
                .into_iter()
                .map(|key| (key, News::Revoked))
                .chain(assigned.into_iter().map(|key| (key, News::Assigned)))
                .chain(caught_up.into_iter().map(|key| (key, News::CaughtUp)));
            for (key, news) in announcements {
                if !send_blocking(&handle, &out, &stop, announce(self.source, key, news)) {
                    break 'poll;
                }
            }
            let now = Instant::now();
            let due: Vec<Key> = pending
                .iter()
                .filter(|(_, p)| p.started + linger <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for key in due {
                let mut p = pending.remove(&key).expect("listed above");
                mark_backlog(&shared, &key, &mut p);
                if !self.deliver(&shared, &handle, &out, &stop, key, p) {
                    break 'poll;
                }
            }
            if now >= next_commit {
                next_commit = now + commit_every;
                let tpl = shared.take_commits(None);
                if tpl.count() > 0 {
                    if let Err(error) = consumer.commit(&tpl, CommitMode::Async) {
                        self.metrics.commit_failures.fetch_add(1, Relaxed);
                        tracing::warn!(source = self.source, %error, "Committing Kafka offsets failed; retrying with the next commit.");
                        for e in tpl.elements() {
                            if let Some(st) = shared
                                .parts()
                                .get_mut(&(Arc::<str>::from(e.topic()), e.partition()))
                            {
                                st.committed = None;
                            }
                        }
                    }
                }
            }
        }
        // Unsent batches are replayed after a restart. Give the pipeline a
        // moment to acknowledge what it has, then commit it.
        drop(pending);
        let unsettled = shared.wait_settled(
            None,
            Instant::now() + Duration::from_millis(self.config.rebalance_ack_timeout_ms),
        );
        self.metrics
            .unsettled_at_stop
            .fetch_add(unsettled as u64, Relaxed);
        let tpl = shared.take_commits(None);
        if tpl.count() > 0 {
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => {
                    self.metrics.commits.fetch_add(1, Relaxed);
                }
                Err(error) => {
                    self.metrics.commit_failures.fetch_add(1, Relaxed);
                    self.metrics.unsettled_at_stop.fetch_add(1, Relaxed);
                    tracing::warn!(source = self.source, %error, "Final commit of Kafka offsets failed; the last acknowledged batches will be replayed.");
                }
            }
        }
        // Dropping the consumer leaves the group. The revoke callback that
        // runs then has nothing left to wait for or commit.
        shared.parts().clear();
        self.metrics.assigned_partitions.store(0, Relaxed);
        drop(consumer);
        tracing::info!(
            source = self.source,
            unacknowledged_batches = unsettled,
            "Kafka consumer stopped."
        );
        result
    }

    /// Sends one partition's batch with its acknowledgement handle; `false`
    /// when the source must stop.
    fn deliver(
        &self,
        shared: &Arc<Shared>,
        handle: &tokio::runtime::Handle,
        out: &Sender<RecordBatch>,
        stop: &CancellationToken,
        key: Key,
        mut p: Pending,
    ) -> bool {
        if p.batch.is_empty() {
            // Only empty messages: the next batch's commit covers them.
            return true;
        }
        let epoch = {
            let mut parts = shared.parts();
            let Some(st) = parts.get_mut(&key) else {
                // Not assigned (any more): the new owner delivers these.
                return true;
            };
            st.in_flight += 1;
            st.epoch
        };
        p.batch.ack = Some(Box::new(KafkaAck {
            shared: shared.clone(),
            key,
            epoch,
            next_offset: p.next_offset,
            acked: false,
        }));
        self.metrics.delivered(p.batch.len(), p.batch.truncated);
        send_blocking(handle, out, stop, p.batch)
    }
}

/// The configured topic's shared name, or a new one for a topic not listed
/// (a regex subscription).
fn intern(interned: &[Arc<str>], topic: &str) -> Arc<str> {
    interned
        .iter()
        .find(|t| &***t == topic)
        .cloned()
        .unwrap_or_else(|| Arc::from(topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> BatchShape {
        BatchShape {
            max_line_bytes: 1024,
            batch_lines: 100,
        }
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let c: KafkaConfig =
            serde_json::from_str(r#"{"brokers":"b:9092","group_id":"g","topics":["t"]}"#).unwrap();
        assert_eq!(c, KafkaConfig::new("b:9092", "g", vec!["t".into()]));
        assert_eq!(c.auto_offset_reset, OffsetReset::Earliest);
        let err = serde_json::from_str::<KafkaConfig>(
            r#"{"brokers":"b","group_id":"g","topics":["t"],"topic":"x"}"#,
        );
        assert!(err.is_err());
    }

    #[test]
    fn build_rejects_what_would_break_at_least_once_or_cannot_work() {
        let ok = KafkaConfig::new("127.0.0.1:9092", "g", vec!["t".into()]);
        assert!(build(ok.clone(), 1, shape(), SourceMetrics::new()).is_ok());
        let mut c = ok.clone();
        c.topics.clear();
        assert!(matches!(
            build(c, 1, shape(), SourceMetrics::new()),
            Err(SourceError::InvalidConfig {
                field: "topics",
                ..
            })
        ));
        let mut c = ok.clone();
        c.properties
            .insert("enable.auto.commit".into(), "true".into());
        assert!(matches!(
            build(c, 1, shape(), SourceMetrics::new()),
            Err(SourceError::InvalidConfig {
                field: "properties",
                ..
            })
        ));
        let mut c = ok.clone();
        c.properties.insert("no.such.property".into(), "1".into());
        assert!(matches!(
            build(c, 1, shape(), SourceMetrics::new()),
            Err(SourceError::InvalidConfig {
                field: "properties",
                ..
            })
        ));
        let mut c = ok;
        c.properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        c.properties
            .insert("sasl.mechanism".into(), "SCRAM-SHA-512".into());
        assert!(build(c, 1, shape(), SourceMetrics::new()).is_ok());
    }

    #[test]
    fn gatewatch_defaults_apply_and_config_properties_override_them() {
        let mut c = KafkaConfig::new("127.0.0.1:9092", "g", vec!["t".into()]);
        assert_eq!(client_config(&c).get("fetch.wait.max.ms"), Some("100"));
        c.properties
            .insert("fetch.wait.max.ms".into(), "500".into());
        assert_eq!(client_config(&c).get("fetch.wait.max.ms"), Some("500"));
    }
}
