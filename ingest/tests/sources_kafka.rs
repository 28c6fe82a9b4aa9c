//! The Kafka source and the repartition producer against a real
//! Kafka-protocol broker (tansu, started by `scripts/dev-services` on
//! `GATEWATCH_TEST_KAFKA_BROKERS`, default 127.0.0.1:19092). Every test uses
//! its own topics and consumer groups, so tests run in parallel and against
//! a broker that has seen earlier runs.
#![cfg(feature = "kafka")]

use gatewatch_ingest::sources::kafka::{build, KafkaConfig, OffsetReset};
use gatewatch_ingest::sources::repartition::RepartitionProducer;
use gatewatch_ingest::sources::{BatchShape, SourceError, SourceMetrics};
use gatewatch_ingest::{Origin, RecordBatch};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SHAPE: BatchShape = BatchShape {
    max_line_bytes: 1024,
    batch_lines: 64,
};

fn brokers() -> String {
    std::env::var("GATEWATCH_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

/// A name no earlier run used.
fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros();
    format!("gw-{prefix}-{t}-{}", N.fetch_add(1, Relaxed))
}

async fn create_topic(partitions: i32) -> String {
    let name = unique("t");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client");
    let topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating {name} on {} (is tansu running? scripts/dev-services): {e}",
                brokers()
            )
        });
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
    // Wait until the metadata shows every partition.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let md = admin
            .inner()
            .fetch_metadata(Some(&name), Duration::from_secs(5));
        if let Ok(md) = md {
            if md
                .topics()
                .first()
                .is_some_and(|t| t.partitions().len() == partitions as usize)
            {
                return name;
            }
        }
        assert!(Instant::now() < deadline, "topic {name} did not appear");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces `payloads` to `partition` and waits for each.
async fn produce(p: &FutureProducer, topic: &str, partition: i32, payloads: &[&[u8]]) {
    for payload in payloads {
        p.send(
            FutureRecord::<(), [u8]>::to(topic)
                .partition(partition)
                .payload(payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("producing to {topic}[{partition}]: {e}"));
    }
}

async fn produce_null(p: &FutureProducer, topic: &str, partition: i32) {
    p.send(
        FutureRecord::<(), ()>::to(topic).partition(partition),
        Duration::from_secs(10),
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
}

fn config(topics: &[&str], group: &str, reset: OffsetReset) -> KafkaConfig {
    let mut c = KafkaConfig::new(
        brokers(),
        group,
        topics.iter().map(|t| t.to_string()).collect(),
    );
    c.auto_offset_reset = reset;
    c.lag_interval_ms = 200;
    c.linger_ms = 20;
    c.properties
        .insert("session.timeout.ms".into(), "6000".into());
    c.properties
        .insert("heartbeat.interval.ms".into(), "500".into());
    c
}

struct Consumer {
    rx: mpsc::Receiver<RecordBatch>,
    metrics: Arc<SourceMetrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), SourceError>>,
}

/// One received line: (topic, partition, line).
type Line = (String, i32, String);

impl Consumer {
    fn start(config: KafkaConfig) -> Consumer {
        let metrics = SourceMetrics::new();
        let src = build(config, 3, SHAPE, metrics.clone()).unwrap();
        let (tx, rx) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let task = tokio::spawn(src.run(tx, stop.clone()));
        Consumer {
            rx,
            metrics,
            stop,
            task,
        }
    }

    /// Receives lines until `n` arrived or `within` passed; acknowledges the
    /// batches when `ack`, else drops them unacknowledged.
    async fn take(&mut self, n: usize, within: Duration, ack: bool) -> Vec<Line> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while out.len() < n {
            let Ok(Some(mut b)) = tokio::time::timeout_at(deadline, self.rx.recv()).await else {
                break;
            };
            if b.is_empty() {
                // Announces an assignment or revocation; carries nothing.
                assert!(b.ack.is_none(), "announcements need no acknowledgement");
                continue;
            }
            let Origin::Kafka {
                topic, partition, ..
            } = &b.origin
            else {
                panic!("origin {:?}", b.origin);
            };
            for i in 0..b.len() {
                out.push((
                    topic.to_string(),
                    *partition,
                    String::from_utf8_lossy(b.line(i)).into_owned(),
                ));
            }
            let a = b
                .ack
                .take()
                .expect("Kafka batches carry an acknowledgement");
            if ack {
                a.ack();
            }
        }
        out
    }

    /// Waits until the consumer has `n` partitions and knows where it
    /// fetches in each (so `latest` has been resolved).
    async fn wait_assigned(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.metrics.assigned_partitions.load(Relaxed) != n
            || self.metrics.kafka_lag().len() as u64 != n
        {
            assert!(
                Instant::now() < deadline,
                "assignment of {n} partitions: {:?}",
                self.metrics.snapshot()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) -> Arc<SourceMetrics> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("consumer stops")
            .unwrap()
            .unwrap();
        self.metrics
    }
}

fn texts(lines: &[Line]) -> BTreeSet<String> {
    lines.iter().map(|l| l.2.clone()).collect()
}

fn payloads(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i}").into_bytes())
        .collect()
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_every_partition_and_splits_multi_line_messages() {
    let topic = create_topic(3).await;
    let p = producer();
    for part in 0..3 {
        produce(&p, &topic, part, &refs(&payloads(&format!("p{part}"), 10))).await;
    }
    produce(&p, &topic, 1, &[b"first\nsecond\r\nthird\n"]).await;
    let mut c = Consumer::start(config(&[&topic], &unique("g"), OffsetReset::Earliest));
    let got = c.take(33, Duration::from_secs(30), true).await;
    assert_eq!(got.len(), 33, "{got:?}");
    let parts: BTreeSet<i32> = got.iter().map(|l| l.1).collect();
    assert_eq!(parts, BTreeSet::from([0, 1, 2]));
    // In order within each partition.
    for part in 0..3 {
        let mine: Vec<&String> = got.iter().filter(|l| l.1 == part).map(|l| &l.2).collect();
        let want: Vec<String> = (0..10).map(|i| format!("p{part}-{i}")).collect();
        assert_eq!(mine[..10], want.iter().collect::<Vec<_>>()[..]);
    }
    assert!(texts(&got).is_superset(&BTreeSet::from([
        "first".into(),
        "second".into(),
        "third".into()
    ])));
    // Lag reaches zero on every partition once everything was consumed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lag = c.metrics.kafka_lag();
        if lag.len() == 3 && lag.iter().all(|l| l.lag == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "lag {lag:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = c.stop().await.snapshot();
    assert_eq!((m.messages, m.lines), (31, 33));
    assert!(m.commits >= 1, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_committed_only_after_acknowledgement() {
    let topic = create_topic(2).await;
    let group = unique("g");
    let p = producer();
    produce(&p, &topic, 0, &refs(&payloads("a", 5))).await;
    produce(&p, &topic, 1, &refs(&payloads("b", 5))).await;
    let all = texts(
        &(0..5)
            .flat_map(|i| {
                [
                    (String::new(), 0, format!("a-{i}")),
                    (String::new(), 1, format!("b-{i}")),
                ]
            })
            .collect::<Vec<_>>(),
    );

    // Received but never acknowledged: the next consumer of the group gets them again.
    let mut c = Consumer::start(config(&[&topic], &group, OffsetReset::Earliest));
    assert_eq!(
        texts(&c.take(10, Duration::from_secs(30), false).await),
        all
    );
    c.stop().await;
    let mut c = Consumer::start(config(&[&topic], &group, OffsetReset::Earliest));
    assert_eq!(
        texts(&c.take(10, Duration::from_secs(30), true).await),
        all,
        "replayed"
    );
    c.stop().await;

    // Acknowledged: committed, not delivered again; only new messages come.
    let mut c = Consumer::start(config(&[&topic], &group, OffsetReset::Earliest));
    c.wait_assigned(2).await;
    assert_eq!(
        c.take(1, Duration::from_secs(3), true).await,
        vec![],
        "nothing replayed"
    );
    produce(&p, &topic, 1, &[b"new"]).await;
    let got = c.take(1, Duration::from_secs(10), true).await;
    assert_eq!(got, vec![(topic.clone(), 1, "new".into())]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_malformed_messages_do_not_stall_the_partition() {
    let topic = create_topic(1).await;
    let p = producer();
    produce(
        &p,
        &topic,
        0,
        &[b"", b"\n\n", b"\xff\xfe\x00binary\x80", &[b'z'; 5000]],
    )
    .await;
    produce_null(&p, &topic, 0).await;
    produce(&p, &topic, 0, &[b"good line"]).await;
    let mut c = Consumer::start(config(&[&topic], &unique("g"), OffsetReset::Earliest));
    let got = c.take(3, Duration::from_secs(30), true).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].2.len(), "\u{fffd}\u{fffd}\0binary\u{fffd}".len());
    assert_eq!(got[1].2.len(), 1024, "cut at the line limit");
    assert_eq!(got[2].2, "good line");
    let m = c.stop().await.snapshot();
    assert_eq!((m.messages, m.empty, m.truncated), (6, 3, 1), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_skips_what_is_there_and_earliest_reads_it() {
    let topic = create_topic(1).await;
    let p = producer();
    produce(&p, &topic, 0, &refs(&payloads("old", 5))).await;
    let mut latest = Consumer::start(config(&[&topic], &unique("g"), OffsetReset::Latest));
    latest.wait_assigned(1).await;
    produce(&p, &topic, 0, &[b"fresh"]).await;
    let got = latest.take(2, Duration::from_secs(5), true).await;
    assert_eq!(texts(&got), BTreeSet::from(["fresh".to_string()]));
    latest.stop().await;
    let mut earliest = Consumer::start(config(&[&topic], &unique("g"), OffsetReset::Earliest));
    let got = earliest.take(6, Duration::from_secs(30), true).await;
    assert_eq!(got.len(), 6);
    assert_eq!(got[0].2, "old-0");
    assert_eq!(got[5].2, "fresh");
    earliest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_in_one_group_split_the_partitions() {
    let topic = create_topic(4).await;
    let group = unique("g");
    let p = producer();
    let mut cfg = config(&[&topic], &group, OffsetReset::Earliest);
    // Only the commits on revoke count here.
    cfg.commit_interval_ms = 600_000;
    let mut a = Consumer::start(cfg.clone());
    a.wait_assigned(4).await;
    // Before the second member: everything to `a`, acknowledged.
    for part in 0..4 {
        produce(
            &p,
            &topic,
            part,
            &refs(&payloads(&format!("before{part}"), 5)),
        )
        .await;
    }
    let before = a.take(20, Duration::from_secs(30), true).await;
    assert_eq!(before.len(), 20);
    let mut b = Consumer::start(cfg);
    // Keep `a` polling (it serves the rebalance) while waiting for the split.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stray = Vec::new();
    while !(a.metrics.assigned_partitions.load(Relaxed) == 2
        && b.metrics.assigned_partitions.load(Relaxed) == 2)
    {
        assert!(
            Instant::now() < deadline,
            "split: a {:?}, b {:?}",
            a.metrics.snapshot(),
            b.metrics.snapshot()
        );
        stray.extend(a.take(1, Duration::from_millis(50), true).await);
        stray.extend(b.take(1, Duration::from_millis(50), true).await);
    }
    assert_eq!(
        stray,
        vec![],
        "acknowledged messages were committed on revoke, not replayed"
    );
    b.wait_assigned(2).await;
    a.wait_assigned(2).await;
    for part in 0..4 {
        produce(
            &p,
            &topic,
            part,
            &refs(&payloads(&format!("after{part}"), 5)),
        )
        .await;
    }
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got_a.len() + got_b.len() < 20 && Instant::now() < deadline {
        got_a.extend(a.take(20, Duration::from_millis(200), true).await);
        got_b.extend(b.take(20, Duration::from_millis(200), true).await);
    }
    let parts_a: BTreeSet<i32> = got_a.iter().map(|l| l.1).collect();
    let parts_b: BTreeSet<i32> = got_b.iter().map(|l| l.1).collect();
    assert_eq!(
        (parts_a.len(), parts_b.len()),
        (2, 2),
        "a {parts_a:?}, b {parts_b:?}"
    );
    assert!(parts_a.is_disjoint(&parts_b));
    let mut all = got_a.clone();
    all.extend(got_b.clone());
    assert_eq!(all.len(), 20, "no duplicates, nothing missing");
    assert_eq!(texts(&all).len(), 20);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repartition_producer_round_trip_keeps_each_key_on_one_partition() {
    let topic = create_topic(4).await;
    let producer = RepartitionProducer::new(&brokers(), &topic, &BTreeMap::new()).unwrap();
    let mut sends = Vec::new();
    for i in 0..100 {
        let key = format!("client-{}", i % 10);
        let delivery = producer
            .enqueue(key.as_bytes(), format!("{key} event {i}").as_bytes())
            .await
            .unwrap();
        sends.push((key.clone(), delivery));
    }
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    for (key, send) in sends {
        let d = send.await.unwrap();
        assert_eq!(
            *partition_of.entry(key).or_insert(d.partition),
            d.partition,
            "a key stays on one partition"
        );
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    assert!(
        partition_of.values().collect::<BTreeSet<_>>().len() > 1,
        "keys spread over partitions"
    );
    let mut c = Consumer::start(config(&[&topic], &unique("g"), OffsetReset::Earliest));
    let got = c.take(100, Duration::from_secs(30), true).await;
    assert_eq!(got.len(), 100);
    let mut last_of: BTreeMap<String, i32> = BTreeMap::new();
    for (_, partition, line) in &got {
        let key = line.split(' ').next().unwrap();
        assert_eq!(partition_of[key], *partition, "{line}");
        // Each key's events arrive in the order they were sent.
        let i: i32 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(
            last_of
                .insert(key.to_string(), i)
                .is_none_or(|prev| prev < i),
            "{line}"
        );
    }
    c.stop().await;
    assert!(RepartitionProducer::new(
        &brokers(),
        &topic,
        &BTreeMap::from([("acks".into(), "1".into())])
    )
    .is_err());
}

/// Throughput on this machine; run with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn throughput() {
    const N: usize = 200_000;
    let topic = create_topic(4).await;
    let producer = RepartitionProducer::new(
        &brokers(),
        &topic,
        &BTreeMap::from([("linger.ms".into(), "20".into())]),
    )
    .unwrap();
    let line = br#"203.0.113.9 - alice [23/Nov/2025:10:00:00 +0000] "POST /login HTTP/1.1" 401 12 "-" "curl/8.0""#;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(N);
    for i in 0..N {
        pending.push(
            producer
                .enqueue(format!("k{}", i % 1000).as_bytes(), line)
                .await
                .unwrap(),
        );
    }
    for p in pending {
        p.await.unwrap();
    }
    let produce_rate = N as f64 / started.elapsed().as_secs_f64();
    let mut cfg = config(&[&topic], &unique("g"), OffsetReset::Earliest);
    cfg.linger_ms = 50;
    let metrics = SourceMetrics::new();
    let src = build(
        cfg,
        3,
        BatchShape {
            max_line_bytes: 4096,
            batch_lines: 1024,
        },
        metrics.clone(),
    )
    .unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let task = tokio::spawn(src.run(tx, stop.clone()));
    let mut started = None;
    let mut n = 0;
    while n < N {
        let mut b = rx.recv().await.unwrap();
        started.get_or_insert_with(Instant::now);
        n += b.len();
        b.ack.take().unwrap().ack();
    }
    let consume_rate = N as f64 / started.unwrap().elapsed().as_secs_f64();
    stop.cancel();
    task.await.unwrap().unwrap();
    eprintln!("Kafka (tansu): produced {produce_rate:.0} msg/s through the repartition producer; consumed {consume_rate:.0} msg/s");
}
