//! Outbound events: the outbox (an event exactly when its change
//! committed), signed deliveries to loopback receivers with retries, dead
//! letters and manual retries, isolation of a slow endpoint, the address
//! rule, balance alerts under concurrency, and catch-up through
//! `GET /v1/events`.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode as AxumStatus},
    routing::post,
};
use billing_ledger::{
    config::{EventConfig, ServeConfig},
    events::deliveries,
    jobs,
    webhooks::signature,
};
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::watch;
use uuid::Uuid;

use crate::helpers::*;

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    signature: String,
    body: Bytes,
    at: std::time::Instant,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A loopback endpoint: records every request, answers `status` (after
/// `delay_ms`).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    /// Answers 500 to this many requests first.
    fail_first: Arc<AtomicU64>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    let delay = r.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let header = |n: &str| {
        headers
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    r.got.lock().unwrap().push(Received {
        id: header("webhook-id"),
        signature: header("webhook-signature"),
        body,
        at: std::time::Instant::now(),
    });
    if r.fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return AxumStatus::INTERNAL_SERVER_ERROR;
    }
    AxumStatus::from_u16(r.status.load(Ordering::SeqCst)).unwrap()
}

impl Receiver {
    /// Listening on 127.0.0.1; its URL.
    async fn start() -> (Receiver, String) {
        let r = Receiver::default();
        r.status.store(200, Ordering::SeqCst);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) until `done` holds of what it got.
    async fn until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..300 {
            let got = self.got();
            if done(&got) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the receiver never got {what}: {:?}", self.got());
    }
}

/// Test settings: loopback allowed, retries fast.
fn events_config() -> EventConfig {
    EventConfig {
        endpoint_allowed_hosts: vec!["127.0.0.1".into()],
        delivery_backoff_base: Duration::from_millis(200),
        delivery_backoff_max: Duration::from_millis(400),
        delivery_poll_interval: Duration::from_millis(100),
        ..EventConfig::default()
    }
}

fn config_with(events: EventConfig) -> ServeConfig {
    ServeConfig {
        events,
        ..serve_config()
    }
}

/// The delivery worker on the app's pool until the sender is dropped.
fn start_worker(app: &TestApp, config: EventConfig) -> watch::Sender<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(jobs::delivery_loop(
        app.pool.clone(),
        config,
        app.state.heartbeats.clone(),
        rx,
    ));
    tx
}

impl TestApp {
    /// Registers `url` for `types`; the endpoint (with its secret).
    async fn endpoint(&self, key: &str, url: &str, types: Value) -> Value {
        let r = self
            .post(
                key,
                "/v1/webhook-endpoints",
                &fresh(),
                &json!({"url": url, "event_types": types}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().await.unwrap()
    }

    async fn event_page(&self, key: &str, query: &str) -> Value {
        let r = self.get(key, &format!("/v1/events{query}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    async fn deliveries(&self, key: &str, endpoint: &str) -> Vec<Value> {
        let r = self
            .get(key, &format!("/v1/webhook-endpoints/{endpoint}/deliveries"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let page: Value = r.json().await.unwrap();
        page["data"].as_array().unwrap().clone()
    }

    /// Waits (up to 30 s) until the endpoint's deliveries satisfy `done`.
    async fn deliveries_until(
        &self,
        key: &str,
        endpoint: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        for _ in 0..300 {
            let d = self.deliveries(key, endpoint).await;
            if done(&d) {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "deliveries never settled: {:?}",
            self.deliveries(key, endpoint).await
        );
    }

    async fn debit(&self, key: &str, wallet: Uuid, amount: &str) -> (StatusCode, Value) {
        let r = self
            .post(
                key,
                &format!("/v1/wallets/{wallet}/debit"),
                &fresh(),
                &json!({"amount": amount, "category": "usage"}),
            )
            .await;
        (r.status(), r.json().await.unwrap())
    }
}

fn types_of(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test]
async fn an_event_exists_exactly_when_its_change_committed(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let w = app.wallet(k, "USD", "10.00").await;

    let (s, debit) = app.debit(k, w, "4.00").await;
    assert_eq!(s, StatusCode::CREATED);
    let page = app.event_page(k, "?type=wallet.debited").await;
    let events = page["data"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page}");
    // Its data is the answer the request got.
    assert_eq!(events[0]["data"], debit);
    let id = events[0]["id"].as_str().unwrap();
    let one: Value = app
        .get(k, &format!("/v1/events/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one, events[0]);
    // Another shop cannot see it.
    let other = app.shop().await;
    let r = app.get(&other.key, &format!("/v1/events/{id}")).await;
    problem(r, StatusCode::NOT_FOUND, "not_found").await;

    // Refused: nothing moved, nothing told.
    let (s, _) = app.debit(k, w, "100.00").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // A failure after the change, in its statement: rolled back, no event.
    inject(
        &app.pool,
        &[
            "CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.action = 'wallet.debit' THEN RAISE EXCEPTION 'injected'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION fail_audit()",
        ],
    )
    .await;
    let (s, _) = app.debit(k, w, "1.00").await;
    assert!(s.is_server_error(), "{s}");
    assert_eq!(app.balance(k, w).await, "6.00");
    let page = app.event_page(k, "?type=wallet.debited").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1, "{page}");
    // The credit that funded the wallet and the one debit: nothing else.
    assert_eq!(
        types_of(&app.event_page(k, "").await),
        ["wallet.credited", "wallet.debited"]
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events").await,
        2,
        "only the committed changes have events"
    );
}

#[sqlx::test]
async fn a_receiver_gets_every_event_signed_even_after_a_worker_died_mid_delivery(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let config = events_config();
    let app = spawn_app_with(connect, config_with(config.clone()), Duration::from_secs(5)).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let (receiver, url) = Receiver::start().await;
    let ep = app.endpoint(k, &url, json!(["*"])).await;
    let secret = ep["secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 32);
    let ep_id = ep["id"].as_str().unwrap().to_owned();
    // Listed and fetched without the secret.
    let got: Value = app
        .get(k, &format!("/v1/webhook-endpoints/{ep_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(got["secret"].is_null(), "{got}");

    let w = app.wallet(k, "USD", "10.00").await;
    let (s, _) = app.debit(k, w, "3.00").await;
    assert_eq!(s, StatusCode::CREATED);

    // A worker leases the first delivery and dies before posting it.
    let shop_id = shop.id;
    let ep_uuid: Uuid = ep_id.parse().unwrap();
    let leased = deliveries::lease(&app.pool, shop_id, ep_uuid, 1, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    assert!(receiver.got().is_empty());

    let _stop = start_worker(&app, config);
    let got = receiver
        .until("both events", |g| {
            g.iter().map(|r| r.id.as_str()).collect::<HashSet<_>>().len() >= 2
        })
        .await;
    let events = app.event_page(k, "").await;
    let ids: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    for r in &got {
        let header = signature::parse(&r.signature).expect("a signature header");
        assert!(
            signature::verify(&header, &r.body, [secret.as_str()]),
            "bad signature on {r:?}"
        );
        let body = r.json();
        assert_eq!(body["id"].as_str().unwrap(), r.id, "Webhook-Id is the event id");
        assert!(ids.contains(&r.id.as_str()));
    }
    // The wallet's events arrive in commit order: the credit, then the debit.
    let order: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    let first_debit = order.iter().position(|t| t == "wallet.debited").unwrap();
    assert!(
        order[..first_debit].contains(&"wallet.credited".to_owned()),
        "{order:?}"
    );
    let d = app
        .deliveries_until(k, &ep_id, |d| {
            d.len() == 2 && d.iter().all(|x| x["status"] == "delivered")
        })
        .await;
    for x in &d {
        assert_eq!(
            x["attempt_log"].as_array().unwrap().last().unwrap()["status_code"],
            200
        );
    }
}

#[sqlx::test]
async fn a_caught_up_worker_waits_its_batch_wait_before_sending_what_committed_meanwhile(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let wait = Duration::from_secs(2);
    let config = EventConfig {
        delivery_batch_wait: wait,
        ..events_config()
    };
    let app = spawn_app_with(connect, config_with(config.clone()), Duration::from_secs(5)).await;
    let k = &app.shop().await.key;
    let (receiver, url) = Receiver::start().await;
    app.endpoint(k, &url, json!(["wallet.credited"])).await;
    app.wallet(k, "USD", "1.00").await;
    let _stop = start_worker(&app, config);
    receiver.until("the first event", |g| !g.is_empty()).await;
    for _ in 0..3 {
        app.wallet(k, "USD", "1.00").await;
    }
    let got = receiver.until("four events", |g| g.len() >= 4).await;
    assert_eq!(got.len(), 4);
    // The round that sent the first took every due delivery, so the
    // worker waited DELIVERY_BATCH_WAIT after it (the poll every 100 ms
    // would have sent each within a few hundred ms of its commit).
    for later in &got[1..] {
        assert!(
            later.at.duration_since(got[0].at) >= wait,
            "sent {:?} after the first",
            later.at.duration_since(got[0].at)
        );
    }
}

#[sqlx::test]
async fn a_receiver_answering_500_then_200_gets_the_event_after_backoff(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let config = events_config();
    let app = spawn_app_with(connect, config_with(config.clone()), Duration::from_secs(5)).await;
    let k = &app.shop().await.key;
    let (receiver, url) = Receiver::start().await;
    receiver.fail_first.store(2, Ordering::SeqCst);
    let ep = app.endpoint(k, &url, json!(["wallet.credited"])).await;
    let ep_id = ep["id"].as_str().unwrap();
    app.wallet(k, "USD", "5.00").await;
    let _stop = start_worker(&app, config);
    let d = app
        .deliveries_until(k, ep_id, |d| d.len() == 1 && d[0]["status"] == "delivered")
        .await;
    assert_eq!(d[0]["attempts"], 3, "{d:?}");
    let codes: Vec<&Value> = d[0]["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(200)]);
    // Three posts of the same event, one id to deduplicate by.
    let got = receiver.got();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.id == got[0].id));
}

#[sqlx::test]
async fn a_dead_endpoint_ends_failed_is_disabled_and_a_manual_retry_delivers(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let config = EventConfig {
        delivery_max_attempts: 2,
        endpoint_failure_limit: 2,
        ..events_config()
    };
    let app = spawn_app_with(connect, config_with(config.clone()), Duration::from_secs(5)).await;
    let k = &app.shop().await.key;
    let (receiver, url) = Receiver::start().await;
    receiver.status.store(503, Ordering::SeqCst);
    let ep = app
        .endpoint(k, &url, json!(["wallet.credited", "wallet.debited"]))
        .await;
    let ep_id = ep["id"].as_str().unwrap();
    let w = app.wallet(k, "USD", "5.00").await;
    app.debit(k, w, "1.00").await;
    let stop = start_worker(&app, config);
    let d = app
        .deliveries_until(k, ep_id, |d| {
            d.len() == 2 && d.iter().all(|x| x["status"] == "failed")
        })
        .await;
    assert!(d.iter().all(|x| x["attempts"] == 2), "{d:?}");
    // Two dead letters in a row: the endpoint is disabled, and says why.
    let ep: Value = app
        .get(k, &format!("/v1/webhook-endpoints/{ep_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ep["disabled"], true, "{ep}");
    assert!(ep["disabled_reason"].as_str().unwrap().contains("503"), "{ep}");
    // Filtered by status.
    let r = app
        .get(
            k,
            &format!("/v1/webhook-endpoints/{ep_id}/deliveries?status=failed"),
        )
        .await;
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 2);

    // Retried while disabled: refused, as it could not be posted.
    let first = d.iter().find(|x| x["event_type"] == "wallet.credited").unwrap();
    let path = format!(
        "/v1/webhook-endpoints/{ep_id}/deliveries/{}/retry",
        first["id"].as_str().unwrap()
    );
    let r = app.post(k, &path, &fresh(), &json!({})).await;
    problem(r, StatusCode::CONFLICT, "invalid_state").await;

    // Fixed and re-enabled, one delivery retried by hand: delivered.
    receiver.status.store(200, Ordering::SeqCst);
    let r = app
        .call(
            reqwest::Method::PATCH,
            k,
            &format!("/v1/webhook-endpoints/{ep_id}"),
            &fresh(),
            None,
            json!({"disabled": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["disabled"], false);
    let r = app.post(k, &path, &fresh(), &json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let retried: Value = r.json().await.unwrap();
    assert_eq!(retried["status"], "pending");
    let d = app
        .deliveries_until(k, ep_id, |d| d.iter().any(|x| x["status"] == "delivered"))
        .await;
    let delivered: Vec<&Value> = d.iter().filter(|x| x["status"] == "delivered").collect();
    assert_eq!(delivered.len(), 1, "only the retried one: {d:?}");
    assert_eq!(delivered[0]["id"], first["id"]);
    assert_eq!(delivered[0]["attempts"], 3);
    // Retried once more after it was delivered: the attempt that delivered
    // it (kept on the delivery's row) stays in its log beside the new one.
    let r = app.post(k, &path, &fresh(), &json!({})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["status"], "pending");
    assert!(again["delivered_at"].is_null(), "{again}");
    let codes = |x: &Value| -> Vec<Value> {
        x["attempt_log"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["status_code"].clone())
            .collect()
    };
    assert_eq!(codes(&again), [json!(503), json!(503), json!(200)], "{again}");
    let d = app
        .deliveries_until(k, ep_id, |d| {
            d.iter()
                .any(|x| x["id"] == first["id"] && x["status"] == "delivered" && x["attempts"] == 4)
        })
        .await;
    let twice = d.iter().find(|x| x["id"] == first["id"]).unwrap();
    assert_eq!(
        codes(twice),
        [json!(503), json!(503), json!(200), json!(200)],
        "{twice}"
    );
    let log = twice["attempt_log"].as_array().unwrap();
    let at = |a: &Value| chrono::DateTime::parse_from_rfc3339(a["attempted_at"].as_str().unwrap()).unwrap();
    assert!(log.windows(2).all(|w| at(&w[0]) <= at(&w[1])), "{twice}");
    assert_eq!(log[3]["attempted_at"], twice["delivered_at"]);
    // Retried by eight requests at once, the worker stopped so nothing
    // delivers it meanwhile: the attempt that delivered it moves to the log
    // once, not once a request.
    stop.send(true).unwrap();
    let keys: Vec<String> = (0..8).map(|_| fresh()).collect();
    let empty = json!({});
    let answers = join_all(keys.iter().map(|key| app.post(k, &path, key, &empty))).await;
    assert!(answers.iter().all(|r| r.status() == StatusCode::OK));
    let d = app.deliveries(k, ep_id).await;
    let pending = d.iter().find(|x| x["id"] == first["id"]).unwrap();
    assert_eq!(pending["status"], "pending", "{pending}");
    assert_eq!(
        codes(pending),
        [json!(503), json!(503), json!(200), json!(200)],
        "{pending}"
    );
    // A delivery of another endpoint is not found under this one.
    let r = app
        .post(
            k,
            &format!(
                "/v1/webhook-endpoints/{}/deliveries/{}/retry",
                Uuid::now_v7(),
                first["id"].as_str().unwrap()
            ),
            &fresh(),
            &json!({}),
        )
        .await;
    problem(r, StatusCode::NOT_FOUND, "not_found").await;
}

#[sqlx::test]
async fn deleting_an_endpoint_with_a_backlog_answers_at_once_and_fails_its_deliveries(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    // A failing endpoint keeps its deliveries cycling through rounds while
    // it is deleted: the request touches the endpoint's row only, and the
    // worker then ends every pending delivery `failed`.
    let config = EventConfig {
        delivery_max_attempts: 1000,
        endpoint_failure_limit: 100_000,
        ..events_config()
    };
    let app = spawn_app_with(connect, config_with(config.clone()), Duration::from_secs(5)).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let (receiver, url) = Receiver::start().await;
    receiver.status.store(500, Ordering::SeqCst);
    let ep = app.endpoint(k, &url, json!(["wallet.credited"])).await;
    let ep_id = ep["id"].as_str().unwrap();
    for _ in 0..30 {
        app.wallet(k, "USD", "1.00").await;
    }
    let _stop = start_worker(&app, config);
    receiver.until("a few attempts", |g| g.len() >= 40).await;

    let r = app
        .call(
            reqwest::Method::DELETE,
            k,
            &format!("/v1/webhook-endpoints/{ep_id}"),
            &fresh(),
            None,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let of_endpoint = format!(
        "FROM event_deliveries WHERE shop_id = '{}' AND endpoint_id = '{ep_id}'",
        shop.id
    );
    for _ in 0..300 {
        if app
            .count(&format!("SELECT count(*) {of_endpoint} AND status = 'pending'"))
            .await
            == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) {of_endpoint} AND status = 'failed' AND last_error = 'the endpoint was deleted'"
        ))
        .await,
        30,
        "every delivery ended failed because the endpoint was deleted"
    );
    // Nothing is posted any more.
    let posted = receiver.got().len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(receiver.got().len(), posted);
    // A deleted endpoint keeps its row, so its deliveries still name one
    // (no foreign key says so: the event's statement writes a delivery
    // only for a live endpoint, and endpoints are never removed).
    assert_eq!(
        app.count(
            "SELECT count(*) FROM event_deliveries d WHERE NOT EXISTS (SELECT 1 FROM webhook_endpoints p \
             WHERE p.shop_id = d.shop_id AND p.id = d.endpoint_id)"
        )
        .await,
        0
    );
    assert_eq!(app.count(&format!("SELECT count(*) {of_endpoint}")).await, 30);
}

#[sqlx::test]
async fn a_slow_endpoint_holds_back_neither_another_endpoint_nor_the_api(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let config = EventConfig {
        delivery_timeout: Duration::from_secs(60),
        ..events_config()
    };
    let app = spawn_app_with(connect, config_with(config.clone()), Duration::from_secs(5)).await;
    let k = &app.shop().await.key;
    let (slow, slow_url) = Receiver::start().await;
    slow.delay_ms.store(30_000, Ordering::SeqCst);
    let (fast, fast_url) = Receiver::start().await;
    let slow_ep = app.endpoint(k, &slow_url, json!(["*"])).await;
    app.endpoint(k, &fast_url, json!(["*"])).await;
    let _stop = start_worker(&app, config);
    let w = app.wallet(k, "USD", "50.00").await;
    for _ in 0..3 {
        let (s, _) = app.debit(k, w, "1.00").await;
        assert_eq!(s, StatusCode::CREATED);
    }
    // The fast endpoint has all four events while the slow one has not
    // answered its first post.
    fast.until("four events", |g| g.len() >= 4).await;
    let slow_deliveries = app.deliveries(k, slow_ep["id"].as_str().unwrap()).await;
    assert_eq!(slow_deliveries.len(), 4);
    assert!(
        slow_deliveries
            .iter()
            .all(|d| d["status"] == "pending" && d["attempts"] == 0),
        "{slow_deliveries:?}"
    );
    // And the API answers meanwhile.
    let (s, _) = app.debit(k, w, "1.00").await;
    assert_eq!(s, StatusCode::CREATED);
    fast.until("the fifth event", |g| g.len() >= 5).await;
}

#[sqlx::test]
async fn endpoint_urls_must_be_public_https_unless_their_host_is_allowed(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let strict = EventConfig {
        endpoint_allowed_hosts: vec![],
        ..events_config()
    };
    let app = spawn_app_with(
        connect.clone(),
        config_with(strict.clone()),
        Duration::from_secs(5),
    )
    .await;
    let shop = app.shop().await;
    let k = &shop.key;
    for url in [
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/hook",
        "https://[::1]/hook",
        "https://[fd00:ec2::254]/hook",
        "https://localhost/hook",
        "http://93.184.216.34/hook",
        "ftp://example.com/hook",
        "not a url",
    ] {
        let r = app
            .post(
                k,
                "/v1/webhook-endpoints",
                &fresh(),
                &json!({"url": url, "event_types": ["*"]}),
            )
            .await;
        let p = problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert!(p.to_string().contains("url"), "{url}: {p}");
    }
    let r = app
        .post(
            k,
            "/v1/webhook-endpoints",
            &fresh(),
            &json!({"url": "https://93.184.216.34/hook", "event_types": ["wallet.nope"]}),
        )
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(app.count("SELECT count(*) FROM webhook_endpoints").await, 0);

    // Checked again at delivery: a loopback URL that got in anyway (saved
    // while the host was allowed) is never posted to.
    let (receiver, url) = Receiver::start().await;
    let lenient = spawn_app_with(connect, config_with(events_config()), Duration::from_secs(5)).await;
    let ep = lenient.endpoint(k, &url, json!(["*"])).await;
    let ep_id = ep["id"].as_str().unwrap();
    app.wallet(k, "USD", "1.00").await;
    let _stop = start_worker(&app, strict);
    let d = app
        .deliveries_until(k, ep_id, |d| d.len() == 1 && d[0]["attempts"].as_i64() >= Some(1))
        .await;
    let error = d[0]["attempt_log"][0]["error"].as_str().unwrap();
    assert!(error.contains("not an address deliveries may reach"), "{error}");
    assert!(receiver.got().is_empty());
}

#[sqlx::test]
async fn fifty_concurrent_debits_crossing_a_threshold_fire_one_alert(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let w = app.wallet(k, "USD", "100.00").await;
    let alert = app.alert(k, w, "50.00").await;
    assert_eq!(alert["armed"], true);
    let r = app
        .post(
            k,
            &format!("/v1/wallets/{w}/balance-alerts"),
            &fresh(),
            &json!({"available_below": "0.001"}),
        )
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    let answers = join_all((0..50).map(|_| app.debit(k, w, "2.00"))).await;
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::CREATED));
    assert_eq!(app.balance(k, w).await, "0.00");
    let below = app.event_page(k, "?type=wallet.balance_below").await;
    let below = below["data"].as_array().unwrap();
    assert_eq!(below.len(), 1, "{below:?}");
    // The wallet as it stood after the debit that crossed: below 50, the
    // debit before it left 50 or more.
    let available: rust_decimal::Decimal = below[0]["data"]["wallet"]["available"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(available < rust_decimal::Decimal::from(50) && available >= rust_decimal::Decimal::from(48));
    assert_eq!(below[0]["data"]["alert_id"], alert["id"]);

    // Below and falling further: quiet. Back above: one recovery.
    app.post(
        k,
        &format!("/v1/wallets/{w}/credit"),
        &fresh(),
        &json!({"amount": "10.00", "category": "top_up"}),
    )
    .await;
    app.post(
        k,
        &format!("/v1/wallets/{w}/credit"),
        &fresh(),
        &json!({"amount": "60.00", "category": "top_up"}),
    )
    .await;
    app.post(
        k,
        &format!("/v1/wallets/{w}/credit"),
        &fresh(),
        &json!({"amount": "5.00", "category": "top_up"}),
    )
    .await;
    let recovered = app.event_page(k, "?type=wallet.balance_recovered").await;
    assert_eq!(recovered["data"].as_array().unwrap().len(), 1, "{recovered}");
    let listed: Value = app
        .get(k, &format!("/v1/wallets/{w}/balance-alerts"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["armed"], true);
    // Deleted: no more alerts.
    let r = app
        .call(
            reqwest::Method::DELETE,
            k,
            &format!("/v1/wallets/{w}/balance-alerts/{}", alert["id"].as_str().unwrap()),
            &fresh(),
            None,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.debit(k, w, "70.00").await;
    let below = app.event_page(k, "?type=wallet.balance_below").await;
    assert_eq!(below["data"].as_array().unwrap().len(), 1);
}

/// A transfer writes both legs in one statement; each wallet's alerts then
/// flip as after its own leg (each wallet moved once).
#[sqlx::test]
async fn a_transfer_crossing_both_wallets_alerts_fires_each_once(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let from = app.wallet(k, "USD", "100.00").await;
    let to = app.wallet(k, "USD", "10.00").await;
    let alerts = [
        app.alert(k, from, "50.00").await["id"].clone(),
        app.alert(k, to, "50.00").await["id"].clone(),
    ];
    let body = json!({"from_wallet_id": from, "to_wallet_id": to, "amount": "60.00"});
    let r = app.post(k, "/v1/transfers", &fresh(), &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(app.balance(k, from).await, "40.00");
    assert_eq!(app.balance(k, to).await, "70.00");
    let below = app.event_page(k, "?type=wallet.balance_below").await;
    let below = below["data"].as_array().unwrap();
    assert_eq!(below.len(), 1, "{below:?}");
    assert_eq!(below[0]["data"]["alert_id"], alerts[0]);
    assert_eq!(below[0]["data"]["wallet"]["available"], "40.00");
    let recovered = app.event_page(k, "?type=wallet.balance_recovered").await;
    let recovered = recovered["data"].as_array().unwrap();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0]["data"]["alert_id"], alerts[1]);
    assert_eq!(recovered[0]["data"]["wallet"]["available"], "70.00");
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn catching_up_by_starting_after_returns_every_event_once_in_commit_order(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let k = &app.shop().await.key;
    let w = app.wallet(k, "USD", "0").await;
    let path = format!("/v1/wallets/{w}/credit");
    let bodies: Vec<(String, Value)> = (0..30)
        .map(|i| {
            (
                fresh(),
                json!({"amount": format!("{}.00", i + 1), "category": "top_up"}),
            )
        })
        .collect();
    let credits = join_all(bodies.iter().map(|(key, body)| app.post(k, &path, key, body))).await;
    assert!(credits.iter().all(|r| r.status() == StatusCode::CREATED));
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = app.event_page(k, &format!("?limit=7{after}")).await;
        let data = page["data"].as_array().unwrap();
        seen.extend(data.iter().cloned());
        if page["has_more"] != true {
            break;
        }
        after = format!("&starting_after={}", data.last().unwrap()["id"].as_str().unwrap());
    }
    assert_eq!(seen.len(), 30);
    let ids: HashSet<&str> = seen.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 30, "every event once");
    // Commit order on one wallet is its lock order: balances only rise.
    let balances: Vec<rust_decimal::Decimal> = seen
        .iter()
        .map(|e| e["data"]["balance_after"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(balances.windows(2).all(|p| p[0] < p[1]), "{balances:?}");
    // Nothing after the last one; an unknown cursor is refused.
    let last = seen.last().unwrap()["id"].as_str().unwrap();
    let page = app.event_page(k, &format!("?starting_after={last}")).await;
    assert!(page["data"].as_array().unwrap().is_empty());
    let r = app
        .get(k, &format!("/v1/events?starting_after={}", Uuid::now_v7()))
        .await;
    problem(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[sqlx::test]
async fn a_rotated_secret_signs_beside_the_old_one_during_the_grace(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let config = events_config();
    let app = spawn_app_with(connect, config_with(config.clone()), Duration::from_secs(5)).await;
    let k = &app.shop().await.key;
    let (receiver, url) = Receiver::start().await;
    let ep = app.endpoint(k, &url, json!(["wallet.credited"])).await;
    let old = ep["secret"].as_str().unwrap().to_owned();
    let ep_id = ep["id"].as_str().unwrap();
    let r = app
        .post(
            k,
            &format!("/v1/webhook-endpoints/{ep_id}/rotate-secret"),
            &fresh(),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let rotated: Value = r.json().await.unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rotated["previous_secret_expires_at"].is_string());
    app.wallet(k, "USD", "1.00").await;
    let _stop = start_worker(&app, config);
    let got = receiver.until("the credit", |g| !g.is_empty()).await;
    let header = signature::parse(&got[0].signature).unwrap();
    assert!(signature::verify(&header, &got[0].body, [new.as_str()]));
    assert!(signature::verify(&header, &got[0].body, [old.as_str()]));

    // Deleted: its pending deliveries fail, nothing more is queued.
    let r = app
        .call(
            reqwest::Method::DELETE,
            k,
            &format!("/v1/webhook-endpoints/{ep_id}"),
            &fresh(),
            None,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.wallet(k, "USD", "2.00").await;
    assert_eq!(
        app.count("SELECT count(*) FROM event_deliveries").await,
        1,
        "no delivery for a deleted endpoint"
    );
    let r = app.get(k, &format!("/v1/webhook-endpoints/{ep_id}")).await;
    problem(r, StatusCode::NOT_FOUND, "not_found").await;
}

#[sqlx::test]
async fn a_wallets_later_delivery_waits_while_its_earlier_one_is_in_flight_or_failing(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let config = events_config();
    let app = spawn_app_with(connect, config_with(config.clone()), Duration::from_secs(5)).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let (_receiver, url) = Receiver::start().await;
    let ep = app
        .endpoint(k, &url, json!(["wallet.credited", "wallet.debited"]))
        .await;
    let ep_id: Uuid = ep["id"].as_str().unwrap().parse().unwrap();
    // Wallet w: a credit, then a debit; wallet x: a credit.
    let w = app.wallet(k, "USD", "5.00").await;
    assert_eq!(app.debit(k, w, "1.00").await.0, StatusCode::CREATED);
    let x = app.wallet(k, "USD", "5.00").await;
    let type_of = |d: &deliveries::Leased| {
        let wallet = d.event.data["wallet_id"].as_str().unwrap().to_owned();
        (d.event.type_.clone(), wallet)
    };
    let lease = || deliveries::lease(&app.pool, shop.id, ep_id, 10, Duration::from_secs(30));

    // Only each wallet's first delivery goes: w's debit waits for its credit.
    let first = lease().await.unwrap();
    let mut got: Vec<(String, String)> = first.iter().map(type_of).collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("wallet.credited".to_owned(), w.to_string()),
            ("wallet.credited".to_owned(), x.to_string())
        ]
    );
    // While the credit is in flight, nothing more of w's is leased.
    assert!(lease().await.unwrap().is_empty());

    // w's credit fails (retried later), x's is delivered: w's debit still
    // waits behind the failing credit.
    let round: Vec<(deliveries::Leased, deliveries::Attempt)> = first
        .into_iter()
        .map(|d| {
            let failed = type_of(&d).1 == w.to_string();
            let attempt = deliveries::Attempt {
                at: chrono::Utc::now(),
                status_code: Some(if failed { 500 } else { 200 }),
                latency: Duration::from_millis(1),
                error: failed.then(|| "answered HTTP 500".to_owned()),
            };
            (d, attempt)
        })
        .collect();
    let recorded = deliveries::record_round(&app.pool, &round, &config)
        .await
        .unwrap();
    assert_eq!(recorded.len(), 2);
    assert!(
        lease().await.unwrap().is_empty(),
        "the debit waits for the failing credit"
    );

    // Once the credit is due again it goes first, and then the debit.
    sqlx::query("UPDATE event_deliveries SET next_attempt_at = now() WHERE status = 'pending'")
        .execute(&app.pool)
        .await
        .unwrap();
    let again = lease().await.unwrap();
    assert_eq!(
        again.iter().map(type_of).collect::<Vec<_>>(),
        [("wallet.credited".to_owned(), w.to_string())]
    );
    let delivered: Vec<_> = again
        .into_iter()
        .map(|d| {
            let attempt = deliveries::Attempt {
                at: chrono::Utc::now(),
                status_code: Some(200),
                latency: Duration::from_millis(1),
                error: None,
            };
            (d, attempt)
        })
        .collect();
    deliveries::record_round(&app.pool, &delivered, &config)
        .await
        .unwrap();
    let last = lease().await.unwrap();
    assert_eq!(
        last.iter().map(type_of).collect::<Vec<_>>(),
        [("wallet.debited".to_owned(), w.to_string())]
    );
}
