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
    let missing = crate::pending_migrations(&state.pool)
        .await
        .map_err(|e| unready(format!("database not ready: {e}")))?;
    if !missing.is_empty() {
        return Err(unready(format!("migrations not applied: {missing:?}")));
    }
    Ok(axum::Json(Health { status: "ready" }))
}

#[derive(Debug, serde::Deserialize, validator::Validate, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsParams {
    /// `json` for the same figures as JSON (as does `Accept: application/json`).
    #[param(inline)]
    pub format: Option<MetricsFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricsFormat {
    Prometheus,
    Json,
}

/// JSON when asked by `format`, else when `Accept` prefers it to
/// Prometheus' text (a scraper's `Accept` does not).
fn wants_json(format: Option<MetricsFormat>, headers: &axum::http::HeaderMap) -> bool {
    match format {
        Some(f) => f == MetricsFormat::Json,
        None => super::accept::prefers(headers, "application/json", "text/plain"),
    }
}

/// The service's counters, gauges and histograms: Prometheus text by
/// default; with `?format=json` (or `Accept: application/json`) the same
/// figures as JSON, each histogram with its count, sum, p50, p90 and p99.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "getMetrics",
    params(MetricsParams),
    responses((status = 200, description = "Prometheus text, or JSON", content(
        (String = "text/plain"),
        (super::metrics_json::MetricsJson = "application/json")))))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    super::extract::ValidQuery(q): super::extract::ValidQuery<MetricsParams>,
) -> Response {
    metrics::gauge!("db_pool_connections").set(state.pool.size() as f64);
    metrics::gauge!("db_pool_idle_connections").set(state.pool.num_idle() as f64);
    let mut body = state.metrics.render();
    body.push_str(&crate::jobs::render_held());
    if wants_json(q.format, &headers) {
        return axum::Json(super::metrics_json::from_text(&body)).into_response();
    }
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

#[derive(Serialize, ToSchema)]
pub struct DatabaseHealth {
    pub ok: bool,
    /// Round trip of `SELECT 1` through the pool, in microseconds (bounded
    /// at 2 s).
    pub latency_us: Option<u64>,
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PoolHealth {
    pub size: u32,
    pub idle: usize,
    pub max: u32,
}

#[derive(Serialize, ToSchema)]
pub struct MigrationHealth {
    pub ok: bool,
    pub applied: usize,
    pub expected: usize,
}

#[derive(Serialize, ToSchema)]
pub struct QueueHealth {
    /// Webhook events due for an attempt.
    pub depth: i64,
    pub oldest_pending_age_seconds: Option<i64>,
}

/// `ok`; `degraded` when a migration is missing or a loop is stale; `down`
/// when the database does not answer.
#[derive(Serialize, ToSchema)]
pub struct FullHealth {
    pub status: &'static str,
    pub database: DatabaseHealth,
    pub pool: PoolHealth,
    pub migrations: Option<MigrationHealth>,
    pub loops: Vec<crate::jobs::LoopHealth>,
    pub webhook_queue: Option<QueueHealth>,
    /// Outbound event deliveries (docs/runbooks/event-deliveries.md).
    pub event_deliveries: Option<crate::events::deliveries::Backlog>,
    /// This instance's last minute of requests.
    pub last_minute: super::recent::LastMinute,
}

const PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn probe<T>(f: impl std::future::Future<Output = Result<T, sqlx::Error>>) -> Result<T, String> {
    match tokio::time::timeout(PROBE_LIMIT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_LIMIT:?}")),
    }
}

/// Everything an operator checks first: the database and its latency, the
/// pool, migrations, each background loop's last successful run and the
/// webhook queue. 503 when the database is down or something is stuck.
#[utoipa::path(get, path = "/health/full", tag = "operations", operation_id = "getFullHealth",
    responses((status = 200, body = FullHealth),
              (status = 503, description = "The database is down, a migration is missing or a loop is stale", body = FullHealth)))]
pub async fn health_full(State(state): State<AppState>) -> Response {
    let started = std::time::Instant::now();
    let db = probe(sqlx::query("SELECT 1").execute(&state.pool)).await;
    let database = DatabaseHealth {
        ok: db.is_ok(),
        latency_us: db
            .as_ref()
            .ok()
            .map(|_| u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)),
        error: db.err(),
    };
    let (mut migrations, mut webhook_queue, mut event_deliveries) = (None, None, None);
    if database.ok {
        let applied: Result<Vec<i64>, String> = probe(
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&state.pool),
        )
        .await;
        if let Ok(applied) = applied {
            let expected: Vec<i64> = crate::MIGRATOR.iter().map(|m| m.version).collect();
            migrations = Some(MigrationHealth {
                ok: expected.iter().all(|v| applied.contains(v)),
                applied: applied.len(),
                expected: expected.len(),
            });
        }
        if let Ok((depth, oldest)) = probe(crate::webhooks::queue(&state.pool)).await {
            webhook_queue = Some(QueueHealth {
                depth,
                oldest_pending_age_seconds: oldest,
            });
        }
        event_deliveries = probe(crate::events::deliveries::backlog(&state.pool)).await.ok();
    }
    let loops = state.heartbeats.report(chrono::Utc::now());
    let status = if !database.ok {
        "down"
    } else if !migrations.as_ref().is_some_and(|m| m.ok) || loops.iter().any(|l| !l.ok) {
        "degraded"
    } else {
        "ok"
    };
    let report = FullHealth {
        status,
        pool: PoolHealth {
            size: state.pool.size(),
            idle: state.pool.num_idle(),
            max: state.pool.options().get_max_connections(),
        },
        database,
        migrations,
        loops,
        webhook_queue,
        event_deliveries,
        last_minute: state.recent.last_minute(),
    };
    let code = if status == "ok" {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(report)).into_response()
}
