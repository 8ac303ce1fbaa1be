//! Wallet use cases and their SQL. Each takes the caller's transaction and
//! the tenant; every query filters by the tenant's shop.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::{PgConnection, types::Json};
use uuid::Uuid;

use super::{
    Category, Consumption, CreateWallet, CreditCategory, CreditRequest, DebitCategory, DebitRequest,
    GrantAmount, MovementRefund, RefundRequest, TransactionType, Transfer, TransferRequest, Wallet,
    WalletError, WalletTransaction, grant_store,
    grants::{GrantSpec, GrantWrites, Grants},
};
use crate::{
    executor::{Claimed, Ran, Taken, Unclaimed, Unit},
    idempotency::{ClaimParams, Completion, query_claiming, query_completing},
    ledger::{self, Account, Posting},
    metadata::{self, Metadata},
    money::{Currency, Decimalish, InvalidAmount, Money},
    pagination::{Page, PageParams},
    store::{self, StoreError},
    tenants::Tenant,
};

#[allow(clippy::too_many_arguments)]
fn wallet_view(
    id: Uuid,
    customer_ref: String,
    currency: Currency,
    balance: Decimal,
    reserved: Decimal,
    overdraft_limit: Decimal,
    version: i64,
    metadata: Metadata,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    (paid, granted): (Decimal, Decimal),
) -> Result<Wallet, WalletError> {
    Ok(Wallet {
        id,
        customer_ref,
        currency: currency.code().to_owned(),
        balance: currency.text(balance)?,
        balance_paid: currency.text(paid)?,
        balance_granted: currency.text(granted)?,
        reserved: currency.text(reserved)?,
        available: currency.text(balance - reserved)?,
        overdraft_limit: currency.text(overdraft_limit)?,
        version,
        metadata,
        created_at,
        updated_at,
    })
}

pub async fn create(
    conn: &mut PgConnection,
    tenant: Tenant,
    req: CreateWallet,
) -> Result<Wallet, WalletError> {
    let currency = Currency::parse(&req.currency).map_err(|error| InvalidAmount {
        field: "currency",
        error,
    })?;
    let overdraft_limit = match &req.overdraft_limit {
        None => Decimal::ZERO,
        Some(raw) => Decimalish::parse(raw)
            .and_then(|d| d.in_currency(currency))
            .map_err(|error| InvalidAmount {
                field: "overdraft_limit",
                error,
            })?,
    };
    let id = Uuid::now_v7();
    let metadata = req.metadata.unwrap_or_default();
    let r = sqlx::query!(
        "INSERT INTO wallets (shop_id, id, customer_ref, currency, overdraft_limit, metadata)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING balance, reserved, version, created_at, updated_at",
        tenant.shop_id,
        id,
        req.customer_ref,
        currency.code(),
        overdraft_limit,
        Json(&metadata) as _,
    )
    .fetch_one(conn)
    .await?;
    wallet_view(
        id,
        req.customer_ref,
        currency,
        r.balance,
        r.reserved,
        overdraft_limit,
        r.version,
        metadata,
        r.created_at,
        r.updated_at,
        (Decimal::ZERO, Decimal::ZERO),
    )
}

pub async fn get(conn: &mut PgConnection, tenant: Tenant, id: Uuid) -> Result<Wallet, WalletError> {
    get_in_shop(conn, tenant.shop_id, id).await
}

/// The wallet as `get` shows it, for work done on the shop's behalf
/// without a request (an event's data).
pub async fn get_in_shop(conn: &mut PgConnection, shop_id: Uuid, id: Uuid) -> Result<Wallet, WalletError> {
    let r = sqlx::query!(
        "SELECT w.id, w.customer_ref, w.currency, w.balance, w.reserved, w.overdraft_limit, w.version,
                w.metadata, w.created_at, w.updated_at, g.paid AS \"paid!\", g.granted AS \"granted!\"
           FROM wallets w
           LEFT JOIN LATERAL (
               SELECT COALESCE(sum(x.remaining) FILTER (WHERE x.kind = 'paid'), 0) AS paid,
                      COALESCE(sum(x.remaining) FILTER (WHERE x.kind = 'granted'), 0) AS granted
                 FROM credit_grants x
                WHERE x.shop_id = $1 AND x.wallet_id = w.id AND x.remaining > 0) g ON true
          WHERE w.shop_id = $1 AND w.id = $2",
        shop_id,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(WalletError::NotFound)?;
    wallet_view(
        r.id,
        r.customer_ref,
        Currency::stored(&r.currency)?,
        r.balance,
        r.reserved,
        r.overdraft_limit,
        r.version,
        metadata::from_json(r.metadata)?,
        r.created_at,
        r.updated_at,
        (r.paid, r.granted),
    )
}

/// Newest first.
pub async fn list(
    conn: &mut PgConnection,
    tenant: Tenant,
    customer_ref: Option<&str>,
    page: &PageParams,
) -> Result<Page<Wallet>, WalletError> {
    let rows = sqlx::query!(
        "SELECT w.id, w.customer_ref, w.currency, w.balance, w.reserved, w.overdraft_limit, w.version,
                w.metadata, w.created_at, w.updated_at, g.paid AS \"paid!\", g.granted AS \"granted!\"
           FROM wallets w
           LEFT JOIN LATERAL (
               SELECT COALESCE(sum(x.remaining) FILTER (WHERE x.kind = 'paid'), 0) AS paid,
                      COALESCE(sum(x.remaining) FILTER (WHERE x.kind = 'granted'), 0) AS granted
                 FROM credit_grants x
                WHERE x.shop_id = $1 AND x.wallet_id = w.id AND x.remaining > 0) g ON true
          WHERE w.shop_id = $1
            AND ($2::text IS NULL OR w.customer_ref = $2)
            AND ($3::uuid IS NULL OR w.id < $3)
          ORDER BY w.id DESC
          LIMIT $4",
        tenant.shop_id,
        customer_ref,
        page.starting_after,
        page.limit() + 1
    )
    .fetch_all(conn)
    .await?;
    let wallets = rows
        .into_iter()
        .map(|r| {
            wallet_view(
                r.id,
                r.customer_ref,
                Currency::stored(&r.currency)?,
                r.balance,
                r.reserved,
                r.overdraft_limit,
                r.version,
                metadata::from_json(r.metadata)?,
                r.created_at,
                r.updated_at,
                (r.paid, r.granted),
            )
        })
        .collect::<Result<Vec<_>, WalletError>>()?;
    Ok(Page::from_rows(wallets, page.limit()))
}

/// A wallet row locked for the rest of the transaction, with its grants.
pub struct Locked {
    pub id: Uuid,
    pub currency: Currency,
    pub balance: Decimal,
    pub reserved: Decimal,
    pub overdraft_limit: Decimal,
    /// The transaction's time: every row it writes carries it.
    pub at: DateTime<Utc>,
    /// Its grants with credit left, as of the lock.
    pub grants: Grants,
    /// Whether it has balance alerts (a movement then checks them).
    pub has_alerts: bool,
}

impl Locked {
    /// Whether `available` covers `amount`, down to `-overdraft_limit`.
    pub fn ensure_can_spend(&self, amount: Decimal) -> Result<(), WalletError> {
        if self.balance - self.reserved - amount < -self.overdraft_limit {
            return Err(WalletError::InsufficientFunds);
        }
        Ok(())
    }
}

/// Wallets locked by one statement, with the key now this transaction's.
pub struct Locks {
    pub key: Claimed,
    /// In the order asked for.
    pub wallets: Vec<Locked>,
    /// A movement under the request's key made before (its idempotency
    /// record has expired since).
    pub earlier: Option<Uuid>,
}

impl Locks {
    /// The one wallet locked, for a request that locks one.
    pub fn one(mut self) -> Result<(Claimed, Locked, Option<Uuid>), WalletError> {
        let wallet = self.wallets.pop().ok_or(WalletError::NotFound)?;
        Ok((self.key, wallet, self.earlier))
    }
}

/// Claims the request's key and locks the shop's wallets `ids` in one
/// statement (the lean shape), then expires what their grants hold past
/// its deadline. `Err(Taken)`: another request has the key.
pub async fn lock(
    unit: &mut Unit<'_>,
    key: Unclaimed,
    tenant: Tenant,
    ids: &[Uuid],
) -> Result<Result<Locks, Taken>, WalletError> {
    let (conn, claim, claiming) = unit.claim(key);
    let (ours, wallets, earlier) = lock_rows(conn, claim, false, tenant, ids).await?;
    let key = match unit.claimed(claiming, ours) {
        Ok(key) => key,
        Err(taken) => return Ok(Err(taken)),
    };
    let mut wallets = in_order(wallets, ids)?;
    expire_due_in_request(unit, tenant, &mut wallets).await?;
    Ok(Ok(Locks {
        key,
        wallets,
        earlier,
    }))
}

/// Locks one wallet of the shop under a key the transaction holds
/// (another domain's use case).
pub async fn lock_one(
    unit: &mut Unit<'_>,
    key: Claimed,
    tenant: Tenant,
    wallet_id: Uuid,
) -> Result<(Claimed, Locked), WalletError> {
    let (key, mut wallets) = lock_many(unit, key, tenant, &[wallet_id]).await?;
    let wallet = wallets.pop().ok_or(WalletError::NotFound)?;
    Ok((key, wallet))
}

/// Locks the shop's wallets `ids` (in id order, as every wallet lock)
/// under a key the transaction holds; they come back in the order asked,
/// with what their grants held past its deadline expired.
pub async fn lock_many(
    unit: &mut Unit<'_>,
    key: Claimed,
    tenant: Tenant,
    ids: &[Uuid],
) -> Result<(Claimed, Vec<Locked>), WalletError> {
    let claim = unit.held(&key);
    let (_, wallets, _) = lock_rows(unit.conn(), claim, true, tenant, ids).await?;
    let mut wallets = in_order(wallets, ids)?;
    expire_due_in_request(unit, tenant, &mut wallets).await?;
    Ok((key, wallets))
}

/// A request's money path expires what it finds due, exactly as the job
/// would, before it moves anything: no movement spends a grant at or after
/// its deadline, whether or not the job has run.
pub(super) async fn expire_due_in_request(
    unit: &mut Unit<'_>,
    tenant: Tenant,
    wallets: &mut [Locked],
) -> Result<(), WalletError> {
    let request_id = unit.request_id();
    for wallet in wallets {
        grant_store::expire_due(
            unit.conn(),
            tenant.shop_id,
            Some(tenant.key_id),
            request_id,
            wallet,
        )
        .await?;
    }
    Ok(())
}

/// The wallet lock, the only statement that locks wallet rows for a
/// movement: locks the shop's wallets `ids` for the rest of the
/// transaction in id order, so requests locking the same wallets queue
/// instead of deadlocking, and reads the clock above the locks once they
/// are granted. It claims the key first unless `held` (then the claim's
/// insert and takeover find the transaction's own row and change nothing).
///
/// It reads the wallets' grants too, in the statement's snapshot, which
/// predates the lock when the lock had to wait: they are current only if
/// the wallet's version in that snapshot is the locked row's (every change
/// to grants bumps it), and are read again otherwise.
pub(super) async fn lock_rows(
    conn: &mut PgConnection,
    claim: ClaimParams<'_>,
    held: bool,
    tenant: Tenant,
    ids: &[Uuid],
) -> Result<(bool, Vec<Locked>, Option<Uuid>), WalletError> {
    let rows = query_claiming!(
        claim,
        ", locked AS (\
             SELECT w.id, w.currency, w.balance, w.reserved, w.overdraft_limit, w.version, \
                    greatest(clock_timestamp(), w.updated_at) AS at, t.id AS earlier \
               FROM wallets w \
               LEFT JOIN wallet_transactions t ON t.shop_id = w.shop_id AND t.idempotency_key = $2 \
              WHERE w.shop_id = $5 AND w.id = ANY($6) AND ($7 OR EXISTS (SELECT 1 FROM ours)) \
              ORDER BY w.id \
                FOR UPDATE OF w) \
         SELECT EXISTS (SELECT 1 FROM ours) AS \"ours!\", l.id AS \"id?\", \
                l.currency AS \"currency?\", l.balance AS \"balance?\", \
                l.reserved AS \"reserved?\", l.overdraft_limit AS \"overdraft_limit?\", \
                l.at AS \"at?\", l.earlier, l.version = s.version AS \"current?\", \
                g.ids AS \"grant_ids?: Vec<Uuid>\", g.kinds AS \"grant_kinds?: Vec<String>\", \
                g.remaining AS \"grant_remaining?: Vec<Decimal>\", g.held AS \"grant_held?: Vec<Decimal>\", \
                g.priority AS \"grant_priority?: Vec<i16>\", \
                g.expires AS \"grant_expires?: Vec<Option<DateTime<Utc>>>\", \
                g.created AS \"grant_created?: Vec<DateTime<Utc>>\", \
                ba.any AS \"has_alerts?\" \
           FROM (SELECT 1) one LEFT JOIN locked l ON true \
           LEFT JOIN wallets s ON s.shop_id = $5 AND s.id = l.id \
           LEFT JOIN LATERAL (\
               SELECT count(*) > 0 AS any FROM balance_alerts b \
                WHERE b.shop_id = $5 AND b.wallet_id = l.id) ba ON true \
           LEFT JOIN LATERAL (\
               SELECT array_agg(x.id) AS ids, array_agg(x.kind) AS kinds, \
                      array_agg(x.remaining) AS remaining, array_agg(x.held) AS held, \
                      array_agg(x.priority) AS priority, array_agg(x.expires_at) AS expires, \
                      array_agg(x.created_at) AS created \
                 FROM credit_grants x \
                WHERE x.shop_id = $5 AND x.wallet_id = l.id AND x.remaining > 0) g ON true",
        tenant.shop_id,
        ids,
        held
    )
    .fetch_all(&mut *conn)
    .await?;
    let ours = rows.first().is_some_and(|r| r.ours);
    let earlier = rows.first().and_then(|r| r.earlier);
    let mut wallets = Vec::with_capacity(rows.len());
    for r in rows {
        let (Some(id), Some(currency), Some(balance), Some(reserved), Some(overdraft_limit), Some(at)) =
            (r.id, r.currency, r.balance, r.reserved, r.overdraft_limit, r.at)
        else {
            continue;
        };
        let grants = if r.current == Some(true) {
            grant_store::from_columns(
                r.grant_ids.unwrap_or_default(),
                r.grant_kinds.unwrap_or_default(),
                r.grant_remaining.unwrap_or_default(),
                r.grant_held.unwrap_or_default(),
                r.grant_priority.unwrap_or_default(),
                r.grant_expires.unwrap_or_default(),
                r.grant_created.unwrap_or_default(),
            )?
        } else {
            grant_store::live(&mut *conn, tenant.shop_id, id).await?
        };
        wallets.push(Locked {
            id,
            currency: Currency::stored(&currency)?,
            balance,
            reserved,
            overdraft_limit,
            at,
            grants,
            has_alerts: r.has_alerts.unwrap_or(true),
        });
    }
    Ok((ours, wallets, earlier))
}

/// The locked wallets in the order `ids` names them; `NotFound` when the
/// shop lacks one.
fn in_order(mut locked: Vec<Locked>, ids: &[Uuid]) -> Result<Vec<Locked>, WalletError> {
    ids.iter()
        .map(|id| {
            let i = locked.iter().position(|w| w.id == *id)?;
            Some(locked.swap_remove(i))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or(WalletError::NotFound)
}

/// One leg of a movement: the wallet row's new balance, its history row
/// and what it does to the wallet's grants.
pub(super) struct Leg<'a> {
    pub id: Uuid,
    pub wallet: &'a Locked,
    pub type_: TransactionType,
    pub category: Category,
    pub amount: Decimal,
    pub description: Option<&'a str>,
    pub metadata: &'a Metadata,
    pub key: Option<&'a str>,
    pub transfer_id: Option<Uuid>,
    /// The movement a refund gives back.
    pub refund_of: Option<Uuid>,
    pub journal_id: Uuid,
    /// Freed from the wallet's `reserved` by the same write (a capture).
    pub release: Decimal,
    pub grants: GrantWrites,
}

impl Leg<'_> {
    pub(super) fn delta(&self) -> Decimal {
        match self.type_ {
            TransactionType::Credit => self.amount,
            TransactionType::Debit => -self.amount,
        }
    }

    /// The history row as it will be written: under the wallet's lock its
    /// new balance and the transaction's time are known before the write,
    /// so the answer can be stored by the write itself.
    pub(super) fn view(&self) -> Result<WalletTransaction, WalletError> {
        let currency = self.wallet.currency;
        let balance_after = self
            .wallet
            .balance
            .checked_add(self.delta())
            .ok_or(WalletError::BalanceOverflow)?;
        let uses = self.grants.uses.iter().map(|u| (u.grant_id, u.amount));
        let granted = self.grants.created.iter().map(|g| (g.id, g.amount));
        Ok(WalletTransaction {
            id: self.id,
            wallet_id: self.wallet.id,
            type_: self.type_,
            category: self.category,
            amount: currency.text(self.amount)?,
            currency: currency.code().to_owned(),
            balance_after: currency.text(balance_after)?,
            description: self.description.map(str::to_owned),
            metadata: self.metadata.clone(),
            transfer_id: self.transfer_id,
            refund_of: self.refund_of,
            refunded_amount: currency.text(Decimal::ZERO)?,
            consumptions: consumptions(currency, self.type_, self.amount, uses)?,
            granted: granted
                .map(|(grant_id, amount)| {
                    Ok(GrantAmount {
                        grant_id,
                        amount: currency.text(amount)?,
                    })
                })
                .collect::<Result<_, WalletError>>()?,
            journal_transaction_id: self.journal_id,
            created_at: self.wallet.at,
        })
    }
}

/// A movement's consumptions as the API shows them: a debit's part beyond
/// every grant (what overdrew the wallet) is a line without a grant, so
/// the lines of a debit always sum to its amount.
fn consumptions(
    currency: Currency,
    type_: TransactionType,
    amount: Decimal,
    uses: impl Iterator<Item = (Uuid, Decimal)>,
) -> Result<Vec<Consumption>, WalletError> {
    let mut lines = Vec::new();
    let mut used = Decimal::ZERO;
    for (grant_id, a) in uses {
        used += a;
        lines.push(Consumption {
            grant_id: Some(grant_id),
            amount: currency.text(a)?,
        });
    }
    if type_ == TransactionType::Debit && used < amount {
        lines.push(Consumption {
            grant_id: None,
            amount: currency.text(amount - used)?,
        });
    }
    Ok(lines)
}

/// Writes one leg, its journal transaction (`posting`), its
/// grants' changes and whatever `done` stores, in one statement. The row
/// must match the leg's view, which may already be the stored answer.
/// Returns the balance alerts the leg flipped, each with its new `armed`:
/// when the wallet has alerts, a second statement flips them under the
/// wallet's lock (an alert is created under the same lock, so none is
/// missed). Citus could not run the flip inside the writing statement
/// (a CTE read in RETURNING never reaches the shard).
pub(super) async fn apply(
    conn: &mut PgConnection,
    leg: &Leg<'_>,
    posting: &Posting,
    done: Completion<'_>,
) -> Result<Vec<(Uuid, bool)>, WalletError> {
    let j = posting.rows()?;
    let g = GrantRows::of(&leg.grants);
    let done_shop = done.shop_id;
    // $1 shop, $2–$18 the completion (key, stored outcome, audit rows,
    // events); the statement's own from $19.
    let r = query_completing!(
        done,
        ", jt AS (
             INSERT INTO journal_transactions (shop_id, id, kind, created_at)
             SELECT $1, $29, $30, $36 WHERE cardinality($32::smallint[]) > 0
         ),
         je AS (
             INSERT INTO journal_entries
                 (shop_id, journal_transaction_id, line, account, wallet_id, currency, amount)
             SELECT $1, $29, e.line, e.account, e.wallet_id, $31, e.amount
               FROM UNNEST($32::smallint[], $33::text[], $34::uuid[], $35::numeric[])
                    AS e(line, account, wallet_id, amount)
         ),
         gn AS (
             INSERT INTO credit_grants
                 (shop_id, id, wallet_id, kind, amount, remaining, priority, expires_at,
                  wallet_transaction_id, source_grant_id, metadata, created_at)
             SELECT $1, n.id, $19, n.kind, n.amount, n.remaining, n.priority, n.expires_at, $21,
                    n.source, n.metadata, $36
               FROM UNNEST($39::uuid[], $40::text[], $41::numeric[], $42::numeric[], $43::smallint[],
                           $44::timestamptz[], $45::uuid[], $46::jsonb[])
                    AS n(id, kind, amount, remaining, priority, expires_at, source, metadata)
         ),
         gc AS (
             UPDATE credit_grants x
                SET remaining = x.remaining - c.taken, held = x.held - c.unheld,
                    expired = x.expired + c.expired,
                    expired_at = CASE WHEN c.expired > 0 THEN coalesce(x.expired_at, $36)
                                      ELSE x.expired_at END
               FROM UNNEST($47::uuid[], $48::numeric[], $49::numeric[], $50::numeric[])
                    AS c(id, taken, unheld, expired)
              WHERE x.shop_id = $1 AND x.wallet_id = $19 AND x.id = c.id
         ),
         gu AS (
             INSERT INTO grant_consumptions (shop_id, wallet_transaction_id, line, grant_id, amount, held)
             SELECT $1, $21, u.line, u.grant_id, u.amount, u.held
               FROM UNNEST($51::uuid[], $52::numeric[], $53::bool[]) WITH ORDINALITY
                    AS u(grant_id, amount, held, line)
         ),
         w AS (
             UPDATE wallets SET balance = balance + $20, reserved = reserved - $37,
                                version = version + 1, updated_at = $36
              WHERE shop_id = $1 AND id = $19
             RETURNING balance, reserved, version
         )
         INSERT INTO wallet_transactions
             (shop_id, id, wallet_id, wallet_version, type, category, amount, balance_after,
              description, metadata, idempotency_key, transfer_id, journal_transaction_id,
              created_at, refund_of)
         SELECT $1, $21, $19, w.version, $22, $23, $24, w.balance, $25, $26, $27, $28, $29, $36, $38
           FROM w
         RETURNING balance_after",
        leg.wallet.id,                              // $19
        leg.delta(),                                // $20
        leg.id,                                     // $21
        leg.type_.as_str(),                         // $22
        leg.category.as_str(),                      // $23
        leg.amount,                                 // $24
        leg.description,                            // $25
        Json(leg.metadata) as _,                    // $26
        leg.key,                                    // $27
        leg.transfer_id,                            // $28
        leg.journal_id,                             // $29
        j.kind,                                     // $30
        j.currency,                                 // $31
        &j.lines,                                   // $32
        &j.accounts as &[&str],                     // $33
        &j.wallets as &[Option<Uuid>],              // $34
        &j.amounts,                                 // $35
        leg.wallet.at,                              // $36
        leg.release,                                // $37
        leg.refund_of,                              // $38
        &g.new_ids,                                 // $39
        &g.new_kinds as &[&str],                    // $40
        &g.new_amounts,                             // $41
        &g.new_remaining,                           // $42
        &g.new_priorities,                          // $43
        &g.new_expires as &[Option<DateTime<Utc>>], // $44
        &g.new_sources as &[Option<Uuid>],          // $45
        &g.new_metadata,                            // $46
        &g.changed_ids,                             // $47
        &g.changed_taken,                           // $48
        &g.changed_unheld,                          // $49
        &g.changed_expired,                         // $50
        &g.use_grants,                              // $51
        &g.use_amounts,                             // $52
        &g.use_held,                                // $53
    )
    .fetch_one(&mut *conn)
    .await?;
    if r.balance_after != leg.wallet.balance + leg.delta() {
        // Only if the row was not locked as assumed: never commit an answer
        // that differs from the books.
        return Err(StoreError::broken(format!("wallet {} moved while locked", leg.wallet.id)).into());
    }
    if !leg.wallet.has_alerts {
        return Ok(Vec::new());
    }
    flip_alerts(conn, done_shop, leg.wallet.id).await
}

/// Flips the alerts of a wallet that just moved whose side of their
/// threshold changed, and returns each flipped alert with its new `armed`.
/// Run under the wallet's lock, so no other movement's flip interleaves.
pub(super) async fn flip_alerts(
    conn: &mut PgConnection,
    shop_id: Uuid,
    wallet_id: Uuid,
) -> Result<Vec<(Uuid, bool)>, WalletError> {
    let flipped = sqlx::query!(
        "UPDATE balance_alerts a SET armed = NOT a.armed
           FROM wallets w
          WHERE a.shop_id = $1 AND a.wallet_id = $2 AND w.shop_id = $1 AND w.id = $2
            AND a.armed <> (w.balance - w.reserved >= a.available_below)
         RETURNING a.id, a.armed",
        shop_id,
        wallet_id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(flipped.into_iter().map(|f| (f.id, f.armed)).collect())
}

/// A leg's grant writes as the columns `apply` unnests.
struct GrantRows {
    new_ids: Vec<Uuid>,
    new_kinds: Vec<&'static str>,
    new_amounts: Vec<Decimal>,
    new_remaining: Vec<Decimal>,
    new_priorities: Vec<i16>,
    new_expires: Vec<Option<DateTime<Utc>>>,
    new_sources: Vec<Option<Uuid>>,
    new_metadata: Vec<Value>,
    changed_ids: Vec<Uuid>,
    changed_taken: Vec<Decimal>,
    changed_unheld: Vec<Decimal>,
    changed_expired: Vec<Decimal>,
    use_grants: Vec<Uuid>,
    use_amounts: Vec<Decimal>,
    use_held: Vec<bool>,
}

impl GrantRows {
    fn of(w: &GrantWrites) -> Self {
        GrantRows {
            new_ids: w.created.iter().map(|g| g.id).collect(),
            new_kinds: w.created.iter().map(|g| g.spec.kind.as_str()).collect(),
            new_amounts: w.created.iter().map(|g| g.amount).collect(),
            new_remaining: w.created.iter().map(|g| g.remaining).collect(),
            new_priorities: w.created.iter().map(|g| g.spec.priority).collect(),
            new_expires: w.created.iter().map(|g| g.spec.expires_at).collect(),
            new_sources: w.created.iter().map(|g| g.spec.source).collect(),
            new_metadata: w
                .created
                .iter()
                .map(|g| serde_json::to_value(&g.spec.metadata).unwrap_or_default())
                .collect(),
            changed_ids: w.changed.iter().map(|(id, _)| *id).collect(),
            changed_taken: w.changed.iter().map(|(_, c)| c.taken).collect(),
            changed_unheld: w.changed.iter().map(|(_, c)| c.unheld).collect(),
            changed_expired: w.changed.iter().map(|(_, c)| c.expired).collect(),
            use_grants: w.uses.iter().map(|u| u.grant_id).collect(),
            use_amounts: w.uses.iter().map(|u| u.amount).collect(),
            use_held: w.uses.iter().map(|u| u.held).collect(),
        }
    }
}

/// Writes `leg` (its wallet locked) and what it lent from other holds,
/// and returns its history row; the caller's wallet then holds the new
/// balance.
pub(super) async fn write_leg(
    conn: &mut PgConnection,
    leg: Leg<'_>,
    posting: &Posting,
    done: Completion<'_>,
    own_hold: Option<Uuid>,
) -> Result<(WalletTransaction, Decimal), WalletError> {
    let view = leg.view()?;
    let shop_id = done.shop_id;
    let flipped = apply(conn, &leg, posting, done).await?;
    if !leg.grants.lent.is_empty() {
        grant_store::lend_holds(conn, shop_id, own_hold, &leg.grants.lent).await?;
    }
    crate::events::alerts::fire(conn, shop_id, leg.wallet.id, &flipped).await?;
    Ok((view, leg.delta()))
}

/// Where a movement on a locked wallet takes its grants from or puts them.
pub enum GrantPlan<'a> {
    /// A debit: burn-down, a capture's own reservation first.
    Spend {
        hold: Option<(Uuid, &'a [(Uuid, Decimal)])>,
    },
    /// A credit that makes one grant.
    New(GrantSpec),
    /// A refund of movement `of` (an invoice payment): back to the grants
    /// it took from.
    Restore { of: Uuid },
}

/// A movement on a wallet the caller has locked, for another domain's use
/// case: a debit to `counterpart` or a credit from it through the journal
/// (kind `kind`), freeing `release` of `reserved` in the same statement (a
/// captured hold).
pub struct LockedMovement<'a> {
    pub type_: TransactionType,
    pub amount: Decimal,
    pub release: Decimal,
    pub category: Category,
    pub kind: ledger::Kind,
    pub counterpart: Account,
    pub description: Option<&'a str>,
    pub metadata: &'a Metadata,
    pub grants: GrantPlan<'a>,
}

/// Writes `movement` on `wallet` (locked by the caller) in one statement
/// and returns its history row; `wallet` then holds the new balance and
/// grants, so a transaction may move it again.
pub async fn move_locked(
    conn: &mut PgConnection,
    tenant: Tenant,
    wallet: &mut Locked,
    movement: LockedMovement<'_>,
) -> Result<WalletTransaction, WalletError> {
    let (from, to) = match movement.type_ {
        TransactionType::Debit => (Account::Wallet(wallet.id), movement.counterpart),
        TransactionType::Credit => (movement.counterpart, Account::Wallet(wallet.id)),
    };
    let posting = Posting::new(movement.kind, wallet.currency).transfer(from, to, movement.amount);
    let (grants, own_hold) = match movement.grants {
        GrantPlan::Spend { hold } => {
            let own = hold.map_or(&[][..], |(_, own)| own);
            let w = wallet.grants.spend_hold(movement.amount, wallet.at, own);
            (w, hold.map(|(id, _)| id))
        }
        GrantPlan::New(spec) => {
            let w = wallet
                .grants
                .credit(wallet.balance, wallet.at, vec![(spec, movement.amount)]);
            (w, None)
        }
        GrantPlan::Restore { of } => {
            let taken = grant_store::restorable(&mut *conn, tenant.shop_id, of).await?;
            let w = wallet
                .grants
                .restore(wallet.balance, movement.amount, wallet.at, taken);
            (w, None)
        }
    };
    let leg = Leg {
        id: Uuid::now_v7(),
        wallet: &*wallet,
        type_: movement.type_,
        category: movement.category,
        amount: movement.amount,
        description: movement.description,
        metadata: movement.metadata,
        key: None,
        transfer_id: None,
        refund_of: None,
        journal_id: Uuid::now_v7(),
        release: movement.release,
        grants,
    };
    let none = Completion::none(tenant.shop_id);
    let (view, delta) = write_leg(conn, leg, &posting, none, own_hold).await?;
    wallet.balance += delta;
    wallet.reserved -= movement.release;
    Ok(view)
}

/// The same key moved money before (its idempotency record has expired):
/// answer with that movement when it is the same one, refuse otherwise, so a
/// wallet is never charged twice under one key.
async fn earlier_movement(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
    wallet_id: Uuid,
    type_: TransactionType,
    category: Category,
    amount: Decimal,
) -> Result<WalletTransaction, WalletError> {
    let tx = transaction(conn, tenant, id).await?;
    let same = tx.wallet_id == wallet_id
        && tx.type_ == type_
        && tx.category == category
        && tx.amount.parse::<Decimal>().ok() == Some(amount);
    if same { Ok(tx) } else { Err(WalletError::KeyReused) }
}

async fn movement(
    unit: &mut Unit<'_>,
    key: Unclaimed,
    tenant: Tenant,
    wallet_id: Uuid,
    req: Request,
) -> Result<Ran<WalletTransaction>, WalletError> {
    let (kind, amount, description, metadata) = req.split();
    let (key, mut wallet, earlier) = match lock(unit, key, tenant, &[wallet_id]).await? {
        Ok(locks) => locks.one()?,
        Err(taken) => return Ok(taken.replay()),
    };
    let amount = Money::parse("amount", &amount, wallet.currency)?.amount();
    let (type_, category) = kind.movement();
    if let Some(earlier) = earlier {
        return earlier_movement(unit.conn(), tenant, earlier, wallet_id, type_, category, amount)
            .await
            .map(|tx| key.earlier(tx));
    }
    let metadata = metadata.unwrap_or_default();
    let (posting, grants) = plan(&mut wallet, kind, amount, &metadata)?;
    let leg = Leg {
        id: Uuid::now_v7(),
        wallet: &wallet,
        type_,
        category,
        amount,
        description: description.as_deref(),
        metadata: &metadata,
        key: Some(unit.key()),
        transfer_id: None,
        refund_of: None,
        journal_id: Uuid::now_v7(),
        release: Decimal::ZERO,
        grants,
    };
    let view = leg.view()?;
    let (conn, done, ran) = unit.complete(key, view);
    write_leg(conn, leg, &posting, done, None).await?;
    Ok(ran)
}

/// A credit's or a debit's journal posting and what it does to the
/// wallet's grants (which then hold it), checked against the locked
/// wallet: a credit's deadline is in the future, a debit is covered.
pub(super) fn plan(
    wallet: &mut Locked,
    kind: Kind,
    amount: Decimal,
    metadata: &Metadata,
) -> Result<(Posting, GrantWrites), WalletError> {
    Ok(match kind {
        Kind::Credit {
            category,
            priority,
            expires_at,
        } => {
            if let Some(deadline) = expires_at
                && deadline <= wallet.at
            {
                return Err(WalletError::Invalid("expires_at", "must be in the future".into()));
            }
            let spec = GrantSpec {
                kind: category.grant_kind(),
                priority: priority.unwrap_or(GrantSpec::DEFAULT_PRIORITY),
                expires_at,
                metadata: metadata.clone(),
                source: None,
            };
            let posting = Posting::new(ledger::Kind::WalletCredit, wallet.currency).transfer(
                category.source(),
                Account::Wallet(wallet.id),
                amount,
            );
            (
                posting,
                wallet
                    .grants
                    .credit(wallet.balance, wallet.at, vec![(spec, amount)]),
            )
        }
        Kind::Debit(_) => {
            wallet.ensure_can_spend(amount)?;
            let posting = Posting::new(ledger::Kind::WalletDebit, wallet.currency).transfer(
                Account::Wallet(wallet.id),
                Account::Revenue,
                amount,
            );
            (posting, wallet.grants.spend(amount, wallet.at, &[]))
        }
    })
}

/// A credit (with the grant it makes) or a debit, with its category.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Credit {
        category: CreditCategory,
        priority: Option<i16>,
        expires_at: Option<DateTime<Utc>>,
    },
    Debit(DebitCategory),
}

impl Kind {
    /// The history row's type and category.
    pub(super) fn movement(self) -> (TransactionType, Category) {
        match self {
            Kind::Credit { category, .. } => (TransactionType::Credit, category.category()),
            Kind::Debit(c) => (TransactionType::Debit, c.category()),
        }
    }
}

/// A credit or a debit request.
pub(super) enum Request {
    Credit(CreditRequest),
    Debit(DebitRequest),
}

impl Request {
    /// Its kind, and the category-independent part: amount, description,
    /// metadata.
    pub(super) fn split(self) -> (Kind, String, Option<String>, Option<Metadata>) {
        match self {
            Request::Credit(r) => (
                Kind::Credit {
                    category: r.category,
                    priority: r.priority,
                    expires_at: r.expires_at,
                },
                r.amount,
                r.description,
                r.metadata,
            ),
            Request::Debit(r) => (Kind::Debit(r.category), r.amount, r.description, r.metadata),
        }
    }
}

/// Claims the unit's key in its first statement and stores the answer
/// with its last.
pub async fn credit(
    unit: &mut Unit<'_>,
    key: Unclaimed,
    tenant: Tenant,
    wallet_id: Uuid,
    req: CreditRequest,
) -> Result<Ran<WalletTransaction>, WalletError> {
    movement(unit, key, tenant, wallet_id, Request::Credit(req)).await
}

/// Claims the unit's key in its first statement and stores the answer
/// with its last.
pub async fn debit(
    unit: &mut Unit<'_>,
    key: Unclaimed,
    tenant: Tenant,
    wallet_id: Uuid,
    req: DebitRequest,
) -> Result<Ran<WalletTransaction>, WalletError> {
    movement(unit, key, tenant, wallet_id, Request::Debit(req)).await
}

/// Moves money between two wallets of the shop. Both rows are locked in id
/// order, so opposite transfers queue instead of deadlocking; the key is
/// claimed in the same statement. Both legs and the answer are then written
/// by one statement, as a batch writes its transfers (`bulk::transfer`).
pub async fn transfer(
    unit: &mut Unit<'_>,
    key: Unclaimed,
    tenant: Tenant,
    req: TransferRequest,
) -> Result<Ran<Transfer>, WalletError> {
    if req.from_wallet_id == req.to_wallet_id {
        return Err(WalletError::SameWallet);
    }
    let ids = [req.from_wallet_id, req.to_wallet_id];
    let Locks {
        key,
        wallets,
        earlier,
    } = match lock(unit, key, tenant, &ids).await? {
        Ok(locks) => locks,
        Err(taken) => return Ok(taken.replay()),
    };
    let [from, to] = &wallets[..] else {
        return Err(WalletError::NotFound);
    };
    if from.currency != to.currency {
        return Err(WalletError::CurrencyMismatch {
            from: from.currency.code().into(),
            to: to.currency.code().into(),
        });
    }
    let amount = Money::parse("amount", &req.amount, from.currency)?.amount();
    if let Some(earlier) = earlier {
        return earlier_transfer(unit.conn(), tenant, earlier, &req, amount)
            .await
            .map(|t| key.earlier(t));
    }
    // Planned (the balance checked, one time for both legs) and written
    // as a batch's transfer.
    super::bulk::transfer(unit, key, wallets, &req).await
}

pub(super) fn transfer_view(
    id: Uuid,
    description: Option<String>,
    debit: WalletTransaction,
    credit: WalletTransaction,
) -> Transfer {
    Transfer {
        id,
        from_wallet_id: debit.wallet_id,
        to_wallet_id: credit.wallet_id,
        amount: debit.amount.clone(),
        currency: debit.currency.clone(),
        description,
        created_at: debit.created_at,
        debit,
        credit,
    }
}

async fn earlier_transfer(
    conn: &mut PgConnection,
    tenant: Tenant,
    earlier: Uuid,
    req: &TransferRequest,
    amount: Decimal,
) -> Result<Transfer, WalletError> {
    let Some(transfer_id) = transaction(conn, tenant, earlier).await?.transfer_id else {
        return Err(WalletError::KeyReused);
    };
    let legs = sqlx::query_scalar!(
        "SELECT id FROM wallet_transactions WHERE shop_id = $1 AND transfer_id = $2 ORDER BY type DESC",
        tenant.shop_id,
        transfer_id
    )
    .fetch_all(&mut *conn)
    .await?;
    let [debit_id, credit_id] = legs[..] else {
        return Err(WalletError::KeyReused);
    };
    let debit = transaction(conn, tenant, debit_id).await?;
    let credit = transaction(conn, tenant, credit_id).await?;
    let same = debit.wallet_id == req.from_wallet_id
        && credit.wallet_id == req.to_wallet_id
        && debit.amount.parse::<Decimal>().ok() == Some(amount);
    if !same {
        return Err(WalletError::KeyReused);
    }
    Ok(transfer_view(
        transfer_id,
        debit.description.clone(),
        debit,
        credit,
    ))
}

/// A `wallet_transactions` row with its wallet's currency.
struct TxRow {
    id: Uuid,
    wallet_id: Uuid,
    r#type: String,
    category: String,
    amount: Decimal,
    currency: String,
    balance_after: Decimal,
    description: Option<String>,
    metadata: Value,
    transfer_id: Option<Uuid>,
    refund_of: Option<Uuid>,
    refunded: Decimal,
    /// [[grant_id, amount], …] in line order.
    uses: Option<Value>,
    /// [[grant_id, amount], …] of the grants it created.
    granted: Option<Value>,
    journal_transaction_id: Uuid,
    created_at: DateTime<Utc>,
}

impl TxRow {
    fn view(self) -> Result<WalletTransaction, WalletError> {
        let currency = Currency::stored(&self.currency)?;
        let type_ = store::decode("movement type", &self.r#type)?;
        let uses = pairs(self.uses)?;
        let granted = pairs(self.granted)?
            .into_iter()
            .map(|(grant_id, amount)| {
                Ok(GrantAmount {
                    grant_id,
                    amount: currency.text(amount)?,
                })
            })
            .collect::<Result<_, WalletError>>()?;
        Ok(WalletTransaction {
            id: self.id,
            wallet_id: self.wallet_id,
            type_,
            category: store::decode("movement category", &self.category)?,
            amount: currency.text(self.amount)?,
            currency: currency.code().to_owned(),
            balance_after: currency.text(self.balance_after)?,
            description: self.description,
            metadata: metadata::from_json(self.metadata)?,
            transfer_id: self.transfer_id,
            refund_of: self.refund_of,
            refunded_amount: currency.text(self.refunded)?,
            consumptions: consumptions(currency, type_, self.amount, uses.into_iter())?,
            granted,
            journal_transaction_id: self.journal_transaction_id,
            created_at: self.created_at,
        })
    }
}

/// `[[grant_id, "amount"], …]` as the movement queries aggregate them.
fn pairs(v: Option<Value>) -> Result<Vec<(Uuid, Decimal)>, WalletError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let raw: Vec<(Uuid, String)> =
        serde_json::from_value(v).map_err(|e| StoreError::broken(format!("grant amounts: {e}")))?;
    raw.into_iter()
        .map(|(id, a)| {
            a.parse::<Decimal>()
                .map(|a| (id, a))
                .map_err(|e| StoreError::broken(format!("grant amount {a}: {e}")).into())
        })
        .collect()
}

async fn transaction(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
) -> Result<WalletTransaction, WalletError> {
    transaction_row(conn, tenant, id)
        .await?
        .ok_or(WalletError::NotFound)?
        .view()
}

/// The shop's movement `id` with what has been refunded of it (the sum
/// of its refunds, exact under its wallet's lock).
async fn transaction_row(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
) -> Result<Option<TxRow>, WalletError> {
    Ok(sqlx::query_as!(
        TxRow,
        "SELECT t.id, t.wallet_id, t.type, t.category, t.amount, w.currency, t.balance_after,
                t.description, t.metadata, t.transfer_id, t.refund_of,
                (SELECT COALESCE(sum(r.amount), 0) FROM wallet_transactions r
                  WHERE r.shop_id = $1 AND r.refund_of = t.id) AS \"refunded!\",
                (SELECT jsonb_agg(jsonb_build_array(c.grant_id, c.amount::text) ORDER BY c.line)
                   FROM grant_consumptions c
                  WHERE c.shop_id = $1 AND c.wallet_transaction_id = t.id) AS uses,
                (SELECT jsonb_agg(jsonb_build_array(g.id, g.amount::text) ORDER BY g.id)
                   FROM credit_grants g
                  WHERE g.shop_id = $1 AND g.wallet_transaction_id = t.id) AS granted,
                t.journal_transaction_id, t.created_at
           FROM wallet_transactions t
           JOIN wallets w ON w.shop_id = t.shop_id AND w.id = t.wallet_id
          WHERE t.shop_id = $1 AND t.id = $2",
        tenant.shop_id,
        id
    )
    .fetch_optional(conn)
    .await?)
}

/// One movement of the shop's wallet `wallet_id`.
pub async fn wallet_transaction(
    conn: &mut PgConnection,
    tenant: Tenant,
    wallet_id: Uuid,
    id: Uuid,
) -> Result<WalletTransaction, WalletError> {
    ensure_exists(conn, tenant, wallet_id).await?;
    match transaction_row(conn, tenant, id).await? {
        Some(row) if row.wallet_id == wallet_id => row.view(),
        _ => Err(WalletError::TransactionNotFound),
    }
}

/// Gives back `req.amount` (default: all that is left) of a debit or a
/// captured hold as a `refund` credit on its wallet (revenue → wallet),
/// in the lean shape. The wallet's lock is the refunds' turn: what is left
/// to refund is read under it, so concurrent refunds never exceed the
/// movement. The refund keeps the request key, so a retry after the key's
/// record expired answers this refund again.
pub async fn refund(
    unit: &mut Unit<'_>,
    key: Unclaimed,
    tenant: Tenant,
    wallet_id: Uuid,
    transaction_id: Uuid,
    req: RefundRequest,
) -> Result<Ran<MovementRefund>, WalletError> {
    let (key, mut wallet, earlier) = match lock(unit, key, tenant, &[wallet_id]).await? {
        Ok(locks) => locks.one()?,
        Err(taken) => return Ok(taken.replay()),
    };
    let amount = match &req.amount {
        Some(raw) => Some(Money::parse("amount", raw, wallet.currency)?.amount()),
        None => None,
    };
    let conn = unit.conn();
    if let Some(earlier) = earlier {
        let row = transaction_row(conn, tenant, earlier)
            .await?
            .ok_or(WalletError::KeyReused)?;
        let same = row.wallet_id == wallet_id
            && row.refund_of == Some(transaction_id)
            && amount.is_none_or(|a| a == row.amount);
        return if same {
            Ok(key.earlier(MovementRefund(row.view()?)))
        } else {
            Err(WalletError::KeyReused)
        };
    }
    let original = match transaction_row(conn, tenant, transaction_id).await? {
        Some(row) if row.wallet_id == wallet_id => row,
        _ => return Err(WalletError::TransactionNotFound),
    };
    let category: Category = store::decode("movement category", &original.category)?;
    if !category.refundable() {
        return Err(WalletError::NotRefundable(category.as_str()));
    }
    let remaining = original.amount - original.refunded;
    let amount = amount.unwrap_or(remaining);
    if amount.is_zero() || amount > remaining {
        return Err(WalletError::RefundExceedsRemaining {
            remaining: wallet.currency.text(remaining)?,
        });
    }
    let posting = Posting::new(ledger::Kind::WalletRefund, wallet.currency).transfer(
        Account::Revenue,
        Account::Wallet(wallet_id),
        amount,
    );
    let metadata = req.metadata.unwrap_or_default();
    let taken = grant_store::restorable(unit.conn(), tenant.shop_id, transaction_id).await?;
    let grants = wallet.grants.restore(wallet.balance, amount, wallet.at, taken);
    let leg = Leg {
        id: Uuid::now_v7(),
        wallet: &wallet,
        type_: TransactionType::Credit,
        category: Category::Refund,
        amount,
        description: req.reason.as_deref(),
        metadata: &metadata,
        key: Some(unit.key()),
        transfer_id: None,
        refund_of: Some(transaction_id),
        journal_id: Uuid::now_v7(),
        release: Decimal::ZERO,
        grants,
    };
    let view = MovementRefund(leg.view()?);
    let request_id = unit.request_id();
    let (conn, done, ran) = unit.complete(key, view);
    let (_, delta) = write_leg(conn, leg, &posting, done, None).await?;
    wallet.balance += delta;
    // Credit given back for a grant past its deadline expires at once.
    grant_store::expire_due(conn, tenant.shop_id, Some(tenant.key_id), request_id, &mut wallet).await?;
    Ok(ran)
}

/// The shop has this wallet (for lists of what belongs to one).
pub async fn ensure_exists(
    conn: &mut PgConnection,
    tenant: Tenant,
    wallet_id: Uuid,
) -> Result<(), WalletError> {
    sqlx::query_scalar!(
        "SELECT 1 AS \"one!\" FROM wallets WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
        wallet_id
    )
    .fetch_optional(conn)
    .await?
    .map(|_| ())
    .ok_or(WalletError::NotFound)
}

/// A wallet's history, newest first (by the wallet version each movement
/// produced, which is the order the row lock imposed).
pub async fn transactions(
    conn: &mut PgConnection,
    tenant: Tenant,
    wallet_id: Uuid,
    page: &PageParams,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
) -> Result<Page<WalletTransaction>, WalletError> {
    ensure_exists(conn, tenant, wallet_id).await?;
    let rows = sqlx::query_as!(
        TxRow,
        "SELECT t.id, t.wallet_id, t.type, t.category, t.amount, w.currency, t.balance_after,
                t.description, t.metadata, t.transfer_id, t.refund_of,
                (SELECT COALESCE(sum(r.amount), 0) FROM wallet_transactions r
                  WHERE r.shop_id = $1 AND r.refund_of = t.id) AS \"refunded!\",
                (SELECT jsonb_agg(jsonb_build_array(c.grant_id, c.amount::text) ORDER BY c.line)
                   FROM grant_consumptions c
                  WHERE c.shop_id = $1 AND c.wallet_transaction_id = t.id) AS uses,
                (SELECT jsonb_agg(jsonb_build_array(g.id, g.amount::text) ORDER BY g.id)
                   FROM credit_grants g
                  WHERE g.shop_id = $1 AND g.wallet_transaction_id = t.id) AS granted,
                t.journal_transaction_id, t.created_at
           FROM wallet_transactions t
           JOIN wallets w ON w.shop_id = t.shop_id AND w.id = t.wallet_id
          WHERE t.shop_id = $1 AND t.wallet_id = $2
            AND ($3::uuid IS NULL OR t.wallet_version <
                 (SELECT c.wallet_version FROM wallet_transactions c
                   WHERE c.shop_id = $1 AND c.wallet_id = $2 AND c.id = $3))
            AND ($5::timestamptz IS NULL OR t.created_at >= $5)
            AND ($6::timestamptz IS NULL OR t.created_at < $6)
          ORDER BY t.wallet_version DESC
          LIMIT $4",
        tenant.shop_id,
        wallet_id,
        page.starting_after,
        page.limit() + 1,
        created_after,
        created_before
    )
    .fetch_all(conn)
    .await?;
    let items = rows.into_iter().map(TxRow::view).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page.limit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet(balance: i64, reserved: i64, overdraft_limit: i64) -> Locked {
        Locked {
            id: Uuid::nil(),
            currency: Currency::parse("USD").unwrap(),
            balance: Decimal::from(balance),
            reserved: Decimal::from(reserved),
            overdraft_limit: Decimal::from(overdraft_limit),
            at: Utc::now(),
            grants: Grants::default(),
            has_alerts: false,
        }
    }

    #[test]
    fn spending_is_bounded_by_available_down_to_the_overdraft_limit() {
        let spend = |w: Locked, amount: i64| w.ensure_can_spend(Decimal::from(amount)).is_ok();
        assert!(spend(wallet(10, 0, 0), 10), "all of it");
        assert!(!spend(wallet(10, 0, 0), 11));
        assert!(!spend(wallet(10, 3, 0), 8), "held money is not available");
        assert!(spend(wallet(10, 3, 0), 7));
        assert!(spend(wallet(10, 3, 5), 12), "down to -overdraft_limit");
        assert!(!spend(wallet(10, 3, 5), 13));
        assert!(
            !spend(wallet(-5, 0, 5), 1),
            "an overdrawn wallet at its limit spends nothing"
        );
    }

    #[test]
    fn a_credit_comes_from_outside_only_when_it_was_paid_for() {
        assert_eq!(CreditCategory::TopUp.source(), Account::ExternalPayments);
        for c in [
            CreditCategory::Grant,
            CreditCategory::Refund,
            CreditCategory::Adjustment,
        ] {
            assert_eq!(c.source(), Account::CreditGrants, "{c:?}");
        }
        assert_eq!(
            CreditCategory::Adjustment.category(),
            DebitCategory::Adjustment.category()
        );
    }

    #[test]
    fn stored_movement_text_decodes_exhaustively() {
        for c in [
            Category::TopUp,
            Category::TransferOut,
            Category::ReservationCapture,
            Category::InvoicePayment,
        ] {
            assert_eq!(store::decode::<Category>("category", c.as_str()).unwrap(), c);
        }
        for t in [TransactionType::Credit, TransactionType::Debit] {
            assert_eq!(store::decode::<TransactionType>("type", t.as_str()).unwrap(), t);
        }
        assert!(
            store::decode::<TransactionType>("type", "refund").is_err(),
            "never read as a debit"
        );
        assert!(store::decode::<Category>("category", "bonus").is_err());
    }
}
