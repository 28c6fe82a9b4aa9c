//! Per-minute event counts of the clients detectors have found something
//! about, for the incident page's traffic chart.
//!
//! Counting every client's every minute would cost a table row per client
//! per minute; only clients with a finding are watched (from their first
//! finding on, at most `capacity` of them), which is what an analyst looks
//! at. The detection stage owns this; the incident stage writes the counts.

use gatewatch_detector::{ClientKey, Event, EventTime, Finding};
use std::collections::HashMap;
use std::net::IpAddr;

/// One client's count in its current minute.
struct Watched {
    /// The client as incidents name it.
    client: String,
    /// Start of the current minute (ms).
    minute: i64,
    /// Events so far in that minute.
    count: u64,
    /// Counted since the last flush.
    dirty: bool,
}

/// The watched clients and the counts waiting to be written.
pub struct ActivityTracker {
    watched: HashMap<ClientKey, Watched>,
    capacity: usize,
    ipv6_prefix: u8,
    pending: Vec<(String, EventTime, u64)>,
}

impl ActivityTracker {
    /// Watches at most `capacity` clients, keying IPv6 by `ipv6_prefix`
    /// bits as the detectors do.
    pub fn new(capacity: usize, ipv6_prefix: u8) -> ActivityTracker {
        ActivityTracker {
            watched: HashMap::new(),
            capacity,
            ipv6_prefix,
            pending: Vec::new(),
        }
    }

    /// Counts one event (one map lookup, and none while nobody is watched).
    pub fn observe(&mut self, ev: &Event<'_>) {
        if self.watched.is_empty() {
            return;
        }
        let key = match ev.identity.as_deref() {
            Some(id) if self.watched.contains_key(&ClientKey::for_identity(id)) => {
                ClientKey::for_identity(id)
            }
            _ => ClientKey::for_ip(ev.ip, self.ipv6_prefix),
        };
        let Some(w) = self.watched.get_mut(&key) else {
            return;
        };
        let minute = ev.ts.millis().div_euclid(60_000) * 60_000;
        if minute > w.minute {
            if w.count > 0 {
                self.pending
                    .push((w.client.clone(), EventTime::from_millis(w.minute), w.count));
            }
            w.minute = minute;
            w.count = 0;
        }
        // A late event of an earlier minute counts in the current one.
        w.count += 1;
        w.dirty = true;
    }

    /// Starts watching the clients of new findings.
    pub fn watch(&mut self, findings: &[Finding]) {
        for f in findings {
            if self.watched.len() >= self.capacity {
                return;
            }
            let Some(key) = self.key_of(&f.key) else {
                continue;
            };
            self.watched.entry(key).or_insert_with(|| Watched {
                client: f.key.clone(),
                minute: f.detected_at.millis().div_euclid(60_000) * 60_000,
                count: 0,
                dirty: false,
            });
        }
    }

    /// The counts to write: finished minutes, and the running count of each
    /// current minute that changed (the store keeps the larger value, so
    /// writing a running count again is harmless).
    pub fn flush(&mut self) -> Vec<(String, EventTime, u64)> {
        for w in self.watched.values_mut().filter(|w| w.dirty) {
            w.dirty = false;
            self.pending
                .push((w.client.clone(), EventTime::from_millis(w.minute), w.count));
        }
        std::mem::take(&mut self.pending)
    }

    /// The client key a finding's display key stands for (`None` for
    /// targets of distributed attacks, which are not one client).
    fn key_of(&self, display: &str) -> Option<ClientKey> {
        if let Some(id) = display.strip_prefix("identity:") {
            return Some(ClientKey::for_identity(id));
        }
        let addr = display.split('/').next()?;
        addr.parse::<IpAddr>()
            .ok()
            .map(|ip| ClientKey::for_ip(ip, self.ipv6_prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatewatch_detector::{IncidentKind, Severity};

    fn finding(key: &str, at_ms: i64) -> Finding {
        Finding {
            kind: IncidentKind::TrafficSpike,
            technique: "rate_spike",
            detector: "traffic_spike",
            key: key.into(),
            sources: vec![],
            first_seen: EventTime::from_millis(at_ms),
            last_seen: EventTime::from_millis(at_ms),
            detected_at: EventTime::from_millis(at_ms),
            severity: Severity::High,
            score: 1.0,
            events: 1,
            summary: String::new(),
            evidence: serde_json::json!({}),
        }
    }

    #[test]
    fn counts_watched_clients_per_minute_only() {
        let mut t = ActivityTracker::new(10, 64);
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        t.observe(&Event::new(EventTime::from_millis(0), ip));
        t.watch(&[finding("203.0.113.9", 0), finding("target:/login", 0)]);
        for ms in [1_000, 2_000, 61_000] {
            t.observe(&Event::new(EventTime::from_millis(ms), ip));
            t.observe(&Event::new(EventTime::from_millis(ms), other));
        }
        let got = t.flush();
        assert_eq!(
            got,
            vec![
                ("203.0.113.9".to_string(), EventTime::from_millis(0), 2),
                ("203.0.113.9".to_string(), EventTime::from_millis(60_000), 1),
            ]
        );
        assert!(t.flush().is_empty(), "nothing changed since");
    }

    #[test]
    fn ipv6_networks_and_capacity() {
        let mut t = ActivityTracker::new(1, 64);
        t.watch(&[finding("2001:db8::/64", 0), finding("203.0.113.9", 0)]);
        t.observe(&Event::new(
            EventTime::from_millis(5),
            "2001:db8::7".parse().unwrap(),
        ));
        t.observe(&Event::new(
            EventTime::from_millis(5),
            "203.0.113.9".parse().unwrap(),
        ));
        assert_eq!(
            t.flush(),
            vec![("2001:db8::/64".to_string(), EventTime::from_millis(0), 1)]
        );
    }
}
