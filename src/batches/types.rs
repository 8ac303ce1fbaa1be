use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use crate::executor::Outcome;

/// The most items one batch may carry.
pub const MAX_ITEMS: usize = 1000;

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// 1 to 1,000 items, applied in this order. Each is `{op,
    /// idempotency_key, ...}`: `op` one of `credit`, `debit`, `transfer`,
    /// `reserve`, `capture`, `release`, `refund`; `idempotency_key` the
    /// item's own key (as the single request's header would be); then the
    /// single request's body fields plus what its path carries: `wallet_id`
    /// (credit, debit, reserve, refund), `reservation_id` (capture,
    /// release), `transaction_id` (refund).
    #[validate(length(min = 1, max = 1000, message = "must hold 1 to 1,000 items"))]
    #[schema(value_type = Vec<Object>, min_items = 1, max_items = 1000,
        example = json!([{"op": "debit", "idempotency_key": "usage-2026-05-01-cus42", "wallet_id": "01a23454-ebe4-710d-8835-11a46b0e3336", "amount": "1.00", "category": "usage"}]))]
    pub items: Vec<Map<String, Value>>,
    /// `true` (the default): every item applies or none does. `false`: each
    /// item applies on its own and answers with its own status.
    pub atomic: Option<bool>,
}

/// The batch's answer: every item's answer, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    pub id: Uuid,
    pub atomic: bool,
    pub items: Vec<ItemResult>,
}

/// One item's answer: what its single request would have answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemResult {
    pub index: usize,
    /// The single request's status (an atomic batch's items are all 2xx).
    pub status: u16,
    /// The single request's body: the object, or its problem.
    #[schema(value_type = Object)]
    pub body: Value,
    /// `true` when answered from the key's record: an earlier request (a
    /// single one or another batch's item) with the same key and body.
    pub replayed: bool,
}

impl Outcome for BatchResult {
    const ENTITY: &'static str = "batch";
    fn entity_id(&self) -> Uuid {
        self.id
    }
}
