//! Metrics people can read without Prometheus: `/metrics` as JSON, and
//! the last minute of requests on `/health/full`.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::*;

#[sqlx::test]
async fn metrics_as_json_and_the_last_minute_on_full_health(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    // 1 wallet + 1 credit (the helper), 3 debits, one 404 and one 422.
    let wallet = app.wallet(&shop.key, "USD", "10.00").await;
    for _ in 0..3 {
        let r = app
            .post(
                &shop.key,
                &format!("/v1/wallets/{wallet}/debit"),
                &fresh(),
                &json!({"amount": "1.00", "category": "usage"}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    assert_eq!(
        app.get(&shop.key, &format!("/v1/wallets/{}", fresh()))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let r = app.get(&shop.key, "/v1/wallets?limit=0").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Prometheus text stays the default.
    let text = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        text.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        text.text()
            .await
            .unwrap()
            .contains("# TYPE http_requests_total counter")
    );

    for asked in [
        app.client.get(app.url("/metrics?format=json")),
        app.client
            .get(app.url("/metrics"))
            .header("Accept", "application/json"),
    ] {
        let r = asked.send().await.unwrap();
        assert_eq!(r.headers()["content-type"], "application/json");
        let m: Value = r.json().await.unwrap();
        // The recorder is one per process: other tests count too, so at least ours.
        let debits: f64 = m["counters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| {
                c["name"] == "http_requests_total"
                    && c["labels"]["route"] == "/v1/wallets/{id}/debit"
                    && c["labels"]["status"] == "201"
            })
            .map(|c| c["value"].as_f64().unwrap())
            .sum();
        assert!(debits >= 3.0, "{debits}");
        let latency = m["histograms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| {
                h["name"] == "http_request_duration_seconds"
                    && h["labels"]["route"] == "/v1/wallets/{id}/debit"
            })
            .unwrap_or_else(|| panic!("no debit latency: {m}"));
        assert!(latency["count"].as_u64().unwrap() >= 3);
        let (p50, p90, p99) = (
            latency["p50"].as_f64().unwrap(),
            latency["p90"].as_f64().unwrap(),
            latency["p99"].as_f64().unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p90 && p90 <= p99, "{latency}");
        assert!(
            m["gauges"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == "db_pool_connections")
        );
    }

    // This app's own window: exactly our 7 requests (polls not counted).
    let health: Value = app
        .client
        .get(app.url("/health/full"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let minute = &health["last_minute"];
    assert_eq!(minute["requests"], 7, "{health}");
    assert_eq!(minute["client_errors"], 2);
    assert_eq!(minute["server_errors"], 0);
    assert_eq!(minute["error_rate_bp"], 0);
    assert_eq!(minute["requests_per_second_x100"], 7 * 100 / 60);
    assert!(minute["p50_latency_us"].as_u64().unwrap() <= minute["p99_latency_us"].as_u64().unwrap());
}
