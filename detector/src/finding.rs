//! What a detector concludes, before it becomes an incident.

use crate::time::EventTime;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// The class of attack an incident is about. Closed on purpose: notification
/// routing, suppression rules and the API filter on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// A client far above its own learned baseline.
    TrafficSpike,
    /// Brute force, password spraying, distributed or low-and-slow login abuse.
    CredentialStuffing,
    /// Admin-route probing, walking other users' objects, sensitive-file scans.
    PrivilegeProbing,
}

impl IncidentKind {
    /// Every kind, in display order.
    pub const ALL: [IncidentKind; 3] = [
        IncidentKind::TrafficSpike,
        IncidentKind::CredentialStuffing,
        IncidentKind::PrivilegeProbing,
    ];

    /// The snake_case name used in JSON, config and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::TrafficSpike => "traffic_spike",
            IncidentKind::CredentialStuffing => "credential_stuffing",
            IncidentKind::PrivilegeProbing => "privilege_probing",
        }
    }

    /// The inverse of [`IncidentKind::as_str`].
    pub fn parse(s: &str) -> Option<IncidentKind> {
        IncidentKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for IncidentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent an incident is. Ordered, so severities can be compared and
/// escalation detected with `>`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look when there is time.
    #[default]
    Low,
    /// Likely hostile; look today.
    Medium,
    /// Hostile and sustained or large; look now.
    High,
    /// Likely compromise (e.g. a login succeeded after a stuffing run).
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The snake_case name used in JSON, config and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The inverse of [`Severity::as_str`].
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A detector's verdict about one client (or one target, for distributed
/// attacks) at one moment of event time.
///
/// A detector emits a finding when an attack is first recognised and again
/// when it has grown materially (more events, a higher severity), each time
/// with the cumulative picture of the episode so far, so that the incident
/// built from the latest finding is always complete and replaying findings
/// is harmless.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The attack class.
    pub kind: IncidentKind,
    /// The specific pattern within the class (`brute_force`, `password_spray`,
    /// `distributed`, `low_and_slow`, `admin_probe`, `object_walk`,
    /// `sensitive_files`, `rate_spike`, …).
    pub technique: &'static str,
    /// Which detector raised it.
    pub detector: &'static str,
    /// What the incident is about, as shown to people: usually the client
    /// address, `2001:db8::/64` for an IPv6 network, `identity:<name>`, or
    /// `target:<host><route>` for an attack spread over many sources.
    pub key: String,
    /// Client addresses involved, most active first (at most a handful).
    pub sources: Vec<IpAddr>,
    /// Event time of the first event of the episode.
    pub first_seen: EventTime,
    /// Event time of the latest event of the episode.
    pub last_seen: EventTime,
    /// Event time of the event that made the detector emit this finding.
    pub detected_at: EventTime,
    /// How urgent it is now.
    pub severity: Severity,
    /// The detector's confidence-like score (e.g. `-log10` of a tail
    /// probability); only comparable within one detector.
    pub score: f64,
    /// Number of events that make up the episode so far.
    pub events: u64,
    /// One sentence a human understands.
    pub summary: String,
    /// Counts, baseline against observed, samples of paths, usernames and
    /// statuses: whatever lets an analyst judge the finding without the logs.
    pub evidence: serde_json::Value,
}
