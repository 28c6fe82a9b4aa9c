//! The normalised request every log format is turned into.

use crate::time::EventTime;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::hash::Hasher;
use std::net::{IpAddr, Ipv6Addr};

/// Which configured source a line came from (an index into the source list).
///
/// An index rather than a name so that carrying it on every event costs two bytes.
pub type SourceId = u16;

/// One request as seen by a gateway, normalised from whatever format it was
/// logged in.
///
/// String fields borrow from the raw line whenever the format allows it (a
/// JSON string with escapes is the exception), so parsing a line allocates
/// nothing on the hot path. Fields a format does not carry are empty / `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event<'a> {
    /// When the gateway saw the request (event time, UTC).
    pub ts: EventTime,
    /// The client address after trusted-proxy resolution of `X-Forwarded-For`.
    pub ip: IpAddr,
    /// Who the gateway authenticated the caller as (Kong consumer, API key id,
    /// authenticated user), when it did.
    pub identity: Option<Cow<'a, str>>,
    /// The account a request tried to use (basic-auth user, a login field the
    /// log was configured to carry). Attacker-controlled.
    pub user: Option<Cow<'a, str>>,
    /// HTTP method; [`Method::Invalid`] when the request line was not HTTP.
    pub method: Method,
    /// The `Host` the request was addressed to; empty when unknown.
    pub host: Cow<'a, str>,
    /// The request path without the query string, as logged (not decoded).
    /// For a request line that is not HTTP at all this holds the raw line.
    pub path: Cow<'a, str>,
    /// The query string without the leading `?`; empty when none.
    pub query: Cow<'a, str>,
    /// The gateway's route name or template, when the gateway knows it.
    pub route: Option<Cow<'a, str>>,
    /// Response status; 0 when the gateway logged none.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// Total request latency in milliseconds, when logged.
    pub latency_ms: Option<u32>,
    /// The `User-Agent` header; empty when absent. Attacker-controlled.
    pub user_agent: Cow<'a, str>,
    /// The source the line came from.
    pub source: SourceId,
}

impl<'a> Event<'a> {
    /// An event with only the mandatory fields set; the rest empty.
    ///
    /// Parsers start from this and fill in what their format carries, and
    /// tests use it to build events tersely.
    pub fn new(ts: EventTime, ip: IpAddr) -> Self {
        Event {
            ts,
            ip,
            identity: None,
            user: None,
            method: Method::Get,
            host: Cow::Borrowed(""),
            path: Cow::Borrowed("/"),
            query: Cow::Borrowed(""),
            route: None,
            status: 0,
            bytes: 0,
            latency_ms: None,
            user_agent: Cow::Borrowed(""),
            source: 0,
        }
    }

    /// Copies every borrowed field, so the event can outlive the line it was
    /// parsed from (tests, and the rare slow paths that need it).
    pub fn into_owned(self) -> Event<'static> {
        fn own(c: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(c.into_owned())
        }
        Event {
            ts: self.ts,
            ip: self.ip,
            identity: self.identity.map(own),
            user: self.user.map(own),
            method: self.method,
            host: own(self.host),
            path: own(self.path),
            query: own(self.query),
            route: self.route.map(own),
            status: self.status,
            bytes: self.bytes,
            latency_ms: self.latency_ms,
            user_agent: own(self.user_agent),
            source: self.source,
        }
    }

    /// Whether the response was a success (2xx or 3xx).
    pub fn is_success(&self) -> bool {
        (200..400).contains(&self.status)
    }
}

/// HTTP request method, as a small copyable enum so detectors can match on it
/// without string compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Method {
    /// GET
    #[default]
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// CONNECT
    Connect,
    /// TRACE
    Trace,
    /// A syntactically valid method gatewatch has no name for (WebDAV, etc.).
    Other,
    /// The request line was not HTTP (TLS bytes on a plain port, a RAT
    /// handshake, an empty request): a probing signal in its own right.
    Invalid,
}

impl Method {
    /// Recognises a method token; anything made only of token characters but
    /// unknown is [`Method::Other`], anything else [`Method::Invalid`].
    pub fn parse(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"PATCH" => Method::Patch,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"CONNECT" => Method::Connect,
            b"TRACE" => Method::Trace,
            t if !t.is_empty() && t.len() <= 20 && t.iter().all(|b| b.is_ascii_uppercase()) => {
                Method::Other
            }
            _ => Method::Invalid,
        }
    }

    /// The canonical upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
            Method::Other => "OTHER",
            Method::Invalid => "INVALID",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What per-client state is keyed on: an address (IPv6 grouped by prefix) or
/// an authenticated identity.
///
/// Small and `Copy` so that it can be a hash-map key on the hot path; an
/// identity is kept as a 64-bit hash, and its text is taken from the event
/// whenever a finding needs to show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ClientKey {
    /// An IPv4 address or a full IPv6 address.
    Ip(IpAddr),
    /// An IPv6 network (address masked to `prefix` bits): one subscriber
    /// usually holds a whole /64, so keying on single addresses would let an
    /// attacker rotate through them.
    Ipv6Net(Ipv6Addr, u8),
    /// A stable hash of an authenticated identity (consumer, API key id).
    Identity(u64),
}

impl ClientKey {
    /// The key for an address, grouping IPv6 by `ipv6_prefix` bits (128 keeps
    /// single addresses).
    pub fn for_ip(ip: IpAddr, ipv6_prefix: u8) -> ClientKey {
        match ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => ClientKey::Ip(IpAddr::V4(
                v6.to_ipv4_mapped()
                    .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            )),
            IpAddr::V6(v6) if ipv6_prefix < 128 => {
                let bits = u128::from(v6);
                let mask = if ipv6_prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(ipv6_prefix))
                };
                ClientKey::Ipv6Net(Ipv6Addr::from(bits & mask), ipv6_prefix)
            }
            ip => ClientKey::Ip(ip),
        }
    }

    /// The key for an authenticated identity.
    pub fn for_identity(identity: &str) -> ClientKey {
        ClientKey::Identity(stable_hash(identity.as_bytes()))
    }

    /// A hash of the key that is the same in every process and on every
    /// machine, used to pick the shard that owns the key.
    pub fn stable_hash(&self) -> u64 {
        match self {
            ClientKey::Ip(IpAddr::V4(a)) => mix64(u64::from(u32::from(*a))),
            ClientKey::Ip(IpAddr::V6(a)) | ClientKey::Ipv6Net(a, _) => {
                let v = u128::from(*a);
                mix64((v as u64) ^ mix64((v >> 64) as u64))
            }
            ClientKey::Identity(h) => mix64(*h),
        }
    }

    /// How the key is shown in an incident: the address, the network in CIDR
    /// form, or `identity` (which the caller takes from the event).
    pub fn display_with(&self, identity: Option<&str>) -> String {
        match self {
            ClientKey::Ip(ip) => ip.to_string(),
            ClientKey::Ipv6Net(net, len) => format!("{net}/{len}"),
            ClientKey::Identity(h) => match identity {
                Some(id) => format!("identity:{id}"),
                None => format!("identity:#{h:016x}"),
            },
        }
    }
}

impl Default for ClientKey {
    fn default() -> Self {
        ClientKey::Ip(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }
}

/// FNV-1a over bytes, finished with a 64-bit mixer: stable across processes
/// and versions (unlike `std`'s randomly keyed hasher), which sharding and
/// fingerprints need.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// The SplitMix64 finaliser: spreads every input bit over the output.
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A `Hasher` over [`stable_hash`]'s mixer, for maps whose iteration order
/// must not change between runs.
#[derive(Default, Clone, Copy)]
pub struct StableHasher(u64);

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        mix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.0 = mix64(self.0 ^ u64::from_le_bytes(buf));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = mix64(self.0 ^ n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_grouped_by_prefix_and_shown_as_cidr() {
        let ip: IpAddr = "2001:0db8:85a3:0000:0000:8a2e:0370:7334".parse().unwrap();
        let key = ClientKey::for_ip(ip, 64);
        assert_eq!(key.display_with(None), "2001:db8:85a3::/64");
        let other: IpAddr = "2001:db8:85a3::1".parse().unwrap();
        assert_eq!(ClientKey::for_ip(other, 64), key);
    }

    #[test]
    fn v4_mapped_v6_is_the_v4_address() {
        let ip: IpAddr = "::ffff:1.2.3.4".parse().unwrap();
        assert_eq!(ClientKey::for_ip(ip, 64).display_with(None), "1.2.3.4");
    }

    #[test]
    fn methods_parse() {
        assert_eq!(Method::parse(b"POST"), Method::Post);
        assert_eq!(Method::parse(b"PROPFIND"), Method::Other);
        assert_eq!(Method::parse(b"\x16\x03"), Method::Invalid);
        assert_eq!(Method::parse(b""), Method::Invalid);
    }

    #[test]
    fn stable_hash_is_stable() {
        assert_eq!(stable_hash(b"alice"), stable_hash(b"alice"));
        assert_ne!(stable_hash(b"alice"), stable_hash(b"bob"));
    }
}
