//! Prepaid credit wallets: balances, credits, debits, transfers and their
//! append-only history, every movement posted to the journal.

pub mod commands;
pub mod routes;
mod service;
mod types;

pub use service::*;
pub use types::*;

use crate::money::MoneyError;

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
    #[error("{0}: {1}")]
    InvalidAmount(&'static str, MoneyError),
    #[error("the resulting balance would be out of range")]
    BalanceOverflow,
    /// The wallet-transaction key was used before for a different movement.
    #[error("idempotency key reused")]
    KeyReused,
    #[error(transparent)]
    Db(sqlx::Error),
}

impl From<sqlx::Error> for WalletError {
    fn from(e: sqlx::Error) -> Self {
        // The CHECK constraint is the last line: no path may overdraw.
        match &e {
            sqlx::Error::Database(db) if db.constraint() == Some("wallets_not_overdrawn") => {
                WalletError::InsufficientFunds
            }
            // numeric_value_out_of_range: a balance beyond NUMERIC(24,4).
            sqlx::Error::Database(db) if db.code().as_deref() == Some("22003") => {
                WalletError::BalanceOverflow
            }
            _ => WalletError::Db(e),
        }
    }
}

impl From<crate::ledger::LedgerError> for WalletError {
    fn from(e: crate::ledger::LedgerError) -> Self {
        // A bug, never user input: surface it as an unexpected failure.
        WalletError::Db(sqlx::Error::Protocol(e.to_string()))
    }
}
