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

/// Emission bookkeeping for one episode (24 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

#[cfg(test)]
mod tests {
    use super::*;

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
