//! Batches (docs/batches.md): up to 1,000 movements in one request, each
//! item under its own idempotency key exactly as its single request would
//! be. Atomic (the default): one transaction, every item or none. Not
//! atomic: each item its own transaction, each answered on its own.
//!
//! A batch answers with the answers of its items' single requests, so this
//! module speaks the API's answers (`ApiError`, problem bodies) where the
//! other domains stay free of HTTP.

pub mod items;
pub mod routes;
mod service;
mod types;

pub use items::{Item, Op};
pub use service::{Batch, BatchError, run_each};
pub use types::*;
