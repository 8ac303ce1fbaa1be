//! Report routes: finance and owner keys, JSON or (`Accept: text/csv`) CSV.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{Reconciliation, ReconciliationParams, ReportError, TrialBalanceParams, TrialBalanceReport};
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

/// CSV when `Accept` prefers it to JSON (q-values honoured; JSON wins a
/// tie).
fn wants_csv(headers: &HeaderMap) -> bool {
    crate::http::accept::prefers(headers, "text/csv", "application/json")
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

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Invalid(field, message) => ApiError::validation(field, message),
            ReportError::NoSuchShop => ApiError::NotFound,
            ReportError::Db(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::accept::accept;

    #[test]
    fn q_values_choose_the_format() {
        assert!(wants_csv(&accept("text/csv")));
        assert!(wants_csv(&accept("text/csv, application/json;q=0.5")));
        assert!(!wants_csv(&accept("text/csv;q=0.1, application/json")));
        assert!(!wants_csv(&accept("text/csv;q=0")));
        assert!(!wants_csv(&accept("application/json")));
        assert!(!wants_csv(&HeaderMap::new()));
    }
}
