//! Live ingestion over syslog with real clients: util-linux `logger` in
//! every framing, rsyslog relaying log files in each of its forward
//! formats, and real nginx and HAProxy (Debian packages) writing
//! their access logs to gatewatch's syslog listener while curl attacks a
//! local upstream through them. nginx also writes the README's recommended
//! JSON format, for requests sent byte for byte with hostile headers and
//! paths.

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
    support::assert_success(&out);
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

/// Thirty refused logins from `ip` as `user`, two seconds apart.
fn brute_force(ip: &str, user: &str) -> Vec<String> {
    (0..30)
        .map(|i| combined(ip, user, i * 2, "POST", "/api/v1/auth/login", 401))
        .collect()
}

/// Ten requests from `ip` for files nobody should serve.
fn file_scan(ip: &str) -> Vec<String> {
    [
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
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| combined(ip, "-", i as u32, "GET", p, 404))
    .collect()
}

/// Ten admin routes refused to `ip`.
fn admin_probe(ip: &str) -> Vec<String> {
    support::DENIED_ADMIN_ROUTES
        .iter()
        .enumerate()
        .map(|(i, p)| combined(ip, "-", i as u32, "GET", p, 403))
        .collect()
}

#[test]
fn logger_in_rfc3164_and_rfc5424_over_udp_and_tcp() {
    let dir = TempDir::new("live-logger");
    let port = free_port();
    let gw = start_embedded(&dir, port);

    let brute = brute_force("203.0.113.50", "admin");
    logger(port, &["--udp", "--rfc3164"], &brute, &dir.0, "udp3164.log");
    let scan = file_scan("203.0.113.51");
    logger(port, &["--tcp", "--rfc5424"], &scan, &dir.0, "tcp5424.log");
    let probe = admin_probe("203.0.113.52");
    logger(
        port,
        &["--tcp", "--rfc5424", "--octet-count"],
        &probe,
        &dir.0,
        "octet.log",
    );
    let brute_tcp = brute_force("203.0.113.53", "root");
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

/// rsyslog, the relay most hosts already run, reading access-log files
/// (imfile) and forwarding them to gatewatch in each of its forward
/// formats: RFC 5424 over octet-counted TCP, its own forward format
/// (RFC 3164 with a high-precision timestamp) over newline-framed TCP, and
/// the traditional RFC 3164 format over UDP.
#[test]
fn rsyslog_relays_access_logs_in_each_forward_format() {
    let dir = TempDir::new("live-rsyslog");
    let port = free_port();
    let gw = start_embedded(&dir, port);
    let relays = [
        (
            "udp3164",
            r#"protocol="udp" template="RSYSLOG_TraditionalForwardFormat""#,
            brute_force("203.0.113.60", "admin"),
        ),
        (
            "tcp5424",
            r#"protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format""#,
            file_scan("203.0.113.61"),
        ),
        (
            "tcpfwd",
            r#"protocol="tcp" template="RSYSLOG_ForwardFormat""#,
            admin_probe("203.0.113.62"),
        ),
    ];
    let work = dir.path("rsyslog");
    std::fs::create_dir_all(&work).unwrap();
    let mut conf = format!(
        "global(workDirectory=\"{}\")\nmodule(load=\"imfile\")\n",
        work.display()
    );
    for (name, forward, lines) in &relays {
        let file = dir.path(&format!("{name}.log"));
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        conf += &format!(
            "ruleset(name=\"{name}\") {{ action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{port}\" {forward}) }}\n\
             input(type=\"imfile\" File=\"{}\" Tag=\"nginx:\" Facility=\"local7\" ruleset=\"{name}\")\n",
            file.display()
        );
    }
    let conf_path = dir.path("rsyslog.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let _rsyslog = Guard(
        Command::new("/usr/sbin/rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.path("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run rsyslogd (Debian package rsyslog; scripts/dev-services installs it)"),
    );

    gw.wait_for_incident("brute force relayed over UDP", WAIT, |v| {
        is(v, "credential_stuffing", "203.0.113.60")
    });
    gw.wait_for_incident("file scan relayed as RFC 5424", WAIT, |v| {
        is(v, "privilege_probing", "203.0.113.61")
    });
    gw.wait_for_incident(
        "admin probe relayed in rsyslog's forward format",
        WAIT,
        |v| is(v, "privilege_probing", "203.0.113.62"),
    );
    let (clean, log) = gw.terminate();
    assert!(clean, "gatewatch did not stop cleanly on SIGTERM:\n{log}");
    assert!(
        log.contains("lines=50 parsed=50"),
        "every relayed line should have been read and parsed:\n{log}"
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
    spawn_nginx(
        &p.to_string(),
        &dir.path("nginx.conf"),
        &conf,
        upstream_port,
    )
}

/// Writes `conf` to `conf_path`, starts nginx with prefix `prefix` on it and
/// waits until it listens on `port`.
fn spawn_nginx(prefix: &str, conf_path: &Path, conf: &str, port: u16) -> Guard {
    std::fs::write(conf_path, conf).unwrap();
    let child = Command::new("/usr/sbin/nginx")
        .args(["-p", prefix, "-c"])
        .arg(conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nginx (Debian package)");
    let guard = Guard(child);
    wait_port(port);
    guard
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

/// The `log_format … escape=json` line of the README's "nginx" section, read
/// at test time: nginx below runs with exactly what users are told to paste,
/// so a drift of the documented format breaks this test.
fn readme_nginx_json_log_format() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let section = readme
        .split("\n### ")
        .find(|s| s.starts_with("nginx\n"))
        .expect("README has a \"### nginx\" section");
    let block = section
        .split("```nginx\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the nginx section has an ```nginx block");
    block
        .lines()
        .find(|l| l.starts_with("log_format ") && l.contains("escape=json"))
        .expect("the nginx block has a `log_format … escape=json` line")
        .trim()
        .to_string()
}

/// A second nginx (in `dir/front`), the reverse proxy in front of
/// `upstream_port`, that defines `log_format` and logs every request with it
/// to gatewatch's syslog listener.
fn start_nginx_json_front(
    dir: &TempDir,
    front_port: u16,
    upstream_port: u16,
    syslog_port: u16,
    log_format: &str,
) -> Guard {
    let prefix = dir.path("front");
    std::fs::create_dir_all(&prefix).unwrap();
    let p = prefix.display();
    let name = log_format
        .split_whitespace()
        .nth(1)
        .expect("log_format NAME …");
    let conf = format!(
        "daemon off; master_process off; pid {p}/nginx.pid; error_log {p}/nginx-error.log;
         events {{ worker_connections 64; }}
         http {{
           client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fcgi;
           uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;
           {log_format}
           server {{
             listen 127.0.0.1:{front_port};
             access_log syslog:server=127.0.0.1:{syslog_port},tag=nginx {name};
             location / {{ proxy_pass http://127.0.0.1:{upstream_port}; }}
           }}
         }}"
    );
    spawn_nginx(
        &p.to_string(),
        &prefix.join("nginx.conf"),
        &conf,
        front_port,
    )
}

/// One HTTP/1.1 request written byte for byte (curl would percent-encode or
/// refuse the hostile targets), with `headers`; returns the status.
fn raw_http(port: u16, method: &str, target: &[u8], headers: &[(&str, &[u8])]) -> u16 {
    use std::io::{Read, Write};
    let mut req = Vec::new();
    req.extend_from_slice(method.as_bytes());
    req.push(b' ');
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n");
    if method == "POST" {
        req.extend_from_slice(b"Content-Length: 0\r\n");
    }
    for (name, value) in headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to nginx");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&req).expect("send request");
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    resp.strip_prefix(b"HTTP/1.1 ")
        .and_then(|r| std::str::from_utf8(r.get(..3)?).ok())
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {:?}", String::from_utf8_lossy(&resp)))
}

/// The sum of a family's samples in a `/metrics` page (0 when it has none).
fn metric_total(metrics: &str, family: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Whether the JSON array `v` holds the string `s`.
fn holds(v: &serde_json::Value, s: &str) -> bool {
    v.as_array()
        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(s)))
}

/// The README's recommended nginx JSON format, written by a real nginx and
/// sent over syslog, parsed by `nginx_json` with every hostile byte a client
/// can put in a request: `escape=json` escapes `"`, `\` and control
/// characters (as `\u001F`, upper-case hex) but writes bytes ≥ 0x80 raw, and
/// nginx itself refuses control characters in the request line (a 400
/// logged with empty request fields). Clients are told apart by
/// `X-Forwarded-For`, trusted from nginx only. The account and the paths
/// come back in the incidents' samples; user agents appear in no incident,
/// so for them the proof is that every line carrying one parsed.
#[test]
fn nginx_json_access_log_over_syslog_with_hostile_headers() {
    use base64::Engine;
    // Brute forcer and prober, as the load balancer in front of nginx says.
    const BRUTE: &str = "198.51.100.23";
    const PROBER: &str = "198.51.100.24";
    // What nginx decodes from Basic credentials becomes `$remote_user`:
    // any bytes but `:`, NUL included (written `\u0000`).
    const USER: &[u8] = b"ro\"ot\\\x00\x01\x1f<script>\xc3\xbc";
    // Valid UTF-8: these lines parse on the strict path.
    const UA: &[u8] = b"Mozilla/5.0 \"><script>alert(1)</script>\\\x01\x7f\t\xc3\xa9";
    // Not UTF-8: these lines are re-parsed from a lossy copy.
    const RAW_UA: &[u8] = b"sqlmap/1.8 \"\\\x1b[31m\xff\xfe";

    let log_format = readme_nginx_json_log_format();
    assert_eq!(
        log_format,
        gatewatch_ingest::formats::nginx_json::RECOMMENDED_LOG_FORMAT,
        "the README must show the format the parser documents"
    );

    let dir = TempDir::new("live-nginx-json");
    let (syslog, api) = (free_port(), free_port());
    // The format named, not recognised; nginx (127.0.0.1) is the only
    // proxy whose X-Forwarded-For is believed. With a config file, incidents
    // go to stdout only when asked.
    let config = dir.path("gatewatch.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\ntype = \"syslog\"\naddress = \"127.0.0.1:{syslog}\"\nformat = \"nginx_json\"\n\n\
             [parser]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n[console]\nenabled = true\n"
        ),
    )
    .unwrap();
    let gw = Running::start(
        &dir.0,
        &[
            ("GATEWATCH_API_ADDR", format!("127.0.0.1:{api}")),
            (
                "GATEWATCH_DATABASE_URL",
                format!("sqlite://{}", dir.path("gw.db").display()),
            ),
        ],
        &["--config", config.to_str().unwrap()],
    );
    let (upstream, front) = (free_port(), free_port());
    let _upstream = start_nginx(&dir, upstream, None);
    let _front = start_nginx_json_front(&dir, front, upstream, syslog, &log_format);

    let mut sent = 0;
    for i in 0..25 {
        let mut credentials = USER.to_vec();
        credentials.extend_from_slice(format!(":guess{i}").as_bytes());
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(&credentials)
        );
        let headers: [(&str, &[u8]); 3] = [
            ("Authorization", basic.as_bytes()),
            ("X-Forwarded-For", BRUTE.as_bytes()),
            ("User-Agent", UA),
        ];
        let status = raw_http(front, "POST", b"/api/v1/auth/login", &headers);
        assert_eq!(status, 401, "the upstream should refuse the login");
        sent += 1;
    }
    // Samples are kept from a probe episode's second request on: the
    // hostile targets come right after the first.
    let probes: [(&[u8], u16); 8] = [
        (b"/admin", 403),
        (b"/admin/\"><script>alert(1)</script>\\\xc3\xbc", 403),
        (b"/actuator/env\xff\xfe", 403),
        (b"/jenkins/script?cmd=\"<svg/onload=alert(1)>\\", 403),
        (b"/.env", 404),
        (b"/.git/config", 404),
        (b"/manager/html", 403),
        (b"/console", 403),
    ];
    // Garbage left of the client in the chain is never read.
    let xff = format!("\"><script>, {PROBER}");
    for (target, want) in probes {
        let headers: [(&str, &[u8]); 2] =
            [("X-Forwarded-For", xff.as_bytes()), ("User-Agent", RAW_UA)];
        let status = raw_http(front, "GET", target, &headers);
        assert_eq!(status, want, "{}", String::from_utf8_lossy(target));
        sent += 1;
    }
    // nginx refuses this itself and logs it with empty request fields and
    // no X-Forwarded-For: a line about nginx's own peer, still parsed.
    let headers: [(&str, &[u8]); 1] = [("X-Forwarded-For", xff.as_bytes())];
    assert_eq!(raw_http(front, "GET", b"/admin/\x01", &headers), 400);
    sent += 1;

    let brute = gw.wait_for_incident("nginx JSON brute force", WAIT, |v| {
        is(v, "credential_stuffing", BRUTE)
    });
    assert_eq!(brute["technique"], "brute_force", "{brute}");
    // Everything but NUL, which incidents keep as U+FFFD (PostgreSQL
    // refuses NUL in text and jsonb).
    let user = String::from_utf8(USER.to_vec())
        .unwrap()
        .replace('\0', "\u{fffd}");
    assert!(
        holds(&brute["evidence"]["sample_users"], &user),
        "the account should round-trip unescaped: {brute}"
    );
    let hostile = [
        "/admin/\"><script>alert(1)</script>\\ü",
        "/actuator/env\u{fffd}\u{fffd}",
        "/jenkins/script?cmd=\"<svg/onload=alert(1)>\\",
    ];
    let probe = gw.wait_for_incident("nginx JSON probing", WAIT, |v| {
        is(v, "privilege_probing", PROBER)
            && hostile
                .iter()
                .all(|p| holds(&v["evidence"]["sample_paths"], p))
    });
    assert!(
        holds(&probe["evidence"]["techniques"], "admin_probe"),
        "{probe}"
    );

    // Every line nginx wrote arrived and parsed; none was refused. The
    // incidents may be out before the last lines are through: wait for
    // every line to be accounted for, then compare.
    let api = format!("http://127.0.0.1:{api}");
    let mut metrics = String::new();
    support::live::eventually("every nginx line accounted for", WAIT, || {
        metrics = get(&[&format!("{api}/metrics")]);
        metric_total(&metrics, "gatewatch_events_parsed_total")
            + metric_total(&metrics, "gatewatch_events_rejected_total")
            >= f64::from(sent)
    });
    for (family, want) in [
        ("gatewatch_events_received_total", sent),
        ("gatewatch_events_parsed_total", sent),
        ("gatewatch_events_rejected_total", 0),
        ("gatewatch_events_dropped_total", 0),
        ("gatewatch_lines_truncated_total", 0),
    ] {
        assert_eq!(
            metric_total(&metrics, family),
            f64::from(want),
            "{family} after {sent} requests:\n{metrics}"
        );
    }
    assert!(
        !gw.incidents().iter().any(|v| v["client"] == "127.0.0.1"),
        "nginx itself is never the client: {:#?}",
        gw.incidents()
    );
    let (clean, log) = gw.terminate();
    assert!(clean, "{log}");
    assert!(
        log.contains(&format!("lines={sent} parsed={sent}")),
        "every line should have parsed:\n{log}"
    );
}
