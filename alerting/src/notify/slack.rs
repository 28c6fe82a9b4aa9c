//! Slack: incoming-webhook messages in Block Kit.
//!
//! Every message has a fallback `text` (notifications, screen readers) and
//! blocks: a header (trusted words only), fields (severity, kind, client,
//! technique, events, status, times, sources, assignee), the summary, a
//! few evidence lines in a code block, and a link to the incident
//! (`{public_url}/#/incidents/{id}`). Slack's limits are respected by
//! construction: header ≤ 150 characters, section text ≤ 3000, fields ≤ 10
//! of ≤ 2000 each, ≤ 50 blocks (this renderer makes at most 9).
//!
//! Attacker-controlled text goes through [`crate::render`]: values in code
//! spans or blocks, prose through `slack_text` — so neither `<!channel>`,
//! `<@U…>` nor `<http://…|link>` can reach Slack unescaped. Slack's webhook
//! ignores the `Idempotency-Key` and `X-Gatewatch-Delivery` headers we send
//! (it cannot deduplicate); a proxy in front of it can.

use super::config::{FormatConfig, SlackConfig};
use super::http;
use super::{ConfigError, Content, Notification, Notifier, NotifyError};
use crate::outbox::{DigestSummary, IncidentPayload};
use crate::render::{
    event_title, evidence_lines, incident_url, incidents_url, slack_code, slack_code_block,
    slack_text_max, truncate,
};
use crate::secret::Secret;
use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

/// Slack's limit on a section's text.
pub const MAX_SECTION_TEXT: usize = 3000;
/// Slack's limit on a header's text.
pub const MAX_HEADER_TEXT: usize = 150;
/// Slack's limit on one field's text.
pub const MAX_FIELD_TEXT: usize = 2000;
/// Slack's limit on fields per section.
pub const MAX_FIELDS: usize = 10;
/// Slack's limit on blocks per message.
pub const MAX_BLOCKS: usize = 50;

/// Posts to one Slack incoming webhook.
#[derive(Debug)]
pub struct SlackNotifier {
    name: String,
    url: Secret,
    client: reqwest::Client,
    public_url: String,
    format: FormatConfig,
}

impl SlackNotifier {
    /// A notifier for `config`, linking to `public_url`.
    pub fn new(config: &SlackConfig, public_url: &str) -> Result<Self, ConfigError> {
        Ok(SlackNotifier {
            name: config.name.clone(),
            url: config.webhook_url.clone(),
            client: http::client(
                &config.name,
                std::time::Duration::from_secs(config.timeout_secs),
            )?,
            public_url: public_url.to_owned(),
            format: config.format.clone(),
        })
    }
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let body =
            serde_json::to_vec(&message(n, &self.public_url, &self.format)).map_err(|e| {
                NotifyError::Permanent {
                    reason: format!("cannot encode the message: {e}"),
                }
            })?;
        let mut headers = HeaderMap::new();
        http::insert(&mut headers, "idempotency-key", n.delivery_id.to_string());
        http::insert(
            &mut headers,
            "x-gatewatch-delivery",
            n.delivery_id.to_string(),
        );
        http::insert(&mut headers, "x-gatewatch-attempt", n.attempt.to_string());
        http::post_json(&self.client, &self.url, headers, body).await
    }
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": truncate(&text, MAX_SECTION_TEXT)}})
}

fn field(label: &str, value: String) -> Value {
    json!({"type": "mrkdwn", "text": truncate(&format!("*{label}*\n{value}"), MAX_FIELD_TEXT)})
}

fn header(text: String) -> Value {
    json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&text, MAX_HEADER_TEXT), "emoji": true}})
}

fn context(text: String) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(&text, MAX_SECTION_TEXT)}]})
}

/// The Block Kit message for `n` (public so tests and previews can look at
/// it without sending).
pub fn message(n: &Notification, public_url: &str, format: &FormatConfig) -> Value {
    let (text, mut blocks) = match &n.content {
        Content::Incident(p) => incident_blocks(n, p, public_url, format),
        Content::Digest(d) => digest_blocks(n, d, public_url, format),
    };
    blocks.push(context(format!("delivery `{}`", n.delivery_id)));
    blocks.truncate(MAX_BLOCKS);
    json!({ "text": truncate(&text, MAX_SECTION_TEXT), "blocks": blocks })
}

fn incident_blocks(
    n: &Notification,
    p: &IncidentPayload,
    public_url: &str,
    format: &FormatConfig,
) -> (String, Vec<Value>) {
    let i = &p.incident;
    let prefix = slack_text_max(&format.title_prefix, 40);
    let title = format!(
        "{} {}: {} ({})",
        format.title_prefix,
        event_title(n.event),
        i.kind,
        i.severity
    );
    let text = format!(
        "{prefix} {}: {} ({}) from {}",
        event_title(n.event),
        i.kind,
        i.severity,
        slack_code(&i.client, 100)
    );
    let mut fields = vec![
        field("Severity", i.severity.to_string()),
        field("Kind", i.kind.to_string()),
        field("Client", slack_code(&i.client, 300)),
        field("Technique", slack_code(&i.technique, 100)),
        field("Events", i.events.to_string()),
        field("Status", i.status.as_str().to_owned()),
        field("First seen", i.first_seen.to_string()),
        field("Last seen", i.last_seen.to_string()),
    ];
    if !i.sources.is_empty() {
        let shown: Vec<String> = i
            .sources
            .iter()
            .take(3)
            .map(|s| slack_code(s, 60))
            .collect();
        let more = i.sources.len().saturating_sub(3);
        let mut v = shown.join(" ");
        if more > 0 {
            v.push_str(&format!(" +{more}"));
        }
        fields.push(field("Sources", v));
    }
    if let Some(a) = &i.assignee {
        fields.push(field("Assignee", slack_code(a, 100)));
    }
    fields.truncate(MAX_FIELDS);
    let mut blocks = vec![
        header(title),
        json!({"type": "section", "fields": fields}),
        section(format!(
            "*Summary*\n{}",
            slack_text_max(&i.summary, MAX_SECTION_TEXT - 20)
        )),
    ];
    let lines: Vec<String> = evidence_lines(i, format.evidence_lines)
        .into_iter()
        .map(|(label, value)| format!("{label}: {}", truncate(&value, 300)))
        .collect();
    if !lines.is_empty() {
        blocks.push(section(format!(
            "*Evidence*\n{}",
            slack_code_block(&lines, MAX_SECTION_TEXT - 20)
        )));
    }
    if let Some(note) = &p.note {
        blocks.push(section(format!(
            "*Note*\n{}",
            slack_text_max(note, MAX_SECTION_TEXT - 20)
        )));
    }
    blocks.push(section(format!(
        "<{}|Open incident in gatewatch>",
        incident_url(public_url, i.id)
    )));
    blocks.push(context(format!("by {}", slack_code(&p.actor, 100))));
    (text, blocks)
}

fn counts(map: &std::collections::BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "–".into();
    }
    map.iter()
        .map(|(k, v)| format!("{}: {v}", slack_code(k, 60)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn digest_blocks(
    _n: &Notification,
    d: &DigestSummary,
    public_url: &str,
    format: &FormatConfig,
) -> (String, Vec<Value>) {
    let title = format!(
        "{} {} notifications held back by flood control",
        format.title_prefix, d.held
    );
    let text = format!(
        "{} {} notifications about {} clients held back by flood control",
        slack_text_max(&format.title_prefix, 40),
        d.held,
        d.clients
    );
    let top: Vec<String> = d
        .top_clients
        .iter()
        .map(|c| format!("{} × {}", slack_code(&c.client, 100), c.notifications))
        .collect();
    let blocks = vec![
        header(title),
        section(format!(
            "*{}* notifications about *{}* clients, enqueued between {} and {}, are summarised here instead of sent one by one.",
            d.held,
            d.clients,
            d.first_at.format("%Y-%m-%dT%H:%M:%SZ"),
            d.last_at.format("%Y-%m-%dT%H:%M:%SZ"),
        )),
        json!({"type": "section", "fields": [
            field("By kind", counts(&d.by_kind)),
            field("By severity", counts(&d.by_severity)),
            field("By event", counts(&d.by_event)),
        ]}),
        section(format!(
            "*Top clients*\n{}",
            truncate(&top.join("\n"), MAX_SECTION_TEXT - 20)
        )),
        section(format!("<{}|Open the incident list>", incidents_url(public_url))),
    ];
    (text, blocks)
}
