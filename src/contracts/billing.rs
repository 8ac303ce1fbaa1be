//! Recurring billing's use cases (docs/recurring-billing.md): bill one
//! period, collect a period's invoice from the contract's wallet (at
//! billing and on the dunning schedule), cancel with the unused days
//! credited, list the billed periods. Each runs in the executor's
//! transaction under a key of its own; the period's row, keyed by
//! (shop, contract, period start), is what makes a second bill impossible.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    BillingInterval, CancelContract, CancelMode, Collection, Contract, ContractError, Transition, periods,
};
use crate::{
    events::{self, Event},
    executor::{Claimed, Outcome, Run, Unit},
    invoices::{
        self, CreateCreditNote, CreateInvoice, InvoiceStatus, LineInput, PayInvoice, PaymentMethod,
        RefundMode,
    },
    metadata::Metadata,
    money::Currency,
    pagination::{Page, PageParams},
    store,
    tenants::Tenant,
    wallets::{self, WalletError},
};

pub const PAYMENT_FAILED: &str = "invoice.payment_failed";

/// One billed period of a recurring contract.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContractPeriod {
    pub contract_id: Uuid,
    /// 0 for the first period.
    pub seq: i32,
    pub period_start: NaiveDate,
    /// Exclusive: the next period's start.
    pub period_end: NaiveDate,
    pub invoice_id: Uuid,
    pub invoice_number: Option<String>,
    pub invoice_status: InvoiceStatus,
    pub currency: String,
    pub amount: String,
    pub amount_due: String,
    /// Wallet collection: attempts so far.
    pub payment_attempts: i32,
    /// Wallet collection: when the next attempt is due; none once paid or
    /// out of retries.
    pub next_payment_at: Option<DateTime<Utc>>,
    pub billed_at: DateTime<Utc>,
}

impl Outcome for ContractPeriod {
    const ENTITY: &'static str = "contract_period";
    fn entity_id(&self) -> Uuid {
        self.invoice_id
    }
    fn location(&self) -> Option<String> {
        Some(format!("/v1/invoices/{}", self.invoice_id))
    }
    fn event_key(&self) -> Uuid {
        self.contract_id
    }
    fn audit_detail(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "contract_id": self.contract_id,
            "period_start": self.period_start,
            "payment_attempts": self.payment_attempts,
        }))
    }
}

struct PeriodRow {
    contract_id: Uuid,
    seq: i32,
    period_start: NaiveDate,
    period_end: NaiveDate,
    invoice_id: Uuid,
    number: Option<i64>,
    status: String,
    currency: String,
    amount: Decimal,
    due: Decimal,
    payment_attempts: i32,
    next_payment_at: Option<DateTime<Utc>>,
    billed_at: DateTime<Utc>,
}

impl PeriodRow {
    fn view(self) -> Result<ContractPeriod, ContractError> {
        let currency = Currency::stored(&self.currency)?;
        Ok(ContractPeriod {
            contract_id: self.contract_id,
            seq: self.seq,
            period_start: self.period_start,
            period_end: self.period_end,
            invoice_id: self.invoice_id,
            invoice_number: self.number.map(invoices::number_text),
            invoice_status: store::decode("invoice status", &self.status)?,
            currency: currency.code().to_owned(),
            amount: currency.text(self.amount)?,
            amount_due: currency.text(self.due)?,
            payment_attempts: self.payment_attempts,
            next_payment_at: self.next_payment_at,
            billed_at: self.billed_at,
        })
    }
}

/// The contract's billed periods from `after` (a period start), oldest
/// first, optionally only one.
async fn periods_of(
    conn: &mut PgConnection,
    tenant: Tenant,
    contract_id: Uuid,
    only: Option<NaiveDate>,
    after: Option<NaiveDate>,
    limit: i64,
) -> Result<Vec<ContractPeriod>, ContractError> {
    sqlx::query_as!(
        PeriodRow,
        r#"SELECT p.contract_id, p.seq, p.period_start, p.period_end, p.invoice_id, i.number,
                  i.status, i.currency, p.amount,
                  greatest(i.total - i.amount_credited - i.amount_paid, 0) AS "due!",
                  p.payment_attempts, p.next_payment_at, p.billed_at
             FROM contract_periods p
             JOIN invoices i ON i.shop_id = p.shop_id AND i.id = p.invoice_id
            WHERE p.shop_id = $1 AND p.contract_id = $2
              AND ($3::date IS NULL OR p.period_start = $3)
              AND ($4::date IS NULL OR p.period_start > $4)
            ORDER BY p.period_start
            LIMIT $5"#,
        tenant.shop_id,
        contract_id,
        only,
        after,
        limit
    )
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(PeriodRow::view)
    .collect()
}

/// `GET /v1/contracts/{id}/periods`: oldest first, paged by period start.
pub async fn periods(
    conn: &mut PgConnection,
    tenant: Tenant,
    contract_id: Uuid,
    limit: Option<i64>,
    starting_after: Option<NaiveDate>,
) -> Result<Page<ContractPeriod>, ContractError> {
    super::get(conn, tenant, contract_id).await?;
    let page = PageParams {
        limit,
        starting_after: None,
    };
    let rows = periods_of(conn, tenant, contract_id, None, starting_after, page.limit() + 1).await?;
    Ok(Page::from_rows(rows, page.limit()))
}

/// What billing reads of a contract, under its row lock.
struct Billable {
    customer_ref: String,
    title: String,
    currency: String,
    amount: Decimal,
    billing_interval: String,
    starts_on: NaiveDate,
    ends_on: Option<NaiveDate>,
    collection: String,
    wallet_id: Option<Uuid>,
    next_period_on: Option<NaiveDate>,
    periods_billed: i32,
    status: String,
}

/// Bills the contract's period starting `period_start`: a finalized
/// invoice of the contract's amount, the period's row, the contract moved
/// on to the next period; with wallet collection, paid from the wallet
/// when it can cover it (else the dunning schedule starts). A period
/// billed before answers as it stands; one that is no longer the next to
/// bill (cancelled, already past) is refused, which the job takes as done.
pub async fn bill_period(
    unit: &mut Unit<'_>,
    key: Claimed,
    tenant: Tenant,
    contract_id: Uuid,
    period_start: NaiveDate,
    dunning: &[std::time::Duration],
) -> Result<(Claimed, Run<ContractPeriod>), ContractError> {
    let conn = unit.conn();
    let c = sqlx::query_as!(
        Billable,
        "SELECT customer_ref, title, currency, amount, billing_interval, starts_on, ends_on, collection,
                wallet_id, next_period_on, periods_billed, status
           FROM contracts WHERE shop_id = $1 AND id = $2 FOR UPDATE SKIP LOCKED",
        tenant.shop_id,
        contract_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    // Taken: another instance bills it, or a request changes it now; the
    // next run looks again.
    let Some(c) = c else {
        return Err(ContractError::Busy);
    };
    if let Some(earlier) = periods_of(conn, tenant, contract_id, Some(period_start), None, 1)
        .await?
        .pop()
    {
        return Ok((key, Run::Earlier(earlier)));
    }
    let billable = matches!(c.status.as_str(), "approved" | "past_due");
    if !billable || c.next_period_on != Some(period_start) {
        return Err(ContractError::InvalidState("not due for this period"));
    }
    let interval = store::decode::<BillingInterval>("billing interval", &c.billing_interval)?;
    let seq = c.periods_billed;
    let end = periods::start(c.starts_on, interval, seq as u32 + 1).ok_or(ContractError::InvalidState(
        "past the last date a period can start",
    ))?;
    let currency = Currency::stored(&c.currency)?;
    let last_day = end.pred_opt().unwrap_or(end);
    let invoice_id = Uuid::now_v7();
    invoices::create(
        conn,
        tenant,
        invoice_id,
        CreateInvoice {
            customer_ref: c.customer_ref,
            currency: currency.code().to_owned(),
            due_date: None,
            memo: None,
            metadata: Some(Metadata(
                [
                    ("contract_id".to_owned(), contract_id.to_string()),
                    ("period_start".to_owned(), period_start.to_string()),
                ]
                .into(),
            )),
            lines: vec![LineInput {
                description: format!("{} ({period_start} to {last_day})", c.title),
                quantity: "1".into(),
                unit_amount: currency.text(c.amount)?,
            }],
        },
    )
    .await?;
    let invoice = invoices::finalize(conn, tenant, invoice_id, None).await?;
    let next = match c.ends_on {
        Some(ends_on) if end > ends_on => None,
        _ => Some(end),
    };
    sqlx::query!(
        "INSERT INTO contract_periods
             (shop_id, contract_id, period_start, period_end, seq, invoice_id, amount, billed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now())",
        tenant.shop_id,
        contract_id,
        period_start,
        end,
        seq,
        invoice_id,
        c.amount
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE contracts SET next_period_on = $3, periods_billed = periods_billed + 1, updated_at = now()
          WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
        contract_id,
        next
    )
    .execute(&mut *conn)
    .await?;
    events::write(
        conn,
        tenant.shop_id,
        vec![Event::new("invoice.finalized", contract_id, invoice.value())?],
    )
    .await?;
    metrics::counter!("contract_periods_billed_total").increment(1);
    let key = match (
        store::decode::<Collection>("collection", &c.collection)?,
        c.wallet_id,
    ) {
        (Collection::Wallet, Some(wallet_id)) => {
            collect(
                unit,
                key,
                tenant,
                contract_id,
                period_start,
                invoice_id,
                wallet_id,
                0,
                dunning,
            )
            .await?
        }
        _ => key,
    };
    let period = periods_of(unit.conn(), tenant, contract_id, Some(period_start), None, 1)
        .await?
        .pop()
        .ok_or_else(|| store::StoreError::broken("a period just billed is not found"))?;
    Ok((key, Run::New(period)))
}

/// One attempt to pay a period's open invoice from the contract's wallet:
/// paid when the wallet can cover what is due (an `invoice.paid` event);
/// otherwise an `invoice.payment_failed` event and the next attempt after
/// `dunning[attempts]`, or, with the schedule spent, none and the
/// contract `past_due`. Locks the invoice, then the wallet, as a payment
/// by the API does.
#[allow(clippy::too_many_arguments)]
async fn collect(
    unit: &mut Unit<'_>,
    key: Claimed,
    tenant: Tenant,
    contract_id: Uuid,
    period_start: NaiveDate,
    invoice_id: Uuid,
    wallet_id: Uuid,
    attempts: i32,
    dunning: &[std::time::Duration],
) -> Result<Claimed, ContractError> {
    let invoice = invoices::lock(unit.conn(), tenant, invoice_id).await?;
    let due = invoice.due();
    let (key, wallet) = wallets::lock_one(unit, key, tenant, wallet_id).await?;
    let attempt = attempts + 1;
    if wallet.ensure_can_spend(due).is_ok() {
        let pay = PayInvoice {
            method: PaymentMethod::Wallet,
            amount: None,
            wallet_id: Some(wallet_id),
            external_ref: None,
        };
        let (key, run) = invoices::pay(unit, key, tenant, invoice_id, pay).await?;
        let conn = unit.conn();
        schedule(conn, tenant, contract_id, period_start, Some(attempt), None).await?;
        events::write(
            conn,
            tenant.shop_id,
            vec![Event::new("invoice.paid", contract_id, run.value())?],
        )
        .await?;
        recover(conn, tenant.shop_id, Some(contract_id)).await?;
        return Ok(key);
    }
    let next_at = dunning
        .get(attempts as usize)
        .map(|d| Utc::now() + chrono::Duration::from_std(*d).unwrap_or(chrono::Duration::days(1)));
    let conn = unit.conn();
    schedule(conn, tenant, contract_id, period_start, Some(attempt), next_at).await?;
    if next_at.is_none() {
        let at = Utc::now();
        let flipped = sqlx::query!(
            "UPDATE contracts SET status = 'past_due', past_due_at = $3, version = version + 1, updated_at = $3
              WHERE shop_id = $1 AND id = $2 AND status = 'approved'",
            tenant.shop_id,
            contract_id,
            at
        )
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if flipped > 0 {
            metrics::counter!("contracts_past_due_total").increment(1);
        }
    }
    let totals = invoices::totals(conn, tenant, invoice_id).await?;
    events::write(
        conn,
        tenant.shop_id,
        vec![Event::new(
            PAYMENT_FAILED,
            contract_id,
            &serde_json::json!({
                "invoice": totals,
                "contract_id": contract_id,
                "wallet_id": wallet_id,
                "attempt": attempt,
                "next_payment_at": next_at,
                "reason": WalletError::InsufficientFunds.to_string(),
            }),
        )?],
    )
    .await?;
    metrics::counter!("contract_payments_failed_total").increment(1);
    Ok(key)
}

/// Records a period's collection: its attempts so far (unchanged when
/// `None`) and when the next is due (`None`: paid, or no more).
async fn schedule(
    conn: &mut PgConnection,
    tenant: Tenant,
    contract_id: Uuid,
    period_start: NaiveDate,
    attempts: Option<i32>,
    next_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE contract_periods SET payment_attempts = coalesce($4, payment_attempts), next_payment_at = $5
          WHERE shop_id = $1 AND contract_id = $2 AND period_start = $3",
        tenant.shop_id,
        contract_id,
        period_start,
        attempts,
        next_at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The dunning attempt `attempts + 1` of a period: pays the invoice if it
/// is still open and the wallet can cover it (an invoice settled another
/// way ends the schedule).
pub async fn retry_payment(
    unit: &mut Unit<'_>,
    key: Claimed,
    tenant: Tenant,
    contract_id: Uuid,
    period_start: NaiveDate,
    dunning: &[std::time::Duration],
) -> Result<(Claimed, Run<ContractPeriod>), ContractError> {
    let conn = unit.conn();
    let c = sqlx::query!(
        "SELECT c.wallet_id, p.invoice_id, p.payment_attempts, p.next_payment_at, i.status
           FROM contracts c
           JOIN contract_periods p ON p.shop_id = c.shop_id AND p.contract_id = c.id
           JOIN invoices i ON i.shop_id = p.shop_id AND i.id = p.invoice_id
          WHERE c.shop_id = $1 AND c.id = $2 AND p.period_start = $3
            FOR UPDATE OF c, p",
        tenant.shop_id,
        contract_id,
        period_start
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(ContractError::NotFound)?;
    let key = match (c.wallet_id, c.next_payment_at) {
        (Some(wallet_id), Some(_)) if c.status == "open" => {
            collect(
                unit,
                key,
                tenant,
                contract_id,
                period_start,
                c.invoice_id,
                wallet_id,
                c.payment_attempts,
                dunning,
            )
            .await?
        }
        _ => {
            let conn = unit.conn();
            schedule(conn, tenant, contract_id, period_start, None, None).await?;
            recover(conn, tenant.shop_id, Some(contract_id)).await?;
            key
        }
    };
    let period = periods_of(unit.conn(), tenant, contract_id, Some(period_start), None, 1)
        .await?
        .pop()
        .ok_or(ContractError::NotFound)?;
    Ok((key, Run::New(period)))
}

/// Approves again the shop's past-due contracts (`only` the one, if
/// named) none of whose period invoices is still open (paid by the job, by
/// the API, credited or voided); how many.
pub async fn recover(conn: &mut PgConnection, shop_id: Uuid, only: Option<Uuid>) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "UPDATE contracts c SET status = 'approved', past_due_at = NULL, version = c.version + 1, updated_at = now()
          WHERE c.shop_id = $1 AND ($2::uuid IS NULL OR c.id = $2) AND c.status = 'past_due'
            AND NOT EXISTS (
                SELECT 1 FROM contract_periods p
                  JOIN invoices i ON i.shop_id = p.shop_id AND i.id = p.invoice_id
                 WHERE p.shop_id = $1 AND p.contract_id = c.id AND i.status = 'open')",
        shop_id,
        only
    )
    .execute(conn)
    .await?
    .rows_affected())
}

/// Cancels the contract; cancelled immediately, an approved recurring
/// contract's current period (the billed one holding today) is credited
/// for its unused days, from today included, by a credit note refunded as
/// the period was collected: to the wallet, or to the invoice's payments.
pub async fn cancel(
    unit: &mut Unit<'_>,
    key: Claimed,
    tenant: Tenant,
    contract_id: Uuid,
    version: i64,
    input: CancelContract,
) -> Result<(Claimed, Run<Contract>), ContractError> {
    let mode = match input.at_period_end {
        Some(false) => CancelMode::Immediately,
        _ => CancelMode::AtPeriodEnd,
    };
    let contract = super::transition(
        unit.conn(),
        tenant,
        contract_id,
        Some(version),
        Transition::cancel(mode),
    )
    .await?;
    if contract.cancel_mode != Some(CancelMode::Immediately) {
        return Ok((key, Run::New(contract)));
    }
    let today = Utc::now().date_naive();
    let current = sqlx::query!(
        "SELECT p.period_start, p.period_end, p.invoice_id, p.amount, i.status,
                i.total - i.amount_credited AS \"remaining!\"
           FROM contract_periods p
           JOIN invoices i ON i.shop_id = p.shop_id AND i.id = p.invoice_id
          WHERE p.shop_id = $1 AND p.contract_id = $2 AND p.period_start <= $3 AND p.period_end > $3",
        tenant.shop_id,
        contract_id,
        today
    )
    .fetch_optional(unit.conn())
    .await?;
    let Some(p) = current.filter(|p| matches!(p.status.as_str(), "open" | "paid")) else {
        return Ok((key, Run::New(contract)));
    };
    let currency = Currency::stored(&contract.currency)?;
    let credit = periods::unused_credit(p.amount, p.period_start, p.period_end, today, currency.exponent())
        .min(p.remaining);
    if credit <= Decimal::ZERO {
        return Ok((key, Run::New(contract)));
    }
    let last_day = p.period_end.pred_opt().unwrap_or(p.period_end);
    let note = CreateCreditNote {
        lines: None,
        amount: Some(currency.text(credit)?),
        reason: format!("contract cancelled: unused days {today} to {last_day}"),
        refund: Some(match contract.collection {
            Collection::Wallet => RefundMode::Wallet,
            Collection::Invoice => RefundMode::Original,
        }),
        wallet_id: contract
            .wallet_id
            .filter(|_| contract.collection == Collection::Wallet),
    };
    let (key, run) = invoices::credit_note(unit, key, tenant, p.invoice_id, note).await?;
    if let Run::New(note) = &run {
        events::write(
            unit.conn(),
            tenant.shop_id,
            vec![Event::new("credit_note.created", contract_id, note)?],
        )
        .await?;
    }
    Ok((key, Run::New(contract)))
}
