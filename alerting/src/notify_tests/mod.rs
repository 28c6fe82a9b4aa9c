//! Lifecycle, suppression, the outbox and the notifiers against real
//! components: PostgreSQL and SQLite (each case runs on both), a real HTTP
//! server standing in for Slack and webhooks, a real SMTP server (aiosmtpd).
//! Nothing is mocked.

mod support;

use crate::lifecycle::{assign, transition, Action, Lifecycle, LifecycleError, Watermark};
use crate::notify::{
    ChannelConfig, ChannelRoute, EmailConfig, FormatConfig, Notifications, NotificationsConfig,
    RateLimitConfig, RetryConfig, RouteConfig, Routing, SlackConfig, WebhookConfig, Worker,
    WorkerConfig,
};
use crate::outbox::{self, DeliveryStatus, NotifyEvent, OutboxQuery};
use crate::secret::Secret;
use crate::suppression::{self, NewSuppressionRule, SuppressionError};
use crate::testing::{finding, TestDb};
use crate::{ChangeKind, IncidentManager, IncidentStatus, IncidentStore, ManagerConfig};
use chrono::Utc;
use gatewatch_detector::{EventTime, Finding, IncidentKind, Severity};
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{mail_header, Receiver, Reply, SmtpSink};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

macro_rules! backend_tests {
    ($backend:ident: $($case:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = crate::testing::TestDb::$backend().await;
                    super::cases::$case(&db).await;
                }
            )+
        }
    };
}

macro_rules! all_backends {
    ($($case:ident),+ $(,)?) => {
        backend_tests!(postgres: $($case),+);
        backend_tests!(sqlite: $($case),+);
    };
}

all_backends!(
    lifecycle_transitions_are_recorded,
    assignee_is_set_kept_and_cleared,
    recurrence_reopens_a_resolved_incident,
    auto_resolve_uses_event_time,
    suppression_mutes_before_the_manager_and_counts,
    notifications_commit_with_their_change,
    claims_never_overlap,
    crash_between_claim_and_send_is_redelivered,
    retries_with_backoff_until_the_receiver_is_back,
    retry_after_is_honoured,
    dead_letter_after_max_attempts_and_requeue,
    attacker_text_is_escaped_everywhere,
    email_threads_an_incident,
    flood_of_10000_clients_is_a_handful_of_messages,
);

/// Mail over STARTTLS and over implicit TLS, with AUTH, to real servers
/// that refuse anything else; a wrong password ends in a dead letter, not
/// a mail. Transport only, so one backend is enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_over_starttls_and_implicit_tls_with_auth() {
    let db = TestDb::sqlite().await;
    let store = db.store().await;
    let dir = std::env::temp_dir().join(format!("gw_smtp_tls_{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();
    let server = |mode| support::SmtpTls {
        mode,
        cert_pem: &cert_pem,
        key_pem: &key_pem,
        user: "gw@example.org",
        password: "s3cret",
    };
    let starttls = SmtpSink::start_tls(server("starttls")).await;
    let implicit = SmtpSink::start_tls(server("implicit")).await;
    let refusing = SmtpSink::start_tls(server("starttls")).await;
    let channel = |name: &str, url: String| {
        let mut c = email(name, url, &["soc@example.org"]);
        if let ChannelConfig::Email(e) = &mut c {
            e.tls_ca_file = Some(cert_pem.clone());
        }
        c
    };
    let cfg = config(
        vec![
            // With a password, a bare smtp:// means STARTTLS required.
            channel(
                "starttls",
                format!("smtp://gw%40example.org:s3cret@127.0.0.1:{}", starttls.port),
            ),
            channel(
                "implicit",
                format!(
                    "smtps://gw%40example.org:s3cret@127.0.0.1:{}",
                    implicit.port
                ),
            ),
            channel(
                "wrong-password",
                format!("smtp://gw%40example.org:guess@127.0.0.1:{}", refusing.port),
            ),
        ],
        1,
    );
    let n = Notifications::build(&cfg, Arc::clone(&store)).unwrap();
    let mut m = manager(&store, n.routing());
    m.apply(&stuffing(0, 5)).await.unwrap().unwrap();
    let mut w = n.worker("w");
    pump(
        &mut w,
        &store,
        |c| c[&DeliveryStatus::Delivered] >= 2 && c[&DeliveryStatus::Dead] >= 1,
        Duration::from_secs(30),
    )
    .await;
    for (sink, how) in [(&starttls, "STARTTLS"), (&implicit, "implicit TLS")] {
        let mails = sink.wait_for(1, Duration::from_secs(10)).await;
        assert_eq!(mails.len(), 1, "{how}");
        assert_eq!(mails[0]["tls"], json!(true), "{how}: not encrypted");
        assert_eq!(mails[0]["login"], json!("gw@example.org"), "{how}: no AUTH");
        assert_eq!(mails[0]["rcpt_tos"], json!(["soc@example.org"]), "{how}");
    }
    assert!(refusing.messages().is_empty());
    let dead = outbox::list(
        &*store,
        &OutboxQuery {
            status: Some(DeliveryStatus::Dead),
            ..OutboxQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].channel, "wrong-password");
    // (aiosmtpd drops the connection on a failed AUTH, so the error is
    // a timeout rather than a 535.)
    let error = dead[0].last_error.as_deref().unwrap_or_default();
    assert!(!error.is_empty());
    assert!(!error.contains("guess"), "the password leaked: {error}");
    let _ = std::fs::remove_dir_all(&dir);
}

const MIN: i64 = 60_000;
const T0: i64 = 1_700_000_000_000;
const IP: &str = "203.0.113.9";
const PUBLIC_URL: &str = "http://gw.test:8080";

fn stuffing(first_min: i64, last_min: i64) -> Finding {
    stuffing_from(IP, first_min, last_min)
}

fn stuffing_from(client: &str, first_min: i64, last_min: i64) -> Finding {
    finding(
        IncidentKind::CredentialStuffing,
        client,
        T0 + first_min * MIN,
        T0 + last_min * MIN,
    )
}

fn manager(store: &Arc<dyn IncidentStore>, routing: Option<Arc<Routing>>) -> IncidentManager {
    IncidentManager::new(
        Arc::clone(store),
        ManagerConfig {
            notifications: routing,
            suppression_refresh: Duration::ZERO,
            ..ManagerConfig::default()
        },
    )
}

fn route_all() -> RouteConfig {
    RouteConfig {
        min_severity: Severity::Low,
        on_resolve: true,
        ..RouteConfig::default()
    }
}

fn unlimited() -> RateLimitConfig {
    RateLimitConfig {
        enabled: false,
        ..RateLimitConfig::default()
    }
}

fn slack(name: &str, url: String, rate_limit: RateLimitConfig) -> ChannelConfig {
    ChannelConfig::Slack(SlackConfig {
        name: name.into(),
        webhook_url: Secret::new(url),
        route: route_all(),
        rate_limit,
        format: FormatConfig::default(),
        timeout_secs: 1,
    })
}

fn webhook(name: &str, url: String, secret: &str) -> ChannelConfig {
    ChannelConfig::Webhook(WebhookConfig {
        name: name.into(),
        url: Secret::new(url),
        secret: Secret::new(secret),
        route: route_all(),
        rate_limit: unlimited(),
        timeout_secs: 1,
    })
}

fn email(name: &str, smtp_url: String, to: &[&str]) -> ChannelConfig {
    ChannelConfig::Email(EmailConfig {
        name: name.into(),
        smtp_url: Secret::new(smtp_url),
        from: "gatewatch <gw@example.org>".into(),
        to: to.iter().map(|s| s.to_string()).collect(),
        route: route_all(),
        rate_limit: unlimited(),
        format: FormatConfig::default(),
        timeout_secs: 1,
        tls_ca_file: None,
    })
}

fn config(channels: Vec<ChannelConfig>, max_attempts: u32) -> NotificationsConfig {
    NotificationsConfig {
        public_url: PUBLIC_URL.into(),
        retry: RetryConfig {
            max_attempts,
            initial_backoff_ms: 50,
            max_backoff_secs: 1,
            max_retry_after_secs: 5,
        },
        worker: WorkerConfig {
            poll_interval_ms: 20,
            batch_size: 16,
            lease_secs: 2,
        },
        channels,
        ..NotificationsConfig::default()
    }
}

async fn counts(store: &Arc<dyn IncidentStore>) -> BTreeMap<DeliveryStatus, u64> {
    outbox::counts(&**store).await.unwrap()
}

/// Runs worker rounds until `done(counts)` or `timeout`.
async fn pump(
    w: &mut Worker,
    store: &Arc<dyn IncidentStore>,
    done: impl Fn(&BTreeMap<DeliveryStatus, u64>) -> bool,
    timeout: Duration,
) {
    let start = Instant::now();
    loop {
        w.run_once().await.expect("a worker round");
        let c = counts(store).await;
        if done(&c) {
            return;
        }
        assert!(start.elapsed() < timeout, "worker did not finish: {c:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn delivered(n: u64) -> impl Fn(&BTreeMap<DeliveryStatus, u64>) -> bool {
    move |c| c[&DeliveryStatus::Delivered] >= n
}

fn one_route(name: &str) -> Arc<Routing> {
    Arc::new(Routing::new(vec![ChannelRoute {
        name: name.into(),
        kinds: Vec::new(),
        min_severity: Severity::Low,
        events: NotifyEvent::ALL.into_iter().collect(),
        rate_limit: None,
        max_attempts: 3,
    }]))
}

/// Every string anywhere in a JSON value.
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

mod cases {
    use super::*;

    pub async fn lifecycle_transitions_are_recorded(db: &TestDb) {
        let store = db.store().await;
        let mut m = manager(&store, None);
        let id = m.apply(&stuffing(0, 5)).await.unwrap().unwrap().incident.id;

        let c = transition(
            &store,
            id,
            Action::Acknowledge,
            "user:alice",
            Some("looking"),
        )
        .await
        .unwrap();
        assert_eq!(c.incident.status, IncidentStatus::Acknowledged);
        assert_eq!(c.incident.revision, 1);
        assert_eq!(
            c.change,
            ChangeKind::StatusChanged {
                from: IncidentStatus::Open
            }
        );
        for (action, from) in [
            (Action::Reopen, "acknowledged"),
            (Action::Acknowledge, "acknowledged"),
        ] {
            let e = transition(&store, id, action, "user:alice", None)
                .await
                .unwrap_err();
            assert!(
                matches!(e, LifecycleError::IllegalTransition { from: f, action: a, .. } if f == from && a == action),
                "{e}"
            );
        }
        transition(
            &store,
            id,
            Action::Resolve,
            "user:bob",
            Some("blocked at the WAF"),
        )
        .await
        .unwrap();
        for action in [Action::Resolve, Action::Acknowledge] {
            assert!(matches!(
                transition(&store, id, action, "user:bob", None).await,
                Err(LifecycleError::IllegalTransition {
                    from: "resolved",
                    ..
                })
            ));
        }
        let c = transition(&store, id, Action::Reopen, "user:carol", None)
            .await
            .unwrap();
        assert_eq!(c.incident.status, IncidentStatus::Reopened);
        assert!(matches!(
            transition(&store, Uuid::nil(), Action::Resolve, "user:carol", None).await,
            Err(LifecycleError::NotFound { .. })
        ));
        assert!(matches!(
            transition(&store, id, Action::Resolve, " ", None).await,
            Err(LifecycleError::Invalid { .. })
        ));

        let t = store.timeline(id).await.unwrap();
        let rows: Vec<_> = t
            .iter()
            .map(|e| (e.action.as_str(), e.actor.as_str(), e.revision))
            .collect();
        assert_eq!(
            rows,
            [
                ("created", "detector:test", 0),
                ("status_changed", "user:alice", 1),
                ("status_changed", "user:bob", 2),
                ("status_changed", "user:carol", 3),
            ]
        );
        assert_eq!(t[1].details["note"], "looking");
        assert_eq!(t[1].details["from"], "open");
        assert_eq!(t[1].details["status"], "acknowledged");
        assert_eq!(t[2].details["note"], "blocked at the WAF");
        assert_eq!(t[3].details["from"], "resolved");
        assert!(t[3].details.get("note").is_none());

        // The manager's cached copy is three revisions old: its write
        // conflicts, it re-reads, and the analyst's status survives.
        let c = m.apply(&stuffing(0, 8)).await.unwrap().unwrap();
        assert_eq!(c.change, ChangeKind::Updated);
        assert_eq!(c.incident.status, IncidentStatus::Reopened);
        assert_eq!(c.incident.revision, 4);
        assert!(m.stats().conflicts >= 1);
    }

    pub async fn assignee_is_set_kept_and_cleared(db: &TestDb) {
        let store = db.store().await;
        let mut m = manager(&store, None);
        let created = m.apply(&stuffing(0, 5)).await.unwrap().unwrap().incident;
        assert!(serde_json::to_value(&created)
            .unwrap()
            .get("assignee")
            .is_none());
        let id = created.id;
        let c = assign(&store, id, Some("alice"), "user:lead")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.change, ChangeKind::Assigned);
        assert_eq!(c.incident.assignee.as_deref(), Some("alice"));
        assert_eq!(
            store.get(id).await.unwrap().unwrap().assignee.as_deref(),
            Some("alice")
        );
        assert_eq!(
            serde_json::to_value(&c.incident).unwrap()["assignee"],
            "alice"
        );
        assert!(assign(&store, id, Some("alice"), "user:lead")
            .await
            .unwrap()
            .is_none());
        // A detector update keeps the assignee.
        let u = m.apply(&stuffing(0, 9)).await.unwrap().unwrap();
        assert_eq!(u.incident.assignee.as_deref(), Some("alice"));
        assign(&store, id, Some("bob"), "user:lead").await.unwrap();
        assign(&store, id, None, "user:bob").await.unwrap();
        assert_eq!(store.get(id).await.unwrap().unwrap().assignee, None);
        assert!(matches!(
            assign(&store, id, Some("x\ny"), "user:lead").await,
            Err(LifecycleError::Invalid { .. })
        ));
        let t = store.timeline(id).await.unwrap();
        let assigned: Vec<_> = t
            .iter()
            .filter(|e| e.action == "assigned")
            .map(|e| {
                (
                    e.actor.as_str(),
                    e.details["from"].clone(),
                    e.details["assignee"].clone(),
                )
            })
            .collect();
        assert_eq!(
            assigned,
            [
                ("user:lead", json!(null), json!("alice")),
                ("user:lead", json!("alice"), json!("bob")),
                ("user:bob", json!("bob"), json!(null)),
            ]
        );
    }

    pub async fn recurrence_reopens_a_resolved_incident(db: &TestDb) {
        let store = db.store().await;
        let routing = one_route("ops");
        let mut m = manager(&store, Some(Arc::clone(&routing)));
        let id = m
            .apply(&stuffing(0, 10))
            .await
            .unwrap()
            .unwrap()
            .incident
            .id;
        Lifecycle::new(Arc::clone(&store), Some(routing))
            .transition(id, Action::Resolve, "user:alice", None)
            .await
            .unwrap();
        // Late data about the resolved past: an update, not a reopening.
        let mut late = stuffing(0, 8);
        late.events = 999;
        let c = m.apply(&late).await.unwrap().unwrap();
        assert_eq!(c.change, ChangeKind::Updated);
        assert_eq!(c.incident.status, IncidentStatus::Resolved);
        // The attack comes back within the merge gap: reopened.
        let c = m.apply(&stuffing(20, 30)).await.unwrap().unwrap();
        assert_eq!(c.incident.id, id);
        assert_eq!(
            c.change,
            ChangeKind::StatusChanged {
                from: IncidentStatus::Resolved
            }
        );
        assert_eq!(c.incident.status, IncidentStatus::Reopened);
        assert_eq!(c.actor, "detector:test");
        assert_eq!(m.stats().reopened, 1);
        let mut events: Vec<_> = outbox::list(
            &*store,
            &OutboxQuery {
                incident_id: Some(id),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
        events.reverse();
        assert_eq!(
            events,
            [
                NotifyEvent::Opened,
                NotifyEvent::Resolved,
                NotifyEvent::Reopened
            ]
        );
    }

    pub async fn auto_resolve_uses_event_time(db: &TestDb) {
        let store = db.store().await;
        let mut m = manager(&store, None);
        let a = m
            .apply(&stuffing_from("10.0.0.1", 0, 10))
            .await
            .unwrap()
            .unwrap()
            .incident
            .id;
        let b = m
            .apply(&stuffing_from("10.0.0.2", 0, 50))
            .await
            .unwrap()
            .unwrap()
            .incident
            .id;
        let lc = Lifecycle::new(Arc::clone(&store), None);
        let quiet = Duration::from_secs(30 * 60);
        let at = |min| EventTime::from_millis(T0 + min * MIN);
        assert!(lc
            .auto_resolve(at(39), quiet, 100)
            .await
            .unwrap()
            .is_empty());
        let done = lc.auto_resolve(at(40), quiet, 100).await.unwrap();
        assert_eq!(done.iter().map(|c| c.incident.id).collect::<Vec<_>>(), [a]);
        assert!(lc
            .auto_resolve(at(40), quiet, 100)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store.get(b).await.unwrap().unwrap().status,
            IncidentStatus::Open
        );
        let last = store.timeline(a).await.unwrap().pop().unwrap();
        assert_eq!(last.actor, crate::lifecycle::AUTO_RESOLVE_ACTOR);
        assert_eq!(last.details["status"], "resolved");
        assert_eq!(last.details["quiet_secs"], 1800);

        // The background task, driven by a watermark only.
        let watermark = Watermark::new();
        let stop = CancellationToken::new();
        let task = crate::lifecycle::spawn_auto_resolver(
            lc,
            watermark.clone(),
            quiet,
            Duration::from_millis(20),
            stop.clone(),
        );
        watermark.advance(at(79));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            store.get(b).await.unwrap().unwrap().status,
            IncidentStatus::Open
        );
        watermark.advance(at(80));
        let start = Instant::now();
        while store.get(b).await.unwrap().unwrap().status != IncidentStatus::Resolved {
            assert!(start.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        task.await.unwrap();
    }

    pub async fn suppression_mutes_before_the_manager_and_counts(db: &TestDb) {
        let store = db.store().await;
        let new_rule = |f: fn(&mut NewSuppressionRule)| {
            let mut r = NewSuppressionRule {
                created_by: "user:alice".into(),
                reason: "known".into(),
                ..Default::default()
            };
            f(&mut r);
            r
        };
        let s = &*store;
        let cidr = suppression::create(
            s,
            new_rule(|r| r.client_cidr = Some("10.0.0.0/8".parse().unwrap())),
        )
        .await
        .unwrap();
        let key = suppression::create(s, new_rule(|r| r.client_key = Some("203.0.113.50".into())))
            .await
            .unwrap();
        let kind = suppression::create(
            s,
            new_rule(|r| {
                r.kind = Some(IncidentKind::TrafficSpike);
                r.client_cidr = Some("198.51.100.0/24".parse().unwrap());
            }),
        )
        .await
        .unwrap();
        let path = suppression::create(s, new_rule(|r| r.path_pattern = Some("/health*".into())))
            .await
            .unwrap();
        let expiring = suppression::create(
            s,
            new_rule(|r| {
                r.client_key = Some("203.0.113.77".into());
                r.expires_at = Some(Utc::now() + chrono::Duration::milliseconds(1500));
            }),
        )
        .await
        .unwrap();
        assert_eq!(suppression::list(s).await.unwrap().len(), 5);
        assert!(matches!(
            suppression::create(s, new_rule(|_| {})).await,
            Err(SuppressionError::Invalid { .. })
        ));

        let mut m = manager(&store, Some(one_route("ops")));
        let probing = |client: &str, paths: &[&str]| {
            let mut f = finding(IncidentKind::PrivilegeProbing, client, T0, T0 + MIN);
            f.evidence = json!({ "sample_paths": paths });
            f
        };
        let muted = [
            stuffing_from("10.1.2.3", 0, 1),
            stuffing_from("203.0.113.50", 0, 1),
            finding(IncidentKind::TrafficSpike, "198.51.100.7", T0, T0 + MIN),
            probing("192.0.2.9", &["/healthz?probe=1", "/health/live"]),
            stuffing_from("203.0.113.77", 0, 1),
        ];
        for f in &muted {
            assert_eq!(m.apply(f).await.unwrap(), None, "{} muted", f.key);
        }
        let kept = [
            stuffing_from("198.51.100.7", 0, 1),
            probing("192.0.2.10", &["/healthz", "/admin"]),
        ];
        for f in &kept {
            assert!(m.apply(f).await.unwrap().is_some(), "{} not muted", f.key);
        }
        assert_eq!(m.stats().suppressed, 5);
        assert_eq!(
            store.count().await.unwrap(),
            2,
            "muted findings made no incident"
        );
        assert_eq!(
            outbox::list(s, &OutboxQuery::default())
                .await
                .unwrap()
                .len(),
            2,
            "and no notification"
        );
        let hits: BTreeMap<Uuid, u64> = suppression::list(s)
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                assert!(r.last_hit_at.is_some());
                (r.id, r.hits)
            })
            .collect();
        for r in [&cidr, &key, &kind, &path, &expiring] {
            assert_eq!(hits[&r.id], 1, "{:?}", r.reason);
        }
        assert_eq!(suppression::suppressed_total(s).await.unwrap(), 5);

        // Expiry: the same client, later, is no longer muted.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        assert!(m
            .apply(&stuffing_from("203.0.113.77", 0, 1))
            .await
            .unwrap()
            .is_some());

        // Deleting a rule keeps its hits in the total.
        assert!(suppression::delete(s, cidr.id).await.unwrap());
        assert!(!suppression::delete(s, cidr.id).await.unwrap());
        assert_eq!(suppression::suppressed_total(s).await.unwrap(), 5);
        assert!(m
            .apply(&stuffing_from("10.1.2.3", 0, 1))
            .await
            .unwrap()
            .is_some());
    }

    pub async fn notifications_commit_with_their_change(db: &TestDb) {
        let store = db.store().await;
        let routing = Arc::new(Routing::new(
            ["a", "b"]
                .into_iter()
                .map(|name| ChannelRoute {
                    name: name.into(),
                    kinds: Vec::new(),
                    min_severity: Severity::Low,
                    events: NotifyEvent::ALL.into_iter().collect(),
                    rate_limit: None,
                    max_attempts: 3,
                })
                .collect(),
        ));
        let mut m = manager(&store, Some(Arc::clone(&routing)));
        let created = m.apply(&stuffing(0, 5)).await.unwrap().unwrap();
        let id = created.incident.id;
        let rows = outbox::list(&*store, &OutboxQuery::default())
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        for r in &rows {
            assert_eq!(r.status, DeliveryStatus::Pending);
            assert_eq!(r.incident_id, Some(id));
            assert_eq!(r.revision, Some(0));
            assert_eq!(r.event, NotifyEvent::Opened);
            assert_eq!(r.delivery_id, outbox::delivery_id(&r.channel, id, 0));
            assert_eq!(r.payload["incident"]["id"], id.to_string());
        }
        // A plain update notifies nobody.
        m.apply(&stuffing(0, 8)).await.unwrap().unwrap();
        assert_eq!(
            outbox::list(&*store, &OutboxQuery::default())
                .await
                .unwrap()
                .len(),
            2
        );
        // An escalation notifies both channels.
        let mut f = stuffing(0, 9);
        f.severity = Severity::Critical;
        let escalated = m.apply(&f).await.unwrap().unwrap();
        let rows = outbox::list(&*store, &OutboxQuery::default())
            .await
            .unwrap();
        assert_eq!(rows.len(), 4);
        assert!(rows[..2].iter().all(|r| r.event == NotifyEvent::Escalated));
        // A write that loses the compare-and-set rolls its notifications back.
        let mut stale = escalated.clone();
        stale.incident.events = 12345;
        let effects = crate::outbox::ChangeEffects {
            deliveries: routing.deliveries(&stale, None),
            ..Default::default()
        };
        assert!(matches!(
            store.record_change_with(&stale, &effects).await,
            Err(crate::StoreError::Conflict { .. })
        ));
        assert_eq!(
            outbox::list(&*store, &OutboxQuery::default())
                .await
                .unwrap()
                .len(),
            4
        );
        // Email threading: the first row per channel starts the thread.
        let claimed = outbox::claim(&*store, "t", Utc::now(), Duration::from_secs(30), 10)
            .await
            .unwrap();
        let first: Vec<_> = claimed
            .iter()
            .map(|d| (d.channel.as_str(), d.event, d.thread_first))
            .collect();
        assert_eq!(
            first,
            [
                ("a", NotifyEvent::Opened, true),
                ("b", NotifyEvent::Opened, true),
                ("a", NotifyEvent::Escalated, false),
                ("b", NotifyEvent::Escalated, false),
            ]
        );
    }

    pub async fn claims_never_overlap(db: &TestDb) {
        let store = db.store().await;
        let mut m = manager(&store, Some(one_route("ops")));
        for n in 0..60 {
            m.apply(&stuffing_from(&format!("10.9.0.{n}"), 0, 1))
                .await
                .unwrap();
        }
        let tasks: Vec<_> = (0..3)
            .map(|w| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    loop {
                        let got = outbox::claim(
                            &*store,
                            &format!("w{w}"),
                            Utc::now(),
                            Duration::from_secs(60),
                            7,
                        )
                        .await
                        .unwrap();
                        if got.is_empty() {
                            return ids;
                        }
                        ids.extend(got.into_iter().map(|d| d.id));
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        assert_eq!(all.len(), 60, "every row claimed once");
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 60, "no row twice");
        assert!(
            outbox::claim(&*store, "late", Utc::now(), Duration::from_secs(1), 100)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn crash_between_claim_and_send_is_redelivered(db: &TestDb) {
        let store = db.store().await;
        let rx = Receiver::start().await;
        rx.set_default(Reply::Hang);
        let cfg = config(vec![webhook("hook", rx.url("/hook"), "k")], 5);
        let n = Notifications::build(&cfg, Arc::clone(&store)).unwrap();
        let mut m = manager(&store, n.routing());
        m.apply(&stuffing(0, 5)).await.unwrap().unwrap();

        // A worker claims the row and dies mid-send.
        let stop = CancellationToken::new();
        let crashed = tokio::spawn(n.worker("doomed").run(stop.clone()));
        rx.wait_for(1, Duration::from_secs(10)).await;
        let claimed_at = Instant::now();
        crashed.abort();
        let _ = crashed.await;
        rx.set_default(Reply::Ok);

        // Another worker cannot take it while the lease runs...
        let mut w = n.worker("survivor");
        let s = w.run_once().await.unwrap();
        assert_eq!(s.claimed, 0, "the lease still holds");
        let row = &outbox::list(&*store, &OutboxQuery::default())
            .await
            .unwrap()[0];
        assert_eq!((row.status, row.attempts), (DeliveryStatus::Pending, 1));
        // ...and delivers it once the lease is over.
        pump(&mut w, &store, delivered(1), Duration::from_secs(15)).await;
        assert!(claimed_at.elapsed() >= Duration::from_millis(1500));
        let got = rx.requests();
        assert_eq!(got.len(), 2);
        let ids: HashSet<_> = got
            .iter()
            .map(|r| r.header("x-gatewatch-delivery").unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 1, "the same idempotency key on both sends");
        assert_eq!(
            got[1].header("idempotency-key"),
            got[0].header("x-gatewatch-delivery")
        );

        // A crash after the commit and before any worker ran: a fresh
        // process (new pool, new notifications) delivers it.
        m.apply(&stuffing_from("198.51.100.1", 0, 5))
            .await
            .unwrap()
            .unwrap();
        drop(m);
        drop(n);
        let store2 = db.store().await;
        let n2 = Notifications::build(&cfg, Arc::clone(&store2)).unwrap();
        pump(
            &mut n2.worker("restarted"),
            &store2,
            delivered(2),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(rx.requests().len(), 3);
    }

    pub async fn retries_with_backoff_until_the_receiver_is_back(db: &TestDb) {
        let store = db.store().await;
        let mut rx = Receiver::start().await;
        let cfg = config(vec![webhook("hook", rx.url("/hook/SECRETPATH"), "k")], 10);
        rx.stop().await;
        let n = Notifications::build(&cfg, Arc::clone(&store)).unwrap();
        let mut m = manager(&store, n.routing());
        m.apply(&stuffing(0, 5)).await.unwrap().unwrap();
        let mut w = n.worker("w");
        // The receiver is down: connection refused, retried with backoff.
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(400) {
            w.run_once().await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let row = &outbox::list(&*store, &OutboxQuery::default())
            .await
            .unwrap()[0];
        assert_eq!(row.status, DeliveryStatus::Pending);
        assert!(row.attempts >= 2, "{row:?}");
        assert!(row.attempts <= 5, "backoff spaced the attempts: {row:?}");
        let error = row.last_error.clone().unwrap();
        assert!(!error.contains("SECRETPATH"), "no URL in errors: {error}");

        // Back, but failing twice, then fine.
        rx.restart().await;
        rx.script(&[Reply::Status(500), Reply::Status(503)]);
        pump(&mut w, &store, delivered(1), Duration::from_secs(15)).await;
        let got = rx.requests();
        assert_eq!(got.len(), 3, "500, 503, then delivered");
        let ids: HashSet<_> = got
            .iter()
            .map(|r| r.header("idempotency-key").unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 1);
        for pair in got.windows(2) {
            assert!(
                pair[1].at - pair[0].at >= Duration::from_millis(25),
                "backoff between tries"
            );
        }
        // Exactly once: nothing more is sent.
        tokio::time::sleep(Duration::from_millis(200)).await;
        w.run_once().await.unwrap();
        assert_eq!(rx.requests().len(), 3);
        let row = &outbox::list(&*store, &OutboxQuery::default())
            .await
            .unwrap()[0];
        assert_eq!(row.status, DeliveryStatus::Delivered);
        assert!(row.finished_at.is_some());
    }

    pub async fn retry_after_is_honoured(db: &TestDb) {
        let store = db.store().await;
        let rx = Receiver::start().await;
        rx.script(&[Reply::RetryAfter(1)]);
        let cfg = config(
            vec![slack("slack", rx.url("/services/T/B/X"), unlimited())],
            5,
        );
        let n = Notifications::build(&cfg, Arc::clone(&store)).unwrap();
        let mut m = manager(&store, n.routing());
        m.apply(&stuffing(0, 5)).await.unwrap().unwrap();
        // A second incident on the same channel waits with the first: the
        // whole channel is paused, without using up its attempts.
        m.apply(&stuffing_from("198.51.100.2", 0, 5))
            .await
            .unwrap()
            .unwrap();
        let mut w = n.worker("w");
        w.run_once().await.unwrap();
        pump(&mut w, &store, delivered(2), Duration::from_secs(10)).await;
        let got = rx.requests();
        assert_eq!(got.len(), 3, "one 429, then both delivered");
        assert!(
            got[1].at - got[0].at >= Duration::from_millis(950),
            "waited for Retry-After: {:?}",
            got[1].at - got[0].at
        );
        let rows = outbox::list(&*store, &OutboxQuery::default())
            .await
            .unwrap();
        let attempts: BTreeMap<_, _> = rows.iter().map(|r| (r.id, r.attempts)).collect();
        assert_eq!(
            attempts
                .values()
                .copied()
                .collect::<Vec<_>>()
                .iter()
                .sum::<u32>(),
            3
        );
    }

    pub async fn dead_letter_after_max_attempts_and_requeue(db: &TestDb) {
        let store = db.store().await;
        let rx = Receiver::start().await;
        rx.set_default(Reply::Status(500));
        let cfg = config(vec![webhook("hook", rx.url("/hook"), "k")], 3);
        let n = Notifications::build(&cfg, Arc::clone(&store)).unwrap();
        let mut m = manager(&store, n.routing());
        m.apply(&stuffing(0, 5)).await.unwrap().unwrap();
        let mut w = n.worker("w");
        pump(
            &mut w,
            &store,
            |c| c[&DeliveryStatus::Dead] == 1,
            Duration::from_secs(15),
        )
        .await;
        let dead = outbox::dead_letters(&*store, 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        let d = &dead[0];
        assert_eq!((d.attempts, d.max_attempts), (3, 3));
        assert_eq!(d.channel, "hook");
        assert!(d.last_error.as_deref().unwrap().contains("500"), "{d:?}");
        assert_eq!(rx.requests().len(), 3, "exactly max_attempts tries");
        // A 4xx other than 429 is final at once.
        rx.script(&[Reply::Status(404)]);
        m.apply(&stuffing_from("198.51.100.3", 0, 5))
            .await
            .unwrap()
            .unwrap();
        pump(
            &mut w,
            &store,
            |c| c[&DeliveryStatus::Dead] == 2,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(rx.requests().len(), 4);
        // The operator fixes the receiver and re-queues the dead letters.
        rx.set_default(Reply::Ok);
        for dl in outbox::dead_letters(&*store, 10).await.unwrap() {
            assert!(outbox::requeue(&*store, dl.delivery_id).await.unwrap());
        }
        assert!(!outbox::requeue(&*store, d.delivery_id).await.unwrap());
        pump(&mut w, &store, delivered(2), Duration::from_secs(10)).await;
        let c = counts(&store).await;
        assert_eq!(
            (c[&DeliveryStatus::Dead], c[&DeliveryStatus::Delivered]),
            (0, 2)
        );
    }

    pub async fn attacker_text_is_escaped_everywhere(db: &TestDb) {
        let store = db.store().await;
        let slack_rx = Receiver::start().await;
        let hook_rx = Receiver::start().await;
        let smtp = SmtpSink::start().await;
        let cfg = config(
            vec![
                slack("slack", slack_rx.url("/services/T/B/X"), unlimited()),
                webhook("hook", hook_rx.url("/hook"), "hmac-key"),
                email("mail", smtp.url(), &["soc@example.org"]),
            ],
            5,
        );
        let n = Notifications::build(&cfg, Arc::clone(&store)).unwrap();
        let mut m = manager(&store, n.routing());
        let nasty_key = "identity:<!channel>\r\nBcc: victim@example.org";
        let mut f = finding(IncidentKind::CredentialStuffing, nasty_key, T0, T0 + MIN);
        f.sources = vec!["192.0.2.66".parse().unwrap()];
        f.summary = format!(
            "{nasty_key} failed to log in as <@U123> via <script>alert(1)</script> <http://evil|click> `x` *b*"
        );
        f.evidence = json!({
            "sample_paths": ["/login?next=<http://evil|click>", "/<script>alert(1)</script>"],
            "sample_users": ["<@U123>", "<!here>"],
            "sample_user_agents": ["curl `id` *bold*\r\nX-Injected: 1"],
            "failures": 42,
        });
        let incident = m.apply(&f).await.unwrap().unwrap().incident;
        let mut w = n.worker("w");
        pump(&mut w, &store, delivered(3), Duration::from_secs(15)).await;

        // Slack: no mention, link or markup survives; the only link is ours.
        let body = &slack_rx.requests()[0];
        let msg = body.json();
        let mut texts = Vec::new();
        strings(&msg, &mut texts);
        let ours = format!(
            "<{PUBLIC_URL}/#/incidents/{}|Open incident in gatewatch>",
            incident.id
        );
        for t in &texts {
            let without_ours = t.replace(&ours, "");
            assert!(
                !without_ours.contains(['<', '>']),
                "unescaped markup in Slack text: {t}"
            );
        }
        let all = texts.join("\n");
        assert!(all.contains("&lt;!channel&gt;"));
        assert!(all.contains("&lt;@U123&gt;"));
        assert!(all.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(all.contains("&lt;http://evil|click&gt;"));
        assert!(all.contains(&ours), "links to the incident");
        assert!(msg["blocks"].as_array().unwrap().len() <= 50);

        // Slack: the message's shape, with this incident's values.
        assert_eq!(body.path, "/services/T/B/X");
        let client = "`identity:&lt;!channel&gt;  Bcc: victim@example.org`";
        let title = format!(
            "[gatewatch] New incident: {} ({})",
            incident.kind, incident.severity
        );
        assert_eq!(msg["text"], format!("{title} from {client}"));
        let blocks = msg["blocks"].as_array().unwrap();
        let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            ["header", "section", "section", "section", "section", "context", "context"]
        );
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert_eq!(blocks[0]["text"]["text"], title);
        let fields: Vec<&str> = blocks[1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                format!("*Severity*\n{}", incident.severity),
                format!("*Kind*\n{}", incident.kind),
                format!("*Client*\n{client}"),
                format!("*Technique*\n`{}`", incident.technique),
                format!("*Events*\n{}", incident.events),
                "*Status*\nopen".to_owned(),
                format!("*First seen*\n{}", incident.first_seen),
                format!("*Last seen*\n{}", incident.last_seen),
                "*Sources*\n`192.0.2.66`".to_owned(),
            ]
        );
        assert_eq!(incident.events, 10, "the count shown is the incident's");
        assert_eq!(
            blocks[2]["text"]["text"],
            "*Summary*\nidentity:&lt;!channel&gt; \nBcc: victim@example.org failed to log in \
             as &lt;@U123&gt; via &lt;script&gt;alert(1)&lt;/script&gt; \
             &lt;http://evil|click&gt; ˋxˋ ∗b∗"
        );
        // The first five evidence lines (the default), samples first.
        assert_eq!(
            blocks[3]["text"]["text"],
            "*Evidence*\n```\
             path: /login?next=&lt;http://evil|click&gt;\n\
             path: /&lt;script&gt;alert(1)&lt;/script&gt;\n\
             user: &lt;@U123&gt;\n\
             user: &lt;!here&gt;\n\
             user agent: curl ˋidˋ *bold*  X-Injected: 1```"
        );
        assert_eq!(blocks[4]["text"]["text"], ours);
        assert!(ours.contains(&format!("{PUBLIC_URL}/#/incidents/{}|", incident.id)));
        assert_eq!(
            blocks[6]["elements"][0]["text"],
            format!(
                "delivery `{}`",
                body.header("x-gatewatch-delivery").unwrap()
            )
        );

        // Webhook: JSON-escaped, round-trips exactly, signed.
        let hook = &hook_rx.requests()[0];
        assert_eq!(hook.path, "/hook");
        let v = hook.json();
        assert_eq!(v["incident"]["summary"], json!(f.summary));
        assert_eq!(v["incident"]["client"], json!(nasty_key));
        assert_eq!(v["event"], "opened");
        assert!(!hook.body.contains(&b'\r') && !hook.body.contains(&b'\n'));
        let ts = hook.header("x-gatewatch-timestamp").unwrap();
        let sig = hook.header("x-gatewatch-signature").unwrap();
        assert!(crate::notify::webhook::verify(
            b"hmac-key",
            ts,
            &hook.body,
            sig,
            Utc::now().timestamp(),
            300
        ));
        {
            use hmac::Mac;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hmac-key").unwrap();
            mac.update(format!("{ts}.").as_bytes());
            mac.update(&hook.body);
            assert_eq!(
                sig,
                format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
            );
        }
        assert_eq!(
            hook.header("x-gatewatch-delivery").unwrap(),
            v["delivery_id"].as_str().unwrap()
        );

        // Email: HTML-escaped body, one-line subject, no injected header.
        let mail = &smtp.wait_for(1, Duration::from_secs(10)).await[0];
        let subject = mail_header(mail, "Subject").unwrap();
        assert!(!subject.contains(['\r', '\n']), "{subject}");
        for (name, _) in mail["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h[0].as_str().unwrap(), h[1].as_str().unwrap()))
        {
            assert!(
                !name.eq_ignore_ascii_case("bcc") && !name.eq_ignore_ascii_case("x-injected"),
                "injected header {name}"
            );
        }
        assert_eq!(mail["rcpt_tos"], json!(["soc@example.org"]));
        let html = mail["html"].as_str().unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<!channel>") && !html.contains("<@U123>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;@U123&gt;"));
        assert!(html.contains("&lt;http://evil|click&gt;"));
        let text = mail["text"].as_str().unwrap();
        assert!(
            text.contains("<script>alert(1)</script>"),
            "plain text keeps the text"
        );
    }

    pub async fn email_threads_an_incident(db: &TestDb) {
        let store = db.store().await;
        let smtp = SmtpSink::start().await;
        let cfg = config(
            vec![email(
                "mail",
                smtp.url(),
                &["a@example.org", "b@example.org"],
            )],
            5,
        );
        let n = Notifications::build(&cfg, Arc::clone(&store)).unwrap();
        let mut m = manager(&store, n.routing());
        let created = m.apply(&stuffing(0, 5)).await.unwrap().unwrap().incident;
        let mut f = stuffing(0, 9);
        f.severity = Severity::High;
        m.apply(&f).await.unwrap().unwrap();
        let mut w = n.worker("w");
        pump(&mut w, &store, delivered(2), Duration::from_secs(15)).await;
        let mails = smtp.wait_for(2, Duration::from_secs(10)).await;
        let root = format!("<{}.incident@example.org>", created.id);
        let first = &mails[0];
        assert_eq!(mail_header(first, "Message-ID"), Some(root.as_str()));
        assert_eq!(first["content_type"], "multipart/alternative");
        assert!(mail_header(first, "From")
            .unwrap()
            .contains("gw@example.org"));
        let to = mail_header(first, "To").unwrap();
        assert!(to.contains("a@example.org") && to.contains("b@example.org"));
        assert_eq!(first["rcpt_tos"], json!(["a@example.org", "b@example.org"]));
        assert_eq!(first["mail_from"], "gw@example.org");
        let subject = mail_header(first, "Subject").unwrap();
        assert_eq!(
            subject,
            format!(
                "[gatewatch] credential_stuffing from {IP} [{}]",
                &created.id.simple().to_string()[..8]
            )
        );
        assert!(mail_header(first, "In-Reply-To").is_none());
        let link = format!("{PUBLIC_URL}/#/incidents/{}", created.id);
        assert!(first["text"].as_str().unwrap().contains(&link));
        assert!(first["html"].as_str().unwrap().contains(&link));
        assert!(first["text"].as_str().unwrap().contains(&created.summary));

        let second = &mails[1];
        assert_eq!(mail_header(second, "In-Reply-To"), Some(root.as_str()));
        assert_eq!(mail_header(second, "References"), Some(root.as_str()));
        let delivery = mail_header(second, "X-Gatewatch-Delivery").unwrap();
        assert_eq!(
            mail_header(second, "Message-ID"),
            Some(format!("<{delivery}.delivery@example.org>").as_str())
        );
        assert_eq!(
            mail_header(second, "Subject"),
            Some(format!("Re: {subject}").as_str())
        );
        assert!(second["text"]
            .as_str()
            .unwrap()
            .starts_with("Incident escalated"));
        assert_eq!(mail_header(second, "X-Gatewatch-Event"), Some("escalated"));
    }

    pub async fn flood_of_10000_clients_is_a_handful_of_messages(db: &TestDb) {
        const CLIENTS: usize = 10_000;
        const WRITERS: usize = 4;
        let store = db.store().await;
        let rx = Receiver::start().await;
        let rate = RateLimitConfig {
            enabled: true,
            burst: 5,
            refill_every_secs: 10,
        };
        let cfg = config(vec![slack("slack", rx.url("/services/T/B/X"), rate)], 5);
        let n = Notifications::build(&cfg, Arc::clone(&store)).unwrap();
        // The worker runs during the flood, as in production.
        let stop = CancellationToken::new();
        let worker = tokio::spawn(n.worker("w").run(stop.clone()));
        let start = Instant::now();
        let writers: Vec<_> = (0..WRITERS)
            .map(|k| {
                let store = Arc::clone(&store);
                let routing = n.routing();
                tokio::spawn(async move {
                    let mut m = IncidentManager::new(
                        store,
                        ManagerConfig {
                            notifications: routing,
                            ..ManagerConfig::default()
                        },
                    );
                    for i in (k..CLIENTS).step_by(WRITERS) {
                        let client = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
                        let mut f =
                            finding(IncidentKind::CredentialStuffing, &client, T0, T0 + MIN);
                        f.severity = if i % 10 == 0 {
                            Severity::High
                        } else {
                            Severity::Medium
                        };
                        m.apply(&f).await.unwrap().unwrap();
                    }
                })
            })
            .collect();
        for wtask in writers {
            wtask.await.unwrap();
        }
        let flood_secs = start.elapsed().as_secs_f64();
        // Wait for the last digest (at most one refill after the flood).
        let wait = Instant::now();
        loop {
            let c = counts(&store).await;
            if c[&DeliveryStatus::Held] == 0 && c[&DeliveryStatus::Pending] == 0 {
                break;
            }
            assert!(
                wait.elapsed() < Duration::from_secs(40),
                "not drained: {c:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop.cancel();
        worker.await.unwrap();
        assert_eq!(store.count().await.unwrap(), CLIENTS as u64);

        let messages = rx.requests();
        let digests: Vec<_> = messages
            .iter()
            .filter(|r| {
                r.json()["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("held back by flood control"))
            })
            .collect();
        let c = counts(&store).await;
        let summarised = c[&DeliveryStatus::Digested];
        let sent_alone = c[&DeliveryStatus::Delivered] - digests.len() as u64;
        eprintln!(
            "flood ({}): {CLIENTS} clients in {flood_secs:.1} s -> {} messages ({} alone, {} digests summarising {summarised}); outbox {c:?}",
            store.backend(),
            messages.len(),
            sent_alone,
            digests.len()
        );
        assert_eq!(sent_alone, 5, "the burst");
        assert_eq!(summarised + sent_alone, CLIENTS as u64, "nothing lost");
        assert!(!digests.is_empty());
        // The burst, then at most one digest per refill (10 s here; 60 s by
        // default) while the flood lasted, plus the last one.
        let bound = 5 + (flood_secs / 10.0).ceil() as usize + 2;
        assert!(
            messages.len() <= bound,
            "{} messages for a {CLIENTS}-client flood (bound {bound})",
            messages.len()
        );
        assert_eq!(c[&DeliveryStatus::Dead], 0);
        // The digests' counts add up, and name kinds, severities and clients.
        let outbox_digests: Vec<_> = outbox::list(
            &*store,
            &OutboxQuery {
                status: Some(DeliveryStatus::Delivered),
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == NotifyEvent::Digest)
        .collect();
        let held: u64 = outbox_digests
            .iter()
            .map(|e| e.payload["held"].as_u64().unwrap())
            .sum();
        assert_eq!(held, summarised);
        let d = &outbox_digests.last().unwrap().payload;
        assert!(d["by_kind"]["credential_stuffing"].as_u64().unwrap() > 0);
        assert!(d["by_severity"]["medium"].as_u64().unwrap() > 0);
        assert_eq!(d["top_clients"].as_array().unwrap().len(), 10);
        assert_eq!(d["clients"], d["held"], "one notification per client");
    }
}
