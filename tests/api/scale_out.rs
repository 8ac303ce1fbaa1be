//! Scale-out on Citus (docs/scale-out.md). Under `make test-citus` the
//! statements the money routes send are checked in Citus's own statistics:
//! each one that reads or writes a distributed table names its shop, so
//! Citus ran it as a router query on one shard.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::*;

async fn send(
    app: &TestApp,
    key: &str,
    method: Method,
    path: String,
    if_match: Option<&str>,
    body: Value,
) -> Value {
    let mut req = app
        .client
        .request(method, app.url(&path))
        .bearer_auth(key)
        .header("Idempotency-Key", fresh())
        .json(&body);
    if let Some(tag) = if_match {
        req = req.header("If-Match", tag);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

#[sqlx::test]
async fn every_money_statement_runs_on_one_shard(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    if !citus() {
        return; // a single server has one "shard"; citus_stat_statements is Citus's
    }
    let shop = app.shop().await;
    let k = &shop.key;
    let a = app.wallet(k, "USD", "100").await;
    let b = app.wallet(k, "USD", "0").await;
    sqlx::query("SELECT citus_stat_statements_reset()")
        .execute(&app.pool)
        .await
        .unwrap();

    let post = |path: String, body: Value| send(&app, k, Method::POST, path, None, body);
    post(
        format!("/v1/wallets/{a}/debit"),
        json!({"amount": "5", "category": "usage"}),
    )
    .await;
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
    post(
        format!("/v1/reservations/{}/capture", hold["id"].as_str().unwrap()),
        json!({"amount": "7.40"}),
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
    post(
        format!("/v1/invoices/{invoice}/pay"),
        json!({"method": "wallet", "wallet_id": a, "amount": "1.01"}),
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

    let statements: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT query, partition_key, calls FROM citus_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let distributed = billing_ledger::citus::planned("distributed");
    let names = |query: &str| -> bool {
        let words: Vec<&str> = query
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .collect();
        distributed.iter().any(|t| words.contains(t))
    };
    let routed: Vec<_> = statements
        .iter()
        .filter(|(q, key, _)| key.is_some() && names(q))
        .collect();
    let spread: Vec<_> = statements
        .iter()
        .filter(|(q, key, _)| key.is_none() && names(q))
        .map(|(q, _, calls)| format!("{calls}× {q}"))
        .collect();
    assert!(
        spread.is_empty(),
        "statements on more than one shard:\n{}",
        spread.join("\n\n")
    );
    // Every route's statements were seen: debit, transfer, hold, capture,
    // invoice create/finalize/pay, contract create/submit/approve.
    assert!(
        routed.iter().map(|(_, _, calls)| calls).sum::<i64>() >= 20,
        "too few routed statements: {routed:?}"
    );
    for shop_key in routed.iter().filter_map(|(_, key, _)| key.as_deref()) {
        assert_eq!(shop_key, shop.id.to_string(), "routed by the shop");
    }
}
