//! Operations endpoints: `/healthz`, `/readyz`, `/metrics` and the OpenAPI
//! document. None needs a token (see the module docs of [`super`] for why
//! `/metrics` is open).

use super::error::ErrorBody;
use super::metrics::{MetricSource, MetricsWriter};
use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use gatewatch_alerting::store::activity;
use gatewatch_alerting::IncidentStatus;
use serde::Serialize;
use std::sync::OnceLock;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long `/readyz` waits for one check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The operations routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
}

/// The process's liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: answering at all is the signal.
    pub status: String,
}

/// Alive: the process answers HTTP. Restart it when this fails.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// One readiness check's result.
#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    /// What was checked (`database`, a source's name).
    pub name: String,
    /// Whether it is ready.
    pub ok: bool,
    /// Why not, when it is not.
    pub error: Option<String>,
}

/// Readiness: every check and whether all passed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// Each check.
    pub checks: Vec<Check>,
}

/// Ready: the database answers and every source reports itself reachable.
/// Send traffic only while this is 200.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready; the failing checks say why", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut checks = Vec::with_capacity(1 + state.readiness.len());
    let db = state.store.db();
    let database = tokio::time::timeout(CHECK_TIMEOUT, db.ping()).await;
    checks.push(check(
        "database",
        match database {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{e}")),
            Err(_) => Err("timed out".into()),
        },
    ));
    for (name, probe) in &state.readiness {
        let r = match tokio::time::timeout(CHECK_TIMEOUT, probe()).await {
            Ok(r) => r,
            Err(_) => Err("timed out".into()),
        };
        checks.push(check(name, r));
    }
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        tracing::warn!(failing = ?checks.iter().filter(|c| !c.ok).map(|c| &c.name).collect::<Vec<_>>(), "Not ready.");
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            status: if ready { "ready" } else { "not_ready" }.into(),
            checks,
        }),
    )
}

fn check(name: &str, r: Result<(), String>) -> Check {
    Check {
        name: name.to_owned(),
        ok: r.is_ok(),
        error: r.err(),
    }
}

/// Prometheus metrics (text format 0.0.4). Unauthenticated; carries no
/// client addresses or keys.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "text/plain"),
        (status = 500, description = "The store could not be read", body = ErrorBody),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut w = MetricsWriter::default();
    w.sample(
        "gatewatch_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    for source in &state.metrics {
        source.collect(&mut w);
    }
    state.requests.collect(&mut w);
    // Unresolved incidents straight from the store: the number an on-call
    // dashboard wants, whichever instance raised them.
    match activity::incident_counts(&state.store.db(), None, None).await {
        Ok(counts) => {
            let mut by = std::collections::BTreeMap::new();
            for c in counts
                .iter()
                .filter(|c| c.status != IncidentStatus::Resolved)
            {
                *by.entry((c.kind.as_str(), c.severity.as_str()))
                    .or_insert(0u64) += c.incidents;
            }
            for ((kind, severity), n) in by {
                w.sample(
                    "gatewatch_incidents_unresolved",
                    &[("kind", kind), ("severity", severity)],
                    n as f64,
                );
            }
        }
        Err(error) => tracing::warn!(error = %error, "Could not count incidents for /metrics."),
    }
    match gatewatch_alerting::outbox::counts(state.store.as_ref()).await {
        Ok(counts) => {
            for (status, n) in counts {
                w.sample(
                    "gatewatch_notification_outbox",
                    &[("status", status.as_str())],
                    n as f64,
                );
            }
        }
        Err(error) => tracing::warn!(error = %error, "Could not count the outbox for /metrics."),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        w.render(),
    )
}

/// This API's OpenAPI 3.1 document, generated from the handlers.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object))
)]
pub async fn openapi_json() -> impl IntoResponse {
    static DOC: OnceLock<String> = OnceLock::new();
    let doc = DOC.get_or_init(super::openapi_document);
    ([(header::CONTENT_TYPE, "application/json")], doc.clone())
}
