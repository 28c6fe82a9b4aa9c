//! The repartition producer: re-keys traffic by client into an internal
//! topic.
//!
//! Detection keeps per-client state, so in the scale-out topology all of a
//! client's events must reach one instance. When the upstream topic is not
//! keyed by client, an "ingest stage" parses lines and publishes them to an
//! internal topic keyed by the client key; detection instances consume that
//! topic in one consumer group (the Kafka Streams repartition pattern).
//! Kafka's default partitioner sends equal keys to one partition.
//!
//! The producer is idempotent with `acks=all`: a retried send neither
//! duplicates nor reorders within a partition, and a delivered message
//! survives the loss of the leader. The caller acknowledges its upstream
//! batch only after every `send` future of that batch resolved `Ok`.

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Why a repartition message was not published.
#[derive(Debug, thiserror::Error)]
pub enum RepartitionError {
    /// The producer's configuration was rejected (a bad property).
    #[error("invalid repartition producer configuration")]
    Config(#[source] KafkaError),
    /// A property that carries the delivery guarantee was passed in.
    #[error("the repartition producer property `{property}` is set by gatewatch")]
    Reserved {
        /// The property.
        property: String,
    },
    /// The message was not delivered (after librdkafka's own retries, within
    /// `message.timeout.ms`).
    #[error("publishing to repartition topic {topic} failed")]
    Send {
        /// The internal topic.
        topic: Arc<str>,
        /// librdkafka's error.
        #[source]
        error: KafkaError,
    },
    /// Outstanding messages were not delivered within the flush timeout.
    #[error("flushing the repartition producer timed out")]
    Flush(#[source] KafkaError),
}

/// Where a published message landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// Partition chosen by the key.
    pub partition: i32,
    /// Offset in that partition.
    pub offset: i64,
}

/// Publishes bytes keyed by a client key to the internal repartition
/// topic. Cheap to clone; clones share one librdkafka producer.
#[derive(Clone)]
pub struct RepartitionProducer {
    producer: FutureProducer,
    topic: Arc<str>,
}

/// Properties set by gatewatch that carry the delivery guarantee.
const RESERVED: &[&str] = &["bootstrap.servers", "enable.idempotence", "acks"];

impl RepartitionProducer {
    /// A producer for `topic` on `brokers`, with extra librdkafka
    /// `properties` (security settings, `linger.ms`, `compression.type`).
    /// Idempotence and `acks=all` cannot be overridden.
    pub fn new(
        brokers: &str,
        topic: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<RepartitionProducer, RepartitionError> {
        let mut config = ClientConfig::new();
        for (k, v) in properties {
            if RESERVED.contains(&k.as_str()) {
                return Err(RepartitionError::Reserved {
                    property: k.clone(),
                });
            }
            config.set(k, v);
        }
        config
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all");
        let producer: FutureProducer = config.create().map_err(RepartitionError::Config)?;
        Ok(RepartitionProducer {
            producer,
            topic: Arc::from(topic),
        })
    }

    /// The internal topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Enqueues one message keyed by `key` into librdkafka's local queue
    /// and returns the future of its delivery (resolving when all in-sync
    /// replicas have it). Awaiting `enqueue` is the backpressure: while the
    /// local queue is full it waits for room. Await each `enqueue` before
    /// the next one and messages keep their order within a key; the
    /// delivery futures can then be awaited together, so many messages are
    /// in flight at once.
    pub async fn enqueue(
        &self,
        key: &[u8],
        payload: &[u8],
    ) -> Result<
        impl Future<Output = Result<Delivered, RepartitionError>> + Send + 'static,
        RepartitionError,
    > {
        let mut record = FutureRecord::to(&self.topic).key(key).payload(payload);
        let delivery = loop {
            match self.producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => {
                    return Err(RepartitionError::Send {
                        topic: self.topic.clone(),
                        error,
                    })
                }
            }
        };
        let topic = self.topic.clone();
        Ok(async move {
            match delivery.await {
                Ok(Ok(d)) => Ok(Delivered {
                    partition: d.partition,
                    offset: d.offset,
                }),
                Ok(Err((error, _))) => Err(RepartitionError::Send { topic, error }),
                Err(_canceled) => Err(RepartitionError::Send {
                    topic,
                    error: KafkaError::Canceled,
                }),
            }
        })
    }

    /// Enqueues one message and waits for its delivery: for a caller that
    /// sends one message at a time.
    pub async fn send(&self, key: &[u8], payload: &[u8]) -> Result<Delivered, RepartitionError> {
        self.enqueue(key, payload).await?.await
    }

    /// Waits until every enqueued message is delivered or `timeout` passes.
    /// Blocking: call it from `spawn_blocking` or at shutdown.
    pub fn flush(&self, timeout: Duration) -> Result<(), RepartitionError> {
        self.producer
            .flush(timeout)
            .map_err(RepartitionError::Flush)
    }
}

impl std::fmt::Debug for RepartitionProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepartitionProducer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}
