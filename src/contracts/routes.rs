//! Contract HTTP routes: extract, check the precondition, run one command
//! or query, answer.

use axum::{Json, extract::State, http::HeaderMap, response::Response};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ContractError;
use super::{
    ApproveContract, CancelContract, Contract, ContractListParams, ContractPeriod, CreateContract,
    PeriodListParams, RejectContract, UpdateContract,
    commands::{Approve, Cancel, Create, Reject, Submit, Update},
};
use crate::{
    contracts,
    http::{
        AppState,
        error::ApiError,
        extract::{PathId, ValidQuery},
        idempotency::Idempotent,
        precondition::{IfMatch, conditional_get},
    },
    invoices::NoFields,
    pagination::{Page, PageParams},
    tenants::Tenant,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_contract, list_contracts))
        .routes(routes!(get_contract, update_contract))
        .routes(routes!(submit_contract))
        .routes(routes!(approve_contract))
        .routes(routes!(reject_contract))
        .routes(routes!(cancel_contract))
        .routes(routes!(list_contract_periods))
}

/// Draft a contract (`status: draft`, `version: 1`, `ETag: "1"`).
#[utoipa::path(post, path = "/v1/contracts", tag = "contracts", operation_id = "createContract",
    params(crate::openapi::IdempotencyKeyHeader),
    request_body = CreateContract,
    responses((status = 201, body = Contract, headers(("Location" = String), ("ETag" = String)),
        links(("GetContract" = (operation_id = "getContract", parameters(("id" = "$response.body#/id")))), ("UpdateContract" = (operation_id = "updateContract", parameters(("id" = "$response.body#/id")))), ("SubmitContract" = (operation_id = "submitContract", parameters(("id" = "$response.body#/id")))), ("CancelContract" = (operation_id = "cancelContract", parameters(("id" = "$response.body#/id"))))))),
    security(("api_key" = [])))]
async fn create_contract(
    State(state): State<AppState>,
    tenant: Tenant,
    Idempotent(request, input): Idempotent<CreateContract>,
) -> Result<Response, ApiError> {
    state.execute(tenant, request, Create { tenant, input }).await
}

/// List contracts, newest first.
#[utoipa::path(get, path = "/v1/contracts", tag = "contracts", operation_id = "listContracts",
    params(ContractListParams),
    responses((status = 200, body = Page<Contract>)),
    security(("api_key" = [])))]
async fn list_contracts(
    State(state): State<AppState>,
    tenant: Tenant,
    ValidQuery(q): ValidQuery<ContractListParams>,
) -> Result<Json<Page<Contract>>, ApiError> {
    let page = PageParams {
        limit: q.limit,
        starting_after: q.starting_after,
    };
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        contracts::list(&mut conn, tenant, q.status, q.customer_ref.as_deref(), &page).await?,
    ))
}

/// Retrieve a contract; its `ETag` is its version. 304 when `If-None-Match`
/// names it.
#[utoipa::path(get, path = "/v1/contracts/{id}", tag = "contracts", operation_id = "getContract",
    params(("id" = Uuid, Path), crate::openapi::IfNoneMatchHeader),
    responses(
        (status = 200, body = Contract, headers(("ETag" = String))),
        (status = 304, description = "If-None-Match names the current version", headers(("ETag" = String)))),
    security(("api_key" = [])))]
async fn get_contract(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let contract = contracts::get(&mut conn, tenant, id).await?;
    Ok(conditional_get(
        &headers,
        crate::executor::etag(contract.version),
        Json(contract),
    ))
}

/// Edit a draft (`terms: ""` clears the terms). Requires `If-Match`.
#[utoipa::path(patch, path = "/v1/contracts/{id}", tag = "contracts", operation_id = "updateContract",
    params(("id" = Uuid, Path), crate::openapi::IfMatchHeader, crate::openapi::IdempotencyKeyHeader),
    request_body = UpdateContract,
    responses((status = 200, body = Contract, headers(("ETag" = String)))),
    security(("api_key" = [])))]
async fn update_contract(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    if_match: IfMatch,
    Idempotent(request, input): Idempotent<UpdateContract>,
) -> Result<Response, ApiError> {
    let version = if_match.required()?;
    state
        .execute(
            tenant,
            request,
            Update {
                tenant,
                contract_id: id,
                version,
                input,
            },
        )
        .await
}

/// Submit a draft for approval (`pending_approval`). `If-Match` is
/// optional here; when sent it must name the current version.
#[utoipa::path(post, path = "/v1/contracts/{id}/submit", tag = "contracts", operation_id = "submitContract",
    params(("id" = Uuid, Path), crate::openapi::IfMatchOptionalHeader, crate::openapi::IdempotencyKeyHeader),
    request_body = NoFields,
    responses((status = 200, body = Contract, headers(("ETag" = String)),
        links(("ApproveContract" = (operation_id = "approveContract", parameters(("id" = "$response.body#/id"), ("If-Match" = "$response.header.ETag")))), ("RejectContract" = (operation_id = "rejectContract", parameters(("id" = "$response.body#/id"), ("If-Match" = "$response.header.ETag"))))))),
    security(("api_key" = [])))]
async fn submit_contract(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    if_match: IfMatch,
    Idempotent(request, _input): Idempotent<NoFields>,
) -> Result<Response, ApiError> {
    state
        .execute(
            tenant,
            request,
            Submit {
                tenant,
                contract_id: id,
                version: if_match.0,
            },
        )
        .await
}

/// Approve a contract pending approval. Requires `If-Match`; of reviewers
/// acting on one version, exactly one wins (the others: 412). Approving a
/// `one_time` contract issues its invoice (finalized, one line of the
/// contract's amount), named by `invoice_id`.
#[utoipa::path(post, path = "/v1/contracts/{id}/approve", tag = "contracts", operation_id = "approveContract",
    params(("id" = Uuid, Path), crate::openapi::IfMatchHeader, crate::openapi::IdempotencyKeyHeader),
    request_body = ApproveContract,
    responses((status = 200, body = Contract, headers(("ETag" = String)))),
    security(("api_key" = [])))]
async fn approve_contract(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    if_match: IfMatch,
    Idempotent(request, input): Idempotent<ApproveContract>,
) -> Result<Response, ApiError> {
    let version = if_match.required()?;
    state
        .execute(
            tenant,
            request,
            Approve {
                tenant,
                contract_id: id,
                version,
                input,
            },
        )
        .await
}

/// Reject a contract pending approval, with a reason. Requires `If-Match`.
#[utoipa::path(post, path = "/v1/contracts/{id}/reject", tag = "contracts", operation_id = "rejectContract",
    params(("id" = Uuid, Path), crate::openapi::IfMatchHeader, crate::openapi::IdempotencyKeyHeader),
    request_body = RejectContract,
    responses((status = 200, body = Contract, headers(("ETag" = String)))),
    security(("api_key" = [])))]
async fn reject_contract(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    if_match: IfMatch,
    Idempotent(request, input): Idempotent<RejectContract>,
) -> Result<Response, ApiError> {
    let version = if_match.required()?;
    state
        .execute(
            tenant,
            request,
            Reject {
                tenant,
                contract_id: id,
                version,
                input,
            },
        )
        .await
}

/// Cancel a draft, an approved or a past-due contract. Requires
/// `If-Match`. An invoice the approval of a one-time contract issued stays
/// as it is (void it separately). An approved recurring contract bills no
/// more periods; with `at_period_end: false` the current period's unused
/// days are also credited (docs/recurring-billing.md).
#[utoipa::path(post, path = "/v1/contracts/{id}/cancel", tag = "contracts", operation_id = "cancelContract",
    params(("id" = Uuid, Path), crate::openapi::IfMatchHeader, crate::openapi::IdempotencyKeyHeader),
    request_body = CancelContract,
    responses((status = 200, body = Contract, headers(("ETag" = String)))),
    security(("api_key" = [])))]
async fn cancel_contract(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    if_match: IfMatch,
    Idempotent(request, input): Idempotent<CancelContract>,
) -> Result<Response, ApiError> {
    let version = if_match.required()?;
    state
        .execute(
            tenant,
            request,
            Cancel {
                tenant,
                contract_id: id,
                version,
                input,
            },
        )
        .await
}

/// The periods a recurring contract has billed, oldest first, each with
/// its invoice (docs/recurring-billing.md).
#[utoipa::path(get, path = "/v1/contracts/{id}/periods", tag = "contracts", operation_id = "listContractPeriods",
    params(("id" = Uuid, Path), PeriodListParams),
    responses((status = 200, body = Page<ContractPeriod>)),
    security(("api_key" = [])))]
async fn list_contract_periods(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    ValidQuery(q): ValidQuery<PeriodListParams>,
) -> Result<Json<Page<ContractPeriod>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        contracts::billing::periods(&mut conn, tenant, id, q.limit, q.starting_after).await?,
    ))
}

impl From<ContractError> for ApiError {
    fn from(e: ContractError) -> Self {
        match e {
            ContractError::NotFound => ApiError::NotFound,
            ContractError::VersionMismatch { current, .. } => {
                ApiError::VersionMismatch(e.to_string(), current)
            }
            ContractError::InvalidState(_) => ApiError::InvalidState(e.to_string()),
            ContractError::Invalid(field, message) => ApiError::validation(field, message),
            ContractError::Busy => ApiError::Unavailable(e.into()),
            ContractError::Invoice(e) => e.into(),
            ContractError::Amount(e) => ApiError::money(e.field, e.error),
            ContractError::Store(e) => e.into(),
            ContractError::Wallet(e) => e.into(),
        }
    }
}
