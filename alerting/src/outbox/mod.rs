//! The durable notification outbox: what must be said, written with the
//! change that makes it true.
//!
//! An incident change and the outbox rows of its notifications are written
//! in **one transaction** ([`IncidentStore::record_change_with`]); a worker
//! ([`crate::notify::Worker`]) then claims due rows, sends them and records
//! the outcome. Nothing is lost to a crash at any point:
//!
//! * before the commit, neither the change nor its notifications exist;
//! * after the commit, the rows wait in `pending`;
//! * a claim moves a row's `next_attempt_at` one *lease* ahead and gives it a
//!   fresh claim token. A worker that dies between claim and send (or during
//!   the send) leaves a row that is claimable again once the lease runs out;
//!   its late completion, if any, no longer matches the claim token.
//!
//! Claims are safe for several workers and instances: PostgreSQL uses
//! `FOR UPDATE SKIP LOCKED`, SQLite one atomic
//! `UPDATE … WHERE id IN (SELECT …) RETURNING`. A send that may have reached
//! the receiver before a crash is sent again: every send carries the row's
//! [`ClaimedDelivery::delivery_id`] (`Idempotency-Key`, `X-Gatewatch-Delivery`,
//! the email's `Message-ID`) so receivers can drop the duplicate.
//!
//! **Flood control is decided at enqueue, inside the transaction**, against a
//! per-channel token bucket kept in the database (`notification_channel_state`)
//! and shared by every instance: a notification that finds a token is
//! `pending`; one that does not (or that finds older held rows, so the digest
//! goes first) is `held`. When the bucket has a token again, the worker turns
//! every held row of the channel into **one digest** row (counts by kind,
//! severity and event, top clients) in one transaction, marking them
//! `digested`. Deciding at enqueue makes the decision durable and made once:
//! retries, crashes and extra workers never re-decide, and a 10 000-client
//! flood is `burst` messages plus a digest per refill, whatever the number
//! of workers. The bucket refills by wall-clock time (it protects people's
//! attention, which runs on wall-clock time, also when a backlog is
//! replayed fast).
//!
//! Rows are never deleted here: `delivered` and `digested` rows are the
//! record of what was said; `dead` rows are the dead letters
//! ([`dead_letters`], [`requeue`]).

pub(crate) mod pg;
pub(crate) mod sqlite;

use crate::change::{ChangeKind, IncidentChange};
use crate::incident::IncidentStatus;
use crate::store::{Db, IncidentStore, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// The UUIDv5 namespace of delivery ids (idempotency keys). Never change it:
/// receivers deduplicate on these ids across restarts and versions.
pub const DELIVERY_NAMESPACE: Uuid = Uuid::from_u128(0x3c1e_8a52_07d4_5b6f_9e21_c4a7_5d30_b8f1);

/// What a notification announces. Routing chooses per channel which of these
/// it wants; plain updates are never notified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A new incident.
    Opened,
    /// An incident's severity rose.
    Escalated,
    /// A resolved incident's attack came back (or an analyst reopened it).
    Reopened,
    /// An analyst acknowledged an incident.
    Acknowledged,
    /// An incident was resolved, by hand or after its quiet period.
    Resolved,
    /// A summary of notifications held back by the channel's rate limit.
    Digest,
}

impl NotifyEvent {
    /// Every event, in display order.
    pub const ALL: [NotifyEvent; 6] = [
        NotifyEvent::Opened,
        NotifyEvent::Escalated,
        NotifyEvent::Reopened,
        NotifyEvent::Acknowledged,
        NotifyEvent::Resolved,
        NotifyEvent::Digest,
    ];

    /// The snake_case name used in JSON, config and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Opened => "opened",
            NotifyEvent::Escalated => "escalated",
            NotifyEvent::Reopened => "reopened",
            NotifyEvent::Acknowledged => "acknowledged",
            NotifyEvent::Resolved => "resolved",
            NotifyEvent::Digest => "digest",
        }
    }

    /// The inverse of [`NotifyEvent::as_str`].
    pub fn parse(s: &str) -> Option<NotifyEvent> {
        NotifyEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The event a change announces, if any: creations, escalations and
    /// status changes; never plain updates or assignments.
    pub fn of(change: &IncidentChange) -> Option<NotifyEvent> {
        match change.change {
            ChangeKind::Created => Some(NotifyEvent::Opened),
            ChangeKind::Escalated { .. } => Some(NotifyEvent::Escalated),
            ChangeKind::StatusChanged { .. } => match change.incident.status {
                IncidentStatus::Reopened => Some(NotifyEvent::Reopened),
                IncidentStatus::Acknowledged => Some(NotifyEvent::Acknowledged),
                IncidentStatus::Resolved => Some(NotifyEvent::Resolved),
                IncidentStatus::Open => None,
            },
            ChangeKind::Updated | ChangeKind::Assigned => None,
        }
    }
}

impl std::fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channel's token bucket: `burst` messages at once, then one more every
/// `refill_every`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Bucket size: how many messages may go out back to back.
    pub burst: u32,
    /// Time to earn one message back.
    pub refill_every: Duration,
}

impl RateLimit {
    /// The bucket's size in thousandths of a message (the stored unit).
    pub(crate) fn capacity_milli(self) -> i64 {
        i64::from(self.burst.max(1)) * 1000
    }

    /// Tokens (thousandths) after refilling from `last` to `now`, capped at
    /// the capacity, and the time the bucket is now refilled up to. Only
    /// the time actually turned into tokens is consumed, so frequent calls
    /// (one per enqueue during a flood) lose no fraction of a token; a clock
    /// that went backwards refills nothing.
    pub(crate) fn refill(
        self,
        tokens_milli: i64,
        last: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> (i64, DateTime<Utc>) {
        let cap = self.capacity_milli();
        if now <= last {
            return (tokens_milli.min(cap), last);
        }
        let elapsed_ms = (now - last).num_milliseconds();
        let every_ms = i64::try_from(self.refill_every.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let earned = elapsed_ms.saturating_mul(1000) / every_ms;
        let tokens = tokens_milli.saturating_add(earned);
        if tokens >= cap {
            return (cap, now);
        }
        let used_ms = earned.saturating_mul(every_ms) / 1000;
        (tokens, last + chrono::Duration::milliseconds(used_ms))
    }
}

/// One notification to enqueue with a change: built by
/// [`Routing`](crate::notify::Routing) for every channel that wants the change.
#[derive(Clone, Debug, PartialEq)]
pub struct NewDelivery {
    /// The channel's configured name.
    pub channel: String,
    /// What is announced.
    pub event: NotifyEvent,
    /// What the notifier renders: `{"incident", "change", "actor", "note"}`
    /// (see [`IncidentPayload`]).
    pub payload: serde_json::Value,
    /// Attempts before the row becomes a dead letter.
    pub max_attempts: u32,
    /// The channel's flood control; `None` sends everything.
    pub rate_limit: Option<RateLimit>,
}

/// What else is written in the transaction of a change: the note and extra
/// details of its timeline entry, and its notifications.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChangeEffects {
    /// Free text from the actor (an analyst's reason), kept in the timeline
    /// entry's `details.note`.
    pub note: Option<String>,
    /// Extra keys for the timeline entry's `details` (e.g. the previous
    /// assignee as `from`).
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Notifications to enqueue (flood control applies per channel).
    pub deliveries: Vec<NewDelivery>,
    /// Wall-clock time of the change for the outbox and the rate limit;
    /// `None` reads the clock.
    pub now: Option<DateTime<Utc>>,
}

impl ChangeEffects {
    /// The timeline entry's `details`: the change's own, plus these effects'
    /// details and note.
    pub fn timeline_details(&self, change: &IncidentChange) -> serde_json::Value {
        let mut details = change.timeline_details();
        if let Some(map) = details.as_object_mut() {
            for (k, v) in &self.details {
                map.insert(k.clone(), v.clone());
            }
            if let Some(note) = &self.note {
                map.insert("note".into(), serde_json::Value::String(note.clone()));
            }
        }
        details
    }
}

/// The payload of an incident notification, as enqueued: the incident as it
/// was after the change, so the message describes that moment even when it
/// is sent later.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentPayload {
    /// The incident after the change.
    pub incident: crate::incident::Incident,
    /// The change, in [`ChangeKind`]'s JSON form (`{"type": "escalated",
    /// "from": "medium"}`).
    pub change: serde_json::Value,
    /// Who made the change.
    pub actor: String,
    /// The actor's note, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl IncidentPayload {
    /// The payload of `change`.
    pub fn of(change: &IncidentChange, note: Option<&str>) -> Self {
        IncidentPayload {
            incident: change.incident.clone(),
            change: serde_json::to_value(change.change).unwrap_or(serde_json::Value::Null),
            actor: change.actor.clone(),
            note: note.map(str::to_owned),
        }
    }
}

/// A client and how many held notifications were about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCount {
    /// The incident's client.
    pub client: String,
    /// Held notifications about it.
    pub notifications: u64,
}

/// What a digest says: the notifications a channel held back, counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestSummary {
    /// The channel that held them.
    pub channel: String,
    /// How many notifications were held.
    pub held: u64,
    /// Distinct clients among them.
    pub clients: u64,
    /// When the first of them was enqueued.
    pub first_at: DateTime<Utc>,
    /// When the last of them was enqueued.
    pub last_at: DateTime<Utc>,
    /// Held notifications per incident kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Held notifications per severity.
    pub by_severity: BTreeMap<String, u64>,
    /// Held notifications per event (`opened`, `escalated`, …).
    pub by_event: BTreeMap<String, u64>,
    /// The clients with the most held notifications, most first (ties by
    /// name), at most [`DIGEST_TOP_CLIENTS`].
    pub top_clients: Vec<ClientCount>,
    /// A few of the incidents concerned (the first held), for links.
    pub incidents: Vec<Uuid>,
}

/// How many clients a digest names.
pub const DIGEST_TOP_CLIENTS: i64 = 10;
/// How many incident ids a digest carries.
pub const DIGEST_INCIDENTS: i64 = 10;

/// Where an outbox row is in its life (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for an attempt (or between attempts).
    Pending,
    /// Over the channel's rate limit, waiting for a digest.
    Held,
    /// Summarised by a digest, never sent alone.
    Digested,
    /// Sent.
    Delivered,
    /// Given up: a dead letter.
    Dead,
}

impl DeliveryStatus {
    /// Every status.
    pub const ALL: [DeliveryStatus; 5] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Held,
        DeliveryStatus::Digested,
        DeliveryStatus::Delivered,
        DeliveryStatus::Dead,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Held => "held",
            DeliveryStatus::Digested => "digested",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    /// The inverse of [`DeliveryStatus::as_str`].
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// One outbox row, as the API lists it (dead letters, recent deliveries).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutboxEntry {
    /// Row id, increasing with insertion.
    pub id: i64,
    /// The idempotency key every attempt carried.
    pub delivery_id: Uuid,
    /// The channel's configured name.
    pub channel: String,
    /// What it announces.
    pub event: NotifyEvent,
    /// The incident (none for digests).
    pub incident_id: Option<Uuid>,
    /// The incident's revision the notification describes.
    pub revision: Option<u32>,
    /// Where it is.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When it may next be claimed.
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed (never holds a secret: notifiers strip
    /// URLs and credentials from their errors).
    pub last_error: Option<String>,
    /// The digest that summarised it, for `digested` rows.
    pub digest_id: Option<i64>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it was delivered or given up.
    pub finished_at: Option<DateTime<Utc>>,
    /// What the notifier renders ([`IncidentPayload`] or [`DigestSummary`]).
    pub payload: serde_json::Value,
}

/// A row claimed by a worker: what to send, and the token that proves the
/// claim when the outcome is recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedDelivery {
    /// Row id.
    pub id: i64,
    /// The idempotency key: the same on every attempt of this row.
    pub delivery_id: Uuid,
    /// The channel's configured name.
    pub channel: String,
    /// What it announces.
    pub event: NotifyEvent,
    /// The incident (none for digests).
    pub incident_id: Option<Uuid>,
    /// The incident's revision.
    pub revision: Option<u32>,
    /// Whether this is the first notification of the incident on this
    /// channel (email starts a thread with it).
    pub thread_first: bool,
    /// What to render.
    pub payload: serde_json::Value,
    /// Attempts including this one.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// This claim's token.
    pub claim: Uuid,
}

/// Filters for [`list`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutboxQuery {
    /// Only rows in this status.
    pub status: Option<DeliveryStatus>,
    /// Only rows of this channel.
    pub channel: Option<String>,
    /// Only rows about this incident.
    pub incident_id: Option<Uuid>,
    /// At most this many rows (default 100, at most 1000), newest first.
    pub limit: Option<u32>,
}

impl OutboxQuery {
    fn effective_limit(&self) -> i64 {
        i64::from(self.limit.unwrap_or(100).clamp(1, 1000))
    }
}

/// The idempotency key of the notification of `incident_id` at `revision` on
/// `channel`: stable, so a re-enqueue of the same change is a no-op.
pub fn delivery_id(channel: &str, incident_id: Uuid, revision: u32) -> Uuid {
    Uuid::new_v5(
        &DELIVERY_NAMESPACE,
        format!("{channel}\u{0}{incident_id}\u{0}{revision}").as_bytes(),
    )
}

/// The idempotency key of the digest of held rows `first..=last`.
pub(crate) fn digest_delivery_id(channel: &str, first: i64, last: i64) -> Uuid {
    Uuid::new_v5(
        &DELIVERY_NAMESPACE,
        format!("digest\u{0}{channel}\u{0}{first}\u{0}{last}").as_bytes(),
    )
}

/// Duration as a chrono duration (saturating).
pub(crate) fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Claims up to `limit` due rows for `worker` until `now + lease`.
pub async fn claim(
    store: &dyn IncidentStore,
    worker: &str,
    now: DateTime<Utc>,
    lease: Duration,
    limit: u32,
) -> Result<Vec<ClaimedDelivery>> {
    let until = now + chrono_duration(lease);
    match store.db() {
        Db::Postgres(pool) => pg::claim(&pool, worker, now, until, limit).await,
        Db::Sqlite(pool) => sqlite::claim(&pool, worker, now, until, limit).await,
    }
}

/// What to do with a claimed row after an attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Sent: the row is done.
    Delivered,
    /// Try again at this time (the attempt counts).
    Retry {
        /// When the row becomes claimable again.
        at: DateTime<Utc>,
        /// Why the attempt failed.
        error: String,
    },
    /// Not attempted (e.g. the channel asked to slow down): claimable again
    /// at this time, without using up an attempt.
    Release {
        /// When the row becomes claimable again.
        at: DateTime<Utc>,
        /// Why it was not attempted.
        reason: String,
    },
    /// Give up: the row becomes a dead letter.
    Dead {
        /// Why.
        error: String,
    },
}

/// Records the outcome of an attempt on a claimed row. `false` when the claim
/// is no longer this worker's (its lease ran out and another worker claimed
/// the row): then nothing is written.
pub async fn finish(
    store: &dyn IncidentStore,
    delivery: &ClaimedDelivery,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> Result<bool> {
    match store.db() {
        Db::Postgres(pool) => pg::finish(&pool, delivery, outcome, now).await,
        Db::Sqlite(pool) => sqlite::finish(&pool, delivery, outcome, now).await,
    }
}

/// Whether `channel` has held rows waiting for a digest (a cheap, lock-free
/// check before [`flush_digest`]).
pub async fn has_held(store: &dyn IncidentStore, channel: &str) -> Result<bool> {
    match store.db() {
        Db::Postgres(pool) => pg::has_held(&pool, channel).await,
        Db::Sqlite(pool) => sqlite::has_held(&pool, channel).await,
    }
}

/// When the channel's bucket has a token, turns all its held rows into one
/// pending digest row (in one transaction) and returns its summary; `None`
/// when nothing is held or the bucket is still empty.
pub async fn flush_digest(
    store: &dyn IncidentStore,
    channel: &str,
    rate: RateLimit,
    max_attempts: u32,
    now: DateTime<Utc>,
) -> Result<Option<DigestSummary>> {
    match store.db() {
        Db::Postgres(pool) => pg::flush_digest(&pool, channel, rate, max_attempts, now).await,
        Db::Sqlite(pool) => sqlite::flush_digest(&pool, channel, rate, max_attempts, now).await,
    }
}

/// Outbox rows, newest first.
pub async fn list(store: &dyn IncidentStore, query: &OutboxQuery) -> Result<Vec<OutboxEntry>> {
    match store.db() {
        Db::Postgres(pool) => pg::list(&pool, query).await,
        Db::Sqlite(pool) => sqlite::list(&pool, query).await,
    }
}

/// The dead letters, newest first: notifications given up on. What the API's
/// dead-letter listing serves.
pub async fn dead_letters(store: &dyn IncidentStore, limit: u32) -> Result<Vec<OutboxEntry>> {
    list(
        store,
        &OutboxQuery {
            status: Some(DeliveryStatus::Dead),
            limit: Some(limit),
            ..OutboxQuery::default()
        },
    )
    .await
}

/// Puts a dead letter back in the queue with its attempts reset (after the
/// operator fixed the channel). `false` when no dead row has that id.
pub async fn requeue(store: &dyn IncidentStore, delivery_id: Uuid) -> Result<bool> {
    let now = Utc::now();
    match store.db() {
        Db::Postgres(pool) => pg::requeue(&pool, delivery_id, now).await,
        Db::Sqlite(pool) => sqlite::requeue(&pool, delivery_id, now).await,
    }
}

/// How many outbox rows are in each status (every status present, zeros
/// included): for metrics and the API's health view.
pub async fn counts(store: &dyn IncidentStore) -> Result<BTreeMap<DeliveryStatus, u64>> {
    let rows = match store.db() {
        Db::Postgres(pool) => pg::counts(&pool).await?,
        Db::Sqlite(pool) => sqlite::counts(&pool).await?,
    };
    let mut out: BTreeMap<DeliveryStatus, u64> =
        DeliveryStatus::ALL.into_iter().map(|s| (s, 0)).collect();
    for (status, n) in rows {
        if let Some(s) = DeliveryStatus::parse(&status) {
            out.insert(s, u64::try_from(n).unwrap_or(0));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_by_elapsed_time_and_caps() {
        let r = RateLimit {
            burst: 3,
            refill_every: Duration::from_secs(10),
        };
        let t0 = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let s = chrono::Duration::seconds;
        assert_eq!(r.refill(0, t0, t0 + s(5)), (500, t0 + s(5)));
        assert_eq!(r.refill(0, t0, t0 + s(25)), (2500, t0 + s(25)));
        assert_eq!(r.refill(2500, t0, t0 + s(3600)), (3000, t0 + s(3600)));
        assert_eq!(r.refill(700, t0, t0 - s(5)), (700, t0));
        // Many tiny steps add up like one big one: no fraction is lost.
        let (mut tokens, mut at) = (0, t0);
        for ms in (3..=10_000).step_by(3) {
            (tokens, at) = r.refill(tokens, at, t0 + chrono::Duration::milliseconds(ms));
        }
        assert_eq!(tokens, 999);
        assert!(at <= t0 + s(10));
    }

    #[test]
    fn delivery_ids_are_stable_and_distinct() {
        let i = Uuid::from_u128(7);
        assert_eq!(delivery_id("slack", i, 1), delivery_id("slack", i, 1));
        assert_ne!(delivery_id("slack", i, 1), delivery_id("slack", i, 2));
        assert_ne!(delivery_id("slack", i, 1), delivery_id("email", i, 1));
        assert_eq!(delivery_id("slack", i, 1).get_version_num(), 5);
    }

    #[test]
    fn names_round_trip() {
        for e in NotifyEvent::ALL {
            assert_eq!(NotifyEvent::parse(e.as_str()), Some(e));
        }
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
    }
}
