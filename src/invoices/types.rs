//! Invoice requests (validated DTOs) and responses.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::{Validate, ValidationError};

use crate::{executor::Outcome, metadata::Metadata, money::Decimalish};

/// Decimals a quantity or unit amount may carry.
pub const LINE_DECIMALS: u32 = 6;

/// A non-negative decimal with at most `LINE_DECIMALS` decimals.
fn line_decimal(s: &str) -> Result<(), ValidationError> {
    let d = Decimalish::parse(s)
        .map_err(|e| ValidationError::new("decimal").with_message(e.to_string().into()))?;
    if d.value().scale() > LINE_DECIMALS {
        return Err(
            ValidationError::new("decimal").with_message(format!("at most {LINE_DECIMALS} decimals").into())
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    #[validate(length(min = 1, max = 500, message = "must be 1 to 500 characters"))]
    #[schema(min_length = 1, max_length = 500)]
    pub description: String,
    /// Non-negative decimal, at most 6 decimals.
    #[validate(custom(function = "line_decimal"))]
    #[schema(example = "3", pattern = "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,6})?$")]
    pub quantity: String,
    /// Price of one unit: non-negative decimal, at most 6 decimals (may be
    /// finer than the currency; the line amount is rounded).
    #[validate(custom(function = "line_decimal"))]
    #[schema(example = "0.335", pattern = "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,6})?$")]
    pub unit_amount: String,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvoice {
    #[validate(length(min = 1, max = 255, message = "must be 1 to 255 characters"))]
    #[schema(min_length = 1, max_length = 255)]
    pub customer_ref: String,
    #[validate(custom(function = "crate::money::validate::currency"))]
    #[schema(example = "USD")]
    pub currency: String,
    #[serde(default, deserialize_with = "crate::dates::optional")]
    pub due_date: Option<NaiveDate>,
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    #[schema(max_length = 500)]
    pub memo: Option<String>,
    #[validate(custom(function = "crate::metadata::bounded"))]
    pub metadata: Option<Metadata>,
    /// 1–100 lines.
    #[validate(length(min = 1, max = 100, message = "must have 1 to 100 lines"), nested)]
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<LineInput>,
}

/// Replaces what it names on a draft.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateInvoice {
    #[serde(default, deserialize_with = "crate::dates::optional")]
    pub due_date: Option<NaiveDate>,
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    #[schema(max_length = 500)]
    pub memo: Option<String>,
    #[validate(custom(function = "crate::metadata::bounded"))]
    pub metadata: Option<Metadata>,
    #[validate(length(min = 1, max = 100, message = "must have 1 to 100 lines"), nested)]
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Option<Vec<LineInput>>,
}

/// For actions that take no fields (finalize, void, submit, cancel); an
/// empty body is fine.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    BankTransfer,
    Card,
    /// From the customer's credit wallet (`wallet_id`).
    Wallet,
    Other,
}

impl PaymentMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::BankTransfer => "bank_transfer",
            PaymentMethod::Card => "card",
            PaymentMethod::Wallet => "wallet",
            PaymentMethod::Other => "other",
        }
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayInvoice {
    pub method: PaymentMethod,
    /// At most `amount_due`; default `amount_due`.
    #[validate(custom(function = "crate::money::validate::amount"))]
    #[schema(example = "25.00", pattern = "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,18})?$")]
    pub amount: Option<String>,
    /// The wallet to pay from; required with `method: wallet`, refused otherwise.
    pub wallet_id: Option<Uuid>,
    /// The provider's id of this payment, unique per shop: recording it
    /// again answers with the payment already recorded.
    #[validate(length(min = 1, max = 255, message = "must be 1 to 255 characters"))]
    #[schema(min_length = 1, max_length = 255)]
    pub external_ref: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Draft,
    Open,
    Paid,
    Void,
    /// Credited in full by credit notes (terminal).
    Credited,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Open => "open",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Void => "void",
            InvoiceStatus::Credited => "credited",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvoiceLine {
    pub description: String,
    pub quantity: String,
    pub unit_amount: String,
    /// quantity × unit_amount, rounded half-up to the currency's minor unit.
    pub amount: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    pub id: Uuid,
    pub invoice_id: Uuid,
    pub method: PaymentMethod,
    pub amount: String,
    pub currency: String,
    pub external_ref: Option<String>,
    pub wallet_id: Option<Uuid>,
    /// The wallet debit, for `method: wallet`.
    pub wallet_transaction_id: Option<Uuid>,
    /// What of it went back to the payer (refunds).
    pub amount_refunded: String,
    pub journal_transaction_id: Uuid,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Invoice {
    pub id: Uuid,
    /// `INV-000123`, per shop and gapless, given at finalize.
    pub number: Option<String>,
    pub customer_ref: String,
    pub currency: String,
    pub status: InvoiceStatus,
    pub due_date: Option<NaiveDate>,
    pub memo: Option<String>,
    pub metadata: Metadata,
    pub lines: Vec<InvoiceLine>,
    pub subtotal: String,
    pub total: String,
    /// What credit notes took off the total.
    pub amount_credited: String,
    /// Payments net of refunds and of overpayment kept as `customer_credit`.
    pub amount_paid: String,
    /// `total - amount_credited - amount_paid`.
    pub amount_due: String,
    /// Overpayment a credit note left with the shop for the customer
    /// (`refund: none`).
    pub customer_credit: String,
    /// Its credit notes, oldest first.
    pub credit_notes: Vec<CreditNote>,
    /// Refunds of its payments, oldest first.
    pub refunds: Vec<PaymentRefund>,
    /// Increases with every change.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finalized_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub voided_at: Option<DateTime<Utc>>,
}

/// An invoice's totals after a payment: what a payment's answer carries
/// (its size never grows with the invoice's history).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvoiceTotals {
    pub id: Uuid,
    pub number: Option<String>,
    pub status: InvoiceStatus,
    pub currency: String,
    pub total: String,
    pub amount_credited: String,
    pub amount_paid: String,
    pub amount_due: String,
    pub customer_credit: String,
    pub version: i64,
    pub paid_at: Option<DateTime<Utc>>,
}

/// A payment with the invoice's totals as they stand after it. The
/// invoice's payments are listed by `GET /v1/invoices/{id}/payments`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentReceipt {
    pub payment: Payment,
    pub invoice: InvoiceTotals,
    /// The payment was recorded before under this `external_ref` (answered
    /// 200, nothing recorded now).
    pub existing: bool,
}

/// Gives back a payment, in whole or in part.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundPayment {
    /// Default: all of the payment that is left to refund (at most what
    /// the invoice still counts as paid).
    #[validate(custom(function = "crate::money::validate::amount"))]
    #[schema(example = "10.00", pattern = "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,18})?$")]
    pub amount: Option<String>,
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    #[schema(max_length = 500)]
    pub reason: Option<String>,
    /// The provider's id of this refund (payments by an external method),
    /// unique per shop: recording it again answers the refund already
    /// recorded (200).
    #[validate(length(min = 1, max = 255, message = "must be 1 to 255 characters"))]
    #[schema(min_length = 1, max_length = 255)]
    pub external_ref: Option<String>,
}

/// A refund of an invoice payment: back to the paying wallet, or recorded
/// as sent to the payer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentRefund {
    pub id: Uuid,
    pub invoice_id: Uuid,
    pub payment_id: Uuid,
    pub amount: String,
    pub currency: String,
    pub reason: Option<String>,
    pub external_ref: Option<String>,
    /// The credit to the paying wallet (a wallet payment).
    pub wallet_transaction_id: Option<Uuid>,
    /// The credit note that made it (`refund: original`).
    pub credit_note_id: Option<Uuid>,
    pub journal_transaction_id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// A refund with the invoice's totals after it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefundReceipt {
    pub refund: PaymentRefund,
    pub invoice: InvoiceTotals,
    /// Recorded before under this `external_ref` (answered 200).
    pub existing: bool,
}

/// Where a credit note's overpayment goes (on a paid or overpaid invoice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundMode {
    /// Kept with the shop as the invoice's `customer_credit`.
    None,
    /// Credited to `wallet_id` (same shop and currency).
    Wallet,
    /// Refunded to the invoice's payments, newest first.
    Original,
}

impl RefundMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundMode::None => "none",
            RefundMode::Wallet => "wallet",
            RefundMode::Original => "original",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditLineInput {
    #[validate(length(min = 1, max = 500, message = "must be 1 to 500 characters"))]
    #[schema(min_length = 1, max_length = 500)]
    pub description: String,
    #[validate(custom(function = "crate::money::validate::amount"))]
    #[schema(example = "5.00", pattern = "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,18})?$")]
    pub amount: String,
}

/// Lowers what the customer owes: `lines` or one `amount`, not both.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCreditNote {
    #[validate(length(min = 1, max = 100, message = "must have 1 to 100 lines"), nested)]
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Option<Vec<CreditLineInput>>,
    #[validate(custom(function = "crate::money::validate::amount"))]
    #[schema(example = "5.00", pattern = "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,18})?$")]
    pub amount: Option<String>,
    #[validate(length(min = 1, max = 500, message = "must be 1 to 500 characters"))]
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
    /// What happens to an overpayment the credit makes; default `none`.
    pub refund: Option<RefundMode>,
    /// With `refund: wallet`: the wallet credited.
    pub wallet_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreditLine {
    pub description: String,
    pub amount: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreditNote {
    pub id: Uuid,
    /// `CN-000001`, per shop and gapless, its own series.
    pub number: String,
    pub invoice_id: Uuid,
    pub currency: String,
    pub amount: String,
    pub reason: String,
    pub lines: Vec<CreditLine>,
    pub refund: RefundMode,
    pub wallet_id: Option<Uuid>,
    /// The wallet credit (`refund: wallet`).
    pub wallet_transaction_id: Option<Uuid>,
    /// Of the overpayment it made: what was refunded (to the wallet or the
    /// payments) …
    pub refunded: String,
    /// … and what was kept as customer credit.
    pub customer_credit: String,
    pub journal_transaction_id: Uuid,
    pub created_at: DateTime<Utc>,
}

impl Outcome for CreditNote {
    const ENTITY: &'static str = "credit_note";
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn location(&self) -> Option<String> {
        Some(format!("/v1/credit-notes/{}", self.id))
    }
}

impl Outcome for RefundReceipt {
    const ENTITY: &'static str = "payment_refund";
    fn entity_id(&self) -> Uuid {
        self.refund.id
    }
    fn status(&self) -> Option<u16> {
        self.existing.then_some(200)
    }
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CreditNoteListParams {
    /// Only the credit notes of this invoice.
    pub invoice_id: Option<Uuid>,
    /// Page size, 1–100.
    #[validate(range(min = 1, max = 100, message = "must be between 1 and 100"))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    /// Id of the last credit note of the previous page.
    pub starting_after: Option<Uuid>,
}

impl Outcome for Invoice {
    const ENTITY: &'static str = "invoice";
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn location(&self) -> Option<String> {
        Some(format!("/v1/invoices/{}", self.id))
    }
}

impl Outcome for PaymentReceipt {
    const ENTITY: &'static str = "invoice_payment";
    fn entity_id(&self) -> Uuid {
        self.payment.id
    }
    fn status(&self) -> Option<u16> {
        self.existing.then_some(200)
    }
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InvoiceListParams {
    pub status: Option<InvoiceStatus>,
    /// Only invoices of this customer.
    pub customer_ref: Option<String>,
    /// Page size, 1–100.
    #[validate(range(min = 1, max = 100, message = "must be between 1 and 100"))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    /// Id of the last invoice of the previous page.
    pub starting_after: Option<Uuid>,
}
