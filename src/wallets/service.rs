//! Wallet use cases and their SQL. Each takes the caller's transaction and
//! the tenant; every query filters by the tenant's shop.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::{PgConnection, types::Json};
use uuid::Uuid;

use super::{
    Category, CreateWallet, CreditCategory, CreditRequest, DebitCategory, DebitRequest, MovementRefund,
    RefundRequest, TransactionType, Transfer, TransferRequest, Wallet, WalletError, WalletTransaction,
};
use crate::{
    executor::{Claimed, Ran, Taken, Unclaimed, Unit},
    idempotency::{ClaimParams, Completion, query_claiming, query_completing},
    ledger::{self, Account, Posting, Rows},
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
) -> Result<Wallet, WalletError> {
    Ok(Wallet {
        id,
        customer_ref,
        currency: currency.code().to_owned(),
        balance: currency.text(balance)?,
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
    )
}

pub async fn get(conn: &mut PgConnection, tenant: Tenant, id: Uuid) -> Result<Wallet, WalletError> {
    let r = sqlx::query!(
        "SELECT id, customer_ref, currency, balance, reserved, overdraft_limit, version, metadata,
                created_at, updated_at
           FROM wallets WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
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
        "SELECT id, customer_ref, currency, balance, reserved, overdraft_limit, version, metadata,
                created_at, updated_at
           FROM wallets
          WHERE shop_id = $1
            AND ($2::text IS NULL OR customer_ref = $2)
            AND ($3::uuid IS NULL OR id < $3)
          ORDER BY id DESC
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
            )
        })
        .collect::<Result<Vec<_>, WalletError>>()?;
    Ok(Page::from_rows(wallets, page.limit()))
}

/// A wallet row locked for the rest of the transaction.
pub struct Locked {
    pub id: Uuid,
    pub currency: Currency,
    pub balance: Decimal,
    pub reserved: Decimal,
    pub overdraft_limit: Decimal,
    /// The transaction's time: every row it writes carries it.
    pub at: DateTime<Utc>,
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
/// statement (the lean shape). `Err(Taken)`: another request has the key.
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
    Ok(Ok(Locks {
        key,
        wallets: in_order(wallets, ids)?,
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
/// under a key the transaction holds; they come back in the order asked.
pub async fn lock_many(
    unit: &mut Unit<'_>,
    key: Claimed,
    tenant: Tenant,
    ids: &[Uuid],
) -> Result<(Claimed, Vec<Locked>), WalletError> {
    let claim = unit.held(&key);
    let (_, wallets, _) = lock_rows(unit.conn(), claim, true, tenant, ids).await?;
    Ok((key, in_order(wallets, ids)?))
}

/// The wallet lock, the only statement that locks wallet rows for a
/// movement: locks the shop's wallets `ids` for the rest of the
/// transaction in id order, so requests locking the same wallets queue
/// instead of deadlocking, and reads the clock above the locks once they
/// are granted. It claims the key first unless `held` (then the claim's
/// insert and takeover find the transaction's own row and change nothing).
async fn lock_rows(
    conn: &mut PgConnection,
    claim: ClaimParams<'_>,
    held: bool,
    tenant: Tenant,
    ids: &[Uuid],
) -> Result<(bool, Vec<Locked>, Option<Uuid>), WalletError> {
    let rows = query_claiming!(
        claim,
        ", locked AS (\
             SELECT w.id, w.currency, w.balance, w.reserved, w.overdraft_limit, \
                    greatest(clock_timestamp(), w.updated_at) AS at, t.id AS earlier \
               FROM wallets w \
               LEFT JOIN wallet_transactions t ON t.shop_id = w.shop_id AND t.idempotency_key = $2 \
              WHERE w.shop_id = $5 AND w.id = ANY($6) AND ($7 OR EXISTS (SELECT 1 FROM ours)) \
              ORDER BY w.id \
                FOR UPDATE OF w) \
         SELECT EXISTS (SELECT 1 FROM ours) AS \"ours!\", l.id AS \"id?\", \
                l.currency AS \"currency?\", l.balance AS \"balance?\", \
                l.reserved AS \"reserved?\", l.overdraft_limit AS \"overdraft_limit?\", \
                l.at AS \"at?\", l.earlier \
           FROM (SELECT 1) one LEFT JOIN locked l ON true",
        tenant.shop_id,
        ids,
        held
    )
    .fetch_all(conn)
    .await?;
    let ours = rows.first().is_some_and(|r| r.ours);
    let earlier = rows.first().and_then(|r| r.earlier);
    let mut wallets = Vec::with_capacity(rows.len());
    for r in rows {
        if let (Some(id), Some(currency), Some(balance), Some(reserved), Some(overdraft_limit), Some(at)) =
            (r.id, r.currency, r.balance, r.reserved, r.overdraft_limit, r.at)
        {
            wallets.push(Locked {
                id,
                currency: Currency::stored(&currency)?,
                balance,
                reserved,
                overdraft_limit,
                at,
            });
        }
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

/// One leg of a movement: the wallet row's new balance and its history row.
struct Leg<'a> {
    id: Uuid,
    wallet: &'a Locked,
    type_: TransactionType,
    category: Category,
    amount: Decimal,
    description: Option<&'a str>,
    metadata: &'a Metadata,
    key: Option<&'a str>,
    transfer_id: Option<Uuid>,
    /// The movement a refund gives back.
    refund_of: Option<Uuid>,
    journal_id: Uuid,
    /// Freed from the wallet's `reserved` by the same write (a capture).
    release: Decimal,
}

impl Leg<'_> {
    fn delta(&self) -> Decimal {
        match self.type_ {
            TransactionType::Credit => self.amount,
            TransactionType::Debit => -self.amount,
        }
    }

    /// The history row as it will be written: under the wallet's lock its
    /// new balance and the transaction's time are known before the write,
    /// so the answer can be stored by the write itself.
    fn view(&self) -> Result<WalletTransaction, WalletError> {
        let currency = self.wallet.currency;
        let balance_after = self
            .wallet
            .balance
            .checked_add(self.delta())
            .ok_or(WalletError::BalanceOverflow)?;
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
            journal_transaction_id: self.journal_id,
            created_at: self.wallet.at,
        })
    }
}

/// Writes one leg, the journal transaction when there is a `posting`, and
/// whatever `done` stores, in one statement. The row must match the leg's
/// view, which may already be the stored answer.
async fn apply(
    conn: &mut PgConnection,
    leg: &Leg<'_>,
    posting: Option<&Posting>,
    done: Completion<'_>,
) -> Result<(), WalletError> {
    // Without a posting the arrays are empty and the journal CTEs write nothing.
    let j = posting.map_or_else(|| Ok(Rows::empty()), Posting::rows)?;
    // $1 shop, $2–$14 the completion (key, stored outcome, audit rows);
    // the statement's own from $15.
    let r = query_completing!(
        done,
        ", jt AS (
             INSERT INTO journal_transactions (shop_id, id, kind, created_at)
             SELECT $1, $25, $26, $32 WHERE cardinality($28::smallint[]) > 0
         ),
         je AS (
             INSERT INTO journal_entries
                 (shop_id, journal_transaction_id, line, account, wallet_id, currency, amount)
             SELECT $1, $25, e.line, e.account, e.wallet_id, $27, e.amount
               FROM UNNEST($28::smallint[], $29::text[], $30::uuid[], $31::numeric[])
                    AS e(line, account, wallet_id, amount)
         ),
         w AS (
             UPDATE wallets SET balance = balance + $16, reserved = reserved - $33,
                                version = version + 1, updated_at = $32
              WHERE shop_id = $1 AND id = $15
             RETURNING balance, version
         )
         INSERT INTO wallet_transactions
             (shop_id, id, wallet_id, wallet_version, type, category, amount, balance_after,
              description, metadata, idempotency_key, transfer_id, journal_transaction_id,
              created_at, refund_of)
         SELECT $1, $17, $15, w.version, $18, $19, $20, w.balance, $21, $22, $23, $24, $25, $32, $34
           FROM w
         RETURNING balance_after",
        leg.wallet.id,                 // $15
        leg.delta(),                   // $16
        leg.id,                        // $17
        leg.type_.as_str(),            // $18
        leg.category.as_str(),         // $19
        leg.amount,                    // $20
        leg.description,               // $21
        Json(leg.metadata) as _,       // $22
        leg.key,                       // $23
        leg.transfer_id,               // $24
        leg.journal_id,                // $25
        j.kind,                        // $26
        j.currency,                    // $27
        &j.lines,                      // $28
        &j.accounts as &[&str],        // $29
        &j.wallets as &[Option<Uuid>], // $30
        &j.amounts,                    // $31
        leg.wallet.at,                 // $32
        leg.release,                   // $33
        leg.refund_of,                 // $34
    )
    .fetch_one(&mut *conn)
    .await?;
    if r.balance_after != leg.wallet.balance + leg.delta() {
        // Only if the row was not locked as assumed: never commit an answer
        // that differs from the books.
        return Err(StoreError::broken(format!("wallet {} moved while locked", leg.wallet.id)).into());
    }
    Ok(())
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
}

/// Writes `movement` on `wallet` (locked by the caller) in one statement
/// and returns its history row; `wallet` then holds the new balance, so a
/// transaction may move it again.
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
    };
    let view = leg.view()?;
    let none = Completion::none(tenant.shop_id);
    apply(conn, &leg, Some(&posting), none).await?;
    let delta = leg.delta();
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
    let (key, wallet, earlier) = match lock(unit, key, tenant, &[wallet_id]).await? {
        Ok(locks) => locks.one()?,
        Err(taken) => return Ok(taken.replay()),
    };
    let amount = Money::parse("amount", &amount, wallet.currency)?.amount();
    let (type_, category) = match kind {
        Kind::Credit(c) => (TransactionType::Credit, c.category()),
        Kind::Debit(c) => (TransactionType::Debit, c.category()),
    };
    if let Some(earlier) = earlier {
        return earlier_movement(unit.conn(), tenant, earlier, wallet_id, type_, category, amount)
            .await
            .map(|tx| key.earlier(tx));
    }
    let posting = match kind {
        Kind::Credit(c) => Posting::new(ledger::Kind::WalletCredit, wallet.currency).transfer(
            c.source(),
            Account::Wallet(wallet_id),
            amount,
        ),
        Kind::Debit(_) => {
            wallet.ensure_can_spend(amount)?;
            Posting::new(ledger::Kind::WalletDebit, wallet.currency).transfer(
                Account::Wallet(wallet_id),
                Account::Revenue,
                amount,
            )
        }
    };
    let metadata = metadata.unwrap_or_default();
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
    };
    let view = leg.view()?;
    let (conn, done, ran) = unit.complete(key, view);
    apply(conn, &leg, Some(&posting), done).await?;
    Ok(ran)
}

/// A credit or a debit, with its category.
#[derive(Clone, Copy)]
enum Kind {
    Credit(CreditCategory),
    Debit(DebitCategory),
}

/// A credit or a debit request.
enum Request {
    Credit(CreditRequest),
    Debit(DebitRequest),
}

impl Request {
    /// Its kind, and the category-independent part: amount, description,
    /// metadata.
    fn split(self) -> (Kind, String, Option<String>, Option<Metadata>) {
        match self {
            Request::Credit(r) => (Kind::Credit(r.category), r.amount, r.description, r.metadata),
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
/// claimed in the same statement and the answer stored with the last leg.
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
        mut wallets,
        earlier,
    } = match lock(unit, key, tenant, &ids).await? {
        Ok(locks) => locks,
        Err(taken) => return Ok(taken.replay()),
    };
    // One time for both legs and their journal transaction, no earlier
    // than either wallet's last movement.
    let at = wallets[0].at.max(wallets[1].at);
    wallets.iter_mut().for_each(|w| w.at = at);
    let (from, to) = (&wallets[0], &wallets[1]);
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
    from.ensure_can_spend(amount)?;

    let transfer_id = Uuid::now_v7();
    let journal_id = Uuid::now_v7();
    let posting = Posting::new(ledger::Kind::WalletTransfer, from.currency).transfer(
        Account::Wallet(from.id),
        Account::Wallet(to.id),
        amount,
    );
    let metadata = req.metadata.clone().unwrap_or_default();
    let request_key = unit.key();
    let leg = |wallet, type_, category, key| Leg {
        id: Uuid::now_v7(),
        wallet,
        type_,
        category,
        amount,
        description: req.description.as_deref(),
        metadata: &metadata,
        key,
        transfer_id: Some(transfer_id),
        refund_of: None,
        journal_id,
        release: Decimal::ZERO,
    };
    // Only the debit leg carries the key: the key is unique per shop.
    let out = leg(
        from,
        TransactionType::Debit,
        Category::TransferOut,
        Some(request_key),
    );
    let into = leg(to, TransactionType::Credit, Category::TransferIn, None);
    let view = transfer_view(transfer_id, req.description.clone(), out.view()?, into.view()?);
    let (conn, done, ran) = unit.complete(key, view);
    let none = Completion::none(done.shop_id);
    apply(conn, &out, Some(&posting), none).await?;
    apply(conn, &into, None, done).await?;
    Ok(ran)
}

fn transfer_view(
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
    journal_transaction_id: Uuid,
    created_at: DateTime<Utc>,
}

impl TxRow {
    fn view(self) -> Result<WalletTransaction, WalletError> {
        let currency = Currency::stored(&self.currency)?;
        Ok(WalletTransaction {
            id: self.id,
            wallet_id: self.wallet_id,
            type_: store::decode("movement type", &self.r#type)?,
            category: store::decode("movement category", &self.category)?,
            amount: currency.text(self.amount)?,
            currency: currency.code().to_owned(),
            balance_after: currency.text(self.balance_after)?,
            description: self.description,
            metadata: metadata::from_json(self.metadata)?,
            transfer_id: self.transfer_id,
            refund_of: self.refund_of,
            refunded_amount: currency.text(self.refunded)?,
            journal_transaction_id: self.journal_transaction_id,
            created_at: self.created_at,
        })
    }
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
    let (key, wallet, earlier) = match lock(unit, key, tenant, &[wallet_id]).await? {
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
    };
    let view = MovementRefund(leg.view()?);
    let (conn, done, ran) = unit.complete(key, view);
    apply(conn, &leg, Some(&posting), done).await?;
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
) -> Result<Page<WalletTransaction>, WalletError> {
    ensure_exists(conn, tenant, wallet_id).await?;
    let rows = sqlx::query_as!(
        TxRow,
        "SELECT t.id, t.wallet_id, t.type, t.category, t.amount, w.currency, t.balance_after,
                t.description, t.metadata, t.transfer_id, t.refund_of,
                (SELECT COALESCE(sum(r.amount), 0) FROM wallet_transactions r
                  WHERE r.shop_id = $1 AND r.refund_of = t.id) AS \"refunded!\",
                t.journal_transaction_id, t.created_at
           FROM wallet_transactions t
           JOIN wallets w ON w.shop_id = t.shop_id AND w.id = t.wallet_id
          WHERE t.shop_id = $1 AND t.wallet_id = $2
            AND ($3::uuid IS NULL OR t.wallet_version <
                 (SELECT c.wallet_version FROM wallet_transactions c
                   WHERE c.shop_id = $1 AND c.wallet_id = $2 AND c.id = $3))
          ORDER BY t.wallet_version DESC
          LIMIT $4",
        tenant.shop_id,
        wallet_id,
        page.starting_after,
        page.limit() + 1
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
