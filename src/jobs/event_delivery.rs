//! The event delivery worker (docs/events.md, docs/runbooks/event-deliveries.md):
//! finds endpoints with due deliveries and works each in a task of its own —
//! lease a round of deliveries (`FOR UPDATE SKIP LOCKED`, so any number of
//! instances share them), post them a few at once, record the round's
//! attempts in one statement, repeat until none is due. A slow or dead endpoint thus holds only its own task
//! and its share of DELIVERY_CONCURRENCY, never another endpoint's
//! deliveries or the API. A crashed instance's leases run out and another
//! posts those deliveries again: at least once.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures_util::StreamExt;
use sqlx::{PgPool, postgres::PgListener};
use tokio::{
    sync::{Semaphore, watch},
    task::JoinSet,
};
use uuid::Uuid;

use super::{Heartbeats, every, record_run};
use crate::{
    config::EventConfig,
    events::{
        self,
        deliveries::{self, CHANNEL, Destinations},
    },
};

pub const DELIVERY_LOOP: &str = "event_delivery";
pub const EVENT_RETENTION_LOOP: &str = "event_retention";

/// The most deliveries of one endpoint leased in one round.
const ROUND_MAX: usize = 64;

#[derive(Clone)]
struct Worker {
    pool: PgPool,
    config: EventConfig,
    destinations: Destinations,
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    /// Endpoints this instance is working now.
    busy: Arc<Mutex<HashSet<Uuid>>>,
    shutdown: watch::Receiver<bool>,
}

impl Worker {
    /// Leases and posts the endpoint's due deliveries, round after round,
    /// until none is left. A round starts at DELIVERY_ENDPOINT_CONCURRENCY
    /// deliveries and doubles after each round all delivered, up to
    /// ROUND_MAX: a healthy endpoint's backlog costs one lease and one
    /// record statement per round, while a failing one is leased a wave
    /// at a time. A round that took every due delivery is followed by
    /// DELIVERY_BATCH_WAIT before the next lease.
    async fn work(self, shop_id: Uuid, endpoint_id: Uuid) {
        let concurrency = self.config.delivery_endpoint_concurrency as usize;
        let mut size = concurrency;
        while !*self.shutdown.borrow() {
            let leased = match deliveries::lease(
                &self.pool,
                shop_id,
                endpoint_id,
                size as i64,
                self.config.delivery_lease(size),
            )
            .await
            {
                Ok(leased) if !leased.is_empty() => leased,
                Ok(_) => {
                    self.fail_deleted(shop_id, endpoint_id).await;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, endpoint = %endpoint_id, "leasing deliveries failed");
                    break;
                }
            };
            // Fewer than asked for: every due delivery is in this round.
            let caught_up = leased.len() < size;
            let round: Vec<(deliveries::Leased, deliveries::Attempt)> = futures_util::stream::iter(leased)
                .map(|d| self.post(d))
                .buffer_unordered(concurrency)
                .filter_map(std::future::ready)
                .collect()
                .await;
            let all_delivered = round.iter().all(|(_, a)| a.delivered());
            self.record(&round).await;
            size = if all_delivered {
                (size * 2).min(ROUND_MAX.max(concurrency))
            } else {
                concurrency
            };
            if caught_up {
                // What commits meanwhile goes in one round, not in many
                // of a few deliveries each (run 6g: rounds of 7 cost the
                // database half as much again as the debits themselves).
                let mut shutdown = self.shutdown.clone();
                tokio::select! {
                    _ = shutdown.changed() => {}
                    _ = tokio::time::sleep(self.config.delivery_batch_wait) => {}
                }
            }
        }
        self.busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&endpoint_id);
    }

    /// A deleted endpoint's pending deliveries end `failed`, a batch at a
    /// time.
    async fn fail_deleted(&self, shop_id: Uuid, endpoint_id: Uuid) {
        while !*self.shutdown.borrow() {
            match deliveries::fail_deleted(&self.pool, shop_id, endpoint_id, 1000).await {
                Ok(0) => break,
                Ok(n) => {
                    metrics::counter!("event_deliveries_total", "outcome" => "failed").increment(n);
                }
                Err(e) => {
                    tracing::warn!(error = %e, endpoint = %endpoint_id, "failing a deleted endpoint's deliveries failed");
                    break;
                }
            }
        }
    }

    async fn post(&self, d: deliveries::Leased) -> Option<(deliveries::Leased, deliveries::Attempt)> {
        let _permit = self.permits.acquire().await.ok()?;
        let attempt = deliveries::post(&self.client, &self.destinations, &d).await;
        metrics::histogram!("event_delivery_seconds").record(attempt.latency.as_secs_f64());
        Some((d, attempt))
    }

    async fn record(&self, round: &[(deliveries::Leased, deliveries::Attempt)]) {
        let recorded = match deliveries::record_round(&self.pool, round, &self.config).await {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::warn!(error = %e, deliveries = round.len(), "recording deliveries failed");
                return;
            }
        };
        // One not recorded ran out of its lease while posting: another
        // worker has it.
        let lost = round.len() - recorded.len();
        if lost > 0 {
            metrics::counter!("event_deliveries_total", "outcome" => "lease_lost").increment(lost as u64);
        }
        for (id, status) in recorded {
            metrics::counter!("event_deliveries_total", "outcome" => outcome(&status)).increment(1);
            if status != "delivered"
                && let Some((d, attempt)) = round.iter().find(|(d, _)| d.id == id)
            {
                tracing::warn!(delivery = %d.id, endpoint = %d.endpoint_id, status,
                    code = ?attempt.status_code, error = ?attempt.error, "event delivery failed");
            }
        }
    }

    /// Starts a task for every endpoint with due deliveries not worked here
    /// yet.
    async fn round(&self, tasks: &mut JoinSet<()>) -> Result<(), sqlx::Error> {
        for (shop_id, endpoint_id) in deliveries::due_endpoints(&self.pool).await? {
            let fresh = self
                .busy
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(endpoint_id);
            if fresh {
                tasks.spawn(self.clone().work(shop_id, endpoint_id));
            }
        }
        Ok(())
    }
}

fn outcome(status: &str) -> &'static str {
    match status {
        "delivered" => "delivered",
        "failed" => "failed",
        _ => "retrying",
    }
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut listener = PgListener::connect_with(pool).await.ok()?;
    listener.listen(CHANNEL).await.ok()?;
    Some(listener)
}

/// How often the worker refreshes the backlog gauges.
const GAUGE_INTERVAL: Duration = Duration::from_secs(15);

/// Runs until shutdown, then lets the posts in flight finish (each within
/// DELIVERY_TIMEOUT) and records them; what is left comes back when its
/// lease ends.
pub async fn delivery_loop(
    pool: PgPool,
    config: EventConfig,
    heartbeats: Arc<Heartbeats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let destinations = Destinations::new(&config.endpoint_allowed_hosts);
    let client = match destinations.client(config.delivery_timeout) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for event deliveries");
            return;
        }
    };
    let worker = Worker {
        pool: pool.clone(),
        permits: Arc::new(Semaphore::new(config.delivery_concurrency as usize)),
        busy: Arc::default(),
        shutdown: shutdown.clone(),
        destinations,
        client,
        config: config.clone(),
    };
    heartbeats.register(DELIVERY_LOOP, config.delivery_poll_interval);
    let mut tasks = JoinSet::new();
    let mut listener = None;
    // The backlog gauges need not follow every round (a poll a second).
    let mut gauged: Option<tokio::time::Instant> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        if listener.is_none() {
            listener = listen(&pool).await;
        }
        match worker.round(&mut tasks).await {
            Ok(()) => heartbeats.beat(DELIVERY_LOOP),
            Err(e) => tracing::warn!(error = %e, "event delivery round failed"),
        }
        while tasks.try_join_next().is_some() {}
        if gauged.is_none_or(|at| at.elapsed() >= GAUGE_INTERVAL)
            && let Ok(b) = deliveries::backlog(&pool).await
        {
            gauged = Some(tokio::time::Instant::now());
            metrics::gauge!("event_deliveries_pending").set(b.pending as f64);
            metrics::gauge!("event_delivery_oldest_pending_seconds").set(b.oldest_pending_seconds);
            metrics::gauge!("webhook_endpoints_disabled").set(b.disabled_endpoints as f64);
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
            _ = tokio::time::sleep(config.delivery_poll_interval) => {}
        }
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(config.delivery_lease(ROUND_MAX), drain)
        .await
        .is_err()
    {
        tracing::warn!("event deliveries still posting at shutdown; their leases will run out");
    }
}

/// Deletes events past EVENT_RETENTION once at start, then hourly.
pub async fn event_retention_loop(
    pool: PgPool,
    retention: Duration,
    heartbeats: Arc<Heartbeats>,
    shutdown: watch::Receiver<bool>,
) {
    every(
        EVENT_RETENTION_LOOP,
        Duration::from_secs(3600),
        heartbeats,
        shutdown,
        || async {
            record_run(
                events::delete_expired(&pool, retention, 1000).await,
                "event retention",
                "events_purged_total",
                "event_retention_failures_total",
                false,
            )
            .is_ok()
        },
    )
    .await
}
