//! Where incidents live: PostgreSQL in production, SQLite when embedded.
//!
//! Everything outside this module reaches incidents through
//! [`IncidentStore`], an object-safe trait used as `Arc<dyn IncidentStore>`,
//! so the manager, the API and the tests do not care which database is behind
//! it. [`connect`] picks the backend from the URL scheme.
//!
//! Writes are compare-and-set on the incident's revision: the store never
//! merges, it only refuses a write based on stale state
//! ([`StoreError::Conflict`]) so the caller can re-read and merge again. That
//! keeps one attack one row when two tasks or two instances see it at once.
//!
//! Queries are checked at run time (`sqlx::query` + `FromRow`), not by the
//! compile-time macros: the crate builds without a database.

pub mod activity;
pub mod audit;
pub mod comments;
mod postgres;
mod sqlite;
pub mod tokens;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::change::IncidentChange;
use crate::incident::{Incident, IncidentStatus};
use crate::outbox::ChangeEffects;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gatewatch_detector::{EventTime, IncidentKind, Severity};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use uuid::Uuid;

/// The PostgreSQL schema, embedded from `migrations/postgres`.
pub static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The SQLite schema, embedded from `migrations/sqlite`.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// How many incidents [`IncidentStore::list`] returns when the query does
/// not say.
pub const DEFAULT_LIST_LIMIT: u32 = 50;

/// The most incidents one [`IncidentStore::list`] call returns, whatever the
/// query asks: pages keep responses and queries small.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// Everything that can go wrong talking to the incident store.
///
/// Variants carry the backend and the operation so that a log line says what
/// failed without the caller adding context; none carries the database URL
/// (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL's scheme names no backend this build supports.
    #[error("Unsupported incident store URL scheme {scheme:?}: expected sqlite:, postgres: or postgresql:")]
    UnsupportedUrl {
        /// The scheme found (the text before the first `:`).
        scheme: String,
    },
    /// The database could not be opened or reached.
    #[error("Failed to connect to the {backend} incident store")]
    Connect {
        /// `postgres` or `sqlite`.
        backend: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying the embedded migrations failed (or an applied one was edited).
    #[error("Failed to migrate the {backend} incident store")]
    Migrate {
        /// `postgres` or `sqlite`.
        backend: &'static str,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A statement failed.
    #[error("Incident store query failed on {backend} while trying to {operation}")]
    Query {
        /// `postgres` or `sqlite`.
        backend: &'static str,
        /// What the store was doing (`record a change`, `list incidents`, …).
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The write was based on stale state: the incident already exists (for a
    /// creation) or is no longer at the revision the change was computed
    /// from. Re-read and merge again; the API maps this to 409.
    #[error(
        "Incident {fingerprint} ({id}) changed concurrently; revision {revision} was not written"
    )]
    Conflict {
        /// The incident's id.
        id: Uuid,
        /// The incident's fingerprint.
        fingerprint: String,
        /// The revision the rejected change would have written.
        revision: u32,
    },
    /// A stored row holds a value this build cannot read (an unknown kind, a
    /// malformed time): the database was written by something else.
    #[error("Stored incident {id} has an unreadable {column}: {value:?}")]
    Corrupt {
        /// The row's id, as stored.
        id: String,
        /// The column.
        column: &'static str,
        /// The offending value (or the parse error).
        value: String,
    },
    /// A value does not fit the schema (a time outside years 0–9999, a count
    /// above `i64::MAX`).
    #[error("{field} value {value} is outside the range the incident store can hold")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value, printed.
        value: String,
    },
    /// A list cursor that [`IncidentCursor`]'s `Display` did not produce.
    #[error("Invalid incident cursor {cursor:?}")]
    InvalidCursor {
        /// The cursor as received.
        cursor: String,
    },
    /// A JSON column could not be encoded.
    #[error("Failed to encode {field} as JSON")]
    Json {
        /// The field.
        field: &'static str,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    /// Whether writing the same data again can never succeed: the values
    /// themselves are refused (out of range, unencodable, or the database's
    /// SQL state class 22, "data exception"), not the connection or a
    /// concurrent writer. A live pipeline must not retry such a write for
    /// ever and stall every later incident behind it.
    pub fn is_data_error(&self) -> bool {
        match self {
            StoreError::OutOfRange { .. } | StoreError::Json { .. } => true,
            StoreError::Query { source, .. } => source
                .as_database_error()
                .and_then(|e| e.code())
                .is_some_and(|code| code.starts_with("22")),
            _ => false,
        }
    }
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The incidents' home. Object-safe: held as `Arc<dyn IncidentStore>` by the
/// manager, the API and the outbox worker.
#[async_trait]
pub trait IncidentStore: Send + Sync {
    /// `postgres` or `sqlite`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Applies the embedded migrations that are not applied yet; a no-op when
    /// the schema is current. Safe to call from several instances at once
    /// (sqlx takes a lock).
    async fn migrate(&self) -> Result<()>;

    /// Writes a change atomically: the incident row (inserted for
    /// [`ChangeKind::Created`](crate::ChangeKind::Created), otherwise
    /// updated) and its timeline entry, in one transaction, with no
    /// notification. Same as [`IncidentStore::record_change_with`] with no
    /// effects.
    ///
    /// Fails with [`StoreError::Conflict`] when the incident already exists
    /// (creation) or is not at `revision - 1` (update); nothing is written then.
    async fn record_change(&self, change: &IncidentChange) -> Result<()> {
        self.record_change_with(change, &ChangeEffects::default())
            .await
    }

    /// Writes a change, its timeline entry (with the effects' note and
    /// details) and its notifications' outbox rows (flood control applied,
    /// see [`crate::outbox`]) in one transaction: all or nothing, so a crash
    /// can neither lose a notification nor send one for an unwritten change.
    ///
    /// Fails with [`StoreError::Conflict`] like
    /// [`IncidentStore::record_change`]; nothing is written then.
    async fn record_change_with(
        &self,
        change: &IncidentChange,
        effects: &ChangeEffects,
    ) -> Result<()>;

    /// One incident by id.
    async fn get(&self, id: Uuid) -> Result<Option<Incident>>;

    /// The most recent incident (by `last_seen`) of this kind for this client:
    /// what a new finding may continue.
    async fn latest_for(&self, kind: IncidentKind, client: &str) -> Result<Option<Incident>>;

    /// The most recent incident of this kind for this client whose
    /// `[first_seen, last_seen]` overlaps `[from, to]`: where a finding that
    /// arrives out of order (older than the latest incident) belongs.
    async fn latest_overlapping(
        &self,
        kind: IncidentKind,
        client: &str,
        from: EventTime,
        to: EventTime,
    ) -> Result<Option<Incident>>;

    /// A page of incidents, newest activity (`last_seen`) first.
    async fn list(&self, query: &IncidentQuery) -> Result<IncidentPage>;

    /// An incident's history, oldest first; empty for an unknown id.
    async fn timeline(&self, id: Uuid) -> Result<Vec<TimelineEntry>>;

    /// How many incidents are stored.
    async fn count(&self) -> Result<u64>;

    /// The connection pool behind the store: for this crate's modules that
    /// keep tables of their own beside the incidents (API tokens, comments,
    /// client activity) and for readiness checks, without widening this
    /// trait for each of them.
    fn db(&self) -> Db;

    /// Closes the connection pool, waiting for connections in use to be
    /// returned: call on shutdown so SQLite checkpoints its WAL.
    async fn close(&self);
}

/// Opens the store named by `url`:
///
/// * `sqlite://path/to/file.db` (relative or, with a third slash, absolute),
///   created if missing; `sqlite::memory:` for a private in-memory database;
/// * `postgres://user:password@host:port/db` or `postgresql://…`.
///
/// Does not migrate: call [`IncidentStore::migrate`] once at start-up.
pub async fn connect(url: &str) -> Result<Arc<dyn IncidentStore>> {
    let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
    match scheme {
        "sqlite" => Ok(Arc::new(SqliteStore::connect(url).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(PgStore::connect(url).await?)),
        other => Err(StoreError::UnsupportedUrl {
            scheme: other.to_owned(),
        }),
    }
}

/// The pool behind an [`IncidentStore`] (see [`IncidentStore::db`]). Cheap
/// to clone: a pool is a shared handle.
#[derive(Clone, Debug)]
pub enum Db {
    /// A PostgreSQL pool.
    Postgres(sqlx::PgPool),
    /// A SQLite pool.
    Sqlite(sqlx::SqlitePool),
}

impl Db {
    /// Runs `SELECT 1`: whether the database answers at all.
    pub async fn ping(&self) -> Result<()> {
        let (backend, r) = match self {
            Db::Postgres(p) => (
                "postgres",
                sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
            ),
            Db::Sqlite(p) => (
                "sqlite",
                sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
            ),
        };
        r.map_err(|source| StoreError::Query {
            backend,
            operation: "check the database is reachable",
            source,
        })
    }
}

/// The order of [`IncidentStore::list`]: by `last_seen`, then id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListOrder {
    /// Newest activity first: what an analyst watching live wants.
    #[default]
    NewestFirst,
    /// Oldest activity first: for walking a period in order.
    OldestFirst,
}

/// Filters and paging for [`IncidentStore::list`]. All filters are optional
/// and combine with AND; the default lists everything, newest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IncidentQuery {
    /// Only incidents in this status.
    pub status: Option<IncidentStatus>,
    /// Only incidents of this kind.
    pub kind: Option<IncidentKind>,
    /// Only incidents at this severity or above (analysts ask for "high and
    /// up", rarely for exactly one level).
    pub min_severity: Option<Severity>,
    /// Only incidents about this client (exact match on `client`).
    pub client: Option<String>,
    /// Only incidents whose client is an address inside this network
    /// (clients that are not addresses never match).
    pub cidr: Option<ipnet::IpNet>,
    /// Only incidents whose summary contains this text, ignoring ASCII case
    /// (`%` and `_` match themselves).
    pub text: Option<String>,
    /// The order of the page (the cursor continues in the same order).
    pub order: ListOrder,
    /// Only incidents still active at or after this event time
    /// (`last_seen >= since`).
    pub since: Option<EventTime>,
    /// Only incidents that began before this event time
    /// (`first_seen < until`). With `since`, this selects the incidents that
    /// overlap the window `[since, until)`.
    pub until: Option<EventTime>,
    /// Page size: [`DEFAULT_LIST_LIMIT`] when `None`, capped at
    /// [`MAX_LIST_LIMIT`], at least 1.
    pub limit: Option<u32>,
    /// Continue after this position (the previous page's
    /// [`IncidentPage::next`]).
    pub after: Option<IncidentCursor>,
}

impl IncidentQuery {
    /// The page size actually used.
    pub fn effective_limit(&self) -> u32 {
        self.limit
            .unwrap_or(DEFAULT_LIST_LIMIT)
            .clamp(1, MAX_LIST_LIMIT)
    }

    /// Severities that pass `min_severity`, for an `IN (…)` filter (severity is
    /// stored as text, which does not sort by urgency).
    pub(crate) fn severities(&self) -> Option<Vec<Severity>> {
        self.min_severity
            .map(|min| Severity::ALL.into_iter().filter(|s| *s >= min).collect())
    }
}

/// One page of [`IncidentStore::list`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IncidentPage {
    /// The incidents, `last_seen` descending, then id descending.
    pub incidents: Vec<Incident>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<IncidentCursor>,
}

/// A position in the `(last_seen desc, id desc)` order of incidents.
///
/// Keyset paging rather than offsets: pages stay stable while new incidents
/// arrive at the top, and each page is one index range scan. Its text form
/// (`<last_seen ms>:<id>`) is what the API hands out; treat it as opaque.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IncidentCursor {
    /// `last_seen` of the last incident of the previous page.
    pub last_seen: EventTime,
    /// `id` of the last incident of the previous page.
    pub id: Uuid,
}

impl IncidentCursor {
    /// The cursor just after `incident`.
    pub fn after(incident: &Incident) -> Self {
        IncidentCursor {
            last_seen: incident.last_seen,
            id: incident.id,
        }
    }
}

impl fmt::Display for IncidentCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.last_seen.millis(), self.id)
    }
}

impl FromStr for IncidentCursor {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = || StoreError::InvalidCursor {
            cursor: s.to_owned(),
        };
        let (ms, id) = s.split_once(':').ok_or_else(invalid)?;
        Ok(IncidentCursor {
            last_seen: EventTime::from_millis(ms.parse().map_err(|_| invalid())?),
            id: id.parse().map_err(|_| invalid())?,
        })
    }
}

impl Serialize for IncidentCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One entry of an incident's history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// Increasing with insertion order across all incidents.
    pub id: i64,
    /// The incident it belongs to.
    pub incident_id: Uuid,
    /// Wall-clock time the change was written (not event time: analysts'
    /// actions have no event time).
    pub at: DateTime<Utc>,
    /// Who made the change (`detector:<name>`, `user:<login>`).
    pub actor: String,
    /// What happened: `created`, `updated`, `escalated`, `status_changed`
    /// (see [`ChangeKind::action`](crate::ChangeKind::action)).
    pub action: String,
    /// The incident's revision after the change.
    pub revision: u32,
    /// Severity, status, counts and times after the change, plus `from` for
    /// escalations and status changes.
    pub details: serde_json::Value,
}

/// Earliest storable time: 0000-01-01T00:00:00.000Z. SQLite keeps times as
/// fixed-width text, which sorts correctly only for four-digit years.
const MIN_STORABLE_MS: i64 = -62_167_219_200_000;
/// Latest storable time: 9999-12-31T23:59:59.999Z.
const MAX_STORABLE_MS: i64 = 253_402_300_799_999;

/// `text` as a LIKE pattern matching it anywhere, with `\\` as the escape
/// character, so the user's `%` and `_` are literal.
pub(crate) fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Rejects times the SQLite text encoding could not order; applied to both
/// backends so they accept the same data.
pub(crate) fn check_time(field: &'static str, t: EventTime) -> Result<EventTime> {
    if (MIN_STORABLE_MS..=MAX_STORABLE_MS).contains(&t.millis()) {
        Ok(t)
    } else {
        Err(StoreError::OutOfRange {
            field,
            value: t.millis().to_string(),
        })
    }
}

/// Clamps a query bound into the storable range (a bound beyond it matches
/// the same rows as the range's edge).
pub(crate) fn clamp_time(t: EventTime) -> EventTime {
    EventTime::from_millis(t.millis().clamp(MIN_STORABLE_MS, MAX_STORABLE_MS))
}

/// `events` as the `bigint` both schemas use.
pub(crate) fn events_to_db(events: u64) -> Result<i64> {
    i64::try_from(events).map_err(|_| StoreError::OutOfRange {
        field: "events",
        value: events.to_string(),
    })
}

/// The parts of a stored row that are text in both dialects, parsed back
/// into the incident's enums.
pub(crate) struct TextColumns<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub severity: &'a str,
    pub status: &'a str,
}

impl TextColumns<'_> {
    pub(crate) fn parse(&self) -> Result<(IncidentKind, Severity, IncidentStatus)> {
        let corrupt = |column, value: &str| StoreError::Corrupt {
            id: self.id.to_owned(),
            column,
            value: value.to_owned(),
        };
        Ok((
            IncidentKind::parse(self.kind).ok_or_else(|| corrupt("kind", self.kind))?,
            Severity::parse(self.severity).ok_or_else(|| corrupt("severity", self.severity))?,
            IncidentStatus::parse(self.status).ok_or_else(|| corrupt("status", self.status))?,
        ))
    }
}

/// Converts a stored integer column back, flagging values this build cannot
/// hold as corruption.
pub(crate) fn from_db_int<T: TryFrom<i64>>(id: &str, column: &'static str, v: i64) -> Result<T> {
    T::try_from(v).map_err(|_| StoreError::Corrupt {
        id: id.to_owned(),
        column,
        value: v.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_through_text() {
        let c = IncidentCursor {
            last_seen: EventTime::from_millis(1_614_232_668_342),
            id: Uuid::from_u128(0x1234),
        };
        assert_eq!(c.to_string().parse::<IncidentCursor>().unwrap(), c);
        assert!("nope".parse::<IncidentCursor>().is_err());
        assert!("12:not-a-uuid".parse::<IncidentCursor>().is_err());
    }

    #[test]
    fn limit_is_clamped() {
        let mut q = IncidentQuery::default();
        assert_eq!(q.effective_limit(), DEFAULT_LIST_LIMIT);
        q.limit = Some(0);
        assert_eq!(q.effective_limit(), 1);
        q.limit = Some(1_000_000);
        assert_eq!(q.effective_limit(), MAX_LIST_LIMIT);
    }

    #[test]
    fn storable_range_edges_are_four_digit_years() {
        assert_eq!(
            EventTime::from_millis(MIN_STORABLE_MS).to_rfc3339(),
            "0000-01-01T00:00:00.000Z"
        );
        assert_eq!(
            EventTime::from_millis(MAX_STORABLE_MS).to_rfc3339(),
            "9999-12-31T23:59:59.999Z"
        );
        assert!(check_time("t", EventTime::from_millis(MAX_STORABLE_MS + 1)).is_err());
    }

    #[test]
    fn min_severity_expands_to_the_levels_above() {
        let q = IncidentQuery {
            min_severity: Some(Severity::High),
            ..Default::default()
        };
        assert_eq!(
            q.severities().unwrap(),
            vec![Severity::High, Severity::Critical]
        );
    }

    /// Connects, migrates, writes and reads back one incident.
    async fn round_trip(url: &str) {
        let store = connect(url).await.expect("connect");
        store.migrate().await.expect("migrate");
        let change = crate::manager::open(&crate::testing::finding(
            IncidentKind::TrafficSpike,
            "192.0.2.1",
            1_700_000_000_000,
            1_700_000_060_000,
        ));
        store.record_change(&change).await.expect("record");
        assert_eq!(store.count().await.unwrap(), 1);
        assert_eq!(
            store.get(change.incident.id).await.unwrap(),
            Some(change.incident)
        );
        store.close().await;
    }

    #[tokio::test]
    async fn sqlite_memory_url_works_across_calls() {
        round_trip("sqlite::memory:").await;
    }

    #[tokio::test]
    async fn sqlite_url_creates_a_missing_file() {
        let dir = std::env::temp_dir().join(format!("gw_test_{}", Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("incidents.db");
        let url = format!("sqlite://{}", file.display());
        round_trip(&url).await;
        assert!(file.exists());
        let store = SqliteStore::connect(&url).await.unwrap();
        let pragma = |name: &'static str| {
            let pool = store.pool().clone();
            async move {
                let sql = sqlx::AssertSqlSafe(format!("PRAGMA {name}"));
                let v: sqlx::sqlite::SqliteRow = sqlx::query(sql).fetch_one(&pool).await.unwrap();
                sqlx::Row::try_get::<String, _>(&v, 0)
                    .or_else(|_| sqlx::Row::try_get::<i64, _>(&v, 0).map(|n| n.to_string()))
                    .unwrap()
            }
        };
        assert_eq!(pragma("journal_mode").await, "wal");
        assert_eq!(pragma("foreign_keys").await, "1");
        assert_eq!(pragma("busy_timeout").await, "10000");
        store.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn postgresql_scheme_is_accepted() {
        let db = crate::testing::TestDb::postgres().await;
        let url = db.url().replacen("postgres://", "postgresql://", 1);
        assert!(url.starts_with("postgresql://"));
        round_trip(&url).await;
    }

    #[tokio::test]
    async fn unknown_scheme_is_rejected_without_echoing_the_url() {
        let err = match connect("mysql://user:secret@host/db").await {
            Err(e) => e,
            Ok(_) => panic!("mysql must be rejected"),
        };
        assert!(matches!(err, StoreError::UnsupportedUrl { ref scheme } if scheme == "mysql"));
        assert!(!err.to_string().contains("secret"));
    }
}
