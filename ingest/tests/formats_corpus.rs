//! Every parser over the real corpus lines it applies to
//! (`shared/corpus/`, see its README): all lines of a file either parse or
//! are rejected for a listed reason, `auto` agrees with the dedicated
//! parser on every line, and CrowdSec's and fail2ban's per-line
//! expectations (client address, status, path, verb, user agent) hold
//! where the format is ours.

use gatewatch_detector::{Event, Method};
use gatewatch_ingest::formats::auto::detect;
use gatewatch_ingest::formats::{build, Format, FormatKind, FormatOptions, ParseError};
use std::collections::BTreeMap;
use std::path::PathBuf;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/");

fn path(rel: &str) -> PathBuf {
    PathBuf::from(CORPUS).join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(path(rel)).unwrap_or_else(|e| panic!("corpus file {rel}: {e}"))
}

/// Non-empty lines; fail2ban's `# failJSON:` annotations are not log lines.
fn lines(rel: &str) -> Vec<Vec<u8>> {
    read(rel)
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace) && !l.starts_with(b"#"))
        .map(<[u8]>::to_vec)
        .collect()
}

fn parser(kind: FormatKind, trusted: &[&str]) -> Box<dyn Format> {
    let opts = FormatOptions {
        trusted_proxies: trusted.iter().map(|n| n.parse().unwrap()).collect(),
        ..FormatOptions::default()
    };
    build(kind, &opts).unwrap()
}

/// Outcome counts of one file: `ok` and rejections by reason.
fn outcomes(f: &dyn Format, ls: &[Vec<u8>]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for l in ls {
        let k = match f.parse(l) {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

fn counts(pairs: &[(&'static str, usize)]) -> BTreeMap<&'static str, usize> {
    pairs.iter().copied().collect()
}

/// The files of each format and what must happen to their lines with the
/// dedicated parser (no trusted proxies).
/// Outcome counts by reason (`ok` for parsed lines).
type Outcomes = &'static [(&'static str, usize)];

const FILES: &[(&str, FormatKind, Outcomes)] = &[
    // nginx / Apache combined and common, incl. vhost and malformed lines.
    (
        "crowdsec-hub/tests/apache-http-probing/apache-http-probing.log",
        FormatKind::NginxCombined,
        &[("ok", 77)],
    ),
    (
        "crowdsec-hub/tests/apache2-http-sensitive-files/apache2-http-sensitive-files.log",
        FormatKind::NginxCombined,
        &[("ok", 13)],
    ),
    (
        "crowdsec-hub/tests/apache2-malformed/apache2-logs.log",
        FormatKind::NginxCombined,
        &[("ok", 11)],
    ),
    (
        "crowdsec-hub/tests/nginx-http-malformed/nginx_http-logs.log",
        FormatKind::NginxCombined,
        &[("ok", 12)],
    ),
    (
        "crowdsec-hub/tests/apache2-logs/apache2-logs.log",
        FormatKind::NginxCombined,
        &[("ok", 7), ("no_client", 2)],
    ),
    (
        "crowdsec-hub/tests/nginx_http-logs/nginx_http-logs.log",
        FormatKind::NginxCombined,
        &[("ok", 8), ("no_client", 1)],
    ),
    (
        "crowdsec-hub/tests/apiscp-bf/apiscp-bf.log",
        FormatKind::NginxCombined,
        &[("ok", 7)],
    ),
    (
        "crowdsec-hub/tests/http-admin-interface-probing/http-admin-interface-probing.log",
        FormatKind::NginxCombined,
        &[("ok", 3)],
    ),
    (
        "crowdsec-hub/tests/http-bf-wordpress-bf/http-bf-wordpress-bf.log",
        FormatKind::NginxCombined,
        &[("ok", 9)],
    ),
    (
        "crowdsec-hub/tests/http-wordpress_wpconfig/http-wordpress_wpconfig.log",
        FormatKind::NginxCombined,
        &[("ok", 14)],
    ),
    (
        "crowdsec-hub/tests/http-cve-probing/http-cve-probing.log",
        FormatKind::NginxCombined,
        &[("ok", 3)],
    ),
    (
        "crowdsec-hub/tests/http-dos-bypass-cache/http_dos_bypass_cache.log",
        FormatKind::NginxCombined,
        &[("ok", 356)],
    ),
    (
        "crowdsec-hub/tests/http-dos-invalid-http-versions/http-dos-invalid-http-versions.log",
        FormatKind::NginxCombined,
        &[("ok", 6)],
    ),
    (
        "crowdsec-hub/tests/http-dos-random-uri/http_dos_random_uri.log",
        FormatKind::NginxCombined,
        &[("ok", 66)],
    ),
    (
        "crowdsec-hub/tests/http-dos-switching-ua/http-dos-switching-ua.log",
        FormatKind::NginxCombined,
        &[("ok", 15)],
    ),
    (
        "crowdsec-hub/tests/http-generic-test/http-generic-test.log",
        FormatKind::NginxCombined,
        &[("ok", 1)],
    ),
    (
        "crowdsec-hub/tests/http-technology-probing/http-technology-probing.log",
        FormatKind::NginxCombined,
        &[("ok", 5)],
    ),
    (
        "crowdsec-hub/tests/http-wordpress-scan/http-wordpress-scan.log",
        FormatKind::NginxCombined,
        &[("ok", 8)],
    ),
    (
        "crowdsec-hub/tests/http-wordpress_user-enum/http-wordpress_user-enum.log",
        FormatKind::NginxCombined,
        &[("ok", 12)],
    ),
    (
        "crowdsec-hub/tests/ipv6-postoverflow/ipv6-postoverflow.log",
        FormatKind::NginxCombined,
        &[("ok", 2)],
    ),
    (
        "crowdsec-hub/tests/litespeed-http-sensitive-files/litespeed-http-sensitive-files.log",
        FormatKind::NginxCombined,
        &[("ok", 6)],
    ),
    (
        "crowdsec-hub/tests/nginx-bad-user-agent/nginx-bad-user-agent.log",
        FormatKind::NginxCombined,
        &[("ok", 3)],
    ),
    (
        "crowdsec-hub/tests/nginx-http-backdoor/nginx-http-backdoor.log",
        FormatKind::NginxCombined,
        &[("ok", 2)],
    ),
    (
        "crowdsec-hub/tests/nginx-http-generic-bf/nginx-http-generic-bf.log",
        FormatKind::NginxCombined,
        &[("ok", 6), ("no_client", 16)],
    ),
    (
        "crowdsec-hub/tests/nginx-http-open-proxy/nginx-http-open-proxy.log",
        FormatKind::NginxCombined,
        &[("ok", 2)],
    ),
    (
        "crowdsec-hub/tests/nginx-http-path-traversal/nginx-http-path-traversal.log",
        FormatKind::NginxCombined,
        &[("ok", 9)],
    ),
    (
        "crowdsec-hub/tests/nginx-http-sensitive-files/nginx-http-sensitive-files.log",
        FormatKind::NginxCombined,
        &[("ok", 9)],
    ),
    (
        "crowdsec-hub/tests/nginx-http-sqli-probing/nginx-http-sqli-probing.log",
        FormatKind::NginxCombined,
        &[("ok", 16)],
    ),
    (
        "crowdsec-hub/tests/nginx-http-w00twoot/nginx-http-w00twoot.log",
        FormatKind::NginxCombined,
        &[("ok", 2)],
    ),
    (
        "crowdsec-hub/tests/nginx-http-xss-probing/nginx-http-xss-probing.log",
        FormatKind::NginxCombined,
        &[("ok", 26)],
    ),
    (
        "crowdsec-hub/tests/sap-probing/sap-probing.log",
        FormatKind::NginxCombined,
        &[("ok", 2)],
    ),
    (
        "elastic-integrations/nginx-access/test-access.log",
        FormatKind::NginxCombined,
        &[("ok", 14)],
    ),
    (
        "fail2ban/logs/apache-badbots",
        FormatKind::NginxCombined,
        &[("ok", 4)],
    ),
    (
        "fail2ban/logs/apache-fakegooglebot",
        FormatKind::NginxCombined,
        &[("ok", 3)],
    ),
    (
        "fail2ban/logs/apache-pass",
        FormatKind::NginxCombined,
        &[("ok", 1)],
    ),
    (
        "fail2ban/logs/php-url-fopen",
        FormatKind::NginxCombined,
        &[("ok", 1)],
    ),
    (
        "fail2ban/logs/nginx-bad-request",
        FormatKind::NginxCombined,
        &[("ok", 8)],
    ),
    (
        "fail2ban/logs/nginx-botsearch",
        FormatKind::NginxCombined,
        &[("ok", 8), ("no_client", 6)],
    ),
    // Traefik JSON and CLF.
    (
        "crowdsec-hub/tests/traefik_json/traefik_json.log",
        FormatKind::Traefik,
        &[("ok", 6), ("no_client", 1)],
    ),
    (
        "crowdsec-hub/tests/traefik_base-http-scenario/traefik_base-http-scenario.log",
        FormatKind::Traefik,
        &[("ok", 80)],
    ),
    (
        "crowdsec-hub/tests/traefik_clf/traefik_clf.log",
        FormatKind::Traefik,
        &[("ok", 7)],
    ),
    (
        "elastic-integrations/traefik-access/test-format-json.log",
        FormatKind::Traefik,
        &[("ok", 7)],
    ),
    (
        "fail2ban/logs/traefik-auth",
        FormatKind::Traefik,
        &[("ok", 6)],
    ),
    // Envoy / Istio.
    (
        "crowdsec-hub/tests/envoy-logs/envoy.log",
        FormatKind::Envoy,
        &[("ok", 10)],
    ),
    (
        "crowdsec-hub/tests/envoy-http-crawl-non_statics/envoy-http-crawl-non_statics.log",
        FormatKind::Envoy,
        &[("ok", 41)],
    ),
    (
        "crowdsec-hub/tests/envoy-http-bad-user-agent/envoy-http-bad-user-agent.log",
        FormatKind::Envoy,
        &[("ok", 2)],
    ),
    (
        "elastic-integrations/envoyproxy/test-log.log",
        FormatKind::Envoy,
        &[("ok", 4), ("no_client", 3)],
    ),
    (
        "istio-docs/istio-default-text.log",
        FormatKind::Envoy,
        &[("ok", 2)],
    ),
    // HAProxy.
    (
        "crowdsec-hub/tests/haproxy-logs/haproxy-logs.log",
        FormatKind::Haproxy,
        &[("ok", 2), ("not_access_log", 3)],
    ),
    (
        "elastic-integrations/haproxy-log/test-haproxy.log",
        FormatKind::Haproxy,
        &[("ok", 3), ("no_client", 1)],
    ),
    (
        "elastic-integrations/haproxy-log/test-httplog-no-headers.log",
        FormatKind::Haproxy,
        &[("ok", 3)],
    ),
    (
        "elastic-integrations/haproxy-log/test-haproxy-bad-req.log",
        FormatKind::Haproxy,
        &[("ok", 1)],
    ),
    (
        "fail2ban/logs/haproxy-http-auth",
        FormatKind::Haproxy,
        &[("ok", 4)],
    ),
    // Caddy, Kong, APISIX, AWS.
    (
        "crowdsec-hub/tests/caddy-logs/caddy-logs.log",
        FormatKind::Caddy,
        &[("ok", 10), ("not_access_log", 1)],
    ),
    (
        "crowdsec-hub/tests/caddy-basic-auth-bf/caddy-logs.log",
        FormatKind::Caddy,
        &[("ok", 6)],
    ),
    (
        "kong-docs/file-log-example-3.4.ndjson",
        FormatKind::Kong,
        &[("ok", 1)],
    ),
    (
        "kong-docs/grpc-file-log-kong-1.2.1.ndjson",
        FormatKind::Kong,
        &[("ok", 2)],
    ),
    (
        "apisix-docs/default-format-compact.ndjson",
        FormatKind::Apisix,
        &[("ok", 3)],
    ),
    (
        "apisix-docs/file-logger-custom-log_format.ndjson",
        FormatKind::Apisix,
        &[("ok", 2)],
    ),
    (
        "elastic-integrations/aws-apigateway/test-apigateway-rest.log",
        FormatKind::AwsApigw,
        &[("ok", 5)],
    ),
    (
        "elastic-integrations/aws-apigateway/test-apigateway.log",
        FormatKind::AwsApigw,
        &[("ok", 2)],
    ),
];

#[test]
fn every_format_over_its_corpus_files() {
    let mut wrong = Vec::new();
    for (rel, kind, want) in FILES {
        let got = outcomes(&*parser(*kind, &[]), &lines(rel));
        if got != counts(want) {
            wrong.push(format!("{rel}: got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn auto_agrees_with_the_dedicated_parser_on_every_line() {
    let auto = parser(FormatKind::Auto, &[]);
    let mut wrong = Vec::new();
    for (rel, kind, _) in FILES {
        let f = parser(*kind, &[]);
        for (i, l) in lines(rel).iter().enumerate() {
            if let Ok(want) = f.parse(l) {
                match auto.parse(l) {
                    Ok(got) if got == want => {}
                    other => wrong.push(format!("{rel}:{}: auto {other:?}", i + 1)),
                }
                if detect(l) != Some(*kind) {
                    wrong.push(format!(
                        "{rel}:{}: detect {:?} != {kind:?}",
                        i + 1,
                        detect(l)
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// What `auto` makes of every log file in the corpus, including the ones
/// in formats gatewatch does not parse (error logs, ALB, CloudFront, Tyk):
/// those must be rejected with a reason, never mis-parsed.
#[test]
fn auto_over_the_whole_corpus() {
    let want: &[(&str, Outcomes)] = &[
        (
            "crowdsec-hub/tests/apache2-logs/apache2-logs.log",
            &[("not_access_log", 2), ("ok", 7)],
        ),
        (
            "crowdsec-hub/tests/aws-alb-http-bad-user-agent/aws-alb-http-bad-user-agent.log",
            &[("unknown_format", 4)],
        ),
        (
            "crowdsec-hub/tests/aws-alb-logs/aws-alb-logs.log",
            &[("unknown_format", 14)],
        ),
        (
            "crowdsec-hub/tests/aws-cloudfront-logs/aws-cloudfront-logs.log",
            &[("unknown_format", 2)],
        ),
        (
            "crowdsec-hub/tests/haproxy-logs/haproxy-logs.log",
            &[("not_access_log", 3), ("ok", 2)],
        ),
        (
            "crowdsec-hub/tests/nginx-http-generic-bf/nginx-http-generic-bf.log",
            &[("not_access_log", 16), ("ok", 6)],
        ),
        (
            "crowdsec-hub/tests/nginx_http-logs/nginx_http-logs.log",
            &[("not_access_log", 1), ("ok", 8)],
        ),
        (
            "crowdsec-hub/tests/nginx_req_limit_exceeded/nginx_req_limit_exceeded.log",
            &[("not_access_log", 9)],
        ),
        (
            "crowdsec-hub/tests/traefik_json/traefik_json.log",
            &[("ok", 6), ("unknown_format", 1)],
        ),
        (
            "crowdsec-hub/tests/caddy-logs/caddy-logs.log",
            &[("not_access_log", 1), ("ok", 10)],
        ),
        (
            "elastic-integrations/envoyproxy/test-log.log",
            &[("no_client", 3), ("ok", 4)],
        ),
        (
            "elastic-integrations/haproxy-log/test-haproxy.log",
            &[("no_client", 1), ("ok", 3)],
        ),
        (
            "fail2ban/logs/nginx-botsearch",
            // Two journal-style error lines (`host nginx[2833]: 2015/01/21 …`,
            // no time in the header) look like vhost lines without a client.
            &[("no_client", 2), ("not_access_log", 4), ("ok", 8)],
        ),
        (
            "tyk-docs/tyk-access-log-default.logfmt",
            &[("unknown_format", 1)],
        ),
        (
            "tyk-docs/tyk-access-log-custom-template.logfmt",
            &[("unknown_format", 1)],
        ),
        (
            "tyk-docs/tyk-gateway-json-logformat.ndjson",
            &[("unknown_format", 1)],
        ),
    ];
    let auto = parser(FormatKind::Auto, &[]);
    let mut wrong = Vec::new();
    // Files of FILES not listed above: auto must parse exactly what the
    // dedicated parser parses.
    for (rel, _, file_want) in FILES {
        if want.iter().any(|(w, _)| w == rel) {
            continue;
        }
        let got = outcomes(&*auto, &lines(rel));
        if got.get("ok") != counts(file_want).get("ok") {
            wrong.push(format!("{rel}: auto {got:?}, dedicated {file_want:?}"));
        }
    }
    for (rel, w) in want {
        let got = outcomes(&*auto, &lines(rel));
        if got != counts(w) {
            wrong.push(format!("{rel}: auto {got:?}, want {w:?}"));
        }
    }
    // Every other fail2ban log is an error log (Apache, nginx, lighttpd,
    // Drupal): nothing in it may parse as a request.
    for entry in std::fs::read_dir(path("fail2ban/logs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let rel = format!("fail2ban/logs/{name}");
        if FILES.iter().any(|(f, _, _)| *f == rel) || want.iter().any(|(f, _)| *f == rel) {
            continue;
        }
        let got = outcomes(&*auto, &lines(&rel));
        if got.contains_key("ok") {
            wrong.push(format!("{rel}: error log parsed as access log: {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn elastic_apache_logs_all_10000_lines() {
    let f = parser(FormatKind::NginxCombined, &[]);
    let ls = lines("elastic-examples-apache-logs/apache_logs");
    assert_eq!(ls.len(), 10_000);
    let mut statuses = BTreeMap::new();
    let mut ips = std::collections::HashSet::new();
    let mut times = Vec::with_capacity(ls.len());
    for (i, l) in ls.iter().enumerate() {
        let ev = f.parse(l).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        *statuses.entry(ev.status).or_insert(0) += 1;
        ips.insert(ev.ip);
        times.push(ev.ts.millis());
        assert_ne!(ev.method, Method::Invalid, "line {}", i + 1);
    }
    let (first, last) = (times[0], times[times.len() - 1]);
    // The counts SOURCES.md §4 gives for this file.
    let want: BTreeMap<u16, usize> = [
        (200, 9126),
        (304, 445),
        (404, 213),
        (301, 164),
        (206, 45),
        (500, 3),
        (403, 2),
        (416, 2),
    ]
    .into();
    assert_eq!(statuses, want);
    assert_eq!(ips.len(), 1753);
    let ts = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    };
    assert_eq!(
        (first, last),
        (ts("2015-05-17T10:05:03Z"), ts("2015-05-20T21:05:15Z"))
    );
}

/// Which format and trusted proxies each CrowdSec parser test is ours with.
const CROWDSEC: &[(&str, FormatKind, &[&str])] = &[
    ("apache2-logs", FormatKind::NginxCombined, &[]),
    ("apache2-malformed", FormatKind::NginxCombined, &[]),
    ("nginx-http-malformed", FormatKind::NginxCombined, &[]),
    ("nginx_http-logs", FormatKind::NginxCombined, &[]),
    ("traefik_clf", FormatKind::Traefik, &[]),
    ("traefik_json", FormatKind::Traefik, &[]),
    ("caddy-logs", FormatKind::Caddy, &[]),
    ("envoy-logs", FormatKind::Envoy, &[]),
    ("haproxy-logs", FormatKind::Haproxy, &[]),
];

/// Lines where gatewatch's answer differs from CrowdSec's on purpose.
/// Without trusted proxies a forwarded chain is not believed, so the
/// client is the peer; `trusted_proxies_give_crowdsecs_answers` shows the
/// same lines give CrowdSec's address once the proxy is trusted.
const DIVERGES: &[(&str, usize, &str)] = &[
    // Envoy text, XFF "192.168.1.100, 10.42.0.1": 10.42.0.1 appended by Envoy.
    ("envoy-logs", 8, "10.42.0.1"),
    ("envoy-logs", 9, "fd00:1234:5678::1"),
    // Traefik ClientHost "192.168.1.100,10.0.0.50" behind peer 172.71.122.85.
    ("traefik_json", 6, "172.71.122.85"),
];

fn as_crowdsec_path(ev: &Event<'_>) -> String {
    if ev.query.is_empty() {
        ev.path.to_string()
    } else {
        format!("{}?{}", ev.path, ev.query)
    }
}

#[test]
fn crowdsec_parser_expectations() {
    let doc: serde_json::Value =
        serde_json::from_slice(&read("crowdsec-hub/derived-parser-expectations.json")).unwrap();
    let auto = parser(FormatKind::Auto, &[]);
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (test, kind, trusted) in CROWDSEC {
        let f = parser(*kind, trusted);
        for line in doc[test]["s01_parse"].as_array().unwrap() {
            let i = line["i"].as_u64().unwrap() as usize;
            let raw = line["raw_message"].as_str().unwrap().as_bytes();
            let meta = &line["meta"];
            let at = format!("{test}[{i}]");
            if !line["s01_success"].as_bool().unwrap() || meta.get("http_status").is_none() {
                // CrowdSec failed, or the line is no request (an error-log
                // or TLS-error line): we must reject it.
                if f.parse(raw).is_ok() || auto.parse(raw).is_ok() {
                    wrong.push(format!("{at}: should be rejected"));
                }
                continue;
            }
            let ev = match f.parse(raw) {
                Ok(ev) => ev,
                Err(e) => {
                    wrong.push(format!("{at}: {e}"));
                    continue;
                }
            };
            checked += 1;
            let want_ip = DIVERGES
                .iter()
                .find(|(t, n, _)| t == test && *n == i)
                .map_or_else(
                    || meta["source_ip"].as_str().unwrap().to_string(),
                    |d| d.2.to_string(),
                );
            let want_ip: std::net::IpAddr = want_ip.parse().unwrap();
            if ev.ip != want_ip {
                wrong.push(format!("{at}: ip {} != {want_ip}", ev.ip));
            }
            let status = meta["http_status"].as_str().unwrap();
            let want_status = if status == "-" {
                0
            } else {
                status.parse().unwrap()
            };
            if ev.status != want_status {
                wrong.push(format!("{at}: status {} != {status}", ev.status));
            }
            if let Some(p) = meta["http_path"].as_str() {
                if as_crowdsec_path(&ev) != p {
                    wrong.push(format!("{at}: path {:?} != {p:?}", as_crowdsec_path(&ev)));
                }
            }
            match meta["http_verb"].as_str() {
                Some(v) if ev.method.as_str() != v => {
                    wrong.push(format!("{at}: verb {} != {v}", ev.method))
                }
                None if ev.method != Method::Invalid => {
                    wrong.push(format!("{at}: verb {} for a raw request", ev.method))
                }
                _ => {}
            }
            if let Some(ua) = meta["http_user_agent"].as_str() {
                let ua = if ua == "-" { "" } else { ua };
                if ev.user_agent != ua {
                    wrong.push(format!("{at}: ua {:?} != {ua:?}", ev.user_agent));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    assert_eq!(checked, 73, "lines checked");
}

#[test]
fn trusted_proxies_give_crowdsecs_answers() {
    let envoy = parser(
        FormatKind::Envoy,
        &["10.42.0.0/16", "fd00:1234:5678::1/128"],
    );
    let ls = lines("crowdsec-hub/tests/envoy-logs/envoy.log");
    assert_eq!(envoy.parse(&ls[8]).unwrap().ip.to_string(), "192.168.1.100");
    assert_eq!(
        envoy.parse(&ls[9]).unwrap().ip.to_string(),
        "fd00:1234:5678::5a24"
    );
    // Their JSON twins resolve the same way: one rule for both.
    assert_eq!(envoy.parse(&ls[6]).unwrap().ip.to_string(), "192.168.1.100");
    assert_eq!(
        envoy.parse(&ls[7]).unwrap().ip.to_string(),
        "fd00:1234:5678::5a24"
    );
    let traefik = parser(FormatKind::Traefik, &["172.64.0.0/13"]);
    let ls = lines("crowdsec-hub/tests/traefik_json/traefik_json.log");
    assert_eq!(traefik.parse(&ls[6]).unwrap().ip.to_string(), "10.0.0.50");
    let ls = lines("elastic-integrations/traefik-access/test-format-json.log");
    let traefik = parser(FormatKind::Traefik, &["10.0.0.0/8"]);
    assert_eq!(
        traefik.parse(&ls[5]).unwrap().ip.to_string(),
        "175.16.199.10"
    );
}

#[test]
fn fail2ban_hosts_of_access_log_lines() {
    let doc: serde_json::Value =
        serde_json::from_slice(&read("fail2ban/derived-failjson-expectations.json")).unwrap();
    let files: &[(&str, FormatKind)] = &[
        ("apache-badbots", FormatKind::NginxCombined),
        ("apache-fakegooglebot", FormatKind::NginxCombined),
        ("apache-pass", FormatKind::NginxCombined),
        ("php-url-fopen", FormatKind::NginxCombined),
        ("nginx-bad-request", FormatKind::NginxCombined),
        ("nginx-botsearch", FormatKind::NginxCombined),
        ("traefik-auth", FormatKind::Traefik),
        ("haproxy-http-auth", FormatKind::Haproxy),
    ];
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (file, kind) in files {
        let f = parser(*kind, &[]);
        for rec in doc[file].as_array().unwrap() {
            let Some(host) = rec["expect"]["host"].as_str() else {
                continue;
            };
            let line = rec["line"].as_str().unwrap().as_bytes();
            match f.parse(line) {
                Ok(ev)
                    if ev.ip.to_string()
                        == host.parse::<std::net::IpAddr>().unwrap().to_string() =>
                {
                    checked += 1;
                }
                Ok(ev) => wrong.push(format!("{file}:{}: {} != {host}", rec["line_no"], ev.ip)),
                // nginx-botsearch mixes in error-log lines.
                Err(ParseError::NoClient { .. })
                    if String::from_utf8_lossy(line).contains("[error]") => {}
                Err(e) => wrong.push(format!("{file}:{}: {e}", rec["line_no"])),
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    assert_eq!(checked, 31, "lines checked");
}

#[test]
fn pretty_printed_and_batched_gateway_json() {
    // A Kafka message or an http-log POST body is one document, newlines
    // and all; http-logger batches are arrays.
    let kong = parser(FormatKind::Kong, &[]);
    let pretty = read("kong-docs/file-log-example-3.4.pretty.json");
    let ev = kong.parse(&pretty).unwrap();
    let compact = lines("kong-docs/file-log-example-3.4.ndjson");
    assert_eq!(ev, kong.parse(&compact[0]).unwrap());
    assert_eq!(
        (
            ev.ip.to_string().as_str(),
            ev.identity.as_deref(),
            &*ev.path,
            ev.status
        ),
        ("192.168.144.1", Some("foo"), "/log", 200)
    );
    let apisix = parser(FormatKind::Apisix, &[]);
    for rel in [
        "apisix-docs/kafka-logger-default-3.16.pretty.json",
        "apisix-docs/file-logger-default-3.7.pretty.json",
        "apisix-docs/kafka-logger-custom-log_format.pretty.json",
        "apisix-docs/http-logger-batch-default-3.9.pretty.json",
        "apisix-docs/http-logger-batch-custom-log_format.pretty.json",
    ] {
        let doc = read(rel);
        let mut out = Vec::new();
        apisix.parse_many(&doc, &mut out);
        assert_eq!(out.len(), 1, "{rel}");
        let ev = out.pop().unwrap().unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(ev, apisix.parse(&doc).unwrap(), "{rel}");
        let mut via_auto = Vec::new();
        parser(FormatKind::Auto, &[]).parse_many(&doc, &mut via_auto);
        assert_eq!(via_auto.pop().unwrap().unwrap(), ev, "{rel}");
    }
}

/// Every event CrowdSec's scenario tests put in an alert (client, path
/// with query, status, verb, user agent) is an event `auto` produces from
/// the same log file. Events from nginx error-log lines (no status) are
/// not access-log events and are skipped, as is the AWS ALB test.
#[test]
fn crowdsec_scenario_events_are_parsed() {
    let doc: serde_json::Value =
        serde_json::from_slice(&read("crowdsec-hub/derived-scenario-expectations.json")).unwrap();
    let auto = parser(FormatKind::Auto, &[]);
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (test, t) in doc.as_object().unwrap() {
        // AWS ALB access logs are not a format gatewatch parses (yet).
        if test.starts_with("aws-alb") {
            continue;
        }
        let log = format!(
            "crowdsec-hub/tests/{test}/{}",
            t["log_file"].as_str().unwrap()
        );
        let events: Vec<Event<'static>> = lines(&log)
            .iter()
            .filter_map(|l| auto.parse(l).ok().map(Event::into_owned))
            .collect();
        for alert in t["alerts"].as_array().unwrap() {
            for want in alert["events"].as_array().unwrap() {
                let Some(status) = want["http_status"].as_str() else {
                    continue;
                };
                let status: u16 = if status == "-" {
                    0
                } else {
                    status.parse().unwrap()
                };
                let ip: std::net::IpAddr = want["source_ip"].as_str().unwrap().parse().unwrap();
                let found = events.iter().any(|ev| {
                    ev.ip == ip
                        && ev.status == status
                        && want["http_path"]
                            .as_str()
                            .is_none_or(|p| as_crowdsec_path(ev) == p)
                        && want["http_verb"]
                            .as_str()
                            .is_none_or(|v| ev.method.as_str() == v)
                        && want["http_user_agent"]
                            .as_str()
                            .is_none_or(|ua| ev.user_agent == if ua == "-" { "" } else { ua })
                });
                if found {
                    checked += 1;
                } else {
                    wrong.push(format!("{test}: no parsed line matches {want}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    assert_eq!(checked, 246, "events checked");
}
