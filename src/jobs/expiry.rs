//! Releases holds past their `expires_at`, and keeps the hold gauges.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use rust_decimal::Decimal;
use sqlx::PgPool;
use tokio::sync::watch;

use super::{Heartbeats, every, record_run};
use crate::reservations;

pub const RESERVATION_EXPIRY_LOOP: &str = "reservation_expiry";

/// One expiry run with its metrics and log line. Returns the number of
/// holds expired.
pub async fn expire_reservations(pool: &PgPool, batch: u32) -> Result<u64, reservations::ReservationError> {
    record_run(
        reservations::expire_due(pool, batch).await,
        "reservation expiry",
        "reservations_expired_total",
        "reservation_expiry_failures_total",
        false,
    )
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
    heartbeats: Arc<Heartbeats>,
    shutdown: watch::Receiver<bool>,
) {
    every(
        RESERVATION_EXPIRY_LOOP,
        interval,
        heartbeats,
        shutdown,
        || async {
            let ok = expire_reservations(&pool, batch).await.is_ok();
            hold_gauges(&pool).await;
            ok
        },
    )
    .await
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
