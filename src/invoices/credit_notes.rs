//! Credit notes: lower what an open or paid invoice's customer owes
//! (revenue → receivables), numbered per shop in their own gapless series
//! (`CN-000001`). An overpayment the credit makes is refunded as asked (to
//! a wallet, or to the invoice's payments newest first) or kept with the
//! shop as the invoice's customer credit (receivables → customer_credit).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::{PgConnection, types::Json};
use uuid::Uuid;

use super::{
    CreateCreditNote, CreditLine, CreditNote, InvoiceError, InvoiceStatus, RefundMode,
    refunds::{self, Refunding},
    service::{self, invalid},
};
use crate::{
    executor::{Claimed, Run, Unit},
    ledger::{self, Account, Posting},
    metadata::Metadata,
    money::{Currency, Money},
    pagination::{Page, PageParams},
    store,
    tenants::Tenant,
    wallets::{self, Category, TransactionType, WalletError, grants::GrantSpec},
};

/// The number as shown: `CN-000007`.
fn number_text(n: i64) -> String {
    format!("CN-{n:06}")
}

/// The credit's lines with their amounts in the invoice's currency.
fn lines_of(req: &CreateCreditNote, currency: Currency) -> Result<Vec<(String, Decimal)>, InvoiceError> {
    match (&req.lines, &req.amount) {
        (Some(lines), None) => lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                Money::parse("amount", &l.amount, currency)
                    .map(|m| (l.description.clone(), m.amount()))
                    .map_err(|e| invalid(format!("lines[{i}].amount"), e.error.to_string()))
            })
            .collect(),
        (None, Some(amount)) => Ok(vec![(
            req.reason.clone(),
            Money::parse("amount", amount, currency)?.amount(),
        )]),
        _ => Err(invalid("amount", "give either lines or amount")),
    }
}

/// Issues a credit note on an open or paid invoice. Locks the invoice,
/// then its payments or the wallet refunded, then the shop's credit-note
/// counter (last, so concurrent credit notes queue only for the rest of
/// their transaction and a rollback returns the number). The note keeps
/// the request key: the same key again (its record expired) answers it.
pub async fn credit_note(
    unit: &mut Unit<'_>,
    claimed: Claimed,
    tenant: Tenant,
    invoice_id: Uuid,
    req: CreateCreditNote,
) -> Result<(Claimed, Run<CreditNote>), InvoiceError> {
    let key = unit.key();
    let conn = unit.conn();
    let mode = req.refund.unwrap_or(RefundMode::None);
    match (mode, req.wallet_id) {
        (RefundMode::Wallet, None) => return Err(invalid("wallet_id", "is required with refund wallet")),
        (RefundMode::Wallet, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(invalid("wallet_id", "is only allowed with refund wallet")),
    }
    let invoice = service::lock(conn, tenant, invoice_id).await?;
    let lines = lines_of(&req, invoice.currency)?;
    let amount: Decimal = lines.iter().map(|(_, a)| *a).sum();
    if let Some(earlier) = note_where(conn, tenant, None, Some(key)).await? {
        // The same credit note only: same invoice, amount, refund and wallet.
        let same = earlier.invoice_id == invoice_id
            && earlier.amount == invoice.currency.text(amount)?
            && earlier.refund == mode
            && earlier.wallet_id == req.wallet_id;
        if !same {
            return Err(WalletError::KeyReused.into());
        }
        return Ok((claimed, Run::Earlier(earlier)));
    }
    match invoice.status {
        InvoiceStatus::Open | InvoiceStatus::Paid => {}
        other => return Err(InvoiceError::InvalidState(other.as_str())),
    }
    let remaining = invoice.total - invoice.amount_credited;
    if amount > remaining {
        return Err(InvoiceError::CreditExceedsRemaining {
            remaining: invoice.currency.text(remaining)?,
        });
    }
    let credited = invoice.amount_credited + amount;
    // What the customer paid beyond what is now owed.
    let over = (invoice.amount_paid + credited - invoice.total).max(Decimal::ZERO);
    let id = Uuid::now_v7();
    let journal_id = Uuid::now_v7();
    let mut posting = Posting::new(ledger::Kind::CreditNote, invoice.currency).transfer(
        Account::Revenue,
        Account::Receivables,
        amount,
    );
    let number = invoice.number.map(service::number_text).unwrap_or_default();
    let (mut refunded, mut kept, mut wallet_tx) = (Decimal::ZERO, Decimal::ZERO, None);
    let claimed = match (mode, req.wallet_id) {
        (RefundMode::Wallet, Some(wallet_id)) => {
            let (claimed, mut wallet) = wallets::lock_one(unit, claimed, tenant, wallet_id).await?;
            if wallet.currency != invoice.currency {
                return Err(InvoiceError::CurrencyMismatch {
                    wallet: wallet.currency.code(),
                    invoice: invoice.currency.code(),
                });
            }
            if !over.is_zero() {
                let description = format!("credit note on invoice {number}");
                let tx = wallets::move_locked(
                    unit.conn(),
                    tenant,
                    &mut wallet,
                    wallets::LockedMovement {
                        type_: TransactionType::Credit,
                        amount: over,
                        release: Decimal::ZERO,
                        category: Category::Refund,
                        kind: ledger::Kind::CreditNote,
                        counterpart: Account::Receivables,
                        description: Some(&description),
                        metadata: &Metadata::default(),
                        // Overpayment given back: the customer's own money.
                        grants: wallets::GrantPlan::New(GrantSpec::paid()),
                    },
                )
                .await?;
                wallet_tx = Some(tx.id);
                refunded = over;
            }
            claimed
        }
        (RefundMode::Original, _) if !over.is_zero() => {
            let payments = refunds::lock_payments(unit.conn(), tenant, invoice_id, None).await?;
            let mut plan = Vec::new();
            let mut left = over;
            for payment in payments {
                let take = payment.remaining().min(left);
                if !take.is_zero() {
                    left -= take;
                    plan.push((payment, take));
                }
                if left.is_zero() {
                    break;
                }
            }
            if !left.is_zero() {
                return Err(store::StoreError::broken(format!(
                    "invoice {invoice_id}'s payments hold less than its amount_paid"
                ))
                .into());
            }
            let mut ids: Vec<Uuid> = plan.iter().filter_map(|(p, _)| p.wallet_id).collect();
            ids.sort();
            ids.dedup();
            let (claimed, mut locked) = wallets::lock_many(unit, claimed, tenant, &ids).await?;
            let request_id = unit.request_id();
            let conn = unit.conn();
            for (payment, take) in &plan {
                let wallet = payment
                    .wallet_id
                    .and_then(|w| locked.iter_mut().find(|l| l.id == w));
                let refunding = Refunding {
                    amount: *take,
                    reason: Some(&req.reason),
                    external_ref: None,
                    credit_note_id: Some(id),
                    key: None,
                    request_id,
                };
                refunds::write(conn, tenant, invoice_id, &invoice, payment, wallet, refunding).await?;
            }
            refunded = over;
            claimed
        }
        _ => {
            if !over.is_zero() {
                posting = posting.transfer(Account::Receivables, Account::CustomerCredit, over);
                kept = over;
            }
            claimed
        }
    };
    let conn = unit.conn();
    ledger::post(conn, tenant.shop_id, journal_id, &posting, invoice.at).await?;
    let stored_lines: Vec<CreditLine> = lines
        .iter()
        .map(|(description, amount)| {
            Ok(CreditLine {
                description: description.clone(),
                amount: invoice.currency.text(*amount)?,
            })
        })
        .collect::<Result<_, InvoiceError>>()?;
    let number = sqlx::query_scalar!(
        "WITH n AS (
             INSERT INTO credit_note_counters (shop_id, last_number) VALUES ($1, 1)
             ON CONFLICT (shop_id) DO UPDATE SET last_number = credit_note_counters.last_number + 1
             RETURNING last_number
         )
         INSERT INTO credit_notes
             (shop_id, id, number, invoice_id, amount, reason, lines, refund, wallet_id,
              wallet_transaction_id, refunded, customer_credit, journal_transaction_id,
              idempotency_key, created_at)
         SELECT $1, $2, n.last_number, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM n
         RETURNING number",
        tenant.shop_id,
        id,
        invoice_id,
        amount,
        req.reason,
        Json(&stored_lines) as _,
        mode.as_str(),
        req.wallet_id,
        wallet_tx,
        refunded,
        kept,
        journal_id,
        key,
        invoice.at,
    )
    .fetch_one(&mut *conn)
    .await?;
    service::settle(
        conn,
        tenant,
        invoice_id,
        &invoice,
        credited,
        invoice.amount_paid - over,
        kept,
    )
    .await?;
    let currency = invoice.currency;
    Ok((
        claimed,
        Run::New(CreditNote {
            id,
            number: number_text(number),
            invoice_id,
            currency: currency.code().to_owned(),
            amount: currency.text(amount)?,
            reason: req.reason,
            lines: stored_lines,
            refund: mode,
            wallet_id: req.wallet_id,
            wallet_transaction_id: wallet_tx,
            refunded: currency.text(refunded)?,
            customer_credit: currency.text(kept)?,
            journal_transaction_id: journal_id,
            created_at: invoice.at,
        }),
    ))
}

struct NoteRow {
    id: Uuid,
    number: i64,
    invoice_id: Uuid,
    currency: String,
    amount: Decimal,
    reason: String,
    lines: Value,
    refund: String,
    wallet_id: Option<Uuid>,
    wallet_transaction_id: Option<Uuid>,
    refunded: Decimal,
    customer_credit: Decimal,
    journal_transaction_id: Uuid,
    created_at: DateTime<Utc>,
}

impl NoteRow {
    fn view(self) -> Result<CreditNote, InvoiceError> {
        let currency = Currency::stored(&self.currency)?;
        let lines: Vec<CreditLine> = serde_json::from_value(self.lines)
            .map_err(|e| store::StoreError::broken(format!("credit note {} lines: {e}", self.id)))?;
        Ok(CreditNote {
            id: self.id,
            number: number_text(self.number),
            invoice_id: self.invoice_id,
            currency: currency.code().to_owned(),
            amount: currency.text(self.amount)?,
            reason: self.reason,
            lines,
            refund: store::decode("refund mode", &self.refund)?,
            wallet_id: self.wallet_id,
            wallet_transaction_id: self.wallet_transaction_id,
            refunded: currency.text(self.refunded)?,
            customer_credit: currency.text(self.customer_credit)?,
            journal_transaction_id: self.journal_transaction_id,
            created_at: self.created_at,
        })
    }
}

/// The shop's credit note `id`, or the one made under request `key`.
async fn note_where(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Option<Uuid>,
    key: Option<&str>,
) -> Result<Option<CreditNote>, InvoiceError> {
    sqlx::query_as!(
        NoteRow,
        "SELECT c.id, c.number, c.invoice_id, i.currency, c.amount, c.reason, c.lines, c.refund,
                c.wallet_id, c.wallet_transaction_id, c.refunded, c.customer_credit,
                c.journal_transaction_id, c.created_at
           FROM credit_notes c
           JOIN invoices i ON i.shop_id = c.shop_id AND i.id = c.invoice_id
          WHERE c.shop_id = $1 AND (c.id = $2 OR c.idempotency_key = $3)",
        tenant.shop_id,
        id,
        key
    )
    .fetch_optional(conn)
    .await?
    .map(NoteRow::view)
    .transpose()
}

pub async fn get_credit_note(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
) -> Result<CreditNote, InvoiceError> {
    note_where(conn, tenant, Some(id), None)
        .await?
        .ok_or(InvoiceError::CreditNoteNotFound)
}

/// The shop's credit notes (of one invoice), newest first.
pub async fn credit_notes(
    conn: &mut PgConnection,
    tenant: Tenant,
    invoice_id: Option<Uuid>,
    page: &PageParams,
) -> Result<Page<CreditNote>, InvoiceError> {
    let rows = sqlx::query_as!(
        NoteRow,
        "SELECT c.id, c.number, c.invoice_id, i.currency, c.amount, c.reason, c.lines, c.refund,
                c.wallet_id, c.wallet_transaction_id, c.refunded, c.customer_credit,
                c.journal_transaction_id, c.created_at
           FROM credit_notes c
           JOIN invoices i ON i.shop_id = c.shop_id AND i.id = c.invoice_id
          WHERE c.shop_id = $1 AND ($2::uuid IS NULL OR c.invoice_id = $2)
            AND ($3::uuid IS NULL OR c.id < $3)
          ORDER BY c.id DESC
          LIMIT $4",
        tenant.shop_id,
        invoice_id,
        page.starting_after,
        page.limit() + 1
    )
    .fetch_all(conn)
    .await?;
    let notes = rows
        .into_iter()
        .map(NoteRow::view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(notes, page.limit()))
}

/// The credit notes of the invoices `ids`, oldest first, by invoice.
pub(super) async fn of_invoices(
    conn: &mut PgConnection,
    tenant: Tenant,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<CreditNote>>, InvoiceError> {
    let rows = sqlx::query_as!(
        NoteRow,
        "SELECT c.id, c.number, c.invoice_id, i.currency, c.amount, c.reason, c.lines, c.refund,
                c.wallet_id, c.wallet_transaction_id, c.refunded, c.customer_credit,
                c.journal_transaction_id, c.created_at
           FROM credit_notes c
           JOIN invoices i ON i.shop_id = c.shop_id AND i.id = c.invoice_id
          WHERE c.shop_id = $1 AND c.invoice_id = ANY($2)
          ORDER BY c.number",
        tenant.shop_id,
        ids
    )
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<Uuid, Vec<CreditNote>> = HashMap::new();
    for r in rows {
        out.entry(r.invoice_id).or_default().push(r.view()?);
    }
    Ok(out)
}
