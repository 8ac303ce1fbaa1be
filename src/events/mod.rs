//! Outbound events (docs/events.md): what happened, told to the shop. The
//! completing statement that stores a request's outcome and audit row also
//! writes its event and one delivery per subscribed endpoint (the outbox),
//! so an event exists exactly when its change committed. Shops read them at
//! `GET /v1/events` and receive them, signed, at their webhook endpoints
//! (`endpoints`, `deliveries`); balance alerts (`alerts`) add events of
//! their own to the movement that crosses a threshold.

pub mod alerts;
pub mod deliveries;
pub mod endpoints;
pub mod routes;
mod service;
mod types;

pub use service::*;
pub use types::*;

use uuid::Uuid;

use crate::{
    executor::{Refusal, Verdict},
    store::StoreError,
};

/// The event a successful command's action writes, its `data` the
/// command's answer; `None` for actions shops are not told about.
pub fn type_of(action: &str) -> Option<&'static str> {
    Some(match action {
        "wallet.credit" | "wallet.refund" | "webhook.credits_purchased" => "wallet.credited",
        "wallet.debit" => "wallet.debited",
        "wallet.transfer" => "transfer.created",
        "reservation.create" => "reservation.created",
        "reservation.capture" => "reservation.captured",
        "reservation.release" => "reservation.released",
        "reservation.expire" => RESERVATION_EXPIRED,
        "invoice.finalize" => "invoice.finalized",
        "invoice.pay" | "webhook.payment_succeeded" => "invoice.paid",
        "invoice.void" => "invoice.voided",
        "invoice.refund_payment" | "webhook.refund_succeeded" => "payment.refunded",
        "invoice.credit_note" => "credit_note.created",
        "grant.expire" => GRANT_EXPIRED,
        "contract.approve" => "contract.approved",
        "contract.reject" => "contract.rejected",
        "contract.cancel" => "contract.cancelled",
        _ => return None,
    })
}

/// Every event type, for validating an endpoint's subscription.
pub const TYPES: &[&str] = &[
    "wallet.credited",
    "wallet.debited",
    "transfer.created",
    "reservation.created",
    "reservation.captured",
    "reservation.released",
    RESERVATION_EXPIRED,
    "invoice.finalized",
    "invoice.paid",
    "invoice.voided",
    "payment.refunded",
    "credit_note.created",
    GRANT_EXPIRED,
    "contract.approved",
    "contract.rejected",
    "contract.cancelled",
    ALERT_BELOW,
    ALERT_RECOVERED,
];

pub const GRANT_EXPIRED: &str = "grant.expired";
pub const RESERVATION_EXPIRED: &str = "reservation.expired";
pub const ALERT_BELOW: &str = "wallet.balance_below";
pub const ALERT_RECOVERED: &str = "wallet.balance_recovered";

/// An event to write: its type, what orders its deliveries (the wallet it
/// is about, else its object) and its `data` as JSON text.
#[derive(Debug, Clone)]
pub struct Event {
    pub type_: &'static str,
    pub key: Uuid,
    pub data: String,
}

impl Event {
    /// The event of `action` with `body` (an answer as JSON) as its data.
    pub fn of(action: &str, key: Uuid, body: &[u8]) -> Option<Event> {
        let type_ = type_of(action)?;
        let data = String::from_utf8(body.to_vec()).ok()?;
        Some(Event { type_, key, data })
    }

    pub fn new(type_: &'static str, key: Uuid, data: &impl serde::Serialize) -> Result<Event, StoreError> {
        let data = serde_json::to_string(data).map_err(|e| StoreError::broken(format!("event data: {e}")))?;
        Ok(Event { type_, key, data })
    }
}

/// Events as the completing statement's columns (`$15`–`$18`), each with a
/// new UUIDv7.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub ids: Vec<Uuid>,
    pub types: Vec<&'static str>,
    pub keys: Vec<Uuid>,
    pub data: Vec<String>,
}

impl Rows {
    pub fn extend(&mut self, events: Vec<Event>) {
        // Counted as handed to the writing statement: a transaction that
        // then rolls back has counted them too (rare: a failure after the
        // change).
        metrics::counter!("events_written_total").increment(events.len() as u64);
        for e in events {
            self.ids.push(Uuid::now_v7());
            self.types.push(e.type_);
            self.keys.push(e.key);
            self.data.push(e.data);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not found")]
    NotFound,
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0}")]
    InvalidState(String),
    #[error(transparent)]
    Wallet(#[from] crate::wallets::WalletError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EventError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        EventError::Invalid {
            field,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for EventError {
    fn from(e: sqlx::Error) -> Self {
        EventError::Store(e.into())
    }
}

impl Refusal for EventError {
    fn verdict(&self) -> Verdict {
        match self {
            EventError::NotFound | EventError::InvalidState(_) => Verdict::Refused,
            EventError::Invalid { .. } | EventError::Store(_) => Verdict::Failed,
            EventError::Wallet(e) => e.verdict(),
        }
    }

    fn store_error(&self) -> Option<&StoreError> {
        match self {
            EventError::Store(e) => Some(e),
            EventError::Wallet(e) => e.store_error(),
            _ => None,
        }
    }
}
