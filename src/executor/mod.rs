//! The idempotent executor: the application's unit of work, and the only
//! way a mutation reaches a use case. In one database transaction it claims
//! the idempotency key, runs the command, stores the outcome with the audit
//! row and commits. HTTP routes, the webhook worker (provider event id as the
//! key) and batches (one key per item) all call it; none of this is HTTP.

mod answered;
mod in_flight;

use std::{future::Future, sync::Arc, time::Duration};

use serde::Serialize;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::{
    audit,
    idempotency::{self, ClaimParams, Completion, Fingerprint, IdempotencyKey, Recorded, Stored},
    store::{self, StoreError},
    tenants::Tenant,
};
use answered::Answered;
use in_flight::InFlight;

pub const JSON: &str = "application/json";

/// Who acts: a shop's API key, or the platform (admin).
#[derive(Debug, Clone, Copy)]
pub struct Actor {
    pub shop_id: Uuid,
    pub key_id: Option<Uuid>,
}

/// The namespace of platform scopes (`Actor::platform`).
const PLATFORM_SCOPES: Uuid = Uuid::from_u128(0x6b1c_4a5e_0d2f_4c7b_9e1a_70c3_5f28_d914);

impl Actor {
    /// The platform (admin) acting under `key`: its records (the key's row
    /// and the audit rows) are kept under a scope made from the key, a
    /// version-5 UUID that is never a shop's id (shops' are version 7). One
    /// scope per key, so on Citus platform records spread over the shards
    /// instead of piling onto one; a retry of the key finds its scope again.
    pub fn platform(key: &IdempotencyKey) -> Actor {
        Actor {
            shop_id: Uuid::new_v5(&PLATFORM_SCOPES, key.as_str().as_bytes()),
            key_id: None,
        }
    }
}

impl From<Tenant> for Actor {
    fn from(t: Tenant) -> Self {
        Actor {
            shop_id: t.shop_id,
            key_id: Some(t.key_id),
        }
    }
}

/// One request under its idempotency key.
#[derive(Debug, Clone)]
pub struct Request {
    pub key: IdempotencyKey,
    /// What "the same request" means for this key.
    pub fingerprint: Fingerprint,
    /// Recorded in the audit row.
    pub request_id: String,
}

/// What a successful command answers with and records.
pub trait Outcome: Serialize {
    /// Audited entity type, e.g. `wallet`.
    const ENTITY: &'static str;
    fn entity_id(&self) -> Uuid;
    /// Where a created resource lives.
    fn location(&self) -> Option<String> {
        None
    }
    /// The version a conditional request would name.
    fn etag(&self) -> Option<String> {
        None
    }
    /// The body to keep for replays when it must differ from the live one
    /// (a secret is shown once).
    fn for_storage(&self) -> Option<Vec<u8>> {
        None
    }
    /// This outcome's status when it differs from the command's (200 for
    /// an existing object a create found instead of making a second one).
    fn status(&self) -> Option<u16> {
        None
    }
    /// What the audit row records beyond who did what to which entity.
    fn audit_detail(&self) -> Option<serde_json::Value> {
        None
    }
    /// What orders this outcome's event among an endpoint's deliveries:
    /// the wallet it moved, else its own object (docs/events.md).
    fn event_key(&self) -> Uuid {
        self.entity_id()
    }
}

/// The strong `ETag` of an object at `version` (what `If-Match` names).
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// How a use case took effect.
#[derive(Debug)]
pub enum Run<T> {
    /// Now, by this request.
    New(T),
    /// Before, under the same key (its idempotency record had expired): the
    /// earlier effect is the answer, marked replayed and not audited again.
    Earlier(T),
}

impl<T> Run<T> {
    pub fn value(&self) -> &T {
        match self {
            Run::New(v) | Run::Earlier(v) => v,
        }
    }
}

/// Proof that the request's key is this transaction's: the executor hands
/// it to a command whose `Key` is `Claimed`; a lean command gets it from
/// its claiming statement (`Unit::claimed`). Only the executor makes one,
/// and answering consumes it, so a command answers at most once and never
/// without its key.
#[derive(Debug)]
pub struct Claimed(());

/// The key is not claimed yet: the command's first statement claims it
/// (`Unit::claim`).
#[derive(Debug)]
pub struct Unclaimed(());

/// A claiming statement handed out by `Unit::claim`, its result not known.
#[derive(Debug)]
#[must_use = "report the claiming statement's result with Unit::claimed"]
pub struct Claiming(());

/// The claiming statement found the key taken by another request, whose
/// recorded outcome is the answer.
#[derive(Debug)]
pub struct Taken(());

/// How the key is held when a command starts: `Claimed` (the executor
/// claims it in a statement of its own first) or `Unclaimed` (the lean
/// shape: the command's first statement claims it).
pub trait KeyState: Send + sealed::Sealed {
    #[doc(hidden)]
    const CLAIMED_BY_EXECUTOR: bool;
    #[doc(hidden)]
    fn token() -> Self;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Claimed {}
    impl Sealed for super::Unclaimed {}
}

impl KeyState for Claimed {
    const CLAIMED_BY_EXECUTOR: bool = true;
    fn token() -> Self {
        Claimed(())
    }
}

impl KeyState for Unclaimed {
    const CLAIMED_BY_EXECUTOR: bool = false;
    fn token() -> Self {
        Unclaimed(())
    }
}

/// A command's answer, made only from a key token: `Claimed::answer` or
/// `Claimed::earlier` (the executor stores the outcome), `Unit::complete`
/// (the command's write stored it), or `Taken::replay`.
#[derive(Debug)]
#[must_use]
pub struct Ran<T>(Ended<T>);

#[derive(Debug)]
enum Ended<T> {
    New(T),
    Earlier(T),
    /// New, and already stored with its audit row by the command's write.
    Stored(T, Result<Done, serde_json::Error>),
    Taken,
}

impl<T> Ran<T> {
    /// The outcome when this request made it.
    pub fn fresh(&self) -> Option<&T> {
        match &self.0 {
            Ended::New(v) | Ended::Stored(v, _) => Some(v),
            Ended::Earlier(_) | Ended::Taken => None,
        }
    }
}

impl Claimed {
    pub fn answer<T>(self, value: T) -> Ran<T> {
        Ran(Ended::New(value))
    }

    pub fn earlier<T>(self, value: T) -> Ran<T> {
        Ran(Ended::Earlier(value))
    }

    /// A use case's result as the answer.
    pub fn ran<T>(self, run: Run<T>) -> Ran<T> {
        match run {
            Run::New(v) => self.answer(v),
            Run::Earlier(v) => self.earlier(v),
        }
    }
}

impl Taken {
    /// The answer is the key's recorded outcome.
    pub fn replay<T>(self) -> Ran<T> {
        Ran(Ended::Taken)
    }
}

/// A use case run exactly once per (shop, idempotency key). It runs in the
/// executor's transaction (through its `Unit`) and never commits it.
///
/// Misusing the key does not compile. A command cannot answer without
/// its key token, nor make one:
///
/// ```compile_fail,E0423
/// use billing_ledger::executor::Claimed;
/// let forged = Claimed(());
/// ```
///
/// it answers once, the token consumed:
///
/// ```compile_fail,E0382
/// use billing_ledger::executor::{Claimed, Ran};
/// fn twice(key: Claimed) -> (Ran<u8>, Ran<u8>) {
///     (key.answer(1), key.answer(2))
/// }
/// ```
///
/// and the lean shape stores its outcome only with the key its claiming
/// statement got, never the unclaimed one:
///
/// ```compile_fail,E0308
/// use billing_ledger::{executor::{Ran, Unclaimed, Unit}, wallets::Wallet};
/// fn complete_unclaimed(unit: &mut Unit<'_>, key: Unclaimed, value: Wallet) -> Ran<Wallet> {
///     let (_conn, _done, ran) = unit.complete(key, value);
///     ran
/// }
/// ```
///
/// The plain shape (`Key = Claimed`): the executor claims the key, the
/// command runs its statements on `unit.conn()` and answers with
/// `key.answer(..)`; the executor stores the outcome. The lean shape
/// (`Key = Unclaimed`) saves two round trips: the command's first statement
/// claims the key (`unit.claim(key)` with `query_claiming!`, then
/// `unit.claimed(..)`), and its last write stores the outcome and the audit
/// row (`unit.complete(key, outcome)` with `query_completing!`, the answer
/// built before the write).
pub trait Command: Send {
    /// Audit action, e.g. `wallet.debit`.
    const ACTION: &'static str;
    /// Status of a fresh success: 201 for a created object.
    const STATUS: u16 = 201;
    type Key: KeyState;
    type Output: Outcome + Send;
    type Error: Refusal + Send;

    fn run(
        self,
        unit: &mut Unit<'_>,
        key: Self::Key,
    ) -> impl Future<Output = Result<Ran<Self::Output>, Self::Error>> + Send;
}

/// A command's `impl`, for a command whose use case is one call:
/// `command!(Create: "invoice.create" => Invoice, InvoiceError, |c, conn| …)`
/// in the plain shape (the executor claims the key; the use case's value,
/// from the expression's future, is the answer); with `keyed` before the
/// output and `|c, unit, key|` for a plain-shape use case that takes the
/// key on (to lock wallets under it) and hands it back with its `Run`; or
/// with `lean` and `|c, unit, key|` for one that claims its key itself (the
/// expression's future answers `Ran`). `status 200` after the action sets
/// the status of a fresh success (default 201).
macro_rules! command {
    ($name:ident: $action:literal $(, status $status:literal)? => $output:ty, $error:ty,
     |$this:ident, $conn:ident| $body:expr) => {
        impl $crate::executor::Command for $name {
            const ACTION: &'static str = $action;
            $(const STATUS: u16 = $status;)?
            type Key = $crate::executor::Claimed;
            type Output = $output;
            type Error = $error;
            async fn run(
                self,
                unit: &mut $crate::executor::Unit<'_>,
                key: $crate::executor::Claimed,
            ) -> Result<$crate::executor::Ran<$output>, $error> {
                let $this = self;
                let $conn = unit.conn();
                Ok(key.answer($body.await?))
            }
        }
    };
    ($name:ident: $action:literal $(, status $status:literal)? => keyed $output:ty, $error:ty,
     |$this:ident, $unit:ident, $key:ident| $body:expr) => {
        impl $crate::executor::Command for $name {
            const ACTION: &'static str = $action;
            $(const STATUS: u16 = $status;)?
            type Key = $crate::executor::Claimed;
            type Output = $output;
            type Error = $error;
            async fn run(
                self,
                $unit: &mut $crate::executor::Unit<'_>,
                $key: $crate::executor::Claimed,
            ) -> Result<$crate::executor::Ran<$output>, $error> {
                let $this = self;
                let (key, run) = $body.await?;
                Ok(key.ran(run))
            }
        }
    };
    ($name:ident: $action:literal $(, status $status:literal)? => lean $output:ty, $error:ty,
     |$this:ident, $unit:ident, $key:ident| $body:expr) => {
        impl $crate::executor::Command for $name {
            const ACTION: &'static str = $action;
            $(const STATUS: u16 = $status;)?
            type Key = $crate::executor::Unclaimed;
            type Output = $output;
            type Error = $error;
            async fn run(
                self,
                $unit: &mut $crate::executor::Unit<'_>,
                $key: $crate::executor::Unclaimed,
            ) -> Result<$crate::executor::Ran<$output>, $error> {
                let $this = self;
                $body.await
            }
        }
    };
}
pub(crate) use command;

/// What a command's refusal means for its key; each domain error says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Invalid input or a failure: nothing is stored, and a corrected or
    /// later retry with the same key runs afresh.
    Failed,
    /// A business refusal (insufficient funds, not found, a state that does
    /// not allow it): the key's outcome, replayed to every retry.
    Refused,
    /// A refusal whose changes stand (a capture after expiry refuses and
    /// releases the stale hold): the transaction commits with the refusal
    /// as the key's outcome.
    RefusedCommitting,
}

/// A domain error as the executor sees it.
pub trait Refusal {
    fn verdict(&self) -> Verdict;
    /// The storage failure behind it, if any.
    fn store_error(&self) -> Option<&StoreError> {
        None
    }
}

impl Refusal for StoreError {
    fn verdict(&self) -> Verdict {
        Verdict::Failed
    }
    fn store_error(&self) -> Option<&StoreError> {
        Some(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyHeld {
    /// Not asked yet.
    No,
    /// The claiming statement was handed out; its result is not known.
    Asked,
    Ours,
    Taken,
}

/// A success as stored under the key.
#[derive(Debug)]
struct Done {
    stored: Stored,
    /// The live body when it differs from the stored one.
    live: Option<Vec<u8>>,
}

impl Done {
    /// Encodes `value` once: the stored body is the live one unless the
    /// outcome keeps something out of storage (a secret shown once).
    fn new<O: Outcome>(status: u16, value: &O) -> Result<Done, serde_json::Error> {
        let status = value.status().unwrap_or(status);
        let body = serde_json::to_vec(value)?;
        let (body, live) = match value.for_storage() {
            Some(stored) => (stored, Some(body)),
            None => (body, None),
        };
        Ok(Done {
            stored: Stored {
                status,
                content_type: JSON.into(),
                location: value.location(),
                etag: value.etag(),
                body,
            },
            live,
        })
    }

    fn answer(self, replayed: bool) -> Answer {
        let Done { stored, live } = self;
        let response = match live {
            Some(body) => Stored { body, ..stored },
            None => stored,
        };
        Answer { response, replayed }
    }
}

/// The event a fresh success writes (`events::type_of` its action), its
/// data the stored answer; none for a create that found its object, which
/// changed nothing.
fn events_of<O: Outcome>(action: &'static str, value: &O, stored: &Stored) -> Vec<crate::events::Event> {
    if value.status().is_some() {
        return Vec::new();
    }
    crate::events::Event::of(action, value.event_key(), &stored.body)
        .into_iter()
        .collect()
}

fn audit_entry<'a, O: Outcome>(
    actor: Actor,
    action: &'static str,
    value: &O,
    request: &'a Request,
) -> audit::Entry<'a> {
    audit::Entry {
        shop_id: actor.shop_id,
        api_key_id: actor.key_id,
        action,
        entity: O::ENTITY,
        entity_id: value.entity_id(),
        request_id: &request.request_id,
        detail: value.audit_detail(),
    }
}

/// What a claiming statement binds for this request's key.
fn claim_params(actor: Actor, request: &Request, ttl_hours: u32) -> ClaimParams<'_> {
    ClaimParams {
        shop_id: actor.shop_id,
        key: request.key.as_str(),
        fingerprint: request.fingerprint.as_slice(),
        ttl_hours: ttl_hours as i32,
    }
}

/// One command's view of the executor's transaction.
pub struct Unit<'a> {
    conn: &'a mut PgConnection,
    actor: Actor,
    request: &'a Request,
    ttl_hours: u32,
    action: &'static str,
    status: u16,
    /// For the error paths, which have no token to show.
    held: KeyHeld,
}

impl<'a> Unit<'a> {
    /// `C`'s view of a transaction, its key not held yet.
    fn of<C: Command>(
        conn: &'a mut PgConnection,
        actor: Actor,
        request: &'a Request,
        ttl_hours: u32,
    ) -> Self {
        Unit {
            conn,
            actor,
            request,
            ttl_hours,
            action: C::ACTION,
            status: C::STATUS,
            held: KeyHeld::No,
        }
    }

    pub fn conn(&mut self) -> &mut PgConnection {
        self.conn
    }

    pub fn key(&self) -> &'a str {
        self.request.key.as_str()
    }

    /// The request id, for audit rows a command writes itself.
    pub fn request_id(&self) -> &'a str {
        &self.request.request_id
    }

    /// The connection and the parameters of a claiming statement
    /// (`query_claiming!`). Report its result with `claimed`.
    pub fn claim(&mut self, _key: Unclaimed) -> (&mut PgConnection, ClaimParams<'a>, Claiming) {
        self.held = KeyHeld::Asked;
        let params = self.claim_params();
        (self.conn, params, Claiming(()))
    }

    fn claim_params(&self) -> ClaimParams<'a> {
        claim_params(self.actor, self.request, self.ttl_hours)
    }

    /// The parameters of a claiming statement for a key this transaction
    /// already holds: it finds the transaction's own row and changes
    /// nothing (for a statement shared with the lean shape).
    pub fn held(&self, _key: &Claimed) -> ClaimParams<'a> {
        self.claim_params()
    }

    /// Whether the claiming statement got the key (its `ours`). When it
    /// did not, the command answers `Taken::replay` at once.
    pub fn claimed(&mut self, _claiming: Claiming, ours: bool) -> Result<Claimed, Taken> {
        if ours {
            self.held = KeyHeld::Ours;
            Ok(Claimed(()))
        } else {
            self.held = KeyHeld::Taken;
            Err(Taken(()))
        }
    }

    /// How long a key's outcome is kept (IDEMPOTENCY_TTL_HOURS).
    pub fn ttl_hours(&self) -> u32 {
        self.ttl_hours
    }

    /// Adds to `done` what `C`'s single request `request` stores on
    /// success with `value` (its answer under its own key, its audit row,
    /// its events), for a batch's item whose key the batch's statement
    /// writes with its answer; returns that answer.
    pub fn complete_item<'r, C: Command>(
        &self,
        done: &mut Completion<'r>,
        request: &'r Request,
        value: &C::Output,
    ) -> Result<Answer, ExecError> {
        let d = Done::new(C::STATUS, value)?;
        let audit = audit_entry(self.actor, C::ACTION, value, request);
        done.add(
            request.key.as_str(),
            d.stored.clone(),
            &audit,
            events_of(C::ACTION, value, &d.stored),
        );
        Ok(d.answer(false))
    }

    /// The connection and the parameters of the write that stores `value`
    /// as the key's outcome with its audit row (`query_completing!`), and
    /// the answer, to return once that write succeeded.
    pub fn complete<O: Outcome>(
        &mut self,
        _key: Claimed,
        value: O,
    ) -> (&mut PgConnection, Completion<'a>, Ran<O>) {
        let shop_id = self.actor.shop_id;
        let key = self.request.key.as_str();
        let done = Done::new(self.status, &value);
        // An outcome that cannot be encoded stores nothing here; the
        // executor then fails the request and rolls the write back.
        let completion = match &done {
            Ok(done) => {
                let audit = audit_entry(self.actor, self.action, &value, self.request);
                Completion::new(shop_id, key, Some(&done.stored), Some(&audit)).with_events(events_of(
                    self.action,
                    &value,
                    &done.stored,
                ))
            }
            Err(_) => Completion::none(shop_id),
        };
        (self.conn, completion, Ran(Ended::Stored(value, done)))
    }
}

/// Failures of the executor itself.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("the idempotency key was used with a different request")]
    KeyReused,
    #[error("a request with this idempotency key is still in progress")]
    KeyInUse,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("could not encode the outcome: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The caller's error type: what a command's error becomes.
pub trait Rejection: From<ExecError> + Send {
    /// How a refusal the domain calls the key's outcome is stored; `None`
    /// for a caller that stores only successes (the webhook worker).
    fn stored(&self) -> Option<Stored>;
}

/// How a background job's command (the webhook worker's, the billing
/// job's) ended short of success. Nothing but a success is stored under
/// the job's key, so a retry after a fix runs afresh.
#[derive(Debug)]
pub enum JobFailure {
    /// Not an attempt: another worker has it (its key, or its row).
    Skip,
    /// An attempt that failed, with why.
    Failed(String),
}

impl From<ExecError> for JobFailure {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::KeyInUse => JobFailure::Skip,
            other => JobFailure::Failed(other.to_string()),
        }
    }
}

impl Rejection for JobFailure {
    fn stored(&self) -> Option<Stored> {
        None
    }
}

/// An outcome as stored under the key; `replayed` when it is not this
/// request's own doing.
#[derive(Debug)]
pub struct Answer {
    pub response: Stored,
    pub replayed: bool,
}

#[derive(Clone)]
pub struct Executor {
    pool: PgPool,
    ttl_hours: u32,
    /// How long a duplicate waits for its key's running request.
    wait: Duration,
    in_flight: Arc<InFlight>,
    answered: Arc<Answered>,
    /// Whether the database is a Citus coordinator, asked once.
    citus: Arc<tokio::sync::OnceCell<bool>>,
}

fn outcome_metric(outcome: &'static str) {
    metrics::counter!("idempotency_requests_total", "outcome" => outcome).increment(1);
}

impl Executor {
    pub fn new(pool: PgPool, ttl_hours: u32, wait: Duration, max_waiters: usize) -> Self {
        Executor {
            pool,
            ttl_hours,
            wait,
            in_flight: Arc::new(InFlight::new(max_waiters)),
            answered: Arc::new(Answered::default()),
            citus: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// A unit of work's transaction. On Citus a request's locks are taken
    /// on a worker, where the coordinator session's `lock_timeout` does not
    /// reach: there the transaction sets it locally (the same wait as
    /// LOCK_TIMEOUT, which `wait` is) and has Citus pass every `SET LOCAL`
    /// on to the workers it touches, so a held row still answers within
    /// LOCK_TIMEOUT (docs/scale-out.md). The settings are their own query
    /// (one more round trip, on Citus only): Citus repeats a `SET`'s whole
    /// query text on the workers, which must not include the `BEGIN`.
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let citus = self
            .citus
            .get_or_try_init(|| async {
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
                    .fetch_one(&self.pool)
                    .await
            })
            .await?;
        if !*citus {
            return crate::store::begin(&self.pool).await;
        }
        let mut tx = crate::store::begin(&self.pool).await?;
        let settings = format!(
            "SET LOCAL citus.propagate_set_commands = 'local'; SET LOCAL lock_timeout = '{}ms'",
            self.wait.as_millis()
        );
        sqlx::Executor::execute(&mut *tx, settings.as_str()).await?;
        Ok(tx)
    }

    /// Runs `command` under the request's key, or answers what the key
    /// already recorded. A retry of a key this instance answered reads its
    /// record first, in one statement (`Answered`): a retry costs a
    /// quarter of the round trips, and nothing it reads can be stale
    /// (what is stored under a live key never changes).
    pub async fn execute<C, R>(&self, actor: Actor, request: &Request, command: C) -> Result<Answer, R>
    where
        C: Command,
        C::Error: Into<R>,
        R: Rejection,
    {
        if self.answered.knows(actor.shop_id, request) {
            let params = self.claim_params(actor, request);
            if let Some(response) = idempotency::live_outcome(&self.pool, params)
                .await
                .map_err(ExecError::from)?
            {
                outcome_metric("replayed");
                return Ok(Answer {
                    response,
                    replayed: true,
                });
            }
        }
        let answer = self.run(actor, request, command).await?;
        // Every answer is the key's committed outcome (a failure is an
        // error and rolled back).
        self.answered.remember(actor.shop_id, request);
        Ok(answer)
    }

    async fn run<C, R>(&self, actor: Actor, request: &Request, command: C) -> Result<Answer, R>
    where
        C: Command,
        C::Error: Into<R>,
        R: Rejection,
    {
        let Some(_turn) = self
            .in_flight
            .turn(actor.shop_id, request.key.as_str(), self.wait)
            .await
        else {
            outcome_metric("in_use");
            return Err(ExecError::KeyInUse.into());
        };
        let mut tx = self.begin().await.map_err(ExecError::from)?;
        let mut unit = Unit::of::<C>(&mut tx, actor, request, self.ttl_hours);
        if C::Key::CLAIMED_BY_EXECUTOR {
            let params = unit.claim_params();
            if let Some(answer) = claim(unit.conn, params).await? {
                tx.rollback().await.map_err(ExecError::from)?;
                return Ok(answer);
            }
            unit.held = KeyHeld::Ours;
        }
        let result = command.run(&mut unit, C::Key::token()).await;
        let held = unit.held;
        let refusal = match result {
            Ok(Ran(Ended::Taken)) => {
                let recorded = idempotency::recorded(&mut tx, self.claim_params(actor, request)).await;
                let answer = replay(recorded);
                tx.rollback().await.map_err(ExecError::from)?;
                return answer.map_err(R::from);
            }
            Ok(Ran(Ended::Stored(_, done))) => {
                outcome_metric("new");
                let done = done.map_err(ExecError::from)?;
                tx.commit().await.map_err(ExecError::from)?;
                return Ok(done.answer(false));
            }
            Ok(Ran(Ended::New(value))) => {
                outcome_metric("new");
                return self.finish::<C, R>(tx, actor, request, value, false).await;
            }
            Ok(Ran(Ended::Earlier(value))) => {
                outcome_metric("new");
                return self.finish::<C, R>(tx, actor, request, value, true).await;
            }
            Err(e) => e,
        };
        let verdict = refusal.verdict();
        let lock_timed_out = refusal.store_error().is_some_and(StoreError::is_lock_timeout);
        let rejection: R = refusal.into();
        let stored = match verdict {
            Verdict::Failed => None,
            Verdict::Refused | Verdict::RefusedCommitting => rejection.stored(),
        };
        if held == KeyHeld::Ours {
            outcome_metric("new");
            if verdict == Verdict::RefusedCommitting
                && let Some(response) = stored.clone()
            {
                let completion = Completion::new(actor.shop_id, request.key.as_str(), Some(&response), None);
                idempotency::complete(&mut tx, completion)
                    .await
                    .map_err(ExecError::from)?;
                tx.commit().await.map_err(ExecError::from)?;
                return Ok(Answer {
                    response,
                    replayed: false,
                });
            }
        }
        // A failure undoes the whole transaction, key included, so the retry
        // runs afresh. A business rejection is the key's outcome, stored in a
        // second transaction: rolling back instead of guarding every command
        // with a savepoint keeps two round trips off each success.
        tx.rollback().await.map_err(ExecError::from)?;
        if held == KeyHeld::Asked && lock_timed_out {
            // The claiming statement also waited on the domain's locks: ask
            // the key alone whether it was the one held.
            return self.probe(actor, request, rejection).await;
        }
        let Some(response) = stored else {
            return Err(rejection);
        };
        let mut tx = self.begin().await.map_err(ExecError::from)?;
        // Meanwhile another instance may have claimed the key and committed
        // its own outcome: then that one is the key's outcome.
        if let Some(answer) = claim(&mut tx, self.claim_params(actor, request)).await? {
            tx.rollback().await.map_err(ExecError::from)?;
            return Ok(answer);
        }
        idempotency::complete(
            &mut tx,
            Completion::new(actor.shop_id, request.key.as_str(), Some(&response), None),
        )
        .await
        .map_err(ExecError::from)?;
        tx.commit().await.map_err(ExecError::from)?;
        Ok(Answer {
            response,
            replayed: false,
        })
    }

    /// The recorded answer of `request`'s key, read without claiming it:
    /// `None` while nothing is committed under it.
    pub async fn recorded(&self, actor: Actor, request: &Request) -> Result<Option<Answer>, ExecError> {
        let mut conn = self.pool.acquire().await?;
        match idempotency::recorded(&mut conn, self.claim_params(actor, request)).await {
            Ok(Recorded::Gone) => Ok(None),
            recorded => replay(recorded).map(Some),
        }
    }

    fn claim_params<'a>(&self, actor: Actor, request: &'a Request) -> ClaimParams<'a> {
        claim_params(actor, request, self.ttl_hours)
    }

    /// After a lock timeout in a claiming statement: a duplicate in another
    /// instance holding the key is a 409 (or, committed by now, the answer);
    /// otherwise the domain's lock timed out and the rejection stands.
    async fn probe<R: Rejection>(&self, actor: Actor, request: &Request, rejection: R) -> Result<Answer, R> {
        let mut tx = self.begin().await.map_err(ExecError::from)?;
        sqlx::query("SET LOCAL lock_timeout = '50ms'")
            .execute(&mut *tx)
            .await
            .map_err(ExecError::from)?;
        let answer = claim(&mut tx, self.claim_params(actor, request)).await;
        tx.rollback().await.map_err(ExecError::from)?;
        match answer? {
            Some(answer) => Ok(answer),
            None => Err(rejection),
        }
    }

    /// Stores a success (audited unless it happened earlier) and commits.
    async fn finish<C: Command, R: Rejection>(
        &self,
        mut tx: Transaction<'static, Postgres>,
        actor: Actor,
        request: &Request,
        value: C::Output,
        earlier: bool,
    ) -> Result<Answer, R> {
        let answer = store_outcome(&mut tx, actor, request, C::ACTION, C::STATUS, &value, earlier).await?;
        tx.commit().await.map_err(ExecError::from)?;
        Ok(answer)
    }
}

/// Claims the key in a statement of its own. `Some` is the answer when the
/// key is not ours: the replay of its committed outcome.
async fn claim(conn: &mut PgConnection, params: ClaimParams<'_>) -> Result<Option<Answer>, ExecError> {
    match idempotency::claim(conn, params).await {
        Ok(None) => Ok(None),
        Ok(Some(recorded)) => replay(Ok(recorded)).map(Some),
        Err(e) => replay(Err(e)).map(Some),
    }
}

/// The answer of a key another request claimed.
fn replay(recorded: Result<Recorded, sqlx::Error>) -> Result<Answer, ExecError> {
    match recorded {
        Ok(Recorded::Replay(response)) => {
            outcome_metric("replayed");
            Ok(Answer {
                response,
                replayed: true,
            })
        }
        Ok(Recorded::Mismatch) => {
            outcome_metric("reused_mismatch");
            Err(ExecError::KeyReused)
        }
        // Another instance's request still holds it.
        Err(e) if store::has_code(&e, store::sqlstate::LOCK_NOT_AVAILABLE) => {
            outcome_metric("in_use");
            Err(ExecError::KeyInUse)
        }
        Ok(Recorded::Gone) => {
            outcome_metric("in_use");
            Err(ExecError::KeyInUse)
        }
        Err(e) => Err(ExecError::Db(e)),
    }
}

/// Stores a success under its key, with its audit row and events unless it
/// happened earlier (then it is the replayed answer), in the caller's
/// transaction.
async fn store_outcome<O: Outcome>(
    conn: &mut PgConnection,
    actor: Actor,
    request: &Request,
    action: &'static str,
    status: u16,
    value: &O,
    earlier: bool,
) -> Result<Answer, ExecError> {
    let done = Done::new(status, value)?;
    let audit = audit_entry(actor, action, value, request);
    let audit = (!earlier).then_some(&audit);
    let events = if earlier {
        Vec::new()
    } else {
        events_of(action, value, &done.stored)
    };
    let completion =
        Completion::new(actor.shop_id, request.key.as_str(), Some(&done.stored), audit).with_events(events);
    idempotency::complete(conn, completion).await?;
    Ok(done.answer(earlier))
}

/// How a command run inside another command's transaction ended (a batch
/// item, `Unit::nested`).
#[derive(Debug)]
pub enum Nested<E> {
    /// The key's answer: this run's stored outcome, or the recorded one of
    /// an earlier request with the same key (`replayed`).
    Answered(Answer),
    /// The command refused. Nothing of it is stored: the caller refuses
    /// its whole transaction.
    Refused(E),
    /// The key was used with another request, or a request still running
    /// holds it, or the database failed.
    Key(ExecError),
}

impl Unit<'_> {
    /// Runs `command` under its own request's key inside this unit's
    /// transaction, exactly as `Executor::execute` runs it in one of its
    /// own: the key claimed (or its recorded answer replayed), the command
    /// run, its outcome stored with its audit row and events. It commits
    /// nothing and stores no refusal: the caller decides for the whole
    /// transaction.
    pub async fn nested<C: Command>(&mut self, request: &Request, command: C) -> Nested<C::Error> {
        let actor = self.actor;
        let mut unit = Unit::of::<C>(&mut *self.conn, actor, request, self.ttl_hours);
        if C::Key::CLAIMED_BY_EXECUTOR {
            let params = unit.claim_params();
            match claim(unit.conn, params).await {
                Ok(None) => unit.held = KeyHeld::Ours,
                Ok(Some(answer)) => return Nested::Answered(answer),
                Err(e) => return Nested::Key(e),
            }
        }
        let ran = match command.run(&mut unit, C::Key::token()).await {
            Ok(Ran(ran)) => ran,
            Err(e) => return Nested::Refused(e),
        };
        let conn = unit.conn;
        nested_answer(match ran {
            Ended::Taken => {
                let params = claim_params(actor, request, self.ttl_hours);
                replay(idempotency::recorded(conn, params).await)
            }
            Ended::Stored(_, done) => done.map(|d| d.answer(false)).map_err(ExecError::from),
            Ended::New(value) => {
                store_outcome(conn, actor, request, C::ACTION, C::STATUS, &value, false).await
            }
            Ended::Earlier(value) => {
                store_outcome(conn, actor, request, C::ACTION, C::STATUS, &value, true).await
            }
        })
    }
}

fn nested_answer<E>(answer: Result<Answer, ExecError>) -> Nested<E> {
    match answer {
        Ok(answer) => Nested::Answered(answer),
        Err(e) => Nested::Key(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_key_has_its_own_scope_never_a_shops() {
        let key = |k: &str| IdempotencyKey::parse(k.as_bytes()).unwrap();
        let a = Actor::platform(&key("create-shop-1")).shop_id;
        assert_eq!(
            a,
            Actor::platform(&key("create-shop-1")).shop_id,
            "a retry finds its scope"
        );
        assert_ne!(a, Actor::platform(&key("create-shop-2")).shop_id, "keys spread");
        assert_eq!(a.get_version_num(), 5, "shops' ids are version 7");
    }
}
