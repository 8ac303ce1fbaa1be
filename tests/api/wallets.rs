//! Wallets, movements, transfers, pagination, tenancy and money parsing.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::*;

#[sqlx::test]
async fn credit_debit_and_history(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let r = app
        .post(&shop.key, "/v1/wallets", &fresh(), &json!({"customer_ref": "c-1", "currency": "USD", "overdraft_limit": "5", "metadata": {"tier": "gold"}}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let w: Value = r.json().await.unwrap();
    let id = w["id"].as_str().unwrap();
    assert_eq!(w["balance"], "0.00");
    assert_eq!(w["overdraft_limit"], "5.00");
    assert_eq!(w["metadata"]["tier"], "gold");

    let path = |op: &str| format!("/v1/wallets/{id}/{op}");
    let r = app
        .post(
            &shop.key,
            &path("credit"),
            &fresh(),
            &json!({"amount": "10.50", "category": "top_up"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        (t["type"].as_str(), t["balance_after"].as_str()),
        (Some("credit"), Some("10.50"))
    );

    let r = app
        .post(
            &shop.key,
            &path("debit"),
            &fresh(),
            &json!({"amount": "15", "category": "usage", "description": "api calls"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        t["balance_after"], "-4.50",
        "the overdraft allows going below zero"
    );
    assert_eq!(t["description"], "api calls");

    let r = app
        .post(
            &shop.key,
            &path("debit"),
            &fresh(),
            &json!({"amount": "0.51", "category": "usage"}),
        )
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "insufficient_funds").await;
    let r = app
        .post(
            &shop.key,
            &path("debit"),
            &fresh(),
            &json!({"amount": "0.50", "category": "fee"}),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "exactly down to -overdraft_limit"
    );

    let w: Value = app
        .get(&shop.key, &format!("/v1/wallets/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (w["balance"].as_str(), w["available"].as_str()),
        (Some("-5.00"), Some("-5.00"))
    );
    assert_eq!(w["version"], 4);

    let page: Value = app
        .get(&shop.key, &format!("/v1/wallets/{id}/transactions?limit=2"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["has_more"], true);
    let data = page["data"].as_array().unwrap();
    assert_eq!(
        data.iter()
            .map(|t| t["category"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["fee", "usage"]
    );
    let last = data[1]["id"].as_str().unwrap();
    let page: Value = app
        .get(
            &shop.key,
            &format!("/v1/wallets/{id}/transactions?limit=2&starting_after={last}"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["has_more"], false);
    assert_eq!(page["data"][0]["category"], "top_up");
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action LIKE 'wallet.%'")
            .await,
        4
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn journal_posts_follow_the_chart_of_accounts(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let a = app.wallet(&shop.key, "EUR", "30").await;
    let b = app.wallet(&shop.key, "EUR", "0").await;
    app.post(
        &shop.key,
        &format!("/v1/wallets/{a}/credit"),
        &fresh(),
        &json!({"amount": "5", "category": "grant"}),
    )
    .await;
    app.post(
        &shop.key,
        &format!("/v1/wallets/{a}/debit"),
        &fresh(),
        &json!({"amount": "7", "category": "usage"}),
    )
    .await;
    let r = app
        .post(
            &shop.key,
            "/v1/transfers",
            &fresh(),
            &json!({"from_wallet_id": a, "to_wallet_id": b, "amount": "8.25"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        (
            t["debit"]["balance_after"].as_str(),
            t["credit"]["balance_after"].as_str()
        ),
        (Some("19.75"), Some("8.25"))
    );

    let sum = |account: &str| {
        let sql =
            format!("SELECT COALESCE(sum(amount), 0)::text FROM journal_entries WHERE account = '{account}'");
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(&sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(sum("external_payments").await, "-30.0000");
    assert_eq!(sum("credit_grants").await, "-5.0000");
    assert_eq!(sum("revenue").await, "7.0000");
    assert_eq!(sum("wallet").await, "28.0000");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn transfers_refuse_mismatched_same_or_foreign_wallets(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let usd = app.wallet(&shop.key, "USD", "10").await;
    let eur = app.wallet(&shop.key, "EUR", "10").await;
    let usd2 = app.wallet(&shop.key, "USD", "0").await;
    let other = app.shop().await;
    let foreign = app.wallet(&other.key, "USD", "10").await;

    let transfer = |from: Uuid, to: Uuid, amount: &'static str| {
        let (app, key) = (&app, &shop.key);
        async move {
            let body = json!({"from_wallet_id": from, "to_wallet_id": to, "amount": amount});
            app.post(key, "/v1/transfers", &fresh(), &body).await
        }
    };
    problem(
        transfer(usd, eur, "1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "currency_mismatch",
    )
    .await;
    problem(
        transfer(usd, usd, "1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    problem(
        transfer(usd, usd2, "10.01").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "insufficient_funds",
    )
    .await;
    problem(
        transfer(usd, foreign, "1").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    problem(
        transfer(foreign, usd, "1").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(transfer(usd, usd2, "10").await.status(), StatusCode::CREATED);
    assert_eq!(app.balance(&other.key, foreign).await, "10.00");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn another_shops_wallet_is_indistinguishable_from_a_missing_one(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let mine = app.shop().await;
    let theirs = app.shop().await;
    let w = app.wallet(&theirs.key, "USD", "10").await;

    for path in [
        format!("/v1/wallets/{w}"),
        format!("/v1/wallets/{w}/transactions"),
        format!("/v1/wallets/{}", Uuid::now_v7()),
    ] {
        problem(
            app.get(&mine.key, &path).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    let r = app
        .post(
            &mine.key,
            &format!("/v1/wallets/{w}/debit"),
            &fresh(),
            &json!({"amount": "1", "category": "usage"}),
        )
        .await;
    problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let list: Value = app.get(&mine.key, "/v1/wallets").await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    assert_eq!(app.balance(&theirs.key, w).await, "10.00");
}

#[sqlx::test]
async fn wallets_list_filters_and_paginates(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    for i in 0..5 {
        let r = app
            .post(
                &shop.key,
                "/v1/wallets",
                &fresh(),
                &json!({"customer_ref": format!("c{}", i % 2), "currency": "JPY"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = app
            .get(&shop.key, &format!("/v1/wallets?customer_ref=c0&limit=2{cursor}"))
            .await
            .json()
            .await
            .unwrap();
        for w in page["data"].as_array().unwrap() {
            assert_eq!(w["customer_ref"], "c0");
            seen.push(w["id"].as_str().unwrap().to_owned());
        }
        if page["has_more"] == false {
            break;
        }
        cursor = format!("&starting_after={}", seen.last().unwrap());
    }
    assert_eq!(seen.len(), 3);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first");
}

#[sqlx::test]
async fn amounts_are_parsed_strictly_per_currency(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let usd = app.wallet(&shop.key, "USD", "100").await;
    let jpy = app.wallet(&shop.key, "JPY", "100").await;
    let bhd = app.wallet(&shop.key, "BHD", "0").await;
    let credit_unit = app.wallet(&shop.key, "CREDIT", "0").await;

    let credit = |w: Uuid, amount: Value| {
        let (app, key) = (&app, &shop.key);
        async move {
            let body = json!({"amount": amount, "category": "grant"});
            app.post(key, &format!("/v1/wallets/{w}/credit"), &fresh(), &body)
                .await
        }
    };
    for bad in [
        json!("0"),
        json!("-1"),
        json!("1e2"),
        json!("1,000"),
        json!(" 1"),
        json!("0x1"),
        json!(12),
        json!("1000000000000000"),
        json!(""),
    ] {
        let body = problem(
            credit(usd, bad.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert!(body["errors"]["amount"].is_array(), "{bad} -> {body}");
    }
    let body = problem(
        credit(usd, json!("1.001")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert!(
        body["errors"]["amount"][0]
            .as_str()
            .unwrap()
            .contains("decimal places"),
        "{body}"
    );
    problem(
        credit(jpy, json!("1.5")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(credit(bhd, json!("1.234")).await.status(), StatusCode::CREATED);
    assert_eq!(
        credit(credit_unit, json!("0.0001")).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        credit(usd, json!("999999999999999.99")).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.balance(&shop.key, usd).await, "1000000000000099.99");
    assert_eq!(app.balance(&shop.key, jpy).await, "100");
    assert_eq!(app.balance(&shop.key, bhd).await, "1.234");
    assert_eq!(app.balance(&shop.key, credit_unit).await, "0.0001");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn the_database_refuses_an_overdrawn_wallet_whatever_the_code_does(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "1").await;
    let err = sqlx::query("UPDATE wallets SET balance = balance - 2 WHERE id = $1")
        .bind(w)
        .execute(&app.pool)
        .await
        .unwrap_err();
    // On Citus the worker's error is relayed without its constraint field:
    // the service reads the name from the message (`store::constraint`).
    assert_eq!(
        billing_ledger::store::constraint(&err),
        Some("wallets_not_overdrawn")
    );
    // An unbalanced journal transaction can't be committed either.
    let mut tx = app.pool.begin().await.unwrap();
    let jt = Uuid::now_v7();
    sqlx::query("INSERT INTO journal_transactions (shop_id, id, kind) VALUES ($1, $2, 'manual')")
        .bind(shop.id)
        .bind(jt)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("INSERT INTO journal_entries (shop_id, journal_transaction_id, line, account, currency, amount) VALUES ($1, $2, 1, 'revenue', 'USD', 5)")
        .bind(shop.id)
        .bind(jt)
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = tx.commit().await.unwrap_err();
    // On Citus the check fails at the worker's commit, which the
    // coordinator reports as such (the check's message is a warning).
    assert!(
        err.to_string().contains("unbalanced") || (citus() && err.to_string().contains("could not commit")),
        "{err}"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM journal_transactions WHERE id = '{jt}'"
        ))
        .await,
        0
    );
    // And history is append-only.
    let err = sqlx::query("DELETE FROM wallet_transactions")
        .execute(&app.pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    // No foreign key refuses an entry of a missing journal transaction (its
    // writers write both in one statement): the links check finds it.
    let links = || async {
        sqlx::query(include_str!("../../sql/checks/links.sql"))
            .fetch_one(&app.pool)
            .await
            .unwrap()
            .get::<i64, _>("entries_without_transaction")
    };
    assert_eq!(links().await, 0);
    sqlx::query("INSERT INTO journal_entries (shop_id, journal_transaction_id, line, account, currency, amount) VALUES ($1, $2, 1, 'revenue', 'USD', 5), ($1, $2, 2, 'external_payments', 'USD', -5)")
        .bind(shop.id)
        .bind(Uuid::now_v7())
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(links().await, 2);
}

#[sqlx::test]
async fn a_balance_out_of_range_is_a_422_not_a_500(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "0").await;
    // Balances hold 20 integer digits; only many maximal credits get there.
    sqlx::query("UPDATE wallets SET balance = 99999999999999999999 WHERE id = $1")
        .bind(w)
        .execute(&app.pool)
        .await
        .unwrap();
    let r = app
        .post(
            &shop.key,
            &format!("/v1/wallets/{w}/credit"),
            "big",
            &json!({"amount": "1", "category": "grant"}),
        )
        .await;
    let body = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(body["errors"]["amount"].is_array(), "{body}");
    assert_eq!(app.count("SELECT count(*) FROM wallet_transactions").await, 0);
}

#[sqlx::test]
async fn text_postgres_cannot_store_is_refused_up_front(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "5").await;
    let path = format!("/v1/wallets/{w}/debit");
    let nul = |body: &'static str| {
        let (app, key, path) = (&app, &shop.key, &path);
        async move {
            app.client
                .post(app.url(path))
                .bearer_auth(key)
                .header("Idempotency-Key", fresh())
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    for body in [
        r#"{"amount":"1","category":"usage","description":"a\u0000b"}"#,
        r#"{"amount":"1","category":"usage","metadata":{"k\u0000":"v"}}"#,
        r#"{"amount":"1","category":"usage","metadata":{"k":["\u0000"]}}"#,
    ] {
        problem(
            nul(body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
    // An escaped backslash followed by "u0000" is ordinary text.
    let r = nul(r#"{"amount":"1","category":"usage","description":"a\\u0000b"}"#).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app.get(&shop.key, "/v1/wallets?customer_ref=%00").await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let big = format!(
        r#"{{"amount":"1","category":"usage","description":"{}"}}"#,
        "x".repeat(3 << 20)
    );
    let r = app
        .client
        .post(app.url(&path))
        .bearer_auth(&shop.key)
        .header("Idempotency-Key", fresh())
        .body(big)
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_eq!(app.balance(&shop.key, w).await, "4.00");
}

#[sqlx::test]
async fn a_wallets_movements_narrow_to_a_period(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let id = app.wallet(k, "USD", "10.00").await;
    for amount in ["1.00", "2.00", "3.00"] {
        let r = app
            .post(
                k,
                &format!("/v1/wallets/{id}/debit"),
                &fresh(),
                &json!({"amount": amount, "category": "usage"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let list = |query: String| {
        let app = &app;
        async move {
            let r = app
                .get(k, &format!("/v1/wallets/{id}/transactions?{query}"))
                .await;
            assert_eq!(r.status(), StatusCode::OK, "{query}");
            let page: Value = r.json().await.unwrap();
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    (
                        t["amount"].as_str().unwrap().to_owned(),
                        t["created_at"].as_str().unwrap().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let all = list(String::new()).await;
    assert_eq!(all.len(), 4, "the top-up and three debits");
    // Newest first: [3.00, 2.00, 1.00, 10.00]; the 2.00 debit's time.
    let at = all[1].1.replace('+', "%2B");
    let amounts = |rows: Vec<(String, String)>| rows.into_iter().map(|(a, _)| a).collect::<Vec<_>>();
    assert_eq!(
        amounts(list(format!("created_after={at}")).await),
        ["3.00", "2.00"]
    );
    assert_eq!(
        amounts(list(format!("created_before={at}")).await),
        ["1.00", "10.00"]
    );
    assert_eq!(
        amounts(list(format!("created_after={at}&created_before={at}")).await),
        Vec::<String>::new()
    );
    // A page of a period goes on after its cursor within the period.
    let first = app
        .get(
            k,
            &format!(
                "/v1/wallets/{id}/transactions?created_before={}&limit=1",
                all[0].1.replace('+', "%2B")
            ),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(first["has_more"], true);
    assert_eq!(first["data"][0]["amount"], "2.00");
    let r = app
        .get(
            k,
            &format!("/v1/wallets/{id}/transactions?created_after=yesterday"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
