//! Live ingestion over Kafka against a real Kafka-protocol broker (tansu,
//! started by scripts/dev-services): a gatewatch killed with SIGKILL in the
//! middle of a stream and restarted leaves every attack as exactly one
//! incident, and two instances in one consumer group find what one finds.

mod support;

use gatewatch_alerting::testing::TestDb;
use gatewatch_alerting::{IncidentQuery, IncidentStore};
use gatewatch_ingest::sources::repartition::RepartitionProducer;
use gatewatch_loggen::{generate, render, Label, LogFormat, Request, Scenario};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::live::{free_port, Running};
use support::TempDir;

fn brokers() -> String {
    std::env::var("GATEWATCH_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

/// A fresh topic with `partitions` partitions, made with tansu's own CLI.
fn create_topic(prefix: &str, partitions: u32) -> String {
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

/// The labelled scenario's requests and labels.
fn scenario() -> (Vec<Request>, Vec<Label>) {
    let g = generate(&Scenario::eval(42, 800));
    (g.requests.collect(), g.labels)
}

/// Produces `requests` as nginx combined lines keyed by client address
/// (an upstream topic keyed by client), waiting for every delivery.
async fn produce(topic: &str, requests: &[Request]) {
    let producer = RepartitionProducer::new(&brokers(), topic, &BTreeMap::new()).expect("producer");
    let mut deliveries = Vec::with_capacity(requests.len());
    let mut line = Vec::new();
    for r in requests {
        line.clear();
        render(r, LogFormat::NginxCombined, &mut line);
        line.pop();
        let key = r.ip.to_string();
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

/// Every incident in the store, as JSON.
async fn stored(store: &Arc<dyn IncidentStore>) -> Vec<Value> {
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
fn tally(labels: &[Label], incidents: &[Value]) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut per_label = BTreeMap::new();
    let mut stray = Vec::new();
    for l in labels.iter().filter(|l| l.expect.is_some()) {
        per_label.insert(l.name.clone(), 0);
    }
    for i in incidents {
        let hit = labels
            .iter()
            .find(|l| l.expect.is_some_and(|k| i["kind"] == k) && support::matches(l, i));
        match hit {
            Some(l) => *per_label.entry(l.name.clone()).or_default() += 1,
            None => stray.push(format!("{} {} {}", i["kind"], i["client"], i["summary"])),
        }
    }
    (per_label, stray)
}

/// One line per incident, for failure messages.
fn describe(incidents: &[Value]) -> String {
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
async fn wait_all_found(
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

    let incidents = stored(&store).await;
    let (per_label, stray) = tally(&labels, &incidents);
    assert!(
        per_label.values().all(|n| *n == 1),
        "each attack must be exactly one incident: {per_label:?}\n{}",
        describe(&incidents)
    );
    assert!(stray.is_empty(), "incidents about no attacker: {stray:?}");
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

    let shared_db = TestDb::postgres().await;
    let shared_store = shared_db.store().await;
    let (d1, d2) = (TempDir::new("live-kafka-a"), TempDir::new("live-kafka-b"));
    let a = start(&d1, &shared_db, &topic, &format!("{topic}-two"));
    let b = start(&d2, &shared_db, &topic, &format!("{topic}-two"));
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
    let (per_label, stray) = tally(&labels, &stored(&shared_store).await);
    assert!(stray.is_empty(), "incidents about no attacker: {stray:?}");
    assert!(
        per_label.values().all(|n| *n == 1),
        "one attack, one incident, across instances: {per_label:?}"
    );
}
