//! The SQLite incident store: the embedded default, nothing to install.
//!
//! Storage conventions (see `migrations/README.md`): ids are lowercase
//! hyphenated UUID text; every time is RFC 3339 UTC text with exactly three
//! fractional digits and a `Z` (`2026-11-23T08:31:06.123Z`), written and
//! parsed here rather than by sqlx's chrono codec (whose variable precision
//! would break text ordering), so `ORDER BY last_seen` is time order and
//! SQLite's date functions still read the values; JSON is text checked by
//! `json_valid`.
//!
//! Connections run in WAL mode (readers never block the writer) with a busy
//! timeout (writers queue instead of failing) and foreign keys on. SQLite has
//! one writer at a time, so the compare-and-set on `revision` never races;
//! it still catches writes computed from stale state.

use super::{
    check_time, clamp_time, contains_pattern, events_to_db, from_db_int, Db, IncidentCursor,
    IncidentPage, IncidentQuery, IncidentStore, ListOrder, Result, StoreError, TextColumns,
    TimelineEntry, SQLITE_MIGRATOR,
};
use crate::change::IncidentChange;
use crate::incident::Incident;
use crate::outbox::ChangeEffects;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gatewatch_detector::{EventTime, IncidentKind};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

const BACKEND: &str = "sqlite";

/// How long a writer waits for another connection's write lock before
/// failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The columns of `incidents` that make an [`Incident`], in [`IncidentRow`]'s
/// order.
macro_rules! incident_columns {
    () => {
        "id, fingerprint, kind, technique, client, sources, first_seen, last_seen, \
         detected_at, severity, status, summary, evidence, events, revision, assignee"
    };
}

/// Incidents in a SQLite file (or in memory). Cheap to clone (the pool is
/// shared).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens `url`: `sqlite://path` (the file is created if missing) or
    /// `sqlite::memory:`. Does not migrate.
    ///
    /// An in-memory database lives as long as its one connection, so its
    /// pool holds exactly one connection that never expires.
    pub async fn connect(url: &str) -> Result<Self> {
        let connect_err = |source| StoreError::Connect {
            backend: BACKEND,
            source,
        };
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut options = SqliteConnectOptions::from_str(url)
            .map_err(connect_err)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let mut pool =
            SqlitePoolOptions::new().acquire_timeout(BUSY_TIMEOUT + Duration::from_secs(5));
        if in_memory {
            pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            // WAL lets the API read while the manager writes; NORMAL sync is
            // durable across application crashes (WAL's recommended pairing).
            options = options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            pool = pool.max_connections(4);
        }
        let pool = pool.connect_with(options).await.map_err(connect_err)?;
        Ok(SqliteStore { pool })
    }

    /// Wraps an existing pool (configured by the caller).
    pub fn from_pool(pool: SqlitePool) -> Self {
        SqliteStore { pool }
    }

    /// The pool, for health checks and for modules of this crate that write
    /// their own tables.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Rows read per step when [`IncidentQuery::cidr`] is filtered in Rust.
const CIDR_SCAN_BATCH: usize = 500;

impl SqliteStore {
    /// Up to `rows` incidents matching every filter of `query` except
    /// `cidr` and `limit`, in the query's order, after its cursor.
    async fn list_rows(&self, query: &IncidentQuery, rows: usize) -> Result<Vec<Incident>> {
        let mut qb = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM incidents WHERE 1"
        ));
        if let Some(status) = query.status {
            qb.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(kind) = query.kind {
            qb.push(" AND kind = ").push_bind(kind.as_str());
        }
        if let Some(severities) = query.severities() {
            qb.push(" AND severity IN (");
            let mut names = qb.separated(", ");
            for s in severities {
                names.push_bind(s.as_str());
            }
            qb.push(")");
        }
        if let Some(client) = &query.client {
            qb.push(" AND client = ").push_bind(client.clone());
        }
        if let Some(text) = &query.text {
            // LIKE ignores ASCII case in SQLite, as ILIKE does in PostgreSQL.
            qb.push(" AND summary LIKE ")
                .push_bind(contains_pattern(text))
                .push(" ESCAPE '\\'");
        }
        if let Some(since) = query.since {
            qb.push(" AND last_seen >= ").push_bind(bound(since));
        }
        if let Some(until) = query.until {
            qb.push(" AND first_seen < ").push_bind(bound(until));
        }
        let (cmp, dir) = match query.order {
            ListOrder::NewestFirst => ("<", "DESC"),
            ListOrder::OldestFirst => (">", "ASC"),
        };
        if let Some(after) = query.after {
            qb.push(format_args!(" AND (last_seen, id) {cmp} ("))
                .push_bind(bound(after.last_seen))
                .push(", ")
                .push_bind(after.id.to_string())
                .push(")");
        }
        qb.push(format_args!(" ORDER BY last_seen {dir}, id {dir} LIMIT "))
            .push_bind(i64::try_from(rows).unwrap_or(i64::MAX));
        qb.build_query_as::<IncidentRow>()
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("list incidents"))?
            .into_iter()
            .map(Incident::try_from)
            .collect()
    }
}

fn query_err(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query {
        backend: BACKEND,
        operation,
        source,
    }
}

/// The storage text of an event time, after checking it is storable.
fn ts(field: &'static str, t: EventTime) -> Result<String> {
    Ok(check_time(field, t)?.to_rfc3339())
}

/// The storage text of a query bound (clamped, never rejected).
fn bound(t: EventTime) -> String {
    clamp_time(t).to_rfc3339()
}

fn parse_time(id: &str, column: &'static str, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt {
            id: id.to_owned(),
            column,
            value: format!("{text} ({e})"),
        })
}

fn parse_event_time(id: &str, column: &'static str, text: &str) -> Result<EventTime> {
    parse_time(id, column, text).map(EventTime::from_datetime)
}

fn parse_json<T: serde::de::DeserializeOwned>(
    id: &str,
    column: &'static str,
    text: &str,
) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        id: id.to_owned(),
        column,
        value: format!("{text} ({e})"),
    })
}

fn to_json<T: serde::Serialize>(field: &'static str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|source| StoreError::Json { field, source })
}

/// A row of `incidents` as SQLite returns it: text and integers.
#[derive(sqlx::FromRow)]
struct IncidentRow {
    id: String,
    fingerprint: String,
    kind: String,
    technique: String,
    client: String,
    sources: String,
    first_seen: String,
    last_seen: String,
    detected_at: String,
    severity: String,
    status: String,
    summary: String,
    evidence: String,
    events: i64,
    revision: i64,
    assignee: Option<String>,
}

impl TryFrom<IncidentRow> for Incident {
    type Error = StoreError;

    fn try_from(row: IncidentRow) -> Result<Incident> {
        let id = row.id.as_str();
        let (kind, severity, status) = TextColumns {
            id,
            kind: &row.kind,
            severity: &row.severity,
            status: &row.status,
        }
        .parse()?;
        Ok(Incident {
            id: Uuid::parse_str(id).map_err(|e| StoreError::Corrupt {
                id: id.to_owned(),
                column: "id",
                value: e.to_string(),
            })?,
            fingerprint: row.fingerprint,
            kind,
            technique: row.technique,
            client: row.client,
            sources: parse_json(id, "sources", &row.sources)?,
            first_seen: parse_event_time(id, "first_seen", &row.first_seen)?,
            last_seen: parse_event_time(id, "last_seen", &row.last_seen)?,
            detected_at: parse_event_time(id, "detected_at", &row.detected_at)?,
            severity,
            status,
            summary: row.summary,
            evidence: parse_json(id, "evidence", &row.evidence)?,
            events: from_db_int(id, "events", row.events)?,
            revision: from_db_int(id, "revision", row.revision)?,
            assignee: row.assignee,
        })
    }
}

/// A row of `incident_timeline`.
#[derive(sqlx::FromRow)]
struct TimelineRow {
    id: i64,
    incident_id: String,
    at: String,
    actor: String,
    action: String,
    revision: i64,
    details: String,
}

impl TryFrom<TimelineRow> for TimelineEntry {
    type Error = StoreError;

    fn try_from(row: TimelineRow) -> Result<TimelineEntry> {
        let id = row.incident_id.as_str();
        Ok(TimelineEntry {
            id: row.id,
            incident_id: Uuid::parse_str(id).map_err(|e| StoreError::Corrupt {
                id: id.to_owned(),
                column: "incident_id",
                value: e.to_string(),
            })?,
            at: parse_time(id, "at", &row.at)?,
            actor: row.actor,
            action: row.action,
            revision: from_db_int(id, "timeline revision", row.revision)?,
            details: parse_json(id, "details", &row.details)?,
        })
    }
}

#[async_trait]
impl IncidentStore for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn migrate(&self) -> Result<()> {
        SQLITE_MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                backend: BACKEND,
                source,
            })
    }

    async fn record_change_with(
        &self,
        change: &IncidentChange,
        effects: &ChangeEffects,
    ) -> Result<()> {
        let i = &change.incident;
        let id = i.id.to_string();
        let sources = to_json("sources", &i.sources)?;
        let evidence = to_json("evidence", &i.evidence)?;
        let details = to_json("details", &effects.timeline_details(change))?;
        let first_seen = ts("first_seen", i.first_seen)?;
        let last_seen = ts("last_seen", i.last_seen)?;
        let detected_at = ts("detected_at", i.detected_at)?;
        let events = events_to_db(i.events)?;
        let revision = i64::from(i.revision);

        // The first statement writes, so this deferred transaction takes the
        // write lock at once and waits on busy_timeout rather than failing
        // on a read-to-write upgrade.
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_err("begin a transaction"))?;

        let written = match change.expected_revision() {
            None => sqlx::query(concat!(
                "INSERT INTO incidents (",
                incident_columns!(),
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
            ))
            .bind(&id)
            .bind(&i.fingerprint)
            .bind(i.kind.as_str())
            .bind(&i.technique)
            .bind(&i.client)
            .bind(&sources)
            .bind(&first_seen)
            .bind(&last_seen)
            .bind(&detected_at)
            .bind(i.severity.as_str())
            .bind(i.status.as_str())
            .bind(&i.summary)
            .bind(&evidence)
            .bind(events)
            .bind(revision)
            .bind(&i.assignee)
            .execute(&mut *tx)
            .await
            .map_err(query_err("insert an incident"))?,
            Some(expected) => sqlx::query(
                "UPDATE incidents SET technique = ?2, sources = ?3, first_seen = ?4, \
                 last_seen = ?5, detected_at = ?6, severity = ?7, status = ?8, summary = ?9, \
                 evidence = ?10, events = ?11, revision = ?12, assignee = ?14, \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                 WHERE id = ?1 AND revision = ?13",
            )
            .bind(&id)
            .bind(&i.technique)
            .bind(&sources)
            .bind(&first_seen)
            .bind(&last_seen)
            .bind(&detected_at)
            .bind(i.severity.as_str())
            .bind(i.status.as_str())
            .bind(&i.summary)
            .bind(&evidence)
            .bind(events)
            .bind(revision)
            .bind(i64::from(expected))
            .bind(&i.assignee)
            .execute(&mut *tx)
            .await
            .map_err(query_err("update an incident"))?,
        };
        if written.rows_affected() != 1 {
            // Dropping the transaction rolls it back.
            return Err(StoreError::Conflict {
                id: i.id,
                fingerprint: i.fingerprint.clone(),
                revision: i.revision,
            });
        }

        sqlx::query(
            "INSERT INTO incident_timeline (incident_id, actor, action, revision, details) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(&change.actor)
        .bind(change.change.action())
        .bind(revision)
        .bind(&details)
        .execute(&mut *tx)
        .await
        .map_err(query_err("append to the timeline"))?;

        // The notifications of this change commit with it or not at all.
        crate::outbox::sqlite::enqueue(&mut tx, change, effects).await?;

        tx.commit()
            .await
            .map_err(query_err("commit an incident change"))
    }

    async fn get(&self, id: Uuid) -> Result<Option<Incident>> {
        sqlx::query_as::<_, IncidentRow>(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM incidents WHERE id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("get an incident"))?
        .map(Incident::try_from)
        .transpose()
    }

    async fn latest_for(&self, kind: IncidentKind, client: &str) -> Result<Option<Incident>> {
        sqlx::query_as::<_, IncidentRow>(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM incidents WHERE client = ? AND kind = ? \
              ORDER BY last_seen DESC, id DESC LIMIT 1"
        ))
        .bind(client)
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("find the latest incident"))?
        .map(Incident::try_from)
        .transpose()
    }

    async fn latest_overlapping(
        &self,
        kind: IncidentKind,
        client: &str,
        from: EventTime,
        to: EventTime,
    ) -> Result<Option<Incident>> {
        sqlx::query_as::<_, IncidentRow>(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM incidents WHERE client = ? AND kind = ? \
              AND last_seen >= ? AND first_seen <= ? \
              ORDER BY last_seen DESC, id DESC LIMIT 1"
        ))
        .bind(client)
        .bind(kind.as_str())
        .bind(bound(from))
        .bind(bound(to))
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("find an overlapping incident"))?
        .map(Incident::try_from)
        .transpose()
    }

    async fn list(&self, query: &IncidentQuery) -> Result<IncidentPage> {
        let limit = query.effective_limit() as usize;
        let Some(net) = query.cidr else {
            let mut incidents = self.list_rows(query, limit + 1).await?;
            let next = if incidents.len() > limit {
                incidents.truncate(limit);
                incidents.last().map(IncidentCursor::after)
            } else {
                None
            };
            return Ok(IncidentPage { incidents, next });
        };
        // SQLite has no address type: the network filter runs here, over
        // the rows the other filters select, a batch at a time.
        let mut incidents = Vec::new();
        let mut scan = query.clone();
        loop {
            let batch = self.list_rows(&scan, CIDR_SCAN_BATCH).await?;
            let exhausted = batch.len() < CIDR_SCAN_BATCH;
            scan.after = batch.last().map(IncidentCursor::after);
            for incident in batch {
                let inside = incident
                    .client
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| net.contains(&ip));
                if inside {
                    if incidents.len() == limit {
                        let next = incidents.last().map(IncidentCursor::after);
                        return Ok(IncidentPage { incidents, next });
                    }
                    incidents.push(incident);
                }
            }
            if exhausted {
                return Ok(IncidentPage {
                    incidents,
                    next: None,
                });
            }
        }
    }

    async fn timeline(&self, id: Uuid) -> Result<Vec<TimelineEntry>> {
        sqlx::query_as::<_, TimelineRow>(
            "SELECT id, incident_id, at, actor, action, revision, details \
             FROM incident_timeline WHERE incident_id = ? ORDER BY id",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read a timeline"))?
        .into_iter()
        .map(TimelineEntry::try_from)
        .collect()
    }

    async fn count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM incidents")
            .fetch_one(&self.pool)
            .await
            .map_err(query_err("count incidents"))?;
        from_db_int("*", "count", n)
    }

    fn db(&self) -> Db {
        Db::Sqlite(self.pool.clone())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
