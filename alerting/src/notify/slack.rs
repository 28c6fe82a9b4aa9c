//! Slack: incoming-webhook messages in Block Kit.
//!
//! Every message has a fallback `text` (notifications, screen readers) and
//! blocks: a header (trusted words only), fields (severity, kind, client,
//! technique, events, status, times, sources, assignee), the summary, a
//! few evidence lines in a code block, and a link to the incident
//! (`{public_url}/#/incidents/{id}`). Slack's limits are respected by
//! construction: header ≤ 150 characters, section text ≤ 3000, fields ≤ 10
//! of ≤ 2000 each, ≤ 50 blocks (this renderer makes at most 8). Escaped
//! text is never cut with a plain [`truncate`], which could leave half an
//! entity (`&am…`) or an open code span: values are cut by the escaper, and
//! lists keep or drop whole lines (`code_block`, `whole_lines`).
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
    event_title, evidence_lines, incident_url, incidents_url, slack_code, slack_text_max, truncate,
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

/// Evidence lines as one code block of at most `max` characters. Each line
/// is escaped on its own (as in a code span); the first that does not fit
/// whole is cut by the escaper, which never splits an entity, and ends the
/// block. (Cutting the escaped text afterwards could split `&amp;`.)
fn code_block(lines: &[String], max: usize) -> String {
    const FENCES: usize = 6;
    let inner = |span: String| span[1..span.len() - 1].to_owned();
    let mut room = max.saturating_sub(FENCES);
    let mut body: Vec<String> = Vec::new();
    for line in lines {
        let newline = usize::from(!body.is_empty());
        if room <= newline {
            break;
        }
        let whole = inner(slack_code(line, usize::MAX));
        let len = whole.chars().count();
        if newline + len > room {
            body.push(inner(slack_code(line, room - newline)));
            break;
        }
        room -= newline + len;
        body.push(whole);
    }
    format!("```{}```", body.join("\n"))
}

/// Escaped lines, as many as fit in `max` characters, then `+N more` for
/// the rest: a line is kept or dropped, never cut (a cut could split an
/// entity or leave a code span open). Room for the `+N more` line is kept
/// free while lines remain.
fn whole_lines(lines: &[String], max: usize) -> String {
    let more = |left: usize| format!("+{left} more");
    let mut out = String::new();
    let mut used = 0;
    for (k, line) in lines.iter().enumerate() {
        let left = lines.len() - k - 1;
        let need = usize::from(k > 0) + line.chars().count();
        let tail = if left > 0 { 1 + more(left).len() } else { 0 };
        if used + need + tail > max {
            if k == 0 {
                return truncate(&more(lines.len()), max);
            }
            out.push('\n');
            out.push_str(&more(lines.len() - k));
            return out;
        }
        if k > 0 {
            out.push('\n');
        }
        out.push_str(line);
        used += need;
    }
    out
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
            code_block(&lines, MAX_SECTION_TEXT - 20)
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
    let lines: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{}: {v}", slack_code(k, 60)))
        .collect();
    whole_lines(&lines, MAX_FIELD_TEXT - 20)
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
            whole_lines(&top, MAX_SECTION_TEXT - 20)
        )),
        section(format!("<{}|Open the incident list>", incidents_url(public_url))),
    ];
    (text, blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{Incident, IncidentStatus};
    use crate::outbox::{ClientCount, NotifyEvent};
    use gatewatch_detector::{EventTime, IncidentKind, Severity};
    use std::collections::BTreeMap;
    use uuid::Uuid;

    const PUBLIC_URL: &str = "https://gw.example.org/";

    /// Everything Slack would act on, and 2-, 3- and 4-byte characters, so
    /// that cuts land on entities and inside multi-byte characters.
    const NASTY: &str = "é€😀 & <!channel> <!here> <@U123> <http://x|y> *b* _i_ ~s~ `c`\r\n";

    fn nasty(chars: usize) -> String {
        NASTY.chars().cycle().take(chars).collect()
    }

    /// `&` only: every character becomes a five-character entity.
    fn ampersands(chars: usize) -> String {
        "&".repeat(chars)
    }

    fn incident(client: String, summary: String, evidence: Value) -> Incident {
        Incident {
            id: Uuid::from_u128(0x1234),
            fingerprint: "fp".into(),
            kind: IncidentKind::CredentialStuffing,
            technique: nasty(5_000),
            client,
            sources: (0..20).map(|k| format!("{}{k}", nasty(200))).collect(),
            first_seen: EventTime::from_millis(1_700_000_000_000),
            last_seen: EventTime::from_millis(1_700_000_600_000),
            detected_at: EventTime::from_millis(1_700_000_600_000),
            severity: Severity::High,
            status: IncidentStatus::Open,
            summary,
            evidence,
            events: 12_345,
            revision: 3,
            assignee: Some(nasty(5_000)),
        }
    }

    fn notification(content: Content) -> Notification {
        Notification {
            delivery_id: Uuid::from_u128(0x5678),
            channel: "slack".into(),
            event: NotifyEvent::Opened,
            attempt: 1,
            thread_first: true,
            content,
        }
    }

    fn incident_message(i: Incident, note: Option<String>, format: &FormatConfig) -> Value {
        let n = notification(Content::Incident(Box::new(IncidentPayload {
            incident: i,
            change: json!({"type": "opened"}),
            actor: nasty(5_000),
            note,
        })));
        message(&n, PUBLIC_URL, format)
    }

    /// An incident with every attacker-controlled string far over every
    /// limit, and as much evidence as a config can ask for.
    fn oversized(text: impl Fn(usize) -> String) -> Value {
        let evidence = json!({
            "sample_paths": (0..30).map(|_| text(5_000)).collect::<Vec<_>>(),
            "sample_users": (0..30).map(|_| text(5_000)).collect::<Vec<_>>(),
            "sample_user_agents": (0..30).map(|_| text(5_000)).collect::<Vec<_>>(),
            "failures": 42,
        });
        let format = FormatConfig {
            title_prefix: "[gåtewätch😀]".repeat(50),
            evidence_lines: 100,
        };
        incident_message(
            incident(text(10_000), text(10_000), evidence),
            Some(text(10_000)),
            &format,
        )
    }

    fn chars(v: &Value) -> usize {
        v.as_str().expect("a string").chars().count()
    }

    /// Every limit of Slack's Block Kit that this renderer can meet, and
    /// the escaping of every mrkdwn string; returns the mrkdwn strings.
    fn check(msg: &Value) -> Vec<String> {
        let mut mrkdwn = vec![msg["text"].as_str().unwrap().to_owned()];
        assert!(chars(&msg["text"]) <= MAX_SECTION_TEXT, "text");
        let blocks = msg["blocks"].as_array().unwrap();
        assert!(blocks.len() <= MAX_BLOCKS, "{} blocks", blocks.len());
        for b in blocks {
            match b["type"].as_str().unwrap() {
                "header" => {
                    assert_eq!(b["text"]["type"], "plain_text");
                    assert!(chars(&b["text"]["text"]) <= MAX_HEADER_TEXT, "{b}");
                }
                "section" => {
                    if let Some(fields) = b.get("fields") {
                        let fields = fields.as_array().unwrap();
                        assert!(fields.len() <= MAX_FIELDS, "{} fields", fields.len());
                        for f in fields {
                            assert_eq!(f["type"], "mrkdwn");
                            assert!(chars(&f["text"]) <= MAX_FIELD_TEXT, "{f}");
                            mrkdwn.push(f["text"].as_str().unwrap().to_owned());
                        }
                    } else {
                        assert_eq!(b["text"]["type"], "mrkdwn");
                        assert!(chars(&b["text"]["text"]) <= MAX_SECTION_TEXT, "{b}");
                        mrkdwn.push(b["text"]["text"].as_str().unwrap().to_owned());
                    }
                }
                "context" => {
                    let elements = b["elements"].as_array().unwrap();
                    assert!(elements.len() <= 10);
                    for e in elements {
                        assert!(chars(&e["text"]) <= MAX_SECTION_TEXT, "{e}");
                        mrkdwn.push(e["text"].as_str().unwrap().to_owned());
                    }
                }
                other => panic!("unexpected block {other}"),
            }
        }
        for s in &mrkdwn {
            assert_escaped(s);
        }
        mrkdwn
    }

    /// No markup but our own link, every `&` starts a whole entity (a cut
    /// never left `&am…`), and code spans are closed (a cut never left
    /// attacker text outside one).
    fn assert_escaped(s: &str) {
        let ours = format!(
            "<https://gw.example.org/#/incidents/{}|",
            Uuid::from_u128(0x1234)
        );
        let s = s
            .replace(&format!("{ours}Open incident in gatewatch>"), "")
            .replace(
                "<https://gw.example.org/#/incidents|Open the incident list>",
                "",
            );
        assert!(!s.contains(['<', '>', '\r']), "markup in {s}");
        for (at, _) in s.match_indices('&') {
            assert!(
                ["&amp;", "&lt;", "&gt;"]
                    .iter()
                    .any(|e| s[at..].starts_with(e)),
                "a split entity at {at} in {s}"
            );
        }
        assert_eq!(s.matches('`').count() % 2, 0, "an open code span in {s}");
    }

    #[test]
    fn oversized_incidents_stay_within_slack_limits() {
        for msg in [oversized(nasty), oversized(ampersands)] {
            let mrkdwn = check(&msg);
            let blocks = msg["blocks"].as_array().unwrap();
            assert_eq!(blocks[0]["type"], "header");
            assert_eq!(chars(&blocks[0]["text"]["text"]), MAX_HEADER_TEXT);
            assert!(blocks[0]["text"]["text"].as_str().unwrap().ends_with('…'));
            // Every field is there: none was dropped to meet the limit.
            let labels: Vec<&str> = blocks[1]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["text"].as_str().unwrap().split('\n').next().unwrap())
                .collect();
            assert_eq!(
                labels,
                [
                    "*Severity*",
                    "*Kind*",
                    "*Client*",
                    "*Technique*",
                    "*Events*",
                    "*Status*",
                    "*First seen*",
                    "*Last seen*",
                    "*Sources*",
                    "*Assignee*"
                ]
            );
            // The fallback text's parts are bounded each: it stays short.
            assert!(chars(&msg["text"]) < 300, "{}", msg["text"]);
            let all = mrkdwn.join("\n");
            assert!(all.contains("*Evidence*\n```"), "{all}");
            assert!(all.contains("*Note*\n"));
            assert!(all.contains("|Open incident in gatewatch>"));
            assert!(all.contains(&format!("delivery `{}`", Uuid::from_u128(0x5678))));
        }
    }

    #[test]
    fn attacker_text_stays_escaped_after_a_cut() {
        let all = check(&oversized(nasty)).join("\n");
        for raw in ["<!channel>", "<!here>", "<@U123>", "<http://x|y>"] {
            assert!(!all.contains(raw), "{raw}");
        }
        assert!(all.contains("&lt;!channel&gt;") && all.contains("&lt;@U123&gt;"));
        assert!(all.contains("&lt;http://x|y&gt;") && all.contains("&amp;"));
        assert!(all.contains("é€😀"));
    }

    /// Cuts at every length around the limits land on every character of
    /// the nasty string, entities and multi-byte characters included: the
    /// first evidence line shifts where the evidence block's budget runs
    /// out, the other lengths where each value's own limit does.
    #[test]
    fn every_cut_point_is_safe() {
        for extra in 0..2 * NASTY.chars().count() {
            for text in [nasty, ampersands] {
                let mut paths = vec![text(1 + extra)];
                paths.extend((0..11).map(|_| text(300)));
                let evidence = json!({ "sample_paths": paths });
                let format = FormatConfig {
                    evidence_lines: 12,
                    ..FormatConfig::default()
                };
                let i = incident(text(290 + extra), text(2_990 + extra), evidence);
                check(&incident_message(i, Some(text(2_990 + extra)), &format));
            }
        }
    }

    #[test]
    fn lists_keep_whole_lines() {
        let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(whole_lines(&lines(&["aaa", "bbb"]), 20), "aaa\nbbb");
        assert_eq!(
            whole_lines(&lines(&["aaa", "bbb", "ccc"]), 11),
            "aaa\n+2 more"
        );
        assert_eq!(whole_lines(&lines(&["aaa", "bbb"]), 3), "+2…");
        assert_eq!(
            code_block(&lines(&["a&b", "c<d"]), 20),
            "```a&amp;b\nc&lt;d```"
        );
        // Room for `a&amp;b` and a cut second line: `c…`, not `c&l…`; the
        // cut line is the last.
        assert_eq!(
            code_block(&lines(&["a&b", "c<d", "e"]), 16),
            "```a&amp;b\nc…```"
        );
    }

    #[test]
    fn oversized_digests_stay_within_slack_limits() {
        let many = |n: usize| -> BTreeMap<String, u64> {
            (0..n)
                .map(|k| (format!("{}{k}", nasty(80)), k as u64))
                .collect()
        };
        let d = DigestSummary {
            channel: "slack".into(),
            held: 100_000,
            clients: 50_000,
            first_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            last_at: chrono::DateTime::from_timestamp(1_700_003_600, 0).unwrap(),
            by_kind: many(500),
            by_severity: many(500),
            by_event: many(500),
            top_clients: (0..500)
                .map(|k| ClientCount {
                    client: format!("{}{k}", ampersands(200)),
                    notifications: k,
                })
                .collect(),
            incidents: Vec::new(),
        };
        let format = FormatConfig {
            title_prefix: nasty(1_000),
            ..FormatConfig::default()
        };
        let msg = message(&notification(Content::Digest(d)), PUBLIC_URL, &format);
        let all = check(&msg).join("\n");
        assert!(all.contains("|Open the incident list>"));
        assert!(!all.contains("<!channel>"));
        // The lists that did not fit say how much is missing.
        let fields = msg["blocks"][2]["fields"].as_array().unwrap();
        assert_eq!(fields.len(), 3);
        for f in fields {
            let t = f["text"].as_str().unwrap();
            assert!(t.ends_with(" more") && t.contains("\n+"), "{t}");
        }
        let top = msg["blocks"][3]["text"]["text"].as_str().unwrap();
        assert!(top.starts_with("*Top clients*\n`&amp;") && top.ends_with(" more"));
    }

    #[test]
    fn a_small_incident_is_shown_whole() {
        let evidence = json!({"sample_paths": ["/login?a=1&b=<2>"], "failures": 42});
        let mut i = incident("203.0.113.9".into(), "stuffing & more".into(), evidence);
        i.technique = "credential_stuffing".into();
        i.sources = vec!["203.0.113.9".into()];
        i.assignee = None;
        let msg = incident_message(i, None, &FormatConfig::default());
        let all = check(&msg).join("\n");
        assert_eq!(
            msg["blocks"][0]["text"]["text"],
            "[gatewatch] New incident: credential_stuffing (high)"
        );
        assert!(all.contains("*Client*\n`203.0.113.9`"));
        assert!(all.contains("*Events*\n12345"));
        assert!(all.contains("*Summary*\nstuffing &amp; more"));
        assert!(
            all.contains("```path: /login?a=1&amp;b=&lt;2&gt;\nfailures: 42```"),
            "{all}"
        );
        assert!(all.contains(
            "<https://gw.example.org/#/incidents/00000000-0000-0000-0000-000000001234|Open incident in gatewatch>"
        ));
    }
}
