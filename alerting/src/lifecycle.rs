//! The incident lifecycle: who may move an incident where, and the
//! automatic moves.
//!
//! ```text
//!            acknowledge            resolve
//!   open ───────────────▶ acknowledged ─────▶ resolved ──reopen──▶ reopened
//!     │                                  ▲        ▲    (or recurrence)   │
//!     └────────────── resolve ───────────┘        └──── resolve ─────────┤
//!                                                   acknowledge: reopened → acknowledged
//! ```
//!
//! * Analysts act through [`transition`] (acknowledge, resolve, reopen) and
//!   [`assign`]; anything else is a typed [`LifecycleError`] the API maps to
//!   a status code (404, 409, 422). Every change is a revision of the
//!   incident with a timeline entry naming the actor and the analyst's note.
//! * **Recurrence reopens**: a finding that the manager would merge into a
//!   *resolved* incident, and that brings activity later than the
//!   incident's `last_seen`, moves it to `reopened` (see
//!   [`manager::merge`](crate::manager::merge)). Late data about the
//!   resolved past updates it without reopening.
//! * **Auto-resolve** ([`auto_resolve`]) resolves incidents that have been
//!   quiet for `auto_resolve_after`, measured in **event time**: an incident
//!   whose `last_seen + quiet <= watermark`, the watermark being the newest
//!   event time the pipeline has read ([`Watermark`]). Event time, not the
//!   wall clock, because (1) a replay of the same logs resolves the same
//!   incidents, like every other decision gatewatch makes, and (2) a
//!   pipeline that lags (a Kafka backlog, an ingest outage) must not resolve
//!   an attack whose later events it simply has not read yet, only to
//!   reopen it (and page again) minutes later. The price: when no events
//!   arrive at all, time stands still and nothing auto-resolves; the
//!   pipeline's watermark advances with any traffic, not only with attacks,
//!   so this only bites when the gateway itself is silent. Keep
//!   `auto_resolve_after` at least the manager's `merge_gap`: then a finding
//!   arriving after the resolution opens a new incident rather than
//!   reopening, whatever the timing of the resolver's ticks.
//!
//! Manual transitions retry on a concurrent write (the manager updating the
//! same incident): the analyst's intent is re-applied to the fresh state,
//! and refused if it no longer makes sense there.

use crate::change::{ChangeKind, IncidentChange};
use crate::incident::{Incident, IncidentStatus};
use crate::notify::Routing;
use crate::outbox::ChangeEffects;
use crate::store::{Db, IncidentStore, StoreError};
use gatewatch_detector::EventTime;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often a manual change is re-read and re-applied after a concurrent
/// write before giving up with a conflict.
const MAX_ATTEMPTS: usize = 5;

/// Longest accepted note and assignee, in characters.
const MAX_NOTE: usize = 10_000;
const MAX_ASSIGNEE: usize = 200;

/// The actor of automatic resolutions, as the timeline shows it.
pub const AUTO_RESOLVE_ACTOR: &str = "system:auto_resolve";

/// What an analyst asks of an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// "I have seen it": open or reopened → acknowledged.
    Acknowledge,
    /// "It is over": open, acknowledged or reopened → resolved.
    Resolve,
    /// "It is not over": resolved → reopened.
    Reopen,
}

impl Action {
    /// The snake_case name (`acknowledge`, `resolve`, `reopen`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Acknowledge => "acknowledge",
            Action::Resolve => "resolve",
            Action::Reopen => "reopen",
        }
    }

    /// The status `action` moves an incident in status `from` to; `None`
    /// when the move is not allowed (the API's 409).
    pub fn next_status(self, from: IncidentStatus) -> Option<IncidentStatus> {
        use IncidentStatus::*;
        match (self, from) {
            (Action::Acknowledge, Open | Reopened) => Some(Acknowledged),
            (Action::Resolve, Open | Acknowledged | Reopened) => Some(Resolved),
            (Action::Reopen, Resolved) => Some(Reopened),
            _ => None,
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a lifecycle change was refused. Each variant names its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No incident has this id (404).
    #[error("Incident {id} does not exist")]
    NotFound {
        /// The id asked for.
        id: Uuid,
    },
    /// The action is not allowed from the incident's current status (409):
    /// acknowledging a resolved incident, resolving it twice, reopening an
    /// open one.
    #[error("Cannot {action} incident {id}: it is {from}")]
    IllegalTransition {
        /// The incident.
        id: Uuid,
        /// Its status when the action was tried.
        from: &'static str,
        /// What was asked.
        action: Action,
    },
    /// The request itself is unacceptable (422): an empty actor, a note or
    /// assignee too long.
    #[error("Invalid lifecycle request: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// The store failed, or the incident kept changing under us
    /// ([`StoreError::Conflict`] after retries: 409); otherwise 500.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The lifecycle operations, with the notification routing that applies to
/// them (so `on_resolve`/`on_acknowledge` channels hear about analysts'
/// actions and auto-resolution). Cheap to clone; the API keeps one.
#[derive(Clone)]
pub struct Lifecycle {
    store: Arc<dyn IncidentStore>,
    routing: Option<Arc<Routing>>,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("backend", &self.store.backend())
            .field("routing", &self.routing)
            .finish()
    }
}

impl Lifecycle {
    /// Lifecycle operations on `store`, enqueueing notifications per
    /// `routing` (none when `None`).
    pub fn new(store: Arc<dyn IncidentStore>, routing: Option<Arc<Routing>>) -> Self {
        Lifecycle { store, routing }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn IncidentStore> {
        &self.store
    }

    /// Applies an analyst's action. See [`transition`].
    pub async fn transition(
        &self,
        id: Uuid,
        action: Action,
        actor: &str,
        note: Option<&str>,
    ) -> Result<IncidentChange, LifecycleError> {
        check_actor(actor)?;
        check_note(note)?;
        self.apply_retrying(id, actor, note, |incident| {
            let to =
                action
                    .next_status(incident.status)
                    .ok_or(LifecycleError::IllegalTransition {
                        id,
                        from: incident.status.as_str(),
                        action,
                    })?;
            let mut next = incident.clone();
            next.status = to;
            Ok(Some((
                next,
                ChangeKind::StatusChanged {
                    from: incident.status,
                },
                serde_json::Map::new(),
            )))
        })
        .await?
        .ok_or(LifecycleError::NotFound { id })
    }

    /// Sets or clears the assignee. `Ok(None)` when it already was so.
    pub async fn assign(
        &self,
        id: Uuid,
        assignee: Option<&str>,
        actor: &str,
    ) -> Result<Option<IncidentChange>, LifecycleError> {
        check_actor(actor)?;
        let assignee = assignee.map(str::trim).filter(|a| !a.is_empty());
        if assignee
            .is_some_and(|a| a.chars().count() > MAX_ASSIGNEE || a.contains(char::is_control))
        {
            return Err(LifecycleError::Invalid {
                reason: format!(
                    "assignee must be at most {MAX_ASSIGNEE} characters, without control characters"
                ),
            });
        }
        self.apply_retrying(id, actor, None, |incident| {
            if incident.assignee.as_deref() == assignee {
                return Ok(None);
            }
            let mut next = incident.clone();
            next.assignee = assignee.map(str::to_owned);
            let mut details = serde_json::Map::new();
            details.insert("from".into(), serde_json::json!(incident.assignee));
            Ok(Some((next, ChangeKind::Assigned, details)))
        })
        .await
    }

    /// Resolves every unresolved incident quiet since `watermark - quiet`
    /// (event time), at most `limit` per call, oldest activity first.
    /// Returns the changes made; incidents changed concurrently are left
    /// for the next call.
    pub async fn auto_resolve(
        &self,
        watermark: EventTime,
        quiet: Duration,
        limit: u32,
    ) -> Result<Vec<IncidentChange>, StoreError> {
        let quiet_ms = i64::try_from(quiet.as_millis()).unwrap_or(i64::MAX);
        let before = crate::store::clamp_time(watermark.plus_millis(-quiet_ms));
        let ids = quiet_incidents(&*self.store, before, limit).await?;
        let mut changes = Vec::new();
        for id in ids {
            let Some(incident) = self.store.get(id).await? else {
                continue;
            };
            if incident.status == IncidentStatus::Resolved
                || incident.last_seen.plus_millis(quiet_ms) > watermark
            {
                continue;
            }
            let mut next = incident.clone();
            next.status = IncidentStatus::Resolved;
            next.revision = incident.revision.saturating_add(1);
            let change = IncidentChange {
                incident: next,
                change: ChangeKind::StatusChanged {
                    from: incident.status,
                },
                actor: AUTO_RESOLVE_ACTOR.to_owned(),
            };
            let mut details = serde_json::Map::new();
            details.insert("quiet_secs".into(), serde_json::json!(quiet.as_secs()));
            details.insert("watermark".into(), serde_json::json!(watermark));
            let effects = self.effects(&change, None, details);
            match self.store.record_change_with(&change, &effects).await {
                Ok(()) => {
                    tracing::info!(
                        incident_id = %change.incident.id,
                        last_seen = %change.incident.last_seen,
                        watermark = %watermark,
                        "Incident auto-resolved after its quiet period."
                    );
                    changes.push(change);
                }
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(changes)
    }

    fn effects(
        &self,
        change: &IncidentChange,
        note: Option<&str>,
        details: serde_json::Map<String, serde_json::Value>,
    ) -> ChangeEffects {
        ChangeEffects {
            note: note.map(str::to_owned),
            details,
            deliveries: self
                .routing
                .as_ref()
                .map(|r| r.deliveries(change, note))
                .unwrap_or_default(),
            now: None,
        }
    }

    /// Reads the incident, computes the change with `make` and writes it;
    /// on a concurrent write, reads again and recomputes. `Ok(None)` when
    /// `make` says there is nothing to do; `NotFound` when there is no such
    /// incident.
    async fn apply_retrying<F>(
        &self,
        id: Uuid,
        actor: &str,
        note: Option<&str>,
        make: F,
    ) -> Result<Option<IncidentChange>, LifecycleError>
    where
        F: Fn(
            &Incident,
        ) -> Result<
            Option<(
                Incident,
                ChangeKind,
                serde_json::Map<String, serde_json::Value>,
            )>,
            LifecycleError,
        >,
    {
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            let incident = self
                .store
                .get(id)
                .await?
                .ok_or(LifecycleError::NotFound { id })?;
            let Some((mut next, kind, details)) = make(&incident)? else {
                return Ok(None);
            };
            next.revision = incident.revision.saturating_add(1);
            let change = IncidentChange {
                incident: next,
                change: kind,
                actor: actor.to_owned(),
            };
            let effects = self.effects(&change, note, details);
            match self.store.record_change_with(&change, &effects).await {
                Ok(()) => {
                    tracing::info!(
                        incident_id = %id,
                        action = change.change.action(),
                        status = change.incident.status.as_str(),
                        actor,
                        "Incident changed by hand."
                    );
                    return Ok(Some(change));
                }
                Err(e @ StoreError::Conflict { .. }) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or(LifecycleError::NotFound { id }, LifecycleError::Store))
    }
}

fn check_actor(actor: &str) -> Result<(), LifecycleError> {
    if actor.trim().is_empty() || actor.chars().count() > MAX_ASSIGNEE {
        return Err(LifecycleError::Invalid {
            reason: "actor must be non-empty and at most 200 characters".into(),
        });
    }
    Ok(())
}

fn check_note(note: Option<&str>) -> Result<(), LifecycleError> {
    if note.is_some_and(|n| n.chars().count() > MAX_NOTE) {
        return Err(LifecycleError::Invalid {
            reason: format!("note must be at most {MAX_NOTE} characters"),
        });
    }
    Ok(())
}

/// Applies an analyst's action to incident `id` and records it in the
/// timeline with `actor` and `note`, without notifications. What
/// `POST /incidents/{id}/ack|resolve|reopen` calls (through
/// [`Lifecycle::transition`] when notifications are configured).
///
/// Errors: [`LifecycleError::NotFound`] (404),
/// [`LifecycleError::IllegalTransition`] (409), [`LifecycleError::Invalid`]
/// (422), [`LifecycleError::Store`] (409 for a conflict, else 500).
pub async fn transition(
    store: &Arc<dyn IncidentStore>,
    id: Uuid,
    action: Action,
    actor: &str,
    note: Option<&str>,
) -> Result<IncidentChange, LifecycleError> {
    Lifecycle::new(Arc::clone(store), None)
        .transition(id, action, actor, note)
        .await
}

/// Sets (`Some`) or clears (`None`) incident `id`'s assignee, recorded in the
/// timeline as `assigned` with the previous assignee in `details.from`.
/// `Ok(None)` when the assignee already was that.
pub async fn assign(
    store: &Arc<dyn IncidentStore>,
    id: Uuid,
    assignee: Option<&str>,
    actor: &str,
) -> Result<Option<IncidentChange>, LifecycleError> {
    Lifecycle::new(Arc::clone(store), None)
        .assign(id, assignee, actor)
        .await
}

/// Ids of unresolved incidents with `last_seen <= before`, oldest first.
async fn quiet_incidents(
    store: &dyn IncidentStore,
    before: EventTime,
    limit: u32,
) -> Result<Vec<Uuid>, StoreError> {
    let limit = i64::from(limit.max(1));
    match store.db() {
        Db::Postgres(pool) => sqlx::query_scalar(
            "SELECT id FROM incidents WHERE status IN ('open', 'acknowledged', 'reopened') \
             AND last_seen <= $1 ORDER BY last_seen, id LIMIT $2",
        )
        .bind(before.to_datetime())
        .bind(limit)
        .fetch_all(&pool)
        .await
        .map_err(|source| StoreError::Query {
            backend: "postgres",
            operation: "find quiet incidents",
            source,
        }),
        Db::Sqlite(pool) => {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM incidents WHERE status IN ('open', 'acknowledged', 'reopened') \
                 AND last_seen <= ? ORDER BY last_seen, id LIMIT ?",
            )
            .bind(before.to_rfc3339())
            .bind(limit)
            .fetch_all(&pool)
            .await
            .map_err(|source| StoreError::Query {
                backend: "sqlite",
                operation: "find quiet incidents",
                source,
            })?;
            ids.iter()
                .map(|s| {
                    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt {
                        id: s.clone(),
                        column: "id",
                        value: e.to_string(),
                    })
                })
                .collect()
        }
    }
}

/// The newest event time the pipeline has read: what auto-resolve measures
/// quiet periods against. Shared, lock-free; only ever moves forward.
///
/// The binary advances it from the detection stage (the events' watermark);
/// the [`IncidentManager`](crate::IncidentManager) also advances it with each
/// finding's `last_seen` when given one.
#[derive(Clone, Debug, Default)]
pub struct Watermark(Arc<AtomicI64>);

impl PartialEq for Watermark {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Watermark {}

impl Watermark {
    /// A watermark that has seen nothing yet.
    pub fn new() -> Self {
        Watermark(Arc::new(AtomicI64::new(i64::MIN)))
    }

    /// Moves the watermark to `t` if `t` is later.
    pub fn advance(&self, t: EventTime) {
        self.0.fetch_max(t.millis(), Ordering::Relaxed);
    }

    /// The watermark; `None` before any event.
    pub fn get(&self) -> Option<EventTime> {
        match self.0.load(Ordering::Relaxed) {
            i64::MIN => None,
            ms => Some(EventTime::from_millis(ms)),
        }
    }
}

/// Runs [`Lifecycle::auto_resolve`] every `every` until `shutdown`, against
/// `watermark`. Store errors are logged and retried at the next tick.
pub fn spawn_auto_resolver(
    lifecycle: Lifecycle,
    watermark: Watermark,
    quiet: Duration,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let Some(now) = watermark.get() else {
                continue;
            };
            loop {
                match lifecycle.auto_resolve(now, quiet, 500).await {
                    Ok(done) if done.len() == 500 && !shutdown.is_cancelled() => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(error = %error, "Auto-resolving quiet incidents failed; retrying at the next tick.");
                        break;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use IncidentStatus::*;

    #[test]
    fn the_transition_table() {
        let legal = [
            (Action::Acknowledge, Open, Acknowledged),
            (Action::Acknowledge, Reopened, Acknowledged),
            (Action::Resolve, Open, Resolved),
            (Action::Resolve, Acknowledged, Resolved),
            (Action::Resolve, Reopened, Resolved),
            (Action::Reopen, Resolved, Reopened),
        ];
        for action in [Action::Acknowledge, Action::Resolve, Action::Reopen] {
            for from in [Open, Acknowledged, Resolved, Reopened] {
                let expected = legal
                    .iter()
                    .find(|(a, f, _)| *a == action && *f == from)
                    .map(|(_, _, to)| *to);
                assert_eq!(action.next_status(from), expected, "{action} from {from:?}");
            }
        }
    }

    #[test]
    fn watermark_only_moves_forward() {
        let w = Watermark::new();
        assert_eq!(w.get(), None);
        w.advance(EventTime::from_millis(10));
        w.advance(EventTime::from_millis(5));
        assert_eq!(w.get(), Some(EventTime::from_millis(10)));
        let clone = w.clone();
        clone.advance(EventTime::from_millis(20));
        assert_eq!(w.get(), Some(EventTime::from_millis(20)));
    }
}
