//! The outbox on SQLite: one writer at a time, so a claim is one atomic
//! `UPDATE … WHERE id IN (SELECT …) RETURNING` and a digest one
//! `BEGIN IMMEDIATE` transaction. Times are RFC 3339 UTC text with three
//! fractional digits (see `migrations/README.md`), so text order is time
//! order.

use super::{
    digest_delivery_id, ClaimedDelivery, ClientCount, DeliveryStatus, DigestSummary, NotifyEvent,
    OutboxEntry, OutboxQuery, Outcome, RateLimit, DIGEST_INCIDENTS, DIGEST_TOP_CLIENTS,
};
use crate::change::IncidentChange;
use crate::outbox::{delivery_id, ChangeEffects};
use crate::store::{Result, StoreError};
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{QueryBuilder, Sqlite};
use uuid::Uuid;

const BACKEND: &str = "sqlite";

fn query_err(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query {
        backend: BACKEND,
        operation,
        source,
    }
}

fn corrupt(id: i64, column: &'static str, value: impl ToString) -> StoreError {
    StoreError::Corrupt {
        id: format!("outbox:{id}"),
        column,
        value: value.to_string(),
    }
}

/// The storage text of a wall-clock time.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn parse_ts(id: i64, column: &'static str, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(id, column, format!("{text} ({e})")))
}

fn parse_uuid(id: i64, column: &'static str, text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| corrupt(id, column, format!("{text} ({e})")))
}

fn parse_json(id: i64, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| corrupt(id, "payload", e))
}

/// Inserts the outbox rows of `change` on the change's transaction (which
/// already holds SQLite's write lock: its first statement wrote).
pub(crate) async fn enqueue(
    conn: &mut SqliteConnection,
    change: &IncidentChange,
    effects: &ChangeEffects,
) -> Result<()> {
    if effects.deliveries.is_empty() {
        return Ok(());
    }
    let now = effects.now.unwrap_or_else(Utc::now);
    let i = &change.incident;
    let incident_id = i.id.to_string();
    for d in &effects.deliveries {
        let first: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM notification_outbox \
             WHERE channel = ? AND incident_id = ?)",
        )
        .bind(&d.channel)
        .bind(&incident_id)
        .fetch_one(&mut *conn)
        .await
        .map_err(query_err("check an incident's earlier notifications"))?;
        let status = match d.rate_limit {
            Some(rate) => admit(conn, &d.channel, rate, now).await?,
            None => DeliveryStatus::Pending,
        };
        let payload = serde_json::to_string(&d.payload).map_err(|source| StoreError::Json {
            field: "payload",
            source,
        })?;
        sqlx::query(
            "INSERT INTO notification_outbox (delivery_id, channel, event, incident_id, \
             revision, kind, severity, client, thread_first, payload, status, max_attempts, \
             next_attempt_at, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13) \
             ON CONFLICT (delivery_id) DO NOTHING",
        )
        .bind(delivery_id(&d.channel, i.id, i.revision).to_string())
        .bind(&d.channel)
        .bind(d.event.as_str())
        .bind(&incident_id)
        .bind(i64::from(i.revision))
        .bind(i.kind.as_str())
        .bind(i.severity.as_str())
        .bind(&i.client)
        .bind(first)
        .bind(payload)
        .bind(status.as_str())
        .bind(i64::from(d.max_attempts.max(1)))
        .bind(ts(now))
        .execute(&mut *conn)
        .await
        .map_err(query_err("enqueue a notification"))?;
    }
    Ok(())
}

async fn admit(
    conn: &mut SqliteConnection,
    channel: &str,
    rate: RateLimit,
    now: DateTime<Utc>,
) -> Result<DeliveryStatus> {
    let (tokens, refilled_at) = load_bucket(conn, channel, rate, now).await?;
    let held = has_held_on(conn, channel).await?;
    let (mut tokens, at) = rate.refill(tokens, refilled_at, now);
    let status = if !held && tokens >= 1000 {
        tokens -= 1000;
        DeliveryStatus::Pending
    } else {
        DeliveryStatus::Held
    };
    store_bucket(conn, channel, tokens, at).await?;
    Ok(status)
}

/// Reads the channel's bucket, creating it full. The caller's transaction
/// holds the write lock, so nobody else can change it meanwhile.
async fn load_bucket(
    conn: &mut SqliteConnection,
    channel: &str,
    rate: RateLimit,
    now: DateTime<Utc>,
) -> Result<(i64, DateTime<Utc>)> {
    sqlx::query(
        "INSERT INTO notification_channel_state (channel, tokens_milli, refilled_at) \
         VALUES (?, ?, ?) ON CONFLICT (channel) DO NOTHING",
    )
    .bind(channel)
    .bind(rate.capacity_milli())
    .bind(ts(now))
    .execute(&mut *conn)
    .await
    .map_err(query_err("create a channel's rate limit"))?;
    let (tokens, at): (i64, String) = sqlx::query_as(
        "SELECT tokens_milli, refilled_at FROM notification_channel_state WHERE channel = ?",
    )
    .bind(channel)
    .fetch_one(&mut *conn)
    .await
    .map_err(query_err("read a channel's rate limit"))?;
    Ok((tokens, parse_ts(0, "refilled_at", &at)?))
}

async fn store_bucket(
    conn: &mut SqliteConnection,
    channel: &str,
    tokens: i64,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE notification_channel_state SET tokens_milli = ?2, refilled_at = ?3 \
         WHERE channel = ?1",
    )
    .bind(channel)
    .bind(tokens)
    .bind(ts(at))
    .execute(&mut *conn)
    .await
    .map_err(query_err("update a channel's rate limit"))?;
    Ok(())
}

async fn has_held_on(conn: &mut SqliteConnection, channel: &str) -> Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM notification_outbox WHERE channel = ? AND status = 'held')",
    )
    .bind(channel)
    .fetch_one(&mut *conn)
    .await
    .map_err(query_err("check for held notifications"))
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: i64,
    delivery_id: String,
    channel: String,
    event: String,
    incident_id: Option<String>,
    revision: Option<i64>,
    thread_first: bool,
    payload: String,
    attempts: i64,
    max_attempts: i64,
}

pub(crate) async fn claim(
    pool: &SqlitePool,
    worker: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<ClaimedDelivery>> {
    let token = Uuid::new_v4();
    let rows: Vec<ClaimRow> = sqlx::query_as(
        "UPDATE notification_outbox SET attempts = attempts + 1, next_attempt_at = ?2, \
         claim_token = ?3, claimed_by = ?4 \
         WHERE id IN (SELECT id FROM notification_outbox \
             WHERE status = 'pending' AND next_attempt_at <= ?1 \
             ORDER BY next_attempt_at, id LIMIT ?5) \
         RETURNING id, delivery_id, channel, event, incident_id, revision, thread_first, \
             payload, attempts, max_attempts",
    )
    .bind(ts(now))
    .bind(ts(until))
    .bind(token.to_string())
    .bind(worker)
    .bind(i64::from(limit.max(1)))
    .fetch_all(pool)
    .await
    .map_err(query_err("claim notifications"))?;
    let mut out = rows
        .into_iter()
        .map(|r| {
            Ok(ClaimedDelivery {
                id: r.id,
                delivery_id: parse_uuid(r.id, "delivery_id", &r.delivery_id)?,
                channel: r.channel,
                event: NotifyEvent::parse(&r.event)
                    .ok_or_else(|| corrupt(r.id, "event", &r.event))?,
                incident_id: r
                    .incident_id
                    .as_deref()
                    .map(|s| parse_uuid(r.id, "incident_id", s))
                    .transpose()?,
                revision: r.revision.and_then(|v| u32::try_from(v).ok()),
                thread_first: r.thread_first,
                payload: parse_json(r.id, &r.payload)?,
                attempts: u32::try_from(r.attempts).unwrap_or(0),
                max_attempts: u32::try_from(r.max_attempts).unwrap_or(1),
                claim: token,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    out.sort_by_key(|d| d.id);
    Ok(out)
}

pub(crate) async fn finish(
    pool: &SqlitePool,
    d: &ClaimedDelivery,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> Result<bool> {
    let claim = d.claim.to_string();
    let q = match outcome {
        Outcome::Delivered => sqlx::query(
            "UPDATE notification_outbox SET status = 'delivered', finished_at = ?3, \
             last_error = NULL, claim_token = NULL \
             WHERE id = ?1 AND claim_token = ?2 AND status = 'pending'",
        )
        .bind(d.id)
        .bind(claim)
        .bind(ts(now)),
        Outcome::Retry { at, error } => sqlx::query(
            "UPDATE notification_outbox SET next_attempt_at = ?3, last_error = ?4, \
             claim_token = NULL WHERE id = ?1 AND claim_token = ?2 AND status = 'pending'",
        )
        .bind(d.id)
        .bind(claim)
        .bind(ts(*at))
        .bind(error.clone()),
        Outcome::Release { at, reason } => sqlx::query(
            "UPDATE notification_outbox SET next_attempt_at = ?3, last_error = ?4, \
             attempts = max(attempts - 1, 0), claim_token = NULL \
             WHERE id = ?1 AND claim_token = ?2 AND status = 'pending'",
        )
        .bind(d.id)
        .bind(claim)
        .bind(ts(*at))
        .bind(reason.clone()),
        Outcome::Dead { error } => sqlx::query(
            "UPDATE notification_outbox SET status = 'dead', finished_at = ?3, \
             last_error = ?4, claim_token = NULL \
             WHERE id = ?1 AND claim_token = ?2 AND status = 'pending'",
        )
        .bind(d.id)
        .bind(claim)
        .bind(ts(now))
        .bind(error.clone()),
    };
    let done = q
        .execute(pool)
        .await
        .map_err(query_err("record a delivery attempt"))?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn has_held(pool: &SqlitePool, channel: &str) -> Result<bool> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(query_err("check for held notifications"))?;
    has_held_on(&mut conn, channel).await
}

/// What is held on a channel.
#[derive(sqlx::FromRow)]
struct HeldRows {
    first: Option<i64>,
    last: Option<i64>,
    held: i64,
    clients: i64,
    first_at: Option<String>,
    last_at: Option<String>,
}

pub(crate) async fn flush_digest(
    pool: &SqlitePool,
    channel: &str,
    rate: RateLimit,
    max_attempts: u32,
    now: DateTime<Utc>,
) -> Result<Option<DigestSummary>> {
    // IMMEDIATE: take the write lock first, so the bucket read and the
    // writes that follow cannot interleave with an enqueue.
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(query_err("begin a transaction"))?;
    let (tokens, refilled_at) = load_bucket(&mut tx, channel, rate, now).await?;
    let (tokens, at) = rate.refill(tokens, refilled_at, now);
    let HeldRows {
        first,
        last,
        held,
        clients,
        first_at,
        last_at,
    } = sqlx::query_as(
        "SELECT min(id) AS first, max(id) AS last, count(*) AS held, \
         count(DISTINCT client) AS clients, min(created_at) AS first_at, \
         max(created_at) AS last_at \
         FROM notification_outbox WHERE channel = ? AND status = 'held'",
    )
    .bind(channel)
    .fetch_one(&mut *tx)
    .await
    .map_err(query_err("count held notifications"))?;
    let (Some(first), Some(last), Some(first_at), Some(last_at)) = (first, last, first_at, last_at)
    else {
        store_bucket(&mut tx, channel, tokens, at).await?;
        tx.commit().await.map_err(query_err("commit a digest"))?;
        return Ok(None);
    };
    if tokens < 1000 {
        store_bucket(&mut tx, channel, tokens, at).await?;
        tx.commit().await.map_err(query_err("commit a digest"))?;
        return Ok(None);
    }
    let mut by = Vec::new();
    for sql in [
        "SELECT coalesce(kind, ''), count(*) FROM notification_outbox \
         WHERE channel = ? AND status = 'held' AND id <= ? GROUP BY 1 ORDER BY 1",
        "SELECT coalesce(severity, ''), count(*) FROM notification_outbox \
         WHERE channel = ? AND status = 'held' AND id <= ? GROUP BY 1 ORDER BY 1",
        "SELECT event, count(*) FROM notification_outbox \
         WHERE channel = ? AND status = 'held' AND id <= ? GROUP BY 1 ORDER BY 1",
    ] {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql)
            .bind(channel)
            .bind(last)
            .fetch_all(&mut *tx)
            .await
            .map_err(query_err("summarise held notifications"))?;
        by.push(
            rows.into_iter()
                .map(|(k, n)| (k, u64::try_from(n).unwrap_or(0)))
                .collect(),
        );
    }
    let top: Vec<(String, i64)> = sqlx::query_as(
        "SELECT coalesce(client, ''), count(*) FROM notification_outbox \
         WHERE channel = ? AND status = 'held' AND id <= ? \
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
    )
    .bind(channel)
    .bind(last)
    .bind(DIGEST_TOP_CLIENTS)
    .fetch_all(&mut *tx)
    .await
    .map_err(query_err("summarise held notifications"))?;
    let incidents: Vec<String> = sqlx::query_scalar(
        "SELECT incident_id FROM notification_outbox \
         WHERE channel = ? AND status = 'held' AND id <= ? AND incident_id IS NOT NULL \
         ORDER BY id LIMIT ?",
    )
    .bind(channel)
    .bind(last)
    .bind(DIGEST_INCIDENTS)
    .fetch_all(&mut *tx)
    .await
    .map_err(query_err("summarise held notifications"))?;
    let by_event = by.pop().unwrap_or_default();
    let by_severity = by.pop().unwrap_or_default();
    let by_kind = by.pop().unwrap_or_default();
    let summary = DigestSummary {
        channel: channel.to_owned(),
        held: u64::try_from(held).unwrap_or(0),
        clients: u64::try_from(clients).unwrap_or(0),
        first_at: parse_ts(first, "created_at", &first_at)?,
        last_at: parse_ts(last, "created_at", &last_at)?,
        by_kind,
        by_severity,
        by_event,
        top_clients: top
            .into_iter()
            .map(|(client, n)| ClientCount {
                client,
                notifications: u64::try_from(n).unwrap_or(0),
            })
            .collect(),
        incidents: incidents
            .iter()
            .map(|s| parse_uuid(first, "incident_id", s))
            .collect::<Result<_>>()?,
    };
    let payload = serde_json::to_string(&summary).map_err(|source| StoreError::Json {
        field: "digest",
        source,
    })?;
    let digest_id: i64 = sqlx::query_scalar(
        "INSERT INTO notification_outbox (delivery_id, channel, event, thread_first, payload, \
         status, max_attempts, next_attempt_at, created_at) \
         VALUES (?1, ?2, 'digest', 0, ?3, 'pending', ?4, ?5, ?5) RETURNING id",
    )
    .bind(digest_delivery_id(channel, first, last).to_string())
    .bind(channel)
    .bind(payload)
    .bind(i64::from(max_attempts.max(1)))
    .bind(ts(now))
    .fetch_one(&mut *tx)
    .await
    .map_err(query_err("enqueue a digest"))?;
    sqlx::query(
        "UPDATE notification_outbox SET status = 'digested', digest_id = ?3, finished_at = ?4 \
         WHERE channel = ?1 AND status = 'held' AND id <= ?2",
    )
    .bind(channel)
    .bind(last)
    .bind(digest_id)
    .bind(ts(now))
    .execute(&mut *tx)
    .await
    .map_err(query_err("mark held notifications digested"))?;
    store_bucket(&mut tx, channel, tokens - 1000, at).await?;
    tx.commit().await.map_err(query_err("commit a digest"))?;
    Ok(Some(summary))
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    id: i64,
    delivery_id: String,
    channel: String,
    event: String,
    incident_id: Option<String>,
    revision: Option<i64>,
    status: String,
    attempts: i64,
    max_attempts: i64,
    next_attempt_at: String,
    last_error: Option<String>,
    digest_id: Option<i64>,
    created_at: String,
    finished_at: Option<String>,
    payload: String,
}

pub(crate) async fn list(pool: &SqlitePool, query: &OutboxQuery) -> Result<Vec<OutboxEntry>> {
    let mut qb = QueryBuilder::<Sqlite>::new(
        "SELECT id, delivery_id, channel, event, incident_id, revision, status, attempts, \
         max_attempts, next_attempt_at, last_error, digest_id, created_at, finished_at, payload \
         FROM notification_outbox WHERE 1",
    );
    if let Some(status) = query.status {
        qb.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(channel) = &query.channel {
        qb.push(" AND channel = ").push_bind(channel.clone());
    }
    if let Some(id) = query.incident_id {
        qb.push(" AND incident_id = ").push_bind(id.to_string());
    }
    qb.push(" ORDER BY id DESC LIMIT ")
        .push_bind(query.effective_limit());
    let rows: Vec<EntryRow> = qb
        .build_query_as()
        .fetch_all(pool)
        .await
        .map_err(query_err("list notifications"))?;
    rows.into_iter()
        .map(|r| {
            Ok(OutboxEntry {
                id: r.id,
                delivery_id: parse_uuid(r.id, "delivery_id", &r.delivery_id)?,
                channel: r.channel,
                event: NotifyEvent::parse(&r.event)
                    .ok_or_else(|| corrupt(r.id, "event", &r.event))?,
                incident_id: r
                    .incident_id
                    .as_deref()
                    .map(|s| parse_uuid(r.id, "incident_id", s))
                    .transpose()?,
                revision: r.revision.and_then(|v| u32::try_from(v).ok()),
                status: DeliveryStatus::parse(&r.status)
                    .ok_or_else(|| corrupt(r.id, "status", &r.status))?,
                attempts: u32::try_from(r.attempts).unwrap_or(0),
                max_attempts: u32::try_from(r.max_attempts).unwrap_or(1),
                next_attempt_at: parse_ts(r.id, "next_attempt_at", &r.next_attempt_at)?,
                last_error: r.last_error,
                digest_id: r.digest_id,
                created_at: parse_ts(r.id, "created_at", &r.created_at)?,
                finished_at: r
                    .finished_at
                    .as_deref()
                    .map(|s| parse_ts(r.id, "finished_at", s))
                    .transpose()?,
                payload: parse_json(r.id, &r.payload)?,
            })
        })
        .collect()
}

pub(crate) async fn requeue(
    pool: &SqlitePool,
    delivery_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE notification_outbox SET status = 'pending', attempts = 0, next_attempt_at = ?2, \
         finished_at = NULL, claim_token = NULL WHERE delivery_id = ?1 AND status = 'dead'",
    )
    .bind(delivery_id.to_string())
    .bind(ts(now))
    .execute(pool)
    .await
    .map_err(query_err("requeue a dead letter"))?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn counts(pool: &SqlitePool) -> Result<Vec<(String, i64)>> {
    sqlx::query_as("SELECT status, count(*) FROM notification_outbox GROUP BY status")
        .fetch_all(pool)
        .await
        .map_err(query_err("count notifications"))
}
