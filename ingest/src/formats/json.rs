//! Generic JSON access logs, with the field locations from the config
//! ([`JsonMapping`]): for gateways gatewatch has no parser for, and for
//! custom `log_format`s of the ones it has.
//!
//! The mapping's dotted paths are compiled once into a small trie; each
//! line is walked once with serde (`DeserializeSeed`), descending only into
//! objects on a configured path and skipping everything else, so a line
//! costs one pass and no allocation (string values borrow from the line).

use super::jsonutil::{bad_json, from_slice_seed, with_lossy_retry, JStr};
use super::text::{float_ms, split_target_cow};
use super::{time, trim_line, Format, FormatError, JsonMapping, LatencyUnit, ParseError, TsFormat};
use crate::client_ip::{parse_addr, ClientResolver};
use gatewatch_detector::{Event, EventTime, Method};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

const NAME: &str = "json";

/// The event fields a mapping can fill, in slot order.
#[derive(Clone, Copy)]
enum Slot {
    Ts,
    ClientIp,
    Xff,
    Method,
    Path,
    Uri,
    Status,
    Bytes,
    UserAgent,
    Host,
    User,
    Identity,
    Latency,
    Route,
}
const SLOTS: usize = 14;

/// One node of the path trie: its children by key, and the slot filled by
/// the value found at this path, if any.
#[derive(Debug, Default, Clone)]
struct Node {
    children: Vec<(Box<str>, usize)>,
    slot: Option<usize>,
}

/// Parser for JSON lines with a configured field mapping.
#[derive(Debug, Clone)]
pub struct GenericJson {
    nodes: Vec<Node>,
    ts_format: TsFormat,
    latency_unit: LatencyUnit,
    resolver: ClientResolver,
}

impl GenericJson {
    /// Compiles `mapping`; fails on an empty path or a mapping that cannot
    /// find the client.
    pub fn new(mapping: &JsonMapping, resolver: ClientResolver) -> Result<Self, FormatError> {
        if mapping.client_ip.is_none() && mapping.x_forwarded_for.is_none() {
            return Err(FormatError::MappingWithoutClient);
        }
        let mut g = GenericJson {
            nodes: vec![Node::default()],
            ts_format: mapping.ts_format,
            latency_unit: mapping.latency_unit,
            resolver,
        };
        let fields: [(&'static str, Option<&String>, Slot); SLOTS] = [
            ("ts", Some(&mapping.ts), Slot::Ts),
            ("client_ip", mapping.client_ip.as_ref(), Slot::ClientIp),
            (
                "x_forwarded_for",
                mapping.x_forwarded_for.as_ref(),
                Slot::Xff,
            ),
            ("method", mapping.method.as_ref(), Slot::Method),
            ("path", mapping.path.as_ref(), Slot::Path),
            ("uri", mapping.uri.as_ref(), Slot::Uri),
            ("status", mapping.status.as_ref(), Slot::Status),
            ("bytes", mapping.bytes.as_ref(), Slot::Bytes),
            ("user_agent", mapping.user_agent.as_ref(), Slot::UserAgent),
            ("host", mapping.host.as_ref(), Slot::Host),
            ("user", mapping.user.as_ref(), Slot::User),
            ("identity", mapping.identity.as_ref(), Slot::Identity),
            ("latency", mapping.latency.as_ref(), Slot::Latency),
            ("route", mapping.route.as_ref(), Slot::Route),
        ];
        for (field, path, slot) in fields {
            if let Some(path) = path {
                g.insert(field, path, slot as usize)?;
            }
        }
        Ok(g)
    }

    fn insert(&mut self, field: &'static str, path: &str, slot: usize) -> Result<(), FormatError> {
        let invalid = || FormatError::InvalidPath {
            field,
            path: path.to_owned(),
        };
        if path.is_empty() {
            return Err(invalid());
        }
        let mut node = 0;
        for seg in path.split('.') {
            if seg.is_empty() {
                return Err(invalid());
            }
            node = match self.nodes[node].children.iter().find(|(k, _)| &**k == seg) {
                Some(&(_, child)) => child,
                None => {
                    self.nodes.push(Node::default());
                    let child = self.nodes.len() - 1;
                    self.nodes[node].children.push((seg.into(), child));
                    child
                }
            };
        }
        self.nodes[node].slot = Some(slot);
        Ok(())
    }
}

/// A scalar found at a mapped path.
#[derive(Debug, Clone, Default)]
enum Scalar<'a> {
    #[default]
    None,
    Str(Cow<'a, str>),
    Num(f64),
}

impl<'a> Scalar<'a> {
    fn text(&mut self) -> Option<Cow<'a, str>> {
        match std::mem::take(self) {
            Scalar::Str(s) if !s.is_empty() && s != "-" => Some(s),
            Scalar::Num(n) => Some(Cow::Owned(n.to_string())),
            _ => None,
        }
    }

    fn num(&self) -> Option<f64> {
        match self {
            Scalar::Num(n) => Some(*n),
            Scalar::Str(s) => s.trim().parse().ok(),
            Scalar::None => None,
        }
    }
}

/// Visits one value: a scalar is stored if this node has a slot, an
/// object is descended into along the trie, anything else is skipped.
struct Walk<'g, 's, 'a> {
    g: &'g GenericJson,
    node: usize,
    slots: &'s mut [Scalar<'a>; SLOTS],
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for Walk<'_, '_, 'a> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Walk<'_, '_, 'a> {
    fn put(self, v: Scalar<'de>) {
        if let Some(slot) = self.g.nodes[self.node].slot {
            self.slots[slot] = v;
        }
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Walk<'_, '_, 'a> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.put(Scalar::Str(Cow::Borrowed(v)));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.put(Scalar::Str(Cow::Owned(v.to_owned())));
        Ok(())
    }
    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.put(Scalar::Str(Cow::Owned(v)));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.put(Scalar::Num(v as f64));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.put(Scalar::Num(v as f64));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.put(Scalar::Num(v));
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // A header logged as an array (`"User-Agent":["curl"]`): the first
        // element stands for the value.
        let (g, node, slots) = (self.g, self.node, self.slots);
        if let Some(JStrOrSkip(Some(s))) = seq.next_element::<JStrOrSkip<'de>>()? {
            if let Some(slot) = g.nodes[node].slot {
                slots[slot] = Scalar::Str(s);
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (g, node, slots) = (self.g, self.node, self.slots);
        while let Some(JStr(key)) = map.next_key::<JStr<'de>>()? {
            match g.nodes[node].children.iter().find(|(k, _)| **k == *key) {
                Some(&(_, child)) => map.next_value_seed(Walk {
                    g,
                    node: child,
                    slots: &mut *slots,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A string, or nothing for any other value.
struct JStrOrSkip<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for JStrOrSkip<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JStrOrSkip<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JStrOrSkip(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JStrOrSkip(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(JStrOrSkip(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(JStrOrSkip(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(JStrOrSkip(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(JStrOrSkip(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(JStrOrSkip(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(JStrOrSkip(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(JStrOrSkip(None))
            }
        }
        d.deserialize_any(V)
    }
}

impl Format for GenericJson {
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

impl GenericJson {
    fn parse_strict<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        if line.first() != Some(&b'{') {
            return Err(bad_json(NAME));
        }
        let mut s: [Scalar<'a>; SLOTS] = Default::default();
        from_slice_seed(
            line,
            Walk {
                g: self,
                node: 0,
                slots: &mut s,
            },
        )
        .ok_or_else(|| bad_json(NAME))?;
        let missing = |field| ParseError::MissingField {
            format: NAME,
            field,
        };
        let bad_ts = ParseError::BadTimestamp { format: NAME };
        let ts = match (&s[Slot::Ts as usize], self.ts_format) {
            (Scalar::None, _) => return Err(missing("ts")),
            (Scalar::Num(n), TsFormat::EpochS) => (n * 1000.0).round() as i64,
            (Scalar::Num(n), TsFormat::EpochMs) => n.round() as i64,
            (Scalar::Num(n), _) => time::epoch_f64_ms(*n).ok_or(bad_ts.clone())?,
            (Scalar::Str(t), f) => {
                let b = t.as_bytes();
                match f {
                    TsFormat::Rfc3339 => time::parse_rfc3339(b),
                    TsFormat::NginxTimeLocal => time::parse_clf(b),
                    TsFormat::EpochFloat => time::parse_epoch_float(b),
                    TsFormat::EpochS => time::parse_epoch_float(b),
                    TsFormat::EpochMs => {
                        super::text::parse_u64(b).and_then(|v| i64::try_from(v).ok())
                    }
                }
                .ok_or(bad_ts)?
            }
        };
        let xff = s[Slot::Xff as usize].text();
        let peer = s[Slot::ClientIp as usize].text();
        let ip = match peer {
            Some(p) => {
                let peer = parse_addr(p.as_bytes()).ok_or(ParseError::NoClient { format: NAME })?;
                self.resolver
                    .resolve(peer, xff.as_deref().map(str::as_bytes))
            }
            None => xff
                .as_deref()
                .and_then(|x| self.resolver.resolve_chain(x.as_bytes()))
                .ok_or(ParseError::NoClient { format: NAME })?,
        };
        let mut ev = Event::new(EventTime::from_millis(ts), ip);
        ev.method = s[Slot::Method as usize]
            .text()
            .map_or(Method::Other, |m| Method::parse(m.as_bytes()));
        let target = s[Slot::Path as usize]
            .text()
            .or_else(|| s[Slot::Uri as usize].text())
            .unwrap_or_default();
        let (path, query) = split_target_cow(target);
        ev.path = path;
        ev.query = query;
        ev.status = match s[Slot::Status as usize].num() {
            Some(v) if (0.0..1000.0).contains(&v) => v as u16,
            _ => 0,
        };
        ev.bytes = s[Slot::Bytes as usize]
            .num()
            .filter(|v| *v >= 0.0)
            .map_or(0, |v| v as u64);
        ev.user_agent = s[Slot::UserAgent as usize].text().unwrap_or_default();
        ev.host = s[Slot::Host as usize].text().unwrap_or_default();
        ev.user = s[Slot::User as usize].text();
        ev.identity = s[Slot::Identity as usize].text();
        ev.route = s[Slot::Route as usize].text();
        let per_ms = match self.latency_unit {
            LatencyUnit::Ms => 1.0,
            LatencyUnit::S => 0.001,
            LatencyUnit::Us => 1e3,
            LatencyUnit::Ns => 1e6,
        };
        ev.latency_ms = s[Slot::Latency as usize]
            .num()
            .and_then(|v| float_ms(v, per_ms));
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> JsonMapping {
        JsonMapping {
            ts: "@timestamp".into(),
            client_ip: Some("client_ip".into()),
            x_forwarded_for: Some("request.headers.x-forwarded-for".into()),
            method: Some("request.method".into()),
            uri: Some("request.uri".into()),
            status: Some("response.status".into()),
            user_agent: Some("request.headers.user-agent".into()),
            host: Some("host".into()),
            route: Some("route_id".into()),
            latency: Some("latency".into()),
            latency_unit: LatencyUnit::S,
            ..JsonMapping::default()
        }
    }

    #[test]
    fn maps_nested_paths_and_skips_the_rest() {
        let g = GenericJson::new(&mapping(), ClientResolver::default()).unwrap();
        let ev = g
            .parse(br#"{"host":"localhost","@timestamp":"2020-09-23T19:05:05-04:00","skip":{"a":[1,{"b":2}]},"client_ip":"127.0.0.1","request":{"method":"POST","uri":"/hello?x=1","headers":{"user-agent":["curl/8"]}},"response":{"status":"401"},"route_id":"1","latency":0.25}"#)
            .unwrap();
        assert_eq!(ev.ts.millis(), 1_600_902_305_000);
        assert_eq!(
            (ev.method, &*ev.path, &*ev.query, ev.status),
            (Method::Post, "/hello", "x=1", 401)
        );
        assert_eq!(
            (
                &*ev.user_agent,
                &*ev.host,
                ev.route.as_deref(),
                ev.latency_ms
            ),
            ("curl/8", "localhost", Some("1"), Some(250))
        );
        assert!(matches!(ev.host, Cow::Borrowed(_)));
    }

    #[test]
    fn epoch_formats_and_errors() {
        let m = JsonMapping {
            ts: "t".into(),
            ts_format: TsFormat::EpochMs,
            client_ip: Some("ip".into()),
            ..JsonMapping::default()
        };
        let g = GenericJson::new(&m, ClientResolver::default()).unwrap();
        assert_eq!(
            g.parse(br#"{"t":1700000000123,"ip":"::1"}"#)
                .unwrap()
                .ts
                .millis(),
            1_700_000_000_123
        );
        assert_eq!(
            g.parse(br#"{"t":"1700000000123","ip":"::1"}"#)
                .unwrap()
                .ts
                .millis(),
            1_700_000_000_123
        );
        assert!(matches!(
            g.parse(br#"{"ip":"::1"}"#),
            Err(ParseError::MissingField { .. })
        ));
        assert!(matches!(
            g.parse(br#"{"t":1,"ip":"nope"}"#),
            Err(ParseError::NoClient { .. })
        ));
        assert!(matches!(
            g.parse(br#"[1]"#),
            Err(ParseError::Malformed { .. })
        ));
        let bad = JsonMapping {
            ts: "a..b".into(),
            client_ip: Some("ip".into()),
            ..JsonMapping::default()
        };
        assert!(matches!(
            GenericJson::new(&bad, ClientResolver::default()),
            Err(FormatError::InvalidPath { .. })
        ));
        let no_client = JsonMapping {
            ts: "t".into(),
            ..JsonMapping::default()
        };
        assert_eq!(
            GenericJson::new(&no_client, ClientResolver::default()).unwrap_err(),
            FormatError::MappingWithoutClient
        );
    }
}
