//! Making attacker-controlled text safe for each medium, and the shared
//! pieces of every message.
//!
//! Paths, user agents, usernames, client keys and the summaries built from
//! them come from the logs, that is from whoever sends requests. Before any
//! of it reaches a person it goes through exactly one of these functions:
//!
//! * [`slack_text`] for Slack `mrkdwn`: `&`, `<`, `>` become entities (so no
//!   `<!channel>`, `<@U…>` or `<http://…|link>` survives), and the
//!   formatting characters `` ` * _ ~ `` are neutralised, so a path cannot
//!   turn a message bold or close a code span; [`slack_code`] puts a value
//!   in a code span (no auto-linking, no formatting) after the same escaping.
//! * [`html`] for the HTML part of emails (`& < > " '`).
//! * [`header_value`] for email headers (subject): control characters,
//!   CR and LF removed, so nothing can start a new header.
//! * JSON (webhooks) needs nothing beyond serde's own escaping.
//!
//! Every function also bounds the length ([`truncate`]), counting
//! characters, never splitting one.

use crate::incident::Incident;
use crate::outbox::NotifyEvent;
use uuid::Uuid;

/// Cuts `s` to at most `max` characters, marking a cut with `…` (which
/// counts towards `max`).
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Escapes `s` one character at a time with `esc`, stopping before the
/// output would exceed `max` characters (then ending with `…`): a cut never
/// splits an entity.
fn escape_with(s: &str, max: usize, esc: impl Fn(char, &mut String)) -> String {
    let mut out = String::with_capacity(s.len().min(max.saturating_mul(4)) + 8);
    let mut n = 0usize;
    let mut piece = String::new();
    let total = s.chars().count();
    for (k, c) in s.chars().enumerate() {
        piece.clear();
        esc(c, &mut piece);
        let len = piece.chars().count();
        // Room for this piece, and for the `…` if more is to come.
        let reserve = usize::from(k + 1 < total);
        if n + len + reserve > max {
            if max > 0 {
                out.push('…');
            }
            return out;
        }
        out.push_str(&piece);
        n += len;
    }
    out
}

fn slack_char(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '`' => out.push('ˋ'),
        '*' => out.push('∗'),
        '_' => out.push('＿'),
        '~' => out.push('∼'),
        '\n' => out.push('\n'),
        c if c.is_control() => out.push(' '),
        c => out.push(c),
    }
}

fn slack_code_char(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '`' => out.push('ˋ'),
        c if c.is_control() => out.push(' '),
        c => out.push(c),
    }
}

/// Escapes text for Slack `mrkdwn`: entities for `& < >`, and formatting
/// characters replaced by look-alikes that Slack does not interpret
/// (`` ` `` → `ˋ`, `*` → `∗`, `_` → `＿`, `~` → `∼`). Control characters
/// other than newline become spaces.
pub fn slack_text(s: &str) -> String {
    escape_with(s, usize::MAX, slack_char)
}

/// [`slack_text`], at most `max` characters of output.
pub fn slack_text_max(s: &str, max: usize) -> String {
    escape_with(s, max, slack_char)
}

/// A value as a Slack inline code span: one line, `& < >` escaped,
/// backticks replaced, at most `max` characters inside the backticks.
pub fn slack_code(s: &str, max: usize) -> String {
    format!("`{}`", escape_with(s, max, slack_code_char))
}

/// Escapes text for HTML element content and attribute values.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text for a mail header: every control character (CR and LF included)
/// becomes a space, runs of spaces collapse, at most `max` characters.
pub fn header_value(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        let c = if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if !space && !out.is_empty() {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    truncate(out.trim_end(), max)
}

/// Text for a plain-text body line: control characters other than newline
/// and tab become spaces (no terminal escapes reach a mail reader).
pub fn plain(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// The link to an incident on the web page: `{public_url}/#/incidents/{id}`.
pub fn incident_url(public_url: &str, id: Uuid) -> String {
    format!("{}/#/incidents/{id}", public_url.trim_end_matches('/'))
}

/// The link to the incident list on the web page.
pub fn incidents_url(public_url: &str) -> String {
    format!("{}/#/incidents", public_url.trim_end_matches('/'))
}

/// A short human title for an event (trusted text: no escaping needed).
pub fn event_title(event: NotifyEvent) -> &'static str {
    match event {
        NotifyEvent::Opened => "New incident",
        NotifyEvent::Escalated => "Incident escalated",
        NotifyEvent::Reopened => "Incident reopened",
        NotifyEvent::Acknowledged => "Incident acknowledged",
        NotifyEvent::Resolved => "Incident resolved",
        NotifyEvent::Digest => "Notifications held back",
    }
}

/// Evidence worth showing a person, as `label: value` lines (untrusted
/// values; escape them for the medium): the samples of paths, users and
/// user agents first, then top-level counts. At most `max` lines.
pub fn evidence_lines(incident: &Incident, max: usize) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    let Some(ev) = incident.evidence.as_object() else {
        return lines;
    };
    for (key, label) in [
        ("sample_paths", "path"),
        ("sample_users", "user"),
        ("sample_user_agents", "user agent"),
        ("user_agents", "user agent"),
    ] {
        if let Some(items) = ev.get(key).and_then(|v| v.as_array()) {
            for item in items {
                let value = match item {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                lines.push((label.to_owned(), value));
            }
        }
    }
    for (key, value) in ev {
        if let Some(n) = value.as_u64() {
            lines.push((key.replace('_', " "), n.to_string()));
        } else if let Some(f) = value.as_f64() {
            lines.push((key.replace('_', " "), format!("{f}")));
        }
    }
    lines.truncate(max);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const NASTY: &str = "<!channel> <script>alert(1)</script> <@U123> <http://evil|click>\r\nX-Injected: yes `code` *bold* _it_ ~s~ & done";

    #[test]
    fn slack_text_leaves_no_markup() {
        let s = slack_text(NASTY);
        assert!(!s.contains('<') && !s.contains('>'), "{s}");
        assert!(s.contains("&lt;!channel&gt;"));
        assert!(s.contains("&lt;@U123&gt;"));
        assert!(s.contains("&lt;http://evil|click&gt;"));
        assert!(s.contains("&amp; done"));
        for c in ['`', '*', '_', '~', '\r'] {
            assert!(!s.contains(c), "{c:?} in {s}");
        }
    }

    #[test]
    fn slack_code_is_one_escaped_span() {
        let s = slack_code(NASTY, 500);
        assert!(s.starts_with('`') && s.ends_with('`'));
        assert_eq!(s.matches('`').count(), 2);
        assert!(!s[1..s.len() - 1].contains(['<', '>', '\n', '\r']));
        assert_eq!(slack_code("abcdef", 4), "`abc…`");
    }

    #[test]
    fn html_escapes_markup_and_quotes() {
        let s = html(NASTY);
        assert!(!s.contains('<') && !s.contains('>'));
        assert!(s.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert_eq!(html(r#"a"b'c"#), "a&quot;b&#39;c");
    }

    #[test]
    fn header_values_cannot_start_a_header() {
        let s = header_value("hi\r\nBcc: victim@example.org\n\tmore", 200);
        assert!(!s.contains(['\r', '\n', '\t']));
        assert_eq!(s, "hi Bcc: victim@example.org more");
        assert_eq!(header_value("x\u{2028}y", 10), "x y");
    }

    #[test]
    fn truncate_counts_characters() {
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abc", 0), "");
    }
}
