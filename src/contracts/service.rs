//! Contract use cases and their SQL. A change is one conditional statement,
//! `UPDATE … WHERE status = <expected> AND version = <If-Match> RETURNING`;
//! only when it matches no row is the contract looked at, once, to say why.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::{PgConnection, types::Json};
use uuid::Uuid;

use super::{
    BillingInterval, CancelMode, Collection, Contract, ContractError, ContractStatus, CreateContract,
    UpdateContract, periods,
};
use crate::{
    invoices::{self, CreateInvoice, LineInput},
    metadata::{self, Metadata},
    money::{Currency, Money},
    pagination::{Page, PageParams},
    store,
    tenants::Tenant,
};

/// How often a change is tried again when its row matched on a second look
/// (the competitor that had changed it rolled back).
const ATTEMPTS: usize = 3;

struct ContractRow {
    id: Uuid,
    customer_ref: String,
    title: String,
    currency: String,
    amount: rust_decimal::Decimal,
    billing_interval: String,
    starts_on: NaiveDate,
    terms: Option<String>,
    metadata: Value,
    status: String,
    version: i64,
    approval_note: Option<String>,
    rejection_reason: Option<String>,
    invoice_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    submitted_at: Option<DateTime<Utc>>,
    approved_at: Option<DateTime<Utc>>,
    rejected_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    ends_on: Option<NaiveDate>,
    collection: String,
    wallet_id: Option<Uuid>,
    next_period_on: Option<NaiveDate>,
    periods_billed: i32,
    past_due_at: Option<DateTime<Utc>>,
    cancel_mode: Option<String>,
}

fn status_of(s: &str) -> Result<ContractStatus, ContractError> {
    Ok(store::decode("contract status", s)?)
}

impl ContractRow {
    fn view(self) -> Result<Contract, ContractError> {
        let currency = Currency::stored(&self.currency)?;
        Ok(Contract {
            id: self.id,
            customer_ref: self.customer_ref,
            title: self.title,
            currency: currency.code().to_owned(),
            amount: currency.text(self.amount)?,
            billing_interval: store::decode::<BillingInterval>("billing interval", &self.billing_interval)?,
            starts_on: self.starts_on,
            ends_on: self.ends_on,
            collection: store::decode::<Collection>("collection", &self.collection)?,
            wallet_id: self.wallet_id,
            next_period_on: self.next_period_on,
            periods_billed: self.periods_billed,
            past_due_at: self.past_due_at,
            cancel_mode: self
                .cancel_mode
                .as_deref()
                .map(|m| store::decode::<CancelMode>("cancel mode", m))
                .transpose()?,
            terms: self.terms,
            metadata: metadata::from_json(self.metadata)?,
            status: status_of(&self.status)?,
            version: self.version,
            approval_note: self.approval_note,
            rejection_reason: self.rejection_reason,
            invoice_id: self.invoice_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
            submitted_at: self.submitted_at,
            approved_at: self.approved_at,
            rejected_at: self.rejected_at,
            cancelled_at: self.cancelled_at,
        })
    }
}

pub async fn create(
    conn: &mut PgConnection,
    tenant: Tenant,
    req: CreateContract,
) -> Result<Contract, ContractError> {
    let currency =
        Currency::parse(&req.currency).map_err(|e| ContractError::Invalid("currency", e.to_string()))?;
    let amount = Money::parse("amount", &req.amount, currency)?.amount();
    let terms = Billing {
        interval: req.billing_interval,
        starts_on: req.starts_on,
        ends_on: req.ends_on,
        collection: req.collection.unwrap_or_default(),
        wallet_id: req.wallet_id,
        currency,
    };
    terms.check(conn, tenant, true).await?;
    sqlx::query_as!(
        ContractRow,
        "INSERT INTO contracts
             (shop_id, id, customer_ref, title, currency, amount, billing_interval, starts_on,
              terms, metadata, created_at, updated_at, ends_on, collection, wallet_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now(), now(), $11, $12, $13)
         RETURNING id, customer_ref, title, currency, amount, billing_interval, starts_on, terms,
                   metadata, status, version, approval_note, rejection_reason, invoice_id,
                   created_at, updated_at, submitted_at, approved_at, rejected_at, cancelled_at,
                       ends_on, collection, wallet_id, next_period_on, periods_billed, past_due_at, cancel_mode",
        tenant.shop_id,
        Uuid::now_v7(),
        req.customer_ref,
        req.title,
        currency.code(),
        amount,
        req.billing_interval.as_str(),
        req.starts_on,
        req.terms.filter(|t| !t.is_empty()),
        Json(req.metadata.unwrap_or_default()) as _,
        req.ends_on,
        terms.collection.as_str(),
        req.wallet_id,
    )
    .fetch_one(conn)
    .await?
    .view()
}

/// How a contract bills, checked as a whole whichever part a request
/// names.
struct Billing {
    interval: BillingInterval,
    starts_on: NaiveDate,
    ends_on: Option<NaiveDate>,
    collection: Collection,
    wallet_id: Option<Uuid>,
    currency: Currency,
}

impl Billing {
    /// `draft`: the contract is not approved yet (its start is bounded).
    async fn check(&self, conn: &mut PgConnection, tenant: Tenant, draft: bool) -> Result<(), ContractError> {
        let recurring = self.interval != BillingInterval::OneTime;
        // Every elapsed period is billed at once on approval: a start far
        // back would issue hundreds of invoices in one go. An approved
        // contract's start is history.
        let earliest = chrono::Utc::now().date_naive() - chrono::Duration::days(periods::MAX_BACKDATE_DAYS);
        if draft && recurring && self.starts_on < earliest {
            return Err(ContractError::Invalid(
                "starts_on",
                format!(
                    "a monthly or yearly contract may start at most a year back (on or after {earliest})"
                ),
            ));
        }
        if !recurring && self.ends_on.is_some() {
            return Err(ContractError::Invalid(
                "ends_on",
                "is only for a monthly or yearly contract".into(),
            ));
        }
        if !recurring && self.collection != Collection::Invoice {
            return Err(ContractError::Invalid(
                "collection",
                "is only for a monthly or yearly contract".into(),
            ));
        }
        if let Some(ends_on) = self.ends_on
            && let Err((before, after)) = periods::check_ends_on(self.starts_on, self.interval, ends_on)
        {
            let around = match before {
                Some(before) => format!("{before} or {after}"),
                None => after.to_string(),
            };
            return Err(ContractError::Invalid(
                "ends_on",
                format!("must be the last day of a period (the day before one starts), e.g. {around}"),
            ));
        }
        match (self.collection, self.wallet_id) {
            (Collection::Wallet, None) => Err(ContractError::Invalid(
                "wallet_id",
                "is required with collection wallet".into(),
            )),
            (Collection::Invoice, Some(_)) => Err(ContractError::Invalid(
                "wallet_id",
                "is only allowed with collection wallet".into(),
            )),
            (Collection::Wallet, Some(wallet_id)) => {
                let wallet = sqlx::query_scalar!(
                    "SELECT currency FROM wallets WHERE shop_id = $1 AND id = $2",
                    tenant.shop_id,
                    wallet_id
                )
                .fetch_optional(conn)
                .await?;
                match wallet {
                    None => Err(ContractError::Invalid(
                        "wallet_id",
                        "no wallet of this shop has this id".into(),
                    )),
                    Some(code) if code != self.currency.code() => Err(ContractError::Invalid(
                        "wallet_id",
                        format!(
                            "the wallet holds {code}; the contract bills {}",
                            self.currency.code()
                        ),
                    )),
                    Some(_) => Ok(()),
                }
            }
            (Collection::Invoice, None) => Ok(()),
        }
    }
}

/// Why a conditional change matched no row, looked at once: `Ok` when it
/// matches now (the change that had moved it rolled back) and is worth
/// another try.
async fn explain(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
    expected: Option<i64>,
    from: &[ContractStatus],
) -> Result<(), ContractError> {
    let r = sqlx::query!(
        "SELECT status, version FROM contracts WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(ContractError::NotFound)?;
    if let Some(expected) = expected
        && expected != r.version
    {
        return Err(ContractError::VersionMismatch {
            current: r.version,
            expected,
        });
    }
    let status = status_of(&r.status)?;
    if !from.contains(&status) {
        return Err(ContractError::InvalidState(status.as_str()));
    }
    Ok(())
}

/// Replaces what the request names on a draft at version `expected`; on
/// an approved or past-due recurring contract, its `amount` only (billed
/// from the next period).
pub async fn update(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
    expected: i64,
    req: UpdateContract,
) -> Result<Contract, ContractError> {
    let amount_only = req.amount.is_some()
        && req.customer_ref.is_none()
        && req.title.is_none()
        && req.currency.is_none()
        && req.billing_interval.is_none()
        && req.starts_on.is_none()
        && req.ends_on.is_none()
        && req.collection.is_none()
        && req.wallet_id.is_none()
        && req.terms.is_none()
        && req.metadata.is_none();
    let (currency, amount) = checked_change(conn, tenant, id, expected, &req, amount_only).await?;
    // A PATCH that names nothing checks its preconditions and changes
    // nothing, version included.
    let changes = req.customer_ref.is_some()
        || req.title.is_some()
        || req.currency.is_some()
        || req.amount.is_some()
        || req.billing_interval.is_some()
        || req.starts_on.is_some()
        || req.ends_on.is_some()
        || req.collection.is_some()
        || req.wallet_id.is_some()
        || req.terms.is_some()
        || req.metadata.is_some();
    let from: &[ContractStatus] = if amount_only {
        &[
            ContractStatus::Draft,
            ContractStatus::Approved,
            ContractStatus::PastDue,
        ]
    } else {
        &[ContractStatus::Draft]
    };
    let at = clock(conn).await?;
    for _ in 0..ATTEMPTS {
        let row = sqlx::query_as!(
            ContractRow,
            "UPDATE contracts
                SET customer_ref = COALESCE($4, customer_ref), title = COALESCE($5, title),
                    currency = COALESCE($6, currency), amount = COALESCE($7, amount),
                    billing_interval = COALESCE($8, billing_interval),
                    starts_on = COALESCE($9, starts_on),
                    terms = CASE WHEN $10::text IS NULL THEN terms ELSE NULLIF($10, '') END,
                    metadata = COALESCE($11, metadata),
                    ends_on = COALESCE($15, ends_on),
                    collection = COALESCE($16, collection),
                    wallet_id = CASE WHEN $16 = 'invoice' THEN NULL ELSE COALESCE($17, wallet_id) END,
                    version = version + $12::bool::int,
                    updated_at = CASE WHEN $12 THEN $13 ELSE updated_at END
              WHERE shop_id = $1 AND id = $2 AND version = $3
                AND (status = 'draft'
                     OR ($14 AND status IN ('approved', 'past_due') AND billing_interval <> 'one_time'))
             RETURNING id, customer_ref, title, currency, amount, billing_interval, starts_on, terms,
                       metadata, status, version, approval_note, rejection_reason, invoice_id,
                       created_at, updated_at, submitted_at, approved_at, rejected_at, cancelled_at,
                       ends_on, collection, wallet_id, next_period_on, periods_billed, past_due_at, cancel_mode",
            tenant.shop_id,
            id,
            expected,
            req.customer_ref,
            req.title,
            currency.map(|c| c.code()),
            amount,
            req.billing_interval.map(BillingInterval::as_str),
            req.starts_on,
            req.terms,
            req.metadata.as_ref().map(Json) as _,
            changes,
            at,
            amount_only,
            req.ends_on,
            req.collection.map(Collection::as_str),
            req.wallet_id,
        )
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            return row.view();
        }
        explain(conn, tenant, id, Some(expected), from).await?;
    }
    Err(ContractError::Busy)
}

/// A change of how the contract bills or what it costs is checked against
/// the rest as it will stand. The read only validates: the conditional
/// UPDATE still requires version `expected`, at which these values are
/// the ones read.
async fn checked_change(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
    expected: i64,
    req: &UpdateContract,
    amount_only: bool,
) -> Result<(Option<Currency>, Option<rust_decimal::Decimal>), ContractError> {
    let billing = req.billing_interval.is_some()
        || req.starts_on.is_some()
        || req.ends_on.is_some()
        || req.collection.is_some()
        || req.wallet_id.is_some();
    if req.currency.is_none() && req.amount.is_none() && !billing {
        return Ok((None, None));
    }
    let current = sqlx::query!(
        "SELECT currency, amount, version, status, billing_interval, starts_on, ends_on, collection, wallet_id
           FROM contracts WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
        id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(ContractError::NotFound)?;
    if current.version != expected {
        return Err(ContractError::VersionMismatch {
            current: current.version,
            expected,
        });
    }
    let status = status_of(&current.status)?;
    let interval = store::decode::<BillingInterval>("billing interval", &current.billing_interval)?;
    let amount_change_allowed = amount_only
        && matches!(status, ContractStatus::Approved | ContractStatus::PastDue)
        && interval != BillingInterval::OneTime;
    if status != ContractStatus::Draft && !amount_change_allowed {
        return Err(ContractError::InvalidState(status.as_str()));
    }
    let currency = match &req.currency {
        Some(code) => Currency::parse(code).map_err(|e| ContractError::Invalid("currency", e.to_string()))?,
        None => Currency::stored(&current.currency)?,
    };
    let amount = match &req.amount {
        Some(raw) => Money::parse("amount", raw, currency)?.amount(),
        None => {
            currency.format(current.amount).map_err(|_| {
                ContractError::Invalid(
                    "currency",
                    format!(
                        "the amount {} has more decimals than {} allows; send a new amount with it",
                        current.amount.normalize(),
                        currency.code()
                    ),
                )
            })?;
            current.amount
        }
    };
    let collection = match req.collection {
        Some(c) => c,
        None => store::decode::<Collection>("collection", &current.collection)?,
    };
    let terms = Billing {
        interval: req.billing_interval.unwrap_or(interval),
        starts_on: req.starts_on.unwrap_or(current.starts_on),
        ends_on: req.ends_on.or(current.ends_on),
        collection,
        wallet_id: match collection {
            Collection::Invoice => req.wallet_id,
            Collection::Wallet => req.wallet_id.or(current.wallet_id),
        },
        currency,
    };
    terms.check(conn, tenant, status == ContractStatus::Draft).await?;
    Ok((Some(currency), Some(amount)))
}

/// A status change: what it moves from, and what it records.
pub struct Transition<'a> {
    pub to: ContractStatus,
    pub from: &'a [ContractStatus],
    pub note: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// How a cancelled recurring contract ends.
    pub cancel: CancelMode,
}

impl<'a> Transition<'a> {
    pub fn approve(note: Option<&'a str>) -> Self {
        Transition {
            to: ContractStatus::Approved,
            from: &[ContractStatus::PendingApproval],
            note,
            reason: None,
            cancel: CancelMode::AtPeriodEnd,
        }
    }

    pub fn reject(reason: &'a str) -> Self {
        Transition {
            to: ContractStatus::Rejected,
            from: &[ContractStatus::PendingApproval],
            note: None,
            reason: Some(reason),
            cancel: CancelMode::AtPeriodEnd,
        }
    }

    pub const SUBMIT: Transition<'static> = Transition {
        to: ContractStatus::PendingApproval,
        from: &[ContractStatus::Draft],
        note: None,
        reason: None,
        cancel: CancelMode::AtPeriodEnd,
    };
    pub const CANCEL: Transition<'static> = Transition {
        to: ContractStatus::Cancelled,
        from: &[
            ContractStatus::Draft,
            ContractStatus::Approved,
            ContractStatus::PastDue,
        ],
        note: None,
        reason: None,
        cancel: CancelMode::AtPeriodEnd,
    };

    pub fn cancel(mode: CancelMode) -> Self {
        Transition {
            cancel: mode,
            ..Transition::CANCEL
        }
    }
}

/// The transaction's clock (`now()`), read on its own: Citus refuses a
/// non-immutable function inside `CASE` of a distributed UPDATE, so the
/// statements that set a time only in some cases take it as a parameter.
async fn clock(conn: &mut PgConnection) -> Result<chrono::DateTime<chrono::Utc>, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
        .fetch_one(conn)
        .await
}

/// Moves the contract from one of `t.from` at version `expected` (any
/// version when `None`) to `t.to`, in one statement. Approving a one-time
/// contract names its invoice in that statement and issues it (created and
/// finalized) right after, in the same transaction: if that fails, the
/// approval does not happen.
pub async fn transition(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
    expected: Option<i64>,
    t: Transition<'_>,
) -> Result<Contract, ContractError> {
    let from: Vec<&str> = t.from.iter().map(|s| s.as_str()).collect();
    let at = clock(conn).await?;
    for _ in 0..ATTEMPTS {
        let row = sqlx::query_as!(
            ContractRow,
            "UPDATE contracts
                SET status = $5, version = version + 1, updated_at = $9,
                    submitted_at = CASE WHEN $5 = 'pending_approval' THEN $9 ELSE submitted_at END,
                    approved_at = CASE WHEN $5 = 'approved' THEN $9 ELSE approved_at END,
                    approval_note = CASE WHEN $5 = 'approved' THEN $6 ELSE approval_note END,
                    rejected_at = CASE WHEN $5 = 'rejected' THEN $9 ELSE rejected_at END,
                    rejection_reason = CASE WHEN $5 = 'rejected' THEN $7 ELSE rejection_reason END,
                    cancelled_at = CASE WHEN $5 = 'cancelled' THEN $9 ELSE cancelled_at END,
                    invoice_id = CASE WHEN $5 = 'approved' AND billing_interval = 'one_time'
                                      THEN $8 ELSE invoice_id END,
                    next_period_on = CASE WHEN $5 = 'approved' AND billing_interval <> 'one_time'
                                          THEN starts_on
                                          WHEN $5 = 'cancelled' THEN NULL ELSE next_period_on END,
                    cancel_mode = CASE WHEN $5 = 'cancelled' AND status IN ('approved', 'past_due')
                                            AND billing_interval <> 'one_time'
                                       THEN $10 ELSE cancel_mode END,
                    past_due_at = CASE WHEN $5 = 'cancelled' THEN NULL ELSE past_due_at END
              WHERE shop_id = $1 AND id = $2 AND status = ANY($3::text[])
                AND ($4::bigint IS NULL OR version = $4)
             RETURNING id, customer_ref, title, currency, amount, billing_interval, starts_on, terms,
                       metadata, status, version, approval_note, rejection_reason, invoice_id,
                       created_at, updated_at, submitted_at, approved_at, rejected_at, cancelled_at,
                       ends_on, collection, wallet_id, next_period_on, periods_billed, past_due_at, cancel_mode",
            tenant.shop_id,
            id,
            &from as &[&str],
            expected,
            t.to.as_str(),
            t.note,
            t.reason,
            Uuid::now_v7(),
            at,
            t.cancel.as_str(),
        )
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            let contract = row.view()?;
            if t.to == ContractStatus::Approved
                && let Some(invoice_id) = contract.invoice_id
            {
                issue_invoice(conn, tenant, invoice_id, &contract).await?;
            }
            return Ok(contract);
        }
        explain(conn, tenant, id, expected, t.from).await?;
    }
    Err(ContractError::Busy)
}

/// The one-time contract's invoice: one line of its amount, finalized (its
/// number taken, receivables → revenue posted).
async fn issue_invoice(
    conn: &mut PgConnection,
    tenant: Tenant,
    invoice_id: Uuid,
    contract: &Contract,
) -> Result<(), ContractError> {
    let request = CreateInvoice {
        customer_ref: contract.customer_ref.clone(),
        currency: contract.currency.clone(),
        due_date: None,
        memo: None,
        metadata: Some(Metadata(
            [("contract_id".to_owned(), contract.id.to_string())].into(),
        )),
        lines: vec![LineInput {
            description: contract.title.clone(),
            quantity: "1".into(),
            unit_amount: contract.amount.clone(),
        }],
    };
    invoices::create(conn, tenant, invoice_id, request).await?;
    // The approval is kept by the contract's version (a retry gets 412),
    // so its invoice needs no key of its own.
    invoices::finalize(conn, tenant, invoice_id, None).await?;
    Ok(())
}

pub async fn get(conn: &mut PgConnection, tenant: Tenant, id: Uuid) -> Result<Contract, ContractError> {
    sqlx::query_as!(
        ContractRow,
        "SELECT id, customer_ref, title, currency, amount, billing_interval, starts_on, terms,
                metadata, status, version, approval_note, rejection_reason, invoice_id,
                created_at, updated_at, submitted_at, approved_at, rejected_at, cancelled_at,
                       ends_on, collection, wallet_id, next_period_on, periods_billed, past_due_at, cancel_mode
           FROM contracts WHERE shop_id = $1 AND id = $2",
        tenant.shop_id,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(ContractError::NotFound)?
    .view()
}

/// Newest first.
pub async fn list(
    conn: &mut PgConnection,
    tenant: Tenant,
    status: Option<ContractStatus>,
    customer_ref: Option<&str>,
    page: &PageParams,
) -> Result<Page<Contract>, ContractError> {
    let rows = sqlx::query_as!(
        ContractRow,
        "SELECT id, customer_ref, title, currency, amount, billing_interval, starts_on, terms,
                metadata, status, version, approval_note, rejection_reason, invoice_id,
                created_at, updated_at, submitted_at, approved_at, rejected_at, cancelled_at,
                       ends_on, collection, wallet_id, next_period_on, periods_billed, past_due_at, cancel_mode
           FROM contracts
          WHERE shop_id = $1
            AND ($2::text IS NULL OR status = $2)
            AND ($3::text IS NULL OR customer_ref = $3)
            AND ($4::uuid IS NULL OR id < $4)
          ORDER BY id DESC
          LIMIT $5",
        tenant.shop_id,
        status.map(ContractStatus::as_str),
        customer_ref,
        page.starting_after,
        page.limit() + 1
    )
    .fetch_all(conn)
    .await?;
    let contracts = rows
        .into_iter()
        .map(ContractRow::view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(contracts, page.limit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ContractStatus; 6] = [
        ContractStatus::Draft,
        ContractStatus::PendingApproval,
        ContractStatus::Approved,
        ContractStatus::PastDue,
        ContractStatus::Rejected,
        ContractStatus::Cancelled,
    ];

    #[test]
    fn the_commands_transitions_are_exactly_the_state_machine() {
        let transitions = [
            Transition::SUBMIT,
            Transition::approve(None),
            Transition::reject("r"),
            Transition::CANCEL,
        ];
        let mut covered = vec![];
        for t in &transitions {
            for from in t.from {
                assert!(from.successors().contains(&t.to), "{from:?} → {:?}", t.to);
                covered.push((*from, t.to));
            }
        }
        // Into and out of past_due is the billing job's, not a command's.
        let by_job = |from: &ContractStatus, to: &ContractStatus| {
            matches!(
                (from, to),
                (ContractStatus::Approved, ContractStatus::PastDue)
                    | (ContractStatus::PastDue, ContractStatus::Approved)
            )
        };
        let mut allowed: Vec<_> = ALL
            .iter()
            .flat_map(|from| from.successors().iter().map(move |to| (*from, *to)))
            .filter(|(from, to)| !by_job(from, to))
            .collect();
        let key = |p: &(ContractStatus, ContractStatus)| (p.0.as_str(), p.1.as_str());
        allowed.sort_by_key(key);
        covered.sort_by_key(key);
        assert_eq!(covered, allowed, "every allowed move has exactly one command");
        assert!(ContractStatus::Rejected.successors().is_empty());
        assert!(ContractStatus::Cancelled.successors().is_empty());
    }
}
