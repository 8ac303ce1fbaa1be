//! HTTP preconditions on versioned objects: `If-Match` names the version a
//! change expects (its ETag, `"3"`), `If-None-Match` lets a read answer
//! 304 when the client's copy is current.

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};

use super::error::ApiError;

/// The version `If-Match` names, if the request has one.
#[derive(Debug, Clone, Copy)]
pub struct IfMatch(pub Option<i64>);

impl IfMatch {
    /// 428 `precondition_required` without it: a change to a versioned
    /// object must say which version it was made against.
    pub fn required(self) -> Result<i64, ApiError> {
        self.0.ok_or(ApiError::PreconditionRequired(
            "this change requires If-Match with the ETag of the version you read (e.g. \"3\")",
        ))
    }
}

/// A version as an ETag: `"3"` as a browser sends it back, or a bare `3`.
fn version_of(tag: &str) -> Option<i64> {
    let tag = tag.trim();
    let inner = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag);
    if inner.is_empty() || inner.len() > 18 || !inner.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    inner.parse().ok()
}

/// An `If-Match` value as the fingerprint sees it: the version it names
/// when it names one, else the bytes as sent.
pub fn canonical(raw: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(raw).ok().and_then(version_of) {
        // Quoted, as an ETag is answered: fingerprints kept before this
        // normalisation stay the same.
        Some(v) => format!("\"{v}\"").into_bytes(),
        None => raw.to_vec(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut values = parts.headers.get_all(header::IF_MATCH).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return if parts.headers.contains_key(header::IF_MATCH) {
                Err(ApiError::BadRequest(
                    "send one If-Match header naming one version".into(),
                ))
            } else {
                Ok(IfMatch(None))
            };
        };
        let text = value.to_str().unwrap_or("").trim();
        if text == "*" {
            // "Any version" would let a change overwrite one it never saw.
            return Err(ApiError::PreconditionRequired(
                "If-Match: * is not accepted; send the ETag of the version you read (e.g. \"3\")",
            ));
        }
        if text.starts_with("W/") {
            return Err(ApiError::BadRequest(
                "If-Match takes the strong ETag the object was answered with (e.g. \"3\"), not a weak one"
                    .into(),
            ));
        }
        version_of(text).map(|v| IfMatch(Some(v))).ok_or_else(|| {
            ApiError::BadRequest("If-Match must be one ETag such as \"3\" (the object's version)".into())
        })
    }
}

/// `If-None-Match` names this tag (or `*`): weak comparison, as RFC 9110
/// asks for this header.
pub fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().any(|v| {
        v.to_str().unwrap_or("").split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
        })
    })
}

/// 304 for a client whose copy is current, else `ok` with its ETag.
pub fn conditional_get(headers: &HeaderMap, etag: String, ok: impl IntoResponse) -> Response {
    let not_modified = none_match(headers, &etag);
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ok.into_response()
    };
    if let Ok(v) = HeaderValue::try_from(etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_quoted_or_bare() {
        assert_eq!(version_of("\"3\""), Some(3));
        assert_eq!(version_of("3"), Some(3));
        assert_eq!(version_of(" \"12\" "), Some(12));
        for bad in [
            "",
            "\"\"",
            "\"3",
            "x",
            "\"-1\"",
            "3.0",
            "\"1\", \"2\"",
            "99999999999999999999",
        ] {
            assert_eq!(version_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn none_match_compares_weakly_and_takes_lists() {
        let mut h = HeaderMap::new();
        assert!(!none_match(&h, "\"2\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"1\", W/\"2\""));
        assert!(none_match(&h, "\"2\""));
        assert!(!none_match(&h, "\"3\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(none_match(&h, "\"3\""));
    }
}
