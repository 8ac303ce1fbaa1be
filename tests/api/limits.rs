//! Rate limits, load shedding and pool exhaustion. Requests run at the same
//! time; the tests count outcomes (and wait on database state, not clocks).

use std::time::Duration;

use billing_ledger::config::LimitConfig;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::*;

/// Sensitive quota: a burst of 10, one more per second.
fn limited() -> LimitConfig {
    LimitConfig {
        per_second: 100,
        burst: 200,
        sensitive_per_second: 1,
        sensitive_burst: 10,
        ip_per_second: 1,
        ip_burst: 3,
        ..LimitConfig::default()
    }
}

async fn app_with(connect: PgConnectOptions, limits: LimitConfig) -> TestApp {
    let config = billing_ledger::config::ServeConfig {
        limits,
        // Keys authenticated a moment ago skip the database, so a burst's
        // requests reach the quota together even on a busy machine.
        auth_cache_ttl: Duration::from_secs(2),
        ..serve_config()
    };
    spawn_app_with(connect, config, Duration::from_secs(5)).await
}

fn debit() -> Value {
    json!({"amount": "1.00", "category": "usage"})
}

/// A debit of 1.00 under a fresh key.
async fn debit_once(app: &TestApp, key: &str, wallet: uuid::Uuid) -> reqwest::Response {
    app.post(key, &format!("/v1/wallets/{wallet}/debit"), &fresh(), &debit())
        .await
}

#[sqlx::test]
async fn the_sensitive_quota_trips_after_its_burst_for_one_shop_only(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = app_with(connect, limited()).await;
    let (a, b) = (app.shop().await, app.shop().await);
    // Credits are not sensitive: setting up spends no sensitive quota.
    let wa = app.wallet(&a.key, "USD", "100.00").await;
    let wb = app.wallet(&b.key, "USD", "100.00").await;
    // Warm the key's cache entry (reads spend no sensitive quota).
    assert_eq!(app.get(&a.key, "/v1/wallets").await.status(), StatusCode::OK);
    let answers = join_all((0..11).map(|_| debit_once(&app, &a.key, wa))).await;
    let created: Vec<_> = answers
        .iter()
        .filter(|r| r.status() == StatusCode::CREATED)
        .collect();
    let refused: Vec<_> = answers
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!((created.len(), refused.len()), (10, 1));
    let r = refused[0];
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(r.headers()["ratelimit-limit"], "10");
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    assert!(r.headers().contains_key("ratelimit-reset"));
    for ok in &created {
        assert_eq!(ok.headers()["ratelimit-limit"], "10");
        assert!(
            ok.headers()["ratelimit-remaining"]
                .to_str()
                .unwrap()
                .parse::<u32>()
                .unwrap()
                < 10
        );
    }
    assert_eq!(app.balance(&a.key, wa).await, "90.00");
    // The other shop is untouched by the first one's limit.
    assert_eq!(app.get(&b.key, "/v1/wallets").await.status(), StatusCode::OK);
    let other = join_all((0..11).map(|_| debit_once(&app, &b.key, wb))).await;
    assert_eq!(
        other.iter().filter(|r| r.status() == StatusCode::CREATED).count(),
        10
    );
    assert_eq!(app.balance(&b.key, wb).await, "90.00");
    // Reads are only under the general quota.
    assert_eq!(
        app.get(&a.key, &format!("/v1/wallets/{wa}")).await.status(),
        StatusCode::OK
    );
}

#[sqlx::test]
async fn a_limited_request_is_not_stored_and_its_retry_runs(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = app_with(connect, limited()).await;
    let shop = app.shop().await;
    let wallet = app.wallet(&shop.key, "USD", "100.00").await;
    let path = format!("/v1/wallets/{wallet}/debit");
    // The burst spent by refused debits (the quota is charged before the
    // body is read): quick, so no token comes back before the next one
    // however slow the machine is.
    let zero = json!({"amount": "0", "category": "usage"});
    let keys: Vec<String> = (0..10).map(|_| fresh()).collect();
    let spent = join_all(keys.iter().map(|k| app.post(&shop.key, &path, k, &zero))).await;
    assert!(
        spent
            .iter()
            .all(|r| r.status() == StatusCode::UNPROCESSABLE_ENTITY)
    );
    let key = fresh();
    let r = app.post(&shop.key, &path, &key, &debit()).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let stored = app
        .count(&format!(
            "SELECT count(*) FROM idempotency_keys WHERE key = '{key}'"
        ))
        .await;
    assert_eq!(stored, 0, "a 429 is never the key's outcome");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let retry = app.post(&shop.key, &path, &key, &debit()).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert!(!retry.headers().contains_key("idempotent-replayed"));
    assert_eq!(app.balance(&shop.key, wallet).await, "99.00");
}

#[sqlx::test]
async fn failed_authentication_is_limited_per_address(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = app_with(connect, limited()).await;
    let answers = join_all((0..4).map(|_| app.get("blk_nope_nope", "/v1/wallets"))).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1, "{statuses:?}");
}

/// Sessions of the test database waiting on a row lock.
async fn lock_waiters(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(crate::helpers::lock_waiters())
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn until_waiting(pool: &sqlx::PgPool, n: i64) {
    for _ in 0..200 {
        if lock_waiters(pool).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} requests never started waiting");
}

type Answers = Vec<reqwest::Result<reqwest::Response>>;

/// Locks `wallet`'s row through `pool` and starts two debits that wait on
/// it; returns once both wait (seen in pg_stat_activity, through `pool`).
async fn two_debits_in_flight(
    app: &TestApp,
    pool: &sqlx::PgPool,
    key: &str,
    wallet: uuid::Uuid,
) -> (
    sqlx::Transaction<'static, sqlx::Postgres>,
    tokio::task::JoinHandle<Answers>,
) {
    let mut holder = pool.begin().await.unwrap();
    lock_wallet(&mut holder, wallet).await;
    let (client, url, key) = (
        app.client.clone(),
        app.url(&format!("/v1/wallets/{wallet}/debit")),
        key.to_owned(),
    );
    let stuck = tokio::spawn(async move {
        join_all((0..2).map(|_| {
            client
                .post(&url)
                .bearer_auth(&key)
                .header("Idempotency-Key", fresh())
                .json(&debit())
                .send()
        }))
        .await
    });
    until_waiting(pool, 2).await;
    (holder, stuck)
}

#[sqlx::test]
async fn beyond_max_in_flight_the_api_sheds_load_but_health_answers(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let limits = LimitConfig {
        max_in_flight: 2,
        ..LimitConfig::unlimited()
    };
    let app = app_with(connect, limits).await;
    let shop = app.shop().await;
    let wallet = app.wallet(&shop.key, "USD", "10.00").await;
    // Hold the wallet's row so two debits stay in flight.
    let (holder, stuck) = two_debits_in_flight(&app, &app.pool, &shop.key, wallet).await;
    let shed = app.get(&shop.key, "/v1/wallets").await;
    assert_eq!(shed.headers()["retry-after"], "1");
    problem(shed, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path} answers while shedding");
    }
    holder.commit().await.unwrap();
    let done = stuck.await.unwrap();
    assert!(
        done.iter()
            .all(|r| r.as_ref().unwrap().status() == StatusCode::CREATED)
    );
    assert_eq!(app.balance(&shop.key, wallet).await, "8.00");
}

#[sqlx::test]
async fn an_exhausted_pool_answers_503_after_the_acquire_timeout(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    // The test's own connections, outside the app's pool of 2.
    let observer = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(connect.clone())
        .await
        .unwrap();
    let db = billing_ledger::config::DatabaseConfig {
        pool_size: 2,
        acquire_timeout: Duration::from_secs(1),
        ..db_config(connect, Duration::from_secs(10))
    };
    let app = spawn_app_db(serve_config(), db).await;
    let shop = app.shop().await;
    let wallet = app.wallet(&shop.key, "USD", "10.00").await;
    let (holder, stuck) = two_debits_in_flight(&app, &observer, &shop.key, wallet).await;
    // Both pool connections wait on the lock: a third request gets none.
    let r = app.get(&shop.key, &format!("/v1/wallets/{wallet}")).await;
    problem(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    holder.commit().await.unwrap();
    let done = stuck.await.unwrap();
    assert!(
        done.iter()
            .all(|r| r.as_ref().unwrap().status() == StatusCode::CREATED)
    );
}

/// Opens a connection that announces a body of 60 bytes and sends one:
/// `auth` adds an API key header (a made-up one will do).
async fn dawdle(addr: &str, auth: Option<&str>) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = auth
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /v1/wallets HTTP/1.1\r\nHost: x\r\n{auth}Idempotency-Key: slow\r\n\
         Content-Type: application/json\r\nContent-Length: 60\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// The status line a connection was answered with.
async fn status_of(mut s: tokio::net::TcpStream) -> u16 {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0; 64];
    let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("answered")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[sqlx::test]
async fn slow_bodies_hold_no_slot_and_shops_keep_being_served(_: PgPoolOptions, connect: PgConnectOptions) {
    let limits = LimitConfig {
        max_in_flight: 16,
        max_per_client: 4,
        body_timeout: Duration::from_secs(2),
        ..LimitConfig::unlimited()
    };
    let app = app_with(connect, limits).await;
    let shop = app.shop().await;
    let wallet = app.wallet(&shop.key, "USD", "100.00").await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // 64 anonymous slow bodies and 32 with a (made-up) key, all at once.
    let mut anonymous = Vec::new();
    for _ in 0..64 {
        anonymous.push(dawdle(&addr, None).await);
    }
    let mut keyed = Vec::new();
    for _ in 0..32 {
        keyed.push(dawdle(&addr, Some("blk_made_up")).await);
    }
    // Meanwhile the shop's debits all get through: no 503.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let round = join_all((0..4).map(|_| debit_once(&app, &shop.key, wallet))).await;
        statuses.extend(round.iter().map(|r| r.status()));
    }
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED), "{statuses:?}");
    assert_eq!(app.balance(&shop.key, wallet).await, "60.00");
    // Beyond 4 per address the anonymous ones were refused at once; the
    // rest, and every keyed one, time out: 408, nothing stored.
    let anonymous = join_all(anonymous.into_iter().map(status_of)).await;
    assert_eq!(
        anonymous.iter().filter(|s| **s == 429).count(),
        60,
        "{anonymous:?}"
    );
    assert_eq!(
        anonymous.iter().filter(|s| **s == 408).count(),
        4,
        "{anonymous:?}"
    );
    let keyed = join_all(keyed.into_iter().map(status_of)).await;
    assert!(keyed.iter().all(|s| *s == 408), "{keyed:?}");
    assert_eq!(
        app.count("SELECT count(*) FROM idempotency_keys WHERE key = 'slow'")
            .await,
        0
    );
    assert_eq!(app.count("SELECT count(*) FROM wallets").await, 1);
}
