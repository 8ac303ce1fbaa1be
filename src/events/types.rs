use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

/// Something that happened to the shop's objects, as it committed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// UUIDv7; also the `Webhook-Id` of its deliveries, the receiver's
    /// deduplication key.
    pub id: Uuid,
    #[serde(rename = "type")]
    #[schema(example = "wallet.debited")]
    pub type_: String,
    pub created_at: DateTime<Utc>,
    /// The object as the API showed it when the change committed.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventListParams {
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub type_: Option<String>,
    /// Only events created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Page size, 1–100.
    #[validate(range(min = 1, max = 100, message = "must be between 1 and 100"))]
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The last event seen: the page holds the events after it.
    pub starting_after: Option<Uuid>,
}

/// A request that takes no fields; an empty body is fine.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}
