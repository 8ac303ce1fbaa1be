//! The real binary: logs (request ids in, secrets out) and graceful shutdown.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::*;

struct Server {
    child: Child,
    base: String,
    output: Arc<Mutex<String>>,
}

/// DATABASE_URL pointed at this test's own database.
pub fn database_url(connect: &PgConnectOptions) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{}", connect.get_database().unwrap())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(connect: &PgConnectOptions) -> Server {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_billing-ledger"))
        .arg("serve")
        .env("DATABASE_URL", database_url(connect))
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("ADMIN_API_KEY", ADMIN_KEY)
        .env("LOG_FORMAT", "json")
        .env("SHUTDOWN_GRACE", "10s")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = Arc::new(Mutex::new(String::new()));
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let output = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut out = output.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
    }
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{base}/healthz"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Server { child, base, output };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not start: {}", output.lock().unwrap());
}

impl Server {
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait(mut self) -> (std::process::ExitStatus, String) {
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (status, self.output.lock().unwrap().clone());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("server did not exit: {}", self.output.lock().unwrap());
    }
}

#[sqlx::test]
async fn logs_carry_request_ids_and_never_secrets(pool_opts: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app_with(connect.clone(), serve_config(), Duration::from_secs(5)).await;
    let shop = app.shop().await;
    drop(pool_opts);
    let server = start(&connect).await;
    let client = reqwest::Client::new();

    let r = client
        .post(format!("{}/v1/wallets", server.base))
        .bearer_auth(&shop.key)
        .header("X-Request-Id", "trace-me-42")
        .header("Idempotency-Key", "log-test")
        .json(&json!({"customer_ref": "c", "currency": "USD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client
        .post(format!("{}/v1/admin/shops", server.base))
        .bearer_auth(ADMIN_KEY)
        .header("Idempotency-Key", "log-test")
        .json(&json!({"name": "Logged"}))
        .send()
        .await
        .unwrap();
    let created: serde_json::Value = r.json().await.unwrap();
    let new_secret = created["api_key"]["secret"].as_str().unwrap().to_owned();
    let r = client
        .get(format!("{}/v1/wallets", server.base))
        .bearer_auth("blk_wrong_guess")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    server.terminate();
    let (status, logs) = server.wait();
    assert!(status.success());
    let line = logs
        .lines()
        .find(|l| l.contains("trace-me-42") && l.contains("request finished"))
        .expect("the request id is logged");
    let entry: serde_json::Value = serde_json::from_str(line).expect("logs are JSON");
    let fields = &entry["fields"];
    assert_eq!(fields["method"], "POST");
    assert_eq!(fields["route"], "/v1/wallets");
    assert_eq!(fields["status"], 201);
    assert_eq!(fields["shop_id"], shop.id.to_string());
    assert!(fields["latency_ms"].is_number());
    let secret_part = shop.key.rsplit('_').next().unwrap();
    for secret in [
        shop.key.as_str(),
        secret_part,
        ADMIN_KEY,
        &new_secret,
        "blk_wrong_guess",
        "Bearer",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
    assert!(
        !logs.to_lowercase().contains("authorization"),
        "no header dump in the logs"
    );
}

#[sqlx::test]
async fn sigterm_lets_in_flight_requests_finish(pool_opts: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app_with(connect.clone(), serve_config(), Duration::from_secs(5)).await;
    let shop = app.shop().await;
    drop(pool_opts);
    let server = start(&connect).await;

    // Hold the API key table so an authenticated request is in flight.
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let in_flight = tokio::spawn({
        let (url, key) = (format!("{}/v1/wallets", server.base), shop.key.clone());
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
        }
    });
    let mut waiting = false;
    for _ in 0..100 {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM api_keys%'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if n > 0 {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(waiting, "the request is in flight");

    server.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = reqwest::Client::new()
        .get(format!("{}/healthz", server.base))
        .send()
        .await;
    assert!(refused.is_err(), "no new connections once shutdown began");
    blocker.commit().await.unwrap();

    let r = in_flight.await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the in-flight request finished");
    let (status, logs) = server.wait();
    assert!(status.success(), "exit 0 after a graceful stop: {logs}");
    assert!(
        logs.contains("shutdown requested") && logs.contains("stopped"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_malformed_setting_stops_start_up_with_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_billing-ledger"))
        .arg("serve")
        .env("DATABASE_URL", "postgres://u:hunter2hunter2@127.0.0.1:1/db")
        .env("BIND_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--bind-addr") && stderr.contains("not-an-address"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));

    let out = Command::new(env!("CARGO_BIN_EXE_billing-ledger"))
        .arg("serve")
        .env("DATABASE_URL", "mysql://u:hunter2hunter2@host/db")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        (out.status.code(), stderr.trim().lines().count()),
        (Some(2), 1),
        "{stderr}"
    );
    assert!(
        stderr.contains("--database-url") && !stderr.contains("hunter2"),
        "the URL's secret is not echoed: {stderr}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_billing-ledger"))
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        (out.status.code(), stderr.trim().lines().count()),
        (Some(2), 1),
        "{stderr}"
    );
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[sqlx::test]
async fn expired_records_go_at_start_up_and_on_demand(pool_opts: PgPoolOptions, connect: PgConnectOptions) {
    let pool = pool_opts.connect_with(connect.clone()).await.unwrap();
    let expire = |key: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO idempotency_keys (shop_id, key, fingerprint, response_status, expires_at)
                 VALUES (gen_random_uuid(), $1, '\\x00', 201, now() - interval '1 minute')",
            )
            .bind(key)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    expire("stale-1").await;
    let count = || sqlx::query_scalar::<_, i64>("SELECT count(*) FROM idempotency_keys").fetch_one(&pool);

    // `serve` runs the cleanup job once at start.
    let server = start(&connect).await;
    let mut gone = false;
    for _ in 0..100 {
        if count().await.unwrap() == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.terminate();
    server.wait();
    assert!(gone, "the start-up cleanup deleted the expired record");

    // `billing-ledger cleanup` runs it once.
    expire("stale-2").await;
    expire("stale-3").await;
    let out = Command::new(env!("CARGO_BIN_EXE_billing-ledger"))
        .args(["cleanup", "--batch", "1"])
        .env("DATABASE_URL", database_url(&connect))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("deleted 2 expired"));
    assert_eq!(count().await.unwrap(), 0);
}

#[tokio::test]
async fn database_limits_must_end_before_the_request_does() {
    let out = Command::new(env!("CARGO_BIN_EXE_billing-ledger"))
        .args(["serve", "--request-timeout", "5s", "--statement-timeout", "5s"])
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("BIND_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("STATEMENT_TIMEOUT") && stderr.contains("REQUEST_TIMEOUT"),
        "{stderr}"
    );
}

/// Values a full cycle sends that must never reach the logs verbatim.
const PII: [&str; 10] = [
    "pii-customer-4411",
    "pii-meta-value-7",
    "pii-description-3",
    "pii-memo-5",
    "pii-title-9",
    "pii-terms-2",
    "pii-note-8",
    "pii-reason-6",
    "pii-webhook-data-1",
    "pii-line-0",
];

#[sqlx::test]
async fn a_full_cycle_logs_no_secret_and_no_pii(pool_opts: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app_with(connect.clone(), serve_config(), Duration::from_secs(5)).await;
    let shop = app.shop().await;
    drop(pool_opts);
    let server = start(&connect).await;
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let key = shop.key.clone();
    let call =
        |method: reqwest::Method, path: String, body: serde_json::Value, if_match: Option<&'static str>| {
            let mut req = client
                .request(method, format!("{base}{path}"))
                .bearer_auth(&key)
                .header("Idempotency-Key", fresh())
                .json(&body);
            if let Some(tag) = if_match {
                req = req.header("If-Match", tag);
            }
            async move {
                let r = req.send().await.unwrap();
                let status = r.status();
                (status, r.json::<serde_json::Value>().await.unwrap_or_default())
            }
        };
    use reqwest::Method;
    let [cust, meta, desc, memo, title, terms, note, reason, hook, line] = PII;
    let (s, w) = call(
        Method::POST,
        "/v1/wallets".into(),
        json!({"customer_ref": cust, "currency": "USD", "metadata": {"k": meta}}),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let w = w["id"].as_str().unwrap().to_owned();
    let (_, w2) = call(
        Method::POST,
        "/v1/wallets".into(),
        json!({"customer_ref": cust, "currency": "USD"}),
        None,
    )
    .await;
    let w2 = w2["id"].as_str().unwrap().to_owned();
    let steps = vec![
        (
            Method::POST,
            format!("/v1/wallets/{w}/credit"),
            json!({"amount": "50.00", "category": "top_up", "description": desc, "metadata": {"k": meta}}),
            None,
        ),
        (
            Method::POST,
            format!("/v1/wallets/{w}/debit"),
            json!({"amount": "1.00", "category": "usage", "description": desc}),
            None,
        ),
        (
            Method::POST,
            format!("/v1/wallets/{w}/debit"),
            json!({"amount": "1000.00", "category": "usage", "description": desc}),
            None,
        ),
        (
            Method::POST,
            format!("/v1/wallets/{w}/debit"),
            json!({"amount": "1.001", "category": "usage", "description": desc}),
            None,
        ),
        (
            Method::POST,
            "/v1/transfers".into(),
            json!({"from_wallet_id": w, "to_wallet_id": w2, "amount": "1.00", "description": desc}),
            None,
        ),
        (
            Method::POST,
            "/v1/wallets".into(),
            json!({"customer_ref": cust, "currency": "USD", "metadata": {"k": [meta]}}),
            None,
        ),
    ];
    for (method, path, body, tag) in steps {
        let (s, b) = call(method.clone(), path.clone(), body, tag).await;
        assert!(s.is_success() || s.is_client_error(), "{method} {path}: {s} {b}");
    }
    let (_, r) = call(
        Method::POST,
        format!("/v1/wallets/{w}/reservations"),
        json!({"amount": "2.00", "description": desc, "metadata": {"k": meta}}),
        None,
    )
    .await;
    let r = r["id"].as_str().unwrap().to_owned();
    call(
        Method::POST,
        format!("/v1/reservations/{r}/capture"),
        json!({"amount": "1.00"}),
        None,
    )
    .await;
    let (_, inv) = call(
        Method::POST,
        "/v1/invoices".into(),
        json!({"customer_ref": cust, "currency": "USD", "memo": memo,
        "metadata": {"k": meta}, "lines": [{"description": line, "quantity": "1", "unit_amount": "3.00"}]}),
        None,
    )
    .await;
    let inv = inv["id"].as_str().unwrap().to_owned();
    call(
        Method::POST,
        format!("/v1/invoices/{inv}/finalize"),
        json!({}),
        None,
    )
    .await;
    call(
        Method::POST,
        format!("/v1/invoices/{inv}/pay"),
        json!({"method": "wallet", "wallet_id": w}),
        None,
    )
    .await;
    call(
        Method::POST,
        format!("/v1/invoices/{inv}/pay"),
        json!({"method": "card"}),
        None,
    )
    .await;
    let contract = json!({"customer_ref": cust, "title": title, "currency": "USD", "amount": "5.00",
        "billing_interval": "one_time", "starts_on": "2026-12-01", "terms": terms, "metadata": {"k": meta}});
    let (_, c) = call(Method::POST, "/v1/contracts".into(), contract.clone(), None).await;
    let c = c["id"].as_str().unwrap().to_owned();
    call(Method::POST, format!("/v1/contracts/{c}/submit"), json!({}), None).await;
    call(
        Method::POST,
        format!("/v1/contracts/{c}/approve"),
        json!({"note": note}),
        Some("\"1\""),
    )
    .await;
    call(
        Method::POST,
        format!("/v1/contracts/{c}/approve"),
        json!({"note": note}),
        Some("\"2\""),
    )
    .await;
    let (_, c2) = call(Method::POST, "/v1/contracts".into(), contract, None).await;
    let c2 = c2["id"].as_str().unwrap().to_owned();
    call(
        Method::POST,
        format!("/v1/contracts/{c2}/reject"),
        json!({"reason": reason}),
        Some("\"1\""),
    )
    .await;
    call(
        Method::POST,
        format!("/v1/contracts/{c2}/cancel"),
        json!({}),
        None,
    )
    .await;
    let (_, secret) = call(
        Method::POST,
        "/v1/webhook-secrets".into(),
        json!({"provider": "acme"}),
        None,
    )
    .await;
    let secret = secret["secret"].as_str().unwrap().to_owned();
    // A delivery whose data is malformed: its failure is recorded, not logged.
    let body = serde_json::to_vec(
        &json!({"id": "evt_pii", "type": "payment.succeeded", "created": 1,
        "data": {"invoice_id": inv, "amount": {"x": hook}, "currency": "USD", "payment_ref": hook}}),
    )
    .unwrap();
    let signature = billing_ledger::webhooks::signature::sign(&secret, chrono::Utc::now().timestamp(), &body);
    let r = client
        .post(format!("{base}/v1/webhooks/acme/{}", shop.id))
        .header("Webhook-Signature", &signature)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for _ in 0..100 {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE attempts > 0")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if n > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = client
        .get(format!("{base}/v1/contracts?customer_ref={cust}"))
        .bearer_auth("blk_wrong_guess")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    server.terminate();
    let (status, logs) = server.wait();
    assert!(status.success());
    assert!(
        logs.contains("webhook event failed"),
        "the failure is logged (without its reason)"
    );
    let signature_hex = signature.rsplit('=').next().unwrap();
    for value in PII.iter().copied().chain([
        shop.key.as_str(),
        secret.as_str(),
        signature_hex,
        "blk_wrong_guess",
    ]) {
        assert!(!logs.contains(value), "{value} leaked into the logs");
    }
}
