//! Request ids, the per-request tracing span, the access log line and the
//! request metrics, all in one middleware so every response (errors and
//! fallbacks included) carries `X-Request-Id`.

use std::{cell::Cell, sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use tracing::Instrument;
use uuid::Uuid;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// What the request's own task knows about it.
struct Context {
    id: String,
    shop: Cell<Option<Uuid>>,
    rate: Cell<Option<super::limits::Standing>>,
}

tokio::task_local! {
    static CONTEXT: Context;
}

/// The id of the request being served, or `-` outside of one.
pub fn current() -> String {
    CONTEXT
        .try_with(|c| c.id.clone())
        .unwrap_or_else(|_| "-".to_owned())
}

/// The rate-limit standing the answer reports in `RateLimit-*` headers.
pub fn set_rate(standing: super::limits::Standing) {
    let _ = CONTEXT.try_with(|c| c.rate.set(Some(standing)));
}

/// Names the authenticated shop in the request's span and access log.
pub fn set_shop(shop_id: Uuid) {
    let _ = CONTEXT.try_with(|c| c.shop.set(Some(shop_id)));
    tracing::Span::current().record("shop_id", tracing::field::display(shop_id));
}

/// A client-supplied id is kept when it is short, visible ASCII; otherwise a
/// fresh UUIDv7 is used, so ids can't inject into logs or headers.
fn accept(value: Option<&HeaderValue>) -> String {
    value
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::now_v7().to_string())
}

pub async fn track(
    State(recent): State<Arc<super::recent::Recent>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = accept(request.headers().get(&HEADER));
    let method = request.method().clone();
    // Events logged while handling carry the request id through this span;
    // the access line below is one flat event, cheap to format.
    let span = tracing::info_span!("request", request_id = %id, shop_id = tracing::field::Empty);
    let context = Context {
        id,
        shop: Cell::new(None),
        rate: Cell::new(None),
    };
    let (context, mut response) = CONTEXT
        .scope(context, async move {
            let response = next.run(request).instrument(span).await;
            (
                CONTEXT.with(|c| Context {
                    id: c.id.clone(),
                    shop: Cell::new(c.shop.get()),
                    rate: Cell::new(c.rate.get()),
                }),
                response,
            )
        })
        .await;
    let route = response
        .extensions()
        .get::<MatchedRoute>()
        .map_or("unmatched", |r| r.0.as_str())
        .to_owned();
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    tracing::info!(
        request_id = %context.id,
        method = %method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        shop_id = context.shop.get().map(tracing::field::display),
        "request finished"
    );

    metrics::counter!("http_requests_total",
        "method" => method.to_string(), "route" => route.clone(), "status" => status.to_string())
    .increment(1);
    // Operators' own polls would dilute the minute they look at.
    if !matches!(
        route.as_str(),
        "/metrics" | "/healthz" | "/readyz" | "/health/full"
    ) {
        recent.record(elapsed, status);
    }
    metrics::histogram!("http_request_duration_seconds", "route" => route).record(elapsed.as_secs_f64());

    if let Ok(v) = HeaderValue::from_str(&context.id) {
        response.headers_mut().insert(HEADER, v);
    }
    if let Some(s) = context.rate.get() {
        let headers = response.headers_mut();
        for (name, value) in [
            ("ratelimit-limit", s.limit as u64),
            ("ratelimit-remaining", s.remaining as u64),
            ("ratelimit-reset", s.reset),
        ] {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
    }
    response
}

/// The route template that matched, handed from [`record_route`] (which runs
/// after routing) to [`track`] (which runs before it).
#[derive(Clone)]
struct MatchedRoute(String);

/// Route-level layer: names the matched route for the access log and metrics.
pub async fn record_route(path: MatchedPath, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .extensions_mut()
        .insert(MatchedRoute(path.as_str().to_owned()));
    response
}
