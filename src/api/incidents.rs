//! `/api/v1/incidents`: list, inspect and work incidents.
//!
//! Reads need a viewer token; acknowledging, resolving, reopening,
//! commenting and assigning need an analyst. Every change is recorded with
//! the acting token (`token:<name>`) as its actor.

use super::auth::{Analyst, Viewer};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{AppJson, AppQuery};
use super::model::{
    parse_time, ActionRequest, ActivityPointBody, AssigneeRequest, BaselineBody, CommentBody,
    IncidentBody, IncidentDetail, IncidentList, Kind, NewComment, Samples, SeverityLevel, Status,
    TimelineBody, TrafficSeries,
};
use super::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use gatewatch_alerting::store::{activity, comments};
use gatewatch_alerting::{Action, LifecycleError};
use gatewatch_alerting::{Incident, IncidentCursor, IncidentQuery, ListOrder};
use gatewatch_detector::{EventTime, IncidentKind};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The incident routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_incidents))
        .routes(routes!(get_incident))
        .routes(routes!(acknowledge))
        .routes(routes!(resolve))
        .routes(routes!(reopen))
        .routes(routes!(add_comment))
        .routes(routes!(set_assignee))
}

/// The order of a listing.
#[derive(Clone, Copy, Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Newest activity (`last_seen`) first (the default).
    Newest,
    /// Oldest activity first.
    Oldest,
}

/// Filters, order and paging of `GET /incidents`. Filters combine with AND.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only incidents in this status.
    #[param(inline)]
    pub status: Option<Status>,
    /// Only incidents of this kind.
    #[param(inline)]
    pub kind: Option<Kind>,
    /// Only incidents at this severity or above.
    #[param(inline)]
    pub min_severity: Option<SeverityLevel>,
    /// Only incidents about this client key (exact).
    #[param(max_length = 256)]
    pub client: Option<String>,
    /// Only incidents whose client address is in this network
    /// (`203.0.113.0/24`, `2001:db8::/32`, or one address).
    #[param(
        max_length = 64,
        pattern = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(/([0-9]|[12][0-9]|3[0-2]))?$"
    )]
    pub cidr: Option<String>,
    /// Only incidents whose summary contains this text (case-insensitive).
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// Only incidents active at or after this time (`last_seen >= since`).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Only incidents that began before this time (`first_seen < until`).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
    /// The order (by `last_seen`, then id).
    #[param(inline)]
    pub order: Option<Order>,
    /// Page size, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (same filters and order).
    #[param(
        max_length = 100,
        pattern = r"^-?[0-9]{1,15}:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub cursor: Option<String>,
}

impl ListParams {
    /// The store query these parameters ask for; 400 naming the bad one.
    fn to_query(&self) -> ApiResult<IncidentQuery> {
        let time = |field: &str, v: &Option<String>| {
            v.as_deref().map(|s| parse_time(field, s)).transpose()
        };
        for (field, value, max) in [
            ("client", &self.client, 256),
            ("cidr", &self.cidr, 64),
            ("q", &self.q, 200),
            ("cursor", &self.cursor, 100),
        ] {
            if value.as_ref().is_some_and(|v| v.chars().count() > max) {
                return Err(ApiError::bad(field, format!("At most {max} characters")));
            }
        }
        if let Some(limit) = self.limit {
            if !(1..=1000).contains(&limit) {
                return Err(ApiError::bad("limit", "Must be between 1 and 1000"));
            }
        }
        let cidr = self
            .cidr
            .as_deref()
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| ApiError::bad("cidr", "Not a network (a.b.c.d/n) or an address"))
            })
            .transpose()?;
        let after = self
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<IncidentCursor>()
                    .map_err(|_| ApiError::bad("cursor", "Not a cursor this API issued"))
            })
            .transpose()?;
        Ok(IncidentQuery {
            status: self.status.map(Into::into),
            kind: self.kind.map(Into::into),
            min_severity: self.min_severity.map(Into::into),
            client: self.client.clone(),
            cidr,
            text: self.q.clone().filter(|q| !q.is_empty()),
            order: match self.order {
                Some(Order::Oldest) => ListOrder::OldestFirst,
                Some(Order::Newest) | None => ListOrder::NewestFirst,
            },
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            limit: self.limit,
            after,
        })
    }
}

/// Lists incidents, newest activity first, a page at a time.
#[utoipa::path(
    get,
    path = "/incidents",
    tag = "incidents",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of incidents", body = IncidentList),
        (status = 400, description = "A bad parameter (named in `field`)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn list_incidents(
    _: Viewer,
    State(state): State<AppState>,
    AppQuery(params): AppQuery<ListParams>,
) -> ApiResult<Json<IncidentList>> {
    let query = params.to_query()?;
    let page = state.store.list(&query).await?;
    Ok(Json(IncidentList {
        incidents: page.incidents.into_iter().map(Into::into).collect(),
        next_cursor: page.next.map(|c| c.to_string()),
    }))
}

/// Parses an incident id path segment (400 naming `id` when malformed).
fn incident_id(raw: &str) -> ApiResult<Uuid> {
    raw.parse()
        .map_err(|_| ApiError::bad("id", "Not an incident id (a UUID)"))
}

async fn load(state: &AppState, id: Uuid) -> ApiResult<Incident> {
    state
        .store
        .get(id)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            what: format!("Incident {id}"),
        })
}

/// One incident with its timeline, comments, sample values and the client's
/// traffic against its baseline.
#[utoipa::path(
    get,
    path = "/incidents/{id}",
    tag = "incidents",
    params(("id" = String, Path, format = Uuid, description = "The incident id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The incident", body = IncidentDetail),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such incident", body = ErrorBody),
    )
)]
pub async fn get_incident(
    _: Viewer,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<IncidentDetail>> {
    let id = incident_id(&id)?;
    let incident = load(&state, id).await?;
    let db = state.store.db();
    let timeline = state.store.timeline(id).await?;
    let comments = comments::comments(&db, id).await?;
    let samples = samples(&incident.evidence);
    // An hour before the attack and ten minutes after: enough to see normal.
    let from = incident.first_seen.plus_millis(-3_600_000);
    let to = incident.last_seen.plus_millis(600_000);
    let baseline = baseline(std::slice::from_ref(&incident));
    let traffic = traffic(&state, &incident.client, from, to, baseline).await?;
    Ok(Json(IncidentDetail {
        incident: incident.into(),
        timeline: timeline.into_iter().map(TimelineBody::from).collect(),
        comments: comments.into_iter().map(CommentBody::from).collect(),
        samples,
        traffic,
    }))
}

/// The client's recorded activity in `[from, to)` with its baseline.
pub(crate) async fn traffic(
    state: &AppState,
    client: &str,
    from: EventTime,
    to: EventTime,
    baseline: Option<BaselineBody>,
) -> ApiResult<TrafficSeries> {
    let points = activity::client_activity(&state.store.db(), client, from, to).await?;
    Ok(TrafficSeries {
        from: from.to_datetime(),
        to: to.to_datetime(),
        points: points.into_iter().map(ActivityPointBody::from).collect(),
        baseline,
    })
}

/// The baseline the traffic-spike detector reported for this client, from
/// the newest traffic-spike incident among `incidents`.
pub(crate) fn baseline(incidents: &[Incident]) -> Option<BaselineBody> {
    let e = &incidents
        .iter()
        .filter(|i| i.kind == IncidentKind::TrafficSpike)
        .max_by_key(|i| i.last_seen)?
        .evidence;
    let bucket_secs = e.get("bucket_secs")?.as_u64().filter(|b| *b > 0)?;
    let per_minute = 60.0 / bucket_secs as f64;
    let b = e.get("baseline")?;
    Some(BaselineBody {
        mean_per_minute: b.get("mean")?.as_f64()? * per_minute,
        stddev_per_minute: b.get("stddev").and_then(|v| v.as_f64()).unwrap_or(0.0) * per_minute,
        expected_per_minute: e
            .get("expected")
            .and_then(|v| v.as_f64())
            .map(|x| x * per_minute),
        bucket_secs,
        judged_against: e
            .get("judged_against")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    })
}

/// The sample values the detectors put in their evidence.
fn samples(evidence: &serde_json::Value) -> Samples {
    let strings = |key: &str| -> Vec<String> {
        evidence
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let sources = evidence
        .get("top_sources")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.get("ip").and_then(|ip| ip.as_str()).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Samples {
        paths: strings("sample_paths"),
        users: strings("sample_users"),
        sources,
    }
}

/// Applies a lifecycle action for the calling token.
async fn act(
    state: &AppState,
    who: &Analyst,
    id: &str,
    action: Action,
    body: Option<AppJson<Option<ActionRequest>>>,
) -> ApiResult<Json<IncidentBody>> {
    let id = incident_id(id)?;
    // No body, `null` and `{}` all mean "no note".
    let note = body.and_then(|AppJson(b)| b).and_then(|b| b.note);
    if note.as_ref().is_some_and(|n| n.chars().count() > 2000) {
        return Err(ApiError::bad("note", "At most 2000 characters"));
    }
    let change = state
        .lifecycle
        .transition(id, action, &who.0.actor(), note.as_deref())
        .await
        .map_err(lifecycle_error)?;
    tracing::info!(incident_id = %id, action = ?action, actor = %who.0.actor(), "Incident changed by an analyst.");
    Ok(Json(change.incident.into()))
}

/// Maps the lifecycle's errors: illegal transitions are 409.
fn lifecycle_error(e: LifecycleError) -> ApiError {
    match e {
        LifecycleError::NotFound { id } => ApiError::NotFound {
            what: format!("Incident {id}"),
        },
        LifecycleError::IllegalTransition { .. } => ApiError::Conflict {
            message: e.to_string(),
        },
        LifecycleError::Invalid { reason } => ApiError::Unprocessable { message: reason },
        LifecycleError::Store(store) => store.into(),
    }
}

macro_rules! action_handler {
    ($fn:ident, $path:literal, $action:expr, $summary:literal) => {
        #[doc = $summary]
        #[utoipa::path(
            post,
            path = $path,
            tag = "incidents",
            params(("id" = String, Path, format = Uuid, description = "The incident id")),
            request_body(content = Option<ActionRequest>, description = "An optional note", content_type = "application/json"),
            security(("bearer" = [])),
            responses(
                (status = 200, description = "The incident after the change", body = IncidentBody),
                (status = 400, description = "A bad id or body", body = ErrorBody),
                (status = 401, description = "No valid token", body = ErrorBody),
                (status = 403, description = "The token may not change incidents", body = ErrorBody),
                (status = 404, description = "No such incident", body = ErrorBody),
                (status = 409, description = "Not allowed from the incident's current status", body = ErrorBody),
                (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
                (status = 415, description = "The body is not JSON", body = ErrorBody),
            )
        )]
        pub async fn $fn(
            who: Analyst,
            State(state): State<AppState>,
            Path(id): Path<String>,
            body: Option<AppJson<Option<ActionRequest>>>,
        ) -> ApiResult<Json<IncidentBody>> {
            act(&state, &who, &id, $action, body).await
        }
    };
}

action_handler!(
    acknowledge,
    "/incidents/{id}/ack",
    Action::Acknowledge,
    "Acknowledges an open or reopened incident: someone is on it."
);
action_handler!(
    resolve,
    "/incidents/{id}/resolve",
    Action::Resolve,
    "Resolves an incident: the attack is over or handled."
);
action_handler!(
    reopen,
    "/incidents/{id}/reopen",
    Action::Reopen,
    "Reopens a resolved incident."
);

/// Adds a comment to an incident.
#[utoipa::path(
    post,
    path = "/incidents/{id}/comments",
    tag = "incidents",
    params(("id" = String, Path, format = Uuid, description = "The incident id")),
    request_body = NewComment,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The comment", body = CommentBody),
        (status = 400, description = "A bad id or body", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token may not comment", body = ErrorBody),
        (status = 404, description = "No such incident", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    )
)]
pub async fn add_comment(
    who: Analyst,
    State(state): State<AppState>,
    Path(id): Path<String>,
    AppJson(body): AppJson<NewComment>,
) -> ApiResult<(StatusCode, Json<CommentBody>)> {
    let id = incident_id(&id)?;
    let len = body.body.chars().count();
    if body.body.trim().is_empty() || len > 10_000 {
        return Err(ApiError::bad(
            "body",
            "Between 1 and 10000 characters, not blank",
        ));
    }
    load(&state, id).await?;
    let comment = comments::add_comment(&state.store.db(), id, &who.0.actor(), &body.body).await?;
    Ok((StatusCode::CREATED, Json(comment.into())))
}

/// Assigns an incident to someone, or releases it (`null`).
#[utoipa::path(
    put,
    path = "/incidents/{id}/assignee",
    tag = "incidents",
    params(("id" = String, Path, format = Uuid, description = "The incident id")),
    request_body = AssigneeRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The incident after the change", body = IncidentBody),
        (status = 400, description = "A bad id or body", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "The token may not assign", body = ErrorBody),
        (status = 404, description = "No such incident", body = ErrorBody),
        (status = 409, description = "The incident changed concurrently", body = ErrorBody),
        (status = 422, description = "The assignee is not acceptable", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    )
)]
pub async fn set_assignee(
    who: Analyst,
    State(state): State<AppState>,
    Path(id): Path<String>,
    AppJson(body): AppJson<AssigneeRequest>,
) -> ApiResult<Json<IncidentBody>> {
    let id = incident_id(&id)?;
    if let Some(a) = &body.assignee {
        if a.trim().is_empty() || a.chars().count() > 200 {
            return Err(ApiError::bad(
                "assignee",
                "Between 1 and 200 characters, or null",
            ));
        }
    }
    let change = state
        .lifecycle
        .assign(id, body.assignee.as_deref(), &who.0.actor())
        .await
        .map_err(lifecycle_error)?;
    match change {
        Some(change) => Ok(Json(change.incident.into())),
        // Already assigned so: nothing changed.
        None => Ok(Json(load(&state, id).await?.into())),
    }
}
