//! The report's queries, run in one read-only snapshot, and its checks.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{
    AccountBalance, DailyNet, GrantChecks, GrantSummary, InvoiceSummary, PaymentChecks, ReadFrom,
    Reconciliation, RecurringChecks, RefundChecks, RefundSummary, ReportError, ReservationCheck,
    TrialBalance, TrialBalanceReport, WalletLine,
};
use crate::money::Currency;

/// Longer than any transaction may run (REQUEST_TIMEOUT, the database
/// timeouts, a background batch): a period that ended less long ago is
/// provisional.
pub const PROVISIONAL_MARGIN: Duration = Duration::minutes(5);
/// The longest period one report covers.
pub const MAX_DAYS: i64 = 366;

/// An amount as text in its currency; a figure that does not fit the
/// currency (only possible when the books are damaged) is shown whole,
/// never rounded.
fn text(currency: &str, value: Decimal) -> String {
    Currency::parse(currency)
        .ok()
        .and_then(|c| c.format(value).ok())
        .unwrap_or_else(|| value.normalize().to_string())
}

fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

fn end_of(day: NaiveDate) -> Result<DateTime<Utc>, ReportError> {
    day.succ_opt()
        .map(start_of)
        .ok_or_else(|| ReportError::Invalid("to", "is too far in the future".into()))
}

/// Where and when a snapshot reads.
struct Source {
    generated_at: DateTime<Utc>,
    read_from: ReadFrom,
    replica_lag_ms: Option<i64>,
    /// The last day rolled up, as the snapshot sees it.
    rolled_through: Option<NaiveDate>,
}

impl Source {
    /// Whether data read now may still miss a transaction of a period that
    /// ends at `end`: it ended less than PROVISIONAL_MARGIN before the
    /// data's time, or a replica cannot say how far behind it is.
    fn provisional(&self, end: DateTime<Utc>) -> bool {
        match (self.read_from, self.replica_lag_ms) {
            (ReadFrom::Replica, None) => true,
            (_, lag) => {
                self.generated_at - Duration::milliseconds(lag.unwrap_or(0)) < end + PROVISIONAL_MARGIN
            }
        }
    }
}

/// A read-only snapshot, on the primary or a replica: every query of one
/// report sees the same state.
async fn snapshot(
    pool: &PgPool,
    shop_id: Uuid,
) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, Source), ReportError> {
    let mut tx = crate::store::begin(pool).await?;
    // No JIT: the report's queries are short index seeks, but over large
    // tables their estimates can pass jit_above_cost, and compiling them
    // would cost more than running them.
    for set in [
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY",
        "SET LOCAL jit = off",
    ] {
        sqlx::query(set).execute(&mut *tx).await?;
    }
    let s = sqlx::query_file!("sql/reports/source.sql", shop_id)
        .fetch_one(&mut *tx)
        .await?;
    let source = Source {
        generated_at: s.now,
        read_from: if s.replica {
            ReadFrom::Replica
        } else {
            ReadFrom::Primary
        },
        replica_lag_ms: s.lag_ms,
        rolled_through: s.rolled_through,
    };
    Ok((tx, source))
}

/// The parts of a report, in the order `reconciliation_with` reads them.
pub const STEPS: [&str; 9] = [
    "wallets",
    "reservations",
    "invoices",
    "payments",
    "refunds",
    "grants",
    "recurring billing",
    "daily",
    "trial balance",
];

pub async fn reconciliation(
    pool: &PgPool,
    shop_id: Uuid,
    from: NaiveDate,
    to: NaiveDate,
    currency: Option<&str>,
) -> Result<Reconciliation, ReportError> {
    reconciliation_with(pool, shop_id, from, to, currency, |_| {}).await
}

/// The report, calling `step` with each part of STEPS once it is read (the
/// command line's progress bar).
pub async fn reconciliation_with(
    pool: &PgPool,
    shop_id: Uuid,
    from: NaiveDate,
    to: NaiveDate,
    currency: Option<&str>,
    mut step: impl FnMut(&'static str),
) -> Result<Reconciliation, ReportError> {
    if let Some(code) = currency {
        crate::money::Currency::parse(code).map_err(|e| ReportError::Invalid("currency", e.to_string()))?;
    }
    if to < from {
        return Err(ReportError::Invalid("to", "must not be before from".into()));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(ReportError::Invalid(
            "to",
            format!("a report covers at most {MAX_DAYS} days"),
        ));
    }
    let (start, end) = (start_of(from), end_of(to)?);
    let (mut tx, source) = snapshot(pool, shop_id).await?;
    let generated_at = source.generated_at;
    // An unknown shop is an error, never an empty green report.
    sqlx::query_scalar!("SELECT 1 AS \"one!\" FROM shops WHERE id = $1", shop_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ReportError::NoSuchShop)?;

    let wallets: Vec<WalletLine> = sqlx::query_file!(
        "sql/reports/wallets.sql",
        shop_id,
        start,
        end,
        currency,
        source.rolled_through
    )
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|r| {
        let drift = r.stored - r.journal;
        let c = r.currency.as_str();
        WalletLine {
            ok: drift.is_zero() && r.opening + r.credits - r.debits == r.closing,
            wallet_id: r.wallet_id,
            opening_balance: text(c, r.opening),
            credits: text(c, r.credits),
            debits: text(c, r.debits),
            closing_balance: text(c, r.closing),
            journal_balance: text(c, r.journal),
            stored_balance: text(c, r.stored),
            drift: text(c, drift),
            customer_ref: r.customer_ref,
            currency: r.currency,
        }
    })
    .collect();
    step(STEPS[0]);

    let reservations: Vec<ReservationCheck> =
        sqlx::query_file!("sql/reports/reservations.sql", shop_id, currency)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| ReservationCheck {
                ok: r.held == r.reserved && r.overdue == 0,
                active: r.active,
                held: text(&r.currency, r.held),
                wallets_reserved: text(&r.currency, r.reserved),
                overdue: r.overdue,
                overdue_reservation_ids: r.overdue_ids,
                currency: r.currency,
            })
            .collect();
    step(STEPS[1]);

    // Receivables now (roll-ups plus the entries since), against what the
    // open invoices have due; a currency with receivables but no invoice
    // row is a failed check too.
    let now = balances(
        &mut tx,
        &source,
        shop_id,
        generated_at + Duration::days(1),
        currency,
    )
    .await?;
    let mut receivables: BTreeMap<String, Decimal> = now
        .into_iter()
        .filter_map(|(currency, accounts)| {
            let (_, balance) = accounts.into_iter().find(|(a, _)| a == "receivables")?;
            Some((currency, balance))
        })
        .collect();
    let mut invoices: Vec<InvoiceSummary> =
        sqlx::query_file!("sql/reports/invoices.sql", shop_id, start, end, currency)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| {
                let c = r.currency.as_str();
                // The account's entries negated: finalize debits it.
                let due = -receivables.remove(&r.currency).unwrap_or_default();
                InvoiceSummary {
                    ok: due == r.outstanding_total,
                    issued: r.issued,
                    issued_total: text(c, r.issued_total),
                    paid: r.paid,
                    paid_total: text(c, r.paid_total),
                    voided: r.voided,
                    voided_total: text(c, r.voided_total),
                    outstanding: r.outstanding,
                    outstanding_total: text(c, r.outstanding_total),
                    receivables: text(c, due),
                    currency: r.currency,
                }
            })
            .collect();
    for (currency, balance) in receivables.into_iter().filter(|(_, b)| !b.is_zero()) {
        let zero = text(&currency, Decimal::ZERO);
        invoices.push(InvoiceSummary {
            ok: false,
            issued: 0,
            issued_total: zero.clone(),
            paid: 0,
            paid_total: zero.clone(),
            voided: 0,
            voided_total: zero.clone(),
            outstanding: 0,
            outstanding_total: zero,
            receivables: text(&currency, -balance),
            currency,
        });
    }
    step(STEPS[2]);

    let p = sqlx::query_file!("sql/reports/payments.sql", shop_id, start, end)
        .fetch_one(&mut *tx)
        .await?;
    let payments = PaymentChecks {
        ok: p.dead.is_empty() && p.unposted == 0,
        webhook_failing: p.failing,
        webhook_dead_event_ids: p.dead,
        unposted_invoice_payments: p.unposted,
        unposted_invoice_payment_ids: p.unposted_ids,
    };
    step(STEPS[3]);

    let summary = sqlx::query_file!("sql/reports/refunds.sql", shop_id, start, end, currency)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| {
            let c = r.currency.as_str();
            RefundSummary {
                movement_refunds: r.movement_refunds,
                movement_refunds_total: text(c, r.movement_refunds_total),
                payment_refunds: r.payment_refunds,
                payment_refunds_total: text(c, r.payment_refunds_total),
                credit_notes: r.credit_notes,
                credit_notes_total: text(c, r.credit_notes_total),
                currency: r.currency,
            }
        })
        .collect();
    let c = sqlx::query_file!("sql/reports/refund_checks.sql", shop_id, start, end)
        .fetch_one(&mut *tx)
        .await?;
    let refunds = RefundChecks {
        ok: c.over_refunded_transactions.is_empty()
            && c.over_refunded_payments.is_empty()
            && c.invoices_not_adding_up.is_empty(),
        summary,
        over_refunded_transaction_ids: c.over_refunded_transactions,
        over_refunded_payment_ids: c.over_refunded_payments,
        invoices_not_adding_up: c.invoices_not_adding_up,
    };
    step(STEPS[4]);

    let grants = grant_checks(&mut tx, shop_id, start, end, currency).await?;
    step(STEPS[5]);
    let recurring = recurring_checks(&mut tx, shop_id, from, to).await?;
    step(STEPS[6]);

    let daily = sqlx::query_file!("sql/reports/daily.sql", shop_id, start, end, currency)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| DailyNet {
            credits: text(&r.currency, r.credits),
            debits: text(&r.currency, r.debits),
            net: text(&r.currency, r.net),
            day: r.day,
            currency: r.currency,
        })
        .collect();
    step(STEPS[7]);
    let trial_balance = trial(&mut tx, &source, shop_id, end, currency).await?;
    tx.commit().await?;
    step(STEPS[8]);

    let mut report = Reconciliation {
        shop_id,
        from,
        to,
        currency: currency.map(str::to_owned),
        generated_at,
        provisional: source.provisional(end),
        read_from: source.read_from,
        replica_lag_ms: source.replica_lag_ms,
        ok: false,
        failed_checks: Vec::new(),
        wallets,
        reservations,
        invoices,
        payments,
        refunds,
        grants,
        recurring,
        trial_balance,
        daily,
    };
    report.failed_checks = report
        .checks()
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| name.to_owned())
        .collect();
    report.ok = report.failed_checks.is_empty();
    Ok(report)
}

/// Per currency, every account's balance at `before` (exclusive): the
/// roll-ups of the days that end by then plus the entries since.
async fn balances(
    conn: &mut PgConnection,
    source: &Source,
    shop_id: Uuid,
    before: DateTime<Utc>,
    currency: Option<&str>,
) -> Result<BTreeMap<String, Vec<(String, Decimal)>>, ReportError> {
    let through = source
        .rolled_through
        .map(|day| day.min(before.date_naive() - Duration::days(1)));
    let rows = sqlx::query_file!(
        "sql/reports/trial_balance.sql",
        shop_id,
        before,
        currency,
        through
    )
    .fetch_all(conn)
    .await?;
    let mut by_currency: BTreeMap<String, Vec<(String, Decimal)>> = BTreeMap::new();
    for r in rows {
        by_currency
            .entry(r.currency)
            .or_default()
            .push((r.account, r.balance));
    }
    Ok(by_currency)
}

/// The period's grants and the grant invariants over what moved in it.
/// Movements before grants existed (the migration that made them) have no
/// consumptions and are not checked.
async fn grant_checks(
    conn: &mut PgConnection,
    shop_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    currency: Option<&str>,
) -> Result<GrantChecks, ReportError> {
    let summary = sqlx::query_file!("sql/reports/grants.sql", shop_id, start, end, currency)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| {
            let c = r.currency.as_str();
            GrantSummary {
                paid_issued: text(c, r.paid_issued),
                granted_issued: text(c, r.granted_issued),
                spent: text(c, r.spent),
                expired: text(c, r.expired),
                currency: r.currency,
            }
        })
        .collect();
    // sqlx's own table, which every migrated database has.
    let since: DateTime<Utc> =
        sqlx::query_scalar("SELECT installed_on FROM _sqlx_migrations WHERE version = 18")
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let c = sqlx::query_file!("sql/reports/grant_checks.sql", shop_id, start, end, since)
        .fetch_one(&mut *conn)
        .await?;
    Ok(GrantChecks {
        ok: c.wallets_not_matching_grants.is_empty()
            && c.grants_not_adding_up.is_empty()
            && c.movements_not_adding_up.is_empty()
            && c.overdue_grant_ids.is_empty(),
        summary,
        wallets_not_matching_grants: c.wallets_not_matching_grants,
        grants_not_adding_up: c.grants_not_adding_up,
        movements_not_adding_up: c.movements_not_adding_up,
        overdue_grant_ids: c.overdue_grant_ids,
    })
}

/// Recurring billing of the shop: periods billed in the report's days and
/// the one-invoice-per-period check over every approved recurring contract.
async fn recurring_checks(
    conn: &mut PgConnection,
    shop_id: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<RecurringChecks, ReportError> {
    let day_ago = Utc::now().date_naive() - Duration::days(1);
    let r = sqlx::query_file!("sql/reports/recurring.sql", shop_id, from, to, day_ago)
        .fetch_one(&mut *conn)
        .await?;
    let cap = |mut ids: Vec<Uuid>| {
        ids.truncate(100);
        ids
    };
    Ok(RecurringChecks {
        ok: r.behind.is_empty() && r.not_one_invoice_per_period.is_empty(),
        periods_billed: r.periods_billed,
        contracts_past_due: cap(r.past_due),
        contracts_behind: cap(r.behind),
        contracts_not_one_invoice_per_period: cap(r.not_one_invoice_per_period),
    })
}

async fn trial(
    conn: &mut PgConnection,
    source: &Source,
    shop_id: Uuid,
    before: DateTime<Utc>,
    currency: Option<&str>,
) -> Result<Vec<TrialBalance>, ReportError> {
    Ok(balances(conn, source, shop_id, before, currency)
        .await?
        .into_iter()
        .map(|(currency, accounts)| {
            let total: Decimal = accounts.iter().map(|(_, b)| *b).sum();
            TrialBalance {
                accounts: accounts
                    .into_iter()
                    .map(|(account, balance)| AccountBalance {
                        balance: text(&currency, balance),
                        account,
                    })
                    .collect(),
                total: text(&currency, total),
                balanced: total.is_zero(),
                currency,
            }
        })
        .collect())
}

pub async fn trial_balance(
    pool: &PgPool,
    shop_id: Uuid,
    as_of: NaiveDate,
    currency: Option<&str>,
) -> Result<TrialBalanceReport, ReportError> {
    let (mut tx, source) = snapshot(pool, shop_id).await?;
    let currencies = trial(&mut tx, &source, shop_id, end_of(as_of)?, currency).await?;
    tx.commit().await?;
    Ok(TrialBalanceReport {
        shop_id,
        as_of,
        generated_at: source.generated_at,
        read_from: source.read_from,
        replica_lag_ms: source.replica_lag_ms,
        currencies,
    })
}

/// The class of `pg_try_advisory_xact_lock(class, shop)`: one roll-up of a
/// shop at a time across instances (on Citus, advisory locks live on the
/// coordinator every instance connects to).
const ROLLUP_LOCK: i32 = 0x626c_726f; // "blro"

/// Rolls up every closed day not rolled yet, shop by shop, one day per
/// transaction, each shop on one instance at a time. A day is closed once
/// its end is more than PROVISIONAL_MARGIN ago. Returns the number of days
/// rolled (summed over shops).
pub async fn rollup(pool: &PgPool) -> Result<u32, sqlx::Error> {
    // The shops come from the reference table (a local read on Citus);
    // each one's roll-up reads and writes its own shard only.
    let shops = sqlx::query_scalar!("SELECT id FROM shops ORDER BY id")
        .fetch_all(pool)
        .await?;
    let mut days = 0;
    for shop in shops {
        days += rollup_shop(pool, shop).await?;
    }
    Ok(days)
}

async fn rollup_shop(pool: &PgPool, shop: Uuid) -> Result<u32, sqlx::Error> {
    let mut days = 0;
    loop {
        let mut tx = crate::store::begin(pool).await?;
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, hashtext($2::text))")
            .bind(ROLLUP_LOCK)
            .bind(shop)
            .fetch_one(&mut *tx)
            .await?;
        if !ours {
            return Ok(days);
        }
        let closed = (Utc::now() - PROVISIONAL_MARGIN).date_naive() - Duration::days(1);
        let next = sqlx::query_file_scalar!("sql/reports/rollup_next.sql", shop)
            .fetch_one(&mut *tx)
            .await?;
        let Some(day) = next.filter(|day| *day <= closed) else {
            return Ok(days);
        };
        sqlx::query_file!("sql/reports/rollup_day.sql", day, shop)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        days += 1;
    }
}
