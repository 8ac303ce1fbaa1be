//! Request ids, the per-request tracing span, the access log line and the
//! request metrics, all in one middleware so every response (errors and
//! fallbacks included) carries `X-Request-Id`.

use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use tracing::Instrument;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served, or `-` outside of one.
pub fn current() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

/// A client-supplied id is kept when it is short, visible ASCII; otherwise a
/// fresh UUIDv7 is used, so ids can't inject into logs or headers.
fn accept(value: Option<&HeaderValue>) -> String {
    value
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = accept(request.headers().get(&HEADER));
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = tracing::field::Empty,
        shop_id = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(request).instrument(span.clone()))
        .await;
    let route = response
        .extensions()
        .get::<MatchedRoute>()
        .map_or("unmatched", |r| r.0.as_str())
        .to_owned();
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.record("status", status);
    span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
    span.in_scope(|| tracing::info!("request finished"));

    metrics::counter!("http_requests_total",
        "method" => method.to_string(), "route" => route.clone(), "status" => status.to_string())
    .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route).record(elapsed.as_secs_f64());

    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, v);
    }
    response
}

/// The route template that matched, handed from [`record_route`] (which runs
/// after routing) to [`track`] (which runs before it).
#[derive(Clone)]
struct MatchedRoute(String);

/// Route-level layer: names the matched route in the span and the metrics.
pub async fn record_route(path: MatchedPath, request: Request, next: Next) -> Response {
    tracing::Span::current().record("route", path.as_str());
    let mut response = next.run(request).await;
    response
        .extensions_mut()
        .insert(MatchedRoute(path.as_str().to_owned()));
    response
}
