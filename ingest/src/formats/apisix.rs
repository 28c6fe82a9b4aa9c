//! Apache APISIX logger JSON (kafka-logger, http-logger, file-logger).
//!
//! The default object carries `client_ip`, `start_time` (ms), `latency`
//! (ms, float), `route_id`, `consumer.username`, `request{method, uri (with
//! query), headers, …}` and `response{status, size}`. A custom
//! `log_format` replaces it with user-chosen keys; the documented examples
//! keep `client_ip`, `route_id`, `host` and `@timestamp` (RFC 3339), which
//! this parser also reads, so such lines become events with
//! [`Method::Other`] and an empty path when they carry no request. For any
//! other custom shape, use the `json` format with a mapping.
//!
//! http-logger posts arrays; as for Kong, [`Format::parse_many`] splits
//! them and [`Format::parse`] refuses a multi-element batch.

use super::jsonutil::{array_len, bad_json, from_slice, with_lossy_retry};
use super::jsonutil::{HeaderVal, JStr, Num, OptJStr};
use super::text::{float_ms, split_target_cow};
use super::{time, trim_line, Format, ParseError};
use crate::client_ip::{parse_addr, ClientResolver};
use gatewatch_detector::{Event, EventTime, Method};
use serde::Deserialize;
use std::borrow::Cow;

const NAME: &str = "apisix";

/// Parser for APISIX logger JSON.
#[derive(Debug, Clone, Default)]
pub struct Apisix {
    resolver: ClientResolver,
}

impl Apisix {
    /// A parser resolving `x-forwarded-for` with `resolver`.
    pub fn new(resolver: ClientResolver) -> Self {
        Apisix { resolver }
    }
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    client_ip: Option<JStr<'a>>,
    start_time: Option<Num>,
    #[serde(borrow, rename = "@timestamp")]
    timestamp: Option<JStr<'a>>,
    latency: Option<Num>,
    #[serde(borrow)]
    route_id: Option<JStr<'a>>,
    #[serde(borrow)]
    route_name: Option<JStr<'a>>,
    #[serde(borrow)]
    host: Option<JStr<'a>>,
    #[serde(borrow)]
    consumer: Option<Consumer<'a>>,
    #[serde(borrow)]
    request: Option<Request<'a>>,
    response: Option<Response>,
}

#[derive(Deserialize)]
struct Consumer<'a> {
    #[serde(borrow)]
    username: Option<JStr<'a>>,
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    method: Option<JStr<'a>>,
    #[serde(borrow)]
    uri: Option<JStr<'a>>,
    #[serde(borrow)]
    headers: Option<Headers<'a>>,
}

#[derive(Deserialize)]
struct Headers<'a> {
    #[serde(borrow)]
    host: Option<HeaderVal<'a>>,
    #[serde(borrow, rename = "user-agent")]
    user_agent: Option<HeaderVal<'a>>,
    #[serde(borrow, rename = "x-forwarded-for")]
    x_forwarded_for: Option<HeaderVal<'a>>,
}

#[derive(Deserialize)]
struct Response {
    status: Option<Num>,
    size: Option<Num>,
}

impl Format for Apisix {
    fn name(&self) -> &'static str {
        NAME
    }

    fn parse<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let line = trim_line(line);
        match line.first() {
            None => Err(ParseError::Empty),
            Some(b'[') => with_lossy_retry(line, |l| {
                let mut v: Vec<Line<'_>> = from_slice(l).ok_or_else(|| bad_json(NAME))?;
                match v.len() {
                    1 => self.event(v.remove(0)),
                    0 => Err(ParseError::MissingField {
                        format: NAME,
                        field: "client_ip",
                    }),
                    len => Err(ParseError::Batch { format: NAME, len }),
                }
            }),
            Some(_) => with_lossy_retry(line, |l| {
                self.event(from_slice(l).ok_or_else(|| bad_json(NAME))?)
            }),
        }
    }

    fn parse_many<'a>(&self, line: &'a [u8], out: &mut Vec<Result<Event<'a>, ParseError>>) {
        let line = trim_line(line);
        if line.first() != Some(&b'[') {
            out.push(self.parse(line));
            return;
        }
        match from_slice::<Vec<Line<'a>>>(line) {
            Some(v) => out.extend(v.into_iter().map(|l| self.event(l))),
            None if std::str::from_utf8(line).is_ok() => {
                let n = array_len(line).unwrap_or(1).max(1);
                out.extend((0..n).map(|_| Err(bad_json(NAME))));
            }
            None => {
                let owned = String::from_utf8_lossy(line).into_owned();
                let mut tmp = Vec::new();
                self.parse_many(owned.as_bytes(), &mut tmp);
                out.extend(tmp.into_iter().map(|r| r.map(Event::into_owned)));
            }
        }
    }
}

impl Apisix {
    fn event<'a>(&self, l: Line<'a>) -> Result<Event<'a>, ParseError> {
        let ts = if let Some(ms) = l.start_time.and_then(Num::u64) {
            i64::try_from(ms).map_err(|_| ParseError::BadTimestamp { format: NAME })?
        } else if let Some(t) = l.timestamp.value() {
            time::parse_rfc3339(t.as_bytes()).ok_or(ParseError::BadTimestamp { format: NAME })?
        } else {
            return Err(ParseError::MissingField {
                format: NAME,
                field: "start_time",
            });
        };
        let peer = l.client_ip.value().ok_or(ParseError::MissingField {
            format: NAME,
            field: "client_ip",
        })?;
        let peer = parse_addr(peer.as_bytes()).ok_or(ParseError::NoClient { format: NAME })?;
        let mut ev = Event::new(EventTime::from_millis(ts), peer);
        let mut xff = None;
        let mut host = l.host.value();
        match l.request {
            Some(req) => {
                ev.method = req
                    .method
                    .value()
                    .map_or(Method::Other, |m| Method::parse(m.as_bytes()));
                let (path, query) = split_target_cow(req.uri.value().unwrap_or_default());
                ev.path = path;
                ev.query = query;
                if let Some(h) = req.headers {
                    if let Some(hh) = h.host.and_then(HeaderVal::value) {
                        host = Some(hh);
                    }
                    ev.user_agent = h.user_agent.and_then(HeaderVal::value).unwrap_or_default();
                    xff = h.x_forwarded_for.and_then(HeaderVal::value);
                }
            }
            None => {
                ev.method = Method::Other;
                ev.path = Cow::Borrowed("");
            }
        }
        ev.ip = self
            .resolver
            .resolve(peer, xff.as_deref().map(str::as_bytes));
        ev.host = host.unwrap_or_default();
        if let Some(r) = l.response {
            ev.status = r.status.unwrap_or_default().status();
            ev.bytes = r.size.and_then(Num::u64).unwrap_or(0);
        }
        ev.latency_ms = l.latency.and_then(|n| n.0).and_then(|v| float_ms(v, 1.0));
        ev.identity = l.consumer.and_then(|c| c.username.value());
        ev.route = l.route_name.value().or(l.route_id.value());
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = r#"{"latency":411.00001335144,"request":{"querystring":{},"headers":{"host":"127.0.0.1:9080","user-agent":"curl/8.7.1"},"method":"GET","size":83,"uri":"/get?x=1","url":"http://127.0.0.1:9080/get?x=1"},"response":{"status":200,"size":475},"route_id":"kafka-logger-route","client_ip":"127.0.0.1","consumer":{"username":"jack"},"start_time":1699596164550,"upstream":"54.90.18.68:80"}"#;

    #[test]
    fn default_object() {
        let ev = Apisix::default().parse(DEFAULT.as_bytes()).unwrap();
        assert_eq!(ev.ts.millis(), 1_699_596_164_550);
        assert_eq!(
            (ev.method, &*ev.path, &*ev.query),
            (Method::Get, "/get", "x=1")
        );
        assert_eq!((ev.status, ev.bytes, ev.latency_ms), (200, 475, Some(411)));
        assert_eq!(
            (&*ev.host, &*ev.user_agent),
            ("127.0.0.1:9080", "curl/8.7.1")
        );
        assert_eq!(
            (ev.route.as_deref(), ev.identity.as_deref()),
            (Some("kafka-logger-route"), Some("jack"))
        );
    }

    #[test]
    fn custom_format_and_batches() {
        let ev = Apisix::default()
            .parse(br#"{"host":"localhost","@timestamp":"2020-09-23T19:05:05-04:00","client_ip":"127.0.0.1","request":{"method":"GET","uri":"/hello"},"response":{"status":200},"route_id":"1"}"#)
            .unwrap();
        assert_eq!(
            (ev.method, &*ev.path, &*ev.host),
            (Method::Get, "/hello", "localhost")
        );
        let ev = Apisix::default()
            .parse(br#"[{"route_id":"r","client_ip":"192.168.65.1","@timestamp":"2024-06-13T15:19:34+00:00","host":"127.0.0.1"}]"#)
            .unwrap();
        assert_eq!((ev.method, &*ev.path, ev.status), (Method::Other, "", 0));
        let two = format!("[{DEFAULT},{DEFAULT}]");
        assert!(matches!(
            Apisix::default().parse(two.as_bytes()),
            Err(ParseError::Batch { len: 2, .. })
        ));
        let mut out = Vec::new();
        Apisix::default().parse_many(two.as_bytes(), &mut out);
        assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 2);
    }
}
