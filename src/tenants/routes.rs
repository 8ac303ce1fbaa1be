//! Platform admin routes for shops and API keys (`ADMIN_API_KEY`).

use axum::{extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use super::{ApiKeyCreated, NewKey, Role, ShopCreated};
use crate::http::{
    AppState,
    auth::Admin,
    error::{ApiError, Problem},
    extract::PathId,
    idempotency::{Actor, Command, Outcome},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_shop))
        .routes(routes!(create_api_key))
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShop {
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    pub name: String,
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
#[utoipa::path(post, path = "/v1/admin/shops", tag = "admin",
    params(("Idempotency-Key" = String, Header)),
    request_body = CreateShop,
    responses((status = 201, body = ShopCreated),
              (status = 401, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("admin_key" = [])))]
async fn create_shop(
    State(state): State<AppState>,
    _: Admin,
    cmd: Command<CreateShop>,
) -> Result<Response, ApiError> {
    let (key, input) = cmd.into_parts();
    state
        .execute(
            Actor::admin(),
            &key,
            "shop.create",
            StatusCode::CREATED,
            move |conn| Box::pin(async move { super::create_shop(conn, &input.name).await }),
        )
        .await
}

/// Create an API key for a shop (the secret is shown once).
#[utoipa::path(post, path = "/v1/admin/shops/{id}/api-keys", tag = "admin",
    params(("id" = Uuid, Path), ("Idempotency-Key" = String, Header)),
    request_body = CreateApiKey,
    responses((status = 201, body = ApiKeyCreated),
              (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("admin_key" = [])))]
async fn create_api_key(
    State(state): State<AppState>,
    _: Admin,
    PathId(shop_id): PathId,
    cmd: Command<CreateApiKey>,
) -> Result<Response, ApiError> {
    let (key, input) = cmd.into_parts();
    state
        .execute(
            Actor::admin(),
            &key,
            "api_key.create",
            StatusCode::CREATED,
            move |conn| {
                Box::pin(super::create_key(
                    conn,
                    shop_id,
                    NewKey {
                        role: input.role,
                        label: input.label,
                    },
                ))
            },
        )
        .await
}
