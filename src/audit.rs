//! The audit trail: one row per mutation, written by the idempotent executor
//! in the same statement that stores the outcome, so it commits or rolls
//! back with the change it records. Every audit row goes through one
//! writer, the completing statement (`idempotency::query_completing!`):
//! requests through the executor, a job's changes through `write`.

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

/// Entries as the completing statement's audit rows (`$4`), each with a
/// new id.
pub fn rows(entries: &[Entry<'_>]) -> serde_json::Value {
    entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "id": Uuid::now_v7(),
                "api_key_id": e.api_key_id,
                "action": e.action,
                "entity": e.entity,
                "entity_id": e.entity_id,
                "request_id": e.request_id,
                "detail": e.detail,
            })
        })
        .collect()
}

/// Writes the audit rows of one shop that no request's key records (a
/// job's changes), through the completing statement.
pub async fn write(
    conn: &mut sqlx::PgConnection,
    shop_id: Uuid,
    entries: &[Entry<'_>],
) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    crate::idempotency::query_completing!(
        crate::idempotency::Completion::audit_only(shop_id, entries),
        "SELECT 1 AS \"one!\""
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}
