//! Platform admin routes for idempotency records.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use super::Stats;
use crate::http::{
    AppState,
    auth::Admin,
    error::{ApiError, Problem},
    idempotency::{Actor, Command, Outcome},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(cleanup))
}

/// Counts of stored idempotency records and the last cleanup.
#[utoipa::path(get, path = "/v1/admin/idempotency/stats", tag = "admin",
    responses((status = 200, body = Stats),
              (status = 401, body = Problem, content_type = "application/problem+json")),
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

/// Delete expired idempotency records now.
#[utoipa::path(post, path = "/v1/admin/idempotency/cleanup", tag = "admin",
    params(("Idempotency-Key" = String, Header)),
    responses((status = 200, body = CleanupResult),
              (status = 401, body = Problem, content_type = "application/problem+json")),
    security(("admin_key" = [])))]
async fn cleanup(
    State(state): State<AppState>,
    _: Admin,
    cmd: Command<CleanupRequest>,
) -> Result<Response, ApiError> {
    let (key, _) = cmd.into_parts();
    let batch = state.idempotency.cleanup_batch;
    state
        .execute(
            Actor::admin(),
            &key,
            "idempotency.cleanup",
            StatusCode::OK,
            move |conn| {
                Box::pin(async move {
                    let rows_deleted = super::cleanup(conn, batch).await?;
                    Ok::<_, sqlx::Error>(CleanupResult {
                        id: Uuid::now_v7(),
                        rows_deleted,
                    })
                })
            },
        )
        .await
}
