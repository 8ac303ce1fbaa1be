//! The audit trail: one row per mutation, written by the idempotent executor
//! in the same statement that stores the outcome, so it commits or rolls
//! back with the change it records.

use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// The nil id for platform (admin) actions.
    pub shop_id: Uuid,
    pub api_key_id: Option<Uuid>,
    pub action: &'static str,
    pub entity: &'static str,
    pub entity_id: Uuid,
    pub request_id: &'a str,
    /// What the row adds about the change, e.g. the version a contract
    /// moved from.
    pub detail: Option<serde_json::Value>,
}
