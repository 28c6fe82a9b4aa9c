//! Fixed-size sliding windows over event time: counts and distinct counts.
//!
//! All of them are a few dozen bytes, `Copy`, never allocate and are driven by
//! the event's own time, so they can sit inside per-client state. Events that
//! arrive late (their bucket is behind the newest one) are counted in their
//! own bucket while it is still inside the window, else dropped: a fixed
//! rule, so results do not depend on arrival batching.

use serde::{Deserialize, Serialize};

/// A saturating bucket counter: `u16`, or `u8` where only small counts
/// matter (long windows judged against low thresholds).
pub trait Count: Copy + Default + Into<u32> {
    /// `self + n`, saturating.
    fn sat_add(self, n: u16) -> Self;
}

impl Count for u16 {
    fn sat_add(self, n: u16) -> Self {
        self.saturating_add(n)
    }
}

impl Count for u8 {
    fn sat_add(self, n: u16) -> Self {
        self.saturating_add(u8::try_from(n).unwrap_or(u8::MAX))
    }
}

/// Event counts over the last `N` buckets of `width_ms` each (a sliding
/// window of `N × width_ms`), as saturating counters of type `C`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketWindow<const N: usize, C: Count = u16> {
    head: u32,
    counts: [C; N],
}

impl<const N: usize, C: Count> Default for BucketWindow<N, C> {
    fn default() -> Self {
        BucketWindow {
            head: 0,
            counts: [C::default(); N],
        }
    }
}

/// Saved as the head bucket and the counts in slot order (serde has no
/// impls for arrays of any length `N`).
impl<const N: usize, C: Count + Serialize> Serialize for BucketWindow<N, C> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.head, &self.counts[..]).serialize(s)
    }
}

impl<'de, const N: usize, C: Count + Deserialize<'de>> Deserialize<'de> for BucketWindow<N, C> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (head, counts) = <(u32, Vec<C>)>::deserialize(d)?;
        let counts = <[C; N]>::try_from(counts)
            .map_err(|c| serde::de::Error::invalid_length(c.len(), &"the window's bucket count"))?;
        Ok(BucketWindow { head, counts })
    }
}

/// The bucket number of `ms` for buckets of `width_ms` (clamped into `u32`).
pub fn bucket_of(ms: i64, width_ms: i64) -> u32 {
    ms.div_euclid(width_ms.max(1)).clamp(0, i64::from(u32::MAX)) as u32
}

impl<const N: usize, C: Count> BucketWindow<N, C> {
    fn roll(&mut self, bucket: u32) {
        if bucket <= self.head {
            return;
        }
        let gap = (bucket - self.head) as usize;
        if gap >= N {
            self.counts = [C::default(); N];
        } else {
            for b in (self.head + 1)..=bucket {
                self.counts[b as usize % N] = C::default();
            }
        }
        self.head = bucket;
    }

    /// Adds `n` events in `bucket`.
    pub fn add(&mut self, bucket: u32, n: u16) {
        self.roll(bucket);
        if self.head - bucket < N as u32 {
            let c = &mut self.counts[bucket as usize % N];
            *c = c.sat_add(n);
        }
    }

    /// Events in the window that ends with `bucket`.
    pub fn sum(&self, bucket: u32) -> u32 {
        if bucket >= self.head + N as u32 {
            return 0;
        }
        let mut total = 0u32;
        for b in self.head.saturating_sub(N as u32 - 1)..=self.head {
            if bucket >= b && bucket - b < N as u32 {
                total += self.counts[b as usize % N].into();
            }
        }
        total
    }
}

/// A 128-bit linear-counting sketch: how many distinct hashes were
/// inserted, near-exact up to a few dozen and usable to about 400. Sixteen
/// bytes instead of a set of strings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distinct128([u64; 2]);

impl Distinct128 {
    /// An empty sketch (usable in constants).
    pub const EMPTY: Distinct128 = Distinct128([0; 2]);

    fn slot(hash: u64) -> (usize, u64) {
        let b = crate::event::mix64(hash) >> 57;
        ((b >> 6) as usize, 1u64 << (b & 63))
    }

    /// Inserts a hash; true when it set a new bit (most likely a new value).
    pub fn insert(&mut self, hash: u64) -> bool {
        let (w, bit) = Self::slot(hash);
        let new = self.0[w] & bit == 0;
        self.0[w] |= bit;
        new
    }

    /// Whether the hash's bit is set (it was probably inserted).
    pub fn may_contain(&self, hash: u64) -> bool {
        let (w, bit) = Self::slot(hash);
        self.0[w] & bit != 0
    }

    /// The union of two sketches.
    pub fn union(self, other: Distinct128) -> Distinct128 {
        Distinct128([self.0[0] | other.0[0], self.0[1] | other.0[1]])
    }

    /// Estimated number of distinct values: `-m ln(zeros/m)`, rounded.
    pub fn estimate(&self) -> u32 {
        const M: f64 = 128.0;
        let set = f64::from(self.0[0].count_ones() + self.0[1].count_ones());
        if set >= M {
            // Saturated: report the largest figure the sketch can tell.
            return 621;
        }
        (-M * (1.0 - set / M).ln()).round() as u32
    }
}

/// Distinct values seen over a sliding window: two generations of
/// [`Distinct128`], each covering half the window. The estimate covers
/// between half and all of the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistinctWindow {
    gen: u32,
    cur: Distinct128,
    prev: Distinct128,
}

impl DistinctWindow {
    /// An empty window (usable in constants).
    pub const EMPTY: DistinctWindow = DistinctWindow {
        gen: 0,
        cur: Distinct128::EMPTY,
        prev: Distinct128::EMPTY,
    };

    fn roll(&mut self, gen: u32) {
        if gen == self.gen.wrapping_add(1) {
            self.prev = self.cur;
            self.cur = Distinct128::default();
            self.gen = gen;
        } else if gen > self.gen {
            self.prev = Distinct128::default();
            self.cur = Distinct128::default();
            self.gen = gen;
        }
    }

    /// Inserts `hash` in generation `gen` (= time / half-window); true when
    /// it is new to the window.
    pub fn insert(&mut self, gen: u32, hash: u64) -> bool {
        self.roll(gen);
        let seen = self.prev.may_contain(hash) || self.cur.may_contain(hash);
        self.cur.insert(hash);
        !seen
    }

    /// Distinct values in the window as of generation `gen`.
    pub fn estimate(&self, gen: u32) -> u32 {
        if gen == self.gen {
            self.cur.union(self.prev).estimate()
        } else if gen == self.gen.wrapping_add(1) {
            self.cur.estimate()
        } else if gen < self.gen {
            self.cur.union(self.prev).estimate()
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_window_slides() {
        let mut w: BucketWindow<3> = BucketWindow::default();
        w.add(10, 1);
        w.add(11, 2);
        w.add(12, 3);
        assert_eq!(w.sum(12), 6);
        w.add(13, 4);
        assert_eq!(w.sum(13), 9, "bucket 10 slid out");
        assert_eq!(w.sum(15), 4, "only bucket 13 is within 13..=15");
        w.add(20, 1);
        assert_eq!(w.sum(20), 1);
        let mut small: BucketWindow<2, u8> = BucketWindow::default();
        small.add(1, 300);
        assert_eq!(small.sum(1), 255, "u8 counters saturate");
    }

    #[test]
    fn late_events_count_in_their_bucket_while_inside_the_window() {
        let mut w: BucketWindow<3> = BucketWindow::default();
        w.add(10, 1);
        w.add(9, 1);
        w.add(7, 5); // outside the window ending at 10
        assert_eq!(w.sum(10), 2);
    }

    #[test]
    fn linear_counting_is_close_for_small_sets() {
        let mut d = Distinct128::default();
        for i in 0..10u64 {
            d.insert(crate::event::stable_hash(&i.to_le_bytes()));
        }
        let e = d.estimate();
        assert!((8..=12).contains(&e), "{e}");
        let mut d = Distinct128::default();
        for _ in 0..100 {
            d.insert(42);
        }
        assert_eq!(d.estimate(), 1);
    }

    #[test]
    fn distinct_window_forgets_old_generations() {
        let mut w = DistinctWindow::default();
        // Five values whose sketch bits do not collide.
        let vals = [b"a", b"b", b"c", b"d", b"e"].map(|v| crate::event::stable_hash(v));
        for v in vals {
            w.insert(1, v);
        }
        assert_eq!(w.estimate(1), 5);
        assert!(!w.insert(2, vals[0]), "still in the window");
        assert_eq!(w.estimate(2), 5);
        assert_eq!(w.estimate(3), 1, "generation 1 slid out");
        assert_eq!(w.estimate(9), 0);
    }
}
