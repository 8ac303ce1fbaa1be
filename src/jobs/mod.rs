//! Background loops. Each is safe to run on several instances at once and
//! stops when the shutdown signal flips.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::{idempotency, reservations};

/// When each background loop of this instance last finished a run, for
/// `/health/full`: a loop that has not run for `STALE_AFTER` of its
/// intervals is stuck.
#[derive(Debug, Default)]
pub struct Heartbeats(Mutex<BTreeMap<&'static str, Beat>>);

#[derive(Debug, Clone, Copy)]
struct Beat {
    interval: Duration,
    registered: DateTime<Utc>,
    last: Option<DateTime<Utc>>,
}

pub const STALE_AFTER: u32 = 3;

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct LoopHealth {
    pub name: &'static str,
    pub interval_seconds: u64,
    pub last_success_at: Option<DateTime<Utc>>,
    /// It ran within STALE_AFTER (3) intervals (or started less long ago).
    pub ok: bool,
}

impl Heartbeats {
    fn beats(&self) -> MutexGuard<'_, BTreeMap<&'static str, Beat>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn register(&self, name: &'static str, interval: Duration) {
        self.beats().insert(
            name,
            Beat {
                interval,
                registered: Utc::now(),
                last: None,
            },
        );
    }

    pub fn beat(&self, name: &'static str) {
        if let Some(b) = self.beats().get_mut(name) {
            b.last = Some(Utc::now());
        }
    }

    pub fn report(&self, now: DateTime<Utc>) -> Vec<LoopHealth> {
        self.beats()
            .iter()
            .map(|(name, b)| {
                let since = b.last.unwrap_or(b.registered);
                let limit =
                    chrono::Duration::from_std(b.interval * STALE_AFTER).unwrap_or(chrono::Duration::MAX);
                LoopHealth {
                    name,
                    interval_seconds: b.interval.as_secs(),
                    last_success_at: b.last,
                    ok: now - since <= limit,
                }
            })
            .collect()
    }
}

pub const IDEMPOTENCY_CLEANUP_LOOP: &str = "idempotency_cleanup";
pub const RESERVATION_EXPIRY_LOOP: &str = "reservation_expiry";
pub const JOURNAL_ROLLUP_LOOP: &str = "journal_rollup";
/// How often closed days are rolled up (also once at start).
pub const JOURNAL_ROLLUP_INTERVAL: Duration = Duration::from_secs(600);

/// Rolls up closed journal days once at start, then every
/// JOURNAL_ROLLUP_INTERVAL (one instance at a time: an advisory lock).
pub async fn journal_rollup_loop(
    pool: PgPool,
    heartbeats: std::sync::Arc<Heartbeats>,
    mut shutdown: watch::Receiver<bool>,
) {
    heartbeats.register(JOURNAL_ROLLUP_LOOP, JOURNAL_ROLLUP_INTERVAL);
    let mut ticker = tokio::time::interval(JOURNAL_ROLLUP_INTERVAL);
    loop {
        tokio::select! {
            _ = ticker.tick() => match crate::reports::rollup(&pool).await {
                Ok(days) => {
                    heartbeats.beat(JOURNAL_ROLLUP_LOOP);
                    if days > 0 {
                        tracing::info!(days, "journal days rolled up");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "journal roll-up failed"),
            },
            _ = shutdown.changed() => break,
        }
    }
}

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
    heartbeats: std::sync::Arc<Heartbeats>,
    mut shutdown: watch::Receiver<bool>,
) {
    heartbeats.register(IDEMPOTENCY_CLEANUP_LOOP, interval);
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if cleanup_idempotency(&pool, batch).await.is_ok() {
                    heartbeats.beat(IDEMPOTENCY_CLEANUP_LOOP);
                }
            }
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

/// The amount held per currency at the expiry job's last run. It is
/// rendered into `/metrics` as exact decimal text (`render_held`) rather
/// than through a metrics gauge, whose value would be a float.
static HELD: Mutex<BTreeMap<String, Decimal>> = Mutex::new(BTreeMap::new());

fn held() -> MutexGuard<'static, BTreeMap<String, Decimal>> {
    HELD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records what is held now; currencies no longer held read zero.
fn record_held(rows: impl IntoIterator<Item = (String, Decimal)>) {
    let mut held = held();
    held.values_mut().for_each(|v| *v = Decimal::ZERO);
    held.extend(rows);
}

/// `reservations_held_amount{currency}` in the Prometheus text format.
pub fn render_held() -> String {
    let mut out = String::new();
    let held = held();
    if !held.is_empty() {
        out.push_str("# TYPE reservations_held_amount gauge\n");
    }
    for (currency, amount) in held.iter() {
        // Currency codes are [A-Z]{3,6}: nothing to escape.
        let _ = writeln!(
            out,
            "reservations_held_amount{{currency=\"{currency}\"}} {amount}"
        );
    }
    out
}

/// Sets the active-hold gauges from the database.
async fn hold_gauges(pool: &PgPool) {
    let rows = match reservations::active_holds(pool).await {
        Ok(rows) => rows,
        Err(e) => return tracing::warn!(error = %e, "reading the active holds failed"),
    };
    let holds: i64 = rows.iter().map(|(_, n, _)| n).sum();
    metrics::gauge!("reservations_active").set(holds as f64);
    record_held(rows.into_iter().map(|(currency, _, amount)| (currency, amount)));
}

/// Releases holds past their `expires_at` once at start, then every
/// `interval`, and sets the hold gauges after each run.
pub async fn reservation_expiry_loop(
    pool: PgPool,
    interval: Duration,
    batch: u32,
    heartbeats: std::sync::Arc<Heartbeats>,
    mut shutdown: watch::Receiver<bool>,
) {
    heartbeats.register(RESERVATION_EXPIRY_LOOP, interval);
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if expire_reservations(&pool, batch).await.is_ok() {
                    heartbeats.beat(RESERVATION_EXPIRY_LOOP);
                }
                hold_gauges(&pool).await;
            }
            _ = shutdown.changed() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_amounts_render_as_exact_decimals_and_vanished_currencies_as_zero() {
        record_held([("USD".to_owned(), Decimal::new(1_234_567_890_123_456_789, 4))]);
        record_held([("EUR".to_owned(), Decimal::new(5, 2))]);
        assert_eq!(
            render_held(),
            "# TYPE reservations_held_amount gauge\n\
             reservations_held_amount{currency=\"EUR\"} 0.05\n\
             reservations_held_amount{currency=\"USD\"} 0\n"
        );
        record_held([("USD".to_owned(), Decimal::new(1_234_567_890_123_456_789, 4))]);
        assert!(
            render_held().contains("{currency=\"USD\"} 123456789012345.6789\n"),
            "every digit, no float rounding: {}",
            render_held()
        );
    }
}
