//! What storing or loading can fail with, for every domain: the database
//! failed (retry may help), or data read back broke an invariant the
//! service keeps (a bug, never the caller's input). Each domain maps its
//! own constraint violations before an error becomes one of these.

use uuid::Uuid;

/// SQLSTATEs the service tells apart.
pub mod sqlstate {
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    pub const QUERY_CANCELED: &str = "57014";
    pub const DEADLOCK: &str = "40P01";
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const SERIALIZATION: &str = "40001";
    pub const NUMERIC_OUT_OF_RANGE: &str = "22003";
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
    pub const UNTRANSLATABLE_CHARACTER: &str = "22P05";
    /// Shut down, crashed or too many connections: the server is going away.
    pub const UNAVAILABLE: [&str; 4] = ["57P01", "57P02", "57P03", "53300"];
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("broken invariant: {0}")]
    Broken(String),
}

impl StoreError {
    pub fn broken(what: impl Into<String>) -> Self {
        StoreError::Broken(what.into())
    }

    /// A lock wait that ran out (`lock_timeout`).
    pub fn is_lock_timeout(&self) -> bool {
        matches!(self, StoreError::Db(e) if has_code(e, sqlstate::LOCK_NOT_AVAILABLE))
    }

    /// The whole transaction was rolled back and the same request may simply
    /// be retried: lock or statement timeouts, deadlocks, serialization
    /// failures, a lost connection or an exhausted pool.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(e) => is_transient(e),
            StoreError::Broken(_) => false,
        }
    }
}

/// Whether a database error has this SQLSTATE.
pub fn has_code(e: &sqlx::Error, code: &str) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(code))
}

/// Whether a database error is a unique violation. Citus reports one met
/// by a multi-row insert it copies into a shard as an internal error
/// (`XX000`) with PostgreSQL's message.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    has_code(e, sqlstate::UNIQUE_VIOLATION)
        || matches!(e, sqlx::Error::Database(db)
            if db.code().as_deref() == Some("XX000")
                && db.message().starts_with("duplicate key value violates unique constraint"))
}

/// Whether a database error has one of these SQLSTATEs.
pub fn has_any_code(e: &sqlx::Error, codes: &[&str]) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| codes.contains(&c.as_ref())))
}

/// The constraint a database error names. On Citus a worker's error is
/// relayed without its constraint field, its message naming the shard's
/// copy (`violates check constraint "wallets_not_overdrawn"`,
/// `unique constraint "credit_reservations_key_102040"`): then the name is
/// read from the message, without the shard id.
pub fn constraint(e: &sqlx::Error) -> Option<&str> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    db.constraint().or_else(|| constraint_in_message(db.message()))
}

/// The constraint a relayed message names, without a shard's id suffix.
fn constraint_in_message(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("constraint \"")?;
    let (name, _) = rest.split_once('"')?;
    Some(match name.rsplit_once('_') {
        Some((base, shard)) if shard.len() >= 6 && shard.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    })
}

pub fn is_transient(e: &sqlx::Error) -> bool {
    use sqlstate::*;
    match e {
        sqlx::Error::Database(_) => {
            has_any_code(e, &[LOCK_NOT_AVAILABLE, QUERY_CANCELED, DEADLOCK, SERIALIZATION])
                || has_any_code(e, &UNAVAILABLE)
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        _ => false,
    }
}

/// Deletes rows shop by shop, in batches of `batch` until one comes back
/// short: `delete(shop, limit)` is one statement deleting at most `limit`
/// of that shop's rows (`LIMIT … FOR UPDATE SKIP LOCKED`, so several
/// instances may run it; per shop, so on Citus it runs on the shop's shard)
/// that commits by itself, so no row stays locked for longer than one
/// batch. Returns the number deleted.
pub async fn delete_in_batches<F, Fut>(shops: &[Uuid], batch: u32, mut delete: F) -> Result<u64, sqlx::Error>
where
    F: FnMut(Uuid, i64) -> Fut,
    Fut: std::future::Future<Output = Result<sqlx::postgres::PgQueryResult, sqlx::Error>>,
{
    let mut total = 0u64;
    for &shop in shops {
        loop {
            let deleted = delete(shop, i64::from(batch)).await?.rows_affected();
            total += deleted;
            if deleted < u64::from(batch) {
                break;
            }
        }
    }
    Ok(total)
}

/// A Rust enum stored as text (its serde name, e.g. `pending_approval`).
/// Text that names no variant is a broken invariant, never a default.
pub fn decode<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    use serde::de::IntoDeserializer;
    T::deserialize(text.into_deserializer())
        .map_err(|e: serde::de::value::Error| StoreError::broken(format!("{what} {text:?}: {e}")))
}

/// Opens a transaction that a cancelled caller cannot leak. sqlx 0.8's
/// `begin()` sends `BEGIN` and counts the transaction only once the answer
/// is read; a future dropped in between (a client that hangs up) returns
/// the connection to the pool inside a transaction nothing will end, and
/// the next borrower's statements run in it (transact-rs/sqlx#4393).
/// Running `begin()` in a task of its own lets it finish: if the caller is
/// gone, the finished transaction is dropped with the task's output and
/// rolled back as any dropped transaction is.
#[allow(clippy::disallowed_methods)] // the one place sqlx's begin() is made safe
pub async fn begin(pool: &sqlx::PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let pool = pool.clone();
    match tokio::spawn(async move { pool.begin().await }).await {
        Ok(begun) => begun,
        // The task panicked or the runtime is shutting down.
        Err(e) => {
            tracing::error!(error = %e, "the task opening a transaction failed");
            Err(sqlx::Error::WorkerCrashed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_message_names_the_constraint_without_its_shard() {
        assert_eq!(
            constraint_in_message(
                r#"new row for relation "wallets_102025" violates check constraint "wallets_not_overdrawn""#
            ),
            Some("wallets_not_overdrawn")
        );
        assert_eq!(
            constraint_in_message(
                r#"duplicate key value violates unique constraint "credit_reservations_key_102040""#
            ),
            Some("credit_reservations_key")
        );
        assert_eq!(
            constraint_in_message("could not commit transaction for shard 102029"),
            None
        );
        assert_eq!(
            constraint_in_message(r#"violates check constraint "wallets_currency_check""#),
            Some("wallets_currency_check")
        );
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Colour {
        Red,
        DarkBlue,
    }

    #[test]
    fn stored_text_decodes_to_its_variant_or_is_a_broken_invariant() {
        assert_eq!(decode::<Colour>("colour", "dark_blue").unwrap(), Colour::DarkBlue);
        assert_eq!(decode::<Colour>("colour", "red").unwrap(), Colour::Red);
        for bad in ["", "Red", "darkBlue", "green"] {
            assert!(
                matches!(decode::<Colour>("colour", bad), Err(StoreError::Broken(_))),
                "{bad:?}"
            );
        }
    }
}
