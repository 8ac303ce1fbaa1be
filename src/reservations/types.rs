//! Reservation requests (validated DTOs) and the reservation object.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::{executor::Outcome, metadata::Metadata};

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReservation {
    /// Positive decimal string, at most the wallet currency's decimals.
    #[validate(custom(function = "crate::money::validate::amount"))]
    #[schema(example = "10.00", pattern = "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,18})?$")]
    pub amount: String,
    /// The caller's deterministic key for this hold (e.g. derived from a
    /// job id), unique per shop: sent again with the same wallet and amount
    /// it returns the existing hold (200), whatever the Idempotency-Key.
    #[validate(length(min = 1, max = 255, message = "must be 1 to 255 characters"))]
    #[schema(min_length = 1, max_length = 255)]
    pub reservation_key: Option<String>,
    /// Lifetime of the hold; default RESERVATION_DEFAULT_EXPIRY (15 min),
    /// at most RESERVATION_MAX_EXPIRY (7 days).
    #[validate(range(min = 1, message = "must be at least 1"))]
    #[schema(minimum = 1, maximum = 604800)]
    pub expires_in_seconds: Option<i64>,
    #[validate(length(max = 500, message = "must be at most 500 characters"))]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    #[validate(custom(function = "crate::metadata::bounded"))]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureReservation {
    /// What to capture, at most the held amount; default the whole hold.
    /// The rest is released.
    #[validate(custom(function = "crate::money::validate::amount"))]
    #[schema(example = "7.50", pattern = "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,18})?$")]
    pub amount: Option<String>,
}

/// Release takes no fields; an empty body is fine.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseReservation {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Holding `amount` in the wallet's `reserved`.
    Active,
    /// Settled: `captured_amount` was debited, the rest freed.
    Captured,
    /// Freed by request; nothing posted.
    Released,
    /// Freed at `expires_at` (by the expiry job, or by a late capture or
    /// release); nothing posted.
    Expired,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Active => "active",
            ReservationStatus::Captured => "captured",
            ReservationStatus::Released => "released",
            ReservationStatus::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reservation {
    pub id: Uuid,
    pub wallet_id: Uuid,
    /// The amount held.
    #[schema(example = "10.00")]
    pub amount: String,
    /// Debited at capture ("0" unless captured).
    #[schema(example = "0.00")]
    pub captured_amount: String,
    pub currency: String,
    pub status: ReservationStatus,
    pub reservation_key: Option<String>,
    pub description: Option<String>,
    pub metadata: Metadata,
    /// From this instant (the database's clock) the hold can no longer be
    /// captured.
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// When it left `active`.
    pub settled_at: Option<DateTime<Utc>>,
    /// The capture's debit in the wallet's history.
    pub wallet_transaction_id: Option<Uuid>,
}

/// A create's answer: a new hold (201), or the existing one its
/// `reservation_key` names (200).
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Held {
    pub reservation: Reservation,
    #[serde(skip)]
    pub existing: bool,
}

impl Outcome for Held {
    const ENTITY: &'static str = "reservation";
    fn entity_id(&self) -> Uuid {
        self.reservation.id
    }
    fn event_key(&self) -> Uuid {
        self.reservation.wallet_id
    }
    fn location(&self) -> Option<String> {
        Some(format!("/v1/reservations/{}", self.reservation.id))
    }
    fn status(&self) -> Option<u16> {
        self.existing.then_some(200)
    }
}

impl Outcome for Reservation {
    const ENTITY: &'static str = "reservation";
    fn entity_id(&self) -> Uuid {
        self.id
    }
    fn event_key(&self) -> Uuid {
        self.wallet_id
    }
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReservationListParams {
    /// Only reservations in this status.
    pub status: Option<ReservationStatus>,
    /// Page size, 1–100.
    #[validate(range(min = 1, max = 100, message = "must be between 1 and 100"))]
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    /// Id of the last reservation of the previous page.
    pub starting_after: Option<Uuid>,
}
