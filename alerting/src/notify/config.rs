//! `[notifications]`: channels, their routing and rate limits, retries, and
//! the lifecycle's auto-resolve.
//!
//! ```toml
//! [notifications]
//! public_url = "https://gatewatch.example.org"
//! auto_resolve_after_secs = 3600
//!
//! [[notifications.channels]]
//! type = "slack"
//! name = "soc-slack"
//! webhook_url = "https://hooks.slack.com/services/T000/B000/XXXX"
//! route = { min_severity = "high", kinds = ["credential_stuffing"] }
//! rate_limit = { burst = 5, refill_every_secs = 60 }
//!
//! [[notifications.channels]]
//! type = "email"
//! name = "soc-mail"
//! smtp_url = "smtp://user:pass@mail.example.org:587?tls=starttls"
//! from = "gatewatch <gatewatch@example.org>"
//! to = ["soc@example.org"]
//!
//! [[notifications.channels]]
//! type = "webhook"
//! name = "soar"
//! url = "https://soar.example.org/hooks/gatewatch"
//! secret = "…"
//! ```
//!
//! Without a config file, [`NotificationsConfig::apply_env`] switches
//! channels on from `GATEWATCH_SLACK_WEBHOOK_URL`, `GATEWATCH_SMTP_URL` +
//! `GATEWATCH_EMAIL_FROM` + `GATEWATCH_EMAIL_TO`, and
//! `GATEWATCH_WEBHOOK_URL` + `GATEWATCH_WEBHOOK_SECRET`.
//! [`NotificationsConfig::validate`] checks everything before any I/O.

use crate::outbox::{NotifyEvent, RateLimit};
use crate::secret::Secret;
use gatewatch_detector::{IncidentKind, Severity};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

/// Environment variable: a Slack incoming-webhook URL (adds or overrides the
/// channel named `slack`).
pub const ENV_SLACK_WEBHOOK_URL: &str = "GATEWATCH_SLACK_WEBHOOK_URL";
/// Environment variable: the SMTP server (`smtp://host:port` plain,
/// `smtp://…?tls=starttls` STARTTLS, `smtps://user:pass@host` implicit TLS);
/// adds or overrides the channel named `email`.
pub const ENV_SMTP_URL: &str = "GATEWATCH_SMTP_URL";
/// Environment variable: the sender of notification emails.
pub const ENV_EMAIL_FROM: &str = "GATEWATCH_EMAIL_FROM";
/// Environment variable: recipients of notification emails, comma-separated.
pub const ENV_EMAIL_TO: &str = "GATEWATCH_EMAIL_TO";
/// Environment variable: a generic webhook URL (adds or overrides the channel
/// named `webhook`).
pub const ENV_WEBHOOK_URL: &str = "GATEWATCH_WEBHOOK_URL";
/// Environment variable: the webhook's HMAC-SHA256 signing secret.
pub const ENV_WEBHOOK_SECRET: &str = "GATEWATCH_WEBHOOK_SECRET";

/// The `[notifications]` section of the binary's TOML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Base URL of gatewatch's web page as people reach it; messages link to
    /// `{public_url}/#/incidents/{id}`. Default: `http://127.0.0.1:8080`.
    #[serde(default = "default_public_url")]
    pub public_url: String,
    /// Resolve an unresolved incident after this many seconds without
    /// activity, in event time (see [`crate::lifecycle`]); 0 turns
    /// auto-resolve off. Keep it at least the manager's merge gap.
    /// Default: 3600.
    #[serde(default = "default_auto_resolve_after_secs")]
    pub auto_resolve_after_secs: u64,
    /// How often the auto-resolver looks for quiet incidents (wall-clock
    /// seconds). Default: 30.
    #[serde(default = "default_auto_resolve_interval_secs")]
    pub auto_resolve_interval_secs: u64,
    /// Retries and dead-lettering, for every channel.
    #[serde(default)]
    pub retry: RetryConfig,
    /// The outbox worker.
    #[serde(default)]
    pub worker: WorkerConfig,
    /// Where notifications go. Empty: incidents are stored, nobody is told.
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
}

fn default_public_url() -> String {
    "http://127.0.0.1:8080".to_owned()
}
fn default_auto_resolve_after_secs() -> u64 {
    3600
}
fn default_auto_resolve_interval_secs() -> u64 {
    30
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            public_url: default_public_url(),
            auto_resolve_after_secs: default_auto_resolve_after_secs(),
            auto_resolve_interval_secs: default_auto_resolve_interval_secs(),
            retry: RetryConfig::default(),
            worker: WorkerConfig::default(),
            channels: Vec::new(),
        }
    }
}

/// How failed deliveries are retried: exponential backoff with jitter, a
/// `Retry-After` on 429 honoured (capped), then the dead letters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per notification before it becomes a dead letter (a 429 or
    /// a crash counts as an attempt). Default: 8.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the second attempt, in milliseconds; doubles per
    /// attempt, with the actual delay drawn between half and all of it.
    /// Default: 1000.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest delay between attempts, in seconds. Default: 600.
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: u64,
    /// Longest `Retry-After` honoured, in seconds (a receiver asking for
    /// more is retried after this). Default: 3600.
    #[serde(default = "default_max_retry_after_secs")]
    pub max_retry_after_secs: u64,
}

fn default_max_attempts() -> u32 {
    8
}
fn default_initial_backoff_ms() -> u64 {
    1000
}
fn default_max_backoff_secs() -> u64 {
    600
}
fn default_max_retry_after_secs() -> u64 {
    3600
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: default_max_attempts(),
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_secs: default_max_backoff_secs(),
            max_retry_after_secs: default_max_retry_after_secs(),
        }
    }
}

/// The outbox worker's pace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// How often an idle worker looks for due notifications and digests, in
    /// milliseconds. Default: 1000.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Rows claimed (and sent concurrently) per round. Default: 16.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// How long a claim lasts, in seconds: a worker that dies mid-send
    /// leaves rows that other workers pick up after this. Must exceed every
    /// channel's `timeout_secs`. Default: 60.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

fn default_poll_interval_ms() -> u64 {
    1000
}
fn default_batch_size() -> u32 {
    16
}
fn default_lease_secs() -> u64 {
    60
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            poll_interval_ms: default_poll_interval_ms(),
            batch_size: default_batch_size(),
            lease_secs: default_lease_secs(),
        }
    }
}

/// One place notifications go. The `type` key picks the variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChannelConfig {
    /// A Slack incoming webhook (Block Kit messages).
    Slack(SlackConfig),
    /// Email over SMTP (text + HTML, threaded per incident).
    Email(EmailConfig),
    /// A generic signed JSON POST (SOAR tools, paging services).
    Webhook(WebhookConfig),
}

/// What every channel has, whatever its type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Only these kinds; empty means every kind. Default: empty.
    #[serde(default)]
    pub kinds: Vec<IncidentKind>,
    /// Only incidents at this severity or above (after the change).
    /// Default: `medium`.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Notify when an incident is opened. Default: true.
    #[serde(default = "yes")]
    pub on_open: bool,
    /// Notify when an incident's severity rises. Default: true.
    #[serde(default = "yes")]
    pub on_escalate: bool,
    /// Notify when a resolved incident comes back. Default: true.
    #[serde(default = "yes")]
    pub on_reopen: bool,
    /// Notify when an incident is acknowledged. Default: false.
    #[serde(default)]
    pub on_acknowledge: bool,
    /// Notify when an incident is resolved (by hand or automatically).
    /// Default: false.
    #[serde(default)]
    pub on_resolve: bool,
}

fn default_min_severity() -> Severity {
    Severity::Medium
}
fn yes() -> bool {
    true
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            kinds: Vec::new(),
            min_severity: default_min_severity(),
            on_open: true,
            on_escalate: true,
            on_reopen: true,
            on_acknowledge: false,
            on_resolve: false,
        }
    }
}

impl RouteConfig {
    /// The events this route wants.
    pub fn events(&self) -> BTreeSet<NotifyEvent> {
        [
            (self.on_open, NotifyEvent::Opened),
            (self.on_escalate, NotifyEvent::Escalated),
            (self.on_reopen, NotifyEvent::Reopened),
            (self.on_acknowledge, NotifyEvent::Acknowledged),
            (self.on_resolve, NotifyEvent::Resolved),
        ]
        .into_iter()
        .filter_map(|(on, e)| on.then_some(e))
        .collect()
    }
}

/// A channel's flood control: a token bucket; notifications beyond it are
/// held and summarised in one digest when a token is back (see
/// [`crate::outbox`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Whether to limit at all. Default: true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Messages that may go out back to back. Default: 5.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Seconds to earn one message back (a digest is one message).
    /// Default: 60.
    #[serde(default = "default_refill_every_secs")]
    pub refill_every_secs: u64,
}

fn default_burst() -> u32 {
    5
}
fn default_refill_every_secs() -> u64 {
    60
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            burst: default_burst(),
            refill_every_secs: default_refill_every_secs(),
        }
    }
}

impl RateLimitConfig {
    /// The bucket, when enabled.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.enabled.then(|| RateLimit {
            burst: self.burst,
            refill_every: Duration::from_secs(self.refill_every_secs),
        })
    }
}

/// How messages look (the templates-ish part).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatConfig {
    /// Put before every title and email subject. Default: `[gatewatch]`.
    #[serde(default = "default_title_prefix")]
    pub title_prefix: String,
    /// Evidence lines (sample paths, users, counts) per message. Default: 5.
    #[serde(default = "default_evidence_lines")]
    pub evidence_lines: usize,
}

fn default_title_prefix() -> String {
    "[gatewatch]".to_owned()
}
fn default_evidence_lines() -> usize {
    5
}

impl Default for FormatConfig {
    fn default() -> Self {
        FormatConfig {
            title_prefix: default_title_prefix(),
            evidence_lines: default_evidence_lines(),
        }
    }
}

/// A Slack incoming webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The channel's name: in logs, the outbox and the dead letters; unique.
    pub name: String,
    /// The incoming-webhook URL (`https://hooks.slack.com/services/…`): a
    /// credential, never printed.
    #[serde(skip_serializing)]
    pub webhook_url: Secret,
    /// Which incidents and events go here.
    #[serde(default)]
    pub route: RouteConfig,
    /// Flood control.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Message format.
    #[serde(default)]
    pub format: FormatConfig,
    /// Seconds one delivery may take. Default: 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// Email over SMTP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The channel's name; unique.
    pub name: String,
    /// The SMTP server: `smtp://host:port` (plain, for a local relay),
    /// `smtp://host:587?tls=starttls` (STARTTLS required),
    /// `smtps://host:465` (implicit TLS); `user:password@` for AUTH. Never
    /// printed.
    #[serde(skip_serializing)]
    pub smtp_url: Secret,
    /// The sender (`gatewatch <gatewatch@example.org>`); its domain also
    /// names the Message-IDs.
    pub from: String,
    /// Recipients (at least one).
    pub to: Vec<String>,
    /// Which incidents and events go here.
    #[serde(default)]
    pub route: RouteConfig,
    /// Flood control.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Message format.
    #[serde(default)]
    pub format: FormatConfig,
    /// Seconds one delivery may take. Default: 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// A PEM file of CA certificates to trust besides the public ones, for
    /// a relay whose certificate a private CA signed (common inside
    /// companies). Read when the channel is built.
    #[serde(default)]
    pub tls_ca_file: Option<std::path::PathBuf>,
}

/// A generic JSON webhook, signed with HMAC-SHA256 (see
/// [`crate::notify::webhook`] for the receiver's side).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The channel's name; unique.
    pub name: String,
    /// Where to POST (http or https). Treated as a secret: such URLs often
    /// embed a routing key.
    #[serde(skip_serializing)]
    pub url: Secret,
    /// The HMAC-SHA256 key of `X-Gatewatch-Signature` (required).
    #[serde(skip_serializing)]
    pub secret: Secret,
    /// Which incidents and events go here.
    #[serde(default)]
    pub route: RouteConfig,
    /// Flood control.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Seconds one delivery may take. Default: 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    10
}

impl ChannelConfig {
    /// The channel's name.
    pub fn name(&self) -> &str {
        match self {
            ChannelConfig::Slack(c) => &c.name,
            ChannelConfig::Email(c) => &c.name,
            ChannelConfig::Webhook(c) => &c.name,
        }
    }

    /// `slack`, `email` or `webhook`.
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelConfig::Slack(_) => "slack",
            ChannelConfig::Email(_) => "email",
            ChannelConfig::Webhook(_) => "webhook",
        }
    }

    /// The channel's routing.
    pub fn route(&self) -> &RouteConfig {
        match self {
            ChannelConfig::Slack(c) => &c.route,
            ChannelConfig::Email(c) => &c.route,
            ChannelConfig::Webhook(c) => &c.route,
        }
    }

    /// The channel's flood control.
    pub fn rate_limit(&self) -> &RateLimitConfig {
        match self {
            ChannelConfig::Slack(c) => &c.rate_limit,
            ChannelConfig::Email(c) => &c.rate_limit,
            ChannelConfig::Webhook(c) => &c.rate_limit,
        }
    }

    /// Seconds one delivery may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(match self {
            ChannelConfig::Slack(c) => c.timeout_secs,
            ChannelConfig::Email(c) => c.timeout_secs,
            ChannelConfig::Webhook(c) => c.timeout_secs,
        })
    }
}

/// A configuration that cannot work, found before any I/O.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Two channels share a name, or one has none.
    #[error("Notification channel names must be unique and non-empty (found {name:?})")]
    ChannelName {
        /// The offending name.
        name: String,
    },
    /// A URL does not parse or has the wrong scheme. The URL itself is not
    /// repeated (it may hold a credential).
    #[error("Notification channel {channel:?}: {field} is not a valid {expected} URL")]
    Url {
        /// The channel (or `public_url`).
        channel: String,
        /// The field.
        field: &'static str,
        /// What was expected (`http(s)`, `smtp(s)`).
        expected: &'static str,
    },
    /// An email address does not parse.
    #[error("Notification channel {channel:?}: {field} has an invalid email address {value:?}")]
    Address {
        /// The channel.
        channel: String,
        /// `from` or `to`.
        field: &'static str,
        /// The address as written.
        value: String,
    },
    /// A channel's client could not be set up (TLS, resolver).
    #[error("Notification channel {channel:?} could not be set up: {reason}")]
    Build {
        /// The channel.
        channel: String,
        /// What failed (never the URL).
        reason: String,
    },
    /// A required value is missing or zero.
    #[error("Notification channel {channel:?}: {field} {problem}")]
    Invalid {
        /// The channel (or the section).
        channel: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
}

impl NotificationsConfig {
    /// Adds or overrides channels from the environment (see the module
    /// docs). `var` reads one variable (`|k| std::env::var(k).ok()` in the
    /// binary); empty values count as unset. A variable whose companions are
    /// missing still creates the channel, and [`validate`](Self::validate)
    /// then says what is missing.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        if let Some(url) = get(ENV_SLACK_WEBHOOK_URL) {
            match self.channel_mut("slack") {
                Some(ChannelConfig::Slack(c)) => c.webhook_url = Secret::new(url),
                _ => self.channels.push(ChannelConfig::Slack(SlackConfig {
                    name: "slack".into(),
                    webhook_url: Secret::new(url),
                    route: RouteConfig::default(),
                    rate_limit: RateLimitConfig::default(),
                    format: FormatConfig::default(),
                    timeout_secs: default_timeout_secs(),
                })),
            }
        }
        let smtp = get(ENV_SMTP_URL);
        let from = get(ENV_EMAIL_FROM);
        let to = get(ENV_EMAIL_TO).map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
        });
        if smtp.is_some()
            || (self.channel_mut("email").is_some() && (from.is_some() || to.is_some()))
        {
            match self.channel_mut("email") {
                Some(ChannelConfig::Email(c)) => {
                    if let Some(url) = smtp {
                        c.smtp_url = Secret::new(url);
                    }
                    if let Some(from) = from {
                        c.from = from;
                    }
                    if let Some(to) = to {
                        c.to = to;
                    }
                }
                _ => self.channels.push(ChannelConfig::Email(EmailConfig {
                    name: "email".into(),
                    smtp_url: Secret::new(smtp.unwrap_or_default()),
                    from: from.unwrap_or_default(),
                    to: to.unwrap_or_default(),
                    route: RouteConfig::default(),
                    rate_limit: RateLimitConfig::default(),
                    format: FormatConfig::default(),
                    timeout_secs: default_timeout_secs(),
                    tls_ca_file: None,
                })),
            }
        }
        let hook = get(ENV_WEBHOOK_URL);
        let secret = get(ENV_WEBHOOK_SECRET);
        if hook.is_some() || (secret.is_some() && self.channel_mut("webhook").is_some()) {
            match self.channel_mut("webhook") {
                Some(ChannelConfig::Webhook(c)) => {
                    if let Some(url) = hook {
                        c.url = Secret::new(url);
                    }
                    if let Some(secret) = secret {
                        c.secret = Secret::new(secret);
                    }
                }
                _ => self.channels.push(ChannelConfig::Webhook(WebhookConfig {
                    name: "webhook".into(),
                    url: Secret::new(hook.unwrap_or_default()),
                    secret: Secret::new(secret.unwrap_or_default()),
                    route: RouteConfig::default(),
                    rate_limit: RateLimitConfig::default(),
                    timeout_secs: default_timeout_secs(),
                })),
            }
        }
    }

    fn channel_mut(&mut self, name: &str) -> Option<&mut ChannelConfig> {
        self.channels.iter_mut().find(|c| c.name() == name)
    }

    /// Checks every cross-field rule; the binary calls this before starting
    /// anything ([`Notifications::build`](crate::notify::Notifications::build)
    /// calls it too).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let section = || "notifications".to_owned();
        match url::Url::parse(&self.public_url) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && !self.public_url.contains(['|', '<', '>', ' ', '"']) => {}
            _ => {
                return Err(ConfigError::Url {
                    channel: section(),
                    field: "public_url",
                    expected: "http(s)",
                })
            }
        }
        let invalid = |channel: String, field, problem| {
            Err(ConfigError::Invalid {
                channel,
                field,
                problem,
            })
        };
        if self.retry.max_attempts == 0 {
            return invalid(section(), "retry.max_attempts", "must be at least 1");
        }
        if self.retry.initial_backoff_ms == 0 || self.retry.max_backoff_secs == 0 {
            return invalid(section(), "retry backoff", "must be positive");
        }
        if self.worker.batch_size == 0 || self.worker.poll_interval_ms == 0 {
            return invalid(
                section(),
                "worker.batch_size/poll_interval_ms",
                "must be positive",
            );
        }
        if self.auto_resolve_after_secs > 0 && self.auto_resolve_interval_secs == 0 {
            return invalid(section(), "auto_resolve_interval_secs", "must be positive");
        }
        let mut names = HashSet::new();
        for channel in &self.channels {
            let name = channel.name().to_owned();
            if name.trim().is_empty() || name.len() > 100 || !names.insert(name.clone()) {
                return Err(ConfigError::ChannelName { name });
            }
            let rate = channel.rate_limit();
            if rate.enabled && (rate.burst == 0 || rate.refill_every_secs == 0) {
                return invalid(
                    name,
                    "rate_limit",
                    "needs burst and refill_every_secs above 0",
                );
            }
            if channel.timeout().is_zero() {
                return invalid(name, "timeout_secs", "must be positive");
            }
            if channel.timeout() >= Duration::from_secs(self.worker.lease_secs) {
                return invalid(
                    name,
                    "timeout_secs",
                    "must be below worker.lease_secs, or a slow send is sent twice",
                );
            }
            match channel {
                ChannelConfig::Slack(c) => check_http(&name, "webhook_url", &c.webhook_url)?,
                ChannelConfig::Webhook(c) => {
                    check_http(&name, "url", &c.url)?;
                    if c.secret.is_empty() {
                        return invalid(name, "secret", "is required to sign requests");
                    }
                }
                ChannelConfig::Email(c) => {
                    crate::notify::email::SmtpTarget::parse(c.smtp_url.expose())
                        .map_err(|e| e.into_config_error(&name))?;
                    if c.from.parse::<lettre::message::Mailbox>().is_err() {
                        return Err(ConfigError::Address {
                            channel: name,
                            field: "from",
                            value: c.from.clone(),
                        });
                    }
                    if c.to.is_empty() {
                        return invalid(name, "to", "needs at least one recipient");
                    }
                    for to in &c.to {
                        if to.parse::<lettre::message::Mailbox>().is_err() {
                            return Err(ConfigError::Address {
                                channel: name,
                                field: "to",
                                value: to.clone(),
                            });
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_http(channel: &str, field: &'static str, url: &Secret) -> Result<(), ConfigError> {
    match url::Url::parse(url.expose()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(ConfigError::Url {
            channel: channel.to_owned(),
            field,
            expected: "http(s)",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_validate_and_have_no_channels() {
        let c: NotificationsConfig = toml::from_str("").unwrap();
        assert_eq!(c, NotificationsConfig::default());
        c.validate().unwrap();
        assert!(c.channels.is_empty());
        assert_eq!(c.retry.max_attempts, 8);
        assert_eq!(c.auto_resolve_after_secs, 3600);
    }

    #[test]
    fn a_full_file_parses_and_unknown_keys_are_refused() {
        let text = r#"
            public_url = "https://gw.example.org"
            [retry]
            max_attempts = 3
            [[channels]]
            type = "slack"
            name = "soc"
            webhook_url = "https://hooks.slack.com/services/T/B/X"
            route = { min_severity = "high", kinds = ["credential_stuffing"], on_resolve = true }
            rate_limit = { burst = 2, refill_every_secs = 30 }
            [[channels]]
            type = "email"
            name = "mail"
            smtp_url = "smtps://u:p@mail.example.org"
            from = "gatewatch <gw@example.org>"
            to = ["soc@example.org"]
            [[channels]]
            type = "webhook"
            name = "soar"
            url = "https://soar.example.org/x"
            secret = "k"
        "#;
        let c: NotificationsConfig = toml::from_str(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.channels.len(), 3);
        assert_eq!(c.channels[0].route().min_severity, Severity::High);
        assert!(c.channels[0]
            .route()
            .events()
            .contains(&NotifyEvent::Resolved));
        // Each notification event switches off on its own.
        let quiet = text.replace(
            "on_resolve = true",
            "on_escalate = false, on_reopen = false",
        );
        let q: NotificationsConfig = toml::from_str(&quiet).unwrap();
        assert_eq!(
            q.channels[0].route().events(),
            BTreeSet::from([NotifyEvent::Opened])
        );
        let bad = text.replace("name = \"soc\"", "name = \"soc\"\nmention = \"<!here>\"");
        assert!(toml::from_str::<NotificationsConfig>(&bad).is_err());
        assert!(toml::from_str::<NotificationsConfig>("bogus = 1").is_err());
    }

    #[test]
    fn env_switches_channels_on() {
        let mut c = NotificationsConfig::default();
        c.apply_env(env(&[
            (
                ENV_SLACK_WEBHOOK_URL,
                "https://hooks.slack.com/services/T/B/X",
            ),
            (ENV_SMTP_URL, "smtp://127.0.0.1:2525"),
            (ENV_EMAIL_FROM, "gw@example.org"),
            (ENV_EMAIL_TO, "a@example.org, b@example.org"),
            (ENV_WEBHOOK_URL, "http://127.0.0.1:9/hook"),
            (ENV_WEBHOOK_SECRET, "s3cret"),
        ]));
        c.validate().unwrap();
        let kinds: Vec<_> = c.channels.iter().map(|c| (c.kind(), c.name())).collect();
        assert_eq!(
            kinds,
            [
                ("slack", "slack"),
                ("email", "email"),
                ("webhook", "webhook")
            ]
        );
        let ChannelConfig::Email(e) = &c.channels[1] else {
            panic!()
        };
        assert_eq!(e.to, ["a@example.org", "b@example.org"]);
        // Applying again overrides rather than duplicating.
        c.apply_env(env(&[(ENV_WEBHOOK_SECRET, "other")]));
        assert_eq!(c.channels.len(), 3);
        let ChannelConfig::Webhook(w) = &c.channels[2] else {
            panic!()
        };
        assert_eq!(w.secret.expose(), "other");
    }

    #[test]
    fn a_webhook_without_secret_or_mail_without_recipients_is_refused() {
        let mut c = NotificationsConfig::default();
        c.apply_env(env(&[(ENV_WEBHOOK_URL, "http://127.0.0.1:9/hook")]));
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                field: "secret",
                ..
            })
        ));
        let mut c = NotificationsConfig::default();
        c.apply_env(env(&[(ENV_SMTP_URL, "smtp://127.0.0.1:2525")]));
        assert!(c.validate().is_err());
    }

    #[test]
    fn secrets_never_reach_debug_or_serialised_config() {
        let mut c = NotificationsConfig::default();
        c.apply_env(env(&[
            (
                ENV_SLACK_WEBHOOK_URL,
                "https://hooks.slack.com/services/T/B/TOPSECRET",
            ),
            (ENV_SMTP_URL, "smtps://user:PASSWORD@mail.example.org"),
            (ENV_EMAIL_FROM, "gw@example.org"),
            (ENV_EMAIL_TO, "a@example.org"),
            (ENV_WEBHOOK_URL, "https://x.example.org/hook?key=ROUTINGKEY"),
            (ENV_WEBHOOK_SECRET, "HMACKEY"),
        ]));
        let debug = format!("{c:?}");
        let json = serde_json::to_string(&c).unwrap();
        for s in ["TOPSECRET", "PASSWORD", "ROUTINGKEY", "HMACKEY"] {
            assert!(!debug.contains(s), "{s} in Debug");
            assert!(!json.contains(s), "{s} in JSON");
        }
        // An invalid URL's error does not repeat it either.
        let mut bad = c.clone();
        if let ChannelConfig::Slack(s) = &mut bad.channels[0] {
            s.webhook_url = Secret::new("not a url TOPSECRET");
        }
        assert!(!bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("TOPSECRET"));
    }
}
