//! Background loops. Each is safe to run on several instances at once and
//! stops when the shutdown signal flips.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use crate::idempotency;

/// One cleanup pass with its metrics.
pub async fn cleanup_idempotency(pool: &PgPool, batch: u32) -> Result<u64, sqlx::Error> {
    let result = idempotency::cleanup(pool, batch).await;
    match &result {
        Ok(n) => {
            metrics::counter!("idempotency_cleanup_rows_deleted_total").increment(*n);
            tracing::info!(rows_deleted = n, "idempotency cleanup finished");
        }
        Err(e) => {
            metrics::counter!("idempotency_cleanup_failures_total").increment(1);
            tracing::warn!(error = %e, "idempotency cleanup failed");
        }
    }
    result
}

/// Deletes expired idempotency records once at start, then every `interval`.
pub async fn idempotency_cleanup_loop(
    pool: PgPool,
    interval: Duration,
    batch: u32,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => { let _ = cleanup_idempotency(&pool, batch).await; }
            _ = shutdown.changed() => break,
        }
    }
}
