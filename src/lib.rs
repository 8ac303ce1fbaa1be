//! billing-ledger: prepaid credit wallets on a double-entry ledger, where
//! every money movement happens exactly once.

pub mod app;
pub mod audit;
pub mod batches;
pub mod citus;
pub mod config;
pub mod contracts;
pub mod dates;
pub mod events;
pub mod executor;
pub mod http;
pub mod idempotency;
pub mod invoices;
pub mod jobs;
pub mod ledger;
pub mod metadata;
pub mod money;
pub mod openapi;
pub mod pagination;
pub mod reports;
pub mod reservations;
pub mod store;
pub mod telemetry;
pub mod tenants;
pub mod wallets;
pub mod webhooks;

/// The schema migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// The migrations this build knows that the database has not applied.
pub async fn pending_migrations<'e>(db: impl sqlx::PgExecutor<'e>) -> Result<Vec<i64>, sqlx::Error> {
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(db)
        .await?;
    Ok(MIGRATOR
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect())
}
