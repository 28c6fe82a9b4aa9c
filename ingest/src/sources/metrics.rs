//! Per-source counters that the binary exports as metrics.
//!
//! One [`SourceMetrics`] per configured source, shared through an `Arc`
//! between the source (which counts) and the binary's exporter (which
//! reads). Plain relaxed atomics: a counter read a little late is fine, and
//! counting costs nothing on the hot path. No peer address or client key is
//! ever a label here (unbounded cardinality).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Counters of one source. Every field is monotonic unless it says gauge.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    /// Messages received: Kafka messages, syslog messages, file/stdin lines.
    pub messages: AtomicU64,
    /// Lines delivered to the pipeline in batches.
    pub lines: AtomicU64,
    /// Bytes received (payloads, before any cut).
    pub bytes: AtomicU64,
    /// Batches delivered to the pipeline.
    pub batches: AtomicU64,
    /// Messages dropped because the pipeline was full and the sender could
    /// not be slowed down (syslog over UDP).
    pub dropped: AtomicU64,
    /// Lines or messages cut at the maximum size.
    pub truncated: AtomicU64,
    /// Empty messages skipped (a Kafka message with no payload, an empty
    /// syslog frame).
    pub empty: AtomicU64,
    /// Connections accepted (syslog TCP and TLS).
    pub connections: AtomicU64,
    /// Gauge: connections open now.
    pub connections_open: AtomicU64,
    /// Connections refused because the connection limit was reached, or
    /// whose TLS handshake failed.
    pub connections_rejected: AtomicU64,
    /// Acknowledged positions made durable: Kafka offset commits that
    /// succeeded, file checkpoints written.
    pub commits: AtomicU64,
    /// Kafka offset commits or checkpoint writes that failed (retried with
    /// the next one; a crash in between replays, never skips).
    pub commit_failures: AtomicU64,
    /// Gauge: Kafka partitions assigned to this consumer now.
    pub assigned_partitions: AtomicU64,
    /// Batches the pipeline had not acknowledged when the source stopped
    /// (or whose final commit failed): they are read again after a
    /// restart, so detection's state at this stop has counted them once
    /// already.
    pub unsettled_at_stop: AtomicU64,
    /// Gauge: Kafka consumer lag per assigned partition.
    kafka_lag: Mutex<BTreeMap<(Arc<str>, i32), i64>>,
}

/// Consumer lag of one assigned Kafka partition: the high watermark minus
/// the consumer's position (the next offset it will fetch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Messages the consumer is behind.
    pub lag: i64,
}

/// A copy of the counters at one moment, for an exporter that prefers
/// plain numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// See [`SourceMetrics::messages`].
    pub messages: u64,
    /// See [`SourceMetrics::lines`].
    pub lines: u64,
    /// See [`SourceMetrics::bytes`].
    pub bytes: u64,
    /// See [`SourceMetrics::batches`].
    pub batches: u64,
    /// See [`SourceMetrics::dropped`].
    pub dropped: u64,
    /// See [`SourceMetrics::truncated`].
    pub truncated: u64,
    /// See [`SourceMetrics::empty`].
    pub empty: u64,
    /// See [`SourceMetrics::connections`].
    pub connections: u64,
    /// See [`SourceMetrics::connections_open`].
    pub connections_open: u64,
    /// See [`SourceMetrics::connections_rejected`].
    pub connections_rejected: u64,
    /// See [`SourceMetrics::commits`].
    pub commits: u64,
    /// See [`SourceMetrics::commit_failures`].
    pub commit_failures: u64,
    /// See [`SourceMetrics::assigned_partitions`].
    pub assigned_partitions: u64,
    /// See [`SourceMetrics::kafka_lag`].
    pub kafka_lag: Vec<PartitionLag>,
}

impl SourceMetrics {
    /// Fresh, zeroed counters, ready to share with a source.
    pub fn new() -> Arc<SourceMetrics> {
        Arc::new(SourceMetrics::default())
    }

    /// Gauge: the last known consumer lag of every partition assigned to the
    /// consumer now (refreshed every `lag_interval_ms`).
    pub fn kafka_lag(&self) -> Vec<PartitionLag> {
        self.lag_map()
            .iter()
            .map(|((topic, partition), lag)| PartitionLag {
                topic: topic.clone(),
                partition: *partition,
                lag: *lag,
            })
            .collect()
    }

    /// The sum of the consumer lag over the assigned partitions.
    pub fn kafka_lag_total(&self) -> i64 {
        self.lag_map().values().sum()
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            messages: self.messages.load(Relaxed),
            lines: self.lines.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            batches: self.batches.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            truncated: self.truncated.load(Relaxed),
            empty: self.empty.load(Relaxed),
            connections: self.connections.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed),
            connections_rejected: self.connections_rejected.load(Relaxed),
            commits: self.commits.load(Relaxed),
            commit_failures: self.commit_failures.load(Relaxed),
            assigned_partitions: self.assigned_partitions.load(Relaxed),
            kafka_lag: self.kafka_lag(),
        }
    }

    /// Counts a batch handed to the pipeline.
    pub(crate) fn delivered(&self, lines: usize, truncated: u32) {
        self.batches.fetch_add(1, Relaxed);
        self.lines.fetch_add(lines as u64, Relaxed);
        self.truncated.fetch_add(u64::from(truncated), Relaxed);
    }

    /// Counts received messages and their bytes.
    pub(crate) fn received(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }

    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    /// Records one partition's lag (the Kafka source calls it; public so
    /// that embedders and tests can feed the same gauge).
    pub fn set_lag(&self, topic: Arc<str>, partition: i32, lag: i64) {
        self.lag_map().insert((topic, partition), lag);
    }

    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn forget_lag(&self, topic: &str, partition: i32) {
        self.lag_map()
            .retain(|(t, p), _| !(&**t == topic && *p == partition));
    }

    fn lag_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Arc<str>, i32), i64>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.kafka_lag.lock().unwrap_or_else(|e| e.into_inner())
    }
}
