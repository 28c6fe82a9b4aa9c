//! `privilege_probing`: a client reaching for what it is not allowed to see.
//!
//! State is created for a client by its first *suspicious* request: a
//! 400/401/403/404/405 on a non-static path, a malformed request line, a
//! sensitive-file or traversal request (any status), or an id-parameter
//! request (`?author=3`). From then on every non-static request of the
//! client is counted, so ratios are honest. Over a sliding window
//! (`window_secs`) it keeps:
//!
//! * distinct **privileged** paths denied (401/403/404) and privileged
//!   requests that succeeded: `admin_paths` distinct denials, with denials
//!   outnumbering successes two to one, is an **admin probe** (an admin
//!   whose session expired, among many 2xx, is not);
//! * distinct **sensitive-file** / traversal requests: `sensitive_paths` of
//!   them is a **sensitive-file scan** (high when one was served 2xx);
//! * the current **object walk**: the route with its id taken out
//!   (`/api/users/{}/orders`), distinct ids, denials and near-sequential
//!   steps: `object_ids` distinct ids mostly denied (BOLA), or
//!   `sequential_ids` walked in order under a route of owned objects
//!   (`/users/`, `/invoices/`) whatever the statuses, is an **object
//!   walk**; `id_param_values` distinct values of an id parameter is an **ID
//!   enumeration**;
//! * distinct denied / malformed paths against all requests:
//!   `enum_paths` of them, at a denied share of at least `min_denied_ratio`,
//!   is a **path enumeration** (crawlers, which mostly get 200s, stay quiet).
//!
//! One finding per client episode carries every technique seen; the episode
//! ends when the client has sent nothing suspicious for a whole window.

use crate::classify::{object_ref, ObjectRef, RequestClass};
use crate::config::{DetectionConfig, PrivilegeProbingConfig};
use crate::detector::{Detector, Observation, Role};
use crate::detectors::{client_display, hash_str, idle_ms, ms, shard_cap};
use crate::episode::{Episode, Samples};
use crate::finding::{Finding, IncidentKind, Severity};
use crate::state::{self, StateError};
use crate::table::ClientTable;
use crate::time::EventTime;
use crate::window::{bucket_of, BucketWindow, Distinct128, DistinctWindow};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The detector's name in findings and config.
pub const NAME: &str = "privilege_probing";

const ADMIN: u8 = 1;
const SENSITIVE: u8 = 2;
const OBJECT: u8 = 4;
const IDENUM: u8 = 8;
const ENUM: u8 = 16;

/// Technique names, strongest first (the first one present names the finding).
const TECHNIQUES: [(u8, &str); 5] = [
    (OBJECT, "object_walk"),
    (SENSITIVE, "sensitive_files"),
    (ADMIN, "admin_probe"),
    (IDENUM, "id_enumeration"),
    (ENUM, "path_enumeration"),
];

const WIN_N: usize = 6;

/// One walk over the objects of one route.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Walk {
    route: u32,
    ids: Distinct128,
    n: u16,
    denied: u16,
    seq: u16,
    last: u32,
    sticky: u8,
    owned: bool,
}

impl Walk {
    fn update(&mut self, r: &ObjectRef, denied: bool, owned: bool, max_gap: u32) {
        let route = r.route_hash as u32;
        if self.n == 0 || self.route != route {
            if self.n > 0 && self.sticky > 0 {
                // Another route: the current walk holds unless it keeps
                // losing (a one-counter heavy hitter).
                self.sticky -= 1;
                return;
            }
            *self = Walk {
                route,
                ..Walk::default()
            };
        }
        self.sticky = (self.sticky + 1).min(8);
        self.owned |= owned;
        self.n = self.n.saturating_add(1);
        self.ids.insert(r.id_hash);
        if denied {
            self.denied = self.denied.saturating_add(1);
        }
        if let Some(id) = r.numeric {
            let id = id as u32;
            if self.n > 1 && id != self.last && id.abs_diff(self.last) <= max_gap {
                self.seq = self.seq.saturating_add(1);
            }
            self.last = id;
        }
    }
}

impl Walk {
    const EMPTY: Walk = Walk {
        route: 0,
        ids: Distinct128::EMPTY,
        n: 0,
        denied: 0,
        seq: 0,
        last: 0,
        sticky: 0,
        owned: false,
    };
}

/// State only clients that touch privileged routes, sensitive files or
/// object ids need: boxed, so a flood of plain 404s stays small.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Extra {
    admin_paths: DistinctWindow,
    sensitive: DistinctWindow,
    admin_denied: u16,
    admin_ok: u16,
    exposed: u16,
    walk: Walk,
    param: Walk,
}

static NO_EXTRA: Extra = Extra {
    admin_paths: DistinctWindow::EMPTY,
    sensitive: DistinctWindow::EMPTY,
    admin_denied: 0,
    admin_ok: 0,
    exposed: 0,
    walk: Walk::EMPTY,
    param: Walk::EMPTY,
};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ProbeState {
    total: BucketWindow<WIN_N>,
    denied: BucketWindow<WIN_N>,
    enum_paths: DistinctWindow,
    /// Denials seen: 400, 401, 403, 404, other.
    statuses: [u16; 5],
    techniques: u8,
    ep: Episode,
    extra: Option<Box<Extra>>,
    samples: Option<Box<Samples<5>>>,
}

impl ProbeState {
    fn x(&self) -> &Extra {
        self.extra.as_deref().unwrap_or(&NO_EXTRA)
    }

    fn x_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }
}

/// See the module docs.
pub struct PrivilegeProbing {
    p: Params,
    table: ClientTable<ProbeState>,
}

struct Params {
    cfg: PrivilegeProbingConfig,
    bucket_ms: i64,
    gen_ms: i64,
}

impl PrivilegeProbing {
    /// Builds the detector for one of `shards` shards.
    pub fn new(cfg: &DetectionConfig, shards: usize) -> PrivilegeProbing {
        let p = &cfg.privilege_probing;
        let window = ms(p.window_secs);
        PrivilegeProbing {
            p: Params {
                cfg: p.clone(),
                bucket_ms: (window / WIN_N as i64).max(1),
                gen_ms: (window / 2).max(1),
            },
            table: ClientTable::new(shard_cap(cfg, shards), idle_ms(cfg).max(window)),
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
    fn observe(
        &self,
        st: &mut ProbeState,
        obs: &Observation<'_, '_>,
        suspicious: bool,
        out: &mut Vec<Finding>,
    ) {
        let ev = obs.event;
        let class = obs.class;
        let now = obs.now;
        let b = bucket_of(now.millis(), self.bucket_ms);
        let gen = bucket_of(now.millis(), self.gen_ms);
        let status = ev.status;
        let is_static = class.contains(RequestClass::STATIC);
        let malformed = class.contains(RequestClass::MALFORMED);
        let denied = matches!(status, 401 | 403 | 404);
        let ok = (200..300).contains(&status);

        if suspicious && st.total.sum(b) == 0 {
            // Quiet for a whole window: a new episode.
            let extra = st.extra.take().map(|mut x| {
                *x = Extra {
                    admin_paths: x.admin_paths,
                    sensitive: x.sensitive,
                    ..Extra::default()
                };
                x
            });
            *st = ProbeState {
                total: st.total,
                denied: st.denied,
                enum_paths: st.enum_paths,
                ep: Episode::starting(now),
                extra,
                ..ProbeState::default()
            };
        }
        if !is_static {
            st.total.add(b, 1);
        }
        let enum_hit = malformed || (!is_static && matches!(status, 400 | 401 | 403 | 404 | 405));
        if enum_hit {
            st.denied.add(b, 1);
            st.enum_paths.insert(gen, hash_str(&ev.path));
            let i = match status {
                400 => 0,
                401 => 1,
                403 => 2,
                404 => 3,
                _ => 4,
            };
            st.statuses[i] = st.statuses[i].saturating_add(1);
        }
        if class.contains(RequestClass::PRIVILEGED) && !malformed && !is_static {
            if denied {
                let x = st.x_mut();
                x.admin_paths.insert(gen, hash_str(&ev.path));
                x.admin_denied = x.admin_denied.saturating_add(1);
            } else if ok {
                let x = st.x_mut();
                x.admin_ok = x.admin_ok.saturating_add(1);
            }
        }
        if class.contains(RequestClass::SENSITIVE_FILE) {
            let x = st.x_mut();
            x.sensitive.insert(
                gen,
                hash_str(&ev.path) ^ crate::event::mix64(hash_str(&ev.query)),
            );
            if ok && !is_static {
                x.exposed = x.exposed.saturating_add(1);
            }
        }
        let walked = class.intersects(RequestClass::OBJECT_ID | RequestClass::ID_PARAM);
        if walked {
            if let Some(r) = object_ref(&ev.path, &ev.query, &self.cfg.id_params) {
                let gap = self.cfg.sequential_max_gap;
                if r.from_param {
                    st.x_mut().param.update(&r, denied, false, gap);
                } else {
                    let owned = class.contains(RequestClass::OWNED_OBJECT);
                    st.x_mut().walk.update(&r, denied, owned, gap);
                }
            }
        }
        if suspicious || walked {
            st.ep.events = st.ep.events.saturating_add(1);
        }
        if suspicious && st.ep.events >= 2 {
            let s = st.samples.get_or_insert_with(Box::default);
            if s.is_full() {
                // Nothing to add: no allocation.
            } else if ev.query.is_empty() {
                s.offer(&ev.path);
            } else {
                let mut p = String::with_capacity(ev.path.len() + 1 + ev.query.len());
                p.push_str(&ev.path);
                p.push('?');
                p.push_str(&ev.query);
                s.offer(&p);
            }
        }
        if !(suspicious || walked) {
            return;
        }

        let c = &self.cfg;
        let mut t = 0u8;
        let x = st.x();
        if x.admin_paths.estimate(gen) >= c.admin_paths
            && f64::from(x.admin_denied) > c.admin_denied_per_ok * f64::from(x.admin_ok)
        {
            t |= ADMIN;
        }
        if x.sensitive.estimate(gen) >= c.sensitive_paths {
            t |= SENSITIVE;
        }
        let ids = x.walk.ids.estimate();
        let w = &x.walk;
        let share = |part: u16| f64::from(part) / f64::from(w.n.max(1));
        if (ids >= c.object_ids && share(w.denied) >= c.object_denied_share)
            || (w.owned && ids >= c.sequential_ids && share(w.seq) >= c.sequential_share)
        {
            t |= OBJECT;
        }
        if x.param.ids.estimate() >= c.id_param_values {
            t |= IDENUM;
        }
        if st.enum_paths.estimate(gen) >= c.enum_paths
            && ratio(st.denied.sum(b), st.total.sum(b)) >= c.min_denied_ratio
        {
            t |= ENUM;
        }
        st.techniques |= t;
        if st.techniques == 0 {
            return;
        }
        let severity = self.severity(st, gen);
        if st.ep.is_news(severity, st.techniques) {
            st.ep.mark_emitted(severity, st.techniques);
            out.push(self.finding(obs, st, b, gen, severity));
        }
    }

    fn severity(&self, st: &ProbeState, gen: u32) -> Severity {
        let t = st.techniques;
        let mut s = Severity::Low;
        if t & (ADMIN | IDENUM | SENSITIVE) != 0 {
            s = Severity::Medium;
        }
        if t & ENUM != 0 && st.enum_paths.estimate(gen) >= 5 * self.cfg.enum_paths {
            s = s.max(Severity::Medium);
        }
        if t & OBJECT != 0 || (t & SENSITIVE != 0 && st.x().exposed > 0) {
            s = Severity::High;
        }
        s
    }

    fn finding(
        &self,
        obs: &Observation<'_, '_>,
        st: &ProbeState,
        b: u32,
        gen: u32,
        severity: Severity,
    ) -> Finding {
        let key = client_display(obs);
        let names: Vec<&str> = TECHNIQUES
            .iter()
            .filter(|(bit, _)| st.techniques & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        let technique = names.first().copied().unwrap_or("path_enumeration");
        let x = st.x();
        let what = match technique {
            "object_walk" => format!(
                "walked about {} object ids under one route ({} denied)",
                x.walk.ids.estimate(),
                x.walk.denied
            ),
            "sensitive_files" => format!(
                "asked for about {} sensitive files{}",
                x.sensitive.estimate(gen),
                if x.exposed > 0 {
                    ", and one was served"
                } else {
                    ""
                }
            ),
            "admin_probe" => format!(
                "was denied on about {} privileged paths",
                x.admin_paths.estimate(gen)
            ),
            "id_enumeration" => format!(
                "enumerated about {} user ids through a query parameter",
                x.param.ids.estimate()
            ),
            _ => format!(
                "hit about {} distinct missing or forbidden paths",
                st.enum_paths.estimate(gen)
            ),
        };
        let [s400, s401, s403, s404, other] = st.statuses;
        Finding {
            kind: IncidentKind::PrivilegeProbing,
            technique,
            detector: NAME,
            summary: format!("{key} {what}."),
            key,
            sources: vec![obs.event.ip],
            first_seen: st.ep.start,
            last_seen: obs.now,
            detected_at: obs.now,
            severity,
            score: f64::from(st.ep.events.max(1)).log10() + f64::from(st.techniques.count_ones()),
            events: u64::from(st.ep.events),
            evidence: json!({
                "techniques": names,
                "window_secs": self.cfg.window_secs,
                "suspicious_requests": st.ep.events,
                "denied_paths": st.enum_paths.estimate(gen),
                "denied_ratio": (ratio(st.denied.sum(b), st.total.sum(b)) * 100.0).round() / 100.0,
                "privileged_paths_denied": x.admin_paths.estimate(gen),
                "privileged_ok": x.admin_ok,
                "sensitive_paths": x.sensitive.estimate(gen),
                "sensitive_served": x.exposed,
                "object_walk": {
                    "distinct_ids": x.walk.ids.estimate(),
                    "requests": x.walk.n,
                    "denied": x.walk.denied,
                    "sequential_steps": x.walk.seq,
                },
                "id_param_values": x.param.ids.estimate(),
                "statuses": { "400": s400, "401": s401, "403": s403, "404": s404, "other": other },
                "sample_paths": st.samples.as_deref().map(|s| s.items().to_vec()).unwrap_or_default(),
            }),
        }
    }
}

impl Detector for PrivilegeProbing {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, obs: &Observation<'_, '_>, out: &mut Vec<Finding>) {
        if obs.role != Role::Client {
            return;
        }
        let class = obs.class;
        let static_ = class.contains(RequestClass::STATIC);
        let suspicious = class.intersects(
            RequestClass::MALFORMED | RequestClass::SENSITIVE_FILE | RequestClass::ID_PARAM,
        ) || (!static_ && matches!(obs.event.status, 400 | 401 | 403 | 404 | 405));
        let st = if suspicious {
            Some(
                self.table
                    .get_or_insert_with(&obs.key, obs.now, ProbeState::default)
                    .0,
            )
        } else {
            self.table.get_mut(&obs.key, obs.now)
        };
        if let Some(st) = st {
            self.p.observe(st, obs, suspicious, out);
        }
    }

    fn advance(&mut self, watermark: EventTime, _out: &mut Vec<Finding>) {
        self.table.expire(watermark);
    }

    fn tracked(&self) -> usize {
        self.table.len()
    }

    fn state_bytes(&self) -> usize {
        let heap: usize = self
            .table
            .values()
            .map(|s| {
                s.samples
                    .as_deref()
                    .map_or(0, |s| std::mem::size_of::<Samples<5>>() + s.heap_bytes())
                    + s.extra.as_ref().map_or(0, |_| std::mem::size_of::<Extra>())
            })
            .sum();
        self.table.table_bytes() + heap
    }

    fn save_state(&self) -> Result<Vec<u8>, StateError> {
        state::encode(&self.table.save())
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), StateError> {
        self.table.restore(state::decode(state)?);
        Ok(())
    }
}
