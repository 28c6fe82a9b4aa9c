//! The syslog source against real senders: util-linux `logger` (RFC 3164
//! and RFC 5424, UDP and TCP, newline and octet-counting framing), nginx's
//! and HAProxy's own syslog output, a rustls TLS client, and raw sockets for
//! the edge cases (over-long messages, many connections, a full queue).
#![cfg(feature = "syslog")]

use gatewatch_ingest::sources::syslog::{build, SyslogConfig, SyslogTlsConfig};
use gatewatch_ingest::sources::{BatchShape, SourceMetrics};
use gatewatch_ingest::{Origin, RecordBatch};
use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const SHAPE: BatchShape = BatchShape {
    max_line_bytes: 64 * 1024,
    batch_lines: 256,
};

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_port() -> u16 {
    loop {
        let tcp = StdTcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if StdUdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

struct Running {
    addr: SocketAddr,
    rx: mpsc::Receiver<RecordBatch>,
    metrics: Arc<SourceMetrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), gatewatch_ingest::sources::SourceError>>,
}

impl Running {
    /// Receives lines until `n` arrived or `within` passed.
    async fn lines(&mut self, n: usize, within: Duration) -> Vec<String> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while out.len() < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(b)) => {
                    assert!(b.ack.is_none(), "syslog batches carry no acknowledgement");
                    assert!(matches!(b.origin, Origin::Syslog { .. }));
                    out.extend(
                        (0..b.len()).map(|i| String::from_utf8_lossy(b.line(i)).into_owned()),
                    );
                }
                _ => break,
            }
        }
        out
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("source stops promptly")
            .unwrap()
            .unwrap();
    }
}

async fn start(config: SyslogConfig, channel: usize) -> Running {
    let metrics = SourceMetrics::new();
    let addr = config.address;
    let tcp = config.tcp;
    let src = build(config, 7, SHAPE, metrics.clone()).unwrap();
    let (tx, rx) = mpsc::channel(channel);
    let stop = CancellationToken::new();
    let task = tokio::spawn(src.run(tx, stop.clone()));
    if tcp {
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "listener did not come up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    } else {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Running {
        addr,
        rx,
        metrics,
        stop,
        task,
    }
}

fn config(port: u16) -> SyslogConfig {
    SyslogConfig {
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        ..SyslogConfig::default()
    }
}

fn logger(port: u16, args: &[&str], message: &str) {
    let status = Command::new("logger")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--tag",
            "gatewatch-test",
        ])
        .args(args)
        .arg("--")
        .arg(message)
        .status()
        .expect("util-linux logger is installed (scripts/dev-services)");
    assert!(status.success(), "logger {args:?} failed");
}

const NGINX_LINE: &str = r#"203.0.113.9 - alice [23/Nov/2025:10:00:00 +0000] "POST /login HTTP/1.1" 401 12 "-" "curl/8.0""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_over_udp_and_tcp_in_both_rfc_formats_and_framings() {
    let port = free_port();
    let mut s = start(config(port), 64).await;
    let cases: &[&[&str]] = &[
        &["--udp", "--rfc3164"],
        &["--udp", "--rfc5424"],
        &["--tcp", "--rfc3164"],
        &["--tcp", "--rfc5424"],
        &["--tcp", "--rfc5424", "--octet-count"],
        &["--tcp", "--rfc3164", "--octet-count"],
        &["--udp", "--rfc5424=notq,notime"],
    ];
    for (i, args) in cases.iter().enumerate() {
        let msg = format!("{NGINX_LINE} case={i}");
        logger(port, args, &msg);
        let got = s.lines(1, Duration::from_secs(5)).await;
        assert_eq!(got, vec![msg], "logger {args:?}");
    }
    let m = s.metrics.snapshot();
    assert_eq!(m.lines, cases.len() as u64);
    assert_eq!((m.dropped, m.truncated, m.empty), (0, 0, 0));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_message_arrives_within_milliseconds() {
    let port = free_port();
    let mut s = start(config(port), 64).await;
    let udp = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = Instant::now();
    udp.send_to(b"<190>Nov 23 10:00:00 web1 nginx: one", s.addr)
        .unwrap();
    assert_eq!(s.lines(1, Duration::from_secs(2)).await, vec!["one"]);
    // Linger is 50 ms; allow for a loaded 2-core machine.
    assert!(
        sent.elapsed() < Duration::from_millis(1000),
        "took {:?}",
        sent.elapsed()
    );
    s.stop().await;
}

/// The exact header variants of the senders we meet, over UDP and TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_haproxy_rsyslog_header_variants() {
    let port = free_port();
    let mut s = start(config(port), 64).await;
    let variants = [
        // nginx `access_log syslog:server=…`
        format!("<190>Nov 23 10:00:00 web1 nginx: {NGINX_LINE}"),
        // HAProxy without a hostname, and with `log-send-hostname`
        format!("<134>Nov 23 10:00:00 haproxy[123]: {NGINX_LINE}"),
        format!("<134>Nov  3 10:00:00 lb1 haproxy[123]: {NGINX_LINE}"),
        // HAProxy `log-format rfc5424`
        format!("<134>1 2025-11-23T10:00:00.123456+00:00 lb1 haproxy 123 - - {NGINX_LINE}"),
        // rsyslog / syslog-ng forwarding with structured data and a BOM
        format!("<13>1 2025-11-23T10:00:00Z host app - ID1 [meta x=\"1\\]\"] \u{feff}{NGINX_LINE}"),
        // No PRI at all
        format!("Nov 23 10:00:00 web1 nginx: {NGINX_LINE}"),
    ];
    let udp = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    for v in &variants {
        udp.send_to(v.as_bytes(), s.addr).unwrap();
    }
    let got = s.lines(variants.len(), Duration::from_secs(5)).await;
    assert_eq!(
        got,
        vec![NGINX_LINE.to_string(); variants.len()],
        "over UDP"
    );
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    for (i, v) in variants.iter().enumerate() {
        // Alternate the framings on one connection.
        if i % 2 == 0 {
            tcp.write_all(format!("{v}\n").as_bytes()).await.unwrap();
        } else {
            tcp.write_all(format!("{} {v}", v.len()).as_bytes())
                .await
                .unwrap();
        }
    }
    tcp.flush().await.unwrap();
    let got = s.lines(variants.len(), Duration::from_secs(5)).await;
    assert_eq!(
        got,
        vec![NGINX_LINE.to_string(); variants.len()],
        "over TCP"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_messages_are_cut_counted_and_do_not_break_framing() {
    let port = free_port();
    let mut cfg = config(port);
    cfg.max_message_bytes = 1024;
    let mut s = start(cfg, 64).await;
    let long = "x".repeat(100_000);
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(
        format!("<13>Nov 23 10:00:00 h app: {long}\n<13>Nov 23 10:00:00 h app: after-newline\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let framed = format!("<13>Nov 23 10:00:00 h app: {long}");
    tcp.write_all(format!("{} {framed}", framed.len()).as_bytes())
        .await
        .unwrap();
    let ok = "<13>Nov 23 10:00:00 h app: ok";
    tcp.write_all(format!("{} {ok}", ok.len()).as_bytes())
        .await
        .unwrap();
    let got = s.lines(4, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 4);
    assert!(
        got[0].len() <= 1024 && got[0].starts_with("xxx"),
        "{}",
        got[0].len()
    );
    assert_eq!(got[1], "after-newline");
    assert!(got[2].len() <= 1024 && got[2].starts_with("xxx"));
    assert_eq!(got[3], "ok");
    // A datagram over the limit is cut too.
    let udp = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(
        format!("<13>Nov 23 10:00:00 h app: {}", "y".repeat(5000)).as_bytes(),
        s.addr,
    )
    .unwrap();
    let got = s.lines(1, Duration::from_secs(5)).await;
    assert!(got[0].len() <= 1024 && got[0].starts_with("yyy"));
    assert_eq!(s.metrics.truncated.load(Relaxed), 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_tcp_connections_deliver_everything() {
    let port = free_port();
    let mut s = start(config(port), 1024).await;
    const CONNS: usize = 200;
    const PER: usize = 50;
    let addr = s.addr;
    let mut clients = Vec::new();
    for c in 0..CONNS {
        clients.push(tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let mut buf = String::new();
            for i in 0..PER {
                let m = format!("<190>Nov 23 10:00:00 web{c} nginx: conn={c} msg={i}");
                if i % 2 == 0 {
                    buf.push_str(&format!("{m}\n"));
                } else {
                    buf.push_str(&format!("{} {m}", m.len()));
                }
            }
            tcp.write_all(buf.as_bytes()).await.unwrap();
            tcp.shutdown().await.unwrap();
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let got = s.lines(CONNS * PER, Duration::from_secs(20)).await;
    assert_eq!(got.len(), CONNS * PER);
    let mut unique: Vec<&String> = got.iter().collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), CONNS * PER, "no duplicates");
    let m = s.metrics.snapshot();
    assert_eq!(m.connections, CONNS as u64 + 1, "plus the readiness probe");
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.metrics.connections_open.load(Relaxed) != 0 {
        assert!(Instant::now() < deadline, "connections closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused_and_counted() {
    let port = free_port();
    let mut cfg = config(port);
    cfg.max_connections = 3;
    let mut s = start(cfg, 64).await;
    // Let the readiness probe's slot go.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(s.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(s.addr).await.unwrap();
    let _ = extra
        .write_all(b"<13>Nov 23 10:00:00 h app: refused\n")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.metrics.connections_rejected.load(Relaxed), 1);
    held[0]
        .write_all(b"<13>Nov 23 10:00:00 h app: accepted\n")
        .await
        .unwrap();
    assert_eq!(s.lines(1, Duration::from_secs(2)).await, vec!["accepted"]);
    drop(held);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_counts_drops_when_the_pipeline_is_full() {
    let port = free_port();
    let mut cfg = config(port);
    cfg.udp_queue = 16;
    cfg.tcp = false;
    // A pipeline of one batch that nobody reads for now.
    let mut s = start(cfg, 1).await;
    let udp = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    const SENT: u64 = 20_000;
    for i in 0..SENT {
        udp.send_to(format!("<13>Nov 23 10:00:00 h app: {i}").as_bytes(), s.addr)
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = s.metrics.snapshot();
    assert!(m.dropped > 0, "{m:?}");
    // Everything the socket received was either delivered or counted.
    let got = s.lines(usize::MAX, Duration::from_secs(2)).await;
    let m = s.metrics.snapshot();
    assert_eq!(got.len() as u64 + m.dropped, m.messages, "{m:?}");
    assert!(m.messages <= SENT);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_applies_backpressure_instead_of_dropping() {
    let port = free_port();
    let mut cfg = config(port);
    cfg.udp = false;
    let mut s = start(cfg, 1).await;
    const N: usize = 200_000;
    let addr = s.addr;
    let writer = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        for i in 0..N {
            buf.extend_from_slice(format!("<13>Nov 23 10:00:00 h app: message number {i:>8} with some padding to make it longer\n").as_bytes());
        }
        tcp.write_all(&buf).await.unwrap();
        tcp.shutdown().await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !writer.is_finished(),
        "the sender is held back while the pipeline is full"
    );
    let got = s.lines(N, Duration::from_secs(60)).await;
    writer.await.unwrap();
    assert_eq!(got.len(), N);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, l)| l.contains(&format!("{i:>8}"))),
        "in order"
    );
    assert_eq!(s.metrics.dropped.load(Relaxed), 0);
    s.stop().await;
}

/// A self-signed certificate for `localhost`, written as PEM files.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (cert_path, key_path, cert.cert.der().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_octet_counting_rfc5425() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path, der) = self_signed(dir.path());
    let port = free_port();
    let tls_port = free_port();
    let mut cfg = config(port);
    cfg.tls = Some(SyslogTlsConfig {
        address: SocketAddr::from(([127, 0, 0, 1], tls_port)),
        cert_path,
        key_path,
    });
    let mut s = start(cfg, 64).await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut want = Vec::new();
    for i in 0..100 {
        let body = format!("{NGINX_LINE} tls={i}");
        let msg = format!("<190>1 2025-11-23T10:00:00Z web1 nginx - - - {body}");
        tls.write_all(format!("{} {msg}", msg.len()).as_bytes())
            .await
            .unwrap();
        want.push(body);
    }
    tls.flush().await.unwrap();
    assert_eq!(s.lines(100, Duration::from_secs(5)).await, want);
    // A plain-text client on the TLS port fails the handshake and is counted.
    let mut plain = TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    plain
        .write_all(b"<13>Nov 23 10:00:00 h app: not tls\n")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.metrics.connections_rejected.load(Relaxed) == 0 {
        assert!(Instant::now() < deadline, "handshake failure counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_certificate_fails_run_not_build() {
    let mut cfg = config(free_port());
    cfg.tls = Some(SyslogTlsConfig {
        address: SocketAddr::from(([127, 0, 0, 1], free_port())),
        cert_path: "/nonexistent/cert.pem".into(),
        key_path: "/nonexistent/key.pem".into(),
    });
    let src = build(cfg, 1, SHAPE, SourceMetrics::new()).unwrap();
    let (tx, _rx) = mpsc::channel(1);
    let err = src.run(tx, CancellationToken::new()).await.unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_a_bind_error() {
    let taken = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(taken.local_addr().unwrap().port());
    cfg.udp = false;
    let src = build(cfg, 1, SHAPE, SourceMetrics::new()).unwrap();
    let (tx, _rx) = mpsc::channel(1);
    let err = src.run(tx, CancellationToken::new()).await.unwrap_err();
    assert!(
        matches!(
            err,
            gatewatch_ingest::sources::SourceError::Bind {
                protocol: "tcp",
                ..
            }
        ),
        "{err}"
    );
}

/// Runs a real nginx that logs its access log to the source over syslog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_nginx_access_log_over_syslog() {
    let nginx = "/usr/sbin/nginx";
    assert!(
        std::path::Path::new(nginx).exists(),
        "nginx is installed by scripts/dev-services"
    );
    let port = free_port();
    let mut s = start(config(port), 64).await;
    let http_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log syslog:server=127.0.0.1:{port},tag=nginx combined;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  server {{ listen 127.0.0.1:{http_port}; location / {{ return 200 'ok'; }} }}
}}",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let mut child = Command::new(nginx)
        .args([
            "-p",
            &dir.path().display().to_string(),
            "-c",
            &conf.display().to_string(),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut response = None;
    while response.is_none() && Instant::now() < deadline {
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", http_port)).await {
            c.write_all(
                b"GET /wp-login.php?probe=1 HTTP/1.0\r\nUser-Agent: gatewatch-test\r\n\r\n",
            )
            .await
            .unwrap();
            let mut buf = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut c, &mut buf).await;
            response = Some(buf);
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let got = s.lines(1, Duration::from_secs(5)).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(response.is_some(), "nginx answered");
    assert_eq!(got.len(), 1, "one access-log line");
    assert!(got[0].starts_with("127.0.0.1 - - ["), "{}", got[0]);
    assert!(
        got[0].contains("\"GET /wp-login.php?probe=1 HTTP/1.0\" 200 2"),
        "{}",
        got[0]
    );
    assert!(got[0].ends_with("\"gatewatch-test\""), "{}", got[0]);
    s.stop().await;
}

/// Runs a real HAProxy that logs HTTP requests to the source over syslog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_haproxy_httplog_over_syslog() {
    let haproxy = "/usr/sbin/haproxy";
    assert!(
        std::path::Path::new(haproxy).exists(),
        "haproxy is installed by scripts/dev-services"
    );
    let port = free_port();
    let mut s = start(config(port), 64).await;
    let http_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!(
            "global
  log 127.0.0.1:{port} local0
defaults
  mode http
  log global
  option httplog
  timeout connect 1s
  timeout client 5s
  timeout server 5s
frontend fe
  bind 127.0.0.1:{http_port}
  http-request return status 403 content-type text/plain string denied
"
        ),
    )
    .unwrap();
    let mut child = Command::new(haproxy)
        .args(["-db", "-f", &conf.display().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut answered = false;
    while !answered && Instant::now() < deadline {
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", http_port)).await {
            c.write_all(b"GET /admin HTTP/1.0\r\n\r\n").await.unwrap();
            let mut buf = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut c, &mut buf).await;
            answered = true;
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let got = s.lines(1, Duration::from_secs(5)).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(answered, "haproxy answered");
    assert_eq!(got.len(), 1, "one httplog line: {got:?}");
    assert!(
        got[0].starts_with("127.0.0.1:"),
        "header stripped: {}",
        got[0]
    );
    assert!(
        got[0].contains("fe fe/<NOSRV>")
            && got[0].contains(" 403 ")
            && got[0].contains("\"GET /admin HTTP/1.0\""),
        "{}",
        got[0]
    );
    s.stop().await;
}

/// Throughput on this machine; run with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn throughput() {
    let port = free_port();
    let mut s = start(config(port), 1024).await;
    const N: usize = 500_000;
    let line = format!("<190>Nov 23 10:00:00 web1 nginx: {NGINX_LINE}\n");
    let addr = s.addr;
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let chunk: String = line.repeat(1000);
        for _ in 0..N / 1000 {
            tcp.write_all(chunk.as_bytes()).await.unwrap();
        }
    });
    let mut n = 0;
    while n < N {
        let b = s.rx.recv().await.unwrap();
        n += b.len();
    }
    writer.await.unwrap();
    let tcp_rate = N as f64 / started.elapsed().as_secs_f64();
    // UDP: paced in bursts so the kernel buffer is not the bottleneck.
    let udp = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    let msg = format!("<190>Nov 23 10:00:00 web1 nginx: {NGINX_LINE}");
    let before = s.metrics.snapshot();
    let started = Instant::now();
    const U: usize = 200_000;
    let sender = std::thread::spawn(move || {
        for _ in 0..U {
            let _ = udp.send_to(msg.as_bytes(), addr);
        }
    });
    let mut got = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(b)) = tokio::time::timeout_at(
        deadline.min(tokio::time::Instant::now() + Duration::from_millis(500)),
        s.rx.recv(),
    )
    .await
    {
        got += b.len() as u64;
    }
    sender.join().unwrap();
    let after = s.metrics.snapshot();
    let secs = started.elapsed().as_secs_f64() - 0.5;
    eprintln!(
        "syslog TCP: {tcp_rate:.0} lines/s; UDP: sent {U}, socket received {}, delivered {got}, dropped {} ({:.0} delivered/s)",
        after.messages - before.messages,
        after.dropped - before.dropped,
        got as f64 / secs
    );
    s.stop().await;
}
