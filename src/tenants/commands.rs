//! The shop and API key mutations as executor commands, for the admin
//! API and the command line alike: each is audited like any mutation.

use uuid::Uuid;

use super::{ApiKeyCreated, NewKey, RevokedKey, Role, ShopCreated, TenantError};
use crate::executor::{Claimed, Command, Outcome, Ran, Refusal, Unit, Verdict};

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

impl Command for CreateShop {
    const ACTION: &'static str = "shop.create";
    type Key = Claimed;
    type Output = ShopCreated;
    type Error = TenantError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<ShopCreated>, TenantError> {
        let shop = super::create_shop(unit.conn(), &self.name).await?;
        Ok(key.answer(shop))
    }
}

impl Command for CreateKey {
    const ACTION: &'static str = "api_key.create";
    type Key = Claimed;
    type Output = ApiKeyCreated;
    type Error = TenantError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<ApiKeyCreated>, TenantError> {
        let new = NewKey {
            role: self.role,
            label: self.label,
        };
        let created = super::create_key(unit.conn(), self.shop_id, new).await?;
        Ok(key.answer(created))
    }
}

/// The demo shop if missing, with a fresh owner key (older demo keys are
/// revoked): `make run`'s first step.
pub struct SeedDemo;

impl Command for SeedDemo {
    const ACTION: &'static str = "shop.seed_demo";
    type Key = Claimed;
    type Output = ApiKeyCreated;
    type Error = TenantError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<ApiKeyCreated>, TenantError> {
        let created = super::seed_demo(unit.conn()).await?;
        Ok(key.answer(created))
    }
}

pub struct RevokeKey {
    pub prefix: String,
}

impl Outcome for RevokedKey {
    const ENTITY: &'static str = "api_key";
    fn entity_id(&self) -> Uuid {
        self.id
    }
}

impl Command for RevokeKey {
    const ACTION: &'static str = "api_key.revoke";
    const STATUS: u16 = 200;
    type Key = Claimed;
    type Output = RevokedKey;
    type Error = TenantError;
    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<RevokedKey>, TenantError> {
        let revoked = super::revoke(unit.conn(), &self.prefix).await?;
        Ok(key.answer(revoked))
    }
}

impl Refusal for TenantError {
    fn verdict(&self) -> Verdict {
        match self {
            TenantError::ShopNotFound | TenantError::KeyNotFound => Verdict::Refused,
            TenantError::Db(_) => Verdict::Failed,
        }
    }
}
