//! Router, state, start-up and graceful shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{Router, middleware, routing::get};
use sha2::{Digest, Sha256};
use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::{net::TcpListener, sync::watch};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    batches,
    config::{DatabaseConfig, ServeConfig},
    contracts, events,
    executor::Executor,
    http::{self, AppState, health, request_id},
    idempotency, invoices, jobs,
    openapi::ApiDoc,
    reports, reservations, telemetry,
    tenants::{self, AuthCache},
    wallets, webhooks,
};

/// Every documented route; the OpenAPI document is derived from it.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(wallets::routes::router())
        .merge(reservations::routes::router())
        .merge(batches::routes::router())
        .merge(invoices::routes::router())
        .merge(contracts::routes::router())
        .merge(webhooks::routes::router())
        .merge(events::routes::router())
        .merge(reports::routes::router())
        .merge(tenants::routes::router())
        .merge(idempotency::routes::router())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::health_full))
        .routes(routes!(health::metrics))
}

/// The whole HTTP application over `state`.
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let (api, _) = api_router().split_for_parts();
    let admission = state.admission.clone();
    let recent = state.recent.clone();
    api.route("/openapi.yaml", get(health::openapi_yaml))
        .merge(reports::page::router())
        .route_layer(middleware::from_fn(request_id::record_route))
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(middleware::from_fn(http::catch_panic))
        .layer(middleware::from_fn(move |req, next| {
            http::timeout(request_timeout, req, next)
        }))
        .layer(middleware::from_fn(move |req, next| {
            http::limits::admit(admission.clone(), req, next)
        }))
        .layer(middleware::from_fn_with_state(recent, request_id::track))
        .with_state(state)
}

/// A pool whose sessions bound every lock wait, statement and idle
/// transaction, so abandoned work (a vanished client, a timed-out request)
/// never keeps rows locked.
pub fn pool(db: &DatabaseConfig) -> PgPool {
    pool_on(db, &db.connect_options)
}

/// The reports' pool on REPORTS_DATABASE_URL's replica, with the same
/// bounds; `None` when unset (reports read the primary).
pub fn reports_pool(db: &DatabaseConfig) -> Option<PgPool> {
    db.reports_connect_options
        .as_ref()
        .map(|options| pool_on(db, options))
}

fn pool_on(db: &DatabaseConfig, options: &PgConnectOptions) -> PgPool {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let options = options.clone().options([
        ("lock_timeout", ms(db.lock_timeout)),
        ("statement_timeout", ms(db.statement_timeout)),
        (
            "idle_in_transaction_session_timeout",
            ms(db.idle_in_transaction_timeout),
        ),
    ]);
    PgPoolOptions::new()
        .max_connections(db.pool_size)
        .acquire_timeout(db.acquire_timeout)
        .connect_lazy_with(options)
}

/// `key_wait` bounds how long a duplicate waits for its key's running
/// request (LOCK_TIMEOUT, like the wait on the key's row in PostgreSQL).
/// Runs a platform command from the command line through the executor, as
/// the admin API does: one transaction with its audit row (request id
/// `cli`), under a key of its own. Answers the outcome, or the problem the
/// API would have answered.
pub async fn run_platform<C>(
    db: &DatabaseConfig,
    name: &str,
    input: &serde_json::Value,
    command: C,
) -> anyhow::Result<Result<C::Output, crate::http::error::Problem>>
where
    C: crate::executor::Command,
    C::Error: Into<crate::http::error::ApiError>,
    C::Output: serde::de::DeserializeOwned,
{
    use crate::{
        executor::{Actor, Request},
        http::error::ApiError,
        idempotency::{self, IdempotencyKey},
    };
    let executor = Executor::new(pool(db), 24, Duration::from_secs(5), 1);
    let request = Request {
        key: IdempotencyKey::internal("cli", &uuid::Uuid::now_v7().to_string()),
        fingerprint: idempotency::fingerprint("CLI", name, None, input),
        request_id: "cli".into(),
    };
    let answer = match executor
        .execute::<C, ApiError>(Actor::platform(&request.key), &request, command)
        .await
    {
        Ok(answer) => answer,
        Err(ApiError::Internal(e) | ApiError::Unavailable(e)) => return Err(e),
        Err(e) => return Ok(Err(e.problem())),
    };
    let body = &answer.response.body;
    if answer.response.status >= 400 {
        return Ok(Err(serde_json::from_slice(body)?));
    }
    Ok(Ok(serde_json::from_slice(body)?))
}

pub fn state(pool: PgPool, config: &ServeConfig, key_wait: Duration) -> AppState {
    let idem = &config.idempotency;
    AppState {
        executor: Executor::new(pool.clone(), idem.ttl_hours, key_wait, idem.max_waiters as usize),
        auth_cache: Arc::new(AuthCache::new(config.auth_cache_ttl)),
        reports_pool: pool.clone(),
        pool,
        admin_key_hash: config
            .admin_api_key
            .as_ref()
            .map(|k| Sha256::digest(k.expose().as_bytes()).to_vec()),
        idempotency: config.idempotency.clone(),
        reservations: config.reservations.clone(),
        webhooks: config.webhooks.clone(),
        destinations: crate::events::deliveries::Destinations::new(&config.events.endpoint_allowed_hosts),
        heartbeats: Arc::default(),
        limits: Arc::new(http::limits::Limits::new(&config.limits)),
        admission: Arc::new(http::limits::Admission::new(&config.limits)),
        metrics: telemetry::metrics_handle(),
        recent: Arc::default(),
    }
}

pub struct Application {
    listener: TcpListener,
    pool: PgPool,
    reports_pool: Option<PgPool>,
    config: ServeConfig,
    key_wait: Duration,
}

impl Application {
    /// Binds the listener (port 0 picks a free port) without serving yet.
    pub async fn build(config: ServeConfig, db: &DatabaseConfig) -> anyhow::Result<Self> {
        db.check_against(config.request_timeout)
            .map_err(anyhow::Error::msg)?;
        config.reservations.check().map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind_addr))?;
        Ok(Application {
            listener,
            pool: pool(db),
            reports_pool: reports_pool(db),
            config,
            key_wait: db.lock_timeout,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests finish within the grace period, stops the background jobs
    /// and closes the pool.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Application {
            listener,
            pool,
            reports_pool,
            config,
            key_wait,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut state = state(pool.clone(), &config, key_wait);
        if let Some(replica) = reports_pool {
            state.reports_pool = replica;
        }
        let beats = &state.heartbeats;
        let jobs = [
            tokio::spawn(jobs::idempotency_cleanup_loop(
                pool.clone(),
                config.idempotency.cleanup_interval,
                config.idempotency.cleanup_batch,
                beats.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(jobs::reservation_expiry_loop(
                pool.clone(),
                config.reservations.expiry_interval,
                config.reservations.expiry_batch,
                beats.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(jobs::billing_loop(
                pool.clone(),
                state.executor.clone(),
                config.billing.clone(),
                beats.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(jobs::grant_expiry_loop(
                pool.clone(),
                config.grants.grant_expiry_interval,
                config.grants.grant_expiry_batch,
                beats.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(webhooks::worker::run(
                pool.clone(),
                state.executor.clone(),
                config.webhooks.clone(),
                beats.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(jobs::journal_rollup_loop(
                pool.clone(),
                beats.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(http::limits::purge_loop(
                state.limits.clone(),
                Duration::from_secs(60),
                stop_rx.clone(),
            )),
            tokio::spawn(webhooks::worker::retention_loop(
                pool.clone(),
                config.webhooks.clone(),
                beats.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(jobs::delivery_loop(
                pool.clone(),
                config.events.clone(),
                beats.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(jobs::event_retention_loop(
                pool.clone(),
                config.events.event_retention,
                beats.clone(),
                stop_rx.clone(),
            )),
        ];
        let app = router(state, config.request_timeout);
        let mut server_stop = stop_rx.clone();
        let mut server = tokio::spawn(
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move {
                    let _ = server_stop.changed().await;
                })
                .into_future(),
        );
        tracing::info!(addr = %config.bind_addr, "serving");
        shutdown.await;
        tracing::info!(grace = ?config.shutdown_grace, "shutdown requested; finishing in-flight requests");
        let _ = stop_tx.send(true);
        let finished = tokio::time::timeout(config.shutdown_grace, &mut server).await;
        for job in jobs {
            let _ = job.await;
        }
        match finished {
            Ok(joined) => {
                joined.context("server task failed")?.context("server failed")?;
                pool.close().await;
            }
            // Not waiting for the pool: the abandoned requests still hold
            // connections. Exiting drops them, and PostgreSQL rolls their
            // transactions back.
            Err(_) => tracing::warn!("grace period over; abandoning in-flight requests"),
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
