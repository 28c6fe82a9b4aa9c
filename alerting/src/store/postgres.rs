//! The PostgreSQL incident store: production, shared by every instance.
//!
//! Times are `timestamptz`, JSON is `jsonb`, ids are `uuid`. Concurrent
//! writers are kept apart by compare-and-set on `revision` (and the unique
//! fingerprint for creations), which is correct under the default READ
//! COMMITTED isolation: a second writer's `UPDATE … WHERE revision = $n`
//! waits for the first to commit, then re-checks and matches nothing.

use super::{
    check_time, clamp_time, contains_pattern, events_to_db, from_db_int, Db, IncidentCursor,
    IncidentPage, IncidentQuery, IncidentStore, ListOrder, Result, StoreError, TextColumns,
    TimelineEntry, POSTGRES_MIGRATOR,
};
use crate::change::IncidentChange;
use crate::incident::Incident;
use crate::outbox::ChangeEffects;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gatewatch_detector::{EventTime, IncidentKind};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

const BACKEND: &str = "postgres";

/// The columns of `incidents` that make an [`Incident`], in [`IncidentRow`]'s
/// order.
macro_rules! incident_columns {
    () => {
        "id, fingerprint, kind, technique, client, sources, first_seen, last_seen, \
         detected_at, severity, status, summary, evidence, events, revision, assignee"
    };
}

/// An incident backed by PostgreSQL. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://` or `postgresql://`). Does not migrate.
    pub async fn connect(url: &str) -> Result<Self> {
        let connect_err = |source| StoreError::Connect {
            backend: BACKEND,
            source,
        };
        let options = PgConnectOptions::from_str(url).map_err(connect_err)?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        Ok(PgStore { pool })
    }

    /// Wraps an existing pool (the binary may share one with other tables).
    pub fn from_pool(pool: PgPool) -> Self {
        PgStore { pool }
    }

    /// The pool, for health checks and for modules of this crate that write
    /// their own tables.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn query_err(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query {
        backend: BACKEND,
        operation,
        source,
    }
}

fn ts(field: &'static str, t: EventTime) -> Result<DateTime<Utc>> {
    Ok(check_time(field, t)?.to_datetime())
}

/// A row of `incidents` as PostgreSQL returns it.
#[derive(sqlx::FromRow)]
struct IncidentRow {
    id: Uuid,
    fingerprint: String,
    kind: String,
    technique: String,
    client: String,
    sources: Json<Vec<String>>,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    detected_at: DateTime<Utc>,
    severity: String,
    status: String,
    summary: String,
    evidence: Json<serde_json::Value>,
    events: i64,
    revision: i32,
    assignee: Option<String>,
}

impl TryFrom<IncidentRow> for Incident {
    type Error = StoreError;

    fn try_from(row: IncidentRow) -> Result<Incident> {
        let id = row.id.to_string();
        let (kind, severity, status) = TextColumns {
            id: &id,
            kind: &row.kind,
            severity: &row.severity,
            status: &row.status,
        }
        .parse()?;
        Ok(Incident {
            id: row.id,
            fingerprint: row.fingerprint,
            kind,
            technique: row.technique,
            client: row.client,
            sources: row.sources.0,
            first_seen: EventTime::from_datetime(row.first_seen),
            last_seen: EventTime::from_datetime(row.last_seen),
            detected_at: EventTime::from_datetime(row.detected_at),
            severity,
            status,
            summary: row.summary,
            evidence: row.evidence.0,
            events: from_db_int(&id, "events", row.events)?,
            revision: from_db_int(&id, "revision", i64::from(row.revision))?,
            assignee: row.assignee,
        })
    }
}

/// A row of `incident_timeline`.
#[derive(sqlx::FromRow)]
struct TimelineRow {
    id: i64,
    incident_id: Uuid,
    at: DateTime<Utc>,
    actor: String,
    action: String,
    revision: i32,
    details: Json<serde_json::Value>,
}

fn revision_to_db(revision: u32) -> Result<i32> {
    i32::try_from(revision).map_err(|_| StoreError::OutOfRange {
        field: "revision",
        value: revision.to_string(),
    })
}

#[async_trait]
impl IncidentStore for PgStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn migrate(&self) -> Result<()> {
        POSTGRES_MIGRATOR
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
        let conflict = || StoreError::Conflict {
            id: i.id,
            fingerprint: i.fingerprint.clone(),
            revision: i.revision,
        };
        let sources = Json(&i.sources);
        let evidence = Json(&i.evidence);
        let first_seen = ts("first_seen", i.first_seen)?;
        let last_seen = ts("last_seen", i.last_seen)?;
        let detected_at = ts("detected_at", i.detected_at)?;
        let events = events_to_db(i.events)?;
        let revision = revision_to_db(i.revision)?;

        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(query_err("begin a transaction"))?;

        let written = match change.expected_revision() {
            None => sqlx::query(concat!(
                "INSERT INTO incidents (",
                incident_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
                 ON CONFLICT DO NOTHING"
            ))
            .bind(i.id)
            .bind(&i.fingerprint)
            .bind(i.kind.as_str())
            .bind(&i.technique)
            .bind(&i.client)
            .bind(sources)
            .bind(first_seen)
            .bind(last_seen)
            .bind(detected_at)
            .bind(i.severity.as_str())
            .bind(i.status.as_str())
            .bind(&i.summary)
            .bind(evidence)
            .bind(events)
            .bind(revision)
            .bind(&i.assignee)
            .execute(&mut *tx)
            .await
            .map_err(query_err("insert an incident"))?,
            Some(expected) => sqlx::query(
                "UPDATE incidents SET technique = $2, sources = $3, first_seen = $4, \
                 last_seen = $5, detected_at = $6, severity = $7, status = $8, summary = $9, \
                 evidence = $10, events = $11, revision = $12, assignee = $14, \
                 updated_at = now() WHERE id = $1 AND revision = $13",
            )
            .bind(i.id)
            .bind(&i.technique)
            .bind(sources)
            .bind(first_seen)
            .bind(last_seen)
            .bind(detected_at)
            .bind(i.severity.as_str())
            .bind(i.status.as_str())
            .bind(&i.summary)
            .bind(evidence)
            .bind(events)
            .bind(revision)
            // u32::MAX (no valid predecessor) becomes -1, which matches no row.
            .bind(i32::try_from(expected).unwrap_or(-1))
            .bind(&i.assignee)
            .execute(&mut *tx)
            .await
            .map_err(query_err("update an incident"))?,
        };
        if written.rows_affected() != 1 {
            // Dropping the transaction rolls it back.
            return Err(conflict());
        }

        sqlx::query(
            "INSERT INTO incident_timeline (incident_id, actor, action, revision, details) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(i.id)
        .bind(&change.actor)
        .bind(change.change.action())
        .bind(revision)
        .bind(Json(effects.timeline_details(change)))
        .execute(&mut *tx)
        .await
        .map_err(query_err("append to the timeline"))?;

        // The notifications of this change commit with it or not at all.
        crate::outbox::pg::enqueue(&mut tx, change, effects).await?;

        tx.commit()
            .await
            .map_err(query_err("commit an incident change"))
    }

    async fn get(&self, id: Uuid) -> Result<Option<Incident>> {
        sqlx::query_as::<_, IncidentRow>(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM incidents WHERE id = $1"
        ))
        .bind(id)
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
            " FROM incidents WHERE client = $1 AND kind = $2 \
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
            " FROM incidents WHERE client = $1 AND kind = $2 \
              AND last_seen >= $3 AND first_seen <= $4 \
              ORDER BY last_seen DESC, id DESC LIMIT 1"
        ))
        .bind(client)
        .bind(kind.as_str())
        .bind(clamp_time(from).to_datetime())
        .bind(clamp_time(to).to_datetime())
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("find an overlapping incident"))?
        .map(Incident::try_from)
        .transpose()
    }

    async fn list(&self, query: &IncidentQuery) -> Result<IncidentPage> {
        let limit = query.effective_limit();
        let mut qb = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            incident_columns!(),
            " FROM incidents WHERE TRUE"
        ));
        if let Some(status) = query.status {
            qb.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(kind) = query.kind {
            qb.push(" AND kind = ").push_bind(kind.as_str());
        }
        if let Some(severities) = query.severities() {
            let names: Vec<&str> = severities.iter().map(|s| s.as_str()).collect();
            qb.push(" AND severity = ANY(").push_bind(names).push(")");
        }
        if let Some(client) = &query.client {
            qb.push(" AND client = ").push_bind(client.clone());
        }
        if let Some(net) = query.cidr {
            // gatewatch_try_inet (migration 20261125000400) is NULL for
            // clients that are not addresses, so they never match.
            qb.push(" AND gatewatch_try_inet(client) <<= ")
                .push_bind(net.trunc().to_string())
                .push("::inet");
        }
        if let Some(text) = &query.text {
            qb.push(" AND summary ILIKE ")
                .push_bind(contains_pattern(text))
                .push(" ESCAPE '\\'");
        }
        if let Some(since) = query.since {
            qb.push(" AND last_seen >= ")
                .push_bind(clamp_time(since).to_datetime());
        }
        if let Some(until) = query.until {
            qb.push(" AND first_seen < ")
                .push_bind(clamp_time(until).to_datetime());
        }
        let (cmp, dir) = match query.order {
            ListOrder::NewestFirst => ("<", "DESC"),
            ListOrder::OldestFirst => (">", "ASC"),
        };
        if let Some(after) = query.after {
            qb.push(format_args!(" AND (last_seen, id) {cmp} ("))
                .push_bind(clamp_time(after.last_seen).to_datetime())
                .push(", ")
                .push_bind(after.id)
                .push(")");
        }
        qb.push(format_args!(" ORDER BY last_seen {dir}, id {dir} LIMIT "))
            .push_bind(i64::from(limit) + 1);

        let rows = qb
            .build_query_as::<IncidentRow>()
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("list incidents"))?;
        let mut incidents = rows
            .into_iter()
            .map(Incident::try_from)
            .collect::<Result<Vec<_>>>()?;
        let next = if incidents.len() > limit as usize {
            incidents.truncate(limit as usize);
            incidents.last().map(IncidentCursor::after)
        } else {
            None
        };
        Ok(IncidentPage { incidents, next })
    }

    async fn timeline(&self, id: Uuid) -> Result<Vec<TimelineEntry>> {
        let rows = sqlx::query_as::<_, TimelineRow>(
            "SELECT id, incident_id, at, actor, action, revision, details \
             FROM incident_timeline WHERE incident_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read a timeline"))?;
        rows.into_iter()
            .map(|row| {
                Ok(TimelineEntry {
                    id: row.id,
                    incident_id: row.incident_id,
                    at: row.at,
                    actor: row.actor,
                    action: row.action,
                    revision: from_db_int(
                        &row.incident_id.to_string(),
                        "timeline revision",
                        i64::from(row.revision),
                    )?,
                    details: row.details.0,
                })
            })
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
        Db::Postgres(self.pool.clone())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
