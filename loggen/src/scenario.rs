//! Scenarios: which actors visit, when the attacks happen, and the labels
//! that say what a detector should find.

use crate::actors::{Actor, Behaviour, Load};
use crate::request::Request;
use crate::rng::Rng;
use crate::site;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// 2026-03-02T08:00:00Z: a Monday morning.
pub const DEFAULT_START_MS: i64 = 1_772_438_400_000;

/// What to generate.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Seed: equal seeds give byte-identical logs.
    pub seed: u64,
    /// Ordinary visitors.
    pub clients: u64,
    /// Event time of the first request (ms).
    pub start_ms: i64,
    /// Length of the log in event time (ms).
    pub duration_ms: i64,
    /// Stop after this many requests (None: at the end of `duration_ms`).
    pub max_lines: Option<u64>,
    /// Include the attackers.
    pub attacks: bool,
    /// Include the benign look-alikes (NAT, mobile bursts, monitor, admin,
    /// crawler, mistyper).
    pub lookalikes: bool,
    /// Include a site-wide surge (every visitor 3x busier for 15 minutes).
    pub surge: bool,
    /// Log the attempted account on login requests (basic-auth style).
    pub log_users: bool,
}

impl Scenario {
    /// The labelled evaluation scenario: three hours, every attack kind,
    /// every benign look-alike and a site-wide surge.
    pub fn eval(seed: u64, clients: u64) -> Scenario {
        Scenario {
            seed,
            clients,
            start_ms: DEFAULT_START_MS,
            duration_ms: 3 * HOUR,
            max_lines: None,
            attacks: true,
            lookalikes: true,
            surge: true,
            log_users: true,
        }
    }

    /// The benchmark scenario: `lines` requests from `clients` visitors with
    /// heavy-tailed popularity and a few attacks.
    pub fn bench(seed: u64, clients: u64, lines: u64) -> Scenario {
        // About 6.5 requests per visitor-hour on average (see
        // `Behaviour::Browser`); plan for 6 so the line budget, not the clock,
        // ends the log, shortly after the last attack (at 72 % of the time).
        let hours = (lines as f64 / (clients.max(1) as f64 * 6.0)).clamp(1.0, 48.0);
        Scenario {
            seed,
            clients,
            start_ms: DEFAULT_START_MS,
            duration_ms: (hours * HOUR as f64) as i64,
            max_lines: Some(lines),
            attacks: true,
            lookalikes: true,
            surge: false,
            log_users: true,
        }
    }
}

/// What one actor is, and what a detector should say about it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Label {
    /// Short name of the actor (`brute_force`, `nat`, …).
    pub name: String,
    /// The incident kind expected, or `None` for a benign actor that must
    /// raise no incident.
    pub expect: Option<&'static str>,
    /// The incident's client: an address, an IPv6 /64, or for a distributed
    /// attack the login path, which the incident's client must contain.
    pub client: String,
    /// How `client` is compared: `exact` or `contains`.
    pub matching: &'static str,
}

/// The generated log, as a time-ordered stream of requests, plus its labels.
pub struct Generated {
    /// Expected outcomes, attackers and look-alikes.
    pub labels: Vec<Label>,
    /// The requests in event-time order.
    pub requests: Requests,
}

/// Time-ordered merge of every actor's requests.
pub struct Requests {
    actors: Vec<Actor>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    left: u64,
}

impl Iterator for Requests {
    type Item = Request;

    fn next(&mut self) -> Option<Request> {
        if self.left == 0 {
            return None;
        }
        let Reverse((_, i)) = self.heap.pop()?;
        let req = self.actors[i].pop()?;
        if let Some(ts) = self.actors[i].next_ts() {
            self.heap.push(Reverse((ts, i)));
        }
        self.left -= 1;
        Some(req)
    }
}

/// Builds the actors of `scenario`.
pub fn generate(scenario: &Scenario) -> Generated {
    let root = Rng::new(scenario.seed);
    let start = scenario.start_ms;
    let end = start + scenario.duration_ms;
    let at = |fraction: f64| start + (scenario.duration_ms as f64 * fraction) as i64;
    let load = if scenario.surge {
        Load {
            surge_from: at(0.83),
            surge_to: at(0.83) + 15 * MINUTE,
            surge_factor: 3.0,
        }
    } else {
        Load {
            surge_from: i64::MAX,
            surge_to: i64::MAX,
            surge_factor: 1.0,
        }
    };
    let mut actors = Vec::new();
    let mut labels = Vec::new();
    let mut salt = 0u64;
    let mut add = |ip: IpAddr, b: Behaviour, from: i64, to: i64, actors: &mut Vec<Actor>| {
        salt += 1;
        actors.push(Actor::new(ip, b, root.fork(salt), from, to, load));
    };

    let mut pop_rng = root.fork(u64::MAX);
    for i in 0..scenario.clients {
        let sessions_per_hour = pop_rng.pareto(0.25, 1.6).min(40.0);
        let b = Behaviour::Browser {
            sessions_per_hour,
            login_chance: 0.1,
            user: site::username(i),
        };
        add(background_ip(i), b, start, end, &mut actors);
    }

    if scenario.lookalikes {
        let nat: IpAddr = Ipv4Addr::new(203, 0, 113, 1).into();
        for u in 0..60 {
            let b = Behaviour::Browser {
                sessions_per_hour: 1.5,
                login_chance: 0.35,
                user: site::username(1_000_000 + u),
            };
            add(nat, b, start, end, &mut actors);
        }
        labels.push(benign("nat_many_users", nat.to_string()));

        let mobile: IpAddr = "2001:db8:feed:1::1"
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .unwrap_or(nat);
        let b = Behaviour::MobileSync {
            every_ms: 5 * MINUTE,
            consumer: "mobile-app-7781".into(),
        };
        add(mobile, b, start, end, &mut actors);
        labels.push(benign("mobile_bursts", "2001:db8:feed:1::/64".into()));

        let monitor: IpAddr = Ipv4Addr::new(10, 0, 0, 5).into();
        add(
            monitor,
            Behaviour::HealthCheck {
                every_ms: 10_000,
                path: "/healthz",
            },
            start,
            end,
            &mut actors,
        );
        labels.push(benign("health_check", monitor.to_string()));

        let admin: IpAddr = Ipv4Addr::new(198, 51, 100, 10).into();
        add(
            admin,
            Behaviour::Admin {
                user: "ops.admin".into(),
            },
            start,
            end,
            &mut actors,
        );
        labels.push(benign("admin_in_admin_routes", admin.to_string()));

        let crawler: IpAddr = Ipv4Addr::new(66, 249, 66, 1).into();
        add(crawler, Behaviour::Crawler, start, end, &mut actors);
        labels.push(benign("crawler", crawler.to_string()));

        let mistyper: IpAddr = Ipv4Addr::new(198, 51, 100, 77).into();
        add(
            mistyper,
            Behaviour::Mistyper {
                user: "erin.4".into(),
            },
            start,
            end,
            &mut actors,
        );
        labels.push(benign("mistyped_password", mistyper.to_string()));
    }

    if scenario.attacks {
        let log_user = scenario.log_users;
        let spiker: IpAddr = Ipv4Addr::new(185, 220, 101, 33).into();
        let b = Behaviour::Spiker {
            from: at(0.58),
            to: at(0.58) + 5 * MINUTE,
            flood_per_min: 1200.0,
        };
        add(spiker, b, start, end, &mut actors);
        labels.push(attack("traffic_spike", "traffic_spike", spiker.to_string()));

        let brute: IpAddr = Ipv4Addr::new(185, 220, 101, 47).into();
        let b = Behaviour::BruteForce {
            from: at(0.39),
            attempts: 400,
            gap_ms: 1_200.0,
            user: "admin".into(),
            log_user,
        };
        add(brute, b, start, end, &mut actors);
        labels.push(attack(
            "brute_force",
            "credential_stuffing",
            brute.to_string(),
        ));

        let stuffer: IpAddr = Ipv4Addr::new(185, 220, 102, 8).into();
        let b = Behaviour::Stuffing {
            from: at(0.5),
            attempts: 250,
            gap_ms: 3_000.0,
            successes: 2,
            log_user,
        };
        add(stuffer, b, start, end, &mut actors);
        labels.push(attack(
            "stuffing_with_takeover",
            "credential_stuffing",
            stuffer.to_string(),
        ));

        for n in 0..300u32 {
            let node: IpAddr =
                Ipv4Addr::new(45, 155, (n / 200) as u8 + 10, (n % 200) as u8 + 20).into();
            let b = Behaviour::BotnetNode {
                from: at(0.67),
                window_ms: 25 * MINUTE,
                attempts: 2 + n % 2,
                log_user,
            };
            let offset = (u64::from(n).wrapping_mul(7919) % (20 * MINUTE as u64)) as i64;
            add(node, b, at(0.67) + offset, end, &mut actors);
        }
        labels.push(Label {
            name: "distributed_stuffing".into(),
            expect: Some("credential_stuffing"),
            client: site::LOGIN_PATH.into(),
            matching: "contains",
        });

        let slow: IpAddr = Ipv4Addr::new(91, 240, 118, 5).into();
        let b = Behaviour::LowAndSlow {
            from: at(0.11),
            gap_ms: 2.0 * MINUTE as f64,
            log_user,
        };
        add(slow, b, start, end, &mut actors);
        labels.push(attack(
            "low_and_slow",
            "credential_stuffing",
            slow.to_string(),
        ));

        let prober: IpAddr = Ipv4Addr::new(193, 32, 162, 9).into();
        add(
            prober,
            Behaviour::AdminProber { from: at(0.44) },
            start,
            end,
            &mut actors,
        );
        labels.push(attack(
            "admin_probe",
            "privilege_probing",
            prober.to_string(),
        ));

        let walker: IpAddr = Ipv4Addr::new(77, 91, 66, 4).into();
        let b = Behaviour::ObjectWalker {
            from: at(0.61),
            first_id: 2000,
            count: 250,
            consumer: "mallory.77".into(),
        };
        add(walker, b, start, end, &mut actors);
        labels.push(attack(
            "object_walk",
            "privilege_probing",
            walker.to_string(),
        ));

        let scanner: IpAddr = Ipv4Addr::new(162, 243, 18, 11).into();
        add(
            scanner,
            Behaviour::FileScanner { from: at(0.78) },
            start,
            end,
            &mut actors,
        );
        labels.push(attack(
            "sensitive_files",
            "privilege_probing",
            scanner.to_string(),
        ));
    }

    let heap = actors
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.next_ts().map(|ts| Reverse((ts, i))))
        .collect();
    Generated {
        labels,
        requests: Requests {
            actors,
            heap,
            left: scenario.max_lines.unwrap_or(u64::MAX),
        },
    }
}

fn benign(name: &str, client: String) -> Label {
    Label {
        name: name.into(),
        expect: None,
        client,
        matching: "exact",
    }
}

fn attack(name: &str, kind: &'static str, client: String) -> Label {
    Label {
        name: name.into(),
        expect: Some(kind),
        client,
        matching: "exact",
    }
}

/// The address of ordinary visitor `i`: spread over public-looking ranges
/// that no labelled actor uses, one in twenty on IPv6.
pub fn background_ip(i: u64) -> IpAddr {
    const FIRST: [u8; 16] = [
        23, 31, 37, 46, 62, 78, 81, 88, 94, 101, 109, 112, 121, 151, 176, 212,
    ];
    // Multiplication by an odd constant is a bijection mod 2^24: distinct i,
    // distinct addresses.
    let spread = (i.wrapping_mul(0x9E_37_79) & 0xFF_FFFF) as u32;
    if i % 20 == 19 {
        let v6 = (0x2a02_u128 << 112) | (u128::from(spread) << 64) | u128::from(i | 1);
        return IpAddr::V6(Ipv6Addr::from(v6));
    }
    let first = FIRST[(i % FIRST.len() as u64) as usize];
    let [_, b, c, d] = spread.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(first, b, c, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_come_in_time_order_and_are_reproducible() {
        let s = Scenario {
            clients: 50,
            ..Scenario::eval(1, 50)
        };
        let a: Vec<Request> = generate(&s).requests.take(20_000).collect();
        let b: Vec<Request> = generate(&s).requests.take(20_000).collect();
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
    }

    #[test]
    fn background_addresses_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000 {
            assert!(
                seen.insert(background_ip(i)),
                "duplicate address for client {i}"
            );
        }
    }

    #[test]
    fn bench_scenario_stops_at_the_line_budget() {
        let g = generate(&Scenario::bench(3, 500, 10_000));
        assert_eq!(g.requests.count(), 10_000);
    }
}
