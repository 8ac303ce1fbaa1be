//! Expires credit grants past their `expires_at` (docs/grants.md,
//! docs/runbooks/grant-expiry.md).

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::sync::watch;

use super::{Heartbeats, every};
use crate::wallets::{self, WalletError};

pub const GRANT_EXPIRY_LOOP: &str = "grant_expiry";

/// One expiry run with its log line. Returns the number of grants expired
/// (each also counts in `grants_expired_total`, as the money path's do).
pub async fn expire_grants(pool: &PgPool, batch: u32) -> Result<u64, WalletError> {
    let result = wallets::expire_grants(pool, batch).await;
    match &result {
        Ok(0) => {}
        Ok(n) => tracing::info!(rows = n, "grant expiry finished"),
        Err(e) => {
            metrics::counter!("grant_expiry_failures_total").increment(1);
            tracing::warn!(error = %e, "grant expiry failed");
        }
    }
    result
}

/// Expires due grants once at start, then every `interval`.
pub async fn grant_expiry_loop(
    pool: PgPool,
    interval: Duration,
    batch: u32,
    heartbeats: Arc<Heartbeats>,
    shutdown: watch::Receiver<bool>,
) {
    every(GRANT_EXPIRY_LOOP, interval, heartbeats, shutdown, || async {
        expire_grants(&pool, batch).await.is_ok()
    })
    .await
}
