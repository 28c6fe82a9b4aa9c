//! `gatewatch_event`: gatewatch's own normalised events, one
//! [`EventRecord`](gatewatch_detector::EventRecord) JSON object per line.
//!
//! This is what an ingest stage (`[repartition]`) publishes to the internal
//! topic and what detection instances consume from it: the line was parsed
//! once, upstream, so here nothing is resolved again (the address is the
//! client after trusted-proxy resolution). [`write_event`] writes the form
//! [`GatewatchEvent::parse`] reads back; the round trip is exact for every
//! field but `source` (which the pipeline sets from the consuming source).
//!
//! The line is read strictly, like `EventRecord` itself: `ts` (RFC 3339) and
//! `ip` are required, unknown keys and wrongly typed values are rejected.
//! Strings borrow from the line unless they hold escapes.

use super::jsonutil::from_slice;
use super::{trim_line, Format, ParseError};
use gatewatch_detector::{Event, EventTime, Method};
use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

const NAME: &str = "gatewatch_event";

/// Parser for gatewatch's normalised event lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatewatchEvent;

impl GatewatchEvent {
    /// The parser (it has no options: the client was resolved upstream).
    pub fn new() -> Self {
        GatewatchEvent
    }
}

/// A JSON string (only a string: no numbers-as-text leniency), borrowed
/// unless it had escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Str<'a>(Cow<'a, str>);

impl Default for Str<'_> {
    fn default() -> Self {
        Str(Cow::Borrowed(""))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

fn get<'a>() -> Str<'a> {
    Str(Cow::Borrowed("GET"))
}

fn slash<'a>() -> Str<'a> {
    Str(Cow::Borrowed("/"))
}

/// One line as read. Mirrors `EventRecord` field for field (names,
/// defaults, strictness); a test keeps the two in step.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    ts: EventTime,
    ip: IpAddr,
    #[serde(borrow, default = "get")]
    method: Str<'a>,
    #[serde(borrow, default)]
    host: Str<'a>,
    #[serde(borrow, default = "slash")]
    path: Str<'a>,
    #[serde(borrow, default)]
    query: Str<'a>,
    #[serde(default)]
    status: u16,
    #[serde(borrow, default)]
    user: Option<Str<'a>>,
    #[serde(borrow, default)]
    identity: Option<Str<'a>>,
    #[serde(borrow, default)]
    route: Option<Str<'a>>,
    #[serde(borrow, default)]
    user_agent: Str<'a>,
    #[serde(default)]
    bytes: u64,
    #[serde(default)]
    latency_ms: Option<u32>,
}

/// The method as `EventRecord::to_event` reads it.
fn method(s: &str) -> Method {
    if s.eq_ignore_ascii_case("INVALID") {
        Method::Invalid
    } else {
        Method::parse(s.as_bytes())
    }
}

impl Format for GatewatchEvent {
    fn name(&self) -> &'static str {
        NAME
    }

    fn parse<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let line = trim_line(line);
        if line.is_empty() {
            return Err(ParseError::Empty);
        }
        if line.first() != Some(&b'{') {
            return Err(ParseError::Malformed {
                format: NAME,
                what: "not a JSON object",
            });
        }
        let l: Line<'a> = from_slice(line).ok_or(ParseError::Malformed {
            format: NAME,
            what: "not an event record",
        })?;
        Ok(Event {
            ts: l.ts,
            ip: l.ip,
            identity: l.identity.map(|s| s.0),
            user: l.user.map(|s| s.0),
            method: method(&l.method.0),
            host: l.host.0,
            path: l.path.0,
            query: l.query.0,
            route: l.route.map(|s| s.0),
            status: l.status,
            bytes: l.bytes,
            latency_ms: l.latency_ms,
            user_agent: l.user_agent.0,
            source: 0,
        })
    }
}

/// The borrowed form [`write_event`] serialises (field names of
/// `EventRecord`; empty strings and defaults left out).
#[derive(Serialize)]
struct Out<'e> {
    ts: EventTime,
    ip: IpAddr,
    method: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    host: &'e str,
    path: &'e str,
    #[serde(skip_serializing_if = "str::is_empty")]
    query: &'e str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'e str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<&'e str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'e str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    user_agent: &'e str,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<u32>,
}

/// Appends `ev` to `out` as one `gatewatch_event` line (without the
/// newline): the JSON form of [`gatewatch_detector::EventRecord`].
pub fn write_event(ev: &Event<'_>, out: &mut Vec<u8>) {
    let o = Out {
        ts: ev.ts,
        ip: ev.ip,
        method: ev.method.as_str(),
        host: &ev.host,
        path: &ev.path,
        query: &ev.query,
        status: ev.status,
        user: ev.user.as_deref(),
        identity: ev.identity.as_deref(),
        route: ev.route.as_deref(),
        user_agent: &ev.user_agent,
        bytes: ev.bytes,
        latency_ms: ev.latency_ms,
    };
    // Writing plain fields into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &o);
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatewatch_detector::EventRecord;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn line(ev: &Event<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        write_event(ev, &mut out);
        out
    }

    fn events() -> Vec<Event<'static>> {
        let t = EventTime::from_millis(1_700_000_000_123);
        let mut full = Event::new(t, IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)));
        full.method = Method::Post;
        full.host = "api.example.com".into();
        full.path = "/v1/login".into();
        full.query = "next=%2Fhome&x=1".into();
        full.status = 401;
        full.bytes = 123_456_789_012;
        full.latency_ms = Some(17);
        full.user = Some("alice@example.com".into());
        full.identity = Some("consumer-7".into());
        full.route = Some("/v1/{op}".into());
        full.user_agent = "Mozilla/5.0 (X11; Linux x86_64) curl/8.5".into();

        let mut v6 = Event::new(
            EventTime::from_millis(0),
            IpAddr::V6("2001:db8:dead:beef::42".parse::<Ipv6Addr>().unwrap()),
        );
        v6.method = Method::Delete;
        v6.status = 204;

        let mut mapped = Event::new(
            EventTime::from_millis(-1_000),
            IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
        );
        mapped.method = Method::Other;

        let mut escaped = Event::new(t, IpAddr::V4(Ipv4Addr::LOCALHOST));
        escaped.method = Method::Invalid;
        escaped.path = "\\x16\\x03\\x01 \"quoted\" é ☃ \u{0}\u{1f}\n\t".into();
        escaped.user = Some("bob\"}, \"ip\": \"6.6.6.6".into());
        escaped.user_agent = "\"}\u{7f}\\\u{2028}😀".into();
        escaped.host = "ü.example".into();
        escaped.route = Some(String::new().into());
        escaped.identity = Some(String::new().into());

        let mut head = Event::new(t, IpAddr::V4(Ipv4Addr::BROADCAST));
        head.method = Method::Head;
        head.status = u16::MAX;
        head.bytes = u64::MAX;
        head.latency_ms = Some(u32::MAX);
        vec![full, v6, mapped, escaped, head]
    }

    #[test]
    fn round_trips_exactly() {
        let p = GatewatchEvent::new();
        for ev in events() {
            let l = line(&ev);
            let back = p.parse(&l).unwrap_or_else(|e| {
                panic!("{e}: {}", String::from_utf8_lossy(&l));
            });
            assert_eq!(back, ev, "{}", String::from_utf8_lossy(&l));
            // With a newline and surrounding blanks, as a source hands it.
            let mut nl = b"  ".to_vec();
            nl.extend_from_slice(&l);
            nl.extend_from_slice(b"\r\n");
            assert_eq!(p.parse(&nl).unwrap(), ev);
        }
    }

    #[test]
    fn writes_what_event_record_reads_and_reads_what_it_writes() {
        let p = GatewatchEvent::new();
        for ev in events() {
            let l = line(&ev);
            let rec: EventRecord = serde_json::from_slice(&l).unwrap();
            assert_eq!(rec.to_event(), ev);
            let theirs = serde_json::to_vec(&rec).unwrap();
            assert_eq!(p.parse(&theirs).unwrap(), ev);
        }
        // EventRecord's defaults.
        let min = br#"{"ts":"2024-01-01T00:00:00Z","ip":"1.2.3.4"}"#;
        let rec: EventRecord = serde_json::from_slice(min).unwrap();
        assert_eq!(p.parse(min).unwrap(), rec.to_event());
        assert_eq!(p.parse(min).unwrap().method, Method::Get);
        assert_eq!(&*p.parse(min).unwrap().path, "/");
    }

    #[test]
    fn borrows_plain_strings() {
        let l = br#"{"ts":"2024-01-01T00:00:00Z","ip":"1.2.3.4","path":"/a","user_agent":"x\"y"}"#;
        let ev = GatewatchEvent.parse(l).unwrap();
        assert!(matches!(ev.path, Cow::Borrowed("/a")));
        assert_eq!(&*ev.user_agent, "x\"y");
    }

    #[test]
    fn rejects_malformed_lines() {
        let p = GatewatchEvent::new();
        assert_eq!(p.parse(b"").unwrap_err(), ParseError::Empty);
        assert_eq!(p.parse(b" \r\n").unwrap_err(), ParseError::Empty);
        let bad: &[&[u8]] = &[
            b"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 1",
            b"{",
            b"[]",
            br#"{"ts":"2024-01-01T00:00:00Z"}"#,
            br#"{"ip":"1.2.3.4"}"#,
            br#"{"ts":"yesterday","ip":"1.2.3.4"}"#,
            br#"{"ts":"2024-01-01T00:00:00Z","ip":"1.2.3.999"}"#,
            br#"{"ts":"2024-01-01T00:00:00Z","ip":"1.2.3.4","status":"200"}"#,
            br#"{"ts":"2024-01-01T00:00:00Z","ip":"1.2.3.4","status":70000}"#,
            br#"{"ts":"2024-01-01T00:00:00Z","ip":"1.2.3.4","path":5}"#,
            br#"{"ts":"2024-01-01T00:00:00Z","ip":"1.2.3.4","extra":1}"#,
            br#"{"ts":"2024-01-01T00:00:00Z","ip":"1.2.3.4","ip":"5.6.7.8"}"#,
            br#"{"ts":"2024-01-01T00:00:00Z","ip":"1.2.3.4"} trailing"#,
            b"{\"ts\":\"2024-01-01T00:00:00Z\",\"ip\":\"1.2.3.4\",\"path\":\"\xff\"}",
        ];
        for l in bad {
            let err = p.parse(l).unwrap_err();
            assert_eq!(err.reason(), "malformed", "{}", String::from_utf8_lossy(l));
            assert!(
                serde_json::from_slice::<EventRecord>(l).is_err(),
                "EventRecord accepts {}",
                String::from_utf8_lossy(l)
            );
        }
        // Deep nesting is refused without overflowing the stack.
        let mut deep = br#"{"ts":"2024-01-01T00:00:00Z","ip":"1.2.3.4","route":"#.to_vec();
        deep.extend(std::iter::repeat_n(b'[', 100_000));
        assert!(p.parse(&deep).is_err());
    }
}
