//! `/api/v1/notifications`: the notification outbox's dead letters.
//!
//! Reading them needs a viewer token (they say which incidents were not
//! announced, and why); putting one back in the queue, after the channel is
//! fixed, is an operator's action and needs an admin.

use super::auth::{Admin, Viewer};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::AppQuery;
use super::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use gatewatch_alerting::outbox::{self, OutboxEntry};
use gatewatch_alerting::store::audit::{self, AuditAction};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The notification routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(dead_letters))
        .routes(routes!(requeue))
}

/// A notification given up on.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetter {
    /// The idempotency key of the delivery.
    pub delivery_id: Uuid,
    /// The channel's configured name.
    pub channel: String,
    /// What it announced (`opened`, `escalated`, …).
    pub event: String,
    /// The incident, when not a digest.
    pub incident_id: Option<Uuid>,
    /// Attempts made.
    #[schema(minimum = 0)]
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When it was given up.
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<OutboxEntry> for DeadLetter {
    fn from(e: OutboxEntry) -> DeadLetter {
        DeadLetter {
            delivery_id: e.delivery_id,
            channel: e.channel,
            event: e.event.as_str().to_owned(),
            incident_id: e.incident_id,
            attempts: e.attempts,
            last_error: e.last_error,
            created_at: e.created_at,
            finished_at: e.finished_at,
        }
    }
}

/// How many dead letters to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterParams {
    /// At most this many, newest first (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Notifications given up on, newest first.
#[utoipa::path(
    get,
    path = "/notifications/dead-letters",
    tag = "notifications",
    params(DeadLetterParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The dead letters", body = Vec<DeadLetter>),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn dead_letters(
    _: Viewer,
    State(state): State<AppState>,
    AppQuery(params): AppQuery<DeadLetterParams>,
) -> ApiResult<Json<Vec<DeadLetter>>> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad("limit", "Must be between 1 and 1000"));
    }
    let rows = outbox::dead_letters(state.store.as_ref(), limit).await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// Puts a dead letter back in the queue with its attempts reset.
#[utoipa::path(
    post,
    path = "/notifications/dead-letters/{delivery_id}/requeue",
    tag = "notifications",
    params(("delivery_id" = String, Path, format = Uuid, description = "The delivery's id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Queued again"),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No dead letter with this id", body = ErrorBody),
    )
)]
pub async fn requeue(
    Admin(who): Admin,
    State(state): State<AppState>,
    Path(delivery_id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: Uuid = delivery_id
        .parse()
        .map_err(|_| ApiError::bad("delivery_id", "Not a delivery id (a UUID)"))?;
    if !outbox::requeue(state.store.as_ref(), id).await? {
        return Err(ApiError::NotFound {
            what: format!("Dead letter {id}"),
        });
    }
    audit::record(
        &state.store.db(),
        &who.actor(),
        AuditAction::DeadLetterRequeued,
        &id.to_string(),
    )
    .await?;
    tracing::info!(delivery_id = %id, actor = %who.actor(), "Dead letter requeued.");
    Ok(StatusCode::NO_CONTENT)
}
