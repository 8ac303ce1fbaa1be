//! `Authorization: Bearer <key>` to a [`Tenant`], or to the platform admin.

use axum::{
    extract::FromRequestParts,
    http::{Method, header, request::Parts},
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AppState, error::ApiError};
use crate::tenants::{self, Role, Tenant};

/// The bearer token; two `Authorization` headers are a 400, so no layer
/// can authenticate one and act on another.
fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = super::extract::single_header(&parts.headers, &header::AUTHORIZATION)? else {
        return Ok(None);
    };
    let Some((scheme, token)) = value.to_str().ok().and_then(|v| v.split_once(' ')) else {
        return Ok(None);
    };
    Ok(scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()))
}

fn is_mutation(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Resolves the caller's shop. Also the role gate: a `finance` key is
/// read-only, so it gets 403 on any mutating route.
impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // A caller that cannot be named counts against its address, so key
        // guessing is limited too.
        let unknown = |parts: &Parts| match state.limits.check_address(super::limits::client_ip(parts)) {
            Ok(()) => ApiError::Unauthorized,
            Err(limited) => limited,
        };
        let Some(token) = bearer(parts)? else {
            return Err(unknown(parts));
        };
        let digest = tenants::digest(token);
        let tenant = match state.auth_cache.get(&digest) {
            Some(tenant) => tenant,
            None => {
                let read_at = std::time::Instant::now();
                let mut conn = state.pool.acquire().await?;
                let Some(tenant) = tenants::authenticate(&mut conn, token, &digest).await? else {
                    return Err(unknown(parts));
                };
                state.auth_cache.put(digest, tenant, read_at);
                tenant
            }
        };
        super::request_id::set_shop(tenant.shop_id);
        state.limits.check_shop(tenant.shop_id, parts)?;
        if tenant.role == Role::Finance && is_mutation(&parts.method) {
            return Err(ApiError::Forbidden);
        }
        Ok(tenant)
    }
}

/// The platform admin, authenticated by `ADMIN_API_KEY`. With no admin key
/// configured the admin routes answer 404, as if absent.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let expected = state.admin_key_hash.as_ref().ok_or(ApiError::NotFound)?;
        let token = bearer(parts)?.ok_or(ApiError::Unauthorized)?;
        // Digests compared in constant time.
        if !bool::from(
            Sha256::digest(token.as_bytes())
                .as_slice()
                .ct_eq(expected.as_slice()),
        ) {
            return Err(ApiError::Unauthorized);
        }
        Ok(Admin)
    }
}
