//! The HTTP side shared by Slack and webhooks: one client per channel, a
//! POST, and the response classified for the worker.

use super::{ConfigError, NotifyError};
use crate::secret::Secret;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use std::time::Duration;

/// A client that never follows redirects (a webhook URL that redirects is a
/// misconfiguration, and following could leak the body elsewhere).
pub(crate) fn client(channel: &str, timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("gatewatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConfigError::Build {
            channel: channel.to_owned(),
            reason: e.without_url().to_string(),
        })
}

/// A failed request as text for logs and the outbox's `last_error`: the
/// error and its causes ("error sending request: client error (Connect):
/// tcp connect error: Connection refused"), so an operator can tell a
/// refused connection from DNS or TLS trouble, but never the URL — it is a
/// credential (`without_url`, and any cause quoting it is cut).
fn describe(e: reqwest::Error, url: &Secret) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    if !url.expose().is_empty() && text.contains(url.expose()) {
        text = text.replace(url.expose(), "<url>");
    }
    text
}

/// POSTs `body` as JSON to `url` with `headers`; `Ok` on 2xx.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    url: &Secret,
    headers: HeaderMap,
    body: Vec<u8>,
) -> Result<(), NotifyError> {
    let response = client
        .post(url.expose())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| NotifyError::Transient {
            reason: describe(e, url),
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    // The receiver's own words help the operator ("invalid_payload",
    // "no_service"); bounded, one line.
    let text = response.text().await.unwrap_or_default();
    let said = crate::render::header_value(&text, 200);
    match status.as_u16() {
        429 => Err(NotifyError::RateLimited { retry_after }),
        408 | 500..=599 => Err(NotifyError::Transient {
            reason: format!("HTTP {status}: {said}"),
        }),
        _ => Err(NotifyError::Permanent {
            reason: format!("HTTP {status}: {said}"),
        }),
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 7231 §7.1.3).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// A header from trusted ASCII (names are static; values are ids and
/// numbers we produce).
pub(crate) fn insert(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_says_so_without_the_url() {
        // A port nothing listens on: bind one, then let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = Secret::new(format!("http://127.0.0.1:{port}/hooks/T0/s3cr3t-token"));
        let client = client("test", Duration::from_secs(2)).unwrap();
        let err = post_json(&client, &url, HeaderMap::new(), b"{}".to_vec())
            .await
            .unwrap_err();
        let NotifyError::Transient { reason } = err else {
            panic!("a refused connection is worth retrying: {err:?}");
        };
        assert!(reason.to_lowercase().contains("refused"), "{reason}");
        assert!(!reason.contains("s3cr3t-token"), "{reason}");
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
