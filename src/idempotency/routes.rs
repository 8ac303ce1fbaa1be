//! Platform admin routes for idempotency records.

use axum::{Json, extract::State, response::Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use validator::Validate;

use super::{CleanupResult, Stats, commands};
use crate::{
    executor::Actor,
    http::{AppState, auth::Admin, error::ApiError, idempotency::Idempotent},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(cleanup))
}

/// Counts of stored idempotency records and the last cleanup.
#[utoipa::path(get, path = "/v1/admin/idempotency/stats", tag = "admin",
    operation_id = "getIdempotencyStats",
    responses((status = 200, body = Stats)),
    security(("admin_key" = [])))]
async fn stats(State(state): State<AppState>, _: Admin) -> Result<Json<Stats>, ApiError> {
    Ok(Json(super::stats(&state.pool).await?))
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CleanupRequest {}

/// Delete expired idempotency records now. Each batch commits by itself,
/// outside this request's transaction.
#[utoipa::path(post, path = "/v1/admin/idempotency/cleanup", tag = "admin",
    operation_id = "cleanupIdempotencyKeys",
    params(crate::openapi::IdempotencyKeyHeader),
    request_body(content = CleanupRequest, description = "An empty object"),
    responses((status = 200, body = CleanupResult)),
    security(("admin_key" = [])))]
async fn cleanup(
    State(state): State<AppState>,
    _: Admin,
    Idempotent(request, _): Idempotent<CleanupRequest>,
) -> Result<Response, ApiError> {
    let command = commands::Cleanup {
        pool: state.pool.clone(),
        batch: state.idempotency.cleanup_batch,
    };
    state
        .execute(Actor::platform(&request.key), request, command)
        .await
}
