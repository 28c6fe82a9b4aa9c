//! The scale-out topology for an upstream topic that is NOT keyed by
//! client, against a real Kafka-protocol broker (tansu, from
//! scripts/dev-services) and PostgreSQL:
//!
//! ```text
//! upstream (4 partitions, round-robin keys, nginx combined)
//!   └─▶ ingest stage ([repartition]) ─▶ internal topic (4 partitions, keyed by client)
//!         └─▶ two detection instances, one group, format gatewatch_event ─▶ one Postgres
//! ```
//! Every labelled attack must give exactly one incident of its kind, with
//! no stray incidents, as one instance reading a client-keyed topic does;
//! and each detection instance must own partitions of the internal topic
//! and detect on events from them, so the topology is really scaled out.

#[path = "support/kafka.rs"]
mod kafka;
mod support;

use gatewatch_alerting::testing::TestDb;
use gatewatch_loggen::{generate, Scenario};
use kafka::{
    assert_each_attack_once, brokers, create_topic, metric_samples, metric_total, produce_with,
    stored, wait_all_found,
};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::live::{free_port, Running};
use support::TempDir;

/// A `gatewatch run` consuming `topic` in `group` with `format`, with
/// `args` (a config file), writing incidents to `db`.
fn start(
    dir: &TempDir,
    db: &TestDb,
    topic: &str,
    group: &str,
    format: &str,
    api: u16,
    args: &[&str],
) -> Running {
    let env = vec![
        ("GATEWATCH_DATABASE_URL", db.url().to_string()),
        ("GATEWATCH_KAFKA_BROKERS", brokers()),
        ("GATEWATCH_KAFKA_TOPICS", topic.to_string()),
        ("GATEWATCH_KAFKA_GROUP", group.to_string()),
        ("GATEWATCH_FORMAT", format.to_string()),
        (
            "GATEWATCH_SYSLOG_ADDR",
            format!("127.0.0.1:{}", free_port()),
        ),
        ("GATEWATCH_API_ADDR", format!("127.0.0.1:{api}")),
    ];
    Running::start(&dir.0, &env, args)
}

/// The partitions `gw` holds according to its log (assignments minus
/// revocations so far), as it names them (`topic[n]`).
fn held_partitions(gw: &Running) -> BTreeSet<String> {
    let mut held = BTreeSet::new();
    for line in gw.log().lines() {
        let assigned = line.contains("Kafka partitions assigned");
        if !assigned && !line.contains("Kafka partitions revoked") {
            continue;
        }
        // `partitions=["t[0]", "t[1]"]`
        let Some(list) = line.split_once("partitions=[").map(|(_, l)| l) else {
            continue;
        };
        let list = &list[..list.rfind(']').unwrap_or(list.len())];
        for name in list
            .split(", ")
            .map(|n| n.trim_matches('"'))
            .filter(|n| !n.is_empty())
        {
            if assigned {
                held.insert(name.to_string());
            } else {
                held.remove(name);
            }
        }
    }
    held
}

/// Waits until `gw` has statistics (high watermarks) for every partition
/// it holds, so that the batches it takes from now on say truly whether
/// more is waiting (a batch taken before counts as a backlog, and the
/// merger then holds what follows it for 40 × partition_idle_ms).
async fn wait_watermarks_known(gw: &Running, api: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lags = metric_samples(api, "gatewatch_kafka_consumer_lag").await;
        let held = held_partitions(gw).len();
        if lags.as_ref().is_some_and(|l| l.len() == held) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no consumer lag for the {held} partitions held: {lags:?}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unkeyed_upstream_through_an_ingest_stage_gives_each_attack_exactly_once() {
    let g = generate(&Scenario::eval(42, 800));
    let (requests, labels): (Vec<_>, _) = (g.requests.collect(), g.labels);
    let upstream = create_topic("gw-upstream", 4);
    let internal = create_topic("gw-internal", 4);
    // Round-robin keys: a client's requests are spread over every partition.
    produce_with(&upstream, &requests, |i, _| format!("rr-{}", i % 64)).await;

    let db = TestDb::postgres().await;
    let store = db.store().await;
    let (di, d1, d2) = (
        TempDir::new("live-repartition-ingest"),
        TempDir::new("live-repartition-a"),
        TempDir::new("live-repartition-b"),
    );

    // Both detection instances share the internal topic's partitions
    // before anything is published to it: a member joining mid-stream
    // moves partitions without their clients' state (a documented limit),
    // which is not what this test is about. The ingest stage then reads
    // the upstream topic as a backlog and detection keeps up with it.
    let detect = d1.path("detect.toml");
    std::fs::write(
        &detect,
        // As in tests/live_kafka.rs: on two busy cores a partition can be
        // silent for longer than the default 250 ms while the stage is
        // still publishing to it. A config file turns the console sink off
        // by default; wait_all_found shows what each instance printed.
        "[pipeline]\npartition_idle_ms = 2000\n\n[console]\nenabled = true\n",
    )
    .expect("write config");
    let detect = detect.to_str().expect("utf-8 path");
    let group = format!("{internal}-detect");
    let (api_a, api_b) = (free_port(), free_port());
    let a = start(
        &d1,
        &db,
        &internal,
        &group,
        "gatewatch_event",
        api_a,
        &["-c", detect],
    );
    let b = start(
        &d2,
        &db,
        &internal,
        &group,
        "gatewatch_event",
        api_b,
        &["-c", detect],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let (held_a, held_b) = loop {
        let (held_a, held_b) = (held_partitions(&a), held_partitions(&b));
        if held_a.len() + held_b.len() == 4 && !held_a.is_empty() && !held_b.is_empty() {
            break (held_a, held_b);
        }
        assert!(
            Instant::now() < deadline,
            "the detection instances did not share the partitions: {held_a:?} {held_b:?}\n{}\n---\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(held_a.is_disjoint(&held_b), "{held_a:?} {held_b:?}");
    wait_watermarks_known(&a, api_a).await;
    wait_watermarks_known(&b, api_b).await;

    let ingest_api = free_port();
    let config = di.path("ingest.toml");
    std::fs::write(
        &config,
        format!(
            "[repartition]\nbrokers = \"{}\"\ntopic = \"{internal}\"\n",
            brokers()
        ),
    )
    .expect("write config");
    let ingest = start(
        &di,
        &db,
        &upstream,
        &format!("{upstream}-ingest"),
        "nginx_combined",
        ingest_api,
        &["-c", config.to_str().expect("utf-8 path")],
    );
    // Everything upstream was parsed and published exactly once per line.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let published = metric_total(ingest_api, "gatewatch_repartition_published_total").await;
        if published == Some(requests.len() as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "published {published:?} of {} events\n{}",
            requests.len(),
            ingest.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        metric_total(ingest_api, "gatewatch_repartition_failures_total").await,
        Some(0.0)
    );

    wait_all_found(
        &store,
        &labels,
        Duration::from_secs(240),
        &[&ingest, &a, &b],
    )
    .await;

    // The ingest stage detects nothing itself.
    assert!(ingest.incidents().is_empty(), "{:?}", ingest.incidents());

    // Let detection finish the internal topic: nothing new, nothing doubled.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Each detection instance kept its partitions and detected on the
    // events from them (every partition of the internal topic carries an
    // attacker of this scenario); between them they read every event.
    let mut parsed_total = 0.0;
    for (name, gw, api, held) in [("a", &a, api_a, &held_a), ("b", &b, api_b, &held_b)] {
        assert_eq!(&held_partitions(gw), held, "instance {name}:\n{}", gw.log());
        let parsed = metric_total(api, "gatewatch_events_parsed_total")
            .await
            .unwrap_or(0.0);
        assert!(
            parsed > 0.0,
            "instance {name} parsed no event from {held:?}:\n{}",
            gw.log()
        );
        assert!(
            !gw.incidents().is_empty(),
            "instance {name} found nothing in {parsed} events from {held:?}:\n{}",
            gw.log()
        );
        parsed_total += parsed;
    }
    assert!(
        parsed_total >= requests.len() as f64,
        "the detection instances parsed {parsed_total} of {} events",
        requests.len()
    );

    for gw in [ingest, a, b] {
        let (clean, log) = gw.terminate();
        assert!(clean, "{log}");
    }

    assert_each_attack_once(&labels, &stored(&store).await);
}
