//! The webhook mutations as executor commands: a signing secret, a manual
//! retry, and applying an event — a command per event type, keyed by the
//! provider's event id, that locks the event row, makes the domain change
//! and marks the event processed, all in the executor's one transaction.

use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    CreditsPurchased, EventStatus, PaymentSucceeded, RefundSucceeded, WebhookError, WebhookEvent,
    WebhookSecret,
};
use crate::{
    executor::{Claimed, Command, Ran, Unclaimed, Unit, command},
    invoices::{self, PayInvoice, PaymentMethod, PaymentReceipt, RefundPayment, RefundReceipt},
    metadata::Metadata,
    store,
    tenants::Tenant,
    wallets::{self, CreditCategory, CreditRequest, WalletTransaction},
};

/// An event the worker leased.
#[derive(Debug, Clone)]
pub struct Leased {
    pub shop_id: Uuid,
    pub id: Uuid,
    pub provider: String,
    pub event_id: String,
    pub type_: String,
    pub payload: Value,
    /// Failed attempts so far, when leased.
    pub attempts: i32,
}

impl Leased {
    fn tenant(&self) -> Tenant {
        Tenant::job(self.shop_id)
    }

    fn data<T: serde::de::DeserializeOwned>(&self) -> Result<T, WebhookError> {
        serde_json::from_value(self.payload.get("data").cloned().unwrap_or(Value::Null))
            .map_err(|e| WebhookError::Malformed(format!("{}: data: {e}", self.type_)))
    }
}

fn reference(field: &str, value: &str) -> Result<(), WebhookError> {
    if value.is_empty() || value.chars().count() > 255 {
        return Err(WebhookError::Malformed(format!(
            "data.{field} must be 1 to 255 characters"
        )));
    }
    Ok(())
}

/// The event's `data`, its reference checked, with the event's row locked.
async fn open<T: serde::de::DeserializeOwned>(
    conn: &mut PgConnection,
    event: &Leased,
    reference_of: fn(&T) -> (&'static str, &str),
) -> Result<T, WebhookError> {
    let data: T = event.data()?;
    let (field, value) = reference_of(&data);
    reference(field, value)?;
    lock_event(conn, event).await?;
    Ok(data)
}

/// The event's currency is the one of what it moves money on.
fn same_currency(sent: (&str, &str), found: (&str, &str)) -> Result<(), WebhookError> {
    if sent.1 != found.1 {
        return Err(WebhookError::Mismatch(format!(
            "the {} is in {}, the {} in {}",
            sent.0, sent.1, found.0, found.1
        )));
    }
    Ok(())
}

/// Takes the event's row lock for this transaction if it is still to be
/// applied; another worker holding it, or having applied it, is not an
/// attempt.
async fn lock_event(conn: &mut PgConnection, event: &Leased) -> Result<(), WebhookError> {
    let status = sqlx::query_scalar!(
        "SELECT status FROM webhook_events WHERE shop_id = $1 AND id = $2 FOR UPDATE SKIP LOCKED",
        event.shop_id,
        event.id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(WebhookError::Busy)?;
    match store::decode::<EventStatus>("webhook event status", &status)? {
        EventStatus::Pending | EventStatus::Failed => Ok(()),
        EventStatus::Processed | EventStatus::Dead | EventStatus::Ignored => Err(WebhookError::Busy),
    }
}

async fn mark_processed(conn: &mut PgConnection, event: &Leased, result: Value) -> Result<(), WebhookError> {
    sqlx::query!(
        "UPDATE webhook_events
            SET status = 'processed', processed_at = now(), attempts = attempts + 1,
                last_error = NULL, result = $3
          WHERE shop_id = $1 AND id = $2",
        event.shop_id,
        event.id,
        result
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// `payment.succeeded`: pays the invoice with `payment_ref` as the
/// payment's `external_ref`, so the same payment recorded through the API
/// (before or after) is found instead of paid twice.
pub struct ApplyPayment {
    pub event: Leased,
}

impl Command for ApplyPayment {
    const ACTION: &'static str = "webhook.payment_succeeded";
    type Key = Claimed;
    type Output = PaymentReceipt;
    type Error = WebhookError;

    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<PaymentReceipt>, WebhookError> {
        let event = self.event;
        let data = open(unit.conn(), &event, |d: &PaymentSucceeded| {
            ("payment_ref", &d.payment_ref)
        })
        .await?;
        let pay = PayInvoice {
            method: PaymentMethod::Other,
            amount: Some(data.amount),
            wallet_id: None,
            external_ref: Some(data.payment_ref),
        };
        let (key, run) = invoices::pay(unit, key, event.tenant(), data.invoice_id, pay).await?;
        let receipt = run.value();
        same_currency(
            ("payment", &data.currency),
            ("invoice", &receipt.invoice.currency),
        )?;
        let result = json!({"payment_id": receipt.payment.id, "existing": receipt.existing});
        mark_processed(unit.conn(), &event, result).await?;
        Ok(key.ran(run))
    }
}

/// `refund.succeeded`: refunds the payment with `payment_ref` as its
/// `external_ref`, the refund keeping `refund_ref` as its own, so the same
/// refund recorded through the API (before or after) is found instead of
/// made twice. A payment not recorded yet fails the attempt: the event is
/// retried, as its `payment.succeeded` may still be on its way.
pub struct ApplyRefund {
    pub event: Leased,
}

impl Command for ApplyRefund {
    const ACTION: &'static str = "webhook.refund_succeeded";
    type Key = Claimed;
    type Output = RefundReceipt;
    type Error = WebhookError;

    async fn run(self, unit: &mut Unit<'_>, key: Claimed) -> Result<Ran<RefundReceipt>, WebhookError> {
        let event = self.event;
        let data = open(unit.conn(), &event, |d: &RefundSucceeded| {
            ("refund_ref", &d.refund_ref)
        })
        .await?;
        reference("payment_ref", &data.payment_ref)?;
        let tenant = event.tenant();
        let payment = invoices::payment_with_ref(unit.conn(), tenant, &data.payment_ref)
            .await?
            .ok_or_else(|| {
                WebhookError::Mismatch(format!("no payment has payment_ref {:?} yet", data.payment_ref))
            })?;
        same_currency(("refund", &data.currency), ("payment", &payment.currency))?;
        let refund = RefundPayment {
            amount: Some(data.amount),
            reason: Some(format!("refunded by {}", event.provider)),
            external_ref: Some(data.refund_ref),
        };
        let (key, run) =
            invoices::refund_payment(unit, key, tenant, payment.invoice_id, payment.id, refund).await?;
        let receipt = run.value();
        let result = json!({"refund_id": receipt.refund.id, "existing": receipt.existing});
        mark_processed(unit.conn(), &event, result).await?;
        Ok(key.ran(run))
    }
}

/// `credits.purchased`: a `top_up` credit of the wallet, in the wallet
/// credit's lean shape (it claims the key with the wallet's lock).
pub struct ApplyCredit {
    pub event: Leased,
}

impl Command for ApplyCredit {
    const ACTION: &'static str = "webhook.credits_purchased";
    type Key = Unclaimed;
    type Output = WalletTransaction;
    type Error = WebhookError;

    async fn run(self, unit: &mut Unit<'_>, key: Unclaimed) -> Result<Ran<WalletTransaction>, WebhookError> {
        let event = self.event;
        let data = open(unit.conn(), &event, |d: &CreditsPurchased| {
            ("purchase_ref", &d.purchase_ref)
        })
        .await?;
        let credit = CreditRequest {
            amount: data.amount,
            category: CreditCategory::TopUp,
            description: Some(format!("credits purchased ({})", event.provider)),
            metadata: Some(Metadata(
                [
                    ("purchase_ref".to_owned(), data.purchase_ref),
                    ("webhook_event_id".to_owned(), event.id.to_string()),
                ]
                .into(),
            )),
            expires_at: None,
            priority: None,
        };
        let ran = wallets::credit(unit, key, event.tenant(), data.wallet_id, credit).await?;
        let Some(tx) = ran.fresh() else {
            return Ok(ran);
        };
        same_currency(("purchase", &data.currency), ("wallet", &tx.currency))?;
        let result = json!({"wallet_transaction_id": tx.id});
        mark_processed(unit.conn(), &event, result).await?;
        Ok(ran)
    }
}

/// A new signing secret for a provider, shown once.
pub struct CreateSecret {
    pub tenant: Tenant,
    pub provider: String,
    /// How long the provider's earlier secrets keep verifying.
    pub grace: std::time::Duration,
}

command!(CreateSecret: "webhook_secret.create" => WebhookSecret, WebhookError,
    |c, conn| super::create_secret(conn, c.tenant, &c.provider, c.grace));

/// A failed or dead event back to pending.
pub struct Retry {
    pub tenant: Tenant,
    pub event_id: Uuid,
}

command!(Retry: "webhook_event.retry", status 200 => WebhookEvent, WebhookError,
    |c, conn| super::retry(conn, c.tenant, c.event_id));
