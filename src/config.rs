//! One typed configuration, read from flags and environment variables.

use std::{fmt, net::SocketAddr, str::FromStr, time::Duration};

use clap::{Args, ValueEnum};
use sqlx::postgres::PgConnectOptions;

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() < 16 {
            return Err("must be at least 16 characters".into());
        }
        Ok(Secret(s.to_owned()))
    }
}

/// A duration of at least 1 ms (zero would disable a timeout or spin a loop).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 30s, 1h)"))?;
    if d < Duration::from_millis(1) {
        return Err("must be at least 1ms".into());
    }
    Ok(d)
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}

fn parse_auth_ttl(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 0s, 500ms, 2s)"))?;
    if d > crate::tenants::auth_cache::MAX_TTL {
        return Err("must be at most 2s (the bound on how long a revoked key may work)".into());
    }
    Ok(d)
}

fn parse_database_url(s: &str) -> Result<PgConnectOptions, String> {
    if !(s.starts_with("postgres://") || s.starts_with("postgresql://")) {
        return Err("must start with postgres:// or postgresql://".into());
    }
    PgConnectOptions::from_str(s).map_err(|_| "not a valid PostgreSQL URL".into())
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// PostgreSQL connection URL (postgres://user:password@host:port/db).
    #[arg(long = "database-url", value_name = "DATABASE_URL", env = "DATABASE_URL", value_parser = parse_database_url, hide_env_values = true)]
    pub connect_options: PgConnectOptions,

    /// A streaming read replica for reports (API, page, command line). Unset:
    /// reports read the primary. Reports say how far the replica is behind,
    /// and answer 503 while it cannot be reached.
    #[arg(long = "reports-database-url", value_name = "REPORTS_DATABASE_URL", env = "REPORTS_DATABASE_URL", value_parser = parse_database_url, hide_env_values = true)]
    pub reports_connect_options: Option<PgConnectOptions>,

    /// Maximum connections in the pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub pool_size: u32,

    /// How long a request waits for a free pool connection before 503.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub acquire_timeout: Duration,

    /// How long a statement waits for a row lock before giving up. Bounds
    /// how long a duplicate request waits for the first one with the same
    /// Idempotency-Key before it is answered 409 idempotency_key_in_use.
    #[arg(long, env = "LOCK_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub lock_timeout: Duration,

    /// PostgreSQL cancels a statement running longer than this, so abandoned
    /// work cannot keep rows locked. Must be below REQUEST_TIMEOUT.
    #[arg(long, env = "STATEMENT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub statement_timeout: Duration,

    /// PostgreSQL ends a session that sits idle inside a transaction for
    /// this long (a request whose client vanished), releasing its locks.
    /// Must be below REQUEST_TIMEOUT.
    #[arg(long, env = "IDLE_IN_TRANSACTION_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub idle_in_transaction_timeout: Duration,
}

impl DatabaseConfig {
    /// The service's limits must end a request's database work before the
    /// request itself times out.
    pub fn check_against(&self, request_timeout: Duration) -> Result<(), String> {
        for (name, value) in [
            ("STATEMENT_TIMEOUT", self.statement_timeout),
            ("IDLE_IN_TRANSACTION_TIMEOUT", self.idle_in_transaction_timeout),
            ("LOCK_TIMEOUT", self.lock_timeout),
        ] {
            if value >= request_timeout {
                return Err(format!(
                    "{name} ({value:?}) must be below REQUEST_TIMEOUT ({request_timeout:?})"
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address the HTTP server listens on.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    pub bind_addr: SocketAddr,

    /// Platform admin key for /v1/admin (16+ characters); admin routes are
    /// disabled when unset.
    #[arg(long, env = "ADMIN_API_KEY", hide_env_values = true)]
    pub admin_api_key: Option<Secret>,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// A request still running after this long is answered 503 and rolled back.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// How long an authenticated API key is remembered in process, so most
    /// requests skip the key lookup: a revoked key keeps working on an
    /// instance for at most this long. 0s disables; at most 2s.
    #[arg(long, env = "AUTH_CACHE_TTL", default_value = "1s", value_parser = parse_auth_ttl)]
    pub auth_cache_ttl: Duration,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    #[command(flatten)]
    pub idempotency: IdempotencyConfig,

    #[command(flatten)]
    pub reservations: ReservationConfig,

    #[command(flatten)]
    pub grants: GrantConfig,

    #[command(flatten)]
    pub billing: BillingConfig,

    #[command(flatten)]
    pub webhooks: WebhookConfig,

    #[command(flatten)]
    pub events: EventConfig,

    #[command(flatten)]
    pub limits: LimitConfig,
}

#[derive(Debug, Clone, Args)]
pub struct IdempotencyConfig {
    /// How long a stored Idempotency-Key outcome is replayed.
    #[arg(long = "idempotency-ttl-hours", env = "IDEMPOTENCY_TTL_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=8760))]
    pub ttl_hours: u32,

    /// How often expired idempotency records are deleted (also once at start).
    #[arg(long = "idempotency-cleanup-interval", env = "IDEMPOTENCY_CLEANUP_INTERVAL", default_value = "1h", value_parser = parse_interval)]
    pub cleanup_interval: Duration,

    /// Rows deleted per cleanup batch (one short transaction each).
    #[arg(long = "idempotency-cleanup-batch", env = "IDEMPOTENCY_CLEANUP_BATCH", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub cleanup_batch: u32,

    /// Requests of one instance that may wait for the same running key; more
    /// are answered 409 idempotency_key_in_use at once. Waiting requests
    /// hold no database connection.
    #[arg(long = "idempotency-max-waiters", env = "IDEMPOTENCY_MAX_WAITERS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub max_waiters: u32,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            ttl_hours: 24,
            cleanup_interval: Duration::from_secs(3600),
            cleanup_batch: 1000,
            max_waiters: 8,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ReservationConfig {
    /// How long a hold lasts when the request names no expires_in_seconds.
    #[arg(long = "reservation-default-expiry", env = "RESERVATION_DEFAULT_EXPIRY", default_value = "15m", value_parser = parse_interval)]
    pub default_expiry: Duration,

    /// The longest hold a request may ask for.
    #[arg(long = "reservation-max-expiry", env = "RESERVATION_MAX_EXPIRY", default_value = "7d", value_parser = parse_interval)]
    pub max_expiry: Duration,

    /// How often the expiry job releases holds past their expires_at (also
    /// once at start).
    #[arg(long = "reservation-expiry-interval", env = "RESERVATION_EXPIRY_INTERVAL", default_value = "30s", value_parser = parse_interval)]
    pub expiry_interval: Duration,

    /// Holds expired per batch (one short transaction each).
    #[arg(long = "reservation-expiry-batch", env = "RESERVATION_EXPIRY_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub expiry_batch: u32,
}

impl ReservationConfig {
    /// The default may not exceed the maximum.
    pub fn check(&self) -> Result<(), String> {
        if self.default_expiry > self.max_expiry {
            return Err(format!(
                "RESERVATION_DEFAULT_EXPIRY ({:?}) must not exceed RESERVATION_MAX_EXPIRY ({:?})",
                self.default_expiry, self.max_expiry
            ));
        }
        Ok(())
    }
}

impl Default for ReservationConfig {
    fn default() -> Self {
        ReservationConfig {
            default_expiry: Duration::from_secs(15 * 60),
            max_expiry: Duration::from_secs(7 * 24 * 3600),
            expiry_interval: Duration::from_secs(30),
            expiry_batch: 500,
        }
    }
}

/// The recurring billing job (docs/recurring-billing.md).
#[derive(Debug, Clone, Args)]
pub struct BillingConfig {
    /// How often the billing job bills due periods and retries due wallet
    /// payments (also once at start).
    #[arg(long = "billing-interval", env = "BILLING_INTERVAL", default_value = "1m", value_parser = parse_interval)]
    pub billing_interval: Duration,

    /// Waits between a wallet collection that failed and its retries,
    /// comma-separated (e.g. `1d,3d,7d`: retried a day, then three, then
    /// seven days after the attempt before); once spent the invoice stays
    /// open and the contract is past due. Empty for no retries.
    #[arg(long = "dunning-retries", env = "DUNNING_RETRIES", default_value = "1d,3d,7d", value_parser = parse_schedule)]
    pub dunning_retries: Schedule,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            billing_interval: Duration::from_secs(60),
            dunning_retries: Schedule(
                [1, 3, 7]
                    .iter()
                    .map(|d| Duration::from_secs(d * 86_400))
                    .collect(),
            ),
        }
    }
}

/// Waits, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<Duration>);

fn parse_schedule(s: &str) -> Result<Schedule, String> {
    let waits = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse_interval)
        .collect::<Result<Vec<_>, _>>()?;
    if waits.len() > 20 {
        return Err("at most 20 retries".into());
    }
    Ok(Schedule(waits))
}

#[derive(Debug, Clone, Args)]
pub struct GrantConfig {
    /// How often the expiry job expires credit grants past their
    /// expires_at (also once at start).
    #[arg(long = "grant-expiry-interval", env = "GRANT_EXPIRY_INTERVAL", default_value = "30s", value_parser = parse_interval)]
    pub grant_expiry_interval: Duration,

    /// Most grants due per batch (one short transaction each).
    #[arg(long = "grant-expiry-batch", env = "GRANT_EXPIRY_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub grant_expiry_batch: u32,
}

impl Default for GrantConfig {
    fn default() -> Self {
        GrantConfig {
            grant_expiry_interval: Duration::from_secs(30),
            grant_expiry_batch: 500,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct WebhookConfig {
    /// How far a signature's timestamp may be from now (either way).
    #[arg(long = "webhook-tolerance", env = "WEBHOOK_TOLERANCE", default_value = "5m", value_parser = parse_interval)]
    pub tolerance: Duration,

    /// How long a rotated signing secret keeps verifying.
    #[arg(long = "webhook-secret-grace", env = "WEBHOOK_SECRET_GRACE", default_value = "24h", value_parser = parse_duration)]
    pub secret_grace: Duration,

    /// Attempts before an event is left dead (dead letter).
    #[arg(long = "webhook-max-attempts", env = "WEBHOOK_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,

    /// Wait after the first failure; doubled after each further one, with
    /// jitter (×0.5–1.5), up to WEBHOOK_BACKOFF_MAX.
    #[arg(long = "webhook-backoff-base", env = "WEBHOOK_BACKOFF_BASE", default_value = "30s", value_parser = parse_duration)]
    pub backoff_base: Duration,

    #[arg(long = "webhook-backoff-max", env = "WEBHOOK_BACKOFF_MAX", default_value = "1h", value_parser = parse_duration)]
    pub backoff_max: Duration,

    /// The worker wakes on NOTIFY; this poll is the fallback (and finds
    /// failed events coming due).
    #[arg(long = "webhook-poll-interval", env = "WEBHOOK_POLL_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// Events leased per worker round.
    #[arg(long = "webhook-batch", env = "WEBHOOK_BATCH", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,

    /// How long a leased event is left to its worker before another may
    /// take it (a crashed worker's events come back after this).
    #[arg(long = "webhook-lease", env = "WEBHOOK_LEASE", default_value = "2m", value_parser = parse_interval)]
    pub lease: Duration,

    /// Processed and ignored events older than this are deleted.
    #[arg(long = "webhook-retention", env = "WEBHOOK_RETENTION", default_value = "30d", value_parser = parse_interval)]
    pub retention: Duration,

    /// How often retention runs (also once at start).
    #[arg(long = "webhook-retention-interval", env = "WEBHOOK_RETENTION_INTERVAL", default_value = "1h", value_parser = parse_interval)]
    pub retention_interval: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            tolerance: Duration::from_secs(300),
            secret_grace: Duration::from_secs(24 * 3600),
            max_attempts: 8,
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(5),
            batch: 50,
            lease: Duration::from_secs(120),
            retention: Duration::from_secs(30 * 24 * 3600),
            retention_interval: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct EventConfig {
    /// Events (and their deliveries) older than this are deleted.
    #[arg(long = "event-retention", env = "EVENT_RETENTION", default_value = "30d", value_parser = parse_interval)]
    pub event_retention: Duration,

    /// Hosts webhook endpoints may use although they are loopback, private
    /// or link-local, and over plain http (comma-separated; for tests and
    /// private networks).
    #[arg(
        long = "endpoint-allowed-hosts",
        env = "ENDPOINT_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub endpoint_allowed_hosts: Vec<String>,

    /// Wait after a delivery's first failed attempt; doubled after each
    /// further one, with jitter (×0.5–1.5), up to DELIVERY_BACKOFF_MAX.
    #[arg(long = "delivery-backoff-base", env = "DELIVERY_BACKOFF_BASE", default_value = "1m", value_parser = parse_duration)]
    pub delivery_backoff_base: Duration,

    #[arg(long = "delivery-backoff-max", env = "DELIVERY_BACKOFF_MAX", default_value = "6h", value_parser = parse_duration)]
    pub delivery_backoff_max: Duration,

    /// Attempts before a delivery ends `failed` (dead letter); with the
    /// default backoff, about three days.
    #[arg(long = "delivery-max-attempts", env = "DELIVERY_MAX_ATTEMPTS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub delivery_max_attempts: u32,

    /// Longest a delivery's POST may take, connecting included (at most 5 s
    /// of it connecting).
    #[arg(long = "delivery-timeout", env = "DELIVERY_TIMEOUT", default_value = "10s", value_parser = parse_interval)]
    pub delivery_timeout: Duration,

    /// Deliveries this instance posts at once, over all endpoints.
    #[arg(long = "delivery-concurrency", env = "DELIVERY_CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub delivery_concurrency: u32,

    /// Deliveries of one endpoint an instance posts at once (of different
    /// wallets: one wallet's go one after another).
    #[arg(long = "delivery-endpoint-concurrency", env = "DELIVERY_ENDPOINT_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub delivery_endpoint_concurrency: u32,

    /// How often the worker looks for due deliveries (a manual retry wakes
    /// it at once).
    #[arg(long = "delivery-poll-interval", env = "DELIVERY_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub delivery_poll_interval: Duration,

    /// How long an endpoint's worker waits after a round that took every
    /// due delivery before leasing again, so the next round carries more
    /// (each round costs two statements whatever its size). A delivery may
    /// wait this much longer.
    #[arg(long = "delivery-batch-wait", env = "DELIVERY_BATCH_WAIT", default_value = "200ms", value_parser = parse_duration)]
    pub delivery_batch_wait: Duration,

    /// Deliveries in a row that end `failed` before their endpoint is
    /// disabled.
    #[arg(long = "endpoint-failure-limit", env = "ENDPOINT_FAILURE_LIMIT", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub endpoint_failure_limit: u32,
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            event_retention: Duration::from_secs(30 * 24 * 3600),
            endpoint_allowed_hosts: Vec::new(),
            delivery_backoff_base: Duration::from_secs(60),
            delivery_backoff_max: Duration::from_secs(6 * 3600),
            delivery_max_attempts: 20,
            delivery_timeout: Duration::from_secs(10),
            delivery_concurrency: 32,
            delivery_endpoint_concurrency: 4,
            delivery_poll_interval: Duration::from_secs(1),
            delivery_batch_wait: Duration::from_millis(200),
            endpoint_failure_limit: 5,
        }
    }
}

impl EventConfig {
    /// How long a round of `n` leased deliveries of one endpoint is left
    /// to its worker: the POSTs' timeout for each wave of
    /// DELIVERY_ENDPOINT_CONCURRENCY posts, and a margin to record them.
    pub fn delivery_lease(&self, n: usize) -> Duration {
        let waves = n
            .div_ceil(self.delivery_endpoint_concurrency.max(1) as usize)
            .max(1);
        self.delivery_timeout * waves as u32 + Duration::from_secs(30)
    }
}

#[derive(Debug, Clone, Args)]
pub struct LimitConfig {
    /// Requests per second per shop on every authenticated route (0: off).
    #[arg(
        long = "rate-limit-per-second",
        env = "RATE_LIMIT_PER_SECOND",
        default_value_t = 100
    )]
    pub per_second: u32,

    /// How many requests a shop may send at once above that rate.
    #[arg(long = "rate-limit-burst", env = "RATE_LIMIT_BURST", default_value_t = 200)]
    pub burst: u32,

    /// Requests per second per shop on money-moving routes (debit, transfer,
    /// reserve, capture, pay, approve), on top of the general quota (0: off).
    #[arg(
        long = "rate-limit-sensitive-per-second",
        env = "RATE_LIMIT_SENSITIVE_PER_SECOND",
        default_value_t = 10
    )]
    pub sensitive_per_second: u32,

    #[arg(
        long = "rate-limit-sensitive-burst",
        env = "RATE_LIMIT_SENSITIVE_BURST",
        default_value_t = 10
    )]
    pub sensitive_burst: u32,

    /// Requests per second per client IP where no shop is known: failed
    /// authentication and the webhook receiver (0: off).
    #[arg(
        long = "rate-limit-ip-per-second",
        env = "RATE_LIMIT_IP_PER_SECOND",
        default_value_t = 20
    )]
    pub ip_per_second: u32,

    #[arg(
        long = "rate-limit-ip-burst",
        env = "RATE_LIMIT_IP_BURST",
        default_value_t = 40
    )]
    pub ip_burst: u32,

    /// Instances behind the load balancer: every quota is divided by it,
    /// since each instance counts on its own.
    #[arg(long = "rate-limit-instances", env = "RATE_LIMIT_INSTANCES", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub instances: u32,

    /// API requests one instance serves at once; more are answered 503
    /// at once (health and metrics are always served).
    #[arg(long = "max-in-flight", env = "MAX_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight: u32,

    /// Requests without an API key (the webhook receiver, the report page,
    /// failed authentication) one client address may have in flight at
    /// once; more are answered 429 at once.
    #[arg(long = "max-per-client", env = "MAX_PER_CLIENT", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_per_client: u32,

    /// How long a client may take to send a request's body; slower is
    /// answered 408 `request_timeout`. The body is read before the request
    /// takes a MAX_IN_FLIGHT slot, a pool connection or a lock.
    #[arg(long = "body-timeout", env = "BODY_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub body_timeout: Duration,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            per_second: 100,
            burst: 200,
            sensitive_per_second: 10,
            sensitive_burst: 10,
            ip_per_second: 20,
            ip_burst: 40,
            instances: 1,
            max_in_flight: 256,
            max_per_client: 16,
            body_timeout: Duration::from_secs(5),
        }
    }
}

impl LimitConfig {
    /// No rate limits and no per-address cap (in-flight bound kept): for
    /// tests and benchmarks of other things.
    pub fn unlimited() -> Self {
        LimitConfig {
            per_second: 0,
            sensitive_per_second: 0,
            ip_per_second: 0,
            max_per_client: 100_000,
            ..LimitConfig::default()
        }
    }
}
