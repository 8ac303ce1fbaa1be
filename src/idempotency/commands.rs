//! The idempotency records' own mutation as an executor command.

use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    executor::{Outcome, command},
    store::StoreError,
};

#[derive(Debug, Serialize, ToSchema)]
pub struct CleanupResult {
    pub id: Uuid,
    pub rows_deleted: u64,
}

impl Outcome for CleanupResult {
    const ENTITY: &'static str = "idempotency_cleanup";
    fn entity_id(&self) -> Uuid {
        self.id
    }
}

/// Runs the batches on the pool, each committing by itself: holding the
/// deleted rows until the request commits would block every retry of those
/// keys for the whole run. Only the result is recorded under the key.
pub struct Cleanup {
    pub pool: PgPool,
    pub batch: u32,
}

command!(Cleanup: "idempotency.cleanup", status 200 => CleanupResult, StoreError,
|c, _conn| async {
    let rows_deleted = super::cleanup(&c.pool, c.batch).await?;
    Ok::<_, StoreError>(CleanupResult {
        id: Uuid::now_v7(),
        rows_deleted,
    })
});
