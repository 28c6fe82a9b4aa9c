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
//! no stray incidents, as one instance reading a client-keyed topic does.

#[path = "support/kafka.rs"]
mod kafka;
mod support;

use gatewatch_alerting::testing::TestDb;
use gatewatch_loggen::{generate, Scenario};
use kafka::{assert_each_attack_once, brokers, create_topic, produce_with, stored, wait_all_found};
use std::time::Duration;
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

/// One sample of an unlabelled metric from `/metrics`.
async fn metric(api: u16, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{api}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
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
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let published = metric(ingest_api, "gatewatch_repartition_published_total").await;
        if published == Some(requests.len() as f64) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "published {published:?} of {} events\n{}",
            requests.len(),
            ingest.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        metric(ingest_api, "gatewatch_repartition_failures_total").await,
        Some(0.0)
    );
    // Detection reads the internal topic as a backlog, as a restarted or
    // lagging detection tier would.
    let group = format!("{internal}-detect");
    let a = start(
        &d1,
        &db,
        &internal,
        &group,
        "gatewatch_event",
        free_port(),
        &[],
    );
    let b = start(
        &d2,
        &db,
        &internal,
        &group,
        "gatewatch_event",
        free_port(),
        &[],
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
    for gw in [ingest, a, b] {
        let (clean, log) = gw.terminate();
        assert!(clean, "{log}");
    }

    assert_each_attack_once(&labels, &stored(&store).await);
}
