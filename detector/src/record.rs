//! A JSON form of [`Event`], for golden tests, benchmarks and replaying
//! captured traffic without a log parser.
//!
//! One object per line (`events.jsonl`); only `ts` and `ip` are required.

use crate::event::{Event, Method};
use crate::time::EventTime;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::net::IpAddr;

/// One event as JSON. Field names follow [`Event`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRecord {
    /// Event time, RFC 3339.
    pub ts: EventTime,
    /// Client address.
    pub ip: IpAddr,
    /// HTTP method (`GET` when absent; anything non-HTTP is `INVALID`).
    #[serde(default = "get")]
    pub method: String,
    /// Host header.
    #[serde(default)]
    pub host: String,
    /// Path without the query.
    #[serde(default = "slash")]
    pub path: String,
    /// Query without the `?`.
    #[serde(default)]
    pub query: String,
    /// Response status.
    #[serde(default)]
    pub status: u16,
    /// Username tried, when logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Authenticated identity, when logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Route name or template, when logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// User agent.
    #[serde(default)]
    pub user_agent: String,
    /// Response bytes.
    #[serde(default)]
    pub bytes: u64,
    /// Latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u32>,
}

fn get() -> String {
    "GET".into()
}

fn slash() -> String {
    "/".into()
}

impl EventRecord {
    /// A record with only time and address set.
    pub fn new(ts: EventTime, ip: IpAddr) -> EventRecord {
        EventRecord {
            ts,
            ip,
            method: get(),
            host: String::new(),
            path: slash(),
            query: String::new(),
            status: 0,
            user: None,
            identity: None,
            route: None,
            user_agent: String::new(),
            bytes: 0,
            latency_ms: None,
        }
    }

    /// The event, borrowing from the record.
    pub fn to_event(&self) -> Event<'_> {
        let method = if self.method.eq_ignore_ascii_case("INVALID") {
            Method::Invalid
        } else {
            Method::parse(self.method.as_bytes())
        };
        Event {
            ts: self.ts,
            ip: self.ip,
            identity: self.identity.as_deref().map(Cow::Borrowed),
            user: self.user.as_deref().map(Cow::Borrowed),
            method,
            host: Cow::Borrowed(&self.host),
            path: Cow::Borrowed(&self.path),
            query: Cow::Borrowed(&self.query),
            route: self.route.as_deref().map(Cow::Borrowed),
            status: self.status,
            bytes: self.bytes,
            latency_ms: self.latency_ms,
            user_agent: Cow::Borrowed(&self.user_agent),
            source: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_minimal_line() {
        let r: EventRecord =
            serde_json::from_str(r#"{"ts":"2024-01-01T00:00:00Z","ip":"1.2.3.4","path":"/login","method":"POST","status":401,"user":"bob"}"#)
                .unwrap();
        let e = r.to_event();
        assert_eq!(e.method, Method::Post);
        assert_eq!(e.user.as_deref(), Some("bob"));
        assert_eq!(e.ts, EventTime::from_secs(1_704_067_200));
    }
}
