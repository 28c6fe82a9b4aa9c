//! Envoy access logs: JSON (`json_format`, Envoy Gateway's keys), the
//! default text format, and Istio's default text format; with or without
//! a CRI (`<RFC3339Nano> stdout F `) or `ACCESS ` prefix, or wrapped in a
//! Docker-style `{"message": "…"}` / `{"log": "…"}` object.
//!
//! Envoy's default text format has **no peer address**: the client can only
//! come from `%REQ(X-FORWARDED-FOR)%`. Its rightmost entry is the address
//! Envoy appended (with `use_remote_address`), so it stands for the peer
//! and the rest is resolved with the trusted proxies
//! ([`ClientResolver::resolve_chain`]); a line whose XFF is `-` has no
//! client and is reported as [`ParseError::NoClient`], not dropped
//! silently. Istio's format and JSON lines carry the peer
//! (`DOWNSTREAM_REMOTE_ADDRESS` / `downstream_remote_address`).

use super::jsonutil::{bad_json, from_slice, with_lossy_retry, JStr, Num, OptJStr};
use super::text::{closing_quote, float_ms, opt_text, parse_status, parse_u64, split_request};
use super::text::{split_target_cow, text};
use super::{time, trim_line, Format, ParseError};
use crate::client_ip::{parse_addr, ClientResolver};
use gatewatch_detector::{Event, EventTime, Method};
use serde::Deserialize;
use std::borrow::Cow;

const NAME: &str = "envoy";

/// Parser for Envoy / Istio access logs.
#[derive(Debug, Clone, Default)]
pub struct Envoy {
    resolver: ClientResolver,
}

impl Envoy {
    /// A parser resolving `X-Forwarded-For` with `resolver`.
    pub fn new(resolver: ClientResolver) -> Self {
        Envoy { resolver }
    }
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    start_time: Option<JStr<'a>>,
    #[serde(borrow)]
    method: Option<JStr<'a>>,
    #[serde(borrow, rename = "x-envoy-origin-path")]
    origin_path: Option<JStr<'a>>,
    #[serde(borrow, rename = "x-envoy-original-path")]
    original_path: Option<JStr<'a>>,
    #[serde(borrow)]
    path: Option<JStr<'a>>,
    #[serde(borrow, rename = ":authority")]
    authority: Option<JStr<'a>>,
    #[serde(borrow, rename = "user-agent")]
    user_agent: Option<JStr<'a>>,
    #[serde(borrow, rename = "x-forwarded-for")]
    x_forwarded_for: Option<JStr<'a>>,
    response_code: Option<Num>,
    bytes_sent: Option<Num>,
    duration: Option<Num>,
    #[serde(borrow)]
    downstream_remote_address: Option<JStr<'a>>,
    #[serde(borrow)]
    route_name: Option<JStr<'a>>,
    #[serde(borrow)]
    message: Option<JStr<'a>>,
    #[serde(borrow)]
    log: Option<JStr<'a>>,
}

impl Format for Envoy {
    fn name(&self) -> &'static str {
        NAME
    }

    fn parse<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let line = trim_line(line);
        if line.is_empty() {
            return Err(ParseError::Empty);
        }
        let line = strip_cri(line).unwrap_or(line);
        let line = line.strip_prefix(b"ACCESS ").unwrap_or(line);
        match line.first() {
            Some(b'{') => with_lossy_retry(line, |l| self.parse_json(l)),
            Some(b'[') => self.parse_text(line),
            _ => Err(ParseError::Malformed {
                format: NAME,
                what: "neither JSON nor [time] text",
            }),
        }
    }
}

/// Strips a CRI log prefix (`2025-12-31T17:37:40.493035218+01:00 stdout F `)
/// as containerd and CRI-O write container output; `None` if absent.
pub(crate) fn strip_cri(line: &[u8]) -> Option<&[u8]> {
    if line.len() < 30 || line[4] != b'-' || line[10] != b'T' || !line[0].is_ascii_digit() {
        return None;
    }
    let sp = memchr::memchr(b' ', line)?;
    let rest = &line[sp + 1..];
    let rest = rest
        .strip_prefix(b"stdout ")
        .or_else(|| rest.strip_prefix(b"stderr "))?;
    rest.strip_prefix(b"F ")
        .or_else(|| rest.strip_prefix(b"P "))
}

impl Envoy {
    fn parse_json<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let l: Line<'a> = from_slice(line).ok_or_else(|| bad_json(NAME))?;
        let Some(start) = l.start_time.value() else {
            // A container runtime's JSON wrapper around a text line.
            if let Some(inner) = l.message.value().or(l.log.value()) {
                return match inner {
                    Cow::Borrowed(s) => self.parse(s.as_bytes()),
                    Cow::Owned(s) => self.parse(s.as_bytes()).map(Event::into_owned),
                };
            }
            return Err(ParseError::MissingField {
                format: NAME,
                field: "start_time",
            });
        };
        let ts = time::parse_rfc3339(start.as_bytes())
            .ok_or(ParseError::BadTimestamp { format: NAME })?;
        let xff = l.x_forwarded_for.value();
        let ip = match l
            .downstream_remote_address
            .value()
            .and_then(|a| parse_addr(a.as_bytes()))
        {
            Some(peer) => self
                .resolver
                .resolve(peer, xff.as_deref().map(str::as_bytes)),
            None => xff
                .as_deref()
                .and_then(|x| self.resolver.resolve_chain(x.as_bytes()))
                .ok_or(ParseError::NoClient { format: NAME })?,
        };
        let mut ev = Event::new(EventTime::from_millis(ts), ip);
        ev.method = l
            .method
            .value()
            .map_or(Method::Invalid, |m| Method::parse(m.as_bytes()));
        let target = l
            .origin_path
            .value()
            .or(l.original_path.value())
            .or(l.path.value())
            .unwrap_or_default();
        let (path, query) = split_target_cow(target);
        ev.path = path;
        ev.query = query;
        ev.host = l.authority.value().unwrap_or_default();
        ev.user_agent = l.user_agent.value().unwrap_or_default();
        ev.status = l.response_code.unwrap_or_default().status();
        ev.bytes = l.bytes_sent.and_then(Num::u64).unwrap_or(0);
        ev.latency_ms = l.duration.and_then(|n| n.0).and_then(|d| float_ms(d, 1.0));
        ev.route = l.route_name.value();
        Ok(ev)
    }

    fn parse_text<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let malformed = |what| ParseError::Malformed { format: NAME, what };
        let close = memchr::memchr(b']', line).ok_or(malformed("no [time]"))?;
        let ts = time::parse_rfc3339(&line[1..close])
            .ok_or(ParseError::BadTimestamp { format: NAME })?;
        // Up to 24 fields, quoted or bare, without allocating.
        let mut f: [(&[u8], bool); 24] = [(&[], false); 24];
        let mut n = 0;
        let mut rest = &line[close + 1..];
        while n < f.len() {
            while rest.first() == Some(&b' ') {
                rest = &rest[1..];
            }
            if rest.is_empty() {
                break;
            }
            if rest[0] == b'"' {
                let end = closing_quote(&rest[1..]).ok_or(malformed("unterminated quote"))?;
                f[n] = (&rest[1..=end], true);
                rest = &rest[end + 2..];
            } else {
                let end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
                f[n] = (&rest[..end], false);
                rest = &rest[end..];
            }
            n += 1;
        }
        if n < 11 || !f[0].1 {
            return Err(malformed("too few fields"));
        }
        // Istio inserts details, termination details and a quoted failure
        // reason after the flags (so field 5 is quoted), and six bare
        // fields after the upstream host.
        let istio = f[5].1;
        let (xff_i, ua_i, auth_i, bytes_i, dur_i) = if istio {
            (10, 11, 13, 7, 8)
        } else {
            (7, 8, 10, 4, 5)
        };
        if n <= auth_i || !f[xff_i].1 || !f[ua_i].1 {
            return Err(malformed("unexpected field layout"));
        }
        let xff = f[xff_i].0;
        let ip = match (istio && n > 18).then(|| parse_addr(f[18].0)).flatten() {
            Some(peer) => Some(self.resolver.resolve(peer, (xff != b"-").then_some(xff))),
            None => self.resolver.resolve_chain(xff),
        };
        let ip = ip.ok_or(ParseError::NoClient { format: NAME })?;
        let mut ev = Event::new(EventTime::from_millis(ts), ip);
        let req = split_request(f[0].0);
        ev.method = req.method;
        ev.path = text(req.path);
        ev.query = text(req.query);
        ev.status = parse_status(f[1].0).ok_or(malformed("bad status"))?;
        ev.bytes = parse_u64(f[bytes_i].0).unwrap_or(0);
        ev.latency_ms = parse_u64(f[dur_i].0).map(|d| u32::try_from(d).unwrap_or(u32::MAX));
        ev.user_agent = opt_text(f[ua_i].0).unwrap_or_default();
        ev.host = opt_text(f[auth_i].0).unwrap_or_default();
        if istio && n > 20 {
            ev.route = opt_text(f[20].0);
        }
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_text_with_and_without_client() {
        let e = Envoy::default();
        let ev = e
            .parse(br#"[2019-04-11T00:51:07.980Z] "GET /elastic/?q=1 HTTP/1.1" 301 - 0 0 41 39 "172.17.0.3" "curl/7.59.0" "078d1daa" "www.elastic.co" "192.168.1.10:80""#)
            .unwrap();
        assert_eq!(
            (ev.ip.to_string().as_str(), &*ev.path, &*ev.query),
            ("172.17.0.3", "/elastic/", "q=1")
        );
        assert_eq!((ev.status, ev.bytes, ev.latency_ms), (301, 0, Some(41)));
        assert_eq!(
            (&*ev.user_agent, &*ev.host),
            ("curl/7.59.0", "www.elastic.co")
        );
        assert_eq!(
            e.parse(br#"[2019-04-08T16:16:55.931Z] "GET /service/1 HTTP/1.1" 200 - 0 89 5 4 "-" "curl/7.54.0" "c219" "localhost:8000" "172.27.0.3:80""#).unwrap_err(),
            ParseError::NoClient { format: NAME }
        );
        let ev = e
            .parse(br#"ACCESS [2024-04-25T17:51:55.294Z] "GET /backend/ HTTP/1.1" 200 - 0 141 0 0 "192.168.0.9" "curl/8.4.0" "b7ba" "localhost:9001" "192.168.96.113:80""#)
            .unwrap();
        assert_eq!(ev.ip.to_string(), "192.168.0.9");
    }

    #[test]
    fn istio_text_uses_downstream_remote_address() {
        let ev = Envoy::default()
            .parse(br#"[2020-11-25T21:26:18.409Z] "GET /status/418 HTTP/1.1" 418 - via_upstream - "-" 0 135 3 1 "-" "curl/7.73.0-DEV" "84961386" "httpbin:8000" "127.0.0.1:80" inbound|8000|| 127.0.0.1:41854 10.44.1.27:80 10.44.1.23:37652 outbound_.8000_._.httpbin.foo.svc.cluster.local default"#)
            .unwrap();
        assert_eq!(
            (ev.ip.to_string().as_str(), ev.status, ev.bytes),
            ("10.44.1.23", 418, 135)
        );
        assert_eq!(
            (ev.latency_ms, ev.route.as_deref(), &*ev.host),
            (Some(3), Some("default"), "httpbin:8000")
        );
    }

    #[test]
    fn cri_json_and_wrappers() {
        let ev = Envoy::default()
            .parse(br#"2026-01-24T01:36:00.000000000+00:00 stdout F {":authority":"proxy6.example.com","bytes_sent":1024,"downstream_remote_address":"[fd00:1234:5678::1]:54321","duration":20,"method":"POST","response_code":201,"route_name":null,"start_time":"2026-01-24T01:36:00.000Z","user-agent":"curl/8.10.1","x-envoy-origin-path":"/api/create","x-forwarded-for":"fd00:1234:5678::5a24, [fd00:1234:5678::1]:54321"}"#)
            .unwrap();
        assert_eq!(
            (ev.ip.to_string().as_str(), ev.method, &*ev.path),
            ("fd00:1234:5678::1", Method::Post, "/api/create")
        );
        assert_eq!(
            (ev.status, ev.bytes, ev.latency_ms, ev.route),
            (201, 1024, Some(20), None)
        );
        let ev = Envoy::default()
            .parse(br#"{"message":"ACCESS [2019-04-10T03:49:34.451Z] \"GET /httpbin/status/501 HTTP/1.1\" 501 - 0 0 180 179 \"172.17.0.3\" \"curl/7.59.0\" \"413b\" \"httpbin.org\" \"67.43.156.18:80\"","stream":"stdout"}"#)
            .unwrap();
        assert_eq!(
            (ev.ip.to_string().as_str(), ev.status, &*ev.path),
            ("172.17.0.3", 501, "/httpbin/status/501")
        );
        assert_eq!(
            Envoy::default()
                .parse(br#"2026-01-24T01:38:00.000000000+00:00 stdout F [2026-01-24T01:38:00.000Z] "POST /api/proxy6 HTTP/1.1" 201 - 0 1024 40 20 "fd00:1234:5678::5a24, [fd00:1234:5678::1]:54321" "curl/8.10.1" "m" "proxy6.example.com" "tcp://[fd00:1234:5678::e18]:8080""#)
                .unwrap()
                .ip
                .to_string(),
            "fd00:1234:5678::1"
        );
    }
}
