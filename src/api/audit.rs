//! `/api/v1/audit`: who changed access and alerting (tokens, suppression
//! rules, dead letters), for admins. Incident changes are on each
//! incident's timeline instead.

use super::auth::Admin;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::AppQuery;
use super::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use gatewatch_alerting::store::audit::{self, AuditEntry};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The audit routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(audit_log))
}

/// One administrative change.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditBody {
    /// Increasing with time.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: `token:<name>`, or `cli:<user>` for the command line.
    pub actor: String,
    /// `token_created`, `token_revoked`, `suppression_created`,
    /// `suppression_deleted` or `dead_letter_requeued`.
    pub action: String,
    /// The token name, rule id or delivery id acted on.
    pub target: String,
}

impl From<AuditEntry> for AuditBody {
    fn from(e: AuditEntry) -> AuditBody {
        AuditBody {
            id: e.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
        }
    }
}

/// How many entries to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// At most this many, newest first (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The latest administrative changes, newest first.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(AuditParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The entries", body = Vec<AuditBody>),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
    )
)]
pub async fn audit_log(
    _: Admin,
    State(state): State<AppState>,
    AppQuery(params): AppQuery<AuditParams>,
) -> ApiResult<Json<Vec<AuditBody>>> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad("limit", "Must be between 1 and 1000"));
    }
    let rows = audit::recent(&state.store.db(), limit).await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}
