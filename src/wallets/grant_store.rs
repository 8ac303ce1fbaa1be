//! Credit grants' SQL: reading a locked wallet's grants, what a refund may
//! give back, the holds an overdraft lends against, the grant list, and
//! expiry — by the money path and by the job (docs/grants.md).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{
    Category, CreditGrant, GrantStatus, Locked, TransactionType, WalletError,
    grants::{Grant, GrantKind, Grants, Restorable},
    service::{Leg, write_leg},
};
use crate::{
    audit,
    events::Event,
    idempotency::Completion,
    ledger::{self, Account, Posting},
    metadata::{self, Metadata},
    money::Currency,
    pagination::{Page, PageParams},
    store::{self, StoreError},
    tenants::Tenant,
};

/// The request id of the expiry job's audit rows.
pub const GRANT_EXPIRY_JOB: &str = "job:grant-expiry";

fn kind(s: &str) -> Result<GrantKind, StoreError> {
    store::decode("grant kind", s)
}

/// Grants from the lock statement's aggregated columns.
pub(super) fn from_columns(
    ids: Vec<Uuid>,
    kinds: Vec<String>,
    remaining: Vec<Decimal>,
    held: Vec<Decimal>,
    priority: Vec<i16>,
    expires: Vec<Option<DateTime<Utc>>>,
    created: Vec<DateTime<Utc>>,
) -> Result<Grants, StoreError> {
    let n = ids.len();
    if [
        kinds.len(),
        remaining.len(),
        held.len(),
        priority.len(),
        expires.len(),
        created.len(),
    ]
    .iter()
    .any(|&l| l != n)
    {
        return Err(StoreError::broken("grant columns of different lengths"));
    }
    let mut grants = Vec::with_capacity(n);
    for i in 0..n {
        grants.push(Grant {
            id: ids[i],
            kind: kind(&kinds[i])?,
            remaining: remaining[i],
            held: held[i],
            priority: priority[i],
            expires_at: expires[i],
            created_at: created[i],
        });
    }
    Ok(Grants(grants))
}

/// A wallet's grants with credit left, read under its lock.
pub(super) async fn live(
    conn: &mut PgConnection,
    shop_id: Uuid,
    wallet_id: Uuid,
) -> Result<Grants, WalletError> {
    let rows = sqlx::query!(
        "SELECT id, kind, remaining, held, priority, expires_at, created_at
           FROM credit_grants WHERE shop_id = $1 AND wallet_id = $2 AND remaining > 0",
        shop_id,
        wallet_id
    )
    .fetch_all(conn)
    .await?;
    let grants = rows
        .into_iter()
        .map(|r| {
            Ok(Grant {
                id: r.id,
                kind: kind(&r.kind)?,
                remaining: r.remaining,
                held: r.held,
                priority: r.priority,
                expires_at: r.expires_at,
                created_at: r.created_at,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Grants(grants))
}

/// The grants movement `of` took from, in the order it took, each with
/// what is left to give back to it: what it took, less what its refunds
/// (its `refund_of` movements, or the wallet refunds of the invoice
/// payment it made) gave back to it or, for a grant past its deadline, in
/// a grant that replaced it.
pub(super) async fn restorable(
    conn: &mut PgConnection,
    shop_id: Uuid,
    of: Uuid,
) -> Result<Vec<Restorable>, WalletError> {
    let rows = sqlx::query!(
        r#"WITH refunds AS (
               SELECT id FROM wallet_transactions WHERE shop_id = $1 AND refund_of = $2
               UNION ALL
               SELECT r.wallet_transaction_id FROM payment_refunds r
                 JOIN invoice_payments p ON p.shop_id = $1 AND p.id = r.payment_id
                WHERE r.shop_id = $1 AND p.wallet_transaction_id = $2
                  AND r.wallet_transaction_id IS NOT NULL
           )
           SELECT g.id, g.kind, g.priority, g.expires_at, g.created_at, g.expired_at,
                  c.amount + COALESCE((SELECT sum(b.amount) FROM grant_consumptions b
                                        WHERE b.shop_id = $1 AND b.grant_id = g.id
                                          AND b.wallet_transaction_id IN (SELECT id FROM refunds)), 0)
                           - COALESCE((SELECT sum(n.amount) FROM credit_grants n
                                        WHERE n.shop_id = $1 AND n.source_grant_id = g.id
                                          AND n.wallet_transaction_id IN (SELECT id FROM refunds)), 0)
                    AS "left!"
             FROM (SELECT grant_id, sum(amount) AS amount, min(line) AS line
                     FROM grant_consumptions
                    WHERE shop_id = $1 AND wallet_transaction_id = $2 AND amount > 0
                    GROUP BY grant_id) c
             JOIN credit_grants g ON g.shop_id = $1 AND g.id = c.grant_id
            ORDER BY c.line"#,
        shop_id,
        of
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Restorable {
                grant_id: r.id,
                left: r.left,
                kind: kind(&r.kind)?,
                priority: r.priority,
                expires_at: r.expires_at,
                expired: r.expired_at.is_some(),
                created_at: r.created_at,
            })
        })
        .collect()
}

/// A movement spent `lent` (grant, amount) of credit other holds had
/// reserved: those holds' reservations from each grant shrink by as much,
/// the newest hold's first (the hold keeps its amount; the overdraft now
/// backs that part).
pub(super) async fn lend_holds(
    conn: &mut PgConnection,
    shop_id: Uuid,
    own: Option<Uuid>,
    lent: &[(Uuid, Decimal)],
) -> Result<(), WalletError> {
    let (grants, amounts): (Vec<Uuid>, Vec<Decimal>) = lent.iter().copied().unzip();
    sqlx::query!(
        "WITH lent AS (
             SELECT * FROM UNNEST($2::uuid[], $3::numeric[]) AS l(grant_id, amount)
         ),
         shares AS (
             SELECT r.reservation_id, r.grant_id,
                    LEAST(r.amount, GREATEST(l.amount - (sum(r.amount) OVER (
                        PARTITION BY r.grant_id ORDER BY r.reservation_id DESC) - r.amount), 0)) AS take
               FROM reservation_grants r JOIN lent l ON l.grant_id = r.grant_id
              WHERE r.shop_id = $1 AND r.reservation_id IS DISTINCT FROM $4
         ),
         gone AS (
             DELETE FROM reservation_grants r USING shares s
              WHERE r.shop_id = $1 AND r.reservation_id = s.reservation_id AND r.grant_id = s.grant_id
                AND s.take >= r.amount
         )
         UPDATE reservation_grants r SET amount = r.amount - s.take
           FROM shares s
          WHERE r.shop_id = $1 AND r.reservation_id = s.reservation_id AND r.grant_id = s.grant_id
            AND s.take > 0 AND s.take < r.amount",
        shop_id,
        &grants,
        &amounts,
        own
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Expires the free credit of `wallet`'s grants past their deadline at
/// the transaction's time: one `grant_expired` movement per grant (wallet
/// → breakage) with its audit row. `wallet` is locked by the caller and
/// holds the new balance and grants afterwards.
pub async fn expire_due(
    conn: &mut PgConnection,
    shop_id: Uuid,
    api_key_id: Option<Uuid>,
    request_id: &str,
    wallet: &mut Locked,
) -> Result<(), WalletError> {
    for grant in wallet.grants.due(wallet.at) {
        let Some(writes) = wallet.grants.expire(grant.id) else {
            continue;
        };
        let amount = writes.used();
        let posting = Posting::new(ledger::Kind::GrantExpiry, wallet.currency).transfer(
            Account::Wallet(wallet.id),
            Account::Breakage,
            amount,
        );
        let metadata = Metadata::default();
        let leg = Leg {
            id: Uuid::now_v7(),
            wallet: &*wallet,
            type_: TransactionType::Debit,
            category: Category::GrantExpired,
            amount,
            description: None,
            metadata: &metadata,
            key: None,
            transfer_id: None,
            refund_of: None,
            journal_id: Uuid::now_v7(),
            release: Decimal::ZERO,
            grants: writes,
        };
        let entry = audit::Entry {
            shop_id,
            api_key_id,
            action: "grant.expire",
            entity: "grant",
            entity_id: grant.id,
            request_id,
            detail: None,
        };
        // Its event's data is the expiry movement, whose consumptions name
        // the grant and what left it.
        let event = Event::new(crate::events::GRANT_EXPIRED, wallet.id, &leg.view()?)?;
        let done = Completion::audit_only(shop_id, std::slice::from_ref(&entry)).with_events(vec![event]);
        let (_, delta) = write_leg(&mut *conn, leg, &posting, done, None).await?;
        wallet.balance += delta;
        metrics::counter!("grants_expired_total").increment(1);
    }
    Ok(())
}

/// One batch of the expiry job on one shop: locks the wallets of the
/// grants due soonest, skipping wallets a request holds (that request
/// expires them itself, or a later batch does), reads their grants under
/// the lock and expires what is due. Returns (wallets due in the batch,
/// grants expired).
async fn expire_batch(pool: &PgPool, shop_id: Uuid, batch: u32) -> Result<(i64, u64), WalletError> {
    let mut tx = crate::store::begin(pool).await?;
    let locked = sqlx::query!(
        "WITH due AS (
             SELECT DISTINCT wallet_id FROM (
                 SELECT wallet_id FROM credit_grants
                  WHERE shop_id = $1 AND remaining > held AND expires_at <= now()
                  ORDER BY expires_at LIMIT $2) d
         ),
         locked AS (
             SELECT w.id, w.currency, w.balance, w.reserved, w.overdraft_limit,
                    greatest(clock_timestamp(), w.updated_at) AS at
               FROM wallets w
              WHERE w.shop_id = $1 AND w.id IN (SELECT wallet_id FROM due)
              ORDER BY w.id
                FOR UPDATE SKIP LOCKED
         )
         SELECT (SELECT count(*) FROM due) AS \"due!\", l.id AS \"id?\", l.currency AS \"currency?\",
                l.balance AS \"balance?\", l.reserved AS \"reserved?\",
                l.overdraft_limit AS \"overdraft_limit?\", l.at AS \"at?\"
           FROM (SELECT 1) one LEFT JOIN locked l ON true",
        shop_id,
        batch as i64
    )
    .fetch_all(&mut *tx)
    .await?;
    let due = locked.first().map_or(0, |r| r.due);
    let mut expired = 0u64;
    for r in locked {
        let (Some(id), Some(currency), Some(balance), Some(reserved), Some(overdraft_limit), Some(at)) =
            (r.id, r.currency, r.balance, r.reserved, r.overdraft_limit, r.at)
        else {
            continue;
        };
        let mut wallet = Locked {
            id,
            currency: Currency::stored(&currency)?,
            balance,
            reserved,
            overdraft_limit,
            at,
            grants: live(&mut tx, shop_id, id).await?,
            // An expiry may take `available` below an alert: check.
            has_alerts: true,
        };
        expired += wallet.grants.due(at).len() as u64;
        expire_due(&mut tx, shop_id, None, GRANT_EXPIRY_JOB, &mut wallet).await?;
    }
    tx.commit().await?;
    Ok((due, expired))
}

/// Expires every grant past its deadline, shop by shop (each batch on its
/// shop's shard), batch by batch, each batch its own short transaction.
/// Stops a shop early when a batch expired nothing (its wallets were busy);
/// the next run takes those. Returns the number of grants expired.
pub async fn expire_grants(pool: &PgPool, batch: u32) -> Result<u64, WalletError> {
    let shops = sqlx::query_scalar!(
        r#"SELECT DISTINCT shop_id AS "shop_id!" FROM credit_grants
            WHERE remaining > held AND expires_at <= now()"#
    )
    .fetch_all(pool)
    .await?;
    let mut total = 0;
    for shop in shops {
        loop {
            let (due, expired) = expire_batch(pool, shop, batch).await?;
            total += expired;
            if due < batch as i64 || expired == 0 {
                break;
            }
        }
    }
    Ok(total)
}

/// A `credit_grants` row with its wallet's currency.
struct Row {
    id: Uuid,
    wallet_id: Uuid,
    kind: String,
    amount: Decimal,
    remaining: Decimal,
    held: Decimal,
    expired: Decimal,
    currency: String,
    priority: i16,
    expires_at: Option<DateTime<Utc>>,
    expired_at: Option<DateTime<Utc>>,
    wallet_transaction_id: Option<Uuid>,
    source_grant_id: Option<Uuid>,
    metadata: Value,
    created_at: DateTime<Utc>,
}

impl Row {
    fn view(self, now: DateTime<Utc>) -> Result<CreditGrant, WalletError> {
        let currency = Currency::stored(&self.currency)?;
        let status = if self.expires_at.is_some_and(|e| e <= now) {
            GrantStatus::Expired
        } else if self.remaining.is_zero() {
            GrantStatus::Depleted
        } else {
            GrantStatus::Active
        };
        Ok(CreditGrant {
            id: self.id,
            wallet_id: self.wallet_id,
            kind: kind(&self.kind)?,
            status,
            amount: currency.text(self.amount)?,
            remaining: currency.text(self.remaining)?,
            held: currency.text(self.held)?,
            expired_amount: currency.text(self.expired)?,
            currency: currency.code().to_owned(),
            priority: self.priority,
            expires_at: self.expires_at,
            expired_at: self.expired_at,
            wallet_transaction_id: self.wallet_transaction_id,
            source_grant_id: self.source_grant_id,
            metadata: metadata::from_json(self.metadata)?,
            created_at: self.created_at,
        })
    }
}

/// A wallet's grants, newest first, optionally of one status.
pub async fn grants(
    conn: &mut PgConnection,
    tenant: Tenant,
    wallet_id: Uuid,
    status: Option<GrantStatus>,
    page: &PageParams,
) -> Result<Page<CreditGrant>, WalletError> {
    super::ensure_exists(conn, tenant, wallet_id).await?;
    // One clock for the filter and the statuses it shows.
    let now = Utc::now();
    let rows = sqlx::query_as!(
        Row,
        "SELECT g.id, g.wallet_id, g.kind, g.amount, g.remaining, g.held, g.expired, w.currency,
                g.priority, g.expires_at, g.expired_at, g.wallet_transaction_id, g.source_grant_id,
                g.metadata, g.created_at
           FROM credit_grants g
           JOIN wallets w ON w.shop_id = g.shop_id AND w.id = g.wallet_id
          WHERE g.shop_id = $1 AND w.shop_id = $1 AND g.wallet_id = $2
            AND ($3::text IS NULL
                 OR ($3 = 'expired' AND g.expires_at <= $4)
                 OR ($3 = 'active' AND g.remaining > 0 AND (g.expires_at IS NULL OR g.expires_at > $4))
                 OR ($3 = 'depleted' AND g.remaining = 0 AND (g.expires_at IS NULL OR g.expires_at > $4)))
            AND ($5::uuid IS NULL OR g.id < $5)
          ORDER BY g.id DESC
          LIMIT $6",
        tenant.shop_id,
        wallet_id,
        status.map(GrantStatus::as_str),
        now,
        page.starting_after,
        page.limit() + 1
    )
    .fetch_all(conn)
    .await?;
    let items = rows
        .into_iter()
        .map(|r| r.view(now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page.limit()))
}
