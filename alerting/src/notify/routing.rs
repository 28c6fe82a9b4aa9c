//! Which channels hear about which changes.
//!
//! A change is announced only when it is an [`NotifyEvent`] (opened,
//! escalated, reopened, acknowledged, resolved: never a plain update), the
//! channel's route wants that event, the incident's kind is among the
//! route's kinds (all when empty), and its severity *after* the change is at
//! least the route's minimum (so an escalation across the threshold is
//! announced, as the first message about that incident on the channel).

use super::config::NotificationsConfig;
use crate::change::IncidentChange;
use crate::outbox::{IncidentPayload, NewDelivery, NotifyEvent, RateLimit};
use gatewatch_detector::{IncidentKind, Severity};
use std::collections::BTreeSet;

/// The routing of every configured channel, built once from the config and
/// shared (`Arc`) by the manager and the lifecycle.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Routing {
    channels: Vec<ChannelRoute>,
}

/// One channel's routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRoute {
    /// The channel's name.
    pub name: String,
    /// Kinds wanted; empty means all.
    pub kinds: Vec<IncidentKind>,
    /// Lowest severity wanted.
    pub min_severity: Severity,
    /// Events wanted.
    pub events: BTreeSet<NotifyEvent>,
    /// Flood control.
    pub rate_limit: Option<RateLimit>,
    /// Attempts before dead-lettering.
    pub max_attempts: u32,
}

impl Routing {
    /// The routing of `config`'s channels.
    pub fn from_config(config: &NotificationsConfig) -> Self {
        Routing {
            channels: config
                .channels
                .iter()
                .map(|c| ChannelRoute {
                    name: c.name().to_owned(),
                    kinds: c.route().kinds.clone(),
                    min_severity: c.route().min_severity,
                    events: c.route().events(),
                    rate_limit: c.rate_limit().rate_limit(),
                    max_attempts: config.retry.max_attempts,
                })
                .collect(),
        }
    }

    /// Routing for explicit channel routes (tests, embedding).
    pub fn new(channels: Vec<ChannelRoute>) -> Self {
        Routing { channels }
    }

    /// The channels.
    pub fn channels(&self) -> &[ChannelRoute] {
        &self.channels
    }

    /// Whether no channel is configured.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The notifications `change` causes, one per interested channel.
    pub fn deliveries(&self, change: &IncidentChange, note: Option<&str>) -> Vec<NewDelivery> {
        let Some(event) = NotifyEvent::of(change) else {
            return Vec::new();
        };
        let i = &change.incident;
        let mut payload = None;
        self.channels
            .iter()
            .filter(|c| {
                c.events.contains(&event)
                    && i.severity >= c.min_severity
                    && (c.kinds.is_empty() || c.kinds.contains(&i.kind))
            })
            .map(|c| NewDelivery {
                channel: c.name.clone(),
                event,
                payload: payload
                    .get_or_insert_with(|| {
                        serde_json::to_value(IncidentPayload::of(change, note))
                            .unwrap_or(serde_json::Value::Null)
                    })
                    .clone(),
                max_attempts: c.max_attempts,
                rate_limit: c.rate_limit,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::ChangeKind;
    use crate::incident::IncidentStatus;
    use crate::manager::open;
    use crate::testing::finding;

    fn route(name: &str, min: Severity, events: &[NotifyEvent]) -> ChannelRoute {
        ChannelRoute {
            name: name.into(),
            kinds: Vec::new(),
            min_severity: min,
            events: events.iter().copied().collect(),
            rate_limit: None,
            max_attempts: 3,
        }
    }

    #[test]
    fn routes_by_event_severity_and_kind() {
        let mut kinds_only = route("spikes", Severity::Low, &[NotifyEvent::Opened]);
        kinds_only.kinds = vec![IncidentKind::TrafficSpike];
        let routing = Routing::new(vec![
            route("all", Severity::Low, &NotifyEvent::ALL),
            route(
                "high",
                Severity::High,
                &[NotifyEvent::Opened, NotifyEvent::Escalated],
            ),
            kinds_only,
        ]);
        let created = open(&finding(
            IncidentKind::CredentialStuffing,
            "192.0.2.1",
            0,
            1,
        ));
        let names = |c: &IncidentChange| {
            routing
                .deliveries(c, None)
                .into_iter()
                .map(|d| d.channel)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&created), ["all"], "medium: not for `high`");
        let mut escalated = created.clone();
        escalated.incident.severity = Severity::High;
        escalated.incident.revision = 1;
        escalated.change = ChangeKind::Escalated {
            from: Severity::Medium,
        };
        assert_eq!(names(&escalated), ["all", "high"]);
        let mut updated = escalated.clone();
        updated.change = ChangeKind::Updated;
        assert!(names(&updated).is_empty(), "plain updates never notify");
        let mut resolved = escalated.clone();
        resolved.incident.status = IncidentStatus::Resolved;
        resolved.change = ChangeKind::StatusChanged {
            from: IncidentStatus::Open,
        };
        assert_eq!(names(&resolved), ["all"]);
        let spike = open(&finding(IncidentKind::TrafficSpike, "192.0.2.1", 0, 1));
        assert_eq!(names(&spike), ["all", "spikes"]);
        let d = &routing.deliveries(&spike, Some("why"))[0];
        assert_eq!(d.payload["note"], "why");
        assert_eq!(d.payload["change"]["type"], "created");
        assert_eq!(d.event, NotifyEvent::Opened);
    }
}
