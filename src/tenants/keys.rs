//! Shop and API key use cases. A key reads `blk_<prefix>_<secret>`: the
//! prefix is public and indexed, only the SHA-256 of the whole key is stored.

use rand::{Rng, distributions::Alphanumeric};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything on the shop's data.
    Owner,
    /// Read-only: reports and lookups.
    Finance,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Finance => "finance",
        }
    }
}

/// The authenticated caller: every tenant query filters by `shop_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenant {
    pub shop_id: Uuid,
    pub key_id: Uuid,
    pub role: Role,
}

impl Tenant {
    /// A background job acting for the shop (the webhook worker, the
    /// billing job): the domain's use cases filter by this shop; the audit
    /// row names no key (the executor's actor is the shop itself).
    pub fn job(shop_id: Uuid) -> Tenant {
        Tenant {
            shop_id,
            key_id: Uuid::nil(),
            role: Role::Owner,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("shop not found")]
    ShopNotFound,
    #[error("no live key has this prefix")]
    KeyNotFound,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShopCreated {
    pub id: Uuid,
    pub name: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The shop's first owner key.
    pub api_key: ApiKeyCreated,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyCreated {
    pub id: Uuid,
    pub shop_id: Uuid,
    pub role: Role,
    /// Public part of the key, used to revoke it.
    pub prefix: String,
    /// The full key. Shown once: only its hash is stored, and an idempotent
    /// replay of the creating request answers `null` here.
    pub secret: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub struct NewKey {
    pub role: Role,
    pub label: Option<String>,
}

/// SHA-256 of a whole key, as stored.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn random(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

pub async fn create_shop(conn: &mut PgConnection, name: &str) -> Result<ShopCreated, TenantError> {
    let id = Uuid::now_v7();
    let created_at = sqlx::query_scalar!(
        "INSERT INTO shops (id, name) VALUES ($1, $2) RETURNING created_at",
        id,
        name
    )
    .fetch_one(&mut *conn)
    .await?;
    let api_key = create_key(
        conn,
        id,
        NewKey {
            role: Role::Owner,
            label: None,
        },
    )
    .await?;
    Ok(ShopCreated {
        id,
        name: name.to_owned(),
        created_at,
        api_key,
    })
}

pub async fn create_key(
    conn: &mut PgConnection,
    shop_id: Uuid,
    new: NewKey,
) -> Result<ApiKeyCreated, TenantError> {
    let exists = sqlx::query_scalar!("SELECT 1 AS one FROM shops WHERE id = $1", shop_id)
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_none() {
        return Err(TenantError::ShopNotFound);
    }
    let id = Uuid::now_v7();
    let prefix = random(12);
    let secret = format!("blk_{prefix}_{}", random(40));
    sqlx::query!(
        "INSERT INTO api_key_prefixes (prefix, shop_id) VALUES ($1, $2)",
        prefix,
        shop_id
    )
    .execute(&mut *conn)
    .await?;
    let created_at = sqlx::query_scalar!(
        "INSERT INTO api_keys (shop_id, id, prefix, secret_hash, role, label)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
        shop_id,
        id,
        prefix,
        &digest(&secret)[..],
        new.role.as_str(),
        new.label,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(ApiKeyCreated {
        id,
        shop_id,
        role: new.role,
        prefix,
        secret: Some(secret),
        created_at,
    })
}

/// A key revoked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokedKey {
    pub id: Uuid,
    pub shop_id: Uuid,
    pub prefix: String,
}

/// Revokes by public prefix; `false` when no live key has it.
pub async fn revoke_key(conn: &mut PgConnection, prefix: &str) -> Result<bool, TenantError> {
    match revoke(conn, prefix).await {
        Ok(_) => Ok(true),
        Err(TenantError::KeyNotFound) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Revokes by public prefix; `KeyNotFound` when no live key has it.
pub async fn revoke(conn: &mut PgConnection, prefix: &str) -> Result<RevokedKey, TenantError> {
    let shops = holders(&mut *conn, prefix).await?;
    sqlx::query_as!(
        RevokedKey,
        "UPDATE api_keys SET revoked_at = now()
          WHERE shop_id = ANY($2) AND prefix = $1 AND revoked_at IS NULL
         RETURNING id, shop_id, prefix",
        prefix,
        &shops
    )
    .fetch_optional(conn)
    .await?
    .ok_or(TenantError::KeyNotFound)
}

/// The shops holding a prefix (one, but for a collision of random
/// prefixes): found first, so the key's own row is read on its shop's shard.
async fn holders(conn: &mut PgConnection, prefix: &str) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!("SELECT shop_id FROM api_key_prefixes WHERE prefix = $1", prefix)
        .fetch_all(conn)
        .await
}

/// Resolves a presented key, with its [`digest`], to its tenant; `None` for
/// unknown, malformed or revoked keys alike.
pub async fn authenticate(
    conn: &mut PgConnection,
    presented: &str,
    digest: &[u8; 32],
) -> Result<Option<Tenant>, sqlx::Error> {
    let Some(prefix) = presented
        .strip_prefix("blk_")
        .and_then(|rest| rest.split_once('_'))
        .map(|(p, _)| p)
    else {
        return Ok(None);
    };
    // Prefixes are random, not unique across shops: compare every holder.
    let shops = holders(&mut *conn, prefix).await?;
    if shops.is_empty() {
        return Ok(None);
    }
    let rows = sqlx::query!(
        "SELECT shop_id, id, role, secret_hash FROM api_keys
          WHERE shop_id = ANY($2) AND prefix = $1 AND revoked_at IS NULL",
        prefix,
        &shops
    )
    .fetch_all(conn)
    .await?;
    // Found by its public prefix, then compared by hash in constant time,
    // so the answer's timing says nothing about how much of a guess matched.
    Ok(rows
        .into_iter()
        .find(|r| bool::from(r.secret_hash.as_slice().ct_eq(digest.as_slice())))
        .and_then(|r| {
            Some(Tenant {
                shop_id: r.shop_id,
                key_id: r.id,
                // A role this build does not know authenticates nobody.
                role: crate::store::decode::<Role>("role", &r.role).ok()?,
            })
        }))
}

/// The demo shop for `make run`: created once (fixed id), with a fresh owner
/// key on every call, older demo keys revoked.
pub async fn seed_demo(conn: &mut PgConnection) -> Result<ApiKeyCreated, TenantError> {
    let id = Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_de30);
    sqlx::query!(
        "INSERT INTO shops (id, name) VALUES ($1, 'Demo Shop') ON CONFLICT (id) DO NOTHING",
        id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE api_keys SET revoked_at = now() WHERE shop_id = $1 AND label = 'demo' AND revoked_at IS NULL",
        id
    )
    .execute(&mut *conn)
    .await?;
    create_key(
        conn,
        id,
        NewKey {
            role: Role::Owner,
            label: Some("demo".into()),
        },
    )
    .await
}
