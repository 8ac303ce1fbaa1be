//! Wallet requests (validated DTOs) and responses. Amounts are decimal
//! strings with exactly the currency's number of decimals.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use super::grants::GrantKind;
use crate::{executor::Outcome, ledger::Account, metadata::Metadata};

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWallet {
    /// The shop's own reference for the customer.
    #[validate(length(min = 1, max = 255, message = "must be 1 to 255 characters"))]
    #[schema(min_length = 1, max_length = 255)]
    pub customer_ref: String,
    /// ISO 4217 code (USD, EUR, JPY, BHD, …) or `CREDIT` (4 decimals).
    #[validate(custom(function = "crate::money::validate::currency"))]
    #[schema(example = "USD")]
    pub currency: String,
    /// How far below zero `available` may go. Default "0".
    #[validate(custom(function = "crate::money::validate::limit"))]
    #[schema(example = "0", pattern = "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,18})?$")]
    pub overdraft_limit: Option<String>,
    #[validate(custom(function = "crate::metadata::bounded"))]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CreditCategory {
    /// Paid for by the customer (journal: external_payments → wallet).
    TopUp,
    /// Promotional credit (credit_grants → wallet).
    Grant,
    /// A refund given as credit (credit_grants → wallet).
    Refund,
    /// A manual correction (credit_grants → wallet).
    Adjustment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DebitCategory {
    /// Consumption of the service (wallet → revenue).
    Usage,
    /// A one-off purchase (wallet → revenue).
    Purchase,
    /// A fee (wallet → revenue).
    Fee,
    /// A manual correction (wallet → revenue).
    Adjustment,
}

/// Money into a wallet.
#[derive(Debug, Clone, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditRequest {
    /// Positive decimal string, at most the currency's decimals.
    #[validate(custom(function = "crate::money::validate::amount"))]
    #[schema(example = "12.50", pattern = "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,18})?$")]
    pub amount: String,
    pub category: CreditCategory,
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Copied to the grant the credit makes.
    #[validate(custom(function = "crate::metadata::bounded"))]
    pub metadata: Option<Metadata>,
    /// When the grant this credit makes expires (RFC 3339, in the future);
    /// none: never. What is left of it then leaves the wallet as a
    /// `grant_expired` movement.
    pub expires_at: Option<DateTime<Utc>>,
    /// 0–100, default 50: lower is spent first.
    #[validate(range(min = 0, max = 100, message = "must be between 0 and 100"))]
    #[schema(minimum = 0, maximum = 100)]
    pub priority: Option<i16>,
}

/// Money out of a wallet.
#[derive(Debug, Clone, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DebitRequest {
    /// Positive decimal string, at most the currency's decimals.
    #[validate(custom(function = "crate::money::validate::amount"))]
    #[schema(example = "12.50", pattern = "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,18})?$")]
    pub amount: String,
    pub category: DebitCategory,
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    #[validate(custom(function = "crate::metadata::bounded"))]
    pub metadata: Option<Metadata>,
}

/// Gives back a debit (`usage`, `purchase`, `fee`) or a captured hold, in
/// whole or in part.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Positive decimal string; default: all that is left to refund.
    #[validate(custom(function = "crate::money::validate::amount"))]
    #[schema(example = "4.00", pattern = "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,18})?$")]
    pub amount: Option<String>,
    /// Why; becomes the refund movement's `description`.
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    #[schema(max_length = 500)]
    pub reason: Option<String>,
    #[validate(custom(function = "crate::metadata::bounded"))]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    pub from_wallet_id: Uuid,
    pub to_wallet_id: Uuid,
    #[validate(custom(function = "crate::money::validate::amount"))]
    #[schema(example = "5.00", pattern = "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,18})?$")]
    pub amount: String,
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    #[validate(custom(function = "crate::metadata::bounded"))]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Wallet {
    pub id: Uuid,
    pub customer_ref: String,
    pub currency: String,
    /// Money in the wallet, holds included.
    #[schema(example = "20.00")]
    pub balance: String,
    /// What of `balance` is paid credit (the `remaining` of its `paid`
    /// grants). `balance_paid + balance_granted` = `balance` when it is
    /// not negative, "0.00" each when it is.
    #[schema(example = "15.00")]
    pub balance_paid: String,
    /// What of `balance` is granted credit (promotions, goodwill).
    #[schema(example = "5.00")]
    pub balance_granted: String,
    /// Held by active reservations.
    pub reserved: String,
    /// `balance - reserved`: what may be spent (down to `-overdraft_limit`).
    pub available: String,
    pub overdraft_limit: String,
    /// Increases with every change to the wallet.
    pub version: i64,
    pub metadata: Metadata,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransactionType {
    Credit,
    Debit,
}

impl TransactionType {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionType::Credit => "credit",
            TransactionType::Debit => "debit",
        }
    }
}

/// What a movement was for, as stored: the request's credit or debit
/// category, or the movement another use case made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    TopUp,
    Grant,
    Refund,
    Adjustment,
    Usage,
    Purchase,
    Fee,
    TransferOut,
    TransferIn,
    ReservationCapture,
    InvoicePayment,
    /// A grant's remainder leaving at its deadline (wallet → breakage).
    GrantExpired,
}

impl Category {
    /// Whether a refund may give it back (`POST …/transactions/{id}/refund`):
    /// spending on the shop's service. Credits, transfer legs and
    /// adjustments are not; an invoice payment is refunded as a payment.
    pub fn refundable(self) -> bool {
        matches!(
            self,
            Category::Usage | Category::Purchase | Category::Fee | Category::ReservationCapture
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::TopUp => "top_up",
            Category::Grant => "grant",
            Category::Refund => "refund",
            Category::Adjustment => "adjustment",
            Category::Usage => "usage",
            Category::Purchase => "purchase",
            Category::Fee => "fee",
            Category::TransferOut => "transfer_out",
            Category::TransferIn => "transfer_in",
            Category::ReservationCapture => "reservation_capture",
            Category::InvoicePayment => "invoice_payment",
            Category::GrantExpired => "grant_expired",
        }
    }
}

impl CreditCategory {
    pub fn category(self) -> Category {
        match self {
            CreditCategory::TopUp => Category::TopUp,
            CreditCategory::Grant => Category::Grant,
            CreditCategory::Refund => Category::Refund,
            CreditCategory::Adjustment => Category::Adjustment,
        }
    }

    /// The grant it makes: paid when the customer paid for it.
    pub fn grant_kind(self) -> GrantKind {
        match self {
            CreditCategory::TopUp => GrantKind::Paid,
            CreditCategory::Grant | CreditCategory::Refund | CreditCategory::Adjustment => GrantKind::Granted,
        }
    }

    /// Where the credit's money comes from (DESIGN §5): paid for from
    /// outside, or given by the shop.
    pub fn source(self) -> Account {
        match self {
            CreditCategory::TopUp => Account::ExternalPayments,
            CreditCategory::Grant | CreditCategory::Refund | CreditCategory::Adjustment => {
                Account::CreditGrants
            }
        }
    }
}

impl DebitCategory {
    pub fn category(self) -> Category {
        match self {
            DebitCategory::Usage => Category::Usage,
            DebitCategory::Purchase => Category::Purchase,
            DebitCategory::Fee => Category::Fee,
            DebitCategory::Adjustment => Category::Adjustment,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WalletTransaction {
    pub id: Uuid,
    pub wallet_id: Uuid,
    #[serde(rename = "type")]
    pub type_: TransactionType,
    /// The credit or debit category, `transfer_in` / `transfer_out`, or
    /// `reservation_capture` (a captured hold).
    #[schema(value_type = String)]
    pub category: Category,
    #[schema(example = "1.00")]
    pub amount: String,
    pub currency: String,
    /// The wallet's balance right after this movement.
    pub balance_after: String,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub transfer_id: Option<Uuid>,
    /// The movement this one refunds (category `refund`).
    pub refund_of: Option<Uuid>,
    /// How much of this movement has been refunded so far ("0.00" for
    /// one never refunded; an answer shows it as of that answer).
    #[schema(example = "0.00")]
    pub refunded_amount: String,
    /// What the movement took from each grant, in the order it took
    /// ("7.00 from promo grant A, 3.00 from paid grant B"); a negative
    /// amount is credit a refund gave back to the grant. A debit's line
    /// without `grant_id` is what overdrew the wallet, so a debit's lines
    /// sum to its amount. A credit into an overdrawn wallet lists what of
    /// its own grant repaid the overdraft.
    pub consumptions: Vec<Consumption>,
    /// The grants this movement created (a credit, a transfer's receiving
    /// leg, a refund that gives back credit of an expired grant).
    pub granted: Vec<GrantAmount>,
    pub journal_transaction_id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// What a movement took from (or gave back to) one grant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Consumption {
    /// None: beyond every grant, the overdraft.
    pub grant_id: Option<Uuid>,
    #[schema(example = "7.00")]
    pub amount: String,
}

/// A grant and an amount of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantAmount {
    pub grant_id: Uuid,
    #[schema(example = "10.00")]
    pub amount: String,
}

/// Where a grant stands: `active` (credit left, before its deadline),
/// `depleted` (nothing left, before its deadline or without one), `expired`
/// (its deadline passed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Active,
    Depleted,
    Expired,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Active => "active",
            GrantStatus::Depleted => "depleted",
            GrantStatus::Expired => "expired",
        }
    }
}

/// Credit on a wallet: paid (a top-up) or granted (a promotion, goodwill),
/// spent in burn order and expiring at `expires_at`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreditGrant {
    pub id: Uuid,
    pub wallet_id: Uuid,
    pub kind: GrantKind,
    pub status: GrantStatus,
    /// What it was created with.
    #[schema(example = "10.00")]
    pub amount: String,
    /// What is left of it (held included).
    #[schema(example = "4.00")]
    pub remaining: String,
    /// What of `remaining` active holds reserve: it does not expire while
    /// held.
    pub held: String,
    /// What of it expired (the breakage).
    pub expired_amount: String,
    pub currency: String,
    /// 0–100: lower is spent first.
    pub priority: i16,
    pub expires_at: Option<DateTime<Utc>>,
    /// When its remainder (first) expired.
    pub expired_at: Option<DateTime<Utc>>,
    /// The credit movement that made it (none: a balance that predates
    /// grants).
    pub wallet_transaction_id: Option<Uuid>,
    /// The grant a transfer carried it from, or whose credit a refund gave
    /// back in it.
    pub source_grant_id: Option<Uuid>,
    pub metadata: Metadata,
    pub created_at: DateTime<Utc>,
}

/// A refund movement as the refund request answers it (201 with its
/// `Location`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MovementRefund(pub WalletTransaction);

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Transfer {
    pub id: Uuid,
    pub from_wallet_id: Uuid,
    pub to_wallet_id: Uuid,
    pub amount: String,
    pub currency: String,
    pub description: Option<String>,
    /// The debit on the source wallet.
    pub debit: WalletTransaction,
    /// The credit on the destination wallet.
    pub credit: WalletTransaction,
    pub created_at: DateTime<Utc>,
}

impl Outcome for Wallet {
    const ENTITY: &'static str = "wallet";
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn location(&self) -> Option<String> {
        Some(format!("/v1/wallets/{}", self.id))
    }
}

impl Outcome for WalletTransaction {
    const ENTITY: &'static str = "wallet_transaction";
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn event_key(&self) -> Uuid {
        self.wallet_id
    }
}

impl Outcome for MovementRefund {
    const ENTITY: &'static str = "wallet_transaction";
    fn entity_id(&self) -> Uuid {
        self.0.id
    }
    fn event_key(&self) -> Uuid {
        self.0.wallet_id
    }
    fn location(&self) -> Option<String> {
        Some(format!(
            "/v1/wallets/{}/transactions/{}",
            self.0.wallet_id, self.0.id
        ))
    }
}

impl Outcome for Transfer {
    const ENTITY: &'static str = "transfer";
    fn entity_id(&self) -> Uuid {
        self.id
    }
    /// Ordered with the source wallet's movements.
    fn event_key(&self) -> Uuid {
        self.from_wallet_id
    }
}
