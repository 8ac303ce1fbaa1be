//! Recurring billing: every period of an approved monthly or yearly
//! contract invoiced once, by jobs that run at the same time and die
//! midway; the month-end rule; wallet collection with dunning; immediate
//! cancellation's prorated credit note.

use std::time::Duration;

use billing_ledger::{config::BillingConfig, config::Schedule, executor::Executor, jobs};
use chrono::{Datelike, Months, NaiveDate, Utc};
use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::*;

fn config(dunning: &[u64]) -> BillingConfig {
    BillingConfig {
        billing_interval: Duration::from_secs(60),
        dunning_retries: Schedule(dunning.iter().map(|s| Duration::from_secs(*s)).collect()),
    }
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

impl TestApp {
    /// An approved recurring contract; its id.
    async fn recurring(&self, key: &str, body: Value) -> String {
        let mut body = body;
        for (k, v) in [
            ("customer_ref", json!("cust-7")),
            ("title", json!("Support plan")),
            ("currency", json!("USD")),
        ] {
            body.as_object_mut().unwrap().entry(k).or_insert(v);
        }
        let a = self
            .call(Method::POST, key, "/v1/contracts", &fresh(), None, body)
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        let id = a.body["id"].as_str().unwrap().to_owned();
        for (action, tag) in [("submit", "\"1\""), ("approve", "\"2\"")] {
            let path = format!("/v1/contracts/{id}/{action}");
            let a = self
                .call(Method::POST, key, &path, &fresh(), Some(tag), json!({}))
                .await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        }
        id
    }

    async fn bill(&self, config: &BillingConfig) -> jobs::BillingRun {
        jobs::bill_contracts_once(&self.pool, &self.state.executor, config, None)
            .await
            .unwrap()
    }

    async fn periods(&self, key: &str, id: &str) -> Vec<Value> {
        let r = self
            .get(key, &format!("/v1/contracts/{id}/periods?limit=100"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let page: Value = r.json().await.unwrap();
        page["data"].as_array().unwrap().clone()
    }

    async fn json_of(&self, key: &str, path: &str) -> Value {
        let r = self.get(key, path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.json().await.unwrap()
    }
}

#[sqlx::test]
async fn every_elapsed_period_is_billed_once_by_racing_jobs_one_killed(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    // Started five months ago: periods 0..=5 have started, six invoices each.
    let starts_on = today().checked_sub_months(Months::new(5)).unwrap();
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(
            app.recurring(
                k,
                json!({"amount": "10.00", "billing_interval": "monthly", "starts_on": starts_on}),
            )
            .await,
        );
    }
    let cfg = config(&[]);
    let executor = || Executor::new(app.pool.clone(), 24, Duration::from_secs(5), 8);
    // One job killed after it started, two running to the end at once.
    let killed = tokio::spawn({
        let (pool, cfg, ex) = (app.pool.clone(), cfg.clone(), executor());
        async move { jobs::bill_contracts_once(&pool, &ex, &cfg, None).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    killed.abort();
    let (a, b) = (executor(), executor());
    let runs = join_all([
        jobs::bill_contracts_once(&app.pool, &a, &cfg, None),
        jobs::bill_contracts_once(&app.pool, &b, &cfg, None),
    ])
    .await;
    let billed: u64 = runs.into_iter().map(|r| r.unwrap().periods_billed).sum();
    // Whatever the killed one committed, the rest was billed by the two.
    let leftover = app.bill(&cfg).await.periods_billed;
    assert!(billed + leftover <= 48, "billed {billed} + {leftover}");

    let expected: Vec<String> = (0..6)
        .map(|m| starts_on.checked_add_months(Months::new(m)).unwrap().to_string())
        .collect();
    for id in &ids {
        let periods = app.periods(k, id).await;
        let starts: Vec<&str> = periods
            .iter()
            .map(|p| p["period_start"].as_str().unwrap())
            .collect();
        assert_eq!(starts, expected, "contract {id}");
        let seqs: Vec<i64> = periods.iter().map(|p| p["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs, (0..6).collect::<Vec<_>>());
        let contract = app.json_of(k, &format!("/v1/contracts/{id}")).await;
        assert_eq!(contract["periods_billed"], 6);
        assert_eq!(
            contract["next_period_on"],
            starts_on.checked_add_months(Months::new(6)).unwrap().to_string()
        );
    }
    let of_shop = format!("shop_id = '{}'", shop.id);
    assert_eq!(
        app.count(&format!("SELECT count(*) FROM invoices WHERE {of_shop}"))
            .await,
        48
    );
    // Numbered without gaps: 1..=48.
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM invoices WHERE {of_shop} AND number BETWEEN 1 AND 48 AND status = 'open'"
        ))
        .await,
        48
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(DISTINCT number) FROM invoices WHERE {of_shop}"
        ))
        .await,
        48
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM events WHERE {of_shop} AND type = 'invoice.finalized'"
        ))
        .await,
        48,
        "one event per billed period"
    );
    // Later runs bill nothing more.
    assert_eq!(app.bill(&cfg).await.periods_billed, 0);
}

#[sqlx::test]
async fn month_end_anchors_follow_the_rule_and_ends_on_closes_a_period(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    // The latest 31st, at least two months back, of a month followed by a
    // shorter one: its next period starts on that month's last day, the
    // one after on the 31st again.
    let last_day = |y: i32, m: u32| {
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        NaiveDate::from_ymd_opt(ny, nm, 1).unwrap().pred_opt().unwrap()
    };
    let next_month = |d: NaiveDate| {
        if d.month() == 12 {
            (d.year() + 1, 1)
        } else {
            (d.year(), d.month() + 1)
        }
    };
    let d = (62..=360)
        .map(|back| today() - chrono::Duration::days(back))
        .find(|c| {
            let (y, m) = next_month(*c);
            c.day() == 31 && last_day(y, m).day() < 31
        })
        .unwrap();
    let (y1, m1) = next_month(d);
    let e1 = last_day(y1, m1);
    let (y2, m2) = next_month(e1);
    let e2 = NaiveDate::from_ymd_opt(y2, m2, 31).unwrap();
    let (y3, m3) = next_month(e2);
    let e3 = last_day(y3, m3);
    let day_before = |x: NaiveDate| x.pred_opt().unwrap().to_string();

    let bad = app
        .call(
            Method::POST,
            k,
            "/v1/contracts",
            &fresh(),
            None,
            json!({"customer_ref": "c", "title": "t", "currency": "USD", "amount": "5.00",
                            "billing_interval": "monthly", "starts_on": d, "ends_on": e2}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    let why = bad.body["errors"]["ends_on"].to_string();
    assert!(
        why.contains(&day_before(e2)) && why.contains(&day_before(e3)),
        "{why}"
    );
    let old = app
        .call(
            Method::POST,
            k,
            "/v1/contracts",
            &fresh(),
            None,
            json!({"customer_ref": "c", "title": "t", "currency": "USD", "amount": "5.00",
                            "billing_interval": "monthly",
                            "starts_on": today() - chrono::Duration::days(400)}),
        )
        .await;
    assert_eq!(old.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", old.body);
    assert!(old.body["errors"]["starts_on"].is_array(), "{}", old.body);

    let id = app
        .recurring(
            k,
            json!({"amount": "5.00", "billing_interval": "monthly", "starts_on": d,
                   "ends_on": day_before(e2)}),
        )
        .await;
    assert_eq!(app.bill(&config(&[])).await.periods_billed, 2);
    let periods = app.periods(k, &id).await;
    let spans: Vec<(String, String)> = periods
        .iter()
        .map(|p| {
            (
                p["period_start"].as_str().unwrap().to_owned(),
                p["period_end"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let show = |x: NaiveDate| x.to_string();
    assert_eq!(spans, [(show(d), show(e1)), (show(e1), show(e2))]);
    let invoice = app
        .json_of(
            k,
            &format!("/v1/invoices/{}", periods[1]["invoice_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(
        invoice["lines"][0]["description"],
        format!("Support plan ({e1} to {})", day_before(e2))
    );
    assert_eq!(invoice["metadata"]["contract_id"], id.as_str());
    assert_eq!(invoice["status"], "open");
    let contract = app.json_of(k, &format!("/v1/contracts/{id}")).await;
    assert_eq!(
        contract["next_period_on"],
        Value::Null,
        "the last period is billed"
    );
    assert_eq!(app.bill(&config(&[])).await.periods_billed, 0);
}

#[sqlx::test]
async fn wallet_collection_pays_when_it_can_and_dunning_retries_once_each(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let wallet = app.wallet(k, "USD", "250.00").await;
    let starts_on = today().checked_sub_months(Months::new(3)).unwrap();
    let id = app
        .recurring(
            k,
            json!({"amount": "100.00", "billing_interval": "monthly", "starts_on": starts_on,
                   "collection": "wallet", "wallet_id": wallet}),
        )
        .await;
    let cfg = config(&[60, 60]);
    assert_eq!(app.bill(&cfg).await.periods_billed, 4);
    let periods = app.periods(k, &id).await;
    let statuses: Vec<&str> = periods
        .iter()
        .map(|p| p["invoice_status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["paid", "paid", "open", "open"]);
    assert!(periods[2]["next_payment_at"].is_string());
    let balance = |w: Value| w["balance"].as_str().unwrap().to_owned();
    assert_eq!(
        balance(app.json_of(k, &format!("/v1/wallets/{wallet}")).await),
        "50.00"
    );
    let of_shop = format!("shop_id = '{}'", shop.id);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM events WHERE {of_shop} AND type = 'invoice.payment_failed'"
        ))
        .await,
        2
    );

    // Not due yet: nothing retried.
    assert_eq!(app.bill(&cfg).await.payments_retried, 0);
    // Topped up, the retries come due: each open invoice paid once.
    let r = app
        .post(
            k,
            &format!("/v1/wallets/{wallet}/credit"),
            &fresh(),
            &json!({"amount": "150.00", "category": "top_up"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let due = format!(
        "UPDATE contract_periods SET next_payment_at = now() WHERE {of_shop} AND next_payment_at IS NOT NULL"
    );
    sqlx::query(&due).execute(&app.pool).await.unwrap();
    let retried: u64 = join_all([app.bill(&cfg), app.bill(&cfg)])
        .await
        .iter()
        .map(|r| r.payments_retried)
        .sum();
    assert_eq!(retried, 2, "two retries, by either job");
    let periods = app.periods(k, &id).await;
    assert!(
        periods.iter().all(|p| p["invoice_status"] == "paid"),
        "{periods:?}"
    );
    assert_eq!(periods[2]["payment_attempts"], 2);
    assert_eq!(
        balance(app.json_of(k, &format!("/v1/wallets/{wallet}")).await),
        "0.00"
    );
    assert_eq!(
        app.count(&format!("SELECT count(*) FROM invoice_payments WHERE {of_shop}"))
            .await,
        4,
        "one payment per invoice"
    );

    // Retries spent: the invoice stays open and the contract is past due;
    // once the shop settles it the job approves the contract again.
    let empty = app.wallet(k, "USD", "0").await;
    let late = app
        .recurring(
            k,
            json!({"amount": "20.00", "billing_interval": "monthly", "starts_on": today(),
                   "collection": "wallet", "wallet_id": empty}),
        )
        .await;
    let cfg = config(&[60]);
    app.bill(&cfg).await;
    sqlx::query(&due).execute(&app.pool).await.unwrap();
    assert_eq!(app.bill(&cfg).await.payments_retried, 1);
    let contract = app.json_of(k, &format!("/v1/contracts/{late}")).await;
    assert_eq!(contract["status"], "past_due", "{contract}");
    let period = &app.periods(k, &late).await[0];
    assert_eq!(period["payment_attempts"], 2);
    assert_eq!(period["next_payment_at"], Value::Null);
    let r = app
        .post(
            k,
            &format!("/v1/wallets/{empty}/credit"),
            &fresh(),
            &json!({"amount": "20.00", "category": "top_up"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .post(
            k,
            &format!("/v1/invoices/{}/pay", period["invoice_id"].as_str().unwrap()),
            &fresh(),
            &json!({"method": "wallet", "wallet_id": empty}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(app.bill(&cfg).await.contracts_recovered, 1);
    let contract = app.json_of(k, &format!("/v1/contracts/{late}")).await;
    assert_eq!(contract["status"], "approved");
}

/// `amount` × unused ÷ days in cents, rounded half-up, by integers.
fn prorated_cents(cents: i64, unused: i64, days: i64) -> i64 {
    (2 * cents * unused + days) / (2 * days)
}

#[sqlx::test]
async fn immediate_cancellation_credits_the_unused_days_and_at_period_end_bills_no_more(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let wallet = app.wallet(k, "USD", "100.00").await;
    let starts_on = today() - chrono::Duration::days(10);
    let id = app
        .recurring(
            k,
            json!({"amount": "30.00", "billing_interval": "monthly", "starts_on": starts_on,
                   "collection": "wallet", "wallet_id": wallet}),
        )
        .await;
    app.bill(&config(&[])).await;
    let period = app.periods(k, &id).await[0].clone();
    assert_eq!(period["invoice_status"], "paid");
    let start: NaiveDate = period["period_start"].as_str().unwrap().parse().unwrap();
    let end: NaiveDate = period["period_end"].as_str().unwrap().parse().unwrap();
    let expected = prorated_cents(3000, (end - today()).num_days(), (end - start).num_days());

    let contract = app.json_of(k, &format!("/v1/contracts/{id}")).await;
    let tag = format!("\"{}\"", contract["version"]);
    let r = app
        .call(
            Method::POST,
            k,
            &format!("/v1/contracts/{id}/cancel"),
            &fresh(),
            Some(&tag),
            json!({"at_period_end": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(r.body["cancel_mode"], "immediately");
    let invoice = app
        .json_of(
            k,
            &format!("/v1/invoices/{}", period["invoice_id"].as_str().unwrap()),
        )
        .await;
    let notes = invoice["credit_notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{invoice}");
    let cents = |s: &Value| -> i64 { s.as_str().unwrap().replace('.', "").parse().unwrap() };
    assert_eq!(cents(&notes[0]["amount"]), expected);
    // Paid from the wallet, refunded to it.
    let w = app.json_of(k, &format!("/v1/wallets/{wallet}")).await;
    assert_eq!(cents(&w["balance"]), 10000 - 3000 + expected);

    // Cancelled at period end: the billed periods stay, no later one is.
    let other = app
        .recurring(
            k,
            json!({"amount": "30.00", "billing_interval": "monthly",
                   "starts_on": today().checked_sub_months(Months::new(1)).unwrap()}),
        )
        .await;
    assert_eq!(app.bill(&config(&[])).await.periods_billed, 2);
    let r = app
        .call(
            Method::POST,
            k,
            &format!("/v1/contracts/{other}/cancel"),
            &fresh(),
            Some("\"3\""),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["cancel_mode"], "at_period_end");
    assert_eq!(r.body["next_period_on"], Value::Null);
    let billed = app.periods(k, &other).await;
    assert_eq!(billed.len(), 2);
    assert!(billed.iter().all(|p| p["invoice_status"] == "open"), "{billed:?}");
    assert_eq!(app.bill(&config(&[])).await.periods_billed, 0);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM credit_notes WHERE shop_id = '{}'",
            shop.id
        ))
        .await,
        1,
        "no credit for a cancellation at period end"
    );
}

#[sqlx::test]
async fn the_billing_loop_bills_at_start_beats_on_full_health_and_stops(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let id = app
        .recurring(
            k,
            json!({"amount": "9.00", "billing_interval": "yearly", "starts_on": today()}),
        )
        .await;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let job = tokio::spawn(jobs::billing_loop(
        app.pool.clone(),
        app.state.executor.clone(),
        config(&[]),
        app.state.heartbeats.clone(),
        rx,
    ));
    let mut billed = Vec::new();
    for _ in 0..100 {
        billed = app.periods(k, &id).await;
        if !billed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(billed.len(), 1, "billed once at start");
    let health: Value = app
        .client
        .get(app.url("/health/full"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let beat = health["loops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == jobs::BILLING_LOOP)
        .cloned()
        .expect("the billing loop is on /health/full");
    assert_eq!(beat["ok"], true, "{beat}");
    assert!(beat["last_success_at"].is_string(), "{beat}");
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), job)
        .await
        .expect("the loop stops on shutdown")
        .unwrap();
}

#[sqlx::test]
async fn the_report_checks_one_invoice_per_elapsed_period(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let starts_on = today().checked_sub_months(Months::new(2)).unwrap();
    let id = app
        .recurring(
            k,
            json!({"amount": "10.00", "billing_interval": "monthly", "starts_on": starts_on}),
        )
        .await;
    let app = &app;
    let report = |from: NaiveDate| {
        let path = format!("/v1/reports/reconciliation?from={from}&to={}", today());
        async move { app.json_of(k, &path).await }
    };
    // Approved, due for two months and not billed: behind.
    let r = report(starts_on).await;
    assert_eq!(
        r["recurring"]["contracts_behind"],
        json!([id]),
        "{}",
        r["recurring"]
    );
    assert!(
        r["failed_checks"]
            .as_array()
            .unwrap()
            .contains(&json!("recurring_billing"))
    );

    app.bill(&config(&[])).await;
    let r = report(starts_on).await;
    assert_eq!(r["recurring"]["ok"], true, "{}", r["recurring"]);
    assert_eq!(r["recurring"]["periods_billed"], 3);
    assert_eq!(r["failed_checks"], json!([]), "{r}");
    // Only the periods starting in the report's days count.
    let r = report(today()).await;
    let started_today = i64::from(starts_on.checked_add_months(Months::new(2)).unwrap() == today());
    assert_eq!(r["recurring"]["periods_billed"], started_today);

    // A second invoice for a billed period, as a job without the period's
    // key would make: the check names the contract.
    let copy = format!(
        "INSERT INTO invoices SELECT (json_populate_record(i, json_build_object('id', gen_random_uuid(),
                'number', i.number + 1000))).* FROM invoices i
          WHERE i.shop_id = '{}' AND i.id = (SELECT invoice_id FROM contract_periods
                                              WHERE shop_id = '{}' AND seq = 1)",
        shop.id, shop.id
    );
    sqlx::query(&copy).execute(&app.pool).await.unwrap();
    let r = report(starts_on).await;
    assert_eq!(
        r["recurring"]["contracts_not_one_invoice_per_period"],
        json!([id]),
        "{}",
        r["recurring"]
    );
    assert!(
        r["failed_checks"]
            .as_array()
            .unwrap()
            .contains(&json!("recurring_billing"))
    );
}

#[sqlx::test]
async fn an_amount_change_bills_from_the_next_period(_: PgPoolOptions, connect: PgConnectOptions) {
    use billing_ledger::{
        contracts::commands::BillPeriod,
        executor::{Actor, Request},
        http::error::ApiError,
        idempotency::{IdempotencyKey, fingerprint},
        tenants::Tenant,
    };
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let starts_on = today().checked_sub_months(Months::new(1)).unwrap();
    let id = app
        .recurring(
            k,
            json!({"amount": "10.00", "billing_interval": "monthly", "starts_on": starts_on}),
        )
        .await;
    // The first period alone, as a job's run that ended there would bill it.
    let request = Request {
        key: IdempotencyKey::internal("test", &id),
        fingerprint: fingerprint("JOB", "test", None, &json!({})),
        request_id: "test".into(),
    };
    let actor = Actor {
        shop_id: shop.id,
        key_id: None,
    };
    let command = BillPeriod {
        tenant: Tenant::job(shop.id),
        contract_id: id.parse().unwrap(),
        period_start: starts_on,
        dunning: Vec::new(),
    };
    let answer = app
        .state
        .executor
        .execute::<_, ApiError>(actor, &request, command)
        .await;
    assert!(answer.is_ok(), "{:?}", answer.err().map(|e| e.to_string()));

    // Only the amount may change once approved, with If-Match.
    let path = format!("/v1/contracts/{id}");
    let r = app
        .call(
            Method::PATCH,
            k,
            &path,
            &fresh(),
            Some("\"3\""),
            json!({"title": "Renamed"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = app
        .call(
            Method::PATCH,
            k,
            &path,
            &fresh(),
            Some("\"3\""),
            json!({"amount": "12.50"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["amount"].as_str(), r.body["version"].as_i64()),
        (Some("12.50"), Some(4))
    );

    assert_eq!(app.bill(&config(&[])).await.periods_billed, 1);
    let amounts: Vec<String> = app
        .periods(k, &id)
        .await
        .iter()
        .map(|p| p["amount"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(amounts, ["10.00", "12.50"], "the billed period keeps its amount");

    // Years later the amount still changes: only a draft's start is
    // bounded.
    let aged = format!(
        "UPDATE contracts SET starts_on = starts_on - 800 WHERE shop_id = '{}' AND id = '{id}'",
        shop.id
    );
    sqlx::query(&aged).execute(&app.pool).await.unwrap();
    let r = app
        .call(
            Method::PATCH,
            k,
            &path,
            &fresh(),
            Some("\"4\""),
            json!({"amount": "13.00"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
