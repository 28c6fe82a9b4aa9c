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
    let producer = RepartitionProducer::new(&brokers(), topic, &BTreeMap::new()).expect("producer");
    let mut deliveries = Vec::with_capacity(requests.len());
    let mut line = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        line.clear();
        render(r, LogFormat::NginxCombined, &mut line);
        line.pop();
        let key = key(i, r);
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
