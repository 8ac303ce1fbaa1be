//! A batch's credits, debits and transfers, written set-wise: the wallets locked once
//! in id order, every item's key claimed by one statement, each movement
//! planned in Rust in the items' order (balance checks, grants' burn-down,
//! balances after), then every row of every kind written by one statement —
//! journal transactions and entries, grants made and changed, consumptions,
//! one update per wallet, history rows (a transfer's two legs), and each
//! item's stored answer,
//! audit row and events. The rows are those the single requests would have
//! written, one item after another.
//!
//! Where that shortcut would differ from the single requests it is not
//! taken and the caller runs the items one by one in the same transaction:
//! a wallet it cannot find (the item by item run names the item), a wallet
//! with balance alerts (their events carry the wallet after each
//! movement), an item key already used (its record answers) or whose
//! movement outlived its record.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    Category, CreditRequest, DebitRequest, Locked, TransactionType, Transfer, TransferRequest, WalletError,
    WalletTransaction,
    commands::{Credit, Debit, MakeTransfer},
    grant_store,
    grants::GrantChange,
    service::{self, Kind, Leg, Request},
};
use crate::{
    executor::{Answer, Claimed, Ran, Unit},
    idempotency::{Completion, query_completing},
    ledger::{self, Account, Posting},
    money::Money,
    store::StoreError,
    tenants::Tenant,
};

/// A credit, a debit or a transfer of a batch, with its single request.
pub struct Item<'r> {
    pub movement: Movement<'r>,
    pub request: &'r crate::executor::Request,
}

pub enum Movement<'r> {
    Credit(Uuid, &'r CreditRequest),
    Debit(Uuid, &'r DebitRequest),
    Transfer(&'r TransferRequest),
}

impl Movement<'_> {
    fn wallets(&self) -> [Option<Uuid>; 2] {
        match self {
            Movement::Credit(w, _) | Movement::Debit(w, _) => [Some(*w), None],
            Movement::Transfer(t) => [Some(t.from_wallet_id), Some(t.to_wallet_id)],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    /// Item `.0` cannot apply: its single request's refusal.
    #[error("items[{0}]: {1}")]
    Item(usize, WalletError),
    /// An item's key was claimed by another request after the batch found
    /// it unused: retried, the batch answers that item from its record.
    #[error("an item's idempotency key was just claimed by another request")]
    KeyTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for BulkError {
    fn from(e: sqlx::Error) -> Self {
        if crate::store::is_unique_violation(&e) {
            return BulkError::KeyTaken;
        }
        BulkError::Store(e.into())
    }
}

impl From<crate::executor::ExecError> for BulkError {
    fn from(e: crate::executor::ExecError) -> Self {
        match e {
            // A lock or statement timeout stays what it is (a 503 to retry).
            crate::executor::ExecError::Db(e) => BulkError::Store(e.into()),
            other => BulkError::Store(StoreError::broken(other.to_string())),
        }
    }
}

/// What no item caused (the lock, a stored row that does not read back).
fn store(e: WalletError) -> BulkError {
    match e {
        WalletError::Store(e) => BulkError::Store(e),
        other => BulkError::Store(StoreError::broken(other.to_string())),
    }
}

/// Applies `items` set-wise under the batch's claimed key and returns each
/// item's answer, or `None` when they must run one by one (nothing was
/// written then).
pub async fn apply(
    unit: &mut Unit<'_>,
    key: &Claimed,
    tenant: Tenant,
    items: &[Item<'_>],
) -> Result<Option<Vec<Answer>>, BulkError> {
    let mut ids: Vec<Uuid> = items
        .iter()
        .flat_map(|i| i.movement.wallets())
        .flatten()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let claim = unit.held(key);
    let (_, locked, _) = service::lock_rows(unit.conn(), claim, true, tenant, &ids)
        .await
        .map_err(store)?;
    if locked.len() != ids.len() {
        return Ok(None);
    }
    let mut locked = locked;
    service::expire_due_in_request(unit, tenant, &mut locked)
        .await
        .map_err(store)?;
    let keys: Vec<&str> = items.iter().map(|i| i.request.key.as_str()).collect();
    if !fresh(unit, tenant, &ids, &keys).await? {
        return Ok(None);
    }
    let (mut wallets, at) = moving(locked);
    let mut rows = Rows::default();
    let mut done = Completion::none(tenant.shop_id);
    let mut answers = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let key = item.request.key.as_str();
        let planned = match item.movement {
            Movement::Credit(w, r) => rows.movement(&mut wallets, w, Request::Credit(r.clone()), key),
            Movement::Debit(w, r) => rows.movement(&mut wallets, w, Request::Debit(r.clone()), key),
            Movement::Transfer(r) => rows
                .transfer(&mut wallets, r, key)
                .map(|t| Planned::Transfer(Box::new(t))),
        };
        let answer = match planned.map_err(|e| BulkError::Item(index, e))? {
            Planned::Credit(view) => unit.complete_item::<Credit>(&mut done, item.request, &view)?,
            Planned::Debit(view) => unit.complete_item::<Debit>(&mut done, item.request, &view)?,
            Planned::Transfer(view) => unit.complete_item::<MakeTransfer>(&mut done, item.request, &view)?,
        };
        answers.push(answer);
    }
    let prints: Vec<&[u8]> = items.iter().map(|i| i.request.fingerprint.as_slice()).collect();
    let ttl_hours = unit.ttl_hours() as i32;
    rows.write(unit.conn(), ttl_hours, done, Some(&prints), &wallets, at)
        .await?;
    Ok(Some(answers))
}

/// A single transfer between two locked wallets (`from`, `to`), written
/// as a batch writes its transfers: both legs, their journal transaction,
/// grants, consumptions and the stored answer in one statement. Only the
/// claimed key's answer is stored (no item keys). Then, under the same
/// locks, each wallet's balance alerts flip (each wallet moved once, so
/// as after its own leg) and fire.
pub(super) async fn transfer(
    unit: &mut Unit<'_>,
    key: Claimed,
    locked: Vec<Locked>,
    req: &TransferRequest,
) -> Result<Ran<Transfer>, WalletError> {
    let alerted: Vec<Uuid> = locked.iter().filter(|w| w.has_alerts).map(|w| w.id).collect();
    let (mut wallets, at) = moving(locked);
    let mut rows = Rows::default();
    let view = rows.transfer(&mut wallets, req, unit.key())?;
    let ttl_hours = unit.ttl_hours() as i32;
    let (conn, done, ran) = unit.complete(key, view);
    let shop_id = done.shop_id;
    rows.write(conn, ttl_hours, done, None, &wallets, at)
        .await
        .map_err(|e| match e {
            BulkError::Item(_, e) => e,
            BulkError::Store(e) => WalletError::Store(e),
            BulkError::KeyTaken => StoreError::broken("a transfer wrote no item key").into(),
        })?;
    for wallet_id in alerted {
        let flipped = service::flip_alerts(conn, shop_id, wallet_id).await?;
        crate::events::alerts::fire(conn, shop_id, wallet_id, &flipped).await?;
    }
    Ok(ran)
}

/// The locked wallets as a set-wise write moves them, at one time for
/// every row, no earlier than any wallet's last movement.
fn moving(locked: Vec<Locked>) -> (HashMap<Uuid, Wallet>, DateTime<Utc>) {
    let at = locked.iter().map(|w| w.at).max().unwrap_or_else(Utc::now);
    let wallets = locked
        .into_iter()
        .map(|mut w| {
            w.at = at;
            let start = w.balance;
            (
                w.id,
                Wallet {
                    locked: w,
                    start,
                    moves: 0,
                },
            )
        })
        .collect();
    (wallets, at)
}

/// Whether the set-wise path may run: no item's key has a record (nor an
/// expired one awaiting cleanup) or a movement, and no wallet has a
/// balance alert. The keys are then written with their answers by the
/// batch's one statement; a request that claims one meanwhile makes that
/// statement fail (`KeyTaken`), never a second application.
async fn fresh(
    unit: &mut Unit<'_>,
    tenant: Tenant,
    wallets: &[Uuid],
    keys: &[&str],
) -> Result<bool, BulkError> {
    let special = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM balance_alerts a WHERE a.shop_id = $1 AND a.wallet_id = ANY($2))
               OR EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.shop_id = $1 AND k.key = ANY($3))
               OR EXISTS (SELECT 1 FROM wallet_transactions t
                           WHERE t.shop_id = $1 AND t.idempotency_key = ANY($3)) AS "special!""#,
        tenant.shop_id,
        wallets,
        keys as &[&str]
    )
    .fetch_one(unit.conn())
    .await?;
    Ok(!special)
}

/// An item planned: its answer's body.
enum Planned {
    Credit(WalletTransaction),
    Debit(WalletTransaction),
    Transfer(Box<Transfer>),
}

/// A locked wallet as the batch moves it.
struct Wallet {
    locked: Locked,
    /// Its balance when locked.
    start: Decimal,
    /// Movements planned on it so far.
    moves: i32,
}

impl Wallet {
    /// The wallet after a leg planned on it as it stood, moving it by
    /// `delta`.
    fn moved(&mut self, delta: Decimal) {
        self.locked.balance += delta;
        self.moves += 1;
    }
}

/// Every row the batch writes, a column per array.
#[derive(Default)]
struct Rows {
    // History rows.
    ids: Vec<Uuid>,
    wallet_ids: Vec<Uuid>,
    seqs: Vec<i32>,
    types: Vec<&'static str>,
    categories: Vec<&'static str>,
    amounts: Vec<Decimal>,
    balances: Vec<Decimal>,
    descriptions: Vec<Option<String>>,
    metadata: Vec<Value>,
    keys: Vec<Option<String>>,
    transfer_ids: Vec<Option<Uuid>>,
    journal_refs: Vec<Uuid>,
    // Journal.
    journal_ids: Vec<Uuid>,
    journal_kinds: Vec<&'static str>,
    entry_tx: Vec<Uuid>,
    entry_lines: Vec<i16>,
    entry_accounts: Vec<&'static str>,
    entry_wallets: Vec<Option<Uuid>>,
    entry_currencies: Vec<&'static str>,
    entry_amounts: Vec<Decimal>,
    // Grants made (with what later items took from them already taken:
    // the statement cannot update a row it inserts), and changed.
    new_grants: Vec<NewRow>,
    changed: Vec<(Uuid, GrantChange)>,
    // Consumptions.
    use_tx: Vec<Uuid>,
    use_lines: Vec<i16>,
    use_grants: Vec<Uuid>,
    use_amounts: Vec<Decimal>,
    use_held: Vec<bool>,
    /// What movements spent of other holds' credit.
    lent: Vec<Vec<(Uuid, Decimal)>>,
}

struct NewRow {
    id: Uuid,
    wallet_id: Uuid,
    tx: Uuid,
    kind: &'static str,
    amount: Decimal,
    remaining: Decimal,
    priority: i16,
    expires_at: Option<DateTime<Utc>>,
    source: Option<Uuid>,
    metadata: Value,
}

impl Rows {
    /// Plans a credit or a debit on its wallet, which then stands after
    /// it, and adds its rows.
    fn movement(
        &mut self,
        wallets: &mut HashMap<Uuid, Wallet>,
        wallet_id: Uuid,
        req: Request,
        key: &str,
    ) -> Result<Planned, WalletError> {
        let wallet = wallets.get_mut(&wallet_id).ok_or(WalletError::NotFound)?;
        let (kind, amount, description, metadata) = req.split();
        let amount = Money::parse("amount", &amount, wallet.locked.currency)?.amount();
        let (type_, category) = Kind::movement(kind);
        let metadata = metadata.unwrap_or_default();
        let (posting, grants) = service::plan(&mut wallet.locked, kind, amount, &metadata)?;
        let journal_id = self.journal(&posting)?;
        let leg = Leg {
            id: Uuid::now_v7(),
            wallet: &wallet.locked,
            type_,
            category,
            amount,
            description: description.as_deref(),
            metadata: &metadata,
            key: Some(key),
            transfer_id: None,
            refund_of: None,
            journal_id,
            release: Decimal::ZERO,
            grants,
        };
        let (view, delta) = self.leg(leg, wallet.moves)?;
        wallet.moved(delta);
        Ok(match kind {
            Kind::Credit { .. } => Planned::Credit(view),
            Kind::Debit(_) => Planned::Debit(view),
        })
    }

    /// Plans a transfer's two legs as `service::transfer` does: what leaves
    /// the source arrives as grants like those it came from; only the
    /// debit leg carries the key.
    fn transfer(
        &mut self,
        wallets: &mut HashMap<Uuid, Wallet>,
        req: &TransferRequest,
        key: &str,
    ) -> Result<Transfer, WalletError> {
        if req.from_wallet_id == req.to_wallet_id {
            return Err(WalletError::SameWallet);
        }
        let (from_currency, to_currency) =
            match (wallets.get(&req.from_wallet_id), wallets.get(&req.to_wallet_id)) {
                (Some(f), Some(t)) => (f.locked.currency, t.locked.currency),
                _ => return Err(WalletError::NotFound),
            };
        if from_currency != to_currency {
            return Err(WalletError::CurrencyMismatch {
                from: from_currency.code().into(),
                to: to_currency.code().into(),
            });
        }
        let amount = Money::parse("amount", &req.amount, from_currency)?.amount();
        let posting = Posting::new(ledger::Kind::WalletTransfer, from_currency).transfer(
            Account::Wallet(req.from_wallet_id),
            Account::Wallet(req.to_wallet_id),
            amount,
        );
        let metadata = req.metadata.clone().unwrap_or_default();
        let transfer_id = Uuid::now_v7();
        let journal_id = self.journal(&posting)?;
        let mut leg = |wallet: &Wallet, type_, category, key: Option<&str>, grants| {
            self.leg(
                Leg {
                    id: Uuid::now_v7(),
                    wallet: &wallet.locked,
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
                    grants,
                },
                wallet.moves,
            )
        };
        let from = wallets
            .get_mut(&req.from_wallet_id)
            .ok_or(WalletError::NotFound)?;
        from.locked.ensure_can_spend(amount)?;
        let at = from.locked.at;
        let taken = from.locked.grants.spend(amount, at, &[]);
        let carried = from.locked.grants.carried(&taken, amount);
        let (out, delta) = leg(
            from,
            TransactionType::Debit,
            Category::TransferOut,
            Some(key),
            taken,
        )?;
        from.moved(delta);
        let to = wallets.get_mut(&req.to_wallet_id).ok_or(WalletError::NotFound)?;
        let given = to.locked.grants.credit(to.locked.balance, at, carried);
        let (into, delta) = leg(to, TransactionType::Credit, Category::TransferIn, None, given)?;
        to.moved(delta);
        Ok(service::transfer_view(
            transfer_id,
            req.description.clone(),
            out,
            into,
        ))
    }

    /// Adds a posting's journal transaction and entries; returns its id.
    fn journal(&mut self, posting: &Posting) -> Result<Uuid, WalletError> {
        let journal = posting.rows()?;
        let id = Uuid::now_v7();
        self.journal_ids.push(id);
        self.journal_kinds.push(journal.kind);
        for i in 0..journal.lines.len() {
            self.entry_tx.push(id);
            self.entry_lines.push(journal.lines[i]);
            self.entry_accounts.push(journal.accounts[i]);
            self.entry_wallets.push(journal.wallets[i]);
            self.entry_currencies.push(journal.currency);
            self.entry_amounts.push(journal.amounts[i]);
        }
        Ok(id)
    }

    /// Adds `leg`, on its wallet as it stands after `moves` movements of
    /// the batch (its history row, its grants' writes), and returns the
    /// row as the API shows it.
    fn leg(&mut self, leg: Leg<'_>, moves: i32) -> Result<(WalletTransaction, Decimal), WalletError> {
        let view = leg.view()?;
        let delta = leg.delta();
        let wallet_id = leg.wallet.id;
        self.ids.push(leg.id);
        self.wallet_ids.push(wallet_id);
        self.seqs.push(moves + 1);
        self.types.push(leg.type_.as_str());
        self.categories.push(leg.category.as_str());
        self.amounts.push(leg.amount);
        self.balances.push(leg.wallet.balance + delta);
        self.descriptions.push(leg.description.map(str::to_owned));
        self.metadata
            .push(serde_json::to_value(leg.metadata).unwrap_or_default());
        self.keys.push(leg.key.map(str::to_owned));
        self.transfer_ids.push(leg.transfer_id);
        self.journal_refs.push(leg.journal_id);
        let (id, grants) = (leg.id, leg.grants);
        for g in grants.created {
            self.new_grants.push(NewRow {
                id: g.id,
                wallet_id,
                tx: id,
                kind: g.spec.kind.as_str(),
                amount: g.amount,
                remaining: g.remaining,
                priority: g.spec.priority,
                expires_at: g.spec.expires_at,
                source: g.spec.source,
                metadata: serde_json::to_value(&g.spec.metadata).unwrap_or_default(),
            });
        }
        for (grant, change) in grants.changed {
            if let Some(made) = self.new_grants.iter_mut().find(|n| n.id == grant) {
                made.remaining -= change.taken;
                continue;
            }
            match self.changed.iter_mut().find(|(g, _)| *g == grant) {
                Some((_, c)) => {
                    c.taken += change.taken;
                    c.unheld += change.unheld;
                    c.expired += change.expired;
                }
                None => self.changed.push((grant, change)),
            }
        }
        for (line, u) in grants.uses.iter().enumerate() {
            self.use_tx.push(id);
            self.use_lines.push(line as i16 + 1);
            self.use_grants.push(u.grant_id);
            self.use_amounts.push(u.amount);
            self.use_held.push(u.held);
        }
        if !grants.lent.is_empty() {
            self.lent.push(grants.lent);
        }
        Ok((view, delta))
    }

    /// Writes every row and `done` in one statement (its answers under new
    /// keys of these fingerprints with `new_keys`), checks every wallet
    /// ends where the plan says, and lends what movements spent of other
    /// holds' credit.
    async fn write(
        &self,
        conn: &mut PgConnection,
        ttl_hours: i32,
        mut done: Completion<'_>,
        new_keys: Option<&[&[u8]]>,
        wallets: &HashMap<Uuid, Wallet>,
        at: DateTime<Utc>,
    ) -> Result<(), BulkError> {
        let shop_id = done.shop_id;
        let moved: Vec<&Wallet> = wallets.values().filter(|w| w.moves > 0).collect();
        let n = &self.new_grants;
        // A batch's items' keys are new rows written with their answers
        // here (`fresh` found none), not claimed first and completed after;
        // a single transfer's key was claimed: `done` completes it.
        let items = Completion {
            stored: if new_keys.is_some() {
                std::mem::take(&mut done.stored)
            } else {
                Vec::new()
            },
            ..Completion::none(done.shop_id)
        };
        let keys = items.stored_rows();
        let r = query_completing!(
            done,
            ", ik AS (
                 INSERT INTO idempotency_keys
                     (shop_id, key, fingerprint, expires_at, response_status, response_content_type,
                      response_location, response_etag, response_body)
                 SELECT $1, s.key, s.fingerprint, now() + make_interval(hours => $63), s.status,
                        s.content_type, s.location, s.etag, s.body
                   FROM UNNEST($64::text[], $65::bytea[], $66::smallint[], $67::text[], $68::text[],
                               $69::text[], $70::bytea[])
                        AS s(key, fingerprint, status, content_type, location, etag, body)
             ),
             jt AS (
                 INSERT INTO journal_transactions (shop_id, id, kind, created_at)
                 SELECT $1, j.id, j.kind, $19 FROM UNNEST($20::uuid[], $21::text[]) AS j(id, kind)
             ),
             je AS (
                 INSERT INTO journal_entries
                     (shop_id, journal_transaction_id, line, account, wallet_id, currency, amount)
                 SELECT $1, e.tx, e.line, e.account, e.wallet_id, e.currency, e.amount
                   FROM UNNEST($22::uuid[], $23::smallint[], $24::text[], $25::uuid[], $26::text[],
                               $27::numeric[]) AS e(tx, line, account, wallet_id, currency, amount)
             ),
             gn AS (
                 INSERT INTO credit_grants
                     (shop_id, id, wallet_id, kind, amount, remaining, priority, expires_at,
                      wallet_transaction_id, source_grant_id, metadata, created_at)
                 SELECT $1, n.id, n.wallet_id, n.kind, n.amount, n.remaining, n.priority, n.expires_at,
                        n.tx, n.source, n.metadata, $19
                   FROM UNNEST($28::uuid[], $29::uuid[], $30::text[], $31::numeric[], $32::numeric[],
                               $33::smallint[], $34::timestamptz[], $35::uuid[], $36::uuid[], $37::jsonb[])
                        AS n(id, wallet_id, kind, amount, remaining, priority, expires_at, tx, source, metadata)
             ),
             gc AS (
                 UPDATE credit_grants x
                    SET remaining = x.remaining - c.taken, held = x.held - c.unheld,
                        expired = x.expired + c.expired,
                        expired_at = CASE WHEN c.expired > 0 THEN coalesce(x.expired_at, $19)
                                          ELSE x.expired_at END
                   FROM UNNEST($38::uuid[], $39::numeric[], $40::numeric[], $41::numeric[])
                        AS c(id, taken, unheld, expired)
                  WHERE x.shop_id = $1 AND x.id = c.id
             ),
             gu AS (
                 INSERT INTO grant_consumptions (shop_id, wallet_transaction_id, line, grant_id, amount, held)
                 SELECT $1, u.tx, u.line, u.grant_id, u.amount, u.held
                   FROM UNNEST($42::uuid[], $43::smallint[], $44::uuid[], $45::numeric[], $46::bool[])
                        AS u(tx, line, grant_id, amount, held)
             ),
             w AS (
                 UPDATE wallets x SET balance = x.balance + d.delta, version = x.version + d.moves,
                                      updated_at = $19
                   FROM UNNEST($47::uuid[], $48::numeric[], $49::int[], $50::numeric[])
                        AS d(id, delta, moves, expected)
                  WHERE x.shop_id = $1 AND x.id = d.id
                 RETURNING x.id, x.version - d.moves AS before, x.balance = d.expected AS ok
             )
             -- Rows only for wallets that end as planned: fewer rows than
             -- movements means a wallet moved while locked. The insert is
             -- the statement itself, so Citus runs it whole on the shop's
             -- shard.
             INSERT INTO wallet_transactions
                 (shop_id, id, wallet_id, wallet_version, type, category, amount, balance_after,
                  description, metadata, idempotency_key, transfer_id, journal_transaction_id,
                  created_at)
             SELECT $1, t.id, t.wallet_id, w.before + t.seq, t.type, t.category, t.amount, t.balance,
                    t.description, t.metadata, t.key, t.transfer_id, t.journal_id, $19
               FROM UNNEST($51::uuid[], $52::uuid[], $53::int[], $54::text[], $55::text[], $56::numeric[],
                           $57::numeric[], $58::text[], $59::jsonb[], $60::text[], $61::uuid[],
                           $62::uuid[])
                    AS t(id, wallet_id, seq, type, category, amount, balance, description, metadata,
                         key, journal_id, transfer_id)
               JOIN w ON w.id = t.wallet_id AND w.ok
             RETURNING 1 AS \"one!\"",
            at,                                                    // $19
            &self.journal_ids,                                     // $20
            &self.journal_kinds as &[&str],                        // $21
            &self.entry_tx,                                        // $22
            &self.entry_lines,                                     // $23
            &self.entry_accounts as &[&str],                       // $24
            &self.entry_wallets as &[Option<Uuid>],                // $25
            &self.entry_currencies as &[&str],                     // $26
            &self.entry_amounts,                                   // $27
            &n.iter().map(|g| g.id).collect::<Vec<_>>(),          // $28
            &n.iter().map(|g| g.wallet_id).collect::<Vec<_>>(),   // $29
            &n.iter().map(|g| g.kind).collect::<Vec<_>>() as &[&str], // $30
            &n.iter().map(|g| g.amount).collect::<Vec<_>>(),      // $31
            &n.iter().map(|g| g.remaining).collect::<Vec<_>>(),   // $32
            &n.iter().map(|g| g.priority).collect::<Vec<_>>(),    // $33
            &n.iter().map(|g| g.expires_at).collect::<Vec<_>>() as &[Option<DateTime<Utc>>], // $34
            &n.iter().map(|g| g.tx).collect::<Vec<_>>(),          // $35
            &n.iter().map(|g| g.source).collect::<Vec<_>>() as &[Option<Uuid>], // $36
            &n.iter().map(|g| g.metadata.clone()).collect::<Vec<_>>(), // $37
            &self.changed.iter().map(|(g, _)| *g).collect::<Vec<_>>(), // $38
            &self.changed.iter().map(|(_, c)| c.taken).collect::<Vec<_>>(), // $39
            &self.changed.iter().map(|(_, c)| c.unheld).collect::<Vec<_>>(), // $40
            &self.changed.iter().map(|(_, c)| c.expired).collect::<Vec<_>>(), // $41
            &self.use_tx,                                          // $42
            &self.use_lines,                                       // $43
            &self.use_grants,                                      // $44
            &self.use_amounts,                                     // $45
            &self.use_held,                                        // $46
            &moved.iter().map(|w| w.locked.id).collect::<Vec<_>>(), // $47
            &moved.iter().map(|w| w.locked.balance - w.start).collect::<Vec<_>>(), // $48
            &moved.iter().map(|w| w.moves).collect::<Vec<_>>(),   // $49
            &moved.iter().map(|w| w.locked.balance).collect::<Vec<_>>(), // $50
            &self.ids,                                             // $51
            &self.wallet_ids,                                      // $52
            &self.seqs,                                            // $53
            &self.types as &[&str],                                // $54
            &self.categories as &[&str],                           // $55
            &self.amounts,                                         // $56
            &self.balances,                                        // $57
            &self.descriptions as &[Option<String>],               // $58
            &self.metadata,                                        // $59
            &self.keys as &[Option<String>],                       // $60
            &self.journal_refs,                                    // $61
            &self.transfer_ids as &[Option<Uuid>],                 // $62
            ttl_hours,                                             // $63
            &keys.keys as &[&str],                                 // $64
            new_keys.unwrap_or_default() as &[&[u8]],             // $65
            &keys.statuses,                                        // $66
            &keys.content_types as &[&str],                        // $67
            &keys.locations as &[Option<&str>],                    // $68
            &keys.etags as &[Option<&str>],                        // $69
            &keys.bodies as &[&[u8]],                              // $70
        )
        .fetch_all(&mut *conn)
        .await?;
        if r.len() != self.ids.len() {
            // Only if the rows were not locked as assumed: never commit
            // answers that differ from the books.
            return Err(StoreError::broken("a batch's wallets moved while locked").into());
        }
        for lent in &self.lent {
            grant_store::lend_holds(conn, shop_id, None, lent)
                .await
                .map_err(store)?;
        }
        Ok(())
    }
}
