//! Background loops, together: idempotency cleanup, reservation expiry,
//! the journal roll-up, the webhook worker and webhook retention. Each is
//! safe to run on several instances at once (`FOR UPDATE SKIP LOCKED` or an
//! advisory lock, in batches) and stops when the shutdown signal flips.

mod billing;
mod cleanup;
mod event_delivery;
mod expiry;
mod grant_expiry;
mod rollup;
pub mod webhook_worker;

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

pub use billing::{BILLING_LOOP, BillingRun, bill_contracts_once, billing_loop};
pub use cleanup::{IDEMPOTENCY_CLEANUP_LOOP, cleanup_idempotency, idempotency_cleanup_loop};
pub use event_delivery::{DELIVERY_LOOP, EVENT_RETENTION_LOOP, delivery_loop, event_retention_loop};
pub use expiry::{RESERVATION_EXPIRY_LOOP, expire_reservations, render_held, reservation_expiry_loop};
pub use grant_expiry::{GRANT_EXPIRY_LOOP, expire_grants, grant_expiry_loop};
pub use rollup::{JOURNAL_ROLLUP_INTERVAL, JOURNAL_ROLLUP_LOOP, journal_rollup_loop};

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

/// The wait before a retry after `attempts` failed tries: `base` doubled
/// per earlier try, capped at `max`, times a jitter of 0.5–1.5 (so a
/// failing receiver's retries spread out). Computed in the worker, from the
/// attempts its lease saw: Citus runs no volatile function (random) in a
/// distributed UPDATE.
pub fn backoff(base: Duration, max: Duration, attempts: i32) -> Duration {
    max.min(base.saturating_mul(2u32.saturating_pow(attempts.clamp(0, 31) as u32)))
        .mul_f64(rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..1.5))
}

/// Counts and logs one run of a job that handles rows, and passes its
/// result on: the rows into the
/// `rows` counter (and an INFO line `<job> finished` when `always_log` or
/// any), a failure into the `failures` counter and a WARN line.
pub fn record_run<E: std::fmt::Display>(
    result: Result<u64, E>,
    job: &'static str,
    rows: &'static str,
    failures: &'static str,
    always_log: bool,
) -> Result<u64, E> {
    match &result {
        Ok(n) => {
            metrics::counter!(rows).increment(*n);
            if always_log || *n > 0 {
                tracing::info!(rows = n, "{job} finished");
            }
        }
        Err(e) => {
            metrics::counter!(failures).increment(1);
            tracing::warn!(error = %e, "{job} failed");
        }
    }
    result
}

/// Runs `run` once at start, then every `interval`, until shutdown; a run
/// that succeeds (returns true) is `name`'s heartbeat.
pub async fn every<F, Fut>(
    name: &'static str,
    interval: Duration,
    heartbeats: Arc<Heartbeats>,
    mut shutdown: watch::Receiver<bool>,
    mut run: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    heartbeats.register(name, interval);
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if run().await {
                    heartbeats.beat(name);
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}
