//! Rolls up closed journal days for the reports.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::sync::watch;

use super::{Heartbeats, every};

pub const JOURNAL_ROLLUP_LOOP: &str = "journal_rollup";
/// How often closed days are rolled up (also once at start).
pub const JOURNAL_ROLLUP_INTERVAL: Duration = Duration::from_secs(600);

/// Rolls up closed journal days once at start, then every
/// JOURNAL_ROLLUP_INTERVAL (one instance at a time: an advisory lock).
pub async fn journal_rollup_loop(pool: PgPool, heartbeats: Arc<Heartbeats>, shutdown: watch::Receiver<bool>) {
    every(
        JOURNAL_ROLLUP_LOOP,
        JOURNAL_ROLLUP_INTERVAL,
        heartbeats,
        shutdown,
        || async {
            match crate::reports::rollup(&pool).await {
                Ok(days) => {
                    if days > 0 {
                        tracing::info!(days, "journal days rolled up");
                    }
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %e, "journal roll-up failed");
                    false
                }
            }
        },
    )
    .await
}
