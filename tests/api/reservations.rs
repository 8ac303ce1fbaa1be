//! Credit reservations: holds, captures, releases and expiry, with requests
//! and the expiry job really running at the same time. Counts and sums,
//! never timings.

use std::collections::HashMap;

use billing_ledger::jobs;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::*;

impl TestApp {
    async fn hold(&self, key: &str, wallet: Uuid, body: Value) -> (StatusCode, Value) {
        let r = self
            .post(
                key,
                &format!("/v1/wallets/{wallet}/reservations"),
                &fresh(),
                &body,
            )
            .await;
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    async fn settle(&self, key: &str, id: &str, action: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .post(key, &format!("/v1/reservations/{id}/{action}"), &fresh(), &body)
            .await;
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    async fn wallet_json(&self, key: &str, wallet: Uuid) -> Value {
        self.get(key, &format!("/v1/wallets/{wallet}"))
            .await
            .json()
            .await
            .unwrap()
    }
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

#[sqlx::test]
async fn forty_holds_of_one_on_twenty_five_available_leave_twenty_five_active(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "25").await;

    let answers = join_all((0..40).map(|_| app.hold(&shop.key, w, json!({"amount": "1"})))).await;
    let held = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    let poor = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::UNPROCESSABLE_ENTITY && b["code"] == "insufficient_funds")
        .count();
    assert_eq!((held, poor), (25, 15), "{answers:?}");
    let active = app
        .count("SELECT count(*) FROM credit_reservations WHERE status = 'active'")
        .await;
    assert_eq!(active, 25);
    let wallet = app.wallet_json(&shop.key, w).await;
    assert_eq!(
        (&wallet["balance"], &wallet["reserved"], &wallet["available"]),
        (&json!("25.00"), &json!("25.00"), &json!("0.00")),
        "holds post nothing: the balance stays, all of it reserved"
    );
    let postings = app
        .count("SELECT count(*) FROM journal_transactions WHERE kind LIKE 'reservation%'")
        .await;
    assert_eq!(postings, 0);
    // A debit cannot spend what is held.
    let r = app
        .post(
            &shop.key,
            &format!("/v1/wallets/{w}/debit"),
            &fresh(),
            &json!({"amount": "1", "category": "usage"}),
        )
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "insufficient_funds").await;
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn an_overdraft_limit_counts_toward_a_hold(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let r = app
        .post(
            &shop.key,
            "/v1/wallets",
            &fresh(),
            &json!({"customer_ref": "c", "currency": "USD", "overdraft_limit": "5"}),
        )
        .await;
    let w: Uuid = id_of(&r.json().await.unwrap()).parse().unwrap();
    let (s, b) = app.hold(&shop.key, w, json!({"amount": "5.01"})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("insufficient_funds"))
    );
    let (s, hold) = app.hold(&shop.key, w, json!({"amount": "5.00"})).await;
    assert_eq!(s, StatusCode::CREATED, "{hold}");
    let wallet = app.wallet_json(&shop.key, w).await;
    assert_eq!(wallet["available"], "-5.00");
    let (s, captured) = app.settle(&shop.key, &id_of(&hold), "capture", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{captured}");
    assert_eq!(app.balance(&shop.key, w).await, "-5.00");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn one_reservation_key_sent_twenty_times_at_once_holds_once(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "100").await;
    let other = app.wallet(&shop.key, "USD", "100").await;
    let body = json!({"amount": "7.00", "reservation_key": "job-42"});

    // Twenty different Idempotency-Keys, one reservation_key.
    let answers = join_all((0..20).map(|_| app.hold(&shop.key, w, body.clone()))).await;
    let created = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    let found = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!((created, found), (1, 19), "{answers:?}");
    let ids: std::collections::HashSet<_> = answers.iter().map(|(_, b)| id_of(b)).collect();
    assert_eq!(ids.len(), 1, "every answer is the one hold");
    assert_eq!(app.count("SELECT count(*) FROM credit_reservations").await, 1);
    assert_eq!(app.wallet_json(&shop.key, w).await["reserved"], "7.00");

    let (s, b) = app
        .hold(
            &shop.key,
            w,
            json!({"amount": "8.00", "reservation_key": "job-42"}),
        )
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("reservation_key_conflict"))
    );
    assert!(b["detail"].as_str().unwrap().contains("amount"), "{b}");
    let (s, b) = app
        .hold(
            &shop.key,
            other,
            json!({"amount": "7.00", "reservation_key": "job-42"}),
        )
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("reservation_key_conflict"))
    );
    assert!(b["detail"].as_str().unwrap().contains("wallet_id"), "{b}");
    assert_eq!(app.count("SELECT count(*) FROM credit_reservations").await, 1);

    // The key still names the hold once it is settled: a retrying job
    // learns the outcome instead of holding again.
    let (s, _) = app
        .settle(
            &shop.key,
            &ids.iter().next().unwrap().clone(),
            "capture",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = app.hold(&shop.key, w, body).await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("captured")));
    assert_eq!(app.balance(&shop.key, w).await, "93.00");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn a_partial_capture_posts_exactly_the_captured_amount(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "100").await;
    let (s, hold) = app
        .hold(
            &shop.key,
            w,
            json!({"amount": "30.00", "description": "bulk send", "metadata": {"job": "7"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hold}");
    let id = id_of(&hold);
    assert_eq!(hold["status"], "active");
    assert_eq!(hold["captured_amount"], "0.00");

    // Above the hold: a 422 naming the field, and nothing changes.
    let (s, b) = app
        .settle(&shop.key, &id, "capture", json!({"amount": "30.01"}))
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed"))
    );
    assert!(b["errors"]["amount"].is_array(), "{b}");
    let (s, b) = app
        .settle(&shop.key, &id, "capture", json!({"amount": "1.001"}))
        .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed"))
    );

    let key = fresh();
    let path = format!("/v1/reservations/{id}/capture");
    let r = app
        .post(&shop.key, &path, &key, &json!({"amount": "12.50"}))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let captured: Value = r.json().await.unwrap();
    assert_eq!(captured["status"], "captured");
    assert_eq!(captured["captured_amount"], "12.50");
    assert!(captured["settled_at"].is_string());
    // The same request again is the stored answer, charged once.
    let r = app
        .post(&shop.key, &path, &key, &json!({"amount": "12.50"}))
        .await;
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.json::<Value>().await.unwrap(), captured);

    let wallet = app.wallet_json(&shop.key, w).await;
    assert_eq!(
        (&wallet["balance"], &wallet["reserved"], &wallet["available"]),
        (&json!("87.50"), &json!("0.00"), &json!("87.50"))
    );
    let tx_id = captured["wallet_transaction_id"].as_str().unwrap();
    let txs: Value = app
        .get(&shop.key, &format!("/v1/wallets/{w}/transactions"))
        .await
        .json()
        .await
        .unwrap();
    let last = &txs["data"][0];
    assert_eq!(last["id"], tx_id);
    assert_eq!(
        (
            &last["type"],
            &last["category"],
            &last["amount"],
            &last["balance_after"]
        ),
        (
            &json!("debit"),
            &json!("reservation_capture"),
            &json!("12.50"),
            &json!("87.50")
        )
    );
    assert_eq!(last["description"], "bulk send");
    let revenue: String = sqlx::query_scalar(
        "SELECT sum(amount)::text FROM journal_entries WHERE shop_id = $1 AND account = 'revenue'",
    )
    .bind(shop.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(revenue, "12.5000", "revenue got exactly the captured amount");

    // Settled once: a capture or release under another key is refused.
    for action in ["capture", "release"] {
        let (s, b) = app.settle(&shop.key, &id, action, json!({})).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::CONFLICT, Some("invalid_state")),
            "{action}"
        );
    }
    assert_eq!(app.balance(&shop.key, w).await, "87.50");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn a_release_frees_the_hold_once_and_posts_nothing(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "EUR", "10").await;
    let (_, hold) = app.hold(&shop.key, w, json!({"amount": "4"})).await;
    let id = id_of(&hold);

    let answers = join_all((0..6).map(|_| app.settle(&shop.key, &id, "release", json!({})))).await;
    let released = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let refused = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && b["code"] == "invalid_state")
        .count();
    assert_eq!((released, refused), (1, 5), "{answers:?}");
    let wallet = app.wallet_json(&shop.key, w).await;
    assert_eq!(
        (&wallet["balance"], &wallet["reserved"]),
        (&json!("10.00"), &json!("0.00"))
    );
    let r: Value = app
        .get(&shop.key, &format!("/v1/reservations/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&r["status"], &r["captured_amount"]),
        (&json!("released"), &json!("0.00"))
    );
    assert!(r["wallet_transaction_id"].is_null());
    let (s, b) = app.settle(&shop.key, &id, "capture", json!({})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("invalid_state"))
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn reservations_are_listed_per_wallet_and_private_to_their_shop(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let intruder = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "50").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (s, b) = app.hold(&shop.key, w, json!({"amount": "1"})).await;
        assert_eq!(s, StatusCode::CREATED);
        ids.push(id_of(&b));
    }
    let (s, _) = app.settle(&shop.key, &ids[0], "release", json!({})).await;
    assert_eq!(s, StatusCode::OK);

    // Newest first, two per page, filtered by status.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => format!("/v1/wallets/{w}/reservations?status=active&limit=2"),
            Some(a) => format!("/v1/wallets/{w}/reservations?status=active&limit=2&starting_after={a}"),
        };
        let page: Value = app.get(&shop.key, &path).await.json().await.unwrap();
        let data = page["data"].as_array().unwrap();
        seen.extend(data.iter().map(id_of));
        after = data.last().map(id_of);
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
    }
    let mut expected: Vec<String> = ids[1..].to_vec();
    expected.reverse();
    assert_eq!(seen, expected);
    let released: Value = app
        .get(
            &shop.key,
            &format!("/v1/wallets/{w}/reservations?status=released"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(released["data"].as_array().unwrap().len(), 1);
    let r = app
        .get(&shop.key, &format!("/v1/wallets/{w}/reservations?status=pending"))
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    // Another shop sees nothing and can settle nothing.
    let r = app
        .get(&intruder.key, &format!("/v1/reservations/{}", ids[1]))
        .await;
    problem(r, StatusCode::NOT_FOUND, "not_found").await;
    let r = app
        .get(&intruder.key, &format!("/v1/wallets/{w}/reservations"))
        .await;
    problem(r, StatusCode::NOT_FOUND, "not_found").await;
    for action in ["capture", "release"] {
        let (s, b) = app.settle(&intruder.key, &ids[1], action, json!({})).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
    }
    let (s, b) = app.hold(&intruder.key, w, json!({"amount": "1"})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    assert_eq!(app.wallet_json(&shop.key, w).await["reserved"], "4.00");

    // Bad input changes nothing.
    for body in [
        json!({"amount": "0"}),
        json!({"amount": "1", "expires_in_seconds": 0}),
        json!({"amount": "1", "expires_in_seconds": 604801}),
        json!({"amount": "1", "reservation_key": ""}),
        json!({"amount": "1", "color": "red"}),
    ] {
        let (s, b) = app.hold(&shop.key, w, body.clone()).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("validation_failed")),
            "{body}"
        );
    }
    assert_eq!(app.count("SELECT count(*) FROM credit_reservations").await, 5);
    app.assert_ledger_consistent().await;
}

/// Moves a hold's deadline by the database's clock.
async fn expire_at(app: &TestApp, id: &str, offset: &str) {
    // Read first, then written as a value: Citus refuses a volatile function
    // in a distributed UPDATE.
    let at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp() + $1::interval")
        .bind(offset)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE credit_reservations SET expires_at = $2 WHERE id = $1")
        .bind(id.parse::<Uuid>().unwrap())
        .bind(at)
        .execute(&app.pool)
        .await
        .unwrap();
}

#[sqlx::test]
async fn a_capture_after_expires_at_is_refused_before_the_job_runs(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "50").await;
    let mut ids = Vec::new();
    for amount in ["5", "6", "7", "8"] {
        let (s, b) = app
            .hold(
                &shop.key,
                w,
                json!({"amount": amount, "expires_in_seconds": 3600}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        ids.push(id_of(&b));
    }
    for id in &ids[..3] {
        expire_at(&app, id, "-1 second").await;
    }

    // The job has not run: the capture judges the deadline itself, refuses,
    // and frees the stale hold in the same transaction.
    let key = fresh();
    let path = format!("/v1/reservations/{}/capture", ids[0]);
    let r = app.post(&shop.key, &path, &key, &json!({})).await;
    problem(r, StatusCode::CONFLICT, "reservation_expired").await;
    let r = app.post(&shop.key, &path, &key, &json!({})).await;
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    problem(r, StatusCode::CONFLICT, "reservation_expired").await;
    let (s, b) = app.settle(&shop.key, &ids[1], "release", json!({})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("reservation_expired"))
    );
    let r: Value = app
        .get(&shop.key, &format!("/v1/reservations/{}", ids[0]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "expired");
    assert_eq!(app.wallet_json(&shop.key, w).await["reserved"], "15.00");
    app.assert_ledger_consistent().await;

    // The job releases the remaining stale hold and leaves the live one.
    let expired = jobs::expire_reservations(&app.pool, 100).await.unwrap();
    assert_eq!(expired, 1);
    assert_eq!(jobs::expire_reservations(&app.pool, 100).await.unwrap(), 0);
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM credit_reservations ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(statuses, ["expired", "expired", "expired", "active"]);
    let wallet = app.wallet_json(&shop.key, w).await;
    assert_eq!(
        (&wallet["balance"], &wallet["reserved"]),
        (&json!("50.00"), &json!("8.00"))
    );
    let (s, b) = app.settle(&shop.key, &ids[2], "capture", json!({})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("reservation_expired"))
    );
    let audits = app
        .count("SELECT count(*) FROM audit_log WHERE action = 'reservation.expire'")
        .await;
    assert_eq!(audits, 3, "each expiry is audited once");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn capture_release_and_the_job_racing_settle_each_hold_once(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let wallets = [
        app.wallet(&shop.key, "USD", "1000").await,
        app.wallet(&shop.key, "USD", "1000").await,
        app.wallet(&shop.key, "USD", "1000").await,
    ];
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for round in 0..6 {
        let mut ids = Vec::new();
        for (i, w) in wallets.iter().enumerate() {
            for j in 0..4 {
                let (s, b) = app
                    .hold(&shop.key, *w, json!({"amount": format!("{}.00", 1 + i + j)}))
                    .await;
                assert_eq!(s, StatusCode::CREATED);
                ids.push(id_of(&b));
            }
        }
        // A third already past its deadline, a third on it, a third live.
        for (n, id) in ids.iter().enumerate() {
            let offset = ["-1 second", "40 milliseconds", "1 hour"][(n + round) % 3];
            expire_at(&app, id, offset).await;
        }
        let requests = ids.iter().flat_map(|id| {
            let app = &app;
            let key = &shop.key;
            ["capture", "release"].map(move |action| async move {
                let (s, b) = app.settle(key, id, action, json!({})).await;
                (action, s, b)
            })
        });
        let jobs = async {
            let mut n = 0;
            for _ in 0..4 {
                n += jobs::expire_reservations(&app.pool, 5).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(15)).await;
            }
            n
        };
        let (answers, _) = tokio::join!(join_all(requests), jobs);
        for (action, s, b) in &answers {
            let outcome = match (*s, b["code"].as_str()) {
                (StatusCode::OK, _) => format!("{action}:ok"),
                (StatusCode::CONFLICT, Some(code @ ("invalid_state" | "reservation_expired"))) => {
                    format!("{action}:{code}")
                }
                other => panic!("unexpected answer to {action}: {other:?} {b}"),
            };
            *outcomes.entry(outcome).or_default() += 1;
        }
    }
    // Whatever is still active (a deadline the job has not reached) goes now.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    jobs::expire_reservations(&app.pool, 100).await.unwrap();

    // Exactly one terminal transition per hold, matching its status.
    let wrong = app
        .count(
            "SELECT count(*) FROM credit_reservations r
              WHERE r.status = 'active'
                 OR (SELECT count(*) FROM audit_log a
                      WHERE a.shop_id = r.shop_id AND a.entity_id = r.id
                        AND a.action IN ('reservation.capture', 'reservation.release', 'reservation.expire')) <> 1
                 OR NOT EXISTS (SELECT 1 FROM audit_log a
                      WHERE a.shop_id = r.shop_id AND a.entity_id = r.id
                        AND a.action = 'reservation.' || CASE r.status WHEN 'captured' THEN 'capture'
                                                          WHEN 'released' THEN 'release' ELSE 'expire' END)",
        )
        .await;
    assert_eq!(wrong, 0, "{outcomes:?}");
    eprintln!("race outcomes: {outcomes:?}");
    for settled in [
        "capture:ok",
        "release:ok",
        "capture:invalid_state",
        "release:invalid_state",
    ] {
        assert!(
            outcomes.contains_key(settled),
            "live holds were contended: {outcomes:?}"
        );
    }
    let expired = app
        .count("SELECT count(*) FROM credit_reservations WHERE status = 'expired'")
        .await;
    assert!(expired >= 6 * 4, "every stale hold expired: {expired}");
    let total = app.count("SELECT count(*) FROM credit_reservations").await;
    assert_eq!(total, 6 * 12);
    let captured = app
        .count("SELECT count(*) FROM credit_reservations WHERE status = 'captured'")
        .await;
    let postings = app
        .count("SELECT count(*) FROM journal_transactions WHERE kind = 'reservation.capture'")
        .await;
    assert_eq!(captured, postings, "one posting per capture, none for the rest");
    assert_eq!(
        outcomes.get("capture:ok").copied().unwrap_or(0) as i64,
        captured,
        "{outcomes:?}"
    );
    for w in wallets {
        assert_eq!(app.wallet_json(&shop.key, w).await["reserved"], "0.00");
    }
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn holds_captures_and_releases_retried_after_their_key_expired_answer_the_earlier_result(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let wallet = app.wallet(k, "USD", "20.00").await;
    let hold_path = format!("/v1/wallets/{wallet}/reservations");
    let mut held = Vec::new();
    for key in ["hold-1", "hold-2"] {
        let body = json!({"amount": "5.00"});
        let first: Value = app.post(k, &hold_path, key, &body).await.json().await.unwrap();
        crate::idempotency::expire(&app, key).await;
        let r = app.post(k, &hold_path, key, &body).await;
        assert!(r.status().is_success(), "{}", r.status());
        assert_eq!(r.headers()["idempotent-replayed"], "true");
        let again: Value = r.json().await.unwrap();
        assert_eq!(again["id"], first["id"], "one hold, not two");
        held.push(first["id"].as_str().unwrap().to_owned());
    }
    let w: Value = app
        .get(k, &format!("/v1/wallets/{wallet}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(w["reserved"], "10.00");

    let capture = format!("/v1/reservations/{}/capture", held[0]);
    let body = json!({"amount": "4.00"});
    assert_eq!(
        app.post(k, &capture, "cap-1", &body).await.status(),
        StatusCode::OK
    );
    crate::idempotency::expire(&app, "cap-1").await;
    let r = app.post(k, &capture, "cap-1", &body).await;
    assert_eq!(r.status(), StatusCode::OK, "the capture, not 409 invalid_state");
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.json::<Value>().await.unwrap()["captured_amount"], "4.00");
    // The same key asking for another capture is refused.
    crate::idempotency::expire(&app, "cap-1").await;
    let other = app.post(k, &capture, "cap-1", &json!({"amount": "3.00"})).await;
    problem(other, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;

    let release = format!("/v1/reservations/{}/release", held[1]);
    assert_eq!(
        app.post(k, &release, "rel-1", &json!({})).await.status(),
        StatusCode::OK
    );
    crate::idempotency::expire(&app, "rel-1").await;
    let r = app.post(k, &release, "rel-1", &json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "released");

    assert_eq!(app.balance(k, wallet).await, "16.00", "captured once");
    assert_eq!(app.count("SELECT count(*) FROM credit_reservations").await, 2);
    app.assert_ledger_consistent().await;
}
