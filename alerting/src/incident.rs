//! The incident: one attack, as analysts see and work it.

use gatewatch_detector::{EventTime, IncidentKind, Severity};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where an incident is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    /// New, nobody has looked yet.
    #[default]
    Open,
    /// An analyst has seen it.
    Acknowledged,
    /// Over (by hand or after a quiet period).
    Resolved,
    /// Resolved once, then the same attack came back.
    Reopened,
}

impl IncidentStatus {
    /// The snake_case name used in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Acknowledged => "acknowledged",
            IncidentStatus::Resolved => "resolved",
            IncidentStatus::Reopened => "reopened",
        }
    }

    /// The inverse of [`IncidentStatus::as_str`].
    pub fn parse(s: &str) -> Option<IncidentStatus> {
        [
            IncidentStatus::Open,
            IncidentStatus::Acknowledged,
            IncidentStatus::Resolved,
            IncidentStatus::Reopened,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One attack: what `replay` prints, what the store keeps, what the API serves.
///
/// The JSON form of this struct is gatewatch's incident format (one object per
/// line on `replay`'s stdout); fields are only ever added to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable id: a UUIDv5 of the fingerprint, so every replay and every
    /// instance names the same attack the same way.
    pub id: Uuid,
    /// `kind:client:first_seen` of the episode that opened the incident.
    pub fingerprint: String,
    /// The attack class.
    pub kind: IncidentKind,
    /// The specific pattern (`brute_force`, `sensitive_files`, …).
    pub technique: String,
    /// What the incident is about, usually the client address.
    pub client: String,
    /// Client addresses involved, most active first.
    pub sources: Vec<String>,
    /// Event time of the first event of the attack.
    pub first_seen: EventTime,
    /// Event time of the latest event of the attack.
    pub last_seen: EventTime,
    /// Event time of the event that raised the incident.
    pub detected_at: EventTime,
    /// Current severity (only ever rises while the incident is open).
    pub severity: Severity,
    /// Lifecycle state.
    pub status: IncidentStatus,
    /// One sentence a human understands.
    pub summary: String,
    /// Counts, baseline against observed, samples.
    pub evidence: serde_json::Value,
    /// Events that make up the attack so far.
    pub events: u64,
    /// How many times the incident has been updated since it was raised.
    pub revision: u32,
    /// Who is working the incident (a login), when someone is. Set through
    /// [`lifecycle::assign`](crate::lifecycle::assign); absent from the JSON
    /// when unset, so `replay`'s output keeps its shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
}
