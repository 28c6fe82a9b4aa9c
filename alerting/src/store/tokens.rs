//! API tokens: who may read and act on incidents through the API.
//!
//! The store keeps only a token's SHA-256 (hex), its name and its role; the
//! binary makes the token (256 random bits), shows it once and hashes it, so
//! a copy of the database lets nobody in. Tokens are high-entropy, so a plain
//! SHA-256 is as strong as a slow password hash here and costs one
//! microsecond per request. Both dialects share this code through [`Db`].

use super::{Db, Result, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// What a token may do. Ordered: each role may do everything the ones below
/// it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    /// Reads incidents, clients, statistics.
    Viewer,
    /// A viewer who also works incidents: acknowledge, resolve, reopen,
    /// comment, assign, suppress.
    Analyst,
    /// An analyst who also manages tokens and configuration-level actions.
    Admin,
}

impl TokenRole {
    /// Every role, least privileged first.
    pub const ALL: [TokenRole; 3] = [TokenRole::Viewer, TokenRole::Analyst, TokenRole::Admin];

    /// The snake_case name used on the command line, in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Viewer => "viewer",
            TokenRole::Analyst => "analyst",
            TokenRole::Admin => "admin",
        }
    }

    /// The inverse of [`TokenRole::as_str`].
    pub fn parse(s: &str) -> Option<TokenRole> {
        TokenRole::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A stored token, without its secret (which is never stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    /// Stable id.
    pub id: Uuid,
    /// Unique human name (`alice`, `grafana`): what the timeline's actor
    /// `token:<name>` refers to.
    pub name: String,
    /// What it may do.
    pub role: TokenRole,
    /// The SHA-256 of the token, lowercase hex: how a request finds it.
    pub token_sha256: String,
    /// Who created it (`cli:<user>` or `token:<name>`).
    pub created_by: String,
    /// When it was created (wall clock).
    pub created_at: DateTime<Utc>,
    /// When it last authenticated a request (updated at most once a
    /// minute), if ever.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; a revoked token authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Why a token could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Names are unique: they are what the timeline shows.
    #[error("A token named {name:?} already exists")]
    NameTaken {
        /// The name asked for.
        name: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Maps a driver error of `db` to [`StoreError::Query`].
pub(crate) fn query_err(
    db: &Db,
    operation: &'static str,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    let backend = match db {
        Db::Postgres(_) => "postgres",
        Db::Sqlite(_) => "sqlite",
    };
    move |source| StoreError::Query {
        backend,
        operation,
        source,
    }
}

/// SQLite's text form of a wall-clock time (see `migrations/README.md`).
pub(crate) fn sqlite_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Parses SQLite's text form of a time back.
pub(crate) fn parse_sqlite_time(id: &str, column: &'static str, s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt {
            id: id.to_owned(),
            column,
            value: s.to_owned(),
        })
}

const COLUMNS: &str =
    "id, name, role, token_sha256, created_by, created_at, last_used_at, revoked_at";

#[derive(sqlx::FromRow)]
struct PgRow {
    id: Uuid,
    name: String,
    role: String,
    token_sha256: String,
    created_by: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct SqliteRow {
    id: String,
    name: String,
    role: String,
    token_sha256: String,
    created_by: String,
    created_at: String,
    last_used_at: Option<String>,
    revoked_at: Option<String>,
}

fn parse_role(id: &str, role: &str) -> Result<TokenRole> {
    TokenRole::parse(role).ok_or_else(|| StoreError::Corrupt {
        id: id.to_owned(),
        column: "role",
        value: role.to_owned(),
    })
}

impl TryFrom<PgRow> for ApiToken {
    type Error = StoreError;
    fn try_from(r: PgRow) -> Result<ApiToken> {
        Ok(ApiToken {
            role: parse_role(&r.id.to_string(), &r.role)?,
            id: r.id,
            name: r.name,
            token_sha256: r.token_sha256,
            created_by: r.created_by,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        })
    }
}

impl TryFrom<SqliteRow> for ApiToken {
    type Error = StoreError;
    fn try_from(r: SqliteRow) -> Result<ApiToken> {
        let id = &r.id;
        let opt = |column, v: &Option<String>| {
            v.as_deref()
                .map(|s| parse_sqlite_time(id, column, s))
                .transpose()
        };
        Ok(ApiToken {
            id: r.id.parse().map_err(|_| StoreError::Corrupt {
                id: r.id.clone(),
                column: "id",
                value: r.id.clone(),
            })?,
            role: parse_role(id, &r.role)?,
            created_at: parse_sqlite_time(id, "created_at", &r.created_at)?,
            last_used_at: opt("last_used_at", &r.last_used_at)?,
            revoked_at: opt("revoked_at", &r.revoked_at)?,
            name: r.name,
            token_sha256: r.token_sha256,
            created_by: r.created_by,
        })
    }
}

/// Stores a new token under `name`, given the SHA-256 (lowercase hex) of its
/// secret. Fails with [`TokenError::NameTaken`] when the name is in use
/// (also by a revoked token: names stay unique in the history).
pub async fn create_token(
    db: &Db,
    name: &str,
    role: TokenRole,
    token_sha256: &str,
    created_by: &str,
) -> Result<ApiToken, TokenError> {
    let id = Uuid::new_v4();
    // Milliseconds, as both dialects keep them exactly.
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let taken = |e: &sqlx::Error| {
        e.as_database_error()
            .and_then(|d| d.constraint())
            .is_some_and(|c| c == "api_tokens_name_key")
            || e.as_database_error()
                .is_some_and(|d| d.is_unique_violation() && d.message().contains("api_tokens.name"))
    };
    let sql = "INSERT INTO api_tokens (id, name, role, token_sha256, created_by, created_at) \
               VALUES ($1, $2, $3, $4, $5, $6)";
    let result = match db {
        Db::Postgres(pool) => sqlx::query(sql)
            .bind(id)
            .bind(name)
            .bind(role.as_str())
            .bind(token_sha256)
            .bind(created_by)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ()),
        Db::Sqlite(pool) => sqlx::query(sql)
            .bind(id.to_string())
            .bind(name)
            .bind(role.as_str())
            .bind(token_sha256)
            .bind(created_by)
            .bind(sqlite_time(now))
            .execute(pool)
            .await
            .map(|_| ()),
    };
    match result {
        Ok(()) => {}
        Err(e) if taken(&e) => {
            return Err(TokenError::NameTaken {
                name: name.to_owned(),
            })
        }
        Err(e) => return Err(query_err(db, "create an API token")(e).into()),
    }
    Ok(ApiToken {
        id,
        name: name.to_owned(),
        role,
        token_sha256: token_sha256.to_owned(),
        created_by: created_by.to_owned(),
        // As stored: SQLite keeps milliseconds.
        created_at: now,
        last_used_at: None,
        revoked_at: None,
    })
}

/// Every token, revoked ones included, oldest first.
pub async fn list_tokens(db: &Db) -> Result<Vec<ApiToken>> {
    let sql = format!("SELECT {COLUMNS} FROM api_tokens ORDER BY created_at, name");
    let sql = sqlx::AssertSqlSafe(sql);
    match db {
        Db::Postgres(pool) => sqlx::query_as::<_, PgRow>(sql)
            .fetch_all(pool)
            .await
            .map_err(query_err(db, "list API tokens"))?
            .into_iter()
            .map(ApiToken::try_from)
            .collect(),
        Db::Sqlite(pool) => sqlx::query_as::<_, SqliteRow>(sql)
            .fetch_all(pool)
            .await
            .map_err(query_err(db, "list API tokens"))?
            .into_iter()
            .map(ApiToken::try_from)
            .collect(),
    }
}

/// The token whose secret hashes to `token_sha256`, revoked or not (the
/// caller decides; see [`ApiToken::revoked_at`]).
pub async fn find_token(db: &Db, token_sha256: &str) -> Result<Option<ApiToken>> {
    let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE token_sha256 = $1");
    let sql = sqlx::AssertSqlSafe(sql);
    match db {
        Db::Postgres(pool) => sqlx::query_as::<_, PgRow>(sql)
            .bind(token_sha256)
            .fetch_optional(pool)
            .await
            .map_err(query_err(db, "find an API token"))?
            .map(ApiToken::try_from)
            .transpose(),
        Db::Sqlite(pool) => sqlx::query_as::<_, SqliteRow>(sql)
            .bind(token_sha256)
            .fetch_optional(pool)
            .await
            .map_err(query_err(db, "find an API token"))?
            .map(ApiToken::try_from)
            .transpose(),
    }
}

/// Revokes the token named `name`; `false` when there is no such token or
/// it was already revoked.
pub async fn revoke_token(db: &Db, name: &str) -> Result<bool> {
    // Milliseconds, as both dialects keep them exactly.
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let sql = "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL";
    let done = match db {
        Db::Postgres(pool) => sqlx::query(sql)
            .bind(now)
            .bind(name)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        Db::Sqlite(pool) => sqlx::query(sql)
            .bind(sqlite_time(now))
            .bind(name)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
    }
    .map_err(query_err(db, "revoke an API token"))?;
    Ok(done == 1)
}

/// Notes that the token `id` was used now, unless that was already noted in
/// the last minute (so a busy token does not write on every request).
pub async fn touch_token(db: &Db, id: Uuid) -> Result<()> {
    // Milliseconds, as both dialects keep them exactly.
    let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let minute_ago = now - chrono::Duration::minutes(1);
    let sql = "UPDATE api_tokens SET last_used_at = $1 \
               WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)";
    match db {
        Db::Postgres(pool) => sqlx::query(sql)
            .bind(now)
            .bind(id)
            .bind(minute_ago)
            .execute(pool)
            .await
            .map(|_| ()),
        Db::Sqlite(pool) => sqlx::query(sql)
            .bind(sqlite_time(now))
            .bind(id.to_string())
            .bind(sqlite_time(minute_ago))
            .execute(pool)
            .await
            .map(|_| ()),
    }
    .map_err(query_err(db, "note an API token's use"))?;
    Ok(())
}
