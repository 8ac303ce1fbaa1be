//! Platform admin routes for shops and API keys (`ADMIN_API_KEY`).

use axum::{extract::State, response::Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use validator::Validate;

use super::TenantError;
use super::{ApiKeyCreated, Role, ShopCreated, commands};
use crate::{
    executor::Actor,
    http::{AppState, auth::Admin, error::ApiError, extract::PathId, idempotency::Idempotent},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_shop))
        .routes(routes!(create_api_key))
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShop {
    #[validate(
        length(min = 1, max = 200, message = "must be 1 to 200 characters"),
        custom(function = "not_blank")
    )]
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
}

fn not_blank(name: &str) -> Result<(), validator::ValidationError> {
    if name.trim().is_empty() {
        return Err(validator::ValidationError::new("blank").with_message("must not be blank".into()));
    }
    Ok(())
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub role: Role,
    #[validate(length(max = 100, message = "must be at most 100 characters"))]
    pub label: Option<String>,
}

/// Create a shop with its first owner API key (the secret is shown once).
#[utoipa::path(post, path = "/v1/admin/shops", tag = "admin", operation_id = "createShop",
    params(crate::openapi::IdempotencyKeyHeader),
    request_body = CreateShop,
    responses((status = 201, body = ShopCreated)),
    security(("admin_key" = [])))]
async fn create_shop(
    State(state): State<AppState>,
    _: Admin,
    Idempotent(request, input): Idempotent<CreateShop>,
) -> Result<Response, ApiError> {
    let command = commands::CreateShop { name: input.name };
    state
        .execute(Actor::platform(&request.key), request, command)
        .await
}

/// Create an API key for a shop (the secret is shown once).
#[utoipa::path(post, path = "/v1/admin/shops/{id}/api-keys", tag = "admin", operation_id = "createApiKey",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = CreateApiKey,
    responses((status = 201, body = ApiKeyCreated)),
    security(("admin_key" = [])))]
async fn create_api_key(
    State(state): State<AppState>,
    _: Admin,
    PathId(shop_id): PathId,
    Idempotent(request, input): Idempotent<CreateApiKey>,
) -> Result<Response, ApiError> {
    let command = commands::CreateKey {
        shop_id,
        role: input.role,
        label: input.label,
    };
    state
        .execute(Actor::platform(&request.key), request, command)
        .await
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::ShopNotFound | TenantError::KeyNotFound => ApiError::NotFound,
            TenantError::Db(e) => e.into(),
        }
    }
}
