//! Bearer tokens and roles: who is calling, and may they do this.
//!
//! A token is `gw_` followed by 64 hex digits (256 random bits). The store
//! keeps only its SHA-256: a request's token is hashed, looked up by hash,
//! and the stored hash is compared again in constant time. Handlers declare
//! the role they need by taking [`Viewer`], [`Analyst`] or [`Admin`] as their
//! first argument, so authorization is visible in every signature and runs
//! before any other extractor (401/403 come before 400).

use super::error::ApiError;
use super::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use gatewatch_alerting::store::tokens::{self, TokenRole};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every token: lets secret scanners recognise a leaked one.
pub const TOKEN_PREFIX: &str = "gw_";

/// A new random token (`gw_` + 64 hex digits).
pub fn generate_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("Failed to read the system's random source: {e}"))?;
    Ok(format!("{TOKEN_PREFIX}{}", hex(&bytes)))
}

/// The SHA-256 of a token, lowercase hex: the only form that is stored.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The caller, once its token has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's name.
    pub name: String,
    /// The token's role.
    pub role: TokenRole,
}

impl Principal {
    /// How the timeline names this caller: `token:<name>`.
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }
}

/// Checks the request's bearer token; 401 when absent, unknown or revoked.
async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Principal, ApiError> {
    if let Some(p) = parts.extensions.get::<Principal>() {
        return Ok(p.clone());
    }
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthenticated)?;
    let (scheme, token) = header.split_once(' ').ok_or(ApiError::Unauthenticated)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthenticated);
    }
    let token = token.trim();
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
        return Err(ApiError::Unauthenticated);
    }
    let hash = hash_token(token);
    let db = state.store.db();
    let found = tokens::find_token(&db, &hash).await?;
    let Some(found) = found else {
        return Err(ApiError::Unauthenticated);
    };
    // The lookup was by hash already; comparing again in constant time
    // keeps the check independent of how the database compares text.
    let equal: bool = found.token_sha256.as_bytes().ct_eq(hash.as_bytes()).into();
    if !equal || found.revoked_at.is_some() {
        return Err(ApiError::Unauthenticated);
    }
    if let Err(error) = tokens::touch_token(&db, found.id).await {
        tracing::warn!(error = %error, token = %found.name, "Could not note a token's use.");
    }
    tracing::Span::current().record("actor", tracing::field::display(&found.name));
    let principal = Principal {
        name: found.name,
        role: found.role,
    };
    parts.extensions.insert(principal.clone());
    Ok(principal)
}

macro_rules! role_extractor {
    ($name:ident, $role:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Debug)]
        pub struct $name(pub Principal);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, ApiError> {
                let p = authenticate(parts, state).await?;
                if p.role < $role {
                    return Err(ApiError::Forbidden {
                        role: p.role.as_str(),
                        action: action_of($role),
                    });
                }
                Ok($name(p))
            }
        }
    };
}

fn action_of(role: TokenRole) -> &'static str {
    match role {
        TokenRole::Viewer => "read",
        TokenRole::Analyst => "change incidents or suppression rules",
        TokenRole::Admin => "manage tokens",
    }
}

role_extractor!(
    Viewer,
    TokenRole::Viewer,
    "Any valid token (viewer, analyst or admin): reading."
);
role_extractor!(
    Analyst,
    TokenRole::Analyst,
    "An analyst or admin token: working incidents (ack, resolve, reopen, comment, assign, suppress)."
);
role_extractor!(
    Admin,
    TokenRole::Admin,
    "An admin token: managing tokens and configuration-level actions."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_256_bit_hex_and_differ() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert!(a[3..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
