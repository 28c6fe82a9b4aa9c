//! Analysts' comments on incidents.
//!
//! A comment is a note, not a change: it does not bump the incident's
//! revision or notify anyone, so it lives in its own table rather than in
//! `incident_timeline`. The API shows both together, in time order.

use super::tokens::{parse_sqlite_time, query_err, sqlite_time};
use super::{Db, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// One comment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Comment {
    /// Increasing with insertion order.
    pub id: i64,
    /// The incident it is about.
    pub incident_id: Uuid,
    /// When it was written (wall clock).
    pub at: DateTime<Utc>,
    /// Who wrote it (`token:<name>`).
    pub actor: String,
    /// The text, as written (shown as text, never as HTML).
    pub body: String,
}

/// Adds a comment to incident `incident_id`, which must exist (the foreign
/// key refuses it otherwise: check first for a friendly error).
pub async fn add_comment(db: &Db, incident_id: Uuid, actor: &str, body: &str) -> Result<Comment> {
    // Milliseconds, as both dialects keep them exactly.
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let id: i64 = match db {
        Db::Postgres(pool) => {
            sqlx::query_scalar(
                "INSERT INTO incident_comments (incident_id, at, actor, body) \
             VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(incident_id)
            .bind(now)
            .bind(actor)
            .bind(body)
            .fetch_one(pool)
            .await
        }
        Db::Sqlite(pool) => {
            sqlx::query_scalar(
                "INSERT INTO incident_comments (incident_id, at, actor, body) \
             VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(incident_id.to_string())
            .bind(sqlite_time(now))
            .bind(actor)
            .bind(body)
            .fetch_one(pool)
            .await
        }
    }
    .map_err(query_err(db, "add a comment"))?;
    Ok(Comment {
        id,
        incident_id,
        at: now,
        actor: actor.to_owned(),
        body: body.to_owned(),
    })
}

/// An incident's comments, oldest first.
pub async fn comments(db: &Db, incident_id: Uuid) -> Result<Vec<Comment>> {
    let sql = "SELECT id, at, actor, body FROM incident_comments \
               WHERE incident_id = $1 ORDER BY id";
    match db {
        Db::Postgres(pool) => {
            let rows: Vec<(i64, DateTime<Utc>, String, String)> = sqlx::query_as(sql)
                .bind(incident_id)
                .fetch_all(pool)
                .await
                .map_err(query_err(db, "read comments"))?;
            Ok(rows
                .into_iter()
                .map(|(id, at, actor, body)| Comment {
                    id,
                    incident_id,
                    at,
                    actor,
                    body,
                })
                .collect())
        }
        Db::Sqlite(pool) => {
            let rows: Vec<(i64, String, String, String)> = sqlx::query_as(sql)
                .bind(incident_id.to_string())
                .fetch_all(pool)
                .await
                .map_err(query_err(db, "read comments"))?;
            rows.into_iter()
                .map(|(id, at, actor, body)| {
                    Ok(Comment {
                        id,
                        incident_id,
                        at: parse_sqlite_time(&incident_id.to_string(), "comment at", &at)?,
                        actor,
                        body,
                    })
                })
                .collect()
        }
    }
}
