use std::time::Duration;

use billing_ledger::{
    app,
    config::{
        DatabaseConfig, EventConfig, GrantConfig, IdempotencyConfig, LimitConfig, LogFormat,
        ReservationConfig, Secret, ServeConfig, WebhookConfig,
    },
    http::AppState,
    tenants::{self, NewKey, Role},
};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::{Column, PgPool, Row, postgres::PgConnectOptions};
use uuid::Uuid;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    /// What the router serves with (its executor, heartbeats): tests start
    /// background loops on it themselves.
    pub state: AppState,
}

pub struct Shop {
    pub id: Uuid,
    pub key: String,
}

pub fn serve_config() -> ServeConfig {
    ServeConfig {
        bind_addr: "127.0.0.1:0".parse().unwrap(),
        admin_api_key: Some(Secret::new(ADMIN_KEY)),
        log_format: LogFormat::Json,
        request_timeout: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(5),
        // Off, so a test sees a revocation at once; `auth_cache` tests it.
        auth_cache_ttl: Duration::ZERO,
        idempotency: IdempotencyConfig::default(),
        reservations: ReservationConfig::default(),
        grants: GrantConfig::default(),
        billing: billing_ledger::config::BillingConfig::default(),
        // Loopback receivers stand for the shops' endpoints.
        events: EventConfig {
            endpoint_allowed_hosts: vec!["127.0.0.1".into()],
            ..EventConfig::default()
        },
        webhooks: WebhookConfig::default(),
        // Off: the other tests send bursts from one shop on purpose; the
        // limits' own tests switch them on.
        limits: LimitConfig::unlimited(),
    }
}

/// The database settings of a test app: production's defaults, with the
/// given lock timeout and a pool of 20.
pub fn db_config(connect: PgConnectOptions, lock_timeout: Duration) -> DatabaseConfig {
    DatabaseConfig {
        connect_options: connect,
        reports_connect_options: None,
        pool_size: 20,
        acquire_timeout: Duration::from_secs(30),
        lock_timeout,
        statement_timeout: Duration::from_secs(20),
        idle_in_transaction_timeout: Duration::from_secs(20),
    }
}

/// The app on a free port over the test's database, with production's pool
/// (every session bounds lock waits, statements and idle transactions).
pub async fn spawn_app(connect: PgConnectOptions) -> TestApp {
    spawn_app_with(connect, serve_config(), Duration::from_secs(5)).await
}

pub async fn spawn_app_with(
    connect: PgConnectOptions,
    config: ServeConfig,
    lock_timeout: Duration,
) -> TestApp {
    spawn_app_db(config, db_config(connect, lock_timeout)).await
}

pub async fn spawn_app_db(config: ServeConfig, db: DatabaseConfig) -> TestApp {
    serve_waiting(app::pool(&db), config, db.lock_timeout).await
}

pub async fn serve(pool: PgPool, config: ServeConfig) -> TestApp {
    serve_waiting(pool, config, Duration::from_secs(5)).await
}

async fn serve_waiting(pool: PgPool, config: ServeConfig, key_wait: Duration) -> TestApp {
    let state = app::state(pool, &config, key_wait);
    serve_state(state, config).await
}

/// Serves `state` (e.g. with its reports on a replica).
pub async fn serve_state(state: AppState, config: ServeConfig) -> TestApp {
    let pool = state.pool.clone();
    on_citus(&pool.connect_options()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app::router(state.clone(), config.request_timeout);
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap(),
        pool,
        state,
    }
}

impl TestApp {
    pub async fn shop(&self) -> Shop {
        let mut conn = self.pool.acquire().await.unwrap();
        let shop = tenants::create_shop(&mut conn, "Test shop").await.unwrap();
        Shop {
            id: shop.id,
            key: shop.api_key.secret.unwrap(),
        }
    }

    pub async fn key(&self, shop: &Shop, role: Role) -> String {
        let mut conn = self.pool.acquire().await.unwrap();
        tenants::create_key(&mut conn, shop.id, NewKey { role, label: None })
            .await
            .unwrap()
            .secret
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, key: &str, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, key: &str, path: &str, idem: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .header("Idempotency-Key", idem)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A wallet holding `funds` (topped up), in `currency`.
    pub async fn wallet(&self, key: &str, currency: &str, funds: &str) -> Uuid {
        let r = self
            .post(
                key,
                "/v1/wallets",
                &fresh(),
                &json!({"customer_ref": "cust", "currency": currency}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let id: Uuid = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        if funds != "0" {
            let r = self
                .post(
                    key,
                    &format!("/v1/wallets/{id}/credit"),
                    &fresh(),
                    &json!({"amount": funds, "category": "top_up"}),
                )
                .await;
            assert_eq!(r.status(), StatusCode::CREATED);
        }
        id
    }

    pub async fn balance(&self, key: &str, wallet: Uuid) -> String {
        let w: Value = self
            .get(key, &format!("/v1/wallets/{wallet}"))
            .await
            .json()
            .await
            .unwrap();
        w["balance"].as_str().unwrap().to_owned()
    }

    /// A balance alert on `wallet` at `below` (201), as the API shows it.
    pub async fn alert(&self, key: &str, wallet: Uuid, below: &str) -> Value {
        let r = self
            .post(
                key,
                &format!("/v1/wallets/{wallet}/balance-alerts"),
                &fresh(),
                &json!({ "available_below": below }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().await.unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// The ledger invariants reconciliation proves (DESIGN §5).
    pub async fn assert_ledger_consistent(&self) {
        let unbalanced = self
            .count(
                "SELECT count(*) FROM (SELECT 1 FROM journal_entries
                  GROUP BY shop_id, journal_transaction_id, currency HAVING sum(amount) <> 0) x",
            )
            .await;
        assert_eq!(unbalanced, 0, "every journal transaction sums to zero");
        let trial = self
            .count(
                "SELECT count(*) FROM (SELECT 1 FROM journal_entries
                  GROUP BY shop_id, currency HAVING sum(amount) <> 0) x",
            )
            .await;
        assert_eq!(trial, 0, "all accounts of a shop and currency sum to zero");
        let drift = self
            .count(
                "SELECT count(*) FROM wallets w
                  WHERE w.balance <> COALESCE((SELECT sum(e.amount) FROM journal_entries e
                                               WHERE e.shop_id = w.shop_id AND e.wallet_id = w.id), 0)
                     OR w.balance <> COALESCE((SELECT t.balance_after FROM wallet_transactions t
                                               WHERE t.shop_id = w.shop_id AND t.wallet_id = w.id
                                               ORDER BY t.wallet_version DESC LIMIT 1), 0)
                     OR w.version <> 1 + (SELECT count(*) FROM wallet_transactions t
                                           WHERE t.shop_id = w.shop_id AND t.wallet_id = w.id)
                                       + (SELECT count(*) + count(*) FILTER (WHERE r.status IN ('released', 'expired'))
                                            FROM credit_reservations r
                                           WHERE r.shop_id = w.shop_id AND r.wallet_id = w.id)",
            )
            .await;
        assert_eq!(
            drift, 0,
            "each wallet's balance equals its entries and its last balance_after; \
             its version counts movements, holds and freed holds"
        );
        let held = self
            .count(
                "SELECT count(*) FROM wallets w
                  WHERE w.reserved <> COALESCE((SELECT sum(r.amount) FROM credit_reservations r
                                                WHERE r.shop_id = w.shop_id AND r.wallet_id = w.id
                                                  AND r.status = 'active'), 0)",
            )
            .await;
        assert_eq!(
            held, 0,
            "each wallet's reserved equals the sum of its active holds"
        );
        let captures = self
            .count(
                "SELECT count(*) FROM credit_reservations r
                  WHERE (r.status = 'captured') <> EXISTS (
                        SELECT 1 FROM wallet_transactions t
                         WHERE t.shop_id = r.shop_id AND t.id = r.wallet_transaction_id
                           AND t.wallet_id = r.wallet_id AND t.type = 'debit'
                           AND t.category = 'reservation_capture' AND t.amount = r.captured_amount)",
            )
            .await;
        assert_eq!(
            captures, 0,
            "a captured hold posted exactly its captured amount; no other did"
        );
        self.assert_checks(include_str!("../../sql/checks/links.sql"), "link")
            .await;
        self.assert_grants_consistent().await;
    }

    /// The grant invariants (sql/checks/grants.sql): every count 0.
    pub async fn assert_grants_consistent(&self) {
        self.assert_checks(include_str!("../../sql/checks/grants.sql"), "grant invariant")
            .await;
    }

    /// A check of `sql/checks/`: one count per invariant, every one 0.
    async fn assert_checks(&self, sql: &str, what: &str) {
        let row = sqlx::query(sql).fetch_one(&self.pool).await.unwrap();
        for (i, column) in row.columns().iter().enumerate() {
            let broken: i64 = row.get(i);
            assert_eq!(broken, 0, "{what} {} breaks", column.name());
        }
    }
}

pub fn fresh() -> String {
    Uuid::now_v7().to_string()
}

pub async fn problem(r: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    for field in ["type", "title", "detail", "request_id"] {
        assert!(body[field].is_string(), "problem has {field}: {body}");
    }
    body
}

/// Under `make test-citus` (BILLING_LEDGER_TEST_CITUS=1, DATABASE_URL on the
/// coordinator of scripts/citus.sh) the test's fresh, migrated database
/// becomes a distributed one before the app serves it, as an operator makes
/// one: `scripts/citus.sh database NAME` (the database on every node, the
/// workers added), then `billing-ledger citus distribute`. Anywhere else it
/// does nothing.
pub async fn on_citus(test_db: &PgConnectOptions) {
    use sqlx::{Connection, PgConnection};
    if std::env::var("BILLING_LEDGER_TEST_CITUS").as_deref() != Ok("1") {
        return;
    }
    let Ok(mut db) = PgConnection::connect_with(test_db).await else {
        return; // a test of a database that is down
    };
    // The app's pool may carry a test's short statement timeout; distributing
    // every table on a busy machine takes longer than that, as an operator's
    // session would be allowed to.
    sqlx::raw_sql("SET statement_timeout = 0; SET lock_timeout = 0")
        .execute(&mut db)
        .await
        .unwrap();
    let state: (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus'),
                to_regclass('_sqlx_migrations') IS NOT NULL",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    match state {
        (true, _) => return,  // a second app on the same database
        (_, false) => return, // a test of an unmigrated database: nothing to distribute
        _ => {}
    }
    let name = test_db.get_database().expect("the test database has a name");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/citus.sh");
    // Blocking: nothing else of the test runs yet.
    let out = std::process::Command::new(script)
        .args(["database", name])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "citus.sh database {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    billing_ledger::citus::distribute(&mut db).await.unwrap();
}

/// Locks a wallet's row in `conn`'s transaction, as a request would: by its
/// shop and id (on Citus a row lock must name the shop, so the statement runs
/// on the shop's shard).
pub async fn lock_wallet(conn: &mut sqlx::PgConnection, wallet: Uuid) {
    let shop: Uuid = sqlx::query_scalar("SELECT shop_id FROM wallets WHERE id = $1")
        .bind(wallet)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    sqlx::query("SELECT 1 FROM wallets WHERE shop_id = $1 AND id = $2 FOR UPDATE")
        .bind(shop)
        .bind(wallet)
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// Whether this run is `make test-citus`.
pub fn citus() -> bool {
    std::env::var("BILLING_LEDGER_TEST_CITUS").as_deref() == Ok("1")
}

/// Sessions of the test's database waiting for a lock: on every node under
/// Citus, where a request's statements wait on its shop's worker.
/// Polls `sql` (a count) until it is at least `n`; panics after a minute.
pub async fn wait_for(conn: &mut sqlx::PgConnection, sql: &str, n: i64) {
    for _ in 0..1200 {
        let got: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await.unwrap();
        if got >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never reached {n}: {sql}");
}

pub fn lock_waiters() -> &'static str {
    if citus() {
        "SELECT count(*) FROM citus_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    } else {
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    }
}

/// Advisory lock `key`, held by the test so that a trigger calling
/// `pg_advisory_xact_lock(key)` stalls its statement until `open`: on the
/// test's database, and under Citus on every worker too, where the
/// triggers of distributed tables run.
pub struct Gate {
    key: i64,
    held: Vec<sqlx::PgConnection>,
}

impl Gate {
    pub async fn close(connect: &PgConnectOptions, key: i64) -> Gate {
        use sqlx::Connection;
        let mut here = sqlx::PgConnection::connect_with(connect).await.unwrap();
        let mut nodes = vec![connect.clone()];
        if citus() {
            let workers: Vec<(String, i32)> =
                sqlx::query_as("SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0")
                    .fetch_all(&mut here)
                    .await
                    .unwrap();
            nodes.extend(
                workers
                    .into_iter()
                    .map(|(h, p)| connect.clone().host(&h).port(p as u16)),
            );
        }
        here.close().await.unwrap();
        let mut held = Vec::new();
        for node in nodes {
            let mut conn = sqlx::PgConnection::connect_with(&node).await.unwrap();
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(key)
                .execute(&mut conn)
                .await
                .unwrap();
            held.push(conn);
        }
        Gate { key, held }
    }

    pub async fn open(mut self) {
        for conn in &mut self.held {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(self.key)
                .execute(&mut *conn)
                .await
                .unwrap();
        }
    }
}

/// Fault injection: `statements` (trigger functions, triggers, rows) run
/// one at a time on one session, as Citus passes each DDL statement on to
/// the workers alone; triggers on distributed tables need
/// `citus.enable_unsafe_triggers` (a harmless placeholder on a single
/// server).
pub async fn inject(pool: &PgPool, statements: &[&str]) {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql("SET citus.enable_unsafe_triggers = on")
        .execute(&mut *conn)
        .await
        .unwrap();
    for statement in statements {
        sqlx::raw_sql(statement).execute(&mut *conn).await.unwrap();
    }
}

/// An answer: status, ETag, replayed, body.
pub struct Answer {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub replayed: bool,
    pub body: Value,
}

impl TestApp {
    /// Any method with an Idempotency-Key and an optional If-Match.
    pub async fn call(
        &self,
        method: Method,
        key: &str,
        path: &str,
        idem: &str,
        if_match: Option<&str>,
        body: Value,
    ) -> Answer {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(key)
            .header("Idempotency-Key", idem)
            .json(&body);
        if let Some(tag) = if_match {
            req = req.header("If-Match", tag);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let etag = r.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
        let replayed = r.headers().contains_key("idempotent-replayed");
        let body = r.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            etag,
            replayed,
            body,
        }
    }
}
