//! Delivering events to the shop's endpoints: where a delivery may go (no
//! loopback, private, link-local or metadata address unless its host is
//! allowed, checked again at every connection so DNS cannot rebind it),
//! the signed POST, and the delivery rows the worker (`jobs::event_delivery`)
//! leases and records.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use super::{EventError, EventView};
use crate::{
    config::EventConfig,
    executor::{Outcome, command},
    pagination::Page,
    tenants::Tenant,
    webhooks::{pg_interval, signature},
};

/// Where the worker is woken when a delivery is due now (a manual retry).
pub const CHANNEL: &str = "event_deliveries";

/// Whether deliveries may reach `ip` without its host being allowed: not
/// loopback, private, link-local (cloud metadata), shared, multicast,
/// unspecified or otherwise special.
pub fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared (CGNAT)
                || (a == 192 && b == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254, …)
                    || (first & 0xffc0) == 0xfe80 // link-local
                    || first == 0x2001 && v6.segments()[1] == 0xdb8)
            }
        },
    }
}

/// The rule for delivery addresses, with ENDPOINT_ALLOWED_HOSTS.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    allowed: Arc<Vec<String>>,
}

impl Destinations {
    pub fn new(allowed: &[String]) -> Self {
        Destinations {
            allowed: Arc::new(
                allowed
                    .iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect(),
            ),
        }
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.allowed.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// The URL as stored, or why deliveries may not go there. A name is
    /// resolved too (a name that does not resolve yet is accepted: every
    /// delivery resolves it again and checks what it finds).
    pub async fn check_url(&self, raw: &str) -> Result<String, EventError> {
        let bad = |m: &str| EventError::invalid("url", m);
        let url = reqwest::Url::parse(raw).map_err(|e| bad(&format!("not a URL: {e}")))?;
        let host = url.host_str().ok_or_else(|| bad("has no host"))?.to_owned();
        let allowed = self.allows(&host);
        match url.scheme() {
            "https" => {}
            "http" if allowed => {}
            _ => {
                return Err(bad(
                    "must be https (plain http only for hosts in ENDPOINT_ALLOWED_HOSTS)",
                ));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not carry credentials"));
        }
        if allowed {
            return Ok(url.into());
        }
        let refused = || bad("points at a loopback, private, link-local or otherwise non-public address");
        if let Some(ip) = literal(&url) {
            return if public(ip) {
                Ok(url.into())
            } else {
                Err(refused())
            };
        }
        if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
            return Err(refused());
        }
        let lookup = tokio::net::lookup_host((host.as_str(), url.port_or_known_default().unwrap_or(443)));
        if let Ok(Ok(addrs)) = tokio::time::timeout(Duration::from_secs(2), lookup).await
            && addrs.into_iter().any(|a| !public(a.ip()))
        {
            return Err(refused());
        }
        Ok(url.into())
    }

    /// The HTTP client of the worker: bounded connect and total time, no
    /// redirects (a 3xx is a failed attempt), every name resolved through
    /// the address rule.
    pub fn client(&self, timeout: Duration) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("billing-ledger/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(Guarded(self.clone())))
            .build()
    }
}

/// The address a URL names literally (`https://10.0.0.1/`, `https://[::1]/`).
fn literal(url: &reqwest::Url) -> Option<IpAddr> {
    url.host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Resolves names for deliveries and keeps only addresses they may reach,
/// at connection time (a name that resolved to a public address when the
/// endpoint was saved cannot be rebound to a private one).
struct Guarded(Destinations);

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let allowed = self.0.allows(&host);
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok: Vec<SocketAddr> = found.into_iter().filter(|a| allowed || public(a.ip())).collect();
            if ok.is_empty() {
                return Err(format!("{host} resolves to no address deliveries may reach").into());
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A delivery a worker leased, with what posting it needs.
#[derive(Debug, Clone)]
pub struct Leased {
    pub shop_id: Uuid,
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub attempts: i32,
    pub leased_until: DateTime<Utc>,
    pub url: String,
    pub secrets: Vec<String>,
    pub event: EventView,
}

/// How one attempt ended.
#[derive(Debug)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
}

impl Attempt {
    pub fn delivered(&self) -> bool {
        self.status_code.is_some_and(|c| (200..300).contains(&c))
    }
}

/// Posts the event, signed like inbound webhooks (`Webhook-Signature:
/// t=…,v1=…`, a `v1=` per live secret) with `Webhook-Id: <event id>`.
pub async fn post(client: &reqwest::Client, destinations: &Destinations, d: &Leased) -> Attempt {
    let at = Utc::now();
    let started = Instant::now();
    let result = send(client, destinations, d).await;
    let latency = started.elapsed();
    match result {
        Ok(code) => Attempt {
            at,
            status_code: Some(code),
            latency,
            error: (!(200..300).contains(&code)).then(|| format!("answered HTTP {code}")),
        },
        Err(error) => Attempt {
            at,
            status_code: None,
            latency,
            error: Some(error),
        },
    }
}

async fn send(client: &reqwest::Client, destinations: &Destinations, d: &Leased) -> Result<u16, String> {
    let url = reqwest::Url::parse(&d.url).map_err(|e| format!("bad URL: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    if let Some(ip) = literal(&url)
        && !destinations.allows(host)
        && !public(ip)
    {
        return Err(format!("{ip} is not an address deliveries may reach"));
    }
    let body = serde_json::to_vec(&d.event).map_err(|e| e.to_string())?;
    let t = Utc::now().timestamp();
    let header = signature::sign_all(d.secrets.iter().map(String::as_str), t, &body);
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", d.event.id.to_string())
        .header("webhook-signature", header)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            // The chain names the cause (refused, timed out, blocked name).
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            msg.chars().take(500).collect::<String>()
        })?;
    Ok(response.status().as_u16())
}

/// Endpoints with deliveries due (a plain read over all shops; each is
/// then leased on its own shop's shard).
pub async fn due_endpoints(pool: &PgPool) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT DISTINCT d.shop_id AS "shop_id!", d.endpoint_id AS "endpoint_id!"
             FROM event_deliveries d
            WHERE d.status = 'pending' AND d.next_attempt_at <= now()
              AND (d.leased_until IS NULL OR d.leased_until < now())"#
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.shop_id, r.endpoint_id)).collect())
}

/// Leases up to `limit` due deliveries of one endpoint for `lease`, oldest
/// first, none while an earlier delivery of the same ordering key (wallet)
/// is still pending: a wallet's events reach the endpoint in commit order,
/// and one that keeps failing holds the later ones back until it is
/// delivered or ends `failed`. A wallet's events take their `seq` under its
/// row lock, so once one is committed every earlier one is too: none can
/// still be committing behind it.
pub async fn lease(
    pool: &PgPool,
    shop_id: Uuid,
    endpoint_id: Uuid,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Leased>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"WITH heads AS (
               -- Each ordering key's earliest pending delivery, in one pass
               -- over event_deliveries_order (key, seq): only a head may go.
               SELECT DISTINCT ON (h.ordering_key) h.id, h.event_seq, h.next_attempt_at, h.leased_until
                 FROM event_deliveries h
                WHERE h.shop_id = $1 AND h.endpoint_id = $2 AND h.status = 'pending'
                ORDER BY h.ordering_key, h.event_seq
           ),
           due AS (
               SELECT c.id FROM event_deliveries c
                WHERE c.shop_id = $1 AND c.status = 'pending'
                  AND c.next_attempt_at <= now() AND (c.leased_until IS NULL OR c.leased_until < now())
                  AND c.id IN (
                      SELECT heads.id FROM heads
                       WHERE heads.next_attempt_at <= now()
                         AND (heads.leased_until IS NULL OR heads.leased_until < now())
                       ORDER BY heads.event_seq LIMIT $3)
                  AND EXISTS (
                      SELECT 1 FROM webhook_endpoints p
                       WHERE p.shop_id = $1 AND p.id = $2 AND NOT p.disabled AND p.deleted_at IS NULL)
                FOR UPDATE OF c SKIP LOCKED
           ),
           leased AS (
               UPDATE event_deliveries d SET leased_until = now() + $4::interval, updated_at = now()
                 FROM due WHERE d.shop_id = $1 AND d.id = due.id
               RETURNING d.id, d.event_id, d.attempts, d.leased_until
           )
           SELECT l.id, l.attempts, l.leased_until AS "leased_until!", e.id AS event_id,
                  e.type AS event_type, e.created_at, e.data, p.url, p.secret,
                  CASE WHEN p.previous_expires_at > now() THEN p.previous_secret END AS previous_secret
             FROM leased l
             JOIN events e ON e.shop_id = $1 AND e.id = l.event_id
             JOIN webhook_endpoints p ON p.shop_id = $1 AND p.id = $2"#,
        shop_id,
        endpoint_id,
        limit,
        pg_interval(lease),
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Leased {
            shop_id,
            id: r.id,
            endpoint_id,
            attempts: r.attempts,
            leased_until: r.leased_until,
            url: r.url,
            secrets: std::iter::once(r.secret).chain(r.previous_secret).collect(),
            event: EventView {
                id: r.event_id,
                type_: r.event_type,
                created_at: r.created_at,
                data: r.data,
            },
        })
        .collect())
}

/// Marks up to `limit` pending deliveries of a deleted endpoint `failed`
/// (none in flight: an attempt under lease is recorded first); how many.
/// The worker runs it when an endpoint has nothing left to lease, so a
/// deleted endpoint's backlog ends `failed` a batch at a time.
pub async fn fail_deleted(
    pool: &PgPool,
    shop_id: Uuid,
    endpoint_id: Uuid,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "WITH gone AS (
             SELECT c.id FROM event_deliveries c
              WHERE c.shop_id = $1 AND c.endpoint_id = $2 AND c.status = 'pending'
                AND (c.leased_until IS NULL OR c.leased_until < now())
                AND EXISTS (SELECT 1 FROM webhook_endpoints p
                             WHERE p.shop_id = $1 AND p.id = $2 AND p.deleted_at IS NOT NULL)
              LIMIT $3 FOR UPDATE OF c SKIP LOCKED
         )
         UPDATE event_deliveries d
            SET status = 'failed', last_error = 'the endpoint was deleted', leased_until = NULL,
                updated_at = now()
           FROM gone WHERE d.shop_id = $1 AND d.id = gone.id",
        shop_id,
        endpoint_id,
        limit
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Records the attempts of one round of an endpoint's leased deliveries in
/// one statement: each `delivered` on a 2xx (that attempt kept on the
/// delivery's own row), else pending again after
/// min(base × 2^attempts, max) × (0.5–1.5), or `failed` (dead letter) at
/// its last attempt; an endpoint whose deliveries ended `failed`
/// ENDPOINT_FAILURE_LIMIT times in a row is disabled, with why. Returns
/// each recorded delivery's new status; one missing lost its lease while
/// posting (another worker has it).
pub async fn record_round(
    pool: &PgPool,
    round: &[(Leased, Attempt)],
    config: &EventConfig,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    let Some((first, _)) = round.first() else {
        return Ok(Vec::new());
    };
    // Computed here from the attempts the lease saw: the lease makes this
    // worker the only one on the delivery (and Citus runs no volatile
    // function in a distributed UPDATE, nor a timestamp's arithmetic, which
    // depends on the time zone, inside CASE).
    let next_at: Vec<DateTime<Utc>> = round
        .iter()
        .map(|(d, a)| {
            let delay = crate::jobs::backoff(
                config.delivery_backoff_base,
                config.delivery_backoff_max,
                d.attempts,
            );
            a.at + chrono::Duration::from_std(delay).unwrap_or_else(|_| chrono::Duration::days(1))
        })
        .collect();
    let rows = sqlx::query!(
        r#"WITH r AS (
               SELECT * FROM unnest($2::uuid[], $3::timestamptz[], $4::bool[], $5::timestamptz[],
                                    $6::timestamptz[], $7::int[], $8::text[], $9::uuid[], $10::int[])
                      AS r(id, leased_until, delivered, at, next_at, status_code, error, attempt_id, latency_ms)
           ),
           d AS (
               UPDATE event_deliveries d
                  SET attempts = d.attempts + 1,
                      status = CASE WHEN r.delivered THEN 'delivered'
                                    WHEN d.attempts + 1 >= $11 THEN 'failed' ELSE 'pending' END,
                      delivered_at = CASE WHEN r.delivered THEN r.at END,
                      delivered_latency_ms = CASE WHEN r.delivered THEN r.latency_ms END,
                      next_attempt_at = CASE WHEN r.delivered THEN d.next_attempt_at
                                             ELSE r.next_at END,
                      leased_until = NULL, last_status_code = r.status_code, last_error = r.error,
                      updated_at = r.at
                 FROM r
                WHERE d.shop_id = $1 AND d.id = r.id AND d.leased_until = r.leased_until
               RETURNING d.id, d.status
           ),
           a AS (
               -- A delivered attempt stays on its delivery's row.
               INSERT INTO delivery_attempts (shop_id, id, delivery_id, attempted_at, status_code, latency_ms, error)
               SELECT $1, r.attempt_id, r.id, r.at, r.status_code, r.latency_ms, r.error
                 FROM r JOIN d ON d.id = r.id WHERE NOT r.delivered
           ),
           tally AS (
               SELECT count(*) FILTER (WHERE d.status = 'failed') AS failed,
                      count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
                      (SELECT r.error FROM r JOIN d f ON f.id = r.id AND f.status = 'failed'
                        ORDER BY r.at DESC LIMIT 1) AS last_error
                 FROM d
           ),
           p AS (
               -- A delivered one breaks a run of failures: the round's
               -- failures then count from zero.
               UPDATE webhook_endpoints p
                  SET consecutive_failures = CASE WHEN t.delivered > 0 THEN t.failed
                                                  ELSE p.consecutive_failures + t.failed END,
                      disabled = p.disabled OR (t.failed > 0 AND
                          CASE WHEN t.delivered > 0 THEN t.failed ELSE p.consecutive_failures + t.failed END >= $13),
                      disabled_reason = CASE
                          WHEN NOT p.disabled AND t.failed > 0 AND
                               CASE WHEN t.delivered > 0 THEN t.failed ELSE p.consecutive_failures + t.failed END >= $13
                          -- Concatenated: Citus takes no format() (not
                          -- immutable) inside CASE.
                          THEN 'disabled after '
                               || (CASE WHEN t.delivered > 0 THEN t.failed
                                        ELSE p.consecutive_failures + t.failed END)::text
                               || ' deliveries in a row ended failed; the last: ' || coalesce(t.last_error, 'no answer')
                          ELSE p.disabled_reason END,
                      updated_at = now()
                 FROM tally t
                WHERE p.shop_id = $1 AND p.id = $12
                  AND (t.failed > 0 OR (t.delivered > 0 AND p.consecutive_failures > 0))
           )
           SELECT id AS "id!", status AS "status!" FROM d"#,
        first.shop_id,
        &round.iter().map(|(d, _)| d.id).collect::<Vec<_>>(),
        &round.iter().map(|(d, _)| d.leased_until).collect::<Vec<_>>(),
        &round.iter().map(|(_, a)| a.delivered()).collect::<Vec<_>>(),
        &round.iter().map(|(_, a)| a.at).collect::<Vec<_>>(),
        &next_at,
        &round
            .iter()
            .map(|(_, a)| a.status_code.map(i32::from))
            .collect::<Vec<_>>() as &[Option<i32>],
        &round.iter().map(|(_, a)| a.error.clone()).collect::<Vec<_>>() as &[Option<String>],
        &round.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>(),
        &round
            .iter()
            .map(|(_, a)| a.latency.as_millis().min(i32::MAX as u128) as i32)
            .collect::<Vec<_>>(),
        config.delivery_max_attempts as i32,
        first.endpoint_id,
        config.endpoint_failure_limit as i32,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.status)).collect())
}

/// One try of a delivery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryAttempt {
    pub attempted_at: DateTime<Utc>,
    /// The receiver's answer; `null` when none came (refused, timed out,
    /// address not allowed).
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Every attempt failed (dead letter); `retry` sends it again.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// One event's delivery to one endpoint, with its attempts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<DeliveryAttempt>,
}

impl Outcome for Delivery {
    const ENTITY: &'static str = "event_delivery";
    fn entity_id(&self) -> Uuid {
        self.id
    }
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryListParams {
    /// Only deliveries in this status.
    pub status: Option<DeliveryStatus>,
    /// Page size, 1–100.
    #[validate(range(min = 1, max = 100, message = "must be between 1 and 100"))]
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Id of the last delivery of the previous page (newest first).
    pub starting_after: Option<Uuid>,
}

struct Row {
    id: Uuid,
    endpoint_id: Uuid,
    event_id: Uuid,
    event_type: String,
    status: String,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    last_status_code: Option<i32>,
    last_error: Option<String>,
    delivered_at: Option<DateTime<Utc>>,
    delivered_latency_ms: Option<i32>,
    created_at: DateTime<Utc>,
    attempt_log: Option<serde_json::Value>,
}

impl Row {
    fn view(self) -> Result<Delivery, EventError> {
        let status: DeliveryStatus = crate::store::decode("delivery status", &self.status)?;
        let mut attempt_log: Vec<DeliveryAttempt> = match self.attempt_log {
            Some(log) => serde_json::from_value(log)
                .map_err(|e| crate::store::StoreError::broken(format!("delivery attempts: {e}")))?,
            None => Vec::new(),
        };
        // The attempt that delivered it lives on the delivery's row.
        if let (Some(at), Some(latency_ms)) = (self.delivered_at, self.delivered_latency_ms) {
            attempt_log.push(DeliveryAttempt {
                attempted_at: at,
                status_code: self.last_status_code,
                latency_ms,
                error: None,
            });
        }
        Ok(Delivery {
            id: self.id,
            endpoint_id: self.endpoint_id,
            event_id: self.event_id,
            event_type: self.event_type,
            status,
            attempts: self.attempts,
            next_attempt_at: (status == DeliveryStatus::Pending).then_some(self.next_attempt_at),
            last_status_code: self.last_status_code,
            last_error: self.last_error,
            delivered_at: self.delivered_at,
            created_at: self.created_at,
            attempt_log,
        })
    }
}

/// The endpoint's deliveries, newest first.
pub async fn list(
    conn: &mut PgConnection,
    tenant: Tenant,
    endpoint_id: Uuid,
    q: &DeliveryListParams,
) -> Result<Page<Delivery>, EventError> {
    super::endpoints::get(&mut *conn, tenant, endpoint_id).await?;
    let limit = q.limit.unwrap_or(20);
    let rows = sqlx::query_as!(
        Row,
        r#"SELECT d.id, d.endpoint_id, d.event_id, d.event_type, d.status, d.attempts, d.next_attempt_at,
                  d.last_status_code, d.last_error, d.delivered_at, d.delivered_latency_ms, d.created_at,
                  (SELECT jsonb_agg(jsonb_build_object('attempted_at', a.attempted_at,
                              'status_code', a.status_code, 'latency_ms', a.latency_ms, 'error', a.error)
                              ORDER BY a.attempted_at)
                     FROM delivery_attempts a WHERE a.shop_id = $1 AND a.delivery_id = d.id) AS attempt_log
             FROM event_deliveries d
            WHERE d.shop_id = $1 AND d.endpoint_id = $2 AND ($3::text IS NULL OR d.status = $3)
              AND ($4::uuid IS NULL OR d.event_id <
                   (SELECT c.event_id FROM event_deliveries c WHERE c.shop_id = $1 AND c.id = $4))
            ORDER BY d.event_id DESC
            LIMIT $5"#,
        tenant.shop_id,
        endpoint_id,
        q.status.map(DeliveryStatus::as_str),
        q.starting_after,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    let rows = rows.into_iter().map(Row::view).collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows(rows, limit))
}

/// Sends one delivery again now, whatever its status (a receiver
/// deduplicates by `Webhook-Id`): pending and due at once; the worker is
/// woken. One that is being posted right now is left to that attempt.
pub async fn retry(
    conn: &mut PgConnection,
    tenant: Tenant,
    endpoint_id: Uuid,
    id: Uuid,
) -> Result<Delivery, EventError> {
    // A deleted endpoint's deliveries are gone with it; a disabled one's
    // would wait until it is enabled again, so that is said now.
    let disabled = sqlx::query_scalar!(
        "SELECT disabled FROM webhook_endpoints WHERE shop_id = $1 AND id = $2 AND deleted_at IS NULL FOR SHARE",
        tenant.shop_id,
        endpoint_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(EventError::NotFound)?;
    if disabled {
        return Err(EventError::InvalidState(
            "the endpoint is disabled: enable it (PATCH disabled=false) to retry its deliveries".into(),
        ));
    }
    // A delivered one's last attempt moves from its row to the log first,
    // under the row's lock: a concurrent retry waits, then finds it moved.
    sqlx::query!(
        "INSERT INTO delivery_attempts (shop_id, id, delivery_id, attempted_at, status_code, latency_ms)
         SELECT d.shop_id, $4, d.id, d.delivered_at, d.last_status_code, d.delivered_latency_ms
           FROM event_deliveries d
          WHERE d.shop_id = $1 AND d.endpoint_id = $2 AND d.id = $3
            AND d.delivered_at IS NOT NULL AND d.delivered_latency_ms IS NOT NULL
            AND (d.leased_until IS NULL OR d.leased_until < now())
            FOR UPDATE OF d",
        tenant.shop_id,
        endpoint_id,
        id,
        Uuid::now_v7()
    )
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query_as!(
        Row,
        r#"UPDATE event_deliveries d
              SET status = 'pending', delivered_at = NULL, delivered_latency_ms = NULL,
                  next_attempt_at = now(), updated_at = now()
            WHERE d.shop_id = $1 AND d.endpoint_id = $2 AND d.id = $3
              AND (d.leased_until IS NULL OR d.leased_until < now())
           RETURNING d.id, d.endpoint_id, d.event_id, d.event_type, d.status, d.attempts, d.next_attempt_at,
                     d.last_status_code, d.last_error, d.delivered_at, d.delivered_latency_ms, d.created_at,
                     (SELECT jsonb_agg(jsonb_build_object('attempted_at', a.attempted_at,
                              'status_code', a.status_code, 'latency_ms', a.latency_ms, 'error', a.error)
                              ORDER BY a.attempted_at)
                        FROM delivery_attempts a WHERE a.shop_id = $1 AND a.delivery_id = d.id) AS attempt_log"#,
        tenant.shop_id,
        endpoint_id,
        id
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        let exists = sqlx::query_scalar!(
            r#"SELECT 1 AS "one!" FROM event_deliveries WHERE shop_id = $1 AND endpoint_id = $2 AND id = $3"#,
            tenant.shop_id,
            endpoint_id,
            id
        )
        .fetch_optional(&mut *conn)
        .await?;
        return Err(match exists {
            Some(_) => EventError::InvalidState("the delivery is being posted right now".into()),
            None => EventError::NotFound,
        });
    };
    sqlx::query!("SELECT pg_notify($1, '')", CHANNEL)
        .execute(&mut *conn)
        .await?;
    row.view()
}

pub struct Retry {
    pub tenant: Tenant,
    pub endpoint_id: Uuid,
    pub id: Uuid,
}
command!(Retry: "event_delivery.retry", status 200 => Delivery, EventError,
    |c, conn| retry(conn, c.tenant, c.endpoint_id, c.id));

/// The undelivered backlog of all shops, for `/health/full` and the
/// metrics.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Backlog {
    /// Deliveries not yet delivered or failed (including those waiting out
    /// their backoff).
    pub pending: i64,
    /// Age of the oldest of them, in seconds (0 when none).
    pub oldest_pending_seconds: f64,
    /// Endpoints disabled (by their shop or after failing), not deleted.
    pub disabled_endpoints: i64,
}

pub async fn backlog(pool: &PgPool) -> Result<Backlog, sqlx::Error> {
    let r = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM event_deliveries WHERE status = 'pending') AS "pending!",
                  (SELECT coalesce(extract(epoch FROM now() - min(created_at))::float8, 0)
                     FROM event_deliveries WHERE status = 'pending') AS "oldest!",
                  (SELECT count(*) FROM webhook_endpoints WHERE disabled AND deleted_at IS NULL)
                      AS "disabled!""#
    )
    .fetch_one(pool)
    .await?;
    Ok(Backlog {
        pending: r.pending,
        oldest_pending_seconds: r.oldest,
        disabled_endpoints: r.disabled,
    })
}
