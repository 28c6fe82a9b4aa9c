//! Feeds arbitrary bytes to every log format, `parse` and `parse_many`,
//! with trusted proxies and a generic JSON mapping configured: no input may
//! panic (or overflow the stack).
#![no_main]

use gatewatch_ingest::formats::{build, FormatKind, FormatOptions, JsonMapping};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = FormatOptions {
        trusted_proxies: vec!["10.0.0.0/8".parse().unwrap(), "::/0".parse().unwrap()],
        json: Some(JsonMapping {
            ts: "t".into(),
            client_ip: Some("ip".into()),
            x_forwarded_for: Some("h.xff".into()),
            uri: Some("r.uri".into()),
            ..JsonMapping::default()
        }),
    };
    for kind in [
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
    ] {
        let f = build(kind, &opts).unwrap();
        let _ = f.parse(data);
        let mut out = Vec::new();
        f.parse_many(data, &mut out);
    }
    let _ = gatewatch_ingest::syslog_header::parse(data);
});
