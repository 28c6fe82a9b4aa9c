//! Boots the real API router for tests: a fresh PostgreSQL database, tokens
//! for every role, incidents seeded through the real `IncidentManager`, and
//! the server on 127.0.0.1:0.
//!
//! The router under test is the one `gatewatch run` serves (from the
//! package's library target).
#![allow(dead_code)]

pub use gatewatch::{api, pipeline};

use api::auth::{generate_token, hash_token};
use api::metrics::{NotificationCounters, PipelineMetrics, SourceMetricsView};
use api::AppState;
use gatewatch_alerting::store::activity::record_activity;
use gatewatch_alerting::store::tokens::{create_token, TokenRole};
use gatewatch_alerting::testing::{finding, TestDb};
use gatewatch_alerting::{IncidentManager, IncidentStore, ManagerConfig};
use gatewatch_detector::{EventTime, Finding, IncidentKind, Severity};
use gatewatch_ingest::sources::SourceMetrics;
use pipeline::stats::PipelineStats;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// 2026-11-20T10:00:00Z: event time of the seeded attacks.
pub const T0: i64 = 1_795_168_800_000;
const MIN: i64 = 60_000;

/// The path an attacker put in a probe: must show up as text, never run.
pub const XSS_PATH: &str =
    "/admin/<script>window.__gw_xss=1</script><img src=x onerror=\"window.__gw_xss=2\">";

/// A running API with its database and tokens.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The listener's address.
    pub addr: SocketAddr,
    /// The store the API reads.
    pub store: Arc<dyn IncidentStore>,
    /// viewer, analyst and admin tokens (their secrets).
    pub viewer: String,
    /// An analyst token (named `analyst`).
    pub analyst: String,
    /// An admin token (named `admin`).
    pub admin: String,
    /// Seeded incident ids: a traffic spike, credential stuffing from
    /// another client, privilege probing with the script-laden path.
    pub spike: Uuid,
    /// Credential stuffing incident id.
    pub stuffing: Uuid,
    /// Privilege probing incident id (its sample path is [`XSS_PATH`]).
    pub probing: Uuid,
    /// The pipeline counters plugged into `/metrics`.
    pub stats: Arc<PipelineStats>,
    /// HTTP client.
    pub http: reqwest::Client,
    stop: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    // Dropped last: removes the database.
    _db: TestDb,
}

impl TestApp {
    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A GET with `token` (none when `None`).
    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut r = self.http.get(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("request")
    }

    /// A request with a JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut r = self.http.request(method, self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.expect("request")
    }

    /// Stops the server, waiting for it to finish.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(s) = self.server.take() {
            s.await.expect("join").expect("serve");
        }
    }
}

/// Creates a token with `role` named `name`, returning its secret.
pub async fn token(store: &Arc<dyn IncidentStore>, name: &str, role: TokenRole) -> String {
    let secret = generate_token().unwrap();
    create_token(&store.db(), name, role, &hash_token(&secret), "test")
        .await
        .unwrap();
    secret
}

fn probe_finding() -> Finding {
    let mut f = finding(
        IncidentKind::PrivilegeProbing,
        "198.51.100.66",
        T0,
        T0 + 5 * MIN,
    );
    f.technique = "admin_probe";
    f.severity = Severity::High;
    f.summary = format!("198.51.100.66 probed {XSS_PATH} and 40 other admin paths.");
    f.evidence = json!({
        "techniques": ["admin_probe"],
        "sample_paths": [XSS_PATH, "/.env", "/wp-admin/"],
        "statuses": {"403": 30, "404": 11},
    });
    f
}

fn spike_finding() -> Finding {
    let mut f = finding(
        IncidentKind::TrafficSpike,
        "203.0.113.7",
        T0 + 10 * MIN,
        T0 + 20 * MIN,
    );
    f.technique = "rate_spike";
    f.events = 4200;
    f.summary = "203.0.113.7 sent 900 requests in 60 s against its usual 12.0.".into();
    f.evidence = json!({
        "bucket_secs": 60,
        "observed": 900,
        "expected": 12.0,
        "judged_against": "own_baseline",
        "baseline": {"mean": 12.0, "stddev": 3.5, "active_buckets": 240},
    });
    f
}

fn stuffing_finding() -> Finding {
    let mut f = finding(
        IncidentKind::CredentialStuffing,
        "192.0.2.44",
        T0 + 30 * MIN,
        T0 + 31 * MIN,
    );
    f.technique = "password_spray";
    f.severity = Severity::Critical;
    f.summary = "192.0.2.44 failed to log in 300 times across about 120 accounts.".into();
    f.evidence = json!({
        "techniques": ["password_spray", "account_takeover"],
        "sample_users": ["alice", "bob<b>"],
        "sample_paths": ["/login"],
        "top_sources": [{"ip": "192.0.2.44", "failures": 300}],
    });
    f
}

/// A fresh app with three incidents, tokens for each role, and client
/// activity for the spiking client.
pub async fn spawn_app() -> TestApp {
    let db = TestDb::postgres().await;
    let store = db.store().await;
    let mut manager = IncidentManager::new(store.clone(), ManagerConfig::default());
    let spike = manager.apply(&spike_finding()).await.unwrap().unwrap();
    let stuffing = manager.apply(&stuffing_finding()).await.unwrap().unwrap();
    let probing = manager.apply(&probe_finding()).await.unwrap().unwrap();
    // Per-minute activity of the spiking client: normal, then the spike.
    let counts: Vec<_> = (-30..25)
        .map(|m: i64| {
            let n = if (10..=20).contains(&m) {
                800 + m as u64
            } else {
                10 + (m.unsigned_abs() % 5)
            };
            (
                "203.0.113.7".to_string(),
                EventTime::from_millis(T0 + m * MIN),
                n,
            )
        })
        .collect();
    record_activity(&store.db(), &counts).await.unwrap();

    let viewer = token(&store, "viewer", TokenRole::Viewer).await;
    let analyst = token(&store, "analyst", TokenRole::Analyst).await;
    let admin = token(&store, "admin", TokenRole::Admin).await;

    let stats = Arc::new(PipelineStats::new(2, 2));
    stats.sources[0].lines.store(1000, Relaxed);
    stats.sources[0].parsed.store(990, Relaxed);
    stats.sources[0]
        .rejected
        .lock()
        .unwrap()
        .insert("not_a_log_line", 10);
    stats.newest_event_ms.store((T0 + 31 * MIN) as u64, Relaxed);
    stats.findings[0].store(3, Relaxed);
    let notifications = Arc::new(NotificationCounters::default());
    notifications.record("slack", "sent");
    notifications.record("email", "dead");
    let kafka = SourceMetrics::new();
    kafka.set_lag("gateway-logs".into(), 0, 42);
    let sources = Arc::new(SourceMetricsView {
        sources: vec![("kafka:gateway-logs".into(), kafka)],
    });
    stats.tracked_clients[0].store(17, Relaxed);

    let state = AppState::new(store.clone())
        .with_metrics(Arc::new(PipelineMetrics {
            stats: stats.clone(),
            source_names: vec!["file:access.log".into(), "syslog:udp".into()],
        }))
        .with_metrics(notifications)
        .with_metrics(sources)
        .with_readiness("syslog:udp", || async { Ok(()) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(api::serve(listener, state, None, stop.clone()));
    TestApp {
        base: format!("http://{addr}"),
        addr,
        store,
        viewer,
        analyst,
        admin,
        spike: spike.incident.id,
        stuffing: stuffing.incident.id,
        probing: probing.incident.id,
        stats,
        http: reqwest::Client::new(),
        stop,
        server: Some(server),
        _db: db,
    }
}
