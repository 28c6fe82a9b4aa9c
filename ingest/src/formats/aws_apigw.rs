//! AWS API Gateway JSON access logs.
//!
//! The shape is user-defined from `$context.*` variables; this parser reads
//! the names AWS's own examples and Elastic's samples use: `ip`
//! (`$context.identity.sourceIp`, already resolved by AWS, so no
//! `X-Forwarded-For` handling), `requestTime` (CLF) or `requestTimeEpoch`
//! (ms), `httpMethod`, `path` (the real path, when logged) or
//! `resourcePath` / `routeKey` (the route template), `status` and
//! `responseLength` (strings), `domainName`, `userAgent`, `user` / `caller`
//! / `principalId` (who AWS authenticated) and `responseLatency`.

use super::jsonutil::{bad_json, from_slice, with_lossy_retry, JStr, Num, OptJStr};
use super::text::{float_ms, split_target_cow};
use super::{time, trim_line, Format, ParseError};
use crate::client_ip::{parse_addr, ClientResolver};
use gatewatch_detector::{Event, EventTime, Method};
use serde::Deserialize;
use std::borrow::Cow;

const NAME: &str = "aws_apigw";

/// Parser for API Gateway JSON access logs.
#[derive(Debug, Clone, Default)]
pub struct AwsApigw {
    resolver: ClientResolver,
}

impl AwsApigw {
    /// A parser; `ip` is AWS's resolved source address, so `resolver` only
    /// canonicalises it.
    pub fn new(resolver: ClientResolver) -> Self {
        AwsApigw { resolver }
    }
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    ip: Option<JStr<'a>>,
    #[serde(borrow)]
    sourceIp: Option<JStr<'a>>,
    #[serde(borrow)]
    requestTime: Option<JStr<'a>>,
    requestTimeEpoch: Option<Num>,
    #[serde(borrow)]
    httpMethod: Option<JStr<'a>>,
    #[serde(borrow)]
    path: Option<JStr<'a>>,
    #[serde(borrow)]
    resourcePath: Option<JStr<'a>>,
    #[serde(borrow)]
    routeKey: Option<JStr<'a>>,
    status: Option<Num>,
    responseLength: Option<Num>,
    #[serde(borrow)]
    domainName: Option<JStr<'a>>,
    #[serde(borrow)]
    userAgent: Option<JStr<'a>>,
    #[serde(borrow)]
    user: Option<JStr<'a>>,
    #[serde(borrow)]
    caller: Option<JStr<'a>>,
    #[serde(borrow)]
    principalId: Option<JStr<'a>>,
    responseLatency: Option<Num>,
}

impl Format for AwsApigw {
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

impl AwsApigw {
    fn parse_strict<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let l: Line<'a> = from_slice(line).ok_or_else(|| bad_json(NAME))?;
        let ts = if let Some(ms) = l.requestTimeEpoch.and_then(Num::u64) {
            i64::try_from(ms).map_err(|_| ParseError::BadTimestamp { format: NAME })?
        } else if let Some(t) = l.requestTime.value() {
            time::parse_clf(t.as_bytes()).ok_or(ParseError::BadTimestamp { format: NAME })?
        } else {
            return Err(ParseError::MissingField {
                format: NAME,
                field: "requestTime",
            });
        };
        let ip =
            l.ip.value()
                .or(l.sourceIp.value())
                .ok_or(ParseError::MissingField {
                    format: NAME,
                    field: "ip",
                })?;
        let ip = parse_addr(ip.as_bytes()).ok_or(ParseError::NoClient { format: NAME })?;
        let mut ev = Event::new(EventTime::from_millis(ts), self.resolver.resolve(ip, None));
        let route_key = l.routeKey.value();
        // `routeKey` is `"GET /pets/{id}"` for HTTP APIs (`$default` for the
        // catch-all route).
        let (rk_method, rk_path) = match route_key.as_deref().and_then(|r| r.split_once(' ')) {
            Some((m, p)) => (Some(m.to_owned()), Some(p.to_owned())),
            None => (None, None),
        };
        ev.method = match (l.httpMethod.value(), rk_method) {
            (Some(m), _) => Method::parse(m.as_bytes()),
            (None, Some(m)) => Method::parse(m.as_bytes()),
            (None, None) => Method::Other,
        };
        let template = l.resourcePath.value().or(rk_path.map(Cow::Owned));
        let (path, query) = split_target_cow(
            l.path
                .value()
                .or_else(|| template.clone())
                .unwrap_or_default(),
        );
        ev.path = path;
        ev.query = query;
        ev.route = template.or(route_key);
        ev.status = l.status.unwrap_or_default().status();
        ev.bytes = l.responseLength.and_then(Num::u64).unwrap_or(0);
        ev.host = l.domainName.value().unwrap_or_default();
        ev.user_agent = l.userAgent.value().unwrap_or_default();
        ev.identity = l
            .principalId
            .value()
            .or(l.user.value())
            .or(l.caller.value());
        ev.latency_ms = l
            .responseLatency
            .and_then(|n| n.0)
            .and_then(|v| float_ms(v, 1.0));
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_and_http_api_lines() {
        let f = AwsApigw::default();
        let ev = f
            .parse(br#"{"requestId": "caa4a500","ip": "1.128.0.0","caller": "-","user": "-","requestTime": "19/Jul/2023:16:15:46 +0000","httpMethod": "GET","resourcePath": "/pets/{petId}","status": "200","protocol": "HTTP/1.1","responseLength": "49"}"#)
            .unwrap();
        assert_eq!(
            (ev.ip.to_string().as_str(), ev.method, &*ev.path),
            ("1.128.0.0", Method::Get, "/pets/{petId}")
        );
        assert_eq!(
            (ev.status, ev.bytes, ev.route.as_deref(), ev.identity),
            (200, 49, Some("/pets/{petId}"), None)
        );
        let ev = f
            .parse(br#"{"requestId":"GQIV","ip":"1.128.0.0","requestTime":"09/Jun/2023:12:54:08 +0000","httpMethod":"GET","routeKey":"GET /","status":"200","protocol":"HTTP/1.1","responseLength":"47140"}"#)
            .unwrap();
        assert_eq!(
            (&*ev.path, ev.route.as_deref(), ev.bytes),
            ("/", Some("/"), 47140)
        );
        assert!(matches!(
            f.parse(br#"{"ip":"1.2.3.4"}"#),
            Err(ParseError::MissingField { .. })
        ));
    }
}
