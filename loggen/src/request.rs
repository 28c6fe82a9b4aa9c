//! One generated request, before it is rendered in a gateway's log format.

use std::net::IpAddr;

/// A request as the gateway would log it. Owned strings: the generator is
/// not a hot path, clarity wins.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Event time, milliseconds since the epoch.
    pub ts_ms: i64,
    /// Client address.
    pub ip: IpAddr,
    /// HTTP method.
    pub method: &'static str,
    /// Host header.
    pub host: &'static str,
    /// Path without query.
    pub path: String,
    /// Query without `?` (empty when none).
    pub query: String,
    /// Response status.
    pub status: u16,
    /// Response bytes.
    pub bytes: u64,
    /// User agent.
    pub user_agent: &'static str,
    /// Basic-auth / login user the request tried, when the log carries it.
    pub user: Option<String>,
    /// Authenticated consumer (Kong), when authenticated.
    pub consumer: Option<String>,
    /// Gateway route name.
    pub route: &'static str,
    /// Total latency in ms.
    pub latency_ms: u32,
}

impl Request {
    /// Path plus `?query` when there is one.
    pub fn uri(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}
