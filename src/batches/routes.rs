use axum::{extract::State, response::Response};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Batch, BatchResult, CreateBatch, items, run_each};
use crate::{
    http::{
        ApiError, AppState,
        idempotency::{Idempotent, respond},
    },
    tenants::Tenant,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_batch))
}

/// Apply up to 1,000 credits, debits, transfers, holds, captures, releases
/// and refunds, each under its own `idempotency_key` exactly as its single
/// request would be. Atomic (the default): every item applies or none does;
/// a refusal names the first failing item (`errors["items[3].amount"]`)
/// with that item's own problem `code` and changes nothing. With
/// `"atomic": false` each item applies on its own and `items[].status`
/// says how. Items already applied (by a single request or another batch
/// with the same key and body) answer from their record.
#[utoipa::path(post, path = "/v1/batches", tag = "batches", operation_id = "createBatch",
    params(crate::openapi::IdempotencyKeyHeader),
    request_body = CreateBatch,
    responses((status = 201, body = BatchResult)),
    security(("api_key" = [])))]
async fn create_batch(
    State(state): State<AppState>,
    tenant: Tenant,
    Idempotent(request, input): Idempotent<CreateBatch>,
) -> Result<Response, ApiError> {
    // Everything is checked before anything is locked.
    let items = items::parse_all(input.items, &request)?;
    let config = state.reservations.clone();
    if input.atomic.unwrap_or(true) {
        let batch = Batch {
            tenant,
            items,
            config,
        };
        state.execute(tenant, request, batch).await
    } else {
        Ok(respond(
            run_each(&state.executor, tenant, &request, items, &config).await?,
        ))
    }
}
