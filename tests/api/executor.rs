//! The executor as every later module will use it: what "the same request"
//! means, what is stored, what a replay repeats, and how waiting requests
//! and cleanup share the database with everyone else.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{
    Connection, PgConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use uuid::Uuid;

use crate::helpers::*;

impl TestApp {
    pub async fn post_raw(&self, key: &str, path: &str, idem: &str, body: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .header("Idempotency-Key", idem)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }
}

#[sqlx::test]
async fn whitespace_and_key_order_do_not_change_the_request_but_values_do(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "10").await;
    let path = format!("/v1/wallets/{w}/debit");

    let first = app
        .post_raw(&shop.key, &path, "k", r#"{"amount": "1", "category": "usage"}"#)
        .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = first.bytes().await.unwrap();
    for same in [
        r#"{"amount":"1","category":"usage"}"#,
        "{\n  \"category\" : \"usage\",\n  \"amount\" : \"1\"\n}",
    ] {
        let r = app.post_raw(&shop.key, &path, "k", same).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{same}");
        assert_eq!(r.headers()["idempotent-replayed"], "true");
        assert_eq!(r.bytes().await.unwrap(), first, "replayed byte for byte");
    }
    for different in [
        r#"{"amount":"1.00","category":"usage"}"#,
        r#"{"amount":"1","category":"fee"}"#,
        r#"{"amount":"1","category":"usage","description":"x"}"#,
    ] {
        let r = app.post_raw(&shop.key, &path, "k", different).await;
        problem(r, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
    }
    // A repeated field is refused, not settled by whichever comes last.
    let r = app
        .post_raw(
            &shop.key,
            &path,
            &fresh(),
            r#"{"amount":"1","amount":"1000","category":"usage"}"#,
        )
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    // A conditional request is another request.
    let r = app
        .client
        .post(app.url(&path))
        .bearer_auth(&shop.key)
        .header("Idempotency-Key", "k")
        .header("If-Match", "\"1\"")
        .json(&json!({"amount": "1", "category": "usage"}))
        .send()
        .await
        .unwrap();
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
    assert_eq!(app.balance(&shop.key, w).await, "9.00");
}

#[sqlx::test]
async fn a_validation_failure_found_while_executing_is_not_stored(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "10").await;
    let path = format!("/v1/wallets/{w}/debit");

    // Only the wallet knows its currency has two decimals.
    let r = app
        .post(
            &shop.key,
            &path,
            "fix-me",
            &json!({"amount": "1.234", "category": "usage"}),
        )
        .await;
    let body = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert!(body["errors"]["amount"].is_array(), "{body}");
    assert_eq!(
        app.count("SELECT count(*) FROM idempotency_keys WHERE key = 'fix-me'")
            .await,
        0,
        "nothing stored under the key"
    );

    let corrected = json!({"amount": "1.23", "category": "usage"});
    let r = app.post(&shop.key, &path, "fix-me", &corrected).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let r = app.post(&shop.key, &path, "fix-me", &corrected).await;
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(app.balance(&shop.key, w).await, "8.77", "debited once");
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'wallet.debit'")
            .await,
        1
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn an_expired_keys_earlier_movement_is_a_replay_audited_once(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "10").await;
    let path = format!("/v1/wallets/{w}/debit");
    let body = json!({"amount": "2", "category": "usage"});
    let first = app.post(&shop.key, &path, "monthly", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = first.bytes().await.unwrap();

    for _ in 0..2 {
        sqlx::query(
            "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'monthly'",
        )
        .execute(&app.pool)
        .await
        .unwrap();
        let r = app.post(&shop.key, &path, "monthly", &body).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["idempotent-replayed"], "true");
        assert_eq!(r.bytes().await.unwrap(), first);
    }
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'wallet.debit'")
            .await,
        1,
        "one audit row for one movement"
    );
    assert_eq!(app.balance(&shop.key, w).await, "8.00");
}

#[sqlx::test]
async fn a_replay_repeats_status_headers_and_body(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let body = json!({"customer_ref": "c", "currency": "EUR"});
    let first = app.post(&shop.key, "/v1/wallets", "new-wallet", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let location = first.headers()["location"].clone();
    let created: Value = first.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/wallets/{}", created["id"].as_str().unwrap()).as_str()
    );

    let replay = app.post(&shop.key, "/v1/wallets", "new-wallet", &body).await;
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.headers()["location"], location);
    assert_eq!(replay.headers()["content-type"], "application/json");
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), created);

    // A stored rejection replays as problem+json.
    let missing = format!("/v1/wallets/{}/debit", Uuid::now_v7());
    let debit = json!({"amount": "1", "category": "usage"});
    problem(
        app.post(&shop.key, &missing, "nowhere", &debit).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let r = app.post(&shop.key, &missing, "nowhere", &debit).await;
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    problem(r, StatusCode::NOT_FOUND, "not_found").await;
}

#[sqlx::test]
async fn admin_cleanup_commits_batch_by_batch(_: PgPoolOptions, connect: PgConnectOptions) {
    let mut config = serve_config();
    config.idempotency.cleanup_batch = 10;
    let app = spawn_app_with(connect.clone(), config, Duration::from_secs(30)).await;
    let shop = app.shop().await;
    // A backlog of 55 expired keys, oldest first, and one more that stalls
    // the run in its last batch until this test lets it go.
    sqlx::query(
        "INSERT INTO idempotency_keys (shop_id, key, fingerprint, response_status, expires_at)
         SELECT $1, 'old-' || i, '\\x00', 201, now() - interval '1 hour' + i * interval '1 second'
           FROM generate_series(0, 54) i",
    )
    .bind(shop.id)
    .execute(&app.pool)
    .await
    .unwrap();
    inject(
        &app.pool,
        &[
            "INSERT INTO idempotency_keys (shop_id, key, fingerprint, response_status, expires_at)
         VALUES (gen_random_uuid(), 'stall', '\\x00', 201, now() - interval '1 second')",
            "CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN OLD; END $$",
            "CREATE TRIGGER stall BEFORE DELETE ON idempotency_keys FOR EACH ROW
             WHEN (OLD.key = 'stall') EXECUTE FUNCTION stall()",
        ],
    )
    .await;
    let gate = Gate::close(&connect, 4242).await;

    let cleanup = async {
        app.client
            .post(app.url("/v1/admin/idempotency/cleanup"))
            .bearer_auth(ADMIN_KEY)
            .header("Idempotency-Key", "sweep")
            .send()
            .await
            .unwrap()
    };
    let meanwhile = async {
        let mut watcher = PgConnection::connect_with(&connect).await.unwrap();
        wait_for(&mut watcher, lock_waiters(), 1).await;
        // The run is stalled in its last batch; the first batches are
        // committed, so a request reusing one of their keys runs at once.
        let r = app
            .post(
                &shop.key,
                "/v1/wallets",
                "old-0",
                &json!({"customer_ref": "c", "currency": "USD"}),
            )
            .await;
        let status = r.status();
        gate.open().await;
        status
    };
    let (swept, reused) = tokio::join!(cleanup, meanwhile);
    assert_eq!(reused, StatusCode::CREATED, "not blocked by the running cleanup");
    assert_eq!(swept.status(), StatusCode::OK);
    let swept: Value = swept.json().await.unwrap();
    assert_eq!(swept["rows_deleted"], 56);
    assert_eq!(
        app.count("SELECT count(*) FROM idempotency_keys WHERE expires_at <= now()")
            .await,
        0
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_log
              WHERE action = 'idempotency.cleanup' AND api_key_id IS NULL
                AND substr(shop_id::text, 15, 1) = '5' AND shop_id NOT IN (SELECT id FROM shops)"
        )
        .await,
        1,
        "platform actions are audited under a platform scope (a version-5 UUID), not a shop"
    );
}

#[sqlx::test]
async fn identical_requests_waiting_on_a_key_do_not_starve_the_pool(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let mut db = db_config(connect.clone(), Duration::from_secs(20));
    db.pool_size = 16;
    db.statement_timeout = Duration::from_secs(25);
    db.idle_in_transaction_timeout = Duration::from_secs(25);
    let app = spawn_app_db(serve_config(), db).await;
    let shop = app.shop().await;
    let held = app.wallet(&shop.key, "USD", "100").await;
    let other = app.wallet(&shop.key, "USD", "100").await;

    // Hold the wallet row, so the first debit on it stays in flight.
    let mut holder = PgConnection::connect_with(&connect).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    lock_wallet(&mut holder, held).await;

    let path = format!("/v1/wallets/{held}/debit");
    let body = json!({"amount": "1", "category": "usage"});
    let burst = join_all((0..64).map(|_| {
        let (app, key, path, body) = (&app, &shop.key, &path, &body);
        async move {
            let r = app.post(key, path, "same-intent", body).await;
            let replayed = r.headers().contains_key("idempotent-replayed");
            (r.status(), replayed)
        }
    }));
    let unrelated = async {
        let mut watcher = PgConnection::connect_with(&connect).await.unwrap();
        wait_for(&mut watcher, lock_waiters(), 1).await;
        let r = app
            .post(
                &shop.key,
                &format!("/v1/wallets/{other}/debit"),
                "unrelated",
                &body,
            )
            .await;
        let status = r.status();
        // Only now is the held debit let go.
        sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
        status
    };
    let (answers, unrelated) = tokio::join!(burst, unrelated);
    assert_eq!(unrelated, StatusCode::CREATED, "served while the burst waits");
    let fresh = answers
        .iter()
        .filter(|a| **a == (StatusCode::CREATED, false))
        .count();
    let replays = answers
        .iter()
        .filter(|a| **a == (StatusCode::CREATED, true))
        .count();
    let in_use = answers.iter().filter(|(s, _)| *s == StatusCode::CONFLICT).count();
    assert_eq!(fresh, 1, "one run: {answers:?}");
    assert_eq!(
        fresh + replays + in_use,
        64,
        "only the run, its replays and 409 in_use, never a 503: {answers:?}"
    );
    assert_eq!(app.balance(&shop.key, held).await, "99.00");
    assert_eq!(app.balance(&shop.key, other).await, "99.00");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn metadata_is_bounded_and_flat(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "10").await;
    let path = format!("/v1/wallets/{w}/credit");
    let credit = |metadata: Value| json!({"amount": "1", "category": "grant", "metadata": metadata});
    for (metadata, field) in [
        (json!({"tier": {"level": "gold"}}), "metadata.tier"),
        (json!({"tags": ["a", "b"]}), "metadata.tags"),
        (json!({"count": 3}), "metadata.count"),
        (json!({"k": "v".repeat(501)}), "metadata"),
        (json!({"k".repeat(41): "v"}), "metadata"),
        (json!({"": "v"}), "metadata"),
        (
            Value::Object((0..51).map(|i| (format!("k{i}"), json!("v"))).collect()),
            "metadata",
        ),
    ] {
        let r = app
            .post(&shop.key, &path, &fresh(), &credit(metadata.clone()))
            .await;
        let body = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert!(body["errors"][field].is_array(), "{metadata} -> {body}");
    }
    let long_value = "v".repeat(500);
    let ok = json!({"order": "A-1", "k".repeat(40): long_value});
    let r = app.post(&shop.key, &path, &fresh(), &credit(ok.clone())).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["metadata"], ok);
    let r = app
        .post(
            &shop.key,
            &path,
            &fresh(),
            &json!({"amount": "1", "category": "grant", "description": "d".repeat(501)}),
        )
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(app.balance(&shop.key, w).await, "11.00");
}

#[sqlx::test]
async fn every_tenant_key_starts_with_shop_id(pool_opts: PgPoolOptions, connect: PgConnectOptions) {
    let pool = pool_opts.connect_with(connect).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT attrelid) FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid AND c.relkind = 'r'
           JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
          WHERE a.attname = 'shop_id' AND NOT a.attisdropped",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(tables >= 7, "the check covers the tenant tables ({tables})");
    // Primary, unique and foreign keys (and unique indexes) of every table
    // with a shop_id column, whose first column is not shop_id; but for the
    // reference tables (a copy on every Citus node), which are found by
    // something else than their shop (an API key's prefix).
    let reference = billing_ledger::citus::planned("reference");
    let offenders: Vec<String> = sqlx::query_scalar(
        "WITH tenant AS (
             SELECT a.attrelid AS rel, a.attnum AS shop_col
               FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid AND c.relkind = 'r'
               JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
              WHERE a.attname = 'shop_id' AND NOT a.attisdropped AND c.relname <> ALL($1))
         SELECT con.conrelid::regclass || '.' || con.conname
           FROM pg_constraint con JOIN tenant t ON t.rel = con.conrelid
          WHERE con.contype IN ('p', 'u', 'f') AND con.conkey[1] <> t.shop_col
         UNION ALL
         SELECT i.indexrelid::regclass::text
           FROM pg_index i JOIN tenant t ON t.rel = i.indrelid
          WHERE i.indisunique AND i.indkey[0] <> t.shop_col",
    )
    .bind(&reference)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        offenders.is_empty(),
        "keys without a leading shop_id: {offenders:?}"
    );
}

/// `billing-ledger citus distribute` places every table: a migration that
/// adds a table without naming it in sql/citus/distribute.sql fails here,
/// on a single server, before it reaches a cluster.
#[sqlx::test]
async fn every_table_is_distributed_by_shop_or_a_reference_table(
    pool_opts: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let pool = pool_opts.connect_with(connect).await.unwrap();
    let reference = billing_ledger::citus::planned("reference");
    let distributed = billing_ledger::citus::planned("distributed");
    assert!(reference.contains(&"shops") && distributed.contains(&"wallets"));
    let tables: Vec<(String, bool)> = sqlx::query_as(
        "SELECT c.relname::text, EXISTS (SELECT 1 FROM pg_attribute a
                                          WHERE a.attrelid = c.oid AND a.attname = 'shop_id' AND NOT a.attisdropped)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
          WHERE c.relkind IN ('r', 'p') AND c.relname <> '_sqlx_migrations'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut unplaced = Vec::new();
    for (table, has_shop) in &tables {
        let placed = if distributed.contains(&table.as_str()) {
            *has_shop
        } else {
            reference.contains(&table.as_str())
        };
        if !placed {
            unplaced.push(table.clone());
        }
    }
    assert!(
        unplaced.is_empty(),
        "tables distribute.sql does not place: {unplaced:?}"
    );
    let names: Vec<&str> = tables.iter().map(|(t, _)| t.as_str()).collect();
    let stale: Vec<_> = reference
        .iter()
        .chain(&distributed)
        .filter(|t| !names.contains(t))
        .collect();
    assert!(
        stale.is_empty(),
        "distribute.sql names tables the schema lacks: {stale:?}"
    );
}

#[sqlx::test]
async fn every_currency_fits_the_money_columns(pool_opts: PgPoolOptions, connect: PgConnectOptions) {
    let pool = pool_opts.connect_with(connect).await.unwrap();
    let columns: Vec<(String, String, i32, i32)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, numeric_precision, numeric_scale
           FROM information_schema.columns
          WHERE table_schema = 'public' AND data_type = 'numeric'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(columns.len() >= 6, "{columns:?}");
    let widest = billing_ledger::money::Currency::all()
        .map(|c| c.exponent())
        .max()
        .unwrap();
    let digits = billing_ledger::money::MAX_INTEGER_DIGITS as i32;
    for (table, column, precision, scale) in columns {
        assert!(
            scale >= widest as i32,
            "{table}.{column} keeps {scale} decimals; a currency has {widest}"
        );
        assert!(
            precision - scale > digits,
            "{table}.{column} has room for sums of {digits}-digit amounts"
        );
    }
}

#[sqlx::test]
async fn abandoned_work_cannot_keep_rows_locked(_: PgPoolOptions, connect: PgConnectOptions) {
    let mut db = db_config(connect.clone(), Duration::from_secs(5));
    db.statement_timeout = Duration::from_secs(2);
    db.idle_in_transaction_timeout = Duration::from_secs(1);
    let pool = billing_ledger::app::pool(&db);
    let app = spawn_app_db(serve_config(), db).await;
    let shop = app.shop().await;
    let w = app.wallet(&shop.key, "USD", "10").await;

    // A request whose client vanished mid-transaction: its session sits idle
    // holding the wallet row until PostgreSQL ends it.
    let mut abandoned = pool.begin().await.unwrap();
    lock_wallet(&mut abandoned, w).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = app
        .post(
            &shop.key,
            &format!("/v1/wallets/{w}/debit"),
            &fresh(),
            &json!({"amount": "1", "category": "usage"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED, "the row was released");
    assert!(abandoned.commit().await.is_err(), "the idle session was ended");

    // A runaway statement is cancelled.
    let err = sqlx::query("SELECT pg_sleep(5)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(err.as_database_error().unwrap().code().as_deref(), Some("57014"));
}

#[sqlx::test]
async fn a_transaction_cancelled_while_it_begins_leaves_no_session_inside_it(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    use futures_util::FutureExt;
    use sqlx::Connection;
    // One connection, so every use after a cancelled begin gets the same
    // session, and no ping before handing it out, so the first poll of a
    // begin sends BEGIN on it; a second connection watches its state.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(connect.clone())
        .await
        .unwrap();
    let mut watcher = sqlx::PgConnection::connect_with(&connect).await.unwrap();
    for round in 0..20 {
        // Polled once (BEGIN goes out), then dropped, as a request is when
        // its client hangs up.
        let polled = billing_ledger::store::begin(&pool).now_or_never();
        assert!(polled.is_none(), "{:?}", polled.map(|r| r.map(|_| ())));
        // Held while it is looked at: whatever the cancelled begin left
        // running has given the session back, and nothing else takes it.
        let mut session = pool.acquire().await.unwrap();
        let after = session_state(&mut session, &mut watcher).await;
        assert_eq!(
            after, "idle",
            "round {round}: the session was left inside a transaction"
        );
    }
    // And a transaction begun to the end is one.
    let mut tx = billing_ledger::store::begin(&pool).await.unwrap();
    let during = session_state(&mut tx, &mut watcher).await;
    assert_eq!(during, "idle in transaction");
    tx.rollback().await.unwrap();
}

/// A session's state (`idle`, `idle in transaction`, …) as another sees it.
async fn session_state(session: &mut sqlx::PgConnection, watcher: &mut sqlx::PgConnection) -> String {
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *session)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT state FROM pg_stat_activity WHERE pid = $1")
        .bind(pid)
        .fetch_one(watcher)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_key_held_by_another_instance_is_409_and_a_held_wallet_is_503(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    // Two instances over one database. The first waits as long as it
    // needs; the second gives up on any lock after 300 ms. Both the key and
    // the wallet are locked by the claiming statement, so the executor must
    // tell which lock ran out.
    let a = spawn_app_with(connect.clone(), serve_config(), Duration::from_secs(20)).await;
    let b = spawn_app_with(connect.clone(), serve_config(), Duration::from_millis(300)).await;
    let shop = a.shop().await;
    let w = a.wallet(&shop.key, "USD", "10").await;
    let path = format!("/v1/wallets/{w}/debit");
    let body = json!({"amount": "1", "category": "usage"});
    inject(
        &a.pool,
        &[
            "CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_xact_lock(42); RETURN NEW; END $$",
            "CREATE TRIGGER gate BEFORE INSERT ON wallet_transactions FOR EACH ROW EXECUTE FUNCTION gate()",
        ],
    )
    .await;
    let gate = Gate::close(&connect, 42).await;
    let first = tokio::spawn({
        let (client, url, key, body) = (a.client.clone(), a.url(&path), shop.key.clone(), body.clone());
        async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", "held")
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status(), r.bytes().await.unwrap())
        }
    });
    // The first request holds its key and the wallet, waiting at the gate.
    let mut watcher = PgConnection::connect_with(&connect).await.unwrap();
    wait_for(&mut watcher, lock_waiters(), 1).await;

    let r = b.post(&shop.key, &path, "held", &body).await;
    assert_eq!(r.headers()["retry-after"], "1");
    problem(r, StatusCode::CONFLICT, "idempotency_key_in_use").await;
    let r = b.post(&shop.key, &path, "other", &body).await;
    problem(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert_eq!(
        a.count("SELECT count(*) FROM idempotency_keys WHERE key = 'other'")
            .await,
        0,
        "a lock timeout is not the key's outcome"
    );

    gate.open().await;
    let (status, first) = first.await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
    let r = b.post(&shop.key, &path, "held", &body).await;
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.bytes().await.unwrap(), first);
    let r = b.post(&shop.key, &path, "other", &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(!r.headers().contains_key("idempotent-replayed"));
    assert_eq!(a.balance(&shop.key, w).await, "8.00");
    a.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn the_stored_answer_is_what_was_written(_: PgPoolOptions, connect: PgConnectOptions) {
    // Debits and transfers store their answer in the statement that writes
    // the movement, built before it: it must agree with the rows.
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let from = app.wallet(&shop.key, "EUR", "10.5").await;
    let to = app.wallet(&shop.key, "EUR", "0").await;
    let r = app
        .post(
            &shop.key,
            &format!("/v1/wallets/{from}/debit"),
            "d",
            &json!({"amount": "0.25", "category": "fee"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let debit: Value = r.json().await.unwrap();
    let row: (String, chrono::DateTime<chrono::Utc>, String) = sqlx::query_as(
        "SELECT t.balance_after::text, t.created_at, w.balance::text
           FROM wallet_transactions t JOIN wallets w ON w.shop_id = t.shop_id AND w.id = t.wallet_id
          WHERE t.id = $1",
    )
    .bind(debit["id"].as_str().unwrap().parse::<Uuid>().unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(debit["balance_after"], "10.25");
    assert_eq!(row.0, "10.2500");
    assert_eq!(row.2, "10.2500");
    let answered: chrono::DateTime<chrono::Utc> = debit["created_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(answered, row.1);

    let r = app
        .post(
            &shop.key,
            "/v1/transfers",
            "t",
            &json!({"from_wallet_id": from, "to_wallet_id": to, "amount": "3"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let transfer: Value = r.json().await.unwrap();
    assert_eq!(transfer["debit"]["balance_after"], "7.25");
    assert_eq!(transfer["credit"]["balance_after"], "3.00");
    let stored: Vec<u8> = sqlx::query_scalar("SELECT response_body FROM idempotency_keys WHERE key = 't'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&stored).unwrap(), transfer);
    let audited = app
        .count("SELECT count(*) FROM audit_log WHERE action IN ('wallet.debit', 'wallet.transfer')")
        .await;
    assert_eq!(audited, 2);
    assert_eq!(app.balance(&shop.key, to).await, "3.00");
    app.assert_ledger_consistent().await;
}
