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
}

impl From<sqlx::Error> for ReservationError {
    fn from(e: sqlx::Error) -> Self {
        if store::has_code(&e, store::sqlstate::NUMERIC_OUT_OF_RANGE) {
            return ReservationError::Invalid(
                "amount",
                "would take the wallet's reserved amount beyond the largest supported value".into(),
            );
        }
        ReservationError::Wallet(WalletError::Store(e.into()))
    }
}

impl From<StoreError> for ReservationError {
    fn from(e: StoreError) -> Self {
        ReservationError::Wallet(e.into())
    }
}

impl From<InvalidAmount> for ReservationError {
    fn from(e: InvalidAmount) -> Self {
        ReservationError::Invalid(e.field, e.error.to_string())
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
            ReservationError::Wallet(e) => e.verdict(),
        }
    }

    fn store_error(&self) -> Option<&StoreError> {
        match self {
            ReservationError::Wallet(e) => e.store_error(),
            _ => None,
        }
    }
}
