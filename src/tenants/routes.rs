//! Platform admin routes for shops and API keys (`ADMIN_API_KEY`).

use axum::{extract::State, response::Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use super::{ApiKeyCreated, NewKey, Role, ShopCreated, TenantError};
use crate::{
    executor::{Actor, Command, Outcome, Run, Unit},
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

/// Replays never show a secret again: only its hash exists.
fn without_secret(key: &ApiKeyCreated) -> ApiKeyCreated {
    ApiKeyCreated {
        secret: None,
        ..key.clone()
    }
}

impl Outcome for ShopCreated {
    const ENTITY: &'static str = "shop";
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn for_storage(&self) -> Option<Vec<u8>> {
        let stored = ShopCreated {
            api_key: without_secret(&self.api_key),
            ..self.clone()
        };
        serde_json::to_vec(&stored).ok()
    }
}

impl Outcome for ApiKeyCreated {
    const ENTITY: &'static str = "api_key";
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn for_storage(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(&without_secret(self)).ok()
    }
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
    state.execute(Actor::PLATFORM, request, input).await
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
    state.execute(Actor::PLATFORM, request, (shop_id, input)).await
}

impl Command for CreateShop {
    const ACTION: &'static str = "shop.create";
    type Output = ShopCreated;
    type Error = TenantError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<ShopCreated>, TenantError> {
        super::create_shop(unit.conn(), &self.name).await.map(Run::New)
    }
}

impl Command for (Uuid, CreateApiKey) {
    const ACTION: &'static str = "api_key.create";
    type Output = ApiKeyCreated;
    type Error = TenantError;
    async fn run(self, unit: &mut Unit<'_>) -> Result<Run<ApiKeyCreated>, TenantError> {
        let (shop_id, input) = self;
        let new = NewKey {
            role: input.role,
            label: input.label,
        };
        super::create_key(unit.conn(), shop_id, new).await.map(Run::New)
    }
}
