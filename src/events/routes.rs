//! Event, webhook-endpoint and balance-alert HTTP routes: extract, run one
//! command or query, answer.

use axum::{Json, extract::State, response::Response};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{
    EventError, EventListParams, EventView, NoFields,
    alerts::{self, BalanceAlert, CreateBalanceAlert},
    deliveries::{self, Delivery, DeliveryListParams},
    endpoints::{self, CreateWebhookEndpoint, UpdateWebhookEndpoint, WebhookEndpoint},
};
use crate::{
    events,
    http::{
        AppState,
        error::ApiError,
        extract::{PathId, PathIds, ValidQuery},
        idempotency::Idempotent,
    },
    pagination::{Page, PageParams},
    tenants::Tenant,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(get_event))
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_endpoint_secret))
        .routes(routes!(list_deliveries))
        .routes(routes!(retry_delivery))
        .routes(routes!(create_balance_alert, list_balance_alerts))
        .routes(routes!(delete_balance_alert))
}

/// The shop's events, oldest first in commit order. Page with
/// `starting_after` (the last id seen) to catch up on anything missed: it
/// returns the events committed after that one. An event is listed once
/// every transaction that began before it has ended (usually at once), so
/// a page never skips one that commits later.
#[utoipa::path(get, path = "/v1/events", tag = "events", operation_id = "listEvents",
    params(EventListParams),
    responses((status = 200, body = Page<EventView>)),
    security(("api_key" = [])))]
async fn list_events(
    State(state): State<AppState>,
    tenant: Tenant,
    ValidQuery(q): ValidQuery<EventListParams>,
) -> Result<Json<Page<EventView>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(events::list(&mut conn, tenant, &q).await?))
}

/// Retrieve an event.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "events", operation_id = "getEvent",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = EventView)),
    security(("api_key" = [])))]
async fn get_event(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
) -> Result<Json<EventView>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(events::get(&mut conn, tenant, id).await?))
}

/// Register an endpoint to receive the shop's events, signed. The answer
/// shows the signing `secret` once. `url` must be `https` and resolve to
/// a public address (422 `validation_failed` otherwise) unless its host is
/// in `ENDPOINT_ALLOWED_HOSTS`.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "events", operation_id = "createWebhookEndpoint",
    params(crate::openapi::IdempotencyKeyHeader),
    request_body = CreateWebhookEndpoint,
    responses((status = 201, body = WebhookEndpoint, headers(("Location" = String)),
        links(("GetWebhookEndpoint" = (operation_id = "getWebhookEndpoint", parameters(("id" = "$response.body#/id"))))))),
    security(("api_key" = [])))]
async fn create_endpoint(
    State(state): State<AppState>,
    tenant: Tenant,
    Idempotent(request, input): Idempotent<CreateWebhookEndpoint>,
) -> Result<Response, ApiError> {
    let destinations = state.destinations.clone();
    let create = endpoints::Create {
        tenant,
        input,
        destinations,
    };
    state.execute(tenant, request, create).await
}

/// The shop's endpoints (secrets are never listed).
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "events", operation_id = "listWebhookEndpoints",
    params(PageParams),
    responses((status = 200, body = Page<WebhookEndpoint>)),
    security(("api_key" = [])))]
async fn list_endpoints(
    State(state): State<AppState>,
    tenant: Tenant,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<Page<WebhookEndpoint>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(endpoints::list(&mut conn, tenant, &page).await?))
}

/// Retrieve an endpoint.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "events", operation_id = "getWebhookEndpoint",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = WebhookEndpoint)),
    security(("api_key" = [])))]
async fn get_endpoint(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(endpoints::get(&mut conn, tenant, id).await?))
}

/// Change an endpoint's `url`, `event_types`, `description`, or disable or
/// re-enable it (`disabled`). Re-enabling resets its failure count; its
/// failed deliveries stay failed until retried.
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", tag = "events", operation_id = "updateWebhookEndpoint",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = UpdateWebhookEndpoint,
    responses((status = 200, body = WebhookEndpoint)),
    security(("api_key" = [])))]
async fn update_endpoint(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    Idempotent(request, input): Idempotent<UpdateWebhookEndpoint>,
) -> Result<Response, ApiError> {
    let destinations = state.destinations.clone();
    let update = endpoints::Update {
        tenant,
        id,
        input,
        destinations,
    };
    state.execute(tenant, request, update).await
}

/// Delete an endpoint: nothing more is posted to it; its pending
/// deliveries fail. Its events stay listed at `/v1/events`.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "events", operation_id = "deleteWebhookEndpoint",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    responses((status = 200, body = WebhookEndpoint)),
    security(("api_key" = [])))]
async fn delete_endpoint(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    Idempotent(request, _input): Idempotent<NoFields>,
) -> Result<Response, ApiError> {
    state
        .execute(tenant, request, endpoints::Delete { tenant, id })
        .await
}

/// A new signing secret, shown once. Deliveries carry a signature by each
/// of the new and the replaced secret until `previous_secret_expires_at`
/// (`WEBHOOK_SECRET_GRACE`), so the receiver can switch without a gap.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "events",
    operation_id = "rotateWebhookEndpointSecret",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body(content = NoFields, description = "No fields; an empty body is fine."),
    responses((status = 200, body = WebhookEndpoint)),
    security(("api_key" = [])))]
async fn rotate_endpoint_secret(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    Idempotent(request, _input): Idempotent<NoFields>,
) -> Result<Response, ApiError> {
    let grace = state.webhooks.secret_grace;
    state
        .execute(tenant, request, endpoints::Rotate { tenant, id, grace })
        .await
}

/// An endpoint's deliveries, newest first, each with its attempts.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "events",
    operation_id = "listWebhookDeliveries",
    params(("id" = Uuid, Path), DeliveryListParams),
    responses((status = 200, body = Page<Delivery>)),
    security(("api_key" = [])))]
async fn list_deliveries(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    ValidQuery(q): ValidQuery<DeliveryListParams>,
) -> Result<Json<Page<Delivery>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(deliveries::list(&mut conn, tenant, id, &q).await?))
}

/// Post a delivery again now, whatever its status (a failed one after its
/// endpoint is fixed, a delivered one to replay it): it becomes `pending`
/// and due at once. 409 `invalid_state` while an attempt is in flight or
/// the endpoint is disabled.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/retry", tag = "events",
    operation_id = "retryWebhookDelivery",
    params(("id" = Uuid, Path), ("delivery_id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body(content = NoFields, description = "No fields; an empty body is fine."),
    responses((status = 200, body = Delivery)),
    security(("api_key" = [])))]
async fn retry_delivery(
    State(state): State<AppState>,
    tenant: Tenant,
    PathIds(endpoint_id, id): PathIds,
    Idempotent(request, _input): Idempotent<NoFields>,
) -> Result<Response, ApiError> {
    let retry = deliveries::Retry {
        tenant,
        endpoint_id,
        id,
    };
    state.execute(tenant, request, retry).await
}

/// Watch a wallet's `available` credit: `wallet.balance_below` fires once
/// when a change takes it below `available_below`, and
/// `wallet.balance_recovered` once when one brings it back to or above;
/// never again while it stays on one side.
#[utoipa::path(post, path = "/v1/wallets/{id}/balance-alerts", tag = "events",
    operation_id = "createBalanceAlert",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = CreateBalanceAlert,
    responses((status = 201, body = BalanceAlert, headers(("Location" = String)))),
    security(("api_key" = [])))]
async fn create_balance_alert(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(wallet_id): PathId,
    Idempotent(request, input): Idempotent<CreateBalanceAlert>,
) -> Result<Response, ApiError> {
    let create = alerts::Create {
        tenant,
        wallet_id,
        input,
    };
    state.execute(tenant, request, create).await
}

/// A wallet's balance alerts.
#[utoipa::path(get, path = "/v1/wallets/{id}/balance-alerts", tag = "events",
    operation_id = "listBalanceAlerts",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Page<BalanceAlert>)),
    security(("api_key" = [])))]
async fn list_balance_alerts(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(wallet_id): PathId,
) -> Result<Json<Page<BalanceAlert>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(alerts::list(&mut conn, tenant, wallet_id).await?))
}

/// Delete a balance alert.
#[utoipa::path(delete, path = "/v1/wallets/{id}/balance-alerts/{alert_id}", tag = "events",
    operation_id = "deleteBalanceAlert",
    params(("id" = Uuid, Path), ("alert_id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    responses((status = 200, body = BalanceAlert)),
    security(("api_key" = [])))]
async fn delete_balance_alert(
    State(state): State<AppState>,
    tenant: Tenant,
    PathIds(wallet_id, id): PathIds,
    Idempotent(request, _input): Idempotent<NoFields>,
) -> Result<Response, ApiError> {
    let delete = alerts::Delete {
        tenant,
        wallet_id,
        id,
    };
    state.execute(tenant, request, delete).await
}

impl From<EventError> for ApiError {
    fn from(e: EventError) -> Self {
        match e {
            EventError::NotFound => ApiError::NotFound,
            EventError::Invalid { field, message } => ApiError::validation(field, message),
            EventError::InvalidState(_) => ApiError::InvalidState(e.to_string()),
            EventError::Wallet(e) => e.into(),
            EventError::Store(e) => e.into(),
        }
    }
}
