//! Generic webhooks: a signed JSON POST for SOAR tools and paging services.
//!
//! The body is one JSON object:
//!
//! ```json
//! {"delivery_id": "…", "event": "opened", "url": "https://gw/#/incidents/…",
//!  "incident": { …the incident format… }, "change": {"type": "created"},
//!  "actor": "detector:credential_stuffing", "note": null}
//! ```
//!
//! or, for a digest, `{"delivery_id", "event": "digest", "url", "digest": {…}}`.
//! The body is the same on every attempt of a delivery.
//!
//! Headers:
//!
//! * `X-Gatewatch-Delivery` and `Idempotency-Key`: the delivery id, stable
//!   across retries — **drop a request whose id you have already seen**.
//! * `X-Gatewatch-Event`: the event (`opened`, `escalated`, …, `digest`).
//! * `X-Gatewatch-Timestamp`: Unix seconds when this attempt was signed.
//! * `X-Gatewatch-Signature`: `sha256=` + lowercase hex of
//!   HMAC-SHA256(secret, `{timestamp}.{raw body}`).
//!
//! **Receivers** recompute the HMAC over the timestamp header, a `.`, and
//! the raw body bytes (before any JSON parsing), compare in constant time,
//! and reject timestamps more than a few minutes from their clock (replay
//! protection); [`verify`] does exactly that. Any 2xx is success; 429 with
//! `Retry-After` slows gatewatch down; other 4xx are final (dead letter);
//! 5xx and timeouts are retried with backoff.

use super::config::WebhookConfig;
use super::http;
use super::{ConfigError, Content, Notification, Notifier, NotifyError};
use crate::render::{incident_url, incidents_url};
use crate::secret::Secret;
use async_trait::async_trait;
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use serde_json::json;
use sha2::Sha256;

/// POSTs to one webhook.
#[derive(Debug)]
pub struct WebhookNotifier {
    name: String,
    url: Secret,
    secret: Secret,
    client: reqwest::Client,
    public_url: String,
}

impl WebhookNotifier {
    /// A notifier for `config`, linking to `public_url`.
    pub fn new(config: &WebhookConfig, public_url: &str) -> Result<Self, ConfigError> {
        Ok(WebhookNotifier {
            name: config.name.clone(),
            url: config.url.clone(),
            secret: config.secret.clone(),
            client: http::client(
                &config.name,
                std::time::Duration::from_secs(config.timeout_secs),
            )?,
            public_url: public_url.to_owned(),
        })
    }
}

/// The JSON body for `n`.
pub fn body(n: &Notification, public_url: &str) -> serde_json::Value {
    match &n.content {
        Content::Incident(p) => json!({
            "delivery_id": n.delivery_id,
            "event": n.event,
            "url": incident_url(public_url, p.incident.id),
            "incident": p.incident,
            "change": p.change,
            "actor": p.actor,
            "note": p.note,
        }),
        Content::Digest(d) => json!({
            "delivery_id": n.delivery_id,
            "event": n.event,
            "url": incidents_url(public_url),
            "digest": d,
        }),
    }
}

/// `sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a receiver does: checks `signature` (the `X-Gatewatch-Signature`
/// header) over `timestamp` (the `X-Gatewatch-Timestamp` header) and the
/// raw `body`, in constant time, and that the timestamp is within
/// `tolerance_secs` of `now` (Unix seconds).
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now: i64,
    tolerance_secs: i64,
) -> bool {
    let Ok(ts) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    if (now - ts).abs() > tolerance_secs {
        return false;
    }
    let Some(hex_sig) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let body =
            serde_json::to_vec(&body(n, &self.public_url)).map_err(|e| NotifyError::Permanent {
                reason: format!("cannot encode the body: {e}"),
            })?;
        let ts = chrono::Utc::now().timestamp();
        let mut headers = HeaderMap::new();
        http::insert(
            &mut headers,
            "x-gatewatch-delivery",
            n.delivery_id.to_string(),
        );
        http::insert(&mut headers, "idempotency-key", n.delivery_id.to_string());
        http::insert(
            &mut headers,
            "x-gatewatch-event",
            n.event.as_str().to_owned(),
        );
        http::insert(&mut headers, "x-gatewatch-attempt", n.attempt.to_string());
        http::insert(&mut headers, "x-gatewatch-timestamp", ts.to_string());
        http::insert(
            &mut headers,
            "x-gatewatch-signature",
            sign(self.secret.expose().as_bytes(), ts, &body),
        );
        http::post_json(&self.client, &self.url, headers, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip_and_tamper() {
        let body = br#"{"event":"opened"}"#;
        let sig = sign(b"k", 1_700_000_000, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify(b"k", "1700000000", body, &sig, 1_700_000_010, 300));
        assert!(!verify(b"k", "1700000000", b"{}", &sig, 1_700_000_010, 300));
        assert!(!verify(
            b"other",
            "1700000000",
            body,
            &sig,
            1_700_000_010,
            300
        ));
        assert!(!verify(b"k", "1700000001", body, &sig, 1_700_000_010, 300));
        assert!(!verify(b"k", "1700000000", body, &sig, 1_700_009_999, 300));
        // Known answer (computed independently: HMAC-SHA256("k", "1.{}")).
        assert_eq!(
            sign(b"k", 1, b"{}"),
            format!("sha256={}", {
                let mut m = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
                m.update(b"1.{}");
                hex::encode(m.finalize().into_bytes())
            })
        );
    }
}
