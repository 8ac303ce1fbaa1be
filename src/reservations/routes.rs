//! Reservation HTTP routes: extract, run one command or query, answer.

use axum::{Json, extract::State, response::Response};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::ReservationError;
use super::{
    CaptureReservation, CreateReservation, ReleaseReservation, Reservation, ReservationListParams,
    commands::{Capture, Hold, Release},
};
use crate::{
    http::{
        AppState,
        error::ApiError,
        extract::{PathId, ValidQuery},
        idempotency::Idempotent,
    },
    pagination::{Page, PageParams},
    reservations,
    tenants::Tenant,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_reservation, list_reservations))
        .routes(routes!(get_reservation))
        .routes(routes!(capture_reservation))
        .routes(routes!(release_reservation))
}

/// Hold credits of a wallet until captured, released or expired. Fails
/// with 422 `insufficient_funds` when `available` does not cover the
/// amount. A `reservation_key` used before answers with that reservation
/// (200) when the wallet and amount match, else 409
/// `reservation_key_conflict` naming the field that differs.
#[utoipa::path(post, path = "/v1/wallets/{id}/reservations", tag = "reservations",
    operation_id = "createReservation",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = CreateReservation,
    responses(
        (status = 201, description = "The new hold", body = Reservation, headers(("Location" = String)),
            links(("GetReservation" = (operation_id = "getReservation", parameters(("id" = "$response.body#/id")))), ("CaptureReservation" = (operation_id = "captureReservation", parameters(("id" = "$response.body#/id")))), ("ReleaseReservation" = (operation_id = "releaseReservation", parameters(("id" = "$response.body#/id")))))),
        (status = 200, description = "The existing hold with this reservation_key", body = Reservation, headers(("Location" = String)))),
    security(("api_key" = [])))]
async fn create_reservation(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    Idempotent(request, input): Idempotent<CreateReservation>,
) -> Result<Response, ApiError> {
    let config = state.reservations.clone();
    state
        .execute(
            tenant,
            request,
            Hold {
                tenant,
                wallet_id: id,
                input,
                config,
            },
        )
        .await
}

/// A wallet's reservations, newest first.
#[utoipa::path(get, path = "/v1/wallets/{id}/reservations", tag = "reservations",
    operation_id = "listReservations",
    params(("id" = Uuid, Path), ReservationListParams),
    responses((status = 200, body = Page<Reservation>)),
    security(("api_key" = [])))]
async fn list_reservations(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    ValidQuery(q): ValidQuery<ReservationListParams>,
) -> Result<Json<Page<Reservation>>, ApiError> {
    let page = PageParams {
        limit: q.limit,
        starting_after: q.starting_after,
    };
    let mut conn = state.pool.acquire().await?;
    Ok(Json(
        reservations::list(&mut conn, tenant, id, q.status, &page).await?,
    ))
}

/// Retrieve a reservation.
#[utoipa::path(get, path = "/v1/reservations/{id}", tag = "reservations",
    operation_id = "getReservation",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Reservation)),
    security(("api_key" = [])))]
async fn get_reservation(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
) -> Result<Json<Reservation>, ApiError> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(reservations::get(&mut conn, tenant, id).await?))
}

/// Capture a hold: debit `amount` (default the whole hold, at most the
/// hold) and free the rest. 409 `invalid_state` when it is captured or
/// released; 409 `reservation_expired` at or after `expires_at` (the hold
/// is then released).
#[utoipa::path(post, path = "/v1/reservations/{id}/capture", tag = "reservations",
    operation_id = "captureReservation",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = CaptureReservation,
    responses((status = 200, body = Reservation,
        links(("GetReservation" = (operation_id = "getReservation", parameters(("id" = "$response.body#/id")))), ("GetWallet" = (operation_id = "getWallet", parameters(("id" = "$response.body#/wallet_id"))))))),
    security(("api_key" = [])))]
async fn capture_reservation(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    Idempotent(request, input): Idempotent<CaptureReservation>,
) -> Result<Response, ApiError> {
    let capture = Capture {
        tenant,
        reservation_id: id,
        input,
    };
    state.execute(tenant, request, capture).await
}

/// Release a hold; nothing is posted. 409 `invalid_state` when it is
/// captured or released; 409 `reservation_expired` when it expired.
#[utoipa::path(post, path = "/v1/reservations/{id}/release", tag = "reservations",
    operation_id = "releaseReservation",
    params(("id" = Uuid, Path), crate::openapi::IdempotencyKeyHeader),
    request_body = ReleaseReservation,
    responses((status = 200, body = Reservation,
        links(("GetReservation" = (operation_id = "getReservation", parameters(("id" = "$response.body#/id")))), ("GetWallet" = (operation_id = "getWallet", parameters(("id" = "$response.body#/wallet_id"))))))),
    security(("api_key" = [])))]
async fn release_reservation(
    State(state): State<AppState>,
    tenant: Tenant,
    PathId(id): PathId,
    Idempotent(request, _input): Idempotent<ReleaseReservation>,
) -> Result<Response, ApiError> {
    let release = Release {
        tenant,
        reservation_id: id,
    };
    state.execute(tenant, request, release).await
}

impl From<ReservationError> for ApiError {
    fn from(e: ReservationError) -> Self {
        match e {
            ReservationError::NotFound => ApiError::NotFound,
            ReservationError::KeyConflict { .. } => ApiError::ReservationKeyConflict(e.to_string()),
            ReservationError::InvalidState(_) => ApiError::InvalidState(e.to_string()),
            ReservationError::Expired => ApiError::ReservationExpired,
            ReservationError::Invalid(field, message) => ApiError::validation(field, message),
            ReservationError::Amount(e) => ApiError::money(e.field, e.error),
            ReservationError::Store(e) => e.into(),
            ReservationError::Wallet(e) => e.into(),
        }
    }
}
