//! Which address is the client, when proxies stand in between.
//!
//! A gateway behind a load balancer sees the balancer's address; the real
//! client is only in `X-Forwarded-For`, which every hop appends to and which
//! the client itself can pre-fill with anything. The only safe reading is
//! from the right: start at the address that connected to the gateway
//! (the peer) and, while that address is a proxy *we* trust, step one entry
//! to the left. The first untrusted address is the client. Without trusted
//! proxies, `X-Forwarded-For` is ignored entirely.
//!
//! Every format goes through [`ClientResolver`], so the rule is the same for
//! nginx `main`, Kong, Envoy, Traefik and the rest.

use ipnet::IpNet;
use std::net::IpAddr;

/// Resolves the client address from the peer address and the
/// `X-Forwarded-For` chain, trusting only the configured proxy networks.
#[derive(Clone, Debug, Default)]
pub struct ClientResolver {
    trusted: Vec<IpNet>,
}

impl ClientResolver {
    /// A resolver trusting the given proxy networks (none: XFF ignored).
    pub fn new(trusted: Vec<IpNet>) -> Self {
        ClientResolver { trusted }
    }

    /// Whether no proxy is trusted (and `X-Forwarded-For` is never read).
    pub fn is_empty(&self) -> bool {
        self.trusted.is_empty()
    }

    /// Whether `ip` is one of our proxies. IPv4-mapped IPv6 addresses are
    /// compared as IPv4, so `::ffff:10.0.0.1` matches `10.0.0.0/8`.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client for a request that reached the gateway from `peer` with
    /// the given raw `X-Forwarded-For` value (comma-separated, as logged).
    ///
    /// If `peer` is untrusted, it is the client. Otherwise entries are read
    /// right to left; trusted ones are skipped and the first untrusted one is
    /// the client. An entry that is not an address (`unknown`, junk) stops
    /// the walk at the last trusted hop: whatever is left of it was written
    /// by someone we cannot vouch for. If every entry is trusted, the
    /// leftmost is the best we know.
    pub fn resolve(&self, peer: IpAddr, xff: Option<&[u8]>) -> IpAddr {
        let peer = peer.to_canonical();
        match xff {
            Some(xff) if !self.trusted.is_empty() && self.is_trusted(peer) => self.walk(peer, xff),
            _ => peer,
        }
    }

    /// The client when the log has no peer address, only the
    /// `X-Forwarded-For` chain (Envoy's default text format). The rightmost
    /// entry stands for the peer: that is the address the proxy appended
    /// (Envoy with `use_remote_address`), and the rest is resolved as in
    /// [`ClientResolver::resolve`]. `None` when the chain holds no address.
    pub fn resolve_chain(&self, xff: &[u8]) -> Option<IpAddr> {
        match memchr::memrchr(b',', xff) {
            Some(comma) => {
                let peer = parse_addr(&xff[comma + 1..])?;
                Some(self.resolve(peer, Some(&xff[..comma])))
            }
            None => parse_addr(xff),
        }
    }

    fn walk(&self, peer: IpAddr, xff: &[u8]) -> IpAddr {
        let mut last = peer;
        for hop in xff.rsplit(|&b| b == b',') {
            let hop = trim(hop);
            if hop.is_empty() {
                continue;
            }
            let Some(ip) = parse_addr(hop) else {
                return last;
            };
            let ip = ip.to_canonical();
            if !self.is_trusted(ip) {
                return ip;
            }
            last = ip;
        }
        last
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !matches!(c, b' ' | b'\t' | b'"'));
    let end = b.iter().rposition(|c| !matches!(c, b' ' | b'\t' | b'"'));
    match (start, end) {
        (Some(s), Some(e)) => &b[s..=e],
        _ => &[],
    }
}

/// A plain IPv6 address of hex groups (`2001:db8::1`,
/// `fe80:0:0:0:1:2:3:4`), read the way `std` reads it: one to four hex
/// digits per group, eight groups or fewer around one `::` that stands for
/// at least one zero group. `None` for anything else — an embedded IPv4
/// tail, a zone, junk — which then takes `std`'s general parser. Clients on
/// IPv6 are common (mobile networks), and `std`'s parser costs ~5,000
/// instructions per IPv6 address, several times the rest of a log line.
fn hex_groups(b: &[u8]) -> Option<std::net::Ipv6Addr> {
    if !(2..=39).contains(&b.len()) {
        return None;
    }
    // Groups before the `::` (or all of them, without one) and after it.
    let (mut head, mut tail) = ([0u16; 8], [0u16; 8]);
    let (mut heads, mut tails) = (0, 0);
    let mut gap = false;
    let mut i = 0;
    if b.starts_with(b"::") {
        gap = true;
        i = 2;
    }
    while i < b.len() {
        let start = i;
        let mut v = 0u32;
        while let Some(d) = b.get(i).and_then(|&c| char::from(c).to_digit(16)) {
            v = v << 4 | d;
            i += 1;
        }
        if !(1..=4).contains(&(i - start)) {
            return None;
        }
        let (groups, n) = if gap {
            (&mut tail, &mut tails)
        } else {
            (&mut head, &mut heads)
        };
        *groups.get_mut(*n)? = v as u16;
        *n += 1;
        match (b.get(i), b.get(i + 1)) {
            (None, _) => break,
            (Some(b':'), Some(b':')) if !gap => {
                gap = true;
                i += 2;
            }
            // A single colon must be followed by a group.
            (Some(b':'), Some(_)) => i += 1,
            _ => return None,
        }
    }
    let groups = heads + tails;
    if (gap && groups > 7) || (!gap && groups != 8) {
        return None;
    }
    let mut out = [0u16; 8];
    out[..heads].copy_from_slice(&head[..heads]);
    out[8 - tails..].copy_from_slice(&tail[..tails]);
    Some(out.into())
}

/// Parses one address as gateways log it: `1.2.3.4`, `1.2.3.4:5678`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`, `::ffff:1.2.3.4`.
/// Surrounding blanks and quotes are ignored; `unknown`, `-` and junk give
/// `None`. A bare IPv6 address is read as an address, never as
/// address-plus-port (use [`parse_addr_port`] where a port is always there).
/// IPv4-mapped IPv6 addresses come back as IPv4.
pub fn parse_addr(b: &[u8]) -> Option<IpAddr> {
    let b = trim(b);
    if b.is_empty() || b.len() > 64 {
        return None;
    }
    if let Some(ip) = plain_addr(b) {
        return Some(ip.to_canonical());
    }
    let s = std::str::from_utf8(b).ok()?;
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    // `a.b.c.d:port` (one colon): an IPv4 address with a port.
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') || port.parse::<u16>().is_err() {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A bare address as `std` reads it (`1.2.3.4`, `2001:db8::1`; no port,
/// no brackets, no blanks), with plain IPv4 read by [`dotted_quad`] and
/// plain IPv6 by [`hex_groups`] first.
pub(crate) fn plain_addr(b: &[u8]) -> Option<IpAddr> {
    if let Some(v4) = dotted_quad(b) {
        return Some(IpAddr::V4(v4));
    }
    if let Some(v6) = hex_groups(b) {
        return Some(IpAddr::V6(v6));
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// A plain `a.b.c.d`, read the way `std` reads it (one to three digits
/// per octet, no leading zeros, at most 255), or `None` for anything else,
/// which then takes `std`'s general parser. Nearly every client address a
/// gateway logs is one of these, and `std`'s parser (which tries IPv4 and
/// IPv6 in turn) cost ~500 instructions per line.
fn dotted_quad(b: &[u8]) -> Option<std::net::Ipv4Addr> {
    if !(7..=15).contains(&b.len()) {
        return None;
    }
    let mut octets = [0u8; 4];
    // The octet being read: its value and digit count.
    let (mut k, mut v, mut digits) = (0, 0u16, 0);
    for &c in b {
        match c {
            // A fourth digit, or a digit after a leading zero.
            b'0'..=b'9' if digits == 3 || (digits > 0 && v == 0) => return None,
            b'0'..=b'9' => {
                v = v * 10 + u16::from(c - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && k < 3 => {
                octets[k] = u8::try_from(v).ok()?;
                (k, v, digits) = (k + 1, 0, 0);
            }
            _ => return None,
        }
    }
    if k != 3 || digits == 0 {
        return None;
    }
    octets[3] = u8::try_from(v).ok()?;
    Some(octets.into())
}

/// Parses an address that is always followed by a port, HAProxy-style:
/// `1.2.3.4:5678`, `2001:db8::1234:58430` (no brackets), `[v6]:port`,
/// `::ffff:1.2.3.4:5678`.
pub fn parse_addr_port(b: &[u8]) -> Option<IpAddr> {
    let b = trim(b);
    if b.first() == Some(&b'[') {
        return parse_addr(b);
    }
    let colon = memchr::memrchr(b':', b)?;
    if b[colon + 1..].is_empty() || !b[colon + 1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    parse_addr(&b[..colon])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A seeded stream of numbers below `n` (xorshift), for the randomized
    /// comparisons with `std`.
    fn xorshift(mut seed: u64) -> impl FnMut(u64) -> usize {
        move |n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n) as usize
        }
    }

    fn resolver(nets: &[&str]) -> ClientResolver {
        ClientResolver::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    /// The dotted-quad fast path answers only where `std` gives the same
    /// address — and it declines none that `std` reads — on the edge
    /// cases and on dotted digit runs, some with a byte replaced.
    #[test]
    fn dotted_quads_read_as_std_reads_them() {
        let std_v4 = |b: &[u8]| {
            std::str::from_utf8(b)
                .ok()?
                .parse::<std::net::Ipv4Addr>()
                .ok()
        };
        for edge in [
            &b"0.0.0.0"[..],
            b"255.255.255.255",
            b"256.1.1.1",
            b"01.2.3.4",
            b"1.2.3.04",
            b"1.2.3",
            b"1.2.3.4.",
            b".1.2.3.4",
            b"1..2.3",
            b"1.2.3.4.5",
            b"1234.1.1.1",
            b"1.2.3.+4",
            b"1.2.3.\xd9\xa4",
        ] {
            let fast = dotted_quad(edge);
            assert!(fast.is_none() || fast == std_v4(edge), "{edge:?}");
            assert_eq!(
                parse_addr(edge).is_some(),
                std_v4(edge).is_some(),
                "{edge:?}"
            );
        }
        let mut next = xorshift(0x2545_F491_4F6C_DD1Du64);
        let mut answered = 0;
        for _ in 0..100_000 {
            // Four runs of one to three digits, then sometimes one byte
            // replaced by a digit, a dot or a letter.
            let mut s = Vec::new();
            for k in 0..4 {
                if k > 0 {
                    s.push(b'.');
                }
                s.extend((0..=next(3)).map(|_| b"0123456789"[next(10)]));
            }
            if next(2) == 0 {
                let at = next(s.len() as u64);
                s[at] = b"0.9a"[next(4)];
            }
            let fast = dotted_quad(&s);
            assert!(fast.is_none() || fast == std_v4(&s), "{s:?}");
            assert_eq!(fast.is_some(), std_v4(&s).is_some(), "{s:?}");
            answered += usize::from(fast.is_some());
        }
        assert!(answered > 10_000, "{answered}");
    }

    /// The hex-group fast path answers only where `std` gives the same
    /// address, and declines none that `std` reads without an IPv4 tail
    /// or a zone: on the edge cases and on random runs of groups and
    /// colons, some with a byte replaced.
    #[test]
    fn hex_groups_read_as_std_reads_them() {
        let std_v6 = |b: &[u8]| {
            std::str::from_utf8(b)
                .ok()?
                .parse::<std::net::Ipv6Addr>()
                .ok()
        };
        let check = |s: &[u8]| {
            let fast = hex_groups(s);
            assert!(fast.is_none() || fast == std_v6(s), "{s:?}");
            if !s.contains(&b'.') && !s.contains(&b'%') {
                assert_eq!(fast.is_some(), std_v6(s).is_some(), "{s:?}");
            }
            fast.is_some()
        };
        for edge in [
            &b"::"[..],
            b"::1",
            b"1::",
            b"1::2",
            b":::",
            b":1",
            b"1:",
            b"1:2:3:4:5:6:7:8",
            b"1:2:3:4:5:6:7:8:9",
            b"1:2:3:4:5:6:7::8",
            b"1:2:3:4:5:6::7",
            b"1:2:3:4:5:6:7:8::",
            b"::1:2:3:4:5:6:7",
            b"::1:2:3:4:5:6:7:8",
            b"1::2::3",
            b"12345::1",
            b"ABCD:ef01::",
            b"g::1",
            b"::ffff:1.2.3.4",
            b"fe80::1%eth0",
            b"1:2:3:4:5:6:7:\xd9\xa4",
        ] {
            check(edge);
        }
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15u64);
        let mut answered = 0;
        for _ in 0..100_000 {
            // Up to nine groups of zero to five hex digits joined by one
            // colon, sometimes two; sometimes one byte replaced.
            let mut s = Vec::new();
            for k in 0..=next(9) {
                if k > 0 {
                    s.extend_from_slice(if next(6) == 0 { b"::" } else { b":" });
                }
                s.extend((0..next(6)).map(|_| b"0123456789abcdefABCDEF"[next(22)]));
            }
            if next(3) == 0 && !s.is_empty() {
                let at = next(s.len() as u64);
                s[at] = b"0:fg."[next(5)];
            }
            answered += usize::from(check(&s));
        }
        assert!(answered > 2_000, "{answered}");
    }

    #[test]
    fn addresses_in_every_spelling() {
        assert_eq!(parse_addr(b"1.2.3.4"), Some(ip("1.2.3.4")));
        assert_eq!(parse_addr(b" 1.2.3.4:5678 "), Some(ip("1.2.3.4")));
        assert_eq!(
            parse_addr(b"[fd00:1234:5678::5a24]"),
            Some(ip("fd00:1234:5678::5a24"))
        );
        assert_eq!(
            parse_addr(b"[fd00:1234:5678::1]:54321"),
            Some(ip("fd00:1234:5678::1"))
        );
        assert_eq!(parse_addr(b"2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_addr(b"::ffff:192.168.33.1"), Some(ip("192.168.33.1")));
        for junk in [
            &b"unknown"[..],
            b"-",
            b"",
            b"1.2.3",
            b"[::1",
            b"1.2.3.4:x",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_addr(junk), None, "{junk:?}");
        }
        assert_eq!(
            parse_addr_port(b"2001:db8::1234:58430"),
            Some(ip("2001:db8::1234"))
        );
        assert_eq!(
            parse_addr_port(b"::ffff:192.168.33.1:58430"),
            Some(ip("192.168.33.1"))
        );
        assert_eq!(
            parse_addr_port(b"117.136.40.129:14853"),
            Some(ip("117.136.40.129"))
        );
        assert_eq!(parse_addr_port(b"-:22222"), None);
    }

    #[test]
    fn without_trusted_proxies_xff_is_ignored() {
        let r = ClientResolver::default();
        assert_eq!(r.resolve(ip("10.0.0.1"), Some(b"6.6.6.6")), ip("10.0.0.1"));
    }

    #[test]
    fn walks_right_to_left_skipping_trusted_hops() {
        let r = resolver(&["10.0.0.0/8", "172.16.0.0/12"]);
        // The client pre-filled a fake address: it stays left of the real one.
        let xff = b"6.6.6.6, 203.0.113.9, 10.1.1.1";
        assert_eq!(r.resolve(ip("172.16.0.2"), Some(xff)), ip("203.0.113.9"));
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(r.resolve(ip("198.51.100.1"), Some(xff)), ip("198.51.100.1"));
        // Junk stops the walk at the last trusted hop.
        assert_eq!(
            r.resolve(ip("10.0.0.1"), Some(b"unknown, 10.2.2.2")),
            ip("10.2.2.2")
        );
        // All trusted: the leftmost.
        assert_eq!(
            r.resolve(ip("10.0.0.1"), Some(b"10.9.9.9, 10.2.2.2")),
            ip("10.9.9.9")
        );
        // Mapped peers match v4 networks.
        assert_eq!(
            r.resolve(ip("::ffff:10.0.0.1"), Some(b"1.1.1.1")),
            ip("1.1.1.1")
        );
        // Ports and brackets in the chain.
        assert_eq!(
            r.resolve(ip("10.0.0.1"), Some(b"[2001:db8::7]:443, 10.3.3.3:80")),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn envoy_first_versus_last() {
        // corpus crowdsec-hub/tests/envoy-logs line 9: XFF "192.168.1.100,
        // 10.42.0.1" where 10.42.0.1 is the peer (the JSON twin of the line
        // has downstream_remote_address 10.42.0.1). CrowdSec answers the
        // first entry; we answer the first untrusted from the right, which
        // is the same once the cluster network is trusted.
        let xff = b"192.168.1.100, 10.42.0.1";
        assert_eq!(
            ClientResolver::default().resolve_chain(xff),
            Some(ip("10.42.0.1"))
        );
        assert_eq!(
            resolver(&["10.42.0.0/16"]).resolve_chain(xff),
            Some(ip("192.168.1.100"))
        );
        let v6 = b"fd00:1234:5678::5a24, [fd00:1234:5678::1]:54321";
        assert_eq!(
            resolver(&["fd00:1234:5678::1/128"]).resolve_chain(v6),
            Some(ip("fd00:1234:5678::5a24"))
        );
        assert_eq!(ClientResolver::default().resolve_chain(b"-"), None);
        assert_eq!(
            ClientResolver::default().resolve_chain(b"1.2.3.4"),
            Some(ip("1.2.3.4"))
        );
    }

    #[test]
    fn traefik_client_host_list() {
        // corpus crowdsec-hub/tests/traefik_json last line: ClientAddr
        // 172.71.122.85 (a CDN edge), ClientHost "192.168.1.100,10.0.0.50".
        // CrowdSec expects the last entry; so do we once the edge is trusted.
        let peer = ip("172.71.122.85");
        let host = b"192.168.1.100,10.0.0.50";
        assert_eq!(ClientResolver::default().resolve(peer, Some(host)), peer);
        assert_eq!(
            resolver(&["172.64.0.0/13"]).resolve(peer, Some(host)),
            ip("10.0.0.50")
        );
    }
}
