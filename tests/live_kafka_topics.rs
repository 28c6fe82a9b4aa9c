//! Per-topic formats on one Kafka source, end to end against a real
//! Kafka-protocol broker (tansu, from scripts/dev-services): one `gatewatch
//! run` subscribed to an nginx-combined topic and a Kong-JSON topic finds
//! the attack in each, so each topic's lines went through its own parser;
//! and a line of the other format produced into a topic is rejected and
//! counted (on `/metrics`, in the log and in the exit summary), not
//! guessed at and not turned into an incident.
//!
//! Needs the broker of `GATEWATCH_TEST_KAFKA_BROKERS` and the tansu binary
//! of `GATEWATCH_TEST_TANSU` (to create fresh topics); the incidents go to a
//! SQLite file in a temporary directory and are read off stdout.

#[path = "support/kafka.rs"]
mod kafka;
mod support;

use gatewatch_ingest::sources::repartition::RepartitionProducer;
use gatewatch_loggen::scenario::DEFAULT_START_MS;
use gatewatch_loggen::{render, LogFormat, Request};
use kafka::{brokers, create_topic};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use support::live::{free_port, Running};
use support::TempDir;

/// Brute force against the login route, correctly sent as nginx lines.
const NGINX_BRUTE: &str = "203.0.113.60";
/// Admin-route probe, correctly sent as Kong lines.
const KONG_PROBE: &str = "203.0.113.61";
/// An admin probe as Kong lines, produced into the nginx topic.
const KONG_IN_NGINX: &str = "203.0.113.62";
/// A brute force as nginx lines, produced into the Kong topic.
const NGINX_IN_KONG: &str = "203.0.113.63";

const WAIT: Duration = Duration::from_secs(25);

/// One request at 09:00 + `second` on the first day of the loggen clock.
fn request(ip: &str, second: i64, method: &'static str, path: &str, status: u16) -> Request {
    Request {
        ts_ms: DEFAULT_START_MS + 3_600_000 + second * 1000,
        ip: ip.parse::<IpAddr>().expect("ip"),
        method,
        host: "shop.example.org",
        path: path.to_string(),
        query: String::new(),
        status,
        bytes: 153,
        user_agent: "attack-tool/1.0",
        user: (method == "POST").then(|| "admin".to_string()),
        consumer: None,
        route: "shop",
        latency_ms: 12,
    }
}

/// 30 failed logins on one account within a minute: a brute force.
fn brute_force(ip: &str) -> Vec<Request> {
    (0..30)
        .map(|i| request(ip, i * 2, "POST", "/api/v1/auth/login", 401))
        .collect()
}

/// Ten distinct admin routes denied: an admin probe.
fn admin_probe(ip: &str) -> Vec<Request> {
    support::DENIED_ADMIN_ROUTES
        .iter()
        .enumerate()
        .map(|(i, p)| request(ip, i as i64, "GET", p, 403))
        .collect()
}

/// Produces `requests` rendered as `format` into `topic`, keyed by client,
/// waiting for every delivery.
async fn produce(topic: &str, requests: &[Request], format: LogFormat) {
    let producer = RepartitionProducer::new(&brokers(), topic, &BTreeMap::new()).expect("producer");
    let mut deliveries = Vec::new();
    let mut line = Vec::new();
    for r in requests {
        line.clear();
        render(r, format, &mut line);
        line.pop(); // one message per line, without its newline
        deliveries.push(
            producer
                .enqueue(r.ip.to_string().as_bytes(), &line)
                .await
                .expect("enqueue"),
        );
    }
    for d in deliveries {
        d.await.expect("delivered");
    }
}

/// The sum of every sample of `name` (all labels) on `/metrics`.
async fn metric_sum(api: u16, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{api}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let prefix = format!("{name}{{");
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Rejected-line warnings in `log` located in `topic` (`topic[p]@offset`).
fn rejections_in(log: &str, topic: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("Rejected a log line.") && l.contains(&format!("at={topic}[")))
        .count()
}

/// Produces the four runs into an nginx topic and a Kong topic, starts one
/// gatewatch whose single Kafka source reads both with `formats` (the
/// source's `format` and `topic_formats` lines, given the two topic names)
/// and checks that only the correctly formatted attacks were seen.
async fn two_formats_on_one_source(name: &str, formats: impl Fn(&str, &str) -> String) {
    let nginx = create_topic(&format!("gw-{name}-nginx"), 1);
    let kong = create_topic(&format!("gw-{name}-kong"), 1);
    let right = brute_force(NGINX_BRUTE).len() + admin_probe(KONG_PROBE).len();
    let wrong = admin_probe(KONG_IN_NGINX).len() + brute_force(NGINX_IN_KONG).len();
    produce(&nginx, &brute_force(NGINX_BRUTE), LogFormat::NginxCombined).await;
    produce(&nginx, &admin_probe(KONG_IN_NGINX), LogFormat::Kong).await;
    produce(&kong, &admin_probe(KONG_PROBE), LogFormat::Kong).await;
    produce(&kong, &brute_force(NGINX_IN_KONG), LogFormat::NginxCombined).await;

    let dir = TempDir::new(&format!("live-kafka-{name}"));
    let api = free_port();
    let config = dir.path("gatewatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"
database_url = "sqlite://{db}"

[[sources]]
type = "kafka"
brokers = "{brokers}"
group_id = "{nginx}-group"
topics = ["{nginx}", "{kong}"]
{formats}
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}

# Two cores for the whole suite: a starved consumer can leave one topic
# silent past the default 250 ms and the merger would take its events late.
# Every rejected line is logged, so they can be told apart by topic.
[pipeline]
partition_idle_ms = 2000
rejected_samples_per_reason = 1000

[api]
listen = "127.0.0.1:{api}"

[console]
enabled = true
"#,
            db = dir.path("gw.db").display(),
            brokers = brokers(),
            formats = formats(&nginx, &kong),
        ),
    )
    .expect("write config");
    let gw = Running::start(
        &dir.0,
        &[],
        &["--config", config.to_str().expect("utf-8 path")],
    );

    // Every line was read and judged by its topic's parser.
    let deadline = Instant::now() + WAIT;
    loop {
        let received = metric_sum(api, "gatewatch_events_received_total").await;
        if received == Some((right + wrong) as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "received {received:?} of {} lines\n{}",
            right + wrong,
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        metric_sum(api, "gatewatch_events_parsed_total").await,
        Some(right as f64),
        "only the lines in their topic's format parse\n{}",
        gw.log()
    );
    assert_eq!(
        metric_sum(api, "gatewatch_events_rejected_total").await,
        Some(wrong as f64),
        "every line in the other format is counted as rejected\n{}",
        gw.log()
    );

    let is = |v: &Value, kind: &str, client: &str| v["kind"] == kind && v["client"] == client;
    gw.wait_for_incident("from the nginx topic", WAIT, |v| {
        is(v, "credential_stuffing", NGINX_BRUTE)
    });
    gw.wait_for_incident("from the Kong topic", WAIT, |v| {
        is(v, "privilege_probing", KONG_PROBE)
    });
    // The rejected lines were counted before detection saw the parsed
    // ones; give detection a moment before judging that nothing else came.
    std::thread::sleep(Duration::from_secs(1));
    let clients: Vec<String> = gw
        .incidents()
        .iter()
        .map(|v| format!("{} {}", v["kind"], v["client"]))
        .collect();
    assert!(
        clients
            .iter()
            .all(|c| c.contains(NGINX_BRUTE) || c.contains(KONG_PROBE)),
        "lines in the wrong topic must not become incidents: {clients:?}"
    );

    let (clean, log) = gw.terminate();
    assert!(clean, "gatewatch did not stop cleanly:\n{log}");
    // Each topic's misfits are rejected where they were produced.
    assert_eq!(
        rejections_in(&log, &nginx),
        admin_probe(KONG_IN_NGINX).len(),
        "{log}"
    );
    assert_eq!(
        rejections_in(&log, &kong),
        brute_force(NGINX_IN_KONG).len(),
        "{log}"
    );
    assert!(
        log.contains(&format!("lines={}", right + wrong))
            && log.contains(&format!("parsed={right}")),
        "the exit summary counts every line and only the right ones as parsed:\n{log}"
    );
}

/// Both topics named in `topic_formats`, over a source format of `auto`:
/// were the table ignored, `auto` would accept the misplaced lines too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_topic_is_parsed_by_its_own_topic_format() {
    two_formats_on_one_source("both", |nginx, kong| {
        format!(
            "format = \"auto\"\ntopic_formats = {{ \"{nginx}\" = \"nginx_combined\", \"{kong}\" = \"kong\" }}"
        )
    })
    .await;
}

/// The README's layout: the source's `format` for the nginx topic, and
/// `topic_formats` overriding it only for the Kong topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_formats_overrides_the_source_format_for_its_topic_only() {
    two_formats_on_one_source("override", |_, kong| {
        format!("format = \"nginx_combined\"\ntopic_formats = {{ \"{kong}\" = \"kong\" }}")
    })
    .await;
}
