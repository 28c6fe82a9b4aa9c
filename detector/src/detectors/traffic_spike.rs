//! `traffic_spike`: a client far above its *own* learned rate.
//!
//! Each client's events are counted in buckets of `bucket_secs`. When a
//! bucket closes, its count is folded into an exponentially weighted mean and
//! variance over the client's *active* buckets (buckets with no events are
//! skipped, so an intermittent client is compared with its own active
//! minutes rather than with a mean diluted by idle time). The count
//! threshold for the open bucket is the smallest `k` with
//! `P(X ≥ k) ≤ p_value`, where `X` is Poisson, or negative binomial when the
//! client's variance exceeds its mean (a bursty client gets a wider
//! envelope). Mean and variance are first scaled by the site-wide surge, so a
//! site-wide rush does not flag everyone; the threshold is never below
//! `min_events`. It is computed when the bucket opens or the population view
//! changes, and each event only compares the bucket's running count with it,
//! so a spike is caught on the event that crosses it.
//!
//! A client with fewer than `warmup_buckets` active buckets is judged against
//! the population instead: a negative binomial (coefficient of variation
//! 1/2, since clients differ) around the site's p99 of per-client bucket
//! counts (at least `new_client_floor`), times the surge. At start-up, until
//! the site baseline itself has warmed up, new clients are not judged.
//!
//! Consecutive spiking buckets are one episode. Buckets that spiked are
//! folded into the baseline clipped at their threshold, so a sustained
//! attack does not become normal at once.

use crate::baseline::{score_of, tail_threshold, CountModel, Ewma};
use crate::config::{DetectionConfig, TrafficSpikeConfig};
use crate::detector::{Detector, Observation, Role};
use crate::detectors::{client_display, idle_ms, ms, shard_cap};
use crate::episode::Episode;
use crate::finding::{Finding, IncidentKind, Severity};
use crate::population::PopulationView;
use crate::state::{self, StateError};
use crate::table::ClientTable;
use crate::time::EventTime;
use crate::window::bucket_of;
use crate::RequestClass;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The detector's name in findings and config.
pub const NAME: &str = "traffic_spike";

const IN_EPISODE: u8 = 1;
const SPIKED_THIS_BUCKET: u8 = 2;
const BY_POPULATION: u8 = 4;
/// `thr` is a lower bound of the threshold, not the threshold: the tail
/// search is put off until the count reaches it, which most clients never
/// do in a bucket.
const THR_LOWER_BOUND: u8 = 8;

/// Negative-binomial shape (`r`) of the spread assumed between clients.
const NEW_CLIENT_R: f64 = 4.0;

/// Threshold meaning "not judged".
const NEVER: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct SpikeState {
    /// The open bucket.
    bucket: u32,
    /// Events in the open bucket.
    count: u32,
    /// Count threshold for the open bucket (0 = to compute).
    thr: u32,
    /// Population epoch `thr` was computed under.
    thr_epoch: u32,
    /// Milliseconds into the open bucket of its first event.
    first_off: u32,
    /// Largest bucket count of the episode.
    peak: u32,
    base: Ewma,
    flags: u8,
    ep: Episode,
}

impl SpikeState {
    fn new(bucket: u32) -> SpikeState {
        SpikeState {
            bucket,
            count: 0,
            thr: 0,
            thr_epoch: 0,
            first_off: 0,
            peak: 0,
            base: Ewma::default(),
            flags: 0,
            ep: Episode::default(),
        }
    }
}

/// See the module docs.
pub struct TrafficSpike {
    p: Params,
    table: ClientTable<SpikeState>,
}

/// Everything but the table, so the table can be borrowed mutably beside it.
struct Params {
    cfg: TrafficSpikeConfig,
    bucket_ms: i64,
    /// Cached new-client threshold and the population epoch it is for.
    pop_thr: (u32, u32),
}

impl TrafficSpike {
    /// Builds the detector for one of `shards` shards.
    pub fn new(cfg: &DetectionConfig, shards: usize) -> TrafficSpike {
        TrafficSpike {
            p: Params {
                cfg: cfg.traffic_spike.clone(),
                bucket_ms: ms(cfg.traffic_spike.bucket_secs),
                pop_thr: (NEVER, u32::MAX),
            },
            table: ClientTable::new(shard_cap(cfg, shards), idle_ms(cfg)),
        }
    }
}

impl Params {
    fn counts(&self, class: RequestClass) -> bool {
        (self.cfg.count_static || !class.contains(RequestClass::STATIC))
            && (self.cfg.count_health_checks || !class.contains(RequestClass::HEALTH_CHECK))
    }

    /// Mean and variance a warmed-up client is expected to show under `surge`.
    fn expected(base: &Ewma, surge: f64) -> (f64, f64) {
        let m = f64::from(base.mean).max(0.0);
        let v = f64::from(base.var).max(0.0);
        // The Poisson part scales with the surge, the over-dispersion with
        // its square (every request of a burst is multiplied).
        (m * surge, m * surge + (v - m).max(0.0) * surge * surge)
    }

    fn population_threshold(&mut self, pop: &PopulationView) -> u32 {
        if self.pop_thr.1 != pop.epoch {
            let thr = if pop.learned {
                let mean = pop.client_rate.max(f64::from(self.cfg.new_client_floor)) * pop.surge;
                // Clients differ: judge a stranger against a negative
                // binomial with a coefficient of variation of 1/2 around the
                // population figure, not a tight Poisson.
                let var = mean + mean * mean / NEW_CLIENT_R;
                let t = tail_threshold(mean, var, self.cfg.p_value, u64::from(NEVER - 1));
                u32::try_from(t)
                    .unwrap_or(NEVER - 1)
                    .max(self.cfg.min_events)
            } else {
                NEVER
            };
            self.pop_thr = (thr, pop.epoch);
        }
        self.pop_thr.0
    }

    /// The client's own count threshold, and whether it is exact: when
    /// `exact` is false and the threshold needs a tail search, a lower
    /// bound of it instead (the search never answers below the mean).
    fn own_threshold(&self, st: &SpikeState, surge: f64, exact: bool) -> (u32, bool) {
        let (mean, var) = Self::expected(&st.base, surge);
        let floor = self.cfg.min_events;
        // A near-Poisson client far below the floor cannot reach it by
        // chance: skip the tail search.
        if var <= mean * 1.05 && mean + 12.0 * mean.sqrt() + 12.0 < f64::from(floor) {
            return (floor, true);
        }
        if !exact {
            let below_mean = mean.floor().clamp(0.0, f64::from(NEVER - 1)) as u32;
            return (below_mean.max(floor), false);
        }
        let t = tail_threshold(mean, var, self.cfg.p_value, u64::from(NEVER - 1));
        (u32::try_from(t).unwrap_or(NEVER - 1).max(floor), true)
    }

    /// Sets the client's threshold for the open bucket, or a lower bound of
    /// it (flagged [`THR_LOWER_BOUND`]) unless `exact`.
    fn threshold(&mut self, st: &mut SpikeState, pop: &PopulationView, exact: bool) {
        let warmed = st.base.n >= self.cfg.warmup_buckets;
        let (thr, is_exact) = if warmed {
            st.flags &= !BY_POPULATION;
            self.own_threshold(st, pop.surge, exact)
        } else {
            st.flags |= BY_POPULATION;
            let thr = self.population_threshold(pop);
            if thr != NEVER && st.base.n >= 2 {
                let (own, own_exact) = self.own_threshold(st, pop.surge, exact);
                (thr.max(own), own_exact)
            } else {
                (thr, true)
            }
        };
        st.thr = thr;
        if is_exact {
            st.flags &= !THR_LOWER_BOUND;
        } else {
            st.flags |= THR_LOWER_BOUND;
        }
        st.thr_epoch = pop.epoch;
    }

    fn roll(&self, st: &mut SpikeState, bucket: u32, now: EventTime) {
        if st.count > 0 {
            let spiked = st.flags & SPIKED_THIS_BUCKET != 0;
            let x = if spiked && st.thr != NEVER {
                st.count.min(st.thr)
            } else {
                st.count
            };
            st.base.update(f64::from(x), self.cfg.alpha);
        }
        if st.flags & IN_EPISODE != 0
            && (st.flags & SPIKED_THIS_BUCKET == 0 || bucket > st.bucket + 1)
        {
            st.flags &= !IN_EPISODE;
        }
        st.flags &= !SPIKED_THIS_BUCKET;
        st.bucket = bucket;
        st.count = 0;
        st.thr = 0;
        st.first_off =
            u32::try_from(now.millis() - i64::from(bucket) * self.bucket_ms).unwrap_or(0);
    }

    fn severity(&self, ratio: f64) -> Severity {
        if ratio >= self.cfg.high_ratio {
            Severity::High
        } else if ratio >= self.cfg.high_ratio / 4.0 {
            Severity::Medium
        } else {
            Severity::Low
        }
    }
}

impl Detector for TrafficSpike {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, obs: &Observation<'_, '_>, out: &mut Vec<Finding>) {
        if obs.role != Role::Client || !self.p.counts(obs.class) {
            return;
        }
        let now = obs.now;
        let p = &mut self.p;
        let b = bucket_of(now.millis(), p.bucket_ms);
        let bucket_ms = p.bucket_ms;
        let (st, fresh) = self
            .table
            .get_or_insert_with(&obs.key, now, || SpikeState::new(b));
        if fresh {
            st.first_off = u32::try_from(now.millis() - i64::from(b) * bucket_ms).unwrap_or(0);
        }
        if b > st.bucket {
            p.roll(st, b, now);
        }
        // Late events count in the open bucket.
        st.count = st.count.saturating_add(1);
        if st.flags & IN_EPISODE != 0 {
            st.ep.events = st.ep.events.saturating_add(1);
        }
        if st.thr == 0 || st.thr_epoch != obs.population.epoch {
            p.threshold(st, obs.population, false);
        }
        // After this, a count below `thr` is below the threshold, and at or
        // above it `thr` is exact (so `roll` and the evidence see exact).
        if st.count >= st.thr && st.flags & THR_LOWER_BOUND != 0 {
            p.threshold(st, obs.population, true);
        }
        if st.count >= st.thr {
            if st.flags & IN_EPISODE == 0 {
                let start = EventTime::from_millis(
                    i64::from(st.bucket) * bucket_ms + i64::from(st.first_off),
                );
                st.ep = Episode::starting(start.min(now));
                st.ep.events = st.count;
                st.peak = 0;
                st.flags |= IN_EPISODE;
            }
            st.flags |= SPIKED_THIS_BUCKET;
            st.peak = st.peak.max(st.count);
            let pop = obs.population;
            let by_pop = st.flags & BY_POPULATION != 0;
            let expected = if by_pop {
                pop.client_rate.max(f64::from(p.cfg.new_client_floor)) * pop.surge
            } else {
                Params::expected(&st.base, pop.surge).0
            };
            let ratio = f64::from(st.count) / expected.max(1.0);
            let severity = p.severity(ratio);
            if st.ep.is_news(severity, 1) {
                st.ep.mark_emitted(severity, 1);
                out.push(p.finding(obs, st, expected, severity));
            }
        }
    }

    fn advance(&mut self, watermark: EventTime, _out: &mut Vec<Finding>) {
        self.table.expire(watermark);
    }

    fn tracked(&self) -> usize {
        self.table.len()
    }

    fn state_bytes(&self) -> usize {
        self.table.table_bytes()
    }

    fn save_state(&self) -> Result<Vec<u8>, StateError> {
        state::encode(&self.table.save())
    }

    fn restore_state(&mut self, state: &[u8]) -> Result<(), StateError> {
        self.table.restore(state::decode(state)?);
        Ok(())
    }
}

impl Params {
    fn finding(
        &self,
        obs: &Observation<'_, '_>,
        st: &SpikeState,
        expected: f64,
        severity: Severity,
    ) -> Finding {
        let pop = obs.population;
        let by_pop = st.flags & BY_POPULATION != 0;
        let model = if by_pop {
            CountModel::new(expected, expected + expected * expected / NEW_CLIENT_R)
        } else {
            let (m, v) = Params::expected(&st.base, pop.surge);
            CountModel::new(m, v)
        };
        let p = model.tail(u64::from(st.count));
        let key = client_display(obs);
        let secs = self.cfg.bucket_secs;
        let summary = if by_pop {
            format!(
                "New client {key} sent {} requests in {secs} s, far above what clients of this site send (p99 ≈ {:.0} per {secs} s).",
                st.count, expected
            )
        } else {
            format!(
                "{key} sent {} requests in {secs} s against its usual {:.1} (p = {p:.1e}).",
                st.count, expected
            )
        };
        Finding {
            kind: IncidentKind::TrafficSpike,
            technique: if by_pop {
                "new_client_burst"
            } else {
                "rate_spike"
            },
            detector: NAME,
            key,
            sources: vec![obs.event.ip],
            first_seen: st.ep.start,
            last_seen: obs.now,
            detected_at: obs.now,
            severity,
            score: score_of(p),
            events: u64::from(st.ep.events),
            summary,
            evidence: json!({
                "bucket_secs": secs,
                "observed": st.count,
                "expected": round2(expected),
                "threshold": st.thr,
                "p_value": p,
                "judged_against": if by_pop { "population" } else { "own_baseline" },
                "baseline": {
                    "mean": round2(f64::from(st.base.mean)),
                    "stddev": round2(st.base.stddev()),
                    "active_buckets": st.base.n,
                },
                "population_rate": round2(pop.client_rate),
                "surge": round2(pop.surge),
                "peak": st.peak,
                "episode_events": st.ep.events,
            }),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The put-off tail search must never raise the bar: a lower bound that
    /// exceeded the threshold would hide spikes between the two.
    #[test]
    fn threshold_lower_bound_never_exceeds_the_threshold() {
        let det = TrafficSpike::new(&DetectionConfig::default(), 1);
        for mean in [0.0f32, 0.3, 2.0, 9.5, 40.0, 61.0, 300.0, 5e4] {
            for dispersion in [1.0f32, 1.04, 2.0, 30.0] {
                for surge in [1.0, 3.0] {
                    let mut st = SpikeState::new(0);
                    st.base = Ewma {
                        mean,
                        var: mean * dispersion,
                        n: 100,
                    };
                    let (lower, lower_exact) = det.p.own_threshold(&st, surge, false);
                    let (exact, is_exact) = det.p.own_threshold(&st, surge, true);
                    assert!(is_exact);
                    assert!(
                        lower <= exact,
                        "{mean} {dispersion} {surge}: {lower} > {exact}"
                    );
                    if lower_exact {
                        assert_eq!(lower, exact);
                    }
                }
            }
        }
    }
}
