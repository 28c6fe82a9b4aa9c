//! `gatewatch token create|list|revoke` as a script uses it, and the API
//! served over TLS.
//!
//! Needs PostgreSQL and the `openssl` command (for a throwaway certificate).

#[path = "support/api_app.rs"]
mod api_app;

use api_app::api;
use gatewatch_alerting::testing::TestDb;
use std::path::PathBuf;
use std::process::Command;
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
