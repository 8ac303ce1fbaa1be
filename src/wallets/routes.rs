//! Wallet HTTP routes: extract, run one command or query, answer.

use axum::{Json, extract::State, response::Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use super::WalletError;
use super::{
    CreateWallet, CreditGrant, CreditRequest, DebitRequest, GrantStatus, RefundRequest, Transfer,
    TransferRequest, Wallet, WalletTransaction,
    commands::{Create, Credit, Debit, MakeTransfer, Refund},
};
use crate::{
    http::{
        AppState,
        error::ApiError,
        extract::{PathId, PathIds, ValidQuery},
        idempotency::Idempotent,
    },
    pagination::{Page, PageParams},
    tenants::Tenant,
    wallets,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_wallet, list_wallets))
        .routes(routes!(get_wallet))
        .routes(routes!(credit_wallet))
        .routes(routes!(debit_wallet))
        .routes(routes!(list_wallet_transactions))
        .routes(routes!(get_wallet_transaction))
        .routes(routes!(refund_wallet_transaction))
        .routes(routes!(list_wallet_grants))
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
#[utoipa::path(post, path = "/v1/wallets", tag = "wallets", operation_id = "createWallet",
    params(crate::openapi::IdempotencyKeyHeader),
    request_body = CreateWallet,
    responses((status = 201, body = Wallet, headers(("Location" = String)),
        links(("GetWallet" = (operation_id = "getWallet", parameters(("id" = "$response.body#/id")))), ("CreditWallet" = (operation_id = "creditWallet", parameters(("id" = "$response.body#/id")))), ("DebitWallet" = (operation_id = "debitWallet", parameters(("id" = "$response.body#/id")))), ("ListWalletTransactions" = (operation_id = "listWalletTransactions", parameters(("id" = "$response.body#/id"))))))),
    security(("api_key" = [])))]
async fn create_wallet(
    State(state): State<AppState>,
    tenant: Tenant,
    Idempotent(request, input): Idempotent<CreateWallet>,
) -> Result<Response, ApiError> {
    state.execute(tenant, request, Create { tenant, input }).await
}

/// List wallets, newest first.
#[utoipa::path(get, path = "/v1/wallets", tag = "wallets", operation_id = "listWallets",
    params(WalletListParams),
    responses((status = 200, body = Page<Wallet>)),
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
#[utoipa::path(get, path = "/v1/wallets/{id}", tag = "wallets", operation_id = "getWallet",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Wallet)),
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
#[utoipa::path(post, path = "/v1/wallets/{id}/credit", tag = "wallets", operation_id = "creditWallet",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = CreditRequest,
    responses((status = 201, body = WalletTransaction,
        links(("GetWallet" = (operation_id = "getWallet", parameters(("id" = "$response.body#/wallet_id")))), ("DebitWallet" = (operation_id = "debitWallet", parameters(("id" = "$response.body#/wallet_id")))), ("ListWalletTransactions" = (operation_id = "listWalletTransactions", parameters(("id" = "$response.body#/wallet_id")))), ("CreateReservation" = (operation_id = "createReservation", parameters(("id" = "$response.body#/wallet_id")))), ("ListReservations" = (operation_id = "listReservations", parameters(("id" = "$response.body#/wallet_id")))), ("ListWalletGrants" = (operation_id = "listWalletGrants", parameters(("id" = "$response.body#/wallet_id"))))))),
    security(("api_key" = [])))]
async fn credit_wallet(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    Idempotent(request, input): Idempotent<CreditRequest>,
) -> Result<Response, ApiError> {
    state
        .execute(
            tenant,
            request,
            Credit {
                tenant,
                wallet_id: id,
                input,
            },
        )
        .await
}

/// Take money from a wallet. Fails with 422 `insufficient_funds` when
/// `available` would drop below `-overdraft_limit`.
#[utoipa::path(post, path = "/v1/wallets/{id}/debit", tag = "wallets", operation_id = "debitWallet",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = DebitRequest,
    responses((status = 201, body = WalletTransaction,
        links(("GetWallet" = (operation_id = "getWallet", parameters(("id" = "$response.body#/wallet_id")))), ("DebitWallet" = (operation_id = "debitWallet", parameters(("id" = "$response.body#/wallet_id")))), ("ListWalletTransactions" = (operation_id = "listWalletTransactions", parameters(("id" = "$response.body#/wallet_id")))), ("RefundWalletTransaction" = (operation_id = "refundWalletTransaction", parameters(("id" = "$response.body#/wallet_id"), ("transaction_id" = "$response.body#/id"))))))),
    security(("api_key" = [])))]
async fn debit_wallet(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    Idempotent(request, input): Idempotent<DebitRequest>,
) -> Result<Response, ApiError> {
    state
        .execute(
            tenant,
            request,
            Debit {
                tenant,
                wallet_id: id,
                input,
            },
        )
        .await
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransactionListParams {
    /// Only movements created at or after this time.
    created_after: Option<DateTime<Utc>>,
    /// Only movements created before this time (a report period's end:
    /// the next day's midnight).
    created_before: Option<DateTime<Utc>>,
    /// Page size, 1–100.
    #[validate(range(min = 1, max = 100, message = "must be between 1 and 100"))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// Id of the last movement of the previous page.
    starting_after: Option<Uuid>,
}

/// A wallet's movements, newest first, each with its refunds so far
/// (`refunded_amount`) and what it took from each grant; `created_after`
/// and `created_before` narrow them to a period.
#[utoipa::path(get, path = "/v1/wallets/{id}/transactions", tag = "wallets",
    operation_id = "listWalletTransactions",
    params(("id" = Uuid, Path), TransactionListParams),
    responses((status = 200, body = Page<WalletTransaction>)),
    security(("api_key" = [])))]
async fn list_wallet_transactions(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    ValidQuery(q): ValidQuery<TransactionListParams>,
) -> Result<Json<Page<WalletTransaction>>, ApiError> {
    let page = PageParams {
        limit: q.limit,
        starting_after: q.starting_after,
    };
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        wallets::transactions(&mut conn, tenant, id, &page, q.created_after, q.created_before).await?,
    ))
}

/// One movement of a wallet, with `refunded_amount` as it stands.
#[utoipa::path(get, path = "/v1/wallets/{id}/transactions/{transaction_id}", tag = "wallets",
    operation_id = "getWalletTransaction",
    params(("id" = Uuid, Path), ("transaction_id" = Uuid, Path)),
    responses((status = 200, body = WalletTransaction)),
    security(("api_key" = [])))]
async fn get_wallet_transaction(
    State(state): State<AppState>,
    tenant: Tenant,
    PathIds(id, transaction_id): PathIds,
) -> Result<Json<WalletTransaction>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        wallets::wallet_transaction(&mut conn, tenant, id, transaction_id).await?,
    ))
}

/// Refund a debit (`usage`, `purchase`, `fee`) or a captured hold, in
/// whole or in part (default: all that is left): a `refund` credit on the
/// same wallet (revenue → wallet) naming the original in `refund_of`. The
/// refunds of a movement never exceed it: 422 `refund_exceeds_remaining`
/// (naming `amount`) beyond what is left, 422 `not_refundable` for any
/// other movement.
#[utoipa::path(post, path = "/v1/wallets/{id}/transactions/{transaction_id}/refund", tag = "wallets",
    operation_id = "refundWalletTransaction",
    params(("id" = Uuid, Path), ("transaction_id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = RefundRequest,
    responses((status = 201, description = "The refund movement", body = WalletTransaction,
        headers(("Location" = String)),
        links(("GetRefund" = (operation_id = "getWalletTransaction", parameters(("id" = "$response.body#/wallet_id"), ("transaction_id" = "$response.body#/id")))), ("GetRefundedTransaction" = (operation_id = "getWalletTransaction", parameters(("id" = "$response.body#/wallet_id"), ("transaction_id" = "$response.body#/refund_of")))), ("GetWallet" = (operation_id = "getWallet", parameters(("id" = "$response.body#/wallet_id"))))))),
    security(("api_key" = [])))]
async fn refund_wallet_transaction(
    State(state): State<AppState>,
    tenant: Tenant,
    PathIds(id, transaction_id): PathIds,
    Idempotent(request, input): Idempotent<RefundRequest>,
) -> Result<Response, ApiError> {
    state
        .execute(
            tenant,
            request,
            Refund {
                tenant,
                wallet_id: id,
                transaction_id,
                input,
            },
        )
        .await
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GrantListParams {
    /// Only grants in this status.
    status: Option<GrantStatus>,
    /// Page size, 1–100.
    #[validate(range(min = 1, max = 100, message = "must be between 1 and 100"))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// Id of the last grant of the previous page.
    starting_after: Option<Uuid>,
}

/// A wallet's credit grants, newest first: what each was, what is left,
/// what is held and what expired. `status`: `active` (credit left, before
/// its deadline), `depleted` (nothing left, before its deadline or without
/// one), `expired` (its deadline passed).
#[utoipa::path(get, path = "/v1/wallets/{id}/grants", tag = "wallets",
    operation_id = "listWalletGrants",
    params(("id" = Uuid, Path), GrantListParams),
    responses((status = 200, body = Page<CreditGrant>)),
    security(("api_key" = [])))]
async fn list_wallet_grants(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    ValidQuery(q): ValidQuery<GrantListParams>,
) -> Result<Json<Page<CreditGrant>>, ApiError> {
    let page = PageParams {
        limit: q.limit,
        starting_after: q.starting_after,
    };
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        wallets::list_grants(&mut conn, tenant, id, q.status, &page).await?,
    ))
}

/// Move money between two wallets of the same shop and currency.
#[utoipa::path(post, path = "/v1/transfers", tag = "wallets", operation_id = "createTransfer",
    params(crate::openapi::IdempotencyKeyHeader),
    request_body = TransferRequest,
    responses((status = 201, body = Transfer,
        links(("GetWallet" = (operation_id = "getWallet", parameters(("id" = "$response.body#/from_wallet_id")))), ("ListWalletTransactions" = (operation_id = "listWalletTransactions", parameters(("id" = "$response.body#/from_wallet_id"))))))),
    security(("api_key" = [])))]
async fn create_transfer(
    State(state): State<AppState>,
    tenant: Tenant,
    Idempotent(request, input): Idempotent<TransferRequest>,
) -> Result<Response, ApiError> {
    state
        .execute(tenant, request, MakeTransfer { tenant, input })
        .await
}

impl From<WalletError> for ApiError {
    fn from(e: WalletError) -> Self {
        match e {
            WalletError::NotFound => ApiError::NotFound,
            WalletError::InsufficientFunds => ApiError::InsufficientFunds,
            WalletError::CurrencyMismatch { from, to } => {
                ApiError::CurrencyMismatch(format!("the wallets hold different currencies ({from} and {to})"))
            }
            WalletError::SameWallet => {
                ApiError::validation("to_wallet_id", "must differ from from_wallet_id")
            }
            WalletError::InvalidAmount(e) => ApiError::money(e.field, e.error),
            WalletError::Invalid(field, why) => ApiError::validation(field, why),
            WalletError::KeyReused => ApiError::IdempotencyKeyReused,
            WalletError::TransactionNotFound => ApiError::NotFound,
            WalletError::NotRefundable(_) => ApiError::NotRefundable(e.to_string()),
            WalletError::RefundExceedsRemaining { .. } => ApiError::Exceeds {
                code: "refund_exceeds_remaining",
                field: "amount",
                message: e.to_string(),
            },
            WalletError::BalanceOverflow => ApiError::validation(
                "amount",
                "would take the balance beyond the largest supported value",
            ),
            WalletError::Store(e) => e.into(),
        }
    }
}
