//! Shops (tenants) and their API keys.

pub mod auth_cache;
pub mod commands;
mod keys;
pub mod routes;

pub use auth_cache::AuthCache;

pub use keys::{
    ApiKeyCreated, NewKey, RevokedKey, Role, ShopCreated, Tenant, TenantError, authenticate, create_key,
    create_shop, digest, revoke, revoke_key, seed_demo,
};
