//! The minimal borrowed struct the Kong parse-only floor deserialises (the
//! fields an event needs: client_ip, started_at, method, uri, user-agent,
//! status), shared by `benches/json_floor.rs` and
//! `examples/parse_floor.rs` so both floors measure the same thing.

use serde::Deserialize;
use std::borrow::Cow;

/// One Kong line, only what an event needs.
#[derive(Deserialize)]
pub struct KongFloor<'a> {
    #[serde(borrow)]
    client_ip: Cow<'a, str>,
    started_at: u64,
    #[serde(borrow)]
    request: Req<'a>,
    response: Resp,
}

#[derive(Deserialize)]
struct Req<'a> {
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow)]
    uri: Cow<'a, str>,
    #[serde(borrow)]
    headers: Headers<'a>,
}

#[derive(Deserialize)]
struct Headers<'a> {
    #[serde(borrow, rename = "user-agent")]
    user_agent: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Resp {
    status: u16,
}

impl KongFloor<'_> {
    /// Touches every field, so the optimiser cannot drop the parse.
    pub fn touch(&self) -> usize {
        self.client_ip.len()
            + self.started_at as usize
            + self.request.method.len()
            + self.request.uri.len()
            + self.request.headers.user_agent.len()
            + usize::from(self.response.status)
    }
}
