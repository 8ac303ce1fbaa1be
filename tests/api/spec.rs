//! The spec is true to what the service answers: every operation is driven
//! through the ways a client gets it wrong, and every status it answers must
//! be documented for that operation (with a problem+json body for errors).
//! New operations are covered as soon as they are routed.

use reqwest::Method;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use utoipa::openapi::path::Operation;
use uuid::Uuid;

use crate::helpers::*;
use billing_ledger::tenants::Role;

struct Probe {
    label: &'static str,
    auth: Option<String>,
    idempotency_key: Option<&'static str>,
    query: &'static str,
    body: Option<Vec<u8>>,
}

fn probes(mutation: bool, good: &str, finance: Option<&str>) -> Vec<Probe> {
    let probe = |label, auth: Option<&str>, key, query, body: Option<&[u8]>| Probe {
        label,
        auth: auth.map(str::to_owned),
        idempotency_key: key,
        query,
        body: body.map(<[u8]>::to_vec),
    };
    let key = mutation.then_some("spec-probe");
    let mut out = vec![
        probe("no key", None, key, "", Some(b"{}")),
        probe("unknown key", Some("blk_nope_nope"), key, "", Some(b"{}")),
        probe("empty body", Some(good), key, "", Some(b"{}")),
    ];
    if let Some(finance) = finance {
        out.push(probe("finance key", Some(finance), key, "", Some(b"{}")));
    }
    if mutation {
        out.push(probe("no idempotency key", Some(good), None, "", Some(b"{}")));
        out.push(probe(
            "bad idempotency key",
            Some(good),
            Some("has space"),
            "",
            Some(b"{}"),
        ));
        out.push(probe("malformed json", Some(good), key, "", Some(b"{\"a\":")));
        out.push(probe("not an object", Some(good), key, "", Some(b"[1, 2]")));
        out.push(probe(
            "unknown field",
            Some(good),
            key,
            "",
            Some(b"{\"surprise\": 1}"),
        ));
        let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(3 << 20));
        out.push(Probe {
            label: "huge body",
            auth: Some(good.to_owned()),
            idempotency_key: key,
            query: "",
            body: Some(huge.into_bytes()),
        });
    } else {
        out.push(probe("limit 0", Some(good), None, "?limit=0", None));
        out.push(probe("limit 101", Some(good), None, "?limit=101", None));
        out.push(probe(
            "bad cursor",
            Some(good),
            None,
            "?starting_after=nope",
            None,
        ));
        out.push(probe("plain", Some(good), None, "", None));
    }
    out
}

fn operations(item: &utoipa::openapi::PathItem) -> Vec<(Method, &Operation)> {
    [
        (Method::GET, &item.get),
        (Method::POST, &item.post),
        (Method::PUT, &item.put),
        (Method::PATCH, &item.patch),
        (Method::DELETE, &item.delete),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_ref().map(|op| (m, op)))
    .collect()
}

#[sqlx::test]
async fn every_status_an_operation_answers_is_documented(_: PgPoolOptions, connect: PgConnectOptions) {
    let app = spawn_app(connect).await;
    let shop = app.shop().await;
    let finance = app.key(&shop, Role::Finance).await;
    let wallet = app.wallet(&shop.key, "USD", "5").await;
    let spec = billing_ledger::openapi::spec();

    let mut answered = 0;
    let mut undocumented = Vec::new();
    for (template, item) in &spec.paths.paths {
        let admin = template.starts_with("/v1/admin/");
        let (good, finance) = if admin {
            (ADMIN_KEY, None)
        } else {
            (shop.key.as_str(), Some(finance.as_str()))
        };
        let own_id = if admin { shop.id } else { wallet };
        for (method, op) in operations(item) {
            let mutation = method != Method::GET;
            for id in [own_id.to_string(), Uuid::now_v7().to_string()] {
                let path = template.replace("{id}", &id);
                for probe in probes(mutation, good, finance) {
                    let mut request = app
                        .client
                        .request(method.clone(), app.url(&format!("{path}{}", probe.query)));
                    if let Some(auth) = &probe.auth {
                        request = request.bearer_auth(auth);
                    }
                    if let Some(key) = probe.idempotency_key {
                        request = request.header("Idempotency-Key", format!("{key}-{}", Uuid::now_v7()));
                    }
                    if let Some(body) = probe.body {
                        request = request.header("Content-Type", "application/json").body(body);
                    }
                    let r = request.send().await.unwrap();
                    let status = r.status();
                    answered += 1;
                    if !op.responses.responses.contains_key(status.as_str()) {
                        undocumented.push(format!("{method} {template} ({}): {status}", probe.label));
                    }
                    if !status.is_success() {
                        assert_eq!(
                            r.headers()["content-type"],
                            "application/problem+json",
                            "{method} {template} ({})",
                            probe.label
                        );
                    }
                }
            }
        }
    }
    assert!(answered > 100, "{answered} answers checked");
    assert!(
        undocumented.is_empty(),
        "answers missing from openapi.yaml:\n{}",
        undocumented.join("\n")
    );
}
