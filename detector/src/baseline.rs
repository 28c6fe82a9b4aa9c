//! Learned baselines and the count tests that judge against them.
//!
//! A baseline is an exponentially weighted mean and variance of per-bucket
//! counts. A count is judged with a tail probability: Poisson when the
//! baseline is not over-dispersed, negative binomial (same mean and variance)
//! when it is, so a client that is bursty by nature gets a wider envelope
//! than a steady one. The count threshold (smallest `k` with
//! `P(X ≥ k) ≤ p`) is computed once when the baseline changes, and each
//! event only compares an integer.

use serde::{Deserialize, Serialize};
use statrs::distribution::{DiscreteCDF, NegativeBinomial, Poisson};

/// Exponentially weighted mean and variance, in `f32` to keep per-client
/// state small (counts are far below `f32` precision limits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ewma {
    /// Weighted mean.
    pub mean: f32,
    /// Weighted variance.
    pub var: f32,
    /// Samples folded in (saturating).
    pub n: u16,
}

impl Ewma {
    /// Folds one sample with smoothing factor `alpha` (the first sample sets
    /// the mean; the variance then follows West's incremental form).
    pub fn update(&mut self, x: f64, alpha: f64) {
        if self.n == 0 {
            self.mean = x as f32;
            self.var = 0.0;
        } else {
            let mean = f64::from(self.mean);
            let d = x - mean;
            let incr = alpha * d;
            self.mean = (mean + incr) as f32;
            self.var = ((1.0 - alpha) * (f64::from(self.var) + d * incr)) as f32;
        }
        self.n = self.n.saturating_add(1);
    }

    /// Standard deviation.
    pub fn stddev(&self) -> f64 {
        f64::from(self.var).max(0.0).sqrt()
    }
}

/// A count distribution with a given mean and variance: Poisson when the
/// variance does not exceed the mean, else negative binomial.
#[derive(Clone, Copy, Debug)]
pub enum CountModel {
    /// Equi-dispersed.
    Poisson(Poisson),
    /// Over-dispersed.
    NegBin(NegativeBinomial),
}

impl CountModel {
    /// The model for `mean` and `var` (mean floored at a small positive value
    /// so an all-zero baseline still gives a usable distribution).
    pub fn new(mean: f64, var: f64) -> CountModel {
        let mean = if mean.is_finite() {
            mean.max(0.05)
        } else {
            0.05
        };
        let var = if var.is_finite() { var } else { mean };
        if var > mean * 1.05 {
            let r = mean * mean / (var - mean);
            let p = r / (r + mean);
            if let Ok(nb) = NegativeBinomial::new(r, p) {
                return CountModel::NegBin(nb);
            }
        }
        match Poisson::new(mean) {
            Ok(p) => CountModel::Poisson(p),
            // Unreachable for a positive finite mean; keep a sane fallback.
            Err(_) => CountModel::Poisson(Poisson::new(1.0).unwrap_or_else(|_| unreachable!())),
        }
    }

    /// `P(X ≥ k)`.
    pub fn tail(&self, k: u64) -> f64 {
        if k == 0 {
            return 1.0;
        }
        let p = match self {
            CountModel::Poisson(d) => d.sf(k - 1),
            CountModel::NegBin(d) => d.sf(k - 1),
        };
        if p.is_nan() {
            1.0
        } else {
            p.clamp(0.0, 1.0)
        }
    }
}

/// The smallest count `k` with `P(X ≥ k) ≤ p_value` under the model for
/// `mean`/`var`, or `cap` when it is larger (callers only care whether a
/// count reaches `max(k, floor)`, so a search beyond `cap` is wasted).
pub fn tail_threshold(mean: f64, var: f64, p_value: f64, cap: u64) -> u64 {
    let model = CountModel::new(mean, var);
    let mut lo = mean.max(0.0).floor() as u64; // P(X ≥ lo) > p_value for p_value < ~0.3
    if model.tail(lo) <= p_value {
        return lo.max(1);
    }
    // Exponential search for an upper bound, then bisection on [lo, hi].
    let sd = var.max(mean).max(1.0).sqrt();
    let mut step = (4.0 * sd).ceil().max(1.0) as u64;
    let mut hi = lo.saturating_add(step);
    while model.tail(hi) > p_value {
        if hi >= cap {
            return cap;
        }
        lo = hi;
        step = step.saturating_mul(2);
        hi = hi.saturating_add(step).min(cap);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if model.tail(mid) <= p_value {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// `-log10(p)`, the score of a tail probability (capped at 300).
pub fn score_of(p: f64) -> f64 {
    if p <= 0.0 {
        300.0
    } else {
        (-p.log10()).clamp(0.0, 300.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_tracks_mean_and_variance() {
        let mut e = Ewma::default();
        for i in 0..2000 {
            e.update(if i % 2 == 0 { 8.0 } else { 12.0 }, 0.05);
        }
        assert!((f64::from(e.mean) - 10.0).abs() < 0.2, "{e:?}");
        assert!((f64::from(e.var) - 4.0).abs() < 0.5, "{e:?}");
    }

    #[test]
    fn poisson_threshold_matches_the_tail() {
        let k = tail_threshold(10.0, 10.0, 1e-6, 10_000);
        let m = CountModel::new(10.0, 10.0);
        assert!(m.tail(k) <= 1e-6);
        assert!(m.tail(k - 1) > 1e-6);
        // Known values: P(Poisson(10) ≥ 28) ≈ 2.25e-6, P(≥ 29) ≈ 7.6e-7.
        assert_eq!(k, 29);
    }

    #[test]
    fn overdispersed_baselines_get_a_wider_envelope() {
        let steady = tail_threshold(10.0, 10.0, 1e-6, 10_000);
        let bursty = tail_threshold(10.0, 100.0, 1e-6, 10_000);
        assert!(bursty > steady * 2, "steady {steady}, bursty {bursty}");
        let m = CountModel::new(10.0, 100.0);
        assert!(m.tail(bursty) <= 1e-6 && m.tail(bursty - 1) > 1e-6);
    }

    #[test]
    fn threshold_search_stops_at_the_cap() {
        assert_eq!(tail_threshold(1e6, 1e12, 1e-9, 500), 500);
    }

    #[test]
    fn score_is_minus_log10() {
        assert!((score_of(1e-6) - 6.0).abs() < 1e-9);
        assert_eq!(score_of(0.0), 300.0);
    }
}
