//! Shops (tenants) and their API keys.

mod keys;
pub mod routes;

pub use keys::{
    ApiKeyCreated, NewKey, Role, ShopCreated, Tenant, TenantError, authenticate, create_key, create_shop,
    revoke_key, seed_demo,
};
