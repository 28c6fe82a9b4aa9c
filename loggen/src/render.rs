//! Rendering a request the way each gateway logs it.

use crate::request::Request;
use chrono_free::time_local;
use std::io::Write;

/// The log formats the generator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// nginx `combined`, with the basic-auth user in `$remote_user`.
    NginxCombined,
    /// nginx JSON (`log_format … escape=json`), the layout gatewatch's
    /// README recommends.
    NginxJson,
    /// Kong's logging-plugin JSON serializer (file-log / http-log / kafka-log).
    Kong,
}

/// Appends `req` as one line (with `\n`) to `out`.
pub fn render(req: &Request, format: LogFormat, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = match format {
        LogFormat::NginxCombined => nginx_combined(req, out),
        LogFormat::NginxJson => nginx_json(req, out),
        LogFormat::Kong => kong(req, out),
    };
}

fn nginx_combined(r: &Request, out: &mut Vec<u8>) -> std::io::Result<()> {
    writeln!(
        out,
        "{} - {} [{}] \"{} {} HTTP/1.1\" {} {} \"-\" \"{}\"",
        r.ip,
        r.user.as_deref().unwrap_or("-"),
        time_local(r.ts_ms),
        r.method,
        r.uri(),
        r.status,
        r.bytes,
        r.user_agent
    )
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Exactly the keys of gatewatch's recommended `log_format gatewatch
/// escape=json` (see `gatewatch_ingest::formats::nginx_json`).
fn nginx_json(r: &Request, out: &mut Vec<u8>) -> std::io::Result<()> {
    writeln!(
        out,
        "{{\"msec\":{}.{:03},\"remote_addr\":\"{}\",\"http_x_forwarded_for\":\"\",\"remote_user\":{},\"request_method\":\"{}\",\"host\":\"{}\",\"request_uri\":{},\"status\":{},\"body_bytes_sent\":{},\"request_time\":{:.3},\"http_user_agent\":{}}}",
        r.ts_ms.div_euclid(1000),
        r.ts_ms.rem_euclid(1000),
        r.ip,
        json_str(r.user.as_deref().unwrap_or("")),
        r.method,
        r.host,
        json_str(&r.uri()),
        r.status,
        r.bytes,
        f64::from(r.latency_ms) / 1000.0,
        json_str(r.user_agent)
    )
}

/// A stable 64-bit hash of a name, for ids derived from it.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn kong(r: &Request, out: &mut Vec<u8>) -> std::io::Result<()> {
    let route_id = format!(
        "{:08x}-4c3a-4f1e-9d2b-5e6f7a8b9c0d",
        crate::rng::Rng::new(r.route.len() as u64).next_u64() as u32
    );
    let consumer = match &r.consumer {
        Some(c) => format!(
            ",\"consumer\":{{\"id\":\"{:08x}-1111-4222-8333-444455556666\",\"username\":{},\"created_at\":1674035962}},\"authenticated_entity\":{{\"id\":\"{:08x}-aaaa-4bbb-8ccc-ddddeeeeffff\"}}",
            name_hash(c) as u32,
            json_str(c),
            (name_hash(c) >> 32) as u32
        ),
        None => String::new(),
    };
    let upstream = r.latency_ms.saturating_sub(1);
    writeln!(
        out,
        "{{\"request\":{{\"method\":\"{m}\",\"uri\":{uri},\"url\":{url},\"size\":{rsize},\"querystring\":{{}},\"headers\":{{\"host\":\"{host}\",\"user-agent\":{ua},\"accept\":\"*/*\",\"accept-encoding\":\"gzip, deflate, br\",\"connection\":\"keep-alive\",\"x-forwarded-proto\":\"https\"}}}},\"upstream_uri\":{uri},\"response\":{{\"status\":{status},\"size\":{size},\"headers\":{{\"content-type\":\"application/json\",\"content-length\":\"{bytes}\",\"connection\":\"keep-alive\",\"x-kong-upstream-latency\":\"{upstream}\",\"x-kong-proxy-latency\":\"1\",\"via\":\"kong/3.6.1\"}}}},\"route\":{{\"id\":\"{route_id}\",\"name\":\"{route}\",\"paths\":[\"/\"],\"protocols\":[\"http\",\"https\"],\"strip_path\":false,\"preserve_host\":false,\"regex_priority\":0,\"https_redirect_status_code\":426,\"path_handling\":\"v0\",\"created_at\":1700000000,\"updated_at\":1700000000,\"service\":{{\"id\":\"167290ee-c682-4ebf-bdea-e49a3ac5e260\"}},\"ws_id\":\"54baa5a9-23d6-41e0-9c9a-02434b010b25\"}},\"service\":{{\"id\":\"167290ee-c682-4ebf-bdea-e49a3ac5e260\",\"name\":\"shop\",\"host\":\"shop.internal\",\"port\":8080,\"protocol\":\"http\",\"path\":\"/\",\"retries\":5,\"connect_timeout\":60000,\"read_timeout\":60000,\"write_timeout\":60000,\"created_at\":1700000000,\"updated_at\":1700000000,\"ws_id\":\"54baa5a9-23d6-41e0-9c9a-02434b010b25\"}},\"latencies\":{{\"request\":{lat},\"kong\":1,\"proxy\":{upstream}}},\"tries\":[{{\"balancer_latency\":0,\"port\":8080,\"balancer_start\":{ts},\"ip\":\"10.10.0.21\"}}],\"client_ip\":\"{ip}\",\"workspace\":\"54baa5a9-23d6-41e0-9c9a-02434b010b25\",\"workspace_name\":\"default\"{consumer},\"started_at\":{ts}}}",
        m = r.method,
        uri = json_str(&r.uri()),
        url = json_str(&format!("https://{}{}", r.host, r.uri())),
        rsize = 180 + r.uri().len(),
        host = r.host,
        ua = json_str(r.user_agent),
        status = r.status,
        size = r.bytes + 310,
        bytes = r.bytes,
        lat = r.latency_ms,
        route = r.route,
        ip = r.ip,
        ts = r.ts_ms,
    )
}

/// Calendar formatting without a date library: the generator must be
/// byte-identical everywhere.
mod chrono_free {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];

    /// (year, month 1-12, day, hour, minute, second, millis) of a UTC time.
    fn civil(ms: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
        let secs = ms.div_euclid(1000);
        let millis = ms.rem_euclid(1000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        // Howard Hinnant's days-to-civil.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let y = if m <= 2 { y + 1 } else { y };
        (y, m, d, sod / 3600, sod / 60 % 60, sod % 60, millis)
    }

    /// nginx `$time_local` in UTC: `02/Mar/2026:08:00:00 +0000`.
    pub fn time_local(ms: i64) -> String {
        let (y, mo, d, h, mi, s, _) = civil(ms);
        format!(
            "{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02} +0000",
            MONTHS[(mo - 1) as usize]
        )
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn formats_known_instants() {
            assert_eq!(
                super::time_local(1_772_438_400_000),
                "02/Mar/2026:08:00:00 +0000"
            );
            assert_eq!(
                super::time_local(951_782_400_123),
                "29/Feb/2000:00:00:00 +0000"
            );
        }
    }
}
