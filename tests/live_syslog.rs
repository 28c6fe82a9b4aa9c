//! Live ingestion over syslog with real clients: util-linux `logger` in
//! every framing, and real nginx and HAProxy (Debian packages) writing
//! their access logs to gatewatch's syslog listener while curl attacks a
//! local upstream through them.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::live::{free_port, Running};
use support::TempDir;

const WAIT: Duration = Duration::from_secs(60);

fn combined(ip: &str, user: &str, second: u32, method: &str, path: &str, status: u16) -> String {
    format!(
        "{ip} - {user} [02/Mar/2026:09:{:02}:{:02} +0000] \"{method} {path} HTTP/1.1\" {status} 153 \"-\" \"attack-tool/1.0\"",
        second / 60,
        second % 60
    )
}

/// Sends `lines` with `logger` using `mode` flags.
fn logger(port: u16, mode: &[&str], lines: &[String], dir: &Path, name: &str) {
    let file = dir.join(name);
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let status = Command::new("logger")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--tag",
            "nginx",
        ])
        .args(mode)
        .arg("-f")
        .arg(&file)
        .status()
        .expect("run logger (util-linux)");
    assert!(status.success(), "logger {mode:?} failed");
}

fn start_embedded(dir: &TempDir, syslog: u16) -> Running {
    start_with_api(dir, syslog, free_port())
}

fn start_with_api(dir: &TempDir, syslog: u16, api: u16) -> Running {
    Running::start(
        &dir.0,
        &[
            ("GATEWATCH_SYSLOG_ADDR", format!("127.0.0.1:{syslog}")),
            ("GATEWATCH_API_ADDR", format!("127.0.0.1:{api}")),
            (
                "GATEWATCH_DATABASE_URL",
                format!("sqlite://{}", dir.path("gw.db").display()),
            ),
        ],
        &[],
    )
}

/// `curl` returning the body.
fn get(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .args(args)
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A viewer token made with `gatewatch token create`, as a script would.
fn viewer_token(dir: &TempDir) -> String {
    let out = support::gatewatch()
        .env(
            "GATEWATCH_DATABASE_URL",
            format!("sqlite://{}", dir.path("gw.db").display()),
        )
        .args(["token", "create", "--role", "viewer", "--name", "soc"])
        .output()
        .expect("run gatewatch token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn is(v: &serde_json::Value, kind: &str, client: &str) -> bool {
    v["kind"] == kind && v["client"] == client
}

#[test]
fn logger_in_rfc3164_and_rfc5424_over_udp_and_tcp() {
    let dir = TempDir::new("live-logger");
    let port = free_port();
    let gw = start_embedded(&dir, port);

    let brute: Vec<String> = (0..30)
        .map(|i| {
            combined(
                "203.0.113.50",
                "admin",
                i * 2,
                "POST",
                "/api/v1/auth/login",
                401,
            )
        })
        .collect();
    logger(port, &["--udp", "--rfc3164"], &brute, &dir.0, "udp3164.log");

    let files = [
        "/.env",
        "/.git/config",
        "/backup.zip",
        "/db.sql",
        "/.aws/credentials",
        "/.htpasswd",
        "/id_rsa",
        "/wp-config.php.bak",
        "/dump.sql",
        "/.env.production",
    ];
    let scan: Vec<String> = files
        .iter()
        .enumerate()
        .map(|(i, p)| combined("203.0.113.51", "-", i as u32, "GET", p, 404))
        .collect();
    logger(port, &["--tcp", "--rfc5424"], &scan, &dir.0, "tcp5424.log");

    let admin = [
        "/admin",
        "/admin/config",
        "/actuator/env",
        "/actuator/heapdump",
        "/manager/html",
        "/phpmyadmin/",
        "/jenkins/script",
        "/internal/debug/vars",
        "/console",
        "/management/users",
    ];
    let probe: Vec<String> = admin
        .iter()
        .enumerate()
        .map(|(i, p)| combined("203.0.113.52", "-", i as u32, "GET", p, 403))
        .collect();
    logger(
        port,
        &["--tcp", "--rfc5424", "--octet-count"],
        &probe,
        &dir.0,
        "octet.log",
    );

    let brute_tcp: Vec<String> = (0..30)
        .map(|i| {
            combined(
                "203.0.113.53",
                "root",
                i * 2,
                "POST",
                "/api/v1/auth/login",
                401,
            )
        })
        .collect();
    logger(
        port,
        &["--tcp", "--rfc3164"],
        &brute_tcp,
        &dir.0,
        "tcp3164.log",
    );

    gw.wait_for_incident("brute force over UDP/3164", WAIT, |v| {
        is(v, "credential_stuffing", "203.0.113.50")
    });
    gw.wait_for_incident("file scan over TCP/5424", WAIT, |v| {
        is(v, "privilege_probing", "203.0.113.51")
    });
    gw.wait_for_incident("admin probe over octet-counted TCP", WAIT, |v| {
        is(v, "privilege_probing", "203.0.113.52")
    });
    gw.wait_for_incident("brute force over TCP/3164", WAIT, |v| {
        is(v, "credential_stuffing", "203.0.113.53")
    });
    let (clean, log) = gw.terminate();
    assert!(clean, "gatewatch did not stop cleanly on SIGTERM:\n{log}");
    assert!(
        log.contains("lines=80"),
        "every line should have been read:\n{log}"
    );
}

/// A process that is killed when the test ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nginx serving as the upstream (`upstream_port`) and, when
/// `front_port` is given, as a reverse proxy in front of it that logs every
/// request to syslog.
fn start_nginx(dir: &TempDir, upstream_port: u16, front: Option<(u16, u16)>) -> Guard {
    let p = dir.0.display();
    let front = match front {
        Some((front_port, syslog_port)) => format!(
            "server {{
               listen 127.0.0.1:{front_port};
               access_log syslog:server=127.0.0.1:{syslog_port},tag=nginx combined;
               location / {{ proxy_pass http://127.0.0.1:{upstream_port}; proxy_set_header Authorization $http_authorization; }}
             }}"
        ),
        None => String::new(),
    };
    let conf = format!(
        "daemon off; master_process off; pid {p}/nginx.pid; error_log {p}/nginx-error.log;
         events {{ worker_connections 64; }}
         http {{
           client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fcgi;
           uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;
           access_log off;
           server {{
             listen 127.0.0.1:{upstream_port};
             location = /api/v1/auth/login {{ return 401; }}
             location = / {{ return 200 'shop'; }}
             location ~ ^/(admin|actuator|manager|internal|console|management|phpmyadmin|jenkins) {{ return 403; }}
             location / {{ return 404; }}
           }}
           {front}
         }}"
    );
    let conf_path = dir.path("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new("/usr/sbin/nginx")
        .args(["-p", &p.to_string(), "-c"])
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nginx (Debian package)");
    wait_port(upstream_port);
    Guard(child)
}

fn wait_port(port: u16) {
    support::live::eventually(
        &format!("a listener on port {port}"),
        Duration::from_secs(20),
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
}

/// One curl request; returns the status code it saw.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(args)
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Brute force, a sensitive-file scan and admin probing through `base`.
fn attack(base: &str) {
    for i in 0..25 {
        let code = curl(&[
            "-X",
            "POST",
            "-u",
            &format!("admin:guess{i}"),
            &format!("{base}/api/v1/auth/login"),
        ]);
        assert_eq!(code, "401", "the upstream should refuse the login");
    }
    for p in [
        "/.env",
        "/.git/config",
        "/backup.zip",
        "/db.sql",
        "/.aws/credentials",
        "/.htpasswd",
        "/id_rsa",
        "/wp-config.php.bak",
        "/dump.sql",
        "/.env.local",
    ] {
        assert_eq!(curl(&[&format!("{base}{p}")]), "404");
    }
    for p in [
        "/admin",
        "/actuator/env",
        "/manager/html",
        "/phpmyadmin/",
        "/jenkins/script",
        "/internal/flags",
        "/console",
        "/management/env",
    ] {
        assert_eq!(curl(&[&format!("{base}{p}")]), "403");
    }
}

#[test]
fn nginx_access_log_over_syslog_in_front_of_an_upstream() {
    let dir = TempDir::new("live-nginx");
    let (syslog, api) = (free_port(), free_port());
    let gw = start_with_api(&dir, syslog, api);
    let (upstream, front) = (free_port(), free_port());
    let _nginx = start_nginx(&dir, upstream, Some((front, syslog)));
    wait_port(front);

    attack(&format!("http://127.0.0.1:{front}"));

    let brute = gw.wait_for_incident("brute force through nginx", WAIT, |v| {
        is(v, "credential_stuffing", "127.0.0.1")
    });
    assert_eq!(brute["technique"], "brute_force", "{brute}");
    gw.wait_for_incident("probing through nginx", WAIT, |v| {
        is(v, "privilege_probing", "127.0.0.1")
    });

    // The same process serves what it found.
    let api = format!("http://127.0.0.1:{api}");
    assert_eq!(curl(&[&format!("{api}/healthz")]), "200");
    assert_eq!(curl(&[&format!("{api}/readyz")]), "200");
    assert_eq!(
        curl(&[&format!("{api}/api/v1/incidents")]),
        "401",
        "the API needs a token"
    );
    let token = viewer_token(&dir);
    let auth = format!("Authorization: Bearer {token}");
    let list = get(&[
        "-H",
        &auth,
        &format!("{api}/api/v1/incidents?client=127.0.0.1"),
    ]);
    let list: serde_json::Value =
        serde_json::from_str(&list).unwrap_or_else(|e| panic!("{e}: {list}"));
    let kinds: Vec<&str> = list["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .filter_map(|i| i["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"credential_stuffing") && kinds.contains(&"privilege_probing"),
        "{list}"
    );
    let metrics = get(&[&format!("{api}/metrics")]);
    let received = metrics
        .lines()
        .find(|l| l.starts_with("gatewatch_events_received_total{"))
        .unwrap_or_else(|| panic!("no received counter in {metrics}"));
    assert!(
        received.ends_with(" 43"),
        "25 + 10 + 8 requests were logged: {received}"
    );
    let (clean, log) = gw.terminate();
    assert!(clean, "{log}");
}

#[test]
fn haproxy_httplog_over_syslog() {
    let dir = TempDir::new("live-haproxy");
    let syslog = free_port();
    let gw = start_embedded(&dir, syslog);
    let upstream = free_port();
    let _nginx = start_nginx(&dir, upstream, None);
    let front = free_port();
    // Section keywords must start their line; settings are indented.
    let conf = format!(
        "global\n  log 127.0.0.1:{syslog} local0\n\
         defaults\n  mode http\n  log global\n  option httplog\n  timeout connect 2s\n  timeout client 5s\n  timeout server 5s\n\
         frontend web\n  bind 127.0.0.1:{front}\n  default_backend shop\n\
         backend shop\n  server s1 127.0.0.1:{upstream}\n"
    );
    let conf_path = dir.path("haproxy.cfg");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new("/usr/sbin/haproxy")
        .args(["-db", "-f"])
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy (Debian package)");
    let _haproxy = Guard(child);
    wait_port(front);

    attack(&format!("http://127.0.0.1:{front}"));

    gw.wait_for_incident("brute force through HAProxy", WAIT, |v| {
        is(v, "credential_stuffing", "127.0.0.1")
    });
    gw.wait_for_incident("probing through HAProxy", WAIT, |v| {
        is(v, "privilege_probing", "127.0.0.1")
    });
    let (clean, log) = gw.terminate();
    assert!(clean, "{log}");
}
