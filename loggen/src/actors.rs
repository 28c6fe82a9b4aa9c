//! The actors behind the traffic: ordinary visitors, the benign look-alikes
//! that fool naive detectors, and the attackers. Each actor produces its
//! requests in time order, a session at a time.

use crate::request::Request;
use crate::rng::Rng;
use crate::site::{self, HOST, LOGIN_PATH};
use std::collections::VecDeque;
use std::net::IpAddr;

/// Site-wide traffic level over time (1.0 = normal): lets a scenario hold a
/// marketing-style surge during which every visitor is busier.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Surge start (ms), inclusive.
    pub surge_from: i64,
    /// Surge end (ms), exclusive.
    pub surge_to: i64,
    /// Traffic multiplier during the surge.
    pub surge_factor: f64,
}

impl Load {
    /// The multiplier at `t`.
    pub fn at(&self, t: i64) -> f64 {
        if t >= self.surge_from && t < self.surge_to {
            self.surge_factor
        } else {
            1.0
        }
    }

    /// The largest multiplier ever used (for thinning).
    pub fn max(&self) -> f64 {
        self.surge_factor.max(1.0)
    }
}

/// What an actor does.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// An ordinary visitor: sessions of page views with assets, sometimes a
    /// login (rarely with one mistyped password first).
    Browser {
        /// Sessions per hour at normal load.
        sessions_per_hour: f64,
        /// Probability that a session starts with a login.
        login_chance: f64,
        /// The visitor's account.
        user: String,
    },
    /// A monitor polling one endpoint at a fixed interval.
    HealthCheck {
        /// Poll interval (ms).
        every_ms: i64,
        /// The endpoint.
        path: &'static str,
    },
    /// A mobile app syncing in regular bursts.
    MobileSync {
        /// Burst interval (ms).
        every_ms: i64,
        /// The app's authenticated consumer.
        consumer: String,
    },
    /// An administrator working in the admin area, successfully.
    Admin {
        /// The admin's consumer / account.
        user: String,
    },
    /// A search-engine crawler walking the catalogue.
    Crawler,
    /// A user who fails a login twice and then gets in, every few hours.
    Mistyper {
        /// The account.
        user: String,
    },
    /// Steady API polling, then a flood between `from` and `to`.
    Spiker {
        /// Flood start (ms).
        from: i64,
        /// Flood end (ms).
        to: i64,
        /// Requests per minute during the flood.
        flood_per_min: f64,
    },
    /// Failed logins against one account.
    BruteForce {
        /// Attack start (ms).
        from: i64,
        /// Attempts.
        attempts: u32,
        /// Mean gap between attempts (ms).
        gap_ms: f64,
        /// The account attacked.
        user: String,
        /// Log the account name (basic-auth style) or not.
        log_user: bool,
    },
    /// Leaked credentials tried one account each; the last few succeed.
    Stuffing {
        /// Attack start (ms).
        from: i64,
        /// Attempts.
        attempts: u32,
        /// Mean gap (ms).
        gap_ms: f64,
        /// How many of the final attempts succeed.
        successes: u32,
        /// Log the account name or not.
        log_user: bool,
    },
    /// One bot of a distributed attack: a few attempts in a window.
    BotnetNode {
        /// Window start (ms).
        from: i64,
        /// Window length (ms).
        window_ms: i64,
        /// Attempts by this node.
        attempts: u32,
        /// Log the account name or not.
        log_user: bool,
    },
    /// A slow, steady login attack over hours.
    LowAndSlow {
        /// Start (ms).
        from: i64,
        /// Mean gap (ms).
        gap_ms: f64,
        /// Log the account name or not.
        log_user: bool,
    },
    /// A burst of requests to privileged routes that answer 401/403/404.
    AdminProber {
        /// Start (ms).
        from: i64,
    },
    /// An authenticated user walking other users' objects by id.
    ObjectWalker {
        /// Start (ms).
        from: i64,
        /// First id.
        first_id: u64,
        /// How many ids.
        count: u64,
        /// The walker's own consumer.
        consumer: String,
    },
    /// A scanner for sensitive files.
    FileScanner {
        /// Start (ms).
        from: i64,
    },
}

/// One source of traffic: an address, a behaviour and a queue of requests
/// already decided.
pub struct Actor {
    /// The client address.
    pub ip: IpAddr,
    behaviour: Behaviour,
    rng: Rng,
    queue: VecDeque<Request>,
    /// Time the next session is due (ms); `i64::MAX` when done.
    cursor: i64,
    end: i64,
    load: Load,
    step: u64,
}

impl Actor {
    /// An actor active from `start` to `end` (ms).
    pub fn new(
        ip: IpAddr,
        behaviour: Behaviour,
        rng: Rng,
        start: i64,
        end: i64,
        load: Load,
    ) -> Actor {
        let mut a = Actor {
            ip,
            behaviour,
            rng,
            queue: VecDeque::new(),
            cursor: start,
            end,
            load,
            step: 0,
        };
        a.cursor = a.first_session(start);
        a.refill();
        a
    }

    /// Time of the next request, or `None` when the actor is done.
    pub fn next_ts(&self) -> Option<i64> {
        self.queue.front().map(|r| r.ts_ms)
    }

    /// Takes the next request (call only when `next_ts` is `Some`).
    pub fn pop(&mut self) -> Option<Request> {
        let r = self.queue.pop_front();
        if self.queue.is_empty() {
            self.refill();
        }
        r
    }

    fn first_session(&mut self, start: i64) -> i64 {
        match &self.behaviour {
            Behaviour::Browser {
                sessions_per_hour, ..
            } => start + self.rng.exp(3_600_000.0 / sessions_per_hour.max(0.01)) as i64,
            Behaviour::HealthCheck { every_ms, .. } => {
                start + self.rng.range(0, *every_ms as u64) as i64
            }
            Behaviour::MobileSync { every_ms, .. } => {
                start + self.rng.range(0, *every_ms as u64) as i64
            }
            Behaviour::Spiker { .. }
            | Behaviour::Admin { .. }
            | Behaviour::Crawler
            | Behaviour::Mistyper { .. } => start + self.rng.range(0, 60_000) as i64,
            Behaviour::BruteForce { from, .. }
            | Behaviour::Stuffing { from, .. }
            | Behaviour::BotnetNode { from, .. }
            | Behaviour::LowAndSlow { from, .. }
            | Behaviour::AdminProber { from }
            | Behaviour::ObjectWalker { from, .. }
            | Behaviour::FileScanner { from } => *from,
        }
    }

    /// Generates the next session (or step) into the queue.
    fn refill(&mut self) {
        while self.queue.is_empty() && self.cursor < self.end {
            let t = self.cursor;
            let behaviour = self.behaviour.clone();
            self.cursor = match behaviour {
                Behaviour::Browser {
                    sessions_per_hour,
                    login_chance,
                    user,
                } => self.browser_session(t, sessions_per_hour, login_chance, &user),
                Behaviour::HealthCheck { every_ms, path } => {
                    self.push(
                        t,
                        "GET",
                        path.to_string(),
                        String::new(),
                        200,
                        17,
                        "kube-probe/1.29",
                        None,
                        None,
                        "health",
                    );
                    t + every_ms
                }
                Behaviour::MobileSync { every_ms, consumer } => {
                    self.rotate_ipv6();
                    let n = self.rng.range(25, 40);
                    let mut at = t;
                    for _ in 0..n {
                        at += self.rng.range(20, 120) as i64;
                        let id = site::zipf_id(&mut self.rng, site::PRODUCTS);
                        self.push(
                            at,
                            "GET",
                            format!("/api/v1/items/{id}"),
                            String::new(),
                            200,
                            800,
                            "AcmeShop/5.2 (iPhone; iOS 17.4)",
                            None,
                            Some(consumer.clone()),
                            "items",
                        );
                    }
                    t + every_ms + self.rng.range(0, 4_000) as i64 - 2_000
                }
                Behaviour::Admin { user } => {
                    let pages = [
                        "/admin",
                        "/admin/users",
                        "/admin/orders",
                        "/admin/settings",
                        "/admin/reports",
                    ];
                    let path = if self.rng.chance(0.3) {
                        format!("/admin/users/{}", self.rng.range(1, 3000))
                    } else {
                        (*self.rng.pick(&pages)).to_string()
                    };
                    let status = if self.rng.chance(0.1) { 304 } else { 200 };
                    self.push(
                        t,
                        "GET",
                        path,
                        String::new(),
                        status,
                        7_000,
                        site::BROWSER_UAS[1],
                        None,
                        Some(user.clone()),
                        "admin",
                    );
                    t + self.rng.exp(40_000.0) as i64 + 5_000
                }
                Behaviour::Crawler => {
                    self.step += 1;
                    let id = (self.step % site::PRODUCTS) + 1;
                    self.push(
                        t,
                        "GET",
                        format!("/products/{id}"),
                        String::new(),
                        200,
                        15_000,
                        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                        None,
                        None,
                        "product",
                    );
                    t + 2_000 + self.rng.range(0, 2_000) as i64
                }
                Behaviour::Mistyper { user } => {
                    self.push(
                        t,
                        "GET",
                        "/login".into(),
                        String::new(),
                        200,
                        4_000,
                        site::BROWSER_UAS[0],
                        None,
                        None,
                        "login-page",
                    );
                    let mut at = t + 4_000;
                    for status in [401, 401, 200] {
                        at += self.rng.range(3_000, 9_000) as i64;
                        self.push(
                            at,
                            "POST",
                            LOGIN_PATH.into(),
                            String::new(),
                            status,
                            120,
                            site::BROWSER_UAS[0],
                            Some(user.clone()),
                            None,
                            "auth-login",
                        );
                    }
                    at += 2_000;
                    self.push(
                        at,
                        "GET",
                        "/account".into(),
                        String::new(),
                        200,
                        5_000,
                        site::BROWSER_UAS[0],
                        None,
                        Some(user.clone()),
                        "account",
                    );
                    t + 3 * 3_600_000 + self.rng.range(0, 600_000) as i64
                }
                Behaviour::Spiker {
                    from,
                    to,
                    flood_per_min,
                } => {
                    if t >= from && t < to {
                        let id = self.rng.range(1, site::PRODUCTS);
                        let status = if self.rng.chance(0.05) { 429 } else { 200 };
                        self.push(
                            t,
                            "GET",
                            format!("/api/v1/items/{id}"),
                            String::new(),
                            status,
                            900,
                            "Go-http-client/1.1",
                            None,
                            None,
                            "items",
                        );
                        t + self.rng.exp(60_000.0 / flood_per_min).max(1.0) as i64
                    } else {
                        self.step += 1;
                        self.push(
                            t,
                            "GET",
                            "/api/v1/items".into(),
                            format!("page={}", self.step % 50 + 1),
                            200,
                            3_000,
                            "Go-http-client/1.1",
                            None,
                            None,
                            "items",
                        );
                        let next = t + 8_000 + self.rng.range(0, 8_000) as i64;
                        if t < from && next >= from {
                            from
                        } else {
                            next
                        }
                    }
                }
                Behaviour::BruteForce {
                    from: _,
                    attempts,
                    gap_ms,
                    user,
                    log_user,
                } => {
                    self.step += 1;
                    if self.step > u64::from(attempts) {
                        i64::MAX
                    } else {
                        let u = log_user.then(|| user.clone());
                        self.push(
                            t,
                            "POST",
                            LOGIN_PATH.into(),
                            String::new(),
                            401,
                            60,
                            "python-requests/2.31.0",
                            u,
                            None,
                            "auth-login",
                        );
                        t + self.rng.exp(gap_ms).max(50.0) as i64
                    }
                }
                Behaviour::Stuffing {
                    from: _,
                    attempts,
                    gap_ms,
                    successes,
                    log_user,
                } => {
                    self.step += 1;
                    if self.step > u64::from(attempts) {
                        i64::MAX
                    } else {
                        let user = site::leaked_username(&mut self.rng);
                        let status = if self.step > u64::from(attempts - successes) {
                            200
                        } else {
                            401
                        };
                        let u = log_user.then_some(user);
                        self.push(
                            t,
                            "POST",
                            LOGIN_PATH.into(),
                            String::new(),
                            status,
                            60,
                            site::BROWSER_UAS[0],
                            u,
                            None,
                            "auth-login",
                        );
                        t + self.rng.exp(gap_ms).max(50.0) as i64
                    }
                }
                Behaviour::BotnetNode {
                    from,
                    window_ms,
                    attempts,
                    log_user,
                } => {
                    self.step += 1;
                    if self.step > u64::from(attempts) {
                        i64::MAX
                    } else {
                        let user = site::leaked_username(&mut self.rng);
                        let ua = *self.rng.pick(site::BROWSER_UAS);
                        self.push(
                            t,
                            "POST",
                            LOGIN_PATH.into(),
                            String::new(),
                            401,
                            60,
                            ua,
                            log_user.then_some(user),
                            None,
                            "auth-login",
                        );
                        let next = t + self.rng.range(20_000, 120_000) as i64;
                        if next > from + window_ms {
                            i64::MAX
                        } else {
                            next
                        }
                    }
                }
                Behaviour::LowAndSlow {
                    from: _,
                    gap_ms,
                    log_user,
                } => {
                    let user = site::leaked_username(&mut self.rng);
                    self.push(
                        t,
                        "POST",
                        LOGIN_PATH.into(),
                        String::new(),
                        401,
                        60,
                        site::BROWSER_UAS[2],
                        log_user.then_some(user),
                        None,
                        "auth-login",
                    );
                    t + (gap_ms * (0.7 + 0.6 * self.rng.f64())) as i64
                }
                Behaviour::AdminProber { from: _ } => {
                    let i = self.step as usize;
                    self.step += 1;
                    if i >= site::PRIVILEGED_PROBES.len() {
                        i64::MAX
                    } else {
                        let status = [403, 401, 404][i % 3];
                        self.push(
                            t,
                            "GET",
                            site::PRIVILEGED_PROBES[i].into(),
                            String::new(),
                            status,
                            150,
                            "Mozilla/5.0 zgrab/0.x",
                            None,
                            None,
                            "",
                        );
                        t + self.rng.range(1_000, 6_000) as i64
                    }
                }
                Behaviour::ObjectWalker {
                    from: _,
                    first_id,
                    count,
                    consumer,
                } => {
                    let i = self.step;
                    self.step += 1;
                    if i >= count {
                        i64::MAX
                    } else {
                        let id = first_id + i;
                        let status = if i == 42 { 200 } else { 403 };
                        self.push(
                            t,
                            "GET",
                            format!("/api/v1/users/{id}/profile"),
                            String::new(),
                            status,
                            90,
                            "okhttp/4.12.0",
                            None,
                            Some(consumer.clone()),
                            "user-profile",
                        );
                        t + self.rng.range(800, 2_500) as i64
                    }
                }
                Behaviour::FileScanner { from: _ } => {
                    let i = self.step as usize;
                    self.step += 1;
                    if i >= site::SENSITIVE_PROBES.len() {
                        i64::MAX
                    } else {
                        self.push(t, "GET", site::SENSITIVE_PROBES[i].into(), String::new(), 404, 150, "Mozilla/5.0 (compatible; Nuclei - Open-source project (github.com/projectdiscovery/nuclei))", None, None, "");
                        t + self.rng.range(500, 4_000) as i64
                    }
                }
            };
        }
        self.queue.retain(|r| r.ts_ms < self.end);
    }

    /// One browsing session starting at `t`; returns when the next one starts.
    fn browser_session(
        &mut self,
        t: i64,
        sessions_per_hour: f64,
        login_chance: f64,
        user: &str,
    ) -> i64 {
        let ua = *self.rng.pick(site::BROWSER_UAS);
        let mut at = t;
        let mut logged_in = false;
        if self.rng.chance(login_chance) {
            self.push(
                at,
                "GET",
                "/login".into(),
                String::new(),
                200,
                4_000,
                ua,
                None,
                None,
                "login-page",
            );
            at += self.rng.range(4_000, 15_000) as i64;
            if self.rng.chance(0.05) {
                // One mistyped password, then the right one.
                self.push(
                    at,
                    "POST",
                    LOGIN_PATH.into(),
                    String::new(),
                    401,
                    60,
                    ua,
                    Some(user.to_string()),
                    None,
                    "auth-login",
                );
                at += self.rng.range(3_000, 10_000) as i64;
            }
            self.push(
                at,
                "POST",
                LOGIN_PATH.into(),
                String::new(),
                200,
                120,
                ua,
                Some(user.to_string()),
                None,
                "auth-login",
            );
            logged_in = true;
        }
        let views = 1 + self.rng.exp(5.0) as u32;
        for _ in 0..views {
            at += self.rng.exp(9_000.0) as i64 + 300;
            let (path, query, status, bytes, route) = site::page(&mut self.rng);
            let consumer = logged_in.then(|| user.to_string());
            self.push(
                at,
                "GET",
                path.clone(),
                query,
                status,
                bytes,
                ua,
                None,
                consumer,
                route,
            );
            if route != "items"
                && route != "cart"
                && route != "recommendations"
                && self.rng.chance(0.6)
            {
                for _ in 0..self.rng.range(1, 4) {
                    let (apath, astatus, abytes) = site::asset(&mut self.rng);
                    at += self.rng.range(5, 120) as i64;
                    self.push(
                        at,
                        "GET",
                        apath,
                        String::new(),
                        astatus,
                        abytes,
                        ua,
                        None,
                        None,
                        "static",
                    );
                }
            }
        }
        // Next session: a non-homogeneous Poisson process, by thinning.
        let max_rate = sessions_per_hour * self.load.max();
        let mut next = at;
        loop {
            next += self.rng.exp(3_600_000.0 / max_rate.max(0.001)) as i64 + 1;
            if next >= self.end || self.rng.f64() < self.load.at(next) / self.load.max() {
                return next;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        ts_ms: i64,
        method: &'static str,
        path: String,
        query: String,
        status: u16,
        bytes: u64,
        user_agent: &'static str,
        user: Option<String>,
        consumer: Option<String>,
        route: &'static str,
    ) {
        let latency_ms = 2 + self.rng.exp(35.0) as u32;
        let ip = self.ip;
        self.queue.push_back(Request {
            ts_ms,
            ip,
            method,
            host: HOST,
            path,
            query,
            status,
            bytes,
            user_agent,
            user,
            consumer,
            route,
            latency_ms,
        });
    }

    /// A mobile IPv6 client takes a new interface id within its /64 now
    /// and then (privacy extensions): per-address keying would miss it.
    fn rotate_ipv6(&mut self) {
        if let IpAddr::V6(v6) = self.ip {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            self.ip = IpAddr::V6((prefix | u128::from(self.rng.next_u64() | 1)).into());
        }
    }
}
