//! Real stand-ins for the receivers: an HTTP server (Slack, webhooks) and an
//! SMTP server (Debian's aiosmtpd), one per test, on 127.0.0.1.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How the HTTP receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// 200 `ok`.
    Ok,
    /// This status, empty body.
    Status(u16),
    /// 429 with `Retry-After: <secs>`.
    RetryAfter(u64),
    /// Never answers (a receiver that hangs).
    Hang,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// When it arrived.
    pub at: Instant,
    /// Request path.
    pub path: String,
    /// Headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct Shared {
    requests: Vec<Recorded>,
    script: VecDeque<Reply>,
    default: Option<Reply>,
}

type SharedState = Arc<Mutex<Shared>>;

async fn handle(
    State(state): State<SharedState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut s = state.lock().unwrap();
        s.requests.push(Recorded {
            at: Instant::now(),
            path: uri.path().to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
        });
        let default = s.default.unwrap_or(Reply::Ok);
        s.script.pop_front().unwrap_or(default)
    };
    match reply {
        Reply::Ok => (StatusCode::OK, "ok").into_response(),
        Reply::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Reply::RetryAfter(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            "slow down",
        )
            .into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(300)).await;
            StatusCode::OK.into_response()
        }
    }
}

/// An HTTP server recording every request, answering per a script.
pub struct Receiver {
    addr: SocketAddr,
    state: SharedState,
    stop: Option<oneshot::Sender<()>>,
}

impl Receiver {
    /// Starts on a free port.
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = SharedState::default();
        let mut r = Receiver {
            addr: listener.local_addr().unwrap(),
            state,
            stop: None,
        };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: TcpListener) {
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&self.state));
        let (tx, rx) = oneshot::channel::<()>();
        self.stop = Some(tx);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
    }

    /// `http://127.0.0.1:port/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Stops listening (connections are refused until [`Receiver::restart`]).
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        // Wait until the port refuses connections.
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(self.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the receiver did not stop");
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        let mut last = None;
        for _ in 0..200 {
            match TcpListener::bind(self.addr).await {
                Ok(l) => {
                    self.serve(l);
                    return;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("cannot rebind {}: {last:?}", self.addr);
    }

    /// The answer once the script is used up.
    pub fn set_default(&self, reply: Reply) {
        self.state.lock().unwrap().default = Some(reply);
    }

    /// Answers to give, in order, before the default.
    pub fn script(&self, replies: &[Reply]) {
        self.state
            .lock()
            .unwrap()
            .script
            .extend(replies.iter().copied());
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let start = Instant::now();
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < timeout,
                "waited {timeout:?} for {n} requests, got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A real SMTP server (aiosmtpd) writing each mail as JSON (see
/// `alerting/tests/support/smtp_sink.py`).
pub struct SmtpSink {
    pub port: u16,
    dir: PathBuf,
    child: tokio::process::Child,
}

/// How a [`SmtpSink`] secures its connections and who may send.
pub struct SmtpTls<'a> {
    /// `starttls` or `implicit`.
    pub mode: &'a str,
    pub cert_pem: &'a Path,
    pub key_pem: &'a Path,
    pub user: &'a str,
    pub password: &'a str,
}

impl SmtpSink {
    /// A plain server taking any mail (a local relay).
    pub async fn start() -> SmtpSink {
        Self::start_with(None).await
    }

    /// A server that requires TLS (`tls.mode`) and AUTH as `tls.user`.
    pub async fn start_tls(tls: SmtpTls<'_>) -> SmtpSink {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<SmtpTls<'_>>) -> SmtpSink {
        let dir = std::env::temp_dir().join(format!("gw_smtp_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let support = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support");
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            // Debian's interpreter: the python3 first on PATH may lack aiosmtpd.
            let mut cmd = tokio::process::Command::new("/usr/bin/python3");
            match &tls {
                None => cmd
                    .args(["-m", "aiosmtpd", "-n", "-l"])
                    .arg(format!("127.0.0.1:{port}"))
                    .args(["-c", "smtp_sink.JsonSink"])
                    .arg(&dir),
                Some(t) => cmd
                    .args(["-m", "smtp_tls_server", t.mode, &port.to_string()])
                    .args([t.cert_pem, t.key_pem])
                    .args([t.user, t.password])
                    .arg(&dir),
            };
            let mut child = cmd
                .env("PYTHONPATH", &support)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("start aiosmtpd (apt-get install python3-aiosmtpd; scripts/dev-services)");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return SmtpSink { port, dir, child };
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill().await;
        }
        panic!("aiosmtpd did not start");
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Mails received so far, in arrival order.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        crate::testing::json_files(&self.dir)
    }

    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let start = Instant::now();
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < timeout,
                "waited for {n} mails, got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A mail header's value (first of that name, case-insensitive).
pub fn mail_header<'a>(mail: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    mail["headers"]
        .as_array()?
        .iter()
        .find_map(|h| (h[0].as_str()?.eq_ignore_ascii_case(name)).then(|| h[1].as_str())?)
}
