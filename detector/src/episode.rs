//! When a detector speaks: the emission policy shared by every detector, and
//! the bounded evidence samples it shows.
//!
//! An *episode* is one attack by one key, from its first suspicious event
//! until the key goes quiet. A finding is emitted when the episode is first
//! recognised and again only when it has grown materially: its event count
//! doubled, its severity rose, or a new technique appeared. Every finding
//! carries the cumulative picture, so the incident built from the latest one
//! is complete and a replay is harmless.

use crate::finding::Severity;
use crate::time::EventTime;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Emission bookkeeping for one episode (24 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    /// Event time of the episode's first event.
    pub start: EventTime,
    /// Events counted in the episode (saturating).
    pub events: u32,
    /// `events` when the last finding was emitted (0 = never emitted).
    pub emitted_events: u32,
    /// Techniques (detector-defined bits) reported so far.
    pub emitted_techniques: u8,
    /// Severity of the last finding, as `1 + Severity as u8` (0 = none).
    emitted_severity: u8,
}

impl Episode {
    /// A new episode starting at `start`.
    pub fn starting(start: EventTime) -> Episode {
        Episode {
            start,
            ..Episode::default()
        }
    }

    /// Whether a finding has been emitted for this episode.
    pub fn emitted(&self) -> bool {
        self.emitted_severity != 0
    }

    /// The severity last emitted.
    pub fn emitted_severity(&self) -> Option<Severity> {
        match self.emitted_severity {
            0 => None,
            s => Severity::ALL.get(usize::from(s - 1)).copied(),
        }
    }

    /// Whether a finding with `severity` and `techniques` is news: the first
    /// one, or events doubled, severity rose, or a technique is new.
    pub fn is_news(&self, severity: Severity, techniques: u8) -> bool {
        match self.emitted_severity() {
            None => true,
            Some(prev) => {
                severity > prev
                    || techniques & !self.emitted_techniques != 0
                    || u64::from(self.events) >= 2 * u64::from(self.emitted_events)
            }
        }
    }

    /// Records that a finding was emitted now.
    pub fn mark_emitted(&mut self, severity: Severity, techniques: u8) {
        self.emitted_events = self.events.max(1);
        self.emitted_techniques |= techniques;
        let s = severity as u8 + 1;
        if s > self.emitted_severity {
            self.emitted_severity = s;
        }
    }
}

/// Up to `N` distinct short strings kept as evidence (paths, usernames,
/// statuses). Allocated only for keys that already look suspicious, so
/// ordinary traffic never pays for it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Samples<const N: usize> {
    items: Vec<String>,
}

/// Longest sample kept, in bytes (longer ones are cut at a char boundary).
pub const SAMPLE_MAX_LEN: usize = 96;

impl<const N: usize> Samples<N> {
    /// Keeps `s` if there is room and it is not already kept.
    pub fn offer(&mut self, s: &str) {
        if self.items.len() >= N {
            return;
        }
        let mut end = s.len().min(SAMPLE_MAX_LEN);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let s = &s[..end];
        if self.items.iter().any(|x| x == s) {
            return;
        }
        if self.items.capacity() == 0 {
            self.items.reserve_exact(N);
        }
        self.items.push(s.to_owned());
    }

    /// Whether no more samples will be kept.
    pub fn is_full(&self) -> bool {
        self.items.len() >= N
    }

    /// The samples kept, oldest first.
    pub fn items(&self) -> &[String] {
        &self.items
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<String>()
            + self.items.iter().map(String::capacity).sum::<usize>()
    }
}

/// The heaviest recent sources behind a many-source attack, in `N` slots
/// (the space-saving algorithm: a newcomer takes the lightest slot and
/// inherits its count as possible error, so any source with more than
/// 1/`N` of the weight is always kept, whatever the number of sources).
/// Counts halve as time passes ([`decay`](Self::decay)), so an old
/// attack's sources give way to the current one's. Allocated on the first
/// failure a key sees.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeavySources<const N: usize> {
    slots: Vec<HeavySlot>,
}

/// One kept source: its estimated count, and how much of it may have been
/// inherited from the source it displaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct HeavySlot {
    ip: IpAddr,
    count: u32,
    error: u32,
}

impl<const N: usize> HeavySources<N> {
    /// Counts one event from `ip`.
    pub fn offer(&mut self, ip: IpAddr) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.ip == ip) {
            slot.count = slot.count.saturating_add(1);
            return;
        }
        if self.slots.len() < N {
            if self.slots.capacity() == 0 {
                self.slots.reserve_exact(N);
            }
            self.slots.push(HeavySlot {
                ip,
                count: 1,
                error: 0,
            });
            return;
        }
        // The first lightest slot: ties go the same way on every replay.
        if let Some(lightest) = self.slots.iter_mut().min_by_key(|s| s.count) {
            *lightest = HeavySlot {
                ip,
                count: lightest.count.saturating_add(1),
                error: lightest.count,
            };
        }
    }

    /// Halves every count once per elapsed period (`periods` of them),
    /// forgetting sources whose count reaches zero.
    pub fn decay(&mut self, periods: u32) {
        if periods == 0 {
            return;
        }
        for slot in &mut self.slots {
            slot.count = slot.count.checked_shr(periods).unwrap_or(0);
            slot.error = slot.error.checked_shr(periods).unwrap_or(0);
        }
        self.slots.retain(|s| s.count > 0);
    }

    /// Up to `n` sources with the (decayed) count each certainly has — its
    /// estimate minus what it may have inherited —, largest first (ties:
    /// larger estimate, then slot order). Sources with nothing certain are
    /// left out: when no source stands out, what remains are the latest.
    pub fn top(&self, n: usize) -> Vec<(IpAddr, u32)> {
        let mut ranked: Vec<(IpAddr, u32, u32)> = self
            .slots
            .iter()
            .map(|s| (s.ip, s.count - s.error, s.count))
            .filter(|&(_, certain, _)| certain > 0)
            .collect();
        ranked.sort_by_key(|&(_, certain, count)| std::cmp::Reverse((certain, count)));
        ranked
            .into_iter()
            .take(n)
            .map(|(ip, certain, _)| (ip, certain))
            .collect()
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<HeavySlot>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    /// 300 one-shot sources with two heavy ones interleaved (20 % and
    /// 13 % of the events, each above the 1/8 that 8 slots guarantee).
    fn botnet() -> HeavySources<8> {
        let mut h = HeavySources::<8>::default();
        for round in 0..300u32 {
            h.offer(IpAddr::from([198, 51, (round >> 8) as u8, round as u8]));
            if round % 10 < 3 {
                h.offer(ip(1));
            }
            if round % 10 < 2 {
                h.offer(ip(2));
            }
        }
        h
    }

    #[test]
    fn heavy_sources_keep_the_heaviest_among_many() {
        let h = botnet();
        let top = h.top(2);
        assert_eq!(
            top.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            vec![ip(1), ip(2)]
        );
        // Certain counts never exceed the truth (90 and 60).
        assert!(top[0].1 <= 90 && top[0].1 > 0, "{top:?}");
        assert!(top[1].1 <= 60 && top[1].1 > 0, "{top:?}");
        assert!(h.top(20).len() <= 8);
        // The same events give the same answer (replays are identical).
        assert_eq!(h, botnet());
    }

    #[test]
    fn heavy_sources_decay_so_the_current_attack_ranks_first() {
        let mut h = HeavySources::<4>::default();
        for _ in 0..40 {
            h.offer(ip(1));
        }
        h.decay(3);
        assert_eq!(h.top(1), vec![(ip(1), 5)]);
        for _ in 0..8 {
            h.offer(ip(2));
        }
        assert_eq!(h.top(2), vec![(ip(2), 8), (ip(1), 5)]);
        h.decay(40);
        assert!(h.top(4).is_empty());
    }

    #[test]
    fn emits_first_then_on_doubling_escalation_or_new_technique() {
        let mut e = Episode::starting(EventTime::from_secs(0));
        e.events = 10;
        assert!(e.is_news(Severity::Medium, 1));
        e.mark_emitted(Severity::Medium, 1);
        e.events = 19;
        assert!(!e.is_news(Severity::Medium, 1));
        assert!(!e.is_news(Severity::Low, 1));
        assert!(e.is_news(Severity::High, 1));
        assert!(e.is_news(Severity::Medium, 2));
        e.events = 20;
        assert!(e.is_news(Severity::Medium, 1));
        assert_eq!(e.emitted_severity(), Some(Severity::Medium));
    }

    #[test]
    fn samples_are_bounded_distinct_and_cut() {
        let mut s: Samples<3> = Samples::default();
        for p in ["/a", "/b", "/a", "/c", "/d"] {
            s.offer(p);
        }
        assert_eq!(s.items(), ["/a", "/b", "/c"]);
        let mut s: Samples<1> = Samples::default();
        s.offer(&"é".repeat(100));
        assert!(s.items()[0].len() <= SAMPLE_MAX_LEN);
    }
}
