//! Credit reservations: two-phase spending. A hold moves its amount into the
//! wallet's `reserved` (nothing posted); capture debits what was used
//! through the journal and frees the rest; release and expiry free it all.
//! Every statement that locks both rows locks the reservation first, then
//! its wallet; the expiry job skips locked rows, so nothing deadlocks.

pub mod commands;
pub mod routes;
mod service;
mod types;

pub use service::*;
pub use types::*;

use crate::{
    executor::{Refusal, Verdict},
    money::InvalidAmount,
    store::{self, StoreError},
    wallets::WalletError,
};

#[derive(Debug, thiserror::Error)]
pub enum ReservationError {
    #[error("reservation not found")]
    NotFound,
    /// The same `reservation_key` holds something else; `field` differs.
    #[error("reservation_key {key:?} already names a reservation with another {field} ({existing})")]
    KeyConflict {
        key: String,
        field: &'static str,
        existing: String,
    },
    #[error("the reservation is {0}, not active")]
    InvalidState(&'static str),
    #[error("the reservation expired")]
    Expired,
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error(transparent)]
    Amount(#[from] InvalidAmount),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ReservationError {
    fn from(e: sqlx::Error) -> Self {
        if store::has_code(&e, store::sqlstate::NUMERIC_OUT_OF_RANGE) {
            return ReservationError::Invalid(
                "amount",
                "would take the wallet's reserved amount beyond the largest supported value".into(),
            );
        }
        // The wallet's own constraints (a movement it makes).
        ReservationError::Wallet(e.into())
    }
}

impl Refusal for ReservationError {
    fn verdict(&self) -> Verdict {
        match self {
            ReservationError::NotFound
            | ReservationError::KeyConflict { .. }
            | ReservationError::InvalidState(_) => Verdict::Refused,
            ReservationError::Expired => Verdict::RefusedCommitting,
            ReservationError::Invalid(..) => Verdict::Failed,
            ReservationError::Amount(_) | ReservationError::Store(_) => Verdict::Failed,
            ReservationError::Wallet(e) => e.verdict(),
        }
    }

    fn store_error(&self) -> Option<&StoreError> {
        match self {
            ReservationError::Store(e) => Some(e),
            ReservationError::Wallet(e) => e.store_error(),
            _ => None,
        }
    }
}
