//! Report routes: finance and owner keys, JSON or (`Accept: text/csv`) CSV.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Reconciliation, ReconciliationParams, TrialBalanceParams, TrialBalanceReport};
use crate::{
    http::{AppState, error::ApiError, extract::ValidQuery},
    reports,
    tenants::Tenant,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(reconciliation))
        .routes(routes!(trial_balance))
}

/// CSV when `Accept` prefers it to JSON, q-values honoured (JSON wins a
/// tie, and `*/*` counts for JSON).
fn wants_csv(headers: &HeaderMap) -> bool {
    let (mut csv, mut json) = (0u16, 0u16);
    for value in headers.get_all(header::ACCEPT) {
        for range in value.to_str().unwrap_or("").split(',') {
            let mut parts = range.split(';');
            let kind = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(qvalue)
                .unwrap_or(1000);
            match kind.as_str() {
                "text/csv" => csv = csv.max(q),
                "application/json" | "application/*" | "*/*" => json = json.max(q),
                _ => {}
            }
        }
    }
    csv > 0 && csv > json
}

/// An RFC 9110 qvalue (`0`–`1`, at most three decimals) in thousandths.
fn qvalue(raw: &str) -> Option<u16> {
    let (whole, frac) = raw.trim().split_once('.').unwrap_or((raw.trim(), ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{frac:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn q_values_choose_the_format() {
        assert!(wants_csv(&accept("text/csv")));
        assert!(wants_csv(&accept("text/csv, application/json;q=0.5")));
        assert!(!wants_csv(&accept("text/csv;q=0.1, application/json")));
        assert!(!wants_csv(&accept("text/csv;q=0")));
        assert!(!wants_csv(&accept("application/json")));
        assert!(!wants_csv(&HeaderMap::new()));
        assert_eq!(
            (
                qvalue("0.5"),
                qvalue("1"),
                qvalue("0"),
                qvalue("1.5"),
                qvalue("0.1234")
            ),
            (Some(500), Some(1000), Some(0), None, None)
        );
    }
}

/// Reconcile a period (UTC days, `to` inclusive): per wallet opening,
/// credits, debits, closing, journal and stored balances and drift; holds
/// against `reserved`; invoices against receivables; provider payments not
/// on the books; the trial balance. `ok` with the failed checks.
/// `Accept: text/csv` answers a CSV table. Read from the reports replica
/// when one is configured: `read_from` and `replica_lag_ms` say so.
#[utoipa::path(get, path = "/v1/reports/reconciliation", tag = "reports", operation_id = "getReconciliation",
    params(ReconciliationParams),
    responses((status = 200, body = Reconciliation, content(
        (Reconciliation = "application/json"),
        (String = "text/csv")))),
    security(("api_key" = [])))]
async fn reconciliation(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    ValidQuery(q): ValidQuery<ReconciliationParams>,
) -> Result<Response, ApiError> {
    let report = reports::reconciliation(
        &state.reports_pool,
        tenant.shop_id,
        q.from,
        q.to,
        q.currency.as_deref(),
    )
    .await?;
    if wants_csv(&headers) {
        let mut response = reports::csv::reconciliation(&report).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        return Ok(response);
    }
    Ok(Json(report).into_response())
}

/// Every account's balance per currency at the end of a day (UTC).
#[utoipa::path(get, path = "/v1/reports/trial-balance", tag = "reports", operation_id = "getTrialBalance",
    params(TrialBalanceParams),
    responses((status = 200, body = TrialBalanceReport)),
    security(("api_key" = [])))]
async fn trial_balance(
    State(state): State<AppState>,
    tenant: Tenant,
    ValidQuery(q): ValidQuery<TrialBalanceParams>,
) -> Result<Json<TrialBalanceReport>, ApiError> {
    Ok(Json(
        reports::trial_balance(
            &state.reports_pool,
            tenant.shop_id,
            q.as_of,
            q.currency.as_deref(),
        )
        .await?,
    ))
}
