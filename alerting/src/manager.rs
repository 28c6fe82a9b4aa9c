//! From findings to incidents: naming, merging, deduplication.
//!
//! Detectors speak in *episodes* and forget them (on idle expiry, on a
//! process restart); analysts want one incident per attack. The
//! [`IncidentManager`] bridges the two with a few rules, all in pure
//! functions here ([`continues`], [`merge`], [`open`]) so they are tested
//! without a database:
//!
//! * **Naming.** An incident's fingerprint is `kind:client:first_seen` (RFC
//!   3339) of the episode that opened it, its id the UUIDv5 of that
//!   fingerprint in [`INCIDENT_NAMESPACE`]: every replay and every instance
//!   names the same attack the same way.
//! * **Continuing.** A finding continues an incident of the same kind and
//!   client when their activity lies within `merge_gap` of each other:
//!   `finding.first_seen <= incident.last_seen + gap` (a restarted episode of a
//!   running attack joins it) and `finding.last_seen + gap >= incident.first_seen`
//!   (a finding replayed out of order joins the older incident it belongs to,
//!   not the latest one). Otherwise it opens a new incident.
//! * **Merging.** first_seen = min, last_seen = max, severity = max,
//!   events = max; technique, summary, evidence and sources come from the
//!   newer picture (the finding when its last_seen is at least the
//!   incident's); detected_at stays the one that raised it. The revision
//!   rises only when something changed, so a replayed finding writes nothing.
//! * **Reopening.** A finding merged into a *resolved* incident that brings
//!   activity later than the incident's `last_seen` reopens it (status
//!   `reopened`, a [`ChangeKind::StatusChanged`]); late data about the
//!   resolved past only updates it.
//! * **Muting.** Before any of this, the finding is checked against the
//!   [suppression rules](crate::suppression): a muted finding changes
//!   nothing, notifies nobody, and is counted.
//! * **Notifying.** With [`ManagerConfig::notifications`], the change's
//!   notifications are written in the change's transaction (see
//!   [`crate::outbox`]).
//!
//! Writes are compare-and-set (see [`IncidentStore::record_change`]): when
//! another task or instance changed the incident first, the manager re-reads
//! it and merges again.

use crate::change::{ChangeKind, IncidentChange};
use crate::incident::{Incident, IncidentStatus};
use crate::lifecycle::Watermark;
use crate::notify::Routing;
use crate::outbox::ChangeEffects;
use crate::store::{IncidentStore, Result, StoreError};
use crate::suppression::RuleCache;
use gatewatch_detector::{EventTime, Finding, IncidentKind};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The UUIDv5 namespace of incident ids. Never change it: ids are how the API,
/// notifications and analysts' links refer to incidents, across versions.
pub const INCIDENT_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_4c2e_93b7_5d08_b2e4_7f0c_9d13_a5e6);

/// How often [`IncidentManager::apply`] re-reads and re-merges after a
/// concurrent write before giving up with [`StoreError::Conflict`].
const MAX_ATTEMPTS: usize = 5;

/// Tuning of the [`IncidentManager`]. The binary's config maps onto this;
/// build it with `..ManagerConfig::default()` so new fields keep their
/// defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagerConfig {
    /// How far apart (in event time) two pieces of activity of one client may
    /// be and still count as one attack. Covers a detector forgetting and
    /// restarting its episode mid-attack. Default: 30 minutes.
    pub merge_gap: Duration,
    /// How many `(kind, client)` pairs keep their latest incident in memory;
    /// a miss costs one store read. Default: 10 000.
    pub cache_capacity: usize,
    /// Which channels hear about which changes
    /// ([`Notifications::routing`](crate::notify::Notifications::routing)).
    /// `None` (the default): nothing is enqueued.
    pub notifications: Option<Arc<Routing>>,
    /// How often the suppression rules are re-read from the store (a rule
    /// created through the API applies within this delay). Default: 5 s.
    pub suppression_refresh: Duration,
    /// Advanced with every finding's `last_seen`, for auto-resolve (the
    /// pipeline should advance it with every event too). Default: none.
    pub watermark: Option<Watermark>,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            merge_gap: Duration::from_secs(30 * 60),
            cache_capacity: 10_000,
            notifications: None,
            suppression_refresh: Duration::from_secs(5),
            watermark: None,
        }
    }
}

/// `kind:client:first_seen`, the stable name of an incident.
pub fn fingerprint(kind: IncidentKind, client: &str, first_seen: EventTime) -> String {
    format!("{}:{}:{}", kind.as_str(), client, first_seen.to_rfc3339())
}

/// The incident id for a fingerprint: UUIDv5 in [`INCIDENT_NAMESPACE`].
pub fn incident_id(fingerprint: &str) -> Uuid {
    Uuid::new_v5(&INCIDENT_NAMESPACE, fingerprint.as_bytes())
}

/// Whether `finding` belongs to `incident` (same kind and client, activity
/// within `gap_ms` of each other). See the module docs for why both ends are
/// checked.
pub fn continues(incident: &Incident, finding: &Finding, gap_ms: i64) -> bool {
    incident.kind == finding.kind
        && incident.client == finding.key
        && finding.first_seen <= incident.last_seen.plus_millis(gap_ms)
        && finding.last_seen.plus_millis(gap_ms) >= incident.first_seen
}

fn actor(finding: &Finding) -> String {
    format!("detector:{}", finding.detector)
}

fn sources(finding: &Finding) -> Vec<String> {
    finding.sources.iter().map(ToString::to_string).collect()
}

/// `s` as every store can keep it: NUL, which an attacker can put in a
/// username or header and which PostgreSQL refuses in `text` and `jsonb`,
/// becomes U+FFFD (as invalid UTF-8 already does). Applied to everything an
/// incident takes from a finding, so both stores keep the same incident.
fn storable(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}

/// [`storable`] over every string of a JSON value, keys included.
fn storable_json(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) if s.contains('\0') => Value::String(storable(s)),
        Value::Array(items) => Value::Array(items.iter().map(storable_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (storable(k), storable_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The incident a finding opens (revision 0, status open).
pub fn open(finding: &Finding) -> IncidentChange {
    let client = storable(&finding.key);
    let fingerprint = fingerprint(finding.kind, &client, finding.first_seen);
    IncidentChange {
        incident: Incident {
            id: incident_id(&fingerprint),
            fingerprint,
            kind: finding.kind,
            technique: finding.technique.to_owned(),
            client,
            sources: sources(finding),
            first_seen: finding.first_seen,
            last_seen: finding.last_seen,
            detected_at: finding.detected_at,
            severity: finding.severity,
            status: IncidentStatus::Open,
            summary: storable(&finding.summary),
            evidence: storable_json(&finding.evidence),
            events: finding.events,
            revision: 0,
            assignee: None,
        },
        change: ChangeKind::Created,
        actor: actor(finding),
    }
}

/// Merges `finding` into `incident`; `None` when the finding adds nothing
/// (a replay, or an older picture of the same attack).
pub fn merge(incident: &Incident, finding: &Finding) -> Option<IncidentChange> {
    let mut next = incident.clone();
    next.first_seen = incident.first_seen.min(finding.first_seen);
    next.last_seen = incident.last_seen.max(finding.last_seen);
    next.severity = incident.severity.max(finding.severity);
    next.events = incident.events.max(finding.events);
    if finding.last_seen >= incident.last_seen {
        // Findings are cumulative pictures of their episode: the latest one
        // describes the attack best.
        next.technique = finding.technique.to_owned();
        next.summary = storable(&finding.summary);
        next.evidence = storable_json(&finding.evidence);
        next.sources = sources(finding);
    }
    if next == *incident {
        return None;
    }
    next.revision = incident.revision.saturating_add(1);
    let recurs =
        incident.status == IncidentStatus::Resolved && finding.last_seen > incident.last_seen;
    if recurs {
        next.status = IncidentStatus::Reopened;
    }
    let change = if recurs {
        ChangeKind::StatusChanged {
            from: IncidentStatus::Resolved,
        }
    } else if next.severity > incident.severity {
        ChangeKind::Escalated {
            from: incident.severity,
        }
    } else {
        ChangeKind::Updated
    };
    Some(IncidentChange {
        incident: next,
        change,
        actor: actor(finding),
    })
}

/// What a manager has done since it was made: for telemetry (the binary
/// counts these) and for tests that need to see contention happen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ManagerStats {
    /// Findings that opened an incident.
    pub created: u64,
    /// Findings that updated an incident without escalating it.
    pub updated: u64,
    /// Findings that raised an incident's severity.
    pub escalated: u64,
    /// Findings that changed nothing (replays, older pictures).
    pub unchanged: u64,
    /// Writes refused because another writer got there first (each was
    /// re-read and merged again).
    pub conflicts: u64,
    /// Findings whose incident was found in the cache.
    pub cache_hits: u64,
    /// Findings that reopened a resolved incident.
    pub reopened: u64,
    /// Findings muted by a suppression rule (no change, no notification).
    pub suppressed: u64,
}

/// Turns findings into stored incidents, one attack one incident.
///
/// One manager per writer task: `apply` takes `&mut self` for its cache.
/// Several managers (tasks, instances) may share a database; the store's
/// compare-and-set keeps them consistent, and per-client sharding upstream
/// keeps them from contending in practice.
pub struct IncidentManager {
    store: Arc<dyn IncidentStore>,
    gap_ms: i64,
    cache: LatestCache,
    stats: ManagerStats,
    routing: Option<Arc<Routing>>,
    rules: RuleCache,
    watermark: Option<Watermark>,
}

impl IncidentManager {
    /// A manager writing to `store`. Nothing is read until the first finding.
    pub fn new(store: Arc<dyn IncidentStore>, config: ManagerConfig) -> Self {
        IncidentManager {
            store,
            gap_ms: i64::try_from(config.merge_gap.as_millis()).unwrap_or(i64::MAX),
            cache: LatestCache::new(config.cache_capacity),
            stats: ManagerStats::default(),
            routing: config.notifications,
            rules: RuleCache::new(config.suppression_refresh),
            watermark: config.watermark,
        }
    }

    /// Re-reads the suppression rules at the next finding instead of after
    /// the refresh interval (after creating or deleting one in-process).
    pub fn reload_suppressions(&mut self) {
        self.rules.invalidate();
    }

    /// Counters of what this manager has done.
    pub fn stats(&self) -> ManagerStats {
        self.stats
    }

    /// The store this manager writes to.
    pub fn store(&self) -> &Arc<dyn IncidentStore> {
        &self.store
    }

    /// Applies one finding: opens an incident, updates or escalates the one
    /// it continues, or does nothing (`Ok(None)`) when the finding adds
    /// nothing. On `Ok(Some(_))` the change is durable (incident and timeline
    /// committed together).
    pub async fn apply(&mut self, finding: &Finding) -> Result<Option<IncidentChange>> {
        // Looked up, fingerprinted and stored by its key: clean it first.
        let cleaned;
        let finding = if finding.key.contains('\0') {
            cleaned = Finding {
                key: storable(&finding.key),
                ..finding.clone()
            };
            &cleaned
        } else {
            finding
        };
        if let Some(w) = &self.watermark {
            w.advance(finding.last_seen);
        }
        if let Some(rule) = self.rules.matching(&*self.store, finding).await? {
            crate::suppression::record_hit(&*self.store, rule, chrono::Utc::now()).await?;
            self.stats.suppressed += 1;
            tracing::trace!(rule_id = %rule, kind = %finding.kind, "Finding muted by a suppression rule.");
            return Ok(None);
        }
        let mut last_conflict = None;
        for attempt in 0..MAX_ATTEMPTS {
            let fresh = attempt > 0;
            let change = match self.target(finding, fresh).await? {
                Some(current) => match merge(&current, finding) {
                    Some(change) => change,
                    None => {
                        self.stats.unchanged += 1;
                        return Ok(None);
                    }
                },
                None => open(finding),
            };
            let effects = ChangeEffects {
                deliveries: self
                    .routing
                    .as_ref()
                    .map(|r| r.deliveries(&change, None))
                    .unwrap_or_default(),
                ..ChangeEffects::default()
            };
            match self.store.record_change_with(&change, &effects).await {
                Ok(()) => {
                    self.cache.remember(&change.incident);
                    match change.change {
                        ChangeKind::Created => self.stats.created += 1,
                        ChangeKind::Escalated { .. } => self.stats.escalated += 1,
                        ChangeKind::StatusChanged { .. } => self.stats.reopened += 1,
                        ChangeKind::Updated | ChangeKind::Assigned => self.stats.updated += 1,
                    }
                    log_change(&change);
                    return Ok(Some(change));
                }
                Err(conflict @ StoreError::Conflict { .. }) => {
                    tracing::debug!(
                        incident_id = %change.incident.id,
                        attempt,
                        "Incident changed concurrently, merging again."
                    );
                    self.stats.conflicts += 1;
                    self.cache.forget(finding.kind, &finding.key);
                    last_conflict = Some(conflict);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_conflict.expect("MAX_ATTEMPTS > 0, so a conflict was recorded"))
    }

    /// The incident `finding` continues, if any: the latest incident of its
    /// kind and client (from the cache unless `fresh`), or, for a finding
    /// older than that, the incident it overlaps.
    async fn target(&mut self, finding: &Finding, fresh: bool) -> Result<Option<Incident>> {
        let cached = if fresh {
            None
        } else {
            self.cache.get(finding.kind, &finding.key).cloned()
        };
        let latest = match cached {
            Some(incident) => {
                self.stats.cache_hits += 1;
                Some(incident)
            }
            None => {
                let latest = self.store.latest_for(finding.kind, &finding.key).await?;
                if let Some(incident) = &latest {
                    self.cache.remember(incident);
                }
                latest
            }
        };
        let Some(latest) = latest else {
            return Ok(None);
        };
        if continues(&latest, finding, self.gap_ms) {
            return Ok(Some(latest));
        }
        if finding.last_seen.plus_millis(self.gap_ms) < latest.first_seen {
            // Out of order (a replay, a lagging partition): look for the older
            // incident this finding belongs to.
            return self
                .store
                .latest_overlapping(
                    finding.kind,
                    &finding.key,
                    finding.first_seen.plus_millis(-self.gap_ms),
                    finding.last_seen.plus_millis(self.gap_ms),
                )
                .await;
        }
        Ok(None)
    }
}

/// One line per incident opened or escalated (rare, and what an operator
/// wants to see); plain updates only at trace level.
fn log_change(change: &IncidentChange) {
    let i = &change.incident;
    match change.change {
        ChangeKind::Created => tracing::info!(
            incident_id = %i.id,
            kind = %i.kind,
            severity = %i.severity,
            technique = %i.technique,
            "Incident opened."
        ),
        ChangeKind::Escalated { from } => tracing::info!(
            incident_id = %i.id,
            kind = %i.kind,
            from = %from,
            severity = %i.severity,
            revision = i.revision,
            "Incident escalated."
        ),
        ChangeKind::StatusChanged { from } => tracing::info!(
            incident_id = %i.id,
            kind = %i.kind,
            from = from.as_str(),
            status = i.status.as_str(),
            revision = i.revision,
            "Incident reopened: the attack came back."
        ),
        ChangeKind::Updated | ChangeKind::Assigned => tracing::trace!(
            incident_id = %i.id,
            action = change.change.action(),
            revision = i.revision,
            "Incident updated."
        ),
    }
}

/// `(kind, client)` → latest known incident, bounded.
///
/// When full, the older half (by `last_seen`) is dropped in one go: amortised
/// O(log n) per insertion and no extra dependency. Losing an entry only costs
/// a store read; a stale entry is caught by the store's compare-and-set.
#[derive(Debug)]
struct LatestCache {
    capacity: usize,
    entries: HashMap<(IncidentKind, String), Incident>,
}

impl LatestCache {
    fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        LatestCache {
            capacity,
            entries: HashMap::with_capacity(capacity.min(1024)),
        }
    }

    fn get(&self, kind: IncidentKind, client: &str) -> Option<&Incident> {
        self.entries.get(&(kind, client.to_owned()))
    }

    /// Keeps `incident` if it is at least as recent as what is cached.
    fn remember(&mut self, incident: &Incident) {
        let key = (incident.kind, incident.client.clone());
        if let Some(cached) = self.entries.get_mut(&key) {
            if incident.last_seen >= cached.last_seen || incident.id == cached.id {
                *cached = incident.clone();
            }
            return;
        }
        if self.entries.len() >= self.capacity {
            self.evict_older_half();
        }
        self.entries.insert(key, incident.clone());
    }

    fn forget(&mut self, kind: IncidentKind, client: &str) {
        self.entries.remove(&(kind, client.to_owned()));
    }

    fn evict_older_half(&mut self) {
        let mut seen: Vec<EventTime> = self.entries.values().map(|i| i.last_seen).collect();
        let middle = seen.len() / 2;
        let (_, cutoff, _) = seen.select_nth_unstable(middle);
        let cutoff = *cutoff;
        self.entries.retain(|_, i| i.last_seen > cutoff);
        tracing::debug!(
            kept = self.entries.len(),
            capacity = self.capacity,
            "Incident cache full, dropped its older half."
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::finding;
    use gatewatch_detector::Severity;

    const MIN: i64 = 60_000;
    const GAP: i64 = 30 * MIN;
    const T0: i64 = 1_700_000_000_000;

    fn stuffing(first: i64, last: i64) -> Finding {
        finding(
            IncidentKind::CredentialStuffing,
            "203.0.113.9",
            T0 + first,
            T0 + last,
        )
    }

    #[test]
    fn ids_are_stable_across_runs_and_instances() {
        let f = stuffing(0, 5 * MIN);
        let a = open(&f).incident;
        let b = open(&f.clone()).incident;
        assert_eq!(a.id, b.id);
        assert_eq!(
            a.fingerprint,
            "credential_stuffing:203.0.113.9:2023-11-14T22:13:20.000Z"
        );
        assert_eq!(a.id, incident_id(&a.fingerprint));
        assert_eq!(a.id.get_version_num(), 5);
        // Pinned: changing the namespace or the fingerprint format would
        // rename every stored incident.
        assert_eq!(
            incident_id("credential_stuffing:203.0.113.9:2023-11-14T22:13:20.000Z").to_string(),
            Uuid::new_v5(
                &INCIDENT_NAMESPACE,
                b"credential_stuffing:203.0.113.9:2023-11-14T22:13:20.000Z"
            )
            .to_string()
        );
    }

    #[test]
    fn open_starts_at_revision_zero_and_open() {
        let f = stuffing(0, 5 * MIN);
        let c = open(&f);
        assert_eq!(c.change, ChangeKind::Created);
        assert_eq!(c.incident.revision, 0);
        assert_eq!(c.incident.status, IncidentStatus::Open);
        assert_eq!(c.incident.detected_at, f.detected_at);
        assert_eq!(c.incident.sources, vec!["203.0.113.9".to_owned()]);
        assert_eq!(c.actor, "detector:test");
    }

    #[test]
    fn merge_gap_boundary_is_inclusive() {
        let inc = open(&stuffing(0, 10 * MIN)).incident;
        assert!(continues(&inc, &stuffing(10 * MIN + GAP, 50 * MIN), GAP));
        assert!(!continues(
            &inc,
            &stuffing(10 * MIN + GAP + 1, 50 * MIN),
            GAP
        ));
        // The same rule at the other end, for findings arriving out of order.
        let later = open(&stuffing(100 * MIN, 110 * MIN)).incident;
        assert!(continues(&later, &stuffing(0, 100 * MIN - GAP), GAP));
        assert!(!continues(&later, &stuffing(0, 100 * MIN - GAP - 1), GAP));
    }

    #[test]
    fn other_kind_or_client_never_continues() {
        let inc = open(&stuffing(0, 10 * MIN)).incident;
        let mut f = stuffing(0, 10 * MIN);
        f.kind = IncidentKind::TrafficSpike;
        assert!(!continues(&inc, &f, GAP));
        let mut f = stuffing(0, 10 * MIN);
        f.key = "198.51.100.7".into();
        assert!(!continues(&inc, &f, GAP));
    }

    #[test]
    fn merge_takes_extremes_and_the_newer_picture() {
        let inc = open(&stuffing(5 * MIN, 10 * MIN)).incident;
        // A restarted episode: starts later, has fewer events so far, but is
        // newer, so its text wins; first_seen and events keep the extremes.
        let mut f = stuffing(8 * MIN, 20 * MIN);
        f.events = 3;
        f.summary = "newer".into();
        f.technique = "password_spray";
        f.evidence = serde_json::json!({"usernames": 40});
        f.sources = vec!["198.51.100.1".parse().unwrap()];
        f.detected_at = EventTime::from_millis(T0 + 20 * MIN);
        let c = merge(&inc, &f).expect("a change");
        let i = &c.incident;
        assert_eq!(i.first_seen, inc.first_seen);
        assert_eq!(i.last_seen, f.last_seen);
        assert_eq!(i.events, inc.events);
        assert_eq!(i.summary, "newer");
        assert_eq!(i.technique, "password_spray");
        assert_eq!(i.evidence, f.evidence);
        assert_eq!(i.sources, vec!["198.51.100.1".to_owned()]);
        assert_eq!(i.detected_at, inc.detected_at, "detected_at stays");
        assert_eq!(i.id, inc.id);
        assert_eq!(i.fingerprint, inc.fingerprint);
        assert_eq!(i.revision, 1);
        assert_eq!(c.change, ChangeKind::Updated);
    }

    #[test]
    fn an_older_picture_only_widens_the_window() {
        let inc = open(&stuffing(5 * MIN, 10 * MIN)).incident;
        let mut f = stuffing(0, 6 * MIN);
        f.summary = "older".into();
        f.events = 1;
        let c = merge(&inc, &f).expect("first_seen moved");
        assert_eq!(c.incident.first_seen, f.first_seen);
        assert_eq!(c.incident.last_seen, inc.last_seen);
        assert_eq!(c.incident.summary, inc.summary);
        assert_eq!(c.incident.events, inc.events);
    }

    #[test]
    fn replays_change_nothing() {
        let f1 = stuffing(0, 5 * MIN);
        let mut f2 = stuffing(0, 9 * MIN);
        f2.events = 90;
        let inc = open(&f1).incident;
        let inc = merge(&inc, &f2).unwrap().incident;
        assert_eq!(merge(&inc, &f2), None, "the same finding again");
        assert_eq!(merge(&inc, &f1), None, "an earlier finding again");
    }

    #[test]
    fn higher_severity_escalates_and_never_lowers() {
        let mut f = stuffing(0, 5 * MIN);
        f.severity = Severity::Medium;
        let inc = open(&f).incident;
        let mut up = stuffing(0, 6 * MIN);
        up.severity = Severity::Critical;
        let c = merge(&inc, &up).unwrap();
        assert_eq!(
            c.change,
            ChangeKind::Escalated {
                from: Severity::Medium
            }
        );
        assert_eq!(c.incident.severity, Severity::Critical);
        let mut down = stuffing(0, 7 * MIN);
        down.severity = Severity::Low;
        let c2 = merge(&c.incident, &down).unwrap();
        assert_eq!(c2.change, ChangeKind::Updated);
        assert_eq!(c2.incident.severity, Severity::Critical);
        assert_eq!(c2.incident.revision, 2);
    }

    #[test]
    fn json_shape_is_the_incident_format() {
        let inc = open(&stuffing(0, 5 * MIN)).incident;
        let v = serde_json::to_value(&inc).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "client",
                "detected_at",
                "events",
                "evidence",
                "fingerprint",
                "first_seen",
                "id",
                "kind",
                "last_seen",
                "revision",
                "severity",
                "sources",
                "status",
                "summary",
                "technique"
            ]
        );
        assert_eq!(v["first_seen"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["kind"], "credential_stuffing");
        assert_eq!(v["status"], "open");
        let back: Incident = serde_json::from_value(v).unwrap();
        assert_eq!(back, inc);
    }

    #[test]
    fn cache_is_bounded_and_keeps_the_recent_half() {
        let mut cache = LatestCache::new(4);
        for n in 0..5i64 {
            let f = finding(
                IncidentKind::TrafficSpike,
                &format!("10.0.0.{n}"),
                T0 + n * MIN,
                T0 + n * MIN,
            );
            cache.remember(&open(&f).incident);
        }
        assert!(cache.len() <= 4);
        assert!(cache.get(IncidentKind::TrafficSpike, "10.0.0.4").is_some());
        assert!(cache.get(IncidentKind::TrafficSpike, "10.0.0.0").is_none());
    }

    #[test]
    fn cache_keeps_the_latest_incident_per_key() {
        let mut cache = LatestCache::new(8);
        let newer = open(&stuffing(100 * MIN, 110 * MIN)).incident;
        let older = open(&stuffing(0, 10 * MIN)).incident;
        cache.remember(&newer);
        cache.remember(&older);
        let got = cache.get(IncidentKind::CredentialStuffing, "203.0.113.9");
        assert_eq!(got.map(|i| i.id), Some(newer.id));
    }
}
