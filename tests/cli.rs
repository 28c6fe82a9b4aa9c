//! End to end through the built `gatewatch` binary, for the command-line
//! paths the other suites leave out:
//!
//! * `replay -` reads standard input and finds what a replay of the file finds;
//! * `replay`'s summary on stderr counts rejected lines by reason and
//!   incidents by kind exactly as they were fed;
//! * an incident that grows is printed again under the same id;
//! * `run FILE` and `run -` on the embedded default print incidents in the
//!   replay format, store them in SQLite, and on SIGINT drain and exit 0;
//! * `migrate` creates every table on a fresh SQLite file and a fresh
//!   PostgreSQL database and is idempotent; `replay --store` stores exactly
//!   the incidents it prints.
//!
//! Needs PostgreSQL for the `*_postgres` tests (`scripts/dev-services`, or
//! `GATEWATCH_TEST_DATABASE_URL`) and free loopback ports for `run`. Logs
//! come from `gatewatch-loggen`, so every expectation is derived from its
//! labels or from the generated requests.

mod support;

use gatewatch_alerting::testing::TestDb;
use gatewatch_loggen::{generate, Label, LogFormat, Scenario};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::live::free_port;
use support::*;

/// Visitors of the generated log: about 25,000 lines with every attack and
/// look-alike, which a debug build replays in well under a second (the
/// full-size evaluation is tests/replay.rs).
const CLIENTS: u64 = 300;

/// The same log for every test, so their expectations agree.
fn scenario() -> Scenario {
    Scenario::eval(42, CLIENTS)
}

/// Writes the scenario as nginx `combined` into `dir`; returns the path,
/// the labels and the number of lines.
fn eval_log(dir: &TempDir) -> (PathBuf, Vec<Label>, u64) {
    let log = dir.path("eval.log");
    let (labels, lines) = write_log(&scenario(), LogFormat::NginxCombined, &log);
    (log, labels, lines)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Fails unless every labelled attack was found and nothing else was.
fn assert_found_exactly_the_attacks(labels: &[Label], incidents: &BTreeMap<String, Value>) {
    let s = score(labels, incidents);
    assert!(
        s.missed.is_empty() && s.false_positives.is_empty() && s.lookalike_alerts.is_empty(),
        "missed {:?}, false positives {:?}, look-alike alerts {:?}",
        s.missed,
        s.false_positives,
        s.lookalike_alerts
    );
}

/// Incidents expected per kind: one per labelled attack (tests/replay.rs
/// proves one attack is one incident).
fn expected_kinds(labels: &[Label]) -> BTreeMap<String, u64> {
    let mut kinds = BTreeMap::new();
    for kind in labels.iter().filter_map(|l| l.expect) {
        *kinds.entry(kind.to_string()).or_insert(0) += 1;
    }
    kinds
}

/// Event time as milliseconds, from the RFC 3339 the incidents carry.
fn millis(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("not RFC 3339 ({e}): {rfc3339}"))
        .timestamp_millis()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

// ---------------------------------------------------------------- replay

#[test]
fn replay_from_stdin_matches_replay_by_path() {
    let dir = TempDir::new("cli-stdin");
    let (log, labels, _) = eval_log(&dir);
    let by_path = replay(&["--format", "nginx_combined", path_str(&log)]);

    // A real pipe, written while gatewatch reads, not a file redirect: reads
    // come back short and the stream cannot be measured up front.
    let mut child = gatewatch()
        .args(["replay", "--format", "nginx_combined", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gatewatch replay -");
    let mut stdin = child.stdin.take().expect("stdin");
    let bytes = std::fs::read(&log).unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let from_stdin = child.wait_with_output().expect("wait for gatewatch");
    writer
        .join()
        .unwrap()
        .expect("write the log into gatewatch's stdin");
    assert!(
        from_stdin.status.success(),
        "gatewatch replay - failed: {}",
        String::from_utf8_lossy(&from_stdin.stderr)
    );

    let expected = latest_by_id(&json_lines(&by_path.stdout));
    let got = latest_by_id(&json_lines(&from_stdin.stdout));
    // Equal but empty would prove nothing.
    assert_found_exactly_the_attacks(&labels, &expected);
    let summary = |m: &BTreeMap<String, Value>| -> Vec<(String, Value, Value)> {
        m.iter()
            .map(|(id, v)| (id.clone(), v["kind"].clone(), v["client"].clone()))
            .collect()
    };
    assert_eq!(
        summary(&got),
        summary(&expected),
        "stdin and the file give different incidents (id, kind, client)"
    );
    assert_eq!(got, expected, "stdin and the file give different versions");
}

/// One line each for the rejection reasons nginx `combined` reports; how
/// often each is injected differs per reason, so swapped counters fail.
const BAD_LINES: &[(&str, &str, usize)] = &[
    ("empty", "", 1),
    ("empty", "   \t", 1),
    ("malformed", "hello", 1),
    (
        "malformed",
        "203.0.113.50 - - 02/Mar/2026:09:00:00 \"GET / HTTP/1.1\" 200 1 \"-\" \"curl/8\"",
        1,
    ),
    (
        "malformed",
        "203.0.113.50 - - [02/Mar/2026:09:00:00 +0000] \"GET / HTTP/1.1\" abc 1 \"-\" \"curl/8\"",
        1,
    ),
    (
        "no_client",
        "host unix: - - [02/Mar/2026:09:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"curl/8\"",
        4,
    ),
    (
        "bad_timestamp",
        "203.0.113.50 - - [02/Mar/2026:09:00:00 -0799] \"GET / HTTP/1.1\" 200 1 \"-\" \"curl/8\"",
        2,
    ),
    (
        "bad_timestamp",
        "203.0.113.50 - - [02/Zzz/2026:09:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"curl/8\"",
        3,
    ),
];

/// The `Replay finished.` event's fields from a JSON-format stderr.
fn replay_summary(stderr: &[u8]) -> Value {
    let stderr = String::from_utf8_lossy(stderr);
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "Replay finished.")
        .map(|v| v["fields"].clone())
        .unwrap_or_else(|| panic!("no replay summary on stderr:\n{stderr}"))
}

/// A summary field that holds a JSON object as text (`rejected_by_reason`,
/// `incidents_by_kind`).
fn count_map(summary: &Value, field: &str) -> BTreeMap<String, u64> {
    let text = summary[field]
        .as_str()
        .unwrap_or_else(|| panic!("summary without {field}: {summary}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{field} is not a JSON map ({e}): {text}"))
}

#[test]
fn replay_summary_counts_rejections_by_reason_and_incidents_by_kind() {
    let dir = TempDir::new("cli-summary");
    let (clean, labels, good) = eval_log(&dir);
    // The bad lines go between generated ones, spread over the whole log.
    let text = std::fs::read_to_string(&clean).unwrap();
    let bad: Vec<&str> = BAD_LINES
        .iter()
        .flat_map(|&(_, line, n)| std::iter::repeat_n(line, n))
        .collect();
    let every = good as usize / (bad.len() + 1);
    let mut dirty = String::with_capacity(text.len() + 4096);
    let mut next_bad = bad.iter();
    for (i, line) in text.lines().enumerate() {
        dirty.push_str(line);
        dirty.push('\n');
        if (i + 1) % every == 0 {
            if let Some(b) = next_bad.next() {
                dirty.push_str(b);
                dirty.push('\n');
            }
        }
    }
    assert!(next_bad.next().is_none(), "every bad line is injected");
    let log = dir.path("dirty.log");
    std::fs::write(&log, dirty).unwrap();

    let out = gatewatch()
        .env("GATEWATCH_LOG", "info")
        .env("GATEWATCH_LOG_FORMAT", "json")
        .args(["replay", "--format", "nginx_combined", path_str(&log)])
        .output()
        .expect("run gatewatch replay");
    support::assert_success(&out);
    let summary = replay_summary(&out.stderr);
    let mut expected_rejected = BTreeMap::new();
    for &(reason, _, n) in BAD_LINES {
        *expected_rejected.entry(reason.to_string()).or_insert(0u64) += n as u64;
    }
    let n_bad = bad.len() as u64;
    assert_eq!(summary["lines"], good + n_bad, "{summary}");
    assert_eq!(summary["parsed"], good, "{summary}");
    assert_eq!(summary["rejected"], n_bad, "{summary}");
    assert_eq!(summary["truncated"], 0, "{summary}");
    assert_eq!(
        count_map(&summary, "rejected_by_reason"),
        expected_rejected,
        "{summary}"
    );

    // Incidents by kind: what the labels call for, and what was printed.
    let printed = latest_by_id(&json_lines(&out.stdout));
    assert_found_exactly_the_attacks(&labels, &printed);
    let mut printed_kinds: BTreeMap<String, u64> = BTreeMap::new();
    for v in printed.values() {
        *printed_kinds
            .entry(v["kind"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    let by_kind = count_map(&summary, "incidents_by_kind");
    let expected = expected_kinds(&labels);
    assert_eq!(printed_kinds, expected, "printed incidents by kind");
    for (kind, n) in &by_kind {
        assert_eq!(
            *n,
            expected.get(kind).copied().unwrap_or(0),
            "incidents_by_kind[{kind}] in {summary}"
        );
    }
    assert!(
        expected.keys().all(|k| by_kind.contains_key(k)),
        "incidents_by_kind lacks a kind: {summary}"
    );
    assert_eq!(
        summary["incidents"],
        expected.values().sum::<u64>(),
        "{summary}"
    );

    // Rejected lines are skipped, not folded into anything.
    let clean_out = replay(&["--format", "nginx_combined", path_str(&clean)]);
    assert_eq!(
        printed,
        latest_by_id(&json_lines(&clean_out.stdout)),
        "the bad lines changed the incidents"
    );
}

#[test]
fn an_updated_incident_is_printed_again_with_the_same_id() {
    let dir = TempDir::new("cli-update");
    let (log, labels, _) = eval_log(&dir);
    let out = replay(&["--format", "nginx_combined", path_str(&log)]);
    let lines = json_lines(&out.stdout);

    // The brute force keeps going long after the first few failures that
    // open its incident: 400 attempts, 1.2 s apart.
    let brute = labels
        .iter()
        .find(|l| l.name == "brute_force")
        .expect("a brute_force label");
    let attempts = generate(&scenario())
        .requests
        .filter(|r| r.ip.to_string() == brute.client)
        .count() as u64;
    let copies: Vec<&Value> = lines.iter().filter(|v| matches(brute, v)).collect();
    assert!(
        copies.len() >= 2,
        "the brute force was printed {} time(s): {copies:#?}",
        copies.len()
    );
    let id = &copies[0]["id"];
    for v in &copies {
        assert_eq!(&v["id"], id, "the same attack under two ids: {copies:#?}");
        assert_eq!(v["fingerprint"], copies[0]["fingerprint"], "{v}");
        assert_eq!(v["first_seen"], copies[0]["first_seen"], "{v}");
    }
    for pair in copies.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let seen = |v: &Value| millis(v["last_seen"].as_str().unwrap());
        assert!(seen(b) >= seen(a), "last_seen went back:\n{a}\n{b}");
        assert!(b["events"].as_u64() > a["events"].as_u64(), "{a}\n{b}");
        assert!(
            b["evidence"]["failures"].as_u64() > a["evidence"]["failures"].as_u64(),
            "evidence did not grow:\n{a}\n{b}"
        );
        assert!(b["revision"].as_u64() > a["revision"].as_u64(), "{a}\n{b}");
    }
    let last = copies.last().unwrap();
    assert!(
        millis(last["last_seen"].as_str().unwrap())
            > millis(copies[0]["last_seen"].as_str().unwrap()),
        "the updates carry no later activity: {copies:#?}"
    );
    assert_eq!(
        last["events"], attempts,
        "the last update counts every attempt"
    );

    // Every other repeated id obeys the same order.
    let mut seen: BTreeMap<&str, &Value> = BTreeMap::new();
    for v in &lines {
        let id = v["id"].as_str().unwrap();
        if let Some(prev) = seen.insert(id, v) {
            assert!(
                millis(v["last_seen"].as_str().unwrap())
                    >= millis(prev["last_seen"].as_str().unwrap())
                    && v["events"].as_u64() >= prev["events"].as_u64(),
                "a later copy of {id} is older:\n{prev}\n{v}"
            );
        }
    }
}

// ---------------------------------------------------------------- databases

/// An incident row, reduced to what both backends store the same way.
#[derive(Debug, PartialEq)]
struct Stored {
    kind: String,
    client: String,
    events: i64,
    last_seen_ms: i64,
}

impl Stored {
    fn from_printed(v: &Value) -> Stored {
        Stored {
            kind: v["kind"].as_str().unwrap().to_string(),
            client: v["client"].as_str().unwrap().to_string(),
            events: v["events"].as_i64().unwrap(),
            last_seen_ms: millis(v["last_seen"].as_str().unwrap()),
        }
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres")
}

/// Every incident row, by id, read with sqlx (not through gatewatch).
fn stored_incidents(url: &str) -> BTreeMap<String, Stored> {
    // (id, kind, client, events, last_seen in ms), whatever the dialect.
    let rows: Vec<(String, String, String, i64, i64)> = block_on(async {
        if is_postgres(url) {
            let pool = sqlx::PgPool::connect(url).await.expect("connect");
            let rows: Vec<(String, String, String, i64, chrono::DateTime<chrono::Utc>)> =
                sqlx::query_as("SELECT id::text, kind, client, events, last_seen FROM incidents")
                    .fetch_all(&pool)
                    .await
                    .expect("read incidents");
            pool.close().await;
            rows.into_iter()
                .map(|(id, k, c, e, last)| (id, k, c, e, last.timestamp_millis()))
                .collect()
        } else {
            let pool = sqlx::SqlitePool::connect(url).await.expect("connect");
            let rows: Vec<(String, String, String, i64, String)> =
                sqlx::query_as("SELECT id, kind, client, events, last_seen FROM incidents")
                    .fetch_all(&pool)
                    .await
                    .expect("read incidents");
            pool.close().await;
            rows.into_iter()
                .map(|(id, k, c, e, last)| (id, k, c, e, millis(&last)))
                .collect()
        }
    });
    rows.into_iter()
        .map(|(id, kind, client, events, last_seen_ms)| {
            let s = Stored {
                kind,
                client,
                events,
                last_seen_ms,
            };
            (id, s)
        })
        .collect()
}

/// The stored incidents are exactly the latest printed versions.
fn assert_stored_as_printed(url: &str, printed: &BTreeMap<String, Value>) {
    let stored = stored_incidents(url);
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        printed.keys().collect::<Vec<_>>(),
        "{} rows stored for {} distinct ids printed",
        stored.len(),
        printed.len()
    );
    for (id, v) in printed {
        assert_eq!(stored[id], Stored::from_printed(v), "incident {id}");
    }
}

/// User tables in the database, read with sqlx.
fn tables(url: &str) -> BTreeSet<String> {
    block_on(async {
        let names: Vec<(String,)> = if is_postgres(url) {
            let pool = sqlx::PgPool::connect(url).await.expect("connect");
            let names = sqlx::query_as(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
            )
            .fetch_all(&pool)
            .await
            .expect("list tables");
            pool.close().await;
            names
        } else {
            let pool = sqlx::SqlitePool::connect(url).await.expect("connect");
            let names = sqlx::query_as(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(&pool)
            .await
            .expect("list tables");
            pool.close().await;
            names
        };
        names.into_iter().map(|(n,)| n).collect()
    })
}

/// `_sqlx_migrations` as (version, success, installed_on): a second
/// `migrate` that re-ran anything would change `installed_on`.
fn applied_migrations(url: &str) -> Vec<(i64, bool, String)> {
    block_on(async {
        let sql = if is_postgres(url) {
            "SELECT version, success, installed_on::text FROM _sqlx_migrations ORDER BY version"
        } else {
            "SELECT version, success, CAST(installed_on AS TEXT) FROM _sqlx_migrations ORDER BY version"
        };
        if is_postgres(url) {
            let pool = sqlx::PgPool::connect(url).await.expect("connect");
            let rows = sqlx::query_as(sql).fetch_all(&pool).await.expect("read");
            pool.close().await;
            rows
        } else {
            let pool = sqlx::SqlitePool::connect(url).await.expect("connect");
            let rows = sqlx::query_as(sql).fetch_all(&pool).await.expect("read");
            pool.close().await;
            rows
        }
    })
}

/// What the repository's migrations for `backend` define: their versions
/// and the tables they create (plus sqlx's bookkeeping table).
fn migrations_in_repo(backend: &str) -> (Vec<i64>, BTreeSet<String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let create = regex::Regex::new(r"(?i)CREATE TABLE\s+(?:IF NOT EXISTS\s+)?(\w+)").unwrap();
    let mut versions = Vec::new();
    let mut tables = BTreeSet::from(["_sqlx_migrations".to_string()]);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".sql") {
            continue;
        }
        let version = name.split('_').next().unwrap();
        versions.push(
            version
                .parse()
                .unwrap_or_else(|_| panic!("version of {name}")),
        );
        let sql = std::fs::read_to_string(&path).unwrap();
        tables.extend(create.captures_iter(&sql).map(|c| c[1].to_lowercase()));
    }
    versions.sort();
    assert!(!versions.is_empty(), "no migrations in {}", dir.display());
    (versions, tables)
}

fn migrate(url: &str) {
    let out = gatewatch()
        .env("GATEWATCH_DATABASE_URL", url)
        .arg("migrate")
        .output()
        .expect("run gatewatch migrate");
    assert!(
        out.status.success(),
        "gatewatch migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_migrate_is_idempotent(url: &str, backend: &str) {
    let (versions, expected_tables) = migrations_in_repo(backend);
    migrate(url);
    let first = applied_migrations(url);
    assert_eq!(
        first.iter().map(|m| m.0).collect::<Vec<_>>(),
        versions,
        "applied migrations"
    );
    assert!(first.iter().all(|m| m.1), "a failed migration: {first:?}");
    assert_eq!(tables(url), expected_tables, "tables after migrate");

    migrate(url);
    assert_eq!(
        applied_migrations(url),
        first,
        "the second migrate re-applied something"
    );
    assert_eq!(
        tables(url),
        expected_tables,
        "tables after a second migrate"
    );
}

#[test]
fn migrate_is_idempotent_on_a_fresh_sqlite_file() {
    let dir = TempDir::new("cli-migrate");
    let db = dir.path("fresh.db");
    assert_migrate_is_idempotent(&format!("sqlite://{}", db.display()), "sqlite");
    assert!(db.exists(), "migrate did not create {}", db.display());
}

#[test]
fn migrate_is_idempotent_on_a_fresh_postgres_database() {
    let db = block_on(TestDb::postgres());
    assert_migrate_is_idempotent(db.url(), "postgres");
}

/// `replay --store` into a fresh database stores what it prints; a second
/// replay of the same log adds nothing (ids are fingerprints).
fn assert_replay_store_keeps_what_it_prints(url: &str) {
    let dir = TempDir::new("cli-store");
    let (log, labels, _) = eval_log(&dir);
    let store = || {
        let out = gatewatch()
            .env("GATEWATCH_DATABASE_URL", url)
            .args(["replay", "--store", "--format", "nginx_combined"])
            .arg(&log)
            .output()
            .expect("run gatewatch replay --store");
        assert!(
            out.status.success(),
            "gatewatch replay --store failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        latest_by_id(&json_lines(&out.stdout))
    };
    let printed = store();
    assert_found_exactly_the_attacks(&labels, &printed);
    assert_stored_as_printed(url, &printed);

    store();
    assert_stored_as_printed(url, &printed);
}

#[test]
fn replay_store_keeps_what_it_prints_in_sqlite() {
    let dir = TempDir::new("cli-store-db");
    assert_replay_store_keeps_what_it_prints(&format!(
        "sqlite://{}",
        dir.path("store.db").display()
    ));
}

#[test]
fn replay_store_keeps_what_it_prints_in_postgres() {
    let db = block_on(TestDb::postgres());
    assert_replay_store_keeps_what_it_prints(db.url());
}

// ---------------------------------------------------------------- run

/// How long `run` may take to drain and exit after SIGINT: the log is small
/// and the store is local, so seconds are plenty.
const DRAIN: Duration = Duration::from_secs(15);

/// `gatewatch run` on the embedded default (no config file): SQLite in its
/// directory, API and syslog on free loopback ports, console sink on stdout.
struct Service {
    child: Child,
    api: u16,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Arc<Mutex<String>>,
}

impl Service {
    /// Starts `gatewatch run ARGS` in `dir` and waits until it is running.
    fn start(dir: &TempDir, db_url: &str, args: &[&str], stdin: Stdio) -> Service {
        let api = free_port();
        // Unused when inputs are given, but must not be the shared default.
        let syslog = free_port();
        let mut child = gatewatch()
            .current_dir(&dir.0)
            .env("GATEWATCH_LOG", "info,gatewatch_alerting=warn")
            .env("GATEWATCH_DATABASE_URL", db_url)
            .env("GATEWATCH_API_ADDR", format!("127.0.0.1:{api}"))
            .env("GATEWATCH_SYSLOG_ADDR", format!("127.0.0.1:{syslog}"))
            .arg("run")
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gatewatch run");
        let mut out = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let log = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        let mut service = Service {
            child,
            api,
            stdout: Some(stdout),
            stderr,
        };
        service.wait_until("it runs", Duration::from_secs(30), |s| {
            s.log().contains("gatewatch is running")
        });
        service
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Polls `cond`; panics with the log when it times out or the process
    /// has exited.
    fn wait_until(&mut self, what: &str, timeout: Duration, cond: impl Fn(&Service) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond(self) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "gatewatch run exited ({status}) before {what}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "gatewatch run: not {what} within {timeout:?}:\n{}",
            self.log()
        );
    }

    /// Lines received so far, from `/metrics` (unauthenticated).
    fn lines_received(&self) -> Option<u64> {
        let mut conn = TcpStream::connect(("127.0.0.1", self.api)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        conn.read_to_string(&mut body).ok()?;
        body.lines()
            .filter(|l| l.starts_with("gatewatch_events_received_total{"))
            .map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<Option<f64>>()
            .map(|n| n as u64)
    }

    /// SIGINT, as Ctrl-C sends it (tests/support/live.rs covers SIGTERM).
    fn interrupt(&self) {
        let status = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT failed");
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Everything printed on stdout (once the process has exited).
    fn printed(&mut self) -> Vec<Value> {
        let out = self.stdout.take().expect("stdout read once");
        json_lines(&out.join().expect("stdout reader"))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `run` printed and stored is what `replay` finds in the same log.
fn assert_run_printed_and_stored(
    service: &mut Service,
    db_url: &str,
    log: &Path,
    labels: &[Label],
) {
    let printed = service.printed();
    let by_replay = latest_by_id(&json_lines(
        &replay(&["--format", "nginx_combined", path_str(log)]).stdout,
    ));
    let latest = latest_by_id(&printed);
    assert_found_exactly_the_attacks(labels, &latest);
    for v in &printed {
        assert!(
            v.as_object().is_some_and(|o| o.len() >= 10) && v["evidence"].is_object(),
            "not an incident in the replay format: {v}"
        );
    }
    assert_eq!(
        latest,
        by_replay,
        "run and replay disagree on the same log:\n{}",
        service.log()
    );
    assert_stored_as_printed(db_url, &latest);
}

#[test]
fn run_file_prints_stores_and_drains_on_sigint() {
    let dir = TempDir::new("cli-run-file");
    let (log, labels, lines) = eval_log(&dir);
    let db_url = format!("sqlite://{}", dir.path("x.db").display());
    let log_arg = path_str(&log).to_string();
    // A followed file never ends, so only the signal stops the run; what is
    // in flight when it arrives must still be stored.
    let mut service = run_file_to_sigint(
        &dir,
        &db_url,
        &["--format", "nginx_combined", &log_arg],
        lines,
    );
    assert!(
        service.log().contains("Shutting down"),
        "SIGINT was not taken as a shutdown:\n{}",
        service.log()
    );
    assert_run_printed_and_stored(&mut service, &db_url, &log, &labels);
}

#[test]
fn run_stdin_prints_stores_and_drains_on_sigint() {
    let dir = TempDir::new("cli-run-stdin");
    let (log, labels, lines) = eval_log(&dir);
    let db_url = format!("sqlite://{}", dir.path("x.db").display());
    let mut service = Service::start(
        &dir,
        &db_url,
        &["--format", "nginx_combined", "-"],
        Stdio::piped(),
    );
    // `tail -F access.log | gatewatch run -`: the writer stays, so stdin
    // never ends; the writer thread hands the pipe back to keep it open.
    let mut stdin = service.child.stdin.take().expect("stdin");
    let bytes = std::fs::read(&log).unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&bytes).expect("write the log into stdin");
        stdin
    });
    service.wait_until("reading every line", Duration::from_secs(30), |s| {
        s.lines_received() == Some(lines)
    });
    let stdin = writer.join().unwrap();
    service.interrupt();
    let in_time = service.wait_exit(DRAIN);
    // Closing stdin lets a process stuck on it finish, so that what it
    // printed and stored can still be checked before the hang is reported.
    drop(stdin);
    let status = match in_time {
        Some(status) => status,
        None => service
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| {
                panic!(
                    "gatewatch run - exited neither on SIGINT nor at end of input:\n{}",
                    service.log()
                )
            }),
    };
    assert!(
        status.success(),
        "exit {status} after SIGINT:\n{}",
        service.log()
    );
    assert_run_printed_and_stored(&mut service, &db_url, &log, &labels);
    assert!(
        in_time.is_some(),
        "gatewatch run - did not exit within {DRAIN:?} of SIGINT while its stdin stayed \
         open; it exited only once stdin was closed:\n{}",
        service.log()
    );
}

/// `gatewatch run` stopped with SIGINT half-way through a log and started
/// again: the second process takes back the first one's detector state
/// (`state_dir/detector-state.bin`) and its read position, and between them
/// they print and store what one replay of the whole log finds.
#[test]
fn run_restarted_mid_log_carries_detector_state() {
    let dir = TempDir::new("cli-run-restart");
    let (whole, labels, _) = eval_log(&dir);
    let text = std::fs::read_to_string(&whole).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(lines.len() * 9 / 20);
    let log = dir.path("access.log");
    std::fs::write(&log, first.join("\n") + "\n").unwrap();
    let db_url = format!("sqlite://{}", dir.path("x.db").display());
    let args = ["--format", "nginx_combined", path_str(&log)];

    let mut before = run_file_to_sigint(&dir, &db_url, &args, first.len() as u64);
    let state = dir.path("gatewatch-state").join("detector-state.bin");
    assert!(state.exists(), "no state saved:\n{}", before.log());
    let mut printed = before.printed();

    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all((second.join("\n") + "\n").as_bytes()).unwrap();
    let mut after = run_file_to_sigint(&dir, &db_url, &args, second.len() as u64);
    assert!(
        after.log().contains("Detector state taken back"),
        "{}",
        after.log()
    );
    // Saved again at the second stop; the copy taken back is gone.
    assert!(state.exists() && !state.with_extension("taken").exists());
    printed.extend(after.printed());
    let latest = latest_by_id(&printed);
    assert_found_exactly_the_attacks(&labels, &latest);
    let by_replay = latest_by_id(&json_lines(
        &replay(&["--format", "nginx_combined", path_str(&whole)]).stdout,
    ));
    assert_eq!(latest, by_replay, "the restart changed what was found");
    assert_stored_as_printed(&db_url, &latest);
}

/// A stop that leaves batches unacknowledged saves no detector state: the
/// file source gives up waiting for them (`shutdown_ack_timeout_ms`) and
/// will read them again after the restart, so a state that has counted
/// them would count them twice. The store is held up by a lock on the
/// incidents table, so that the batches cannot be acknowledged in time.
#[test]
fn a_stop_with_unacknowledged_batches_saves_no_state() {
    let dir = TempDir::new("cli-run-unsettled");
    let (log, _, _) = eval_log(&dir);
    let db = block_on(TestDb::postgres());
    migrate(db.url());
    let config = dir.path("gatewatch.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\ntype = \"file\"\npaths = [{:?}]\nformat = \"nginx_combined\"\n\
             shutdown_ack_timeout_ms = 300\n\n[console]\nenabled = true\n",
            path_str(&log)
        ),
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut lock = runtime.block_on(async {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(db.url())
            .await
            .unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        // Writes wait; reads (`/metrics`) do not.
        sqlx::query("LOCK TABLE incidents IN EXCLUSIVE MODE")
            .execute(&mut conn)
            .await
            .unwrap();
        conn
    });
    let mut service = Service::start(
        &dir,
        db.url(),
        &["--config", path_str(&config)],
        Stdio::null(),
    );
    // The first finding waits for the lock, and the batches behind it fill
    // the pipeline until the source stops reading.
    let seen = std::cell::Cell::new(None);
    service.wait_until("the pipeline backs up", Duration::from_secs(30), |s| {
        std::thread::sleep(Duration::from_millis(500));
        let now = s.lines_received().filter(|&n| n > 0);
        now.is_some() && seen.replace(now) == now
    });
    service.interrupt();
    service.wait_until("giving up the state", Duration::from_secs(30), |s| {
        s.log().contains("Detector state not saved")
    });
    runtime.block_on(async {
        sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    });
    let status = service
        .wait_exit(DRAIN)
        .expect("exit after the lock is gone");
    assert!(status.success(), "{}", service.log());
    let state = dir.path("gatewatch-state").join("detector-state.bin");
    assert!(!state.exists(), "{}", service.log());
    assert!(
        !service.printed().is_empty(),
        "the findings were stored in the end"
    );
}

/// `gatewatch run FILE` to SIGINT: waits until every line of `log` is read,
/// interrupts, and returns the service once it has exited cleanly.
fn run_file_to_sigint(dir: &TempDir, db_url: &str, args: &[&str], lines: u64) -> Service {
    let mut service = Service::start(dir, db_url, args, Stdio::null());
    service.wait_until("reading every line", Duration::from_secs(30), |s| {
        s.lines_received() == Some(lines)
    });
    service.interrupt();
    let status = service.wait_exit(DRAIN).unwrap_or_else(|| {
        panic!(
            "gatewatch run did not exit within {DRAIN:?} of SIGINT:\n{}",
            service.log()
        )
    });
    assert!(
        status.success(),
        "exit {status} after SIGINT:\n{}",
        service.log()
    );
    service
}

/// `[console] enabled = false` in a config file silences `run`'s console
/// sink (not one line on stdout) while every incident is still stored; the
/// default without a config file is on (src/commands/run.rs).
#[test]
fn the_console_sink_can_be_switched_off() {
    // Without a config file the console sink is on: every incident is
    // printed, and stored as printed.
    let on_dir = TempDir::new("cli-console-on");
    let (log, labels, lines) = eval_log(&on_dir);
    let on_url = format!("sqlite://{}", on_dir.path("x.db").display());
    let log_arg = path_str(&log).to_string();
    let args = ["--format", "nginx_combined", log_arg.as_str()];
    let mut on = run_file_to_sigint(&on_dir, &on_url, &args, lines);
    let printed = latest_by_id(&on.printed());
    assert_found_exactly_the_attacks(&labels, &printed);
    assert_stored_as_printed(&on_url, &printed);

    // `[console] enabled = false`: the same log (read from a directory of
    // its own, so that no file checkpoint is shared) gives not one line on
    // stdout, and the very same incidents in the database.
    let off_dir = TempDir::new("cli-console-off");
    let config = off_dir.path("gatewatch.toml");
    std::fs::write(&config, "[console]\nenabled = false\n").expect("write config");
    let off_url = format!("sqlite://{}", off_dir.path("x.db").display());
    let args = [
        "--config",
        path_str(&config),
        "--format",
        "nginx_combined",
        log_arg.as_str(),
    ];
    let mut off = run_file_to_sigint(&off_dir, &off_url, &args, lines);
    let stdout = off
        .stdout
        .take()
        .expect("stdout read once")
        .join()
        .expect("stdout reader");
    assert!(
        stdout.is_empty(),
        "printed with the console sink off:\n{}",
        String::from_utf8_lossy(&stdout)
    );
    let stored = stored_incidents(&off_url);
    assert_eq!(
        stored.len(),
        printed.len(),
        "incidents stored with the console sink off:\n{}",
        off.log()
    );
    assert_eq!(
        stored,
        stored_incidents(&on_url),
        "the console sink changed what is stored"
    );
}
