//! Idempotency records: the key type, the request fingerprint, and the SQL
//! that claims, completes, replays and expires them. The HTTP executor that
//! wraps a use case in one transaction with its record is `http::idempotency`.

use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};

pub mod routes;
use uuid::Uuid;

/// Scope of platform admin requests; shops use their own id.
pub const ADMIN_SCOPE: Uuid = Uuid::nil();

/// 1–255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &[u8]) -> Result<Self, &'static str> {
        if raw.is_empty() || raw.len() > 255 {
            return Err("the Idempotency-Key header must be 1 to 255 characters long");
        }
        if !raw.iter().all(u8::is_ascii_graphic) {
            return Err("the Idempotency-Key header must be visible ASCII characters only");
        }
        Ok(IdempotencyKey(String::from_utf8_lossy(raw).into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// SHA-256 over method, path and body: what "the same request" means.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b"\n");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(body);
    h.finalize().to_vec()
}

/// A response saved for replay.
#[derive(Debug, Clone)]
pub struct Stored {
    pub status: u16,
    pub body: Vec<u8>,
    pub location: Option<String>,
}

#[derive(Debug)]
pub enum Claim {
    /// The key is ours for this transaction: execute the request.
    New,
    /// A committed outcome of the same request.
    Replay(Stored),
    /// The key was used with a different request.
    Mismatch,
}

/// Claims `key` inside the caller's transaction. A concurrent claimer of the
/// same key blocks on our uncommitted row (bounded by `lock_timeout`) and
/// then sees our committed outcome.
pub async fn claim(
    conn: &mut PgConnection,
    scope: Uuid,
    key: &IdempotencyKey,
    fingerprint: &[u8],
    ttl_hours: u32,
) -> Result<Claim, sqlx::Error> {
    let ttl = ttl_hours as i32;
    let inserted = sqlx::query_scalar!(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(hours => $4))
         ON CONFLICT (scope, key) DO NOTHING
         RETURNING true AS \"inserted!\"",
        scope,
        key.as_str(),
        fingerprint,
        ttl
    )
    .fetch_optional(&mut *conn)
    .await?;
    if inserted.is_some() {
        return Ok(Claim::New);
    }
    // Another request owns the key (committed, since the insert above waited
    // for it). Two rounds cover the race where an expired row is taken over
    // by someone else between our read and our update.
    for _ in 0..2 {
        let row = sqlx::query!(
            "SELECT fingerprint, response_status, response_body, response_location,
                    expires_at <= now() AS \"expired!\"
               FROM idempotency_keys WHERE scope = $1 AND key = $2",
            scope,
            key.as_str()
        )
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            // Deleted by cleanup after expiring: claim it afresh.
            return Box::pin(claim(conn, scope, key, fingerprint, ttl_hours)).await;
        };
        if row.expired {
            let taken = sqlx::query!(
                "UPDATE idempotency_keys
                    SET fingerprint = $3, response_status = 0, response_body = '',
                        response_location = NULL, created_at = now(),
                        expires_at = now() + make_interval(hours => $4)
                  WHERE scope = $1 AND key = $2 AND expires_at <= now()",
                scope,
                key.as_str(),
                fingerprint,
                ttl
            )
            .execute(&mut *conn)
            .await?;
            if taken.rows_affected() == 1 {
                return Ok(Claim::New);
            }
            continue;
        }
        if row.fingerprint != fingerprint {
            return Ok(Claim::Mismatch);
        }
        return Ok(Claim::Replay(Stored {
            status: row.response_status as u16,
            body: row.response_body,
            location: row.response_location,
        }));
    }
    Err(sqlx::Error::Protocol(
        "idempotency key kept changing hands".into(),
    ))
}

/// Saves the outcome into the claimed row, optionally with the audit entry
/// of the change, in one statement.
pub async fn complete(
    conn: &mut PgConnection,
    scope: Uuid,
    key: &IdempotencyKey,
    response: &Stored,
    audit: Option<&crate::audit::Entry>,
) -> Result<(), sqlx::Error> {
    let status = response.status as i16;
    match audit {
        Some(a) => {
            sqlx::query!(
                "WITH audit AS (
                     INSERT INTO audit_log (id, shop_id, api_key_id, action, entity, entity_id, request_id)
                     VALUES ($6, $7, $8, $9, $10, $11, $12)
                 )
                 UPDATE idempotency_keys
                    SET response_status = $3, response_body = $4, response_location = $5
                  WHERE scope = $1 AND key = $2",
                scope,
                key.as_str(),
                status,
                response.body,
                response.location,
                Uuid::now_v7(),
                a.shop_id,
                a.api_key_id,
                a.action,
                a.entity,
                a.entity_id,
                a.request_id,
            )
            .execute(conn)
            .await?;
        }
        None => {
            sqlx::query!(
                "UPDATE idempotency_keys
                    SET response_status = $3, response_body = $4, response_location = $5
                  WHERE scope = $1 AND key = $2",
                scope,
                key.as_str(),
                status,
                response.body,
                response.location,
            )
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// Deletes expired records in batches of `batch` (each its own short
/// transaction unless the caller holds one); `SKIP LOCKED` lets several
/// instances run it at once. Returns the number of rows deleted.
pub async fn cleanup(conn: &mut PgConnection, batch: u32) -> Result<u64, sqlx::Error> {
    let mut total = 0u64;
    loop {
        let deleted = sqlx::query!(
            "DELETE FROM idempotency_keys k
              USING (SELECT scope, key FROM idempotency_keys
                      WHERE expires_at <= now()
                      LIMIT $1 FOR UPDATE SKIP LOCKED) doomed
              WHERE k.scope = doomed.scope AND k.key = doomed.key",
            batch as i64
        )
        .execute(&mut *conn)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < batch as u64 {
            break;
        }
    }
    sqlx::query!(
        "INSERT INTO idempotency_cleanup_runs (rows_deleted) VALUES ($1)",
        total as i64
    )
    .execute(conn)
    .await?;
    Ok(total)
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Records stored, expired or not.
    pub total: i64,
    /// Records past their expiry that cleanup has not deleted yet.
    pub expired: i64,
    pub oldest_created_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_cleanup_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_cleanup_rows_deleted: Option<i64>,
}

pub async fn stats(pool: &PgPool) -> Result<Stats, sqlx::Error> {
    let r = sqlx::query!(
        "SELECT (SELECT count(*) FROM idempotency_keys) AS \"total!\",
                (SELECT count(*) FROM idempotency_keys WHERE expires_at <= now()) AS \"expired!\",
                (SELECT min(created_at) FROM idempotency_keys) AS oldest,
                last.finished_at AS \"last_at?\", last.rows_deleted AS \"last_rows?\"
           FROM (SELECT 1) one
           LEFT JOIN LATERAL (SELECT finished_at, rows_deleted FROM idempotency_cleanup_runs
                               ORDER BY id DESC LIMIT 1) last ON true"
    )
    .fetch_one(pool)
    .await?;
    Ok(Stats {
        total: r.total,
        expired: r.expired,
        oldest_created_at: r.oldest,
        last_cleanup_at: r.last_at,
        last_cleanup_rows_deleted: r.last_rows,
    })
}
