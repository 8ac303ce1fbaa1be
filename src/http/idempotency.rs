//! The idempotent executor: the only way a mutating route reaches a use
//! case. In one transaction it claims the Idempotency-Key, runs the use case,
//! stores the response with the audit entry and commits.

use axum::{
    body::Bytes,
    extract::{FromRequest, OriginalUri, Request},
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::future::BoxFuture;
use serde::{Serialize, de::DeserializeOwned};
use sqlx::PgConnection;
use uuid::Uuid;
use validator::Validate;

use super::{AppState, error::PROBLEM_JSON, extract::parse_json, request_id};
use crate::{
    audit,
    http::error::ApiError,
    idempotency::{self, Claim, IdempotencyKey, Stored},
    tenants::Tenant,
};

pub const KEY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A mutating request: its Idempotency-Key, its fingerprint and its parsed,
/// validated body. Rejections here (400/422) happen before execution and
/// are never stored.
pub struct Command<T> {
    key: RequestKey,
    input: T,
}

/// The Idempotency-Key and the fingerprint of the request that carried it.
pub struct RequestKey {
    key: IdempotencyKey,
    fingerprint: Vec<u8>,
}

impl RequestKey {
    pub fn as_str(&self) -> &str {
        self.key.as_str()
    }
}

impl<T, S> FromRequest<S> for Command<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let key = match req.headers().get(&KEY_HEADER) {
            None => return Err(ApiError::IdempotencyKeyMissing),
            Some(v) => IdempotencyKey::parse(v.as_bytes()).map_err(ApiError::IdempotencyKeyInvalid)?,
        };
        let method = req.method().as_str().to_owned();
        let path = req
            .extensions()
            .get::<OriginalUri>()
            .map_or_else(|| req.uri().to_string(), |u| u.0.to_string());
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(format!("could not read the request body: {e}"))
            }
        })?;
        let fingerprint = idempotency::fingerprint(&method, &path, &body);
        let input: T = parse_json(&body)?;
        Ok(Command {
            key: RequestKey { key, fingerprint },
            input,
        })
    }
}

/// Who is acting: a shop's key, or the platform admin.
#[derive(Debug, Clone, Copy)]
pub struct Actor {
    scope: Uuid,
    shop_id: Option<Uuid>,
    key_id: Option<Uuid>,
}

impl From<Tenant> for Actor {
    fn from(t: Tenant) -> Self {
        Actor {
            scope: t.shop_id,
            shop_id: Some(t.shop_id),
            key_id: Some(t.key_id),
        }
    }
}

impl Actor {
    pub fn admin() -> Self {
        Actor {
            scope: idempotency::ADMIN_SCOPE,
            shop_id: None,
            key_id: None,
        }
    }
}

/// What a successful mutation answers with, and what it records.
pub trait Outcome: Serialize {
    /// Audited entity type, e.g. `wallet`.
    const ENTITY: &'static str;
    fn entity_id(&self) -> Uuid;
    /// `Location` for a created resource.
    fn location(&self) -> Option<String> {
        None
    }
    /// The body to keep for replays when it must differ from the live one
    /// (secrets are shown once).
    fn for_storage(&self) -> Option<Vec<u8>> {
        None
    }
}

/// A use case run against the request's transaction.
pub type UseCase<'c, T, E> = BoxFuture<'c, Result<T, E>>;

fn outcome_metric(outcome: &'static str) {
    metrics::counter!("idempotency_requests_total", "outcome" => outcome).increment(1);
}

impl AppState {
    /// Runs `use_case` exactly once per (actor, key). `action` names it in the
    /// audit log (e.g. `wallet.debit`); `success` is its HTTP status.
    pub async fn execute<T, E, F>(
        &self,
        actor: impl Into<Actor>,
        request: &RequestKey,
        action: &'static str,
        success: StatusCode,
        use_case: F,
    ) -> Result<Response, ApiError>
    where
        T: Outcome,
        E: Into<ApiError>,
        F: for<'c> FnOnce(&'c mut PgConnection) -> UseCase<'c, T, E>,
    {
        let actor = actor.into();
        let mut tx = self.pool.begin().await?;
        if let Some(answer) = self.claim(&mut tx, actor, request).await? {
            tx.rollback().await?;
            return Ok(answer);
        }
        outcome_metric("new");
        let error = match use_case(&mut tx).await {
            Ok(value) => {
                let body = serde_json::to_vec(&value).map_err(|e| ApiError::Internal(e.into()))?;
                let audit = audit::Entry {
                    shop_id: actor.shop_id,
                    api_key_id: actor.key_id,
                    action,
                    entity: T::ENTITY,
                    entity_id: value.entity_id(),
                    request_id: request_id::current(),
                };
                let stored = Stored {
                    status: success.as_u16(),
                    body: value.for_storage().unwrap_or_else(|| body.clone()),
                    location: value.location(),
                };
                idempotency::complete(&mut tx, actor.scope, &request.key, &stored, Some(&audit)).await?;
                tx.commit().await?;
                return Ok(respond(Stored { body, ..stored }, false));
            }
            Err(e) => e.into(),
        };
        // Any failure undoes the whole transaction, key included: a 5xx may
        // simply be retried. A business rejection (4xx) is the key's outcome,
        // stored in a second transaction. Rolling back instead of guarding the
        // use case with a savepoint keeps two round trips off every success.
        tx.rollback().await?;
        if error.status().is_server_error() {
            return Err(error);
        }
        let mut tx = self.pool.begin().await?;
        // In between, a duplicate may have claimed the key and committed its
        // own outcome: then that one is the key's outcome.
        if let Some(answer) = self.claim(&mut tx, actor, request).await? {
            tx.rollback().await?;
            return Ok(answer);
        }
        let stored = Stored {
            status: error.status().as_u16(),
            body: error.body(),
            location: None,
        };
        idempotency::complete(&mut tx, actor.scope, &request.key, &stored, None).await?;
        tx.commit().await?;
        Ok(respond(stored, false))
    }

    /// Claims the key in `tx`. `Some` is the answer when it isn't ours: the
    /// replay of a committed outcome.
    async fn claim(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        actor: Actor,
        request: &RequestKey,
    ) -> Result<Option<Response>, ApiError> {
        let ttl = self.idempotency.ttl_hours;
        match idempotency::claim(tx, actor.scope, &request.key, &request.fingerprint, ttl).await {
            Ok(Claim::New) => Ok(None),
            Ok(Claim::Replay(stored)) => {
                outcome_metric("replayed");
                Ok(Some(replay(stored)))
            }
            Ok(Claim::Mismatch) => {
                outcome_metric("reused_mismatch");
                Err(ApiError::IdempotencyKeyReused)
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                outcome_metric("in_use");
                Err(ApiError::IdempotencyKeyInUse)
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn replay(stored: Stored) -> Response {
    respond(stored, true)
}

fn respond(stored: Stored, replayed: bool) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = if status.is_success() {
        "application/json"
    } else {
        PROBLEM_JSON
    };
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(loc) = stored.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, loc);
    }
    if replayed {
        headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

impl<T> Command<T> {
    pub fn into_parts(self) -> (RequestKey, T) {
        (self.key, self.input)
    }
}
