//! Requests really running at the same time: counts and sums, never timings.

use std::collections::HashMap;

use futures_util::future::join_all;
use rand::{Rng, SeedableRng, rngs::StdRng};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::*;

#[sqlx::test]
async fn fifty_debits_on_twenty_never_overdraw(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "20").await;
    let path = format!("/v1/wallets/{w}/debit");

    let answers = join_all((0..50).map(|i| {
        let (app, key, path) = (&app, &shop.key, &path);
        async move {
            let r = app
                .post(
                    key,
                    path,
                    &format!("d-{i}"),
                    &json!({"amount": "1", "category": "usage"}),
                )
                .await;
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            (status, body)
        }
    }))
    .await;
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    let poor = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::UNPROCESSABLE_ENTITY && b["code"] == "insufficient_funds")
        .count();
    assert_eq!((ok, poor), (20, 30), "{answers:?}");
    let mut after: Vec<String> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, b)| b["balance_after"].as_str().unwrap().to_owned())
        .collect();
    after.sort_by_key(|s| s.parse::<Decimal>().unwrap());
    let expected: Vec<String> = (0..20).map(|i| format!("{i}.00")).collect();
    assert_eq!(
        after, expected,
        "each success saw a distinct balance, none below zero"
    );
    assert_eq!(app.balance(&shop.key, w).await, "0.00");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn twenty_five_identical_requests_take_effect_once(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "100").await;
    let path = format!("/v1/wallets/{w}/debit");
    let body = json!({"amount": "7.25", "category": "purchase"});

    let answers = join_all((0..25).map(|_| {
        let (app, key, path, body) = (&app, &shop.key, &path, &body);
        async move {
            let r = app.post(key, path, "same-key", body).await;
            let replayed = r.headers().contains_key("idempotent-replayed");
            (r.status(), replayed, r.bytes().await.unwrap())
        }
    }))
    .await;
    let created: Vec<_> = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::CREATED)
        .collect();
    let in_use = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::CONFLICT)
        .count();
    assert_eq!(
        created.len() + in_use,
        25,
        "only replays or 409 in_use: {answers:?}"
    );
    assert_eq!(
        created.iter().filter(|(_, replayed, _)| !replayed).count(),
        1,
        "exactly one execution"
    );
    assert!(
        created.iter().all(|(_, _, b)| *b == created[0].2),
        "every replay is byte-identical"
    );

    let retry = app.post(&shop.key, &path, "same-key", &body).await;
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.bytes().await.unwrap(), created[0].2);
    assert_eq!(app.balance(&shop.key, w).await, "92.75");
    assert_eq!(
        app.count("SELECT count(*) FROM wallet_transactions WHERE type = 'debit'")
            .await,
        1
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn two_hundred_crossing_transfers_conserve_money_without_deadlocks(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let mut wallets = Vec::new();
    for _ in 0..5 {
        wallets.push(app.wallet(&shop.key, "USD", "100").await);
    }
    let mut rng = StdRng::seed_from_u64(7);
    let transfers: Vec<Value> = (0..200)
        .map(|_| {
            let from = rng.gen_range(0..5);
            let to = (from + rng.gen_range(1..5)) % 5;
            let amount = format!("{}.{:02}", rng.gen_range(1..30), rng.gen_range(0..100));
            json!({"from_wallet_id": wallets[from], "to_wallet_id": wallets[to], "amount": amount})
        })
        .collect();

    let answers = join_all(transfers.iter().map(|t| {
        let (app, key) = (&app, &shop.key);
        async move {
            let r = app.post(key, "/v1/transfers", &fresh(), t).await;
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        }
    }))
    .await;
    let mut by_outcome: HashMap<String, usize> = HashMap::new();
    for (status, body) in &answers {
        let outcome = if *status == StatusCode::CREATED {
            "created".to_owned()
        } else {
            format!("{status} {}", body["code"])
        };
        *by_outcome.entry(outcome).or_default() += 1;
    }
    let created = by_outcome.get("created").copied().unwrap_or(0);
    let poor = by_outcome
        .get("422 Unprocessable Entity \"insufficient_funds\"")
        .copied()
        .unwrap_or(0);
    assert_eq!(
        created + poor,
        200,
        "no deadlock or other error surfaced: {by_outcome:?}"
    );
    assert!(created > 100, "{by_outcome:?}");

    let mut total = Decimal::ZERO;
    for w in &wallets {
        let b: Decimal = app.balance(&shop.key, *w).await.parse().unwrap();
        assert!(b >= Decimal::ZERO, "no wallet overdrawn: {b}");
        total += b;
    }
    assert_eq!(total, Decimal::new(500, 0), "money is conserved");
    let sum = app
        .count("SELECT (sum(balance) * 100)::bigint FROM wallets")
        .await;
    assert_eq!(sum, 50_000);
    assert_eq!(
        app.count("SELECT count(*) FROM journal_transactions WHERE kind = 'wallet.transfer'")
            .await,
        created as i64
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn concurrent_duplicates_of_a_rejected_request_agree(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "1").await;
    let path = format!("/v1/wallets/{w}/debit");
    let body = json!({"amount": "5", "category": "usage"});

    let answers = join_all((0..25).map(|_| {
        let (app, key, path, body) = (&app, &shop.key, &path, &body);
        async move {
            let r = app.post(key, path, "too-much", body).await;
            (r.status(), r.bytes().await.unwrap())
        }
    }))
    .await;
    let rejected: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::UNPROCESSABLE_ENTITY)
        .collect();
    let in_use = answers.iter().filter(|(s, _)| *s == StatusCode::CONFLICT).count();
    assert_eq!(rejected.len() + in_use, 25, "{answers:?}");
    assert!(!rejected.is_empty());
    assert!(
        rejected.iter().all(|(_, b)| *b == rejected[0].1),
        "one stored rejection, replayed byte for byte"
    );
    let first: Value = serde_json::from_slice(&rejected[0].1).unwrap();
    assert_eq!(first["code"], "insufficient_funds");
    assert_eq!(
        app.count("SELECT count(*) FROM idempotency_keys WHERE key = 'too-much'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM wallet_transactions WHERE type = 'debit'")
            .await,
        0
    );
    assert_eq!(app.balance(&shop.key, w).await, "1.00");
    app.assert_ledger_consistent().await;
}
