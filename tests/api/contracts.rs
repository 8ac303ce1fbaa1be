//! Contracts: optimistic concurrency through `If-Match`, one conditional
//! UPDATE per transition. Concurrent requests really run at the same time;
//! the tests assert counts and outcomes, never timings.

use futures_util::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::*;

impl TestApp {
    /// POST `/v1/contracts/{id}/{action}` under a fresh key.
    async fn act(&self, key: &str, id: &str, action: &str, if_match: Option<&str>, body: Value) -> Answer {
        let path = format!("/v1/contracts/{id}/{action}");
        self.call(Method::POST, key, &path, &fresh(), if_match, body)
            .await
    }

    async fn contract(&self, key: &str, interval: &str) -> String {
        let a = self
            .call(
                Method::POST,
                key,
                "/v1/contracts",
                &fresh(),
                None,
                json!({"customer_ref": "cust-9", "title": "Annual support", "currency": "USD",
                       "amount": "1200.50", "billing_interval": interval, "starts_on": chrono::Utc::now().date_naive()}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["id"].as_str().unwrap().to_owned()
    }

    /// A contract pending approval, at version 2.
    async fn pending(&self, key: &str, interval: &str) -> String {
        let id = self.contract(key, interval).await;
        let a = self.act(key, &id, "submit", Some("\"1\""), json!({})).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.etag.as_deref(), Some("\"2\""));
        id
    }

    async fn contract_row(&self, id: &str) -> (String, i64) {
        sqlx::query_as("SELECT status, version FROM contracts WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn audits(&self, id: &str, action: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) FROM audit_log WHERE entity_id = '{id}' AND action = '{action}'"
        ))
        .await
    }

    async fn invoices_of(&self, id: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) FROM invoices WHERE metadata->>'contract_id' = '{id}'"
        ))
        .await
    }
}

#[sqlx::test]
async fn a_contract_moves_through_its_life_with_etags(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let create = app
        .call(
            Method::POST,
            k,
            "/v1/contracts",
            &fresh(),
            None,
            json!({"customer_ref": "cust-1", "title": "Setup", "currency": "USD", "amount": "99.90",
                   "billing_interval": "one_time", "starts_on": "2026-12-01", "terms": "net 30",
                   "metadata": {"deal": "D-7"}}),
        )
        .await;
    assert_eq!(create.status, StatusCode::CREATED, "{}", create.body);
    assert_eq!(create.etag.as_deref(), Some("\"1\""));
    assert_eq!(create.body["status"], "draft");
    assert_eq!(create.body["version"], 1);
    assert_eq!(create.body["amount"], "99.90");
    let id = create.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/contracts/{id}");

    // Reads carry the ETag; a current copy is answered 304, a stale one 200.
    let r = app.get(k, &path).await;
    assert_eq!(r.headers()["etag"], "\"1\"");
    for (tag, status) in [
        ("\"1\"", StatusCode::NOT_MODIFIED),
        ("W/\"1\"", StatusCode::NOT_MODIFIED),
        ("\"0\"", StatusCode::OK),
    ] {
        let r = app
            .client
            .get(app.url(&path))
            .bearer_auth(k)
            .header("If-None-Match", tag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "If-None-Match {tag}");
        assert_eq!(r.headers()["etag"], "\"1\"");
    }

    // Edit the draft (the bare form of the tag is accepted too).
    let patch = app
        .call(
            Method::PATCH,
            k,
            &path,
            &fresh(),
            Some("1"),
            json!({"amount": "150.00", "terms": ""}),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK, "{}", patch.body);
    assert_eq!(patch.etag.as_deref(), Some("\"2\""));
    assert_eq!(patch.body["amount"], "150.00");
    assert_eq!(patch.body["terms"], Value::Null);
    assert_eq!(patch.body["metadata"]["deal"], "D-7");

    let submit = app.act(k, &id, "submit", None, json!({})).await;
    assert_eq!(submit.status, StatusCode::OK);
    assert_eq!(submit.body["status"], "pending_approval");
    assert_eq!(submit.etag.as_deref(), Some("\"3\""));
    let edit_late = app
        .call(
            Method::PATCH,
            k,
            &path,
            &fresh(),
            Some("\"3\""),
            json!({"title": "x"}),
        )
        .await;
    assert_eq!(edit_late.status, StatusCode::CONFLICT);
    assert_eq!(edit_late.body["code"], "invalid_state");

    // Approve: the one-time contract's invoice is issued with it.
    let approve_key = fresh();
    let approve_path = format!("{path}/approve");
    let approve = app
        .call(
            Method::POST,
            k,
            &approve_path,
            &approve_key,
            Some("\"3\""),
            json!({"note": "ok by finance"}),
        )
        .await;
    assert_eq!(approve.status, StatusCode::OK, "{}", approve.body);
    assert_eq!(approve.etag.as_deref(), Some("\"4\""));
    assert_eq!(approve.body["status"], "approved");
    assert_eq!(approve.body["approval_note"], "ok by finance");
    let invoice_id = approve.body["invoice_id"].as_str().unwrap().to_owned();
    let invoice: Value = app
        .get(k, &format!("/v1/invoices/{invoice_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(invoice["status"], "open");
    assert_eq!(invoice["total"], "150.00");
    assert_eq!(invoice["customer_ref"], "cust-1");
    assert!(invoice["number"].as_str().unwrap().starts_with("INV-"));
    assert_eq!(invoice["lines"][0]["description"], "Setup");

    // The replay repeats status, ETag and body.
    let replay = app
        .call(
            Method::POST,
            k,
            &approve_path,
            &approve_key,
            Some("\"3\""),
            json!({"note": "ok by finance"}),
        )
        .await;
    assert!(replay.replayed);
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.etag.as_deref(), Some("\"4\""));
    assert_eq!(replay.body, approve.body);
    // Another If-Match is another request: the key may not be reused.
    let other = app
        .call(
            Method::POST,
            k,
            &approve_path,
            &approve_key,
            Some("\"4\""),
            json!({"note": "ok by finance"}),
        )
        .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.body["code"], "idempotency_key_reused");

    let cancel = app.act(k, &id, "cancel", Some("\"4\""), json!({})).await;
    assert_eq!(cancel.status, StatusCode::OK, "{}", cancel.body);
    assert_eq!(cancel.body["status"], "cancelled");
    assert_eq!(cancel.etag.as_deref(), Some("\"5\""));

    // Every change is audited with the acting key and the version it moved from.
    let trail: Vec<(String, Option<i64>, i64, bool)> = sqlx::query_as(
        "SELECT action, (detail->>'from_version')::bigint, (detail->>'version')::bigint,
                api_key_id IS NOT NULL
           FROM audit_log WHERE entity_id = $1::uuid ORDER BY id",
    )
    .bind(&id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let expected = [
        ("contract.create", None, 1),
        ("contract.update", Some(1), 2),
        ("contract.submit", Some(2), 3),
        ("contract.approve", Some(3), 4),
        ("contract.cancel", Some(4), 5),
    ];
    assert_eq!(trail.len(), expected.len(), "{trail:?}");
    for ((action, from, to, keyed), (want_action, want_from, want_to)) in trail.iter().zip(expected) {
        assert_eq!(
            (action.as_str(), *from, *to, *keyed),
            (want_action, want_from, want_to, true)
        );
    }
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn preconditions_are_required_and_checked(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let id = app.pending(k, "monthly").await;
    let path = format!("/v1/contracts/{id}");

    // Missing or `*`: 428, and nothing changes.
    for tag in [None, Some("*")] {
        for (method, p, body) in [
            (Method::PATCH, path.clone(), json!({"title": "x"})),
            (Method::POST, format!("{path}/approve"), json!({})),
            (Method::POST, format!("{path}/reject"), json!({"reason": "no"})),
            (Method::POST, format!("{path}/cancel"), json!({})),
        ] {
            let a = app.call(method, k, &p, &fresh(), tag, body).await;
            assert_eq!(
                a.status,
                StatusCode::PRECONDITION_REQUIRED,
                "{p} {tag:?}: {}",
                a.body
            );
            assert_eq!(a.body["code"], "precondition_required");
        }
    }
    // Not a version: 400.
    for tag in ["\"abc\"", "W/\"2\"", "\"1\", \"2\""] {
        let a = app.act(k, &id, "approve", Some(tag), json!({})).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{tag}");
    }
    // Stale: 412 with the current version, in the body and the ETag.
    let stale = app.act(k, &id, "approve", Some("\"1\""), json!({})).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.body["code"], "version_mismatch");
    assert_eq!(stale.body["current_version"], 2);
    assert_eq!(stale.etag.as_deref(), Some("\"2\""));
    let stale_submit = app.act(k, &id, "submit", Some("\"1\""), json!({})).await;
    assert_eq!(stale_submit.status, StatusCode::PRECONDITION_FAILED);
    // Right version, wrong state: 409.
    let resubmit = app.act(k, &id, "submit", Some("\"2\""), json!({})).await;
    assert_eq!(resubmit.status, StatusCode::CONFLICT);
    assert_eq!(resubmit.body["code"], "invalid_state");
    // Unknown id, and another shop's contract: 404.
    let unknown = app.act(k, &fresh(), "approve", Some("\"2\""), json!({})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let other = app.shop().await;
    let theirs = app
        .act(&other.key, &id, "approve", Some("\"2\""), json!({}))
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get(&other.key, &path).await.status(), StatusCode::NOT_FOUND);

    assert_eq!(app.contract_row(&id).await, ("pending_approval".into(), 2));
    assert_eq!(app.count("SELECT count(*) FROM audit_log WHERE action LIKE 'contract.approve%' OR action = 'contract.reject'").await, 0);

    // A stale precondition stores nothing: the same key with the fresh
    // ETag runs.
    let key = fresh();
    let approve_path = format!("{path}/approve");
    let first = app
        .call(Method::POST, k, &approve_path, &key, Some("\"1\""), json!({}))
        .await;
    assert_eq!(first.status, StatusCode::PRECONDITION_FAILED);
    let retry = app
        .call(Method::POST, k, &approve_path, &key, Some("\"2\""), json!({}))
        .await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
    assert_eq!(
        retry.body["invoice_id"],
        Value::Null,
        "a monthly contract issues no invoice here"
    );
}

#[sqlx::test]
async fn of_twenty_concurrent_approvals_exactly_one_wins(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let id = app.pending(&shop.key, "one_time").await;
    let answers =
        join_all((0..20).map(|_| app.act(&shop.key, &id, "approve", Some("\"2\""), json!({})))).await;
    let won: Vec<&Answer> = answers.iter().filter(|a| a.status == StatusCode::OK).collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for a in &answers {
        assert!(
            matches!(
                a.status,
                StatusCode::OK | StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT
            ),
            "{}: {}",
            a.status,
            a.body
        );
    }
    assert_eq!(won[0].etag.as_deref(), Some("\"3\""));
    assert_eq!(app.contract_row(&id).await, ("approved".into(), 3));
    assert_eq!(app.audits(&id, "contract.approve").await, 1);
    assert_eq!(app.invoices_of(&id).await, 1);
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn approve_and_reject_racing_have_one_winner_each_round(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let (mut approved, mut rejected) = (0, 0);
    for _ in 0..12 {
        let id = app.pending(k, "one_time").await;
        let requests = (0..6).map(|i| {
            let (action, body) = if i % 2 == 0 {
                ("approve", json!({}))
            } else {
                ("reject", json!({"reason": "over budget"}))
            };
            app.act(k, &id, action, Some("\"2\""), body)
        });
        let answers = join_all(requests).await;
        let winners: Vec<&Answer> = answers.iter().filter(|a| a.status == StatusCode::OK).collect();
        assert_eq!(winners.len(), 1);
        let status = winners[0].body["status"].as_str().unwrap().to_owned();
        assert_eq!(app.contract_row(&id).await, (status.clone(), 3));
        let decisions = app.audits(&id, "contract.approve").await + app.audits(&id, "contract.reject").await;
        assert_eq!(decisions, 1);
        let invoices = app.invoices_of(&id).await;
        if status == "approved" {
            approved += 1;
            assert_eq!(invoices, 1);
        } else {
            assert_eq!(status, "rejected");
            assert_eq!(winners[0].body["rejection_reason"], "over budget");
            rejected += 1;
            assert_eq!(invoices, 0);
        }
    }
    assert_eq!(approved + rejected, 12);
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn the_one_time_invoice_exists_once_after_concurrent_approvals_and_replays(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let id = app.pending(&shop.key, "one_time").await;
    let path = format!("/v1/contracts/{id}/approve");
    let keys: Vec<String> = (0..10).map(|_| fresh()).collect();
    let approve_all = || {
        join_all(keys.iter().map(|key| {
            app.call(
                Method::POST,
                &shop.key,
                &path,
                key,
                Some("\"2\""),
                json!({"note": "go"}),
            )
        }))
    };
    let first = approve_all().await;
    let replays = approve_all().await;
    let winner = first.iter().position(|a| a.status == StatusCode::OK).unwrap();
    assert_eq!(first.iter().filter(|a| a.status == StatusCode::OK).count(), 1);
    for (i, (a, b)) in first.iter().zip(&replays).enumerate() {
        if i == winner {
            // The winner's replay repeats its answer and ETag.
            assert!(b.replayed);
            assert_eq!((b.status, &b.etag, &b.body), (a.status, &a.etag, &a.body));
        } else {
            // A failed precondition was not stored: the retry runs, and
            // still loses.
            assert!(!b.replayed);
            assert_eq!(b.status, StatusCode::PRECONDITION_FAILED);
            assert_eq!(b.body["current_version"], 3);
        }
    }
    assert_eq!(app.invoices_of(&id).await, 1);
    assert_eq!(app.audits(&id, "contract.approve").await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM journal_transactions WHERE kind = 'invoice.finalize'")
            .await,
        1,
        "receivables → revenue posted once"
    );
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn an_approval_whose_invoice_fails_does_not_happen(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let id = app.pending(&shop.key, "one_time").await;
    inject(
        &app.pool,
        &[
            "CREATE FUNCTION fail_finalize() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.number IS NOT NULL THEN RAISE EXCEPTION 'injected failure at finalize'; END IF;
             RETURN NEW;
         END $$",
            "CREATE TRIGGER fail_finalize BEFORE UPDATE ON invoices FOR EACH ROW EXECUTE FUNCTION fail_finalize()",
        ],
    )
    .await;
    let key = fresh();
    let path = format!("/v1/contracts/{id}/approve");
    let a = app
        .call(Method::POST, &shop.key, &path, &key, Some("\"2\""), json!({}))
        .await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.contract_row(&id).await, ("pending_approval".into(), 2));
    assert_eq!(app.invoices_of(&id).await, 0);
    assert_eq!(app.audits(&id, "contract.approve").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM journal_transactions").await, 0);

    // Once the fault is gone the same key approves, and issues the invoice.
    inject(&app.pool, &["DROP TRIGGER fail_finalize ON invoices"]).await;
    let a = app
        .call(Method::POST, &shop.key, &path, &key, Some("\"2\""), json!({}))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(app.invoices_of(&id).await, 1);
    app.assert_ledger_consistent().await;
}

#[sqlx::test]
async fn drafts_edit_amounts_within_their_currency_and_lists_filter(
    _: PgPoolOptions,
    connect: PgConnectOptions,
) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let k = &shop.key;
    let id = app.contract(k, "yearly").await;
    let path = format!("/v1/contracts/{id}");
    // 1200.50 USD cannot become JPY without a new amount.
    let a = app
        .call(
            Method::PATCH,
            k,
            &path,
            &fresh(),
            Some("\"1\""),
            json!({"currency": "JPY"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert!(a.body["errors"]["currency"].is_array(), "{}", a.body);
    let a = app
        .call(
            Method::PATCH,
            k,
            &path,
            &fresh(),
            Some("\"1\""),
            json!({"amount": "10.001"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body["errors"]["amount"].is_array(), "{}", a.body);
    let a = app
        .call(
            Method::PATCH,
            k,
            &path,
            &fresh(),
            Some("\"1\""),
            json!({"currency": "JPY", "amount": "5000"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        (a.body["currency"].as_str(), a.body["amount"].as_str()),
        (Some("JPY"), Some("5000"))
    );
    let a = app
        .call(
            Method::PATCH,
            k,
            &path,
            &fresh(),
            Some("\"1\""),
            json!({"title": "late"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(app.contract_row(&id).await, ("draft".into(), 2));

    // Lists filter by status and customer and page by cursor.
    let pending = app.pending(k, "monthly").await;
    let all: Value = app.get(k, "/v1/contracts?limit=1").await.json().await.unwrap();
    assert_eq!(all["data"][0]["id"], pending.as_str());
    assert_eq!(all["has_more"], true);
    let next: Value = app
        .get(k, &format!("/v1/contracts?limit=1&starting_after={pending}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(next["data"][0]["id"], id.as_str());
    assert_eq!(next["has_more"], false);
    let drafts: Value = app
        .get(k, "/v1/contracts?status=draft")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(drafts["data"].as_array().unwrap().len(), 1);
    assert_eq!(drafts["data"][0]["id"], id.as_str());
    let none: Value = app
        .get(k, "/v1/contracts?customer_ref=nobody")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["data"].as_array().unwrap().len(), 0);
    let other = app.shop().await;
    let theirs: Value = app.get(&other.key, "/v1/contracts").await.json().await.unwrap();
    assert_eq!(theirs["data"].as_array().unwrap().len(), 0);
}
