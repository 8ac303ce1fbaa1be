//! Deletes expired idempotency records.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::sync::watch;

use super::{Heartbeats, every, record_run};
use crate::idempotency;

pub const IDEMPOTENCY_CLEANUP_LOOP: &str = "idempotency_cleanup";

/// One cleanup pass with its metrics.
pub async fn cleanup_idempotency(pool: &PgPool, batch: u32) -> Result<u64, sqlx::Error> {
    record_run(
        idempotency::cleanup(pool, batch).await,
        "idempotency cleanup",
        "idempotency_cleanup_rows_deleted_total",
        "idempotency_cleanup_failures_total",
        true,
    )
}

/// Deletes expired idempotency records once at start, then every `interval`.
pub async fn idempotency_cleanup_loop(
    pool: PgPool,
    interval: Duration,
    batch: u32,
    heartbeats: Arc<Heartbeats>,
    shutdown: watch::Receiver<bool>,
) {
    every(
        IDEMPOTENCY_CLEANUP_LOOP,
        interval,
        heartbeats,
        shutdown,
        || async { cleanup_idempotency(&pool, batch).await.is_ok() },
    )
    .await
}
