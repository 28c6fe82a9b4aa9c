//! Log formats: one file per gateway format, one [`Format`] implementation each.
//!
//! The binary builds one parser per source with [`build`] and calls
//! [`Format::parse`] on every line; the parser borrows from the line, so the
//! normal path allocates nothing. Which address is the client is decided by
//! [`crate::client_ip::ClientResolver`] from the `trusted_proxies` in
//! [`FormatOptions`], the same way for every format.
//!
//! Formats know nothing about sources or detectors: they turn bytes into an
//! [`Event`] or say, with a stable [`ParseError::reason`], why they could not.

use crate::client_ip::ClientResolver;
use gatewatch_detector::Event;
use serde::Deserialize;
use thiserror::Error;

pub mod apisix;
pub mod auto;
pub mod aws_apigw;
pub mod caddy;
pub mod envoy;
pub mod gatewatch_event;
pub mod haproxy;
pub mod json;
pub mod kong;
pub mod nginx_combined;
pub mod nginx_json;
pub mod traefik;

pub(crate) mod jsonmemo;
pub(crate) mod jsonsimd;
pub(crate) mod jsonutil;
pub(crate) mod text;
pub(crate) mod time;

/// Turns one raw log line into an [`Event`].
///
/// Implementations borrow from `line` wherever they can and must never
/// panic, whatever the bytes: lines are attacker-influenced.
pub trait Format: Send + Sync {
    /// The format's config name (`nginx_combined`, `kong`, …).
    fn name(&self) -> &'static str;

    /// Parses one line (without its trailing newline).
    fn parse<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError>;

    /// Parses a line that may carry several requests: the JSON array an
    /// http-log / http-logger batch posts. Pushes one result per request.
    ///
    /// Formats without batches push exactly `self.parse(line)`, so a source
    /// that may receive batches can always call this one. [`Format::parse`]
    /// on a multi-element batch returns [`ParseError::Batch`] rather than
    /// silently keeping only the first request.
    fn parse_many<'a>(&self, line: &'a [u8], out: &mut Vec<Result<Event<'a>, ParseError>>) {
        out.push(self.parse(line));
    }
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
    /// The line is a JSON array of several requests (an http-log batch);
    /// [`Format::parse_many`] parses it, [`Format::parse`] refuses it so that
    /// no request is dropped silently.
    #[error("{format}: line is a batch of {len} requests; use parse_many")]
    Batch {
        /// Format name.
        format: &'static str,
        /// How many elements the array has.
        len: usize,
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
            ParseError::Batch { .. } => "batch",
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
    /// nginx `combined` and its common variants (also Apache combined/common).
    NginxCombined,
    /// nginx JSON written with `log_format … escape=json`.
    NginxJson,
    /// Kong's logging-plugin JSON serializer.
    Kong,
    /// Apache APISIX kafka-logger / http-logger / file-logger JSON.
    Apisix,
    /// Traefik access log, JSON or CLF.
    Traefik,
    /// Envoy (and Istio) access log: JSON or the default text format.
    Envoy,
    /// HAProxy `option httplog`, with or without a syslog header.
    Haproxy,
    /// AWS API Gateway JSON access logs.
    AwsApigw,
    /// Caddy JSON access log.
    Caddy,
    /// Any JSON lines, with a field mapping from the config.
    Json,
    /// gatewatch's own normalised events (`EventRecord` JSON lines), as an
    /// ingest stage publishes them to the internal repartition topic.
    GatewatchEvent,
}

impl FormatKind {
    /// The config name of the format, as in the TOML file.
    pub fn as_str(self) -> &'static str {
        match self {
            FormatKind::Auto => "auto",
            FormatKind::NginxCombined => "nginx_combined",
            FormatKind::NginxJson => "nginx_json",
            FormatKind::Kong => "kong",
            FormatKind::Apisix => "apisix",
            FormatKind::Traefik => "traefik",
            FormatKind::Envoy => "envoy",
            FormatKind::Haproxy => "haproxy",
            FormatKind::AwsApigw => "aws_apigw",
            FormatKind::Caddy => "caddy",
            FormatKind::Json => "json",
            FormatKind::GatewatchEvent => "gatewatch_event",
        }
    }
}

/// How a source's lines are parsed: trusted proxies and, for the generic
/// `json` format, where the fields are.
///
/// Deserialised from the source's `[format]` table in the config file;
/// unknown keys are rejected so that a typo does not silently disable
/// trusted-proxy resolution.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FormatOptions {
    /// Networks of the proxies and load balancers in front of the gateway
    /// (e.g. `["10.0.0.0/8", "2001:db8::/32"]`). When the address that
    /// connected to the gateway is in one of them, the client is found by
    /// walking `X-Forwarded-For` from the right, skipping trusted hops.
    /// Empty (the default) means `X-Forwarded-For` is ignored: anyone can
    /// write it, so trusting it by default would let attackers pick their
    /// own address.
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where the fields are in a JSON line; required by the `json` format
    /// (its lines can have any shape), ignored by the others.
    #[serde(default)]
    pub json: Option<JsonMapping>,
}

/// How a timestamp field is written, for [`JsonMapping::ts_format`].
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TsFormat {
    /// RFC 3339 / ISO 8601 (`2024-02-01T15:43:38.669Z`, `…+01:00`); a
    /// missing offset is taken as UTC.
    #[default]
    Rfc3339,
    /// Whole seconds since the epoch, a number or a string.
    EpochS,
    /// Milliseconds since the epoch, a number or a string.
    EpochMs,
    /// Seconds since the epoch with a fraction (`1693840791.7564995`, nginx
    /// `$msec`, Caddy `ts`).
    EpochFloat,
    /// nginx `$time_local` / Apache `%t`: `10/Oct/2000:13:55:36 -0700`.
    NginxTimeLocal,
}

/// Where the fields of a generic JSON access log are: each value is a dotted
/// path from the top-level object (`request.headers.user-agent`). Keys
/// containing a dot cannot be addressed (rare in access logs). A value that
/// is an array (Caddy-style headers) stands for its first element.
///
/// Only `ts` and one of `client_ip` / `x_forwarded_for` are required; every
/// other field is left empty when its path is unset or absent in a line.
///
/// For APISIX's custom `log_format` example, in the source's TOML:
///
/// ```toml
/// [format.json]
/// ts = "@timestamp"
/// client_ip = "client_ip"
/// method = "request.method"
/// uri = "request.uri"
/// status = "response.status"
/// host = "host"
/// route = "route_id"
/// ```
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JsonMapping {
    /// Path of the event time.
    pub ts: String,
    /// How the event time is written.
    #[serde(default)]
    pub ts_format: TsFormat,
    /// Path of the address that connected to the gateway (`ip`, `ip:port`
    /// and `[v6]:port` are accepted).
    #[serde(default)]
    pub client_ip: Option<String>,
    /// Path of the `X-Forwarded-For` value (used only with trusted proxies,
    /// or alone when the log has no peer address).
    #[serde(default)]
    pub x_forwarded_for: Option<String>,
    /// Path of the HTTP method.
    #[serde(default)]
    pub method: Option<String>,
    /// Path of the request path without the query string.
    #[serde(default)]
    pub path: Option<String>,
    /// Path of the request URI with the query string (split at `?`); used
    /// when `path` is unset.
    #[serde(default)]
    pub uri: Option<String>,
    /// Path of the response status (number or string).
    #[serde(default)]
    pub status: Option<String>,
    /// Path of the response body size (number or string).
    #[serde(default)]
    pub bytes: Option<String>,
    /// Path of the `User-Agent` header.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// Path of the `Host` the request was addressed to.
    #[serde(default)]
    pub host: Option<String>,
    /// Path of the account the request tried to use (basic-auth user, a
    /// login field).
    #[serde(default)]
    pub user: Option<String>,
    /// Path of the authenticated identity (consumer, API key id).
    #[serde(default)]
    pub identity: Option<String>,
    /// Path of the request latency.
    #[serde(default)]
    pub latency: Option<String>,
    /// Unit of `latency`.
    #[serde(default)]
    pub latency_unit: LatencyUnit,
    /// Path of the gateway's route name.
    #[serde(default)]
    pub route: Option<String>,
}

/// Unit of a latency field, for [`JsonMapping::latency_unit`].
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LatencyUnit {
    /// Milliseconds (Kong, APISIX).
    #[default]
    Ms,
    /// Seconds, possibly fractional (nginx `$request_time`, Caddy).
    S,
    /// Microseconds.
    Us,
    /// Nanoseconds (Traefik `Duration`).
    Ns,
}

/// Why a parser could not be built from the configuration.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    /// The `json` format needs a field mapping to know where anything is.
    #[error("format `json` needs a `json` field mapping in its options")]
    MissingJsonMapping,
    /// The mapping has no way to find the client.
    #[error("the `json` field mapping needs `client_ip` or `x_forwarded_for`")]
    MappingWithoutClient,
    /// A mapping path is empty or has an empty segment (`a..b`).
    #[error("invalid JSON path `{path}` for `{field}`")]
    InvalidPath {
        /// Which mapping field.
        field: &'static str,
        /// The path as configured.
        path: String,
    },
}

/// Builds the parser for one source.
///
/// Validates the options first (a `json` source without a mapping fails
/// here, at startup, rather than on every line).
pub fn build(kind: FormatKind, opts: &FormatOptions) -> Result<Box<dyn Format>, FormatError> {
    let resolver = ClientResolver::new(opts.trusted_proxies.clone());
    Ok(match kind {
        FormatKind::Auto => Box::new(auto::Auto::new(resolver)),
        FormatKind::NginxCombined => Box::new(nginx_combined::NginxCombined::new(resolver)),
        FormatKind::NginxJson => Box::new(nginx_json::NginxJson::new(resolver)),
        FormatKind::Kong => Box::new(kong::Kong::new(resolver)),
        FormatKind::Apisix => Box::new(apisix::Apisix::new(resolver)),
        FormatKind::Traefik => Box::new(traefik::Traefik::new(resolver)),
        FormatKind::Envoy => Box::new(envoy::Envoy::new(resolver)),
        FormatKind::Haproxy => Box::new(haproxy::Haproxy::new(resolver)),
        FormatKind::AwsApigw => Box::new(aws_apigw::AwsApigw::new(resolver)),
        FormatKind::Caddy => Box::new(caddy::Caddy::new(resolver)),
        FormatKind::Json => {
            let mapping = opts.json.as_ref().ok_or(FormatError::MissingJsonMapping)?;
            Box::new(json::GenericJson::new(mapping, resolver)?)
        }
        FormatKind::GatewatchEvent => Box::new(gatewatch_event::GatewatchEvent::new()),
    })
}

/// Trims the line terminator and surrounding blanks every parser ignores.
pub(crate) fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ' | b'\t' | 0) {
        end -= 1;
    }
    let mut start = 0;
    while start < end && matches!(line[start], b' ' | b'\t') {
        start += 1;
    }
    &line[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_reject_unknown_keys_and_default_to_no_trust() {
        let o: FormatOptions = serde_json::from_str("{}").unwrap();
        assert!(o.trusted_proxies.is_empty());
        assert!(serde_json::from_str::<FormatOptions>(r#"{"trusted_proxy":[]}"#).is_err());
        let o: FormatOptions =
            serde_json::from_str(r#"{"trusted_proxies":["10.0.0.0/8","2001:db8::/32"]}"#).unwrap();
        assert_eq!(o.trusted_proxies.len(), 2);
    }

    #[test]
    fn json_without_mapping_is_a_build_error() {
        let err = build(FormatKind::Json, &FormatOptions::default()).err();
        assert_eq!(err, Some(FormatError::MissingJsonMapping));
    }

    #[test]
    fn every_kind_builds_and_names_itself() {
        let opts = FormatOptions {
            json: Some(JsonMapping {
                ts: "ts".into(),
                client_ip: Some("ip".into()),
                ..JsonMapping::default()
            }),
            ..FormatOptions::default()
        };
        for kind in [
            FormatKind::Auto,
            FormatKind::NginxCombined,
            FormatKind::NginxJson,
            FormatKind::Kong,
            FormatKind::Apisix,
            FormatKind::Traefik,
            FormatKind::Envoy,
            FormatKind::Haproxy,
            FormatKind::AwsApigw,
            FormatKind::Caddy,
            FormatKind::Json,
            FormatKind::GatewatchEvent,
        ] {
            let f = build(kind, &opts).unwrap();
            assert_eq!(f.name(), kind.as_str());
            assert_eq!(f.parse(b"").unwrap_err(), ParseError::Empty);
        }
    }

    #[test]
    fn reasons_are_stable_labels() {
        assert_eq!(
            ParseError::Batch {
                format: "kong",
                len: 2
            }
            .reason(),
            "batch"
        );
        assert_eq!(
            ParseError::NoClient { format: "envoy" }.reason(),
            "no_client"
        );
    }
}
