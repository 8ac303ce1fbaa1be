//! Refunds of invoice payments: a wallet payment goes back to its wallet
//! (receivables → wallet), any other is recorded as sent to the payer
//! (receivables → external_payments). Never beyond the payment's
//! unrefunded amount nor beyond what the invoice still counts as paid,
//! both read under the invoice's lock.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    InvoiceError, PaymentMethod, PaymentRefund, RefundPayment, RefundReceipt,
    service::{self, Locked},
};
use crate::{
    executor::{Claimed, Run, Unit},
    ledger::{self, Account, Posting},
    metadata::Metadata,
    money::{Currency, Money},
    store,
    tenants::Tenant,
    wallets::{self, Category, TransactionType, WalletError, grants::GrantSpec},
};

/// A payment row locked for the rest of the transaction (after its
/// invoice's).
pub(super) struct LockedPayment {
    pub id: Uuid,
    pub method: PaymentMethod,
    pub amount: Decimal,
    pub amount_refunded: Decimal,
    pub wallet_id: Option<Uuid>,
    /// A wallet payment's movement: its refunds give back to the grants it
    /// took from.
    pub wallet_transaction_id: Option<Uuid>,
}

impl LockedPayment {
    pub fn remaining(&self) -> Decimal {
        self.amount - self.amount_refunded
    }
}

/// Locks the invoice's payment `only`, or all its payments, newest first
/// (by the invoice lock's clock each was recorded at, which orders them as
/// the lock did, whichever instance made their ids).
pub(super) async fn lock_payments(
    conn: &mut PgConnection,
    tenant: Tenant,
    invoice_id: Uuid,
    only: Option<Uuid>,
) -> Result<Vec<LockedPayment>, InvoiceError> {
    let rows = sqlx::query!(
        "SELECT id, method, amount, amount_refunded, wallet_id, wallet_transaction_id FROM invoice_payments
          WHERE shop_id = $1 AND invoice_id = $2 AND ($3::uuid IS NULL OR id = $3)
          ORDER BY created_at DESC, id DESC
            FOR UPDATE",
        tenant.shop_id,
        invoice_id,
        only
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(LockedPayment {
                id: r.id,
                method: store::decode("payment method", &r.method)?,
                amount: r.amount,
                amount_refunded: r.amount_refunded,
                wallet_id: r.wallet_id,
                wallet_transaction_id: r.wallet_transaction_id,
            })
        })
        .collect()
}

/// One refund to write.
pub(super) struct Refunding<'a> {
    pub amount: Decimal,
    pub reason: Option<&'a str>,
    pub external_ref: Option<&'a str>,
    pub credit_note_id: Option<Uuid>,
    pub key: Option<&'a str>,
    /// The request's id, for the audit rows of credit it expires.
    pub request_id: &'a str,
}

/// Writes one refund of `payment` (locked, with its wallet locked for a
/// wallet payment): the journal or the wallet's credit, the refund row and
/// the payment's `amount_refunded`. The invoice's amounts are the caller's.
pub(super) async fn write(
    conn: &mut PgConnection,
    tenant: Tenant,
    invoice_id: Uuid,
    invoice: &Locked,
    payment: &LockedPayment,
    wallet: Option<&mut wallets::Locked>,
    r: Refunding<'_>,
) -> Result<PaymentRefund, InvoiceError> {
    let number = invoice.number.map(service::number_text).unwrap_or_default();
    let (journal_id, wallet_tx) = match wallet {
        Some(wallet) => {
            let description = format!("refund of invoice {number}");
            let tx = wallets::move_locked(
                conn,
                tenant,
                wallet,
                wallets::LockedMovement {
                    type_: TransactionType::Credit,
                    amount: r.amount,
                    release: Decimal::ZERO,
                    category: Category::Refund,
                    kind: ledger::Kind::PaymentRefund,
                    counterpart: Account::Receivables,
                    description: Some(&description),
                    metadata: &Metadata::default(),
                    grants: match payment.wallet_transaction_id {
                        Some(of) => wallets::GrantPlan::Restore { of },
                        None => wallets::GrantPlan::New(GrantSpec::paid()),
                    },
                },
            )
            .await?;
            // Credit given back for a grant past its deadline expires at once.
            wallets::expire_due(conn, tenant.shop_id, Some(tenant.key_id), r.request_id, wallet).await?;
            (tx.journal_transaction_id, Some(tx.id))
        }
        None => {
            let journal_id = Uuid::now_v7();
            let posting = Posting::new(ledger::Kind::PaymentRefund, invoice.currency).transfer(
                Account::Receivables,
                Account::ExternalPayments,
                r.amount,
            );
            ledger::post(conn, tenant.shop_id, journal_id, &posting, invoice.at).await?;
            (journal_id, None)
        }
    };
    let id = Uuid::now_v7();
    let written = sqlx::query!(
        "WITH p AS (
             UPDATE invoice_payments SET amount_refunded = amount_refunded + $5
              WHERE shop_id = $1 AND id = $4
         )
         INSERT INTO payment_refunds
             (shop_id, id, invoice_id, payment_id, amount, reason, external_ref,
              wallet_transaction_id, credit_note_id, journal_transaction_id, idempotency_key, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        tenant.shop_id,
        id,
        invoice_id,
        payment.id,
        r.amount,
        r.reason,
        r.external_ref,
        wallet_tx,
        r.credit_note_id,
        journal_id,
        r.key,
        invoice.at,
    )
    .execute(conn)
    .await;
    match written {
        Ok(_) => {}
        // The same reference on another invoice's refund, committed
        // meanwhile (this invoice's would have waited for its lock).
        Err(e) if store::constraint(&e) == Some("payment_refunds_external_ref") => {
            return Err(InvoiceError::ExternalRefConflict {
                what: "refund",
                key: r.external_ref.unwrap_or_default().to_owned(),
                field: "payment_id",
                existing: "another invoice's payment".into(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    Ok(PaymentRefund {
        id,
        invoice_id,
        payment_id: payment.id,
        amount: invoice.currency.text(r.amount)?,
        currency: invoice.currency.code().to_owned(),
        reason: r.reason.map(str::to_owned),
        external_ref: r.external_ref.map(str::to_owned),
        wallet_transaction_id: wallet_tx,
        credit_note_id: r.credit_note_id,
        journal_transaction_id: journal_id,
        created_at: invoice.at,
    })
}

/// Refunds `req.amount` (default: all that is left) of an invoice's
/// payment. Locks the invoice, then the payment, then its wallet. A known
/// `external_ref` answers its refund (200), and so does a refund made
/// under the same request key (its idempotency record expired since).
pub async fn refund_payment(
    unit: &mut Unit<'_>,
    claimed: Claimed,
    tenant: Tenant,
    invoice_id: Uuid,
    payment_id: Uuid,
    req: RefundPayment,
) -> Result<(Claimed, Run<RefundReceipt>), InvoiceError> {
    let key = unit.key();
    let conn = unit.conn();
    let invoice = service::lock(conn, tenant, invoice_id).await?;
    let amount = match &req.amount {
        Some(raw) => Some(Money::parse("amount", raw, invoice.currency)?.amount()),
        None => None,
    };
    let answer = |refund, invoice, existing| RefundReceipt {
        refund,
        invoice,
        existing,
    };
    if let Some((earlier, earlier_amount)) = refund_where(conn, tenant, None, Some(key)).await? {
        let same = earlier.invoice_id == invoice_id
            && earlier.payment_id == payment_id
            && earlier.external_ref == req.external_ref
            && amount.is_none_or(|a| a == earlier_amount);
        if !same {
            return Err(WalletError::KeyReused.into());
        }
        let totals = service::totals(conn, tenant, invoice_id).await?;
        return Ok((claimed, Run::Earlier(answer(earlier, totals, false))));
    }
    if let Some(external_ref) = &req.external_ref
        && let Some((existing, existing_amount)) =
            refund_where(conn, tenant, Some(external_ref), None).await?
    {
        // Read under the invoice's lock: a refund of this invoice with this
        // reference has committed by now.
        let differs = if existing.invoice_id != invoice_id {
            Some(("invoice_id", existing.invoice_id.to_string()))
        } else if existing.payment_id != payment_id {
            Some(("payment_id", existing.payment_id.to_string()))
        } else if amount.is_some_and(|a| a != existing_amount) {
            Some(("amount", existing.amount.clone()))
        } else {
            None
        };
        if let Some((field, value)) = differs {
            return Err(InvoiceError::ExternalRefConflict {
                what: "refund",
                key: external_ref.clone(),
                field,
                existing: value,
            });
        }
        let totals = service::totals(conn, tenant, invoice_id).await?;
        return Ok((claimed, Run::New(answer(existing, totals, true))));
    }
    let payment = lock_payments(conn, tenant, invoice_id, Some(payment_id))
        .await?
        .pop()
        .ok_or(InvoiceError::PaymentNotFound)?;
    if payment.method == PaymentMethod::Wallet && req.external_ref.is_some() {
        return Err(service::invalid(
            "external_ref",
            "is only for payments by an external method; a wallet payment goes back to its wallet",
        ));
    }
    let remaining = payment.remaining().min(invoice.amount_paid);
    let amount = amount.unwrap_or(remaining);
    if amount.is_zero() || amount > remaining {
        return Err(WalletError::RefundExceedsRemaining {
            remaining: invoice.currency.text(remaining)?,
        }
        .into());
    }
    let (claimed, mut wallet) = match payment.wallet_id {
        Some(wallet_id) => {
            let (claimed, wallet) = wallets::lock_one(unit, claimed, tenant, wallet_id).await?;
            (claimed, Some(wallet))
        }
        None => (claimed, None),
    };
    let request_id = unit.request_id();
    let conn = unit.conn();
    let refunding = Refunding {
        amount,
        reason: req.reason.as_deref(),
        external_ref: req.external_ref.as_deref(),
        credit_note_id: None,
        key: Some(key),
        request_id,
    };
    let refund = write(
        conn,
        tenant,
        invoice_id,
        &invoice,
        &payment,
        wallet.as_mut(),
        refunding,
    )
    .await?;
    let paid = invoice.amount_paid - amount;
    service::settle(
        conn,
        tenant,
        invoice_id,
        &invoice,
        invoice.amount_credited,
        paid,
        Decimal::ZERO,
    )
    .await?;
    let totals = service::totals(conn, tenant, invoice_id).await?;
    Ok((claimed, Run::New(answer(refund, totals, false))))
}

struct RefundRow {
    id: Uuid,
    invoice_id: Uuid,
    payment_id: Uuid,
    amount: Decimal,
    currency: String,
    reason: Option<String>,
    external_ref: Option<String>,
    wallet_transaction_id: Option<Uuid>,
    credit_note_id: Option<Uuid>,
    journal_transaction_id: Uuid,
    created_at: DateTime<Utc>,
}

impl RefundRow {
    fn view(self) -> Result<PaymentRefund, InvoiceError> {
        let currency = Currency::stored(&self.currency)?;
        Ok(PaymentRefund {
            id: self.id,
            invoice_id: self.invoice_id,
            payment_id: self.payment_id,
            amount: currency.text(self.amount)?,
            currency: currency.code().to_owned(),
            reason: self.reason,
            external_ref: self.external_ref,
            wallet_transaction_id: self.wallet_transaction_id,
            credit_note_id: self.credit_note_id,
            journal_transaction_id: self.journal_transaction_id,
            created_at: self.created_at,
        })
    }
}

/// The shop's refund with this `external_ref`, or made under this request
/// key, with its amount.
async fn refund_where(
    conn: &mut PgConnection,
    tenant: Tenant,
    external_ref: Option<&str>,
    key: Option<&str>,
) -> Result<Option<(PaymentRefund, Decimal)>, InvoiceError> {
    let row = sqlx::query_as!(
        RefundRow,
        "SELECT r.id, r.invoice_id, r.payment_id, r.amount, i.currency, r.reason, r.external_ref,
                r.wallet_transaction_id, r.credit_note_id, r.journal_transaction_id, r.created_at
           FROM payment_refunds r
           JOIN invoices i ON i.shop_id = r.shop_id AND i.id = r.invoice_id
          WHERE r.shop_id = $1 AND (r.external_ref = $2 OR r.idempotency_key = $3)",
        tenant.shop_id,
        external_ref,
        key
    )
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        let amount = r.amount;
        r.view().map(|v| (v, amount))
    })
    .transpose()
}

/// The refunds of the invoices `ids`, oldest first, by invoice.
pub(super) async fn of_invoices(
    conn: &mut PgConnection,
    tenant: Tenant,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<PaymentRefund>>, InvoiceError> {
    let rows = sqlx::query_as!(
        RefundRow,
        "SELECT r.id, r.invoice_id, r.payment_id, r.amount, i.currency, r.reason, r.external_ref,
                r.wallet_transaction_id, r.credit_note_id, r.journal_transaction_id, r.created_at
           FROM payment_refunds r
           JOIN invoices i ON i.shop_id = r.shop_id AND i.id = r.invoice_id
          WHERE r.shop_id = $1 AND r.invoice_id = ANY($2)
          ORDER BY r.id",
        tenant.shop_id,
        ids
    )
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<Uuid, Vec<PaymentRefund>> = HashMap::new();
    for r in rows {
        out.entry(r.invoice_id).or_default().push(r.view()?);
    }
    Ok(out)
}
