//! Every error the API answers with, as RFC 9457 `application/problem+json`
//! with a stable `code`. Each domain maps its own error to these in its
//! `routes.rs` (its HTTP side); this module knows no domain.

use std::collections::BTreeMap;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    executor::{self, ExecError, Rejection},
    http::request_id,
    idempotency::Stored,
    money::MoneyError,
    store::{self, StoreError, sqlstate},
};

/// Per-field messages of a 422 `validation_failed`.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid API key is required")]
    Unauthorized,
    #[error("this API key may not perform this action")]
    Forbidden,
    #[error("no such resource")]
    NotFound,
    #[error("method not allowed for this resource")]
    MethodNotAllowed,
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is too large")]
    PayloadTooLarge,
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the request was not received in time; send the headers and body without pauses")]
    RequestTimeout,
    #[error("one or more fields are invalid")]
    Validation(FieldErrors),
    #[error("the Idempotency-Key header is required on this request")]
    IdempotencyKeyMissing,
    #[error("{0}")]
    IdempotencyKeyInvalid(&'static str),
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still in progress; retry later")]
    IdempotencyKeyInUse,
    #[error("the wallet's available balance is insufficient")]
    InsufficientFunds,
    /// A request beyond what is left to give back (422): `code` names the
    /// limit, `field` the request field that exceeds it.
    #[error("{message}")]
    Exceeds {
        code: &'static str,
        field: &'static str,
        message: String,
    },
    /// The object cannot be refunded or credited at all (422).
    #[error("{0}")]
    NotRefundable(String),
    #[error("{0}")]
    CurrencyMismatch(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    ReservationKeyConflict(String),
    #[error("{0}")]
    ExternalRefConflict(String),
    #[error("the reservation expired; its hold has been released")]
    ReservationExpired,
    #[error("{0}")]
    PreconditionRequired(&'static str),
    #[error("the Webhook-Signature header is missing, malformed or matches no secret of this provider")]
    SignatureInvalid,
    #[error("the signature's timestamp is too far from now; a replayed or delayed delivery is refused")]
    TimestampOutOfTolerance,
    /// `If-Match` named a version the object is no longer (or never was) at.
    #[error("{0}")]
    VersionMismatch(String, i64),
    #[error("the service is temporarily unavailable; retry later")]
    Unavailable(#[source] anyhow::Error),
    /// Over a rate limit; retry after this many seconds.
    #[error("too many requests; retry after the Retry-After seconds")]
    RateLimited(u64),
    /// Shedding load: more requests in flight than MAX_IN_FLIGHT.
    #[error("the service is busy; retry later")]
    Overloaded,
    #[error("an unexpected error occurred")]
    Internal(#[source] anyhow::Error),
    /// An atomic batch refused for its item `index`: the item's own
    /// problem, its fields named `items[index].<field>`.
    #[error("items[{index}]: {}", problem.detail)]
    BatchItem { index: usize, problem: Box<Problem> },
}

/// The RFC 9457 body. `errors` only on 422 `validation_failed` and on the
/// 422s that name the field over a limit (`refund_exceeds_remaining`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `insufficient_funds`.
    pub code: String,
    pub request_id: String,
    /// Messages per invalid field, e.g. `{"amount": ["must be greater than zero"]}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::HashMap<String, Vec<String>>>)]
    pub errors: Option<FieldErrors>,
    /// On 412 `version_mismatch`: the object's version now (its `ETag`
    /// header says the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
}

pub const PROBLEM_JSON: &str = "application/problem+json";

impl ApiError {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(BTreeMap::from([(field.to_owned(), vec![message.into()])]))
    }

    pub fn money(field: &str, e: MoneyError) -> Self {
        ApiError::validation(field, e.to_string())
    }

    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            Unauthorized | SignatureInvalid => StatusCode::UNAUTHORIZED,
            Forbidden => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            BadRequest(_) | IdempotencyKeyMissing | IdempotencyKeyInvalid(_) | TimestampOutOfTolerance => {
                StatusCode::BAD_REQUEST
            }
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Validation(_)
            | IdempotencyKeyReused
            | InsufficientFunds
            | CurrencyMismatch(_)
            | Exceeds { .. }
            | NotRefundable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            IdempotencyKeyInUse
            | InvalidState(_)
            | ReservationKeyConflict(_)
            | ExternalRefConflict(_)
            | ReservationExpired => StatusCode::CONFLICT,
            PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            VersionMismatch(..) => StatusCode::PRECONDITION_FAILED,
            Unavailable(_) | Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            BatchItem { problem, .. } => {
                StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            BadRequest(_) => "bad_request",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            RequestTimeout => "request_timeout",
            Validation(_) => "validation_failed",
            IdempotencyKeyMissing => "idempotency_key_missing",
            IdempotencyKeyInvalid(_) => "idempotency_key_invalid",
            IdempotencyKeyReused => "idempotency_key_reused",
            IdempotencyKeyInUse => "idempotency_key_in_use",
            InsufficientFunds => "insufficient_funds",
            Exceeds { code, .. } => code,
            NotRefundable(_) => "not_refundable",
            CurrencyMismatch(_) => "currency_mismatch",
            InvalidState(_) => "invalid_state",
            ReservationKeyConflict(_) => "reservation_key_conflict",
            ExternalRefConflict(_) => "external_ref_conflict",
            ReservationExpired => "reservation_expired",
            PreconditionRequired(_) => "precondition_required",
            SignatureInvalid => "signature_invalid",
            TimestampOutOfTolerance => "timestamp_out_of_tolerance",
            VersionMismatch(..) => "version_mismatch",
            Unavailable(_) | Overloaded => "unavailable",
            RateLimited(_) => "rate_limited",
            Internal(_) => "internal_error",
            // `problem` answers with the item's own code.
            BatchItem { .. } => "batch_item_failed",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::IdempotencyKeyInUse | ApiError::Overloaded => Some(1),
            ApiError::BatchItem { problem, .. } if problem.code == "idempotency_key_in_use" => Some(1),
            ApiError::BatchItem { problem, .. } if problem.status == 503 => Some(2),
            ApiError::Unavailable(_) => Some(2),
            ApiError::RateLimited(secs) => Some((*secs).max(1)),
            _ => None,
        }
    }

    pub fn problem(&self) -> Problem {
        if let ApiError::BatchItem { index, problem } = self {
            let at = format!("items[{index}]");
            let errors = match &problem.errors {
                Some(errors) => errors
                    .iter()
                    .map(|(field, messages)| (format!("{at}.{field}"), messages.clone()))
                    .collect(),
                None => BTreeMap::from([(at.clone(), vec![problem.detail.clone()])]),
            };
            return Problem {
                detail: format!("{at}: {}", problem.detail),
                request_id: request_id::current(),
                errors: Some(errors),
                ..(**problem).clone()
            };
        }
        let status = self.status();
        Problem {
            type_: format!("urn:problem:billing-ledger:{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code().to_owned(),
            request_id: request_id::current(),
            errors: match self {
                ApiError::Validation(errors) => Some(errors.clone()),
                ApiError::Exceeds { field, message, .. } => {
                    Some(BTreeMap::from([((*field).to_owned(), vec![message.clone()])]))
                }
                _ => None,
            },
            current_version: match self {
                ApiError::VersionMismatch(_, current) => Some(*current),
                _ => None,
            },
        }
    }

    /// The body bytes, as sent and as stored for idempotent replay.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.problem()).expect("a problem always serialises")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(e) => tracing::error!(error = format!("{e:#}"), "unexpected error"),
            ApiError::Unavailable(e) => tracing::warn!(error = format!("{e:#}"), "unavailable"),
            _ => {}
        }
        let mut response = (self.status(), self.body()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let ApiError::VersionMismatch(_, current) = &self
            && let Ok(etag) = HeaderValue::try_from(executor::etag(*current))
        {
            headers.insert(header::ETAG, etag);
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        // Text PostgreSQL cannot store (e.g. a NUL character in a query
        // parameter) is the caller's input, not our failure.
        if store::has_any_code(
            &e,
            &[
                sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
                sqlstate::UNTRANSLATABLE_CHARACTER,
            ],
        ) {
            return ApiError::validation("body", "contains characters that cannot be stored (NUL)");
        }
        if store::is_transient(&e) {
            ApiError::Unavailable(e.into())
        } else {
            ApiError::Internal(e.into())
        }
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::KeyReused => ApiError::IdempotencyKeyReused,
            ExecError::KeyInUse => ApiError::IdempotencyKeyInUse,
            ExecError::Db(e) => e.into(),
            ExecError::Encode(e) => ApiError::Internal(e.into()),
        }
    }
}

impl Rejection for ApiError {
    /// The problem as stored for a refusal the domain calls the key's
    /// outcome (the domain error's `verdict` decides which are).
    fn stored(&self) -> Option<Stored> {
        Some(Stored {
            status: self.status().as_u16(),
            content_type: PROBLEM_JSON.into(),
            location: None,
            etag: None,
            body: self.body(),
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Db(e) => e.into(),
            StoreError::Broken(what) => ApiError::Internal(anyhow::anyhow!("broken invariant: {what}")),
        }
    }
}
