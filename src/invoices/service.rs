//! Invoice use cases and their SQL. Each takes the caller's transaction and
//! the tenant; every query filters by the tenant's shop.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;
use sqlx::{PgConnection, types::Json};
use uuid::Uuid;

use super::{
    CreateInvoice, Invoice, InvoiceError, InvoiceLine, InvoiceStatus, InvoiceTotals, LineInput, PayInvoice,
    Payment, PaymentMethod, PaymentReceipt, UpdateInvoice,
};
use crate::{
    executor::{Claimed, Run, Unit},
    ledger::{self, Account, Posting},
    metadata::{self, Metadata},
    money::{Currency, Decimalish, Money},
    pagination::{Page, PageParams},
    store,
    tenants::Tenant,
    wallets::{self, Category, TransactionType, WalletError},
};

/// Amounts stay below 10^15 (15 integer digits), like every amount.
fn max_amount() -> Decimal {
    Decimal::from(1_000_000_000_000_000i64)
}

pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> InvoiceError {
    InvoiceError::Invalid(field.into(), message.into())
}

/// A line decimal as text with its own scale (quantities and unit amounts
/// may be finer than the currency), trailing zeros dropped.
fn line_text(value: Decimal) -> String {
    value.normalize().to_string()
}

/// The number as shown: `INV-000123`.
pub fn number_text(n: i64) -> String {
    format!("INV-{n:06}")
}

struct Priced {
    numbers: Vec<i16>,
    descriptions: Vec<String>,
    quantities: Vec<Decimal>,
    unit_amounts: Vec<Decimal>,
    amounts: Vec<Decimal>,
    subtotal: Decimal,
}

/// Each line's amount is quantity × unit_amount rounded half-up (away from
/// zero; amounts are never negative) to the currency's minor unit, once per
/// line; the subtotal is the sum of the rounded lines.
fn price(lines: &[LineInput], currency: Currency) -> Result<Priced, InvoiceError> {
    let mut p = Priced {
        numbers: Vec::with_capacity(lines.len()),
        descriptions: Vec::with_capacity(lines.len()),
        quantities: Vec::with_capacity(lines.len()),
        unit_amounts: Vec::with_capacity(lines.len()),
        amounts: Vec::with_capacity(lines.len()),
        subtotal: Decimal::ZERO,
    };
    for (i, line) in lines.iter().enumerate() {
        let field = |name: &str| format!("lines[{i}].{name}");
        let parse = |name: &str, raw: &str| {
            Decimalish::parse(raw)
                .map(|d| d.value())
                .map_err(|e| invalid(field(name), e.to_string()))
        };
        let quantity = parse("quantity", &line.quantity)?;
        let unit_amount = parse("unit_amount", &line.unit_amount)?;
        let amount = quantity
            .checked_mul(unit_amount)
            .map(|a| a.round_dp_with_strategy(currency.exponent(), RoundingStrategy::MidpointAwayFromZero))
            .filter(|a| *a < max_amount())
            .ok_or_else(|| invalid(field("quantity"), "quantity × unit_amount is too large"))?;
        p.subtotal += amount;
        if p.subtotal >= max_amount() {
            return Err(invalid("lines", "the invoice total is too large"));
        }
        p.numbers.push(i as i16 + 1);
        p.descriptions.push(line.description.clone());
        p.quantities.push(quantity);
        p.unit_amounts.push(unit_amount);
        p.amounts.push(amount);
    }
    Ok(p)
}

async fn write_lines(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
    p: &Priced,
) -> Result<(), InvoiceError> {
    sqlx::query!(
        "INSERT INTO invoice_lines (shop_id, invoice_id, line, description, quantity, unit_amount, amount)
         SELECT $1, $2, l.line, l.description, l.quantity, l.unit_amount, l.amount
           FROM UNNEST($3::smallint[], $4::text[], $5::numeric[], $6::numeric[], $7::numeric[])
                AS l(line, description, quantity, unit_amount, amount)",
        tenant.shop_id,
        id,
        &p.numbers,
        &p.descriptions,
        &p.quantities,
        &p.unit_amounts,
        &p.amounts,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A draft with the given id (the caller may have named it already, as a
/// contract's approval does).
pub async fn create(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
    req: CreateInvoice,
) -> Result<Invoice, InvoiceError> {
    let currency = Currency::parse(&req.currency).map_err(|e| invalid("currency", e.to_string()))?;
    let priced = price(&req.lines, currency)?;
    sqlx::query!(
        "INSERT INTO invoices
             (shop_id, id, customer_ref, currency, due_date, memo, metadata, subtotal, total,
              created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, now(), now())",
        tenant.shop_id,
        id,
        req.customer_ref,
        currency.code(),
        req.due_date,
        req.memo,
        Json(req.metadata.unwrap_or_default()) as _,
        priced.subtotal,
    )
    .execute(&mut *conn)
    .await?;
    write_lines(conn, tenant, id, &priced).await?;
    load(conn, tenant, id).await
}

/// An invoice row locked for the rest of the transaction, with the
/// database's clock read once the lock is granted.
pub struct Locked {
    pub status: InvoiceStatus,
    pub number: Option<i64>,
    pub currency: Currency,
    pub total: Decimal,
    pub amount_credited: Decimal,
    pub amount_paid: Decimal,
    pub at: DateTime<Utc>,
}

impl Locked {
    fn require(&self, status: InvoiceStatus) -> Result<(), InvoiceError> {
        if self.status != status {
            return Err(InvoiceError::InvalidState(self.status.as_str()));
        }
        Ok(())
    }

    /// `total - amount_credited - amount_paid`.
    pub fn due(&self) -> Decimal {
        self.total - self.amount_credited - self.amount_paid
    }

    /// The status its amounts make of an issued invoice.
    pub fn settled_status(total: Decimal, credited: Decimal, paid: Decimal) -> InvoiceStatus {
        if !total.is_zero() && credited == total {
            InvoiceStatus::Credited
        } else if credited + paid == total {
            InvoiceStatus::Paid
        } else {
            InvoiceStatus::Open
        }
    }
}

pub async fn lock(conn: &mut PgConnection, tenant: Tenant, id: Uuid) -> Result<Locked, InvoiceError> {
    let r = sqlx::query!(
        "SELECT i.status AS \"status!\", i.number, i.currency AS \"currency!\", i.total AS \"total!\",
                i.amount_credited AS \"amount_credited!\", i.amount_paid AS \"amount_paid!\",
                clock_timestamp() AS \"at!\"
           FROM (SELECT status, number, currency, total, amount_credited, amount_paid FROM invoices
                  WHERE shop_id = $1 AND id = $2 FOR UPDATE) i",
        tenant.shop_id,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(InvoiceError::NotFound)?;
    Ok(Locked {
        status: status_of(&r.status)?,
        number: r.number,
        currency: Currency::stored(&r.currency)?,
        total: r.total,
        amount_credited: r.amount_credited,
        amount_paid: r.amount_paid,
        at: r.at,
    })
}

pub(super) fn status_of(s: &str) -> Result<InvoiceStatus, InvoiceError> {
    Ok(store::decode("invoice status", s)?)
}

/// Replaces what the request names on a draft; `memo: ""` clears the memo.
pub async fn update(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
    req: UpdateInvoice,
) -> Result<Invoice, InvoiceError> {
    let invoice = lock(conn, tenant, id).await?;
    invoice.require(InvoiceStatus::Draft)?;
    // A PATCH that names nothing changes nothing, version included.
    let changes =
        req.due_date.is_some() || req.memo.is_some() || req.metadata.is_some() || req.lines.is_some();
    let mut subtotal = None;
    if let Some(lines) = &req.lines {
        let priced = price(lines, invoice.currency)?;
        sqlx::query!(
            "DELETE FROM invoice_lines WHERE shop_id = $1 AND invoice_id = $2",
            tenant.shop_id,
            id
        )
        .execute(&mut *conn)
        .await?;
        write_lines(conn, tenant, id, &priced).await?;
        subtotal = Some(priced.subtotal);
    }
    sqlx::query!(
        "UPDATE invoices
            SET due_date = COALESCE($3, due_date),
                memo = CASE WHEN $4::text IS NULL THEN memo ELSE NULLIF($4, '') END,
                metadata = COALESCE($5, metadata),
                subtotal = COALESCE($6, subtotal), total = COALESCE($6, total),
                version = version + $8::bool::int,
                updated_at = CASE WHEN $8 THEN $7 ELSE updated_at END
          WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
        id,
        req.due_date,
        req.memo,
        req.metadata.map(Json) as _,
        subtotal,
        invoice.at,
        changes,
    )
    .execute(&mut *conn)
    .await?;
    load(conn, tenant, id).await
}

/// Posts receivables → revenue and takes the shop's next number. The
/// counter row is locked last, so concurrent finalizes of one shop queue
/// only for the rest of their transaction, and a rollback returns the
/// number. A zero total is paid at once and posts nothing. The invoice
/// keeps `key`: the same key again (its record expired) answers the
/// finalized invoice instead of a 409.
pub async fn finalize(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
    key: Option<&str>,
) -> Result<Run<Invoice>, InvoiceError> {
    let invoice = lock(conn, tenant, id).await?;
    if let Some(key) = key
        && let Some(earlier) = sqlx::query_scalar!(
            "SELECT id FROM invoices WHERE shop_id = $1 AND finalize_key = $2",
            tenant.shop_id,
            key
        )
        .fetch_optional(&mut *conn)
        .await?
    {
        if earlier != id {
            return Err(WalletError::KeyReused.into());
        }
        return Ok(Run::Earlier(load(conn, tenant, id).await?));
    }
    invoice.require(InvoiceStatus::Draft)?;
    let status = if invoice.total.is_zero() {
        InvoiceStatus::Paid
    } else {
        let posting = Posting::new(ledger::Kind::InvoiceFinalize, invoice.currency).transfer(
            Account::Receivables,
            Account::Revenue,
            invoice.total,
        );
        ledger::post(conn, tenant.shop_id, Uuid::now_v7(), &posting, invoice.at).await?;
        InvoiceStatus::Open
    };
    sqlx::query!(
        "WITH n AS (
             INSERT INTO invoice_counters (shop_id, last_number) VALUES ($1, 1)
             ON CONFLICT (shop_id) DO UPDATE SET last_number = invoice_counters.last_number + 1
             RETURNING last_number
         )
         UPDATE invoices
            SET number = (SELECT last_number FROM n), status = $3, finalized_at = $4,
                paid_at = CASE WHEN $3 = 'paid' THEN $4::timestamptz END,
                version = version + 1, updated_at = $4, finalize_key = $5
          WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
        id,
        status.as_str(),
        invoice.at,
        key,
    )
    .execute(&mut *conn)
    .await?;
    Ok(Run::New(load(conn, tenant, id).await?))
}

/// A draft, or an open invoice with nothing paid, becomes void; an open
/// one's finalize posting is reversed.
pub async fn void(conn: &mut PgConnection, tenant: Tenant, id: Uuid) -> Result<Invoice, InvoiceError> {
    let invoice = lock(conn, tenant, id).await?;
    match invoice.status {
        InvoiceStatus::Draft => {}
        InvoiceStatus::Open if !invoice.amount_credited.is_zero() => {
            return Err(InvoiceError::InvalidState("partly credited"));
        }
        InvoiceStatus::Open if invoice.amount_paid.is_zero() => {
            let posting = Posting::new(ledger::Kind::InvoiceVoid, invoice.currency).transfer(
                Account::Revenue,
                Account::Receivables,
                invoice.total,
            );
            ledger::post(conn, tenant.shop_id, Uuid::now_v7(), &posting, invoice.at).await?;
        }
        InvoiceStatus::Open => return Err(InvoiceError::InvalidState("partly paid")),
        other => return Err(InvoiceError::InvalidState(other.as_str())),
    }
    sqlx::query!(
        "UPDATE invoices SET status = 'void', voided_at = $3, version = version + 1, updated_at = $3
          WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
        id,
        invoice.at,
    )
    .execute(&mut *conn)
    .await?;
    load(conn, tenant, id).await
}

/// Records a payment of an open invoice: locks the invoice, then the
/// paying wallet; posts external_payments (or the wallet) → receivables;
/// `paid` once nothing is due. A known `external_ref` answers with its
/// payment instead, and so does a payment made under the same request
/// `key` (its idempotency record expired since).
pub async fn pay(
    unit: &mut Unit<'_>,
    claimed: Claimed,
    tenant: Tenant,
    id: Uuid,
    req: PayInvoice,
) -> Result<(Claimed, Run<PaymentReceipt>), InvoiceError> {
    let key = unit.key();
    let conn = unit.conn();
    match (req.method, req.wallet_id) {
        (PaymentMethod::Wallet, None) => return Err(invalid("wallet_id", "is required with method wallet")),
        (PaymentMethod::Wallet, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(invalid("wallet_id", "is only allowed with method wallet")),
    }
    let invoice = lock(conn, tenant, id).await?;
    let amount = match &req.amount {
        None => None,
        Some(raw) => Some(Money::parse("amount", raw, invoice.currency)?.amount()),
    };
    if let Some(earlier) = payment_by_key(conn, tenant, key).await? {
        // Read under the invoice's lock, like a reference below.
        let same = earlier.invoice_id == id
            && earlier.method == req.method
            && earlier.wallet_id == req.wallet_id
            && earlier.external_ref == req.external_ref
            && amount.is_none_or(|a| earlier.amount.parse::<Decimal>().ok() == Some(a));
        if !same {
            return Err(WalletError::KeyReused.into());
        }
        let receipt = PaymentReceipt {
            invoice: totals(conn, tenant, id).await?,
            payment: earlier,
            existing: true,
        };
        return Ok((claimed, Run::Earlier(receipt)));
    }
    if let Some(key) = &req.external_ref
        && let Some(existing) = payment_with_ref(conn, tenant, key).await?
    {
        // Read under the invoice's lock: a payment of this invoice with
        // this reference has committed by now.
        let differs = if existing.invoice_id != id {
            Some(("invoice_id", existing.invoice_id.to_string()))
        } else if amount.is_some_and(|a| existing.amount.parse::<Decimal>().ok() != Some(a)) {
            Some(("amount", existing.amount.clone()))
        } else {
            None
        };
        if let Some((field, value)) = differs {
            return Err(InvoiceError::ExternalRefConflict {
                what: "payment",
                key: key.clone(),
                field,
                existing: value,
            });
        }
        let receipt = PaymentReceipt {
            invoice: totals(conn, tenant, id).await?,
            payment: existing,
            existing: true,
        };
        return Ok((claimed, Run::New(receipt)));
    }
    invoice.require(InvoiceStatus::Open)?;
    let due = invoice.due();
    let amount = amount.unwrap_or(due);
    if amount > due {
        return Err(invalid(
            "amount",
            format!("must not exceed amount_due ({})", invoice.currency.text(due)?),
        ));
    }
    let number = invoice.number.map(number_text).unwrap_or_default();
    let payment_id = Uuid::now_v7();
    let (claimed, journal_id, wallet_tx) = match req.wallet_id {
        Some(wallet_id) => {
            let (claimed, mut wallet) = wallets::lock_one(unit, claimed, tenant, wallet_id).await?;
            let conn = unit.conn();
            if wallet.currency != invoice.currency {
                return Err(InvoiceError::CurrencyMismatch {
                    wallet: wallet.currency.code(),
                    invoice: invoice.currency.code(),
                });
            }
            wallet.ensure_can_spend(amount)?;
            let description = format!("invoice {number}");
            let tx = wallets::move_locked(
                conn,
                tenant,
                &mut wallet,
                wallets::LockedMovement {
                    type_: TransactionType::Debit,
                    amount,
                    release: Decimal::ZERO,
                    category: Category::InvoicePayment,
                    kind: ledger::Kind::InvoicePayment,
                    counterpart: Account::Receivables,
                    description: Some(&description),
                    metadata: &Metadata::default(),
                    grants: wallets::GrantPlan::Spend { hold: None },
                },
            )
            .await?;
            (claimed, tx.journal_transaction_id, Some(tx.id))
        }
        None => {
            let journal_id = Uuid::now_v7();
            let posting = Posting::new(ledger::Kind::InvoicePayment, invoice.currency).transfer(
                Account::ExternalPayments,
                Account::Receivables,
                amount,
            );
            ledger::post(unit.conn(), tenant.shop_id, journal_id, &posting, invoice.at).await?;
            (claimed, journal_id, None)
        }
    };
    let conn = unit.conn();
    let recorded = sqlx::query!(
        "WITH p AS (
             INSERT INTO invoice_payments
                 (shop_id, id, invoice_id, method, amount, external_ref, wallet_id,
                  wallet_transaction_id, journal_transaction_id, created_at, idempotency_key)
             VALUES ($1, $3, $2, $4, $5, $6, $7, $8, $9, $10, $11)
         )
         UPDATE invoices
            SET amount_paid = amount_paid + $5,
                status = CASE WHEN amount_credited + amount_paid + $5 = total THEN 'paid' ELSE status END,
                paid_at = CASE WHEN amount_credited + amount_paid + $5 = total THEN $10 END,
                version = version + 1, updated_at = $10
          WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
        id,
        payment_id,
        req.method.as_str(),
        amount,
        req.external_ref,
        req.wallet_id,
        wallet_tx,
        journal_id,
        invoice.at,
        key,
    )
    .execute(&mut *conn)
    .await;
    match recorded {
        Ok(_) => {}
        // The same reference on another invoice, committed meanwhile (the
        // same invoice would have waited for its lock).
        Err(e) if store::constraint(&e) == Some("invoice_payments_external_ref") => {
            return Err(InvoiceError::ExternalRefConflict {
                what: "payment",
                key: req.external_ref.unwrap_or_default(),
                field: "invoice_id",
                existing: "another invoice".into(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    let payment = Payment {
        id: payment_id,
        invoice_id: id,
        method: req.method,
        amount: invoice.currency.text(amount)?,
        currency: invoice.currency.code().to_owned(),
        external_ref: req.external_ref,
        wallet_id: req.wallet_id,
        wallet_transaction_id: wallet_tx,
        amount_refunded: invoice.currency.text(Decimal::ZERO)?,
        journal_transaction_id: journal_id,
        created_at: invoice.at,
    };
    let receipt = PaymentReceipt {
        invoice: totals(conn, tenant, id).await?,
        payment,
        existing: false,
    };
    Ok((claimed, Run::New(receipt)))
}

/// The invoice's totals as they stand (a payment's answer).
pub async fn totals(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
) -> Result<InvoiceTotals, InvoiceError> {
    let r = sqlx::query!(
        "SELECT number, status, currency, total, amount_credited, amount_paid, customer_credit, version,
                paid_at
           FROM invoices WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(InvoiceError::NotFound)?;
    let currency = Currency::stored(&r.currency)?;
    Ok(InvoiceTotals {
        id,
        number: r.number.map(number_text),
        status: status_of(&r.status)?,
        currency: currency.code().to_owned(),
        total: currency.text(r.total)?,
        amount_credited: currency.text(r.amount_credited)?,
        amount_paid: currency.text(r.amount_paid)?,
        amount_due: currency.text(r.total - r.amount_credited - r.amount_paid)?,
        customer_credit: currency.text(r.customer_credit)?,
        version: r.version,
        paid_at: r.paid_at,
    })
}

/// Writes an issued invoice's new amounts after a credit note or a
/// refund, and the status they make (`Locked::settled_status`).
pub(super) async fn settle(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
    invoice: &Locked,
    credited: Decimal,
    paid: Decimal,
    customer_credit: Decimal,
) -> Result<(), InvoiceError> {
    let status = Locked::settled_status(invoice.total, credited, paid);
    sqlx::query!(
        "UPDATE invoices
            SET amount_credited = $3, amount_paid = $4, customer_credit = customer_credit + $5,
                status = $6, paid_at = CASE WHEN $6 = 'paid' THEN COALESCE(paid_at, $7) END,
                version = version + 1, updated_at = $7
          WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
        id,
        credited,
        paid,
        customer_credit,
        status.as_str(),
        invoice.at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Clone)]
pub(super) struct PaymentRow {
    id: Uuid,
    invoice_id: Uuid,
    method: String,
    amount: Decimal,
    currency: String,
    external_ref: Option<String>,
    wallet_id: Option<Uuid>,
    wallet_transaction_id: Option<Uuid>,
    amount_refunded: Decimal,
    journal_transaction_id: Uuid,
    created_at: DateTime<Utc>,
}

impl PaymentRow {
    pub fn view(self) -> Result<Payment, InvoiceError> {
        let currency = Currency::stored(&self.currency)?;
        Ok(Payment {
            id: self.id,
            invoice_id: self.invoice_id,
            method: store::decode("payment method", &self.method)?,
            amount: currency.text(self.amount)?,
            currency: currency.code().to_owned(),
            external_ref: self.external_ref,
            wallet_id: self.wallet_id,
            wallet_transaction_id: self.wallet_transaction_id,
            amount_refunded: currency.text(self.amount_refunded)?,
            journal_transaction_id: self.journal_transaction_id,
            created_at: self.created_at,
        })
    }
}

/// The shop's payment with this `external_ref`, or made under this
/// request key.
async fn payment_where(
    conn: &mut PgConnection,
    tenant: Tenant,
    external_ref: Option<&str>,
    key: Option<&str>,
) -> Result<Option<Payment>, InvoiceError> {
    sqlx::query_as!(
        PaymentRow,
        "SELECT p.id, p.invoice_id, p.method, p.amount, i.currency, p.external_ref, p.wallet_id,
                p.wallet_transaction_id, p.amount_refunded, p.journal_transaction_id, p.created_at
           FROM invoice_payments p
           JOIN invoices i ON i.shop_id = p.shop_id AND i.id = p.invoice_id
          WHERE p.shop_id = $1 AND (p.external_ref = $2 OR p.idempotency_key = $3)",
        tenant.shop_id,
        external_ref,
        key
    )
    .fetch_optional(conn)
    .await?
    .map(PaymentRow::view)
    .transpose()
}

/// The shop's payment with this `external_ref` (a provider's id).
pub async fn payment_with_ref(
    conn: &mut PgConnection,
    tenant: Tenant,
    external_ref: &str,
) -> Result<Option<Payment>, InvoiceError> {
    payment_where(conn, tenant, Some(external_ref), None).await
}

async fn payment_by_key(
    conn: &mut PgConnection,
    tenant: Tenant,
    key: &str,
) -> Result<Option<Payment>, InvoiceError> {
    payment_where(conn, tenant, None, Some(key)).await
}

/// An invoice's payments, oldest first.
pub async fn payments(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
    page: &PageParams,
) -> Result<Page<Payment>, InvoiceError> {
    totals(conn, tenant, id).await?;
    let rows = sqlx::query_as!(
        PaymentRow,
        "SELECT p.id, p.invoice_id, p.method, p.amount, i.currency, p.external_ref, p.wallet_id,
                p.wallet_transaction_id, p.amount_refunded, p.journal_transaction_id, p.created_at
           FROM invoice_payments p
           JOIN invoices i ON i.shop_id = p.shop_id AND i.id = p.invoice_id
          WHERE p.shop_id = $1 AND p.invoice_id = $2 AND ($3::uuid IS NULL OR p.id > $3)
          ORDER BY p.id
          LIMIT $4",
        tenant.shop_id,
        id,
        page.starting_after,
        page.limit() + 1
    )
    .fetch_all(conn)
    .await?;
    let items = rows
        .into_iter()
        .map(PaymentRow::view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(items, page.limit()))
}

struct InvoiceRow {
    id: Uuid,
    number: Option<i64>,
    customer_ref: String,
    currency: String,
    status: String,
    due_date: Option<NaiveDate>,
    memo: Option<String>,
    metadata: Value,
    subtotal: Decimal,
    total: Decimal,
    amount_credited: Decimal,
    amount_paid: Decimal,
    customer_credit: Decimal,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finalized_at: Option<DateTime<Utc>>,
    paid_at: Option<DateTime<Utc>>,
    voided_at: Option<DateTime<Utc>>,
}

struct LineRow {
    invoice_id: Uuid,
    description: String,
    quantity: Decimal,
    unit_amount: Decimal,
    amount: Decimal,
}

/// Invoices with their lines, in the order of `rows`.
async fn with_details(
    conn: &mut PgConnection,
    tenant: Tenant,
    rows: Vec<InvoiceRow>,
) -> Result<Vec<Invoice>, InvoiceError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let lines = sqlx::query_as!(
        LineRow,
        "SELECT invoice_id, description, quantity, unit_amount, amount FROM invoice_lines
          WHERE shop_id = $1 AND invoice_id = ANY($2) ORDER BY invoice_id, line",
        tenant.shop_id,
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut credit_notes = super::credit_notes::of_invoices(conn, tenant, &ids).await?;
    let mut refunds = super::refunds::of_invoices(conn, tenant, &ids).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let currency = Currency::stored(&r.currency)?;
        let lines = lines
            .iter()
            .filter(|l| l.invoice_id == r.id)
            .map(|l| {
                Ok(InvoiceLine {
                    description: l.description.clone(),
                    quantity: line_text(l.quantity),
                    unit_amount: line_text(l.unit_amount),
                    amount: currency.text(l.amount)?,
                })
            })
            .collect::<Result<Vec<_>, InvoiceError>>()?;
        out.push(Invoice {
            id: r.id,
            number: r.number.map(number_text),
            customer_ref: r.customer_ref,
            currency: currency.code().to_owned(),
            status: status_of(&r.status)?,
            due_date: r.due_date,
            memo: r.memo,
            metadata: metadata::from_json(r.metadata)?,
            lines,
            subtotal: currency.text(r.subtotal)?,
            total: currency.text(r.total)?,
            amount_credited: currency.text(r.amount_credited)?,
            amount_paid: currency.text(r.amount_paid)?,
            amount_due: currency.text(r.total - r.amount_credited - r.amount_paid)?,
            customer_credit: currency.text(r.customer_credit)?,
            credit_notes: credit_notes.remove(&r.id).unwrap_or_default(),
            refunds: refunds.remove(&r.id).unwrap_or_default(),
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finalized_at: r.finalized_at,
            paid_at: r.paid_at,
            voided_at: r.voided_at,
        });
    }
    Ok(out)
}

pub async fn load(conn: &mut PgConnection, tenant: Tenant, id: Uuid) -> Result<Invoice, InvoiceError> {
    let row = sqlx::query_as!(
        InvoiceRow,
        "SELECT id, number, customer_ref, currency, status, due_date, memo, metadata, subtotal, total,
                amount_credited, amount_paid, customer_credit, version, created_at, updated_at,
                finalized_at, paid_at, voided_at
           FROM invoices WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
        id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(InvoiceError::NotFound)?;
    with_details(conn, tenant, vec![row])
        .await?
        .pop()
        .ok_or(InvoiceError::NotFound)
}

/// Newest first.
pub async fn list(
    conn: &mut PgConnection,
    tenant: Tenant,
    status: Option<InvoiceStatus>,
    customer_ref: Option<&str>,
    page: &PageParams,
) -> Result<Page<Invoice>, InvoiceError> {
    let rows = sqlx::query_as!(
        InvoiceRow,
        "SELECT id, number, customer_ref, currency, status, due_date, memo, metadata, subtotal, total,
                amount_credited, amount_paid, customer_credit, version, created_at, updated_at,
                finalized_at, paid_at, voided_at
           FROM invoices
          WHERE shop_id = $1
            AND ($2::text IS NULL OR status = $2)
            AND ($3::text IS NULL OR customer_ref = $3)
            AND ($4::uuid IS NULL OR id < $4)
          ORDER BY id DESC
          LIMIT $5",
        tenant.shop_id,
        status.map(InvoiceStatus::as_str),
        customer_ref,
        page.starting_after,
        page.limit() + 1
    )
    .fetch_all(&mut *conn)
    .await?;
    let invoices = with_details(conn, tenant, rows).await?;
    Ok(Page::from_rows(invoices, page.limit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(quantity: &str, unit_amount: &str) -> LineInput {
        LineInput {
            description: "x".into(),
            quantity: quantity.into(),
            unit_amount: unit_amount.into(),
        }
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn field_of(e: InvoiceError) -> String {
        match e {
            InvoiceError::Invalid(field, _) => field,
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn each_line_rounds_half_up_to_the_minor_unit_once_and_the_subtotal_adds_the_rounded_lines() {
        let usd = Currency::parse("USD").unwrap();
        // 3 × 0.335 = 1.005 → 1.01 (half away from zero, not banker's 1.00);
        // 0.3333 × 1 = 0.3333 → 0.33; the subtotal sums the rounded lines.
        let p = price(
            &[line("3", "0.335"), line("1", "0.3333"), line("2", "0.125")],
            usd,
        )
        .unwrap();
        assert_eq!(p.amounts, [dec("1.01"), dec("0.33"), dec("0.25")]);
        assert_eq!(p.subtotal, dec("1.59"));
        assert_eq!(p.numbers, [1, 2, 3]);
        assert_eq!(p.quantities[0], dec("3"));
        assert_eq!(
            p.unit_amounts[0],
            dec("0.335"),
            "unit amounts keep their own scale"
        );
    }

    #[test]
    fn rounding_follows_the_currency_exponent() {
        let jpy = Currency::parse("JPY").unwrap();
        let bhd = Currency::parse("BHD").unwrap();
        assert_eq!(price(&[line("1", "100.5")], jpy).unwrap().subtotal, dec("101"));
        assert_eq!(price(&[line("1", "100.4999")], jpy).unwrap().subtotal, dec("100"));
        assert_eq!(price(&[line("3", "0.3335")], bhd).unwrap().subtotal, dec("1.001"));
        assert_eq!(
            price(&[], jpy).unwrap().subtotal,
            Decimal::ZERO,
            "no lines, nothing due"
        );
    }

    #[test]
    fn a_bad_or_oversized_line_names_its_field() {
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(
            field_of(price(&[line("1", "1"), line("1.2.3", "1")], usd).err().unwrap()),
            "lines[1].quantity"
        );
        assert_eq!(
            field_of(price(&[line("1", "-1")], usd).err().unwrap()),
            "lines[0].unit_amount"
        );
        let big = "999999999999999";
        assert_eq!(
            field_of(price(&[line(big, big)], usd).err().unwrap()),
            "lines[0].quantity",
            "a line beyond 15 integer digits"
        );
        let half = "500000000000000";
        assert_eq!(
            field_of(price(&[line("1", half), line("1", half)], usd).err().unwrap()),
            "lines",
            "a total beyond 15 integer digits"
        );
    }

    #[test]
    fn an_issued_invoices_amounts_make_its_status() {
        let status =
            |credited: &str, paid: &str| Locked::settled_status(dec("10.00"), dec(credited), dec(paid));
        assert_eq!(status("0", "0"), InvoiceStatus::Open);
        assert_eq!(status("3.00", "6.99"), InvoiceStatus::Open, "0.01 still due");
        assert_eq!(
            status("3.00", "7.00"),
            InvoiceStatus::Paid,
            "credited and paid cover it"
        );
        assert_eq!(status("0", "10.00"), InvoiceStatus::Paid);
        assert_eq!(status("10.00", "0"), InvoiceStatus::Credited, "credited in full");
        assert_eq!(
            Locked::settled_status(Decimal::ZERO, Decimal::ZERO, Decimal::ZERO),
            InvoiceStatus::Paid,
            "a zero total is paid, never credited"
        );
    }

    #[test]
    fn only_the_required_status_passes() {
        let locked = |status| Locked {
            status,
            number: None,
            currency: Currency::parse("USD").unwrap(),
            total: Decimal::ZERO,
            amount_credited: Decimal::ZERO,
            amount_paid: Decimal::ZERO,
            at: Utc::now(),
        };
        assert!(locked(InvoiceStatus::Open).require(InvoiceStatus::Open).is_ok());
        for status in [
            InvoiceStatus::Draft,
            InvoiceStatus::Paid,
            InvoiceStatus::Void,
            InvoiceStatus::Credited,
        ] {
            assert!(matches!(
                locked(status).require(InvoiceStatus::Open),
                Err(InvoiceError::InvalidState(s)) if s == status.as_str()
            ));
        }
    }
}
