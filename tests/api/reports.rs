//! Reconciliation: seeded activity of every kind reconciles; CSV carries
//! the JSON's figures; a balance changed behind the service's back is
//! flagged on exactly that wallet and makes the CLI exit 1.

use std::{process::Command, time::Duration};

use chrono::NaiveDate;

use billing_ledger::{config::WebhookConfig, tenants::Role, webhooks};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::{browser::Browser, helpers::*, process::database_url};

impl TestApp {
    async fn ok(&self, key: &str, path: &str, body: Value) -> Value {
        let r = self.post(key, path, &fresh(), &body).await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn open_invoice_of(&self, key: &str, total: &str) -> String {
        let inv = self
            .ok(
                key,
                "/v1/invoices",
                json!({"customer_ref": "c", "currency": "USD",
                "lines": [{"description": "x", "quantity": "1", "unit_amount": total}]}),
            )
            .await;
        let id = inv["id"].as_str().unwrap().to_owned();
        self.ok(key, &format!("/v1/invoices/{id}/finalize"), json!({}))
            .await;
        id
    }

    /// Yesterday and today (UTC): all seeded activity, even across midnight.
    async fn report(&self, key: &str) -> Value {
        let r = self
            .get(key, &format!("/v1/reports/reconciliation?{}", period()))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }
}

fn period() -> String {
    let today = chrono::Utc::now().date_naive();
    format!("from={}&to={today}", today - chrono::Duration::days(1))
}

/// A wallet's line of a report (JSON).
fn wallet_line(report: &Value, wallet: Uuid) -> &Value {
    report["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["wallet_id"] == wallet.to_string())
        .unwrap_or_else(|| panic!("no line for wallet {wallet}: {report}"))
}

/// The command line's reconciliation of `shop` for yesterday and today, in
/// `format`; the caller sets the database URLs.
fn report_cli(shop: Uuid, format: &str) -> Command {
    let today = chrono::Utc::now().date_naive();
    let mut cli = Command::new(env!("CARGO_BIN_EXE_billing-ledger"));
    cli.args(["report", "reconciliation", "--shop", &shop.to_string()])
        .args(["--from", &(today - chrono::Duration::days(1)).to_string()])
        .args(["--to", &today.to_string(), "--format", format]);
    cli
}

/// Every kind of activity, all today.
async fn seed(app: &TestApp, shop: &Shop) -> (Uuid, Uuid) {
    let k = &shop.key;
    let a = app.wallet(k, "USD", "100.00").await;
    let b = app.wallet(k, "USD", "0").await;
    app.ok(
        k,
        &format!("/v1/wallets/{b}/credit"),
        json!({"amount": "2.00", "category": "grant"}),
    )
    .await;
    app.ok(
        k,
        &format!("/v1/wallets/{a}/debit"),
        json!({"amount": "10.00", "category": "usage"}),
    )
    .await;
    app.ok(
        k,
        "/v1/transfers",
        json!({"from_wallet_id": a, "to_wallet_id": b, "amount": "5.00"}),
    )
    .await;
    let hold = app
        .ok(
            k,
            &format!("/v1/wallets/{a}/reservations"),
            json!({"amount": "3.00"}),
        )
        .await;
    let hold = hold["id"].as_str().unwrap();
    app.ok(
        k,
        &format!("/v1/reservations/{hold}/capture"),
        json!({"amount": "2.00"}),
    )
    .await;
    app.ok(
        k,
        &format!("/v1/wallets/{a}/reservations"),
        json!({"amount": "1.00"}),
    )
    .await;
    app.ok(
        k,
        &format!("/v1/wallets/{a}/reservations"),
        json!({"amount": "1.50", "expires_in_seconds": 1}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        billing_ledger::jobs::expire_reservations(&app.pool, 100)
            .await
            .unwrap(),
        1
    );
    let by_wallet = app.open_invoice_of(k, "7.00").await;
    app.ok(
        k,
        &format!("/v1/invoices/{by_wallet}/pay"),
        json!({"method": "wallet", "wallet_id": a}),
    )
    .await;
    let external = app.open_invoice_of(k, "20.00").await;
    app.ok(
        k,
        &format!("/v1/invoices/{external}/pay"),
        json!({"method": "card", "amount": "8.00"}),
    )
    .await;
    let voided = app.open_invoice_of(k, "4.00").await;
    app.ok(k, &format!("/v1/invoices/{voided}/void"), json!({})).await;
    // A provider payment through the webhook worker.
    let hooked = app.open_invoice_of(k, "6.00").await;
    let secret = app
        .ok(k, "/v1/webhook-secrets", json!({"provider": "acme"}))
        .await;
    let body = serde_json::to_vec(&json!({"id": "evt_r", "type": "payment.succeeded", "created": 1,
        "data": {"invoice_id": hooked, "amount": "6.00", "currency": "USD", "payment_ref": "pay_r"}}))
    .unwrap();
    let sig = webhooks::signature::sign(
        secret["secret"].as_str().unwrap(),
        chrono::Utc::now().timestamp(),
        &body,
    );
    let r = app
        .client
        .post(app.url(&format!("/v1/webhooks/acme/{}", shop.id)))
        .header("Webhook-Signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, stop) = tokio::sync::watch::channel(false);
    webhooks::worker::round(&app.pool, &app.state.executor, &WebhookConfig::default(), &stop)
        .await
        .unwrap();
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_events WHERE status = 'processed'")
            .await,
        1
    );
    (a, b)
}

#[sqlx::test]
async fn seeded_activity_reconciles_and_csv_carries_the_same_figures(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect.clone()).await;
    let shop = app.shop().await;
    let (a, b) = seed(&app, &shop).await;
    let finance = app.key(&shop, Role::Finance).await;
    let report = app.report(&finance).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["failed_checks"], json!([]));
    assert_eq!(report["provisional"], true, "today has not ended");
    let wallets = report["wallets"].as_array().unwrap();
    assert_eq!(wallets.len(), 2);
    let line = |id: Uuid| wallet_line(&report, id).clone();
    // A: +100 −10 −5 −2 (capture) −7 (invoice) = 76; B: +2 +5 = 7.
    let (la, lb) = (line(a), line(b));
    assert_eq!(
        (
            la["opening_balance"].as_str(),
            la["credits"].as_str(),
            la["debits"].as_str(),
            la["closing_balance"].as_str()
        ),
        (Some("0.00"), Some("100.00"), Some("24.00"), Some("76.00"))
    );
    assert_eq!(
        (lb["credits"].as_str(), lb["closing_balance"].as_str()),
        (Some("7.00"), Some("7.00"))
    );
    for w in [&la, &lb] {
        assert_eq!(w["drift"], "0.00");
        assert_eq!(w["journal_balance"], w["stored_balance"]);
    }
    let holds = &report["reservations"][0];
    assert_eq!(
        (
            holds["active"].as_i64(),
            holds["held"].as_str(),
            holds["wallets_reserved"].as_str()
        ),
        (Some(1), Some("1.00"), Some("1.00"))
    );
    let inv = &report["invoices"][0];
    assert_eq!(
        (
            inv["issued"].as_i64(),
            inv["paid"].as_i64(),
            inv["voided"].as_i64(),
            inv["outstanding"].as_i64()
        ),
        (Some(4), Some(2), Some(1), Some(1))
    );
    assert_eq!(
        (inv["outstanding_total"].as_str(), inv["receivables"].as_str()),
        (Some("12.00"), Some("12.00"))
    );
    assert_eq!(report["payments"]["ok"], true);
    let tb = &report["trial_balance"][0];
    assert_eq!(
        (
            tb["currency"].as_str(),
            tb["total"].as_str(),
            tb["balanced"].as_bool()
        ),
        (Some("USD"), Some("0.00"), Some(true))
    );

    // CSV: the same figures, a row per wallet and per check.
    let today = chrono::Utc::now().date_naive();
    let csv = app
        .client
        .get(app.url(&format!("/v1/reports/reconciliation?{}", period())))
        .bearer_auth(&finance)
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], billing_ledger::reports::csv::HEADER);
    // Every figure column of a wallet's row is the JSON field of its name.
    for w in wallets {
        let row = rows
            .iter()
            .find(|r| r[1] == w["wallet_id"].as_str().unwrap())
            .unwrap();
        for (i, f) in rows[0].iter().enumerate().skip(4).take(7) {
            assert_eq!(row[i], w[*f].as_str().unwrap(), "{f}");
        }
    }
    assert!(
        rows.iter()
            .any(|r| r[0] == "check" && r[1] == "report" && r[11] == "true")
    );

    // Another shop sees none of it; a bad period is a 422.
    let other = app.shop().await;
    assert_eq!(app.report(&other.key).await["wallets"], json!([]));
    let r = app
        .get(
            &finance,
            "/v1/reports/reconciliation?from=2026-02-02&to=2026-02-01",
        )
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let tb: Value = app
        .get(&finance, &format!("/v1/reports/trial-balance?as_of={today}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tb["currencies"][0]["balanced"], true);
}

#[sqlx::test]
async fn a_balance_changed_behind_the_books_is_flagged_on_that_wallet(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect.clone()).await;
    let shop = app.shop().await;
    let (a, b) = seed(&app, &shop).await;
    let cli = |format: &str| {
        report_cli(shop.id, format)
            .env("DATABASE_URL", database_url(&connect))
            .output()
            .unwrap()
    };
    let healthy = cli("table");
    assert_eq!(
        healthy.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&healthy.stdout)
    );
    assert!(String::from_utf8_lossy(&healthy.stdout).contains("all checks passed"));
    // Not a terminal: no progress bar, nothing on stderr.
    assert!(
        healthy.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&healthy.stderr)
    );

    sqlx::query("UPDATE wallets SET balance = balance + 1.25 WHERE id = $1")
        .bind(a)
        .execute(&app.pool)
        .await
        .unwrap();
    let report = app.report(&shop.key).await;
    assert_eq!(report["ok"], false);
    // The balance moved without its grants too.
    assert_eq!(report["failed_checks"], json!(["wallet_drift", "grants"]));
    assert_eq!(report["grants"]["wallets_not_matching_grants"], json!([a]));
    for w in report["wallets"].as_array().unwrap() {
        if w["wallet_id"] == a.to_string() {
            assert_eq!(
                (w["ok"].as_bool(), w["drift"].as_str()),
                (Some(false), Some("1.25"))
            );
        } else {
            assert_eq!(w["wallet_id"], b.to_string());
            assert_eq!(w["ok"], true);
        }
    }
    let failed = cli("json");
    assert_eq!(failed.status.code(), Some(1));
    let printed: Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(printed["failed_checks"], json!(["wallet_drift", "grants"]));
}

/// Balanced journal transactions of `amount` (external_payments → revenue)
/// dated `days_ago` days back, written as the service writes them.
async fn backdated(app: &TestApp, shop: Uuid, days_ago: i32, amount: &str) {
    sqlx::raw_sql(&format!(
        "BEGIN;
         INSERT INTO journal_transactions (shop_id, id, kind, created_at)
              VALUES ('{shop}', gen_random_uuid(), 'test', now() - interval '{days_ago} days');
         INSERT INTO journal_entries (shop_id, journal_transaction_id, line, account, currency, amount)
              SELECT shop_id, id, 1, 'external_payments', 'USD', -{amount} FROM journal_transactions
               WHERE shop_id = '{shop}' AND kind = 'test' AND NOT EXISTS
                     (SELECT 1 FROM journal_entries e WHERE e.shop_id = '{shop}' AND e.journal_transaction_id = journal_transactions.id);
         INSERT INTO journal_entries (shop_id, journal_transaction_id, line, account, currency, amount)
              SELECT e.shop_id, e.journal_transaction_id, 2, 'revenue', 'USD', {amount} FROM journal_entries e
               WHERE e.shop_id = '{shop}' AND e.line = 1 AND e.account = 'external_payments' AND NOT EXISTS
                     (SELECT 1 FROM journal_entries x WHERE x.shop_id = '{shop}' AND x.journal_transaction_id = e.journal_transaction_id AND x.line = 2);
         COMMIT;"
    ))
    .execute(&app.pool)
    .await
    .unwrap();
}

#[sqlx::test]
async fn trial_balances_from_daily_rollups_equal_the_raw_journal(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    // A wallet whose top-up is booked 3 days ago, and one more today.
    let wallet = app.wallet(&shop.key, "USD", "5.00").await;
    // The journal is append-only; replica mode skips that trigger (on the
    // workers too, on Citus, where the setting is propagated). The new times
    // are values: Citus computes no column-dependent time in an UPDATE.
    let mut tx = app.pool.begin().await.unwrap();
    sqlx::raw_sql(
        "SET LOCAL citus.propagate_set_commands = 'local';
         SET LOCAL session_replication_role = replica;",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let booked: Vec<(Uuid, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT id, created_at FROM journal_transactions WHERE shop_id = $1")
            .bind(shop.id)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    for (id, at) in booked {
        sqlx::query("UPDATE journal_transactions SET created_at = $3 WHERE shop_id = $1 AND id = $2")
            .bind(shop.id)
            .bind(id)
            .bind(at - chrono::Duration::days(3))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let journal_balance = || {
        let app = &app;
        let key = shop.key.clone();
        async move {
            let report = app.report(&key).await;
            let line = wallet_line(&report, wallet);
            assert_eq!(line["drift"], "0.00", "{line}");
            line["journal_balance"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(journal_balance().await, "5.00");
    for (days_ago, amount) in [(5, "10.00"), (3, "2.50"), (3, "1.25"), (1, "4.00"), (0, "8.00")] {
        backdated(&app, shop.id, days_ago, amount).await;
    }
    let revenue_as_of = |day: chrono::NaiveDate| {
        let app = &app;
        let key = shop.key.clone();
        async move {
            let tb: Value = app
                .get(&key, &format!("/v1/reports/trial-balance?as_of={day}"))
                .await
                .json()
                .await
                .unwrap();
            let usd = &tb["currencies"][0];
            assert_eq!(usd["balanced"], true);
            usd["accounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["account"] == "revenue")
                .map(|a| a["balance"].as_str().unwrap().to_owned())
        }
    };
    let today = chrono::Utc::now().date_naive();
    let before = [
        revenue_as_of(today - chrono::Duration::days(4)).await,
        revenue_as_of(today - chrono::Duration::days(2)).await,
        revenue_as_of(today).await,
    ];
    // Two instances rolling up at once: each closed day once.
    let (a, b) = tokio::join!(
        billing_ledger::reports::rollup(&app.pool),
        billing_ledger::reports::rollup(&app.pool)
    );
    let rolled = a.unwrap() + b.unwrap();
    // Days 5 ago through yesterday (through the day before, just after
    // midnight, while yesterday is not closed yet).
    assert!(rolled >= 4, "closed days rolled: {rolled}");
    assert_eq!(
        billing_ledger::reports::rollup(&app.pool).await.unwrap(),
        0,
        "nothing left to roll"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM (SELECT 1 FROM journal_daily_totals GROUP BY shop_id, day, currency, account HAVING count(*) > 1) d")
            .await,
        0
    );
    let after = [
        revenue_as_of(today - chrono::Duration::days(4)).await,
        revenue_as_of(today - chrono::Duration::days(2)).await,
        revenue_as_of(today).await,
    ];
    assert_eq!(before, after, "roll-ups plus entries since equal the raw journal");
    // The wallet's journal balance: its rolled balance plus today's entries.
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM journal_wallet_balances WHERE wallet_id = '{wallet}' AND balance = 5"
        ))
        .await,
        1
    );
    app.ok(
        &shop.key,
        &format!("/v1/wallets/{wallet}/credit"),
        json!({"amount": "2.00", "category": "top_up"}),
    )
    .await;
    assert_eq!(journal_balance().await, "7.00");
    assert_eq!(
        after.map(|x| x.unwrap()),
        ["10.00".to_owned(), "13.75".into(), "25.75".into()]
    );
}

#[sqlx::test]
async fn report_queries_use_their_indexes(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    app.wallet(&shop.key, "USD", "5.00").await;
    let mut conn = app.pool.acquire().await.unwrap();
    // Tiny tables favour sequential scans; with them off, the plan shows
    // which index serves each part.
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let today = chrono::Utc::now();
    let explain = |sql: &str| format!("EXPLAIN {sql}");
    let rolled = Some(today.date_naive() - chrono::Duration::days(2));
    let wallets: Vec<String> = sqlx::query_scalar(&explain(include_str!("../../sql/reports/wallets.sql")))
        .bind(shop.id)
        .bind(today - chrono::Duration::days(1))
        .bind(today)
        .bind(None::<String>)
        .bind(rolled)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let plan = wallets.join("\n");
    assert!(plan.contains("wallet_transactions_wallet_time"), "{plan}");
    assert!(plan.contains("journal_wallet_balances_pkey"), "{plan}");
    // The entries since the last rolled day: a range of the shop's journal
    // by time, then each transaction's entries by primary key.
    assert!(plan.contains("journal_transactions_shop_time"), "{plan}");
    assert!(plan.contains("journal_entries_pkey"), "{plan}");
    let invoices: Vec<String> = sqlx::query_scalar(&explain(include_str!("../../sql/reports/invoices.sql")))
        .bind(shop.id)
        .bind(today - chrono::Duration::days(1))
        .bind(today)
        .bind(None::<String>)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let plan = invoices.join("\n");
    for index in [
        "invoices_finalized",
        "invoices_paid",
        "invoices_voided",
        "invoices_open",
    ] {
        assert!(plan.contains(index), "{index}: {plan}");
    }
    let payments: Vec<String> = sqlx::query_scalar(&explain(include_str!("../../sql/reports/payments.sql")))
        .bind(shop.id)
        .bind(today - chrono::Duration::days(1))
        .bind(today)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let plan = payments.join("\n");
    assert!(plan.contains("invoice_payments_shop_time"), "{plan}");
    // Money that flowed back: the shop's refunds by their partial index,
    // never its whole history of movements.
    for (name, sql) in [
        ("refunds", include_str!("../../sql/reports/refunds.sql")),
        (
            "refund_checks",
            include_str!("../../sql/reports/refund_checks.sql"),
        ),
    ] {
        let text = explain(sql);
        let mut query = sqlx::query_scalar::<_, String>(&text)
            .bind(shop.id)
            .bind(today - chrono::Duration::days(1))
            .bind(today);
        if name == "refunds" {
            query = query.bind(None::<String>);
        }
        let plan = query.fetch_all(&mut *conn).await.unwrap().join("\n");
        assert!(plan.contains("wallet_transactions_refund_of"), "{name}: {plan}");
        assert!(
            !plan.contains("wallet_transactions_wallet_time"),
            "{name}: {plan}"
        );
    }
    let trial: Vec<String> =
        sqlx::query_scalar(&explain(include_str!("../../sql/reports/trial_balance.sql")))
            .bind(shop.id)
            .bind(today)
            .bind(None::<String>)
            .bind(rolled)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    let plan = trial.join("\n");
    assert!(plan.contains("journal_daily_totals_pkey"), "{plan}");
    // The entries since the last rolled day: a range of the shop's journal
    // by time, then each transaction's entries by primary key.
    assert!(plan.contains("journal_transactions_shop_time"), "{plan}");
}

/// A streaming replica of the private cluster (scripts/replica.sh), stopped
/// and removed when dropped.
struct Replica {
    dir: String,
    port: u16,
}

impl Replica {
    fn start(primary_url: &str) -> Replica {
        let out = Command::new("scripts/replica.sh")
            .args(["start", primary_url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "replica.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = String::from_utf8(out.stdout).unwrap();
        let (dir, port) = out.trim().split_once(' ').unwrap();
        Replica {
            dir: dir.to_owned(),
            port: port.parse().unwrap(),
        }
    }

    fn stop(&mut self) {
        if !self.dir.is_empty() {
            let _ = Command::new("scripts/replica.sh")
                .args(["stop", &self.dir])
                .output();
            self.dir.clear();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop();
    }
}

#[sqlx::test]
async fn reports_read_a_streaming_replica_and_say_how_far_behind_it_is(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    if citus() {
        // A replica of a coordinator holds no shards: on Citus, reports read
        // secondary nodes instead (docs/scale-out.md), not this setup.
        return;
    }
    let primary = spawn_app(connect.clone()).await;
    let shop = primary.shop().await;
    let finance = primary.key(&shop, Role::Finance).await;
    let wallet = primary.wallet(&shop.key, "USD", "5.00").await;
    let primary_url = database_url(&connect);
    let mut replica = {
        let url = primary_url.clone();
        tokio::task::spawn_blocking(move || Replica::start(&url))
            .await
            .unwrap()
    };
    let replica_options = connect.clone().port(replica.port);
    // The replica serves reports; everything else stays on the primary.
    let mut state = primary.state.clone();
    state.reports_pool = billing_ledger::app::reports_pool(&billing_ledger::config::DatabaseConfig {
        reports_connect_options: Some(replica_options),
        acquire_timeout: Duration::from_secs(2),
        ..db_config(connect.clone(), Duration::from_secs(5))
    })
    .unwrap();
    let app = serve_state(state, serve_config()).await;
    let replica_pool = app.state.reports_pool.clone();

    // Waits until the replica has replayed everything the primary has
    // written so far, by WAL position (no sleeping on a guess).
    let replayed = || {
        let (primary, replica) = (primary.pool.clone(), replica_pool.clone());
        async move {
            let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
                .fetch_one(&primary)
                .await
                .unwrap();
            for _ in 0..600 {
                let done: bool = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
                    .bind(&lsn)
                    .fetch_one(&replica)
                    .await
                    .unwrap();
                if done {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the replica did not replay {lsn} within a minute");
        }
    };
    let balance = |report: &Value| wallet_line(report, wallet)["stored_balance"].clone();

    replayed().await;
    let report = app.report(&finance).await;
    assert_eq!(report["read_from"], "replica", "{report}");
    assert!(
        report["replica_lag_ms"].as_i64().is_some_and(|ms| ms >= 0),
        "{report}"
    );
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(balance(&report), "5.00");
    let tb: Value = app
        .get(
            &finance,
            &format!(
                "/v1/reports/trial-balance?as_of={}",
                chrono::Utc::now().date_naive()
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tb["read_from"], "replica", "{tb}");
    // The page, on the replica-backed service, says where it read and how
    // far behind that was.
    let (url, key) = (app.url("/reports/reconciliation"), finance.clone());
    let today = chrono::Utc::now().date_naive();
    let said = tokio::task::spawn_blocking(move || {
        let mut b = Browser::open(&tempdir("replica-page"));
        b.goto(&url);
        run_report(&mut b, &key, today - chrono::Duration::days(1), today);
        b.eval("document.getElementById('status').textContent + ' | ' + document.getElementById('heading').textContent")
    })
    .await
    .unwrap();
    let said = said.as_str().unwrap();
    assert!(
        said.contains("read from a replica ") && said.contains(" ms behind"),
        "{said}"
    );
    assert!(
        said.contains("provisional"),
        "today's report is provisional: {said}"
    );

    // A write on the primary: the replica shows it once replayed.
    primary
        .ok(
            &shop.key,
            &format!("/v1/wallets/{wallet}/credit"),
            json!({"amount": "2.00", "category": "top_up"}),
        )
        .await;
    replayed().await;
    let report = app.report(&finance).await;
    assert_eq!(balance(&report), "7.00", "{report}");
    assert_eq!(report["ok"], true, "{report}");
    // The primary's own report says it read the primary.
    assert_eq!(primary.report(&finance).await["read_from"], "primary");

    // The command line reads REPORTS_DATABASE_URL when set.
    let replica_url = {
        let (server, db) = primary_url.rsplit_once('/').unwrap();
        let (server, _) = server.rsplit_once(':').unwrap();
        format!("{server}:{}/{db}", replica.port)
    };
    let cli = {
        let (shop, primary_url, replica_url) = (shop.id, primary_url.clone(), replica_url.clone());
        move || {
            report_cli(shop, "json")
                .env("DATABASE_URL", &primary_url)
                .env("REPORTS_DATABASE_URL", &replica_url)
                .output()
                .unwrap()
        }
    };
    let out = tokio::task::spawn_blocking(cli.clone()).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["read_from"], "replica");
    assert_eq!(balance(&json), "7.00");

    // The replica down: 503, never the primary's or stale figures unsaid.
    tokio::task::spawn_blocking(move || replica.stop()).await.unwrap();
    let r = app
        .get(&finance, &format!("/v1/reports/reconciliation?{}", period()))
        .await;
    problem(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let out = tokio::task::spawn_blocking(cli).await.unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// What the page shows with a figure of the report: `[JSON pointer, text]`
/// for every element that carries one.
const FIGURES: &str =
    "[...document.querySelectorAll('[data-json]')].map(e => [e.dataset.json, e.textContent])";

/// Every figure the page shows equals the report's JSON at its pointer, and
/// every section shows some.
fn figures_match(shown: &Value, report: &Value) {
    let shown = shown.as_array().unwrap();
    for pair in shown {
        let (path, text) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        let want = report
            .pointer(path)
            .unwrap_or_else(|| panic!("{path} is not in the report"));
        let want = want
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| want.to_string());
        assert_eq!(text, want, "{path}");
    }
    for section in [
        "/wallets/",
        "/daily/",
        "/reservations/",
        "/invoices/",
        "/payments/",
        "/refunds/summary/",
        "/grants/summary/",
        "/recurring/",
        "/trial_balance/",
    ] {
        assert!(
            shown.iter().any(|p| p[0].as_str().unwrap().starts_with(section)),
            "the page shows {section}"
        );
    }
}

/// Runs the report in the page as a user would: the key typed into its
/// field, the period set, Enter pressed.
fn run_report(b: &mut Browser, key: &str, from: NaiveDate, to: NaiveDate) {
    b.eval("document.getElementById('key').value = ''; document.getElementById('key').focus()");
    b.type_text(key);
    b.eval(&format!(
        "document.getElementById('from').value = '{from}'; document.getElementById('to').value = '{to}'; \
         document.body.dataset.state = ''"
    ));
    b.press_enter();
    b.wait_for("document.body.dataset.state === 'rendered'");
}

fn target_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target")
}

#[sqlx::test]
async fn the_report_page_shows_every_section_leads_to_failing_rows_and_exports(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let (a, b) = seed(&app, &shop).await;
    // Refunds, a credit note, an expired grant and a billed recurring
    // contract beside seed()'s holds, invoices and payments.
    let debit = app
        .ok(
            k,
            &format!("/v1/wallets/{a}/debit"),
            json!({"amount": "4.00", "category": "purchase"}),
        )
        .await;
    app.ok(
        k,
        &format!(
            "/v1/wallets/{a}/transactions/{}/refund",
            debit["id"].as_str().unwrap()
        ),
        json!({"amount": "1.50"}),
    )
    .await;
    // More movements than the page loads at once (50).
    for _ in 0..45 {
        app.ok(
            k,
            &format!("/v1/wallets/{a}/debit"),
            json!({"amount": "0.01", "category": "usage"}),
        )
        .await;
    }
    let invoice = app.open_invoice_of(k, "30.00").await;
    app.ok(
        k,
        &format!("/v1/invoices/{invoice}/pay"),
        json!({"method": "card", "amount": "10.00"}),
    )
    .await;
    let payments: Value = app
        .get(k, &format!("/v1/invoices/{invoice}/payments"))
        .await
        .json()
        .await
        .unwrap();
    let payment = payments["data"][0]["id"].as_str().unwrap();
    app.ok(
        k,
        &format!("/v1/invoices/{invoice}/payments/{payment}/refund"),
        json!({"amount": "1.00", "external_ref": "re_page"}),
    )
    .await;
    app.ok(
        k,
        &format!("/v1/invoices/{invoice}/credit-notes"),
        json!({"amount": "2.00", "reason": "goodwill"}),
    )
    .await;
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    app.ok(
        k,
        &format!("/v1/wallets/{b}/credit"),
        json!({"amount": "1.00", "category": "grant", "expires_at": soon}),
    )
    .await;
    let today = chrono::Utc::now().date_naive();
    let contract = app
        .ok(
            k,
            "/v1/contracts",
            json!({"customer_ref": "c", "title": "Plan", "currency": "USD", "amount": "3.00",
                   "billing_interval": "monthly", "collection": "wallet", "wallet_id": a,
                   "starts_on": today.checked_sub_months(chrono::Months::new(1)).unwrap()}),
        )
        .await;
    let contract = contract["id"].as_str().unwrap();
    for (action, tag) in [("submit", "\"1\""), ("approve", "\"2\"")] {
        let path = format!("/v1/contracts/{contract}/{action}");
        let r = app
            .call(reqwest::Method::POST, k, &path, &fresh(), Some(tag), json!({}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        billing_ledger::jobs::expire_grants(&app.pool, 100).await.unwrap(),
        1
    );
    let billing = billing_ledger::config::BillingConfig::default();
    billing_ledger::jobs::bill_contracts_once(&app.pool, &app.state.executor, &billing, None)
        .await
        .unwrap();

    let finance = app.key(&shop, Role::Finance).await;
    let ok = app.report(&finance).await;
    assert_eq!(ok["failed_checks"], json!([]), "{ok}");
    assert!(ok["refunds"]["summary"][0]["credit_notes"].as_i64().unwrap() >= 1);
    assert_eq!(ok["grants"]["summary"][0]["expired"], "1.00");
    let csv = app
        .client
        .get(app.url(&format!("/v1/reports/reconciliation?{}", period())))
        .bearer_auth(&finance)
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let (from, to) = (today - chrono::Duration::days(1), today);
    let window = format!(
        "created_after={from}T00:00:00Z&created_before={}T00:00:00Z&limit=100",
        to + chrono::Duration::days(1)
    );
    let movements: Value = app
        .get(&finance, &format!("/v1/wallets/{a}/transactions?{window}"))
        .await
        .json()
        .await
        .unwrap();
    let movement_ids: Vec<Value> = movements["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    assert!(movement_ids.len() > 50, "{movements}");

    let page = app
        .client
        .get(app.url("/reports/reconciliation"))
        .send()
        .await
        .unwrap();
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no third-party asset"
    );

    let downloads = tempdir("report-downloads");
    let url = app.url("/reports/reconciliation");
    let shop_id = shop.id;
    let key = finance.clone();
    let mut browser = tokio::task::spawn_blocking(move || {
        let mut b = Browser::open(&downloads);
        b.goto(&url);
        run_report(&mut b, &key, from, to);
        figures_match(&b.eval(FIGURES), &ok);
        assert_eq!(b.eval("document.querySelectorAll('#checks li.pass[data-check]').length"), json!(8));
        // Every day of the period is drawn, the quiet ones at zero.
        assert_eq!(b.eval("document.querySelectorAll('#chart svg g[data-day]').length"), json!(2));
        assert!(b.eval("document.querySelector('#chart svg').getAttribute('role')") == json!("img"));
        let quiet = b.eval(&format!(
            "[...document.querySelectorAll('table.chart-data tr[data-day=\"{from}\"] td')].map(t => t.textContent)"
        ));
        if !ok["daily"].as_array().unwrap().iter().any(|d| d["day"] == json!(from.to_string())) {
            assert_eq!(quiet, json!([from.to_string(), "0.00", "0.00", "0.00"]));
        }
        // The key stays in the page.
        let key_seen = format!(
            "location.href.includes('{key}') || localStorage.length + sessionStorage.length > 0 \
             || document.cookie !== ''"
        );
        assert_eq!(b.eval(&key_seen), json!(false));

        // A wallet's movements in the period, as the API pages them.
        b.eval(&format!(
            "document.querySelector('tr[data-wallet=\"{a}\"] button.movements-toggle').click()"
        ));
        b.wait_for(&format!(
            "document.getElementById('movements-{a}')?.dataset.state === 'loaded'"
        ));
        let rows = format!("document.querySelectorAll('#movements-{a} tr[data-movement]').length");
        assert_eq!(b.eval(&rows), json!(50), "the first page");
        b.eval(&format!("document.querySelector('#movements-{a} button.more').click()"));
        b.wait_for(&format!("{rows} === {}", movement_ids.len()));
        assert_eq!(
            b.eval(&format!("!!document.querySelector('#movements-{a} button.more')")),
            json!(false),
            "no page after the last"
        );
        let shown = b.eval(&format!(
            "[...document.querySelectorAll('#movements-{a} tr[data-movement]')].map(r => r.dataset.movement)"
        ));
        assert_eq!(shown, json!(movement_ids));
        let refunded = b.eval(&format!(
            "document.querySelector('#movements-{a} tr[data-movement=\"{}\"]').cells[5].textContent",
            debit["id"].as_str().unwrap()
        ));
        assert_eq!(refunded, json!("1.50"));

        // Download CSV: the API's bytes, named after shop and period.
        b.eval("document.getElementById('download').click()");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let file = loop {
            let done = std::fs::read_dir(&downloads)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "csv"));
            if let Some(f) = done {
                break f;
            }
            assert!(std::time::Instant::now() < deadline, "no CSV downloaded");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(
            file.file_name().unwrap().to_str().unwrap(),
            format!("reconciliation-{shop_id}-{from}-to-{to}.csv")
        );
        assert_eq!(std::fs::read(&file).unwrap(), csv, "the download is the API's CSV");

        // The print layout: no form or buttons, a page per section.
        b.media("print");
        let print = b.eval(
            "[getComputedStyle(document.getElementById('params')).display, \
              getComputedStyle(document.getElementById('actions')).display, \
              getComputedStyle(document.getElementById('section-holds')).breakBefore, \
              getComputedStyle(document.querySelector('table.chart-data')).position]",
        );
        assert_eq!(print, json!(["none", "none", "page", "static"]));
        b.pdf(&target_dir().join("report-page-ok.pdf"));
        b.media("screen");
        b.screenshot(&target_dir().join("report-page-ok.png"));
        b
    })
    .await
    .unwrap();

    // Damage behind the service's back: a drifting wallet and a hold the
    // expiry job left past its expiry.
    sqlx::query("UPDATE wallets SET balance = balance - 0.50 WHERE id = $1")
        .bind(b)
        .execute(&app.pool)
        .await
        .unwrap();
    let hold: Uuid = sqlx::query_scalar(
        "UPDATE credit_reservations SET expires_at = now() - interval '10 minutes'
          WHERE id = (SELECT id FROM credit_reservations WHERE status = 'active' AND shop_id = $1 LIMIT 1)
         RETURNING id",
    )
    .bind(shop.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let failing = app.report(&finance).await;
    // The drift also leaves wallet b's grants apart from its balance.
    assert_eq!(
        failing["failed_checks"],
        json!(["wallet_drift", "reservations_held", "grants"])
    );
    tokio::task::spawn_blocking(move || {
        run_report(&mut browser, &finance, from, to);
        figures_match(&browser.eval(FIGURES), &failing);
        let (wallet, hold) = (b.to_string(), hold.to_string());
        for (check, anchor, reached, wanted) in [
            ("wallet_drift", format!("#wallet-{b}"), "document.querySelector(':target')?.dataset.wallet", &wallet),
            ("reservations_held", format!("#hold-{hold}"), "document.querySelector(':target')?.textContent", &hold),
            ("grants", format!("#grant-wallet-{b}"), "document.querySelector(':target')?.textContent", &wallet),
        ] {
            let links = browser.eval(&format!(
                "[...document.querySelectorAll('#checks li.fail[data-check=\"{check}\"] a.row-link')].map(a => a.getAttribute('href'))"
            ));
            assert!(links.as_array().unwrap().contains(&json!(anchor)), "{check}: {links}");
            browser.eval(&format!(
                "document.querySelector('#checks li[data-check=\"{check}\"] a.row-link[href=\"{anchor}\"]').click()"
            ));
            assert_eq!(browser.eval(reached), json!(wanted), "{check}'s link reaches its row");
        }
        assert_eq!(
            browser.eval(&format!("document.querySelector('tr[data-wallet=\"{b}\"]').className")),
            json!("drift")
        );
        browser.screenshot(&target_dir().join("report-page-failing.png"));
        browser.media("print");
        browser.pdf(&target_dir().join("report-page-failing.pdf"));
        for shot in ["report-page-ok.png", "report-page-failing.png", "report-page-ok.pdf"] {
            assert!(
                std::fs::metadata(target_dir().join(shot)).unwrap().len() > 10_000,
                "{shot} holds the rendered page"
            );
        }
    })
    .await
    .unwrap();
}

#[sqlx::test]
async fn opposite_transfers_racing_on_two_wallets_reconcile(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect.clone()).await;
    let shop = app.shop().await;
    let (a, b) = (
        app.wallet(&shop.key, "USD", "500.00").await,
        app.wallet(&shop.key, "USD", "500.00").await,
    );
    // 24 clients, half each way, each waiting on the other's wallet lock.
    let runs = (0..24).map(|i| {
        let (app, key) = (&app, &shop.key);
        let (from, to) = if i % 2 == 0 { (a, b) } else { (b, a) };
        async move {
            for _ in 0..8 {
                let r = app
                    .post(
                        key,
                        "/v1/transfers",
                        &fresh(),
                        &json!({"from_wallet_id": from, "to_wallet_id": to, "amount": "1.00"}),
                    )
                    .await;
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        }
    });
    futures_util::future::join_all(runs).await;
    // One order: a later version never carries an earlier time.
    assert_eq!(
        app.count(
            "SELECT count(*) FROM wallet_transactions t JOIN wallet_transactions p
                ON p.shop_id = t.shop_id AND p.wallet_id = t.wallet_id
               AND p.wallet_version < t.wallet_version AND p.created_at > t.created_at"
        )
        .await,
        0
    );
    let report = app.report(&shop.key).await;
    assert_eq!(report["ok"], true, "{report}");
    for w in [a, b] {
        let line = wallet_line(&report, w);
        assert_eq!(line["closing_balance"], line["stored_balance"], "{line}");
        assert_eq!(line["drift"], "0.00");
    }
    let out = report_cli(shop.id, "table")
        .env("DATABASE_URL", database_url(&connect))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn the_cli_refuses_bad_input_like_the_api(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect.clone()).await;
    let shop = app.shop().await;
    let url = database_url(&connect);
    let run = |cli: &mut Command| cli.env("DATABASE_URL", &url).output().unwrap();
    let lower = run(report_cli(shop.id, "table").args(["--currency", "usd"]));
    assert_eq!(lower.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&lower.stderr).contains("currency"));
    assert!(!String::from_utf8_lossy(&lower.stdout).contains("all checks passed"));
    let api = app
        .get(
            &shop.key,
            &format!("/v1/reports/reconciliation?{}&currency=usd", period()),
        )
        .await;
    problem(api, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    let nobody = run(&mut report_cli(Uuid::now_v7(), "json"));
    assert_eq!(nobody.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("no shop"));
    assert!(nobody.stdout.is_empty());

    let year = run(report_cli(shop.id, "json").args(["--to", "+12026-01-01"]));
    assert_eq!(year.status.code(), Some(2));

    // A setting that parses but contradicts another exits 2 too.
    let serve = run(Command::new(env!("CARGO_BIN_EXE_billing-ledger"))
        .arg("serve")
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("STATEMENT_TIMEOUT", "40s")
        .env("REQUEST_TIMEOUT", "30s"));
    assert_eq!(
        serve.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&serve.stderr)
    );
    assert!(String::from_utf8_lossy(&serve.stderr).contains("STATEMENT_TIMEOUT"));
}

#[sqlx::test(migrations = false)]
async fn seed_demo_refuses_a_database_with_pending_migrations(_: PgPoolOptions, connect: PgConnectOptions) {
    let out = Command::new(env!("CARGO_BIN_EXE_billing-ledger"))
        .args(["shops", "seed-demo"])
        .env("DATABASE_URL", database_url(&connect))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("migrate"));
    assert!(out.stdout.is_empty());
}

/// A fresh directory of its own under the system's temporary directory.
fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
