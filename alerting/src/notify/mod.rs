//! Notifiers and the worker that drives them.
//!
//! * [`config`]: `[notifications]`, with environment overrides.
//! * [`routing`]: which channel hears about which change (enqueue side).
//! * [`slack`], [`email`], [`webhook`]: one [`Notifier`] per channel type,
//!   each rendering a [`Notification`] safely for its medium (see
//!   [`crate::render`]).
//! * [`worker`]: claims outbox rows, sends, retries with backoff, digests
//!   held rows, dead-letters.
//! * [`Notifications`]: what the binary builds once from its config and
//!   starts (see its docs for the wiring).
//!
//! Adding a channel type: a file here, one variant of
//! [`ChannelConfig`](config::ChannelConfig), one arm in
//! [`Notifications::build`].

pub mod config;
pub mod email;
mod http;
pub mod routing;
pub mod slack;
pub mod webhook;
pub mod worker;

pub use config::{
    ChannelConfig, ConfigError, EmailConfig, FormatConfig, NotificationsConfig, RateLimitConfig,
    RetryConfig, RouteConfig, SlackConfig, WebhookConfig, WorkerConfig,
};
pub use routing::{ChannelRoute, Routing};
pub use worker::{RoundStats, Worker};

use crate::lifecycle::{Lifecycle, Watermark};
use crate::outbox::{ClaimedDelivery, DigestSummary, IncidentPayload, NotifyEvent, RateLimit};
use crate::store::IncidentStore;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What a notification says.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    /// A change to one incident.
    Incident(Box<IncidentPayload>),
    /// A summary of held-back notifications.
    Digest(DigestSummary),
}

/// One message to send, decoded from an outbox row.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// The idempotency key: the same on every attempt of this notification.
    pub delivery_id: Uuid,
    /// The channel's name.
    pub channel: String,
    /// What it announces.
    pub event: NotifyEvent,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// Whether this is the first message about the incident on this channel
    /// (email starts its thread here).
    pub thread_first: bool,
    /// What to say.
    pub content: Content,
}

impl Notification {
    /// Decodes a claimed row; a payload this build cannot read is a
    /// permanent failure (retrying cannot fix it).
    pub fn from_claimed(d: &ClaimedDelivery) -> Result<Notification, NotifyError> {
        let content = match d.event {
            NotifyEvent::Digest => {
                Content::Digest(serde_json::from_value(d.payload.clone()).map_err(|e| {
                    NotifyError::Permanent {
                        reason: format!("unreadable digest payload: {e}"),
                    }
                })?)
            }
            _ => Content::Incident(Box::new(
                serde_json::from_value(d.payload.clone()).map_err(|e| NotifyError::Permanent {
                    reason: format!("unreadable incident payload: {e}"),
                })?,
            )),
        };
        Ok(Notification {
            delivery_id: d.delivery_id,
            channel: d.channel.clone(),
            event: d.event,
            attempt: d.attempts,
            thread_first: d.thread_first,
            content,
        })
    }
}

/// Why a send failed, which decides what the worker does next.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Might work later (connection refused, timeout, 5xx, SMTP 4xx): retry
    /// with backoff.
    #[error("Delivery failed and will be retried: {reason}")]
    Transient {
        /// What happened (never a URL or a credential).
        reason: String,
    },
    /// The receiver asked to slow down (HTTP 429): retry after
    /// `retry_after` (its `Retry-After`), or with backoff when it gave none.
    #[error("Receiver is rate limiting (retry after {retry_after:?})")]
    RateLimited {
        /// The receiver's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Will never work as it is (HTTP 4xx other than 408/429, SMTP 5xx, an
    /// unreadable payload): dead-letter now.
    #[error("Delivery refused: {reason}")]
    Permanent {
        /// What happened.
        reason: String,
    },
}

/// Sends notifications to one channel. Implementations render for their
/// medium, carry the notification's `delivery_id` as an idempotency key, and
/// classify failures into [`NotifyError`]s.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// The channel's name (for logs).
    fn name(&self) -> &str;

    /// Sends one notification; `Ok` only once the receiver accepted it.
    async fn send(&self, notification: &Notification) -> Result<(), NotifyError>;
}

/// A configured channel: its notifier and its delivery settings.
#[derive(Clone)]
pub struct Channel {
    /// The channel's name.
    pub name: String,
    /// Who sends.
    pub notifier: Arc<dyn Notifier>,
    /// Flood control (for digests).
    pub rate_limit: Option<RateLimit>,
    /// How long one send may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("rate_limit", &self.rate_limit)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Notifications, built once from `[notifications]`: hands the routing to
/// the manager and the lifecycle, runs the outbox worker and the
/// auto-resolver.
///
/// The binary's wiring:
///
/// ```ignore
/// let mut cfg = config.notifications.clone();       // [notifications]
/// cfg.apply_env(|k| std::env::var(k).ok());
/// let notifications = Notifications::build(&cfg, store.clone())?; // validates; no I/O
/// let watermark = Watermark::new();                // advanced by the pipeline
/// let manager = IncidentManager::new(store.clone(), ManagerConfig {
///     notifications: notifications.routing(),
///     watermark: Some(watermark.clone()),
///     ..ManagerConfig::default()
/// });
/// let lifecycle = notifications.lifecycle();       // for the API's ack/resolve/reopen/assign
/// let worker = notifications.spawn_worker(shutdown.clone());
/// let resolver = notifications.spawn_auto_resolver(watermark, shutdown.clone());
/// // … on shutdown: shutdown.cancel(); worker.await; resolver.await
/// ```
pub struct Notifications {
    store: Arc<dyn IncidentStore>,
    config: NotificationsConfig,
    routing: Arc<Routing>,
    channels: Vec<Channel>,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifications")
            .field("backend", &self.store.backend())
            .field("config", &self.config)
            .field("channels", &self.channels)
            .finish()
    }
}

impl Notifications {
    /// Validates `config` and builds a notifier per channel (no I/O: SMTP
    /// and HTTP connections open on first use).
    pub fn build(
        config: &NotificationsConfig,
        store: Arc<dyn IncidentStore>,
    ) -> Result<Notifications, ConfigError> {
        config.validate()?;
        let mut channels = Vec::with_capacity(config.channels.len());
        for c in &config.channels {
            let notifier: Arc<dyn Notifier> = match c {
                ChannelConfig::Slack(s) => {
                    Arc::new(slack::SlackNotifier::new(s, &config.public_url)?)
                }
                ChannelConfig::Email(e) => {
                    Arc::new(email::EmailNotifier::new(e, &config.public_url)?)
                }
                ChannelConfig::Webhook(w) => {
                    Arc::new(webhook::WebhookNotifier::new(w, &config.public_url)?)
                }
            };
            channels.push(Channel {
                name: c.name().to_owned(),
                notifier,
                rate_limit: c.rate_limit().rate_limit(),
                timeout: c.timeout(),
            });
        }
        Ok(Notifications {
            store,
            routing: Arc::new(Routing::from_config(config)),
            config: config.clone(),
            channels,
        })
    }

    /// The routing for
    /// [`ManagerConfig::notifications`](crate::ManagerConfig::notifications);
    /// `None` when no channel is configured (nothing is enqueued then).
    pub fn routing(&self) -> Option<Arc<Routing>> {
        (!self.routing.is_empty()).then(|| Arc::clone(&self.routing))
    }

    /// Lifecycle operations that notify per the routing: what the API calls
    /// for acknowledge, resolve, reopen and assign.
    pub fn lifecycle(&self) -> Lifecycle {
        Lifecycle::new(Arc::clone(&self.store), self.routing())
    }

    /// The configured channels.
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// The validated configuration.
    pub fn config(&self) -> &NotificationsConfig {
        &self.config
    }

    /// A worker named `id` (several may run, in one process or many).
    pub fn worker(&self, id: impl Into<String>) -> Worker {
        Worker::new(
            Arc::clone(&self.store),
            id.into(),
            self.channels.clone(),
            &self.config,
        )
    }

    /// Starts one outbox worker task; it finishes the round in flight and
    /// returns when `shutdown` is cancelled. Unfinished rows are picked up
    /// by the next start (after their lease).
    pub fn spawn_worker(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        self.spawn_observed_worker(None, shutdown)
    }

    /// [`Notifications::spawn_worker`], reporting each delivery outcome to
    /// `observer` (for metrics).
    pub fn spawn_observed_worker(
        &self,
        observer: Option<worker::OutcomeObserver>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let worker = self
            .worker(format!("worker-{}", Uuid::new_v4().simple()))
            .with_observer(observer);
        tokio::spawn(worker.run(shutdown))
    }

    /// Starts the auto-resolver against `watermark`; `None` when
    /// `auto_resolve_after_secs` is 0.
    pub fn spawn_auto_resolver(
        &self,
        watermark: Watermark,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        (self.config.auto_resolve_after_secs > 0).then(|| {
            crate::lifecycle::spawn_auto_resolver(
                self.lifecycle(),
                watermark,
                Duration::from_secs(self.config.auto_resolve_after_secs),
                Duration::from_secs(self.config.auto_resolve_interval_secs),
                shutdown,
            )
        })
    }
}
