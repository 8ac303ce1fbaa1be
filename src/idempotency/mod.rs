//! Idempotency records: the key type, the request fingerprint, and the SQL
//! that claims, completes, replays and expires them. The executor that wraps
//! a command in one transaction with its record is `crate::executor`.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

pub mod routes;

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

/// SHA-256 of what "the same request" means.
pub type Fingerprint = [u8; 32];

/// Method, path, `If-Match` when present (another precondition is another
/// request) and a canonical form of the parsed JSON body: object keys sorted,
/// no whitespace, values exactly as sent (`"10"` and `"10.00"` differ).
pub fn fingerprint(method: &str, path: &str, if_match: Option<&[u8]>, body: &Value) -> Fingerprint {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), b"\n", path.as_bytes(), b"\n"] {
        h.update(part);
    }
    if let Some(tag) = if_match {
        h.update(b"if-match:");
        h.update(tag);
    }
    h.update(b"\n");
    // serde_json's map is ordered by key (no `preserve_order`), and writing
    // into a hasher cannot fail.
    serde_json::to_writer(&mut h, body).expect("hashing a JSON value cannot fail");
    h.finalize().into()
}

/// An outcome saved for replay: status, the headers a replay repeats, body.
#[derive(Debug, Clone)]
pub struct Stored {
    pub status: u16,
    pub content_type: String,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub body: Vec<u8>,
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
    shop_id: Uuid,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
    ttl_hours: u32,
) -> Result<Claim, sqlx::Error> {
    let ttl = ttl_hours as i32;
    let inserted = sqlx::query_scalar!(
        "INSERT INTO idempotency_keys (shop_id, key, fingerprint, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(hours => $4))
         ON CONFLICT (shop_id, key) DO NOTHING
         RETURNING true AS \"inserted!\"",
        shop_id,
        key.as_str(),
        fingerprint.as_slice(),
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
            "SELECT fingerprint, response_status, response_content_type, response_location,
                    response_etag, response_body, expires_at <= now() AS \"expired!\"
               FROM idempotency_keys WHERE shop_id = $1 AND key = $2",
            shop_id,
            key.as_str()
        )
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            // Deleted by cleanup after expiring: claim it afresh.
            return Box::pin(claim(conn, shop_id, key, fingerprint, ttl_hours)).await;
        };
        if row.expired {
            let taken = sqlx::query!(
                "UPDATE idempotency_keys
                    SET fingerprint = $3, response_status = 0, response_content_type = '',
                        response_location = NULL, response_etag = NULL, response_body = '',
                        created_at = now(), expires_at = now() + make_interval(hours => $4)
                  WHERE shop_id = $1 AND key = $2 AND expires_at <= now()",
                shop_id,
                key.as_str(),
                fingerprint.as_slice(),
                ttl
            )
            .execute(&mut *conn)
            .await?;
            if taken.rows_affected() == 1 {
                return Ok(Claim::New);
            }
            continue;
        }
        if row.fingerprint != fingerprint.as_slice() {
            return Ok(Claim::Mismatch);
        }
        return Ok(Claim::Replay(Stored {
            status: row.response_status as u16,
            content_type: row.response_content_type,
            location: row.response_location,
            etag: row.response_etag,
            body: row.response_body,
        }));
    }
    Err(sqlx::Error::Protocol(
        "idempotency key kept changing hands".into(),
    ))
}

/// Saves the outcome into the claimed row, with the audit entry of the
/// change when there is one, in one statement.
pub async fn complete(
    conn: &mut PgConnection,
    shop_id: Uuid,
    key: &IdempotencyKey,
    response: &Stored,
    audit: Option<&crate::audit::Entry<'_>>,
) -> Result<(), sqlx::Error> {
    let status = response.status as i16;
    let audit_id = audit.map(|_| Uuid::now_v7());
    // Without an entry the audit CTE inserts nothing ($8 is NULL).
    sqlx::query!(
        "WITH audit AS (
             INSERT INTO audit_log (shop_id, id, api_key_id, action, entity, entity_id, request_id)
             SELECT $1, $8, $9, $10, $11, $12, $13 WHERE $8::uuid IS NOT NULL
         )
         UPDATE idempotency_keys
            SET response_status = $3, response_content_type = $4, response_location = $5,
                response_etag = $6, response_body = $7
          WHERE shop_id = $1 AND key = $2",
        shop_id,
        key.as_str(),
        status,
        response.content_type,
        response.location,
        response.etag,
        response.body,
        audit_id,
        audit.and_then(|a| a.api_key_id),
        audit.map(|a| a.action),
        audit.map(|a| a.entity),
        audit.map(|a| a.entity_id),
        audit.map(|a| a.request_id),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes expired records, oldest first, in batches of `batch`. Each batch
/// is its own statement on the pool and commits by itself, so a run holds no
/// row locked for longer than one batch; `SKIP LOCKED` lets several
/// instances run it at once. Returns the number of rows deleted.
pub async fn cleanup(pool: &PgPool, batch: u32) -> Result<u64, sqlx::Error> {
    let mut total = 0u64;
    loop {
        let deleted = sqlx::query!(
            "DELETE FROM idempotency_keys k
              USING (SELECT shop_id, key FROM idempotency_keys
                      WHERE expires_at <= now()
                      ORDER BY expires_at
                      LIMIT $1 FOR UPDATE SKIP LOCKED) doomed
              WHERE k.shop_id = doomed.shop_id AND k.key = doomed.key",
            batch as i64
        )
        .execute(pool)
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
    .execute(pool)
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
