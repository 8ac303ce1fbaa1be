//! Webhook HTTP routes: the signed receiver (no API key, no
//! Idempotency-Key), signing secrets, and the event queue for the shop.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::WebhookError;
use super::{
    CreateWebhookSecret, EventListParams, IncomingEvent, Receipt, WebhookEvent, WebhookSecret, WebhookStats,
    commands::{CreateSecret, Retry},
    signature,
};
use crate::{
    http::{
        AppState,
        auth::Admin,
        error::ApiError,
        extract::{PathId, ValidQuery, parse_value},
        idempotency::Idempotent,
        limits::ClientIp,
    },
    invoices::NoFields,
    pagination::{Page, PageParams},
    tenants::Tenant,
    webhooks,
};

/// Largest delivery accepted.
pub const MAX_BODY: usize = 256 * 1024;
pub const SIGNATURE_HEADER: &str = "webhook-signature";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_secret))
        .routes(routes!(receive))
        .routes(routes!(list_events))
        .routes(routes!(get_event))
        .routes(routes!(retry_event))
        .routes(routes!(webhook_stats))
}

/// A new signing secret for a provider, shown once. The provider's earlier
/// secrets keep verifying for WEBHOOK_SECRET_GRACE (24 h), so the provider
/// can switch without losing deliveries.
#[utoipa::path(post, path = "/v1/webhook-secrets", tag = "webhooks", operation_id = "createWebhookSecret",
    params(crate::openapi::IdempotencyKeyHeader),
    request_body = CreateWebhookSecret,
    responses((status = 201, body = WebhookSecret)),
    security(("api_key" = [])))]
async fn create_secret(
    State(state): State<AppState>,
    tenant: Tenant,
    Idempotent(request, input): Idempotent<CreateWebhookSecret>,
) -> Result<Response, ApiError> {
    let grace = state.webhooks.secret_grace;
    state
        .execute(
            tenant,
            request,
            CreateSecret {
                tenant,
                provider: input.provider,
                grace,
            },
        )
        .await
}

fn signature_failure() -> ApiError {
    metrics::counter!("webhook_signature_failures_total").increment(1);
    ApiError::SignatureInvalid
}

/// Receive a provider's event. Verified with `Webhook-Signature:
/// t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` against the
/// shop's secrets for the provider, then stored once: a known event id
/// answers `duplicate: true` and does nothing. Applied later by the worker.
#[utoipa::path(post, path = "/v1/webhooks/{provider}/{shop_id}", tag = "webhooks", operation_id = "receiveWebhook",
    params(("provider" = String, Path), ("shop_id" = Uuid, Path),
        ("Webhook-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">; several v1= during a rotation")),
    request_body = IncomingEvent,
    responses((status = 200, body = Receipt)))]
async fn receive(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path((provider, shop_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Receipt>, ApiError> {
    state.limits.check_address(ip)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(format!("could not read the request body: {e}"))
        }
    })?;
    let shop_id: Uuid = shop_id.parse().map_err(|_| ApiError::NotFound)?;
    if super::provider_syntax(&provider).is_err() {
        return Err(ApiError::NotFound);
    }
    if body.len() > MAX_BODY {
        return Err(ApiError::PayloadTooLarge);
    }
    let header = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(signature::parse)
        .ok_or_else(signature_failure)?;
    let secrets = webhooks::verifying_secrets(&state.pool, shop_id, &provider).await?;
    if secrets.is_empty() {
        return Err(ApiError::NotFound);
    }
    if !signature::verify(&header, &body, secrets.iter().map(String::as_str)) {
        return Err(signature_failure());
    }
    let now = chrono::Utc::now().timestamp();
    if now.abs_diff(header.timestamp) > state.webhooks.tolerance.as_secs() {
        return Err(ApiError::TimestampOutOfTolerance);
    }
    let payload = parse_value(&body)?;
    let event = event_of(&payload)?;
    if event.id.is_empty() || event.id.len() > 200 || !event.id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::validation(
            "id",
            "must be 1 to 200 visible ASCII characters",
        ));
    }
    if event.type_.is_empty() || event.type_.len() > 100 {
        return Err(ApiError::validation("type", "must be 1 to 100 characters"));
    }
    let receipt = webhooks::receive(&state.pool, shop_id, &provider, &event, &payload).await?;
    metrics::counter!("webhook_events_received_total").increment(1);
    if receipt.duplicate {
        metrics::counter!("webhook_events_duplicate_total").increment(1);
    }
    Ok(Json(receipt))
}

/// The shop's received events, newest first; `?status=` filters.
#[utoipa::path(get, path = "/v1/webhook-events", tag = "webhooks", operation_id = "listWebhookEvents",
    params(EventListParams),
    responses((status = 200, body = Page<WebhookEvent>)),
    security(("api_key" = [])))]
async fn list_events(
    State(state): State<AppState>,
    tenant: Tenant,
    ValidQuery(q): ValidQuery<EventListParams>,
) -> Result<Json<Page<WebhookEvent>>, ApiError> {
    let page = PageParams {
        limit: q.limit,
        starting_after: q.starting_after,
    };
    let mut conn = state.pool.acquire().await?;
    Ok(Json(webhooks::list(&mut conn, tenant, q.status, &page).await?))
}

/// One received event with its attempts, last error and result.
#[utoipa::path(get, path = "/v1/webhook-events/{id}", tag = "webhooks", operation_id = "getWebhookEvent",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = WebhookEvent)),
    security(("api_key" = [])))]
async fn get_event(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
) -> Result<Json<WebhookEvent>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(webhooks::get(&mut conn, tenant, id).await?))
}

/// Run a failed or dead event again now (after fixing its cause); the
/// worker applies it at most once. 409 `invalid_state` for other statuses.
#[utoipa::path(post, path = "/v1/webhook-events/{id}/retry", tag = "webhooks", operation_id = "retryWebhookEvent",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = NoFields,
    responses((status = 200, body = WebhookEvent)),
    security(("api_key" = [])))]
async fn retry_event(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    Idempotent(request, _input): Idempotent<NoFields>,
) -> Result<Response, ApiError> {
    let retry = Retry { tenant, event_id: id };
    state.execute(tenant, request, retry).await
}

/// The event in a verified body: a JSON object with a string `id`, a
/// string `type` and an object `data` (serde alone would take an array
/// positionally and a missing `data` as null, and the worker would then
/// fail the event forever).
fn event_of(payload: &serde_json::Value) -> Result<IncomingEvent, ApiError> {
    let not_event = |why: &str| {
        ApiError::BadRequest(format!(
            "the body is not an event ({{id, type, created, data}}): {why}"
        ))
    };
    let object = payload
        .as_object()
        .ok_or_else(|| not_event("not a JSON object"))?;
    for (field, ok) in [
        ("id", object.get("id").is_some_and(serde_json::Value::is_string)),
        (
            "type",
            object.get("type").is_some_and(serde_json::Value::is_string),
        ),
        (
            "data",
            object.get("data").is_some_and(serde_json::Value::is_object),
        ),
    ] {
        if !ok {
            return Err(not_event(&format!("`{field}` is missing or of the wrong type")));
        }
    }
    IncomingEvent::deserialize(payload).map_err(|e| not_event(&e.to_string()))
}

/// Webhook events of all shops by status, the due queue and its oldest age.
#[utoipa::path(get, path = "/v1/admin/webhooks/stats", tag = "admin", operation_id = "getWebhookStats",
    responses((status = 200, body = WebhookStats)),
    security(("admin_key" = [])))]
async fn webhook_stats(State(state): State<AppState>, _: Admin) -> Result<Json<WebhookStats>, ApiError> {
    Ok(Json(webhooks::stats(&state.pool).await?))
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::NotFound => ApiError::NotFound,
            WebhookError::InvalidState(_) => ApiError::InvalidState(e.to_string()),
            WebhookError::Busy | WebhookError::Malformed(_) | WebhookError::Mismatch(_) => {
                ApiError::Internal(anyhow::anyhow!("{e}"))
            }
            WebhookError::Invoice(e) => e.into(),
            WebhookError::Store(e) => e.into(),
            WebhookError::Wallet(e) => e.into(),
        }
    }
}
