//! The recurring billing job (docs/recurring-billing.md,
//! docs/runbooks/recurring-billing.md): shop by shop (each shop's
//! statements on its own shard), bills every due period of its approved
//! recurring contracts — every period missed while the service was down
//! too — each in its own transaction through the executor, under a key
//! made of the contract and the period; then retries the wallet payments
//! the dunning schedule has due, and approves again the past-due contracts
//! whose invoices were settled. A contract is claimed with `FOR UPDATE
//! SKIP LOCKED`: an instance that finds it taken moves on, and the
//! period's primary key makes a second bill impossible whatever happens.

use std::{sync::Arc, time::Duration};

use chrono::{NaiveDate, Utc};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use super::{Heartbeats, every};
use crate::{
    config::BillingConfig,
    contracts::{
        ContractError, billing,
        commands::{BillPeriod, RetryPayment},
    },
    executor::{self, Actor, Executor, JobFailure as Failure},
    idempotency::{self, IdempotencyKey},
    tenants::Tenant,
};

pub const BILLING_LOOP: &str = "contract_billing";

/// Contracts (or periods) read per batch.
const BATCH: i64 = 100;

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BillingRun {
    pub periods_billed: u64,
    pub payments_retried: u64,
    pub contracts_recovered: u64,
}

impl From<ContractError> for Failure {
    fn from(e: ContractError) -> Self {
        match e {
            ContractError::Busy => Failure::Skip,
            other => Failure::Failed(other.to_string()),
        }
    }
}

/// Runs one command of the job for `shop` under `key`; whether it took
/// effect now (a replay or a skip did not).
async fn run<C>(
    executor: &Executor,
    shop_id: Uuid,
    key: IdempotencyKey,
    what: serde_json::Value,
    command: C,
) -> bool
where
    C: executor::Command,
    C::Error: Into<Failure>,
{
    let request = executor::Request {
        fingerprint: idempotency::fingerprint("JOB", BILLING_LOOP, None, &what),
        request_id: format!("billing-{}", Uuid::now_v7()),
        key,
    };
    let actor = Actor {
        shop_id,
        key_id: None,
    };
    match executor.execute::<_, Failure>(actor, &request, command).await {
        Ok(answer) => !answer.replayed,
        Err(Failure::Skip) => false,
        Err(Failure::Failed(e)) => {
            metrics::counter!("billing_failures_total").increment(1);
            tracing::warn!(error = %e, ?what, "billing a contract failed");
            false
        }
    }
}

/// One run over every shop with work; stops between commands on shutdown.
pub async fn bill_contracts(
    pool: &PgPool,
    executor: &Executor,
    config: &BillingConfig,
    shutdown: Option<&watch::Receiver<bool>>,
) -> Result<BillingRun, sqlx::Error> {
    let stopping = || shutdown.is_some_and(|s| *s.borrow());
    let today = Utc::now().date_naive();
    let shops = sqlx::query_scalar!(
        r#"SELECT shop_id AS "shop_id!" FROM contracts
            WHERE status IN ('approved', 'past_due') AND (next_period_on <= $1 OR status = 'past_due')
           UNION
           SELECT shop_id FROM contract_periods WHERE next_payment_at <= now()"#,
        today
    )
    .fetch_all(pool)
    .await?;
    let mut done = BillingRun::default();
    for shop_id in shops {
        let tenant = Tenant::job(shop_id);
        // Due periods, oldest first, a batch at a time, until a batch bills
        // nothing new (the rest is another instance's or failing).
        loop {
            if stopping() {
                return Ok(done);
            }
            let due = sqlx::query!(
                r#"SELECT id, next_period_on AS "next_period_on!" FROM contracts
                    WHERE shop_id = $1 AND status IN ('approved', 'past_due') AND next_period_on <= $2
                    ORDER BY next_period_on, id LIMIT $3"#,
                shop_id,
                today,
                BATCH
            )
            .fetch_all(pool)
            .await?;
            let mut billed = 0;
            for c in &due {
                if stopping() {
                    return Ok(done);
                }
                let key = period_key("billing", c.id, c.next_period_on, None);
                let what = json!({"contract_id": c.id, "period_start": c.next_period_on});
                let command = BillPeriod {
                    tenant,
                    contract_id: c.id,
                    period_start: c.next_period_on,
                    dunning: config.dunning_retries.0.clone(),
                };
                if run(executor, shop_id, key, what, command).await {
                    billed += 1;
                }
            }
            done.periods_billed += billed;
            if billed == 0 {
                break;
            }
        }
        let retries = sqlx::query!(
            "SELECT contract_id, period_start, payment_attempts FROM contract_periods
              WHERE shop_id = $1 AND next_payment_at <= now()
              ORDER BY next_payment_at LIMIT $2",
            shop_id,
            BATCH
        )
        .fetch_all(pool)
        .await?;
        for p in retries {
            if stopping() {
                return Ok(done);
            }
            let key = period_key(
                "dunning",
                p.contract_id,
                p.period_start,
                Some(p.payment_attempts + 1),
            );
            let what = json!({"contract_id": p.contract_id, "period_start": p.period_start,
                              "attempt": p.payment_attempts + 1});
            let command = RetryPayment {
                tenant,
                contract_id: p.contract_id,
                period_start: p.period_start,
                dunning: config.dunning_retries.0.clone(),
            };
            if run(executor, shop_id, key, what, command).await {
                done.payments_retried += 1;
            }
        }
        let mut conn = pool.acquire().await?;
        done.contracts_recovered += billing::recover(&mut conn, shop_id, None).await?;
    }
    Ok(done)
}

/// The key of a period's bill (or of one payment attempt): one per period,
/// whichever instance runs it.
fn period_key(
    scope: &str,
    contract_id: Uuid,
    period_start: NaiveDate,
    attempt: Option<i32>,
) -> IdempotencyKey {
    let id = match attempt {
        Some(n) => format!("{contract_id}:{period_start}:{n}"),
        None => format!("{contract_id}:{period_start}"),
    };
    IdempotencyKey::internal(scope, &id)
}

/// One run with its log line and metrics.
pub async fn bill_contracts_once(
    pool: &PgPool,
    executor: &Executor,
    config: &BillingConfig,
    shutdown: Option<&watch::Receiver<bool>>,
) -> Result<BillingRun, sqlx::Error> {
    let started = std::time::Instant::now();
    let result = bill_contracts(pool, executor, config, shutdown).await;
    if let Ok(lag) = lag(pool).await {
        metrics::gauge!("billing_lag_seconds").set(lag.as_secs_f64());
    }
    match &result {
        Ok(run) => {
            metrics::histogram!("billing_run_seconds").record(started.elapsed().as_secs_f64());
            if *run != BillingRun::default() {
                tracing::info!(
                    periods = run.periods_billed,
                    payments = run.payments_retried,
                    recovered = run.contracts_recovered,
                    "billing run finished"
                );
            }
        }
        Err(e) => {
            metrics::counter!("billing_failures_total").increment(1);
            tracing::warn!(error = %e, "billing run failed");
        }
    }
    result
}

/// How long the oldest due, unbilled period has been due (from the start
/// of its day, UTC); 0 when none is.
async fn lag(pool: &PgPool) -> Result<Duration, sqlx::Error> {
    let today = Utc::now().date_naive();
    let oldest = sqlx::query_scalar!(
        "SELECT min(next_period_on) FROM contracts
          WHERE status IN ('approved', 'past_due') AND next_period_on <= $1",
        today
    )
    .fetch_one(pool)
    .await?;
    Ok(oldest
        .and_then(|d| {
            (Utc::now() - d.and_time(chrono::NaiveTime::MIN).and_utc())
                .to_std()
                .ok()
        })
        .unwrap_or_default())
}

/// Bills once at start, then every BILLING_INTERVAL, until shutdown.
pub async fn billing_loop(
    pool: PgPool,
    executor: Executor,
    config: BillingConfig,
    heartbeats: Arc<Heartbeats>,
    shutdown: watch::Receiver<bool>,
) {
    let stop = shutdown.clone();
    let interval: Duration = config.billing_interval;
    every(BILLING_LOOP, interval, heartbeats, shutdown, || async {
        bill_contracts_once(&pool, &executor, &config, Some(&stop))
            .await
            .is_ok()
    })
    .await
}
