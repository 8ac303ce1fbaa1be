//! The audit trail: one row per mutation, written by the idempotent executor
//! in the same statement that stores the outcome, so it commits or rolls
//! back with the change it records. Every audit row goes through one
//! writer, the completing statement (`idempotency::query_completing!`):
//! requests through the executor, a job's changes through `write`.

use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// The shop, or for platform (admin) actions the key's platform scope
    /// (`executor::Actor::platform`, a version-5 UUID).
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

/// Entries as the completing statement's audit columns (`$8`–`$14`),
/// each row with a new id.
#[derive(Debug, Clone, Default)]
pub struct Rows<'a> {
    pub ids: Vec<Uuid>,
    pub api_key_ids: Vec<Option<Uuid>>,
    pub actions: Vec<&'static str>,
    pub entities: Vec<&'static str>,
    pub entity_ids: Vec<Uuid>,
    pub request_ids: Vec<&'a str>,
    pub details: Vec<Option<serde_json::Value>>,
}

impl<'a> Rows<'a> {
    pub fn of(entries: &[Entry<'a>]) -> Self {
        Rows {
            ids: entries.iter().map(|_| Uuid::now_v7()).collect(),
            api_key_ids: entries.iter().map(|e| e.api_key_id).collect(),
            actions: entries.iter().map(|e| e.action).collect(),
            entities: entries.iter().map(|e| e.entity).collect(),
            entity_ids: entries.iter().map(|e| e.entity_id).collect(),
            request_ids: entries.iter().map(|e| e.request_id).collect(),
            details: entries.iter().map(|e| e.detail.clone()).collect(),
        }
    }

    pub fn push(&mut self, e: &Entry<'a>) {
        self.ids.push(Uuid::now_v7());
        self.api_key_ids.push(e.api_key_id);
        self.actions.push(e.action);
        self.entities.push(e.entity);
        self.entity_ids.push(e.entity_id);
        self.request_ids.push(e.request_id);
        self.details.push(e.detail.clone());
    }
}

/// Writes the audit rows of one shop that no request's key records (a
/// job's changes), through the completing statement.
pub async fn write<'a>(
    conn: &mut sqlx::PgConnection,
    shop_id: Uuid,
    entries: &[Entry<'a>],
) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let done = crate::idempotency::Completion::audit_only(shop_id, entries);
    crate::idempotency::query_completing!(done, "SELECT 1 AS \"one!\"")
        .fetch_one(conn)
        .await?;
    Ok(())
}
