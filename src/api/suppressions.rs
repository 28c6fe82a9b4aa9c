//! `/api/v1/suppressions`: rules that mute known-benign findings.
//!
//! Listing needs a viewer token; creating and deleting need an analyst. The
//! rules themselves (matching, hit counts, the manager's refresh) live in
//! `gatewatch_alerting::suppression`; a new rule takes effect within the
//! manager's refresh interval on every instance.

use super::auth::{Analyst, Viewer};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::AppJson;
use super::model::Kind;
use super::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use gatewatch_alerting::store::audit::{self, AuditAction};
use gatewatch_alerting::suppression::{
    self, NewSuppressionRule, SuppressionError, SuppressionRule,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The suppression routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(delete_rule))
}

/// A suppression rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleBody {
    /// Stable id.
    pub id: Uuid,
    /// Mutes clients in this network.
    pub client_cidr: Option<String>,
    /// Mutes this exact client key.
    pub client_key: Option<String>,
    /// Mutes this kind.
    pub kind: Option<Kind>,
    /// Mutes findings whose every path matches this glob.
    pub path_pattern: Option<String>,
    /// Stops muting at this time; never when absent.
    pub expires_at: Option<DateTime<Utc>>,
    /// Who created it (`token:<name>`).
    pub created_by: String,
    /// Why.
    pub reason: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Findings it has muted.
    #[schema(minimum = 0)]
    pub hits: u64,
    /// When it last muted one.
    pub last_hit_at: Option<DateTime<Utc>>,
}

impl From<SuppressionRule> for RuleBody {
    fn from(r: SuppressionRule) -> RuleBody {
        RuleBody {
            id: r.id,
            client_cidr: r.client_cidr.map(|n| n.to_string()),
            client_key: r.client_key,
            kind: r.kind.map(Into::into),
            path_pattern: r.path_pattern,
            expires_at: r.expires_at,
            created_by: r.created_by,
            reason: r.reason,
            created_at: r.created_at,
            hits: r.hits,
            last_hit_at: r.last_hit_at,
        }
    }
}

/// A rule to create: at least one matcher, and a reason.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    /// Mutes clients in this network (`10.0.0.0/8`).
    #[schema(value_type = Option<String>, example = "10.0.0.0/8", pattern = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/([0-9]|[12][0-9]|3[0-2])$")]
    pub client_cidr: Option<ipnet::IpNet>,
    /// Mutes this exact client key (not blank).
    #[schema(min_length = 1, max_length = 1000, pattern = r"\S")]
    pub client_key: Option<String>,
    /// Mutes this kind.
    pub kind: Option<Kind>,
    /// Mutes findings whose every path matches this glob (`/health*`).
    #[schema(min_length = 1, max_length = 1000, pattern = r"\S")]
    pub path_pattern: Option<String>,
    /// Stops muting at this time (must be in the future).
    pub expires_at: Option<DateTime<Utc>>,
    /// Why (required, not blank).
    #[schema(min_length = 1, max_length = 1000, pattern = r"\S")]
    pub reason: String,
}

/// Every rule, expired ones included, newest first.
#[utoipa::path(
    get,
    path = "/suppressions",
    tag = "suppressions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The rules", body = Vec<RuleBody>),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn list_rules(
    _: Viewer,
    State(state): State<AppState>,
) -> ApiResult<Json<Vec<RuleBody>>> {
    let rules = suppression::list(state.store.as_ref()).await?;
    Ok(Json(rules.into_iter().map(Into::into).collect()))
}

/// Creates a rule; it takes effect within the manager's refresh interval.
#[utoipa::path(
    post,
    path = "/suppressions",
    tag = "suppressions",
    request_body = NewRule,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The rule", body = RuleBody),
        (status = 400, description = "A malformed field", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token may not suppress", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "No matcher, no reason, or an expiry in the past", body = ErrorBody),
    )
)]
pub async fn create_rule(
    Analyst(who): Analyst,
    State(state): State<AppState>,
    AppJson(body): AppJson<NewRule>,
) -> ApiResult<(StatusCode, Json<RuleBody>)> {
    let rule = NewSuppressionRule {
        client_cidr: body.client_cidr,
        client_key: body.client_key,
        kind: body.kind.map(Into::into),
        path_pattern: body.path_pattern,
        expires_at: body.expires_at,
        created_by: who.actor(),
        reason: body.reason,
    };
    let stored = suppression::create(state.store.as_ref(), rule)
        .await
        .map_err(|e| match e {
            SuppressionError::Invalid { reason } => ApiError::Unprocessable { message: reason },
            SuppressionError::Store(s) => s.into(),
        })?;
    audit::record(
        &state.store.db(),
        &who.actor(),
        AuditAction::SuppressionCreated,
        &stored.id.to_string(),
    )
    .await?;
    tracing::info!(rule_id = %stored.id, actor = %who.actor(), "Suppression rule created.");
    Ok((StatusCode::CREATED, Json(stored.into())))
}

/// Deletes a rule (its hits stay in the suppressed total).
#[utoipa::path(
    delete,
    path = "/suppressions/{id}",
    tag = "suppressions",
    params(("id" = String, Path, format = Uuid, description = "The rule id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token may not suppress", body = ErrorBody),
        (status = 404, description = "No such rule", body = ErrorBody),
    )
)]
pub async fn delete_rule(
    Analyst(who): Analyst,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::bad("id", "Not a rule id (a UUID)"))?;
    if !suppression::delete(state.store.as_ref(), id).await? {
        return Err(ApiError::NotFound {
            what: format!("Suppression rule {id}"),
        });
    }
    audit::record(
        &state.store.db(),
        &who.actor(),
        AuditAction::SuppressionDeleted,
        &id.to_string(),
    )
    .await?;
    tracing::info!(rule_id = %id, actor = %who.actor(), "Suppression rule deleted.");
    Ok(StatusCode::NO_CONTENT)
}
