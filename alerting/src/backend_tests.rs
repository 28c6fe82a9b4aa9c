//! The incident store and manager against real databases.
//!
//! Unit tests rather than `tests/` so they reach [`crate::testing`] without
//! the crate depending on itself (which would touch the workspace lock file).
//!
//! Every case is written once, over `Arc<dyn IncidentStore>` from a
//! [`TestDb`], and run by `mod postgres` (a fresh database on the server named
//! by `GATEWATCH_TEST_DATABASE_URL`, see `scripts/dev-services`) and by
//! `mod sqlite` (a fresh temp file).

use crate::testing::{finding, TestDb};
use crate::{
    ChangeKind, IncidentChange, IncidentCursor, IncidentManager, IncidentQuery, IncidentStatus,
    IncidentStore, ManagerConfig, ManagerStats, StoreError,
};
use gatewatch_detector::{EventTime, Finding, IncidentKind, Severity};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Runs each named case against one backend.
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
    migrate_twice_is_a_no_op,
    create_stores_the_incident,
    same_fingerprint_updates_one_row,
    replayed_findings_change_nothing,
    merge_gap_boundary,
    escalation_is_recorded,
    out_of_order_finding_joins_its_own_incident,
    latest_for_returns_the_most_recent,
    list_filters,
    list_pages_with_a_cursor,
    timeline_records_each_change,
    stale_writes_conflict,
    concurrent_managers_make_one_row,
    restart_continues_the_incident,
    times_round_trip_exactly,
    audit_entries_come_back_newest_first,
    nul_bytes_are_kept_as_replacement_characters,
);

const MIN: i64 = 60_000;
const T0: i64 = 1_700_000_000_000;
const IP: &str = "203.0.113.9";

fn stuffing(first_min: i64, last_min: i64) -> Finding {
    finding(
        IncidentKind::CredentialStuffing,
        IP,
        T0 + first_min * MIN,
        T0 + last_min * MIN,
    )
}

fn manager(store: &Arc<dyn IncidentStore>) -> IncidentManager {
    IncidentManager::new(Arc::clone(store), ManagerConfig::default())
}

async fn apply(m: &mut IncidentManager, f: &Finding) -> Option<IncidentChange> {
    m.apply(f).await.expect("apply a finding")
}

mod cases {
    use super::*;

    /// A NUL from a log (a username, a header) must not make PostgreSQL
    /// refuse the incident: both stores keep U+FFFD instead, and the
    /// incident still updates in place.
    pub async fn nul_bytes_are_kept_as_replacement_characters(db: &TestDb) {
        let store = db.store().await;
        let mut m = manager(&store);
        let hostile = |last_min: i64| {
            let mut f = finding(
                IncidentKind::CredentialStuffing,
                "identity:ro\0ot",
                T0,
                T0 + last_min * MIN,
            );
            f.summary = "brute force on ro\0ot".into();
            f.evidence = serde_json::json!({
                "sample_users": ["ro\0ot", "admin"],
                "nested": {"k\0": ["\0"]},
            });
            f
        };
        let created = apply(&mut m, &hostile(5)).await.unwrap().incident;
        let updated = apply(&mut manager(&store), &hostile(9)).await.unwrap();
        assert_eq!(updated.incident.id, created.id);
        let stored = store.get(created.id).await.unwrap().unwrap();
        assert_eq!(stored.client, "identity:ro\u{fffd}ot");
        assert_eq!(stored.summary, "brute force on ro\u{fffd}ot");
        assert_eq!(
            stored.evidence,
            serde_json::json!({
                "sample_users": ["ro\u{fffd}ot", "admin"],
                "nested": {"k\u{fffd}": ["\u{fffd}"]},
            })
        );
        assert_eq!(store.count().await.unwrap(), 1);
    }

    pub async fn audit_entries_come_back_newest_first(db: &TestDb) {
        use crate::store::audit::{self, AuditAction};
        let store = db.store().await;
        let d = store.db();
        assert!(audit::recent(&d, 10).await.unwrap().is_empty());
        audit::record(&d, "token:admin", AuditAction::TokenCreated, "bob")
            .await
            .unwrap();
        audit::record(&d, "cli:root", AuditAction::TokenRevoked, "bob")
            .await
            .unwrap();
        let got = audit::recent(&d, 10).await.unwrap();
        let seen: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str()))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("cli:root", "token_revoked", "bob"),
                ("token:admin", "token_created", "bob"),
            ]
        );
        assert!(got[0].id > got[1].id && got[0].at >= got[1].at);
        assert_eq!(audit::recent(&d, 1).await.unwrap().len(), 1);
    }

    pub async fn migrate_twice_is_a_no_op(db: &TestDb) {
        let store = db.store().await;
        store.migrate().await.expect("second migrate");
        let again = db.store().await; // a new pool migrating a current schema
        again.migrate().await.expect("third migrate");
        assert_eq!(store.count().await.unwrap(), 0);
        apply(&mut manager(&store), &stuffing(0, 5)).await.unwrap();
        assert_eq!(again.count().await.unwrap(), 1);
    }

    pub async fn create_stores_the_incident(db: &TestDb) {
        let store = db.store().await;
        let mut m = manager(&store);
        let f = stuffing(0, 5);
        let c = apply(&mut m, &f).await.expect("a new incident");
        assert_eq!(c.change, ChangeKind::Created);
        assert_eq!(c.incident.revision, 0);
        assert_eq!(c.incident.client, IP);
        assert_eq!(c.incident.first_seen, f.first_seen);
        let stored = store.get(c.incident.id).await.unwrap().expect("stored");
        assert_eq!(stored, c.incident);
        assert_eq!(store.count().await.unwrap(), 1);
        assert_eq!(store.get(uuid::Uuid::nil()).await.unwrap(), None);
    }

    pub async fn same_fingerprint_updates_one_row(db: &TestDb) {
        let store = db.store().await;
        let mut m = manager(&store);
        let created = apply(&mut m, &stuffing(0, 5)).await.unwrap();
        let mut f = stuffing(0, 12);
        f.events = 80;
        f.summary = "grown".into();
        let updated = apply(&mut m, &f).await.expect("an update");
        assert_eq!(updated.change, ChangeKind::Updated);
        assert_eq!(updated.incident.id, created.incident.id);
        assert_eq!(updated.incident.revision, 1);
        let stored = store.get(created.incident.id).await.unwrap().unwrap();
        assert_eq!(stored.events, 80);
        assert_eq!(stored.summary, "grown");
        assert_eq!(stored.last_seen, f.last_seen);
        assert_eq!(stored.detected_at, created.incident.detected_at);
        assert_eq!(store.count().await.unwrap(), 1);
    }

    pub async fn replayed_findings_change_nothing(db: &TestDb) {
        let store = db.store().await;
        let findings = [stuffing(0, 5), stuffing(0, 9), stuffing(0, 14)];
        let mut first = manager(&store);
        for f in &findings {
            assert!(apply(&mut first, f).await.is_some());
        }
        let before = store.list(&IncidentQuery::default()).await.unwrap();
        let id = before.incidents[0].id;
        let timeline = store.timeline(id).await.unwrap().len();
        // The same manager (warm cache) and a fresh one (cold cache) alike.
        for m in [&mut first, &mut manager(&store)] {
            for f in &findings {
                assert_eq!(apply(m, f).await, None, "replay of {f:?}");
            }
        }
        assert_eq!(store.list(&IncidentQuery::default()).await.unwrap(), before);
        assert_eq!(store.timeline(id).await.unwrap().len(), timeline);
    }

    pub async fn merge_gap_boundary(db: &TestDb) {
        let store = db.store().await;
        let mut m = manager(&store);
        let gap = 30;
        let first = apply(&mut m, &stuffing(0, 10)).await.unwrap();
        // Starts exactly merge_gap after last_seen: the same attack.
        let inside = apply(&mut m, &stuffing(10 + gap, 50)).await.unwrap();
        assert_eq!(inside.incident.id, first.incident.id);
        assert_eq!(inside.change, ChangeKind::Updated);
        // One millisecond further: a new attack.
        let mut f = stuffing(50 + gap, 90);
        f.first_seen = f.first_seen.plus_millis(1);
        let outside = apply(&mut m, &f).await.unwrap();
        assert_eq!(outside.change, ChangeKind::Created);
        assert_ne!(outside.incident.id, first.incident.id);
        assert_eq!(store.count().await.unwrap(), 2);
    }

    pub async fn escalation_is_recorded(db: &TestDb) {
        let store = db.store().await;
        let mut m = manager(&store);
        let c = apply(&mut m, &stuffing(0, 5)).await.unwrap();
        let mut f = stuffing(0, 6);
        f.severity = Severity::Critical;
        let e = apply(&mut m, &f).await.unwrap();
        assert_eq!(
            e.change,
            ChangeKind::Escalated {
                from: Severity::Medium
            }
        );
        let stored = store.get(c.incident.id).await.unwrap().unwrap();
        assert_eq!(stored.severity, Severity::Critical);
        let timeline = store.timeline(c.incident.id).await.unwrap();
        let last = timeline.last().unwrap();
        assert_eq!(last.action, "escalated");
        assert_eq!(last.details["from"], "medium");
        assert_eq!(last.details["severity"], "critical");
    }

    pub async fn out_of_order_finding_joins_its_own_incident(db: &TestDb) {
        let store = db.store().await;
        let mut m = manager(&store);
        let old = apply(&mut m, &stuffing(0, 10)).await.unwrap().incident;
        let new = apply(&mut m, &stuffing(200, 210)).await.unwrap().incident;
        assert_ne!(old.id, new.id);
        // A late finding about the first attack (e.g. a lagging partition).
        let mut late = stuffing(0, 15);
        late.events = 50;
        let c = apply(&mut m, &late).await.unwrap();
        assert_eq!(c.incident.id, old.id);
        assert_eq!(store.get(new.id).await.unwrap().unwrap(), new);
        // A late finding between them, far from both, is its own attack.
        let c = apply(&mut m, &stuffing(100, 105)).await.unwrap();
        assert_eq!(c.change, ChangeKind::Created);
        assert_eq!(store.count().await.unwrap(), 3);
    }

    pub async fn latest_for_returns_the_most_recent(db: &TestDb) {
        let store = db.store().await;
        let mut m = manager(&store);
        assert_eq!(
            store
                .latest_for(IncidentKind::CredentialStuffing, IP)
                .await
                .unwrap(),
            None
        );
        apply(&mut m, &stuffing(0, 10)).await.unwrap();
        let newest = apply(&mut m, &stuffing(100, 110)).await.unwrap().incident;
        apply(
            &mut m,
            &finding(
                IncidentKind::TrafficSpike,
                IP,
                T0 + 300 * MIN,
                T0 + 301 * MIN,
            ),
        )
        .await
        .unwrap();
        let latest = store
            .latest_for(IncidentKind::CredentialStuffing, IP)
            .await
            .unwrap();
        assert_eq!(latest, Some(newest));
    }

    pub async fn list_filters(db: &TestDb) {
        let store = db.store().await;
        let mut m = manager(&store);
        let mut spike = finding(IncidentKind::TrafficSpike, "10.0.0.1", T0, T0 + 10 * MIN);
        spike.severity = Severity::Low;
        let spike = apply(&mut m, &spike).await.unwrap().incident;
        let mut probe = finding(
            IncidentKind::PrivilegeProbing,
            "10.0.0.2",
            T0 + 100 * MIN,
            T0 + 110 * MIN,
        );
        probe.severity = Severity::High;
        let probe = apply(&mut m, &probe).await.unwrap().incident;
        let mut stuff = finding(
            IncidentKind::CredentialStuffing,
            "10.0.0.1",
            T0 + 200 * MIN,
            T0 + 210 * MIN,
        );
        stuff.severity = Severity::Critical;
        let stuff = apply(&mut m, &stuff).await.unwrap().incident;
        // An analyst acknowledges the probe.
        let mut acked = probe.clone();
        acked.status = IncidentStatus::Acknowledged;
        acked.revision += 1;
        store
            .record_change(&IncidentChange {
                incident: acked,
                change: ChangeKind::StatusChanged {
                    from: IncidentStatus::Open,
                },
                actor: "user:alice".into(),
            })
            .await
            .unwrap();

        let ids = |q: IncidentQuery| {
            let store = Arc::clone(&store);
            async move {
                store
                    .list(&q)
                    .await
                    .unwrap()
                    .incidents
                    .into_iter()
                    .map(|i| i.id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            ids(IncidentQuery::default()).await,
            [stuff.id, probe.id, spike.id],
            "newest first"
        );
        let q = |f: fn(&mut IncidentQuery)| {
            let mut q = IncidentQuery::default();
            f(&mut q);
            q
        };
        assert_eq!(
            ids(q(|q| q.status = Some(IncidentStatus::Acknowledged))).await,
            [probe.id]
        );
        assert_eq!(
            ids(q(|q| q.status = Some(IncidentStatus::Open))).await,
            [stuff.id, spike.id]
        );
        assert_eq!(
            ids(q(|q| q.kind = Some(IncidentKind::TrafficSpike))).await,
            [spike.id]
        );
        assert_eq!(
            ids(q(|q| q.min_severity = Some(Severity::High))).await,
            [stuff.id, probe.id]
        );
        assert_eq!(
            ids(q(|q| q.client = Some("10.0.0.1".into()))).await,
            [stuff.id, spike.id]
        );
        // Incidents overlapping [T0+105min, T0+200min): the probe (still
        // active at 105) but not the stuffing (starts at 200, exclusive).
        assert_eq!(
            ids(q(|q| {
                q.since = Some(EventTime::from_millis(T0 + 105 * MIN));
                q.until = Some(EventTime::from_millis(T0 + 200 * MIN));
            }))
            .await,
            [probe.id]
        );
        assert_eq!(
            ids(q(|q| {
                q.client = Some("10.0.0.1".into());
                q.kind = Some(IncidentKind::CredentialStuffing);
                q.min_severity = Some(Severity::Critical);
                q.since = Some(EventTime::from_millis(T0));
            }))
            .await,
            [stuff.id]
        );
        assert!(ids(q(|q| q.client = Some("nobody".into())))
            .await
            .is_empty());
    }

    pub async fn list_pages_with_a_cursor(db: &TestDb) {
        let store = db.store().await;
        let mut m = manager(&store);
        // 25 incidents; pairs share a last_seen so the id tiebreak is used.
        for n in 0..25i64 {
            let at = T0 + (n / 2) * 100 * MIN;
            let f = finding(IncidentKind::TrafficSpike, &format!("10.1.0.{n}"), at, at);
            apply(&mut m, &f).await.unwrap();
        }
        let everything = store
            .list(&IncidentQuery {
                limit: Some(100),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(everything.incidents.len(), 25);
        assert_eq!(everything.next, None);

        let mut seen = Vec::new();
        let mut after: Option<IncidentCursor> = None;
        let mut pages = Vec::new();
        loop {
            let page = store
                .list(&IncidentQuery {
                    limit: Some(10),
                    // Through the cursor's text form, as the API passes it.
                    after: after.map(|c| c.to_string().parse().unwrap()),
                    ..Default::default()
                })
                .await
                .unwrap();
            pages.push(page.incidents.len());
            seen.extend(page.incidents.iter().map(|i| (i.last_seen, i.id)));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, [10, 10, 5]);
        let expected: Vec<_> = everything
            .incidents
            .iter()
            .map(|i| (i.last_seen, i.id))
            .collect();
        assert_eq!(seen, expected, "pages concatenate to the full listing");
        let mut sorted = expected.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(expected, sorted, "last_seen desc, then id desc");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);
    }

    pub async fn timeline_records_each_change(db: &TestDb) {
        let store = db.store().await;
        let mut m = manager(&store);
        let id = apply(&mut m, &stuffing(0, 5)).await.unwrap().incident.id;
        apply(&mut m, &stuffing(0, 8)).await.unwrap();
        let mut f = stuffing(0, 9);
        f.severity = Severity::High;
        apply(&mut m, &f).await.unwrap();
        apply(&mut m, &f).await; // replay: no entry

        let timeline = store.timeline(id).await.unwrap();
        let actions: Vec<_> = timeline.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["created", "updated", "escalated"]);
        let revisions: Vec<_> = timeline.iter().map(|e| e.revision).collect();
        assert_eq!(revisions, [0, 1, 2]);
        assert!(timeline.iter().all(|e| e.incident_id == id));
        assert!(timeline.iter().all(|e| e.actor == "detector:test"));
        assert!(timeline.windows(2).all(|w| w[0].id < w[1].id));
        assert!(timeline.windows(2).all(|w| w[0].at <= w[1].at));
        assert_eq!(timeline[1].details["last_seen"], "2023-11-14T22:21:20.000Z");
        assert!(store.timeline(uuid::Uuid::nil()).await.unwrap().is_empty());
    }

    pub async fn stale_writes_conflict(db: &TestDb) {
        let store = db.store().await;
        let created = apply(&mut manager(&store), &stuffing(0, 5)).await.unwrap();
        // Creating it again: the fingerprint exists.
        let err = store.record_change(&created).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { revision: 0, .. }),
            "{err}"
        );
        // Two writers computing revision 1 from revision 0: only one lands.
        let mut a = created.clone();
        a.change = ChangeKind::Updated;
        a.incident.revision = 1;
        a.incident.events = 20;
        let mut b = a.clone();
        b.incident.events = 30;
        store.record_change(&a).await.unwrap();
        let err = store.record_change(&b).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { revision: 1, .. }),
            "{err}"
        );
        let stored = store.get(created.incident.id).await.unwrap().unwrap();
        assert_eq!(stored.events, 20);
        // Nothing of the rejected writes reached the timeline.
        assert_eq!(store.timeline(stored.id).await.unwrap().len(), 2);
    }

    pub async fn concurrent_managers_make_one_row(db: &TestDb) {
        let store = db.store().await;
        // Many attacks, each fed to two managers at once (two tasks, or two
        // instances during a rebalance), with growing findings.
        let clients: Vec<String> = (0..12).map(|n| format!("10.2.0.{n}")).collect();
        let stream: Vec<Finding> = clients
            .iter()
            .flat_map(|c| {
                (1..=4).map(move |step| {
                    let mut f = finding(IncidentKind::CredentialStuffing, c, T0, T0 + step * MIN);
                    f.events = 10 * step as u64;
                    if step == 4 {
                        f.severity = Severity::High;
                    }
                    f
                })
            })
            .collect();
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let store = Arc::clone(&store);
                let stream = stream.clone();
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    let mut m = manager(&store);
                    barrier.wait().await;
                    for f in &stream {
                        m.apply(f).await.expect("apply under contention");
                    }
                    m.stats()
                })
            })
            .collect();
        let mut stats = Vec::new();
        for t in tasks {
            stats.push(t.await.unwrap());
        }
        // Every distinct state was written exactly once, by one task or the
        // other; the rest were seen as unchanged (after a conflict or not).
        let sum = |f: fn(&ManagerStats) -> u64| stats.iter().map(f).sum::<u64>();
        assert_eq!(sum(|s| s.created), clients.len() as u64);
        assert_eq!(sum(|s| s.updated), 2 * clients.len() as u64);
        assert_eq!(sum(|s| s.escalated), clients.len() as u64);
        assert_eq!(sum(|s| s.unchanged), stream.len() as u64);
        assert_eq!(store.count().await.unwrap(), clients.len() as u64);
        for c in &clients {
            let i = store
                .latest_for(IncidentKind::CredentialStuffing, c)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(i.events, 40);
            assert_eq!(i.severity, Severity::High);
            assert_eq!(i.last_seen, EventTime::from_millis(T0 + 4 * MIN));
            // One write per distinct state, whichever task made it.
            assert_eq!(i.revision, 3, "{c}");
            assert_eq!(store.timeline(i.id).await.unwrap().len(), 4);
        }
    }

    pub async fn restart_continues_the_incident(db: &TestDb) {
        let before = {
            let store = db.store().await;
            let mut m = manager(&store);
            let c = apply(&mut m, &stuffing(0, 20)).await.unwrap();
            store.close().await;
            c.incident
        };
        // A new process: new pool, new manager, cold cache; the detector has
        // restarted its episode 10 minutes after the last event it saw.
        let store = db.store().await;
        let mut m = IncidentManager::new(
            Arc::clone(&store),
            ManagerConfig {
                merge_gap: Duration::from_secs(30 * 60),
                cache_capacity: 16,
                ..ManagerConfig::default()
            },
        );
        let mut f = stuffing(30, 45);
        f.events = 5;
        let c = apply(&mut m, &f).await.expect("an update");
        assert_eq!(c.change, ChangeKind::Updated);
        assert_eq!(c.incident.id, before.id);
        assert_eq!(c.incident.first_seen, before.first_seen);
        assert_eq!(c.incident.last_seen, f.last_seen);
        assert_eq!(c.incident.events, before.events);
        assert_eq!(store.count().await.unwrap(), 1);
    }

    pub async fn times_round_trip_exactly(db: &TestDb) {
        let store = db.store().await;
        let mut m = manager(&store);
        // Odd milliseconds, a pre-1970 time, and a far-future one.
        for (n, (first, last)) in [
            (T0 + 1, T0 + 999),
            (-86_400_000 * 365 + 7, -1),
            (253_402_300_799_000, 253_402_300_799_999),
        ]
        .into_iter()
        .enumerate()
        {
            let f = finding(
                IncidentKind::TrafficSpike,
                &format!("10.3.0.{n}"),
                first,
                last,
            );
            let c = apply(&mut m, &f).await.unwrap();
            let stored = store.get(c.incident.id).await.unwrap().unwrap();
            assert_eq!(stored.first_seen.millis(), first);
            assert_eq!(stored.last_seen.millis(), last);
        }
        let mut f = finding(IncidentKind::TrafficSpike, "10.3.0.9", T0, T0);
        f.last_seen = EventTime::from_millis(i64::MAX);
        let err = m.apply(&f).await.unwrap_err();
        assert!(matches!(err, StoreError::OutOfRange { .. }), "{err}");
    }
}

/// PostgreSQL's refusal of a value is permanent; a pool timing out is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_value_is_a_data_error_and_a_timeout_is_not() {
    use crate::store::{Db, StoreError};
    let db = TestDb::postgres().await;
    let store = db.store().await;
    let Db::Postgres(pool) = store.db() else {
        panic!("a PostgreSQL test database");
    };
    let refused = sqlx::query(r#"SELECT '{"u": "a\u0000b"}'::jsonb"#)
        .execute(&pool)
        .await
        .unwrap_err();
    let query = |source| StoreError::Query {
        backend: "postgres",
        operation: "test",
        source,
    };
    assert!(query(refused).is_data_error());
    assert!(!query(sqlx::Error::PoolTimedOut).is_data_error());
}
