//! The reconciliation page for finance staff: server-rendered HTML with its
//! script and style served by the binary (no CDN), so it works offline. The
//! page calls the JSON API with the key the user pastes.

use axum::{
    Router,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::http::AppState;

const HTML: &str = include_str!("page/reconciliation.html");
const JS: &str = include_str!("page/reconciliation.js");
const CSS: &str = include_str!("page/reconciliation.css");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Only this origin's script and style; no third party, no inline code.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/reports/reconciliation",
            get(|| async { asset(HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/reports/assets/reconciliation.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/reports/assets/reconciliation.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
}
