//! Platform admin routes for idempotency records.

use axum::{Json, extract::State, response::Response};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use super::Stats;
use crate::{
    executor::{Actor, Claimed, Command, Outcome, Ran, Unit},
    http::{AppState, auth::Admin, error::ApiError, idempotency::Idempotent},
    store::StoreError,
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

#[derive(Debug, Serialize, ToSchema)]
pub struct CleanupResult {
    pub id: Uuid,
    pub rows_deleted: u64,
}

impl Outcome for CleanupResult {
    const ENTITY: &'static str = "idempotency_cleanup";
    fn entity_id(&self) -> Uuid {
        self.id
    }
}

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
    let command = Cleanup {
        pool: state.pool.clone(),
        batch: state.idempotency.cleanup_batch,
    };
    state.execute(Actor::PLATFORM, request, command).await
}

/// Runs the batches on the pool, each committing by itself: holding the
/// deleted rows until the request commits would block every retry of those
/// keys for the whole run. Only the result is recorded under the key.
struct Cleanup {
    pool: PgPool,
    batch: u32,
}

impl Command for Cleanup {
    const ACTION: &'static str = "idempotency.cleanup";
    const STATUS: u16 = 200;
    type Key = Claimed;
    type Output = CleanupResult;
    type Error = StoreError;
    async fn run(self, _: &mut Unit<'_>, key: Claimed) -> Result<Ran<CleanupResult>, StoreError> {
        let rows_deleted = super::cleanup(&self.pool, self.batch).await?;
        Ok(key.answer(CleanupResult {
            id: Uuid::now_v7(),
            rows_deleted,
        }))
    }
}
