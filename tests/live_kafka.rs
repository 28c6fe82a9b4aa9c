//! Live ingestion over Kafka against a real Kafka-protocol broker (tansu,
//! started by scripts/dev-services): a gatewatch killed with SIGKILL in the
//! middle of a stream and restarted leaves every attack as exactly one
//! incident, and two instances in one consumer group find what one finds.

#[path = "support/kafka.rs"]
mod kafka;
mod support;

use gatewatch_alerting::testing::TestDb;
use gatewatch_loggen::{generate, Label, Request, Scenario};
use kafka::{assert_each_attack_once, brokers, create_topic, produce_with, stored, wait_all_found};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::live::{free_port, Running};
use support::TempDir;

/// The labelled scenario's requests and labels.
fn scenario() -> (Vec<Request>, Vec<Label>) {
    let g = generate(&Scenario::eval(42, 800));
    (g.requests.collect(), g.labels)
}

/// Produces `requests` keyed by client address (an upstream topic keyed by
/// client).
async fn produce(topic: &str, requests: &[Request]) {
    produce_with(topic, requests, |_, r| r.ip.to_string()).await;
}

fn start(dir: &TempDir, db: &TestDb, topic: &str, group: &str) -> Running {
    // A short session timeout: after a SIGKILL the group waits this long
    // for the dead member before its partitions can go to the restarted one
    // (librdkafka's default is 45 s).
    let config = dir.0.join(format!("{group}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
[[sources]]
type = "kafka"
brokers = "{brokers}"
group_id = "{group}"
topics = ["{topic}"]
format = "nginx_combined"
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}

# The whole suite runs in parallel on two cores: a starved consumer can
# leave a partition silent for longer than the default 250 ms, and the
# merger would then move on without it and take its events late (a stray
# traffic_spike on the crawler was seen once that way). These tests are
# about replay and sharing partitions, so they wait longer.
[pipeline]
partition_idle_ms = 2000

[api]
listen = "127.0.0.1:{api}"
"#,
            brokers = brokers(),
            api = free_port(),
        ),
    )
    .expect("write config");
    Running::start(
        &dir.0,
        &[("GATEWATCH_DATABASE_URL", db.url().to_string())],
        &["--config", config.to_str().expect("utf-8 path")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_leaves_each_attack_exactly_once() {
    let (requests, labels) = scenario();
    let topic = create_topic("gw-kill", 4);
    let db = TestDb::postgres().await;
    let store = db.store().await;
    let dir = TempDir::new("live-kafka-kill");

    // First half of the stream, then a hard kill once incidents are stored
    // (offsets of what was stored are committed; the rest will replay).
    let half = requests.len() / 2;
    produce(&topic, &requests[..half]).await;
    let gw = start(&dir, &db, &topic, &format!("{topic}-group"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while stored(&store).await.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no incident from the first half:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.kill();

    // The rest arrives while gatewatch is down.
    produce(&topic, &requests[half..]).await;
    let gw = start(&dir, &db, &topic, &format!("{topic}-group"));
    wait_all_found(&store, &labels, Duration::from_secs(180), &[&gw]).await;
    // Let it finish the topic: nothing new may appear, nothing may double.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (clean, log) = gw.terminate();
    assert!(clean, "{log}");

    assert_each_attack_once(&labels, &stored(&store).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_one_group_find_what_one_finds() {
    let (requests, labels) = scenario();
    let topic = create_topic("gw-group", 4);
    produce(&topic, &requests).await;

    let single_db = TestDb::postgres().await;
    let single_store = single_db.store().await;
    let dir = TempDir::new("live-kafka-one");
    let one = start(&dir, &single_db, &topic, &format!("{topic}-one"));
    wait_all_found(&single_store, &labels, Duration::from_secs(180), &[&one]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (clean, log) = one.terminate();
    assert!(clean, "{log}");

    // Both instances share the partitions before the stream starts: a
    // member joining mid-stream moves partitions without their clients'
    // state (a documented limit), which is not what this test is about.
    let topic = create_topic("gw-group-two", 4);
    let shared_db = TestDb::postgres().await;
    let shared_store = shared_db.store().await;
    let (d1, d2) = (TempDir::new("live-kafka-a"), TempDir::new("live-kafka-b"));
    let a = start(&d1, &shared_db, &topic, &format!("{topic}-two"));
    let b = start(&d2, &shared_db, &topic, &format!("{topic}-two"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !b
        .log()
        .lines()
        .any(|l| l.contains("Kafka partitions assigned") && l.contains("partitions=[\""))
    {
        assert!(
            Instant::now() < deadline,
            "the second instance got no partitions:\n{}\n---\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    produce(&topic, &requests).await;
    wait_all_found(&shared_store, &labels, Duration::from_secs(180), &[&a, &b]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for gw in [a, b] {
        let (clean, log) = gw.terminate();
        assert!(clean, "{log}");
    }

    let key = |v: &Value| {
        (
            v["kind"].as_str().unwrap_or_default().to_string(),
            v["client"].as_str().unwrap_or_default().to_string(),
        )
    };
    let one: BTreeSet<_> = stored(&single_store).await.iter().map(key).collect();
    let two: BTreeSet<_> = stored(&shared_store).await.iter().map(key).collect();
    assert_eq!(
        one, two,
        "two instances in one group must find what one finds"
    );
    assert_each_attack_once(&labels, &stored(&shared_store).await);
}
