//! The double-entry journal. Every money movement posts one journal
//! transaction whose signed entries sum to zero per currency: checked here
//! before writing, and again by the database at commit (`journal_balanced`).
//!
//! Sign convention: a positive amount credits the account (raises a wallet's
//! balance), a negative one debits it.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{money::Currency, store::StoreError};

/// An account: one per wallet, and per shop and currency the system accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    Wallet(Uuid),
    /// Money received from outside (card payments, bank transfers).
    ExternalPayments,
    Receivables,
    Revenue,
    /// Value the shop gave away: promotions, refunds as credit.
    CreditGrants,
    /// Overpayment the shop keeps for the customer (a credit note on a
    /// paid invoice left as credit).
    CustomerCredit,
    /// Credit that expired unspent (a grant's remainder at its deadline).
    Breakage,
}

impl Account {
    fn name(self) -> &'static str {
        match self {
            Account::Wallet(_) => "wallet",
            Account::ExternalPayments => "external_payments",
            Account::Receivables => "receivables",
            Account::Revenue => "revenue",
            Account::CreditGrants => "credit_grants",
            Account::CustomerCredit => "customer_credit",
            Account::Breakage => "breakage",
        }
    }

    fn wallet(self) -> Option<Uuid> {
        match self {
            Account::Wallet(id) => Some(id),
            _ => None,
        }
    }
}

/// What a journal transaction records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    WalletCredit,
    WalletDebit,
    WalletTransfer,
    WalletRefund,
    ReservationCapture,
    InvoiceFinalize,
    InvoiceVoid,
    InvoicePayment,
    PaymentRefund,
    CreditNote,
    GrantExpiry,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::WalletCredit => "wallet.credit",
            Kind::WalletDebit => "wallet.debit",
            Kind::WalletTransfer => "wallet.transfer",
            Kind::WalletRefund => "wallet.refund",
            Kind::ReservationCapture => "reservation.capture",
            Kind::InvoiceFinalize => "invoice.finalize",
            Kind::InvoiceVoid => "invoice.void",
            Kind::InvoicePayment => "invoice.payment",
            Kind::PaymentRefund => "payment.refund",
            Kind::CreditNote => "credit_note",
            Kind::GrantExpiry => "grant.expire",
        }
    }
}

/// A balanced set of entries, built only through [`Posting::transfer`]:
/// each call adds a debit and the matching credit, so a posting is balanced
/// by construction.
#[derive(Debug, Clone)]
pub struct Posting {
    kind: Kind,
    currency: Currency,
    entries: Vec<(Account, Decimal)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("journal posting is unbalanced or empty")]
    Unbalanced,
}

impl From<LedgerError> for StoreError {
    /// A bug, never user input.
    fn from(e: LedgerError) -> Self {
        StoreError::broken(e.to_string())
    }
}

impl Posting {
    pub fn new(kind: Kind, currency: Currency) -> Self {
        Posting {
            kind,
            currency,
            entries: Vec::with_capacity(2),
        }
    }

    /// Moves `amount` (> 0) from `debit` to `credit`.
    pub fn transfer(mut self, debit: Account, credit: Account, amount: Decimal) -> Self {
        self.entries.push((debit, -amount));
        self.entries.push((credit, amount));
        self
    }

    fn is_balanced(&self) -> bool {
        !self.entries.is_empty()
            && self.entries.iter().all(|(_, a)| !a.is_zero())
            && self.entries.iter().map(|(_, a)| *a).sum::<Decimal>().is_zero()
    }
}

/// A balanced posting as the column arrays `journal_entries` is written
/// from (`UNNEST`). The statement that writes them belongs to the use case,
/// so the journal goes in the same round trip as the rows it explains.
pub struct Rows {
    pub kind: &'static str,
    pub currency: &'static str,
    pub lines: Vec<i16>,
    pub accounts: Vec<&'static str>,
    pub wallets: Vec<Option<Uuid>>,
    pub amounts: Vec<Decimal>,
}

impl Posting {
    /// The rows to write; refuses an unbalanced posting.
    pub fn rows(&self) -> Result<Rows, LedgerError> {
        if !self.is_balanced() {
            return Err(LedgerError::Unbalanced);
        }
        Ok(Rows {
            kind: self.kind.as_str(),
            currency: self.currency.code(),
            lines: (1..=self.entries.len() as i16).collect(),
            accounts: self.entries.iter().map(|(a, _)| a.name()).collect(),
            wallets: self.entries.iter().map(|(a, _)| a.wallet()).collect(),
            amounts: self.entries.iter().map(|(_, a)| *a).collect(),
        })
    }
}

/// Writes a posting that moves no wallet row (e.g. an invoice's
/// receivables): the journal transaction and its entries in one statement.
pub async fn post(
    conn: &mut PgConnection,
    shop_id: Uuid,
    id: Uuid,
    posting: &Posting,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let j = posting.rows()?;
    sqlx::query!(
        "WITH jt AS (
             INSERT INTO journal_transactions (shop_id, id, kind, created_at) VALUES ($1, $2, $3, $4)
         )
         INSERT INTO journal_entries
             (shop_id, journal_transaction_id, line, account, wallet_id, currency, amount)
         SELECT $1, $2, e.line, e.account, e.wallet_id, $5, e.amount
           FROM UNNEST($6::smallint[], $7::text[], $8::uuid[], $9::numeric[])
                AS e(line, account, wallet_id, amount)",
        shop_id,
        id,
        j.kind,
        at,
        j.currency,
        &j.lines,
        &j.accounts as &[&str],
        &j.wallets as &[Option<Uuid>],
        &j.amounts,
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postings_balance_by_construction() {
        let usd = Currency::parse("USD").unwrap();
        let p = Posting::new(Kind::WalletDebit, usd).transfer(
            Account::Wallet(Uuid::nil()),
            Account::Revenue,
            Decimal::new(5, 0),
        );
        assert!(p.is_balanced());
        assert!(
            !Posting::new(Kind::WalletDebit, usd).is_balanced(),
            "an empty posting moves nothing"
        );
        let zero = Posting::new(Kind::WalletDebit, usd).transfer(
            Account::Revenue,
            Account::CreditGrants,
            Decimal::ZERO,
        );
        assert!(!zero.is_balanced(), "zero entries are refused");
        assert!(
            zero.rows().is_err(),
            "an unbalanced posting yields no rows to write"
        );
        let rows = p.rows().unwrap();
        assert_eq!(rows.accounts, ["wallet", "revenue"]);
        assert_eq!(rows.amounts.iter().sum::<Decimal>(), Decimal::ZERO);
    }
}
