//! `/api/v1/stats`: incidents counted by kind, severity and status.

use super::auth::Viewer;
use super::error::{ApiResult, ErrorBody};
use super::extract::AppQuery;
use super::model::{parse_time, Bucket, StatsBody};
use super::AppState;
use axum::extract::State;
use axum::Json;
use gatewatch_alerting::store::activity;
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The statistics routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_stats))
}

/// The window to count over; both ends optional.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsParams {
    /// Count incidents active at or after this time.
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Count incidents that began before this time.
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
}

/// Counts incidents active in a window by kind, severity and status.
#[utoipa::path(
    get,
    path = "/stats",
    tag = "stats",
    params(StatsParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The counts", body = StatsBody),
        (status = 400, description = "A bad parameter", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn get_stats(
    _: Viewer,
    State(state): State<AppState>,
    AppQuery(params): AppQuery<StatsParams>,
) -> ApiResult<Json<StatsBody>> {
    let since = params
        .since
        .as_deref()
        .map(|s| parse_time("since", s))
        .transpose()?;
    let until = params
        .until
        .as_deref()
        .map(|s| parse_time("until", s))
        .transpose()?;
    let counts = activity::incident_counts(&state.store.db(), since, until).await?;
    let mut kind = BTreeMap::new();
    let mut severity = BTreeMap::new();
    let mut status = BTreeMap::new();
    let mut total = 0;
    for c in &counts {
        *kind.entry(c.kind.as_str()).or_insert(0) += c.incidents;
        *severity.entry(c.severity.as_str()).or_insert(0) += c.incidents;
        *status.entry(c.status.as_str()).or_insert(0) += c.incidents;
        total += c.incidents;
    }
    let buckets = |m: BTreeMap<&str, u64>| {
        m.into_iter()
            .map(|(k, n)| Bucket {
                key: k.to_owned(),
                incidents: n,
            })
            .collect()
    };
    Ok(Json(StatsBody {
        since: since.map(|t| t.to_datetime()),
        until: until.map(|t| t.to_datetime()),
        total,
        by_kind: buckets(kind),
        by_severity: buckets(severity),
        by_status: buckets(status),
    }))
}
