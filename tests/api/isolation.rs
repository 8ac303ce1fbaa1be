//! Tenant isolation over every route that takes an id or lists: shop B's
//! key never sees, and never changes, shop A's objects; and no body can set
//! a field the service owns (mass assignment).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::*;

impl TestApp {
    async fn send_as(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(key)
            .header("Idempotency-Key", fresh())
            .header("If-Match", "\"1\"");
        if let Some(body) = body {
            req = req.json(body);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn created(&self, key: &str, path: &str, body: Value) -> String {
        let (s, b) = self.send_as(key, Method::POST, path, Some(&body)).await;
        assert!(s.is_success(), "{path}: {s} {b}");
        b["id"].as_str().unwrap().to_owned()
    }

    /// Everything shop data can change, as one comparable value.
    async fn snapshot(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sql in [
            "SELECT string_agg(id::text || balance::text || reserved::text || version::text, ',' ORDER BY id) FROM wallets",
            "SELECT count(*)::text FROM wallet_transactions",
            "SELECT count(*)::text FROM journal_entries",
            "SELECT string_agg(id::text || status || captured_amount::text, ',' ORDER BY id) FROM credit_reservations",
            "SELECT string_agg(id::text || status || version::text || amount_paid::text, ',' ORDER BY id) FROM invoices",
            "SELECT string_agg(id::text || status || version::text, ',' ORDER BY id) FROM contracts",
            "SELECT string_agg(id::text || status || attempts::text, ',' ORDER BY id) FROM webhook_events",
            "SELECT count(*)::text FROM invoice_payments",
        ] {
            let v: Option<String> = sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap();
            out.push(v.unwrap_or_default());
        }
        out
    }
}

#[sqlx::test]
async fn shop_b_neither_sees_nor_changes_shop_a(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let (a, b) = (app.shop().await, app.shop().await);
    let k = &a.key;
    let wallet = app.wallet(k, "USD", "50.00").await.to_string();
    let other = app.wallet(k, "USD", "0").await.to_string();
    let transfer = app
        .created(
            k,
            "/v1/transfers",
            json!({"from_wallet_id": wallet, "to_wallet_id": other, "amount": "1.00"}),
        )
        .await;
    let reservation = app
        .created(
            k,
            &format!("/v1/wallets/{wallet}/reservations"),
            json!({"amount": "2.00"}),
        )
        .await;
    let invoice = app
        .created(
            k,
            "/v1/invoices",
            json!({"customer_ref": "c", "currency": "USD",
                   "lines": [{"description": "x", "quantity": "1", "unit_amount": "3.00"}]}),
        )
        .await;
    let contract = app
        .created(
            k,
            "/v1/contracts",
            json!({"customer_ref": "c", "title": "t", "currency": "USD", "amount": "5.00",
                   "billing_interval": "one_time", "starts_on": "2026-12-01"}),
        )
        .await;
    let secret = app
        .created(k, "/v1/webhook-secrets", json!({"provider": "acme"}))
        .await;
    let _ = secret;
    sqlx::query(
        "INSERT INTO webhook_events (shop_id, id, provider, event_id, type, payload, status, next_attempt_at, received_at)
         VALUES ($1, gen_random_uuid(), 'acme', 'evt_a', 'payment.succeeded', '{}', 'dead', now(), now())",
    )
    .bind(a.id)
    .execute(&app.pool)
    .await
    .unwrap();
    let event: String = sqlx::query_scalar("SELECT id::text FROM webhook_events WHERE event_id = 'evt_a'")
        .fetch_one(&app.pool)
        .await
        .unwrap();

    let money = json!({"amount": "1.00", "category": "usage"});
    let reads = [
        format!("/v1/wallets/{wallet}"),
        format!("/v1/wallets/{wallet}/transactions"),
        format!("/v1/wallets/{wallet}/reservations"),
        format!("/v1/reservations/{reservation}"),
        format!("/v1/invoices/{invoice}"),
        format!("/v1/contracts/{contract}"),
        format!("/v1/webhook-events/{event}"),
    ];
    let writes: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            format!("/v1/wallets/{wallet}/credit"),
            json!({"amount": "1.00", "category": "top_up"}),
        ),
        (Method::POST, format!("/v1/wallets/{wallet}/debit"), money.clone()),
        (
            Method::POST,
            format!("/v1/wallets/{wallet}/reservations"),
            json!({"amount": "1.00"}),
        ),
        (
            Method::POST,
            "/v1/transfers".into(),
            json!({"from_wallet_id": wallet, "to_wallet_id": other, "amount": "1.00"}),
        ),
        (
            Method::POST,
            format!("/v1/reservations/{reservation}/capture"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/v1/reservations/{reservation}/release"),
            json!({}),
        ),
        (
            Method::PATCH,
            format!("/v1/invoices/{invoice}"),
            json!({"memo": "mine now"}),
        ),
        (
            Method::POST,
            format!("/v1/invoices/{invoice}/finalize"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/v1/invoices/{invoice}/pay"),
            json!({"method": "card"}),
        ),
        (Method::POST, format!("/v1/invoices/{invoice}/void"), json!({})),
        (
            Method::PATCH,
            format!("/v1/contracts/{contract}"),
            json!({"title": "mine now"}),
        ),
        (
            Method::POST,
            format!("/v1/contracts/{contract}/submit"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/v1/contracts/{contract}/approve"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/v1/contracts/{contract}/reject"),
            json!({"reason": "x"}),
        ),
        (
            Method::POST,
            format!("/v1/contracts/{contract}/cancel"),
            json!({}),
        ),
        (
            Method::POST,
            format!("/v1/webhook-events/{event}/retry"),
            json!({}),
        ),
    ];
    let before = app.snapshot().await;
    let unknown = format!("/v1/wallets/{}", uuid::Uuid::now_v7());
    let (_, missing) = app.send_as(&b.key, Method::GET, &unknown, None).await;
    for path in &reads {
        let (s, body) = app.send_as(&b.key, Method::GET, path, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "GET {path}");
        // No hint: the same answer as for an id that exists nowhere.
        assert_eq!(
            (body["code"].as_str(), body["detail"].as_str()),
            (missing["code"].as_str(), missing["detail"].as_str()),
            "GET {path}"
        );
    }
    for (method, path, body) in &writes {
        let (s, answer) = app.send_as(&b.key, method.clone(), path, Some(body)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert_eq!(answer["code"], "not_found");
    }
    assert_eq!(app.snapshot().await, before, "B's requests changed nothing");
    // B's lists show none of A's rows.
    for list in [
        "/v1/wallets",
        "/v1/invoices",
        "/v1/contracts",
        "/v1/webhook-events",
    ] {
        let (s, page) = app.send_as(&b.key, Method::GET, list, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(page["data"].as_array().unwrap().len(), 0, "{list}");
        let (_, mine) = app.send_as(k, Method::GET, list, None).await;
        assert!(
            !mine["data"].as_array().unwrap().is_empty(),
            "A sees its own {list}"
        );
    }
    let _ = transfer;
}

#[sqlx::test]
async fn fields_the_service_owns_cannot_be_set_through_a_body(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let wallet = app.wallet(k, "USD", "0").await;
    let other = app.shop().await;
    let line = json!([{"description": "x", "quantity": "1", "unit_amount": "1.00"}]);
    let cases: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/v1/wallets".into(),
            json!({"customer_ref": "c", "currency": "USD", "balance": "100.00"}),
        ),
        (
            Method::POST,
            "/v1/wallets".into(),
            json!({"customer_ref": "c", "currency": "USD", "shop_id": other.id}),
        ),
        (
            Method::POST,
            "/v1/wallets".into(),
            json!({"customer_ref": "c", "currency": "USD", "reserved": "1.00"}),
        ),
        (
            Method::POST,
            "/v1/wallets".into(),
            json!({"customer_ref": "c", "currency": "USD", "version": 9}),
        ),
        (
            Method::POST,
            format!("/v1/wallets/{wallet}/credit"),
            json!({"amount": "1.00", "category": "top_up", "balance_after": "9"}),
        ),
        (
            Method::POST,
            "/v1/invoices".into(),
            json!({"customer_ref": "c", "currency": "USD", "lines": line, "status": "paid"}),
        ),
        (
            Method::POST,
            "/v1/invoices".into(),
            json!({"customer_ref": "c", "currency": "USD", "lines": line, "number": 1}),
        ),
        (
            Method::POST,
            "/v1/invoices".into(),
            json!({"customer_ref": "c", "currency": "USD", "lines": line, "amount_paid": "1.00"}),
        ),
        (
            Method::POST,
            "/v1/contracts".into(),
            json!({"customer_ref": "c", "title": "t", "currency": "USD", "amount": "5.00",
            "billing_interval": "one_time", "starts_on": "2026-12-01", "status": "approved"}),
        ),
        (
            Method::POST,
            "/v1/contracts".into(),
            json!({"customer_ref": "c", "title": "t", "currency": "USD", "amount": "5.00",
            "billing_interval": "one_time", "starts_on": "2026-12-01", "version": 7}),
        ),
    ];
    for (method, path, body) in cases {
        let (s, answer) = app.send_as(k, method.clone(), &path, Some(&body)).await;
        assert_eq!(
            s,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path} {body}: {answer}"
        );
        assert_eq!(answer["code"], "validation_failed");
    }
    assert_eq!(app.count("SELECT count(*) FROM wallets").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM invoices").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM contracts").await, 0);
    assert_eq!(app.balance(k, wallet).await, "0.00");
}
