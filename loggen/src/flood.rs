//! The `flood` scenario: a spoofed-source flood, every request from a new
//! address. It exercises the detectors' cap on tracked clients: with more
//! distinct addresses than the cap, memory must stop growing once the cap is
//! reached. Requests are produced one at a time, so ten million addresses
//! cost the generator no memory.

use crate::request::Request;
use crate::rng::Rng;
use crate::scenario::DEFAULT_START_MS;
use crate::site::{self, HOST};
use std::net::{IpAddr, Ipv4Addr};

/// Event time the flood spans: well inside the default idle expiry (6 h),
/// so only the cap on tracked clients can bound the detectors' state.
pub const FLOOD_SPAN_MS: i64 = 30 * 60_000;

/// `clients` requests, one from each of `clients` distinct IPv4 addresses,
/// evenly spread over [`FLOOD_SPAN_MS`] of event time, in time order.
pub fn flood(seed: u64, clients: u64) -> impl Iterator<Item = Request> {
    let mut rng = Rng::new(seed);
    let step = FLOOD_SPAN_MS as f64 / clients.max(1) as f64;
    (0..clients).map(move |i| {
        let id = rng.range(1, site::PRODUCTS + 1);
        Request {
            ts_ms: DEFAULT_START_MS + (i as f64 * step) as i64,
            ip: flood_ip(i),
            method: "GET",
            host: HOST,
            path: format!("/products/{id}"),
            query: String::new(),
            status: 200,
            bytes: rng.range(4_000, 9_000),
            user_agent: rng.pick::<&str>(site::BROWSER_UAS),
            user: None,
            consumer: None,
            route: "product",
            latency_ms: rng.range(5, 80) as u32,
        }
    })
}

/// Flood address `i`: distinct for every `i` below 2^28, in public-looking
/// ranges (no private, loopback or multicast space).
pub fn flood_ip(i: u64) -> IpAddr {
    const FIRST: [u8; 16] = [
        5, 14, 27, 36, 41, 49, 58, 61, 83, 95, 103, 117, 125, 154, 177, 201,
    ];
    // Multiplication by an odd constant is a bijection mod 2^24.
    let spread = ((i >> 4).wrapping_mul(0x9E_37_79) & 0xFF_FFFF) as u32;
    let [_, b, c, d] = spread.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(FIRST[(i & 15) as usize], b, c, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_has_its_own_address_and_time_advances() {
        let reqs: Vec<Request> = flood(7, 200_000).collect();
        assert_eq!(reqs.len(), 200_000);
        let ips: std::collections::HashSet<IpAddr> = reqs.iter().map(|r| r.ip).collect();
        assert_eq!(ips.len(), reqs.len());
        assert!(reqs.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
        let last = reqs.last().map(|r| r.ts_ms).unwrap_or_default();
        assert!(last - DEFAULT_START_MS < FLOOD_SPAN_MS);
    }
}
