//! nginx access log written as JSON with `log_format … escape=json`.
//!
//! nginx has no standard JSON access-log shape, so gatewatch recommends one
//! ([`RECOMMENDED_LOG_FORMAT`]); the README and the tests use that very
//! text. Keys are named after the nginx variables they hold, so a
//! hand-written format using the same names also parses. `escape=json`
//! escapes `"`, `\` and control characters but passes bytes ≥ 0x80 through,
//! so a hostile header can make the line invalid UTF-8: such lines are
//! re-parsed from a lossy copy instead of being dropped.

use super::jsonutil::{bad_json, from_slice, with_lossy_retry, JStr, Num, OptJStr};
use super::text::{split_request, split_target_cow};
use super::{time, trim_line, Format, ParseError};
use crate::client_ip::{parse_addr, ClientResolver};
use gatewatch_detector::{Event, EventTime, Method};
use serde::Deserialize;
use std::borrow::Cow;

const NAME: &str = "nginx_json";

/// The `log_format` gatewatch recommends for nginx (one line in
/// `nginx.conf`, inside `http { }`; then `access_log /var/log/nginx/gatewatch.log gatewatch;`).
///
/// * `$msec`: event time with milliseconds, no time-zone ambiguity.
/// * `$remote_addr` plus `$http_x_forwarded_for`: the peer and the chain,
///   resolved with the source's `trusted_proxies`.
/// * `$remote_user`: the basic-auth user *attempted* (credential stuffing).
/// * `$request_uri`: path and query as sent (not decoded).
///
/// To also record the account of a form login, add
/// `"login_user":"$your_variable"` (e.g. set with `map` from the request
/// body in an `auth_request` setup); the parser reads `login_user` into
/// the event's `user` when `$remote_user` is empty.
pub const RECOMMENDED_LOG_FORMAT: &str = concat!(
    r#"log_format gatewatch escape=json '{"msec":$msec,"remote_addr":"$remote_addr","#,
    r#""http_x_forwarded_for":"$http_x_forwarded_for","remote_user":"$remote_user","#,
    r#""request_method":"$request_method","host":"$host","request_uri":"$request_uri","#,
    r#""status":$status,"body_bytes_sent":$body_bytes_sent,"request_time":$request_time,"#,
    r#""http_user_agent":"$http_user_agent"}';"#
);

/// Parser for nginx JSON access logs.
#[derive(Debug, Clone, Default)]
pub struct NginxJson {
    resolver: ClientResolver,
}

impl NginxJson {
    /// A parser resolving `http_x_forwarded_for` with `resolver`.
    pub fn new(resolver: ClientResolver) -> Self {
        NginxJson { resolver }
    }
}

#[derive(Deserialize)]
struct Line<'a> {
    msec: Option<Num>,
    #[serde(borrow)]
    time_iso8601: Option<JStr<'a>>,
    #[serde(borrow)]
    time_local: Option<JStr<'a>>,
    #[serde(borrow)]
    remote_addr: Option<JStr<'a>>,
    #[serde(borrow)]
    http_x_forwarded_for: Option<JStr<'a>>,
    #[serde(borrow)]
    remote_user: Option<JStr<'a>>,
    #[serde(borrow)]
    login_user: Option<JStr<'a>>,
    #[serde(borrow)]
    request_method: Option<JStr<'a>>,
    #[serde(borrow)]
    request_uri: Option<JStr<'a>>,
    #[serde(borrow)]
    request: Option<JStr<'a>>,
    #[serde(borrow)]
    host: Option<JStr<'a>>,
    #[serde(borrow)]
    http_host: Option<JStr<'a>>,
    status: Option<Num>,
    body_bytes_sent: Option<Num>,
    request_time: Option<Num>,
    #[serde(borrow)]
    http_user_agent: Option<JStr<'a>>,
}

impl Format for NginxJson {
    fn name(&self) -> &'static str {
        NAME
    }

    fn parse<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let line = trim_line(line);
        if line.is_empty() {
            return Err(ParseError::Empty);
        }
        with_lossy_retry(line, |l| self.parse_strict(l))
    }
}

impl NginxJson {
    fn parse_strict<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let l: Line<'a> = from_slice(line).ok_or_else(|| bad_json(NAME))?;
        let ts = if let Some(ms) = l.msec.and_then(|n| n.0).and_then(time::epoch_f64_ms) {
            ms
        } else if let Some(t) = l.time_iso8601.value() {
            time::parse_rfc3339(t.as_bytes()).ok_or(ParseError::BadTimestamp { format: NAME })?
        } else if let Some(t) = l.time_local.value() {
            time::parse_clf(t.as_bytes()).ok_or(ParseError::BadTimestamp { format: NAME })?
        } else {
            return Err(ParseError::MissingField {
                format: NAME,
                field: "msec",
            });
        };
        let peer = l.remote_addr.value().ok_or(ParseError::MissingField {
            format: NAME,
            field: "remote_addr",
        })?;
        let peer = parse_addr(peer.as_bytes()).ok_or(ParseError::NoClient { format: NAME })?;
        let xff = l.http_x_forwarded_for.value();
        let ip = self
            .resolver
            .resolve(peer, xff.as_deref().map(str::as_bytes));

        let mut ev = Event::new(EventTime::from_millis(ts), ip);
        match (l.request_method.value(), l.request_uri.value()) {
            (Some(m), uri) => {
                ev.method = Method::parse(m.as_bytes());
                let (path, query) = split_target_cow(uri.unwrap_or(Cow::Borrowed("")));
                ev.path = path;
                ev.query = query;
            }
            (None, _) => {
                // `$request` logged instead: split it like a text line.
                let raw = l.request.value().unwrap_or(Cow::Borrowed(""));
                match raw {
                    Cow::Borrowed(s) => {
                        let r = split_request(s.as_bytes());
                        ev.method = r.method;
                        ev.path = super::text::text(r.path);
                        ev.query = super::text::text(r.query);
                    }
                    Cow::Owned(s) => {
                        let r = split_request(s.as_bytes());
                        ev.method = r.method;
                        ev.path = Cow::Owned(String::from_utf8_lossy(r.path).into_owned());
                        ev.query = Cow::Owned(String::from_utf8_lossy(r.query).into_owned());
                    }
                }
            }
        }
        ev.host = l.host.value().or(l.http_host.value()).unwrap_or_default();
        ev.status = l.status.unwrap_or_default().status();
        ev.bytes = l.body_bytes_sent.and_then(Num::u64).unwrap_or(0);
        ev.latency_ms = l
            .request_time
            .and_then(|n| n.0)
            .and_then(|s| super::text::float_ms(s, 0.001));
        ev.user = l.remote_user.value().or(l.login_user.value());
        ev.user_agent = l.http_user_agent.value().unwrap_or_default();
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders the recommended format the way nginx does: each `$var`
    /// replaced by its escape=json value (empty string when unset).
    fn render(vars: &[(&str, &str)]) -> Vec<u8> {
        let fmt = RECOMMENDED_LOG_FORMAT;
        let start = fmt.find('\'').unwrap() + 1;
        let end = fmt.rfind('\'').unwrap();
        let mut out = fmt[start..end].to_string();
        // Longest names first so `$host` does not eat `$http_…`.
        let mut vars: Vec<_> = vars.to_vec();
        vars.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        for (k, v) in vars {
            out = out.replace(&format!("${k}"), &escape_json(v));
        }
        out.into_bytes()
    }

    /// nginx `escape=json`: `"` and `\` backslash-escaped, control
    /// characters as `\n` etc. or `\u00XX`, everything else verbatim.
    fn escape_json(v: &str) -> String {
        let mut s = String::new();
        for c in v.chars() {
            match c {
                '"' => s.push_str("\\\""),
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
                c => s.push(c),
            }
        }
        s
    }

    fn vars<'a>(ua: &'a str, xff: &'a str, user: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("msec", "1700000000.123"),
            ("remote_addr", "10.0.0.2"),
            ("http_x_forwarded_for", xff),
            ("remote_user", user),
            ("request_method", "POST"),
            ("host", "api.example.com"),
            ("request_uri", "/login?next=%2F"),
            ("status", "401"),
            ("body_bytes_sent", "17"),
            ("request_time", "0.004"),
            ("http_user_agent", ua),
        ]
    }

    #[test]
    fn parses_the_recommended_format_as_nginx_writes_it() {
        let line = render(&vars("curl/8.4.0", "", ""));
        let ev = NginxJson::default().parse(&line).unwrap();
        assert_eq!(ev.ts.millis(), 1_700_000_000_123);
        assert_eq!(ev.ip.to_string(), "10.0.0.2");
        assert_eq!(
            (ev.method, &*ev.path, &*ev.query),
            (Method::Post, "/login", "next=%2F")
        );
        assert_eq!((ev.status, ev.bytes, ev.latency_ms), (401, 17, Some(4)));
        assert_eq!(
            (&*ev.host, &*ev.user_agent, ev.user),
            ("api.example.com", "curl/8.4.0", None)
        );
        assert!(matches!(ev.user_agent, Cow::Borrowed(_)));
    }

    #[test]
    fn escapes_quotes_control_chars_and_raw_high_bytes() {
        let line = render(&vars("evil\"ua\\\u{1}\t", "203.0.113.5, 10.0.0.9", "admin"));
        let trusted = ClientResolver::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let ev = NginxJson::new(trusted).parse(&line).unwrap();
        assert_eq!(ev.user_agent, "evil\"ua\\\u{1}\t");
        assert_eq!(ev.ip.to_string(), "203.0.113.5");
        assert_eq!(ev.user.as_deref(), Some("admin"));

        // Bytes ≥ 0x80 that are not UTF-8 are written raw by nginx.
        let mut line = render(&vars("UA-MARK", "", ""));
        let at = line.windows(7).position(|w| w == b"UA-MARK").unwrap();
        line.splice(at..at + 7, [0xff, 0xfe, b'x']);
        let ev = NginxJson::default().parse(&line).unwrap();
        assert_eq!(ev.user_agent, "\u{fffd}\u{fffd}x");
    }

    #[test]
    fn alternatives_and_errors() {
        let f = NginxJson::default();
        let ev = f
            .parse(br#"{"time_iso8601":"2024-01-01T00:00:00+00:00","remote_addr":"::1","request":"GET /a?b HTTP/1.1","status":"200"}"#)
            .unwrap();
        assert_eq!(
            (ev.method, &*ev.path, &*ev.query, ev.status),
            (Method::Get, "/a", "b", 200)
        );
        assert!(matches!(
            f.parse(b"{\"remote_addr\":\"::1\"}"),
            Err(ParseError::MissingField { .. })
        ));
        assert!(matches!(
            f.parse(b"{\"msec\":1,\"remote_addr\":\"x\"}"),
            Err(ParseError::NoClient { .. })
        ));
        assert!(matches!(
            f.parse(b"{nope"),
            Err(ParseError::Malformed { .. })
        ));
    }
}
