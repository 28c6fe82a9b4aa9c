//! The audit log: administrative changes that are not incident changes
//! (those are on the incident's timeline) — tokens created and revoked,
//! suppression rules created and deleted, dead letters requeued — with who
//! made them. Without it, such a change would be in a process log only,
//! gone with the next rotation.

use super::tokens::{parse_sqlite_time, query_err, sqlite_time};
use super::{Db, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// An API token was created (target: its name).
    TokenCreated,
    /// An API token was revoked (target: its name).
    TokenRevoked,
    /// A suppression rule was created (target: its id).
    SuppressionCreated,
    /// A suppression rule was deleted (target: its id).
    SuppressionDeleted,
    /// A dead letter was queued again (target: its delivery id).
    DeadLetterRequeued,
}

impl AuditAction {
    /// The snake_case name kept in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::TokenCreated => "token_created",
            AuditAction::TokenRevoked => "token_revoked",
            AuditAction::SuppressionCreated => "suppression_created",
            AuditAction::SuppressionDeleted => "suppression_deleted",
            AuditAction::DeadLetterRequeued => "dead_letter_requeued",
        }
    }
}

/// One recorded change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Increasing with insertion order.
    pub id: i64,
    /// When (wall clock).
    pub at: DateTime<Utc>,
    /// Who: `token:<name>`, or `cli` for the command line.
    pub actor: String,
    /// What (an [`AuditAction`] name).
    pub action: String,
    /// To which object: a token name, a rule or delivery id.
    pub target: String,
}

/// Records that `actor` did `action` to `target`.
pub async fn record(db: &Db, actor: &str, action: AuditAction, target: &str) -> Result<()> {
    // Milliseconds, as both dialects keep them exactly.
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let sql = "INSERT INTO audit_log (at, actor, action, target) VALUES ($1, $2, $3, $4)";
    match db {
        Db::Postgres(pool) => sqlx::query(sql)
            .bind(now)
            .bind(actor)
            .bind(action.as_str())
            .bind(target)
            .execute(pool)
            .await
            .map(drop),
        Db::Sqlite(pool) => sqlx::query(sql)
            .bind(sqlite_time(now))
            .bind(actor)
            .bind(action.as_str())
            .bind(target)
            .execute(pool)
            .await
            .map(drop),
    }
    .map_err(query_err(db, "record an audit entry"))?;
    Ok(())
}

/// The latest `limit` entries, newest first.
pub async fn recent(db: &Db, limit: u32) -> Result<Vec<AuditEntry>> {
    let sql = "SELECT id, at, actor, action, target FROM audit_log ORDER BY id DESC LIMIT $1";
    match db {
        Db::Postgres(pool) => {
            let rows: Vec<(i64, DateTime<Utc>, String, String, String)> = sqlx::query_as(sql)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(query_err(db, "read the audit log"))?;
            Ok(rows
                .into_iter()
                .map(|(id, at, actor, action, target)| AuditEntry {
                    id,
                    at,
                    actor,
                    action,
                    target,
                })
                .collect())
        }
        Db::Sqlite(pool) => {
            let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(sql)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(query_err(db, "read the audit log"))?;
            rows.into_iter()
                .map(|(id, at, actor, action, target)| {
                    Ok(AuditEntry {
                        id,
                        at: parse_sqlite_time(&id.to_string(), "audit at", &at)?,
                        actor,
                        action,
                        target,
                    })
                })
                .collect()
        }
    }
}
