//! Money flowing back: refunds of wallet movements and of invoice
//! payments, and credit notes, exactly once under races and retries.

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::*;

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}"))
        .parse()
        .unwrap()
}

impl TestApp {
    /// A movement made by `POST /v1/wallets/{wallet}/{op}`; its id.
    async fn movement(&self, key: &str, wallet: Uuid, op: &str, body: Value) -> String {
        let r = self
            .post(key, &format!("/v1/wallets/{wallet}/{op}"), &fresh(), &body)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn refund(
        &self,
        key: &str,
        wallet: Uuid,
        tx: &str,
        idem: impl Into<String>,
        body: Value,
    ) -> Answer {
        let path = format!("/v1/wallets/{wallet}/transactions/{tx}/refund");
        self.call(Method::POST, key, &path, &idem.into(), None, body)
            .await
    }
}

#[sqlx::test]
async fn a_debit_is_refunded_in_parts_never_beyond_its_amount(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let wallet = app.wallet(k, "USD", "100.00").await;
    let debit = app
        .movement(
            k,
            wallet,
            "debit",
            json!({"amount": "40.00", "category": "usage"}),
        )
        .await;

    let r = app
        .call(
            Method::POST,
            k,
            &format!("/v1/wallets/{wallet}/transactions/{debit}/refund"),
            "refund-1",
            None,
            json!({"amount": "15.00", "reason": "service outage"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let refund = r.body;
    assert_eq!(refund["type"], "credit");
    assert_eq!(refund["category"], "refund");
    assert_eq!(refund["refund_of"], debit.as_str());
    assert_eq!(refund["amount"], "15.00");
    assert_eq!(refund["balance_after"], "75.00");
    assert_eq!(refund["description"], "service outage");
    let raw = app
        .post(
            k,
            &format!("/v1/wallets/{wallet}/transactions/{debit}/refund"),
            "refund-1",
            &json!({"amount": "15.00", "reason": "service outage"}),
        )
        .await;
    assert_eq!(
        raw.status(),
        StatusCode::CREATED,
        "a retry answers the same refund"
    );
    assert_eq!(
        raw.headers()["location"].to_str().unwrap(),
        format!(
            "/v1/wallets/{wallet}/transactions/{}",
            refund["id"].as_str().unwrap()
        )
    );

    let original: Value = app
        .get(k, &format!("/v1/wallets/{wallet}/transactions/{debit}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(original["refunded_amount"], "15.00");
    let page: Value = app
        .get(k, &format!("/v1/wallets/{wallet}/transactions"))
        .await
        .json()
        .await
        .unwrap();
    let listed = page["data"].as_array().unwrap();
    let find = |id: &str| listed.iter().find(|t| t["id"] == id).unwrap().clone();
    assert_eq!(find(&debit)["refunded_amount"], "15.00");
    assert_eq!(find(refund["id"].as_str().unwrap())["refunded_amount"], "0.00");

    // The default is what is left; then nothing is.
    let rest = app.refund(k, wallet, &debit, fresh(), json!({})).await;
    assert_eq!(
        (rest.status, rest.body["amount"].as_str()),
        (StatusCode::CREATED, Some("25.00"))
    );
    let over = app
        .refund(k, wallet, &debit, fresh(), json!({"amount": "0.01"}))
        .await;
    assert_eq!(over.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(over.body["code"], "refund_exceeds_remaining");
    assert!(
        over.body["errors"]["amount"].is_array(),
        "names the field: {}",
        over.body
    );
    assert_eq!(
        app.balance(k, wallet).await,
        "100.00",
        "all of the debit came back, no more"
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn only_spending_is_refundable_and_only_on_its_own_wallet(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let other = app.shop().await;
    let k = &shop.key;
    let wallet = app.wallet(k, "USD", "0").await;
    let second = app.wallet(k, "USD", "0").await;
    let credit = app
        .movement(
            k,
            wallet,
            "credit",
            json!({"amount": "50.00", "category": "top_up"}),
        )
        .await;
    let r = app
        .post(
            k,
            "/v1/transfers",
            &fresh(),
            &json!({"from_wallet_id": wallet, "to_wallet_id": second, "amount": "5.00"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let transfer: Value = r.json().await.unwrap();
    let debit = app
        .movement(k, wallet, "debit", json!({"amount": "10.00", "category": "fee"}))
        .await;

    for (tx, what) in [
        (credit.as_str(), "a credit"),
        (transfer["debit"]["id"].as_str().unwrap(), "a transfer leg"),
    ] {
        let r = app.refund(k, wallet, tx, fresh(), json!({})).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("not_refundable")),
            "{what}"
        );
    }
    let r = app.refund(k, second, &debit, fresh(), json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another wallet's movement");
    let r = app.refund(&other.key, wallet, &debit, fresh(), json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another shop's movement");
    let r = app
        .refund(k, wallet, &Uuid::now_v7().to_string(), fresh(), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .refund(k, wallet, &debit, fresh(), json!({"amount": "-1"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["code"], "validation_failed");
    assert_eq!(
        app.count("SELECT count(*) FROM wallet_transactions WHERE category = 'refund'")
            .await,
        0,
        "no refusal moved money"
    );
    assert_eq!(app.balance(k, wallet).await, "35.00");
}

#[sqlx::test]
async fn twenty_concurrent_refunds_of_ten_on_a_hundred_give_back_exactly_a_hundred(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let wallet = app.wallet(k, "USD", "100.00").await;
    let debit = app
        .movement(
            k,
            wallet,
            "debit",
            json!({"amount": "100.00", "category": "purchase"}),
        )
        .await;
    let answers =
        join_all((0..20).map(|_| app.refund(k, wallet, &debit, fresh(), json!({"amount": "10.00"})))).await;
    let created = answers.iter().filter(|a| a.status == StatusCode::CREATED).count();
    let refused: Vec<_> = answers
        .iter()
        .filter(|a| a.status == StatusCode::UNPROCESSABLE_ENTITY)
        .collect();
    assert_eq!(
        (created, refused.len()),
        (10, 10),
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for r in refused {
        assert_eq!(r.body["code"], "refund_exceeds_remaining");
        assert!(r.body["errors"]["amount"].is_array());
    }
    let refunded: Decimal = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .map(|a| dec(&a.body["amount"]))
        .sum();
    assert_eq!(refunded, Decimal::from(100));
    assert_eq!(
        app.count("SELECT count(*) FROM wallet_transactions WHERE category = 'refund'")
            .await,
        10
    );
    assert_eq!(app.balance(k, wallet).await, "100.00");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn a_refund_retried_after_its_key_expired_answers_the_earlier_refund(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let wallet = app.wallet(k, "USD", "30.00").await;
    let debit = app
        .movement(
            k,
            wallet,
            "debit",
            json!({"amount": "30.00", "category": "usage"}),
        )
        .await;
    let first = app
        .refund(k, wallet, &debit, "give-back", json!({"amount": "10.00"}))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    crate::idempotency::expire(&app, "give-back").await;
    let again = app
        .refund(k, wallet, &debit, "give-back", json!({"amount": "10.00"}))
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert!(again.replayed, "marked Idempotent-Replayed");
    assert_eq!(again.body["id"], first.body["id"]);
    crate::idempotency::expire(&app, "give-back").await;
    let other = app
        .refund(k, wallet, &debit, "give-back", json!({"amount": "5.00"}))
        .await;
    assert_eq!(
        (other.status, other.body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_key_reused"))
    );
    assert_eq!(app.balance(k, wallet).await, "10.00", "refunded once");
}

#[sqlx::test]
async fn a_refund_racing_the_originals_retry_applies_once(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let wallet = app.wallet(k, "USD", "50.00").await;
    let path = format!("/v1/wallets/{wallet}/debit");
    let body = json!({"amount": "20.00", "category": "usage"});
    let first = app.call(Method::POST, k, &path, "buy", None, body.clone()).await;
    let debit = first.body["id"].as_str().unwrap().to_owned();
    // The client retries the debit while it refunds it, several times over.
    let retries = join_all((0..8).map(|_| app.call(Method::POST, k, &path, "buy", None, body.clone())));
    let refunds = join_all((0..8).map(|_| app.refund(k, wallet, &debit, "undo", json!({}))));
    let (retries, refunds) = tokio::join!(retries, refunds);
    for r in &retries {
        assert!(
            r.status == StatusCode::CREATED || r.status == StatusCode::CONFLICT,
            "{}",
            r.status
        );
        if r.status == StatusCode::CREATED {
            assert_eq!(r.body["id"], debit.as_str(), "the retry answers the first debit");
        }
    }
    for r in &refunds {
        assert!(
            r.status == StatusCode::CREATED || r.status == StatusCode::CONFLICT,
            "{}",
            r.status
        );
    }
    assert_eq!(
        app.count("SELECT count(*) FROM wallet_transactions WHERE category = 'usage'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM wallet_transactions WHERE category = 'refund'")
            .await,
        1
    );
    assert_eq!(app.balance(k, wallet).await, "50.00");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn a_captured_hold_is_refundable(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let wallet = app.wallet(k, "EUR", "20.00").await;
    let r = app
        .post(
            k,
            &format!("/v1/wallets/{wallet}/reservations"),
            &fresh(),
            &json!({"amount": "8.00"}),
        )
        .await;
    let hold: Value = r.json().await.unwrap();
    let r = app
        .post(
            k,
            &format!("/v1/reservations/{}/capture", hold["id"].as_str().unwrap()),
            &fresh(),
            &json!({"amount": "6.00"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = app
        .get(k, &format!("/v1/wallets/{wallet}/transactions"))
        .await
        .json()
        .await
        .unwrap();
    let capture = page["data"][0].clone();
    assert_eq!(capture["category"], "reservation_capture");
    let r = app
        .refund(
            k,
            wallet,
            capture["id"].as_str().unwrap(),
            fresh(),
            json!({"amount": "6.00"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(app.balance(k, wallet).await, "20.00");
    app.assert_ledger_consistent().await;
}
