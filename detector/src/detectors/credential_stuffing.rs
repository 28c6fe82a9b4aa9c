//! `credential_stuffing`: login abuse, from one source or from many.
//!
//! The classifier marks login attempts (login routes with a credential
//! submitting method, and basic-auth 401s) and reads their outcome with the
//! route's rule (401/403 by default; a 200 from `wp-login.php` is a failure
//! and a 302 a success). This detector keeps two kinds of state:
//!
//! * **Per source** (role `Client`), created by a source's first failed
//!   login: failures and attempts over a short sliding window
//!   (`window_secs`) and a long one (`slow_window_secs`), distinct failing
//!   accounts (a 64-bit sketch) and the current failure streak. Nothing is judged unless
//!   at least `min_failure_ratio` of the source's attempts in the window
//!   failed, so a NAT full of real users who mostly succeed stays quiet.
//!   Then: `spray_accounts` distinct failing accounts is a **password
//!   spray**; `brute_force_failures` failures on fewer accounts than that (or
//!   from the source, when the log names no accounts) is a **brute force**;
//!   `slow_failures` failures over the long window at
//!   `slow_min_failure_ratio`, without a fast technique, is **low and slow**.
//!   A success after `takeover_min_failures` consecutive failures, or during
//!   a recognised attack, is a possible **account takeover**: critical.
//!   401s that name no account (a basic-auth prompt whose log line carries
//!   no user) never feed these windows; `anonymous_401_burst` of them within
//!   one minute is a **brute force** too.
//! * **Per target** (role `Target`: host + login path, on the shard that owns
//!   it, seeing every source): failures over the short window, distinct
//!   failing sources (client keys, so a rotating IPv6 /64 is one) and
//!   accounts, a baseline of distinct failing sources per bucket (robust to
//!   single-source attacks on the same endpoint), and the heaviest sources.
//!   At least `distributed_min_sources` failing sources and
//!   `distributed_min_failures` failures, with the failing sources above the
//!   target's own baseline (negative-binomial tail at `distributed_p_value`)
//!   once it has one, or failing at `min_failure_ratio` before that, is a
//!   **distributed** attack.

use crate::baseline::{score_of, tail_threshold, CountModel, Ewma};
use crate::classify::RequestClass;
use crate::config::{CredentialStuffingConfig, DetectionConfig};
use crate::detector::{Detector, Observation, Role};
use crate::detectors::{client_display, hash_str, idle_ms, ms, shard_cap, target_display};
use crate::episode::{Episode, HeavySources, Samples};
use crate::event::ClientKey;
use crate::finding::{Finding, IncidentKind, Severity};
use crate::state::{self, StateError};
use crate::table::ClientTable;
use crate::time::EventTime;
use crate::window::{bucket_of, BucketWindow, Distinct128, DistinctWindow};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The detector's name in findings and config.
pub const NAME: &str = "credential_stuffing";

const BRUTE: u8 = 1;
const SPRAY: u8 = 2;
const SLOW: u8 = 4;
const DISTRIBUTED: u8 = 8;
const TAKEOVER: u8 = 16;

/// Short-window buckets.
const SHORT_N: usize = 10;
/// Long-window buckets.
const LONG_N: usize = 12;
/// Anonymous-401 buckets (of 10 s: one minute).
const ANON_N: usize = 6;
/// Width of an anonymous-401 bucket.
const ANON_MS: i64 = 10_000;
/// Failing addresses weighed per target ([`HeavySources`] slots).
const HEAVY_SLOTS: usize = 8;
/// Heaviest sources reported for a distributed attack.
const TOP_SOURCES: usize = 5;
/// Target buckets of failure baseline needed before it is trusted.
const TARGET_WARMUP: u16 = 30;
/// Smoothing of the target failure baseline per bucket.
const TARGET_ALPHA: f64 = 0.02;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SourceEvidence {
    users: Samples<5>,
    paths: Samples<3>,
    takeover_user: Option<String>,
    takeover_at: Option<EventTime>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SourceState {
    fails: BucketWindow<SHORT_N>,
    attempts: BucketWindow<SHORT_N>,
    // u8 per long bucket: only low-and-slow runs are judged on these, and a
    // fast run saturating a bucket at 255 changes no verdict.
    slow_fails: BucketWindow<LONG_N, u8>,
    slow_attempts: BucketWindow<LONG_N, u8>,
    users: DistinctWindow,
    /// 401s naming no account, in 10-second buckets over a minute.
    anonymous: BucketWindow<ANON_N, u8>,
    streak: u16,
    saw_user: bool,
    /// Techniques recognised in this episode.
    techniques: u8,
    ep: Episode,
    evidence: Option<Box<SourceEvidence>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct TargetState {
    fails: BucketWindow<SHORT_N>,
    attempts: BucketWindow<SHORT_N>,
    sources: DistinctWindow,
    users: DistinctWindow,
    base: Ewma,
    bucket: u32,
    /// Distinct failing sources in the open bucket.
    bucket_sources: Distinct128,
    in_attack: bool,
    ep: Episode,
    /// The heaviest failing addresses of late (counts halve every short
    /// bucket), for the analyst to block first.
    heavy: HeavySources<HEAVY_SLOTS>,
    user_samples: Samples<5>,
}

/// See the module docs.
pub struct CredentialStuffing {
    p: Params,
    sources: ClientTable<SourceState>,
    targets: ClientTable<TargetState>,
}

struct Params {
    cfg: CredentialStuffingConfig,
    short_ms: i64,
    long_ms: i64,
}

impl CredentialStuffing {
    /// Builds the detector for one of `shards` shards.
    pub fn new(cfg: &DetectionConfig, shards: usize) -> CredentialStuffing {
        let c = &cfg.credential_stuffing;
        let cap = shard_cap(cfg, shards);
        CredentialStuffing {
            p: Params {
                cfg: c.clone(),
                short_ms: (ms(c.window_secs) / SHORT_N as i64).max(1),
                long_ms: (ms(c.slow_window_secs) / LONG_N as i64).max(1),
            },
            sources: ClientTable::new(cap, idle_ms(cfg).max(ms(c.slow_window_secs))),
            targets: ClientTable::new(cap.min(100_000), idle_ms(cfg).max(ms(c.slow_window_secs))),
        }
    }
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        f64::from(a) / f64::from(b)
    }
}

impl Params {
    fn observe_source(
        &self,
        st: &mut SourceState,
        obs: &Observation<'_, '_>,
        out: &mut Vec<Finding>,
    ) {
        let now = obs.now;
        let ev = obs.event;
        let sb = bucket_of(now.millis(), self.short_ms);
        let lb = bucket_of(now.millis(), self.long_ms);
        let gen = bucket_of(now.millis(), self.short_ms * SHORT_N as i64 / 2);
        let login = obs.class.contains(RequestClass::LOGIN);
        let failed = login && obs.class.contains(RequestClass::AUTH_FAILURE);
        let anonymous = !login && obs.class.contains(RequestClass::AUTH_FAILURE);
        let succeeded = obs.class.contains(RequestClass::AUTH_SUCCESS);
        let user = ev.user.as_deref().filter(|u| !u.is_empty());
        if anonymous {
            self.observe_anonymous(st, obs, out);
            return;
        }

        if failed && st.slow_fails.sum(lb) == 0 {
            // A new run: the previous one slid out of the long window.
            *st = SourceState {
                fails: st.fails,
                attempts: st.attempts,
                slow_fails: st.slow_fails,
                slow_attempts: st.slow_attempts,
                ep: Episode::starting(now),
                ..SourceState::default()
            };
        }
        st.attempts.add(sb, 1);
        st.slow_attempts.add(lb, 1);

        if failed {
            st.fails.add(sb, 1);
            st.slow_fails.add(lb, 1);
            st.streak = st.streak.saturating_add(1);
            st.ep.events = st.ep.events.saturating_add(1);
            if let Some(u) = user {
                st.saw_user = true;
                let h = hash_str(u);
                st.users.insert(gen, h);
            }
            if st.ep.events >= 2 {
                let e = st.evidence.get_or_insert_with(Box::default);
                if let Some(u) = user {
                    e.users.offer(u);
                }
                e.paths.offer(&ev.path);
            }
        }

        let fails_w = st.fails.sum(sb);
        let attempts_w = st.attempts.sum(sb);
        let mut techniques = 0u8;
        if ratio(fails_w, attempts_w) >= self.cfg.min_failure_ratio {
            let accounts = st.users.estimate(gen);
            if st.saw_user
                && accounts >= self.cfg.spray_accounts
                && fails_w >= self.cfg.spray_accounts
            {
                techniques |= SPRAY;
            }
            // Hammering one account or a few (fewer than a spray's worth).
            if fails_w >= self.cfg.brute_force_failures
                && (!st.saw_user || accounts < self.cfg.spray_accounts)
            {
                techniques |= BRUTE;
            }
        }
        let slow_f = st.slow_fails.sum(lb);
        if techniques == 0
            && st.techniques & (BRUTE | SPRAY) == 0
            && slow_f >= self.cfg.slow_failures
            && ratio(slow_f, st.slow_attempts.sum(lb)) >= self.cfg.slow_min_failure_ratio
        {
            techniques |= SLOW;
        }
        st.techniques |= techniques;

        if succeeded {
            let after_run = u32::from(st.streak) >= self.cfg.takeover_min_failures
                || (st.techniques & (BRUTE | SPRAY | SLOW) != 0 && st.ep.emitted());
            if after_run && st.techniques & TAKEOVER == 0 {
                st.techniques |= TAKEOVER;
                if st.techniques & (BRUTE | SPRAY | SLOW) == 0 {
                    st.techniques |= BRUTE;
                }
                let e = st.evidence.get_or_insert_with(Box::default);
                e.takeover_user = user.map(str::to_owned);
                e.takeover_at = Some(now);
            }
            st.streak = 0;
        }

        if st.techniques == 0 || (!failed && st.techniques & TAKEOVER == 0) {
            return;
        }
        let severity = self.source_severity(st, fails_w);
        if st.ep.is_news(severity, st.techniques) {
            st.ep.mark_emitted(severity, st.techniques);
            out.push(self.source_finding(obs, st, fails_w, attempts_w, gen, lb, severity));
        }
    }

    /// A 401 naming no account: only a burst within a minute counts, and it
    /// never feeds the login windows (a revoked API key polling slowly is
    /// not a brute force).
    fn observe_anonymous(
        &self,
        st: &mut SourceState,
        obs: &Observation<'_, '_>,
        out: &mut Vec<Finding>,
    ) {
        let now = obs.now;
        let ab = bucket_of(now.millis(), ANON_MS);
        if st.anonymous.sum(ab) == 0 && st.techniques == 0 {
            st.ep = Episode::starting(now);
        }
        st.anonymous.add(ab, 1);
        st.ep.events = st.ep.events.saturating_add(1);
        let burst = st.anonymous.sum(ab);
        if burst < self.cfg.anonymous_401_burst {
            return;
        }
        st.techniques |= BRUTE;
        let sb = bucket_of(now.millis(), self.short_ms);
        let lb = bucket_of(now.millis(), self.long_ms);
        let gen = bucket_of(now.millis(), self.short_ms * SHORT_N as i64 / 2);
        let fails_w = st.fails.sum(sb);
        let severity = self.source_severity(st, fails_w.max(burst));
        if st.ep.is_news(severity, st.techniques) {
            st.ep.mark_emitted(severity, st.techniques);
            let mut f =
                self.source_finding(obs, st, fails_w, st.attempts.sum(sb), gen, lb, severity);
            f.summary = format!(
                "{} was refused {burst} times within a minute (401, no account named).",
                f.key
            );
            if let Some(e) = f.evidence.as_object_mut() {
                e.insert("anonymous_401_per_minute".into(), json!(burst));
            }
            out.push(f);
        }
    }

    fn source_severity(&self, st: &SourceState, fails_w: u32) -> Severity {
        if st.techniques & TAKEOVER != 0 {
            Severity::Critical
        } else if fails_w >= 5 * self.cfg.brute_force_failures
            || st.ep.events >= 10 * self.cfg.brute_force_failures
        {
            Severity::High
        } else {
            Severity::Medium
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn source_finding(
        &self,
        obs: &Observation<'_, '_>,
        st: &SourceState,
        fails_w: u32,
        attempts_w: u32,
        gen: u32,
        lb: u32,
        severity: Severity,
    ) -> Finding {
        let key = client_display(obs);
        let technique = if st.techniques & SPRAY != 0 {
            "password_spray"
        } else if st.techniques & BRUTE != 0 {
            "brute_force"
        } else {
            "low_and_slow"
        };
        let accounts = if st.saw_user {
            json!(st.users.estimate(gen))
        } else {
            json!(null)
        };
        let ev = st.evidence.as_deref();
        let takeover = ev.and_then(|e| e.takeover_at).map(|at| {
            json!({
                "at": at,
                "user": ev.and_then(|e| e.takeover_user.clone()),
                "failures_before": st.streak,
            })
        });
        let mut summary = match technique {
            "password_spray" => format!(
                "{key} failed to log in {} times across about {} accounts.",
                st.ep.events,
                st.users.estimate(gen)
            ),
            "brute_force" => format!(
                "{key} failed to log in {} times{}.",
                st.ep.events,
                if st.saw_user {
                    " against one account"
                } else {
                    ""
                }
            ),
            _ => format!(
                "{key} failed to log in {} times over {} h, slowly.",
                st.slow_fails.sum(lb),
                self.cfg.slow_window_secs / 3600
            ),
        };
        if st.techniques & TAKEOVER != 0 {
            summary.push_str(" A login then succeeded: possible account takeover.");
        }
        let names: Vec<&str> = [
            (BRUTE, "brute_force"),
            (SPRAY, "password_spray"),
            (SLOW, "low_and_slow"),
            (TAKEOVER, "account_takeover"),
        ]
        .iter()
        .filter(|(b, _)| st.techniques & b != 0)
        .map(|(_, n)| *n)
        .collect();
        Finding {
            kind: IncidentKind::CredentialStuffing,
            technique,
            detector: NAME,
            key,
            sources: vec![obs.event.ip],
            first_seen: st.ep.start,
            last_seen: obs.now,
            detected_at: obs.now,
            severity,
            score: f64::from(st.ep.events.max(1)).log10() + f64::from(st.techniques.count_ones()),
            events: u64::from(st.ep.events),
            summary,
            evidence: json!({
                "techniques": names,
                "failures": st.ep.events,
                "window_failures": fails_w,
                "window_attempts": attempts_w,
                "failure_ratio": (ratio(fails_w, attempts_w) * 100.0).round() / 100.0,
                "window_secs": self.cfg.window_secs,
                "accounts": accounts,
                "slow_window_failures": st.slow_fails.sum(lb),
                "sample_users": ev.map(|e| e.users.items().to_vec()).unwrap_or_default(),
                "sample_paths": ev.map(|e| e.paths.items().to_vec()).unwrap_or_default(),
                "account_takeover": takeover,
            }),
        }
    }

    fn observe_target(
        &self,
        st: &mut TargetState,
        obs: &Observation<'_, '_>,
        out: &mut Vec<Finding>,
    ) {
        let now = obs.now;
        let ev = obs.event;
        let sb = bucket_of(now.millis(), self.short_ms);
        let gen = bucket_of(now.millis(), self.short_ms * SHORT_N as i64 / 2);
        let failed = obs.class.contains(RequestClass::AUTH_FAILURE);

        // Fold closed buckets into the baseline of distinct failing sources
        // per bucket (zeros included: a login endpoint is a continuous
        // series, unlike one client). Distinct sources, not failures: a
        // single-source brute force on the same endpoint is one source and
        // does not inflate what "normal" means for a distributed attack.
        if sb > st.bucket {
            if st.base.n > 0 || st.bucket_sources != Distinct128::EMPTY {
                let seen = f64::from(st.bucket_sources.estimate());
                let x = if st.in_attack {
                    // Keep the attack out of what "normal" means.
                    f64::from(st.base.mean).max(0.0)
                } else if st.base.n >= TARGET_WARMUP {
                    // Winsorized: a burst moves the baseline only a little.
                    seen.min(f64::from(st.base.mean) + 4.0 * st.base.stddev() + 1.0)
                } else {
                    seen
                };
                st.base.update(x, TARGET_ALPHA);
                for _ in 0..(sb - st.bucket - 1).min(100) {
                    st.base.update(0.0, TARGET_ALPHA);
                }
            }
            st.heavy.decay(sb - st.bucket);
            st.bucket = sb;
            st.bucket_sources = Distinct128::EMPTY;
        }
        st.attempts.add(sb, 1);
        if !failed {
            return;
        }
        st.fails.add(sb, 1);
        // Sources are client keys: addresses rotating inside one IPv6 /64
        // are one source.
        let src = obs.key.stable_hash();
        st.sources.insert(gen, src);
        st.bucket_sources.insert(src);
        if let Some(u) = ev.user.as_deref().filter(|u| !u.is_empty()) {
            st.users.insert(gen, hash_str(u));
            st.user_samples.offer(u);
        }
        st.heavy.offer(ev.ip);

        let fails_w = st.fails.sum(sb);
        let sources_w = st.sources.estimate(gen);
        let c = &self.cfg;
        let mut attack =
            fails_w >= c.distributed_min_failures && sources_w >= c.distributed_min_sources;
        let mut threshold = None;
        if attack {
            if st.base.n >= TARGET_WARMUP {
                let n = SHORT_N as f64;
                let mean = f64::from(st.base.mean).max(0.0) * n;
                let var = f64::from(st.base.var).max(0.0) * n;
                let t = tail_threshold(mean, var.max(mean), c.distributed_p_value, 1 << 40);
                threshold = Some((t, mean, var.max(mean)));
                attack = u64::from(sources_w) >= t;
            } else {
                attack = ratio(fails_w, st.attempts.sum(sb)) >= c.min_failure_ratio;
            }
        }
        if !attack {
            if st.in_attack && fails_w < c.distributed_min_failures {
                st.in_attack = false;
            }
            if st.in_attack {
                st.ep.events = st.ep.events.saturating_add(1);
            }
            return;
        }
        if !st.in_attack {
            st.in_attack = true;
            st.ep = Episode::starting(now);
            st.ep.events = fails_w;
        } else {
            st.ep.events = st.ep.events.saturating_add(1);
        }
        // Coordinated by construction: high from the start.
        let severity = Severity::High;
        if !st.ep.is_news(severity, DISTRIBUTED) {
            return;
        }
        st.ep.mark_emitted(severity, DISTRIBUTED);
        let (p, baseline) = match threshold {
            Some((t, mean, var)) => (
                CountModel::new(mean, var).tail(u64::from(sources_w)),
                json!({ "failing_sources_per_window": (mean * 100.0).round() / 100.0, "threshold": t }),
            ),
            None => (f64::NAN, json!(null)),
        };
        let key = target_display(ev);
        let top = st.heavy.top(TOP_SOURCES);
        out.push(Finding {
            kind: IncidentKind::CredentialStuffing,
            technique: "distributed",
            detector: NAME,
            summary: format!(
                "{key} received {fails_w} failed logins from about {sources_w} sources in {} s.",
                c.window_secs
            ),
            key,
            sources: top.iter().map(|(ip, _)| *ip).collect(),
            first_seen: st.ep.start,
            last_seen: now,
            detected_at: now,
            severity,
            score: if p.is_nan() {
                f64::from(sources_w).log10()
            } else {
                score_of(p)
            },
            events: u64::from(st.ep.events),
            evidence: json!({
                "techniques": ["distributed"],
                "window_failures": fails_w,
                "window_attempts": st.attempts.sum(sb),
                "sources": sources_w,
                "accounts": st.users.estimate(gen),
                "window_secs": c.window_secs,
                "baseline": baseline,
                "p_value": if p.is_nan() { json!(null) } else { json!(p) },
                "top_sources": top
                    .iter()
                    .map(|(ip, weight)| json!({ "ip": ip, "recent_failures": weight }))
                    .collect::<Vec<_>>(),
                "sample_users": st.user_samples.items(),
            }),
        });
    }
}

impl Detector for CredentialStuffing {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, obs: &Observation<'_, '_>, out: &mut Vec<Finding>) {
        let class = obs.class;
        if !class.intersects(
            RequestClass::LOGIN | RequestClass::AUTH_SUCCESS | RequestClass::AUTH_FAILURE,
        ) {
            return;
        }
        match obs.role {
            Role::Client => {
                let st = if class.contains(RequestClass::AUTH_FAILURE) {
                    Some(
                        self.sources
                            .get_or_insert_with(&obs.key, obs.now, SourceState::default)
                            .0,
                    )
                } else {
                    self.sources.get_mut(&obs.key, obs.now)
                };
                if let Some(st) = st {
                    self.p.observe_source(st, obs, out);
                }
            }
            Role::Target => {
                if !class.contains(RequestClass::LOGIN) {
                    return;
                }
                let key = ClientKey::Identity(crate::detectors::target_hash(obs.event));
                let st = if class.contains(RequestClass::AUTH_FAILURE) {
                    Some(
                        self.targets
                            .get_or_insert_with(&key, obs.now, TargetState::default)
                            .0,
                    )
                } else {
                    self.targets.get_mut(&key, obs.now)
                };
                if let Some(st) = st {
                    self.p.observe_target(st, obs, out);
                }
            }
        }
    }

    fn advance(&mut self, watermark: EventTime, _out: &mut Vec<Finding>) {
        self.sources.expire(watermark);
        self.targets.expire(watermark);
    }

    fn tracked(&self) -> usize {
        self.sources.len() + self.targets.len()
    }

    fn state_bytes(&self) -> usize {
        let src_heap: usize = self
            .sources
            .values()
            .filter_map(|s| s.evidence.as_deref())
            .map(|e| {
                std::mem::size_of::<SourceEvidence>()
                    + e.users.heap_bytes()
                    + e.paths.heap_bytes()
                    + e.takeover_user.as_ref().map_or(0, String::capacity)
            })
            .sum();
        let tgt_heap: usize = self
            .targets
            .values()
            .map(|t| t.heavy.heap_bytes() + t.user_samples.heap_bytes())
            .sum();
        self.sources.table_bytes() + self.targets.table_bytes() + src_heap + tgt_heap
    }

    fn save_state(&self) -> Result<Vec<u8>, StateError> {
        state::encode(&(self.sources.save(), self.targets.save()))
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), StateError> {
        let (sources, targets) = state::decode(state)?;
        self.sources.restore(sources);
        self.targets.restore(targets);
        Ok(())
    }
}
