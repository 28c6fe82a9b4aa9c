//! The incident API (`/api/v1`), the analyst web page (`/`), health and
//! Prometheus metrics: the HTTP side of `gatewatch run`.
//!
//! * Every route is registered through `utoipa_axum`'s `routes!`, so the
//!   OpenAPI document served at `/api/v1/openapi.json` is generated from the
//!   handlers and cannot drift from the router (`tests/api.rs` checks both
//!   ways).
//! * Reads need a `viewer` token, changes to incidents an `analyst`, token
//!   management an `admin` (see [`auth`]); `/healthz`, `/readyz` and the page's
//!   static assets need none. `/metrics` is unauthenticated, like most
//!   Prometheus targets: it carries counters only, never a client address or
//!   key, and operators who expose the listener beyond localhost should put
//!   it behind their network policy (or scrape a separate bind).
//! * The API reaches incidents only through [`IncidentStore`]; it never
//!   touches the pipeline, which plugs its counters in through
//!   [`metrics::MetricSource`].
//!
//! The binary's `run` command builds an [`AppState`] and calls [`serve`].

pub mod audit;
pub mod auth;
pub mod clients;
pub mod error;
pub mod extract;
pub mod health;
pub mod incidents;
pub mod metrics;
pub mod model;
pub mod notifications;
pub mod stats;
pub mod suppressions;
pub mod tls;
pub mod tokens;
pub mod web;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::Router;
use error::ApiError;
use gatewatch_alerting::{IncidentStore, Lifecycle};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use metrics::MetricSource;
pub use tls::TlsConfig;

/// How long one request may take before it is answered with 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A readiness probe: `Ok` when the thing it checks can do its work.
pub type ReadinessProbe =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What the handlers share. Cheap to clone (everything is behind `Arc`).
#[derive(Clone)]
pub struct AppState {
    /// Incidents, tokens, comments, activity.
    pub store: Arc<dyn IncidentStore>,
    /// Acknowledge, resolve, reopen, assign (with notification routing when
    /// the service has notifiers).
    pub lifecycle: Lifecycle,
    /// Counters the pipeline (and others) expose on `/metrics`.
    pub metrics: Vec<Arc<dyn MetricSource>>,
    /// Named checks `/readyz` runs besides the database (sources, brokers).
    pub readiness: Vec<(String, ReadinessProbe)>,
    /// Request counters of the API itself.
    pub(crate) requests: Arc<metrics::RequestCounters>,
}

impl AppState {
    /// A state serving `store`, with no metric sources and no readiness
    /// checks besides the database.
    pub fn new(store: Arc<dyn IncidentStore>) -> AppState {
        AppState {
            lifecycle: Lifecycle::new(store.clone(), None),
            store,
            metrics: Vec::new(),
            readiness: Vec::new(),
            requests: Arc::default(),
        }
    }

    /// Uses `lifecycle` for analysts' actions: pass the service's, built
    /// with its notification routing, so that acknowledging or resolving
    /// notifies as configured (the default notifies nobody).
    pub fn with_lifecycle(mut self, lifecycle: Lifecycle) -> AppState {
        self.lifecycle = lifecycle;
        self
    }

    /// Adds counters to `/metrics` (pipeline stats, notifier outcomes, Kafka
    /// lag, shard gauges: see [`metrics`]).
    pub fn with_metrics(mut self, source: Arc<dyn MetricSource>) -> AppState {
        self.metrics.push(source);
        self
    }

    /// Adds a check to `/readyz`: `probe` resolves to `Err(reason)` while
    /// `name` is not ready.
    pub fn with_readiness<F, Fut>(mut self, name: impl Into<String>, probe: F) -> AppState
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let probe: ReadinessProbe = Arc::new(move || Box::pin(probe()));
        self.readiness.push((name.into(), probe));
        self
    }
}

/// The document's top level; paths are added by the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "gatewatch incident API",
        description = "Incidents raised from API-gateway access logs: list, inspect and work them. \
                       Authenticate with `Authorization: Bearer <token>` (see `gatewatch token create`).",
    ),
    modifiers(&SecurityAddon),
    tags(
        (name = "incidents", description = "Incidents and their lifecycle"),
        (name = "clients", description = "What gatewatch knows of a client"),
        (name = "suppressions", description = "Rules that mute findings"),
        (name = "stats", description = "Counts over a window"),
        (name = "notifications", description = "Notification dead letters"),
        (name = "tokens", description = "API tokens (admin)"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "web", description = "The analyst web page"),
    )
)]
struct ApiDoc;

/// Declares the bearer scheme every secured operation refers to.
struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token from `gatewatch token create`."))
                    .build(),
            ),
        );
    }
}

/// Every route with its documentation: the router and the OpenAPI document
/// come from this one list.
fn routes() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .merge(incidents::routes())
        .merge(clients::routes())
        .merge(suppressions::routes())
        .merge(notifications::routes())
        .merge(stats::routes())
        .merge(tokens::routes())
        .merge(audit::routes());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .merge(health::routes())
        .merge(web::routes())
}

/// The document as served at `/api/v1/openapi.json`: the one generated
/// from the handlers, with every string schema stating what the API enforces everywhere, that a
/// string holds no NUL (requests with one get a 400 naming the field;
/// stored text never holds one). utoipa has no attribute for a rule on
/// every string, so it is added to the JSON.
pub fn openapi_document() -> String {
    let mut doc = serde_json::to_value(routes().split_for_parts().1).unwrap_or_default();
    forbid_nul(&mut doc);
    doc.to_string()
}

/// Adds the no-NUL pattern to every string schema in `v`.
fn forbid_nul(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(o) => {
            let is_string = match o.get("type") {
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
                _ => false,
            };
            o.values_mut().for_each(forbid_nul);
            if is_string {
                let rule = Value::String(r"^[^\u0000]*$".into());
                if o.contains_key("pattern") {
                    // One pattern per schema: a second one goes in `allOf`.
                    let all_of = o.entry("allOf").or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(all) = all_of {
                        all.push(serde_json::json!({ "pattern": rule }));
                    }
                } else {
                    o.insert("pattern".into(), rule);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(forbid_nul),
        _ => {}
    }
}

/// The whole application: routes, the document, and the layers every request
/// goes through (tracing span, timeout, body limit, security headers).
pub fn router(state: AppState) -> Router {
    let (router, _) = routes().split_for_parts();
    let requests = state.requests.clone();
    router
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                axum::Json(error::ErrorBody {
                    error: error::ErrorDetail {
                        code: "method_not_allowed".into(),
                        message: "This endpoint does not accept this method".into(),
                        field: None,
                    },
                }),
            )
        })
        .with_state(state)
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(axum::middleware::from_fn(move |req, next| {
            metrics::count_request(requests.clone(), req, next)
        }))
        .layer(axum::middleware::from_fn(web::security_headers))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("", |p| p.as_str())
                        .to_owned();
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        route,
                        path = %req.uri().path(),
                        actor = tracing::field::Empty,
                        status = tracing::field::Empty,
                    )
                })
                .on_request(())
                .on_response(
                    |res: &axum::response::Response, latency: Duration, span: &tracing::Span| {
                        span.record("status", res.status().as_u16());
                        tracing::debug!(latency_ms = latency.as_millis() as u64, "Responded.");
                    },
                ),
        )
}

/// Serves the application on `listener` (plain HTTP, or HTTPS with `tls`)
/// until `shutdown` is cancelled, then lets requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Option<TlsConfig>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = router(state);
    let addr = listener.local_addr()?;
    let stop = async move { shutdown.cancelled().await };
    match tls {
        None => {
            tracing::info!(address = %addr, "API listening (HTTP).");
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await?;
        }
        Some(tls) => {
            let acceptor = tls.acceptor()?;
            tracing::info!(address = %addr, "API listening (HTTPS).");
            axum::serve(tls::TlsListener::new(listener, acceptor), app)
                .with_graceful_shutdown(stop)
                .await?;
        }
    }
    tracing::info!("API stopped.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_string_schema_forbids_nul_and_keeps_its_own_pattern() {
        let mut doc = json!({
            "a": {"type": "string"},
            "b": {"type": ["string", "null"], "format": "date-time"},
            "c": {"type": "string", "pattern": "\\S"},
            "d": {"type": "object", "properties": {"e": {"type": "string"}}},
            "f": {"type": "integer"},
            "g": {"type": "http", "scheme": "bearer"}
        });
        forbid_nul(&mut doc);
        let rule = r"^[^\u0000]*$";
        assert_eq!(doc["a"]["pattern"], rule);
        assert_eq!(doc["b"]["pattern"], rule);
        assert_eq!(doc["c"]["pattern"], "\\S");
        assert_eq!(doc["c"]["allOf"], json!([{ "pattern": rule }]));
        assert_eq!(doc["d"]["properties"]["e"]["pattern"], rule);
        assert!(doc["f"].get("pattern").is_none() && doc["g"].get("pattern").is_none());
        // The served document is this one.
        let served: serde_json::Value = serde_json::from_str(&openapi_document()).unwrap();
        let comment = &served["components"]["schemas"]["NewComment"]["properties"]["body"];
        assert_eq!(comment["allOf"], json!([{ "pattern": rule }]));
    }
}
