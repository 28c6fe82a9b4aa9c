//! A change to an incident: the unit the store writes atomically.
//!
//! The [`IncidentManager`](crate::IncidentManager) decides *what* changed; the
//! [`IncidentStore`](crate::IncidentStore) writes the new state of the
//! incident, its timeline entry (and, later, its outbox rows) in one
//! transaction. Keeping the decision in a plain value lets both sides be
//! tested on their own and lets the binary print or route it.

use crate::incident::{Incident, IncidentStatus};
use gatewatch_detector::Severity;
use serde::Serialize;
use serde_json::json;

/// What happened to an incident, as the timeline and the notifiers see it.
///
/// Every change bumps [`Incident::revision`] by exactly one, except
/// [`ChangeKind::Created`], which writes revision 0; the store relies on that
/// to detect concurrent writers (compare-and-set on the previous revision).
/// New lifecycle transitions (reopening a resolved incident, an analyst
/// acknowledging one) are new variants here and need no new store code: the
/// store always writes the whole incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChangeKind {
    /// A finding opened a new incident.
    Created,
    /// A finding extended an incident (more events, later last_seen, new
    /// evidence) without raising its severity.
    Updated,
    /// A finding raised the incident's severity; notifiers page again on this.
    Escalated {
        /// The severity before the change.
        from: Severity,
    },
    /// Someone (an analyst, later an automatic rule) moved the incident to
    /// another status.
    StatusChanged {
        /// The status before the change.
        from: IncidentStatus,
    },
    /// Someone took the incident, handed it over or released it
    /// ([`Incident::assignee`] changed). The previous assignee is in the
    /// timeline entry's `details.from`.
    Assigned,
}

impl ChangeKind {
    /// The `action` written to `incident_timeline`.
    pub fn action(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Escalated { .. } => "escalated",
            ChangeKind::StatusChanged { .. } => "status_changed",
            ChangeKind::Assigned => "assigned",
        }
    }

    /// Whether this change inserts the incident rather than updating it.
    pub fn is_creation(self) -> bool {
        matches!(self, ChangeKind::Created)
    }
}

/// An incident in its new state together with what made it so.
///
/// This is what [`IncidentManager::apply`](crate::IncidentManager::apply)
/// returns and what [`IncidentStore::record_change`](crate::IncidentStore::record_change)
/// writes; the binary prints `incident` as JSON for every change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IncidentChange {
    /// The incident after the change (revision already bumped).
    pub incident: Incident,
    /// What kind of change it was.
    pub change: ChangeKind,
    /// Who made it: `detector:<name>` for findings, later `user:<login>` for
    /// analysts. Written to the timeline.
    pub actor: String,
}

impl IncidentChange {
    /// The revision the incident must have in the store for this change to
    /// apply: `None` for a creation (the incident must not exist yet).
    ///
    /// A non-creation at revision 0 has no valid predecessor; it yields
    /// `Some(u32::MAX)`, which never matches, so the store reports a conflict
    /// instead of overwriting.
    pub fn expected_revision(&self) -> Option<u32> {
        if self.change.is_creation() {
            None
        } else {
            Some(self.incident.revision.checked_sub(1).unwrap_or(u32::MAX))
        }
    }

    /// The `details` of the timeline entry: enough to read the history of an
    /// incident without the incident's later state.
    pub fn timeline_details(&self) -> serde_json::Value {
        let i = &self.incident;
        let mut details = json!({
            "severity": i.severity,
            "status": i.status,
            "events": i.events,
            "first_seen": i.first_seen,
            "last_seen": i.last_seen,
        });
        match self.change {
            ChangeKind::Escalated { from } => details["from"] = json!(from),
            ChangeKind::StatusChanged { from } => details["from"] = json!(from),
            ChangeKind::Assigned => details["assignee"] = json!(i.assignee),
            ChangeKind::Created | ChangeKind::Updated => {}
        }
        details
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::{merge, open};
    use crate::testing::finding;
    use gatewatch_detector::IncidentKind;

    #[test]
    fn a_change_serialises_with_a_typed_kind() {
        let created = open(&finding(IncidentKind::TrafficSpike, "192.0.2.1", 0, 1000));
        let mut f = finding(IncidentKind::TrafficSpike, "192.0.2.1", 0, 2000);
        f.severity = Severity::High;
        let escalated = merge(&created.incident, &f).unwrap();
        let v = serde_json::to_value(&escalated).unwrap();
        assert_eq!(v["change"], json!({"type": "escalated", "from": "medium"}));
        assert_eq!(v["actor"], "detector:test");
        assert_eq!(v["incident"]["revision"], 1);
        assert_eq!(escalated.expected_revision(), Some(0));
        assert_eq!(created.expected_revision(), None);
        assert_eq!(escalated.timeline_details()["from"], "medium");
    }
}
