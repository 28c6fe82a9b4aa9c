//! The outbox worker: claims due rows, sends them, records the outcome.
//!
//! One round: (1) for every rate-limited channel with held rows, try to
//! turn them into a digest (needs a token); (2) claim up to `batch_size`
//! due rows (lease `lease_secs`); (3) send them, channels concurrently and
//! each channel's rows in order, each bounded by its channel's timeout;
//! (4) record each outcome against its claim:
//!
//! * success → `delivered`;
//! * [`NotifyError::Transient`] → retry after an exponential backoff with
//!   jitter (`initial_backoff_ms · 2^(attempt-1)`, capped at
//!   `max_backoff_secs`, drawn uniformly from its upper half), or `dead`
//!   once `max_attempts` attempts were made;
//! * [`NotifyError::RateLimited`] → retry after the receiver's
//!   `Retry-After` (capped at `max_retry_after_secs`; backoff when absent)
//!   and pause the whole channel until then: rows of a paused channel
//!   claimed meanwhile are released without using up an attempt;
//! * [`NotifyError::Permanent`] → `dead` at once.
//!
//! Several workers (tasks or instances) can run: claims never overlap. A
//! worker that stops between claim and outcome leaves its rows to the
//! others after the lease.

use super::config::{NotificationsConfig, RetryConfig};
use super::{Channel, Notification, NotifyError};
use crate::outbox::{self, chrono_duration, ClaimedDelivery, Outcome};
use crate::store::{IncidentStore, StoreError};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A row's fate in a round.
enum Attempt {
    /// Sent, with this result.
    Sent(Result<(), NotifyError>),
    /// Not sent: an earlier row of its channel was rate limited.
    Skipped,
}

/// What one round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundStats {
    /// Digest rows created from held rows.
    pub digests: u64,
    /// Rows claimed.
    pub claimed: u64,
    /// Rows delivered.
    pub delivered: u64,
    /// Rows scheduled for another attempt.
    pub retried: u64,
    /// Rows released unattempted (channel paused).
    pub released: u64,
    /// Rows given up (dead letters).
    pub dead: u64,
    /// Outcomes not recorded because the claim had expired.
    pub lost_claims: u64,
}

/// Claims and delivers outbox rows. Build with
/// [`Notifications::worker`](super::Notifications::worker).
pub struct Worker {
    store: Arc<dyn IncidentStore>,
    id: String,
    channels: HashMap<String, Channel>,
    retry: RetryConfig,
    poll: Duration,
    batch: u32,
    lease: Duration,
    paused: HashMap<String, DateTime<Utc>>,
    observer: Option<OutcomeObserver>,
}

/// Told `(channel, outcome)` for every recorded delivery outcome
/// (`delivered`, `retried`, `released`, `dead`), so the binary can count
/// them in its metrics without this crate knowing any metrics library.
pub type OutcomeObserver = Arc<dyn Fn(&str, &str) + Send + Sync>;

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("channels", &self.channels.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker over `channels` with `config`'s retry and pace.
    pub fn new(
        store: Arc<dyn IncidentStore>,
        id: String,
        channels: Vec<Channel>,
        config: &NotificationsConfig,
    ) -> Self {
        Worker {
            store,
            id,
            channels: channels.into_iter().map(|c| (c.name.clone(), c)).collect(),
            retry: config.retry.clone(),
            poll: Duration::from_millis(config.worker.poll_interval_ms),
            batch: config.worker.batch_size,
            lease: Duration::from_secs(config.worker.lease_secs),
            paused: HashMap::new(),
            observer: None,
        }
    }

    /// Reports every recorded outcome to `observer`.
    pub fn with_observer(mut self, observer: Option<OutcomeObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Overrides the lease (tests use sub-second leases).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// This worker's id (recorded as `claimed_by`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs rounds until `shutdown`; a round in flight is finished first.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(worker = %self.id, channels = self.channels.len(), "Notification worker started.");
        loop {
            let busy = match self.run_once().await {
                Ok(stats) => stats.claimed >= u64::from(self.batch) || stats.digests > 0,
                Err(error) => {
                    tracing::warn!(worker = %self.id, error = %error, "Notification round failed; retrying after the poll interval.");
                    false
                }
            };
            if shutdown.is_cancelled() {
                break;
            }
            if !busy {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(self.poll) => {}
                }
            }
        }
        tracing::info!(worker = %self.id, "Notification worker stopped.");
    }

    /// One round (see the module docs).
    pub async fn run_once(&mut self) -> Result<RoundStats, StoreError> {
        let mut stats = RoundStats::default();
        let now = Utc::now();
        self.paused.retain(|_, until| *until > now);
        for channel in self.channels.values() {
            let Some(rate) = channel.rate_limit else {
                continue;
            };
            if !outbox::has_held(&*self.store, &channel.name).await? {
                continue;
            }
            if let Some(d) = outbox::flush_digest(
                &*self.store,
                &channel.name,
                rate,
                self.retry.max_attempts,
                Utc::now(),
            )
            .await?
            {
                tracing::info!(
                    channel = %channel.name,
                    held = d.held,
                    clients = d.clients,
                    "Held notifications summarised in a digest."
                );
                stats.digests += 1;
            }
        }
        let claimed =
            outbox::claim(&*self.store, &self.id, Utc::now(), self.lease, self.batch).await?;
        stats.claimed = claimed.len() as u64;
        // Per channel, in claim order: one channel's messages arrive in the
        // order they were enqueued (an email thread's first mail first), and
        // a 429 stops the rest of that channel's batch. Channels run
        // concurrently.
        let mut by_channel: BTreeMap<String, Vec<ClaimedDelivery>> = BTreeMap::new();
        for d in claimed {
            by_channel.entry(d.channel.clone()).or_default().push(d);
        }
        let mut sends = JoinSet::new();
        for (name, rows) in by_channel {
            let now = Utc::now();
            let Some(channel) = self.channels.get(&name) else {
                for d in rows {
                    let error = format!("channel {name:?} is not configured");
                    self.record(&d, Outcome::Dead { error }, &mut stats).await?;
                }
                continue;
            };
            if let Some(until) = self.paused.get(&name).copied().filter(|t| *t > now) {
                for d in rows {
                    let reason = "channel paused by the receiver's Retry-After".to_owned();
                    self.record(&d, Outcome::Release { at: until, reason }, &mut stats)
                        .await?;
                }
                continue;
            }
            let notifier = Arc::clone(&channel.notifier);
            let limit = channel.timeout + Duration::from_secs(1);
            sends.spawn(async move {
                let mut done = Vec::with_capacity(rows.len());
                let mut slowed = false;
                for d in rows {
                    if slowed {
                        done.push((d, Attempt::Skipped));
                        continue;
                    }
                    let result = match Notification::from_claimed(&d) {
                        Err(e) => Err(e),
                        Ok(n) => match tokio::time::timeout(limit, notifier.send(&n)).await {
                            Ok(r) => r,
                            Err(_) => Err(NotifyError::Transient {
                                reason: "timed out".into(),
                            }),
                        },
                    };
                    slowed = matches!(result, Err(NotifyError::RateLimited { .. }));
                    done.push((d, Attempt::Sent(result)));
                }
                done
            });
        }
        while let Some(joined) = sends.join_next().await {
            let Ok(done) = joined else {
                // A panicking notifier: its rows come back after the lease.
                continue;
            };
            for (d, attempt) in done {
                let outcome = match attempt {
                    Attempt::Sent(result) => self.outcome(&d, result),
                    Attempt::Skipped => Outcome::Release {
                        at: self
                            .paused
                            .get(&d.channel)
                            .copied()
                            .unwrap_or_else(Utc::now),
                        reason: "channel paused by the receiver's Retry-After".into(),
                    },
                };
                self.record(&d, outcome, &mut stats).await?;
            }
        }
        Ok(stats)
    }

    /// Runs rounds until one finds nothing to do (no claim, no digest), or
    /// `deadline` passes; for tests and for draining at shutdown.
    pub async fn drain(&mut self, deadline: Duration) -> Result<RoundStats, StoreError> {
        let start = tokio::time::Instant::now();
        let mut total = RoundStats::default();
        loop {
            let s = self.run_once().await?;
            total.digests += s.digests;
            total.claimed += s.claimed;
            total.delivered += s.delivered;
            total.retried += s.retried;
            total.released += s.released;
            total.dead += s.dead;
            total.lost_claims += s.lost_claims;
            if (s.claimed == 0 && s.digests == 0) || start.elapsed() >= deadline {
                return Ok(total);
            }
        }
    }

    fn outcome(&mut self, d: &ClaimedDelivery, result: Result<(), NotifyError>) -> Outcome {
        let now = Utc::now();
        let exhausted = d.attempts >= d.max_attempts;
        match result {
            Ok(()) => Outcome::Delivered,
            Err(NotifyError::Permanent { reason }) => Outcome::Dead { error: reason },
            Err(NotifyError::Transient { reason }) if exhausted => Outcome::Dead {
                error: format!("gave up after {} attempts: {reason}", d.attempts),
            },
            Err(NotifyError::Transient { reason }) => Outcome::Retry {
                at: now + chrono_duration(backoff(&self.retry, d.attempts)),
                error: reason,
            },
            Err(NotifyError::RateLimited { retry_after }) => {
                let cap = Duration::from_secs(self.retry.max_retry_after_secs);
                let wait = retry_after
                    .unwrap_or_else(|| backoff(&self.retry, d.attempts))
                    .min(cap);
                let at = now + chrono_duration(wait);
                self.paused
                    .entry(d.channel.clone())
                    .and_modify(|t| *t = (*t).max(at))
                    .or_insert(at);
                if exhausted {
                    Outcome::Dead {
                        error: format!("gave up after {} attempts: rate limited", d.attempts),
                    }
                } else {
                    Outcome::Retry {
                        at,
                        error: format!("rate limited; retry after {} ms", wait.as_millis()),
                    }
                }
            }
        }
    }

    async fn record(
        &self,
        d: &ClaimedDelivery,
        outcome: Outcome,
        stats: &mut RoundStats,
    ) -> Result<(), StoreError> {
        let mine = outbox::finish(&*self.store, d, &outcome, Utc::now()).await?;
        if !mine {
            stats.lost_claims += 1;
            tracing::warn!(
                channel = %d.channel,
                delivery_id = %d.delivery_id,
                "Delivery outcome not recorded: the claim expired and another worker owns the row."
            );
            return Ok(());
        }
        if let Some(observe) = &self.observer {
            let name = match &outcome {
                Outcome::Delivered => "delivered",
                Outcome::Retry { .. } => "retried",
                Outcome::Release { .. } => "released",
                Outcome::Dead { .. } => "dead",
            };
            observe(&d.channel, name);
        }
        match &outcome {
            Outcome::Delivered => {
                stats.delivered += 1;
                tracing::debug!(channel = %d.channel, delivery_id = %d.delivery_id, event = %d.event, attempt = d.attempts, "Notification delivered.");
            }
            Outcome::Retry { at, error } => {
                stats.retried += 1;
                tracing::warn!(
                    channel = %d.channel,
                    delivery_id = %d.delivery_id,
                    attempt = d.attempts,
                    max_attempts = d.max_attempts,
                    retry_in_ms = (*at - Utc::now()).num_milliseconds().max(0),
                    error = %error,
                    "Notification delivery failed; retrying."
                );
            }
            Outcome::Release { .. } => stats.released += 1,
            Outcome::Dead { error } => {
                stats.dead += 1;
                tracing::error!(
                    channel = %d.channel,
                    delivery_id = %d.delivery_id,
                    attempt = d.attempts,
                    error = %error,
                    "Notification given up; it is in the dead letters."
                );
            }
        }
        Ok(())
    }
}

/// The delay before the attempt after attempt `attempt` (1-based):
/// exponential, capped, with "equal jitter" (uniform in the upper half) so
/// workers retrying a recovered receiver do not stampede it together.
pub fn backoff(retry: &RetryConfig, attempt: u32) -> Duration {
    let cap_ms = retry.max_backoff_secs.saturating_mul(1000);
    let exp = attempt.saturating_sub(1).min(32);
    let full = retry
        .initial_backoff_ms
        .saturating_mul(1u64 << exp)
        .min(cap_ms)
        .max(1);
    let half = full / 2;
    Duration::from_millis(half + fastrand::u64(0..=full - half))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let r = RetryConfig {
            initial_backoff_ms: 100,
            max_backoff_secs: 1,
            ..RetryConfig::default()
        };
        for _ in 0..100 {
            let b1 = backoff(&r, 1).as_millis();
            assert!((50..=100).contains(&b1), "{b1}");
            let b3 = backoff(&r, 3).as_millis();
            assert!((200..=400).contains(&b3), "{b3}");
            let b20 = backoff(&r, 20).as_millis();
            assert!((500..=1000).contains(&b20), "{b20}");
        }
    }
}
