//! Invoices a shop issues to its customers: drafts, finalize with a gapless
//! per-shop number (receivables → revenue), payments by an external method
//! or from the customer's wallet (→ receivables), and void. Lock order: the
//! invoice, then the wallet paying it, then the shop's number counter.

pub mod commands;
pub mod routes;
mod service;
mod types;

pub use service::*;
pub use types::*;

use crate::wallets::WalletError;

#[derive(Debug, thiserror::Error)]
pub enum InvoiceError {
    #[error("invoice not found")]
    NotFound,
    #[error("the invoice is {0}")]
    InvalidState(&'static str),
    #[error("{0}: {1}")]
    Invalid(String, String),
    /// The external_ref names a payment of another invoice or amount.
    #[error("external_ref {key:?} already names a payment with another {field} ({existing})")]
    ExternalRefConflict {
        key: String,
        field: &'static str,
        existing: String,
    },
    #[error("the wallet holds {wallet}; the invoice is in {invoice}")]
    CurrencyMismatch {
        wallet: &'static str,
        invoice: &'static str,
    },
    #[error(transparent)]
    Wallet(#[from] WalletError),
}

impl From<sqlx::Error> for InvoiceError {
    fn from(e: sqlx::Error) -> Self {
        InvoiceError::Wallet(e.into())
    }
}
