//! Idempotency records: the key type, the request fingerprint, and the SQL
//! that claims, completes, replays and expires them. The executor that wraps
//! a command in one transaction with its record is `crate::executor`.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

pub mod commands;
pub mod routes;

pub use commands::CleanupResult;

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

    /// A key the service makes for itself (`scope` names its maker, e.g.
    /// `webhook`). It contains a space, which no client key may, so no
    /// request can ever claim it or find what it stored.
    pub fn internal(scope: &str, id: &str) -> Self {
        IdempotencyKey(format!("{scope} {id}"))
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

/// What a claiming statement binds as `$1`–`$4`.
#[derive(Debug, Clone, Copy)]
pub struct ClaimParams<'a> {
    pub shop_id: Uuid,
    pub key: &'a str,
    pub fingerprint: &'a [u8],
    pub ttl_hours: i32,
}

/// `sqlx::query!` for a statement that first claims an idempotency key.
/// The prepended CTEs insert the key (or take over its expired record) and
/// leave `ours` with one row when the key is now this transaction's; the
/// statement's own SQL continues the `WITH` list (`, name AS (…) …`) or
/// ends it with the main statement, and may use `$1` as the shop id. `$1`–`$4` are the
/// claim's, the statement's own parameters start at `$5`.
///
/// The insert waits (bounded by `lock_timeout`) for a concurrent claimer of
/// the same key and then yields to its committed outcome; a live record
/// written by another request leaves `ours` empty.
macro_rules! query_claiming {
    ($claim:expr, $sql:literal $(, $args:expr)* $(,)?) => {{
        let claim: $crate::idempotency::ClaimParams<'_> = $claim;
        sqlx::query!(
            // Compact (`\` drops the line break and indentation): the
            // statement's text shows whole in pg_stat_activity.
            "WITH claim AS (\
                 INSERT INTO idempotency_keys (shop_id, key, fingerprint, expires_at) \
                 VALUES ($1, $2, $3, now() + make_interval(hours => $4)) \
                 ON CONFLICT (shop_id, key) DO NOTHING RETURNING 1), \
             takeover AS (\
                 UPDATE idempotency_keys \
                    SET fingerprint = $3, response_status = 0, response_content_type = '', \
                        response_location = NULL, response_etag = NULL, response_body = '', \
                        created_at = now(), expires_at = now() + make_interval(hours => $4) \
                  WHERE shop_id = $1 AND key = $2 AND expires_at <= now() RETURNING 1), \
             ours AS (SELECT 1 FROM claim UNION ALL SELECT 1 FROM takeover) "
                + $sql,
            claim.shop_id,
            claim.key,
            claim.fingerprint,
            claim.ttl_hours
            $(, $args)*
        )
    }};
}
pub(crate) use query_claiming;

/// What a completing statement binds as `$1`–`$18`: the outcomes stored
/// under their keys (`$2`–`$7`, one array per column: one key for a
/// request, a key per item for a batch, or none), the audit rows (`$8`–`$14`,
/// likewise: one row for a request, several for a job or a batch) and the
/// events (`$15`–`$18`).
#[derive(Debug, Clone, Default)]
pub struct Completion<'a> {
    pub shop_id: Uuid,
    pub stored: Vec<(&'a str, Stored)>,
    pub audit: crate::audit::Rows<'a>,
    pub events: crate::events::Rows,
}

/// The stored outcomes as the columns `query_completing!` unnests.
pub struct StoredRows<'s> {
    pub keys: Vec<&'s str>,
    pub statuses: Vec<i16>,
    pub content_types: Vec<&'s str>,
    pub locations: Vec<Option<&'s str>>,
    pub etags: Vec<Option<&'s str>>,
    pub bodies: Vec<&'s [u8]>,
}

impl<'a> Completion<'a> {
    pub fn new(
        shop_id: Uuid,
        key: &'a str,
        response: Option<&Stored>,
        audit: Option<&crate::audit::Entry<'a>>,
    ) -> Self {
        Completion {
            shop_id,
            stored: response.map(|r| (key, r.clone())).into_iter().collect(),
            audit: crate::audit::Rows::of(audit.map(std::slice::from_ref).unwrap_or_default()),
            events: crate::events::Rows::default(),
        }
    }

    /// Writes `events` too (in the completing statement's transaction).
    pub fn with_events(mut self, events: Vec<crate::events::Event>) -> Self {
        self.events.extend(events);
        self
    }

    /// Adds another key's outcome, audit entry and events (a batch's
    /// item).
    pub fn add(
        &mut self,
        key: &'a str,
        response: Stored,
        audit: &crate::audit::Entry<'a>,
        events: Vec<crate::events::Event>,
    ) {
        self.stored.push((key, response));
        self.audit.push(audit);
        self.events.extend(events);
    }

    /// Stores and audits nothing: for a statement that shares the SQL of a
    /// completing one.
    pub fn none(shop_id: Uuid) -> Self {
        Completion {
            shop_id,
            ..Completion::default()
        }
    }

    /// Audit rows of the shop and nothing stored: the audit writer for
    /// what no request's key records (a job's changes).
    pub fn audit_only(shop_id: Uuid, entries: &[crate::audit::Entry<'a>]) -> Self {
        Completion {
            audit: crate::audit::Rows::of(entries),
            ..Completion::none(shop_id)
        }
    }

    pub fn stored_rows(&self) -> StoredRows<'_> {
        let s = &self.stored;
        StoredRows {
            keys: s.iter().map(|(k, _)| *k).collect(),
            statuses: s.iter().map(|(_, r)| r.status as i16).collect(),
            content_types: s.iter().map(|(_, r)| r.content_type.as_str()).collect(),
            locations: s.iter().map(|(_, r)| r.location.as_deref()).collect(),
            etags: s.iter().map(|(_, r)| r.etag.as_deref()).collect(),
            bodies: s.iter().map(|(_, r)| r.body.as_slice()).collect(),
        }
    }
}

/// `sqlx::query!` for a statement that also stores the outcome under the
/// claimed key and writes the audit rows (the one audit writer) and the
/// events with their deliveries to the shop's subscribed endpoints (the one
/// event writer: the outbox), so a change, its record, its audit entry and
/// its events are one round trip. `$done` is a `Completion` variable. The
/// statement's SQL continues the `WITH` list or ends it; `$1` is the shop
/// id, its own parameters start at `$19`.
macro_rules! query_completing {
    ($done:ident, $sql:literal $(, $args:expr)* $(,)?) => {{
        let _: &$crate::idempotency::Completion<'_> = &$done;
        let stored = $done.stored_rows();
        sqlx::query!(
            "WITH stored AS (\
                 UPDATE idempotency_keys k \
                    SET response_status = s.status, response_content_type = s.content_type, \
                        response_location = s.location, response_etag = s.etag, response_body = s.body \
                   FROM UNNEST($2::text[], $3::smallint[], $4::text[], $5::text[], $6::text[], $7::bytea[]) \
                        AS s(key, status, content_type, location, etag, body) \
                  WHERE k.shop_id = $1 AND k.key = s.key), \
             audited AS (\
                 INSERT INTO audit_log \
                     (shop_id, id, api_key_id, action, entity, entity_id, request_id, detail) \
                 SELECT $1, a.id, a.api_key_id, a.action, a.entity, a.entity_id, a.request_id, a.detail \
                   FROM UNNEST($8::uuid[], $9::uuid[], $10::text[], $11::text[], $12::uuid[], \
                               $13::text[], $14::jsonb[]) \
                        AS a(id, api_key_id, action, entity, entity_id, request_id, detail)), \
             evented AS (\
                 INSERT INTO events (shop_id, id, type, ordering_key, data) \
                 SELECT $1, e.id, e.type, e.key, e.data::jsonb \
                   FROM UNNEST($15::uuid[], $16::text[], $17::uuid[], $18::text[]) AS e(id, type, key, data) \
                 RETURNING id, type, ordering_key, seq), \
             fanned AS (\
                 INSERT INTO event_deliveries \
                     (shop_id, id, endpoint_id, event_id, event_type, ordering_key, event_seq) \
                 SELECT $1, gen_random_uuid(), p.id, v.id, v.type, v.ordering_key, v.seq \
                   FROM evented v \
                   JOIN webhook_endpoints p ON p.shop_id = $1 AND NOT p.disabled AND p.deleted_at IS NULL \
                    AND (v.type = ANY (p.event_types) OR '*' = ANY (p.event_types))) "
                + $sql,
            $done.shop_id,
            &stored.keys as &[&str],
            &stored.statuses,
            &stored.content_types as &[&str],
            &stored.locations as &[Option<&str>],
            &stored.etags as &[Option<&str>],
            &stored.bodies as &[&[u8]],
            &$done.audit.ids,
            &$done.audit.api_key_ids as &[Option<Uuid>],
            &$done.audit.actions as &[&str],
            &$done.audit.entities as &[&str],
            &$done.audit.entity_ids,
            &$done.audit.request_ids as &[&str],
            &$done.audit.details as &[Option<serde_json::Value>],
            &$done.events.ids,
            &$done.events.types as &[&str],
            &$done.events.keys,
            &$done.events.data
            $(, $args)*
        )
    }};
}
pub(crate) use query_completing;

#[derive(Debug)]
pub enum Recorded {
    /// A committed outcome of the same request.
    Replay(Stored),
    /// The key was used with a different request.
    Mismatch,
    /// Its record vanished between the claim and the read (expired and
    /// deleted meanwhile): the caller should retry.
    Gone,
}

/// Claims a key in a statement of its own, for commands whose first
/// statement does not. `None`: the key is now this transaction's.
pub async fn claim(
    conn: &mut PgConnection,
    params: ClaimParams<'_>,
) -> Result<Option<Recorded>, sqlx::Error> {
    let ours = query_claiming!(params, "SELECT EXISTS (SELECT 1 FROM ours) AS \"ours!\"")
        .fetch_one(&mut *conn)
        .await?
        .ours;
    if ours {
        return Ok(None);
    }
    recorded(conn, params).await.map(Some)
}

/// The committed record of a key another request claimed: its outcome when
/// the request is the same one.
pub async fn recorded(conn: &mut PgConnection, params: ClaimParams<'_>) -> Result<Recorded, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT fingerprint, response_status, response_content_type, response_location,
                response_etag, response_body
           FROM idempotency_keys WHERE shop_id = $1 AND key = $2",
        params.shop_id,
        params.key
    )
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(Recorded::Gone);
    };
    if row.fingerprint != params.fingerprint {
        return Ok(Recorded::Mismatch);
    }
    Ok(Recorded::Replay(Stored {
        status: row.response_status as u16,
        content_type: row.response_content_type,
        location: row.response_location,
        etag: row.response_etag,
        body: row.response_body,
    }))
}

/// The committed outcome of the same request under a live key, read
/// without claiming the key: `None` when there is none (no record yet, an
/// expired one, or another request's), and then only a claim can tell.
pub async fn live_outcome(pool: &PgPool, params: ClaimParams<'_>) -> Result<Option<Stored>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT response_status, response_content_type, response_location, response_etag, response_body
           FROM idempotency_keys
          WHERE shop_id = $1 AND key = $2 AND fingerprint = $3 AND expires_at > now()
            AND response_status > 0",
        params.shop_id,
        params.key,
        params.fingerprint
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| Stored {
        status: r.response_status as u16,
        content_type: r.response_content_type,
        location: r.response_location,
        etag: r.response_etag,
        body: r.response_body,
    }))
}

/// Saves the outcome into the claimed row, with the audit entry of the
/// change when there is one, in one statement.
pub async fn complete(conn: &mut PgConnection, done: Completion<'_>) -> Result<(), sqlx::Error> {
    query_completing!(done, "SELECT 1 AS \"one!\"")
        .fetch_one(conn)
        .await?;
    Ok(())
}

/// Deletes expired records, shop by shop, oldest first, in batches of
/// `batch` (`store::delete_in_batches`), and records the run. Returns the
/// number of rows deleted.
pub async fn cleanup(pool: &PgPool, batch: u32) -> Result<u64, sqlx::Error> {
    // Oldest backlog first, as one table's batches would go.
    let shops = sqlx::query_scalar!(
        r#"SELECT shop_id AS "shop_id!" FROM idempotency_keys WHERE expires_at <= now()
            GROUP BY shop_id ORDER BY min(expires_at)"#
    )
    .fetch_all(pool)
    .await?;
    let total = crate::store::delete_in_batches(&shops, batch, |shop, limit| {
        sqlx::query!(
            "DELETE FROM idempotency_keys k
              USING (SELECT shop_id, key FROM idempotency_keys
                      WHERE shop_id = $2 AND expires_at <= now()
                      ORDER BY expires_at
                      LIMIT $1 FOR UPDATE SKIP LOCKED) doomed
              WHERE k.shop_id = $2 AND k.shop_id = doomed.shop_id AND k.key = doomed.key",
            limit,
            shop
        )
        .execute(pool)
    })
    .await?;
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
