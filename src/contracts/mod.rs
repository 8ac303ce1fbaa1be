//! Billing contracts: drafted, submitted, then approved or rejected by a
//! reviewer, or cancelled. Optimistic concurrency: every change is one
//! conditional UPDATE naming the status and the version (`If-Match`) it
//! expects, so of two reviewers acting at once exactly one wins, with no
//! lock held between a read and a write. Approving a one-time contract
//! issues its invoice in the same transaction.

pub mod billing;
pub mod commands;
pub mod periods;
pub mod routes;
mod service;
mod types;

pub use billing::ContractPeriod;
pub use service::*;
pub use types::*;

use crate::{
    executor::{Refusal, Verdict},
    invoices::InvoiceError,
    money::InvalidAmount,
    store::{self, StoreError},
    wallets::WalletError,
};

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("contract not found")]
    NotFound,
    /// `If-Match` named another version than the contract's.
    #[error("the contract is at version {current}; If-Match named {expected}")]
    VersionMismatch { current: i64, expected: i64 },
    #[error("the contract is {0}")]
    InvalidState(&'static str),
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    /// The change kept missing a row that matched when looked at (its
    /// competitors rolled back each time): worth retrying.
    #[error("the contract kept changing; retry")]
    Busy,
    #[error(transparent)]
    Invoice(#[from] InvoiceError),
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error(transparent)]
    Amount(#[from] InvalidAmount),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ContractError {
    fn from(e: sqlx::Error) -> Self {
        if store::has_code(&e, store::sqlstate::NUMERIC_OUT_OF_RANGE) {
            return ContractError::Invalid("amount", "is beyond the largest supported amount".into());
        }
        // The wallet's own constraints (a movement it makes).
        ContractError::Wallet(e.into())
    }
}

impl Refusal for ContractError {
    fn verdict(&self) -> Verdict {
        match self {
            ContractError::NotFound | ContractError::InvalidState(_) => Verdict::Refused,
            // A stale If-Match: the retry with the fresh ETag may keep its key.
            ContractError::VersionMismatch { .. } | ContractError::Invalid(..) | ContractError::Busy => {
                Verdict::Failed
            }
            ContractError::Invoice(e) => e.verdict(),
            ContractError::Amount(_) | ContractError::Store(_) => Verdict::Failed,
            ContractError::Wallet(e) => e.verdict(),
        }
    }

    fn store_error(&self) -> Option<&StoreError> {
        match self {
            ContractError::Store(e) => Some(e),
            ContractError::Invoice(e) => e.store_error(),
            ContractError::Wallet(e) => e.store_error(),
            _ => None,
        }
    }
}
