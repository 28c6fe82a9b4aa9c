//! What recently seen request paths were classified as, so that a busy
//! path is matched against the route regex and the fragment automaton once
//! rather than on every request.
//!
//! Request paths repeat heavily (on the benchmark logs the 64 commonest
//! paths are 87 % of requests) and the path-only part of classifying —
//! static asset, fragments, id segment, login or health route — was about
//! two thirds of it. The cache is direct-mapped, [`SLOTS`] entries of paths
//! up to [`MAX_PATH`] bytes, each compared in full on a hit: a hit returns
//! exactly what classifying the path again would, so results never depend
//! on what the cache holds. Each slot's buffer is allocated once, at its
//! full size, and reused.

use super::PathClass;

/// Entries; a power of two.
const SLOTS: usize = 256;
/// Longer paths are classified every time (and never kept), which bounds
/// the cache at `SLOTS * MAX_PATH` bytes of text.
pub(super) const MAX_PATH: usize = 128;

/// One kept path and its class.
struct Slot {
    path: String,
    class: PathClass,
}

/// A bounded, direct-mapped map from a path to its [`PathClass`].
#[derive(Default)]
pub(super) struct PathCache {
    /// Empty until the first path is kept.
    slots: Vec<Option<Slot>>,
}

impl Clone for PathCache {
    /// A fresh, empty cache: each thread's clone of a classifier fills its
    /// own.
    fn clone(&self) -> Self {
        PathCache::default()
    }
}

impl PathCache {
    /// The class kept for `path`, or `classify(path)` (kept for next time).
    #[inline]
    pub(super) fn get_or_classify(
        &mut self,
        path: &str,
        classify: impl FnOnce(&str) -> PathClass,
    ) -> PathClass {
        if path.len() > MAX_PATH {
            return classify(path);
        }
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, || None);
        }
        let slot = &mut self.slots[path_hash(path.as_bytes()) as usize % SLOTS];
        match slot {
            Some(s) if s.path == path => s.class,
            Some(s) => {
                s.class = classify(path);
                s.path.clear();
                s.path.push_str(path);
                s.class
            }
            None => {
                let class = classify(path);
                // Room for any path kept, so a slot never reallocates.
                let mut kept = String::with_capacity(MAX_PATH);
                kept.push_str(path);
                *slot = Some(Slot { path: kept, class });
                class
            }
        }
    }

    #[cfg(test)]
    pub(super) fn kept(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

/// A multiply–rotate hash over 8-byte words; collisions only cost a miss.
fn path_hash(b: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let (words, tail) = b.as_chunks::<8>();
    let mut h = b.len() as u64;
    for w in words {
        h = (h ^ u64::from_le_bytes(*w)).wrapping_mul(K).rotate_left(31);
    }
    for &t in tail {
        h = (h ^ u64::from(t)).wrapping_mul(K).rotate_left(31);
    }
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::RequestClass;

    fn class(route: u32) -> PathClass {
        PathClass {
            class: RequestClass::NONE,
            route: Some(route),
        }
    }

    #[test]
    fn hits_need_the_same_path_and_stay_bounded() {
        let mut cache = PathCache::default();
        let mut calls = 0;
        let mut get = |cache: &mut PathCache, p: &str| {
            cache.get_or_classify(p, |p| {
                calls += 1;
                class(p.len() as u32)
            })
        };
        assert_eq!(get(&mut cache, "/login").route, Some(6));
        assert_eq!(get(&mut cache, "/login").route, Some(6));
        assert_eq!(get(&mut cache, "/logi").route, Some(5));
        for k in 0..10_000 {
            get(&mut cache, &format!("/api/orders/{k}"));
        }
        let long = format!("/{}", "a".repeat(MAX_PATH));
        get(&mut cache, &long);
        get(&mut cache, &long);
        assert_eq!(calls, 2 + 10_000 + 2);
        assert!(cache.kept() <= SLOTS);
        assert!(cache.clone().kept() == 0);
    }
}
