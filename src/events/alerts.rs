//! Balance alerts: a threshold on a wallet's `available`. A movement that
//! takes `available` from at or above it to below writes one
//! `wallet.balance_below`; the alert then stays quiet until `available` is
//! at or above it again (one `wallet.balance_recovered`). The flip happens
//! in the statement that moves the wallet, under the wallet's row lock, so
//! concurrent movements crossing it once fire it once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use super::{ALERT_BELOW, ALERT_RECOVERED, Event, EventError};
use crate::{
    executor::{Outcome, command},
    money::{Currency, Decimalish, InvalidAmount},
    pagination::Page,
    tenants::Tenant,
    wallets::{self, WalletError},
};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BalanceAlert {
    pub id: Uuid,
    pub wallet_id: Uuid,
    #[schema(example = "20.00")]
    pub available_below: String,
    pub currency: String,
    /// `true` while `available` is at or above the threshold: the next
    /// movement that takes it below fires `wallet.balance_below`.
    pub armed: bool,
    pub created_at: DateTime<Utc>,
}

impl Outcome for BalanceAlert {
    const ENTITY: &'static str = "balance_alert";
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn event_key(&self) -> Uuid {
        self.wallet_id
    }
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBalanceAlert {
    /// A decimal string in the wallet's currency, 0 or more.
    #[validate(custom(function = "crate::money::validate::limit"))]
    #[schema(example = "20.00")]
    pub available_below: String,
}

struct Row {
    id: Uuid,
    wallet_id: Uuid,
    available_below: rust_decimal::Decimal,
    currency: String,
    armed: bool,
    created_at: DateTime<Utc>,
}

impl Row {
    fn view(self) -> Result<BalanceAlert, EventError> {
        let currency = Currency::stored(&self.currency)?;
        Ok(BalanceAlert {
            id: self.id,
            wallet_id: self.wallet_id,
            available_below: currency.text(self.available_below)?,
            currency: self.currency,
            armed: self.armed,
            created_at: self.created_at,
        })
    }
}

/// A new alert on the wallet, armed if `available` is at or above it now
/// (read under the wallet's lock, so no movement slips between).
pub async fn create(
    conn: &mut PgConnection,
    tenant: Tenant,
    wallet_id: Uuid,
    input: CreateBalanceAlert,
) -> Result<BalanceAlert, EventError> {
    let wallet = sqlx::query!(
        r#"SELECT currency, balance - reserved AS "available!" FROM wallets
            WHERE shop_id = $1 AND id = $2 FOR UPDATE"#,
        tenant.shop_id,
        wallet_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(EventError::Wallet(WalletError::NotFound))?;
    let currency = wallet.currency;
    let money = Currency::stored(&currency)?;
    let below = Decimalish::parse(&input.available_below)
        .and_then(|d| d.in_currency(money))
        .map_err(|error| {
            WalletError::InvalidAmount(InvalidAmount {
                field: "available_below",
                error,
            })
        })?;
    // A plain insert of what the locked row says (Citus routes it to the
    // shop's shard; an INSERT … SELECT would go through the coordinator).
    let r = sqlx::query!(
        "INSERT INTO balance_alerts (shop_id, id, wallet_id, available_below, armed, created_at)
         VALUES ($1, $2, $3, $4, $5, now())
         RETURNING id, wallet_id, available_below, armed, created_at",
        tenant.shop_id,
        Uuid::now_v7(),
        wallet_id,
        below,
        wallet.available >= below,
    )
    .fetch_one(conn)
    .await?;
    let row = Row {
        id: r.id,
        wallet_id: r.wallet_id,
        available_below: r.available_below,
        currency,
        armed: r.armed,
        created_at: r.created_at,
    };
    row.view()
}

pub async fn list(
    conn: &mut PgConnection,
    tenant: Tenant,
    wallet_id: Uuid,
) -> Result<Page<BalanceAlert>, EventError> {
    wallets::ensure_exists(&mut *conn, tenant, wallet_id).await?;
    let rows = sqlx::query_as!(
        Row,
        "SELECT a.id, a.wallet_id, a.available_below, w.currency, a.armed, a.created_at
           FROM balance_alerts a JOIN wallets w ON w.shop_id = a.shop_id AND w.id = a.wallet_id
          WHERE a.shop_id = $1 AND a.wallet_id = $2 ORDER BY a.id",
        tenant.shop_id,
        wallet_id
    )
    .fetch_all(conn)
    .await?;
    let alerts = rows.into_iter().map(Row::view).collect::<Result<Vec<_>, _>>()?;
    Ok(Page {
        data: alerts,
        has_more: false,
    })
}

pub async fn delete(
    conn: &mut PgConnection,
    tenant: Tenant,
    wallet_id: Uuid,
    id: Uuid,
) -> Result<BalanceAlert, EventError> {
    let row = sqlx::query_as!(
        Row,
        "DELETE FROM balance_alerts a USING wallets w
          WHERE a.shop_id = $1 AND a.wallet_id = $2 AND a.id = $3 AND w.shop_id = $1 AND w.id = $2
         RETURNING a.id, a.wallet_id, a.available_below, w.currency, a.armed, a.created_at",
        tenant.shop_id,
        wallet_id,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(EventError::NotFound)?;
    row.view()
}

/// Writes the events of the alerts a movement flipped (`flipped`: each
/// alert's new `armed`): the wallet as it stands after the movement, and
/// the alert. Nothing when none flipped (the common case: no statement).
pub async fn fire(
    conn: &mut PgConnection,
    shop_id: Uuid,
    wallet_id: Uuid,
    flipped: &[(Uuid, bool)],
) -> Result<(), WalletError> {
    if flipped.is_empty() {
        return Ok(());
    }
    let wallet = wallets::get_in_shop(&mut *conn, shop_id, wallet_id).await?;
    let mut events = Vec::with_capacity(flipped.len());
    for (alert_id, armed) in flipped {
        let data = serde_json::json!({ "alert_id": alert_id, "wallet": wallet });
        let type_ = if *armed { ALERT_RECOVERED } else { ALERT_BELOW };
        events.push(Event::new(type_, wallet_id, &data)?);
    }
    super::write(conn, shop_id, events).await?;
    metrics::counter!("balance_alerts_fired_total").increment(flipped.len() as u64);
    Ok(())
}

pub struct Create {
    pub tenant: Tenant,
    pub wallet_id: Uuid,
    pub input: CreateBalanceAlert,
}
command!(Create: "balance_alert.create" => BalanceAlert, EventError,
    |c, conn| create(conn, c.tenant, c.wallet_id, c.input));

pub struct Delete {
    pub tenant: Tenant,
    pub wallet_id: Uuid,
    pub id: Uuid,
}
command!(Delete: "balance_alert.delete", status 200 => BalanceAlert, EventError,
    |c, conn| delete(conn, c.tenant, c.wallet_id, c.id));
