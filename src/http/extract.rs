//! Extractors whose rejections are problem+json: JSON bodies (400 when
//! malformed, 422 with per-field errors when invalid), query strings and ids
//! in paths.

use axum::{
    extract::{FromRequestParts, Path, Query},
    http::{HeaderMap, HeaderName, HeaderValue, header, request::Parts},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, error::Category};
use uuid::Uuid;
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use super::error::{ApiError, FieldErrors};

/// The one value of a header that must not repeat: two `Idempotency-Key`
/// (or `Authorization`) headers would let a server and a proxy, or two
/// retries, read different ones, so more than one is a 400.
pub fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h HeaderValue>, ApiError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (first, None) => Ok(first),
        _ => Err(ApiError::BadRequest(format!(
            "send one {name} header, not several"
        ))),
    }
}

/// What a request says its body is: `true` for JSON (`application/json`
/// or a `+json` type, parameters such as charset allowed), `false` when it
/// names no type; any other type is 415.
pub fn declares_json(headers: &HeaderMap) -> Result<bool, ApiError> {
    let value = single_header(headers, &header::CONTENT_TYPE).map_err(|_| ApiError::UnsupportedMediaType)?;
    let Some(value) = value else {
        return Ok(false);
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json") && sub.len() > "+json".len());
    if json {
        Ok(true)
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// A body must be declared JSON; an empty one needs no type (an action
/// such as finalize has nothing to send).
pub fn require_json(declared: bool, body: &[u8]) -> Result<(), ApiError> {
    if declared || is_blank(body) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// The body as a JSON value, for its fingerprint; called once [`parse_json`]
/// has accepted it, so it cannot fail on the syntax. An empty body reads as
/// `{}`.
pub fn parse_value(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(or_empty_object(body))
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
}

fn or_empty_object(body: &[u8]) -> &[u8] {
    if is_blank(body) { b"{}" } else { body }
}

/// Parses and validates a JSON body as `T` in one pass: 400 when it is not
/// JSON, 422 naming the field when it does not fit (a repeated field
/// included). An empty body reads as `{}`.
pub fn parse_json<T: DeserializeOwned + Validate>(body: &[u8]) -> Result<T, ApiError> {
    let body = or_empty_object(body);
    let mut de = serde_json::Deserializer::from_slice(body);
    let malformed =
        |e: &serde_json::Error| ApiError::BadRequest(format!("the request body is not valid JSON: {e}"));
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => malformed(&inner),
            Category::Data => data_error(&path, &inner.to_string()),
        }
    })?;
    de.end().map_err(|e| malformed(&e))?;
    if has_nul_escape(body) {
        return Err(ApiError::validation(
            "body",
            "strings must not contain NUL characters",
        ));
    }
    value
        .validate()
        .map_err(|e| ApiError::Validation(field_errors(&e)))?;
    Ok(value)
}

/// A JSON `\u0000` escape (not an escaped backslash followed by `u0000`):
/// PostgreSQL text can't hold NUL, so it is refused up front.
fn has_nul_escape(body: &[u8]) -> bool {
    body.windows(6).enumerate().any(|(i, w)| {
        w.eq_ignore_ascii_case(b"\\u0000")
            && body[..i].iter().rev().take_while(|b| **b == b'\\').count() % 2 == 0
    })
}

/// serde names the field in the message for missing/unknown fields; type
/// errors carry it in the path.
fn data_error(path: &str, message: &str) -> ApiError {
    let message = message.split(" at line ").next().unwrap_or(message);
    let quoted = message.split('`').nth(1);
    let field = if path != "." && !path.is_empty() {
        path.to_owned()
    } else if message.starts_with("missing field") || message.starts_with("unknown field") {
        quoted.unwrap_or("body").to_owned()
    } else {
        "body".to_owned()
    };
    ApiError::validation(&field, message)
}

pub fn field_errors(errors: &ValidationErrors) -> FieldErrors {
    let mut out = FieldErrors::new();
    collect(errors, "", &mut out);
    out
}

fn collect(errors: &ValidationErrors, prefix: &str, out: &mut FieldErrors) {
    for (field, kind) in errors.errors() {
        let name = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(list) => out.entry(name).or_default().extend(list.iter().map(|e| {
                e.message
                    .as_ref()
                    .map_or_else(|| format!("is invalid ({})", e.code), |m| m.to_string())
            })),
            ValidationErrorsKind::Struct(inner) => collect(inner, &name, out),
            ValidationErrorsKind::List(items) => {
                for (i, inner) in items {
                    collect(inner, &format!("{name}[{i}]"), out)
                }
            }
        }
    }
}

/// A query string, validated; bad parameters are 422 `validation_failed`.
pub struct ValidQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ValidQuery<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(value) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| query_error(&e.body_text()))?;
        value
            .validate()
            .map_err(|e| ApiError::Validation(field_errors(&e)))?;
        Ok(ValidQuery(value))
    }
}

/// A query string that does not parse, naming the parameter when the
/// message does (`limit: invalid digit found in string`), as a range error
/// on it would.
fn query_error(text: &str) -> ApiError {
    let message = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(text);
    match message.split_once(": ") {
        Some((field, why))
            if !field.is_empty() && field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            ApiError::validation(field, why)
        }
        _ => ApiError::validation("query", message),
    }
}

/// The resource id in the path. An id that isn't a UUID names no resource:
/// 404, exactly like a missing one.
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        Uuid::parse_str(&raw).map(PathId).map_err(|_| ApiError::NotFound)
    }
}

/// Two UUID path segments (`/v1/wallets/{id}/transactions/{transaction_id}`);
/// 404 unless both parse.
pub struct PathIds(pub Uuid, pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((a, b)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        match (Uuid::parse_str(&a), Uuid::parse_str(&b)) {
            (Ok(a), Ok(b)) => Ok(PathIds(a, b)),
            _ => Err(ApiError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn json_types_pass_and_others_are_415() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(declares_json(&typed(ok)).unwrap(), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/xml",
            "application/+json",
            "json",
        ] {
            assert!(
                matches!(declares_json(&typed(bad)), Err(ApiError::UnsupportedMediaType)),
                "{bad}"
            );
        }
        assert!(!declares_json(&HeaderMap::new()).unwrap());
        assert!(require_json(false, b" ").is_ok());
        assert!(matches!(
            require_json(false, b"{}"),
            Err(ApiError::UnsupportedMediaType)
        ));
        assert!(require_json(true, b"{}").is_ok());
    }
}
