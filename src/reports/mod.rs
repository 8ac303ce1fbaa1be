//! Reconciliation reports for finance staff: for a period, proof that the
//! books balance and that every wallet, hold, invoice and provider payment
//! agrees with the journal, or exactly where it does not. Read in one
//! `REPEATABLE READ READ ONLY` snapshot, so figures add up while writes go
//! on. The SQL lives in `sql/reports/`.

pub mod csv;
pub mod page;
pub mod routes;
mod service;
pub mod table;
mod types;

pub use service::*;
pub use types::*;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    #[error("no shop has this id")]
    NoSuchShop,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}
