//! `gatewatch token create|list|revoke` as a script uses it, and the API
//! served over TLS: by `api::serve` and by `gatewatch run` from the
//! `[api.tls]` section of its configuration file.
//!
//! Needs PostgreSQL and the `openssl` command (for a throwaway certificate).

#[path = "support/api_app.rs"]
mod api_app;
mod support;

use api_app::api;
use gatewatch_alerting::testing::TestDb;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::live::{free_port, Running};
use support::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn gatewatch(db: &TestDb, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["token"])
        .args(args)
        .env("GATEWATCH_DATABASE_URL", db.url())
        .env("GATEWATCH_LOG", "warn")
        .output()
        .expect("run gatewatch");
    assert!(
        out.status.success(),
        "gatewatch token {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A throwaway self-signed certificate for localhost and 127.0.0.1:
/// `dir/cert.pem` and `dir/key.pem`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl")
        .status
        .success();
    assert!(ok, "openssl could not make a certificate");
    (cert, key)
}

#[tokio::test]
async fn token_cli_creates_a_working_token_shown_once_then_revokes_it() {
    let db = TestDb::postgres().await;
    let out = gatewatch(&db, &["create", "--role", "analyst", "--name", "alice"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.lines().last().unwrap().to_owned();
    assert!(token.starts_with("gw_") && token.len() == 67, "{stdout}");
    assert_eq!(stdout.matches(&token).count(), 1, "shown exactly once");

    // The same name twice is refused; list never shows the secret.
    let again = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["token", "create", "--role", "viewer", "--name", "alice"])
        .env("GATEWATCH_DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(!again.status.success());
    let list = String::from_utf8(gatewatch(&db, &["list"]).stdout).unwrap();
    assert!(list.contains("alice") && list.contains("analyst") && list.contains("active"));
    assert!(!list.contains(&token[3..]));

    // The token works against the API on that database, as an analyst.
    let state = api::AppState::new(db.store().await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let server = tokio::spawn(api::serve(listener, state, None, stop.clone()));
    let http = reqwest::Client::new();
    let status = |path: &'static str| {
        let req = http.get(format!("{base}{path}")).bearer_auth(&token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/api/v1/incidents").await, 200);
    assert_eq!(status("/api/v1/tokens").await, 403);

    gatewatch(&db, &["revoke", "alice"]);
    assert_eq!(status("/api/v1/incidents").await, 401);
    let list = String::from_utf8(gatewatch(&db, &["list"]).stdout).unwrap();
    assert!(list.contains("revoked"));
    stop.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_api_serves_https_with_a_pem_certificate() {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = self_signed(&dir);

    let db = TestDb::postgres().await;
    let state = api::AppState::new(db.store().await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let tls = api::TlsConfig {
        cert_path: cert.clone(),
        key_path: key,
    };
    let server = tokio::spawn(api::serve(listener, state, Some(tls), stop.clone()));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let r = http
        .get(format!("https://127.0.0.1:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP to the TLS port gets no HTTP answer.
    assert!(reqwest::get(format!("http://{addr}/healthz"))
        .await
        .is_err());
    let r = http
        .get(format!(
            "https://127.0.0.1:{}/api/v1/incidents",
            addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    stop.cancel();
    server.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[api]` with `[api.tls]` (the keys of `config::ApiTlsConfig`) on
/// 127.0.0.1:`port`.
fn write_tls_config(path: &Path, port: u16, cert: &Path, key: &Path) {
    let toml = format!(
        "[api]\nlisten = \"127.0.0.1:{port}\"\n\n[api.tls]\ncert_path = '{}'\nkey_path = '{}'\n",
        cert.display(),
        key.display()
    );
    std::fs::write(path, toml).unwrap();
}

/// What a plain-HTTP request to `port` gets back before the server hangs
/// up (or 15 s pass; the TLS handshake timeout is 10 s).
async fn plain_http_answer(port: u16) -> Vec<u8> {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), conn.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the TLS port neither answered nor hung up");
    got
}

#[tokio::test]
async fn gatewatch_run_serves_https_from_the_config_file() {
    let dir = TempDir::new("run-tls");
    let (cert, key) = self_signed(&dir.0);
    let (port, syslog) = (free_port(), free_port());
    let config = dir.path("gatewatch.toml");
    write_tls_config(&config, port, &cert, &key);
    let db_url = format!("sqlite://{}", dir.path("gatewatch.db").display());
    // A token on the same fresh SQLite database, to reach the API proper.
    let out = support::gatewatch()
        .args(["token", "create", "--role", "viewer", "--name", "tls"])
        .env("GATEWATCH_DATABASE_URL", &db_url)
        .output()
        .unwrap();
    support::assert_success(&out);
    let token = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();

    let service = Running::start(
        &dir.0,
        &[
            ("GATEWATCH_DATABASE_URL", db_url),
            ("GATEWATCH_SYSLOG_ADDR", format!("127.0.0.1:{syslog}")),
        ],
        &["--config", config.to_str().unwrap()],
    );
    service.wait_for_log("API listening (HTTPS).", Duration::from_secs(30));

    // HTTPS with our certificate as the only root, and that certificate is
    // the one served.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .tls_info(true)
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let healthz = format!("https://127.0.0.1:{port}/healthz");
    let r = http
        .get(&healthz)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{healthz}: {e:?}\n{}", service.log()));
    assert_eq!(r.status(), 200);
    let served = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("the server's certificate")
        .to_vec();
    use rustls::pki_types::pem::PemObject;
    let ours = rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap();
    assert_eq!(served, ours.as_ref(), "a different certificate was served");
    // The API itself answers over TLS, backed by the configured database.
    let incidents = format!("https://127.0.0.1:{port}/api/v1/incidents");
    let r = http.get(&incidents).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(&incidents)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A client that does not trust the certificate is refused.
    let untrusting = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    assert!(untrusting.get(&healthz).send().await.is_err());
    // Plain HTTP on the same port gets no HTTP answer.
    let answer = plain_http_answer(port).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {}",
        String::from_utf8_lossy(&answer)
    );
    assert!(reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .is_err());

    let (clean, log) = service.terminate();
    assert!(clean, "gatewatch run did not exit cleanly:\n{log}");
    assert!(!log.contains("The API server failed"), "{log}");
}

/// An unreadable `[api.tls]` key stops `gatewatch run` at startup, naming
/// the file (it once ran on without an API and exited 0).
#[test]
fn gatewatch_run_fails_at_startup_when_the_tls_key_is_unreadable() {
    let dir = TempDir::new("run-tls-bad");
    let (cert, _key) = self_signed(&dir.0);
    let (port, syslog) = (free_port(), free_port());
    let config = dir.path("gatewatch.toml");
    write_tls_config(&config, port, &cert, &dir.path("missing-key.pem"));
    let stderr = std::fs::File::create(dir.path("stderr.log")).unwrap();
    let mut child = support::gatewatch()
        .current_dir(&dir.0)
        .env("GATEWATCH_LOG", "info")
        .env(
            "GATEWATCH_DATABASE_URL",
            format!("sqlite://{}", dir.path("gatewatch.db").display()),
        )
        .env("GATEWATCH_SYSLOG_ADDR", format!("127.0.0.1:{syslog}"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(dir.path("stderr.log")).unwrap();
    let status = status.unwrap_or_else(|| panic!("still running after 30 s:\n{log}"));
    assert!(!status.success(), "exited 0:\n{log}");
    assert!(log.contains("missing-key.pem"), "{log}");
    assert!(!log.contains("gatewatch is running"), "{log}");
}
