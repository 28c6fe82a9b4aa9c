//! Traefik access log, JSON (v1 and v2/v3 keys) or CLF.
//!
//! Client: `ClientAddr` is the peer (ip:port). Traefik fills `ClientHost`
//! from `X-Forwarded-For` when that header reached it (possibly a list,
//! `"192.168.1.100,10.0.0.50"`), so `ClientHost` is treated as the
//! forwarded chain and resolved with the trusted proxies like any other
//! XFF: without trusted proxies the peer is the client. Lines without
//! `ClientAddr` fall back to resolving `ClientHost` alone.
//!
//! CLF lines (`… "<ua>" <count> "<router>" "<url>" <n>ms`) go through the
//! nginx scanner, which knows the Traefik tail.

use super::jsonutil::{bad_json, from_slice, with_lossy_retry, JStr, Num, OptJStr};
use super::nginx_combined::parse_clf;
use super::text::{float_ms, split_target_cow};
use super::{time, trim_line, Format, ParseError};
use crate::client_ip::{parse_addr, ClientResolver};
use gatewatch_detector::{Event, EventTime, Method};
use serde::Deserialize;

const NAME: &str = "traefik";

/// Parser for Traefik access logs.
#[derive(Debug, Clone, Default)]
pub struct Traefik {
    resolver: ClientResolver,
}

impl Traefik {
    /// A parser resolving `ClientHost` with `resolver`.
    pub fn new(resolver: ClientResolver) -> Self {
        Traefik { resolver }
    }
}

#[allow(non_snake_case)]
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    ClientAddr: Option<JStr<'a>>,
    #[serde(borrow)]
    ClientHost: Option<JStr<'a>>,
    #[serde(borrow)]
    ClientUsername: Option<JStr<'a>>,
    #[serde(borrow)]
    RequestMethod: Option<JStr<'a>>,
    #[serde(borrow)]
    RequestPath: Option<JStr<'a>>,
    #[serde(borrow)]
    RequestHost: Option<JStr<'a>>,
    DownstreamStatus: Option<Num>,
    DownstreamContentSize: Option<Num>,
    Duration: Option<Num>,
    #[serde(borrow)]
    StartUTC: Option<JStr<'a>>,
    #[serde(borrow)]
    StartLocal: Option<JStr<'a>>,
    #[serde(borrow)]
    time: Option<JStr<'a>>,
    #[serde(borrow)]
    RouterName: Option<JStr<'a>>,
    #[serde(borrow)]
    FrontendName: Option<JStr<'a>>,
    #[serde(borrow, rename = "request_User-Agent")]
    user_agent: Option<JStr<'a>>,
    #[serde(borrow, rename = "request_X-Forwarded-For")]
    x_forwarded_for: Option<JStr<'a>>,
}

impl Format for Traefik {
    fn name(&self) -> &'static str {
        NAME
    }

    fn parse<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let line = trim_line(line);
        match line.first() {
            None => Err(ParseError::Empty),
            Some(b'{') => with_lossy_retry(line, |l| self.parse_json(l)),
            Some(_) => Ok(parse_clf(line, NAME)?.into_event(&self.resolver)),
        }
    }
}

impl Traefik {
    fn parse_json<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let l: Line<'a> = from_slice(line).ok_or_else(|| bad_json(NAME))?;
        if l.RequestMethod.is_none() && l.ClientAddr.is_none() && l.ClientHost.is_none() {
            // Traefik's own (non-access) log in JSON.
            return Err(ParseError::NotAccessLog { format: NAME });
        }
        let ts = l
            .StartUTC
            .value()
            .or(l.StartLocal.value())
            .or(l.time.value())
            .ok_or(ParseError::MissingField {
                format: NAME,
                field: "StartUTC",
            })?;
        let ts =
            time::parse_rfc3339(ts.as_bytes()).ok_or(ParseError::BadTimestamp { format: NAME })?;
        let host_list = l.ClientHost.value();
        let ip = match l.ClientAddr.value().and_then(|a| parse_addr(a.as_bytes())) {
            Some(peer) => {
                let chain = host_list
                    .as_deref()
                    .filter(|h| parse_addr(h.as_bytes()) != Some(peer))
                    .or(l.x_forwarded_for.as_ref().map(|x| &*x.0));
                self.resolver.resolve(peer, chain.map(str::as_bytes))
            }
            None => host_list
                .as_deref()
                .and_then(|h| self.resolver.resolve_chain(h.as_bytes()))
                .ok_or(ParseError::NoClient { format: NAME })?,
        };
        let mut ev = Event::new(EventTime::from_millis(ts), ip);
        ev.method = l
            .RequestMethod
            .value()
            .map_or(Method::Invalid, |m| Method::parse(m.as_bytes()));
        let (path, query) = split_target_cow(l.RequestPath.value().unwrap_or_default());
        ev.path = path;
        ev.query = query;
        ev.host = l.RequestHost.value().unwrap_or_default();
        ev.status = l.DownstreamStatus.unwrap_or_default().status();
        ev.bytes = l.DownstreamContentSize.and_then(Num::u64).unwrap_or(0);
        ev.latency_ms = l
            .Duration
            .and_then(|n| n.0)
            .and_then(|ns| float_ms(ns, 1e6));
        ev.user = l.ClientUsername.value();
        ev.user_agent = l.user_agent.value().unwrap_or_default();
        ev.route = l.RouterName.value().or(l.FrontendName.value());
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_v2_line() {
        let ev = Traefik::default()
            .parse(br#"{"ClientAddr":"172.17.0.1:39496","ClientHost":"172.17.0.1","ClientUsername":"-","DownstreamContentSize":357,"DownstreamStatus":200,"Duration":357313,"RequestHost":"test.docker.localhost","RequestMethod":"GET","RequestPath":"/594VAEoi.save?x=1","RouterName":"test@docker","StartUTC":"2021-12-08T14:02:43.587782192Z","request_User-Agent":"Nikto","time":"2021-12-08T14:02:43Z"}"#)
            .unwrap();
        assert_eq!(ev.ts.millis(), 1_638_972_163_587);
        assert_eq!(
            (ev.ip.to_string().as_str(), &*ev.path, &*ev.query),
            ("172.17.0.1", "/594VAEoi.save", "x=1")
        );
        assert_eq!((ev.status, ev.bytes, ev.latency_ms), (200, 357, Some(0)));
        assert_eq!(
            (&*ev.user_agent, ev.route.as_deref(), ev.user),
            ("Nikto", Some("test@docker"), None)
        );
    }

    #[test]
    fn client_host_is_the_forwarded_chain() {
        let line = br#"{"ClientAddr":"172.71.122.85:11029","ClientHost":"192.168.1.100,10.0.0.50","DownstreamStatus":204,"RequestMethod":"OPTIONS","RequestPath":"/_matrix/client/v3/sync","StartUTC":"2026-01-14T09:45:33.759014877Z"}"#;
        assert_eq!(
            Traefik::default().parse(line).unwrap().ip.to_string(),
            "172.71.122.85"
        );
        let t = Traefik::new(ClientResolver::new(vec!["172.64.0.0/13".parse().unwrap()]));
        assert_eq!(t.parse(line).unwrap().ip.to_string(), "10.0.0.50");
        // No ClientHost at all, v1 keys, IPv6 peer.
        let ev = Traefik::default()
            .parse(br#"{"ClientAddr":"[::1]:56348","DownstreamStatus":404,"FrontendName":"backend not found","RequestMethod":"GET","RequestPath":"/","StartLocal":"2024-04-15T13:26:33.80902715Z"}"#)
            .unwrap();
        assert_eq!(
            (ev.ip.to_string().as_str(), ev.route.as_deref()),
            ("::1", Some("backend not found"))
        );
    }

    #[test]
    fn clf_and_rejects() {
        let ev = Traefik::default()
            .parse(br#"10.0.0.2 - username [18/Nov/2018:21:34:30 +0000] "GET /dashboard/ HTTP/2.0" 401 17 "-" "Mozilla/5.0" 72 "Auth for frontend-Host-traefik-0" "/dashboard/" 0ms"#)
            .unwrap();
        assert_eq!(
            (ev.status, ev.user.as_deref(), ev.route.as_deref()),
            (
                401,
                Some("username"),
                Some("Auth for frontend-Host-traefik-0")
            )
        );
        assert!(Traefik::default().parse(b"DEBUG: CrowdsecBouncerTraefikPlugin: 2025/09/05 13:53:40 handleStreamCache:updated").is_err());
        assert_eq!(
            Traefik::default().parse(br#"{"level":"info","msg":"Configuration loaded","time":"2024-01-01T00:00:00Z"}"#).unwrap_err(),
            ParseError::NotAccessLog { format: NAME }
        );
    }
}
