//! nginx `combined` and the text formats built on it: Apache combined and
//! common (CLF), nginx `main` (`… "$http_x_forwarded_for"`), the variant
//! with `$request_time $upstream_response_time` appended, vhost-prefixed
//! lines (`host[:port] ip - - […]`), APISIX's default nginx access log, and
//! Traefik's CLF (`… <count> "<router>" "<url>" <n>ms`). Lines wrapped in a
//! syslog header (a file written by rsyslog) are unwrapped too.
//!
//! A hand-written scanner (`memchr` to the next delimiter, fixed-layout time
//! parsing) rather than a regex: this is the hot path, and malformed
//! request lines (TLS bytes, `""`, `-`, no protocol) must still produce an
//! event with [`Method::Invalid`](gatewatch_detector::Method::Invalid),
//! because scanners sending them is itself the signal.

use super::text::{closing_quote, opt_text, parse_status, parse_u64, secs_to_ms};
use super::text::{split_request, Utf8Line};
use super::{time, trim_line, Format, ParseError};
use crate::client_ip::{plain_addr, ClientResolver};
use gatewatch_detector::{Event, EventTime};
use std::borrow::Cow;
use std::net::IpAddr;

const NAME: &str = "nginx_combined";

/// Parser for nginx/Apache combined-family text lines.
#[derive(Debug, Clone, Default)]
pub struct NginxCombined {
    resolver: ClientResolver,
}

impl NginxCombined {
    /// A parser resolving `X-Forwarded-For` (nginx `main`) with `resolver`.
    pub fn new(resolver: ClientResolver) -> Self {
        NginxCombined { resolver }
    }
}

impl Format for NginxCombined {
    fn name(&self) -> &'static str {
        NAME
    }

    fn parse<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let clf = parse_clf(line, NAME)?;
        Ok(clf.into_event(&self.resolver))
    }
}

/// The raw fields of one combined-family line, before interpretation.
pub(crate) struct Clf<'a> {
    /// The whole line, checked as UTF-8 once for all its fields.
    line: Utf8Line<'a>,
    vhost: Option<&'a [u8]>,
    client: IpAddr,
    user: Option<&'a [u8]>,
    ts: i64,
    /// APISIX writes `$http_host` unquoted between the time and the request.
    host: Option<&'a [u8]>,
    request: &'a [u8],
    status: u16,
    bytes: u64,
    /// APISIX writes `$request_time` between the size and the referer.
    request_time: Option<&'a [u8]>,
    ua: Option<&'a [u8]>,
    tail: &'a [u8],
}

#[inline]
fn malformed(format: &'static str, what: &'static str) -> ParseError {
    ParseError::Malformed { format, what }
}

#[inline]
fn token(b: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b' ', b) {
        Some(sp) => (&b[..sp], &b[sp + 1..]),
        None => (b, &[]),
    }
}

/// Reads a quoted field at the start of `b` (which must start with `"`);
/// returns the content and what follows the closing quote. The closing
/// quote must be followed by a space or the end; a quote inside the field
/// that is not (an old nginx that did not escape `"`) is taken as content.
#[inline]
fn quoted(b: &[u8]) -> Option<(&[u8], &[u8])> {
    quoted_then(b, |after| after.is_empty() || after[0] == b' ')
}

/// The request field: its closing quote is followed by ` <status>`.
#[inline]
fn quoted_request(b: &[u8]) -> Option<(&[u8], &[u8])> {
    quoted_then(b, |after| {
        after.len() >= 2 && after[0] == b' ' && (after[1].is_ascii_digit() || after[1] == b'-')
    })
}

#[inline]
fn quoted_then(b: &[u8], ends: impl Fn(&[u8]) -> bool) -> Option<(&[u8], &[u8])> {
    let body = b.strip_prefix(b"\"")?;
    let mut from = 0;
    loop {
        let close = from + closing_quote(&body[from..])?;
        let after = &body[close + 1..];
        if ends(after) {
            return Some((&body[..close], after.strip_prefix(b" ").unwrap_or(after)));
        }
        from = close + 1;
    }
}

/// Splits a combined-family line into its raw fields.
pub(crate) fn parse_clf<'a>(line: &'a [u8], format: &'static str) -> Result<Clf<'a>, ParseError> {
    let line = trim_line(line);
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    let (tok0, rest) = token(line);
    let (vhost, client, rest) = match plain_addr(tok0) {
        Some(ip) => {
            // `10.0.0.1 1.2.3.4 - - [` is a vhost that happens to be an IP.
            let (tok1, rest1) = token(rest);
            match (tok1 != b"-").then(|| plain_addr(tok1)).flatten() {
                Some(ip1) => (Some(tok0), ip1, rest1),
                None => (None, ip, rest),
            }
        }
        None => {
            let (tok1, rest1) = token(rest);
            match plain_addr(tok1) {
                Some(ip) => (Some(tok0), ip, rest1),
                None if rest.is_empty() => return Err(malformed(format, "single field")),
                None => {
                    // `Sep 15 16:13:46 host nginx[2869]: <line>` from a file
                    // rsyslog wrote: only tried once the fast path failed.
                    if let Some(h) = crate::syslog_header::parse(line) {
                        if h.body.len() < line.len() {
                            return parse_clf(h.body, format);
                        }
                    }
                    return Err(ParseError::NoClient { format });
                }
            }
        }
    };

    // The time is the first `[…]` that parses as one: a username may hold
    // a `[`, and skipping it is cheaper than failing the line.
    let mut from = 0;
    let (open, close, ts) = loop {
        let Some(o) = memchr::memchr(b'[', &rest[from..]) else {
            return Err(if from == 0 {
                malformed(format, "no [time] field")
            } else {
                ParseError::BadTimestamp { format }
            });
        };
        let open = from + o;
        let Some(c) = memchr::memchr(b']', &rest[open..]) else {
            return Err(ParseError::BadTimestamp { format });
        };
        let close = open + c;
        if let Some(ts) = time::parse_clf(&rest[open + 1..close]) {
            break (open, close, ts);
        }
        from = open + 1;
    };
    let user = remote_user(&rest[..open]);
    let mut rest = &rest[close + 1..];
    rest = rest.strip_prefix(b" ").unwrap_or(rest);

    let mut host = None;
    if rest.first() != Some(&b'"') {
        let (h, r) = token(rest);
        host = Some(h);
        rest = r;
    }
    let Some((request, r)) = quoted_request(rest) else {
        return Err(malformed(format, "request not quoted"));
    };
    let (status, r) = token(r);
    let Some(status) = parse_status(status) else {
        return Err(malformed(format, "bad status"));
    };
    let (bytes, mut rest) = token(r);
    let bytes = if bytes == b"-" || bytes.is_empty() {
        0
    } else {
        parse_u64(bytes).ok_or(malformed(format, "bad size"))?
    };

    let mut request_time = None;
    if rest.first().is_some_and(u8::is_ascii_digit) {
        let (rt, r) = token(rest);
        request_time = Some(rt);
        rest = r;
    }
    let mut ua = None;
    if rest.first() == Some(&b'"') {
        // Referer, then User-Agent; common log format has neither.
        if let Some((_referer, r)) = quoted(rest) {
            rest = r;
            if rest.first() == Some(&b'"') {
                if let Some((u, r)) = quoted(rest) {
                    ua = Some(u);
                    rest = r;
                }
            }
        }
    }
    Ok(Clf {
        line: Utf8Line::new(line),
        vhost,
        client,
        user,
        ts,
        host,
        request,
        status,
        bytes,
        request_time,
        ua,
        tail: rest,
    })
}

/// `- user ` between the address and the time: the ident field (always `-`
/// in practice) and `$remote_user`, which may itself contain spaces.
fn remote_user(seg: &[u8]) -> Option<&[u8]> {
    let mut s = seg;
    while s.last() == Some(&b' ') {
        s = &s[..s.len() - 1];
    }
    if s.first() == Some(&b'-') && (s.len() == 1 || s[1] == b' ') {
        s = &s[(2).min(s.len())..];
    }
    if s.iter().all(|&c| c == b'-' || c == b' ') {
        None
    } else {
        Some(s)
    }
}

impl<'a> Clf<'a> {
    /// Interprets the fields and the tail into an event.
    pub(crate) fn into_event(self, resolver: &ClientResolver) -> Event<'a> {
        let mut ev = Event::new(EventTime::from_millis(self.ts), self.client.to_canonical());
        let req = split_request(self.request);
        ev.method = req.method;
        let line = self.line;
        ev.path = line.text(req.path);
        ev.query = line.text(req.query);
        ev.status = self.status;
        ev.bytes = self.bytes;
        ev.user = self.user.map(|u| line.text(u));
        ev.user_agent = self.ua.map_or(Cow::Borrowed(""), |ua| line.dash_empty(ua));
        if let Some(h) = self.host.or(self.vhost) {
            ev.host = line.dash_empty(h);
        }
        ev.latency_ms = self.request_time.and_then(secs_to_ms);
        let apisix = self.host.is_some();
        self.interpret_tail(&mut ev, resolver, apisix);
        ev
    }

    fn interpret_tail(&self, ev: &mut Event<'a>, resolver: &ClientResolver, apisix: bool) {
        let mut rest = self.tail;
        if rest.is_empty() {
            return;
        }
        // Traefik CLF: `<count> "<router>" "<url>" <n>ms`.
        if rest[0].is_ascii_digit() && rest.ends_with(b"ms") {
            let (_count, r) = token(rest);
            if let Some((router, r)) = quoted(r) {
                ev.route = opt_text(router);
                if let Some((_url, r)) = quoted(r) {
                    let d = &r[..r.len().saturating_sub(2)];
                    ev.latency_ms = parse_u64(d).map(|v| u32::try_from(v).unwrap_or(u32::MAX));
                }
                return;
            }
        }
        let mut xff_seen = apisix;
        while !rest.is_empty() {
            if rest[0] == b'"' {
                let Some((v, r)) = quoted(rest) else { return };
                if !xff_seen {
                    xff_seen = true;
                    if v != b"-" && !resolver.is_empty() {
                        ev.ip = resolver.resolve(ev.ip, Some(v));
                    }
                }
                rest = r;
            } else {
                let (t, r) = token(rest);
                // `$request_time` (seconds, millisecond precision); the
                // upstream times after it are not the client's latency.
                if ev.latency_ms.is_none() && memchr::memchr(b'.', t).is_some() {
                    ev.latency_ms = secs_to_ms(t);
                }
                rest = r;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatewatch_detector::Method;

    fn p(line: &str) -> Event<'_> {
        NginxCombined::default().parse(line.as_bytes()).unwrap()
    }

    #[test]
    fn combined() {
        let ev = p(
            r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?a=1 HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#,
        );
        assert_eq!(ev.ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(ev.ts.millis(), 971_211_336_000);
        assert_eq!(ev.user.as_deref(), Some("frank"));
        assert_eq!(
            (ev.method, &*ev.path, &*ev.query),
            (Method::Get, "/apache_pb.gif", "a=1")
        );
        assert_eq!((ev.status, ev.bytes), (200, 2326));
        assert_eq!(ev.user_agent, "Mozilla/4.08 [en] (Win98; I ;Nav)");
        assert!(matches!(ev.path, Cow::Borrowed(_)));
        assert_eq!(ev.latency_ms, None);
    }

    #[test]
    fn timing_variant_and_upstream_lists() {
        let ev = p(
            r#"1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "POST /login HTTP/1.1" 401 12 "-" "curl/8" 0.123 0.120, 0.003"#,
        );
        assert_eq!(ev.latency_ms, Some(123));
        assert_eq!(ev.user_agent, "curl/8");
        let ev =
            p(r#"1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 499 0 "-" "-" 0.001 -"#);
        assert_eq!(
            (ev.latency_ms, &*ev.user_agent, ev.status),
            (Some(1), "", 499)
        );
    }

    #[test]
    fn main_format_uses_xff_only_with_trusted_proxies() {
        let line = br#"10.0.0.5 - - [20/Jan/2015:19:53:28 +0100] "GET / HTTP/1.1" 200 1 "-" "ua" "203.0.113.7, 10.0.0.9""#;
        let ev = NginxCombined::default().parse(line).unwrap();
        assert_eq!(ev.ip.to_string(), "10.0.0.5");
        let r = ClientResolver::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let ev = NginxCombined::new(r).parse(line).unwrap();
        assert_eq!(ev.ip.to_string(), "203.0.113.7");
    }

    #[test]
    fn vhost_common_and_odd_prefixes() {
        let ev = p(
            r#"www.crowdsec11.net:80 192.168.1.1 - - [08/Jun/2020:08:04:43 +0000] "GET /x.JPG HTTP/1.1" 301 0 "-" "M""#,
        );
        assert_eq!(
            (ev.ip.to_string().as_str(), &*ev.host),
            ("192.168.1.1", "www.crowdsec11.net:80")
        );
        let ev = p(
            r#"172.17.0.1 - - [29/Sep/2021:12:37:05 +0000] "GET /start.php?lang=x HTTP/1.1" 404 196"#,
        );
        assert_eq!(
            (ev.status, &*ev.path, &*ev.user_agent),
            (404, "/start.php", "")
        );
        let ev = p(
            r#"192.168.1.1 - [08/Jun/2020:08:04:43 +0000] "GET /api/test HTTP/1.1" 200 100 "-" "curl/7.68.0""#,
        );
        assert_eq!((ev.user.as_deref(), &*ev.path), (None, "/api/test"));
        let ev = p(
            r#"66.249.66.1 - - - [31/Jan/2015:14:29:44 ] fail2ban.org "GET / HTTP/1.1" 200 814 "-" "G" + 293 1149 546"#,
        );
        assert_eq!((&*ev.host, &*ev.user_agent), ("fail2ban.org", "G"));
        let ev = p(
            r#"10.9.9.9 1.2.3.4 - - [08/Jun/2020:08:04:43 +0000] "GET / HTTP/1.1" 200 1 "-" "-""#,
        );
        assert_eq!(
            (ev.ip.to_string().as_str(), &*ev.host),
            ("1.2.3.4", "10.9.9.9")
        );
    }

    #[test]
    fn malformed_requests_are_invalid_events() {
        for (line, path) in [
            (
                r#"1.2.3.4 - - [29/Jul/2023:10:26:07 -0700] "\x16\x03\x01\x00t" 400 157 "-" "-""#,
                r"\x16\x03\x01\x00t",
            ),
            (
                r#"12.34.56.78 - root [20/Jan/2015:19:53:28 +0100] "" 400 47 "-" "-" "-""#,
                "",
            ),
            (
                r#"1.2.3.4 - - [29/Jul/2023:10:26:06 -0700] "HELP" 400 157 "-" "-""#,
                "HELP",
            ),
            (
                r#"1.2.3.4 - - [29/Jul/2023:10:26:06 -0700] "-" 400 0 "-" "-""#,
                "-",
            ),
            (
                r#"1.2.3.4 - - [29/Jul/2023:10:26:06 -0700] "GET /a?cmd=ls -al" 400 226"#,
                "GET /a?cmd=ls -al",
            ),
        ] {
            let ev = p(line);
            assert_eq!(
                (ev.method, &*ev.path, ev.status),
                (Method::Invalid, path, 400),
                "{line}"
            );
        }
        let ev = p(
            r#"172.17.1.1 - - [28/Sep/2022:13:38:04 +0000] "GET /m HTTP/1.1" - - "-" "N" 45640 "-" "-" 0ms"#,
        );
        assert_eq!((ev.status, ev.bytes, ev.latency_ms), (0, 0, Some(0)));
        let ev =
            p(r#"1.2.3.4 - - [29/Jul/2023:10:26:06 -0700] "GET /"quoted" HTTP/1.1" 200 1 "-" "-""#);
        assert_eq!(&*ev.path, "/\"quoted\"");
    }

    #[test]
    fn traefik_clf_tail() {
        let ev = p(
            r#"172.17.1.3 - - [24/Nov/2024:13:40:15 +0000] "GET /api/users HTTP/1.1" 200 450 "-" "curl/7.68.0" 300 "root@docker -> leaf@docker" "http://172.17.0.4:80" 25ms"#,
        );
        assert_eq!(
            (ev.route.as_deref(), ev.latency_ms),
            (Some("root@docker -> leaf@docker"), Some(25))
        );
    }

    #[test]
    fn apisix_default_line() {
        let ev = p(
            r#"192.168.1.9 - bob [10/Nov/2023:06:02:44 +0000] 127.0.0.1:9080 "GET /get?a=b HTTP/1.1" 200 233 0.411 "-" "curl/8.7.1" 54.90.18.68:80 200 0.393 "http://127.0.0.1:9080/get" "a1b2""#,
        );
        assert_eq!(
            (&*ev.host, &*ev.path, &*ev.query),
            ("127.0.0.1:9080", "/get", "a=b")
        );
        assert_eq!(
            (ev.latency_ms, &*ev.user_agent, ev.user.as_deref()),
            (Some(411), "curl/8.7.1", Some("bob"))
        );
    }

    #[test]
    fn rejects() {
        let f = NginxCombined::default();
        assert_eq!(f.parse(b"   ").unwrap_err(), ParseError::Empty);
        assert!(matches!(
            f.parse(b"hello").unwrap_err(),
            ParseError::Malformed { .. }
        ));
        assert!(matches!(
            f.parse(b"host unix: - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 1")
                .unwrap_err(),
            ParseError::NoClient { .. }
        ));
        assert!(matches!(
            f.parse(b"1.2.3.4 - - [10/Oct/2000:13:55:36 -0799] \"GET / HTTP/1.1\" 200 1")
                .unwrap_err(),
            ParseError::BadTimestamp { .. }
        ));
        assert!(matches!(
            f.parse(b"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" abc 1")
                .unwrap_err(),
            ParseError::Malformed { .. }
        ));
    }
}
