//! Running a batch: atomic, its credits, debits and transfers written
//! set-wise (`wallets::bulk`), or every item in the batch's transaction
//! (`Unit::nested`) after its wallets are locked in one fixed order; or
//! each item through the executor on its own.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{BatchResult, Item, ItemResult, Op};
use crate::{
    config::ReservationConfig,
    executor::{
        Answer, Claimed, Command, ExecError, Executor, Nested, Ran, Refusal, Request, Unit, Verdict, command,
    },
    http::{ApiError, Problem},
    reservations::commands::{Capture, Hold, Release},
    store::StoreError,
    tenants::Tenant,
    wallets::{
        WalletError, bulk,
        commands::{Credit, Debit, MakeTransfer, Refund},
    },
};

/// Binds `$cmd` to the item's command and evaluates `$body` with it (each
/// op's command is its own type).
macro_rules! with_command {
    ($op:expr, $tenant:expr, $config:expr, |$cmd:ident| $body:expr) => {
        match $op {
            Op::Credit { wallet_id, input } => {
                let $cmd = Credit {
                    tenant: $tenant,
                    wallet_id,
                    input,
                };
                $body
            }
            Op::Debit { wallet_id, input } => {
                let $cmd = Debit {
                    tenant: $tenant,
                    wallet_id,
                    input,
                };
                $body
            }
            Op::Transfer { input } => {
                let $cmd = MakeTransfer {
                    tenant: $tenant,
                    input,
                };
                $body
            }
            Op::Reserve { wallet_id, input } => {
                let $cmd = Hold {
                    tenant: $tenant,
                    wallet_id,
                    input,
                    config: $config.clone(),
                };
                $body
            }
            Op::Capture {
                reservation_id,
                input,
            } => {
                let $cmd = Capture {
                    tenant: $tenant,
                    reservation_id,
                    input,
                };
                $body
            }
            Op::Release { reservation_id } => {
                let $cmd = Release {
                    tenant: $tenant,
                    reservation_id,
                };
                $body
            }
            Op::Refund {
                wallet_id,
                transaction_id,
                input,
            } => {
                let $cmd = Refund {
                    tenant: $tenant,
                    wallet_id,
                    transaction_id,
                    input,
                };
                $body
            }
        }
    };
}

/// An atomic batch: its items in its own transaction, under its key.
pub struct Batch {
    pub tenant: Tenant,
    pub items: Vec<Item>,
    pub config: ReservationConfig,
}

/// Why an atomic batch changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The first item that did not succeed, with its single request's
    /// problem; `verdict` is that refusal's (a business refusal is the
    /// batch key's outcome too, a failure is not).
    #[error("items[{index}]: {}", problem.detail)]
    Item {
        index: usize,
        problem: Box<Problem>,
        verdict: Verdict,
    },
    /// An item's key was claimed by another request meanwhile: retry.
    #[error("an item's idempotency key was just claimed by another request")]
    KeyInUse,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Refusal for BatchError {
    fn verdict(&self) -> Verdict {
        match self {
            // A refusal that committed its change alone (a late capture
            // releasing its hold) cannot commit inside a batch that refuses.
            BatchError::Item { verdict, .. } if *verdict == Verdict::Failed => Verdict::Failed,
            BatchError::Item { .. } => Verdict::Refused,
            BatchError::Store(_) | BatchError::KeyInUse => Verdict::Failed,
        }
    }
    fn store_error(&self) -> Option<&StoreError> {
        match self {
            BatchError::Store(e) => Some(e),
            BatchError::Item { .. } | BatchError::KeyInUse => None,
        }
    }
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::Item { index, problem, .. } => ApiError::BatchItem { index, problem },
            BatchError::Store(e) => e.into(),
            BatchError::KeyInUse => ApiError::IdempotencyKeyInUse,
        }
    }
}

impl Command for Batch {
    const ACTION: &'static str = "batch.create";
    type Key = Claimed;
    type Output = BatchResult;
    type Error = BatchError;

    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<BatchResult>, BatchError> {
        if let Some(answers) = set_wise(unit, &key, self.tenant, &self.items).await? {
            let items = answers
                .into_iter()
                .enumerate()
                .map(|(index, answer)| item_result(index, answer))
                .collect();
            return Ok(key.answer(BatchResult {
                id: Uuid::now_v7(),
                atomic: true,
                items,
            }));
        }
        lock_wallets(unit.conn(), self.tenant, &self.items).await?;
        let mut results = Vec::with_capacity(self.items.len());
        for (index, Item { op, request }) in self.items.into_iter().enumerate() {
            let nested = with_command!(op, self.tenant, self.config, |cmd| refused(
                unit.nested(&request, cmd).await
            ));
            let answer = nested.map_err(|(error, verdict)| BatchError::Item {
                index,
                problem: Box::new(error.problem()),
                verdict,
            })?;
            let result = item_result(index, answer);
            if !(200..300).contains(&result.status) {
                // The key's recorded answer is a refusal: the item cannot
                // apply, so neither does the batch.
                let problem = serde_json::from_value(result.body)
                    .map_err(|e| StoreError::broken(format!("a stored problem: {e}")))?;
                return Err(BatchError::Item {
                    index,
                    problem: Box::new(problem),
                    verdict: Verdict::Refused,
                });
            }
            results.push(result);
        }
        Ok(key.answer(BatchResult {
            id: Uuid::now_v7(),
            atomic: true,
            items: results,
        }))
    }
}

/// A batch of credits, debits and transfers only, written set-wise
/// (`wallets::bulk`); `None` when its items must run one by one.
async fn set_wise(
    unit: &mut Unit<'_>,
    key: &Claimed,
    tenant: Tenant,
    items: &[Item],
) -> Result<Option<Vec<Answer>>, BatchError> {
    let movements: Option<Vec<bulk::Item<'_>>> = items
        .iter()
        .map(|Item { op, request }| {
            let movement = match op {
                Op::Credit { wallet_id, input } => bulk::Movement::Credit(*wallet_id, input),
                Op::Debit { wallet_id, input } => bulk::Movement::Debit(*wallet_id, input),
                Op::Transfer { input } => bulk::Movement::Transfer(input),
                _ => return None,
            };
            Some(bulk::Item { movement, request })
        })
        .collect();
    let Some(movements) = movements else {
        return Ok(None);
    };
    bulk::apply(unit, key, tenant, &movements)
        .await
        .map_err(|e| match e {
            bulk::BulkError::Item(_, WalletError::Store(e)) | bulk::BulkError::Store(e) => {
                BatchError::Store(e)
            }
            bulk::BulkError::KeyTaken => BatchError::KeyInUse,
            bulk::BulkError::Item(index, e) => BatchError::Item {
                index,
                verdict: e.verdict(),
                problem: Box::new(ApiError::from(e).problem()),
            },
        })
}

/// A nested run's answer, or its refusal as the single request's problem
/// with the verdict for the batch.
fn refused<E: Refusal + Into<ApiError>>(nested: Nested<E>) -> Result<Answer, (ApiError, Verdict)> {
    match nested {
        Nested::Answered(answer) => Ok(answer),
        Nested::Refused(e) => {
            let verdict = e.verdict();
            Err((e.into(), verdict))
        }
        // Reused: the item is wrong, as a refusal is; in use or a failure:
        // worth retrying.
        Nested::Key(ExecError::KeyReused) => Err((ApiError::IdempotencyKeyReused, Verdict::Refused)),
        Nested::Key(e) => Err((e.into(), Verdict::Failed)),
    }
}

fn item_result(index: usize, answer: Answer) -> ItemResult {
    let body = serde_json::from_slice(&answer.response.body).unwrap_or(Value::Null);
    ItemResult {
        index,
        status: answer.response.status,
        body,
        replayed: answer.replayed,
    }
}

/// Locks every wallet the items move, once each, in id order, before any
/// item runs: two batches over the same wallets queue instead of
/// deadlocking, and each item then finds its wallets already held. A hold's
/// wallet is looked up from the hold (it never changes).
async fn lock_wallets(conn: &mut PgConnection, tenant: Tenant, items: &[Item]) -> Result<(), StoreError> {
    let wallets: Vec<Uuid> = items.iter().flat_map(|i| i.op.wallets()).collect();
    let holds: Vec<Uuid> = items.iter().filter_map(|i| i.op.reservation()).collect();
    sqlx::query!(
        "SELECT w.id FROM wallets w
          WHERE w.shop_id = $1
            AND (w.id = ANY($2)
                 OR w.id IN (SELECT r.wallet_id FROM credit_reservations r
                              WHERE r.shop_id = $1 AND r.id = ANY($3)))
          ORDER BY w.id
            FOR UPDATE",
        tenant.shop_id,
        &wallets,
        &holds
    )
    .fetch_all(conn)
    .await?;
    Ok(())
}

/// What records a batch that is not atomic under its key: the answers its
/// items already got.
struct Record(BatchResult);

command!(Record: "batch.create" => BatchResult, StoreError,
    |c, _conn| std::future::ready(Ok::<_, StoreError>(c.0)));

/// A batch that is not atomic: each item through the executor on its own
/// (its own transaction, its own answer), then the answers recorded under
/// the batch's key. A retry finds the batch's record, or runs the items
/// again and gets each item's own record.
pub async fn run_each(
    executor: &Executor,
    tenant: Tenant,
    batch: &Request,
    items: Vec<Item>,
    config: &ReservationConfig,
) -> Result<Answer, ApiError> {
    if let Some(answer) = executor.recorded(tenant.into(), batch).await? {
        return Ok(answer);
    }
    let mut results = Vec::with_capacity(items.len());
    for (index, Item { op, request }) in items.into_iter().enumerate() {
        let answer: Result<Answer, ApiError> = with_command!(op, tenant, config, |cmd| executor
            .execute(tenant.into(), &request, cmd)
            .await);
        results.push(match answer {
            Ok(answer) => item_result(index, answer),
            Err(e) => ItemResult {
                index,
                status: e.status().as_u16(),
                body: serde_json::to_value(e.problem()).unwrap_or(Value::Null),
                replayed: false,
            },
        });
    }
    let result = BatchResult {
        id: Uuid::now_v7(),
        atomic: false,
        items: results,
    };
    executor
        .execute::<_, ApiError>(tenant.into(), batch, Record(result))
        .await
}
