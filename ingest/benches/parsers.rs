//! Parse throughput per format, in lines per second, on realistic lines
//! from the corpus (`shared/corpus/`). Run with
//! `cargo bench -p gatewatch-ingest --bench parsers`.
//!
//! Each iteration parses the whole sample once; `Throughput::Elements` makes
//! criterion report lines/s. The target is ≥ 1,000,000 lines/s on one core
//! for nginx combined and Kong, for the whole pipeline, so parsing must be
//! well under a microsecond per line.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatewatch_ingest::formats::nginx_json::RECOMMENDED_LOG_FORMAT;
use gatewatch_ingest::formats::{build, Format, FormatKind, FormatOptions, JsonMapping};
use std::hint::black_box;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/");

fn lines(rel: &str) -> Vec<Vec<u8>> {
    let data = std::fs::read(format!("{CORPUS}{rel}")).expect("corpus file");
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// `n` lines cycling through `sample`.
fn cycle(sample: &[Vec<u8>], n: usize) -> Vec<Vec<u8>> {
    sample.iter().cycle().take(n).cloned().collect()
}

/// Kong lines like the documented 3.4 one (~1.8 KB), with the client,
/// time, path and consumer varying as in real traffic.
fn kong_lines(n: usize) -> Vec<Vec<u8>> {
    let base = String::from_utf8(lines("kong-docs/file-log-example-3.4.ndjson").remove(0)).unwrap();
    (0..n)
        .map(|i| {
            base.replace(
                "192.168.144.1",
                &format!("203.0.{}.{}", i % 250, (i * 7) % 250),
            )
            .replace(
                "1614232668342",
                &(1_614_232_668_342u64 + i as u64 * 13).to_string(),
            )
            .replace(
                "\"uri\":\"/log\"",
                &format!("\"uri\":\"/log/{i}?page={}\"", i % 9),
            )
            .replace(
                "\"username\":\"foo\"",
                &format!("\"username\":\"user{}\"", i % 50),
            )
            .into_bytes()
        })
        .collect()
}

/// The apache sample rewritten in the recommended nginx JSON format.
fn nginx_json_lines(n: usize) -> Vec<Vec<u8>> {
    let fmt = RECOMMENDED_LOG_FORMAT;
    let body = &fmt[fmt.find('\'').unwrap() + 1..fmt.rfind('\'').unwrap()];
    let nginx = build(FormatKind::NginxCombined, &FormatOptions::default()).unwrap();
    lines("elastic-examples-apache-logs/apache_logs")
        .iter()
        .take(n)
        .map(|l| {
            let ev = nginx.parse(l).unwrap();
            let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
            body.replace(
                "$msec",
                &format!("{}.{:03}", ev.ts.secs(), ev.ts.millis() % 1000),
            )
            .replace("$remote_addr", &ev.ip.to_string())
            .replace("$http_x_forwarded_for", "")
            .replace("$remote_user", "")
            .replace("$request_method", ev.method.as_str())
            .replace("$host", "www.example.com")
            .replace("$request_uri", &esc(&format!("{}?{}", ev.path, ev.query)))
            .replace("$status", &ev.status.to_string())
            .replace("$body_bytes_sent", &ev.bytes.to_string())
            .replace("$request_time", "0.012")
            .replace("$http_user_agent", &esc(&ev.user_agent))
            .into_bytes()
        })
        .collect()
}

fn bench_format(c: &mut Criterion, name: &str, f: &dyn Format, sample: &[Vec<u8>]) {
    // Every sample line must parse: a benchmark of error paths would lie.
    for l in sample {
        f.parse(l)
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(l)));
    }
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(sample.len() as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            let mut n = 0usize;
            for l in sample {
                if let Ok(ev) = f.parse(black_box(l)) {
                    n += ev.path.len() + usize::from(ev.status);
                }
            }
            black_box(n)
        })
    });
    g.finish();
}

fn parsers(c: &mut Criterion) {
    let opts = FormatOptions::default();
    let p = |k| build(k, &opts).unwrap();
    let auto = p(FormatKind::Auto);

    let apache = lines("elastic-examples-apache-logs/apache_logs");
    bench_format(c, "nginx_combined", &*p(FormatKind::NginxCombined), &apache);
    bench_format(c, "auto/nginx_combined", &*auto, &apache);

    let kong = kong_lines(2_000);
    bench_format(c, "kong", &*p(FormatKind::Kong), &kong);
    bench_format(c, "auto/kong", &*auto, &kong);

    let nj = nginx_json_lines(2_000);
    bench_format(c, "nginx_json", &*p(FormatKind::NginxJson), &nj);

    let apisix = cycle(&lines("apisix-docs/default-format-compact.ndjson"), 1_000);
    bench_format(c, "apisix", &*p(FormatKind::Apisix), &apisix);

    let traefik =
        lines("crowdsec-hub/tests/traefik_base-http-scenario/traefik_base-http-scenario.log");
    bench_format(
        c,
        "traefik_json",
        &*p(FormatKind::Traefik),
        &cycle(&traefik, 1_000),
    );
    let traefik_clf = cycle(
        &lines("crowdsec-hub/tests/traefik_clf/traefik_clf.log"),
        1_000,
    );
    bench_format(c, "traefik_clf", &*p(FormatKind::Traefik), &traefik_clf);

    let envoy_json = cycle(
        &lines("crowdsec-hub/tests/envoy-logs/envoy.log")[..3],
        1_000,
    );
    bench_format(c, "envoy_json_cri", &*p(FormatKind::Envoy), &envoy_json);
    let envoy_text: Vec<Vec<u8>> = lines("elastic-integrations/envoyproxy/test-log.log")
        .into_iter()
        .filter(|l| l.starts_with(b"[") && !l.windows(5).any(|w| w == b"\"-\" \""))
        .collect();
    bench_format(
        c,
        "envoy_text",
        &*p(FormatKind::Envoy),
        &cycle(&envoy_text, 1_000),
    );
    let istio = cycle(&lines("istio-docs/istio-default-text.log"), 1_000);
    bench_format(c, "istio_text", &*p(FormatKind::Envoy), &istio);

    let mut haproxy = lines("elastic-integrations/haproxy-log/test-httplog-no-headers.log");
    haproxy.extend(
        lines("fail2ban/logs/haproxy-http-auth")
            .into_iter()
            .filter(|l| !l.starts_with(b"#")),
    );
    bench_format(
        c,
        "haproxy_syslog",
        &*p(FormatKind::Haproxy),
        &cycle(&haproxy, 1_000),
    );

    let caddy = cycle(
        &lines("crowdsec-hub/tests/caddy-logs/caddy-logs.log")[..10],
        1_000,
    );
    bench_format(c, "caddy", &*p(FormatKind::Caddy), &caddy);

    let aws = cycle(
        &lines("elastic-integrations/aws-apigateway/test-apigateway-rest.log"),
        1_000,
    );
    bench_format(c, "aws_apigw", &*p(FormatKind::AwsApigw), &aws);

    let mapping = JsonMapping {
        ts: "start_time".into(),
        ts_format: gatewatch_ingest::formats::TsFormat::EpochMs,
        client_ip: Some("client_ip".into()),
        method: Some("request.method".into()),
        uri: Some("request.uri".into()),
        status: Some("response.status".into()),
        bytes: Some("response.size".into()),
        user_agent: Some("request.headers.user-agent".into()),
        host: Some("request.headers.host".into()),
        route: Some("route_id".into()),
        latency: Some("latency".into()),
        ..JsonMapping::default()
    };
    let json = build(
        FormatKind::Json,
        &FormatOptions {
            json: Some(mapping),
            ..opts.clone()
        },
    )
    .unwrap();
    bench_format(c, "json_mapping/apisix", &*json, &apisix);

    let wpconfig = cycle(
        &lines("crowdsec-hub/tests/http-wordpress_wpconfig/http-wordpress_wpconfig.log"),
        1_000,
    );
    bench_format(c, "auto/syslog_nginx", &*auto, &wpconfig);
}

criterion_group!(benches, parsers);
criterion_main!(benches);
