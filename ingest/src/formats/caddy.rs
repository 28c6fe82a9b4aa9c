//! Caddy JSON access log (`logger: http.log.access…`, `msg: handled request`).
//!
//! `request.client_ip` is Caddy's own resolution with its `trusted_proxies`
//! (equal to `remote_ip` when it trusts nothing); it is the peer here, and
//! `X-Forwarded-For` is walked only if it is one of our trusted proxies.
//! `user_id` (set by `basic_auth` on success) is the identity. Other Caddy
//! log lines (reverse-proxy debug lines, startup) are
//! [`ParseError::NotAccessLog`].

use super::jsonutil::{bad_json, from_slice, with_lossy_retry, HeaderVal, JStr, Num, OptJStr};
use super::text::{float_ms, split_target_cow};
use super::{time, trim_line, Format, ParseError};
use crate::client_ip::{parse_addr, ClientResolver};
use gatewatch_detector::{Event, EventTime, Method};
use serde::Deserialize;

const NAME: &str = "caddy";

/// Parser for Caddy access logs.
#[derive(Debug, Clone, Default)]
pub struct Caddy {
    resolver: ClientResolver,
}

impl Caddy {
    /// A parser resolving `X-Forwarded-For` with `resolver`.
    pub fn new(resolver: ClientResolver) -> Self {
        Caddy { resolver }
    }
}

#[derive(Deserialize)]
struct Line<'a> {
    ts: Option<Num>,
    #[serde(borrow)]
    logger: Option<JStr<'a>>,
    #[serde(borrow)]
    request: Option<Request<'a>>,
    status: Option<Num>,
    size: Option<Num>,
    duration: Option<Num>,
    #[serde(borrow)]
    user_id: Option<JStr<'a>>,
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    remote_ip: Option<JStr<'a>>,
    #[serde(borrow)]
    client_ip: Option<JStr<'a>>,
    #[serde(borrow)]
    method: Option<JStr<'a>>,
    #[serde(borrow)]
    host: Option<JStr<'a>>,
    #[serde(borrow)]
    uri: Option<JStr<'a>>,
    #[serde(borrow)]
    headers: Option<Headers<'a>>,
}

#[derive(Deserialize)]
struct Headers<'a> {
    #[serde(borrow, rename = "User-Agent")]
    user_agent: Option<HeaderVal<'a>>,
    #[serde(borrow, rename = "X-Forwarded-For")]
    x_forwarded_for: Option<HeaderVal<'a>>,
}

impl Format for Caddy {
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

impl Caddy {
    fn parse_strict<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let l: Line<'a> = from_slice(line).ok_or_else(|| bad_json(NAME))?;
        let access = l
            .logger
            .as_ref()
            .is_none_or(|g| g.0.starts_with("http.log.access"));
        let Some(req) = l.request.filter(|_| access) else {
            return Err(ParseError::NotAccessLog { format: NAME });
        };
        let ts = l.ts.and_then(|n| n.0).ok_or(ParseError::MissingField {
            format: NAME,
            field: "ts",
        })?;
        let ts = time::epoch_f64_ms(ts).ok_or(ParseError::BadTimestamp { format: NAME })?;
        let peer =
            req.client_ip
                .value()
                .or(req.remote_ip.value())
                .ok_or(ParseError::MissingField {
                    format: NAME,
                    field: "request.remote_ip",
                })?;
        let peer = parse_addr(peer.as_bytes()).ok_or(ParseError::NoClient { format: NAME })?;
        let (mut ua, mut xff) = (None, None);
        if let Some(h) = req.headers {
            ua = h.user_agent.and_then(HeaderVal::value);
            xff = h.x_forwarded_for.and_then(HeaderVal::value);
        }
        let ip = self
            .resolver
            .resolve(peer, xff.as_deref().map(str::as_bytes));
        let mut ev = Event::new(EventTime::from_millis(ts), ip);
        ev.method = req
            .method
            .value()
            .map_or(Method::Invalid, |m| Method::parse(m.as_bytes()));
        let (path, query) = split_target_cow(req.uri.value().unwrap_or_default());
        ev.path = path;
        ev.query = query;
        ev.host = req.host.value().unwrap_or_default();
        ev.user_agent = ua.unwrap_or_default();
        ev.status = l.status.unwrap_or_default().status();
        ev.bytes = l.size.and_then(Num::u64).unwrap_or(0);
        ev.latency_ms = l
            .duration
            .and_then(|n| n.0)
            .and_then(|s| float_ms(s, 0.001));
        ev.identity = l.user_id.value();
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines_and_others() {
        let f = Caddy::default();
        let ev = f
            .parse(br#"{"level":"info","ts":1711741864.947103,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"127.0.0.1","remote_port":"43498","client_ip":"127.0.0.1","proto":"HTTP/1.1","method":"GET","host":"localhost:9080","uri":"/?a=b","headers":{"Authorization":[],"User-Agent":["curl/7.88.1"]}},"bytes_read":0,"user_id":"Bob","duration":0.794682124,"size":18630,"status":200}"#)
            .unwrap();
        assert_eq!(
            (ev.ts.millis(), ev.ip.to_string().as_str()),
            (1_711_741_864_947, "127.0.0.1")
        );
        assert_eq!(
            (&*ev.path, &*ev.query, &*ev.user_agent, &*ev.host),
            ("/", "a=b", "curl/7.88.1", "localhost:9080")
        );
        assert_eq!(
            (ev.status, ev.bytes, ev.latency_ms, ev.identity.as_deref()),
            (200, 18630, Some(794), Some("Bob"))
        );
        let ev = f
            .parse(br#"{"ts":1693840791.7564995,"logger":"http.log.access","request":{"remote_ip":"172.17.0.1","client_ip":"127.0.0.1","method":"GET","uri":"/","headers":{"X-Forwarded-For":["127.0.0.1"]}},"user_id":"","status":0}"#)
            .unwrap();
        assert_eq!(
            (ev.ip.to_string().as_str(), ev.status, ev.identity),
            ("127.0.0.1", 0, None)
        );
        assert_eq!(
            f.parse(br#"{"level":"debug","ts":1742400753.0547564,"logger":"http.handlers.reverse_proxy","msg":"selected upstream","dial":"immich_server:2283","total_upstreams":1}"#).unwrap_err(),
            ParseError::NotAccessLog { format: NAME }
        );
    }
}
