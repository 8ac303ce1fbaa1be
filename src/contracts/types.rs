//! Contract requests (validated DTOs) and the contract object.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::{executor::Outcome, metadata::Metadata};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillingInterval {
    /// Approval issues one finalized invoice for `amount`.
    OneTime,
    Monthly,
    Yearly,
}

impl BillingInterval {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingInterval::OneTime => "one_time",
            BillingInterval::Monthly => "monthly",
            BillingInterval::Yearly => "yearly",
        }
    }
}

/// How a recurring contract's period invoices are paid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Collection {
    /// Each period's invoice stays open for the customer to pay.
    #[default]
    Invoice,
    /// Paid from `wallet_id` when it is billed, retried on the dunning
    /// schedule when the wallet cannot cover it.
    Wallet,
}

impl Collection {
    pub fn as_str(self) -> &'static str {
        match self {
            Collection::Invoice => "invoice",
            Collection::Wallet => "wallet",
        }
    }
}

/// How an approved recurring contract was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelMode {
    /// The period billed stays billed; no later one is.
    AtPeriodEnd,
    /// As at period end, and the unused days of the current period are
    /// credited by a credit note.
    Immediately,
}

impl CancelMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelMode::AtPeriodEnd => "at_period_end",
            CancelMode::Immediately => "immediately",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContractStatus {
    Draft,
    PendingApproval,
    Approved,
    /// A recurring contract whose wallet collection ran out of retries
    /// (docs/recurring-billing.md): still billed, back to `approved` once
    /// its period invoices are settled.
    PastDue,
    Rejected,
    Cancelled,
}

impl ContractStatus {
    /// The statuses a contract in this one may move to: submit, approve or
    /// reject, cancel a draft or an approved contract.
    pub fn successors(self) -> &'static [ContractStatus] {
        match self {
            ContractStatus::Draft => &[ContractStatus::PendingApproval, ContractStatus::Cancelled],
            ContractStatus::PendingApproval => &[ContractStatus::Approved, ContractStatus::Rejected],
            ContractStatus::Approved => &[ContractStatus::PastDue, ContractStatus::Cancelled],
            ContractStatus::PastDue => &[ContractStatus::Approved, ContractStatus::Cancelled],
            ContractStatus::Rejected | ContractStatus::Cancelled => &[],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ContractStatus::Draft => "draft",
            ContractStatus::PendingApproval => "pending_approval",
            ContractStatus::Approved => "approved",
            ContractStatus::PastDue => "past_due",
            ContractStatus::Rejected => "rejected",
            ContractStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContract {
    #[validate(length(min = 1, max = 255, message = "must be 1 to 255 characters"))]
    #[schema(min_length = 1, max_length = 255)]
    pub customer_ref: String,
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[validate(custom(function = "crate::money::validate::currency"))]
    #[schema(example = "USD")]
    pub currency: String,
    /// Positive, at most the currency's decimals; per period for a
    /// recurring contract.
    #[validate(custom(function = "crate::money::validate::amount"))]
    #[schema(example = "1200.00", pattern = "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,18})?$")]
    pub amount: String,
    pub billing_interval: BillingInterval,
    #[serde(deserialize_with = "crate::dates::date")]
    pub starts_on: NaiveDate,
    /// Recurring only: the last day billed, the day before a period starts
    /// (so every period is whole); none bills until cancelled.
    #[serde(default, deserialize_with = "crate::dates::optional")]
    pub ends_on: Option<NaiveDate>,
    /// Recurring only; default `invoice`.
    pub collection: Option<Collection>,
    /// With `collection: wallet`: the paying wallet, of this shop and the
    /// contract's currency.
    pub wallet_id: Option<Uuid>,
    #[validate(length(max = 10000, message = "must be at most 10000 characters"))]
    #[schema(max_length = 10000)]
    pub terms: Option<String>,
    #[validate(custom(function = "crate::metadata::bounded"))]
    pub metadata: Option<Metadata>,
}

/// Replaces what it names on a draft; `terms: ""` clears the terms. On an
/// approved (or past due) recurring contract only `amount` may change, and
/// applies from the next period billed.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateContract {
    #[validate(length(min = 1, max = 255, message = "must be 1 to 255 characters"))]
    #[schema(min_length = 1, max_length = 255)]
    pub customer_ref: Option<String>,
    #[validate(length(min = 1, max = 200, message = "must be 1 to 200 characters"))]
    #[schema(min_length = 1, max_length = 200)]
    pub title: Option<String>,
    #[validate(custom(function = "crate::money::validate::currency"))]
    #[schema(example = "USD")]
    pub currency: Option<String>,
    #[validate(custom(function = "crate::money::validate::amount"))]
    #[schema(example = "1200.00", pattern = "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,18})?$")]
    pub amount: Option<String>,
    pub billing_interval: Option<BillingInterval>,
    #[serde(default, deserialize_with = "crate::dates::optional")]
    pub starts_on: Option<NaiveDate>,
    #[serde(default, deserialize_with = "crate::dates::optional")]
    pub ends_on: Option<NaiveDate>,
    pub collection: Option<Collection>,
    pub wallet_id: Option<Uuid>,
    #[validate(length(max = 10000, message = "must be at most 10000 characters"))]
    #[schema(max_length = 10000)]
    pub terms: Option<String>,
    #[validate(custom(function = "crate::metadata::bounded"))]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveContract {
    #[validate(length(max = 1000, message = "must be at most 1000 characters"))]
    #[schema(max_length = 1000)]
    pub note: Option<String>,
}

#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelContract {
    /// An approved recurring contract: `true` (default) keeps the current
    /// period billed and bills no more; `false` also credits the current
    /// period's unused days (from today, included) with a credit note,
    /// refunded as its collection was paid (docs/recurring-billing.md).
    pub at_period_end: Option<bool>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectContract {
    #[validate(length(min = 1, max = 1000, message = "must be 1 to 1000 characters"))]
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Contract {
    pub id: Uuid,
    pub customer_ref: String,
    pub title: String,
    pub currency: String,
    pub amount: String,
    pub billing_interval: BillingInterval,
    pub starts_on: NaiveDate,
    pub ends_on: Option<NaiveDate>,
    pub collection: Collection,
    pub wallet_id: Option<Uuid>,
    /// The start of the next period to bill (recurring, approved or past
    /// due); none once the last period is billed or the contract ended.
    pub next_period_on: Option<NaiveDate>,
    /// Periods billed so far.
    pub periods_billed: i32,
    /// When it became `past_due`.
    pub past_due_at: Option<DateTime<Utc>>,
    /// How an approved recurring contract was cancelled.
    pub cancel_mode: Option<CancelMode>,
    pub terms: Option<String>,
    pub metadata: Metadata,
    pub status: ContractStatus,
    /// Bumped by every change; the `ETag` is this number quoted (`"3"`),
    /// and `If-Match` names it on the next change.
    pub version: i64,
    pub approval_note: Option<String>,
    pub rejection_reason: Option<String>,
    /// The invoice an approved one-time contract issued.
    pub invoice_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub approved_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl Outcome for Contract {
    const ENTITY: &'static str = "contract";
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn location(&self) -> Option<String> {
        Some(format!("/v1/contracts/{}", self.id))
    }
    fn etag(&self) -> Option<String> {
        Some(crate::executor::etag(self.version))
    }
    /// Every change bumps the version by one: the row names the version it
    /// moved from (none for a new draft) and where it ended.
    fn audit_detail(&self) -> Option<serde_json::Value> {
        Some(json!({
            "from_version": (self.version > 1).then_some(self.version - 1),
            "version": self.version,
            "status": self.status,
            "invoice_id": self.invoice_id,
        }))
    }
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContractListParams {
    pub status: Option<ContractStatus>,
    /// Only contracts of this customer.
    pub customer_ref: Option<String>,
    /// Page size, 1–100.
    #[validate(range(min = 1, max = 100, message = "must be between 1 and 100"))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    /// Id of the last contract of the previous page.
    pub starting_after: Option<Uuid>,
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeriodListParams {
    /// Page size, 1–100.
    #[validate(range(min = 1, max = 100, message = "must be between 1 and 100"))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    /// `period_start` of the last period of the previous page.
    #[serde(default, deserialize_with = "crate::dates::optional")]
    pub starting_after: Option<NaiveDate>,
}
