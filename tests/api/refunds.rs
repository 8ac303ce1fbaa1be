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

impl TestApp {
    async fn pay(&self, key: &str, invoice: &str, body: Value) -> Value {
        let (s, b) = self.send(key, &format!("/v1/invoices/{invoice}/pay"), body).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b
    }

    async fn refund_payment(
        &self,
        key: &str,
        invoice: &str,
        payment: &str,
        idem: &str,
        body: Value,
    ) -> Answer {
        let path = format!("/v1/invoices/{invoice}/payments/{payment}/refund");
        self.call(Method::POST, key, &path, idem, None, body).await
    }

    async fn credit_note(&self, key: &str, invoice: &str, idem: impl Into<String>, body: Value) -> Answer {
        let path = format!("/v1/invoices/{invoice}/credit-notes");
        self.call(Method::POST, key, &path, &idem.into(), None, body)
            .await
    }
}

#[sqlx::test]
async fn a_refunded_payment_reopens_its_invoice_and_never_exceeds_the_payment(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let invoice = app.open_invoice(k, "USD", "100.00").await;
    let paid = app
        .pay(k, &invoice, json!({"method": "card", "external_ref": "ch_1"}))
        .await;
    assert_eq!(paid["invoice"]["status"], "paid");
    let payment = paid["payment"]["id"].as_str().unwrap();

    let r = app
        .refund_payment(
            k,
            &invoice,
            payment,
            "refund-a",
            json!({"amount": "40.00", "reason": "damaged", "external_ref": "re_1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["refund"]["amount"], "40.00");
    assert_eq!(r.body["refund"]["external_ref"], "re_1");
    assert_eq!(
        (
            r.body["invoice"]["status"].as_str(),
            r.body["invoice"]["amount_paid"].as_str(),
            r.body["invoice"]["amount_due"].as_str()
        ),
        (Some("open"), Some("60.00"), Some("40.00")),
        "a refunded payment reopens the paid invoice"
    );
    // The provider's reference again, under another key: the recorded refund.
    let again = app
        .refund_payment(k, &invoice, payment, &fresh(), json!({"external_ref": "re_1"}))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        (again.body["existing"].as_bool(), &again.body["refund"]["id"]),
        (Some(true), &r.body["refund"]["id"])
    );
    let elsewhere = app.open_invoice(k, "USD", "1.00").await;
    let wrong = app
        .refund_payment(k, &elsewhere, payment, &fresh(), json!({"external_ref": "re_1"}))
        .await;
    assert_eq!(
        (wrong.status, wrong.body["code"].as_str()),
        (StatusCode::CONFLICT, Some("external_ref_conflict")),
        "a known reference under another invoice's path: {}",
        wrong.body
    );
    let conflict = app
        .refund_payment(
            k,
            &invoice,
            payment,
            &fresh(),
            json!({"external_ref": "re_1", "amount": "1.00"}),
        )
        .await;
    assert_eq!(
        (conflict.status, conflict.body["code"].as_str()),
        (StatusCode::CONFLICT, Some("external_ref_conflict"))
    );
    let over = app
        .refund_payment(k, &invoice, payment, &fresh(), json!({"amount": "60.01"}))
        .await;
    assert_eq!(
        (over.status, over.body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("refund_exceeds_remaining"))
    );
    assert!(over.body["errors"]["amount"].is_array());
    let missing = app
        .refund_payment(k, &invoice, &Uuid::now_v7().to_string(), &fresh(), json!({}))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // A wallet payment goes back to its wallet.
    let wallet = app.wallet(k, "USD", "30.00").await;
    let second = app.open_invoice(k, "USD", "30.00").await;
    let paid = app
        .pay(k, &second, json!({"method": "wallet", "wallet_id": wallet}))
        .await;
    assert_eq!(app.balance(k, wallet).await, "0.00");
    let r = app
        .refund_payment(
            k,
            &second,
            paid["payment"]["id"].as_str().unwrap(),
            &fresh(),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.body["refund"]["wallet_transaction_id"].is_string());
    assert_eq!(app.balance(k, wallet).await, "30.00");
    let shown = app.invoice(k, &second).await;
    assert_eq!(
        (shown["status"].as_str(), shown["amount_due"].as_str()),
        (Some("open"), Some("30.00"))
    );
    assert_eq!(shown["refunds"].as_array().unwrap().len(), 1);
    let payments = app.payments_of(k, &second).await;
    assert_eq!(payments[0]["amount_refunded"], "30.00");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn credit_notes_lower_what_is_owed_and_refund_an_overpayment_as_asked(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;

    // On an open invoice: lowers amount_due; credited in full is terminal.
    let open = app.open_invoice(k, "USD", "100.00").await;
    let r = app
        .credit_note(
            k,
            &open,
            &fresh(),
            json!({"amount": "30.00", "reason": "discount"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["number"], "CN-000001");
    let shown = app.invoice(k, &open).await;
    assert_eq!(
        (shown["amount_credited"].as_str(), shown["amount_due"].as_str()),
        (Some("30.00"), Some("70.00"))
    );
    let over = app
        .credit_note(
            k,
            &open,
            &fresh(),
            json!({"amount": "70.01", "reason": "too much"}),
        )
        .await;
    assert_eq!(
        (over.status, over.body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("credit_exceeds_remaining"))
    );
    assert!(over.body["errors"]["amount"].is_array());
    let rest = app
        .credit_note(k, &open, &fresh(), json!({"lines": [{"description": "a", "amount": "40.00"}, {"description": "b", "amount": "30.00"}], "reason": "cancelled order"}))
        .await;
    assert_eq!(
        (
            rest.status,
            rest.body["amount"].as_str(),
            rest.body["number"].as_str()
        ),
        (StatusCode::CREATED, Some("70.00"), Some("CN-000002"))
    );
    let shown = app.invoice(k, &open).await;
    assert_eq!(
        (shown["status"].as_str(), shown["amount_due"].as_str()),
        (Some("credited"), Some("0.00"))
    );
    assert_eq!(shown["credit_notes"].as_array().unwrap().len(), 2);
    let closed = app
        .credit_note(k, &open, &fresh(), json!({"amount": "1.00", "reason": "x"}))
        .await;
    assert_eq!(
        (closed.status, closed.body["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_state"))
    );

    // On a paid invoice, back to a wallet.
    let wallet = app.wallet(k, "USD", "0").await;
    let paid = app.open_invoice(k, "USD", "100.00").await;
    app.pay(k, &paid, json!({"method": "bank_transfer"})).await;
    let r = app
        .credit_note(
            k,
            &paid,
            &fresh(),
            json!({"amount": "25.00", "reason": "goodwill", "refund": "wallet", "wallet_id": wallet}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        (r.body["refunded"].as_str(), r.body["number"].as_str()),
        (Some("25.00"), Some("CN-000003"))
    );
    assert_eq!(app.balance(k, wallet).await, "25.00");
    let shown = app.invoice(k, &paid).await;
    assert_eq!(
        (
            shown["status"].as_str(),
            shown["amount_credited"].as_str(),
            shown["amount_paid"].as_str(),
            shown["amount_due"].as_str()
        ),
        (Some("paid"), Some("25.00"), Some("75.00"), Some("0.00"))
    );

    // Back to the payments, newest first: the wallet's 40, then 10 of the card's 60.
    let payer = app.wallet(k, "USD", "40.00").await;
    let split = app.open_invoice(k, "USD", "100.00").await;
    let card = app
        .pay(k, &split, json!({"method": "card", "amount": "60.00"}))
        .await;
    let from_wallet = app
        .pay(k, &split, json!({"method": "wallet", "wallet_id": payer}))
        .await;
    assert_eq!(from_wallet["invoice"]["status"], "paid");
    let r = app
        .credit_note(
            k,
            &split,
            &fresh(),
            json!({"amount": "50.00", "reason": "returned", "refund": "original"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(app.balance(k, payer).await, "40.00");
    let payments = app.payments_of(k, &split).await;
    let refunded = |id: &Value| payments.iter().find(|p| p["id"] == *id).unwrap()["amount_refunded"].clone();
    assert_eq!(refunded(&from_wallet["payment"]["id"]), "40.00");
    assert_eq!(refunded(&card["payment"]["id"]), "10.00");
    let shown = app.invoice(k, &split).await;
    assert_eq!(
        (shown["status"].as_str(), shown["amount_paid"].as_str()),
        (Some("paid"), Some("50.00"))
    );
    assert_eq!(shown["refunds"].as_array().unwrap().len(), 2);

    // Kept as customer credit.
    let kept = app.open_invoice(k, "USD", "20.00").await;
    app.pay(k, &kept, json!({"method": "card"})).await;
    let r = app
        .credit_note(
            k,
            &kept,
            &fresh(),
            json!({"amount": "20.00", "reason": "refund later"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["customer_credit"].as_str()),
        (StatusCode::CREATED, Some("20.00"))
    );
    let shown = app.invoice(k, &kept).await;
    assert_eq!(
        (
            shown["status"].as_str(),
            shown["customer_credit"].as_str(),
            shown["amount_paid"].as_str()
        ),
        (Some("credited"), Some("20.00"), Some("0.00"))
    );

    let list: Value = app.get(k, "/v1/credit-notes?limit=2").await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert_eq!(list["has_more"], true);
    let one: Value = app
        .get(k, &format!("/v1/credit-notes/{}", r.body["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["number"], "CN-000005");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn fifty_concurrent_credit_notes_with_failures_are_numbered_without_gaps(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let mut invoices = Vec::new();
    for _ in 0..5 {
        invoices.push(app.open_invoice(k, "USD", "100.00").await);
    }
    // Every credit note whose reason says so fails after taking its number.
    inject(
        &app.pool,
        &[
            "CREATE FUNCTION fail_some() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.reason = 'fail' THEN RAISE EXCEPTION 'injected failure'; END IF;
                 RETURN NEW;
             END $$",
            "CREATE TRIGGER fail_some AFTER INSERT ON credit_notes FOR EACH ROW EXECUTE FUNCTION fail_some()",
        ],
    )
    .await;
    let answers = join_all((0..50).map(|i| {
        let invoice = &invoices[i % 5];
        let reason = if i % 4 == 3 { "fail" } else { "ok" };
        app.credit_note(
            k,
            invoice,
            format!("cn-{i}"),
            json!({"amount": "1.00", "reason": reason}),
        )
    }))
    .await;
    let created: Vec<_> = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED)
        .collect();
    let failed = answers.iter().filter(|a| a.status.is_server_error()).count();
    assert_eq!(
        (created.len(), failed),
        (38, 12),
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    let mut numbers: Vec<String> = created
        .iter()
        .map(|a| a.body["number"].as_str().unwrap().to_owned())
        .collect();
    numbers.sort();
    let expected: Vec<String> = (1..=38).map(|n| format!("CN-{n:06}")).collect();
    assert_eq!(numbers, expected, "gapless: a failed note gave its number back");
    for invoice in &invoices {
        let shown = app.invoice(k, invoice).await;
        let notes = shown["credit_notes"].as_array().unwrap().len();
        assert_eq!(dec(&shown["amount_credited"]), Decimal::from(notes as i64));
    }
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn refunds_and_credit_notes_retried_after_their_key_expired_answer_the_earlier_one(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let invoice = app.open_invoice(k, "USD", "50.00").await;
    let paid = app.pay(k, &invoice, json!({"method": "card"})).await;
    let payment = paid["payment"]["id"].as_str().unwrap();
    let first = app
        .refund_payment(k, &invoice, payment, "r-1", json!({"amount": "5.00"}))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    crate::idempotency::expire(&app, "r-1").await;
    let again = app
        .refund_payment(k, &invoice, payment, "r-1", json!({"amount": "5.00"}))
        .await;
    assert_eq!((again.status, again.replayed), (StatusCode::CREATED, true));
    assert_eq!(again.body["refund"]["id"], first.body["refund"]["id"]);

    let note = app
        .credit_note(k, &invoice, "c-1", json!({"amount": "5.00", "reason": "x"}))
        .await;
    assert_eq!(note.status, StatusCode::CREATED, "{}", note.body);
    crate::idempotency::expire(&app, "c-1").await;
    let again = app
        .credit_note(k, &invoice, "c-1", json!({"amount": "5.00", "reason": "x"}))
        .await;
    assert_eq!((again.status, again.replayed), (StatusCode::CREATED, true));
    assert_eq!(again.body["id"], note.body["id"]);
    crate::idempotency::expire(&app, "c-1").await;
    let other = app
        .credit_note(k, &invoice, "c-1", json!({"amount": "7.00", "reason": "x"}))
        .await;
    assert_eq!(
        (other.status, other.body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_key_reused")),
        "another credit note under the same key is never answered with the first"
    );
    let shown = app.invoice(k, &invoice).await;
    assert_eq!(
        (
            shown["amount_credited"].as_str(),
            shown["amount_paid"].as_str(),
            shown["amount_due"].as_str()
        ),
        (Some("5.00"), Some("45.00"), Some("0.00")),
        "each took effect once"
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn the_report_shows_refunds_and_credit_notes_and_flags_a_payment_refunded_behind_its_back(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let finance = app.key(&shop, billing_ledger::tenants::Role::Finance).await;
    let wallet = app.wallet(k, "USD", "50.00").await;
    let debit = app
        .movement(
            k,
            wallet,
            "debit",
            json!({"amount": "20.00", "category": "usage"}),
        )
        .await;
    assert_eq!(
        app.refund(k, wallet, &debit, fresh(), json!({"amount": "5.00"}))
            .await
            .status,
        StatusCode::CREATED
    );
    let invoice = app.open_invoice(k, "USD", "40.00").await;
    let paid = app.pay(k, &invoice, json!({"method": "card"})).await;
    let payment = paid["payment"]["id"].as_str().unwrap();
    let note = app
        .credit_note(
            k,
            &invoice,
            fresh(),
            json!({"amount": "10.00", "reason": "x", "refund": "wallet", "wallet_id": wallet}),
        )
        .await;
    assert_eq!(note.status, StatusCode::CREATED);
    let back = app
        .refund_payment(k, &invoice, payment, &fresh(), json!({"amount": "6.00"}))
        .await;
    assert_eq!(back.status, StatusCode::CREATED);

    let today = chrono::Utc::now().date_naive();
    let path = format!("/v1/reports/reconciliation?from={today}&to={today}");
    let report: Value = app.get(&finance, &path).await.json().await.unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    let summary = &report["refunds"]["summary"][0];
    assert_eq!(
        (
            summary["movement_refunds"].as_i64(),
            summary["movement_refunds_total"].as_str()
        ),
        (Some(1), Some("5.00"))
    );
    assert_eq!(
        (
            summary["payment_refunds"].as_i64(),
            summary["payment_refunds_total"].as_str()
        ),
        (Some(1), Some("6.00"))
    );
    assert_eq!(
        (
            summary["credit_notes"].as_i64(),
            summary["credit_notes_total"].as_str()
        ),
        (Some(1), Some("10.00"))
    );
    let receivables = &report["invoices"][0];
    assert_eq!(
        (
            receivables["outstanding_total"].as_str(),
            receivables["receivables"].as_str()
        ),
        (Some("6.00"), Some("6.00")),
        "the reopened invoice owes what was refunded"
    );
    app.assert_ledger_consistent().await;

    // A refund recorded behind the service's back is caught, on that payment.
    sqlx::query("UPDATE invoice_payments SET amount_refunded = amount_refunded + 1 WHERE id = $1::uuid")
        .bind(payment)
        .execute(&app.pool)
        .await
        .unwrap();
    let report: Value = app.get(&finance, &path).await.json().await.unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["failed_checks"], json!(["refunds"]));
    assert_eq!(report["refunds"]["over_refunded_payment_ids"], json!([payment]));
}
