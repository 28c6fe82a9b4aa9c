//! End to end through the built `gatewatch` binary, for the notification
//! outbox as an operator meets it: real channels, real receivers, a crash.
//!
//! * `channels_from_the_environment_survive_a_sigkill_between_commit_and_send`:
//!   Slack, a signed webhook and email configured only by `GATEWATCH_*`
//!   variables, receivers failing (Slack not listening, webhook 503, SMTP
//!   451), `gatewatch run FILE` on a fresh SQLite file is SIGKILLed after
//!   its incidents and their notifications are committed and each
//!   notification has failed at least once; a restart on the same database
//!   and file (receivers fixed, nothing left to read) delivers each of them
//!   exactly once, under the delivery id it had before the crash, with a
//!   webhook signature that verifies and mail sent with AUTH; neither run's
//!   stderr (at `trace`) ever shows the webhook secret, the Slack URL's
//!   token, the webhook URL's key or the SMTP password.
//! * `dead_letters_are_listed_and_requeued_over_the_api`: a TOML file makes
//!   retries short; a webhook answering 400 (permanent) and one answering
//!   503 past `retry.max_attempts` leave dead letters, which the API lists
//!   (with channel and error, without any URL or secret) to an admin token
//!   made by `gatewatch token create`; requeued over the API once the
//!   receiver is fixed, they are delivered with their old delivery id and
//!   body, and the API no longer lists them.
//!
//! Needs: python3-aiosmtpd at `/usr/bin/python3` (the SMTP receiver,
//! `alerting/tests/support/smtp_sink.py` with AUTH added inline below),
//! PostgreSQL for the second test (`scripts/dev-services`, or
//! `GATEWATCH_TEST_DATABASE_URL`), free loopback ports. The HTTP receiver
//! is a small axum server in this file that records every request. The log
//! is two attacks cut from `gatewatch-loggen`'s labelled scenario, so every
//! expectation follows from the labels and from what gatewatch printed.

mod support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use gatewatch_alerting::testing::TestDb;
use gatewatch_loggen::{generate, render, Label, LogFormat, Scenario};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::live::{free_port, Running};
use support::{gatewatch, matches, TempDir};
use tokio::runtime::Runtime;

// ---------------------------------------------------------------- the log

/// The two attacks the log keeps from the labelled scenario: one that
/// escalates (a brute force: medium, then high) and one that does not.
const ATTACKS: [&str; 2] = ["brute_force", "sensitive_files"];

/// Writes the two attacks of [`ATTACKS`] as nginx `combined` to `path`;
/// returns their labels and the log's length in bytes.
///
/// Only those attackers' requests are kept (no background traffic, so no
/// other incident), and the file scan is moved to start a minute after the
/// brute force: in the scenario they are 70 minutes of event time apart,
/// which would let the auto-resolver close the first one mid-test. Three
/// notifications per channel stay under the default rate limit (a burst of
/// 5), so nothing waits a minute for a digest.
fn two_attack_log(path: &Path) -> (Vec<Label>, u64) {
    let generated = generate(&Scenario::eval(42, 0));
    let labels: Vec<Label> = ATTACKS
        .iter()
        .map(|name| {
            generated
                .labels
                .iter()
                .find(|l| l.name == *name)
                .unwrap_or_else(|| panic!("the scenario has no {name} label"))
                .clone()
        })
        .collect();
    let (brute, scanner) = (&labels[0].client, &labels[1].client);
    let mut kept: Vec<_> = generated
        .requests
        .filter(|r| r.ip.to_string() == *brute || r.ip.to_string() == *scanner)
        .collect();
    let first = |ip: &str| {
        kept.iter()
            .filter(|r| r.ip.to_string() == ip)
            .map(|r| r.ts_ms)
            .min()
            .unwrap_or_else(|| panic!("no request from {ip}"))
    };
    let shift = first(scanner) - (first(brute) + 60_000);
    for r in kept.iter_mut().filter(|r| r.ip.to_string() == *scanner) {
        r.ts_ms -= shift;
    }
    kept.sort_by_key(|r| r.ts_ms);
    let mut bytes = Vec::new();
    for r in &kept {
        render(r, LogFormat::NginxCombined, &mut bytes);
    }
    std::fs::write(path, &bytes).expect("write the log");
    (labels, bytes.len() as u64)
}

/// Severity rank, for the routing model below.
fn rank(severity: &str) -> u8 {
    match severity {
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        "critical" => 4,
        other => panic!("unknown severity {other:?}"),
    }
}

/// What a channel with the default route (`min_severity = "medium"`, on
/// open and escalation) must announce for the incident versions `printed`
/// (in print order): `(incident id, event)` with how many times.
fn expected_notifications(printed: &[Value]) -> BTreeMap<(String, String), usize> {
    let mut last: BTreeMap<String, u8> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for v in printed {
        let id = v["id"].as_str().expect("incident id").to_owned();
        let sev = rank(v["severity"].as_str().expect("severity"));
        let event = match last.insert(id.clone(), sev) {
            None => Some("opened"),
            Some(before) if sev > before => Some("escalated"),
            Some(_) => None,
        };
        if let Some(event) = event.filter(|_| sev >= rank("medium")) {
            *out.entry((id, event.to_owned())).or_insert(0) += 1;
        }
    }
    out
}

/// Offset the file source has checkpointed for the log in `state_dir`
/// (`gatewatch-state/file-checkpoints.json` under the run's directory).
fn checkpointed_offset(state_dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(state_dir.join("file-checkpoints.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["files"]
        .as_array()?
        .iter()
        .map(|f| f["offset"].as_u64())
        .max()?
}

// ---------------------------------------------------------------- HTTP receiver

/// One request the HTTP receiver got, and how it answered.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    answered: u16,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("request to {} without {name}: {self:?}", self.path))
    }

    fn delivery_id(&self) -> String {
        self.header("x-gatewatch-delivery").to_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct ReceiverState {
    requests: Vec<Received>,
    /// Status to answer per path prefix; 200 when none matches.
    answers: Vec<(String, u16)>,
}

type Shared = Arc<Mutex<ReceiverState>>;

async fn record(
    State(state): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let path = uri.path().to_owned();
    let answered = s
        .answers
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        .map_or(200, |(_, status)| *status);
    s.requests.push(Received {
        path,
        headers: headers
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), v)
            })
            .collect(),
        body: body.to_vec(),
        answered,
    });
    let status = StatusCode::from_u16(answered).expect("a status");
    // A short reason, as Slack's `invalid_payload` or a proxy's page: it
    // ends up in the outbox's last_error.
    let text = if status.is_success() {
        "ok"
    } else {
        "receiver says no"
    };
    (status, text).into_response()
}

/// A local HTTP server standing in for Slack and webhook endpoints: records
/// every request, answers per path prefix.
struct HttpReceiver {
    addr: SocketAddr,
    state: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl HttpReceiver {
    /// Starts on a free port.
    fn start(rt: &Runtime) -> HttpReceiver {
        Self::start_on(rt, 0)
    }

    /// Starts on `port` of 127.0.0.1 (0: any), retrying for a while if
    /// the port is still taken.
    fn start_on(rt: &Runtime, port: u16) -> HttpReceiver {
        let mut tries = 0;
        let listener = loop {
            match rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port))) {
                Ok(l) => break l,
                Err(_) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot bind the HTTP receiver to port {port}: {e}"),
            }
        };
        let addr = listener.local_addr().unwrap();
        let state = Shared::default();
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        HttpReceiver {
            addr,
            state,
            stop: Some(tx),
        }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// Answers `status` to requests whose path starts with `prefix` (the
    /// latest setting for a prefix wins).
    fn answer(&self, prefix: &str, status: u16) {
        let mut s = self.state.lock().unwrap();
        s.answers.retain(|(p, _)| p != prefix);
        s.answers.insert(0, (prefix.to_owned(), status));
    }

    /// Requests so far whose path starts with `prefix`.
    fn requests(&self, prefix: &str) -> Vec<Received> {
        let s = self.state.lock().unwrap();
        s.requests
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

// ---------------------------------------------------------------- SMTP receiver

/// aiosmtpd with the JSON sink of `alerting/tests/support/smtp_sink.py`,
/// plus what `python3 -m aiosmtpd` cannot do from its command line: AUTH
/// required over plain text (gatewatch allows a password in clear only to
/// loopback), and `451` to every mail while the file `FAIL` exists.
const SMTP_SERVER: &str = r#"
import os, signal, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from smtp_sink import JsonSink

port, directory, user, password, fail_flag = sys.argv[1:6]

class Sink(JsonSink):
    async def handle_DATA(self, server, session, envelope):
        if os.path.exists(fail_flag):
            return "451 4.3.0 Mailbox busy, try again later"
        return await super().handle_DATA(server, session, envelope)

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode() == user
          and auth_data.password.decode() == password)
    return AuthResult(success=ok, auth_data=user if ok else None)

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
controller = Controller(Sink(directory), hostname="127.0.0.1", port=int(port),
                        auth_required=True, auth_require_tls=False,
                        authenticator=authenticator)
controller.start()
signal.sigwait({signal.SIGTERM, signal.SIGINT})
controller.stop()
"#;

/// A real SMTP server on loopback that requires AUTH and can be told to
/// refuse mail for a while.
struct SmtpReceiver {
    port: u16,
    dir: PathBuf,
    fail_flag: PathBuf,
    child: Child,
}

impl SmtpReceiver {
    fn start(dir: &Path, user: &str, password: &str) -> SmtpReceiver {
        let mails = dir.join("mails");
        std::fs::create_dir_all(&mails).unwrap();
        let fail_flag = dir.join("smtp-fail");
        let support = Path::new(env!("CARGO_MANIFEST_DIR")).join("alerting/tests/support");
        for _ in 0..5 {
            let port = free_port();
            // Debian's interpreter: the python3 first on PATH may lack aiosmtpd.
            let mut child = Command::new("/usr/bin/python3")
                .arg("-c")
                .arg(SMTP_SERVER)
                .arg(port.to_string())
                .arg(&mails)
                .args([user, password])
                .arg(&fail_flag)
                .env("PYTHONPATH", &support)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start aiosmtpd (apt-get install python3-aiosmtpd; scripts/dev-services)");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return SmtpReceiver {
                        port,
                        dir: mails,
                        fail_flag,
                        child,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("aiosmtpd did not start");
    }

    /// Refuses every mail with a transient `451` (or stops refusing).
    fn set_failing(&self, failing: bool) {
        if failing {
            std::fs::write(&self.fail_flag, b"").unwrap();
        } else {
            std::fs::remove_file(&self.fail_flag).unwrap();
        }
    }

    /// Mails accepted so far, in arrival order.
    fn mails(&self) -> Vec<Value> {
        gatewatch_alerting::testing::json_files(&self.dir)
    }
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A mail header's value (first of that name, case-insensitive).
fn mail_header<'a>(mail: &'a Value, name: &str) -> &'a str {
    mail["headers"]
        .as_array()
        .and_then(|hs| {
            hs.iter().find_map(|h| {
                h[0].as_str()
                    .filter(|k| k.eq_ignore_ascii_case(name))
                    .and(h[1].as_str())
            })
        })
        .unwrap_or_else(|| panic!("mail without {name}: {}", mail["raw_headers"]))
}

// ---------------------------------------------------------------- the database

/// One outbox row, read with sqlx (not through gatewatch).
#[derive(Clone, Debug)]
struct OutboxRow {
    delivery_id: String,
    channel: String,
    event: String,
    incident_id: Option<String>,
    status: String,
    attempts: i64,
    claimed: bool,
    next_attempt_at: chrono::DateTime<chrono::Utc>,
    last_error: Option<String>,
}

type PgOutboxRow = (
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    bool,
    chrono::DateTime<chrono::Utc>,
    Option<String>,
);
type SqliteOutboxRow = (
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    bool,
    String,
    Option<String>,
);

enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    /// Connects to a database gatewatch has created and migrated.
    fn connect(rt: &Runtime, url: &str) -> Db {
        rt.block_on(async {
            if url.starts_with("postgres") {
                Db::Postgres(sqlx::PgPool::connect(url).await.expect("connect"))
            } else {
                use std::str::FromStr;
                let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                    .expect("a SQLite URL")
                    .busy_timeout(Duration::from_secs(10));
                Db::Sqlite(sqlx::SqlitePool::connect_with(opts).await.expect("connect"))
            }
        })
    }

    fn outbox(&self, rt: &Runtime) -> Vec<OutboxRow> {
        rt.block_on(async {
            match self {
                Db::Postgres(pool) => {
                    let rows: Vec<PgOutboxRow> = sqlx::query_as(
                        "SELECT delivery_id::text, channel, event, incident_id::text, status, \
                         attempts::bigint, claim_token IS NOT NULL, next_attempt_at, last_error \
                         FROM notification_outbox ORDER BY id",
                    )
                    .fetch_all(pool)
                    .await
                    .expect("read the outbox");
                    rows.into_iter()
                        .map(|r| OutboxRow {
                            delivery_id: r.0,
                            channel: r.1,
                            event: r.2,
                            incident_id: r.3,
                            status: r.4,
                            attempts: r.5,
                            claimed: r.6,
                            next_attempt_at: r.7,
                            last_error: r.8,
                        })
                        .collect()
                }
                Db::Sqlite(pool) => {
                    let rows: Vec<SqliteOutboxRow> = sqlx::query_as(
                        "SELECT delivery_id, channel, event, incident_id, status, attempts, \
                         claim_token IS NOT NULL, next_attempt_at, last_error \
                         FROM notification_outbox ORDER BY id",
                    )
                    .fetch_all(pool)
                    .await
                    .expect("read the outbox");
                    rows.into_iter()
                        .map(|r| OutboxRow {
                            delivery_id: r.0,
                            channel: r.1,
                            event: r.2,
                            incident_id: r.3,
                            status: r.4,
                            attempts: r.5,
                            claimed: r.6,
                            next_attempt_at: chrono::DateTime::parse_from_rfc3339(&r.7)
                                .unwrap_or_else(|e| panic!("next_attempt_at {:?}: {e}", r.7))
                                .to_utc(),
                            last_error: r.8,
                        })
                        .collect()
                }
            }
        })
    }

    /// Incident ids in the store.
    fn incident_ids(&self, rt: &Runtime) -> BTreeSet<String> {
        rt.block_on(async {
            let rows: Vec<(String,)> = match self {
                Db::Postgres(pool) => sqlx::query_as("SELECT id::text FROM incidents")
                    .fetch_all(pool)
                    .await
                    .expect("read incidents"),
                Db::Sqlite(pool) => sqlx::query_as("SELECT id FROM incidents")
                    .fetch_all(pool)
                    .await
                    .expect("read incidents"),
            };
            rows.into_iter().map(|(id,)| id).collect()
        })
    }

    fn close(self, rt: &Runtime) {
        rt.block_on(async {
            match self {
                Db::Postgres(pool) => pool.close().await,
                Db::Sqlite(pool) => pool.close().await,
            }
        })
    }
}

/// `(incident id, event)` of a channel's outbox rows, counted.
fn announced(rows: &[OutboxRow], channel: &str) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for r in rows.iter().filter(|r| r.channel == channel) {
        let incident = r.incident_id.clone().unwrap_or_default();
        *out.entry((incident, r.event.clone())).or_insert(0) += 1;
    }
    out
}

// ---------------------------------------------------------------- checks

/// HMAC-SHA256 (RFC 2104) written out here, so the test does not trust the
/// product's own signing code to check its signatures.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Checks a webhook request as `alerting/src/notify/webhook.rs` tells
/// receivers to: `X-Gatewatch-Signature` is `sha256=` + hex
/// HMAC-SHA256(secret, `{X-Gatewatch-Timestamp}.{raw body}`), the timestamp
/// is recent, and the body names the delivery and event of the headers.
fn assert_signed(r: &Received, secret: &str) {
    // RFC 4231 test case 2: the HMAC above is HMAC.
    assert_eq!(
        hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    let ts = r.header("x-gatewatch-timestamp");
    let mut signed = format!("{ts}.").into_bytes();
    signed.extend_from_slice(&r.body);
    let expected = format!("sha256={}", hex(&hmac_sha256(secret.as_bytes(), &signed)));
    assert_eq!(
        r.header("x-gatewatch-signature"),
        expected,
        "the signature does not verify with the secret: {r:?}"
    );
    let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().expect("Unix seconds");
    assert!((-5..300).contains(&age), "timestamp {ts} is {age} s old");
    assert_eq!(r.header("idempotency-key"), r.delivery_id(), "{r:?}");
    let body = r.json();
    assert_eq!(body["delivery_id"], r.delivery_id(), "{body}");
    assert_eq!(body["event"], r.header("x-gatewatch-event"), "{body}");
}

/// Fails if `text` (a log, an API answer) holds any of `secrets`.
fn assert_free_of(what: &str, text: &str, secrets: &[(&str, &str)]) {
    for (name, secret) in secrets {
        assert!(
            !text.contains(secret),
            "{what} holds the {name} ({secret}):\n{text}"
        );
    }
}

/// Polls `cond` until it holds; panics with `context()` otherwise.
fn wait_for(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "timed out after {timeout:?} waiting for {what}\n{}",
        context()
    );
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A fresh random word, so a leak cannot be a coincidence.
fn secret_word(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

// ---------------------------------------------------------------- crash and restart

#[test]
fn channels_from_the_environment_survive_a_sigkill_between_commit_and_send() {
    let rt = runtime();
    let dir = TempDir::new("live-notify-crash");
    let log = dir.path("access.log");
    let (labels, log_len) = two_attack_log(&log);
    let db_url = format!("sqlite://{}", dir.path("gw.db").display());

    let slack_token = secret_word("slackpathtoken");
    let hook_key = secret_word("hookroutingkey");
    let hook_secret = secret_word("hooksecret");
    let smtp_password = secret_word("smtppassword");
    // AUTH sends the password base64-encoded (LOGIN alone, PLAIN with the
    // user): a logged SMTP dialogue would show these forms.
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let login_b64 = b64(&smtp_password);
    let plain_b64 = b64(&format!("\0gw-mailer\0{smtp_password}"));
    let secrets = [
        ("Slack URL's path token", slack_token.as_str()),
        ("webhook URL's key", hook_key.as_str()),
        ("webhook secret", hook_secret.as_str()),
        ("SMTP password", smtp_password.as_str()),
        ("SMTP password (AUTH LOGIN)", login_b64.as_str()),
        ("SMTP password (AUTH PLAIN)", plain_b64.as_str()),
    ];

    // Receivers down, each its own way, so every notification stays pending
    // after its first attempts: nothing listens on Slack's port (connection
    // refused), the webhook answers 503, the mail server 451.
    let slack_port = free_port();
    let http = HttpReceiver::start(&rt);
    http.answer("/", 503);
    let smtp = SmtpReceiver::start(&dir.0, "gw-mailer", &smtp_password);
    smtp.set_failing(true);

    let env = |api: u16| -> Vec<(&'static str, String)> {
        vec![
            // The most verbose level: a secret in any debug or trace line of
            // gatewatch or its libraries (HTTP client, SQL) counts too.
            ("GATEWATCH_LOG", "trace".into()),
            ("GATEWATCH_DATABASE_URL", db_url.clone()),
            ("GATEWATCH_API_ADDR", format!("127.0.0.1:{api}")),
            // Unused with a file input, but must not be the shared default.
            (
                "GATEWATCH_SYSLOG_ADDR",
                format!("127.0.0.1:{}", free_port()),
            ),
            (
                "GATEWATCH_SLACK_WEBHOOK_URL",
                format!("http://127.0.0.1:{slack_port}/services/T0/B0/{slack_token}"),
            ),
            (
                "GATEWATCH_WEBHOOK_URL",
                http.url(&format!("/hook?key={hook_key}")),
            ),
            ("GATEWATCH_WEBHOOK_SECRET", hook_secret.clone()),
            (
                "GATEWATCH_SMTP_URL",
                format!(
                    "smtp://gw-mailer:{smtp_password}@127.0.0.1:{}?tls=none",
                    smtp.port
                ),
            ),
            ("GATEWATCH_EMAIL_FROM", "gatewatch@example.org".into()),
            ("GATEWATCH_EMAIL_TO", "soc@example.org".into()),
        ]
    };
    let args = ["--format", "nginx_combined", log.to_str().unwrap()];
    let state_dir = dir.path("gatewatch-state");

    // ---- first run: detect, commit, fail to send, SIGKILL.
    let first = Running::start(&dir.0, &env(free_port()), &args);
    for label in &labels {
        first.wait_for_incident(label.name.as_str(), Duration::from_secs(20), |v| {
            v["kind"] == label.expect.unwrap() && matches(label, v)
        });
    }
    // Every line acknowledged, so its incidents are stored and the restart
    // reads nothing again (the file source checkpoints only what is stored).
    wait_for(
        "the whole log to be checkpointed",
        Duration::from_secs(15),
        || checkpointed_offset(&state_dir) == Some(log_len),
        || first.log(),
    );
    let db = Db::connect(&rt, &db_url);
    // Kill only while no row is claimed and none is due within 500 ms: a row
    // claimed at the kill would wait out its 60 s lease after the restart
    // (that path is the worker's own tests'; here it would only be slow).
    // Every row must have had a failed attempt, on every channel.
    wait_for(
        "every notification to fail at least once, between two attempts",
        Duration::from_secs(20),
        || {
            let rows = db.outbox(&rt);
            let soon = chrono::Utc::now() + chrono::Duration::milliseconds(500);
            let channels: BTreeSet<&str> = rows.iter().map(|r| r.channel.as_str()).collect();
            channels == BTreeSet::from(["email", "slack", "webhook"])
                && rows.iter().all(|r| {
                    r.status == "pending"
                        && r.attempts >= 1
                        && !r.claimed
                        && r.next_attempt_at > soon
                })
        },
        || format!("{:#?}\n{}", db.outbox(&rt), first.log()),
    );
    let printed = first.incidents();
    let first_log = first.log();
    first.kill();
    // What the crash left, read once nothing can change it any more.
    let before_kill = db.outbox(&rt);
    assert!(
        before_kill
            .iter()
            .all(|r| r.status == "pending" && r.attempts >= 1 && !r.claimed),
        "the kill landed inside a claim (the test was stalled for 500 ms?): {before_kill:#?}"
    );

    // What was committed is what the routing calls for, per channel, and
    // nothing waits for a digest.
    let expected = expected_notifications(&printed);
    assert_eq!(
        expected.values().sum::<usize>(),
        3,
        "the two attacks should open two incidents and escalate one: {printed:#?}"
    );
    for channel in ["slack", "webhook", "email"] {
        assert_eq!(
            announced(&before_kill, channel),
            expected,
            "{channel}'s outbox rows against the printed incidents"
        );
    }
    for r in &before_kill {
        let error = r.last_error.as_deref().unwrap_or_default();
        let cause = match r.channel.as_str() {
            "email" => "451",
            "webhook" => "503",
            _ => "error sending request",
        };
        assert!(error.contains(cause), "{r:?}: last_error lacks {cause:?}");
        // A connection error is where an HTTP client names the URL.
        assert_free_of("an outbox last_error", error, &secrets);
        assert!(
            !error.contains("127.0.0.1"),
            "{r:?}: an address in last_error"
        );
    }
    let stored = db.incident_ids(&rt);
    assert_eq!(
        stored,
        printed
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_owned())
            .collect::<BTreeSet<String>>(),
        "stored incidents against the printed ones"
    );
    let failed: Vec<Received> = http.requests("/");
    assert!(
        !failed.is_empty() && failed.iter().all(|r| r.answered == 503),
        "the webhook got no failed attempt, or one was answered 200: {failed:?}"
    );
    assert!(smtp.mails().is_empty(), "a mail got through the 451s");

    // ---- second run: receivers fixed, same database, same file.
    let slack = HttpReceiver::start_on(&rt, slack_port);
    http.answer("/", 200);
    smtp.set_failing(false);
    let second = Running::start(&dir.0, &env(free_port()), &args);
    let mut after = Vec::new();
    wait_for(
        "every notification to be delivered after the restart",
        Duration::from_secs(20),
        || {
            after = db.outbox(&rt);
            after.iter().all(|r| r.status == "delivered")
                && smtp.mails().len() >= after.iter().filter(|r| r.channel == "email").count()
        },
        || format!("{:#?}\n{}", db.outbox(&rt), second.log()),
    );
    // Longer than the worker's poll interval (1 s): a duplicate send would
    // show up now.
    std::thread::sleep(Duration::from_millis(1500));
    let reprinted = second.incidents();
    let (clean, second_log) = second.terminate();
    assert!(clean, "the second run did not exit cleanly:\n{second_log}");
    let after_quiet = db.outbox(&rt);
    db.close(&rt);

    // Nothing new was enqueued by the restart: the same rows, delivered.
    let ids = |rows: &[OutboxRow]| -> Vec<String> {
        rows.iter().map(|r| r.delivery_id.clone()).collect()
    };
    assert_eq!(
        ids(&after_quiet),
        ids(&before_kill),
        "the outbox changed rows"
    );
    assert!(
        reprinted.is_empty(),
        "the restart read the log again and printed {reprinted:#?}"
    );
    let rows: BTreeMap<String, &OutboxRow> = after_quiet
        .iter()
        .map(|r| (r.delivery_id.clone(), r))
        .collect();

    // Slack and the webhook: every attempt that reached a receiver carried
    // its row's delivery id, before and after the crash; each id was
    // answered 200 exactly once. The webhook saw one request per recorded
    // attempt, so none went unrecorded; Slack only the successful one (its
    // failed attempts found no listener).
    for (channel, receiver) in [("slack", &slack), ("webhook", &http)] {
        let got = receiver.requests("/");
        let mut by_id: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
        for r in &got {
            by_id.entry(r.delivery_id()).or_default().push(r);
        }
        let want: BTreeSet<String> = after_quiet
            .iter()
            .filter(|r| r.channel == channel)
            .map(|r| r.delivery_id.clone())
            .collect();
        assert_eq!(
            by_id.keys().cloned().collect::<BTreeSet<_>>(),
            want,
            "{channel}: delivery ids received against the outbox"
        );
        for (id, reqs) in &by_id {
            let ok = reqs.iter().filter(|r| r.answered == 200).count();
            assert_eq!(ok, 1, "{channel}: delivery {id} accepted {ok} times");
            let seen = if channel == "slack" {
                1
            } else {
                rows[id].attempts
            };
            assert!(
                rows[id].attempts >= 2,
                "{channel}: {id} was not retried across the crash"
            );
            assert_eq!(
                reqs.len() as i64,
                seen,
                "{channel}: requests for {id} against its recorded attempts"
            );
            assert_eq!(
                reqs.last().unwrap().answered,
                200,
                "{channel}: {id} was sent again after it was accepted"
            );
            for r in reqs {
                assert_eq!(r.header("idempotency-key"), id, "{r:?}");
                let incident = rows[id].incident_id.as_deref().unwrap();
                assert!(
                    String::from_utf8_lossy(&r.body).contains(incident),
                    "{channel}: the message of {id} does not link incident {incident}"
                );
                if channel == "webhook" {
                    assert_signed(r, &hook_secret);
                    assert_eq!(r.json()["incident"]["id"], incident);
                    // The body is the same on every attempt, across the crash.
                    assert_eq!(r.body, reqs[0].body, "webhook {id}: the body changed");
                }
            }
        }
    }

    // Mail: one per row, as the configured user, each carrying its row's
    // delivery id; an incident's first mail starts its thread.
    let mails = smtp.mails();
    let mut mailed: BTreeMap<String, usize> = BTreeMap::new();
    for m in &mails {
        let id = mail_header(m, "X-Gatewatch-Delivery").to_owned();
        *mailed.entry(id.clone()).or_insert(0) += 1;
        let row = rows
            .get(&id)
            .unwrap_or_else(|| panic!("a mail for unknown delivery {id}"));
        assert_eq!(row.channel, "email");
        assert!(row.attempts >= 2, "{id} was not retried across the crash");
        assert_eq!(m["login"], "gw-mailer", "the mail was not sent with AUTH");
        assert_eq!(m["rcpt_tos"], serde_json::json!(["soc@example.org"]));
        assert_eq!(mail_header(m, "X-Gatewatch-Event"), row.event);
        let incident = row.incident_id.as_deref().unwrap();
        let message_id = mail_header(m, "Message-ID");
        if row.event == "opened" {
            assert_eq!(message_id, format!("<{incident}.incident@example.org>"));
        } else {
            assert_eq!(message_id, format!("<{id}.delivery@example.org>"));
            assert_eq!(
                mail_header(m, "In-Reply-To"),
                format!("<{incident}.incident@example.org>")
            );
        }
    }
    let want: BTreeMap<String, usize> = after_quiet
        .iter()
        .filter(|r| r.channel == "email")
        .map(|r| (r.delivery_id.clone(), 1))
        .collect();
    assert_eq!(mailed, want, "mails per delivery id");

    // No secret in either run's log, including the retry warnings.
    assert!(
        first_log.contains("Notification delivery failed; retrying."),
        "the first run logged no failed delivery:\n{first_log}"
    );
    assert_free_of("the first run's stderr", &first_log, &secrets);
    assert_free_of("the second run's stderr", &second_log, &secrets);
}

// ---------------------------------------------------------------- dead letters

/// `METHOD path` on the API with `token`; returns the status and the body.
fn call(rt: &Runtime, method: reqwest::Method, url: &str, token: Option<&str>) -> (u16, String) {
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("call the API");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("read the answer"))
    })
}

/// Dead letters as the API lists them.
fn dead_letters(rt: &Runtime, base: &str, token: &str) -> (String, Vec<Value>) {
    let (status, body) = call(
        rt,
        reqwest::Method::GET,
        &format!("{base}/api/v1/notifications/dead-letters"),
        Some(token),
    );
    assert_eq!(status, 200, "GET dead-letters: {body}");
    let list: Vec<Value> = serde_json::from_str(&body).expect("a JSON list");
    (body, list)
}

/// The value of one series (`name{labels}`) on a Prometheus text page.
fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn dead_letters_are_listed_and_requeued_over_the_api() {
    let rt = runtime();
    let pg = rt.block_on(TestDb::postgres());
    let db_url = pg.url().to_owned();
    let dir = TempDir::new("live-notify-dead");
    let log = dir.path("access.log");
    let (labels, _) = two_attack_log(&log);

    let http = HttpReceiver::start(&rt);
    // `soar` refuses for good (400: dead at the first attempt); `pager` is
    // down (503: retried until max_attempts, then dead).
    http.answer("/soar", 400);
    http.answer("/pager", 503);
    let soar_key = secret_word("soarroutingkey");
    let pager_key = secret_word("pagerpathkey");
    let soar_secret = secret_word("soarsecret");
    let pager_secret = secret_word("pagersecret");
    let soar_url = http.url(&format!("/soar?key={soar_key}"));
    let pager_url = http.url(&format!("/pager/{pager_key}"));
    let secrets = [
        ("soar URL's key", soar_key.as_str()),
        ("pager URL's key", pager_key.as_str()),
        ("soar secret", soar_secret.as_str()),
        ("pager secret", pager_secret.as_str()),
    ];
    // Retries are configurable only in the file: two attempts, 200 ms apart
    // at most, and a worker that looks every 100 ms.
    let config = dir.path("gatewatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[console]
enabled = true

[notifications.retry]
max_attempts = 2
initial_backoff_ms = 200
max_backoff_secs = 1

[notifications.worker]
poll_interval_ms = 100

[[notifications.channels]]
type = "webhook"
name = "soar"
url = "{soar_url}"
secret = "{soar_secret}"

[[notifications.channels]]
type = "webhook"
name = "pager"
url = "{pager_url}"
secret = "{pager_secret}"
"#
        ),
    )
    .unwrap();

    let api = free_port();
    let base = format!("http://127.0.0.1:{api}");
    let env: Vec<(&str, String)> = vec![
        ("GATEWATCH_LOG", "trace".into()),
        ("GATEWATCH_DATABASE_URL", db_url.clone()),
        ("GATEWATCH_API_ADDR", format!("127.0.0.1:{api}")),
        (
            "GATEWATCH_SYSLOG_ADDR",
            format!("127.0.0.1:{}", free_port()),
        ),
    ];
    let config_arg = config.to_str().unwrap();
    let run = Running::start(
        &dir.0,
        &env,
        &[
            "--config",
            config_arg,
            "--format",
            "nginx_combined",
            log.to_str().unwrap(),
        ],
    );
    for label in &labels {
        run.wait_for_incident(label.name.as_str(), Duration::from_secs(20), |v| {
            v["kind"] == label.expect.unwrap() && matches(label, v)
        });
    }
    let db = Db::connect(&rt, &db_url);
    let mut rows = Vec::new();
    wait_for(
        "six dead letters (three notifications on each channel)",
        Duration::from_secs(20),
        || {
            rows = db.outbox(&rt);
            rows.len() == 6 && rows.iter().all(|r| r.status == "dead")
        },
        || format!("{:#?}\n{}", db.outbox(&rt), run.log()),
    );
    let expected = expected_notifications(&run.incidents());
    for channel in ["soar", "pager"] {
        assert_eq!(announced(&rows, channel), expected, "{channel}'s rows");
    }
    // max_attempts holds: no third attempt once dead.
    std::thread::sleep(Duration::from_millis(500));
    for (channel, prefix, attempts) in [("soar", "/soar", 1), ("pager", "/pager", 2)] {
        for r in rows.iter().filter(|r| r.channel == channel) {
            let sent = http
                .requests(prefix)
                .iter()
                .filter(|q| q.delivery_id() == r.delivery_id)
                .count();
            assert_eq!(sent, attempts, "{channel}: attempts of {}", r.delivery_id);
            assert_eq!(r.attempts, attempts as i64, "{r:?}");
        }
    }

    // An admin token from the command line, against the running service's
    // database; the token is alone on the last line of stdout.
    let out = gatewatch()
        .env("GATEWATCH_DATABASE_URL", &db_url)
        .args(["token", "create", "--role", "admin", "--name", "t"])
        .output()
        .expect("run gatewatch token create");
    assert!(
        out.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout
        .lines()
        .last()
        .expect("a token line")
        .trim()
        .to_owned();

    // The list: every dead delivery with its channel, event, incident,
    // attempts and error; no URL, key or secret anywhere in the answer.
    let (status, _) = call(
        &rt,
        reqwest::Method::GET,
        &format!("{base}/api/v1/notifications/dead-letters"),
        None,
    );
    assert_eq!(status, 401, "dead letters without a token");
    let (raw, listed) = dead_letters(&rt, &base, &token);
    assert_free_of("the dead-letter list", &raw, &secrets);
    assert!(
        !raw.contains(&http.addr.to_string()),
        "a receiver URL in {raw}"
    );
    let by_id: BTreeMap<String, &Value> = listed
        .iter()
        .map(|d| (d["delivery_id"].as_str().unwrap().to_owned(), d))
        .collect();
    assert_eq!(
        by_id.keys().cloned().collect::<BTreeSet<_>>(),
        rows.iter()
            .map(|r| r.delivery_id.clone())
            .collect::<BTreeSet<_>>(),
        "listed dead letters against the outbox: {raw}"
    );
    for r in &rows {
        let d = by_id[&r.delivery_id];
        assert_eq!(d["channel"], r.channel.as_str(), "{d}");
        assert_eq!(d["event"], r.event.as_str(), "{d}");
        assert_eq!(d["incident_id"].as_str(), r.incident_id.as_deref(), "{d}");
        assert_eq!(d["attempts"], r.attempts, "{d}");
        assert!(d["finished_at"].is_string(), "{d}");
        let error = d["last_error"].as_str().unwrap_or_default();
        if r.channel == "soar" {
            assert!(error.contains("400"), "{d}");
        } else {
            assert!(
                error.contains("503") && error.contains("gave up after 2 attempts"),
                "{d}"
            );
        }
        assert!(
            error.contains("receiver says no"),
            "the receiver's words: {d}"
        );
    }

    // Fixed receivers; requeue every soar letter and one pager letter.
    http.answer("/soar", 200);
    http.answer("/pager", 200);
    let requeue = |id: &str, token: Option<&str>| {
        call(
            &rt,
            reqwest::Method::POST,
            &format!("{base}/api/v1/notifications/dead-letters/{id}/requeue"),
            token,
        )
        .0
    };
    let mut chosen: Vec<&OutboxRow> = rows.iter().filter(|r| r.channel == "soar").collect();
    let left_dead: Vec<&OutboxRow> = rows
        .iter()
        .filter(|r| r.channel == "pager")
        .skip(1)
        .collect();
    chosen.extend(rows.iter().filter(|r| r.channel == "pager").take(1));
    assert_eq!(
        requeue(&chosen[0].delivery_id, None),
        401,
        "requeue without a token"
    );
    for r in &chosen {
        assert_eq!(requeue(&r.delivery_id, Some(&token)), 204, "requeue {r:?}");
    }
    assert_eq!(requeue("not-a-uuid", Some(&token)), 400);

    let mut now_rows = Vec::new();
    wait_for(
        "the requeued notifications to be delivered",
        Duration::from_secs(15),
        || {
            now_rows = db.outbox(&rt);
            now_rows.iter().filter(|r| r.status == "delivered").count() == chosen.len()
        },
        || format!("{:#?}\n{}", db.outbox(&rt), run.log()),
    );
    // A delivered letter is no longer a dead letter to requeue.
    assert_eq!(requeue(&chosen[0].delivery_id, Some(&token)), 404);

    // Each requeued delivery arrived once more, accepted, under its old id,
    // with its old body, signed with its channel's secret.
    for r in &chosen {
        let (prefix, secret) = if r.channel == "soar" {
            ("/soar", &soar_secret)
        } else {
            ("/pager", &pager_secret)
        };
        let sent: Vec<Received> = http
            .requests(prefix)
            .into_iter()
            .filter(|q| q.delivery_id() == r.delivery_id)
            .collect();
        let accepted: Vec<&Received> = sent.iter().filter(|q| q.answered == 200).collect();
        assert_eq!(
            accepted.len(),
            1,
            "{} accepted {} times",
            r.delivery_id,
            accepted.len()
        );
        assert_eq!(
            sent.last().unwrap().answered,
            200,
            "{r:?} sent after acceptance"
        );
        for q in &sent {
            assert_signed(q, secret);
            assert_eq!(q.body, sent[0].body, "{}: the body changed", r.delivery_id);
        }
        let row = now_rows
            .iter()
            .find(|x| x.delivery_id == r.delivery_id)
            .unwrap();
        assert_eq!(row.status, "delivered", "{row:?}");
        assert_eq!(
            row.attempts, 1,
            "attempts restart from zero on requeue: {row:?}"
        );
    }
    // The ones left alone stay dead and unsent.
    for r in &left_dead {
        let row = now_rows
            .iter()
            .find(|x| x.delivery_id == r.delivery_id)
            .unwrap();
        assert_eq!(row.status, "dead", "{row:?}");
        let sent = http
            .requests("/pager")
            .iter()
            .filter(|q| q.delivery_id() == r.delivery_id)
            .count();
        assert_eq!(
            sent, 2,
            "{} was sent again without a requeue",
            r.delivery_id
        );
    }

    // The API agrees: only the untouched letters are dead; /metrics counts
    // the outbox by status and the worker's deliveries by channel.
    let (raw, listed) = dead_letters(&rt, &base, &token);
    assert_eq!(
        listed
            .iter()
            .map(|d| d["delivery_id"].as_str().unwrap().to_owned())
            .collect::<BTreeSet<_>>(),
        left_dead
            .iter()
            .map(|r| r.delivery_id.clone())
            .collect::<BTreeSet<_>>(),
        "dead letters after the requeue: {raw}"
    );
    let (status, page) = call(&rt, reqwest::Method::GET, &format!("{base}/metrics"), None);
    assert_eq!(status, 200);
    let delivered = chosen.len() as f64;
    assert_eq!(
        metric(&page, "gatewatch_notification_outbox{status=\"delivered\"}"),
        Some(delivered),
        "{page}"
    );
    assert_eq!(
        metric(&page, "gatewatch_notification_outbox{status=\"dead\"}"),
        Some(left_dead.len() as f64),
        "{page}"
    );
    assert_eq!(
        metric(
            &page,
            "gatewatch_notifications_total{channel=\"soar\",outcome=\"delivered\"}"
        ),
        Some(3.0),
        "{page}"
    );
    assert_free_of("/metrics", &page, &secrets);
    db.close(&rt);

    let (clean, log) = run.terminate();
    assert!(clean, "gatewatch run did not exit cleanly:\n{log}");
    assert!(
        log.contains("Dead letter requeued."),
        "the requeue was not logged:\n{log}"
    );
    assert_free_of("gatewatch run's stderr", &log, &secrets);
    drop(pg);
}
