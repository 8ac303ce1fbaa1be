//! Inbound payment webhooks. The receiver verifies the provider's signature
//! on the raw body and only inserts the event (UNIQUE per shop, provider and
//! event id: a redelivery is a no-op); the worker applies each event once,
//! through the executor with the event id as the key, and retries failures
//! with backoff until they are left dead.

pub mod commands;
pub mod routes;
mod service;
pub mod signature;
mod types;

/// The worker lives with the other background loops.
pub use crate::jobs::webhook_worker as worker;
pub use service::*;
pub use types::*;

use crate::{
    executor::{Refusal, Verdict},
    invoices::InvoiceError,
    store::StoreError,
    wallets::WalletError,
};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook event not found")]
    NotFound,
    #[error("the event is {0}; only failed or dead events are retried")]
    InvalidState(&'static str),
    /// Another worker holds the event, or has applied it: not an attempt.
    #[error("the event is being applied elsewhere")]
    Busy,
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error("{0}")]
    Mismatch(String),
    #[error(transparent)]
    Invoice(#[from] InvoiceError),
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for WebhookError {
    fn from(e: sqlx::Error) -> Self {
        // The wallet's own constraints (a movement it makes).
        WebhookError::Wallet(e.into())
    }
}

impl Refusal for WebhookError {
    fn verdict(&self) -> Verdict {
        match self {
            WebhookError::NotFound | WebhookError::InvalidState(_) => Verdict::Refused,
            WebhookError::Busy | WebhookError::Malformed(_) | WebhookError::Mismatch(_) => Verdict::Failed,
            WebhookError::Invoice(e) => e.verdict(),
            WebhookError::Store(_) => Verdict::Failed,
            WebhookError::Wallet(e) => e.verdict(),
        }
    }

    fn store_error(&self) -> Option<&StoreError> {
        match self {
            WebhookError::Store(e) => Some(e),
            WebhookError::Invoice(e) => e.store_error(),
            WebhookError::Wallet(e) => e.store_error(),
            _ => None,
        }
    }
}

/// How applying an event ended short of success, for the worker: the
/// executor's `JobFailure` (a failure is recorded on the event).
pub use crate::executor::JobFailure as Failure;

impl From<WebhookError> for Failure {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Busy => Failure::Skip,
            other => Failure::Failed(other.to_string()),
        }
    }
}
