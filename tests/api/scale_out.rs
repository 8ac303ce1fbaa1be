//! Scale-out on Citus (docs/scale-out.md). Under `make test-citus` the money
//! routes run on a pool where Citus refuses any statement that would need
//! more than one shard (`citus.multi_task_query_log_level = error`): every
//! request succeeding proves each of its statements ran on one shard.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::*;

/// A successful answer's body.
async fn send(
    app: &TestApp,
    key: &str,
    method: Method,
    path: String,
    if_match: Option<&str>,
    body: Value,
) -> Value {
    let a = app.call(method, key, &path, &fresh(), if_match, body).await;
    assert!(a.status.is_success(), "{path}: {} {}", a.status, a.body);
    a.body
}

#[sqlx::test]
async fn every_money_statement_runs_on_one_shard(_: PgPoolOptions, connect: PgConnectOptions) {
    if !citus() {
        return; // a single server has one "shard"
    }
    // The app's sessions turn a multi-shard statement into an error.
    let guarded = connect
        .clone()
        .options([("citus.multi_task_query_log_level", "error")]);
    let app = spawn_app(guarded).await;
    let spread = sqlx::query("SELECT count(*) FROM wallets")
        .execute(&app.pool)
        .await
        .unwrap_err();
    assert!(
        spread.to_string().contains("multi-task"),
        "the guard is on: {spread}"
    );
    let shop = app.shop().await;
    let k = &shop.key;
    let a = app.wallet(k, "USD", "100").await;
    let b = app.wallet(k, "USD", "0").await;

    let post = |path: String, body: Value| send(&app, k, Method::POST, path, None, body);
    let debit = post(
        format!("/v1/wallets/{a}/debit"),
        json!({"amount": "5", "category": "usage"}),
    )
    .await;
    let debit = debit["id"].as_str().unwrap().to_owned();
    post(
        "/v1/transfers".into(),
        json!({"from_wallet_id": a, "to_wallet_id": b, "amount": "10"}),
    )
    .await;
    let hold = post(
        format!("/v1/wallets/{a}/reservations"),
        json!({"amount": "10", "reservation_key": "r-1", "expires_in_seconds": 600}),
    )
    .await;
    let hold = hold["id"].as_str().unwrap().to_owned();
    post(
        format!("/v1/reservations/{hold}/capture"),
        json!({"amount": "7.40"}),
    )
    .await;
    let released = post(
        format!("/v1/wallets/{a}/reservations"),
        json!({"amount": "1", "reservation_key": "r-2", "expires_in_seconds": 600}),
    )
    .await;
    post(
        format!("/v1/reservations/{}/release", released["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    let invoice = post(
        "/v1/invoices".into(),
        json!({"customer_ref": "c", "currency": "USD",
               "lines": [{"description": "SMS", "quantity": "3", "unit_amount": "0.335"}]}),
    )
    .await;
    let invoice = invoice["id"].as_str().unwrap().to_owned();
    post(format!("/v1/invoices/{invoice}/finalize"), json!({})).await;
    let paid = post(
        format!("/v1/invoices/{invoice}/pay"),
        json!({"method": "wallet", "wallet_id": a, "amount": "1.01"}),
    )
    .await;
    // Money back: a movement's refund, a credit note refunded to the
    // payments, a payment's refund.
    post(
        format!("/v1/wallets/{a}/transactions/{debit}/refund"),
        json!({"amount": "2.00"}),
    )
    .await;
    post(
        format!("/v1/invoices/{invoice}/credit-notes"),
        json!({"amount": "0.50", "reason": "x", "refund": "original"}),
    )
    .await;
    post(
        format!(
            "/v1/invoices/{invoice}/payments/{}/refund",
            paid["payment"]["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;
    let contract = post(
        "/v1/contracts".into(),
        json!({"customer_ref": "c", "title": "Support", "currency": "USD", "amount": "120.00",
               "billing_interval": "one_time", "starts_on": "2026-12-01"}),
    )
    .await;
    let contract = contract["id"].as_str().unwrap().to_owned();
    send(
        &app,
        k,
        Method::POST,
        format!("/v1/contracts/{contract}/submit"),
        Some("\"1\""),
        json!({}),
    )
    .await;
    let approved = send(
        &app,
        k,
        Method::POST,
        format!("/v1/contracts/{contract}/approve"),
        Some("\"2\""),
        json!({}),
    )
    .await;
    assert_eq!(approved["status"], "approved");
    // Grants: one that expires, spent across, expired by the money path.
    post(
        format!("/v1/wallets/{a}/credit"),
        json!({"amount": "3", "category": "grant", "priority": 1,
               "expires_at": (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339()}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let after = post(
        format!("/v1/wallets/{a}/debit"),
        json!({"amount": "0.50", "category": "usage"}),
    )
    .await;
    assert_eq!(after["consumptions"].as_array().unwrap().len(), 1, "{after}");
    // And the reads: a wallet, its history, its grants, the reconciliation report.
    for path in [
        format!("/v1/wallets/{a}"),
        format!("/v1/wallets/{a}/transactions"),
        format!("/v1/wallets/{a}/transactions/{debit}"),
        format!("/v1/wallets/{a}/grants?status=expired"),
        format!("/v1/invoices/{invoice}"),
        format!("/v1/credit-notes?invoice_id={invoice}"),
        "/v1/reports/reconciliation?from=2026-11-01&to=2026-12-31".to_owned(),
    ] {
        let r = app.get(k, &path).await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    // A replay finds its stored answer on the shop's shard too.
    let mut replay = app
        .post(
            k,
            &format!("/v1/wallets/{a}/debit"),
            "once",
            &json!({"amount": "1", "category": "usage"}),
        )
        .await;
    assert_eq!(replay.status(), reqwest::StatusCode::CREATED);
    replay = app
        .post(
            k,
            &format!("/v1/wallets/{a}/debit"),
            "once",
            &json!({"amount": "1", "category": "usage"}),
        )
        .await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(app.balance(k, a).await, "78.10", "the 3.00 grant expired");
}

/// The background jobs find the shops with due work, then claim each
/// shop's items on its own shard (`FOR UPDATE SKIP LOCKED` per shop): two
/// instances running them at the same time still process every due item of
/// every shop exactly once (on a single server and on Citus alike).
#[sqlx::test]
async fn two_instances_jobs_process_every_shops_due_items_once(_: PgPoolOptions, connect: PgConnectOptions) {
    let a = spawn_app(connect.clone()).await;
    let b = spawn_app(connect).await;
    let mut shops = Vec::new();
    for s in 0..3 {
        let shop = a.shop().await;
        let w = a.wallet(&shop.key, "USD", "100").await;
        for i in 0..8 {
            let r = a
                .post(
                    &shop.key,
                    &format!("/v1/wallets/{w}/reservations"),
                    &fresh(),
                    &json!({"amount": "1.00", "reservation_key": format!("k-{s}-{i}"), "expires_in_seconds": 600}),
                )
                .await;
            assert_eq!(r.status(), reqwest::StatusCode::CREATED);
        }
        // Three promotional grants, due like the holds.
        for _ in 0..3 {
            let r = a
                .post(
                    &shop.key,
                    &format!("/v1/wallets/{w}/credit"),
                    &fresh(),
                    &json!({"amount": "1.00", "category": "grant", "expires_at": "2099-01-01T00:00:00Z"}),
                )
                .await;
            assert_eq!(r.status(), reqwest::StatusCode::CREATED);
        }
        sqlx::query(
            "UPDATE credit_grants SET expires_at = now() - interval '1 second'
              WHERE shop_id = $1 AND expires_at IS NOT NULL",
        )
        .bind(shop.id)
        .execute(&a.pool)
        .await
        .unwrap();
        // Every hold due, and 25 expired idempotency records.
        sqlx::query(
            "UPDATE credit_reservations SET expires_at = now() - interval '1 second' WHERE shop_id = $1",
        )
        .bind(shop.id)
        .execute(&a.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO idempotency_keys (shop_id, key, fingerprint, response_status, expires_at)
             SELECT $1, 'old-' || i, '\\x00', 201, now() - interval '1 hour' FROM generate_series(1, 25) i",
        )
        .bind(shop.id)
        .execute(&a.pool)
        .await
        .unwrap();
        shops.push(shop);
    }
    let expired_keys = a
        .count("SELECT count(*) FROM idempotency_keys WHERE expires_at <= now()")
        .await;
    assert!(expired_keys >= 75);

    let (x, y) = tokio::join!(
        billing_ledger::jobs::expire_reservations(&a.pool, 5),
        billing_ledger::jobs::expire_reservations(&b.pool, 5)
    );
    // A batch whose wallet the other instance holds is skipped and left to
    // the next run, as in production: one more run takes what is left.
    let rest = billing_ledger::jobs::expire_reservations(&a.pool, 5)
        .await
        .unwrap();
    assert_eq!(
        x.unwrap() + y.unwrap() + rest,
        24,
        "every hold of every shop, once"
    );
    assert_eq!(
        a.count("SELECT count(*) FROM credit_reservations WHERE status = 'expired'")
            .await,
        24
    );
    assert_eq!(
        a.count("SELECT count(*) FROM audit_log WHERE action = 'reservation.expire'")
            .await,
        24,
        "one audit row per hold"
    );
    assert_eq!(
        a.count("SELECT count(*) FROM wallets WHERE reserved <> 0").await,
        0
    );
    for shop in &shops {
        let audited: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_log WHERE shop_id = $1 AND action = 'reservation.expire'",
        )
        .bind(shop.id)
        .fetch_one(&a.pool)
        .await
        .unwrap();
        assert_eq!(audited, 8, "each shop's holds under its own shop");
    }

    let (x, y) = tokio::join!(
        billing_ledger::jobs::expire_grants(&a.pool, 2),
        billing_ledger::jobs::expire_grants(&b.pool, 2)
    );
    let rest = billing_ledger::jobs::expire_grants(&a.pool, 2).await.unwrap();
    assert_eq!(
        x.unwrap() + y.unwrap() + rest,
        9,
        "every due grant of every shop, once"
    );
    assert_eq!(
        a.count("SELECT count(*) FROM wallet_transactions WHERE category = 'grant_expired'")
            .await,
        9
    );
    a.assert_grants_consistent().await;

    let (x, y) = tokio::join!(
        billing_ledger::jobs::cleanup_idempotency(&a.pool, 10),
        billing_ledger::jobs::cleanup_idempotency(&b.pool, 10)
    );
    let rest = billing_ledger::jobs::cleanup_idempotency(&a.pool, 10)
        .await
        .unwrap();
    assert_eq!(
        x.unwrap() + y.unwrap() + rest,
        expired_keys as u64,
        "every expired record, once"
    );
    assert_eq!(
        a.count("SELECT count(*) FROM idempotency_keys WHERE expires_at <= now()")
            .await,
        0
    );
    a.assert_ledger_consistent().await;
}
