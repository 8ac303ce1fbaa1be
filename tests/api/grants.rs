//! Credit grants: the burn-down order, exact expiry (by the money path and
//! by the job, once), refunds giving back to the grants, holds keeping
//! credit past its deadline, transfers carrying grants, the migration.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::{
    Connection, Executor,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use uuid::Uuid;

use crate::helpers::*;

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}"))
        .parse()
        .unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

impl TestApp {
    /// `POST /v1/wallets/{wallet}/{op}`: (status, body).
    async fn move_money(&self, key: &str, wallet: Uuid, op: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .post(key, &format!("/v1/wallets/{wallet}/{op}"), &fresh(), &body)
            .await;
        (r.status(), r.json().await.unwrap())
    }

    /// A credit that must succeed; the grant it made.
    async fn grant(&self, key: &str, wallet: Uuid, body: Value) -> Uuid {
        let (s, tx) = self.move_money(key, wallet, "credit", body).await;
        assert_eq!(s, StatusCode::CREATED, "{tx}");
        assert_eq!(tx["granted"].as_array().unwrap().len(), 1, "{tx}");
        tx["granted"][0]["grant_id"].as_str().unwrap().parse().unwrap()
    }

    async fn grants_of(&self, key: &str, wallet: Uuid, query: &str) -> Vec<Value> {
        let r = self
            .get(key, &format!("/v1/wallets/{wallet}/grants{query}"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let page: Value = r.json().await.unwrap();
        page["data"].as_array().unwrap().clone()
    }

    async fn grant_row(&self, key: &str, wallet: Uuid, grant: Uuid) -> Value {
        self.grants_of(key, wallet, "?limit=100")
            .await
            .into_iter()
            .find(|g| g["id"] == grant.to_string())
            .unwrap_or_else(|| panic!("no grant {grant}"))
    }

    async fn wallet_view(&self, key: &str, wallet: Uuid) -> Value {
        self.get(key, &format!("/v1/wallets/{wallet}"))
            .await
            .json()
            .await
            .unwrap()
    }

    async fn expired_movements(&self, grant: Uuid) -> i64 {
        self.count(&format!(
            "SELECT count(*) FROM grant_consumptions c
               JOIN wallet_transactions t ON t.shop_id = c.shop_id AND t.id = c.wallet_transaction_id
              WHERE c.grant_id = '{grant}' AND t.category = 'grant_expired'"
        ))
        .await
    }
}

/// [(grant, amount)] of a movement's consumptions (None: overdraft).
fn uses(tx: &Value) -> Vec<(Option<Uuid>, Decimal)> {
    tx["consumptions"]
        .as_array()
        .unwrap_or_else(|| panic!("no consumptions: {tx}"))
        .iter()
        .map(|c| {
            (
                c["grant_id"].as_str().map(|g| g.parse().unwrap()),
                dec(&c["amount"]),
            )
        })
        .collect()
}

fn in_secs(s: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(s)).to_rfc3339()
}

async fn sleep_until(at: &str) {
    let at: DateTime<Utc> = at.parse().unwrap();
    let left = (at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(50)).await;
}

#[sqlx::test]
async fn debits_burn_grants_by_priority_then_soonest_deadline_then_age(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let w = app.wallet(k, "USD", "0").await;
    let paid = app
        .grant(k, w, json!({"amount": "10.00", "category": "top_up"}))
        .await;
    let promo = app
        .grant(
            k,
            w,
            json!({"amount": "5.00", "category": "grant", "expires_at": in_secs(86_400)}),
        )
        .await;
    let first = app
        .grant(
            k,
            w,
            json!({"amount": "3.00", "category": "grant", "priority": 10}),
        )
        .await;
    let paid_soon = app
        .grant(
            k,
            w,
            json!({"amount": "4.00", "category": "top_up", "expires_at": in_secs(2 * 86_400)}),
        )
        .await;
    let view = app.wallet_view(k, w).await;
    assert_eq!(
        (view["balance_paid"].as_str(), view["balance_granted"].as_str()),
        (Some("14.00"), Some("8.00"))
    );

    let (s, tx) = app
        .move_money(k, w, "debit", json!({"amount": "15.00", "category": "usage"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{tx}");
    assert_eq!(
        uses(&tx),
        vec![
            (Some(first), d("3")),
            (Some(promo), d("5")),
            (Some(paid_soon), d("4")),
            (Some(paid), d("3")),
        ],
        "priority 10 first; then the soonest deadline; no deadline last"
    );
    // The movement as listed says the same.
    let listed: Value = app
        .get(
            k,
            &format!("/v1/wallets/{w}/transactions/{}", tx["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(uses(&listed), uses(&tx));
    let view = app.wallet_view(k, w).await;
    assert_eq!(
        (view["balance_paid"].as_str(), view["balance_granted"].as_str()),
        (Some("7.00"), Some("0.00"))
    );

    let depleted = app.grants_of(k, w, "?status=depleted").await;
    assert_eq!(depleted.len(), 3);
    let active = app.grants_of(k, w, "?status=active").await;
    assert_eq!(active.len(), 1);
    assert_eq!(
        (active[0]["remaining"].as_str(), active[0]["kind"].as_str()),
        (Some("7.00"), Some("paid"))
    );

    let (s, tx) = app
        .move_money(k, w, "debit", json!({"amount": "8.00", "category": "usage"}))
        .await;
    assert_eq!(
        (s, tx["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("insufficient_funds"))
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn an_overdraft_is_not_a_grant_and_the_next_credit_repays_it_first(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let r = app
        .post(
            k,
            "/v1/wallets",
            &fresh(),
            &json!({"customer_ref": "c", "currency": "EUR", "overdraft_limit": "5"}),
        )
        .await;
    let w: Uuid = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let paid = app
        .grant(k, w, json!({"amount": "2.00", "category": "top_up"}))
        .await;
    let (_, tx) = app
        .move_money(k, w, "debit", json!({"amount": "6.00", "category": "usage"}))
        .await;
    assert_eq!(uses(&tx), vec![(Some(paid), d("2")), (None, d("4"))]);
    let (_, tx) = app
        .move_money(k, w, "credit", json!({"amount": "10.00", "category": "grant"}))
        .await;
    let promo: Uuid = tx["granted"][0]["grant_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        uses(&tx),
        vec![(Some(promo), d("4"))],
        "4.00 of it repaid the overdraft"
    );
    let g = app.grant_row(k, w, promo).await;
    assert_eq!(
        (g["amount"].as_str(), g["remaining"].as_str()),
        (Some("10.00"), Some("6.00"))
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn bad_grant_fields_are_refused_and_change_nothing(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let w = app.wallet(k, "USD", "0").await;
    for (body, field) in [
        (
            json!({"amount": "1.00", "category": "grant", "priority": 101}),
            "priority",
        ),
        (
            json!({"amount": "1.00", "category": "grant", "priority": -1}),
            "priority",
        ),
        (
            json!({"amount": "1.00", "category": "grant", "expires_at": in_secs(-60)}),
            "expires_at",
        ),
        (
            json!({"amount": "1.00", "category": "grant", "expires_at": "tomorrow"}),
            "expires_at",
        ),
    ] {
        let r = app
            .post(k, &format!("/v1/wallets/{w}/credit"), &fresh(), &body)
            .await;
        let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert!(
            p["errors"].get(field).is_some() || p["detail"].as_str().unwrap_or("").contains(field),
            "{p}"
        );
    }
    let r = app.get(k, &format!("/v1/wallets/{w}/grants?status=spent")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.count("SELECT count(*) FROM credit_grants").await, 0);
    assert_eq!(app.balance(k, w).await, "0.00");
}

/// Forty debits race a promo grant's deadline while two expiry jobs run:
/// nothing is taken from it at or after its deadline, and it expires
/// exactly once.
#[sqlx::test]
async fn debits_racing_a_deadline_never_spend_past_it_and_it_expires_once(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let w = app.wallet(k, "USD", "100.00").await;
    let deadline = in_secs(2);
    let promo = app
        .grant(
            k,
            w,
            json!({"amount": "30.00", "category": "grant", "priority": 0, "expires_at": deadline}),
        )
        .await;
    let debits = join_all((0..40).map(|i| {
        let app = &app;
        async move {
            // Spread over the deadline: some before, some after.
            tokio::time::sleep(Duration::from_millis(100 * i)).await;
            app.move_money(k, w, "debit", json!({"amount": "0.50", "category": "usage"}))
                .await
        }
    }));
    let jobs = join_all((0..2).map(|_| {
        let pool = app.pool.clone();
        let deadline = deadline.clone();
        async move {
            sleep_until(&deadline).await;
            let mut expired = 0;
            for _ in 0..10 {
                expired += billing_ledger::jobs::expire_grants(&pool, 500).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            expired
        }
    }));
    let (answers, expired) = tokio::join!(debits, jobs);
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::CREATED));
    assert!(
        expired.iter().sum::<u64>() <= 1,
        "the jobs expired it at most once: {expired:?}"
    );
    assert_eq!(app.expired_movements(promo).await, 1, "it expired exactly once");
    let late = app
        .count(&format!(
            "SELECT count(*) FROM grant_consumptions c
               JOIN wallet_transactions t ON t.shop_id = c.shop_id AND t.id = c.wallet_transaction_id
               JOIN credit_grants g ON g.shop_id = c.shop_id AND g.id = c.grant_id
              WHERE c.grant_id = '{promo}' AND t.category <> 'grant_expired'
                AND t.created_at >= g.expires_at"
        ))
        .await;
    assert_eq!(late, 0, "nothing was taken from it at or after its deadline");
    let g = app.grant_row(k, w, promo).await;
    assert_eq!(g["status"], "expired");
    assert_eq!(g["remaining"], "0.00");
    let spent: Decimal = app
        .count(&format!(
            "SELECT (100 * COALESCE(sum(amount), 0))::bigint FROM grant_consumptions c
              WHERE c.grant_id = '{promo}' AND NOT EXISTS (SELECT 1 FROM wallet_transactions t
                WHERE t.shop_id = c.shop_id AND t.id = c.wallet_transaction_id AND t.category = 'grant_expired')"
        ))
        .await
        .into();
    assert_eq!(
        spent / Decimal::from(100) + dec(&g["expired_amount"]),
        d("30"),
        "spent + expired = its amount"
    );
    assert_eq!(
        app.balance(k, w).await.parse::<Decimal>().unwrap(),
        d("130") - d("20") - dec(&g["expired_amount"])
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn a_refund_gives_back_to_the_grants_its_debit_took_in_reverse(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let w = app.wallet(k, "USD", "0").await;
    let paid = app
        .grant(k, w, json!({"amount": "10.00", "category": "top_up"}))
        .await;
    let promo = app
        .grant(
            k,
            w,
            json!({"amount": "5.00", "category": "grant", "priority": 0}),
        )
        .await;
    let (_, debit) = app
        .move_money(k, w, "debit", json!({"amount": "8.00", "category": "usage"}))
        .await;
    assert_eq!(uses(&debit), vec![(Some(promo), d("5")), (Some(paid), d("3"))]);
    let refund = format!("transactions/{}/refund", debit["id"].as_str().unwrap());
    let (_, r) = app.move_money(k, w, &refund, json!({"amount": "4.00"})).await;
    assert_eq!(
        uses(&r),
        vec![(Some(paid), d("-3")), (Some(promo), d("-1"))],
        "last taken, first back"
    );
    let (_, r) = app.move_money(k, w, &refund, json!({"amount": "4.00"})).await;
    assert_eq!(uses(&r), vec![(Some(promo), d("-4"))]);
    assert_eq!(app.grant_row(k, w, promo).await["remaining"], "5.00");
    assert_eq!(app.grant_row(k, w, paid).await["remaining"], "10.00");
    let view = app.wallet_view(k, w).await;
    assert_eq!(
        (view["balance_paid"].as_str(), view["balance_granted"].as_str()),
        (Some("10.00"), Some("5.00"))
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn credit_given_back_for_an_expired_grant_comes_back_expired(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let w = app.wallet(k, "USD", "10.00").await;
    let deadline = in_secs(1);
    let promo = app
        .grant(
            k,
            w,
            json!({"amount": "5.00", "category": "grant", "priority": 0, "expires_at": deadline}),
        )
        .await;
    let (_, debit) = app
        .move_money(k, w, "debit", json!({"amount": "7.00", "category": "usage"}))
        .await;
    assert_eq!(uses(&debit)[0], (Some(promo), d("5")));
    sleep_until(&deadline).await;
    let id = debit["id"].as_str().unwrap();
    let r = app
        .post(
            k,
            &format!("/v1/wallets/{w}/transactions/{id}/refund"),
            &fresh(),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let refund: Value = r.json().await.unwrap();
    let paid_back = uses(&refund);
    assert_eq!(paid_back.len(), 1, "the paid grant got its 2.00 back: {refund}");
    assert_eq!(paid_back[0].1, d("-2"));
    let granted = refund["granted"].as_array().unwrap();
    assert_eq!(granted.len(), 1, "the promo's 5.00 came back in a new grant");
    let again: Uuid = granted[0]["grant_id"].as_str().unwrap().parse().unwrap();
    let g = app.grant_row(k, w, again).await;
    assert_eq!(g["source_grant_id"], promo.to_string());
    assert_eq!(g["expires_at"], app.grant_row(k, w, promo).await["expires_at"]);
    assert_eq!(
        (g["status"].as_str(), g["remaining"].as_str()),
        (Some("expired"), Some("0.00"))
    );
    assert_eq!(app.expired_movements(again).await, 1, "and expired at once");
    assert_eq!(app.balance(k, w).await, "10.00", "10 + 5 − 7 + 7 − 5");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn held_credit_outlives_its_deadline_and_what_is_freed_expires_then(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let w = app.wallet(k, "USD", "10.00").await;
    let deadline = in_secs(1);
    let promo = app
        .grant(
            k,
            w,
            json!({"amount": "9.00", "category": "grant", "priority": 0, "expires_at": deadline}),
        )
        .await;
    let (_, a) = app
        .move_money(k, w, "reservations", json!({"amount": "4.00"}))
        .await;
    let (_, b) = app
        .move_money(k, w, "reservations", json!({"amount": "3.00"}))
        .await;
    assert_eq!(
        app.grant_row(k, w, promo).await["held"],
        "7.00",
        "both holds reserved from the promo"
    );
    sleep_until(&deadline).await;
    billing_ledger::jobs::expire_grants(&app.pool, 500).await.unwrap();
    let g = app.grant_row(k, w, promo).await;
    assert_eq!(
        (
            g["remaining"].as_str(),
            g["held"].as_str(),
            g["expired_amount"].as_str()
        ),
        (Some("7.00"), Some("7.00"), Some("2.00")),
        "only the free 2.00 expired: {g}"
    );
    // A capture spends held credit past the deadline; what it frees expires.
    let r = app
        .post(
            k,
            &format!("/v1/reservations/{}/capture", a["id"].as_str().unwrap()),
            &fresh(),
            &json!({"amount": "3.00"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let captured: Value = r.json().await.unwrap();
    let tx = app
        .get(
            k,
            &format!(
                "/v1/wallets/{w}/transactions/{}",
                captured["wallet_transaction_id"].as_str().unwrap()
            ),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(uses(&tx), vec![(Some(promo), d("3"))]);
    assert_eq!(
        app.grant_row(k, w, promo).await["expired_amount"],
        "3.00",
        "the capture's leftover 1.00 expired"
    );
    // A release frees the rest, which expires then.
    let r = app
        .post(
            k,
            &format!("/v1/reservations/{}/release", b["id"].as_str().unwrap()),
            &fresh(),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let g = app.grant_row(k, w, promo).await;
    assert_eq!(
        (
            g["remaining"].as_str(),
            g["held"].as_str(),
            g["expired_amount"].as_str()
        ),
        (Some("0.00"), Some("0.00"), Some("6.00"))
    );
    assert_eq!(
        app.expired_movements(promo).await,
        3,
        "each part expired once, when it was freed"
    );
    assert_eq!(app.balance(k, w).await, "10.00", "19 − 3 captured − 6 expired");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn an_overdraft_spends_credit_other_holds_reserved_and_they_keep_their_amount(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let r = app
        .post(
            k,
            "/v1/wallets",
            &fresh(),
            &json!({"customer_ref": "c", "currency": "USD", "overdraft_limit": "5"}),
        )
        .await;
    let w: Uuid = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let paid = app
        .grant(k, w, json!({"amount": "10.00", "category": "top_up"}))
        .await;
    let hold: Value = app
        .post(
            k,
            &format!("/v1/wallets/{w}/reservations"),
            &fresh(),
            &json!({"amount": "10.00"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let (s, tx) = app
        .move_money(k, w, "debit", json!({"amount": "5.00", "category": "usage"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{tx}");
    assert_eq!(
        uses(&tx),
        vec![(Some(paid), d("5"))],
        "the held credit, lent by the overdraft"
    );
    assert_eq!(app.grant_row(k, w, paid).await["held"], "5.00");
    let r = app
        .post(
            k,
            &format!("/v1/reservations/{}/capture", hold["id"].as_str().unwrap()),
            &fresh(),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.balance(k, w).await, "-5.00");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn a_transfer_carries_its_grants_kind_priority_and_deadline(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let from = app.wallet(k, "USD", "0").await;
    let to = app.wallet(k, "USD", "0").await;
    app.grant(k, from, json!({"amount": "10.00", "category": "top_up"}))
        .await;
    let deadline = in_secs(86_400);
    let promo = app
        .grant(
            k,
            from,
            json!({"amount": "5.00", "category": "grant", "priority": 5, "expires_at": deadline}),
        )
        .await;
    let r = app
        .post(
            k,
            "/v1/transfers",
            &fresh(),
            &json!({"from_wallet_id": from, "to_wallet_id": to, "amount": "8.00"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["credit"]["granted"].as_array().unwrap().len(), 2, "{t}");
    let carried = app.grants_of(k, to, "").await;
    let like_promo = carried
        .iter()
        .find(|g| g["source_grant_id"] == promo.to_string())
        .unwrap();
    assert_eq!(
        (
            like_promo["kind"].as_str(),
            like_promo["priority"].as_i64(),
            like_promo["amount"].as_str()
        ),
        (Some("granted"), Some(5), Some("5.00"))
    );
    let same_deadline: DateTime<Utc> = like_promo["expires_at"].as_str().unwrap().parse().unwrap();
    let asked: DateTime<Utc> = deadline.parse().unwrap();
    assert!((same_deadline - asked).num_milliseconds().abs() < 1);
    let view = app.wallet_view(k, to).await;
    assert_eq!(
        (view["balance_paid"].as_str(), view["balance_granted"].as_str()),
        (Some("3.00"), Some("5.00"))
    );
    app.assert_ledger_consistent().await;
}

/// The migration turns each positive balance into one paid grant without
/// a deadline, from which active holds reserve, oldest first.
#[sqlx::test(migrations = false)]
async fn migrated_wallets_keep_their_balances_as_one_paid_grant(_: PgPoolOptions, connect: PgConnectOptions) {
    let mut conn = sqlx::PgConnection::connect_with(&connect).await.unwrap();
    let migrator = sqlx::migrate!();
    let (before, grants): (Vec<_>, Vec<_>) = migrator.iter().partition(|m| m.version < 18);
    for m in before {
        conn.execute(&*m.sql).await.unwrap();
    }
    let shop = Uuid::now_v7();
    let (rich, poor, held) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    conn.execute(&*format!(
        "INSERT INTO shops (id, name) VALUES ('{shop}', 'old');
         INSERT INTO wallets (shop_id, id, customer_ref, currency, balance, reserved, overdraft_limit) VALUES
             ('{shop}', '{rich}', 'a', 'USD', 25.5, 0, 0),
             ('{shop}', '{poor}', 'b', 'USD', -3, 0, 5),
             ('{shop}', '{held}', 'c', 'USD', 10, 12, 5);
         INSERT INTO credit_reservations (shop_id, id, wallet_id, currency, amount, expires_at, created_at) VALUES
             ('{shop}', '{}', '{held}', 'USD', 4, now() + interval '1 hour', now()),
             ('{shop}', '{}', '{held}', 'USD', 8, now() + interval '1 hour', now());",
        Uuid::now_v7(),
        Uuid::now_v7()
    ))
    .await
    .unwrap();
    for m in grants {
        conn.execute(&*m.sql).await.unwrap();
    }
    type Migrated = (Uuid, String, Decimal, Decimal, Option<DateTime<Utc>>);
    let rows: Vec<Migrated> = sqlx::query_as(
        "SELECT wallet_id, kind, remaining, held, expires_at FROM credit_grants ORDER BY wallet_id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "no grant for a balance at or below zero");
    let rich_grant = rows.iter().find(|r| r.0 == rich).unwrap();
    assert_eq!(
        (rich_grant.1.as_str(), rich_grant.2, rich_grant.3, rich_grant.4),
        ("paid", d("25.5"), d("0"), None)
    );
    let held_grant = rows.iter().find(|r| r.0 == held).unwrap();
    assert_eq!(
        (held_grant.2, held_grant.3),
        (d("10"), d("10")),
        "the holds reserve all 10.00"
    );
    let allocated: Vec<Decimal> = sqlx::query_scalar(
        "SELECT a.amount FROM reservation_grants a JOIN credit_reservations r ON r.id = a.reservation_id
          ORDER BY r.id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        allocated,
        vec![d("4"), d("6")],
        "oldest hold first; the overdraft backs the last 2.00"
    );
}

/// The report's grants: what was issued, spent and expired (the breakage)
/// in the period, and a grant left unexpired past its deadline fails the
/// check, naming it.
#[sqlx::test]
async fn the_report_shows_issued_spent_and_expired_credit(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let w = app.wallet(k, "USD", "10.00").await;
    let deadline = in_secs(1);
    app.grant(
        k,
        w,
        json!({"amount": "5.00", "category": "grant", "priority": 0, "expires_at": deadline}),
    )
    .await;
    let (s, _) = app
        .move_money(k, w, "debit", json!({"amount": "3.00", "category": "usage"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    sleep_until(&deadline).await;
    assert_eq!(
        billing_ledger::jobs::expire_grants(&app.pool, 500).await.unwrap(),
        1
    );
    let today = Utc::now().date_naive();
    let path = format!("/v1/reports/reconciliation?from={today}&to={today}");
    let report: Value = app.get(k, &path).await.json().await.unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["grants"]["summary"],
        json!([{"currency": "USD", "paid_issued": "10.00", "granted_issued": "5.00",
                "spent": "3.00", "expired": "2.00"}])
    );
    // The trial balance carries the breakage account.
    let accounts = report["trial_balance"][0]["accounts"].to_string();
    assert!(accounts.contains("breakage"), "{accounts}");

    // A grant the job never reached: overdue, named by the failing check.
    let late = app
        .grant(
            k,
            w,
            json!({"amount": "1.00", "category": "grant", "expires_at": in_secs(3600)}),
        )
        .await;
    sqlx::query("UPDATE credit_grants SET expires_at = now() - interval '10 minutes' WHERE id = $1")
        .bind(late)
        .execute(&app.pool)
        .await
        .unwrap();
    let report: Value = app.get(k, &path).await.json().await.unwrap();
    assert_eq!(report["failed_checks"], json!(["grants"]));
    assert_eq!(report["grants"]["overdue_grant_ids"], json!([late]));
}
