//! The analyst web page: one HTML file, one script, one stylesheet, embedded
//! in the binary (no build step, no CDN, no separate server).
//!
//! The page holds the bearer token in `sessionStorage` and sends it as
//! `Authorization: Bearer` to the same API everyone else uses: no cookie, so
//! no CSRF, and no weaker path. Attacker-supplied text (paths, user agents,
//! summaries) is only ever inserted with `textContent`/`createTextNode`; the
//! strict Content-Security-Policy (no inline script, `frame-ancestors
//! 'none'`) backs that up. The headers are set on every response by
//! [`security_headers`].

use super::AppState;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const APP_CSS: &str = include_str!("web/app.css");

/// The policy: everything from this origin only, no inline script or
/// style, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page's routes.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(index))
        .routes(routes!(app_js))
        .routes(routes!(app_css))
}

/// The analyst web page.
#[utoipa::path(
    get,
    path = "/",
    tag = "web",
    responses((status = 200, description = "The page", body = String, content_type = "text/html"))
)]
pub async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
}

/// The page's script.
#[utoipa::path(
    get,
    path = "/app.js",
    tag = "web",
    responses((status = 200, description = "The script", body = String, content_type = "text/javascript"))
)]
pub async fn app_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}

/// The page's stylesheet.
#[utoipa::path(
    get,
    path = "/app.css",
    tag = "web",
    responses((status = 200, description = "The stylesheet", body = String, content_type = "text/css"))
)]
pub async fn app_css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS)
}

/// Middleware: the security headers of every response (page and API).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Incidents are sensitive and change: never cache them.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
