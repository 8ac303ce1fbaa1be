//! Prepaid credit wallets: balances, credits, debits, transfers, refunds of
//! debits and their append-only history, every movement posted to the
//! journal.

pub mod bulk;
pub mod commands;
mod grant_store;
pub mod grants;
pub mod routes;
mod service;
mod types;

pub use grant_store::{GRANT_EXPIRY_JOB, expire_due, expire_grants, grants as list_grants};
pub use service::*;
pub use types::*;

use crate::{
    executor::{Refusal, Verdict},
    ledger::LedgerError,
    money::InvalidAmount,
    store::{self, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("wallet not found")]
    NotFound,
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("currency mismatch")]
    CurrencyMismatch { from: String, to: String },
    #[error("a transfer needs two different wallets")]
    SameWallet,
    /// No such movement on this wallet of the shop.
    #[error("wallet transaction not found")]
    TransactionNotFound,
    #[error("a {0} movement cannot be refunded")]
    NotRefundable(&'static str),
    /// More than is left to refund of the movement (`remaining`).
    #[error("the amount exceeds what is left to refund ({remaining})")]
    RefundExceedsRemaining { remaining: String },
    #[error(transparent)]
    InvalidAmount(#[from] InvalidAmount),
    /// A field the request names is invalid: (field, why).
    #[error("{0} {1}")]
    Invalid(&'static str, String),
    #[error("the resulting balance would be out of range")]
    BalanceOverflow,
    /// The wallet-transaction key was used before for a different movement.
    #[error("idempotency key reused")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for WalletError {
    fn from(e: sqlx::Error) -> Self {
        // The CHECK constraint is the last line: no path may overdraw.
        if store::constraint(&e) == Some("wallets_not_overdrawn") {
            return WalletError::InsufficientFunds;
        }
        // A balance beyond NUMERIC(24,4).
        if store::has_code(&e, store::sqlstate::NUMERIC_OUT_OF_RANGE) {
            return WalletError::BalanceOverflow;
        }
        WalletError::Store(e.into())
    }
}

impl From<LedgerError> for WalletError {
    fn from(e: LedgerError) -> Self {
        WalletError::Store(e.into())
    }
}

impl Refusal for WalletError {
    fn verdict(&self) -> Verdict {
        match self {
            WalletError::NotFound
            | WalletError::InsufficientFunds
            | WalletError::CurrencyMismatch { .. }
            | WalletError::TransactionNotFound
            | WalletError::NotRefundable(_)
            | WalletError::RefundExceedsRemaining { .. } => Verdict::Refused,
            WalletError::SameWallet
            | WalletError::InvalidAmount(_)
            | WalletError::Invalid(..)
            | WalletError::BalanceOverflow
            | WalletError::KeyReused
            | WalletError::Store(_) => Verdict::Failed,
        }
    }

    fn store_error(&self) -> Option<&StoreError> {
        match self {
            WalletError::Store(e) => Some(e),
            _ => None,
        }
    }
}
