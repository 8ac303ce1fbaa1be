//! What outside trials broke at the HTTP edge (issue 27): repeated
//! `Idempotency-Key` or `Authorization` headers, bodies that are not JSON,
//! dates generated clients cannot read back, and `If-Match` spelled two
//! ways. Each refusal is problem+json and changes nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::*;

/// A one-line USD draft invoice of 5.00, due on `due_date` when given.
fn draft_invoice(due_date: Option<&str>) -> Value {
    let mut body = json!({"customer_ref": "c", "currency": "USD",
                          "lines": [{"description": "x", "quantity": "1", "unit_amount": "5.00"}]});
    if let Some(date) = due_date {
        body["due_date"] = json!(date);
    }
    body
}

/// A 5.00 USD draft contract.
fn draft_contract(interval: &str, starts_on: &str) -> Value {
    json!({"customer_ref": "c", "title": "t", "currency": "USD", "amount": "5.00",
           "billing_interval": interval, "starts_on": starts_on})
}

#[sqlx::test]
async fn two_idempotency_keys_are_refused_and_store_nothing(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let wallet = app.wallet(&shop.key, "USD", "10.00").await;
    let path = format!("/v1/wallets/{wallet}/debit");
    let body = json!({"amount": "3.00", "category": "usage"});
    let r = app
        .client
        .post(app.url(&path))
        .bearer_auth(&shop.key)
        .header("Idempotency-Key", "key-a")
        .header("Idempotency-Key", "key-b")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "idempotency_key_invalid").await;
    assert_eq!(app.balance(&shop.key, wallet).await, "10.00");
    assert_eq!(
        app.count("SELECT count(*) FROM idempotency_keys WHERE key IN ('key-a', 'key-b')")
            .await,
        0
    );
    // Each key alone then moves money once.
    for key in ["key-a", "key-b", "key-a"] {
        assert!(app.post(&shop.key, &path, key, &body).await.status().is_success());
    }
    assert_eq!(app.balance(&shop.key, wallet).await, "4.00");

    let r = app
        .client
        .post(app.url(&path))
        .header("Authorization", format!("Bearer {}", shop.key))
        .header("Authorization", "Bearer blk_someone_else")
        .header("Idempotency-Key", "key-c")
        .json(&body)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "bad_request").await;
    let r = app
        .client
        .get(app.url(&format!("/v1/wallets/{wallet}")))
        .header("Authorization", format!("Bearer {}", shop.key))
        .header("Authorization", format!("Bearer {}", shop.key))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::BAD_REQUEST, "bad_request").await;
    assert_eq!(app.balance(&shop.key, wallet).await, "4.00");
}

#[sqlx::test]
async fn bodies_that_are_not_json_are_415_and_move_nothing(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let wallet = app.wallet(&shop.key, "USD", "10.00").await;
    let path = format!("/v1/wallets/{wallet}/debit");
    let body = r#"{"amount": "1.00", "category": "usage"}"#;
    let send = |content_type: Option<&'static str>, payload: &'static str| {
        let mut req = app
            .client
            .post(app.url(&path))
            .bearer_auth(&shop.key)
            .header("Idempotency-Key", fresh())
            .body(payload);
        if let Some(t) = content_type {
            req = req.header("Content-Type", t);
        }
        req.send()
    };
    for (t, payload) in [
        (Some("text/plain"), body),
        (
            Some("application/x-www-form-urlencoded"),
            "amount=1.00&category=usage",
        ),
        (Some("application/xml"), "<debit><amount>1.00</amount></debit>"),
        (Some("application/json-seq"), body),
        (None, body),
    ] {
        let r = send(t, payload).await.unwrap();
        problem(r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    }
    assert_eq!(app.balance(&shop.key, wallet).await, "10.00");
    assert_eq!(
        app.count("SELECT count(*) FROM idempotency_keys WHERE response_status > 0")
            .await,
        2
    );
    for t in ["application/json; charset=utf-8", "application/merge-patch+json"] {
        assert_eq!(
            send(Some(t), body).await.unwrap().status(),
            StatusCode::CREATED,
            "{t}"
        );
    }
    assert_eq!(app.balance(&shop.key, wallet).await, "8.00");
    // An action without a body needs no type.
    let invoice: Value = app
        .post(&shop.key, "/v1/invoices", &fresh(), &draft_invoice(None))
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .client
        .post(app.url(&format!(
            "/v1/invoices/{}/finalize",
            invoice["id"].as_str().unwrap()
        )))
        .bearer_auth(&shop.key)
        .header("Idempotency-Key", fresh())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[sqlx::test]
async fn dates_outside_years_0001_to_9999_are_422(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    for bad in [
        "+12026-01-01",
        "-0001-01-01",
        "0000-01-01",
        "+99999-12-31",
        "2026-1-01",
    ] {
        let r = app
            .post(&shop.key, "/v1/invoices", &fresh(), &draft_invoice(Some(bad)))
            .await;
        let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert!(p["errors"]["due_date"].is_array(), "{p}");
        let r = app
            .post(
                &shop.key,
                "/v1/contracts",
                &fresh(),
                &draft_contract("monthly", bad),
            )
            .await;
        let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert!(p["errors"]["starts_on"].is_array(), "{p}");
        let r = app
            .get(
                &shop.key,
                &format!("/v1/reports/trial-balance?as_of={}", bad.replace('+', "%2B")),
            )
            .await;
        problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    assert_eq!(app.count("SELECT count(*) FROM invoices").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM contracts").await, 0);
    let r = app
        .post(
            &shop.key,
            "/v1/invoices",
            &fresh(),
            &draft_invoice(Some("9999-12-31")),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["due_date"], "9999-12-31");
}

#[sqlx::test]
async fn if_match_quoted_or_bare_is_the_same_request(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let path = contract_path(&app, &shop.key).await;
    let patch = |tag: &'static str| {
        app.client
            .patch(app.url(&path))
            .bearer_auth(&shop.key)
            .header("Idempotency-Key", "patch-once")
            .header("If-Match", tag)
            .json(&json!({"title": "renamed"}))
            .send()
    };
    let first = patch("\"1\"").await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first_body = first.bytes().await.unwrap();
    let again = patch("1").await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first_body);
    let current: Value = app.get(&shop.key, &path).await.json().await.unwrap();
    assert_eq!(current["version"], 2);
}

#[sqlx::test]
async fn small_things_outside_trials_found(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let wallet = app.wallet(&shop.key, "USD", "10.00").await;
    // A key repeated inside metadata is a 422, like a repeated field.
    let r = app
        .post_raw(
            &shop.key,
            &format!("/v1/wallets/{wallet}/debit"),
            &fresh(),
            r#"{"amount": "1.00", "category": "usage", "metadata": {"order": "a", "order": "b"}}"#,
        )
        .await;
    let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(p["errors"]["metadata"].is_array(), "{p}");
    assert_eq!(app.balance(&shop.key, wallet).await, "10.00");
    // A blank shop name is refused.
    let r = app
        .client
        .post(app.url("/v1/admin/shops"))
        .bearer_auth(ADMIN_KEY)
        .header("Idempotency-Key", fresh())
        .json(&json!({"name": "   "}))
        .send()
        .await
        .unwrap();
    let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(p["errors"]["name"].is_array(), "{p}");
    // `limit` is named whether malformed or out of range.
    for q in ["limit=abc", "limit=0", "limit=101"] {
        let p = problem(
            app.get(&shop.key, &format!("/v1/wallets?{q}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert!(p["errors"]["limit"].is_array(), "{q}: {p}");
    }
    // q-values: JSON preferred over a low-quality CSV.
    let today = chrono::Utc::now().date_naive();
    let r = app
        .client
        .get(app.url(&format!("/v1/reports/reconciliation?from={today}&to={today}")))
        .bearer_auth(&shop.key)
        .header("Accept", "text/csv;q=0.1, application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
    // A PATCH that names nothing leaves the version alone.
    let path = contract_path(&app, &shop.key).await;
    let r = app
        .client
        .patch(app.url(&path))
        .bearer_auth(&shop.key)
        .header("Idempotency-Key", fresh())
        .header("If-Match", "\"1\"")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 1);
    let draft: Value = app
        .post(&shop.key, "/v1/invoices", &fresh(), &draft_invoice(None))
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .client
        .patch(app.url(&format!("/v1/invoices/{}", draft["id"].as_str().unwrap())))
        .bearer_auth(&shop.key)
        .header("Idempotency-Key", fresh())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], draft["version"]);
}

/// A new one-time draft contract's path.
async fn contract_path(app: &TestApp, key: &str) -> String {
    let created: Value = app
        .post(
            key,
            "/v1/contracts",
            &fresh(),
            &draft_contract("one_time", "2026-01-01"),
        )
        .await
        .json()
        .await
        .unwrap();
    format!("/v1/contracts/{}", created["id"].as_str().unwrap())
}
