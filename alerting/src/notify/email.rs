//! Email over SMTP (lettre, rustls; no OpenSSL).
//!
//! Each message is `multipart/alternative` (text, then HTML with every
//! untrusted value HTML-escaped), addressed to the channel's recipients.
//! **Threading:** the first mail about an incident on a channel carries
//! `Message-ID: <{incident id}.incident@{domain}>`; every later one has its
//! own `Message-ID: <{delivery id}.delivery@{domain}>` and
//! `In-Reply-To`/`References` to the first, and the same subject with
//! `Re: `, so mail clients group one incident's mails. The Message-ID of a
//! retried mail is the same on every attempt (it derives from the outbox
//! row), so a receiver or archive can drop duplicates;
//! `X-Gatewatch-Delivery` carries the delivery id too. `{domain}` is the
//! sender's domain. Subjects are built from escaped parts: CR, LF and other
//! control characters cannot start a header.
//!
//! SMTP URLs: `smtp://host[:port]` plain (port 25; for a local relay),
//! `smtp://host[:port]?tls=starttls` (or `required`) STARTTLS required
//! (port 587), `?tls=opportunistic` STARTTLS when offered, `smtps://host`
//! implicit TLS (port 465); `user:password@` for AUTH (percent-decoded).
//! A password never crosses the network in clear text: with `user@`, a
//! bare `smtp://` means STARTTLS required, and plain or opportunistic
//! security with a password is refused unless the server is on loopback.

use super::config::{EmailConfig, FormatConfig};
use super::{ConfigError, Content, Notification, Notifier, NotifyError};
use crate::outbox::{DigestSummary, IncidentPayload};
use crate::render::{
    event_title, evidence_lines, header_value, html, incident_url, incidents_url, plain, truncate,
};
use crate::secret::Secret;
use async_trait::async_trait;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::fmt::Write as _;
use std::time::Duration;

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain text: only for a relay on the same host or network.
    Plain,
    /// STARTTLS required.
    StartTls,
    /// STARTTLS when the server offers it.
    Opportunistic,
    /// TLS from the first byte (`smtps`).
    Implicit,
}

/// An SMTP URL that cannot be used; deliberately says nothing of the URL
/// (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum InvalidSmtpUrl {
    /// Not an SMTP URL at all.
    #[error("invalid SMTP URL (expected smtp://host[:port][?tls=starttls|opportunistic] or smtps://host[:port])")]
    Malformed,
    /// Credentials on a connection that may not be encrypted, to a server
    /// off this host: anyone on the path could read the password.
    #[error("an SMTP password may only be sent over TLS (use smtps:// or ?tls=starttls) unless the server is on loopback")]
    CleartextPassword,
}

impl InvalidSmtpUrl {
    /// The configuration error for channel `channel`'s `smtp_url`.
    pub fn into_config_error(self, channel: &str) -> ConfigError {
        let channel = channel.to_owned();
        match self {
            InvalidSmtpUrl::Malformed => ConfigError::Url {
                channel,
                field: "smtp_url",
                expected: "smtp:// or smtps://",
            },
            InvalidSmtpUrl::CleartextPassword => ConfigError::Invalid {
                channel,
                field: "smtp_url",
                problem: "sends a password without TLS to a server off this host (use smtps:// or ?tls=starttls)",
            },
        }
    }
}

/// A parsed SMTP URL. `Debug` redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpTarget {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Connection security.
    pub security: SmtpSecurity,
    /// AUTH user, when given.
    pub user: Option<String>,
    /// AUTH password, when given.
    pub password: Option<Secret>,
}

impl std::fmt::Debug for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}

impl SmtpTarget {
    /// Parses an SMTP URL (see the module docs). The error says nothing of
    /// the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<SmtpTarget, InvalidSmtpUrl> {
        let u = url::Url::parse(url).map_err(|_| InvalidSmtpUrl::Malformed)?;
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(InvalidSmtpUrl::Malformed)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = u
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.to_ascii_lowercase());
        let with_auth = !u.username().is_empty();
        let security = match (u.scheme(), tls.as_deref()) {
            ("smtps", None | Some("implicit" | "wrapper")) => SmtpSecurity::Implicit,
            ("smtp", None) if with_auth => SmtpSecurity::StartTls,
            ("smtp", None | Some("none" | "plain")) => SmtpSecurity::Plain,
            ("smtp", Some("starttls" | "required")) => SmtpSecurity::StartTls,
            ("smtp", Some("opportunistic")) => SmtpSecurity::Opportunistic,
            _ => return Err(InvalidSmtpUrl::Malformed),
        };
        // Opportunistic STARTTLS is no protection: whoever can read the
        // connection can also strip the server's STARTTLS offer.
        let may_be_clear = matches!(security, SmtpSecurity::Plain | SmtpSecurity::Opportunistic);
        if with_auth && may_be_clear && !is_loopback(&host) {
            return Err(InvalidSmtpUrl::CleartextPassword);
        }
        let port = u.port().unwrap_or(match security {
            SmtpSecurity::Implicit => 465,
            SmtpSecurity::StartTls | SmtpSecurity::Opportunistic => 587,
            SmtpSecurity::Plain => 25,
        });
        let decode = |s: &str| percent_decode(s).ok_or(InvalidSmtpUrl::Malformed);
        let user = (!u.username().is_empty())
            .then(|| decode(u.username()))
            .transpose()?;
        let password = u.password().map(decode).transpose()?.map(Secret::new);
        Ok(SmtpTarget {
            host,
            port,
            security,
            user,
            password,
        })
    }
}

/// Whether `host` (as in a URL, brackets removed) is this machine.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Sends one channel's mails.
pub struct EmailNotifier {
    name: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    domain: String,
    public_url: String,
    format: FormatConfig,
}

impl std::fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("name", &self.name)
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

impl EmailNotifier {
    /// A notifier for `config` (validated), linking to `public_url`. Opens
    /// no connection.
    pub fn new(config: &EmailConfig, public_url: &str) -> Result<Self, ConfigError> {
        let build = |reason: String| ConfigError::Build {
            channel: config.name.clone(),
            reason,
        };
        let target = SmtpTarget::parse(config.smtp_url.expose())
            .map_err(|e| e.into_config_error(&config.name))?;
        let extra_ca = match &config.tls_ca_file {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| build(format!("reading tls_ca_file {}: {e}", path.display())))?;
                let ca = Certificate::from_pem(&pem).map_err(|e| {
                    build(format!(
                        "tls_ca_file {} holds no PEM certificate: {e}",
                        path.display()
                    ))
                })?;
                Some(ca)
            }
        };
        let tls_params = || {
            let mut params = TlsParameters::builder(target.host.clone());
            if let Some(ca) = extra_ca.clone() {
                params = params.add_root_certificate(ca);
            }
            params.build().map_err(|e| build(format!("TLS: {e}")))
        };
        let tls = match target.security {
            SmtpSecurity::Plain => Tls::None,
            SmtpSecurity::StartTls => Tls::Required(tls_params()?),
            SmtpSecurity::Opportunistic => Tls::Opportunistic(tls_params()?),
            SmtpSecurity::Implicit => Tls::Wrapper(tls_params()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&target.host)
            .port(target.port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(config.timeout_secs)));
        if let Some(user) = &target.user {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                target
                    .password
                    .as_ref()
                    .map(|p| p.expose().to_owned())
                    .unwrap_or_default(),
            ));
        }
        let from: Mailbox = config.from.parse().map_err(|_| ConfigError::Address {
            channel: config.name.clone(),
            field: "from",
            value: config.from.clone(),
        })?;
        let to = config
            .to
            .iter()
            .map(|t| {
                t.parse().map_err(|_| ConfigError::Address {
                    channel: config.name.clone(),
                    field: "to",
                    value: t.clone(),
                })
            })
            .collect::<Result<Vec<Mailbox>, _>>()?;
        Ok(EmailNotifier {
            name: config.name.clone(),
            transport: builder.build(),
            domain: from.email.domain().to_owned(),
            from,
            to,
            public_url: public_url.to_owned(),
            format: config.format.clone(),
        })
    }
}

#[async_trait]
impl Notifier for EmailNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let message = build_message(
            n,
            &self.from,
            &self.to,
            &self.domain,
            &self.public_url,
            &self.format,
        )?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            // lettre's errors name the server's reply, never the password.
            Err(e) if e.is_permanent() => Err(NotifyError::Permanent {
                reason: format!("SMTP: {e}"),
            }),
            Err(e) => Err(NotifyError::Transient {
                reason: format!("SMTP: {e}"),
            }),
        }
    }
}

/// The Message-ID that starts an incident's thread.
pub fn thread_id(incident: uuid::Uuid, domain: &str) -> String {
    format!("<{incident}.incident@{domain}>")
}

/// The mail for `n` (public for tests and previews).
pub fn build_message(
    n: &Notification,
    from: &Mailbox,
    to: &[Mailbox],
    domain: &str,
    public_url: &str,
    format: &FormatConfig,
) -> Result<Message, NotifyError> {
    let mut b = Message::builder().from(from.clone());
    for t in to {
        b = b.to(t.clone());
    }
    let (subject, text, body_html) = match &n.content {
        Content::Incident(p) => {
            let root = thread_id(p.incident.id, domain);
            let subject = header_value(
                &format!(
                    "{} {} from {} [{}]",
                    format.title_prefix,
                    p.incident.kind,
                    truncate(&p.incident.client, 100),
                    &p.incident.id.simple().to_string()[..8]
                ),
                200,
            );
            if n.thread_first {
                b = b.message_id(Some(root));
            } else {
                b = b
                    .message_id(Some(format!("<{}.delivery@{domain}>", n.delivery_id)))
                    .in_reply_to(root.clone())
                    .references(root);
            }
            let subject = if n.thread_first {
                subject
            } else {
                format!("Re: {subject}")
            };
            let (text, body_html) = incident_bodies(n, p, public_url, format);
            (subject, text, body_html)
        }
        Content::Digest(d) => {
            b = b.message_id(Some(format!("<{}.delivery@{domain}>", n.delivery_id)));
            let subject = header_value(
                &format!(
                    "{} {} notifications held back by flood control",
                    format.title_prefix, d.held
                ),
                200,
            );
            let (text, body_html) = digest_bodies(d, public_url);
            (subject, text, body_html)
        }
    };
    let mut message = b
        .subject(subject)
        .multipart(MultiPart::alternative_plain_html(text, body_html))
        .map_err(|e| NotifyError::Permanent {
            reason: format!("cannot build the mail: {e}"),
        })?;
    message.headers_mut().insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("X-Gatewatch-Delivery"),
        n.delivery_id.to_string(),
    ));
    message.headers_mut().insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("X-Gatewatch-Event"),
        n.event.as_str().to_owned(),
    ));
    Ok(message)
}

fn incident_bodies(
    n: &Notification,
    p: &IncidentPayload,
    public_url: &str,
    format: &FormatConfig,
) -> (String, String) {
    let i = &p.incident;
    let url = incident_url(public_url, i.id);
    let mut rows: Vec<(&str, String)> = vec![
        ("Severity", i.severity.to_string()),
        ("Kind", i.kind.to_string()),
        ("Client", truncate(&i.client, 300)),
        ("Technique", truncate(&i.technique, 100)),
        ("Status", i.status.as_str().to_owned()),
        ("Events", i.events.to_string()),
        ("First seen", i.first_seen.to_string()),
        ("Last seen", i.last_seen.to_string()),
        ("Sources", truncate(&i.sources.join(", "), 300)),
    ];
    if let Some(a) = &i.assignee {
        rows.push(("Assignee", truncate(a, 100)));
    }
    rows.push(("Changed by", truncate(&p.actor, 100)));
    let evidence: Vec<(String, String)> = evidence_lines(i, format.evidence_lines)
        .into_iter()
        .map(|(l, v)| (l, truncate(&v, 300)))
        .collect();
    let summary = truncate(&i.summary, 2000);
    let title = format!("{}: {} ({})", event_title(n.event), i.kind, i.severity);

    let mut text = format!("{title}\n\n{}\n\n", plain(&summary));
    for (k, v) in &rows {
        let _ = writeln!(text, "{k}: {}", plain(v));
    }
    if !evidence.is_empty() {
        text.push_str("\nEvidence:\n");
        for (l, v) in &evidence {
            let _ = writeln!(text, "  {l}: {}", plain(v));
        }
    }
    if let Some(note) = &p.note {
        let _ = write!(text, "\nNote: {}\n", plain(&truncate(note, 2000)));
    }
    let _ = write!(text, "\nOpen the incident: {url}\n");

    let mut h = String::from("<!DOCTYPE html><html><body style=\"font-family:sans-serif\">");
    let _ = write!(
        h,
        "<h2>{}</h2><p>{}</p><table>",
        html(&title),
        html(&summary)
    );
    for (k, v) in &rows {
        let _ = write!(
            h,
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            html(k),
            html(v)
        );
    }
    h.push_str("</table>");
    if !evidence.is_empty() {
        h.push_str("<h3>Evidence</h3><ul>");
        for (l, v) in &evidence {
            let _ = write!(h, "<li>{}: <code>{}</code></li>", html(l), html(v));
        }
        h.push_str("</ul>");
    }
    if let Some(note) = &p.note {
        let _ = write!(h, "<p><b>Note:</b> {}</p>", html(&truncate(note, 2000)));
    }
    let _ = write!(
        h,
        "<p><a href=\"{}\">Open the incident in gatewatch</a></p></body></html>",
        html(&url)
    );
    (text, h)
}

fn digest_bodies(d: &DigestSummary, public_url: &str) -> (String, String) {
    let url = incidents_url(public_url);
    let lines = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
    };
    let intro = format!(
        "{} notifications about {} clients, enqueued between {} and {}, were held back by flood control and are summarised here.",
        d.held,
        d.clients,
        d.first_at.format("%Y-%m-%dT%H:%M:%SZ"),
        d.last_at.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let groups = [
        ("By kind", lines(&d.by_kind)),
        ("By severity", lines(&d.by_severity)),
        ("By event", lines(&d.by_event)),
        (
            "Top clients",
            d.top_clients
                .iter()
                .map(|c| format!("{}: {}", truncate(&c.client, 200), c.notifications))
                .collect(),
        ),
    ];
    let mut text = format!("{intro}\n");
    let mut h = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><p>{}</p>",
        html(&intro)
    );
    for (title, items) in &groups {
        let _ = write!(text, "\n{title}:\n");
        let _ = write!(h, "<h3>{}</h3><ul>", html(title));
        for item in items {
            let _ = writeln!(text, "  {}", plain(item));
            let _ = write!(h, "<li>{}</li>", html(item));
        }
        h.push_str("</ul>");
    }
    let _ = write!(text, "\nIncidents: {url}\n");
    let _ = write!(
        h,
        "<p><a href=\"{}\">Open the incident list</a></p></body></html>",
        html(&url)
    );
    (text, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls() {
        let t = SmtpTarget::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.security),
            ("127.0.0.1", 2525, SmtpSecurity::Plain)
        );
        let t = SmtpTarget::parse("smtps://user:p%40ss@mail.example.org").unwrap();
        assert_eq!(t.port, 465);
        assert_eq!(t.security, SmtpSecurity::Implicit);
        assert_eq!(t.user.as_deref(), Some("user"));
        assert_eq!(t.password.as_ref().map(|p| p.expose()), Some("p@ss"));
        assert!(!format!("{t:?}").contains("p@ss"));
        let t = SmtpTarget::parse("smtp://mail.example.org?tls=starttls").unwrap();
        assert_eq!((t.port, t.security), (587, SmtpSecurity::StartTls));
        assert!(SmtpTarget::parse("http://mail.example.org").is_err());
        assert!(SmtpTarget::parse("smtp://mail.example.org?tls=bogus").is_err());
    }

    #[test]
    fn passwords_only_travel_encrypted() {
        // With AUTH, a bare smtp:// is STARTTLS required, not plain.
        let t = SmtpTarget::parse("smtp://user:pass@mail.example.org:587").unwrap();
        assert_eq!((t.port, t.security), (587, SmtpSecurity::StartTls));
        let t = SmtpTarget::parse("smtp://user:pass@mail.example.org").unwrap();
        assert_eq!((t.port, t.security), (587, SmtpSecurity::StartTls));
        for clear in [
            "smtp://user:pass@mail.example.org?tls=none",
            "smtp://user:pass@mail.example.org:25?tls=plain",
            "smtp://user:pass@192.0.2.7?tls=opportunistic",
            "smtp://user@[2001:db8::1]?tls=none",
        ] {
            let err = SmtpTarget::parse(clear).unwrap_err();
            assert!(
                matches!(err, InvalidSmtpUrl::CleartextPassword),
                "{clear}: {err}"
            );
            assert!(!err.to_string().contains("pass@"), "{err}");
        }
        // A relay on this host may take AUTH in plain text.
        for local in [
            "smtp://user:pass@127.0.0.1:2525?tls=none",
            "smtp://user:pass@localhost:2525?tls=plain",
            "smtp://user:pass@[::1]:2525?tls=opportunistic",
        ] {
            let t = SmtpTarget::parse(local).unwrap();
            assert_eq!(t.password.as_ref().map(|p| p.expose()), Some("pass"));
        }
        // Without a password nothing secret is at stake.
        let t = SmtpTarget::parse("smtp://mail.example.org").unwrap();
        assert_eq!((t.port, t.security), (25, SmtpSecurity::Plain));
    }
}
