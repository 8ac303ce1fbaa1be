//! Invoices a shop issues to its customers: drafts, finalize with a gapless
//! per-shop number (receivables → revenue), payments by an external method
//! or from the customer's wallet (→ receivables), refunds of payments,
//! credit notes, and void. Lock order: the invoice, then its payments, then
//! the wallets paying or refunded, then the shop's number counter.

pub mod commands;
mod credit_notes;
mod refunds;
pub mod routes;
mod service;
mod types;

pub use credit_notes::{credit_note, credit_notes, get_credit_note};
pub use refunds::refund_payment;

pub use service::*;
pub use types::*;

use crate::{
    executor::{Refusal, Verdict},
    money::InvalidAmount,
    store::{self, StoreError},
    wallets::WalletError,
};

#[derive(Debug, thiserror::Error)]
pub enum InvoiceError {
    #[error("invoice not found")]
    NotFound,
    #[error("the invoice is {0}")]
    InvalidState(&'static str),
    #[error("{0}: {1}")]
    Invalid(String, String),
    /// The external_ref names a payment (or refund) of another invoice (or
    /// payment) or amount.
    #[error("external_ref {key:?} already names a {what} with another {field} ({existing})")]
    ExternalRefConflict {
        what: &'static str,
        key: String,
        field: &'static str,
        existing: String,
    },
    /// A credit note beyond what is left of the total (`remaining`).
    #[error("the amount exceeds what is left to credit ({remaining})")]
    CreditExceedsRemaining { remaining: String },
    #[error("payment not found")]
    PaymentNotFound,
    #[error("credit note not found")]
    CreditNoteNotFound,
    #[error("the wallet holds {wallet}; the invoice is in {invoice}")]
    CurrencyMismatch {
        wallet: &'static str,
        invoice: &'static str,
    },
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error(transparent)]
    Amount(#[from] InvalidAmount),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for InvoiceError {
    fn from(e: sqlx::Error) -> Self {
        // Totals are checked before they are written; this is the last line.
        if store::has_code(&e, store::sqlstate::NUMERIC_OUT_OF_RANGE) {
            return InvoiceError::Invalid("lines".into(), "the invoice total is too large".into());
        }
        // The wallet's own constraints (a movement it makes).
        InvoiceError::Wallet(e.into())
    }
}

impl Refusal for InvoiceError {
    fn verdict(&self) -> Verdict {
        match self {
            InvoiceError::NotFound
            | InvoiceError::InvalidState(_)
            | InvoiceError::ExternalRefConflict { .. }
            | InvoiceError::CreditExceedsRemaining { .. }
            | InvoiceError::PaymentNotFound
            | InvoiceError::CreditNoteNotFound
            | InvoiceError::CurrencyMismatch { .. } => Verdict::Refused,
            InvoiceError::Invalid(..) => Verdict::Failed,
            InvoiceError::Amount(_) | InvoiceError::Store(_) => Verdict::Failed,
            InvoiceError::Wallet(e) => e.verdict(),
        }
    }

    fn store_error(&self) -> Option<&StoreError> {
        match self {
            InvoiceError::Store(e) => Some(e),
            InvoiceError::Wallet(e) => e.store_error(),
            _ => None,
        }
    }
}
