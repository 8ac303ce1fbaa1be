//! Cross-cutting HTTP: state, auth, the executor's adapter, errors, request
//! ids, extractors, health and metrics.

pub mod accept;
pub mod auth;
pub mod error;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod limits;
pub mod metrics_json;
pub mod precondition;
pub mod recent;
pub mod request_id;

use std::{sync::Arc, time::Duration};

use axum::{extract::Request, middleware::Next, response::IntoResponse, response::Response};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;

use crate::{
    config::{IdempotencyConfig, ReservationConfig, WebhookConfig},
    executor::Executor,
    jobs::Heartbeats,
    tenants::AuthCache,
};
pub use error::{ApiError, Problem};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// Where reports read: REPORTS_DATABASE_URL's replica, else `pool`.
    pub reports_pool: PgPool,
    /// SHA-256 of `ADMIN_API_KEY`; `None` disables the admin routes.
    pub admin_key_hash: Option<Vec<u8>>,
    pub idempotency: IdempotencyConfig,
    pub reservations: ReservationConfig,
    pub webhooks: WebhookConfig,
    /// Where webhook endpoints may point (ENDPOINT_ALLOWED_HOSTS).
    pub destinations: crate::events::deliveries::Destinations,
    /// Per-shop and per-address rate limits of this instance.
    pub limits: Arc<limits::Limits>,
    /// Slots for API requests in flight (MAX_IN_FLIGHT, shops' requests
    /// apart from anonymous ones), the per-address cap and BODY_TIMEOUT.
    pub admission: Arc<limits::Admission>,
    /// The background loops' last runs, for /health/full.
    pub heartbeats: Arc<Heartbeats>,
    /// The only way a route reaches a mutating use case.
    pub executor: Executor,
    /// Keys authenticated in the last AUTH_CACHE_TTL (at most 2 s).
    pub auth_cache: Arc<AuthCache>,
    pub metrics: PrometheusHandle,
    /// The last minute of this instance's requests, for /health/full.
    pub recent: Arc<recent::Recent>,
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A handler that panics is answered 500 `internal_error` (its transaction
/// is dropped, so rolled back) instead of a dropped connection; the panic
/// hook logs it without request values.
pub async fn catch_panic(request: Request, next: Next) -> Response {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => ApiError::Internal(anyhow::anyhow!("the handler panicked")).into_response(),
    }
}

/// Bounds a request's time. The handler future is dropped on timeout, which
/// rolls back its transaction, so the request may be retried as is.
pub async fn timeout(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(anyhow::anyhow!("request timed out after {limit:?}")).into_response(),
    }
}
