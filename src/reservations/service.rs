//! Reservation use cases and their SQL. Each takes the caller's transaction
//! and the tenant; every query filters by the tenant's shop.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, types::Json};
use uuid::Uuid;

use super::{CaptureReservation, CreateReservation, Held, Reservation, ReservationError, ReservationStatus};
use crate::{
    audit,
    config::ReservationConfig,
    events::{self, Event, RESERVATION_EXPIRED},
    executor::{Claimed, Ran, Taken, Unclaimed, Unit},
    idempotency::{Completion, query_completing},
    ledger::{self, Account},
    metadata,
    money::{Currency, Money},
    pagination::{Page, PageParams},
    store,
    tenants::Tenant,
    wallets::{self, Category, Locked, TransactionType, WalletError},
};

/// The request id of audit rows the expiry job writes.
pub const EXPIRY_JOB: &str = "job:reservation-expiry";

/// A `credit_reservations` row.
#[derive(Clone)]
struct Row {
    id: Uuid,
    wallet_id: Uuid,
    currency: String,
    amount: Decimal,
    captured_amount: Decimal,
    status: String,
    reservation_key: Option<String>,
    description: Option<String>,
    metadata: Value,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    settled_at: Option<DateTime<Utc>>,
    wallet_transaction_id: Option<Uuid>,
}

impl Row {
    fn status(&self) -> Result<ReservationStatus, ReservationError> {
        Ok(store::decode("reservation status", &self.status)?)
    }

    fn view(self) -> Result<Reservation, ReservationError> {
        let status = self.status()?;
        let currency = Currency::stored(&self.currency)?;
        Ok(Reservation {
            id: self.id,
            wallet_id: self.wallet_id,
            amount: currency.text(self.amount)?,
            captured_amount: currency.text(self.captured_amount)?,
            currency: currency.code().to_owned(),
            status,
            reservation_key: self.reservation_key,
            description: self.description,
            metadata: metadata::from_json(self.metadata)?,
            expires_at: self.expires_at,
            created_at: self.created_at,
            settled_at: self.settled_at,
            wallet_transaction_id: self.wallet_transaction_id,
        })
    }
}

/// The shop's reservation with this `reservation_key`, or held, or
/// settled, under this request key.
async fn find_where(
    conn: &mut PgConnection,
    tenant: Tenant,
    reservation_key: Option<&str>,
    request_key: Option<&str>,
    settle_key: Option<&str>,
) -> Result<Option<Row>, ReservationError> {
    Ok(sqlx::query_as!(
        Row,
        "SELECT id, wallet_id, currency, amount, captured_amount, status, reservation_key,
                description, metadata, expires_at, created_at, settled_at, wallet_transaction_id
           FROM credit_reservations
          WHERE shop_id = $1
            AND (reservation_key = $2 OR idempotency_key = $3 OR settle_key = $4)",
        tenant.shop_id,
        reservation_key,
        request_key,
        settle_key
    )
    .fetch_optional(conn)
    .await?)
}

async fn find_by_key(
    conn: &mut PgConnection,
    tenant: Tenant,
    key: &str,
) -> Result<Option<Row>, ReservationError> {
    find_where(conn, tenant, Some(key), None, None).await
}

/// A capture or release under `key` settled a reservation before (its
/// idempotency record expired since): its answer, or a refusal when the
/// key made another change.
async fn settled_under(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
    key: &str,
    status: ReservationStatus,
) -> Result<Option<Reservation>, ReservationError> {
    let Some(row) = find_where(conn, tenant, None, None, Some(key)).await? else {
        return Ok(None);
    };
    if row.id != id || row.status()? != status {
        return Err(WalletError::KeyReused.into());
    }
    row.view().map(Some)
}

/// Holds `amount` of a wallet: under the wallet's lock, checks that
/// `available` covers it and moves it into `reserved`. A `reservation_key`
/// already used answers with its reservation (same wallet and amount) or a
/// conflict naming the field that differs.
pub async fn create(
    unit: &mut Unit<'_>,
    key: Unclaimed,
    tenant: Tenant,
    wallet_id: Uuid,
    req: CreateReservation,
    config: &ReservationConfig,
) -> Result<Ran<Held>, ReservationError> {
    let lifetime = match req.expires_in_seconds {
        None => config.default_expiry.as_secs() as i64,
        Some(s) if s as u64 > config.max_expiry.as_secs() => {
            return Err(ReservationError::Invalid(
                "expires_in_seconds",
                format!("must be at most {}", config.max_expiry.as_secs()),
            ));
        }
        Some(s) => s,
    };
    // The wallet's lock claims the key: one round trip less.
    let (claimed, mut wallet) = match wallets::lock(unit, key, tenant, &[wallet_id]).await? {
        Ok(locks) => {
            let (key, wallet, _) = locks.one()?;
            (key, wallet)
        }
        Err(taken) => return Ok(taken.replay()),
    };
    let key = unit.key();
    let conn = unit.conn();
    let amount = Money::parse("amount", &req.amount, wallet.currency)?.amount();
    if let Some(earlier) = find_where(conn, tenant, None, Some(key), None).await? {
        // Held under this request key before (its record expired since).
        if earlier.wallet_id != wallet_id
            || earlier.amount != amount
            || earlier.reservation_key != req.reservation_key
        {
            return Err(WalletError::KeyReused.into());
        }
        return Ok(claimed.earlier(Held {
            reservation: earlier.view()?,
            existing: true,
        }));
    }
    if let Some(key) = &req.reservation_key
        && let Some(existing) = find_by_key(conn, tenant, key).await?
    {
        // Read after the wallet's lock: a hold with this key on this wallet
        // has committed by now.
        let differs = if existing.wallet_id != wallet_id {
            Some(("wallet_id", existing.wallet_id.to_string()))
        } else if existing.amount != amount {
            Some(("amount", wallet.currency.text(existing.amount)?))
        } else {
            None
        };
        if let Some((field, value)) = differs {
            return Err(ReservationError::KeyConflict {
                key: key.clone(),
                field,
                existing: value,
            });
        }
        return Ok(claimed.answer(Held {
            reservation: existing.view()?,
            existing: true,
        }));
    }
    wallet.ensure_can_spend(amount)?;
    let id = Uuid::now_v7();
    let metadata = req.metadata.unwrap_or_default();
    let expires_at = wallet.at + chrono::Duration::seconds(lifetime);
    // Free live credit in burn order; what it does not cover, the overdraft.
    let (grants, reserved): (Vec<Uuid>, Vec<Decimal>) =
        wallet.grants.reserve(amount, wallet.at).into_iter().unzip();
    let inserted = sqlx::query!(
        "WITH w AS (
             UPDATE wallets SET reserved = reserved + $5, version = version + 1, updated_at = $9
              WHERE shop_id = $1 AND id = $2
             RETURNING 1
         ),
         pinned AS (
             SELECT * FROM UNNEST($12::uuid[], $13::numeric[]) AS p(grant_id, amount)
         ),
         held AS (
             UPDATE credit_grants x SET held = x.held + p.amount
               FROM pinned p WHERE x.shop_id = $1 AND x.wallet_id = $2 AND x.id = p.grant_id
         ),
         allocated AS (
             INSERT INTO reservation_grants (shop_id, reservation_id, grant_id, amount)
             SELECT $1, $3, p.grant_id, p.amount FROM pinned p
         )
         INSERT INTO credit_reservations
             (shop_id, id, wallet_id, currency, amount, reservation_key, description, metadata,
              expires_at, created_at, idempotency_key)
         SELECT $1, $3, $2, $4, $5, $6, $7, $8, $10, $9, $11 FROM w",
        tenant.shop_id,
        wallet_id,
        id,
        wallet.currency.code(),
        amount,
        req.reservation_key,
        req.description,
        Json(&metadata) as _,
        wallet.at,
        expires_at,
        key,
        &grants,
        &reserved,
    )
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => {}
        // The same key on another wallet, committed while this hold was
        // being written (the same wallet would have waited for its lock).
        Err(e) if store::constraint(&e) == Some("credit_reservations_key") => {
            return Err(ReservationError::KeyConflict {
                key: req.reservation_key.unwrap_or_default(),
                field: "wallet_id",
                existing: "another wallet".into(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    metrics::counter!("reservations_created_total").increment(1);
    let reservation = Reservation {
        id,
        wallet_id,
        amount: wallet.currency.text(amount)?,
        captured_amount: wallet.currency.text(Decimal::ZERO)?,
        currency: wallet.currency.code().to_owned(),
        status: ReservationStatus::Active,
        reservation_key: req.reservation_key,
        description: req.description,
        metadata,
        expires_at,
        created_at: wallet.at,
        settled_at: None,
        wallet_transaction_id: None,
    };
    Ok(claimed.answer(Held {
        reservation,
        existing: false,
    }))
}

/// An active reservation and its wallet, both locked, with the database's
/// clock read once both locks are granted, and what it reserved from each
/// grant.
struct Settling {
    row: Row,
    wallet: Locked,
    own: Vec<(Uuid, Decimal)>,
}

/// Locks the reservation, then its wallet with the statement that claims
/// the request's key, and refuses a reservation that is no longer active.
async fn lock(
    unit: &mut Unit<'_>,
    key: Unclaimed,
    tenant: Tenant,
    id: Uuid,
) -> Result<Result<(Claimed, Settling), Taken>, ReservationError> {
    let row = sqlx::query_as!(
        Row,
        "SELECT id, wallet_id, currency, amount, captured_amount, status, reservation_key,
                description, metadata, expires_at, created_at, settled_at, wallet_transaction_id
           FROM credit_reservations WHERE shop_id = $1 AND id = $2 FOR UPDATE",
        tenant.shop_id,
        id
    )
    .fetch_optional(unit.conn())
    .await?
    .ok_or(ReservationError::NotFound)?;
    match row.status()? {
        ReservationStatus::Active => {}
        ReservationStatus::Expired => return Err(ReservationError::Expired),
        other => return Err(ReservationError::InvalidState(other.as_str())),
    }
    let (key, wallet, _) = match wallets::lock(unit, key, tenant, &[row.wallet_id]).await? {
        Ok(locks) => locks.one()?,
        Err(taken) => return Ok(Err(taken)),
    };
    // Read under the wallet's lock: an overdraft spending other holds'
    // credit changes them only under it.
    let own = sqlx::query!(
        "SELECT grant_id, amount FROM reservation_grants
          WHERE shop_id = $1 AND reservation_id = $2 ORDER BY grant_id",
        tenant.shop_id,
        id
    )
    .fetch_all(unit.conn())
    .await?
    .into_iter()
    .map(|r| (r.grant_id, r.amount))
    .collect();
    Ok(Ok((key, Settling { row, wallet, own })))
}

impl Settling {
    /// Past `expires_at` by the database's clock.
    fn expired(&self) -> bool {
        self.wallet.at >= self.row.expires_at
    }

    /// Frees the whole hold and ends the reservation in `status`, with the
    /// audit row of an expiry a request found (the executor audits the
    /// request's own action).
    async fn free(
        mut self,
        conn: &mut PgConnection,
        tenant: Tenant,
        status: ReservationStatus,
        expired_by: Option<&str>,
        settle_key: Option<&str>,
        request_id: &str,
    ) -> Result<Reservation, ReservationError> {
        let entry = expired_by.map(|request_id| audit::Entry {
            shop_id: tenant.shop_id,
            api_key_id: Some(tenant.key_id),
            action: "reservation.expire",
            entity: "reservation",
            entity_id: self.row.id,
            request_id,
            detail: None,
        });
        // An expiry a request found is told as the job's would be; the
        // request's own capture or release is told by the executor.
        let mut events = Vec::new();
        if expired_by.is_some() {
            let mut ended = self.row.clone();
            ended.status = status.as_str().to_owned();
            ended.settled_at = Some(self.wallet.at);
            events.push(Event::new(RESERVATION_EXPIRED, ended.wallet_id, &ended.view()?)?);
        }
        let done = Completion::audit_only(tenant.shop_id, entry.as_slice()).with_events(events);
        query_completing!(
            done,
            ", w AS (
                 UPDATE wallets SET reserved = reserved - $20, version = version + 1, updated_at = $22
                  WHERE shop_id = $1 AND id = $21
             ),
             freed AS (
                 DELETE FROM reservation_grants WHERE shop_id = $1 AND reservation_id = $19
                 RETURNING grant_id, amount
             ),
             unheld AS (
                 UPDATE credit_grants x SET held = x.held - f.amount
                   FROM freed f WHERE x.shop_id = $1 AND x.wallet_id = $21 AND x.id = f.grant_id
             )
             UPDATE credit_reservations SET status = $23, settled_at = $22, settle_key = $24
              WHERE shop_id = $1 AND id = $19",
            self.row.id,
            self.row.amount,
            self.row.wallet_id,
            self.wallet.at,
            status.as_str(),
            settle_key,
        )
        .execute(&mut *conn)
        .await?;
        // What it frees from a grant past its deadline expires now.
        self.wallet.grants.unreserve(&self.own);
        wallets::expire_due(
            conn,
            tenant.shop_id,
            Some(tenant.key_id),
            request_id,
            &mut self.wallet,
        )
        .await?;
        self.row.status = status.as_str().to_owned();
        self.row.settled_at = Some(self.wallet.at);
        self.row.view()
    }

    /// A late capture or release: the stale hold is freed now, in this
    /// transaction, and the caller is told it expired.
    async fn expire(self, conn: &mut PgConnection, tenant: Tenant, request_id: &str) -> ReservationError {
        match self
            .free(
                conn,
                tenant,
                ReservationStatus::Expired,
                Some(request_id),
                None,
                request_id,
            )
            .await
        {
            Ok(_) => {
                metrics::counter!("reservations_expired_total").increment(1);
                ReservationError::Expired
            }
            Err(e) => e,
        }
    }
}

/// Debits `amount` (default: the whole hold) through the journal (wallet →
/// revenue) and frees the rest. At or after `expires_at` it refuses and
/// releases the hold instead.
pub async fn capture(
    unit: &mut Unit<'_>,
    key: Unclaimed,
    tenant: Tenant,
    id: Uuid,
    req: CaptureReservation,
) -> Result<Ran<Reservation>, ReservationError> {
    let (request_id, request_key) = (unit.request_id(), unit.key());
    if let Some(earlier) =
        settled_under(unit.conn(), tenant, id, request_key, ReservationStatus::Captured).await?
    {
        if let Some(raw) = &req.amount {
            let asked = Money::parse("amount", raw, Currency::stored(&earlier.currency)?)?;
            if earlier.captured_amount.parse::<Decimal>().ok() != Some(asked.amount()) {
                return Err(WalletError::KeyReused.into());
            }
        }
        return claim_for_earlier(unit, key, tenant, earlier).await;
    }
    let (key, mut s) = match lock(unit, key, tenant, id).await? {
        Ok(locked) => locked,
        Err(taken) => return Ok(taken.replay()),
    };
    let conn = unit.conn();
    if s.expired() {
        return Err(s.expire(conn, tenant, request_id).await);
    }
    let held = s.row.amount;
    let amount = match &req.amount {
        None => held,
        Some(raw) => Money::parse("amount", raw, s.wallet.currency)?.amount(),
    };
    if amount > held {
        return Err(ReservationError::Invalid(
            "amount",
            format!(
                "must not exceed the held amount ({})",
                s.wallet.currency.text(held)?
            ),
        ));
    }
    let metadata = metadata::from_json(s.row.metadata.clone())?;
    let tx = wallets::move_locked(
        conn,
        tenant,
        &mut s.wallet,
        wallets::LockedMovement {
            type_: TransactionType::Debit,
            amount,
            release: held,
            category: Category::ReservationCapture,
            kind: ledger::Kind::ReservationCapture,
            counterpart: Account::Revenue,
            description: s.row.description.as_deref(),
            metadata: &metadata,
            grants: wallets::GrantPlan::Spend {
                hold: Some((id, &s.own)),
            },
        },
    )
    .await?;
    sqlx::query!(
        "WITH settled AS (
             DELETE FROM reservation_grants WHERE shop_id = $1 AND reservation_id = $2
         )
         UPDATE credit_reservations
            SET status = 'captured', captured_amount = $3, settled_at = $4, wallet_transaction_id = $5,
                settle_key = $6
          WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
        id,
        amount,
        s.wallet.at,
        tx.id,
        request_key
    )
    .execute(&mut *conn)
    .await?;
    // What the capture freed from a grant past its deadline expires now.
    wallets::expire_due(
        conn,
        tenant.shop_id,
        Some(tenant.key_id),
        request_id,
        &mut s.wallet,
    )
    .await?;
    metrics::counter!("reservations_captured_total").increment(1);
    s.row.status = ReservationStatus::Captured.as_str().to_owned();
    s.row.captured_amount = amount;
    s.row.settled_at = Some(s.wallet.at);
    s.row.wallet_transaction_id = Some(tx.id);
    Ok(key.answer(s.row.view()?))
}

/// Frees the whole hold; nothing is posted.
pub async fn release(
    unit: &mut Unit<'_>,
    key: Unclaimed,
    tenant: Tenant,
    id: Uuid,
) -> Result<Ran<Reservation>, ReservationError> {
    let (request_id, request_key) = (unit.request_id(), unit.key());
    if let Some(earlier) =
        settled_under(unit.conn(), tenant, id, request_key, ReservationStatus::Released).await?
    {
        return claim_for_earlier(unit, key, tenant, earlier).await;
    }
    let (key, s) = match lock(unit, key, tenant, id).await? {
        Ok(locked) => locked,
        Err(taken) => return Ok(taken.replay()),
    };
    let conn = unit.conn();
    if s.expired() {
        return Err(s.expire(conn, tenant, request_id).await);
    }
    let released = s
        .free(
            conn,
            tenant,
            ReservationStatus::Released,
            None,
            Some(request_key),
            request_id,
        )
        .await?;
    metrics::counter!("reservations_released_total").increment(1);
    Ok(key.answer(released))
}

/// Answers with a settlement made before under the request's key, once the
/// key is claimed (the wallet's lock claims it).
async fn claim_for_earlier(
    unit: &mut Unit<'_>,
    key: Unclaimed,
    tenant: Tenant,
    earlier: Reservation,
) -> Result<Ran<Reservation>, ReservationError> {
    match wallets::lock(unit, key, tenant, &[earlier.wallet_id]).await? {
        Ok(locks) => Ok(locks.key.earlier(earlier)),
        Err(taken) => Ok(taken.replay()),
    }
}

pub async fn get(conn: &mut PgConnection, tenant: Tenant, id: Uuid) -> Result<Reservation, ReservationError> {
    sqlx::query_as!(
        Row,
        "SELECT id, wallet_id, currency, amount, captured_amount, status, reservation_key,
                description, metadata, expires_at, created_at, settled_at, wallet_transaction_id
           FROM credit_reservations WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(ReservationError::NotFound)?
    .view()
}

/// A wallet's reservations, newest first.
pub async fn list(
    conn: &mut PgConnection,
    tenant: Tenant,
    wallet_id: Uuid,
    status: Option<ReservationStatus>,
    page: &PageParams,
) -> Result<Page<Reservation>, ReservationError> {
    wallets::ensure_exists(conn, tenant, wallet_id).await?;
    let rows = sqlx::query_as!(
        Row,
        "SELECT id, wallet_id, currency, amount, captured_amount, status, reservation_key,
                description, metadata, expires_at, created_at, settled_at, wallet_transaction_id
           FROM credit_reservations
          WHERE shop_id = $1 AND wallet_id = $2
            AND ($3::text IS NULL OR status = $3)
            AND ($4::uuid IS NULL OR id < $4)
          ORDER BY id DESC
          LIMIT $5",
        tenant.shop_id,
        wallet_id,
        status.map(ReservationStatus::as_str),
        page.starting_after,
        page.limit() + 1
    )
    .fetch_all(conn)
    .await?;
    let items = rows.into_iter().map(Row::view).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page.limit()))
}

/// One batch of the expiry job: active holds past `expires_at`, oldest
/// first, each with its wallet, skipping rows a request holds (they are
/// settled by that request or by a later batch). Frees them and marks them
/// expired in one statement, then audits each (per shop, through the audit
/// writer), in one transaction. Returns (holds due in the batch, holds
/// expired).
async fn expire_batch(pool: &PgPool, shop: Uuid, batch: u32) -> Result<(i64, i64), ReservationError> {
    let mut tx = crate::store::begin(pool).await?;
    let rows = sqlx::query!(
        "WITH due AS (
             SELECT shop_id, id, wallet_id, amount FROM credit_reservations
              WHERE shop_id = $2 AND status = 'active' AND expires_at <= now()
              ORDER BY expires_at
              LIMIT $1
                FOR UPDATE SKIP LOCKED
         ),
         free AS (
             SELECT w.shop_id, w.id FROM wallets w
              WHERE w.shop_id = $2 AND w.id IN (SELECT wallet_id FROM due)
                FOR UPDATE SKIP LOCKED
         ),
         go AS (
             SELECT due.* FROM due JOIN free ON free.shop_id = due.shop_id AND free.id = due.wallet_id
         ),
         w AS (
             UPDATE wallets w
                SET reserved = w.reserved - g.total, version = w.version + g.n,
                    updated_at = greatest(now(), w.updated_at)
               FROM (SELECT shop_id, wallet_id, sum(amount) AS total, count(*) AS n
                       FROM go GROUP BY shop_id, wallet_id) g
              WHERE w.shop_id = $2 AND w.shop_id = g.shop_id AND w.id = g.wallet_id
         ),
         r AS (
             UPDATE credit_reservations r SET status = 'expired', settled_at = now()
               FROM go WHERE r.shop_id = $2 AND r.shop_id = go.shop_id AND r.id = go.id
             RETURNING r.shop_id, r.id
         ),
         freed AS (
             DELETE FROM reservation_grants a USING go
              WHERE a.shop_id = $2 AND a.reservation_id = go.id
             RETURNING a.grant_id, a.amount
         ),
         unheld AS (
             UPDATE credit_grants x SET held = x.held - f.amount
               FROM (SELECT grant_id, sum(amount) AS amount FROM freed GROUP BY grant_id) f
              WHERE x.shop_id = $2 AND x.id = f.grant_id
         )
         SELECT (SELECT count(*) FROM due) AS \"due!\", r.shop_id AS \"shop_id?\", r.id AS \"id?\"
           FROM (SELECT 1) one LEFT JOIN r ON true
          ORDER BY r.shop_id",
        batch as i64,
        shop
    )
    .fetch_all(&mut *tx)
    .await?;
    let due = rows.first().map_or(0, |r| r.due);
    let expired: Vec<(Uuid, Uuid)> = rows.iter().filter_map(|r| Some((r.shop_id?, r.id?))).collect();
    for shop in expired.chunk_by(|a, b| a.0 == b.0) {
        let entries: Vec<audit::Entry> = shop
            .iter()
            .map(|&(shop_id, id)| audit::Entry {
                shop_id,
                api_key_id: None,
                action: "reservation.expire",
                entity: "reservation",
                entity_id: id,
                request_id: EXPIRY_JOB,
                detail: None,
            })
            .collect();
        audit::write(&mut tx, shop[0].0, &entries).await?;
        let ids: Vec<Uuid> = shop.iter().map(|&(_, id)| id).collect();
        let ended = sqlx::query_as!(
            Row,
            "SELECT id, wallet_id, currency, amount, captured_amount, status, reservation_key,
                    description, metadata, expires_at, created_at, settled_at, wallet_transaction_id
               FROM credit_reservations WHERE shop_id = $1 AND id = ANY($2) ORDER BY id",
            shop[0].0,
            &ids
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut events = Vec::with_capacity(ended.len());
        for row in ended {
            let view = row.view()?;
            events.push(Event::new(RESERVATION_EXPIRED, view.wallet_id, &view)?);
        }
        events::write(&mut tx, shop[0].0, events).await?;
    }
    tx.commit().await?;
    Ok((due, expired.len() as i64))
}

/// Expires every due hold, shop by shop (each batch on its shop's shard),
/// batch by batch, each batch its own short transaction. Stops a shop early
/// when a whole batch was busy (locked by requests); the next run takes
/// those. Returns the number expired.
pub async fn expire_due(pool: &PgPool, batch: u32) -> Result<u64, ReservationError> {
    let shops = sqlx::query_scalar!(
        r#"SELECT DISTINCT shop_id AS "shop_id!" FROM credit_reservations
            WHERE status = 'active' AND expires_at <= now()"#
    )
    .fetch_all(pool)
    .await?;
    let mut total = 0u64;
    for shop in shops {
        loop {
            let (due, expired) = expire_batch(pool, shop, batch).await?;
            total += expired as u64;
            if due < batch as i64 || expired == 0 {
                break;
            }
        }
    }
    Ok(total)
}

/// Active holds and the amount they hold, per currency.
pub async fn active_holds(pool: &PgPool) -> Result<Vec<(String, i64, Decimal)>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT currency, count(*) AS \"holds!\", sum(amount) AS \"held!\"
           FROM credit_reservations WHERE status = 'active' GROUP BY currency"
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.currency, r.holds, r.held)).collect())
}
