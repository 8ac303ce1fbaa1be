//! The idempotency engine: replay, mismatch, scoping, what is stored and
//! what is not, failures mid-transaction, expiry and cleanup.

use std::time::Duration;

use billing_ledger::jobs;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::*;

#[sqlx::test]
async fn a_retry_replays_the_stored_response_byte_for_byte(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "10").await;
    let path = format!("/v1/wallets/{w}/debit");
    let body = json!({"amount": "3", "category": "usage"});

    let first = app.post(&shop.key, &path, "debit-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = first.bytes().await.unwrap();
    for _ in 0..3 {
        let again = app.post(&shop.key, &path, "debit-1", &body).await;
        assert_eq!(again.status(), StatusCode::CREATED);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.headers()["content-type"], "application/json");
        assert_eq!(again.bytes().await.unwrap(), first);
    }
    assert_eq!(app.balance(&shop.key, w).await, "7.00");
    assert_eq!(
        app.count("SELECT count(*) FROM wallet_transactions WHERE type = 'debit'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'wallet.debit'")
            .await,
        1
    );

    // Creation replays carry the Location header too.
    let create = json!({"customer_ref": "c", "currency": "USD"});
    let a = app.post(&shop.key, "/v1/wallets", "create-1", &create).await;
    let b = app.post(&shop.key, "/v1/wallets", "create-1", &create).await;
    assert_eq!(a.headers()["location"], b.headers()["location"]);
    assert_eq!(a.text().await.unwrap(), b.text().await.unwrap());
}

#[sqlx::test]
async fn same_key_different_request_is_422_and_keys_are_per_shop(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "10").await;
    let path = format!("/v1/wallets/{w}/debit");

    let r = app
        .post(
            &shop.key,
            &path,
            "k",
            &json!({"amount": "1", "category": "usage"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .post(
            &shop.key,
            &path,
            "k",
            &json!({"amount": "2", "category": "usage"}),
        )
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
    let r = app
        .post(
            &shop.key,
            &format!("/v1/wallets/{w}/credit"),
            "k",
            &json!({"amount": "1", "category": "grant"}),
        )
        .await;
    // Another path: a different request.
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
    assert_eq!(app.balance(&shop.key, w).await, "9.00");

    // The same key in another shop is another key.
    let other = app.shop().await;
    let ow = app.wallet(&other.key, "USD", "10").await;
    let r = app
        .post(
            &other.key,
            &format!("/v1/wallets/{ow}/debit"),
            "k",
            &json!({"amount": "1", "category": "usage"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.balance(&other.key, ow).await, "9.00");
    assert_eq!(app.balance(&shop.key, w).await, "9.00");
}

#[sqlx::test]
async fn malformed_keys_are_rejected_before_execution(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let body = json!({"customer_ref": "c", "currency": "USD"});
    let r = app
        .client
        .post(app.url("/v1/wallets"))
        .bearer_auth(&shop.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "idempotency_key_missing").await;
    for bad in ["", "has space", &"x".repeat(256), "tab\tkey"] {
        let r = app.post(&shop.key, "/v1/wallets", bad, &body).await;
        problem(r, StatusCode::BAD_REQUEST, "idempotency_key_invalid").await;
    }
    assert_eq!(
        app.post(&shop.key, "/v1/wallets", &"x".repeat(255), &body)
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(app.count("SELECT count(*) FROM wallets").await, 1);
}

#[sqlx::test]
async fn business_rejections_are_stored_and_replayed(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "1").await;
    let path = format!("/v1/wallets/{w}/debit");
    let body = json!({"amount": "5", "category": "usage"});

    let first = problem(
        app.post(&shop.key, &path, "poor", &body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "insufficient_funds",
    )
    .await;
    // Funds arrive, but the key's outcome is settled: the retry replays the rejection.
    app.post(
        &shop.key,
        &format!("/v1/wallets/{w}/credit"),
        &fresh(),
        &json!({"amount": "10", "category": "top_up"}),
    )
    .await;
    let r = app.post(&shop.key, &path, "poor", &body).await;
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    let replay = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "insufficient_funds").await;
    assert_eq!(replay, first);
    assert_eq!(app.balance(&shop.key, w).await, "11.00");
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'wallet.debit'")
            .await,
        0
    );
}

#[sqlx::test]
async fn a_failure_after_the_writes_leaves_nothing_and_the_retry_runs_once(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "10").await;
    let path = format!("/v1/wallets/{w}/debit");
    let body = json!({"amount": "4", "category": "usage"});
    let before = app.count("SELECT count(*) FROM journal_entries").await;

    // Injected failure in the last statement of the transaction, after the
    // wallet, its history and the journal were written.
    inject(
        &app.pool,
        &[
            "CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$",
            "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log FOR EACH ROW
           WHEN (NEW.action = 'wallet.debit') EXECUTE FUNCTION fail_audit()",
        ],
    )
    .await;
    let r = app.post(&shop.key, &path, "fragile", &body).await;
    problem(r, StatusCode::INTERNAL_SERVER_ERROR, "internal_error").await;
    let leftovers = app
        .count("SELECT count(*) FROM idempotency_keys WHERE key = 'fragile'")
        .await
        + app
            .count("SELECT count(*) FROM wallet_transactions WHERE idempotency_key = 'fragile'")
            .await;
    assert_eq!(leftovers, 0);
    assert_eq!(app.count("SELECT count(*) FROM journal_entries").await, before);
    assert_eq!(app.balance(&shop.key, w).await, "10.00");

    inject(&app.pool, &["DROP TRIGGER fail_audit ON audit_log"]).await;
    let r = app.post(&shop.key, &path, "fragile", &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().get("idempotent-replayed").is_none());
    assert_eq!(
        app.post(&shop.key, &path, "fragile", &body).await.headers()["idempotent-replayed"],
        "true"
    );
    assert_eq!(app.balance(&shop.key, w).await, "6.00");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn a_connection_killed_mid_transaction_commits_nothing(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "10").await;
    let path = format!("/v1/wallets/{w}/debit");
    let body = json!({"amount": "4", "category": "usage"});

    // Hold the wallet row so the request stops inside its transaction, after
    // claiming its key; then kill its backend.
    let mut blocker = app.pool.begin().await.unwrap();
    lock_wallet(&mut blocker, w).await;
    let request = tokio::spawn({
        let (client, url, key) = (app.client.clone(), app.url(&path), shop.key.clone());
        let body = body.clone();
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", "killed")
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    });
    let mut killed = false;
    for _ in 0..100 {
        // On Citus the request waits on its shop's worker; its global pid
        // names the coordinator session that sent it, which is killed.
        let n: i64 = sqlx::query_scalar(if citus() {
            "SELECT count(pg_terminate_backend(global_pid)) FROM citus_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE OF w%'"
        } else {
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE OF w%'"
        })
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if n > 0 {
            killed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(killed, "the request was seen waiting inside its transaction");
    let r = request.await.unwrap();
    problem(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    blocker.rollback().await.unwrap();

    assert_eq!(
        app.count("SELECT count(*) FROM idempotency_keys WHERE key = 'killed'")
            .await,
        0
    );
    assert_eq!(app.balance(&shop.key, w).await, "10.00");
    let r = app.post(&shop.key, &path, "killed", &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(app.balance(&shop.key, w).await, "6.00");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn a_duplicate_waits_a_bounded_time_then_gets_409(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app_with(connect, serve_config(), Duration::from_millis(300)).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "10").await;
    let path = format!("/v1/wallets/{w}/debit");
    let body = json!({"amount": "1", "category": "usage"});
    // A slow first request: sleeping is not a lock wait, so it outlasts the
    // duplicate's lock_timeout while holding its key.
    inject(
        &app.pool,
        &[
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1.5); RETURN NEW; END $$",
            "CREATE TRIGGER slow BEFORE INSERT ON wallet_transactions FOR EACH ROW EXECUTE FUNCTION slow()",
        ],
    )
    .await;
    let first = tokio::spawn({
        let (client, url, key, body) = (app.client.clone(), app.url(&path), shop.key.clone(), body.clone());
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", "slow")
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = app.post(&shop.key, &path, "slow", &body).await;
    assert_eq!(r.headers()["retry-after"], "1");
    problem(r, StatusCode::CONFLICT, "idempotency_key_in_use").await;

    let first = first.await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = first.bytes().await.unwrap();
    let r = app.post(&shop.key, &path, "slow", &body).await;
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.bytes().await.unwrap(), first);
    assert_eq!(app.balance(&shop.key, w).await, "9.00");
}

/// Expires a key's idempotency record, as time would.
pub async fn expire(app: &TestApp, key: &str) {
    sqlx::query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = $1")
        .bind(key)
        .execute(&app.pool)
        .await
        .unwrap();
}

#[sqlx::test]
async fn expired_records_are_cleaned_up_and_the_key_runs_as_new(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let create = json!({"customer_ref": "c", "currency": "USD"});
    let first: Value = app
        .post(&shop.key, "/v1/wallets", "old", &create)
        .await
        .json()
        .await
        .unwrap();
    for i in 0..5 {
        app.post(&shop.key, "/v1/wallets", &format!("filler-{i}"), &create)
            .await;
        expire(&app, &format!("filler-{i}")).await;
    }
    expire(&app, "old").await;
    app.post(&shop.key, "/v1/wallets", "live", &create).await;

    let admin = |method: reqwest::Method, path: &str| {
        app.client
            .request(method, app.url(path))
            .bearer_auth(ADMIN_KEY)
            .header("Idempotency-Key", fresh())
    };
    let stats: Value = admin(reqwest::Method::GET, "/v1/admin/idempotency/stats")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (stats["total"].as_i64(), stats["expired"].as_i64()),
        (Some(7), Some(6))
    );

    // Batches of 2: several short transactions remove all six.
    assert_eq!(jobs::cleanup_idempotency(&app.pool, 2).await.unwrap(), 6);
    let stats: Value = admin(reqwest::Method::GET, "/v1/admin/idempotency/stats")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (stats["total"].as_i64(), stats["expired"].as_i64()),
        (Some(1), Some(0))
    );
    assert_eq!(stats["last_cleanup_rows_deleted"], 6);

    let again = app.post(&shop.key, "/v1/wallets", "old", &create).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert!(again.headers().get("idempotent-replayed").is_none());
    let again: Value = again.json().await.unwrap();
    assert_ne!(again["id"], first["id"], "an expired key runs as new");

    // An expired record not yet deleted is taken over as new as well.
    expire(&app, "old").await;
    let third: Value = app
        .post(&shop.key, "/v1/wallets", "old", &create)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(third["id"], again["id"]);
    assert_eq!(app.count("SELECT count(*) FROM wallets").await, 9);

    // The admin endpoint runs the same cleanup.
    expire(&app, "live").await;
    let r: Value = admin(reqwest::Method::POST, "/v1/admin/idempotency/cleanup")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["rows_deleted"], 1);
}

#[sqlx::test]
async fn an_expired_key_never_moves_money_twice(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "10").await;
    let path = format!("/v1/wallets/{w}/debit");
    let body = json!({"amount": "2", "category": "usage"});
    let first: Value = app
        .post(&shop.key, &path, "monthly", &body)
        .await
        .json()
        .await
        .unwrap();
    expire(&app, "monthly").await;
    jobs::cleanup_idempotency(&app.pool, 100).await.unwrap();

    // The wallet transaction's own UNIQUE key answers with the original movement.
    let r = app.post(&shop.key, &path, "monthly", &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let r = app.post(&shop.key, &path, "other", &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    expire(&app, "monthly").await;
    let r = app
        .post(
            &shop.key,
            &path,
            "monthly",
            &json!({"amount": "3", "category": "usage"}),
        )
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
    assert_eq!(app.balance(&shop.key, w).await, "6.00");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn a_retry_of_a_key_this_instance_answered_reads_its_record_without_claiming_it(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let a = spawn_app(connect.clone()).await;
    let b = spawn_app(connect).await;
    let shop = a.shop().await;
    let w = a.wallet(&shop.key, "USD", "10").await;
    let path = format!("/v1/wallets/{w}/debit");
    let body = json!({"amount": "3", "category": "usage"});
    let first = a.post(&shop.key, &path, "retried", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = first.bytes().await.unwrap();

    // Every claim of a key now fails: only a retry that claims nothing
    // can answer.
    inject(
        &a.pool,
        &[
            "CREATE FUNCTION fail_claim() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$",
            "CREATE TRIGGER fail_claim BEFORE INSERT ON idempotency_keys FOR EACH ROW
           EXECUTE FUNCTION fail_claim()",
        ],
    )
    .await;
    for _ in 0..3 {
        let again = a.post(&shop.key, &path, "retried", &body).await;
        assert_eq!(again.status(), StatusCode::CREATED);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(again.bytes().await.unwrap(), first);
    }
    // The instance that never answered it claims the key, as before.
    let r = b.post(&shop.key, &path, "retried", &body).await;
    problem(r, StatusCode::INTERNAL_SERVER_ERROR, "internal_error").await;
    // Another request under the same key is not the one answered: it
    // claims the key too.
    let other = json!({"amount": "4", "category": "usage"});
    let r = a.post(&shop.key, &path, "retried", &other).await;
    problem(r, StatusCode::INTERNAL_SERVER_ERROR, "internal_error").await;

    inject(&a.pool, &["DROP TRIGGER fail_claim ON idempotency_keys"]).await;
    let r = b.post(&shop.key, &path, "retried", &body).await;
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.bytes().await.unwrap(), first);
    let r = a.post(&shop.key, &path, "retried", &other).await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
    assert_eq!(a.balance(&shop.key, w).await, "7.00");
    a.assert_ledger_consistent().await;
}
