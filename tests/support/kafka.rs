//! Helpers for the live Kafka tests (tansu from scripts/dev-services):
//! topics, producing the labelled scenario, and tallying stored incidents
//! against the loggen labels. Include it next to `mod support;` with
//! `#[path = "support/kafka.rs"] mod kafka;` (it uses `support::matches`).
#![allow(dead_code)]

use gatewatch_alerting::{IncidentQuery, IncidentStore};
use gatewatch_ingest::sources::repartition::RepartitionProducer;
use gatewatch_loggen::{render, Label, LogFormat, Request};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::live::Running;

/// The broker: `GATEWATCH_TEST_KAFKA_BROKERS` or tansu's default.
pub fn brokers() -> String {
    std::env::var("GATEWATCH_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

/// A fresh topic with `partitions` partitions, made with tansu's own CLI.
pub fn create_topic(prefix: &str, partitions: u32) -> String {
    let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    let tansu = std::env::var("GATEWATCH_TEST_TANSU").unwrap_or_else(|_| {
        format!(
            "{}/.cargo/bin/tansu",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let out = std::process::Command::new(tansu)
        .args([
            "topic",
            "create",
            &name,
            "--broker",
            &format!("tcp://{}", brokers()),
        ])
        .args(["--partitions", &partitions.to_string()])
        .output()
        .expect("run tansu topic create (scripts/dev-services installs tansu)");
    assert!(
        out.status.success(),
        "tansu topic create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    name
}

/// Produces `requests` as nginx combined lines, the i-th with key
/// `key(i, request)`, waiting for every delivery.
pub async fn produce_with(
    topic: &str,
    requests: &[Request],
    key: impl Fn(usize, &Request) -> String,
) {
    let lines = requests.iter().enumerate().map(|(i, r)| {
        let mut line = Vec::new();
        render(r, LogFormat::NginxCombined, &mut line);
        line.pop();
        (key(i, r), line)
    });
    produce_lines(topic, lines).await;
}

/// Produces each `(key, line)` as one message, waiting for every delivery.
pub async fn produce_lines(topic: &str, lines: impl IntoIterator<Item = (String, Vec<u8>)>) {
    let producer = RepartitionProducer::new(&brokers(), topic, &BTreeMap::new()).expect("producer");
    let mut deliveries = Vec::new();
    for (key, line) in lines {
        deliveries.push(
            producer
                .enqueue(key.as_bytes(), &line)
                .await
                .expect("enqueue"),
        );
    }
    for d in deliveries {
        d.await.expect("delivered");
    }
}

/// Every incident in the store, as JSON.
pub async fn stored(store: &Arc<dyn IncidentStore>) -> Vec<Value> {
    let page = store
        .list(&IncidentQuery {
            limit: Some(1000),
            ..IncidentQuery::default()
        })
        .await
        .expect("list incidents");
    page.incidents
        .iter()
        .map(|i| serde_json::to_value(i).expect("json"))
        .collect()
}

/// How many stored incidents each attack label has; and incidents that
/// match no attack.
pub fn tally(labels: &[Label], incidents: &[Value]) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut per_label = BTreeMap::new();
    let mut stray = Vec::new();
    for l in labels.iter().filter(|l| l.expect.is_some()) {
        per_label.insert(l.name.clone(), 0);
    }
    for i in incidents {
        let hit = labels
            .iter()
            .find(|l| l.expect.is_some_and(|k| i["kind"] == k) && crate::support::matches(l, i));
        match hit {
            Some(l) => *per_label.entry(l.name.clone()).or_default() += 1,
            None => stray.push(format!("{} {} {}", i["kind"], i["client"], i["summary"])),
        }
    }
    (per_label, stray)
}

/// Asserts every attack in `labels` is exactly one of `incidents` and no
/// incident is about something that is not an attack.
pub fn assert_each_attack_once(labels: &[Label], incidents: &[Value]) {
    let (per_label, stray) = tally(labels, incidents);
    assert!(
        per_label.values().all(|n| *n == 1),
        "each attack must be exactly one incident: {per_label:?}\n{}",
        describe(incidents)
    );
    assert!(
        stray.is_empty(),
        "incidents about no attacker: {stray:?}\n{}",
        describe(incidents)
    );
}

/// One line per incident, for failure messages.
pub fn describe(incidents: &[Value]) -> String {
    incidents
        .iter()
        .map(|i| {
            format!(
                "{} {} {}..{} {}",
                i["kind"], i["client"], i["first_seen"], i["last_seen"], i["summary"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until every attack has an incident in the store.
pub async fn wait_all_found(
    store: &Arc<dyn IncidentStore>,
    labels: &[Label],
    timeout: Duration,
    gw: &[&Running],
) {
    let deadline = Instant::now() + timeout;
    loop {
        let (per_label, _) = tally(labels, &stored(store).await);
        if per_label.values().all(|n| *n >= 1) {
            return;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = gw.iter().map(|g| g.log()).collect();
            panic!(
                "not every attack found within {timeout:?}: {per_label:?}\n{}",
                logs.join("\n---\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The offsets `group` has committed for partitions `0..partitions` of
/// `topic`, as the broker has them (OffsetFetch), read by a client that
/// neither subscribes nor joins the group, so the group is left as it is;
/// `None` where the group has committed nothing.
pub fn committed_offsets(topic: &str, group: &str, partitions: i32) -> Vec<Option<i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offset-reading client");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(15))
        .expect("fetch the group's committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

/// The end offset of partitions `0..partitions` of `topic` (the offset
/// after its last message), found by reading every partition to its end
/// outside any group. tansu 0.6 answers ListOffsets (librdkafka's
/// `fetch_watermarks`) with figures that are not the partitions' ends, so
/// this reads the messages instead.
pub fn end_offsets(topic: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::message::Message;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set(
            "group.id",
            format!("end-offsets-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("end-offset-reading client");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition offset");
    }
    consumer.assign(&tpl).expect("assign");
    let mut ends = vec![0; partitions as usize];
    let mut at_eof = vec![false; partitions as usize];
    let deadline = Instant::now() + Duration::from_secs(30);
    while at_eof.iter().any(|e| !e) {
        assert!(
            Instant::now() < deadline,
            "could not read {topic} to its end"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let p = m.partition() as usize;
                ends[p] = m.offset() + 1;
                at_eof[p] = false;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => at_eof[p as usize] = true,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    ends
}

/// Every sample of `name` (labelled or not) on a running gatewatch's
/// `/metrics` at `api`; `None` when the page cannot be read.
pub async fn metric_samples(api: u16, name: &str) -> Option<Vec<f64>> {
    let text = reqwest::get(format!("http://127.0.0.1:{api}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.trim().parse().ok())
            .collect(),
    )
}

/// The sum of every sample of `name` on `/metrics` at `api`; `None` when
/// it cannot be read or has no such sample.
pub async fn metric_total(api: u16, name: &str) -> Option<f64> {
    let samples = metric_samples(api, name).await?;
    (!samples.is_empty()).then(|| samples.iter().sum())
}
