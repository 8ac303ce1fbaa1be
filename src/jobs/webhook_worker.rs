//! The webhook worker: leases due events (`FOR UPDATE SKIP LOCKED`, so
//! several instances share the queue), applies each through the executor,
//! and records failures with exponential backoff and jitter until an event
//! is left dead. Wakes on NOTIFY, polls as a fallback, stops on shutdown.

use std::{sync::Arc, time::Instant};

use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::watch;

use super::{Heartbeats, every, record_run};
use crate::{
    config::WebhookConfig,
    executor::{self, Actor, Executor},
    idempotency::{self, IdempotencyKey},
    webhooks::{
        self, CHANNEL, EventType, Failure,
        commands::{ApplyCredit, ApplyPayment, ApplyRefund, Leased},
    },
};

pub const LOOP: &str = "webhook_worker";
pub const RETENTION_LOOP: &str = "webhook_retention";

/// Leases up to `batch` due events for `lease`: another worker takes one
/// again only if this one has not finished it by then (it crashed). The
/// shops with due events are found by a plain read; each shop's events are
/// then leased by a statement on its own shard (Citus runs `FOR UPDATE
/// SKIP LOCKED` only there).
async fn lease(pool: &PgPool, config: &WebhookConfig) -> Result<Vec<Leased>, sqlx::Error> {
    let mut shops = sqlx::query_scalar!(
        r#"SELECT DISTINCT shop_id AS "shop_id!" FROM webhook_events
            WHERE status IN ('pending', 'failed') AND next_attempt_at <= now()"#
    )
    .fetch_all(pool)
    .await?;
    // A shop with a backlog does not starve the others: a random order.
    rand::seq::SliceRandom::shuffle(shops.as_mut_slice(), &mut rand::thread_rng());
    let mut rows = Vec::new();
    for shop in shops {
        let left = config.batch as i64 - rows.len() as i64;
        if left <= 0 {
            break;
        }
        rows.extend(
            sqlx::query!(
                "UPDATE webhook_events e SET next_attempt_at = now() + $2::interval
                   FROM (SELECT shop_id, id FROM webhook_events
                          WHERE shop_id = $3 AND status IN ('pending', 'failed') AND next_attempt_at <= now()
                          ORDER BY next_attempt_at
                          LIMIT $1 FOR UPDATE SKIP LOCKED) due
                  WHERE e.shop_id = $3 AND e.shop_id = due.shop_id AND e.id = due.id
                 RETURNING e.shop_id, e.id, e.provider, e.event_id, e.type, e.payload, e.attempts",
                left,
                webhooks::pg_interval(config.lease),
                shop,
            )
            .fetch_all(pool)
            .await?,
        );
    }
    Ok(rows
        .into_iter()
        .map(|r| Leased {
            shop_id: r.shop_id,
            id: r.id,
            provider: r.provider,
            event_id: r.event_id,
            type_: r.r#type,
            payload: r.payload,
            attempts: r.attempts,
        })
        .collect())
}

/// Applies one event in the executor's transaction.
pub async fn apply(executor: &Executor, event: Leased) -> Result<(), Failure> {
    let key = IdempotencyKey::internal("webhook", &format!("{}:{}", event.provider, event.event_id));
    let request = executor::Request {
        key,
        fingerprint: idempotency::fingerprint(
            "WEBHOOK",
            &format!("/v1/webhooks/{}", event.provider),
            None,
            &event.payload,
        ),
        request_id: format!("webhook-{}", event.id),
    };
    let actor = Actor {
        shop_id: event.shop_id,
        key_id: None,
    };
    match EventType::of(&event.type_) {
        Some(EventType::PaymentSucceeded) => executor
            .execute::<_, Failure>(actor, &request, ApplyPayment { event })
            .await
            .map(drop),
        Some(EventType::RefundSucceeded) => executor
            .execute::<_, Failure>(actor, &request, ApplyRefund { event })
            .await
            .map(drop),
        Some(EventType::CreditsPurchased) => executor
            .execute::<_, Failure>(actor, &request, ApplyCredit { event })
            .await
            .map(drop),
        None => Err(Failure::Failed(format!("no handler for {}", event.type_))),
    }
}

/// Records a failed attempt: `failed` with the next attempt after
/// min(base × 2^attempts, max) × (0.5–1.5), or `dead` at the last one.
/// Returns the new status (`None` if the event was applied meanwhile).
async fn record_failure(
    pool: &PgPool,
    event: &Leased,
    reason: &str,
    config: &WebhookConfig,
) -> Result<Option<String>, sqlx::Error> {
    // No column-dependent time arithmetic in a distributed UPDATE either:
    // the delay is a parameter.
    let delay = super::backoff(config.backoff_base, config.backoff_max, event.attempts);
    sqlx::query_scalar!(
        "UPDATE webhook_events
            SET attempts = attempts + 1, last_error = $3,
                status = CASE WHEN attempts + 1 >= $4 THEN 'dead' ELSE 'failed' END,
                next_attempt_at = now() + $5::interval
          WHERE shop_id = $1 AND id = $2 AND status IN ('pending', 'failed')
         RETURNING status",
        event.shop_id,
        event.id,
        reason,
        config.max_attempts as i32,
        webhooks::pg_interval(delay),
    )
    .fetch_optional(pool)
    .await
}

/// One round: lease a batch and apply it. Returns how many were leased.
pub async fn round(
    pool: &PgPool,
    executor: &Executor,
    config: &WebhookConfig,
    shutdown: &watch::Receiver<bool>,
) -> Result<usize, sqlx::Error> {
    let events = lease(pool, config).await?;
    let n = events.len();
    for event in events {
        if *shutdown.borrow() {
            // The rest come back when their lease ends.
            break;
        }
        let started = Instant::now();
        let failed = event.clone();
        match apply(executor, event).await {
            Ok(()) => {
                metrics::counter!("webhook_events_processed_total").increment(1);
                metrics::histogram!("webhook_processing_seconds").record(started.elapsed().as_secs_f64());
            }
            Err(Failure::Skip) => {}
            Err(Failure::Failed(reason)) => {
                let status = record_failure(pool, &failed, &reason, config).await?;
                // The reason can quote the event's data: it is kept on the
                // event (GET /v1/webhook-events/{id}), not in the logs.
                tracing::warn!(event = %failed.id, provider = %failed.provider,
                    status = ?status, "webhook event failed");
                match status.as_deref() {
                    Some("dead") => metrics::counter!("webhook_events_dead_total").increment(1),
                    Some(_) => metrics::counter!("webhook_events_failed_total").increment(1),
                    None => {}
                }
            }
        }
    }
    Ok(n)
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.ok()?;
    listener.listen(CHANNEL).await.ok()?;
    Some(listener)
}

/// Runs rounds until shutdown: at once while batches come back full, else
/// after a NOTIFY or `poll_interval`, whichever comes first.
pub async fn run(
    pool: PgPool,
    executor: Executor,
    config: WebhookConfig,
    heartbeats: Arc<Heartbeats>,
    mut shutdown: watch::Receiver<bool>,
) {
    heartbeats.register(LOOP, config.poll_interval);
    let mut listener = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        if listener.is_none() {
            listener = listen(&pool).await;
        }
        let full = match round(&pool, &executor, &config, &shutdown).await {
            Ok(n) => {
                heartbeats.beat(LOOP);
                n as u32 >= config.batch
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhook worker round failed");
                false
            }
        };
        if let Ok((depth, _)) = webhooks::queue(&pool).await {
            metrics::gauge!("webhook_queue_depth").set(depth as f64);
        }
        if full {
            continue;
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => l.recv().await.map(drop),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.changed() => break,
            r = notified => if r.is_err() { listener = None; },
            _ = tokio::time::sleep(config.poll_interval) => {}
        }
    }
}

/// Deletes old processed and ignored events once at start, then every
/// `retention_interval`.
pub async fn retention_loop(
    pool: PgPool,
    config: WebhookConfig,
    heartbeats: Arc<Heartbeats>,
    shutdown: watch::Receiver<bool>,
) {
    every(
        RETENTION_LOOP,
        config.retention_interval,
        heartbeats,
        shutdown,
        || async {
            record_run(
                webhooks::purge(&pool, config.retention, 1000).await,
                "webhook retention",
                "webhook_events_purged_total",
                "webhook_retention_failures_total",
                false,
            )
            .is_ok()
        },
    )
    .await
}
