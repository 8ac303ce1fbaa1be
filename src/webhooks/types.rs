//! Webhook requests, events and answers.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::executor::Outcome;

pub const PROVIDER_PATTERN: &str = "^[a-z0-9_-]{1,40}$";

pub fn provider_syntax(s: &str) -> Result<(), validator::ValidationError> {
    let ok = !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(validator::ValidationError::new("provider")
            .with_message("must be 1 to 40 of a-z, 0-9, _ and -".into()))
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookSecret {
    /// The payment provider's name as it appears in the receiver's path.
    #[validate(custom(function = "provider_syntax"))]
    #[schema(example = "stripe", pattern = "^[a-z0-9_-]{1,40}$")]
    pub provider: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookSecret {
    pub id: Uuid,
    pub provider: String,
    /// `whsec_…`: shown once, in this answer only (a replay has `null`).
    pub secret: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Until when the provider's earlier secrets keep verifying (the grace
    /// period of a rotation); `null` when this is the first one.
    pub previous_valid_until: Option<DateTime<Utc>>,
}

impl Outcome for WebhookSecret {
    const ENTITY: &'static str = "webhook_secret";
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn for_storage(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(&WebhookSecret {
            secret: None,
            ..self.clone()
        })
        .ok()
    }
}

/// What a provider posts. Unknown extra fields are kept, not refused.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct IncomingEvent {
    /// The provider's event id: 1–200 visible ASCII characters, unique per
    /// shop and provider (a redelivery repeats it).
    #[schema(min_length = 1, max_length = 200, pattern = "^[!-~]{1,200}$")]
    pub id: String,
    /// `payment.succeeded`, `refund.succeeded`, `credits.purchased`; others
    /// are stored and ignored.
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 100)]
    pub type_: String,
    /// Unix seconds.
    pub created: i64,
    pub data: Value,
}

/// `data` of `payment.succeeded`: pays the invoice, `payment_ref` being the
/// payment's `external_ref`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PaymentSucceeded {
    pub invoice_id: Uuid,
    pub amount: String,
    pub currency: String,
    pub payment_ref: String,
}

/// `data` of `refund.succeeded`: refunds `amount` of the payment whose
/// `external_ref` is `payment_ref`, `refund_ref` being the refund's
/// `external_ref` (a refund recorded through the API with it is the same
/// refund, whichever came first).
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefundSucceeded {
    pub payment_ref: String,
    pub refund_ref: String,
    pub amount: String,
    pub currency: String,
}

/// `data` of `credits.purchased`: a `top_up` credit of the wallet.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreditsPurchased {
    pub wallet_id: Uuid,
    pub amount: String,
    pub currency: String,
    pub purchase_ref: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    pub received: bool,
    /// This event id was received before; nothing was done now.
    pub duplicate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Waiting for the worker (first attempt, or a manual retry).
    Pending,
    /// Applied, once.
    Processed,
    /// The last attempt failed; retried at `next_attempt_at`.
    Failed,
    /// Failed WEBHOOK_MAX_ATTEMPTS times; left for a person (retry it).
    Dead,
    /// A type this service does not act on.
    Ignored,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Processed => "processed",
            EventStatus::Failed => "failed",
            EventStatus::Dead => "dead",
            EventStatus::Ignored => "ignored",
        }
    }
}

/// The provider event types this service acts on; any other type is
/// stored and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum EventType {
    /// Pays an invoice (`data`: `PaymentSucceeded`).
    #[serde(rename = "payment.succeeded")]
    PaymentSucceeded,
    /// Refunds an invoice payment (`data`: `RefundSucceeded`).
    #[serde(rename = "refund.succeeded")]
    RefundSucceeded,
    /// Credits a wallet (`data`: `CreditsPurchased`).
    #[serde(rename = "credits.purchased")]
    CreditsPurchased,
}

impl EventType {
    /// The handled type a provider's `type` names, if any.
    pub fn of(type_: &str) -> Option<Self> {
        crate::store::decode("event type", type_).ok()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookEvent {
    pub id: Uuid,
    pub provider: String,
    /// The provider's event id.
    pub event_id: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub status: EventStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    /// The event as received.
    pub payload: Value,
    /// What applying it did, e.g. `{"payment_id": …}`.
    pub result: Option<Value>,
}

impl Outcome for WebhookEvent {
    const ENTITY: &'static str = "webhook_event";
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn location(&self) -> Option<String> {
        Some(format!("/v1/webhook-events/{}", self.id))
    }
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventListParams {
    pub status: Option<EventStatus>,
    /// Page size, 1–100.
    #[validate(range(min = 1, max = 100, message = "must be between 1 and 100"))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    /// Id of the last event of the previous page.
    pub starting_after: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookStats {
    /// Events stored, per status.
    pub by_status: BTreeMap<String, i64>,
    /// Pending or failed events whose attempt is due.
    pub queue_depth: i64,
    /// Age of the oldest pending or failed event.
    pub oldest_pending_age_seconds: Option<i64>,
}
