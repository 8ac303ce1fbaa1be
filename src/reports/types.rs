//! The report's shape, as JSON (and, flattened, as CSV).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReconciliationParams {
    /// First day (UTC) of the period.
    #[serde(deserialize_with = "crate::dates::date")]
    pub from: NaiveDate,
    /// Last day (UTC) of the period, inclusive.
    #[serde(deserialize_with = "crate::dates::date")]
    pub to: NaiveDate,
    /// Only this currency.
    #[validate(custom(function = "crate::money::validate::currency"))]
    pub currency: Option<String>,
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrialBalanceParams {
    /// The balances at the end of this day (UTC).
    #[serde(deserialize_with = "crate::dates::date")]
    pub as_of: NaiveDate,
    #[validate(custom(function = "crate::money::validate::currency"))]
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WalletLine {
    pub wallet_id: Uuid,
    pub customer_ref: String,
    pub currency: String,
    /// Balance at the start of the period (after its last earlier movement).
    pub opening_balance: String,
    pub credits: String,
    pub debits: String,
    /// Balance at the end of the period.
    pub closing_balance: String,
    /// The wallet's journal entries summed, now.
    pub journal_balance: String,
    /// The balance stored on the wallet, now.
    pub stored_balance: String,
    /// `stored_balance - journal_balance`: zero when healthy.
    pub drift: String,
    /// opening + credits - debits = closing, and no drift.
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReservationCheck {
    pub currency: String,
    pub active: i64,
    /// Sum of the active holds.
    pub held: String,
    /// Sum of the wallets' `reserved`: equal to `held` when healthy.
    pub wallets_reserved: String,
    /// Active holds more than 5 minutes past `expires_at` (the expiry job is
    /// behind or stopped).
    pub overdue: i64,
    /// The first 100 of them, longest overdue first.
    pub overdue_reservation_ids: Vec<Uuid>,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvoiceSummary {
    pub currency: String,
    pub issued: i64,
    pub issued_total: String,
    pub paid: i64,
    pub paid_total: String,
    pub voided: i64,
    pub voided_total: String,
    /// Open now, and what is due on them.
    pub outstanding: i64,
    pub outstanding_total: String,
    /// The receivables account's balance: equal to `outstanding_total`
    /// when healthy.
    pub receivables: String,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PaymentChecks {
    /// Provider payments whose event is failing (still retried).
    pub webhook_failing: i64,
    /// Provider payments whose event is dead: money the provider says
    /// arrived is not on the books.
    pub webhook_dead_event_ids: Vec<Uuid>,
    /// Invoice payments without their journal transaction.
    pub unposted_invoice_payments: i64,
    /// The first 100 of them.
    pub unposted_invoice_payment_ids: Vec<Uuid>,
    pub ok: bool,
}

/// Money that flowed back in the period, per currency.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefundSummary {
    pub currency: String,
    /// Refunds of wallet movements (debits, captured holds).
    pub movement_refunds: i64,
    pub movement_refunds_total: String,
    /// Refunds of invoice payments (to wallets or to payers).
    pub payment_refunds: i64,
    pub payment_refunds_total: String,
    pub credit_notes: i64,
    pub credit_notes_total: String,
}

/// Refunds and credit notes of the period, and what they touched checked
/// against the rows that explain it (at most 100 ids each).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefundChecks {
    pub summary: Vec<RefundSummary>,
    /// Movements refunded beyond their amount, or that are not spending,
    /// or whose refunds are not credits of their own wallet.
    pub over_refunded_transaction_ids: Vec<Uuid>,
    /// Payments whose `amount_refunded` exceeds them or is not the sum of
    /// their refunds.
    pub over_refunded_payment_ids: Vec<Uuid>,
    /// Invoices whose `amount_credited` or `amount_paid` is not what their
    /// credit notes, payments and refunds say, or whose `amount_due`
    /// (total − amount_credited − amount_paid) is below zero.
    pub invoices_not_adding_up: Vec<Uuid>,
    pub ok: bool,
}

/// Credit grants of the period per currency: issued, spent and expired.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantSummary {
    pub currency: String,
    /// Paid credit issued (top-ups, carried paid credit, refunds of
    /// overdrawn spending).
    pub paid_issued: String,
    /// Granted credit issued (promotions, goodwill, adjustments).
    pub granted_issued: String,
    /// What movements took from grants, net of what refunds gave back.
    pub spent: String,
    /// What expired unspent: the breakage.
    pub expired: String,
}

/// The grants of the period and the grant invariants over what moved in
/// it (at most 100 ids each).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantChecks {
    pub summary: Vec<GrantSummary>,
    /// Wallets whose grants' `remaining` is not their non-negative balance.
    pub wallets_not_matching_grants: Vec<Uuid>,
    /// Grants whose amount is not what is left plus what movements took,
    /// or that kept free credit once expired.
    pub grants_not_adding_up: Vec<Uuid>,
    /// Movements whose consumptions do not add up, or that took free
    /// credit from a grant at or after its deadline.
    pub movements_not_adding_up: Vec<Uuid>,
    /// Grants more than five minutes past their deadline with free credit
    /// the expiry job has not expired.
    pub overdue_grant_ids: Vec<Uuid>,
    pub ok: bool,
}

/// Recurring billing (docs/recurring-billing.md): what was billed in the
/// period, and whether every approved recurring contract has exactly one
/// invoice per elapsed period (at most 100 ids each).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecurringChecks {
    /// Periods whose start falls in the report's days.
    pub periods_billed: i64,
    /// Contracts whose wallet collection ran out of retries (a business
    /// figure, not a failed check).
    pub contracts_past_due: Vec<Uuid>,
    /// Contracts with a period due for more than a day and not billed: the
    /// billing job is stuck (docs/runbooks/recurring-billing.md).
    pub contracts_behind: Vec<Uuid>,
    /// Contracts whose billed periods are not exactly one invoice each,
    /// numbered without a gap.
    pub contracts_not_one_invoice_per_period: Vec<Uuid>,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountBalance {
    /// `wallet` (all wallets), `external_payments`, `receivables`, `revenue`,
    /// `credit_grants`, `customer_credit`. Positive: credited.
    pub account: String,
    pub balance: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrialBalance {
    pub currency: String,
    pub accounts: Vec<AccountBalance>,
    /// The sum over all accounts: zero.
    pub total: String,
    pub balanced: bool,
}

/// The server a report read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    Primary,
    /// A streaming replica (REPORTS_DATABASE_URL): see `replica_lag_ms`.
    Replica,
}

impl ReadFrom {
    /// In words, for the CSV and the command line's table.
    pub fn describe(self, lag_ms: Option<i64>) -> String {
        match (self, lag_ms) {
            (ReadFrom::Primary, _) => "primary".to_owned(),
            (ReadFrom::Replica, Some(ms)) => format!("replica {ms} ms behind"),
            (ReadFrom::Replica, None) => "replica, lag unknown".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reconciliation {
    pub shop_id: Uuid,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub currency: Option<String>,
    pub generated_at: DateTime<Utc>,
    /// The server read: the primary, or the replica of REPORTS_DATABASE_URL.
    pub read_from: ReadFrom,
    /// On a replica, how far its replay was behind (milliseconds; 0 when
    /// it had replayed all it received): the figures are as of
    /// `generated_at` minus this. Null on the primary, or on a replica that
    /// has replayed nothing since it started (unknown).
    pub replica_lag_ms: Option<i64>,
    /// The data (as of `generated_at`, less a replica's lag) is less than
    /// PROVISIONAL_MARGIN past the period's end, or a replica's lag is
    /// unknown: a transaction that started inside the period may still
    /// commit, or be replayed.
    pub provisional: bool,
    /// Every check passed.
    pub ok: bool,
    /// The names of the checks that failed, e.g. `wallet_drift`.
    pub failed_checks: Vec<String>,
    pub wallets: Vec<WalletLine>,
    pub reservations: Vec<ReservationCheck>,
    pub invoices: Vec<InvoiceSummary>,
    pub payments: PaymentChecks,
    pub refunds: RefundChecks,
    pub grants: GrantChecks,
    pub recurring: RecurringChecks,
    /// As of the end of the period.
    pub trial_balance: Vec<TrialBalance>,
    /// Per UTC day and currency: the wallets' credits, debits and net
    /// movement, days without movement left out.
    pub daily: Vec<DailyNet>,
}

impl Reconciliation {
    /// Each check by name with whether it passed, in the report's order:
    /// what `failed_checks` and the CSV's check rows are made of.
    pub fn checks(&self) -> [(&'static str, bool); 8] {
        [
            ("wallet_drift", self.wallets.iter().all(|w| w.ok)),
            ("reservations_held", self.reservations.iter().all(|r| r.ok)),
            ("receivables", self.invoices.iter().all(|i| i.ok)),
            ("payments_unbooked", self.payments.ok),
            ("refunds", self.refunds.ok),
            ("grants", self.grants.ok),
            ("recurring_billing", self.recurring.ok),
            ("trial_balance", self.trial_balance.iter().all(|t| t.balanced)),
        ]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DailyNet {
    pub day: NaiveDate,
    pub currency: String,
    /// Every credit of the day (top-ups, refunds, transfers in, …).
    pub credits: String,
    /// Every debit of the day (spending, captures, transfers out, …).
    pub debits: String,
    /// `credits − debits`.
    pub net: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrialBalanceReport {
    pub shop_id: Uuid,
    pub as_of: NaiveDate,
    pub generated_at: DateTime<Utc>,
    /// The server read: the primary, or the replica of REPORTS_DATABASE_URL.
    pub read_from: ReadFrom,
    /// On a replica, how far its replay was behind (milliseconds; 0 when
    /// it had replayed all it received): the figures are as of
    /// `generated_at` minus this. Null on the primary, or on a replica that
    /// has replayed nothing since it started (unknown).
    pub replica_lag_ms: Option<i64>,
    pub currencies: Vec<TrialBalance>,
}
