//! Auth, roles, admin, problem+json, request ids, readiness, OpenAPI.

use std::time::Duration;

use billing_ledger::{config::ServeConfig, tenants, tenants::Role};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::*;

#[sqlx::test]
async fn requests_without_a_valid_key_are_401(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;

    let r = app.client.get(app.url("/v1/wallets")).send().await.unwrap();
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    for bad in ["nonsense", "blk_abc_def", &format!("{}x", shop.key), "Basic abc"] {
        let r = app.get(bad, "/v1/wallets").await;
        problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    assert_eq!(app.get(&shop.key, "/v1/wallets").await.status(), StatusCode::OK);

    let prefix = shop.key.split('_').nth(1).unwrap().to_owned();
    let mut conn = app.pool.acquire().await.unwrap();
    assert!(tenants::revoke_key(&mut conn, &prefix).await.unwrap());
    let r = app.get(&shop.key, "/v1/wallets").await;
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // A mutation with a revoked key is refused before execution: nothing stored.
    let r = app
        .post(
            &shop.key,
            "/v1/wallets",
            "k1",
            &json!({"customer_ref": "c", "currency": "USD"}),
        )
        .await;
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys").await, 0);
}

#[sqlx::test]
async fn finance_keys_read_but_never_mutate(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let wallet = app.wallet(&shop.key, "USD", "10").await;
    let finance = app.key(&shop, Role::Finance).await;

    assert_eq!(
        app.get(&finance, &format!("/v1/wallets/{wallet}")).await.status(),
        StatusCode::OK
    );
    let r = app
        .post(
            &finance,
            &format!("/v1/wallets/{wallet}/debit"),
            "f1",
            &json!({"amount": "1", "category": "usage"}),
        )
        .await;
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    let r = app
        .post(
            &finance,
            "/v1/wallets",
            "f2",
            &json!({"customer_ref": "c", "currency": "USD"}),
        )
        .await;
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(app.balance(&shop.key, wallet).await, "10.00");
    assert_eq!(
        app.count("SELECT count(*) FROM idempotency_keys WHERE key IN ('f1', 'f2')")
            .await,
        0
    );
}

#[sqlx::test]
async fn admin_creates_shops_and_keys(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let admin = |path: &str, idem: &str, body: Value| {
        app.client
            .post(app.url(path))
            .bearer_auth(ADMIN_KEY)
            .header("Idempotency-Key", idem)
            .json(&body)
            .send()
    };

    let r = admin("/v1/admin/shops", "s1", json!({"name": "Acme"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let shop: Value = r.json().await.unwrap();
    let owner = shop["api_key"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(shop["api_key"]["role"], "owner");
    assert_eq!(app.get(&owner, "/v1/wallets").await.status(), StatusCode::OK);

    // The replay is the same object, but the secret is never shown twice.
    let r = admin("/v1/admin/shops", "s1", json!({"name": "Acme"}))
        .await
        .unwrap();
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let replay: Value = r.json().await.unwrap();
    assert_eq!(replay["id"], shop["id"]);
    assert_eq!(replay["api_key"]["secret"], Value::Null);
    assert_eq!(app.count("SELECT count(*) FROM shops").await, 1);
    let stored = app.count("SELECT count(*) FROM idempotency_keys WHERE position(convert_to($$blk_$$, 'UTF8') in response_body) > 0").await;
    assert_eq!(stored, 0, "no secret is kept in the idempotency store");

    let shop_id = shop["id"].as_str().unwrap();
    let r = admin(
        &format!("/v1/admin/shops/{shop_id}/api-keys"),
        "k1",
        json!({"role": "finance"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let key: Value = r.json().await.unwrap();
    let finance = key["secret"].as_str().unwrap();
    assert_eq!(app.get(finance, "/v1/wallets").await.status(), StatusCode::OK);
    let r = app
        .post(
            finance,
            "/v1/wallets",
            "x",
            &json!({"customer_ref": "c", "currency": "USD"}),
        )
        .await;
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;

    let missing = uuid::Uuid::now_v7();
    let r = admin(
        &format!("/v1/admin/shops/{missing}/api-keys"),
        "k2",
        json!({"role": "owner"}),
    )
    .await
    .unwrap();
    problem(r, StatusCode::NOT_FOUND, "not_found").await;

    // Shop keys are not admin keys, and a wrong admin key is 401.
    let r = app
        .post(&owner, "/v1/admin/shops", "s2", &json!({"name": "x"}))
        .await;
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let r = app
        .client
        .get(app.url("/v1/admin/idempotency/stats"))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let audit = app
        .count("SELECT count(*) FROM audit_log WHERE action IN ('shop.create', 'api_key.create')")
        .await;
    assert_eq!(audit, 2);
}

#[sqlx::test]
async fn admin_routes_are_absent_without_an_admin_key(pool_opts: PgPoolOptions, connect: PgConnectOptions) {
    let pool = pool_opts.connect_with(connect.clone()).await.unwrap();
    let config = ServeConfig {
        admin_api_key: None,
        ..serve_config()
    };
    let app = serve(pool, config).await;
    let r = app
        .post(ADMIN_KEY, "/v1/admin/shops", "s1", &json!({"name": "x"}))
        .await;
    problem(r, StatusCode::NOT_FOUND, "not_found").await;
}

#[sqlx::test]
async fn errors_are_problem_json_with_stable_codes(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;

    let r = app
        .client
        .post(app.url("/v1/wallets"))
        .bearer_auth(&shop.key)
        .header("Idempotency-Key", "bad-json")
        .header("Content-Type", "application/json")
        .body("{\"customer_ref\": ")
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "bad_request").await;

    let r = app.get(&shop.key, "/v1/nowhere").await;
    problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app
        .client
        .delete(app.url("/v1/wallets"))
        .bearer_auth(&shop.key)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let r = app.get(&shop.key, "/v1/wallets/not-a-uuid").await;
    problem(r, StatusCode::NOT_FOUND, "not_found").await;

    let r = app
        .post(
            &shop.key,
            "/v1/wallets",
            "v1",
            &json!({"customer_ref": "", "currency": "XXX", "overdraft_limit": "-1"}),
        )
        .await;
    let body = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    for field in ["customer_ref", "currency", "overdraft_limit"] {
        assert!(body["errors"][field].is_array(), "{field} named in {body}");
    }
    let r = app
        .post(&shop.key, "/v1/wallets", "v2", &json!({"currency": "USD"}))
        .await;
    let body = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(body["errors"]["customer_ref"].is_array(), "{body}");
    let r = app
        .post(
            &shop.key,
            "/v1/wallets",
            "v3",
            &json!({"customer_ref": 5, "currency": "USD"}),
        )
        .await;
    let body = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(body["errors"]["customer_ref"].is_array(), "{body}");
    let r = app.get(&shop.key, "/v1/wallets?limit=1000").await;
    let body = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(body["errors"]["limit"].is_array(), "{body}");
    let r = app.get(&shop.key, "/v1/wallets?limit=abc").await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    // Rejected before execution: nothing is stored for any of those keys.
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM wallets").await, 0);
}

#[sqlx::test]
async fn request_ids_are_echoed_or_generated(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let r = app
        .client
        .get(app.url("/v1/wallets"))
        .header("X-Request-Id", "req-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-abc-123");
    let body = problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(body["request_id"], "req-abc-123");

    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&generated).unwrap().get_version_num(), 7);

    // An id that could inject into logs is replaced.
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("X-Request-Id", "a b")
        .send()
        .await
        .unwrap();
    assert_ne!(r.headers()["x-request-id"], "a b");
}

#[sqlx::test]
async fn readyz_needs_the_database_and_its_migrations(pool_opts: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    assert_eq!(
        app.client.get(app.url("/readyz")).send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        app.client.get(app.url("/healthz")).send().await.unwrap().status(),
        StatusCode::OK
    );

    // A database nobody listens on.
    let dead = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(1)
        .username("nobody")
        .database("none");
    let pool = pool_opts
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(dead);
    let down = serve(pool, serve_config()).await;
    let r = down.client.get(down.url("/readyz")).send().await.unwrap();
    problem(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let r = down.client.get(down.url("/healthz")).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "liveness does not depend on the database"
    );
}

#[sqlx::test(migrations = false)]
async fn readyz_is_503_before_migrations(pool_opts: PgPoolOptions, connect: PgConnectOptions) {
    let pool = pool_opts.connect_with(connect.clone()).await.unwrap();
    let app = serve(pool, serve_config()).await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    problem(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
}

#[tokio::test]
async fn committed_openapi_yaml_matches_the_code() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    assert!(
        committed == billing_ledger::openapi::yaml(),
        "openapi.yaml is stale: run `make openapi` and commit it"
    );
    for path in [
        "/v1/wallets/{id}/debit",
        "/v1/transfers",
        "/v1/admin/shops",
        "/readyz",
    ] {
        assert!(committed.contains(&format!("  {path}:")), "{path} documented");
    }
}

#[sqlx::test]
async fn openapi_and_metrics_are_served(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    app.get(&shop.key, "/v1/wallets").await;
    // The recorder is process-wide: compare counters before and after.
    let counter = |text: &str, outcome: &str| -> u64 {
        let prefix = format!("idempotency_requests_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    let before = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let create = json!({"customer_ref": "c", "currency": "USD"});
    app.post(&shop.key, "/v1/wallets", "m1", &create).await;
    app.post(&shop.key, "/v1/wallets", "m1", &create).await;
    app.post(
        &shop.key,
        "/v1/wallets",
        "m1",
        &json!({"customer_ref": "d", "currency": "USD"}),
    )
    .await;
    let r = app.client.get(app.url("/openapi.yaml")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), billing_ledger::openapi::yaml());

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"http_requests_total{method="GET",route="/v1/wallets",status="200"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("db_pool_connections"), "{metrics}");
    for outcome in ["new", "replayed", "reused_mismatch"] {
        assert!(
            counter(&metrics, outcome) > counter(&before, outcome),
            "{outcome} counted: {metrics}"
        );
    }
}

#[sqlx::test]
async fn a_revoked_key_stops_working_within_the_auth_cache_ttl(_: PgPoolOptions, connect: PgConnectOptions) {
    let ttl = Duration::from_secs(2);
    let config = ServeConfig {
        auth_cache_ttl: ttl,
        ..serve_config()
    };
    let app = spawn_app_with(connect, config, Duration::from_secs(5)).await;
    let shop = app.shop().await;
    assert_eq!(app.get(&shop.key, "/v1/wallets").await.status(), StatusCode::OK);

    let prefix = shop.key.split('_').nth(1).unwrap().to_owned();
    let mut conn = app.pool.acquire().await.unwrap();
    assert!(tenants::revoke_key(&mut conn, &prefix).await.unwrap());
    let revoked_at = std::time::Instant::now();
    // Whatever the cache still answered before, once the TTL has passed
    // since the revocation the key is refused, reads and writes alike.
    tokio::time::sleep(ttl.saturating_sub(revoked_at.elapsed()) + Duration::from_millis(50)).await;
    let r = app.get(&shop.key, "/v1/wallets").await;
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let r = app
        .post(
            &shop.key,
            "/v1/wallets",
            "late",
            &json!({"customer_ref": "c", "currency": "USD"}),
        )
        .await;
    problem(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(app.count("SELECT count(*) FROM wallets").await, 0);
}
