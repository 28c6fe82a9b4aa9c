//! The outbox on PostgreSQL: `FOR UPDATE SKIP LOCKED` claims, the channel
//! bucket locked with `FOR UPDATE` for the length of the transaction.

use super::{
    digest_delivery_id, ClaimedDelivery, ClientCount, DeliveryStatus, DigestSummary, NotifyEvent,
    OutboxEntry, OutboxQuery, Outcome, RateLimit, DIGEST_INCIDENTS, DIGEST_TOP_CLIENTS,
};
use crate::change::IncidentChange;
use crate::outbox::{delivery_id, ChangeEffects};
use crate::store::{Result, StoreError};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

const BACKEND: &str = "postgres";

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

/// Inserts the outbox rows of `change` on the change's transaction.
pub(crate) async fn enqueue(
    conn: &mut PgConnection,
    change: &IncidentChange,
    effects: &ChangeEffects,
) -> Result<()> {
    if effects.deliveries.is_empty() {
        return Ok(());
    }
    let now = effects.now.unwrap_or_else(Utc::now);
    let i = &change.incident;
    // Channel order: transactions lock channel buckets in the same order, so
    // they cannot deadlock.
    let mut deliveries: Vec<_> = effects.deliveries.iter().collect();
    deliveries.sort_by(|a, b| a.channel.cmp(&b.channel));
    for d in deliveries {
        let first: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM notification_outbox \
             WHERE channel = $1 AND incident_id = $2)",
        )
        .bind(&d.channel)
        .bind(i.id)
        .fetch_one(&mut *conn)
        .await
        .map_err(query_err("check an incident's earlier notifications"))?;
        let status = match d.rate_limit {
            Some(rate) => admit(conn, &d.channel, rate, now).await?,
            None => DeliveryStatus::Pending,
        };
        sqlx::query(
            "INSERT INTO notification_outbox (delivery_id, channel, event, incident_id, \
             revision, kind, severity, client, thread_first, payload, status, max_attempts, \
             next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) \
             ON CONFLICT (delivery_id) DO NOTHING",
        )
        .bind(delivery_id(&d.channel, i.id, i.revision))
        .bind(&d.channel)
        .bind(d.event.as_str())
        .bind(i.id)
        .bind(i32::try_from(i.revision).unwrap_or(i32::MAX))
        .bind(i.kind.as_str())
        .bind(i.severity.as_str())
        .bind(&i.client)
        .bind(first)
        .bind(Json(&d.payload))
        .bind(status.as_str())
        .bind(i32::try_from(d.max_attempts.max(1)).unwrap_or(i32::MAX))
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(query_err("enqueue a notification"))?;
    }
    Ok(())
}

/// Locks the channel's bucket (creating it full), refills it, and takes a
/// token when one is there and nothing is held; otherwise the notification
/// is held.
async fn admit(
    conn: &mut PgConnection,
    channel: &str,
    rate: RateLimit,
    now: DateTime<Utc>,
) -> Result<DeliveryStatus> {
    let (tokens, refilled_at) = lock_bucket(conn, channel, rate, now).await?;
    let held: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM notification_outbox WHERE channel = $1 AND status = 'held')",
    )
    .bind(channel)
    .fetch_one(&mut *conn)
    .await
    .map_err(query_err("check for held notifications"))?;
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

async fn lock_bucket(
    conn: &mut PgConnection,
    channel: &str,
    rate: RateLimit,
    now: DateTime<Utc>,
) -> Result<(i64, DateTime<Utc>)> {
    sqlx::query(
        "INSERT INTO notification_channel_state (channel, tokens_milli, refilled_at) \
         VALUES ($1, $2, $3) ON CONFLICT (channel) DO NOTHING",
    )
    .bind(channel)
    .bind(rate.capacity_milli())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(query_err("create a channel's rate limit"))?;
    sqlx::query_as(
        "SELECT tokens_milli, refilled_at FROM notification_channel_state \
         WHERE channel = $1 FOR UPDATE",
    )
    .bind(channel)
    .fetch_one(&mut *conn)
    .await
    .map_err(query_err("lock a channel's rate limit"))
}

async fn store_bucket(
    conn: &mut PgConnection,
    channel: &str,
    tokens: i64,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE notification_channel_state SET tokens_milli = $2, refilled_at = $3 \
         WHERE channel = $1",
    )
    .bind(channel)
    .bind(tokens)
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(query_err("update a channel's rate limit"))?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: i64,
    delivery_id: Uuid,
    channel: String,
    event: String,
    incident_id: Option<Uuid>,
    revision: Option<i32>,
    thread_first: bool,
    payload: Json<serde_json::Value>,
    attempts: i32,
    max_attempts: i32,
}

pub(crate) async fn claim(
    pool: &PgPool,
    worker: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<ClaimedDelivery>> {
    let token = Uuid::new_v4();
    let rows: Vec<ClaimRow> = sqlx::query_as(
        "UPDATE notification_outbox o SET attempts = o.attempts + 1, next_attempt_at = $2, \
         claim_token = $3, claimed_by = $4 \
         WHERE o.id IN (SELECT id FROM notification_outbox \
             WHERE status = 'pending' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id LIMIT $5 FOR UPDATE SKIP LOCKED) \
         RETURNING o.id, o.delivery_id, o.channel, o.event, o.incident_id, o.revision, \
             o.thread_first, o.payload, o.attempts, o.max_attempts",
    )
    .bind(now)
    .bind(until)
    .bind(token)
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
                delivery_id: r.delivery_id,
                channel: r.channel,
                event: NotifyEvent::parse(&r.event)
                    .ok_or_else(|| corrupt(r.id, "event", &r.event))?,
                incident_id: r.incident_id,
                revision: r.revision.and_then(|v| u32::try_from(v).ok()),
                thread_first: r.thread_first,
                payload: r.payload.0,
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
    pool: &PgPool,
    d: &ClaimedDelivery,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> Result<bool> {
    let q = match outcome {
        Outcome::Delivered => sqlx::query(
            "UPDATE notification_outbox SET status = 'delivered', finished_at = $3, \
             last_error = NULL, claim_token = NULL \
             WHERE id = $1 AND claim_token = $2 AND status = 'pending'",
        )
        .bind(d.id)
        .bind(d.claim)
        .bind(now),
        Outcome::Retry { at, error } => sqlx::query(
            "UPDATE notification_outbox SET next_attempt_at = $3, last_error = $4, \
             claim_token = NULL WHERE id = $1 AND claim_token = $2 AND status = 'pending'",
        )
        .bind(d.id)
        .bind(d.claim)
        .bind(*at)
        .bind(error),
        Outcome::Release { at, reason } => sqlx::query(
            "UPDATE notification_outbox SET next_attempt_at = $3, last_error = $4, \
             attempts = GREATEST(attempts - 1, 0), claim_token = NULL \
             WHERE id = $1 AND claim_token = $2 AND status = 'pending'",
        )
        .bind(d.id)
        .bind(d.claim)
        .bind(*at)
        .bind(reason),
        Outcome::Dead { error } => sqlx::query(
            "UPDATE notification_outbox SET status = 'dead', finished_at = $3, \
             last_error = $4, claim_token = NULL \
             WHERE id = $1 AND claim_token = $2 AND status = 'pending'",
        )
        .bind(d.id)
        .bind(d.claim)
        .bind(now)
        .bind(error),
    };
    let done = q
        .execute(pool)
        .await
        .map_err(query_err("record a delivery attempt"))?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn has_held(pool: &PgPool, channel: &str) -> Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM notification_outbox WHERE channel = $1 AND status = 'held')",
    )
    .bind(channel)
    .fetch_one(pool)
    .await
    .map_err(query_err("check for held notifications"))
}

/// What is held on a channel.
#[derive(sqlx::FromRow)]
struct HeldRows {
    first: Option<i64>,
    last: Option<i64>,
    held: i64,
    clients: i64,
    first_at: Option<DateTime<Utc>>,
    last_at: Option<DateTime<Utc>>,
}

pub(crate) async fn flush_digest(
    pool: &PgPool,
    channel: &str,
    rate: RateLimit,
    max_attempts: u32,
    now: DateTime<Utc>,
) -> Result<Option<DigestSummary>> {
    let mut tx = pool
        .begin()
        .await
        .map_err(query_err("begin a transaction"))?;
    let (tokens, refilled_at) = lock_bucket(&mut tx, channel, rate, now).await?;
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
         FROM notification_outbox WHERE channel = $1 AND status = 'held'",
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
         WHERE channel = $1 AND status = 'held' AND id <= $2 GROUP BY 1 ORDER BY 1",
        "SELECT coalesce(severity, ''), count(*) FROM notification_outbox \
         WHERE channel = $1 AND status = 'held' AND id <= $2 GROUP BY 1 ORDER BY 1",
        "SELECT event, count(*) FROM notification_outbox \
         WHERE channel = $1 AND status = 'held' AND id <= $2 GROUP BY 1 ORDER BY 1",
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
         WHERE channel = $1 AND status = 'held' AND id <= $2 \
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $3",
    )
    .bind(channel)
    .bind(last)
    .bind(DIGEST_TOP_CLIENTS)
    .fetch_all(&mut *tx)
    .await
    .map_err(query_err("summarise held notifications"))?;
    let incidents: Vec<Uuid> = sqlx::query_scalar(
        "SELECT incident_id FROM notification_outbox \
         WHERE channel = $1 AND status = 'held' AND id <= $2 AND incident_id IS NOT NULL \
         ORDER BY id LIMIT $3",
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
        first_at,
        last_at,
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
        incidents,
    };
    let payload = serde_json::to_value(&summary).map_err(|source| StoreError::Json {
        field: "digest",
        source,
    })?;
    let digest_id: i64 = sqlx::query_scalar(
        "INSERT INTO notification_outbox (delivery_id, channel, event, thread_first, payload, \
         status, max_attempts, next_attempt_at, created_at) \
         VALUES ($1, $2, 'digest', false, $3, 'pending', $4, $5, $5) RETURNING id",
    )
    .bind(digest_delivery_id(channel, first, last))
    .bind(channel)
    .bind(Json(&payload))
    .bind(i32::try_from(max_attempts.max(1)).unwrap_or(i32::MAX))
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(query_err("enqueue a digest"))?;
    sqlx::query(
        "UPDATE notification_outbox SET status = 'digested', digest_id = $3, finished_at = $4 \
         WHERE channel = $1 AND status = 'held' AND id <= $2",
    )
    .bind(channel)
    .bind(last)
    .bind(digest_id)
    .bind(now)
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
    delivery_id: Uuid,
    channel: String,
    event: String,
    incident_id: Option<Uuid>,
    revision: Option<i32>,
    status: String,
    attempts: i32,
    max_attempts: i32,
    next_attempt_at: DateTime<Utc>,
    last_error: Option<String>,
    digest_id: Option<i64>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    payload: Json<serde_json::Value>,
}

pub(crate) async fn list(pool: &PgPool, query: &OutboxQuery) -> Result<Vec<OutboxEntry>> {
    let mut qb = QueryBuilder::<Postgres>::new(
        "SELECT id, delivery_id, channel, event, incident_id, revision, status, attempts, \
         max_attempts, next_attempt_at, last_error, digest_id, created_at, finished_at, payload \
         FROM notification_outbox WHERE TRUE",
    );
    if let Some(status) = query.status {
        qb.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(channel) = &query.channel {
        qb.push(" AND channel = ").push_bind(channel.clone());
    }
    if let Some(id) = query.incident_id {
        qb.push(" AND incident_id = ").push_bind(id);
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
                delivery_id: r.delivery_id,
                channel: r.channel,
                event: NotifyEvent::parse(&r.event)
                    .ok_or_else(|| corrupt(r.id, "event", &r.event))?,
                incident_id: r.incident_id,
                revision: r.revision.and_then(|v| u32::try_from(v).ok()),
                status: DeliveryStatus::parse(&r.status)
                    .ok_or_else(|| corrupt(r.id, "status", &r.status))?,
                attempts: u32::try_from(r.attempts).unwrap_or(0),
                max_attempts: u32::try_from(r.max_attempts).unwrap_or(1),
                next_attempt_at: r.next_attempt_at,
                last_error: r.last_error,
                digest_id: r.digest_id,
                created_at: r.created_at,
                finished_at: r.finished_at,
                payload: r.payload.0,
            })
        })
        .collect()
}

pub(crate) async fn requeue(pool: &PgPool, delivery_id: Uuid, now: DateTime<Utc>) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE notification_outbox SET status = 'pending', attempts = 0, next_attempt_at = $2, \
         finished_at = NULL, claim_token = NULL WHERE delivery_id = $1 AND status = 'dead'",
    )
    .bind(delivery_id)
    .bind(now)
    .execute(pool)
    .await
    .map_err(query_err("requeue a dead letter"))?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn counts(pool: &PgPool) -> Result<Vec<(String, i64)>> {
    sqlx::query_as("SELECT status, count(*) FROM notification_outbox GROUP BY status")
        .fetch_all(pool)
        .await
        .map_err(query_err("count notifications"))
}
