//! `/api/v1/clients/{key}`: what gatewatch knows of one client.

use super::auth::Viewer;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::incidents::{baseline, traffic};
use super::model::ClientBody;
use super::AppState;
use axum::extract::{Path, State};
use axum::Json;
use gatewatch_alerting::IncidentQuery;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The client routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_client))
}

/// A client's incidents (newest first, at most 100), its recorded activity
/// over the day before its latest incident ended, and its baseline when a
/// detector has reported one. 404 when gatewatch has no incident for it.
#[utoipa::path(
    get,
    path = "/clients/{key}",
    tag = "clients",
    params(("key" = String, Path, description = "The client key: an address or an API identity", max_length = 256)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The client", body = ClientBody),
        (status = 400, description = "A bad key", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No incident for this client", body = ErrorBody),
    )
)]
pub async fn get_client(
    _: Viewer,
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> ApiResult<Json<ClientBody>> {
    super::extract::no_nul("key", &key)?;
    if key.is_empty() || key.len() > 256 {
        return Err(ApiError::bad("key", "Between 1 and 256 bytes"));
    }
    let page = state
        .store
        .list(&IncidentQuery {
            client: Some(key.clone()),
            limit: Some(100),
            ..Default::default()
        })
        .await?;
    let Some(latest) = page.incidents.iter().map(|i| i.last_seen).max() else {
        return Err(ApiError::NotFound {
            what: format!("Client {key:?}"),
        });
    };
    let baseline = baseline(&page.incidents);
    let to = latest.plus_millis(600_000);
    let from = latest.plus_millis(-86_400_000);
    let traffic = traffic(&state, &key, from, to, baseline).await?;
    Ok(Json(ClientBody {
        key,
        incidents: page.incidents.into_iter().map(Into::into).collect(),
        traffic,
    }))
}
