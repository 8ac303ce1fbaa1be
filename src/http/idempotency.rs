//! The HTTP side of the executor: read the Idempotency-Key and the body of a
//! mutating request, hand both to `crate::executor`, and turn its answer into
//! a response.

use axum::{
    body::Bytes,
    extract::{FromRequest, OriginalUri, Request},
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;
use validator::Validate;

use super::{
    AppState,
    error::{ApiError, PROBLEM_JSON},
    extract::{declares_json, parse_json, parse_value, require_json, single_header},
    request_id,
};
use crate::{
    executor::{self, Actor, Answer, Command},
    idempotency::{self, IdempotencyKey, Stored},
};

pub const KEY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A mutating request: its key with the request's fingerprint, and its
/// parsed, validated body. Rejections here (400/413/422) happen before
/// execution and are never stored.
pub struct Idempotent<T>(pub executor::Request, pub T);

impl<T, S> FromRequest<S> for Idempotent<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let key = match single_header(req.headers(), &KEY_HEADER)
            .map_err(|_| ApiError::IdempotencyKeyInvalid("send one Idempotency-Key header, not several"))?
        {
            None => {
                // Operators alert when this exceeds ~1 % of mutations: a
                // client that never sends keys cannot retry safely.
                metrics::counter!("idempotency_key_missing_total").increment(1);
                return Err(ApiError::IdempotencyKeyMissing);
            }
            Some(v) => IdempotencyKey::parse(v.as_bytes()).map_err(ApiError::IdempotencyKeyInvalid)?,
        };
        // `"2"` and `2` name the same version, so they are the same request.
        let if_match = req
            .headers()
            .get(header::IF_MATCH)
            .map(|v| super::precondition::canonical(v.as_bytes()));
        let declared_json = declares_json(req.headers())?;
        let method = req.method().clone();
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
        require_json(declared_json, &body)?;
        // Typed first, straight from the bytes, so a repeated field is a 422
        // rather than the last one silently winning; then the value for the
        // fingerprint.
        let input: T = parse_json(&body)?;
        let fingerprint =
            idempotency::fingerprint(method.as_str(), &path, if_match.as_deref(), &parse_value(&body)?);
        let request = executor::Request {
            key,
            fingerprint,
            request_id: request_id::current(),
        };
        Ok(Idempotent(request, input))
    }
}

impl AppState {
    /// Runs `command` once per (shop, key) and answers with its outcome.
    pub async fn execute<C>(
        &self,
        actor: impl Into<Actor>,
        request: executor::Request,
        command: C,
    ) -> Result<Response, ApiError>
    where
        C: Command,
        C::Error: Into<ApiError>,
    {
        let answer: Answer = self.executor.execute(actor.into(), &request, command).await?;
        Ok(respond(answer))
    }
}

pub fn respond(answer: Answer) -> Response {
    let Answer { response, replayed } = answer;
    let Stored {
        status,
        content_type,
        location,
        etag,
        body,
    } = response;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    let content_type = HeaderValue::try_from(content_type).unwrap_or_else(|_| {
        HeaderValue::from_static(if status.is_success() {
            executor::JSON
        } else {
            PROBLEM_JSON
        })
    });
    headers.insert(header::CONTENT_TYPE, content_type);
    for (name, value) in [(header::LOCATION, location), (header::ETAG, etag)] {
        if let Some(v) = value.and_then(|v| HeaderValue::try_from(v).ok()) {
            headers.insert(name, v);
        }
    }
    if replayed {
        headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}
