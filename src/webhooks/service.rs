//! Webhook use cases and their SQL: secrets, the receiver's insert, reads,
//! manual retry, stats and retention. Applying events is `apply`; the loop
//! is `worker`.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use rand::{Rng, distributions::Alphanumeric};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{
    EventStatus, EventType, IncomingEvent, Receipt, WebhookError, WebhookEvent, WebhookSecret, WebhookStats,
};
use crate::{
    pagination::{Page, PageParams},
    store,
    tenants::Tenant,
};

/// The channel the receiver notifies and the worker listens on.
pub const CHANNEL: &str = "webhook_events";

pub(crate) fn pg_interval(d: Duration) -> sqlx::postgres::types::PgInterval {
    sqlx::postgres::types::PgInterval {
        months: 0,
        days: 0,
        microseconds: d.as_micros().min(i64::MAX as u128) as i64,
    }
}

/// A new signing secret for the provider; the provider's current ones keep
/// verifying for `grace`.
pub async fn create_secret(
    conn: &mut PgConnection,
    tenant: Tenant,
    provider: &str,
    grace: Duration,
) -> Result<WebhookSecret, WebhookError> {
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    let secret = format!("whsec_{random}");
    let id = Uuid::now_v7();
    let r = sqlx::query!(
        "WITH rotated AS (
             UPDATE webhook_secrets SET expires_at = now() + $5
              WHERE shop_id = $1 AND provider = $3 AND (expires_at IS NULL OR expires_at > now() + $5)
             RETURNING expires_at
         ),
         created AS (
             INSERT INTO webhook_secrets (shop_id, id, provider, secret, created_at)
             VALUES ($1, $2, $3, $4, now())
             RETURNING created_at
         )
         SELECT created.created_at, (SELECT max(expires_at) FROM rotated) AS previous_valid_until
           FROM created",
        tenant.shop_id,
        id,
        provider,
        secret,
        pg_interval(grace),
    )
    .fetch_one(conn)
    .await?;
    Ok(WebhookSecret {
        id,
        provider: provider.to_owned(),
        secret: Some(secret),
        created_at: r.created_at,
        previous_valid_until: r.previous_valid_until,
    })
}

/// The secrets that verify deliveries for (shop, provider) now; empty when
/// the shop or the provider is unknown.
pub async fn verifying_secrets(
    pool: &PgPool,
    shop_id: Uuid,
    provider: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT secret FROM webhook_secrets
          WHERE shop_id = $1 AND provider = $2 AND (expires_at IS NULL OR expires_at > now())
          ORDER BY created_at DESC",
        shop_id,
        provider
    )
    .fetch_all(pool)
    .await
}

/// Stores a verified event once; a known event id changes nothing. The
/// insert notifies the worker when it commits.
pub async fn receive(
    pool: &PgPool,
    shop_id: Uuid,
    provider: &str,
    event: &IncomingEvent,
    payload: &Value,
) -> Result<Receipt, sqlx::Error> {
    let status = if EventType::of(&event.type_).is_some() {
        EventStatus::Pending
    } else {
        EventStatus::Ignored
    };
    let inserted = sqlx::query!(
        "INSERT INTO webhook_events
             (shop_id, id, provider, event_id, type, payload, status, next_attempt_at, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now())
         ON CONFLICT (shop_id, provider, event_id) DO NOTHING",
        shop_id,
        Uuid::now_v7(),
        provider,
        event.id,
        event.type_,
        payload,
        status.as_str(),
    )
    .execute(pool)
    .await?
    .rows_affected();
    if inserted > 0 {
        // After the insert committed, so a worker woken finds the event;
        // its own statement, as Citus cannot run pg_notify (void) inside a
        // distributed one.
        sqlx::query!("SELECT pg_notify($1, '')", CHANNEL)
            .execute(pool)
            .await?;
    }
    Ok(Receipt {
        received: true,
        duplicate: inserted == 0,
    })
}

struct EventRow {
    id: Uuid,
    provider: String,
    event_id: String,
    type_: String,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    next_attempt_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    processed_at: Option<DateTime<Utc>>,
    payload: Value,
    result: Option<Value>,
}

impl EventRow {
    fn view(self) -> Result<WebhookEvent, WebhookError> {
        Ok(WebhookEvent {
            id: self.id,
            provider: self.provider,
            event_id: self.event_id,
            type_: self.type_,
            status: store::decode("webhook event status", &self.status)?,
            attempts: self.attempts,
            last_error: self.last_error,
            next_attempt_at: self.next_attempt_at,
            received_at: self.received_at,
            processed_at: self.processed_at,
            payload: self.payload,
            result: self.result,
        })
    }
}

pub async fn get(conn: &mut PgConnection, tenant: Tenant, id: Uuid) -> Result<WebhookEvent, WebhookError> {
    sqlx::query_as!(
        EventRow,
        "SELECT id, provider, event_id, type AS type_, status, attempts, last_error, next_attempt_at,
                received_at, processed_at, payload, result
           FROM webhook_events WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(WebhookError::NotFound)?
    .view()
}

/// Newest first.
pub async fn list(
    conn: &mut PgConnection,
    tenant: Tenant,
    status: Option<EventStatus>,
    page: &PageParams,
) -> Result<Page<WebhookEvent>, WebhookError> {
    let rows = sqlx::query_as!(
        EventRow,
        "SELECT id, provider, event_id, type AS type_, status, attempts, last_error, next_attempt_at,
                received_at, processed_at, payload, result
           FROM webhook_events
          WHERE shop_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR id < $3)
          ORDER BY id DESC
          LIMIT $4",
        tenant.shop_id,
        status.map(EventStatus::as_str),
        page.starting_after,
        page.limit() + 1
    )
    .fetch_all(conn)
    .await?;
    let events = rows
        .into_iter()
        .map(EventRow::view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(events, page.limit()))
}

/// A failed or dead event is due again now (its attempts are kept: one more
/// failure of a dead event leaves it dead).
pub async fn retry(conn: &mut PgConnection, tenant: Tenant, id: Uuid) -> Result<WebhookEvent, WebhookError> {
    let row = sqlx::query_as!(
        EventRow,
        "UPDATE webhook_events SET status = 'pending', next_attempt_at = now()
          WHERE shop_id = $1 AND id = $2 AND status IN ('failed', 'dead')
         RETURNING id, provider, event_id, type AS type_, status, attempts, last_error, next_attempt_at,
                   received_at, processed_at, payload, result",
        tenant.shop_id,
        id
    )
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => {
            sqlx::query!("SELECT pg_notify($1, '')", CHANNEL)
                .execute(&mut *conn)
                .await?;
            row.view()
        }
        None => {
            let current = get(conn, tenant, id).await?;
            Err(WebhookError::InvalidState(current.status.as_str()))
        }
    }
}

/// Platform-wide counts for operators.
pub async fn stats(pool: &PgPool) -> Result<WebhookStats, sqlx::Error> {
    let rows = sqlx::query!("SELECT status, count(*) AS \"n!\" FROM webhook_events GROUP BY status")
        .fetch_all(pool)
        .await?;
    let by_status: BTreeMap<String, i64> = rows.into_iter().map(|r| (r.status, r.n)).collect();
    let (queue_depth, oldest) = queue(pool).await?;
    Ok(WebhookStats {
        by_status,
        queue_depth,
        oldest_pending_age_seconds: oldest,
    })
}

/// Due events, and the age in seconds of the oldest waiting one.
pub async fn queue(pool: &PgPool) -> Result<(i64, Option<i64>), sqlx::Error> {
    let r = sqlx::query!(
        "SELECT count(*) FILTER (WHERE next_attempt_at <= now()) AS \"due!\",
                extract(epoch FROM now() - min(received_at))::bigint AS oldest
           FROM webhook_events WHERE status IN ('pending', 'failed')"
    )
    .fetch_one(pool)
    .await?;
    Ok((r.due, r.oldest))
}

/// Deletes processed and ignored events received before `retention`, shop
/// by shop (each delete on its shop's shard), in batches
/// (`store::delete_in_batches`). Returns the number deleted.
pub async fn purge(pool: &PgPool, retention: Duration, batch: u32) -> Result<u64, sqlx::Error> {
    let retention = pg_interval(retention);
    let shops = sqlx::query_scalar!(
        r#"SELECT DISTINCT shop_id AS "shop_id!" FROM webhook_events
            WHERE status IN ('processed', 'ignored') AND received_at < now() - $1::interval"#,
        retention
    )
    .fetch_all(pool)
    .await?;
    store::delete_in_batches(&shops, batch, |shop, limit| {
        sqlx::query!(
            "DELETE FROM webhook_events e
              USING (SELECT shop_id, id FROM webhook_events
                      WHERE shop_id = $3 AND status IN ('processed', 'ignored')
                        AND received_at < now() - $1::interval
                      ORDER BY received_at
                      LIMIT $2 FOR UPDATE SKIP LOCKED) doomed
              WHERE e.shop_id = $3 AND e.shop_id = doomed.shop_id AND e.id = doomed.id",
            retention,
            limit,
            shop
        )
        .execute(pool)
    })
    .await
}
