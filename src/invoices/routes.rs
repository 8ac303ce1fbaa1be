//! Invoice HTTP routes: extract, run one command or query, answer.

use axum::{Json, extract::State, response::Response};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::InvoiceError;
use super::{
    CreateCreditNote, CreateInvoice, CreditNote, CreditNoteListParams, Invoice, InvoiceListParams, NoFields,
    PayInvoice, Payment, PaymentReceipt, RefundPayment, RefundReceipt, UpdateInvoice,
    commands::{Create, Finalize, IssueCreditNote, Pay, RefundInvoicePayment, Update, Void},
};
use crate::{
    http::{
        AppState,
        error::ApiError,
        extract::{PathId, PathIds, ValidQuery},
        idempotency::Idempotent,
    },
    invoices,
    pagination::{Page, PageParams},
    tenants::Tenant,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_invoice, list_invoices))
        .routes(routes!(get_invoice, update_invoice))
        .routes(routes!(finalize_invoice))
        .routes(routes!(pay_invoice))
        .routes(routes!(list_invoice_payments))
        .routes(routes!(void_invoice))
        .routes(routes!(refund_invoice_payment))
        .routes(routes!(create_credit_note))
        .routes(routes!(list_credit_notes))
        .routes(routes!(get_credit_note))
}

/// Refund an invoice payment, in whole or in part (default: all that is
/// left, at most what the invoice still counts as paid). A wallet payment
/// goes back to its wallet; any other is recorded as refunded to the payer
/// under its own `external_ref` (a known one answers 200 with the refund
/// recorded). `amount_paid` drops by the refund, so a paid invoice reopens.
/// 422 `refund_exceeds_remaining` (naming `amount`) beyond what is left.
#[utoipa::path(post, path = "/v1/invoices/{id}/payments/{payment_id}/refund", tag = "invoices",
    operation_id = "refundInvoicePayment",
    params(("id" = Uuid, Path), ("payment_id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = RefundPayment,
    responses(
        (status = 201, description = "The refund recorded now", body = RefundReceipt,
            links(("GetInvoice" = (operation_id = "getInvoice", parameters(("id" = "$response.body#/refund/invoice_id")))), ("ListInvoicePayments" = (operation_id = "listInvoicePayments", parameters(("id" = "$response.body#/refund/invoice_id")))))),
        (status = 200, description = "The refund already recorded under this external_ref", body = RefundReceipt)),
    security(("api_key" = [])))]
async fn refund_invoice_payment(
    State(state): State<AppState>,
    tenant: Tenant,
    PathIds(id, payment_id): PathIds,
    Idempotent(request, input): Idempotent<RefundPayment>,
) -> Result<Response, ApiError> {
    state
        .execute(
            tenant,
            request,
            RefundInvoicePayment {
                tenant,
                invoice_id: id,
                payment_id,
                input,
            },
        )
        .await
}

/// Issue a credit note on an open or paid invoice: `lines` or one
/// `amount`, never more than the total minus what is already credited (422
/// `credit_exceeds_remaining` naming `amount`). It lowers `amount_due`; an
/// invoice credited in full is `credited`. An overpayment it makes is
/// refunded as `refund` says: `wallet` (to `wallet_id`), `original` (to the
/// payments, newest first) or `none` (kept as `customer_credit`). Numbered
/// `CN-000001`, per shop and gapless.
#[utoipa::path(post, path = "/v1/invoices/{id}/credit-notes", tag = "invoices",
    operation_id = "createCreditNote",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = CreateCreditNote,
    responses((status = 201, body = CreditNote, headers(("Location" = String)),
        links(("GetCreditNote" = (operation_id = "getCreditNote", parameters(("id" = "$response.body#/id")))), ("GetInvoice" = (operation_id = "getInvoice", parameters(("id" = "$response.body#/invoice_id"))))))),
    security(("api_key" = [])))]
async fn create_credit_note(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    Idempotent(request, input): Idempotent<CreateCreditNote>,
) -> Result<Response, ApiError> {
    state
        .execute(
            tenant,
            request,
            IssueCreditNote {
                tenant,
                invoice_id: id,
                input,
            },
        )
        .await
}

/// The shop's credit notes, newest first (of one invoice with `invoice_id`).
#[utoipa::path(get, path = "/v1/credit-notes", tag = "invoices", operation_id = "listCreditNotes",
    params(CreditNoteListParams),
    responses((status = 200, body = Page<CreditNote>)),
    security(("api_key" = [])))]
async fn list_credit_notes(
    State(state): State<AppState>,
    tenant: Tenant,
    ValidQuery(q): ValidQuery<CreditNoteListParams>,
) -> Result<Json<Page<CreditNote>>, ApiError> {
    let page = PageParams {
        limit: q.limit,
        starting_after: q.starting_after,
    };
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        invoices::credit_notes(&mut conn, tenant, q.invoice_id, &page).await?,
    ))
}

/// Retrieve a credit note.
#[utoipa::path(get, path = "/v1/credit-notes/{id}", tag = "invoices", operation_id = "getCreditNote",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = CreditNote)),
    security(("api_key" = [])))]
async fn get_credit_note(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
) -> Result<Json<CreditNote>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(invoices::get_credit_note(&mut conn, tenant, id).await?))
}

/// Create a draft invoice. Each line's `amount` is quantity × unit_amount
/// rounded half-up to the currency's minor unit.
#[utoipa::path(post, path = "/v1/invoices", tag = "invoices", operation_id = "createInvoice",
    params(crate::openapi::IdempotencyKeyHeader),
    request_body = CreateInvoice,
    responses((status = 201, body = Invoice, headers(("Location" = String)),
        links(("GetInvoice" = (operation_id = "getInvoice", parameters(("id" = "$response.body#/id")))), ("UpdateInvoice" = (operation_id = "updateInvoice", parameters(("id" = "$response.body#/id")))), ("FinalizeInvoice" = (operation_id = "finalizeInvoice", parameters(("id" = "$response.body#/id")))), ("VoidInvoice" = (operation_id = "voidInvoice", parameters(("id" = "$response.body#/id"))))))),
    security(("api_key" = [])))]
async fn create_invoice(
    State(state): State<AppState>,
    tenant: Tenant,
    Idempotent(request, input): Idempotent<CreateInvoice>,
) -> Result<Response, ApiError> {
    state.execute(tenant, request, Create { tenant, input }).await
}

/// List invoices, newest first.
#[utoipa::path(get, path = "/v1/invoices", tag = "invoices", operation_id = "listInvoices",
    params(InvoiceListParams),
    responses((status = 200, body = Page<Invoice>)),
    security(("api_key" = [])))]
async fn list_invoices(
    State(state): State<AppState>,
    tenant: Tenant,
    ValidQuery(q): ValidQuery<InvoiceListParams>,
) -> Result<Json<Page<Invoice>>, ApiError> {
    let page = PageParams {
        limit: q.limit,
        starting_after: q.starting_after,
    };
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        invoices::list(&mut conn, tenant, q.status, q.customer_ref.as_deref(), &page).await?,
    ))
}

/// Retrieve an invoice with its lines and totals; its payments are listed
/// by `GET /v1/invoices/{id}/payments`.
#[utoipa::path(get, path = "/v1/invoices/{id}", tag = "invoices", operation_id = "getInvoice",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Invoice)),
    security(("api_key" = [])))]
async fn get_invoice(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
) -> Result<Json<Invoice>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(invoices::load(&mut conn, tenant, id).await?))
}

/// Replace a draft's lines, memo (`""` clears it), due date or metadata.
/// 409 `invalid_state` once finalized.
#[utoipa::path(patch, path = "/v1/invoices/{id}", tag = "invoices", operation_id = "updateInvoice",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = UpdateInvoice,
    responses((status = 200, body = Invoice)),
    security(("api_key" = [])))]
async fn update_invoice(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    Idempotent(request, input): Idempotent<UpdateInvoice>,
) -> Result<Response, ApiError> {
    state
        .execute(
            tenant,
            request,
            Update {
                tenant,
                invoice_id: id,
                input,
            },
        )
        .await
}

/// Finalize a draft: it becomes `open` with the shop's next gapless
/// number, and receivables → revenue is posted (a zero total is `paid` at
/// once).
#[utoipa::path(post, path = "/v1/invoices/{id}/finalize", tag = "invoices", operation_id = "finalizeInvoice",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = NoFields,
    responses((status = 200, body = Invoice,
        links(("PayInvoice" = (operation_id = "payInvoice", parameters(("id" = "$response.body#/id")))), ("GetInvoice" = (operation_id = "getInvoice", parameters(("id" = "$response.body#/id"))))))),
    security(("api_key" = [])))]
async fn finalize_invoice(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    Idempotent(request, _input): Idempotent<NoFields>,
) -> Result<Response, ApiError> {
    state
        .execute(
            tenant,
            request,
            Finalize {
                tenant,
                invoice_id: id,
            },
        )
        .await
}

/// Pay an open invoice, in part or in full (default: `amount_due`), by an
/// external method or from a wallet of the invoice's currency. A known
/// `external_ref` answers 200 with the payment already recorded.
#[utoipa::path(post, path = "/v1/invoices/{id}/pay", tag = "invoices", operation_id = "payInvoice",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = PayInvoice,
    responses(
        (status = 201, description = "The payment recorded now", body = PaymentReceipt),
        (status = 200, description = "The payment already recorded under this external_ref", body = PaymentReceipt)),
    security(("api_key" = [])))]
async fn pay_invoice(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    Idempotent(request, input): Idempotent<PayInvoice>,
) -> Result<Response, ApiError> {
    state
        .execute(
            tenant,
            request,
            Pay {
                tenant,
                invoice_id: id,
                input,
            },
        )
        .await
}

/// An invoice's payments, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/invoices/{id}/payments", tag = "invoices", operation_id = "listInvoicePayments",
    params(("id" = Uuid, Path), PageParams),
    responses((status = 200, body = Page<Payment>)),
    security(("api_key" = [])))]
async fn list_invoice_payments(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<Page<Payment>>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(invoices::payments(&mut conn, tenant, id, &page).await?))
}

/// Void a draft, or an open invoice with nothing paid (its finalize posting
/// is reversed).
#[utoipa::path(post, path = "/v1/invoices/{id}/void", tag = "invoices", operation_id = "voidInvoice",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = NoFields,
    responses((status = 200, body = Invoice)),
    security(("api_key" = [])))]
async fn void_invoice(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    Idempotent(request, _input): Idempotent<NoFields>,
) -> Result<Response, ApiError> {
    state
        .execute(
            tenant,
            request,
            Void {
                tenant,
                invoice_id: id,
            },
        )
        .await
}

impl From<InvoiceError> for ApiError {
    fn from(e: InvoiceError) -> Self {
        match e {
            InvoiceError::NotFound => ApiError::NotFound,
            InvoiceError::InvalidState(_) => ApiError::InvalidState(e.to_string()),
            InvoiceError::Invalid(field, message) => ApiError::validation(&field, message),
            InvoiceError::ExternalRefConflict { .. } => ApiError::ExternalRefConflict(e.to_string()),
            InvoiceError::CurrencyMismatch { .. } => ApiError::CurrencyMismatch(e.to_string()),
            InvoiceError::CreditExceedsRemaining { .. } => ApiError::Exceeds {
                code: "credit_exceeds_remaining",
                field: "amount",
                message: e.to_string(),
            },
            InvoiceError::PaymentNotFound | InvoiceError::CreditNoteNotFound => ApiError::NotFound,
            InvoiceError::Amount(e) => ApiError::money(e.field, e.error),
            InvoiceError::Store(e) => e.into(),
            InvoiceError::Wallet(e) => e.into(),
        }
    }
}
