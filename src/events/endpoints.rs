//! The shop's webhook endpoints: where its events are delivered, which
//! types each takes, the secret that signs them (shown once, rotated with a
//! grace period) and whether it is disabled (by the shop, or after failing
//! deliveries).

use chrono::{DateTime, Utc};
use rand::{Rng, distributions::Alphanumeric};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use super::{EventError, TYPES, deliveries::Destinations};
use crate::{
    executor::{Outcome, command},
    pagination::{Page, PageParams},
    tenants::Tenant,
    webhooks::pg_interval,
};

/// A URL the shop's events are posted to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookEndpoint {
    pub id: Uuid,
    #[schema(example = "https://shop.example/billing-events")]
    pub url: String,
    pub description: Option<String>,
    /// The event types delivered here; `*` for all.
    pub event_types: Vec<String>,
    /// `whsec_…`: shown once, when the endpoint is created and when its
    /// secret is rotated (a replay, and every other answer, has `null`).
    pub secret: Option<String>,
    /// Until when the secret a rotation replaced still signs deliveries
    /// beside the new one (a second `v1=` in `Webhook-Signature`).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub disabled: bool,
    /// Why it is disabled: by the shop, or after failing deliveries.
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Outcome for WebhookEndpoint {
    const ENTITY: &'static str = "webhook_endpoint";
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn location(&self) -> Option<String> {
        Some(format!("/v1/webhook-endpoints/{}", self.id))
    }
    fn for_storage(&self) -> Option<Vec<u8>> {
        self.secret.as_ref()?;
        serde_json::to_vec(&WebhookEndpoint {
            secret: None,
            ..self.clone()
        })
        .ok()
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookEndpoint {
    /// `https://…`; plain `http` and private, loopback or link-local
    /// addresses only for hosts listed in ENDPOINT_ALLOWED_HOSTS.
    #[validate(length(min = 1, max = 2048, message = "must be 1 to 2048 characters"))]
    pub url: String,
    /// Event types to deliver (see `GET /v1/events`), or `["*"]` for all.
    #[validate(length(min = 1, max = 50, message = "must name 1 to 50 event types"))]
    pub event_types: Vec<String>,
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookEndpoint {
    #[validate(length(min = 1, max = 2048, message = "must be 1 to 2048 characters"))]
    pub url: Option<String>,
    #[validate(length(min = 1, max = 50, message = "must name 1 to 50 event types"))]
    pub event_types: Option<Vec<String>>,
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    pub description: Option<String>,
    /// `true` stops deliveries (new events are not queued for it); `false`
    /// re-enables it, also after it was disabled for failing.
    pub disabled: Option<bool>,
}

fn check_types(types: &[String]) -> Result<(), EventError> {
    for t in types {
        if t != "*" && !TYPES.contains(&t.as_str()) {
            return Err(EventError::invalid(
                "event_types",
                format!("unknown event type {t:?}"),
            ));
        }
    }
    Ok(())
}

fn new_secret() -> String {
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("whsec_{random}")
}

struct Row {
    id: Uuid,
    url: String,
    description: Option<String>,
    event_types: Vec<String>,
    previous_expires_at: Option<DateTime<Utc>>,
    disabled: bool,
    disabled_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Row {
    fn view(self, secret: Option<String>) -> WebhookEndpoint {
        WebhookEndpoint {
            id: self.id,
            url: self.url,
            description: self.description,
            event_types: self.event_types,
            secret,
            previous_secret_expires_at: self.previous_expires_at.filter(|t| *t > Utc::now()),
            disabled: self.disabled,
            disabled_reason: self.disabled_reason,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

pub async fn create(
    conn: &mut PgConnection,
    tenant: Tenant,
    input: CreateWebhookEndpoint,
    destinations: &Destinations,
) -> Result<WebhookEndpoint, EventError> {
    check_types(&input.event_types)?;
    let url = destinations.check_url(&input.url).await?;
    let secret = new_secret();
    let row = sqlx::query_as!(
        Row,
        "INSERT INTO webhook_endpoints
             (shop_id, id, url, description, event_types, secret, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, now(), now())
         RETURNING id, url, description, event_types, previous_expires_at, disabled, disabled_reason,
                   created_at, updated_at",
        tenant.shop_id,
        Uuid::now_v7(),
        url,
        input.description,
        &input.event_types,
        secret
    )
    .fetch_one(conn)
    .await?;
    Ok(row.view(Some(secret)))
}

pub async fn get(conn: &mut PgConnection, tenant: Tenant, id: Uuid) -> Result<WebhookEndpoint, EventError> {
    let row = sqlx::query_as!(
        Row,
        "SELECT id, url, description, event_types, previous_expires_at, disabled, disabled_reason,
                created_at, updated_at
           FROM webhook_endpoints WHERE shop_id = $1 AND id = $2 AND deleted_at IS NULL",
        tenant.shop_id,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(EventError::NotFound)?;
    Ok(row.view(None))
}

pub async fn list(
    conn: &mut PgConnection,
    tenant: Tenant,
    page: &PageParams,
) -> Result<Page<WebhookEndpoint>, EventError> {
    let rows = sqlx::query_as!(
        Row,
        "SELECT id, url, description, event_types, previous_expires_at, disabled, disabled_reason,
                created_at, updated_at
           FROM webhook_endpoints
          WHERE shop_id = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR id > $2)
          ORDER BY id LIMIT $3",
        tenant.shop_id,
        page.starting_after,
        page.limit() + 1
    )
    .fetch_all(conn)
    .await?;
    let rows = rows.into_iter().map(|r| r.view(None)).collect();
    Ok(Page::from_rows(rows, page.limit()))
}

pub async fn update(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
    input: UpdateWebhookEndpoint,
    destinations: &Destinations,
) -> Result<WebhookEndpoint, EventError> {
    if let Some(types) = &input.event_types {
        check_types(types)?;
    }
    let url = match &input.url {
        Some(url) => Some(destinations.check_url(url).await?),
        None => None,
    };
    // Re-enabling clears the failure count, so the next failed delivery
    // does not disable it again at once.
    let row = sqlx::query_as!(
        Row,
        "UPDATE webhook_endpoints
            SET url = coalesce($3, url), description = coalesce($4, description),
                event_types = coalesce($5, event_types), disabled = coalesce($6, disabled),
                disabled_reason = CASE WHEN $6 IS NULL THEN disabled_reason
                                       WHEN $6 THEN 'disabled by the shop' END,
                consecutive_failures = CASE WHEN $6 = false THEN 0 ELSE consecutive_failures END,
                version = version + 1, updated_at = now()
          WHERE shop_id = $1 AND id = $2 AND deleted_at IS NULL
         RETURNING id, url, description, event_types, previous_expires_at, disabled, disabled_reason,
                   created_at, updated_at",
        tenant.shop_id,
        id,
        url,
        input.description,
        input.event_types.as_deref(),
        input.disabled
    )
    .fetch_optional(conn)
    .await?
    .ok_or(EventError::NotFound)?;
    Ok(row.view(None))
}

/// Deletes the endpoint: nothing more is queued or posted for it; its
/// pending deliveries end `failed`, marked by the delivery worker in
/// batches (`deliveries::fail_deleted`), so this request locks one row
/// whatever the backlog and never waits on a worker's round; its delivery
/// history is kept (as the events are) until retention.
pub async fn delete(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
) -> Result<WebhookEndpoint, EventError> {
    let row = sqlx::query_as!(
        Row,
        "UPDATE webhook_endpoints SET deleted_at = now(), disabled = true,
                disabled_reason = 'deleted', updated_at = now(), version = version + 1
          WHERE shop_id = $1 AND id = $2 AND deleted_at IS NULL
         RETURNING id, url, description, event_types, previous_expires_at, disabled, disabled_reason,
                   created_at, updated_at",
        tenant.shop_id,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(EventError::NotFound)?;
    Ok(row.view(None))
}

/// A new secret, shown once; the replaced one keeps signing beside it for
/// `grace`, so the receiver can switch without rejecting a delivery.
pub async fn rotate(
    conn: &mut PgConnection,
    tenant: Tenant,
    id: Uuid,
    grace: std::time::Duration,
) -> Result<WebhookEndpoint, EventError> {
    let secret = new_secret();
    let row = sqlx::query_as!(
        Row,
        "UPDATE webhook_endpoints
            SET previous_secret = secret, previous_expires_at = now() + $4::interval, secret = $3,
                version = version + 1, updated_at = now()
          WHERE shop_id = $1 AND id = $2 AND deleted_at IS NULL
         RETURNING id, url, description, event_types, previous_expires_at, disabled, disabled_reason,
                   created_at, updated_at",
        tenant.shop_id,
        id,
        secret,
        pg_interval(grace)
    )
    .fetch_optional(conn)
    .await?
    .ok_or(EventError::NotFound)?;
    Ok(row.view(Some(secret)))
}

pub struct Create {
    pub tenant: Tenant,
    pub input: CreateWebhookEndpoint,
    pub destinations: Destinations,
}
command!(Create: "webhook_endpoint.create" => WebhookEndpoint, EventError,
    |c, conn| create(conn, c.tenant, c.input, &c.destinations));

pub struct Update {
    pub tenant: Tenant,
    pub id: Uuid,
    pub input: UpdateWebhookEndpoint,
    pub destinations: Destinations,
}
command!(Update: "webhook_endpoint.update", status 200 => WebhookEndpoint, EventError,
    |c, conn| update(conn, c.tenant, c.id, c.input, &c.destinations));

pub struct Delete {
    pub tenant: Tenant,
    pub id: Uuid,
}
command!(Delete: "webhook_endpoint.delete", status 200 => WebhookEndpoint, EventError,
    |c, conn| delete(conn, c.tenant, c.id));

pub struct Rotate {
    pub tenant: Tenant,
    pub id: Uuid,
    pub grace: std::time::Duration,
}
command!(Rotate: "webhook_endpoint.rotate_secret", status 200 => WebhookEndpoint, EventError,
    |c, conn| rotate(conn, c.tenant, c.id, c.grace));
