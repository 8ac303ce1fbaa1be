//! Integration tests: real PostgreSQL (one database per test, created by
//! `#[sqlx::test]`), real HTTP through a bound port. One binary, one build.

// Tests open transactions of their own with sqlx's begin(); the service's
// go through store::begin (clippy.toml).
#![allow(clippy::disallowed_methods)]

mod batches;
mod billing;
mod browser;
mod concurrency;
mod contracts;
mod events;
mod executor;
mod foundation;
mod grants;
mod hardening;
mod helpers;
pub mod idempotency;
mod invoices;
mod isolation;
mod limits;
mod operations;
pub mod process;
mod refunds;
mod reports;
mod reservations;
mod scale_out;
mod spec;
mod wallets;
mod webhooks;
