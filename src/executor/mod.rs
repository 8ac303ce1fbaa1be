//! The idempotent executor: the application's unit of work, and the only
//! way a mutation reaches a use case. In one database transaction it claims
//! the idempotency key, runs the command, stores the outcome with the audit
//! row and commits. HTTP routes, the webhook worker (provider event id as the
//! key) and batches (one key per item) all call it; none of this is HTTP.

mod in_flight;

use std::{future::Future, sync::Arc, time::Duration};

use serde::Serialize;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::{
    audit,
    idempotency::{self, Claim, Fingerprint, IdempotencyKey, Stored},
    tenants::Tenant,
};
use in_flight::InFlight;

pub const JSON: &str = "application/json";

/// Who acts: a shop's API key, or the platform (admin), whose records are
/// kept under the nil shop id.
#[derive(Debug, Clone, Copy)]
pub struct Actor {
    pub shop_id: Uuid,
    pub key_id: Option<Uuid>,
}

impl Actor {
    pub const PLATFORM: Actor = Actor {
        shop_id: Uuid::nil(),
        key_id: None,
    };
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
}

/// How a command took effect.
#[derive(Debug)]
pub enum Run<T> {
    /// Now, by this request.
    New(T),
    /// Before, under the same key (its idempotency record had expired): the
    /// earlier effect is the answer, marked replayed and not audited again.
    Earlier(T),
}

/// A use case run exactly once per (shop, idempotency key). It gets the
/// transaction the executor opened and never commits it.
pub trait Command: Send {
    /// Audit action, e.g. `wallet.debit`.
    const ACTION: &'static str;
    /// Status of a fresh success: 201 for a created object.
    const STATUS: u16 = 201;
    type Output: Outcome + Send;
    type Error: Send;

    fn run(
        self,
        conn: &mut PgConnection,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<Run<Self::Output>, Self::Error>> + Send;
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

/// The caller's error type: what a command's error becomes, and whether it
/// is the key's outcome.
pub trait Rejection: From<ExecError> + Send {
    /// The answer recorded under the key for a business rejection (e.g.
    /// insufficient funds). `None` when the request was invalid or failed:
    /// nothing is stored and a corrected retry with the same key runs afresh.
    fn recorded(&self) -> Option<Stored>;
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
        }
    }

    pub async fn execute<C, R>(&self, actor: Actor, request: &Request, command: C) -> Result<Answer, R>
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
        let mut tx = self.pool.begin().await.map_err(ExecError::from)?;
        if let Some(answer) = self.claim(&mut tx, actor, request).await? {
            tx.rollback().await.map_err(ExecError::from)?;
            return Ok(answer);
        }
        outcome_metric("new");
        let rejection: R = match command.run(&mut tx, &request.key).await {
            Ok(run) => return self.finish::<C, R>(tx, actor, request, run).await,
            Err(e) => e.into(),
        };
        // A failure undoes the whole transaction, key included, so the retry
        // runs afresh. A business rejection is the key's outcome, stored in a
        // second transaction: rolling back instead of guarding every command
        // with a savepoint keeps two round trips off each success.
        tx.rollback().await.map_err(ExecError::from)?;
        let Some(response) = rejection.recorded() else {
            return Err(rejection);
        };
        let mut tx = self.pool.begin().await.map_err(ExecError::from)?;
        // Meanwhile another instance may have claimed the key and committed
        // its own outcome: then that one is the key's outcome.
        if let Some(answer) = self.claim(&mut tx, actor, request).await? {
            tx.rollback().await.map_err(ExecError::from)?;
            return Ok(answer);
        }
        idempotency::complete(&mut tx, actor.shop_id, &request.key, &response, None)
            .await
            .map_err(ExecError::from)?;
        tx.commit().await.map_err(ExecError::from)?;
        Ok(Answer {
            response,
            replayed: false,
        })
    }

    /// Stores a success (audited unless it happened earlier) and commits.
    async fn finish<C: Command, R: Rejection>(
        &self,
        mut tx: Transaction<'static, Postgres>,
        actor: Actor,
        request: &Request,
        run: Run<C::Output>,
    ) -> Result<Answer, R> {
        let (value, earlier) = match run {
            Run::New(v) => (v, false),
            Run::Earlier(v) => (v, true),
        };
        let body = serde_json::to_vec(&value).map_err(ExecError::from)?;
        let stored = Stored {
            status: C::STATUS,
            content_type: JSON.into(),
            location: value.location(),
            etag: value.etag(),
            body: value.for_storage().unwrap_or_else(|| body.clone()),
        };
        let audit = audit::Entry {
            shop_id: actor.shop_id,
            api_key_id: actor.key_id,
            action: C::ACTION,
            entity: C::Output::ENTITY,
            entity_id: value.entity_id(),
            request_id: &request.request_id,
        };
        let audit = (!earlier).then_some(&audit);
        idempotency::complete(&mut tx, actor.shop_id, &request.key, &stored, audit)
            .await
            .map_err(ExecError::from)?;
        tx.commit().await.map_err(ExecError::from)?;
        Ok(Answer {
            response: Stored { body, ..stored },
            replayed: earlier,
        })
    }

    /// Claims the key in `tx`. `Some` is the answer when the key is not
    /// ours: the replay of its committed outcome.
    async fn claim(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        actor: Actor,
        request: &Request,
    ) -> Result<Option<Answer>, ExecError> {
        let claim = idempotency::claim(
            tx,
            actor.shop_id,
            &request.key,
            &request.fingerprint,
            self.ttl_hours,
        )
        .await;
        match claim {
            Ok(Claim::New) => Ok(None),
            Ok(Claim::Replay(response)) => {
                outcome_metric("replayed");
                Ok(Some(Answer {
                    response,
                    replayed: true,
                }))
            }
            Ok(Claim::Mismatch) => {
                outcome_metric("reused_mismatch");
                Err(ExecError::KeyReused)
            }
            // lock_not_available: another instance's request still holds it.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                outcome_metric("in_use");
                Err(ExecError::KeyInUse)
            }
            Err(e) => Err(ExecError::Db(e)),
        }
    }
}
