//! Live ingestion over Kafka against a real Kafka-protocol broker (tansu,
//! started by scripts/dev-services): a gatewatch killed with SIGKILL while
//! records it has consumed and processed are not yet committed, and
//! restarted, leaves every attack as exactly one incident; and two
//! instances in one consumer group find what one finds.

#[path = "support/kafka.rs"]
mod kafka;
mod support;

use gatewatch_alerting::testing::TestDb;
use gatewatch_loggen::{generate, Label, LogFormat, Request, Scenario};
use kafka::{
    assert_each_attack_once, brokers, committed_offsets, create_topic, end_offsets, metric_samples,
    metric_total, produce_lines, produce_with, stored, wait_all_found,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::live::{free_port, Running};
use support::TempDir;

/// Partitions of every topic here.
const PARTITIONS: i32 = 4;

/// A commit interval no test run reaches: such an instance commits only
/// when partitions are revoked and when it shuts down cleanly.
const NEVER: u64 = 3_600_000;

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

/// How long the merger waits for a quiet partition (see `start`).
const PARTITION_IDLE_MS: u64 = 2000;

/// A `gatewatch run` consuming `topic` in `group`, committing offsets every
/// `commit_interval_ms`; with the port of its API (for `/metrics`).
fn start(
    dir: &TempDir,
    db: &TestDb,
    topic: &str,
    group: &str,
    commit_interval_ms: u64,
) -> (Running, u16) {
    // A short session timeout: after a SIGKILL the group waits this long
    // for the dead member before its partitions can go to the restarted one
    // (librdkafka's default is 45 s).
    let config = dir.0.join(format!("{group}.toml"));
    let api = free_port();
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
commit_interval_ms = {commit_interval_ms}
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}

# The whole suite runs in parallel on two cores: a starved consumer can
# leave a partition silent for longer than the default 250 ms, and the
# merger would then move on without it and take its events late (a stray
# traffic_spike on the crawler was seen once that way). These tests are
# about replay and sharing partitions, so they wait longer.
[pipeline]
partition_idle_ms = {PARTITION_IDLE_MS}

# A config file turns the console sink off by default; the tests read the
# incidents each instance prints.
[console]
enabled = true

[api]
listen = "127.0.0.1:{api}"
"#,
            brokers = brokers(),
        ),
    )
    .expect("write config");
    let gw = Running::start(
        &dir.0,
        &[("GATEWATCH_DATABASE_URL", db.url().to_string())],
        &["--config", config.to_str().expect("utf-8 path")],
    );
    (gw, api)
}

/// Log lines `gw` has received from Kafka, from its `/metrics`.
async fn received(api: u16) -> u64 {
    metric_total(api, "gatewatch_events_received_total")
        .await
        .unwrap_or(0.0) as u64
}

/// Waits until `gw` has received at least `n` log lines.
async fn wait_received(gw: &Running, api: u16, n: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = received(api).await;
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "received {got} of {n} lines within {timeout:?}:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `gw` has statistics (high watermarks) for every partition.
async fn wait_watermarks_known(gw: &Running, api: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lags = metric_samples(api, "gatewatch_kafka_consumer_lag").await;
        if lags
            .as_ref()
            .is_some_and(|l| l.len() == PARTITIONS as usize)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no consumer lag for every partition: {lags:?}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ids of `incidents`.
fn ids(incidents: &[Value]) -> BTreeSet<String> {
    incidents
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_string))
        .collect()
}

/// The group's committed offsets, `None` (nothing committed) as 0.
fn committed(topic: &str, group: &str) -> Vec<i64> {
    committed_offsets(topic, group, PARTITIONS)
        .into_iter()
        .map(|o| o.unwrap_or(0))
        .collect()
}

/// SIGTERM commits the offsets of every batch read, also those the
/// partition merger was still holding back for ordering: an instance that
/// commits only when it stops, stopped right after a burst, leaves nothing
/// to replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_commits_every_batch_it_read() {
    let (requests, _) = scenario();
    let topic = create_topic("gw-stop", PARTITIONS as u32);
    let group = format!("{topic}-group");
    let db = TestDb::postgres().await;
    let dir = TempDir::new("live-kafka-stop");
    let (gw, api) = start(&dir, &db, &topic, &group, NEVER);
    // Produced at once, before the consumer has partition statistics: its
    // first batches count as a backlog, whose followers the merger holds
    // for 40 × partition_idle_ms — far longer than this test waits.
    let burst = &requests[..requests.len() / 4];
    produce(&topic, burst).await;
    let end = end_offsets(&topic, PARTITIONS);
    wait_received(&gw, api, burst.len() as u64, Duration::from_secs(60)).await;
    let (clean, log) = gw.terminate();
    assert!(clean, "{log}");
    assert_eq!(committed(&topic, &group), end, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_leaves_each_attack_exactly_once() {
    let (requests, labels) = scenario();
    let topic = create_topic("gw-kill", PARTITIONS as u32);
    let group = format!("{topic}-group");
    let db = TestDb::postgres().await;
    let store = db.store().await;
    let dir = TempDir::new("live-kafka-kill");
    let (quarter, half) = (requests.len() / 4, requests.len() / 2);

    // The first quarter, processed and committed: the broker shows the
    // group's offsets at the end of every partition. (Produced once the
    // consumer knows the partitions' high watermarks: a batch taken before
    // that counts as a backlog, and the merger then holds what follows it
    // for 40 × partition_idle_ms.)
    let (gw, api) = start(&dir, &db, &topic, &group, 1000);
    wait_watermarks_known(&gw, api).await;
    produce(&topic, &requests[..quarter]).await;
    let end = end_offsets(&topic, PARTITIONS);
    assert_eq!(end.iter().sum::<i64>(), quarter as i64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(&topic, &group) != end {
        assert!(
            Instant::now() < deadline,
            "the first quarter was never committed: {:?} of {end:?}\n{}",
            committed(&topic, &group),
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (clean, log) = gw.terminate();
    assert!(clean, "{log}");
    let base = committed(&topic, &group);
    assert_eq!(base, end, "committed after a clean stop");

    // The second quarter, read by an instance that never commits on its
    // own. It is killed once it has stored incidents from it: it started at
    // the committed offsets, so whatever it printed comes from records past
    // them, and the broker shows none of those committed.
    let (gw, api) = start(&dir, &db, &topic, &group, NEVER);
    wait_watermarks_known(&gw, api).await;
    produce(&topic, &requests[quarter..half]).await;
    wait_received(&gw, api, (half - quarter) as u64, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let printed = loop {
        let printed = ids(&gw.incidents());
        if !printed.is_empty() && printed.is_subset(&ids(&stored(&store).await)) {
            break printed;
        }
        assert!(
            Instant::now() < deadline,
            "no stored incident from the second quarter: printed {printed:?}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let consumed = received(api).await;
    assert_eq!(
        consumed,
        (half - quarter) as u64,
        "the second instance must resume at the committed offsets:\n{}",
        gw.log()
    );
    assert_eq!(committed(&topic, &group), base, "committed before the kill");
    gw.kill();
    let at_kill = committed(&topic, &group);
    let end = end_offsets(&topic, PARTITIONS);
    let uncommitted: i64 = end.iter().zip(&at_kill).map(|(e, c)| e - c).sum();
    assert_eq!(
        (at_kill, uncommitted),
        (base, consumed as i64),
        "at the kill, every record of the second quarter, which the killed instance \
         received and stored {} incident(s) from, must be uncommitted (ends {end:?})",
        printed.len()
    );

    // The rest arrives while gatewatch is down. The restarted instance
    // replays the uncommitted quarter, then reads on.
    produce(&topic, &requests[half..]).await;
    let (gw, api) = start(&dir, &db, &topic, &group, 1000);
    wait_all_found(&store, &labels, Duration::from_secs(180), &[&gw]).await;
    let replayed = (requests.len() - quarter) as u64;
    wait_received(&gw, api, replayed, Duration::from_secs(60)).await;
    // Let it finish the topic: nothing new may appear, nothing may double.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (clean, log) = gw.terminate();
    assert!(clean, "{log}");

    assert_each_attack_once(&labels, &stored(&store).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_one_group_find_what_one_finds() {
    let (requests, labels) = scenario();
    let topic = create_topic("gw-group", PARTITIONS as u32);
    produce(&topic, &requests).await;

    let single_db = TestDb::postgres().await;
    let single_store = single_db.store().await;
    let dir = TempDir::new("live-kafka-one");
    let (one, _) = start(&dir, &single_db, &topic, &format!("{topic}-one"), 1000);
    wait_all_found(&single_store, &labels, Duration::from_secs(180), &[&one]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (clean, log) = one.terminate();
    assert!(clean, "{log}");

    // Both instances share the partitions before the stream starts: a
    // member joining mid-stream moves partitions without their clients'
    // state (a documented limit), which is not what this test is about.
    let topic = create_topic("gw-group-two", PARTITIONS as u32);
    let shared_db = TestDb::postgres().await;
    let shared_store = shared_db.store().await;
    let (d1, d2) = (TempDir::new("live-kafka-a"), TempDir::new("live-kafka-b"));
    let (a, _) = start(&d1, &shared_db, &topic, &format!("{topic}-two"), 1000);
    let (b, _) = start(&d2, &shared_db, &topic, &format!("{topic}-two"), 1000);
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

/// A live burst on one partition right after start is not held back for
/// the partitions that stay empty. Those were announced as possibly
/// holding a backlog, which the merger waits for 40 × `partition_idle_ms`
/// (80 s here); the consumer's statistics showing them caught up end that
/// wait for live traffic, so the incident comes within seconds. (History
/// produced after the start is still ordered across partitions:
/// `two_instances_in_one_group_find_what_one_finds`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_burst_on_one_partition_is_not_held_for_the_quiet_ones() {
    let topic = create_topic("gw-live-burst", PARTITIONS as u32);
    let db = TestDb::postgres().await;
    let dir = TempDir::new("live-kafka-live-burst");
    let (gw, api) = start(&dir, &db, &topic, &format!("{topic}-g"), 1000);
    wait_watermarks_known(&gw, api).await;
    // Thirty refused logins over the last minute, all under one key: one
    // partition gets them, the other three stay empty.
    let now = chrono::Utc::now();
    let lines = (0..30i64).map(|i| {
        let at = now - chrono::Duration::seconds(60 - 2 * i);
        let line = format!(
            "203.0.113.50 - admin [{}] \"POST /api/v1/auth/login HTTP/1.1\" 401 153 \"-\" \"attack-tool/1.0\"",
            at.format("%d/%b/%Y:%H:%M:%S +0000")
        );
        ("one client".to_string(), line.into_bytes())
    });
    produce_lines(&topic, lines).await;
    let patience = Duration::from_millis(40 * PARTITION_IDLE_MS);
    gw.wait_for_incident("from the live burst", patience / 2, |v| {
        v["client"] == "203.0.113.50"
    });
    let (clean, log) = gw.terminate();
    assert!(clean, "{log}");
}

/// A clean stop half-way through the stream and a start: the second
/// instance takes back the detector state the first saved (and its
/// offsets), so between them they find what one replay of the whole stream
/// finds, severities included. The cut falls inside a credential-stuffing
/// run that, judged without the first half, is only `medium`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_carries_detector_state() {
    let (requests, labels) = scenario();
    let topic = create_topic("gw-restart", PARTITIONS as u32);
    let group = format!("{topic}-group");
    let db = TestDb::postgres().await;
    let store = db.store().await;
    let dir = TempDir::new("live-kafka-restart");
    let cut = requests.len() * 9 / 20;

    let (gw, api) = start(&dir, &db, &topic, &group, 1000);
    wait_watermarks_known(&gw, api).await;
    produce(&topic, &requests[..cut]).await;
    wait_received(&gw, api, cut as u64, Duration::from_secs(60)).await;
    let (clean, log) = gw.terminate();
    assert!(clean && log.contains("Detector state saved"), "{log}");
    assert_eq!(committed(&topic, &group), end_offsets(&topic, PARTITIONS));

    let (gw, api) = start(&dir, &db, &topic, &group, 1000);
    gw.wait_for_log("Detector state taken back", Duration::from_secs(30));
    wait_watermarks_known(&gw, api).await;
    produce(&topic, &requests[cut..]).await;
    wait_received(
        &gw,
        api,
        (requests.len() - cut) as u64,
        Duration::from_secs(60),
    )
    .await;
    wait_all_found(&store, &labels, Duration::from_secs(180), &[&gw]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (clean, log) = gw.terminate();
    assert!(clean, "{log}");

    let log_file = dir.0.join("whole.log");
    support::write_log(
        &Scenario::eval(42, 800),
        LogFormat::NginxCombined,
        &log_file,
    );
    let whole = support::replay(&["--format", "nginx_combined", log_file.to_str().unwrap()]);
    let verdict = |v: &Value| {
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        (field("kind"), field("client"), field("severity"))
    };
    let by_replay: BTreeSet<_> = support::latest_by_id(&support::json_lines(&whole.stdout))
        .values()
        .map(verdict)
        .collect();
    let restarted: BTreeSet<_> = stored(&store).await.iter().map(verdict).collect();
    assert_eq!(restarted, by_replay, "{log}");
}
