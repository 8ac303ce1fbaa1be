//! Webhooks: signed deliveries stored once, a worker that applies each
//! event once through the executor, retries with backoff, dead letters,
//! several workers on one queue, and /health/full through a database
//! outage. Concurrent requests really run at the same time; the tests wait
//! for outcomes (bounded polls), never assert timings.

use std::{sync::Arc, time::Duration};

use billing_ledger::{config::WebhookConfig, webhooks, webhooks::signature};
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::helpers::*;

/// A worker configuration for tests: quick backoff, few attempts.
fn worker_config() -> WebhookConfig {
    WebhookConfig {
        max_attempts: 3,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        poll_interval: Duration::from_millis(100),
        batch: 10,
        ..WebhookConfig::default()
    }
}

struct Worker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Worker {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the worker stops on shutdown")
            .unwrap();
    }
}

impl TestApp {
    fn worker(&self, config: WebhookConfig) -> Worker {
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(webhooks::worker::run(
            self.pool.clone(),
            self.state.executor.clone(),
            config,
            self.state.heartbeats.clone(),
            rx,
        ));
        Worker { stop, task }
    }

    async fn secret(&self, key: &str, provider: &str) -> String {
        let r = self
            .post(
                key,
                "/v1/webhook-secrets",
                &fresh(),
                &json!({"provider": provider}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let body: Value = r.json().await.unwrap();
        body["secret"].as_str().unwrap().to_owned()
    }

    async fn deliver_raw(&self, path: &str, signature: Option<String>, body: Vec<u8>) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(sig) = signature {
            req = req.header("Webhook-Signature", sig);
        }
        req.send().await.unwrap()
    }

    /// Delivers `event` signed with `secret` now.
    async fn deliver(&self, shop: &Shop, secret: &str, event: &Value) -> (StatusCode, Value) {
        let body = serde_json::to_vec(event).unwrap();
        let sig = signature::sign(secret, chrono::Utc::now().timestamp(), &body);
        let r = self
            .deliver_raw(&format!("/v1/webhooks/acme/{}", shop.id), Some(sig), body)
            .await;
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn events(&self) -> i64 {
        self.count("SELECT count(*) FROM webhook_events").await
    }

    /// Waits (bounded) until the event with this provider id has `status`.
    async fn until_status(&self, event_id: &str, status: &str) -> Value {
        for _ in 0..300 {
            let row: Option<(String, Value)> =
                sqlx::query_as("SELECT status, to_jsonb(e) FROM webhook_events e WHERE event_id = $1")
                    .bind(event_id)
                    .fetch_optional(&self.pool)
                    .await
                    .unwrap();
            if let Some((s, row)) = row
                && s == status
            {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("event {event_id} never reached {status}");
    }

    async fn payments(&self, invoice: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) FROM invoice_payments WHERE invoice_id = '{invoice}'"
        ))
        .await
    }

    /// An open invoice of `total` USD.
    async fn open_usd_invoice(&self, key: &str, total: &str) -> String {
        let r = self
            .post(
                key,
                "/v1/invoices",
                &fresh(),
                &json!({"customer_ref": "c", "currency": "USD",
                        "lines": [{"description": "plan", "quantity": "1", "unit_amount": total}]}),
            )
            .await;
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = self
            .post(key, &format!("/v1/invoices/{id}/finalize"), &fresh(), &json!({}))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        id
    }
}

fn payment(event_id: &str, invoice: &str, amount: &str, payment_ref: &str) -> Value {
    json!({"id": event_id, "type": "payment.succeeded", "created": 1_790_000_000,
           "data": {"invoice_id": invoice, "amount": amount, "currency": "USD", "payment_ref": payment_ref}})
}

#[sqlx::test]
async fn one_event_delivered_a_hundred_times_at_once_pays_once(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let secret = app.secret(&shop.key, "acme").await;
    let invoice = app.open_usd_invoice(&shop.key, "40.00").await;
    let event = payment("evt_100", &invoice, "40.00", "pay_100");
    let answers = join_all((0..100).map(|_| app.deliver(&shop, &secret, &event))).await;
    assert!(
        answers
            .iter()
            .all(|(s, b)| *s == StatusCode::OK && b["received"] == true)
    );
    let fresh_ones = answers.iter().filter(|(_, b)| b["duplicate"] == false).count();
    assert_eq!(fresh_ones, 1);
    assert_eq!(answers.iter().filter(|(_, b)| b["duplicate"] == true).count(), 99);
    assert_eq!(app.events().await, 1);

    let worker = app.worker(worker_config());
    let row = app.until_status("evt_100", "processed").await;
    assert_eq!(row["attempts"], 1);
    // Delivered again after processing: still nothing more.
    assert_eq!(app.deliver(&shop, &secret, &event).await.1["duplicate"], true);
    worker.stop().await;
    assert_eq!(app.payments(&invoice).await, 1);
    let inv: Value = app
        .get(&shop.key, &format!("/v1/invoices/{invoice}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(inv["status"], "paid");
    let payments: Value = app
        .get(&shop.key, &format!("/v1/invoices/{invoice}/payments"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(payments["data"][0]["external_ref"], "pay_100");
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'webhook.payment_succeeded'")
            .await,
        1
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn bad_deliveries_are_refused_and_store_nothing(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let secret = app.secret(&shop.key, "acme").await;
    let path = format!("/v1/webhooks/acme/{}", shop.id);
    let body = serde_json::to_vec(&payment("evt_bad", &fresh(), "1.00", "p")).unwrap();
    let now = chrono::Utc::now().timestamp();
    let mut tampered = body.clone();
    let last = tampered.len() - 2;
    tampered[last] = b' ';
    type Case<'a> = (&'a str, Option<String>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            "missing header",
            None,
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "signature_invalid",
        ),
        (
            "garbage header",
            Some("v1=abc".into()),
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "signature_invalid",
        ),
        (
            "tampered body",
            Some(signature::sign(&secret, now, &body)),
            tampered,
            StatusCode::UNAUTHORIZED,
            "signature_invalid",
        ),
        (
            "wrong secret",
            Some(signature::sign("whsec_other", now, &body)),
            body.clone(),
            StatusCode::UNAUTHORIZED,
            "signature_invalid",
        ),
        (
            "stale timestamp",
            Some(signature::sign(&secret, now - 301, &body)),
            body.clone(),
            StatusCode::BAD_REQUEST,
            "timestamp_out_of_tolerance",
        ),
        // A minute beyond the tolerance: the clock moves towards a future
        // timestamp while the cases before it run, on a busy machine too.
        (
            "future timestamp",
            Some(signature::sign(&secret, now + 360, &body)),
            body.clone(),
            StatusCode::BAD_REQUEST,
            "timestamp_out_of_tolerance",
        ),
    ];
    for (what, sig, body, status, code) in cases {
        let r = app.deliver_raw(&path, sig, body).await;
        assert_eq!(r.status(), status, "{what}");
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["code"], code, "{what}");
    }
    // Unknown shop or provider: 404; too large: 413.
    let sig = Some(signature::sign(&secret, now, &body));
    let other = app.shop().await;
    for p in [
        format!("/v1/webhooks/acme/{}", other.id),
        format!("/v1/webhooks/other/{}", shop.id),
        "/v1/webhooks/acme/not-a-uuid".into(),
    ] {
        assert_eq!(
            app.deliver_raw(&p, sig.clone(), body.clone()).await.status(),
            StatusCode::NOT_FOUND,
            "{p}"
        );
    }
    let big = vec![b' '; 256 * 1024 + 1];
    let big_sig = Some(signature::sign(&secret, now, &big));
    assert_eq!(
        app.deliver_raw(&path, big_sig, big).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(app.events().await, 0);

    // A rotation keeps the previous secret valid for the grace period.
    let rotated = app.secret(&shop.key, "acme").await;
    assert_ne!(rotated, secret);
    for (i, s) in [&secret, &rotated].into_iter().enumerate() {
        let event =
            json!({"id": format!("evt_rot_{i}"), "type": "customer.updated", "created": 1, "data": {}});
        let (status, b) = app.deliver(&shop, s, &event).await;
        assert_eq!((status, b["duplicate"].as_bool()), (StatusCode::OK, Some(false)));
    }
    // Unknown types are stored as ignored.
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_events WHERE status = 'ignored'")
            .await,
        2
    );
    sqlx::query(
        "UPDATE webhook_secrets SET expires_at = now() - interval '1 second' WHERE expires_at IS NOT NULL",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let event = json!({"id": "evt_late", "type": "customer.updated", "created": 1, "data": {}});
    assert_eq!(
        app.deliver(&shop, &secret, &event).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test]
async fn a_payment_by_webhook_and_by_the_api_is_recorded_once_in_either_order(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let secret = app.secret(&shop.key, "acme").await;
    let worker = app.worker(worker_config());
    for (round, api_first) in [(0, true), (1, false)] {
        let invoice = app.open_usd_invoice(&shop.key, "25.00").await;
        let reference = format!("pay_either_{round}");
        let pay_path = format!("/v1/invoices/{invoice}/pay");
        let pay_body = json!({"method": "card", "amount": "25.00", "external_ref": reference});
        let via_api = || async { app.post(&shop.key, &pay_path, &fresh(), &pay_body).await };
        let event_id = format!("evt_either_{round}");
        let event = payment(&event_id, &invoice, "25.00", &reference);
        if api_first {
            assert_eq!(via_api().await.status(), StatusCode::CREATED);
            app.deliver(&shop, &secret, &event).await;
            let row = app.until_status(&event_id, "processed").await;
            assert_eq!(row["result"]["existing"], true);
        } else {
            app.deliver(&shop, &secret, &event).await;
            app.until_status(&event_id, "processed").await;
            let r = via_api().await;
            assert_eq!(r.status(), StatusCode::OK, "the API finds the webhook's payment");
            assert_eq!(r.json::<Value>().await.unwrap()["existing"], true);
        }
        assert_eq!(app.payments(&invoice).await, 1, "round {round}");
    }
    worker.stop().await;
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn a_provider_refund_by_webhook_and_by_the_api_is_recorded_once_in_either_order(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let secret = app.secret(&shop.key, "acme").await;
    let worker = app.worker(worker_config());
    for (round, api_first) in [(0, true), (1, false)] {
        let invoice = app.open_usd_invoice(&shop.key, "25.00").await;
        let paid = format!("pay_refunded_{round}");
        let r = app
            .post(
                &shop.key,
                &format!("/v1/invoices/{invoice}/pay"),
                &fresh(),
                &json!({"method": "card", "external_ref": paid}),
            )
            .await;
        let payment_id = r.json::<Value>().await.unwrap()["payment"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let refund_ref = format!("re_either_{round}");
        let path = format!("/v1/invoices/{invoice}/payments/{payment_id}/refund");
        let body = json!({"amount": "10.00", "external_ref": refund_ref});
        let via_api = || async { app.post(&shop.key, &path, &fresh(), &body).await };
        let event_id = format!("evt_refund_{round}");
        let event = json!({"id": event_id, "type": "refund.succeeded", "created": 1_790_000_000,
            "data": {"payment_ref": paid, "refund_ref": refund_ref, "amount": "10.00", "currency": "USD"}});
        if api_first {
            assert_eq!(via_api().await.status(), StatusCode::CREATED);
            app.deliver(&shop, &secret, &event).await;
            let row = app.until_status(&event_id, "processed").await;
            assert_eq!(row["result"]["existing"], true);
        } else {
            app.deliver(&shop, &secret, &event).await;
            app.until_status(&event_id, "processed").await;
            let r = via_api().await;
            assert_eq!(r.status(), StatusCode::OK, "the API finds the webhook's refund");
            assert_eq!(r.json::<Value>().await.unwrap()["existing"], true);
        }
        let refunds = app
            .count(&format!(
                "SELECT count(*) FROM payment_refunds WHERE invoice_id = '{invoice}'"
            ))
            .await;
        assert_eq!(refunds, 1, "round {round}");
        let shown: Value = app
            .get(&shop.key, &format!("/v1/invoices/{invoice}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            (shown["status"].as_str(), shown["amount_due"].as_str()),
            (Some("open"), Some("10.00"))
        );
    }
    worker.stop().await;
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn a_failing_event_backs_off_dies_and_is_retried_once_fixed(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let secret = app.secret(&shop.key, "acme").await;
    // A draft cannot be paid: every attempt fails until it is finalized.
    let r = app
        .post(
            &shop.key,
            "/v1/invoices",
            &fresh(),
            &json!({"customer_ref": "c", "currency": "USD",
                    "lines": [{"description": "plan", "quantity": "1", "unit_amount": "9.00"}]}),
        )
        .await;
    let invoice = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let worker = app.worker(worker_config());
    app.deliver(&shop, &secret, &payment("evt_fail", &invoice, "9.00", "pay_fail"))
        .await;
    let dead = app.until_status("evt_fail", "dead").await;
    assert_eq!(dead["attempts"], 3);
    assert!(dead["last_error"].as_str().unwrap().contains("draft"), "{dead}");
    let id = dead["id"].as_str().unwrap().to_owned();
    let event: Value = app
        .get(&shop.key, &format!("/v1/webhook-events/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(event["status"], "dead");
    assert_eq!(app.payments(&invoice).await, 0);

    // Fixed: the invoice is finalized; a manual retry applies it once.
    let r = app
        .post(
            &shop.key,
            &format!("/v1/invoices/{invoice}/finalize"),
            &fresh(),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let retry = format!("/v1/webhook-events/{id}/retry");
    let r = app.post(&shop.key, &retry, &fresh(), &json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    app.until_status("evt_fail", "processed").await;
    let again = app.post(&shop.key, &retry, &fresh(), &json!({})).await;
    problem(again, StatusCode::CONFLICT, "invalid_state").await;
    worker.stop().await;
    assert_eq!(app.payments(&invoice).await, 1);
    let list: Value = app
        .get(&shop.key, "/v1/webhook-events?status=processed")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn two_workers_apply_every_event_once_and_a_late_worker_catches_up(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let secret = app.secret(&shop.key, "acme").await;
    let wallet = app.wallet(&shop.key, "USD", "0").await;
    // Accepted while no worker runs.
    let events: Vec<Value> = (0..40)
        .map(|i| {
            json!({"id": format!("evt_credit_{i}"), "type": "credits.purchased", "created": 1,
                   "data": {"wallet_id": wallet, "amount": "1.25", "currency": "USD",
                            "purchase_ref": format!("po_{i}")}})
        })
        .collect();
    for e in &events[..20] {
        assert_eq!(app.deliver(&shop, &secret, e).await.1["duplicate"], false);
    }
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_events WHERE status = 'pending'")
            .await,
        20
    );
    // Two instances on one queue, with the rest arriving meanwhile.
    let config = WebhookConfig {
        batch: 3,
        ..worker_config()
    };
    let (a, b) = (app.worker(config.clone()), app.worker(config));
    join_all(events[20..].iter().map(|e| app.deliver(&shop, &secret, e))).await;
    for i in 0..40 {
        app.until_status(&format!("evt_credit_{i}"), "processed").await;
    }
    a.stop().await;
    b.stop().await;
    assert_eq!(app.balance(&shop.key, wallet).await, "50.00");
    assert_eq!(
        app.count("SELECT count(*) FROM wallet_transactions WHERE category = 'top_up'")
            .await,
        40
    );
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_events WHERE attempts <> 1")
            .await,
        0
    );
    app.assert_ledger_consistent().await;
}

/// A TCP proxy to PostgreSQL that can be cut (connections dropped, new
/// ones refused) and restored on the same port: the database disappears
/// from the service's point of view without touching other tests.
struct Proxy {
    port: u16,
    up: watch::Sender<bool>,
}

impl Proxy {
    async fn start(target: (String, u16)) -> Arc<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, _) = watch::channel(true);
        let proxy = Arc::new(Proxy { port, up });
        let p = proxy.clone();
        tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                let mut state = p.up.subscribe();
                match listener.take() {
                    Some(l) if *state.borrow() => {
                        tokio::select! {
                            accepted = l.accept() => {
                                if let Ok((mut client, _)) = accepted {
                                    let target = target.clone();
                                    let mut cut = p.up.subscribe();
                                    tokio::spawn(async move {
                                        let Ok(mut server) = tokio::net::TcpStream::connect(target).await else { return };
                                        tokio::select! {
                                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                            _ = cut.wait_for(|up| !*up) => {}
                                        }
                                    });
                                }
                                listener = Some(l);
                            }
                            _ = state.wait_for(|up| !*up) => {}
                        }
                    }
                    _ => {
                        // Down: nothing listens. Back up: listen again.
                        if state.wait_for(|up| *up).await.is_err() {
                            return;
                        }
                        listener = Some(TcpListener::bind(("127.0.0.1", p.port)).await.unwrap());
                    }
                }
            }
        });
        proxy
    }
}

#[sqlx::test]
async fn full_health_turns_503_while_the_database_is_away_and_recovers(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let target = (connect.get_host().to_owned(), connect.get_port());
    let proxy = Proxy::start(target).await;
    let app = spawn_app_db(
        serve_config(),
        db_config(
            connect.clone().host("127.0.0.1").port(proxy.port),
            Duration::from_secs(5),
        ),
    )
    .await;
    let health = || async {
        let r = app.client.get(app.url("/health/full")).send().await.unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    let (status, body) = health().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["database"]["ok"], true);
    assert_eq!(body["migrations"]["ok"], true);
    assert_eq!(body["webhook_queue"]["depth"], 0);

    proxy.up.send_replace(false);
    let (status, body) = health().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "down");
    assert_eq!(body["database"]["ok"], false);
    // The receiver tells the provider to come back later.
    let r = app
        .client
        .post(app.url(&format!("/v1/webhooks/acme/{}", uuid::Uuid::now_v7())))
        .header("Webhook-Signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    proxy.up.send_replace(true);
    let mut recovered = false;
    for _ in 0..50 {
        if health().await.0 == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "health recovers by itself when the database returns");
}

#[sqlx::test]
async fn a_stale_loop_makes_full_health_503(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    app.state
        .heartbeats
        .register("test_loop", Duration::from_millis(50));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = app.client.get(app.url("/health/full")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    let test_loop = |body: &Value| {
        body["loops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "test_loop")
            .cloned()
            .unwrap()
    };
    assert_eq!(test_loop(&body)["ok"], false, "{body}");

    // A beat makes the loop fresh for three intervals: judged at fixed
    // instants, so a slow machine cannot make the check late.
    let beats = &app.state.heartbeats;
    beats.beat("test_loop");
    let now = chrono::Utc::now();
    let last = beats
        .report(now)
        .into_iter()
        .find(|l| l.name == "test_loop")
        .and_then(|l| l.last_success_at)
        .expect("the beat is recorded");
    let ok_at = |ms: i64| {
        beats
            .report(last + chrono::Duration::milliseconds(ms))
            .into_iter()
            .find(|l| l.name == "test_loop")
            .unwrap()
            .ok
    };
    assert!(ok_at(150), "within three intervals of the beat");
    assert!(!ok_at(151), "stale again after three intervals");

    // A loop that beats within its intervals leaves the service healthy.
    beats.register("test_loop", Duration::from_secs(3600));
    beats.beat("test_loop");
    let r = app.client.get(app.url("/health/full")).send().await.unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(test_loop(&body)["ok"], true, "{body}");
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[sqlx::test]
async fn retention_deletes_old_processed_events_in_batches(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let secret = app.secret(&shop.key, "acme").await;
    for i in 0..5 {
        let event = json!({"id": format!("evt_old_{i}"), "type": "other", "created": 1, "data": {}});
        app.deliver(&shop, &secret, &event).await;
    }
    sqlx::query(
        "UPDATE webhook_events SET received_at = now() - interval '31 days' WHERE event_id <> 'evt_old_4'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let deleted = webhooks::purge(&app.pool, Duration::from_secs(30 * 24 * 3600), 2)
        .await
        .unwrap();
    assert_eq!(deleted, 4);
    assert_eq!(app.events().await, 1);
    let r = app
        .client
        .get(app.url("/v1/admin/webhooks/stats"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let stats: Value = r.json().await.unwrap();
    assert_eq!(stats["by_status"]["ignored"], 1);
}

#[sqlx::test]
async fn a_client_key_never_reaches_the_workers_key_space(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let secret = app.secret(&shop.key, "acme").await;
    let wallet = app.wallet(&shop.key, "USD", "0").await;
    // A client sends what the worker's key used to be, before the event
    // arrives; with one key space the event would replay this answer (or
    // fail as a reused key) and never credit the wallet.
    for key in ["webhook:acme:evt_scope", "webhook acme:evt_scope"] {
        let r = app
            .post(
                &shop.key,
                "/v1/wallets",
                key,
                &json!({"customer_ref": "squatter", "currency": "USD"}),
            )
            .await;
        assert!(r.status() == StatusCode::CREATED || r.status() == StatusCode::BAD_REQUEST);
    }
    let event = json!({"id": "evt_scope", "type": "credits.purchased", "created": 1,
                       "data": {"wallet_id": wallet, "amount": "7.00", "currency": "USD",
                                "purchase_ref": "po_scope"}});
    assert_eq!(app.deliver(&shop, &secret, &event).await.0, StatusCode::OK);
    let worker = app.worker(worker_config());
    app.until_status("evt_scope", "processed").await;
    worker.stop().await;
    assert_eq!(app.balance(&shop.key, wallet).await, "7.00");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn a_signed_body_that_is_not_an_event_is_400_and_stores_nothing(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let secret = app.secret(&shop.key, "acme").await;
    let good = payment("evt_shape", &fresh(), "1.00", "p");
    let mut no_id = good.clone();
    no_id.as_object_mut().unwrap().remove("id");
    let mut no_type = good.clone();
    no_type.as_object_mut().unwrap().remove("type");
    let mut no_data = good.clone();
    no_data.as_object_mut().unwrap().remove("data");
    let mut null_data = good.clone();
    null_data["data"] = Value::Null;
    let array = json!(["evt_shape", "payment.succeeded", 1, {"invoice_id": fresh()}]);
    for bad in [array, no_id, no_type, no_data, null_data, json!("evt"), json!({})] {
        let (status, body) = app.deliver(&shop, &secret, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["code"], "bad_request");
    }
    assert_eq!(app.events().await, 0);
}
