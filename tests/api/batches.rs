use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{TestApp, fresh, problem, spawn_app};

impl TestApp {
    async fn batch(&self, key: &str, idem: &str, body: Value) -> crate::helpers::Answer {
        self.call(Method::POST, key, "/v1/batches", idem, None, body)
            .await
    }

    /// What a failed batch must leave untouched: movements, journal,
    /// keys, events, audit rows.
    async fn footprint(&self) -> [i64; 5] {
        [
            self.count("SELECT count(*) FROM wallet_transactions").await,
            self.count("SELECT count(*) FROM journal_transactions").await,
            self.count("SELECT count(*) FROM idempotency_keys WHERE response_status < 300")
                .await,
            self.count("SELECT count(*) FROM events").await,
            self.count("SELECT count(*) FROM audit_log").await,
        ]
    }
}

fn debit(key: &str, wallet: Uuid, amount: &str) -> Value {
    json!({"op": "debit", "idempotency_key": key, "wallet_id": wallet, "amount": amount, "category": "usage"})
}

#[sqlx::test]
async fn a_batch_with_one_failing_item_changes_nothing_and_its_corrected_retry_applies_once(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let a = app.wallet(k, "USD", "10.00").await;
    let b = app.wallet(k, "USD", "5.00").await;
    let items = |last: &str| {
        json!([
            {"op": "credit", "idempotency_key": "i-credit", "wallet_id": a, "amount": "2.00", "category": "top_up"},
            debit("i-debit-a", a, "3.00"),
            {"op": "transfer", "idempotency_key": "i-transfer", "from_wallet_id": a, "to_wallet_id": b, "amount": "1.00"},
            debit("i-debit-b", b, last),
        ])
    };
    let before = app.footprint().await;
    // b has 5.00 + 1.00: a debit of 7.00 is refused, and with it the batch.
    let r = app.batch(k, "batch-1", json!({"items": items("7.00")})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["code"], "insufficient_funds");
    assert!(r.body["errors"]["items[3]"].is_array(), "{}", r.body);
    assert_eq!(app.footprint().await, before, "nothing changed");
    assert_eq!(app.balance(k, a).await, "10.00");
    assert_eq!(app.balance(k, b).await, "5.00");
    // The refusal is the batch key's outcome, replayed as such.
    let again = app.batch(k, "batch-1", json!({"items": items("7.00")})).await;
    assert_eq!(
        (again.status, again.replayed),
        (StatusCode::UNPROCESSABLE_ENTITY, true)
    );

    // Fixed, under a new batch key and the same item keys: applied once.
    let r = app.batch(k, "batch-2", json!({"items": items("6.00")})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let results = r.body["items"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert!(
        results
            .iter()
            .enumerate()
            .all(|(i, x)| x["index"] == i && x["replayed"] == false)
    );
    assert_eq!(results[1]["status"], 201);
    assert_eq!(results[1]["body"]["amount"], "3.00");
    assert_eq!(results[3]["body"]["balance_after"], "0.00");
    assert_eq!(app.balance(k, a).await, "8.00");
    assert_eq!(app.balance(k, b).await, "0.00");
    // The batch retried: its stored answer.
    let replay = app.batch(k, "batch-2", json!({"items": items("6.00")})).await;
    assert!(replay.replayed);
    assert_eq!(replay.body, r.body);
    // One item alone, as its single request: answered from its record.
    let single = app
        .call(
            Method::POST,
            k,
            &format!("/v1/wallets/{a}/debit"),
            "i-debit-a",
            None,
            json!({"amount": "3.00", "category": "usage"}),
        )
        .await;
    assert_eq!(single.status, StatusCode::CREATED);
    assert!(single.replayed);
    assert_eq!(single.body, results[1]["body"]);
    // The same item key with another body: that item's key is reused.
    let r = app
        .batch(k, "batch-3", json!({"items": [debit("i-debit-a", a, "4.00")]}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["code"], "idempotency_key_reused");
    assert!(r.body["errors"]["items[0]"].is_array(), "{}", r.body);
    assert_eq!(app.balance(k, a).await, "8.00");
    // Each movement once, with its event; the key on its row.
    assert_eq!(
        app.count("SELECT count(*) FROM wallet_transactions WHERE idempotency_key = 'i-debit-a'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE type = 'transfer.created'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'batch.create'")
            .await,
        1
    );
    app.assert_ledger_consistent().await;
    app.assert_grants_consistent().await;
}

#[sqlx::test]
async fn holds_captures_releases_and_refunds_go_in_batches_too(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let w = app.wallet(k, "USD", "20.00").await;
    let r = app
        .batch(
            k,
            &fresh(),
            json!({"items": [
                {"op": "reserve", "idempotency_key": "h1", "wallet_id": w, "amount": "5.00"},
                {"op": "reserve", "idempotency_key": "h2", "wallet_id": w, "amount": "4.00"},
                debit("d1", w, "6.00"),
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let hold = |i: usize| r.body["items"][i]["body"]["id"].as_str().unwrap().to_owned();
    let movement = r.body["items"][2]["body"]["id"].as_str().unwrap().to_owned();
    let (h1, h2) = (hold(0), hold(1));
    let r = app
        .batch(
            k,
            &fresh(),
            json!({"items": [
                {"op": "capture", "idempotency_key": "c1", "reservation_id": h1, "amount": "2.00"},
                {"op": "release", "idempotency_key": "r2", "reservation_id": h2},
                {"op": "refund", "idempotency_key": "f1", "wallet_id": w, "transaction_id": movement, "amount": "1.00"},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let statuses: Vec<&Value> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| &x["status"])
        .collect();
    assert_eq!(statuses, [200, 200, 201]);
    assert_eq!(r.body["items"][0]["body"]["status"], "captured");
    assert_eq!(r.body["items"][1]["body"]["status"], "released");
    // 20 - 6 - 2 + 1
    assert_eq!(app.balance(k, w).await, "13.00");
    let wallet: Value = app
        .get(k, &format!("/v1/wallets/{w}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(wallet["reserved"], "0.00");
    app.assert_ledger_consistent().await;
    app.assert_grants_consistent().await;
}

#[sqlx::test]
async fn a_key_repeated_inside_a_batch_or_a_bad_item_is_a_422_before_anything_runs(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let w = app.wallet(k, "USD", "10.00").await;
    let before = app.footprint().await;
    let r = app
        .post(
            k,
            "/v1/batches",
            &fresh(),
            &json!({"items": [debit("same", w, "1.00"), debit("other", w, "1.00"), debit("same", w, "2.00")]}),
        )
        .await;
    let body = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(body["errors"]["items[0].idempotency_key"].is_array(), "{body}");
    assert!(body["errors"]["items[2].idempotency_key"].is_array(), "{body}");
    for (items, field) in [
        (json!([debit("x", w, "1.001")]), "items[0].amount"),
        (
            json!([debit("x", w, "1.00"), {"op": "mint", "idempotency_key": "y"}]),
            "items[1].op",
        ),
        (
            json!([{"op": "debit", "wallet_id": w, "amount": "1.00", "category": "usage"}]),
            "items[0].idempotency_key",
        ),
        (
            json!([{"op": "debit", "idempotency_key": "z", "amount": "1.00", "category": "usage"}]),
            "items[0].wallet_id",
        ),
        (
            json!([{"op": "debit", "idempotency_key": "z", "wallet_id": w, "amount": "1.00", "category": "usage", "color": "red"}]),
            "items[0].color",
        ),
        (json!([]), "items"),
    ] {
        let r = app
            .post(k, "/v1/batches", &fresh(), &json!({ "items": items }))
            .await;
        let body = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert!(body["errors"][field].is_array(), "{field}: {body}");
    }
    // An item may not reuse the batch's own key.
    let r = app
        .post(
            k,
            "/v1/batches",
            "mine",
            &json!({"items": [debit("mine", w, "1.00")]}),
        )
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    // More than 1,000 items.
    let many: Vec<Value> = (0..1001).map(|i| debit(&format!("m{i}"), w, "0.01")).collect();
    let r = app
        .post(k, "/v1/batches", &fresh(), &json!({ "items": many }))
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(app.footprint().await, before, "nothing changed");
}

#[sqlx::test]
async fn two_batches_crossing_the_same_wallets_in_opposite_orders_never_deadlock(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let wallets: Vec<Uuid> = join_all((0..4).map(|_| app.wallet(k, "USD", "1000.00"))).await;
    let mut reversed = wallets.clone();
    reversed.reverse();
    for round in 0..20 {
        let items = |order: &[Uuid], side: &str| -> Value {
            let moves: Vec<Value> = order
                .windows(2)
                .map(|p| {
                    json!({"op": "transfer", "idempotency_key": format!("{round}-{side}-{}", p[0]),
                           "from_wallet_id": p[0], "to_wallet_id": p[1], "amount": "1.00"})
                })
                .chain(
                    order
                        .iter()
                        .map(|w| debit(&format!("{round}-{side}-d-{w}"), *w, "0.50")),
                )
                .collect();
            json!({ "items": moves })
        };
        let (up, down) = (fresh(), fresh());
        let (x, y) = tokio::join!(
            app.batch(k, &up, items(&wallets, "up")),
            app.batch(k, &down, items(&reversed, "down"))
        );
        assert_eq!(x.status, StatusCode::CREATED, "round {round}: {}", x.body);
        assert_eq!(y.status, StatusCode::CREATED, "round {round}: {}", y.body);
    }
    // 20 rounds × 2 batches × (3 transfers of two legs + 4 debits).
    assert_eq!(
        app.count("SELECT count(*) FROM wallet_transactions WHERE type = 'debit' AND category = 'usage'")
            .await,
        160
    );
    assert_eq!(
        app.count("SELECT count(*) FROM wallet_transactions WHERE transfer_id IS NOT NULL")
            .await,
        240
    );
    let total: rust_decimal::Decimal = sqlx::query_scalar("SELECT sum(balance) FROM wallets")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(total, "3920.00".parse().unwrap(), "4,000 less 160 debits of 0.50");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn a_thousand_item_batch_applies_within_the_timeouts(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let wallets: Vec<Uuid> = join_all((0..10).map(|_| app.wallet(k, "USD", "100.00"))).await;
    let items: Vec<Value> = (0..1000)
        .map(|i| debit(&format!("big-{i}"), wallets[i % 10], "0.10"))
        .collect();
    let r = app.batch(k, &fresh(), json!({ "items": items })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1000);
    for w in &wallets {
        assert_eq!(app.balance(k, *w).await, "90.00");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE type = 'wallet.debited'")
            .await,
        1000
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn a_batch_that_is_not_atomic_answers_each_item_on_its_own(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let w = app.wallet(k, "USD", "5.00").await;
    let body = json!({"atomic": false, "items": [debit("n1", w, "2.00"), debit("n2", w, "9.00"), debit("n3", w, "3.00")]});
    let r = app.batch(k, "loose-1", body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["atomic"], false);
    let statuses: Vec<&Value> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| &x["status"])
        .collect();
    assert_eq!(statuses, [201, 422, 201]);
    assert_eq!(r.body["items"][1]["body"]["code"], "insufficient_funds");
    assert_eq!(app.balance(k, w).await, "0.00");
    // Retried: the batch's record, nothing applied again.
    let again = app.batch(k, "loose-1", body).await;
    assert!(again.replayed);
    assert_eq!(again.body, r.body);
    assert_eq!(app.balance(k, w).await, "0.00");
    // Its refused item is that key's outcome, as a single request's is.
    let single = app
        .call(
            Method::POST,
            k,
            &format!("/v1/wallets/{w}/debit"),
            "n2",
            None,
            json!({"amount": "9.00", "category": "usage"}),
        )
        .await;
    assert_eq!(
        (single.status, single.replayed),
        (StatusCode::UNPROCESSABLE_ENTITY, true)
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn credits_debits_and_transfers_are_written_set_wise_as_their_single_requests_would_be(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let a = app.wallet(k, "USD", "10.00").await;
    let b = app.wallet(k, "USD", "0").await;
    let later = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let items = json!([
        {"op": "credit", "idempotency_key": "s-1", "wallet_id": b, "amount": "5.00",
         "category": "grant", "expires_at": later},
        debit("s-2", a, "4.00"),
        // Spends the grant s-1 made in the same batch.
        debit("s-3", b, "2.00"),
        {"op": "credit", "idempotency_key": "s-4", "wallet_id": a, "amount": "1.50", "category": "top_up"},
        {"op": "transfer", "idempotency_key": "s-5", "from_wallet_id": a, "to_wallet_id": b, "amount": "2.50"},
        // The 3.00 left of s-1's grant and the 2.50 s-5 carried over.
        debit("s-6", b, "5.50"),
        debit("s-7", a, "5.00"),
    ]);
    let before = app.footprint().await;
    let r = app.batch(k, &fresh(), json!({"items": items})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let bodies: Vec<&Value> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| &x["body"])
        .collect();
    // Each movement as it stood: a transfer's two legs.
    let legs: Vec<(&Value, Uuid)> = vec![
        (bodies[0], b),
        (bodies[1], a),
        (bodies[2], b),
        (bodies[3], a),
        (&bodies[4]["debit"], a),
        (&bodies[4]["credit"], b),
        (bodies[5], b),
        (bodies[6], a),
    ];
    let after: Vec<&str> = legs
        .iter()
        .map(|(l, _)| l["balance_after"].as_str().unwrap())
        .collect();
    assert_eq!(
        after,
        ["5.00", "6.00", "3.00", "7.50", "5.00", "5.50", "0.00", "0.00"]
    );
    assert_eq!(app.balance(k, a).await, "0.00");
    assert_eq!(app.balance(k, b).await, "0.00");
    // A row per movement (two for the transfer), a journal transaction
    // and an event per item, a key and an audit row per item and batch.
    let [m, j, keys, events, audit] = app.footprint().await;
    assert_eq!(
        [
            m - before[0],
            j - before[1],
            keys - before[2],
            events - before[3],
            audit - before[4]
        ],
        [8, 7, 8, 7, 8]
    );
    // Written by one statement: every row carries the batch's one time
    // (items run one by one would each read the clock).
    assert_eq!(
        app.count(&format!(
            "SELECT count(DISTINCT created_at) FROM wallet_transactions
              WHERE shop_id = '{0}' AND created_at >= (SELECT min(created_at) FROM wallet_transactions
                                                        WHERE shop_id = '{0}' AND idempotency_key = 's-1')",
            shop.id
        ))
        .await,
        1
    );
    // Each wallet's versions run on without a gap from its creation's 1
    // to the row's.
    for w in [a, b] {
        let gapless = app
            .count(&format!(
                "SELECT (max(t.wallet_version) - min(t.wallet_version) + 1 = count(*)
                         AND min(t.wallet_version) = 2
                         AND max(t.wallet_version) = (SELECT version FROM wallets
                                                       WHERE shop_id = '{s}' AND id = '{w}'))::int::int8
                   FROM wallet_transactions t WHERE t.shop_id = '{s}' AND t.wallet_id = '{w}'",
                s = shop.id
            ))
            .await;
        assert_eq!(gapless, 1, "wallet {w}");
    }
    // s-3 took its 2.00 from the grant s-1 made; s-6 the 3.00 left of it
    // and what the transfer brought.
    let grant = &bodies[0]["granted"][0]["grant_id"];
    assert_eq!(
        bodies[2]["consumptions"],
        json!([{"grant_id": grant, "amount": "2.00"}])
    );
    let carried = &bodies[4]["credit"]["granted"][0]["grant_id"];
    let mut spent: Vec<(String, String)> = bodies[5]["consumptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["grant_id"].to_string(),
                c["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    spent.sort();
    let mut expected = vec![
        (grant.to_string(), "3.00".to_owned()),
        (carried.to_string(), "2.50".to_owned()),
    ];
    expected.sort();
    assert_eq!(spent, expected);
    // Each answer is the books: the movement as the API shows it.
    for (leg, w) in &legs {
        let id = leg["id"].as_str().unwrap();
        let shown: Value = app
            .get(k, &format!("/v1/wallets/{w}/transactions/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(&&shown, leg);
    }
    // An item alone, as its single request: answered from its record.
    let single = app
        .call(
            Method::POST,
            k,
            &format!("/v1/wallets/{b}/debit"),
            "s-3",
            None,
            json!({"amount": "2.00", "category": "usage"}),
        )
        .await;
    assert!(single.replayed);
    assert_eq!(&single.body, bodies[2]);
    app.assert_ledger_consistent().await;
    app.assert_grants_consistent().await;
}

#[sqlx::test]
async fn a_batch_crossing_a_balance_alert_fires_it_once(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let w = app.wallet(k, "USD", "10.00").await;
    let r = app
        .post(
            k,
            &format!("/v1/wallets/{w}/balance-alerts"),
            &fresh(),
            &json!({"available_below": "5.00"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let items = json!([
        debit("x-1", w, "3.00"),
        debit("x-2", w, "3.00"),
        debit("x-3", w, "3.00")
    ]);
    let r = app.batch(k, &fresh(), json!({"items": items})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // x-2 took `available` from 7.00 to 4.00: one alert, the wallet as
    // it stood after x-2.
    let fired = sqlx::query_scalar::<_, Value>(
        "SELECT data FROM events WHERE type = 'wallet.balance_below' ORDER BY seq",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["wallet"]["balance"], "4.00");
    assert_eq!(app.balance(k, w).await, "1.00");
}

/// Sends a debit of `wallet` under `key` in a task; its status.
fn debit_in_background(
    app: &TestApp,
    shop_key: &str,
    wallet: Uuid,
    key: &'static str,
) -> tokio::task::JoinHandle<StatusCode> {
    let (client, url, token) = (
        app.client.clone(),
        app.url(&format!("/v1/wallets/{wallet}/debit")),
        shop_key.to_owned(),
    );
    tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({"amount": "1.00", "category": "usage"}))
            .send()
            .await
            .unwrap()
            .status()
    })
}

/// Sends `items` as the batch `key` in a task; its status and body.
fn batch_in_background(
    app: &TestApp,
    shop_key: &str,
    key: &'static str,
    items: &Value,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let (client, url, token, items) = (
        app.client.clone(),
        app.url("/v1/batches"),
        shop_key.to_owned(),
        items.clone(),
    );
    tokio::spawn(async move {
        let r = client
            .post(url)
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&items)
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    })
}

#[sqlx::test]
async fn an_item_key_a_request_is_claiming_meanwhile_is_never_applied_twice(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    use crate::helpers::{Gate, inject, lock_waiters, wait_for};
    use sqlx::Connection;
    let app = spawn_app(connect.clone()).await;
    let k = &app.shop().await.key;
    let [a, b, c] = [
        app.wallet(k, "USD", "10.00").await,
        app.wallet(k, "USD", "10.00").await,
        app.wallet(k, "USD", "10.00").await,
    ];
    // Single debits take their key and wallet, then wait at a gate before
    // their movement is written.
    inject(
        &app.pool,
        &[
            "CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_xact_lock(42); RETURN NEW; END $$",
            "CREATE TRIGGER gate BEFORE INSERT ON wallet_transactions FOR EACH ROW EXECUTE FUNCTION gate()",
        ],
    )
    .await;
    let mut watcher = sqlx::PgConnection::connect_with(&connect).await.unwrap();

    // The same key on the same wallet: the batch waits for the wallet, then
    // finds the key applied and answers that item from its record.
    let gate = Gate::close(&connect, 42).await;
    let single = debit_in_background(&app, k, b, "same");
    wait_for(&mut watcher, lock_waiters(), 1).await;
    let items = json!({"items": [debit("own-1", a, "2.00"), debit("same", b, "1.00")]});
    let batch = batch_in_background(&app, k, "batch-1", &items);
    wait_for(&mut watcher, lock_waiters(), 2).await;
    gate.open().await;
    assert_eq!(single.await.unwrap(), StatusCode::CREATED);
    let (status, body) = batch.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["items"][1]["replayed"], true, "{body}");
    assert_eq!(app.balance(k, a).await, "8.00");
    assert_eq!(app.balance(k, b).await, "9.00", "the shared key applied once");

    // The same key on another wallet: the batch found it unused, reaches
    // its row while the other request holds it, and answers 409 (retry)
    // when that request commits; nothing of the batch is applied.
    let gate = Gate::close(&connect, 42).await;
    let single = debit_in_background(&app, k, c, "other");
    wait_for(&mut watcher, lock_waiters(), 1).await;
    let items = json!({"items": [debit("own-2", a, "2.00"), debit("other", b, "1.00")]});
    let batch = batch_in_background(&app, k, "batch-2", &items);
    wait_for(&mut watcher, lock_waiters(), 2).await;
    gate.open().await;
    assert_eq!(single.await.unwrap(), StatusCode::CREATED);
    let (status, body) = batch.await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "idempotency_key_in_use");
    assert_eq!(
        (
            app.balance(k, a).await,
            app.balance(k, b).await,
            app.balance(k, c).await
        ),
        ("8.00".into(), "9.00".into(), "9.00".into())
    );
    // Retried, the item's key is another request's: refused, still once.
    let r = app.batch(k, "batch-2", items).await;
    assert_ne!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        (
            app.balance(k, a).await,
            app.balance(k, b).await,
            app.balance(k, c).await
        ),
        ("8.00".into(), "9.00".into(), "9.00".into())
    );
}
