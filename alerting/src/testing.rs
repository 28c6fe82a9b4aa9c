//! Test support: a fresh real database per test, and findings to feed it.
//!
//! Compiled for this crate's tests and, behind the `testing` cargo feature,
//! for other crates' tests (the binary's API tests):
//!
//! ```toml
//! [dev-dependencies]
//! gatewatch-alerting = { workspace = true, features = ["testing"] }
//! ```
//!
//! PostgreSQL comes from `GATEWATCH_TEST_DATABASE_URL` (default
//! [`DEFAULT_ADMIN_URL`], as started by `scripts/dev-services`); each
//! [`TestDb::postgres`] creates `gw_test_<uuid>` through that admin URL and
//! drops it when the `TestDb` is dropped, also when the test panics. SQLite
//! gets a file in the system temp directory, removed on drop.

use crate::store::{connect, IncidentStore};
use gatewatch_detector::{EventTime, Finding, IncidentKind, Severity};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use uuid::Uuid;

/// The environment variable naming the PostgreSQL server tests use.
pub const DATABASE_URL_ENV: &str = "GATEWATCH_TEST_DATABASE_URL";

/// Where `scripts/dev-services` runs PostgreSQL (role `gatewatch` is a
/// superuser, so it may create and drop databases).
pub const DEFAULT_ADMIN_URL: &str = "postgres://gatewatch:gatewatch@127.0.0.1:5432/gatewatch";

/// The admin URL tests use to create their databases.
pub fn admin_url() -> String {
    std::env::var(DATABASE_URL_ENV).unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// Which database a [`TestDb`] is.
#[derive(Debug)]
enum Backend {
    Postgres {
        admin: Box<PgConnectOptions>,
        name: String,
    },
    Sqlite {
        path: PathBuf,
    },
}

/// A database that exists for one test. Connect to it as often as the test
/// needs (a restart is a second [`TestDb::store`]); it is removed on drop.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    backend: Backend,
}

impl TestDb {
    /// A new, empty PostgreSQL database. Panics (failing the test) when the
    /// server is unreachable: these tests are meant to run against a real one.
    pub async fn postgres() -> TestDb {
        let admin_url = admin_url();
        let admin = PgConnectOptions::from_str(&admin_url)
            .unwrap_or_else(|e| panic!("{DATABASE_URL_ENV} is not a PostgreSQL URL: {e}"))
            .disable_statement_logging();
        let name = format!("gw_test_{}", Uuid::new_v4().simple());
        let mut conn = PgConnection::connect_with(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach PostgreSQL for tests ({e}); run scripts/dev-services \
                 or set {DATABASE_URL_ENV}"
                )
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let _ = conn.close().await;
        let url = admin.clone().database(&name).to_url_lossy().to_string();
        TestDb {
            url,
            backend: Backend::Postgres {
                admin: Box::new(admin),
                name,
            },
        }
    }

    /// A new SQLite file in the temp directory.
    pub async fn sqlite() -> TestDb {
        let path = std::env::temp_dir().join(format!("gw_test_{}.db", Uuid::new_v4().simple()));
        TestDb {
            url: format!("sqlite://{}", path.display()),
            backend: Backend::Sqlite { path },
        }
    }

    /// The URL to hand to [`connect`] (or to the binary's config).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new connection pool to this database, migrated.
    pub async fn store(&self) -> Arc<dyn IncidentStore> {
        let store = connect(&self.url)
            .await
            .expect("connect to the test database");
        store.migrate().await.expect("migrate the test database");
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.backend {
            Backend::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Backend::Postgres { admin, name } => {
                // Drop runs inside the test's runtime, which cannot be blocked
                // on; a helper thread with its own runtime does the I/O. FORCE
                // ends the test's pools' connections that are still open.
                let admin = (**admin).clone();
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let dropped = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    rt.block_on(async move {
                        let mut conn = PgConnection::connect_with(&admin).await.ok()?;
                        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                            .execute(&mut conn)
                            .await
                            .ok()?;
                        conn.close().await.ok()
                    })
                })
                .join();
                if !matches!(dropped, Ok(Some(()))) {
                    tracing::warn!(database = %name, "Could not drop the test database.");
                }
            }
        }
    }
}

/// A finding with plausible defaults: medium severity, 10 events, the client
/// as its only source when it is an address, `detected_at = last_seen`.
/// Adjust fields on the returned value.
pub fn finding(kind: IncidentKind, client: &str, first_seen_ms: i64, last_seen_ms: i64) -> Finding {
    Finding {
        kind,
        technique: "test",
        detector: "test",
        key: client.to_owned(),
        sources: client.parse().into_iter().collect(),
        first_seen: EventTime::from_millis(first_seen_ms),
        last_seen: EventTime::from_millis(last_seen_ms),
        detected_at: EventTime::from_millis(last_seen_ms),
        severity: Severity::Medium,
        score: 5.0,
        events: 10,
        summary: format!("{kind} from {client}"),
        evidence: serde_json::json!({ "events": 10 }),
    }
}

/// The JSON documents in `dir`, in file-name order: how the test SMTP
/// server (`alerting/tests/support/smtp_sink.py`) keeps the mails it
/// accepts, numbered in arrival order.
pub fn json_files(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}
