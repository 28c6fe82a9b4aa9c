//! Extractors that fail with [`ApiError`], naming the parameter at fault.
//!
//! axum's own `Query` and `Json` reject with plain-text bodies and no field
//! name; these parse the same way (serde) but go through
//! `serde_path_to_error`, so a bad `?severity=urgent` answers 400 with
//! `"field": "severity"` in the API's one error shape.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// The request body limit, also enforced by `DefaultBodyLimit`.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Turns a serde path error into a 400 naming the field.
fn field_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>, whole: &str) -> ApiError {
    let path = e.path().to_string();
    let inner = e.inner().to_string();
    // serde reports a missing or unknown field at the parent, with the
    // name in the text.
    let field = if path == "." {
        ["missing field `", "unknown field `"]
            .iter()
            .find_map(|prefix| inner.strip_prefix(prefix))
            .and_then(|rest| rest.split('`').next())
            .unwrap_or(whole)
            .to_owned()
    } else {
        path
    };
    ApiError::bad(field, inner)
}

/// NUL characters cannot be stored (PostgreSQL text refuses them) and have
/// no business in any field: a 400 naming the field, never a 500.
pub fn nul(field: &str) -> ApiError {
    ApiError::bad(field, "NUL characters are not allowed")
}

/// Rejects a path segment holding a NUL (see [`nul`]).
pub fn no_nul(field: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        Err(nul(field))
    } else {
        Ok(())
    }
}

/// The path of the first string (key or value) in `v` that holds a NUL.
fn nul_in(v: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::String(s) if s.contains('\0') => Some(path.to_owned()),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_in(x, &join(&i.to_string()))),
        Value::Object(o) => o.iter().find_map(|(k, x)| {
            if k.contains('\0') {
                Some(join(k))
            } else {
                nul_in(x, &join(k))
            }
        }),
        _ => None,
    }
}

/// `Query<T>` with the API's errors.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        if let Some((key, _)) =
            form_urlencoded_parse(query).find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(nul(&key));
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de)
            .map(AppQuery)
            .map_err(|e| field_error(e, "query"))
    }
}

/// The parsed pairs of a query string (serde_urlencoded's input).
fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

/// `Json<T>` with the API's errors: 415 without a JSON content type, 413
/// over [`BODY_LIMIT`], 400 naming the field for anything serde refuses.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime::Mime>().ok())
            .is_some_and(|m| {
                m.type_() == "application"
                    && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"))
            });
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge { limit: BODY_LIMIT }
                } else {
                    ApiError::bad("", e.body_text())
                }
            })?;
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad("", format!("Not valid JSON: {e}")))?;
        if let Some(field) = nul_in(&json, "") {
            return Err(nul(&field));
        }
        let value = serde_path_to_error::deserialize(json).map_err(|e| field_error(e, ""))?;
        Ok(AppJson(value))
    }
}

/// An optional JSON body: no body at all is `None`; anything else must be
/// valid JSON, as for [`AppJson`].
impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let has_type = req.headers().contains_key(CONTENT_TYPE);
        if !has_type {
            let bytes = Bytes::from_request(req, state)
                .await
                .map_err(|e: BytesRejection| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::PayloadTooLarge { limit: BODY_LIMIT }
                    } else {
                        ApiError::bad("", e.body_text())
                    }
                })?;
            return if bytes.is_empty() {
                Ok(None)
            } else {
                Err(ApiError::UnsupportedMediaType)
            };
        }
        <AppJson<T> as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}
