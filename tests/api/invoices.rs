//! Invoices: drafts, gapless numbers, payments under the invoice's lock,
//! void. Requests really run at the same time; counts and sums, never
//! timings.

use std::collections::HashSet;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::*;

impl TestApp {
    pub async fn send(&self, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self.post(key, path, &fresh(), &body).await;
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    /// A draft of one line `quantity × unit_amount`.
    pub async fn draft(&self, key: &str, currency: &str, quantity: &str, unit_amount: &str) -> Value {
        let (s, b) = self
            .send(
                key,
                "/v1/invoices",
                json!({"customer_ref": "cust-1", "currency": currency,
                       "lines": [{"description": "credits", "quantity": quantity, "unit_amount": unit_amount}]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b
    }

    /// An open invoice of `total` (one line 1 × total).
    pub async fn open_invoice(&self, key: &str, currency: &str, total: &str) -> String {
        let id = self.draft(key, currency, "1", total).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (s, b) = self
            .send(key, &format!("/v1/invoices/{id}/finalize"), json!({}))
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        id
    }

    /// Every payment of the invoice, following the pages.
    pub async fn payments_of(&self, key: &str, id: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let page: Value = self
                .get(key, &format!("/v1/invoices/{id}/payments?limit=2{after}"))
                .await
                .json()
                .await
                .unwrap();
            all.extend(page["data"].as_array().unwrap().iter().cloned());
            if page["has_more"] != true {
                return all;
            }
            after = format!("&starting_after={}", all.last().unwrap()["id"].as_str().unwrap());
        }
    }

    pub async fn invoice(&self, key: &str, id: &str) -> Value {
        self.get(key, &format!("/v1/invoices/{id}"))
            .await
            .json()
            .await
            .unwrap()
    }
}

#[sqlx::test]
async fn line_amounts_round_half_up_to_the_minor_unit(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let (s, inv) = app
        .send(
            &shop.key,
            "/v1/invoices",
            json!({"customer_ref": "c", "currency": "USD", "memo": "March", "due_date": "2026-12-31",
                   "lines": [
                       {"description": "SMS", "quantity": "3", "unit_amount": "0.335"},
                       {"description": "MMS", "quantity": "1.5", "unit_amount": "0.03"},
                       {"description": "setup", "quantity": "1", "unit_amount": "10"},
                       {"description": "half", "quantity": "1", "unit_amount": "0.125"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    let amounts: Vec<&str> = inv["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["amount"].as_str().unwrap())
        .collect();
    // 1.005 → 1.01 and 0.045 → 0.05 and 0.125 → 0.13: half-up, never
    // half-even (which would give 1.00, 0.04 and 0.12).
    assert_eq!(amounts, ["1.01", "0.05", "10.00", "0.13"]);
    assert_eq!(inv["lines"][0]["unit_amount"], "0.335");
    assert_eq!(
        (&inv["subtotal"], &inv["total"]),
        (&json!("11.19"), &json!("11.19"))
    );
    assert_eq!(
        (&inv["amount_paid"], &inv["amount_due"]),
        (&json!("0.00"), &json!("11.19"))
    );
    assert_eq!((&inv["status"], &inv["number"]), (&json!("draft"), &Value::Null));
    let jpy = app.draft(&shop.key, "JPY", "3", "0.5").await;
    assert_eq!(jpy["total"], "2", "1.5 yen rounds half-up to 2");

    // Bad lines are a 422 naming the line and field, and change nothing.
    let line = |q: &str, u: &str| json!({"description": "x", "quantity": q, "unit_amount": u});
    for (lines, field) in [
        (
            json!([
                line("1", "1"),
                line("1", "1"),
                line("1", "1"),
                line("1", "0.1234567")
            ]),
            "lines[3].unit_amount",
        ),
        (json!([line("-1", "1")]), "lines[0].quantity"),
        (
            json!([{"description": "", "quantity": "1", "unit_amount": "1"}]),
            "lines[0].description",
        ),
        (json!([]), "lines"),
        (
            json!((0..101).map(|_| line("1", "1")).collect::<Vec<_>>()),
            "lines",
        ),
    ] {
        let (s, b) = app
            .send(
                &shop.key,
                "/v1/invoices",
                json!({"customer_ref": "c", "currency": "USD", "lines": lines}),
            )
            .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed"))
        );
        assert!(b["errors"][field].is_array(), "{field}: {b}");
    }
    assert_eq!(app.count("SELECT count(*) FROM invoices").await, 2);
}

#[sqlx::test]
async fn fifty_concurrent_finalizes_take_numbers_one_to_fifty(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    // Finalizes that fail after taking their number roll it back with them.
    inject(
        &app.pool,
        &[
            "CREATE FUNCTION fail_marked() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.number IS NOT NULL AND NEW.memo = 'fail' THEN
                 RAISE EXCEPTION 'injected failure after numbering';
             END IF;
             RETURN NEW;
         END $$",
            "CREATE TRIGGER fail_marked BEFORE UPDATE ON invoices FOR EACH ROW EXECUTE FUNCTION fail_marked()",
        ],
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..60 {
        let memo = if i % 6 == 5 { "fail" } else { "ok" };
        let (s, b) = app
            .send(
                &shop.key,
                "/v1/invoices",
                json!({"customer_ref": "c", "currency": "EUR", "memo": memo,
                       "lines": [{"description": "x", "quantity": "1", "unit_amount": "2"}]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        ids.push((b["id"].as_str().unwrap().to_owned(), memo));
    }
    let paths: Vec<String> = ids
        .iter()
        .map(|(id, _)| format!("/v1/invoices/{id}/finalize"))
        .collect();
    let answers = join_all(paths.iter().map(|p| app.send(&shop.key, p, json!({})))).await;
    let mut numbers = Vec::new();
    for ((_, memo), (s, b)) in ids.iter().zip(&answers) {
        if *memo == "fail" {
            assert_eq!(*s, StatusCode::INTERNAL_SERVER_ERROR, "{b}");
        } else {
            assert_eq!(*s, StatusCode::OK, "{b}");
            numbers.push(b["number"].as_str().unwrap().to_owned());
        }
    }
    numbers.sort();
    let expected: Vec<String> = (1..=50).map(|n| format!("INV-{n:06}")).collect();
    assert_eq!(numbers, expected, "no gap, no duplicate");
    let drafts = app
        .count("SELECT count(*) FROM invoices WHERE status = 'draft' AND number IS NULL")
        .await;
    assert_eq!(drafts, 10, "the failed finalizes left their drafts untouched");
    // The next finalize continues the sequence.
    inject(&app.pool, &["DROP TRIGGER fail_marked ON invoices"]).await;
    let (s, b) = app
        .send(
            &shop.key,
            &format!("/v1/invoices/{}/finalize", ids[5].0),
            json!({}),
        )
        .await;
    assert_eq!((s, b["number"].as_str()), (StatusCode::OK, Some("INV-000051")));
    // Another shop counts from 1.
    let other = app.shop().await;
    let id = app.open_invoice(&other.key, "EUR", "1").await;
    assert_eq!(app.invoice(&other.key, &id).await["number"], "INV-000001");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn thirty_concurrent_full_payments_pay_once(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let id = app.open_invoice(&shop.key, "USD", "50.00").await;
    let path = format!("/v1/invoices/{id}/pay");

    let answers =
        join_all((0..30).map(|_| app.send(&shop.key, &path, json!({"method": "bank_transfer"})))).await;
    let paid = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    let refused = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && b["code"] == "invalid_state")
        .count();
    assert_eq!((paid, refused), (1, 29), "{answers:?}");
    let inv = app.invoice(&shop.key, &id).await;
    assert_eq!(
        (&inv["status"], &inv["amount_paid"], &inv["amount_due"]),
        (&json!("paid"), &json!("50.00"), &json!("0.00"))
    );
    assert_eq!(app.payments_of(&shop.key, &id).await.len(), 1);

    // One key sent eight times at once: one payment, identical answers.
    let id = app.open_invoice(&shop.key, "USD", "20.00").await;
    let path = format!("/v1/invoices/{id}/pay");
    let key = fresh();
    let shop_key = &shop.key;
    let answers = join_all((0..8).map(|_| {
        let (app, path, key) = (&app, &path, &key);
        async move {
            let r = app
                .post(shop_key, path, key, &json!({"method": "card", "amount": "20.00"}))
                .await;
            (r.status(), r.text().await.unwrap())
        }
    }))
    .await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::CREATED),
        "{answers:?}"
    );
    let bodies: HashSet<&String> = answers.iter().map(|(_, b)| b).collect();
    assert_eq!(bodies.len(), 1, "every answer is the one stored payment");
    let payments = app
        .count(&format!(
            "SELECT count(*) FROM invoice_payments WHERE invoice_id = '{id}'"
        ))
        .await;
    assert_eq!(payments, 1);
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn concurrent_partial_payments_never_exceed_the_total(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let id = app.open_invoice(&shop.key, "USD", "10.00").await;
    let path = format!("/v1/invoices/{id}/pay");
    let answers = join_all((0..12).map(|_| {
        app.send(
            &shop.key,
            &path,
            json!({"method": "bank_transfer", "amount": "3.00"}),
        )
    }))
    .await;
    let paid = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    let too_much = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::UNPROCESSABLE_ENTITY && b["errors"]["amount"].is_array())
        .count();
    assert_eq!((paid, too_much), (3, 9), "{answers:?}");
    let inv = app.invoice(&shop.key, &id).await;
    assert_eq!(
        (&inv["status"], &inv["amount_paid"], &inv["amount_due"]),
        (&json!("open"), &json!("9.00"), &json!("1.00"))
    );
    // Partly paid: no void.
    let (s, b) = app
        .send(&shop.key, &format!("/v1/invoices/{id}/void"), json!({}))
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_state"))
    );
    // The rest, by default.
    let (s, b) = app.send(&shop.key, &path, json!({"method": "other"})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        (&b["payment"]["amount"], &b["invoice"]["status"]),
        (&json!("1.00"), &json!("paid"))
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn an_external_ref_is_recorded_once(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let id = app.open_invoice(&shop.key, "USD", "30.00").await;
    let other = app.open_invoice(&shop.key, "USD", "30.00").await;
    let body = json!({"method": "card", "amount": "10.00", "external_ref": "ch_123"});
    let (s, first) = app
        .send(&shop.key, &format!("/v1/invoices/{id}/pay"), body.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["existing"], false);
    let (s, again) = app
        .send(&shop.key, &format!("/v1/invoices/{id}/pay"), body.clone())
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the same provider payment again: the recorded one"
    );
    assert_eq!(
        (again["payment"]["id"].clone(), again["existing"].clone()),
        (first["payment"]["id"].clone(), json!(true))
    );
    let (s, b) = app
        .send(&shop.key, &format!("/v1/invoices/{other}/pay"), body)
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("external_ref_conflict"))
    );
    assert!(b["detail"].as_str().unwrap().contains("invoice_id"), "{b}");
    assert_eq!(app.invoice(&shop.key, &id).await["amount_paid"], "10.00");
    assert_eq!(app.invoice(&shop.key, &other).await["amount_paid"], "0.00");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn paying_from_a_wallet_is_one_transaction(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "100").await;
    let eur = app.wallet(&shop.key, "EUR", "100").await;
    let id = app.open_invoice(&shop.key, "USD", "40.00").await;
    let path = format!("/v1/invoices/{id}/pay");

    // A failure after the wallet's debit was written undoes both.
    inject(
        &app.pool,
        &[
            "CREATE FUNCTION fail_payment() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'injected failure after the wallet debit'; END $$",
            "CREATE TRIGGER fail_payment BEFORE INSERT ON invoice_payments
             FOR EACH ROW EXECUTE FUNCTION fail_payment()",
        ],
    )
    .await;
    let (s, _) = app
        .send(&shop.key, &path, json!({"method": "wallet", "wallet_id": w}))
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.balance(&shop.key, w).await, "100.00");
    assert_eq!(app.invoice(&shop.key, &id).await["amount_paid"], "0.00");
    let debits = app
        .count("SELECT count(*) FROM wallet_transactions WHERE category = 'invoice_payment'")
        .await;
    assert_eq!(debits, 0);
    inject(&app.pool, &["DROP TRIGGER fail_payment ON invoice_payments"]).await;

    // Refusals change nothing.
    let (s, b) = app
        .send(&shop.key, &path, json!({"method": "wallet", "wallet_id": eur}))
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("currency_mismatch"))
    );
    let poor = app.wallet(&shop.key, "USD", "39.99").await;
    let (s, b) = app
        .send(&shop.key, &path, json!({"method": "wallet", "wallet_id": poor}))
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("insufficient_funds"))
    );
    let (s, b) = app.send(&shop.key, &path, json!({"method": "wallet"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["errors"]["wallet_id"].is_array(), "{b}");
    let (s, b) = app
        .send(&shop.key, &path, json!({"method": "card", "wallet_id": w}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(b["errors"]["wallet_id"].is_array(), "{b}");
    assert_eq!(app.balance(&shop.key, poor).await, "39.99");

    let (s, b) = app
        .send(&shop.key, &path, json!({"method": "wallet", "wallet_id": w}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        (&b["invoice"]["status"], &b["payment"]["amount"]),
        (&json!("paid"), &json!("40.00"))
    );
    assert_eq!(app.balance(&shop.key, w).await, "60.00");
    let txs: Value = app
        .get(&shop.key, &format!("/v1/wallets/{w}/transactions"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(txs["data"][0]["category"], "invoice_payment");
    assert_eq!(txs["data"][0]["id"], b["payment"]["wallet_transaction_id"]);
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn drafts_edit_finalized_invoices_do_not(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let intruder = app.shop().await;
    let id = app.draft(&shop.key, "USD", "2", "5").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patch = |body: Value| {
        let (app, id, key) = (&app, &id, &shop.key);
        async move {
            let r = app
                .client
                .patch(app.url(&format!("/v1/invoices/{id}")))
                .bearer_auth(key)
                .header("Idempotency-Key", fresh())
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    // Paying or voiding nothing yet: a draft is not payable.
    let (s, b) = app
        .send(
            &shop.key,
            &format!("/v1/invoices/{id}/pay"),
            json!({"method": "card"}),
        )
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_state"))
    );
    let (s, b) = patch(
        json!({"memo": "April", "lines": [{"description": "y", "quantity": "4", "unit_amount": "2.5"}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (&b["memo"], &b["total"], &b["lines"].as_array().unwrap().len()),
        (&json!("April"), &json!("10.00"), &1)
    );
    let (s, b) = app
        .send(&shop.key, &format!("/v1/invoices/{id}/finalize"), json!({}))
        .await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("open")));
    let (s, b) = patch(json!({"memo": "late"})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_state"))
    );
    let (s, b) = app
        .send(&shop.key, &format!("/v1/invoices/{id}/finalize"), json!({}))
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_state"))
    );
    assert_eq!(app.invoice(&shop.key, &id).await["memo"], "April");

    // Another shop sees and touches nothing.
    let r = app.get(&intruder.key, &format!("/v1/invoices/{id}")).await;
    problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let (s, _) = app
        .send(
            &intruder.key,
            &format!("/v1/invoices/{id}/pay"),
            json!({"method": "card"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let listed: Value = app.get(&intruder.key, "/v1/invoices").await.json().await.unwrap();
    assert_eq!(listed["data"], json!([]));

    // Void: the open one is reversed, a draft just ends, a void one stays.
    let (s, b) = app
        .send(&shop.key, &format!("/v1/invoices/{id}/void"), json!({}))
        .await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("void")));
    let draft = app.draft(&shop.key, "USD", "1", "1").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = app
        .send(&shop.key, &format!("/v1/invoices/{draft}/void"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = app
        .send(&shop.key, &format!("/v1/invoices/{id}/void"), json!({}))
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_state"))
    );
    let reversals = app
        .count("SELECT count(*) FROM journal_transactions WHERE kind = 'invoice.void'")
        .await;
    assert_eq!(reversals, 1);

    // Lists filter by status and customer and paginate.
    for _ in 0..3 {
        app.open_invoice(&shop.key, "USD", "1").await;
    }
    let page: Value = app
        .get(&shop.key, "/v1/invoices?status=open&limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (page["data"].as_array().unwrap().len(), &page["has_more"]),
        (2, &json!(true))
    );
    let last = page["data"][1]["id"].as_str().unwrap();
    let page: Value = app
        .get(
            &shop.key,
            &format!("/v1/invoices?status=open&limit=2&starting_after={last}"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (page["data"].as_array().unwrap().len(), &page["has_more"]),
        (1, &json!(false))
    );
    let none: Value = app
        .get(&shop.key, "/v1/invoices?customer_ref=nobody")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["data"], json!([]));
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn payments_and_finalize_retried_after_their_key_expired_answer_the_earlier_result(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let wallet = app.wallet(k, "USD", "10.00").await;
    let draft = app.draft(k, "USD", "1", "20.00").await;
    let id = draft["id"].as_str().unwrap().to_owned();
    let finalize = format!("/v1/invoices/{id}/finalize");
    let first = app.post(k, &finalize, "fin-1", &json!({})).await;
    assert_eq!(first.status(), StatusCode::OK);
    crate::idempotency::expire(&app, "fin-1").await;
    let again = app.post(k, &finalize, "fin-1", &json!({})).await;
    assert_eq!(again.status(), StatusCode::OK, "the finalized invoice, not a 409");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap()["number"], "INV-000001");

    let pay = format!("/v1/invoices/{id}/pay");
    let by_wallet = json!({"method": "wallet", "wallet_id": wallet, "amount": "3.00"});
    let by_bank = json!({"method": "bank_transfer", "amount": "2.00"});
    for (key, body) in [("pay-w", &by_wallet), ("pay-b", &by_bank)] {
        let r = app.post(k, &pay, key, body).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let first: Value = r.json().await.unwrap();
        // The answer carries the payment and the totals, never the list.
        assert!(first["invoice"].get("payments").is_none(), "{first}");
        crate::idempotency::expire(&app, key).await;
        let r = app.post(k, &pay, key, body).await;
        assert!(r.status().is_success());
        assert_eq!(r.headers()["idempotent-replayed"], "true");
        let again: Value = r.json().await.unwrap();
        assert_eq!(again["payment"]["id"], first["payment"]["id"]);
        // The same key with another request is refused, never paid.
        crate::idempotency::expire(&app, key).await;
        let other = json!({"method": "bank_transfer", "amount": "1.00"});
        problem(
            app.post(k, &pay, key, &other).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
        )
        .await;
    }
    assert_eq!(
        app.balance(k, wallet).await,
        "7.00",
        "the wallet was charged once"
    );
    let inv = app.invoice(k, &id).await;
    assert_eq!(
        (&inv["amount_paid"], &inv["amount_due"]),
        (&json!("5.00"), &json!("15.00"))
    );
    assert!(inv.get("payments").is_none());
    let listed = app.payments_of(k, &id).await;
    assert_eq!(listed.len(), 2);
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn a_payment_answer_stays_small_as_payments_accumulate(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let id = app.open_invoice(&shop.key, "USD", "100.00").await;
    let path = format!("/v1/invoices/{id}/pay");
    let mut sizes = Vec::new();
    for _ in 0..25 {
        let r = app
            .post(
                &shop.key,
                &path,
                &fresh(),
                &json!({"method": "bank_transfer", "amount": "0.01"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        sizes.push(r.bytes().await.unwrap().len());
    }
    // Only the totals' digits may change the size.
    assert!(
        sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 4,
        "{sizes:?}"
    );
    let listed = app.payments_of(&shop.key, &id).await;
    assert_eq!(listed.len(), 25);
    let mut ids: Vec<&str> = listed.iter().map(|p| p["id"].as_str().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 25, "pages neither repeat nor skip");
    let stored = app.count(&format!(
        "SELECT max(length(response_body))::bigint FROM idempotency_keys WHERE convert_from(response_body, 'UTF8') LIKE '%{id}%'"
    )).await;
    assert!(stored < 2000, "{stored}");
}
