//! No input makes a parser panic: random bytes, every truncation of real
//! lines, byte flips and splices, huge fields and invalid UTF-8, fed to
//! every format (and to `parse_many`). Deterministic: a fixed-seed
//! xorshift generator, so a failure reproduces.

use gatewatch_detector::Event;
use gatewatch_ingest::formats::auto::detect;
use gatewatch_ingest::formats::{build, Format, FormatKind, FormatOptions, JsonMapping};
use gatewatch_ingest::syslog_header;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/");

/// xorshift64*: tiny, deterministic, good enough to pick bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn parsers() -> Vec<Box<dyn Format>> {
    let opts = FormatOptions {
        trusted_proxies: vec!["10.0.0.0/8".parse().unwrap(), "::/0".parse().unwrap()],
        json: Some(JsonMapping {
            ts: "time".into(),
            client_ip: Some("ip".into()),
            x_forwarded_for: Some("h.xff".into()),
            method: Some("request.method".into()),
            uri: Some("request.uri".into()),
            status: Some("status".into()),
            user_agent: Some("request.headers.user-agent".into()),
            ..JsonMapping::default()
        }),
    };
    [
        FormatKind::Auto,
        FormatKind::NginxCombined,
        FormatKind::NginxJson,
        FormatKind::Kong,
        FormatKind::Apisix,
        FormatKind::Traefik,
        FormatKind::Envoy,
        FormatKind::Haproxy,
        FormatKind::AwsApigw,
        FormatKind::Caddy,
        FormatKind::Json,
    ]
    .into_iter()
    .map(|k| build(k, &opts).unwrap())
    .collect()
}

/// Real lines of every shape, the seeds for mutation.
fn seeds() -> Vec<Vec<u8>> {
    let files = [
        "crowdsec-hub/tests/nginx-http-malformed/nginx_http-logs.log",
        "crowdsec-hub/tests/nginx_http-logs/nginx_http-logs.log",
        "crowdsec-hub/tests/http-bf-wordpress-bf/http-bf-wordpress-bf.log",
        "crowdsec-hub/tests/traefik_json/traefik_json.log",
        "crowdsec-hub/tests/traefik_clf/traefik_clf.log",
        "crowdsec-hub/tests/envoy-logs/envoy.log",
        "crowdsec-hub/tests/haproxy-logs/haproxy-logs.log",
        "crowdsec-hub/tests/caddy-logs/caddy-logs.log",
        "elastic-integrations/envoyproxy/test-log.log",
        "elastic-integrations/haproxy-log/test-haproxy.log",
        "elastic-integrations/aws-apigateway/test-apigateway.log",
        "istio-docs/istio-default-text.log",
        "kong-docs/file-log-example-3.4.ndjson",
        "kong-docs/grpc-file-log-kong-1.2.1.ndjson",
        "apisix-docs/default-format-compact.ndjson",
    ];
    let mut out = Vec::new();
    for f in files {
        let data = std::fs::read(format!("{CORPUS}{f}")).unwrap();
        out.extend(
            data.split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    out.push(
        b"[{\"client_ip\":\"1.2.3.4\",\"started_at\":1},{\"client_ip\":\"::1\",\"started_at\":2}]"
            .to_vec(),
    );
    out.push(b"<134>1 2024-01-01T00:00:00Z h app - - [sd a=\"\\]\"] 1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1".to_vec());
    out.push(br#"{"time":"2024-01-01T00:00:00Z","ip":"10.1.1.1","h":{"xff":"1.1.1.1, 10.2.2.2"},"request":{"method":"GET","uri":"/?a","headers":{"user-agent":["x"]}},"status":"200"}"#.to_vec());
    out
}

/// Runs every parser on `line`; touching every field makes sure a
/// borrowed field really is readable.
fn feed(ps: &[Box<dyn Format>], line: &[u8]) -> usize {
    let mut n = 0;
    let touch =
        |ev: &Event<'_>| ev.path.len() + ev.query.len() + ev.user_agent.len() + ev.host.len();
    for p in ps {
        if let Ok(ev) = p.parse(line) {
            n += touch(&ev) + 1;
        }
        let mut out = Vec::new();
        p.parse_many(line, &mut out);
        n += out.iter().flatten().map(touch).sum::<usize>();
    }
    n += usize::from(detect(line).is_some());
    n += syslog_header::parse(line).map_or(0, |h| h.body.len());
    n
}

const SPICE: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"[",
    b"]",
    b"{",
    b"}",
    b" ",
    b"-",
    b":",
    b",",
    b"\\u00",
    b"\\ud800",
    b"\xff",
    b"\xc3",
    b"\x00",
    b"\n",
    b"\"started_at\":",
    b"[10/Oct/2000:13:55:36 -0700]",
    b"<13>",
    b" stdout F ",
    b"1.2.3.4",
    b"[::1]:1",
    b"9999999999999999999999",
    b"1e999",
    b"-1",
    b"null",
];

#[test]
fn random_bytes_never_panic() {
    let ps = parsers();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..8_000 {
        let len = rng.below(200);
        let line: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        feed(&ps, &line);
        // Mostly-printable noise reaches deeper into the text parsers.
        let line: Vec<u8> = (0..len)
            .map(|_| b" -[]\"/:.0123456789GETHP{}"[rng.below(25)])
            .collect();
        feed(&ps, &line);
    }
}

#[test]
fn every_truncation_of_real_lines() {
    let ps = parsers();
    for seed in seeds() {
        // Every cut of short lines; a dense sample of long (JSON) ones.
        let step = if seed.len() > 300 { 5 } else { 1 };
        for cut in (0..=seed.len()).step_by(step) {
            feed(&ps, &seed[..cut]);
            feed(&ps, &seed[cut..]);
        }
    }
}

#[test]
fn mutated_real_lines() {
    let ps = parsers();
    let seeds = seeds();
    let mut rng = Rng(42);
    for _ in 0..12_000 {
        let mut line = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(line.len() + 1);
            match rng.below(4) {
                0 if !line.is_empty() => {
                    let i = at.min(line.len() - 1);
                    line[i] = rng.next() as u8;
                }
                1 => {
                    let s = SPICE[rng.below(SPICE.len())];
                    line.splice(at..at, s.iter().copied());
                }
                2 if !line.is_empty() => {
                    let end = (at + rng.below(16)).min(line.len());
                    line.drain(at.min(end)..end);
                }
                _ => {
                    let s = SPICE[rng.below(SPICE.len())];
                    line.splice(at.min(line.len())..at.min(line.len()), s.iter().copied());
                }
            }
        }
        feed(&ps, &line);
    }
}

#[test]
fn huge_fields_and_deep_nesting() {
    let ps = parsers();
    let big = "A".repeat(1 << 20);
    let lines: Vec<Vec<u8>> = vec![
        format!("1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET /{big} HTTP/1.1\" 200 1 \"-\" \"{big}\"").into_bytes(),
        format!("{{\"client_ip\":\"1.2.3.4\",\"started_at\":1,\"request\":{{\"uri\":\"/{big}\",\"headers\":{{\"user-agent\":\"{big}\"}}}}}}").into_bytes(),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        format!("{}{}", "{\"a\":".repeat(50_000), "}".repeat(50_000)).into_bytes(),
        format!("{{\"request\":{}1{}}}", "{\"method\":".repeat(10_000), "}".repeat(10_000)).into_bytes(),
        format!("<13>Jan  1 00:00:00 {big} app: x").into_bytes(),
        format!("1.2.3.4 - {big} [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 1").into_bytes(),
        vec![b'"'; 1 << 16],
        vec![b'\\'; 1 << 16],
        vec![b'['; 1 << 16],
    ];
    for l in &lines {
        feed(&ps, l);
    }
    // A huge field still parses, and borrows rather than copies.
    let ev = ps[1].parse(&lines[0]).unwrap();
    assert_eq!(ev.user_agent.len(), 1 << 20);
    assert!(matches!(ev.user_agent, std::borrow::Cow::Borrowed(_)));
}

#[test]
fn invalid_utf8_everywhere_still_parses_text_lines() {
    let ps = parsers();
    let seed =
        b"1.2.3.4 - bob [10/Oct/2000:13:55:36 -0700] \"GET /a?b HTTP/1.1\" 200 1 \"-\" \"ua\"";
    let mut parsed = 0;
    for i in 0..seed.len() {
        let mut l = seed.to_vec();
        l.insert(i, 0xff);
        feed(&ps, &l);
        parsed += usize::from(ps[1].parse(&l).is_ok());
    }
    // Invalid bytes inside the user, request, referer or UA fields become
    // U+FFFD rather than costing the event (in the address, time, status or
    // size they make the line malformed).
    assert!(parsed >= 30, "{parsed}");
    let ev = ps[1].parse(b"1.2.3.4 - b\xffob [10/Oct/2000:13:55:36 -0700] \"GET /\xfe HTTP/1.1\" 200 1 \"-\" \"u\xffa\"").unwrap();
    assert_eq!(
        (ev.user.as_deref(), &*ev.path, &*ev.user_agent),
        (Some("b\u{fffd}ob"), "/\u{fffd}", "u\u{fffd}a")
    );
}
