//! The shop and API key mutations as executor commands, for the admin
//! API and the command line alike: each is audited like any mutation.

use uuid::Uuid;

use super::{ApiKeyCreated, NewKey, RevokedKey, Role, ShopCreated, TenantError};
use crate::executor::{Outcome, Refusal, Verdict, command};

pub struct CreateShop {
    pub name: String,
}

pub struct CreateKey {
    pub shop_id: Uuid,
    pub role: Role,
    pub label: Option<String>,
}

/// Replays never show a secret again: only its hash exists.
fn without_secret(key: &ApiKeyCreated) -> ApiKeyCreated {
    ApiKeyCreated {
        secret: None,
        ..key.clone()
    }
}

impl Outcome for ShopCreated {
    const ENTITY: &'static str = "shop";
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn for_storage(&self) -> Option<Vec<u8>> {
        let stored = ShopCreated {
            api_key: without_secret(&self.api_key),
            ..self.clone()
        };
        serde_json::to_vec(&stored).ok()
    }
}

impl Outcome for ApiKeyCreated {
    const ENTITY: &'static str = "api_key";
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn for_storage(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(&without_secret(self)).ok()
    }
}

command!(CreateShop: "shop.create" => ShopCreated, TenantError,
    |c, conn| super::create_shop(conn, &c.name));

command!(CreateKey: "api_key.create" => ApiKeyCreated, TenantError,
    |c, conn| super::create_key(conn, c.shop_id, NewKey { role: c.role, label: c.label }));

/// The demo shop if missing, with a fresh owner key (older demo keys are
/// revoked): `make run`'s first step.
pub struct SeedDemo;

command!(SeedDemo: "shop.seed_demo" => ApiKeyCreated, TenantError,
    |_c, conn| super::seed_demo(conn));

pub struct RevokeKey {
    pub prefix: String,
}

impl Outcome for RevokedKey {
    const ENTITY: &'static str = "api_key";
    fn entity_id(&self) -> Uuid {
        self.id
    }
}

command!(RevokeKey: "api_key.revoke", status 200 => RevokedKey, TenantError,
    |c, conn| super::revoke(conn, &c.prefix));

impl Refusal for TenantError {
    fn verdict(&self) -> Verdict {
        match self {
            TenantError::ShopNotFound | TenantError::KeyNotFound => Verdict::Refused,
            TenantError::Db(_) => Verdict::Failed,
        }
    }
}
