//! The API's JSON bodies and parameter vocabularies, with their schemas.
//!
//! These mirror the store's types rather than deriving schemas on them: the
//! alerting crate stays free of HTTP concerns, and the API's format is
//! spelled out (and versioned) here.

use super::error::ApiError;
use chrono::{DateTime, Utc};
use gatewatch_alerting::store::activity::ActivityPoint;
use gatewatch_alerting::store::comments::Comment;
use gatewatch_alerting::store::tokens::{ApiToken, TokenRole};
use gatewatch_alerting::{Incident, IncidentStatus, TimelineEntry};
use gatewatch_detector::{EventTime, IncidentKind, Severity};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Declares a closed vocabulary mirrored from another crate's enum.
macro_rules! mirror_enum {
    ($(#[$doc:meta])* $name:ident => $target:ty { $($(#[$vdoc:meta])* $variant:ident = $other:path),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl From<$name> for $target {
            fn from(v: $name) -> $target {
                match v { $($name::$variant => $other),+ }
            }
        }

        impl From<$target> for $name {
            fn from(v: $target) -> $name {
                match v { $($other => $name::$variant),+ }
            }
        }
    };
}

mirror_enum!(
    /// Where an incident is in its life.
    Status => IncidentStatus {
        /// New, nobody has looked yet.
        Open = IncidentStatus::Open,
        /// An analyst has seen it.
        Acknowledged = IncidentStatus::Acknowledged,
        /// Over.
        Resolved = IncidentStatus::Resolved,
        /// Resolved once, then the same attack came back (or reopened by hand).
        Reopened = IncidentStatus::Reopened,
    }
);

mirror_enum!(
    /// The attack class.
    Kind => IncidentKind {
        /// A client far above its own learned baseline.
        TrafficSpike = IncidentKind::TrafficSpike,
        /// Brute force, password spraying, low-and-slow login abuse.
        CredentialStuffing = IncidentKind::CredentialStuffing,
        /// Admin-route probing, object walking, sensitive-file scans.
        PrivilegeProbing = IncidentKind::PrivilegeProbing,
    }
);

mirror_enum!(
    /// How urgent an incident is, lowest first.
    SeverityLevel => Severity {
        /// Worth a look when there is time.
        Low = Severity::Low,
        /// Likely hostile; look today.
        Medium = Severity::Medium,
        /// Hostile and sustained or large; look now.
        High = Severity::High,
        /// Likely compromise.
        Critical = Severity::Critical,
    }
);

mirror_enum!(
    /// What a token may do: `viewer` reads; `analyst` also works incidents
    /// and suppression rules; `admin` also manages tokens.
    Role => TokenRole {
        /// Read only.
        Viewer = TokenRole::Viewer,
        /// Read and work incidents.
        Analyst = TokenRole::Analyst,
        /// Everything.
        Admin = TokenRole::Admin,
    }
);

/// Parses an RFC 3339 time parameter into event time.
pub fn parse_time(field: &str, value: &str) -> Result<EventTime, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| EventTime::from_datetime(t.with_timezone(&Utc)))
        .map_err(|e| ApiError::bad(field, format!("Not an RFC 3339 time: {e}")))
}

/// One incident.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct IncidentBody {
    /// Stable id (UUIDv5 of the fingerprint).
    pub id: Uuid,
    /// `kind:client:first_seen` of the episode that opened it.
    pub fingerprint: String,
    /// The attack class.
    pub kind: Kind,
    /// The specific pattern (`brute_force`, `rate_spike`, …).
    pub technique: String,
    /// What the incident is about, usually the client address.
    pub client: String,
    /// Client addresses involved, most active first.
    pub sources: Vec<String>,
    /// Event time of the first event of the attack.
    #[schema(value_type = String, format = DateTime)]
    pub first_seen: EventTime,
    /// Event time of the latest event of the attack.
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: EventTime,
    /// Event time of the event that raised the incident.
    #[schema(value_type = String, format = DateTime)]
    pub detected_at: EventTime,
    /// Current severity.
    pub severity: SeverityLevel,
    /// Lifecycle state.
    pub status: Status,
    /// One sentence (attacker-influenced text: display as text only).
    pub summary: String,
    /// The detector's evidence: counts, baseline against observed, samples.
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    /// Events that make up the attack so far.
    #[schema(minimum = 0)]
    pub events: u64,
    /// How many times the incident has changed since it was raised.
    #[schema(minimum = 0)]
    pub revision: u32,
    /// Who is working it, when someone is.
    pub assignee: Option<String>,
}

impl From<Incident> for IncidentBody {
    fn from(i: Incident) -> IncidentBody {
        IncidentBody {
            id: i.id,
            fingerprint: i.fingerprint,
            kind: i.kind.into(),
            technique: i.technique,
            client: i.client,
            sources: i.sources,
            first_seen: i.first_seen,
            last_seen: i.last_seen,
            detected_at: i.detected_at,
            severity: i.severity.into(),
            status: i.status.into(),
            summary: i.summary,
            evidence: i.evidence,
            events: i.events,
            revision: i.revision,
            assignee: i.assignee,
        }
    }
}

/// A page of incidents.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentList {
    /// The incidents, in the requested order.
    pub incidents: Vec<IncidentBody>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One entry of an incident's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineBody {
    /// Increasing with insertion order.
    pub id: i64,
    /// Wall-clock time of the change.
    pub at: DateTime<Utc>,
    /// Who made it: `detector:<name>` or `token:<name>`.
    pub actor: String,
    /// `created`, `updated`, `escalated`, `status_changed`, `assigned`, …
    pub action: String,
    /// The incident's revision after the change.
    #[schema(minimum = 0)]
    pub revision: u32,
    /// Severity, status, counts after the change; `from` for transitions.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<TimelineEntry> for TimelineBody {
    fn from(t: TimelineEntry) -> TimelineBody {
        TimelineBody {
            id: t.id,
            at: t.at,
            actor: t.actor,
            action: t.action,
            revision: t.revision,
            details: t.details,
        }
    }
}

/// An analyst's comment.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommentBody {
    /// Increasing with insertion order.
    pub id: i64,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// Who wrote it (`token:<name>`).
    pub actor: String,
    /// The text.
    pub body: String,
}

impl From<Comment> for CommentBody {
    fn from(c: Comment) -> CommentBody {
        CommentBody {
            id: c.id,
            at: c.at,
            actor: c.actor,
            body: c.body,
        }
    }
}

/// Requests of a client in one minute.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityPointBody {
    /// The start of the minute (event time).
    pub minute: DateTime<Utc>,
    /// Requests in it.
    #[schema(minimum = 0)]
    pub events: u64,
}

impl From<ActivityPoint> for ActivityPointBody {
    fn from(p: ActivityPoint) -> ActivityPointBody {
        ActivityPointBody {
            minute: p.minute.to_datetime(),
            events: p.events,
        }
    }
}

/// A client's learned normal, from the latest traffic-spike evidence.
#[derive(Debug, Serialize, ToSchema)]
pub struct BaselineBody {
    /// Mean requests per minute when normal.
    pub mean_per_minute: f64,
    /// Standard deviation, per minute.
    pub stddev_per_minute: f64,
    /// What the detector expected in its bucket, scaled to a minute.
    pub expected_per_minute: Option<f64>,
    /// The detector's bucket length in seconds.
    #[schema(minimum = 0)]
    pub bucket_secs: u64,
    /// `own_baseline` or `population` (a new client judged against others).
    pub judged_against: Option<String>,
}

/// A client's traffic over time against its baseline.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrafficSeries {
    /// Start of the window shown (event time).
    pub from: DateTime<Utc>,
    /// End of the window shown (event time).
    pub to: DateTime<Utc>,
    /// Requests per minute; minutes without a point had none recorded.
    pub points: Vec<ActivityPointBody>,
    /// The baseline, when a detector has reported one for this client.
    pub baseline: Option<BaselineBody>,
}

/// Sample values the evidence carries (paths, accounts, sources).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Samples {
    /// Request paths seen in the attack (attacker-supplied text).
    pub paths: Vec<String>,
    /// Account names tried (attacker-supplied text).
    pub users: Vec<String>,
    /// Heaviest source addresses, for distributed attacks.
    pub sources: Vec<String>,
}

/// One incident with everything known about it.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentDetail {
    /// The incident.
    pub incident: IncidentBody,
    /// Its history, oldest first.
    pub timeline: Vec<TimelineBody>,
    /// Analysts' comments, oldest first.
    pub comments: Vec<CommentBody>,
    /// Sample values from the evidence.
    pub samples: Samples,
    /// The client's traffic around the incident against its baseline.
    pub traffic: TrafficSeries,
}

/// Optional note for an acknowledge, resolve or reopen.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// Why (recorded in the timeline).
    #[schema(max_length = 2000)]
    pub note: Option<String>,
}

/// A new comment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    /// The text, 1 to 10 000 characters, not blank.
    #[schema(min_length = 1, max_length = 10000, pattern = r"\S")]
    pub body: String,
}

/// Who should work an incident.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssigneeRequest {
    /// A login, or `null` to release the incident: 1 to 200 characters,
    /// no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub assignee: Option<String>,
}

/// What gatewatch knows of one client.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientBody {
    /// The client key (an address, or an API identity).
    pub key: String,
    /// Its incidents, newest activity first (at most 100).
    pub incidents: Vec<IncidentBody>,
    /// Its recorded activity over the last day of its incidents.
    pub traffic: TrafficSeries,
}

/// Incidents counted by kind, severity and status over a window.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsBody {
    /// Start of the window, when given.
    pub since: Option<DateTime<Utc>>,
    /// End of the window, when given.
    pub until: Option<DateTime<Utc>>,
    /// Incidents active in the window.
    #[schema(minimum = 0)]
    pub total: u64,
    /// By kind.
    pub by_kind: Vec<Bucket>,
    /// By severity.
    pub by_severity: Vec<Bucket>,
    /// By status.
    pub by_status: Vec<Bucket>,
}

/// One group of a count.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bucket {
    /// The group's name (`traffic_spike`, `high`, `open`, …).
    pub key: String,
    /// How many.
    #[schema(minimum = 0)]
    pub incidents: u64,
}

/// A token as listed (never with its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenBody {
    /// Stable id.
    pub id: Uuid,
    /// Unique name; actions show as `token:<name>`.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Last use (to the minute), if any.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiToken> for TokenBody {
    fn from(t: ApiToken) -> TokenBody {
        TokenBody {
            id: t.id,
            name: t.name,
            role: t.role.into(),
            created_by: t.created_by,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// Unique name: letters, digits, `.`, `_`, `-`, `@`; 1 to 64 characters.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// A created token: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewTokenResponse {
    /// The stored token.
    pub token: TokenBody,
    /// The bearer token itself. Store it now: it cannot be shown again.
    pub secret: String,
}

/// Checks a token name (also used by `gatewatch token create`).
pub fn valid_token_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}
