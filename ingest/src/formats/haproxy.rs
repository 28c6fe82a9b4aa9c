//! HAProxy `option httplog`, with or without its syslog header.
//!
//! `[<syslog header> haproxy[pid]: ]<ip>:<port> [<dd/Mon/yyyy:HH:MM:SS.mmm>]
//! <frontend>[~] <backend>/<server> <Tq>/<Tw>/<Tc>/<Tr>/<Ta> <status> <bytes>
//! <cookies> <termination> <conns> <queues> [{req hdrs}] [{resp hdrs}] "<request>"`.
//!
//! The time has no zone (HAProxy logs local time); it is taken as UTC, so
//! run HAProxy in UTC or expect an offset. The backend name becomes the
//! event's route. Lines that are valid HAProxy output but no request (TLS
//! handshake failures: `… frontend/backend: SSL handshake failure`) are
//! [`ParseError::NotAccessLog`]; `<BADREQ>` requests are events with
//! [`Method::Invalid`](gatewatch_detector::Method::Invalid).

use super::text::{parse_status, parse_u64, split_request, text};
use super::{time, trim_line, Format, ParseError};
use crate::client_ip::{parse_addr_port, ClientResolver};
use crate::syslog_header;
use gatewatch_detector::{Event, EventTime};

const NAME: &str = "haproxy";

/// Parser for HAProxy HTTP logs.
#[derive(Debug, Clone, Default)]
pub struct Haproxy {
    resolver: ClientResolver,
}

impl Haproxy {
    /// A parser (HAProxy logs no `X-Forwarded-For` by default, so the
    /// resolver only canonicalises addresses).
    pub fn new(resolver: ClientResolver) -> Self {
        Haproxy { resolver }
    }
}

#[inline]
fn token(b: &[u8]) -> (&[u8], &[u8]) {
    let b = trim_start(b);
    match memchr::memchr(b' ', b) {
        Some(sp) => (&b[..sp], &b[sp + 1..]),
        None => (b, &[]),
    }
}

fn trim_start(mut b: &[u8]) -> &[u8] {
    while b.first() == Some(&b' ') {
        b = &b[1..];
    }
    b
}

/// `Tq/Tw/Tc/Tr/Ta` (or the 4/5-field variants): numbers or `-1`, slashes.
fn is_timers(t: &[u8]) -> bool {
    let slashes = t.iter().filter(|&&c| c == b'/').count();
    (3..=5).contains(&slashes)
        && t.iter()
            .all(|&c| c.is_ascii_digit() || c == b'/' || c == b'-' || c == b'+')
}

impl Format for Haproxy {
    fn name(&self) -> &'static str {
        NAME
    }

    fn parse<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let line = trim_line(line);
        if line.is_empty() {
            return Err(ParseError::Empty);
        }
        let body = match syslog_header::parse(line) {
            Some(h) => h.body,
            None => line,
        };
        self.parse_body(body)
    }
}

impl Haproxy {
    /// Parses the httplog text after any syslog header.
    pub(crate) fn parse_body<'a>(&self, body: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let malformed = |what| ParseError::Malformed { format: NAME, what };
        let (client, rest) = token(body);
        let rest = trim_start(rest);
        if rest.first() != Some(&b'[') {
            return Err(malformed("no [time] field"));
        }
        let close = memchr::memchr(b']', rest).ok_or(malformed("no [time] field"))?;
        let ts =
            time::parse_clf(&rest[1..close]).ok_or(ParseError::BadTimestamp { format: NAME })?;
        let (frontend, rest) = token(&rest[close + 1..]);
        if frontend.ends_with(b":") || frontend.is_empty() {
            return Err(ParseError::NotAccessLog { format: NAME });
        }
        let (backend, mut rest) = token(rest);
        if backend.ends_with(b":") || memchr::memchr(b'/', backend).is_none() {
            return Err(ParseError::NotAccessLog { format: NAME });
        }
        // Skip a stray field (a logged host) before the timers.
        let mut timers = &[][..];
        for _ in 0..3 {
            let (t, r) = token(rest);
            rest = r;
            if is_timers(t) {
                timers = t;
                break;
            }
        }
        if timers.is_empty() {
            return Err(malformed("no timers"));
        }
        let (status, rest) = token(rest);
        let status = if status == b"-1" {
            Some(0)
        } else {
            parse_status(status)
        };
        let status = status.ok_or(malformed("bad status"))?;
        let (bytes, rest) = token(rest);
        let bytes = parse_u64(bytes.strip_prefix(b"+").unwrap_or(bytes)).unwrap_or(0);
        let open = memchr::memchr(b'"', rest).ok_or(malformed("no request"))?;
        let req = &rest[open + 1..];
        let req = req.strip_suffix(b"\"").unwrap_or(req);

        let ip = parse_addr_port(client).ok_or(ParseError::NoClient { format: NAME })?;
        let mut ev = Event::new(EventTime::from_millis(ts), self.resolver.resolve(ip, None));
        let r = split_request(req);
        ev.method = r.method;
        ev.path = text(r.path);
        ev.query = text(r.query);
        ev.status = status;
        ev.bytes = bytes;
        let total = timers.rsplit(|&c| c == b'/').next().unwrap_or_default();
        ev.latency_ms = parse_u64(total.strip_prefix(b"+").unwrap_or(total))
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX));
        let be = backend.split(|&c| c == b'/').next().unwrap_or_default();
        ev.route = (!be.is_empty()).then(|| text(be));
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatewatch_detector::Method;

    #[test]
    fn with_and_without_syslog_header() {
        let h = Haproxy::default();
        let ev = h
            .parse(br#"Feb  6 12:14:14 localhost haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} "GET /index.html?x=1 HTTP/1.1""#)
            .unwrap();
        assert_eq!(
            (ev.ip.to_string().as_str(), ev.ts.millis()),
            ("10.0.1.2", 1_233_922_454_655)
        );
        assert_eq!(
            (ev.method, &*ev.path, &*ev.query, ev.status, ev.bytes),
            (Method::Get, "/index.html", "x=1", 200, 2750)
        );
        assert_eq!(
            (ev.latency_ms, ev.route.as_deref()),
            (Some(109), Some("static"))
        );
        let ev = h
            .parse(br#"117.136.40.129:14853 [14/Jan/2015:12:48:57.127] https-in~ xx_server_https/xxx_node_8002 170/0/0/3/173 200 739 - - --NN 0/0/0/0/0 0/0 "GET /xxx/xxx HTTP/1.1""#)
            .unwrap();
        assert_eq!(
            (ev.ip.to_string().as_str(), &*ev.path),
            ("117.136.40.129", "/xxx/xxx")
        );
    }

    #[test]
    fn odd_lines() {
        let h = Haproxy::default();
        let ev = h
            .parse(br#"Nov 14 22:45:11 test haproxy[760]: ::ffff:192.168.33.1:58430 [14/Nov/2015:22:45:11.608] main main/<NOSRV> -1/-1/-1/-1/0 401 248 - - PR-- 0/0/0/0/0 0/0 "GET / HTTP/1.1""#)
            .unwrap();
        assert_eq!(
            (ev.ip.to_string().as_str(), ev.status),
            ("192.168.33.1", 401)
        );
        let ev = h
            .parse(br#"Nov 14 22:45:11 test haproxy[760]: 2001:db8::1234:58430 [14/Nov/2015:22:45:11.608] main main/<NOSRV> -1/-1/-1/-1/0 401 248 - - PR-- 0/0/0/0/0 0/0 "GET / HTTP/1.1""#)
            .unwrap();
        assert_eq!(ev.ip.to_string(), "2001:db8::1234");
        let ev = h
            .parse(br#"Sep 29 08:33:00 localhost haproxy[14389]: 127.0.0.1:33317 [29/Sep/2025:08:33:00.277] f_foobar~ f_foobar/<NOSRV> -1/-1/-1/-1/0 400 0 - - CR-- 8/1/0/0/0 0/0 "<BADREQ>""#)
            .unwrap();
        assert_eq!(
            (ev.method, &*ev.path, ev.status),
            (Method::Invalid, "<BADREQ>", 400)
        );
        let ev = h
            .parse(br#"May 22 02:22:22 server1 haproxy[5089]: 10.1.1.1:22222 [22/May/2021:02:22:22.222] www-https~ myapp/node2 site.domain.com 0/0/0/18/18 200 200 - - ---- 222/222/2/0/0 0/0 "OPTIONS /api/v2/app/ HTTP/1.1""#)
            .unwrap();
        assert_eq!((ev.method, ev.latency_ms), (Method::Options, Some(18)));
        assert_eq!(
            h.parse(br#"May 22 02:22:22 server1 haproxy[5089]: -:22222 [22/May/2021:02:22:22.222] www-https~ myapp/node2 0/0/0/18/18 200 200 - - ---- 222/222/2/0/0 0/0 "GET / HTTP/1.1""#).unwrap_err(),
            ParseError::NoClient { format: NAME }
        );
        assert_eq!(
            h.parse(b"192.168.1.4:50033 [28/Feb/2025:02:43:10.123] frontend/backend: SSL handshake failure (error:0A0000C1:SSL routines::no shared cipher)").unwrap_err(),
            ParseError::NotAccessLog { format: NAME }
        );
    }
}
