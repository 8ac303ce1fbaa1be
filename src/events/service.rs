//! Reading the outbox: the shop's events in stream order, and retention.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{Event, EventError, EventListParams, EventView};
use crate::{
    idempotency::{Completion, query_completing},
    pagination::Page,
    tenants::Tenant,
};

/// One reader of a shop at a time places its events in the stream.
const PLACE_LOCK: i32 = 0x6576_6e74; // "evnt"

/// How many events one placing statement takes.
const PLACE_BATCH: i64 = 1000;

/// Gives every committed event of the shop without a place its `position`,
/// in `seq` order, after every placed one. Runs before each listing, one
/// reader of a shop at a time (an advisory lock): an event that commits
/// later always lands after what any reader was shown, and a wallet's
/// events (whose `seq` follows its row lock) land in their commit order.
async fn place(conn: &mut PgConnection, shop_id: Uuid) -> Result<(), sqlx::Error> {
    loop {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
            .bind(PLACE_LOCK)
            .bind(shop_id)
            .execute(&mut *tx)
            .await?;
        let placed = sqlx::query!(
            "WITH base AS (
                 SELECT coalesce(max(position), 0) AS last FROM events
                  WHERE shop_id = $1 AND position IS NOT NULL
             ),
             next AS (
                 SELECT id, row_number() OVER (ORDER BY seq) AS n FROM (
                     SELECT id, seq FROM events WHERE shop_id = $1 AND position IS NULL
                      ORDER BY seq LIMIT $2) s
             )
             UPDATE events e SET position = base.last + next.n
               FROM base, next WHERE e.shop_id = $1 AND e.id = next.id",
            shop_id,
            PLACE_BATCH
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if (placed as i64) < PLACE_BATCH {
            return Ok(());
        }
    }
}

/// The shop's events oldest first, in stream order (see `place`), after
/// `starting_after`.
pub async fn list(
    conn: &mut PgConnection,
    tenant: Tenant,
    q: &EventListParams,
) -> Result<Page<EventView>, EventError> {
    let limit = q.limit.unwrap_or(20);
    place(&mut *conn, tenant.shop_id).await?;
    let after = match q.starting_after {
        None => None,
        Some(after) => Some(
            sqlx::query_scalar!(
                r#"SELECT position AS "position!" FROM events
                    WHERE shop_id = $1 AND id = $2 AND position IS NOT NULL"#,
                tenant.shop_id,
                after
            )
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| {
                EventError::invalid(
                    "starting_after",
                    "no event of this shop has this id (older than the retention period?)",
                )
            })?,
        ),
    };
    let rows = sqlx::query!(
        r#"SELECT e.id, e.type AS type_, e.created_at, e.data
             FROM events e
            WHERE e.shop_id = $1 AND e.position > coalesce($2::bigint, 0)
              AND ($3::text IS NULL OR e.type = $3)
              AND ($4::timestamptz IS NULL OR e.created_at >= $4)
            ORDER BY e.position
            LIMIT $5"#,
        tenant.shop_id,
        after,
        q.type_.as_deref(),
        q.created_after,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    let events = rows
        .into_iter()
        .map(|r| EventView {
            id: r.id,
            type_: r.type_,
            created_at: r.created_at,
            data: r.data,
        })
        .collect();
    Ok(Page::from_rows(events, limit))
}

pub async fn get(conn: &mut PgConnection, tenant: Tenant, id: Uuid) -> Result<EventView, EventError> {
    let r = sqlx::query!(
        r#"SELECT id, type AS type_, created_at, data FROM events WHERE shop_id = $1 AND id = $2"#,
        tenant.shop_id,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(EventError::NotFound)?;
    Ok(EventView {
        id: r.id,
        type_: r.type_,
        created_at: r.created_at,
        data: r.data,
    })
}

/// Writes events of the shop no request's outcome carries (a job's, an
/// alert's), with their deliveries, through the completing statement.
pub async fn write(conn: &mut PgConnection, shop_id: Uuid, events: Vec<Event>) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let done = Completion::none(shop_id).with_events(events);
    query_completing!(done, "SELECT 1 AS \"one!\"")
        .fetch_one(conn)
        .await?;
    Ok(())
}

/// Deletes events older than `retention` with their deliveries and
/// attempts, shop by shop, in batches. Returns the number of events
/// deleted.
pub async fn delete_expired(
    pool: &PgPool,
    retention: std::time::Duration,
    batch: u32,
) -> Result<u64, sqlx::Error> {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let shops = sqlx::query_scalar!(
        r#"SELECT DISTINCT shop_id AS "shop_id!" FROM events WHERE created_at < $1"#,
        cutoff
    )
    .fetch_all(pool)
    .await?;
    crate::store::delete_in_batches(&shops, batch, |shop, limit| {
        sqlx::query!(
            "WITH doomed AS (
                 SELECT id FROM events WHERE shop_id = $2 AND created_at < $3
                  ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED
             ),
             deliveries AS (
                 DELETE FROM event_deliveries d USING doomed, webhook_endpoints p
                  WHERE d.shop_id = $2 AND p.shop_id = $2 AND d.endpoint_id = p.id
                    AND d.event_id = doomed.id
                 RETURNING d.id
             ),
             attempts AS (
                 DELETE FROM delivery_attempts a USING deliveries
                  WHERE a.shop_id = $2 AND a.delivery_id = deliveries.id
             )
             DELETE FROM events e USING doomed WHERE e.shop_id = $2 AND e.id = doomed.id",
            limit,
            shop,
            cutoff
        )
        .execute(pool)
    })
    .await
}
