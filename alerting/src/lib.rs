//! gatewatch-alerting: what happens after a detector has spoken.
//!
//! Findings become [`Incident`]s with a stable fingerprint (one attack, one
//! incident, also across replays and restarts), are stored in PostgreSQL or
//! SQLite, and are delivered to people through a durable outbox. This crate
//! knows nothing of log formats: it depends on `gatewatch-detector` only for
//! `Finding` and its vocabulary.
//!
//! * [`incident`]: the incident and its JSON form, the product's format.
//! * [`manager`]: the rules that turn findings into incidents.
//! * [`change`]: one change to an incident, the unit written atomically.
//! * [`store`]: the [`IncidentStore`] trait and its PostgreSQL and SQLite
//!   implementations, with the embedded migrations (`migrations/` at the
//!   workspace root).
//! * [`lifecycle`]: acknowledge, resolve, reopen, assign; auto-resolve.
//! * [`suppression`]: rules that mute findings, counted.
//! * [`outbox`]: notifications written with their change, claimed by workers.
//! * [`notify`]: Slack, email and webhook notifiers, routing, flood control,
//!   the worker, and [`Notifications`], what the binary builds.
//! * [`render`]: escaping attacker-controlled text for each medium.

pub mod change;
pub mod incident;
pub mod lifecycle;
pub mod manager;
pub mod notify;
pub mod outbox;
pub mod render;
pub mod secret;
pub mod store;
pub mod suppression;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod backend_tests;
#[cfg(test)]
mod notify_tests;

pub use change::{ChangeKind, IncidentChange};
pub use incident::{Incident, IncidentStatus};
pub use lifecycle::{Action, Lifecycle, LifecycleError, Watermark};
pub use manager::{IncidentManager, ManagerConfig, ManagerStats};
pub use notify::{Notifications, NotificationsConfig};
pub use secret::Secret;
pub use store::{
    connect, Db, IncidentCursor, IncidentPage, IncidentQuery, IncidentStore, ListOrder, PgStore,
    SqliteStore, StoreError, TimelineEntry,
};
