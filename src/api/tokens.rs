//! `/api/v1/tokens`: token management, for admins only.
//!
//! The same operations as `gatewatch token create|list|revoke`, for
//! operators who manage access from the API. A created token's secret is in
//! the response once and never again.

use super::auth::{generate_token, hash_token, Admin};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::AppJson;
use super::model::{valid_token_name, NewTokenRequest, NewTokenResponse, TokenBody};
use super::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use gatewatch_alerting::store::audit::{self, AuditAction};
use gatewatch_alerting::store::tokens::{self, TokenError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The token routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

/// Every token, revoked ones included (never their secrets).
#[utoipa::path(
    get,
    path = "/tokens",
    tag = "tokens",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tokens", body = Vec<TokenBody>),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    )
)]
pub async fn list_tokens(
    _: Admin,
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<TokenBody>>> {
    let list = tokens::list_tokens(&state.store.db()).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// Creates a token; the response carries its secret, once.
#[utoipa::path(
    post,
    path = "/tokens",
    tag = "tokens",
    request_body = NewTokenRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The token and its secret", body = NewTokenResponse),
        (status = 400, description = "A bad name or role", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    )
)]
pub async fn create_token(
    Admin(who): Admin,
    State(state): State<AppState>,
    AppJson(body): AppJson<NewTokenRequest>,
) -> ApiResult<(StatusCode, Json<NewTokenResponse>)> {
    if !valid_token_name(&body.name) {
        return Err(ApiError::bad(
            "name",
            "1 to 64 letters, digits, '.', '_', '-' or '@'",
        ));
    }
    let secret = generate_token()?;
    let token = tokens::create_token(
        &state.store.db(),
        &body.name,
        body.role.into(),
        &hash_token(&secret),
        &who.actor(),
    )
    .await
    .map_err(|e| match e {
        TokenError::NameTaken { .. } => ApiError::Conflict {
            message: e.to_string(),
        },
        TokenError::Store(s) => s.into(),
    })?;
    audit::record(
        &state.store.db(),
        &who.actor(),
        AuditAction::TokenCreated,
        &token.name,
    )
    .await?;
    tracing::info!(token = %token.name, role = token.role.as_str(), actor = %who.actor(), "API token created.");
    Ok((
        StatusCode::CREATED,
        Json(NewTokenResponse {
            token: token.into(),
            secret,
        }),
    ))
}

/// Revokes a token by name; it stops authenticating at once.
#[utoipa::path(
    delete,
    path = "/tokens/{name}",
    tag = "tokens",
    params(("name" = String, Path, description = "The token's name", max_length = 64)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such token, or already revoked", body = ErrorBody),
    )
)]
pub async fn revoke_token(
    Admin(who): Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    super::extract::no_nul("name", &name)?;
    if !tokens::revoke_token(&state.store.db(), &name).await? {
        return Err(ApiError::NotFound {
            what: format!("Active token {name:?}"),
        });
    }
    audit::record(
        &state.store.db(),
        &who.actor(),
        AuditAction::TokenRevoked,
        &name,
    )
    .await?;
    tracing::info!(token = %name, actor = %who.actor(), "API token revoked.");
    Ok(StatusCode::NO_CONTENT)
}
