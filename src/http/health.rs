//! Liveness, readiness, Prometheus metrics and the OpenAPI document.

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AppState, error::ApiError};

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// The database answers and every migration this build knows is applied.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health),
              (status = 503, body = super::error::Problem, content_type = "application/problem+json")))]
pub async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    let unready = |why: String| ApiError::Unavailable(anyhow::anyhow!(why));
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&state.pool)
            .await
            .map_err(|e| unready(format!("database not ready: {e}")))?;
    let missing: Vec<i64> = crate::MIGRATOR
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect();
    if !missing.is_empty() {
        return Err(unready(format!("migrations not applied: {missing:?}")));
    }
    Ok(axum::Json(Health { status: "ready" }))
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    metrics::gauge!("db_pool_connections").set(state.pool.size() as f64);
    metrics::gauge!("db_pool_idle_connections").set(state.pool.num_idle() as f64);
    let mut body = state.metrics.render();
    body.push_str(&crate::jobs::render_held());
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

pub async fn openapi_yaml() -> Response {
    let mut response = crate::openapi::yaml().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
    response
}
