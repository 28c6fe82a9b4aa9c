//! The one error type of the API, and its one JSON shape.
//!
//! Every failure a client can see is an [`ApiError`] variant with a fixed
//! status and a stable `code`; the body is always
//! `{"error": {"code": "...", "message": "...", "field": "..."}}` (`field`
//! only when one parameter is to blame). Internal failures (the database,
//! anything unexpected) become a generic 500: the detail goes to the log,
//! inside the request's span, never to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gatewatch_alerting::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// Everything that can go wrong serving a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_parameter`: a query parameter, path segment or body field
    /// is missing, malformed or out of range; `field` names it.
    #[error("{message}")]
    BadRequest {
        /// The parameter or body field at fault (`""` for the whole body).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// 401 `unauthenticated`: no bearer token, or one that is unknown or
    /// revoked. Sent with `WWW-Authenticate: Bearer`.
    #[error("A valid bearer token is required")]
    Unauthenticated,
    /// 403 `forbidden`: the token is valid but its role may not do this.
    #[error("The token's role ({role}) may not {action}")]
    Forbidden {
        /// The caller's role.
        role: &'static str,
        /// What it tried (`acknowledge incidents`, `manage tokens`).
        action: &'static str,
    },
    /// 404 `not_found`: no such incident, client, rule or token.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for (`incident 5f1c…`).
        what: String,
    },
    /// 404 `no_route`: no endpoint at this path.
    #[error("No endpoint at this path")]
    NoRoute,
    /// 409 `conflict`: the action does not apply to the resource's current
    /// state (resolving a resolved incident, a token name already taken, a
    /// concurrent change).
    #[error("{message}")]
    Conflict {
        /// Why.
        message: String,
    },
    /// 422 `unprocessable`: well-formed, but not acceptable (a suppression
    /// rule with no matcher, an expiry in the past, an over-long assignee).
    #[error("{message}")]
    Unprocessable {
        /// Why.
        message: String,
    },
    /// 413 `payload_too_large`: the body is over the limit (64 KiB).
    #[error("The request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// 415 `unsupported_media_type`: a body that is not `application/json`.
    #[error("The request body must be application/json")]
    UnsupportedMediaType,
    /// 501 `not_implemented`: the endpoint exists but this build cannot
    /// serve it yet.
    #[error("{message}")]
    NotImplemented {
        /// What is missing.
        message: String,
    },
    /// 503 `unavailable`: a dependency (database, source) is not ready.
    #[error("{message}")]
    Unavailable {
        /// What is not ready.
        message: String,
    },
    /// 500 `internal`: the store or something unexpected failed. The cause
    /// is logged with the request, the client sees a generic message.
    #[error("Internal error")]
    Internal(#[source] anyhow::Error),
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, in a stable, machine-readable form.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable identifier: `invalid_parameter`, `unauthenticated`,
    /// `forbidden`, `not_found`, `no_route`, `conflict`, `unprocessable`,
    /// `payload_too_large`, `unsupported_media_type`, `not_implemented`,
    /// `unavailable`, `internal`.
    pub code: String,
    /// A sentence for humans; may change between versions.
    pub message: String,
    /// The parameter or body field at fault, for `invalid_parameter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotImplemented { .. } => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "invalid_parameter",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::NotFound { .. } => "not_found",
            ApiError::NoRoute => "no_route",
            ApiError::Conflict { .. } => "conflict",
            ApiError::Unprocessable { .. } => "unprocessable",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::NotImplemented { .. } => "not_implemented",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { .. } => ApiError::Conflict {
                message: "The incident changed concurrently; read it again and retry".into(),
            },
            StoreError::InvalidCursor { .. } => {
                ApiError::bad("cursor", "Not a cursor this API issued")
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::Internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(cause) = &self {
            // Inside the request's span (see `api::trace_layer`), so the log
            // line carries the method, route and request id.
            tracing::error!(error = format!("{cause:#}"), "Request failed.");
        }
        // serde's messages quote what they refused (an unknown query key);
        // no answer holds a NUL (the document says so of every string).
        let no_nul = |s: &str| s.replace('\0', "\u{FFFD}");
        let field = match &self {
            ApiError::BadRequest { field, .. } => Some(no_nul(field)),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: no_nul(&self.to_string()),
                field,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gatewatch\""),
            );
        }
        response
    }
}
