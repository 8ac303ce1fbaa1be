//! Background loops. Each is safe to run on several instances at once and
//! stops when the shutdown signal flips.

use std::{collections::BTreeSet, time::Duration};

use rust_decimal::prelude::ToPrimitive;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::{idempotency, reservations};

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

/// One expiry run with its metrics and log line. Returns the number of
/// holds expired.
pub async fn expire_reservations(pool: &PgPool, batch: u32) -> Result<u64, sqlx::Error> {
    let result = reservations::expire_due(pool, batch).await;
    match &result {
        Ok(n) => {
            metrics::counter!("reservations_expired_total").increment(*n);
            if *n > 0 {
                tracing::info!(expired = n, "reservation expiry finished");
            }
        }
        Err(e) => {
            metrics::counter!("reservation_expiry_failures_total").increment(1);
            tracing::warn!(error = %e, "reservation expiry failed");
        }
    }
    result
}

/// Sets the active-hold gauges; currencies no longer held drop to zero.
async fn hold_gauges(pool: &PgPool, seen: &mut BTreeSet<String>) {
    let Ok(rows) = reservations::active_holds(pool).await else {
        return;
    };
    let holds: i64 = rows.iter().map(|(_, n, _)| n).sum();
    metrics::gauge!("reservations_active").set(holds as f64);
    let mut now = BTreeSet::new();
    for (currency, _, held) in rows {
        // A gauge is a float; the books stay in NUMERIC.
        metrics::gauge!("reservations_held_amount", "currency" => currency.clone())
            .set(held.to_f64().unwrap_or(f64::NAN));
        now.insert(currency);
    }
    for gone in seen.difference(&now) {
        metrics::gauge!("reservations_held_amount", "currency" => gone.clone()).set(0.0);
    }
    *seen = now;
}

/// Releases holds past their `expires_at` once at start, then every
/// `interval`, and sets the hold gauges after each run.
pub async fn reservation_expiry_loop(
    pool: PgPool,
    interval: Duration,
    batch: u32,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    let mut currencies = BTreeSet::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let _ = expire_reservations(&pool, batch).await;
                hold_gauges(&pool, &mut currencies).await;
            }
            _ = shutdown.changed() => break,
        }
    }
}
