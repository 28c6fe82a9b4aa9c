//! Secrets in configuration: webhook URLs (the URL *is* the credential for
//! Slack), SMTP URLs with passwords, HMAC keys.
//!
//! A [`Secret`] prints as `[redacted]` in `Debug` and `Display`, has no
//! `Serialize` (fields holding one are `#[serde(skip_serializing)]`), and
//! hands its value out only through [`Secret::expose`], so a secret cannot
//! reach a log line, a `{:?}` of the config or an API response by accident.

use serde::Deserialize;
use std::fmt;

/// A configuration value that must never be printed.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that needs it (building a request or a
    /// transport). Never log what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty (an unset environment variable, a blank
    /// config line).
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("https://hooks.slack.com/services/T000/B000/XXXX");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(
            s.expose(),
            "https://hooks.slack.com/services/T000/B000/XXXX"
        );
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            url: Secret,
        }
        assert!(!format!("{:?}", Holder { url: s }).contains("hooks"));
    }
}
