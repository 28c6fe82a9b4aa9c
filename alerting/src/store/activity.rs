//! Client activity and incident statistics: what the API draws and counts.
//!
//! `client_activity` holds requests per client per minute of event time. The
//! pipeline writes it only for clients with incidents (so it stays small) and
//! writes *running totals*: a minute's row only ever rises to the largest
//! count written for it, so a replay or a retried batch writes the same value
//! again instead of doubling it (the at-least-once rule of ARCHITECTURE.md).

use super::tokens::query_err;
use super::{check_time, clamp_time, Db, Result, StoreError};
use gatewatch_detector::{EventTime, IncidentKind, Severity};
use serde::Serialize;

use crate::IncidentStatus;

/// Requests of one client in one minute of event time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ActivityPoint {
    /// The start of the minute.
    pub minute: EventTime,
    /// Requests the client sent in it.
    pub events: u64,
}

/// The start of the minute `t` falls in.
pub fn minute_of(t: EventTime) -> EventTime {
    EventTime::from_millis(t.millis().div_euclid(60_000) * 60_000)
}

/// Writes running per-minute totals: for each `(client, minute, events)`,
/// the stored count becomes the larger of the stored one and `events`.
/// `minute` is rounded down to its minute. One transaction per call: batch
/// the counts of a pipeline batch together.
pub async fn record_activity(db: &Db, counts: &[(String, EventTime, u64)]) -> Result<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let too_big = |n: u64| StoreError::OutOfRange {
        field: "events",
        value: n.to_string(),
    };
    match db {
        Db::Postgres(pool) => {
            let mut tx = pool
                .begin()
                .await
                .map_err(query_err(db, "begin a transaction"))?;
            for (client, minute, events) in counts {
                let minute = check_time("minute", minute_of(*minute))?;
                sqlx::query(
                    "INSERT INTO client_activity (client, minute, events) VALUES ($1, $2, $3) \
                     ON CONFLICT (client, minute) \
                     DO UPDATE SET events = GREATEST(client_activity.events, excluded.events)",
                )
                .bind(client)
                .bind(minute.to_datetime())
                .bind(i64::try_from(*events).map_err(|_| too_big(*events))?)
                .execute(&mut *tx)
                .await
                .map_err(query_err(db, "record client activity"))?;
            }
            tx.commit()
                .await
                .map_err(query_err(db, "commit client activity"))
        }
        Db::Sqlite(pool) => {
            let mut tx = pool
                .begin()
                .await
                .map_err(query_err(db, "begin a transaction"))?;
            for (client, minute, events) in counts {
                let minute = check_time("minute", minute_of(*minute))?;
                sqlx::query(
                    "INSERT INTO client_activity (client, minute, events) VALUES ($1, $2, $3) \
                     ON CONFLICT (client, minute) \
                     DO UPDATE SET events = max(client_activity.events, excluded.events)",
                )
                .bind(client)
                .bind(minute.to_rfc3339())
                .bind(i64::try_from(*events).map_err(|_| too_big(*events))?)
                .execute(&mut *tx)
                .await
                .map_err(query_err(db, "record client activity"))?;
            }
            tx.commit()
                .await
                .map_err(query_err(db, "commit client activity"))
        }
    }
}

/// A client's per-minute counts in `[from, to)`, oldest first. Minutes with
/// no row are absent (no request, or not recorded).
pub async fn client_activity(
    db: &Db,
    client: &str,
    from: EventTime,
    to: EventTime,
) -> Result<Vec<ActivityPoint>> {
    let sql = "SELECT minute, events FROM client_activity \
               WHERE client = $1 AND minute >= $2 AND minute < $3 ORDER BY minute";
    let point = |ms: i64, events: i64| ActivityPoint {
        minute: EventTime::from_millis(ms),
        events: u64::try_from(events).unwrap_or(0),
    };
    match db {
        Db::Postgres(pool) => {
            let rows: Vec<(chrono::DateTime<chrono::Utc>, i64)> = sqlx::query_as(sql)
                .bind(client)
                .bind(clamp_time(from).to_datetime())
                .bind(clamp_time(to).to_datetime())
                .fetch_all(pool)
                .await
                .map_err(query_err(db, "read client activity"))?;
            Ok(rows
                .into_iter()
                .map(|(m, n)| point(m.timestamp_millis(), n))
                .collect())
        }
        Db::Sqlite(pool) => {
            let rows: Vec<(String, i64)> = sqlx::query_as(sql)
                .bind(client)
                .bind(clamp_time(from).to_rfc3339())
                .bind(clamp_time(to).to_rfc3339())
                .fetch_all(pool)
                .await
                .map_err(query_err(db, "read client activity"))?;
            rows.into_iter()
                .map(|(m, n)| {
                    let t = super::tokens::parse_sqlite_time(client, "minute", &m)?;
                    Ok(point(t.timestamp_millis(), n))
                })
                .collect()
        }
    }
}

/// Deletes activity older than `before` (event time); returns the rows
/// removed. The pipeline calls this now and then with its watermark minus
/// the retention.
pub async fn prune_activity(db: &Db, before: EventTime) -> Result<u64> {
    let sql = "DELETE FROM client_activity WHERE minute < $1";
    let done = match db {
        Db::Postgres(pool) => sqlx::query(sql)
            .bind(clamp_time(before).to_datetime())
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        Db::Sqlite(pool) => sqlx::query(sql)
            .bind(clamp_time(before).to_rfc3339())
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
    }
    .map_err(query_err(db, "prune client activity"))?;
    Ok(done)
}

/// How many incidents share one kind, severity and status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IncidentCount {
    /// The kind.
    pub kind: IncidentKind,
    /// The severity.
    pub severity: Severity,
    /// The status.
    pub status: IncidentStatus,
    /// How many.
    pub incidents: u64,
}

/// Incidents grouped by kind, severity and status, among those active in
/// `[since, until)` (`last_seen >= since`, `first_seen < until`, as
/// [`IncidentQuery`](super::IncidentQuery) selects them).
pub async fn incident_counts(
    db: &Db,
    since: Option<EventTime>,
    until: Option<EventTime>,
) -> Result<Vec<IncidentCount>> {
    let sql = "SELECT kind, severity, status, count(*) FROM incidents \
               WHERE ($1 IS NULL OR last_seen >= $1) AND ($2 IS NULL OR first_seen < $2) \
               GROUP BY kind, severity, status ORDER BY kind, severity, status";
    let since = since.map(clamp_time);
    let until = until.map(clamp_time);
    let rows: Vec<(String, String, String, i64)> = match db {
        Db::Postgres(pool) => {
            sqlx::query_as(sql)
                .bind(since.map(EventTime::to_datetime))
                .bind(until.map(EventTime::to_datetime))
                .fetch_all(pool)
                .await
        }
        Db::Sqlite(pool) => {
            sqlx::query_as(sql)
                .bind(since.map(EventTime::to_rfc3339))
                .bind(until.map(EventTime::to_rfc3339))
                .fetch_all(pool)
                .await
        }
    }
    .map_err(query_err(db, "count incidents"))?;
    rows.into_iter()
        .map(|(kind, severity, status, n)| {
            let (kind, severity, status) = super::TextColumns {
                id: "*",
                kind: &kind,
                severity: &severity,
                status: &status,
            }
            .parse()?;
            Ok(IncidentCount {
                kind,
                severity,
                status,
                incidents: u64::try_from(n).unwrap_or(0),
            })
        })
        .collect()
}

/// The API-side tables and list filters, once per backend (habit 11).
#[cfg(test)]
mod tests {
    use super::super::comments::{add_comment, comments};
    use super::super::tokens::{
        create_token, find_token, list_tokens, revoke_token, touch_token, TokenError, TokenRole,
    };
    use super::*;
    use crate::manager::open;
    use crate::testing::{finding, TestDb};
    use crate::{IncidentQuery, ListOrder};

    const T0: i64 = 1_700_000_000_000;

    async fn api_tables(db: &TestDb) {
        let store = db.store().await;
        let pool = store.db();

        // Tokens: unique names, lookup by hash, revocation.
        let t = create_token(&pool, "alice", TokenRole::Analyst, "ab12", "cli:test")
            .await
            .unwrap();
        assert!(matches!(
            create_token(&pool, "alice", TokenRole::Viewer, "cd34", "cli:test").await,
            Err(TokenError::NameTaken { .. })
        ));
        let found = find_token(&pool, "ab12").await.unwrap().unwrap();
        assert_eq!(found, t);
        touch_token(&pool, t.id).await.unwrap();
        assert!(find_token(&pool, "ab12")
            .await
            .unwrap()
            .unwrap()
            .last_used_at
            .is_some());
        assert!(find_token(&pool, "zz").await.unwrap().is_none());
        assert!(revoke_token(&pool, "alice").await.unwrap());
        assert!(!revoke_token(&pool, "alice").await.unwrap());
        assert!(list_tokens(&pool).await.unwrap()[0].revoked_at.is_some());

        // Incidents to comment on, count and filter.
        let mut ids = Vec::new();
        for (n, client) in ["192.0.2.10", "192.0.2.200", "198.51.100.7", "key:abc"]
            .iter()
            .enumerate()
        {
            let at = T0 + n as i64 * 60_000;
            let mut f = finding(IncidentKind::TrafficSpike, client, at, at);
            f.summary = format!("Client {client} 100% over its usual_rate");
            let change = open(&f);
            store.record_change(&change).await.unwrap();
            ids.push(change.incident.id);
        }
        let c = add_comment(&pool, ids[0], "token:alice", "<b>looks bad</b>")
            .await
            .unwrap();
        assert_eq!(comments(&pool, ids[0]).await.unwrap(), vec![c]);
        assert!(comments(&pool, ids[1]).await.unwrap().is_empty());

        let list = |q: IncidentQuery| {
            let store = store.clone();
            async move {
                store
                    .list(&q)
                    .await
                    .unwrap()
                    .incidents
                    .into_iter()
                    .map(|i| i.client)
                    .collect::<Vec<_>>()
            }
        };
        let net = |s: &str| Some(s.parse::<ipnet::IpNet>().unwrap());
        assert_eq!(
            list(IncidentQuery {
                cidr: net("192.0.2.0/24"),
                ..Default::default()
            })
            .await,
            ["192.0.2.200", "192.0.2.10"]
        );
        assert_eq!(
            list(IncidentQuery {
                cidr: net("192.0.2.128/25"),
                ..Default::default()
            })
            .await,
            ["192.0.2.200"]
        );
        // Paging through a network filter, one at a time, oldest first.
        let mut after = None;
        let mut seen = Vec::new();
        loop {
            let page = store
                .list(&IncidentQuery {
                    cidr: net("192.0.2.0/24"),
                    order: ListOrder::OldestFirst,
                    limit: Some(1),
                    after,
                    ..Default::default()
                })
                .await
                .unwrap();
            seen.extend(page.incidents.into_iter().map(|i| i.client));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, ["192.0.2.10", "192.0.2.200"]);
        // Free text: case-insensitive, `%` and `_` literal.
        assert_eq!(
            list(IncidentQuery {
                text: Some("100% OVER".into()),
                order: ListOrder::OldestFirst,
                ..Default::default()
            })
            .await
            .len(),
            4
        );
        assert_eq!(
            list(IncidentQuery {
                text: Some("usual%rate".into()),
                ..Default::default()
            })
            .await
            .len(),
            0
        );
        assert_eq!(
            list(IncidentQuery {
                text: Some("KEY:ABC".into()),
                ..Default::default()
            })
            .await,
            ["key:abc"]
        );

        // Counts over a window.
        let counts = incident_counts(&pool, Some(EventTime::from_millis(T0 + 60_000)), None)
            .await
            .unwrap();
        assert_eq!(counts.iter().map(|c| c.incidents).sum::<u64>(), 3);
        assert_eq!(
            incident_counts(&pool, None, None).await.unwrap()[0].incidents,
            4
        );

        // Activity: running totals only rise; reads are by window.
        let m = |n: i64| EventTime::from_millis(T0 + n * 60_000 + 1234);
        let c = "192.0.2.10".to_string();
        record_activity(&pool, &[(c.clone(), m(0), 5), (c.clone(), m(1), 7)])
            .await
            .unwrap();
        record_activity(&pool, &[(c.clone(), m(0), 3), (c.clone(), m(1), 9)])
            .await
            .unwrap();
        let points = client_activity(&pool, &c, m(-5), m(5)).await.unwrap();
        assert_eq!(
            points,
            vec![
                ActivityPoint {
                    minute: minute_of(m(0)),
                    events: 5
                },
                ActivityPoint {
                    minute: minute_of(m(1)),
                    events: 9
                },
            ]
        );
        assert_eq!(prune_activity(&pool, minute_of(m(1))).await.unwrap(), 1);
        assert_eq!(
            client_activity(&pool, &c, m(-5), m(5)).await.unwrap().len(),
            1
        );
        pool.ping().await.unwrap();
        store.close().await;
    }

    #[tokio::test]
    async fn api_tables_postgres() {
        api_tables(&TestDb::postgres().await).await;
    }

    #[tokio::test]
    async fn api_tables_sqlite() {
        api_tables(&TestDb::sqlite().await).await;
    }
}
