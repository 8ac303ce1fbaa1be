//! Wallet HTTP routes: extract, call one use case, answer.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use super::{
    CreateWallet, CreditRequest, DebitRequest, Transfer, TransferRequest, Wallet, WalletTransaction,
};
use crate::{
    http::{
        AppState,
        error::{ApiError, Problem},
        extract::{PathId, ValidQuery},
        idempotency::Command,
        pagination::{Page, PageParams},
    },
    tenants::Tenant,
    wallets,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_wallet, list_wallets))
        .routes(routes!(get_wallet))
        .routes(routes!(credit))
        .routes(routes!(debit))
        .routes(routes!(list_transactions))
        .routes(routes!(create_transfer))
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WalletListParams {
    /// Only wallets of this customer.
    customer_ref: Option<String>,
    /// Page size, 1–100.
    #[validate(range(min = 1, max = 100, message = "must be between 1 and 100"))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// Id of the last wallet of the previous page.
    starting_after: Option<Uuid>,
}

/// Create a wallet.
#[utoipa::path(post, path = "/v1/wallets", tag = "wallets",
    params(("Idempotency-Key" = String, Header, description = "1–255 visible ASCII characters")),
    request_body = CreateWallet,
    responses(
        (status = 201, body = Wallet, headers(("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
async fn create_wallet(
    State(state): State<AppState>,
    tenant: Tenant,
    cmd: Command<CreateWallet>,
) -> Result<Response, ApiError> {
    let (key, input) = cmd.into_parts();
    state
        .execute(tenant, &key, "wallet.create", StatusCode::CREATED, move |conn| {
            Box::pin(wallets::create(conn, tenant, input))
        })
        .await
}

/// List wallets, newest first.
#[utoipa::path(get, path = "/v1/wallets", tag = "wallets", params(WalletListParams),
    responses((status = 200, body = Page<Wallet>),
              (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
async fn list_wallets(
    State(state): State<AppState>,
    tenant: Tenant,
    ValidQuery(q): ValidQuery<WalletListParams>,
) -> Result<Json<Page<Wallet>>, ApiError> {
    let page = PageParams {
        limit: q.limit,
        starting_after: q.starting_after,
    };
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        wallets::list(&mut conn, tenant, q.customer_ref.as_deref(), &page).await?,
    ))
}

/// Retrieve a wallet.
#[utoipa::path(get, path = "/v1/wallets/{id}", tag = "wallets", params(("id" = Uuid, Path)),
    responses((status = 200, body = Wallet),
              (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
async fn get_wallet(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
) -> Result<Json<Wallet>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(wallets::get(&mut conn, tenant, id).await?))
}

/// Add money to a wallet.
#[utoipa::path(post, path = "/v1/wallets/{id}/credit", tag = "wallets",
    params(("id" = Uuid, Path), ("Idempotency-Key" = String, Header)),
    request_body = CreditRequest,
    responses((status = 201, body = WalletTransaction),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
async fn credit(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    cmd: Command<CreditRequest>,
) -> Result<Response, ApiError> {
    let (key, input) = cmd.into_parts();
    let k = key.as_str().to_owned();
    state
        .execute(tenant, &key, "wallet.credit", StatusCode::CREATED, move |conn| {
            Box::pin(wallets::credit(conn, tenant, id, input, k))
        })
        .await
}

/// Take money from a wallet. Fails with 422 `insufficient_funds` when
/// `available` would drop below `-overdraft_limit`.
#[utoipa::path(post, path = "/v1/wallets/{id}/debit", tag = "wallets",
    params(("id" = Uuid, Path), ("Idempotency-Key" = String, Header)),
    request_body = DebitRequest,
    responses((status = 201, body = WalletTransaction),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
async fn debit(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    cmd: Command<DebitRequest>,
) -> Result<Response, ApiError> {
    let (key, input) = cmd.into_parts();
    let k = key.as_str().to_owned();
    state
        .execute(tenant, &key, "wallet.debit", StatusCode::CREATED, move |conn| {
            Box::pin(wallets::debit(conn, tenant, id, input, k))
        })
        .await
}

/// A wallet's movements, newest first.
#[utoipa::path(get, path = "/v1/wallets/{id}/transactions", tag = "wallets",
    params(("id" = Uuid, Path), PageParams),
    responses((status = 200, body = Page<WalletTransaction>),
              (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
async fn list_transactions(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<Page<WalletTransaction>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(wallets::transactions(&mut conn, tenant, id, &page).await?))
}

/// Move money between two wallets of the same shop and currency.
#[utoipa::path(post, path = "/v1/transfers", tag = "wallets",
    params(("Idempotency-Key" = String, Header)),
    request_body = TransferRequest,
    responses((status = 201, body = Transfer),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("api_key" = [])))]
async fn create_transfer(
    State(state): State<AppState>,
    tenant: Tenant,
    cmd: Command<TransferRequest>,
) -> Result<Response, ApiError> {
    let (key, input) = cmd.into_parts();
    let k = key.as_str().to_owned();
    state
        .execute(
            tenant,
            &key,
            "wallet.transfer",
            StatusCode::CREATED,
            move |conn| Box::pin(wallets::transfer(conn, tenant, input, k)),
        )
        .await
}
