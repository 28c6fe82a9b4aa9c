//! Site-wide figures that per-client detectors judge against.
//!
//! The router sees every event in stream order, whatever the shard count, so
//! it keeps two figures no single shard could:
//!
//! * **Surge**: how far site-wide traffic over the last bucket-width of time
//!   is above its own slowly learned baseline. A per-client spike is judged
//!   against `baseline × surge`, so a marketing push or an outage retry storm
//!   does not make every client an incident. The site total is *winsorized*
//!   (each client's contribution capped at twice the population quantile), so
//!   one heavy attacker cannot raise the surge and hide itself.
//! * **Client rate quantile**: an upper quantile (default p99) of events per
//!   bucket per active client, which clients without a baseline of their own
//!   are judged against.
//!
//! Both come from a deterministic sample of clients: a client is sampled when
//! the mixed hash of its key is below a limit that halves whenever the sample
//! outgrows its bound (adaptive hash sampling), so memory is fixed and the
//! result depends only on the stream. Figures are quantised (steps of about
//! 9 %) and broadcast only when they change.

use crate::baseline::Ewma;
use crate::classify::RequestClass;
use crate::config::DetectionConfig;
use crate::event::{mix64, ClientKey};
use crate::time::EventTime;
use crate::window::bucket_of;
use serde::{Deserialize, Serialize};

/// What the whole site looks like at one point of the stream, as seen by the
/// router (which sees every event, in order, whatever the shard count).
///
/// Broadcast to every shard in-band whenever it changes, so every shard sees
/// the same view at the same position of the stream: detection stays
/// independent of how many shards there are.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopulationView {
    /// How far site-wide traffic is above its own baseline (1.0 = normal).
    /// A per-client spike is judged against `baseline × surge`, so a
    /// site-wide surge does not make every client an incident.
    pub surge: f64,
    /// The upper quantile of events per bucket per active client (0 until
    /// learned); clients still warming up are judged against it.
    pub client_rate: f64,
    /// Whether the site baseline has warmed up; before that, new clients are
    /// not judged at all (at start-up every client is new).
    pub learned: bool,
    /// Increments with every change, so detectors can cache what they derive
    /// from a view.
    pub epoch: u32,
}

impl Default for PopulationView {
    fn default() -> Self {
        PopulationView {
            surge: 1.0,
            client_rate: 0.0,
            learned: false,
            epoch: 0,
        }
    }
}

/// Rounds to a power of 2^(1/8) (steps of about 9 %).
fn quantise(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 0.0;
    }
    (((x.log2() * 8.0).round()) / 8.0).exp2()
}

/// Half a quantisation step below and above a level: 2^(∓1/16).
const STEP_LO: f64 = 0.957_603_280_698_573_6;
const STEP_HI: f64 = 1.044_273_782_427_413_8;

/// Smoothing of the site baseline per bucket (slow: a surge should look like
/// a surge for a while).
const SITE_ALPHA: f64 = 0.02;
/// Smoothing of the client-rate quantile per bucket.
const RATE_ALPHA: f64 = 0.1;
/// Most clients sampled per bucket.
const SAMPLE_MAX: usize = 4096;
/// Salt so the sampling hash differs from the shard-picking hash.
const SALT: u64 = 0x5eed_0f9a_7e00_u64;

/// A [`PopulationTracker`]'s learned figures, saved across a restart.
#[derive(Serialize, Deserialize)]
pub struct PopulationState {
    cur: Option<u32>,
    sample: Vec<(u64, u32)>,
    limit: u64,
    wins_cur: f64,
    prev_total: f64,
    site: Ewma,
    rate_q: f64,
    rate_n: u32,
    view: PopulationView,
    pending: Option<PopulationView>,
}

/// Keeps the site-wide figures. See the module docs.
pub struct PopulationTracker {
    bucket_ms: i64,
    quantile: f64,
    warmup: u16,
    floor: f64,
    count_static: bool,
    count_health: bool,
    cur: Option<u32>,
    sample: hashbrown::HashMap<u64, u32, ahash::RandomState>,
    limit: u64,
    wins_cur: f64,
    prev_total: f64,
    site: Ewma,
    rate_q: f64,
    rate_n: u32,
    scratch: Vec<u32>,
    view: PopulationView,
    pending: Option<PopulationView>,
}

impl PopulationTracker {
    /// Builds a tracker.
    pub fn new(cfg: &DetectionConfig) -> Self {
        let s = &cfg.traffic_spike;
        PopulationTracker {
            bucket_ms: i64::try_from(s.bucket_secs.saturating_mul(1000)).unwrap_or(60_000),
            quantile: s.population_quantile,
            warmup: s.warmup_buckets.max(1),
            floor: f64::from(s.new_client_floor),
            count_static: s.count_static,
            count_health: s.count_health_checks,
            cur: None,
            sample: hashbrown::HashMap::with_hasher(ahash::RandomState::new()),
            limit: u64::MAX,
            wins_cur: 0.0,
            prev_total: 0.0,
            site: Ewma::default(),
            rate_q: 0.0,
            rate_n: 0,
            scratch: Vec::new(),
            view: PopulationView::default(),
            pending: None,
        }
    }

    /// Whether the rate detectors count this class of request.
    pub fn counts(&self, class: RequestClass) -> bool {
        (self.count_static || !class.contains(RequestClass::STATIC))
            && (self.count_health || !class.contains(RequestClass::HEALTH_CHECK))
    }

    fn scale(&self) -> f64 {
        if self.limit == u64::MAX {
            1.0
        } else {
            u64::MAX as f64 / self.limit as f64
        }
    }

    fn cap(&self) -> f64 {
        (2.0 * self.rate_q).max(2.0 * self.floor)
    }

    /// Counts one event at effective time `now`.
    pub fn observe(&mut self, now: EventTime, key: ClientKey, class: RequestClass) {
        let b = bucket_of(now.millis(), self.bucket_ms);
        let cur = *self.cur.get_or_insert(b);
        if b > cur {
            self.roll(cur, b);
        }
        if !self.counts(class) {
            return;
        }
        let h = mix64(key.stable_hash() ^ SALT);
        if h <= self.limit {
            let cap = self.cap();
            let c = self.sample.entry(h).or_insert(0);
            *c = c.saturating_add(1);
            if f64::from(*c) <= cap {
                self.wins_cur += 1.0;
            }
            if self.sample.len() > SAMPLE_MAX {
                self.shrink();
            }
        }
        self.update_surge(now);
    }

    fn shrink(&mut self) {
        self.limit /= 2;
        let limit = self.limit;
        self.sample.retain(|h, _| *h <= limit);
        let cap = self.cap();
        // A sum, so the map's iteration order does not matter.
        self.wins_cur = self.sample.values().map(|&c| f64::from(c).min(cap)).sum();
    }

    fn update_surge(&mut self, now: EventTime) {
        let mut surge = 1.0;
        let expected = f64::from(self.site.mean);
        if self.site.n >= self.warmup && expected > 0.0 {
            let b = self.cur.unwrap_or(0);
            let into = now.millis() - i64::from(b) * self.bucket_ms;
            let frac = (into as f64 / self.bucket_ms as f64).clamp(0.0, 1.0);
            let scale = self.scale();
            let observed = self.wins_cur * scale + self.prev_total * (1.0 - frac);
            // A lower confidence bound on the observed count, in sample
            // units, so that noise on a quiet site is not a surge.
            let in_sample = observed / scale;
            let lcb = (in_sample - 3.0 * in_sample.sqrt()).max(0.0) * scale;
            surge = (lcb / expected).max(1.0);
        }
        // Most events leave the surge inside its current quantisation step:
        // skip the logarithms then.
        let cur = self.view.surge;
        if surge >= cur * STEP_LO && surge < cur * STEP_HI {
            return;
        }
        let surge = quantise(surge).clamp(1.0, 1e6);
        if surge != self.view.surge {
            self.view.surge = surge;
            self.publish();
        }
    }

    fn roll(&mut self, cur: u32, b: u32) {
        let total = self.wins_cur * self.scale();
        self.site.update(total, SITE_ALPHA);
        let gap = b - cur - 1;
        for _ in 0..gap.min(60) {
            self.site.update(0.0, SITE_ALPHA);
        }
        self.prev_total = if gap == 0 { total } else { 0.0 };
        self.scratch.clear();
        self.scratch.extend(self.sample.values().copied());
        if !self.scratch.is_empty() {
            self.scratch.sort_unstable();
            let n = self.scratch.len();
            let idx = ((self.quantile * n as f64).ceil() as usize).clamp(1, n) - 1;
            let v = f64::from(self.scratch[idx]);
            self.rate_q = if self.rate_n == 0 {
                v
            } else {
                self.rate_q + RATE_ALPHA * (v - self.rate_q)
            };
            self.rate_n = self.rate_n.saturating_add(1);
        }
        let sampled = self.sample.len();
        self.sample.clear();
        self.wins_cur = 0.0;
        if sampled < SAMPLE_MAX / 4 && self.limit != u64::MAX {
            self.limit = self.limit.saturating_mul(2).saturating_add(1);
        }
        self.cur = Some(b);
        let rate = quantise(self.rate_q);
        let learned = self.site.n >= self.warmup && self.rate_n > 0;
        if rate != self.view.client_rate || learned != self.view.learned {
            self.view.client_rate = rate;
            self.view.learned = learned;
            self.publish();
        }
    }

    fn publish(&mut self) {
        self.view.epoch = self.view.epoch.wrapping_add(1);
        self.pending = Some(self.view);
    }

    /// What the tracker has learned, for a restart (its configuration is
    /// not included).
    pub fn save(&self) -> PopulationState {
        let mut sample: Vec<(u64, u32)> = self.sample.iter().map(|(&h, &c)| (h, c)).collect();
        sample.sort_unstable();
        PopulationState {
            cur: self.cur,
            sample,
            limit: self.limit,
            wins_cur: self.wins_cur,
            prev_total: self.prev_total,
            site: self.site,
            rate_q: self.rate_q,
            rate_n: self.rate_n,
            view: self.view,
            pending: self.pending,
        }
    }

    /// Takes back what [`PopulationTracker::save`] gave.
    pub fn restore(&mut self, state: PopulationState) {
        self.cur = state.cur;
        self.sample.clear();
        self.sample.extend(state.sample);
        self.limit = state.limit;
        self.wins_cur = state.wins_cur;
        self.prev_total = state.prev_total;
        self.site = state.site;
        self.rate_q = state.rate_q;
        self.rate_n = state.rate_n;
        self.view = state.view;
        self.pending = state.pending;
    }

    /// The view in force.
    pub fn view(&self) -> PopulationView {
        self.view
    }

    /// The view, when it changed since the last call.
    pub fn take_update(&mut self) -> Option<PopulationView> {
        self.pending.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn key(i: u32) -> ClientKey {
        ClientKey::Ip(IpAddr::V4(Ipv4Addr::from(i)))
    }

    /// `clients` clients each sending `per_client` events per minute for `minutes`.
    fn feed(
        p: &mut PopulationTracker,
        start_min: i64,
        minutes: i64,
        clients: u32,
        per_client: u32,
    ) {
        for m in start_min..start_min + minutes {
            for j in 0..per_client {
                for c in 0..clients {
                    let ms = m * 60_000
                        + i64::from(j) * 60_000 / i64::from(per_client)
                        + i64::from(c % 50);
                    p.observe(EventTime::from_millis(ms), key(c), RequestClass::NONE);
                }
            }
        }
    }

    #[test]
    fn learns_the_client_rate_quantile_and_reports_no_surge_on_steady_traffic() {
        let mut p = PopulationTracker::new(&DetectionConfig::default());
        feed(&mut p, 0, 20, 200, 10);
        let v = p.view();
        assert!(v.learned);
        assert!((v.client_rate - 10.0).abs() < 1.0, "{v:?}");
        assert_eq!(v.surge, 1.0);
    }

    #[test]
    fn a_site_wide_surge_is_seen_within_the_bucket() {
        let mut p = PopulationTracker::new(&DetectionConfig::default());
        feed(&mut p, 0, 30, 200, 10);
        feed(&mut p, 30, 2, 200, 40);
        let v = p.view();
        assert!(v.surge > 2.5 && v.surge < 5.0, "{v:?}");
    }

    #[test]
    fn one_heavy_client_does_not_make_a_surge() {
        let mut p = PopulationTracker::new(&DetectionConfig::default());
        feed(&mut p, 0, 30, 200, 10);
        for i in 0..20_000 {
            p.observe(
                EventTime::from_millis(30 * 60_000 + i * 3),
                key(9_999_999),
                RequestClass::NONE,
            );
        }
        assert!(p.view().surge < 1.3, "{:?}", p.view());
    }

    #[test]
    fn sampling_bounds_memory_under_a_flood_of_keys() {
        let mut p = PopulationTracker::new(&DetectionConfig::default());
        for i in 0..200_000u32 {
            p.observe(
                EventTime::from_millis(i64::from(i)),
                key(i),
                RequestClass::NONE,
            );
        }
        assert!(p.sample.len() <= SAMPLE_MAX);
    }
}
