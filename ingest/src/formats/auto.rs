//! `auto`: recognise the format of every line on its own, cheaply.
//!
//! One source can carry several formats (a syslog listener receiving nginx
//! and HAProxy, a Kubernetes log file with Envoy text and JSON), so the
//! decision is per line and costs a few byte comparisons:
//!
//! * `{` (or a `[{` batch): the JSON family, told apart by which keys are
//!   present (`started_at` → Kong, `start_time`+`client_ip` → APISIX,
//!   `ClientAddr` → Traefik, `downstream_remote_address` → Envoy, `logger`
//!   → Caddy, `requestId` → AWS API Gateway, `remote_addr` → nginx JSON).
//!   Keys are found with a probe (`has_key`) that cannot be fooled by a header
//!   value. A `{"log": …}` / `{"message": …}` wrapper (Docker) is
//!   unwrapped and its text classified.
//! * Wrappers are stripped first: a CRI prefix (`<RFC3339Nano> stdout F `),
//!   Envoy's `ACCESS ` prefix, a syslog header (RFC 3164 / 5424, see
//!   [`crate::syslog_header`]). The event time always comes from the inner
//!   line, so the year-less RFC 3164 header never decides it.
//! * Text by shape: `[<digit>` → Envoy / Istio; `ip:port [` → HAProxy;
//!   otherwise the combined family (nginx, Apache, vhost, Traefik CLF,
//!   APISIX). nginx and Apache *error* logs are recognised and reported as
//!   [`ParseError::NotAccessLog`]; anything else is
//!   [`ParseError::UnknownFormat`].

use super::apisix::Apisix;
use super::aws_apigw::AwsApigw;
use super::caddy::Caddy;
use super::envoy::{strip_cri, Envoy};
use super::gatewatch_event::GatewatchEvent;
use super::haproxy::Haproxy;
use super::jsonutil::{from_slice, has_key, JStr, OptJStr};
use super::kong::Kong;
use super::nginx_combined::NginxCombined;
use super::nginx_json::NginxJson;
use super::traefik::Traefik;
use super::{trim_line, Format, FormatKind, ParseError};
use crate::client_ip::ClientResolver;
use crate::syslog_header;
use gatewatch_detector::Event;
use serde::Deserialize;
use std::borrow::Cow;

const NAME: &str = "auto";

/// Parser that recognises each line's format.
#[derive(Debug, Clone, Default)]
pub struct Auto {
    nginx: NginxCombined,
    nginx_json: NginxJson,
    kong: Kong,
    apisix: Apisix,
    traefik: Traefik,
    envoy: Envoy,
    haproxy: Haproxy,
    aws: AwsApigw,
    caddy: Caddy,
    gatewatch_event: GatewatchEvent,
}

impl Auto {
    /// A parser whose every format resolves clients with `resolver`.
    pub fn new(resolver: ClientResolver) -> Self {
        Auto {
            nginx: NginxCombined::new(resolver.clone()),
            nginx_json: NginxJson::new(resolver.clone()),
            kong: Kong::new(resolver.clone()),
            apisix: Apisix::new(resolver.clone()),
            traefik: Traefik::new(resolver.clone()),
            envoy: Envoy::new(resolver.clone()),
            haproxy: Haproxy::new(resolver.clone()),
            aws: AwsApigw::new(resolver.clone()),
            caddy: Caddy::new(resolver),
            gatewatch_event: GatewatchEvent::new(),
        }
    }

    fn parser(&self, kind: FormatKind) -> &dyn Format {
        match kind {
            FormatKind::NginxJson => &self.nginx_json,
            FormatKind::Kong => &self.kong,
            FormatKind::Apisix => &self.apisix,
            FormatKind::Traefik => &self.traefik,
            FormatKind::Envoy => &self.envoy,
            FormatKind::Haproxy => &self.haproxy,
            FormatKind::AwsApigw => &self.aws,
            FormatKind::Caddy => &self.caddy,
            FormatKind::GatewatchEvent => &self.gatewatch_event,
            _ => &self.nginx,
        }
    }
}

/// What a line looks like.
enum Class<'a> {
    /// Parse the line (as given) with this format.
    Kind(FormatKind, &'a [u8]),
    /// A JSON object wrapping the real line in `log` / `message`.
    Wrapped,
    /// A log line of a gateway that is not a request.
    NotAccess(&'static str),
    Unknown,
}

fn json_kind(line: &[u8]) -> Option<FormatKind> {
    let k = |key: &[u8]| has_key(line, key);
    Some(if k(br#""started_at""#) {
        FormatKind::Kong
    } else if k(br#""client_ip""#) && (k(br#""start_time""#) || k(br#""route_id""#)) {
        FormatKind::Apisix
    } else if k(br#""ClientAddr""#) || k(br#""DownstreamStatus""#) || k(br#""RequestMethod""#) {
        FormatKind::Traefik
    } else if k(br#""downstream_remote_address""#)
        || k(br#""x-envoy-origin-path""#)
        || k(br#""response_code""#)
    {
        FormatKind::Envoy
    } else if k(br#""logger""#) || (k(br#""ts""#) && k(br#""request""#)) {
        FormatKind::Caddy
    } else if k(br#""requestId""#) || k(br#""httpMethod""#) {
        FormatKind::AwsApigw
    } else if k(br#""remote_addr""#) {
        FormatKind::NginxJson
    } else if k(br#""ts""#) && k(br#""ip""#) {
        // Last: gatewatch's own events have only these keys of any other
        // format's, and never a `request` object (Caddy).
        FormatKind::GatewatchEvent
    } else {
        return None;
    })
}

/// `YYYY/MM/DD HH:MM:SS [` — nginx's error log.
fn is_nginx_error(line: &[u8]) -> bool {
    line.len() > 21
        && line[4] == b'/'
        && line[7] == b'/'
        && line[10] == b' '
        && line[13] == b':'
        && line[20] == b'['
}

fn classify(line: &[u8]) -> Class<'_> {
    match line.first() {
        Some(b'{') => match json_kind(line) {
            Some(kind) => Class::Kind(kind, line),
            None if has_key(line, br#""log""#) || has_key(line, br#""message""#) => Class::Wrapped,
            None => Class::Unknown,
        },
        Some(b'[') => match line.get(1) {
            Some(c) if c.is_ascii_digit() => Class::Kind(FormatKind::Envoy, line),
            Some(b'{' | b' ' | b'\n' | b'\t' | b'\r') => match json_kind(line) {
                Some(kind) => Class::Kind(kind, line),
                None => Class::Unknown,
            },
            Some(c) if c.is_ascii_alphabetic() => Class::NotAccess("apache_error_log"),
            _ => Class::Unknown,
        },
        Some(_) => {
            if line.starts_with(b"ACCESS [") {
                return Class::Kind(FormatKind::Envoy, line);
            }
            if is_nginx_error(line) {
                return Class::NotAccess("nginx_error_log");
            }
            let Some(sp) = memchr::memchr(b' ', line) else {
                return Class::Unknown;
            };
            let rest = &line[sp + 1..];
            if rest.first() == Some(&b'[') && rest.get(1).is_some_and(u8::is_ascii_digit) {
                // `ip:port [dd/Mon/yyyy:…]`: HAProxy puts the time right
                // after the client; nginx has the ident `-` in between.
                return Class::Kind(FormatKind::Haproxy, line);
            }
            if memchr::memmem::find(line, b" [").is_some() {
                // Traefik's CLF ends in `<n>ms`; the scanner is the same.
                let traefik = line.len() > 3
                    && line.ends_with(b"ms")
                    && line[line.len() - 3].is_ascii_digit();
                let kind = if traefik {
                    FormatKind::Traefik
                } else {
                    FormatKind::NginxCombined
                };
                Class::Kind(kind, line)
            } else {
                Class::Unknown
            }
        }
        None => Class::Unknown,
    }
}

/// Strips one CRI prefix or syslog header, if the line has one.
fn unwrap_text(line: &[u8]) -> Option<&[u8]> {
    if let Some(rest) = strip_cri(line) {
        return Some(rest);
    }
    match line.first() {
        Some(c) if *c == b'<' || c.is_ascii_uppercase() || c.is_ascii_digit() => {
            syslog_header::parse(line).map(|h| h.body)
        }
        _ => None,
    }
}

#[derive(Deserialize)]
struct Wrapper<'a> {
    #[serde(borrow)]
    log: Option<JStr<'a>>,
    #[serde(borrow)]
    message: Option<JStr<'a>>,
}

/// Which format `auto` would parse `line` with (after stripping any CRI
/// prefix, syslog header or JSON wrapper); `None` for unknown lines. For
/// reports ("which formats does this file hold") and tests.
pub fn detect(line: &[u8]) -> Option<FormatKind> {
    let line = trim_line(line);
    let line = unwrap_text(line).unwrap_or(line);
    let line = trim_line(line);
    match classify(line) {
        Class::Kind(kind, _) => Some(kind),
        Class::Wrapped => {
            let w: Wrapper<'_> = from_slice(line)?;
            let inner = w.log.value().or(w.message.value())?;
            let inner: Cow<'_, str> = inner;
            let b = trim_line(inner.as_bytes());
            match classify(unwrap_text(b).unwrap_or(b)) {
                Class::Kind(kind, _) => Some(kind),
                _ => None,
            }
        }
        Class::NotAccess(_) | Class::Unknown => None,
    }
}

impl Format for Auto {
    fn name(&self) -> &'static str {
        NAME
    }

    fn parse<'a>(&self, line: &'a [u8]) -> Result<Event<'a>, ParseError> {
        let line = trim_line(line);
        if line.is_empty() {
            return Err(ParseError::Empty);
        }
        self.parse_at(line, 0)
    }

    fn parse_many<'a>(&self, line: &'a [u8], out: &mut Vec<Result<Event<'a>, ParseError>>) {
        let line = trim_line(line);
        match classify(line) {
            Class::Kind(kind @ (FormatKind::Kong | FormatKind::Apisix), l)
                if l.first() == Some(&b'[') =>
            {
                self.parser(kind).parse_many(l, out);
            }
            _ => out.push(self.parse(line)),
        }
    }
}

impl Auto {
    fn parse_at<'a>(&self, line: &'a [u8], depth: u8) -> Result<Event<'a>, ParseError> {
        if depth < 2 {
            if let Some(inner) = unwrap_text(line) {
                let inner = trim_line(inner);
                if inner.is_empty() {
                    return Err(ParseError::Empty);
                }
                return self.parse_at(inner, depth + 1);
            }
        }
        match classify(line) {
            Class::Kind(kind, l) => self.parser(kind).parse(l),
            Class::Wrapped if depth < 2 => {
                let w: Wrapper<'a> = from_slice(line).ok_or(ParseError::UnknownFormat)?;
                match w.log.value().or(w.message.value()) {
                    Some(Cow::Borrowed(s)) => self.parse_at(trim_line(s.as_bytes()), depth + 1),
                    Some(Cow::Owned(s)) => self
                        .parse_at(trim_line(s.as_bytes()), depth + 1)
                        .map(Event::into_owned),
                    None => Err(ParseError::UnknownFormat),
                }
            }
            Class::NotAccess(format) => Err(ParseError::NotAccessLog { format }),
            Class::Wrapped | Class::Unknown => Err(ParseError::UnknownFormat),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatewatch_detector::Method;

    #[test]
    fn detects_by_shape() {
        let cases: &[(&[u8], Option<FormatKind>)] = &[
            (br#"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1 "-" "-""#, Some(FormatKind::NginxCombined)),
            (br#"Sep 15 16:13:46 host nginx[2869]: 81.150.104.130 - - [15/Sep/2021:16:13:46 +0000] "POST /wp-login.php HTTP/1.1" 200 5364 "-" "M""#, Some(FormatKind::NginxCombined)),
            (br#"10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 "GET / HTTP/1.1""#, Some(FormatKind::Haproxy)),
            (br#"<134>Feb  6 12:14:14 haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 "GET / HTTP/1.1""#, Some(FormatKind::Haproxy)),
            (br#"[2019-04-08T16:50:12.533Z] "- - -" 0 - 87 254 4 - "-" "-" "-" "-" "172.27.0.2:80""#, Some(FormatKind::Envoy)),
            (br#"2026-01-24T01:34:36.743000000+00:00 stdout F {"start_time":"2026-01-24T01:34:36.743Z","response_code":301,"downstream_remote_address":"[::1]:1"}"#, Some(FormatKind::Envoy)),
            (br#"{"client_ip":"1.2.3.4","started_at":1}"#, Some(FormatKind::Kong)),
            (br#"{"ClientAddr":"1.2.3.4:1","ua":"\"started_at\":1"}"#, Some(FormatKind::Traefik)),
            (br#"{"log":"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 200 1\n","stream":"stdout"}"#, Some(FormatKind::NginxCombined)),
            (b"2021/12/01 13:53:33 [error] 31#31: *46 open() failed, client: 172.17.0.1", None),
            (br#"{"ts":"2024-01-01T00:00:00.000Z","ip":"1.2.3.4","method":"GET","path":"/","status":200,"bytes":0}"#, Some(FormatKind::GatewatchEvent)),
            (br#"{"ts":"2024-01-01T00:00:00Z","ip":"1.2.3.4","user_agent":"\"remote_addr\":1"}"#, Some(FormatKind::GatewatchEvent)),
            (b"hello world", None),
        ];
        for (line, kind) in cases {
            assert_eq!(detect(line), *kind, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn parses_wrapped_lines() {
        let a = Auto::default();
        let ev = a
            .parse(br#"Sep 15 16:13:46 host nginx[2869]: 81.150.104.130 - - [15/Sep/2021:16:13:46 +0000] "POST /wp-login.php HTTP/1.1" 200 5364 "-" "M""#)
            .unwrap();
        assert_eq!(
            (ev.ip.to_string().as_str(), ev.method, ev.ts.millis()),
            ("81.150.104.130", Method::Post, 1_631_722_426_000)
        );
        let ev = a
            .parse(br#"{"log":"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET /x HTTP/1.1\" 200 1\n","stream":"stdout"}"#)
            .unwrap();
        assert_eq!(&*ev.path, "/x");
        assert_eq!(
            a.parse(b"hello world").unwrap_err(),
            ParseError::UnknownFormat
        );
        assert_eq!(
            a.parse(b"2021/12/01 13:53:33 [error] 31#31: *46 open() failed")
                .unwrap_err(),
            ParseError::NotAccessLog {
                format: "nginx_error_log"
            }
        );
        let ev = a
            .parse(br#"{"ts":"2024-01-01T00:00:00Z","ip":"2001:db8::1","method":"POST","path":"/login","status":401,"user":"bob"}"#)
            .unwrap();
        assert_eq!(
            (ev.ip.to_string().as_str(), ev.method, ev.user.as_deref()),
            ("2001:db8::1", Method::Post, Some("bob"))
        );
        assert_eq!(
            a.parse(b"{\"a\":1}").unwrap_err(),
            ParseError::UnknownFormat
        );
    }
}
