//! Log formats: one file per gateway format, one [`Format`] implementation each.

use gatewatch_detector::Event;
use thiserror::Error;

/// Turns one raw log line into an [`Event`].
///
/// Implementations borrow from `line` wherever they can and must never
/// panic, whatever the bytes: lines are attacker-influenced.
pub trait Format: Send + Sync {
    /// The format's config name (`nginx_combined`, `kong`, …).
    fn name(&self) -> &'static str;

    /// Parses one line (without its trailing newline).
    fn parse<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError>;
}

/// Why a line did not become an event. Each variant has a stable
/// [`ParseError::reason`] that rejected-line counters are labelled with.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    /// The line is empty or only whitespace.
    #[error("empty line")]
    Empty,
    /// No known format recognises the line (only `auto` says this).
    #[error("line matches no known log format")]
    UnknownFormat,
    /// The line is in this format's family but broken.
    #[error("{format}: malformed line: {what}")]
    Malformed {
        /// Format name.
        format: &'static str,
        /// What is wrong, in a few words.
        what: &'static str,
    },
    /// A field the format needs is absent.
    #[error("{format}: missing field `{field}`")]
    MissingField {
        /// Format name.
        format: &'static str,
        /// The field.
        field: &'static str,
    },
    /// The timestamp does not parse.
    #[error("{format}: unparseable timestamp")]
    BadTimestamp {
        /// Format name.
        format: &'static str,
    },
    /// The line carries no usable client address (e.g. Envoy's default
    /// format without `X-Forwarded-For`).
    #[error("{format}: no client address in the line")]
    NoClient {
        /// Format name.
        format: &'static str,
    },
    /// A valid line of the gateway's log that is not a request (a TLS
    /// handshake error, a startup message).
    #[error("{format}: not an access-log entry")]
    NotAccessLog {
        /// Format name.
        format: &'static str,
    },
}

impl ParseError {
    /// A short stable label for counting rejected lines by reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty",
            ParseError::UnknownFormat => "unknown_format",
            ParseError::Malformed { .. } => "malformed",
            ParseError::MissingField { .. } => "missing_field",
            ParseError::BadTimestamp { .. } => "bad_timestamp",
            ParseError::NoClient { .. } => "no_client",
            ParseError::NotAccessLog { .. } => "not_access_log",
        }
    }
}

/// The formats a source can be configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FormatKind {
    /// Recognise the format per line.
    #[default]
    Auto,
    /// nginx `combined` and its common variants.
    NginxCombined,
    /// nginx JSON written with `log_format … escape=json`.
    NginxJson,
    /// Kong's logging-plugin JSON serializer.
    Kong,
    /// Any JSON lines, with a field mapping from the config.
    Json,
}
