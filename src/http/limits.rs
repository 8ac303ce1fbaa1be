//! Per-tenant rate limits (GCRA, `governor`) and load shedding.
//!
//! Two quotas per shop, both in memory per instance: a general one on every
//! authenticated route, and a stricter one on money-moving routes (debit,
//! transfer, reserve, capture, pay, approve). Requests that no shop can be
//! named for (failed authentication, the webhook receiver) are limited per
//! client IP. A limited request is refused before its body is read or its
//! Idempotency-Key claimed, so nothing is stored and its retry runs
//! normally. One shop at its limit never touches another's state.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request},
    http::{Method, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::{error::ApiError, request_id};
use crate::config::LimitConfig;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// Which quota a request counts against (a metric label; never a shop id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    General,
    Sensitive,
    Address,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::General => "general",
            Tier::Sensitive => "sensitive",
            Tier::Address => "ip",
        }
    }
}

/// The IETF draft `RateLimit-*` fields of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the quota is whole again.
    pub reset: u64,
}

/// A refusal: the standing, and when a retry can pass.
#[derive(Debug, Clone, Copy)]
pub struct Limited {
    pub tier: Tier,
    pub standing: Standing,
    pub retry_after: u64,
}

struct Bucket<K: std::hash::Hash + Eq + Clone> {
    limiter: Keyed<K>,
    burst: u32,
    /// Time to earn one request back.
    period: Duration,
}

impl<K: std::hash::Hash + Eq + Clone> Bucket<K> {
    fn new(per_second: u32, burst: u32, instances: u32) -> Option<Self> {
        let per_second = NonZeroU32::new(per_second.div_ceil(instances.max(1)))?;
        let burst = NonZeroU32::new(burst.div_ceil(instances.max(1)))?;
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Some(Bucket {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            burst: burst.get(),
            period: quota.replenish_interval(),
        })
    }

    fn check(&self, key: &K, tier: Tier) -> Result<Standing, Limited> {
        let clock = DefaultClock::default();
        match self.limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Ok(self.standing(remaining))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(clock.now());
                Err(Limited {
                    tier,
                    standing: self.standing(0),
                    retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                })
            }
        }
    }

    fn standing(&self, remaining: u32) -> Standing {
        let missing = self.burst.saturating_sub(remaining);
        let reset = self.period * missing;
        Standing {
            limit: self.burst,
            remaining,
            reset: reset.as_secs() + u64::from(reset.subsec_nanos() > 0),
        }
    }

    fn purge(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.limiter.len()
    }
}

/// The instance's limiters; a quota of 0 per second switches its tier off.
pub struct Limits {
    general: Option<Bucket<Uuid>>,
    sensitive: Option<Bucket<Uuid>>,
    address: Option<Bucket<IpAddr>>,
}

/// Money-moving operations: the stricter quota applies on top of the
/// general one.
const SENSITIVE: [(&str, &str); 6] = [
    ("POST", "/v1/wallets/{id}/debit"),
    ("POST", "/v1/transfers"),
    ("POST", "/v1/wallets/{id}/reservations"),
    ("POST", "/v1/reservations/{id}/capture"),
    ("POST", "/v1/invoices/{id}/pay"),
    ("POST", "/v1/contracts/{id}/approve"),
];

fn refused(limited: Limited) -> ApiError {
    metrics::counter!("rate_limited_requests_total", "tier" => limited.tier.as_str()).increment(1);
    request_id::set_rate(limited.standing);
    ApiError::RateLimited(limited.retry_after)
}

impl Limits {
    pub fn new(config: &LimitConfig) -> Self {
        let n = config.instances;
        Limits {
            general: Bucket::new(config.per_second, config.burst, n),
            sensitive: Bucket::new(config.sensitive_per_second, config.sensitive_burst, n),
            address: Bucket::new(config.ip_per_second, config.ip_burst, n),
        }
    }

    /// Counts an authenticated request of `shop` against its quotas; the
    /// standing of the strictest one goes out in the answer's headers.
    pub fn check_shop(&self, shop: Uuid, parts: &Parts) -> Result<(), ApiError> {
        let mut standing = None;
        if let Some(b) = &self.general {
            standing = Some(b.check(&shop, Tier::General).map_err(refused)?);
        }
        if is_sensitive(parts)
            && let Some(b) = &self.sensitive
        {
            standing = Some(b.check(&shop, Tier::Sensitive).map_err(refused)?);
        }
        if let Some(s) = standing {
            request_id::set_rate(s);
        }
        Ok(())
    }

    /// Counts a request no shop can be named for against its client IP.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), ApiError> {
        if let Some(b) = &self.address {
            let s = b.check(&ip, Tier::Address).map_err(refused)?;
            request_id::set_rate(s);
        }
        Ok(())
    }

    /// Forgets keys whose quota is whole again, so memory stays bounded by
    /// the shops and addresses active within about one burst period.
    pub fn purge(&self) -> usize {
        let mut kept = 0;
        if let Some(b) = &self.general {
            b.purge();
            kept += b.len();
        }
        if let Some(b) = &self.sensitive {
            b.purge();
            kept += b.len();
        }
        if let Some(b) = &self.address {
            b.purge();
            kept += b.len();
        }
        kept
    }
}

fn is_sensitive(parts: &Parts) -> bool {
    let Some(path) = parts.extensions.get::<MatchedPath>() else {
        return false;
    };
    SENSITIVE
        .iter()
        .any(|(m, p)| parts.method.as_str() == *m && path.as_str() == *p)
}

/// The client's address, when the server was started with connect info.
pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// The client's address as an extractor (unspecified without connect info).
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// Drops stale limiter entries every `every` until shutdown.
pub async fn purge_loop(
    limits: Arc<Limits>,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let kept = limits.purge();
                metrics::gauge!("rate_limiter_keys").set(kept as f64);
            }
            _ = shutdown.changed() => break,
        }
    }
}

/// Routes that must answer while the API sheds load.
fn always_served(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/health/full" | "/metrics")
}

/// The largest body read (axum's default limit, which the extractors apply
/// again).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// What a request may hold before it runs. A request is read whole (within
/// BODY_TIMEOUT) before it takes a slot, so a client that dawdles holds no
/// slot, pool connection or lock. Requests with an API key and those
/// without one take slots from separate pools, and one address may have
/// only MAX_PER_CLIENT requests without a key in flight: anonymous floods
/// (slow bodies, the webhook receiver, failed authentication) cannot take
/// the slots of shops' requests.
pub struct Admission {
    shops: Semaphore,
    anonymous: Semaphore,
    per_client: std::sync::Mutex<std::collections::HashMap<IpAddr, u32>>,
    max_per_client: u32,
    body_timeout: Duration,
}

impl Admission {
    pub fn new(config: &LimitConfig) -> Self {
        let slots = config.max_in_flight as usize;
        Admission {
            shops: Semaphore::new(slots),
            anonymous: Semaphore::new((slots / 2).max(1)),
            per_client: Default::default(),
            max_per_client: config.max_per_client,
            body_timeout: config.body_timeout,
        }
    }

    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<ClientTurn> {
        let mut counts = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(ip).or_default();
        if *n >= self.max_per_client {
            return None;
        }
        *n += 1;
        Some(ClientTurn {
            admission: self.clone(),
            ip,
        })
    }
}

/// One anonymous request of an address in flight; gone when dropped.
struct ClientTurn {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for ClientTurn {
    fn drop(&mut self) {
        let mut counts = self
            .admission
            .per_client
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Admits a request: the per-address cap for requests without a key, the
/// whole body within BODY_TIMEOUT (408) and MAX_BODY_BYTES (413), then a
/// slot of its pool; none free: 503 at once instead of queueing.
pub async fn admit(admission: Arc<Admission>, request: Request, next: Next) -> Response {
    if always_served(request.uri().path()) || request.method() == Method::OPTIONS {
        return next.run(request).await;
    }
    let anonymous = !request.headers().contains_key(axum::http::header::AUTHORIZATION);
    let (parts, body) = request.into_parts();
    let _turn = if anonymous {
        match admission.enter(client_ip(&parts)) {
            Some(turn) => Some(turn),
            None => {
                metrics::counter!("client_cap_refusals_total").increment(1);
                return ApiError::RateLimited(1).into_response();
            }
        }
    } else {
        None
    };
    let read = tokio::time::timeout(admission.body_timeout, axum::body::to_bytes(body, MAX_BODY_BYTES));
    let body = match read.await {
        Err(_) => {
            metrics::counter!("body_timeouts_total").increment(1);
            return ApiError::RequestTimeout.into_response();
        }
        Ok(Err(e))
            if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) =>
        {
            return ApiError::PayloadTooLarge.into_response();
        }
        Ok(Err(e)) => {
            return ApiError::BadRequest(format!("could not read the request body: {e}")).into_response();
        }
        Ok(Ok(bytes)) => bytes,
    };
    let request = Request::from_parts(parts, axum::body::Body::from(body));
    let slots = if anonymous {
        &admission.anonymous
    } else {
        &admission.shops
    };
    let Ok(_slot) = slots.try_acquire() else {
        metrics::counter!("load_shed_requests_total").increment(1);
        return ApiError::Overloaded.into_response();
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_next_is_refused_with_its_wait() {
        let b: Bucket<u8> = Bucket::new(10, 10, 1).unwrap();
        for left in (0..10).rev() {
            let s = b.check(&1, Tier::Sensitive).unwrap();
            assert_eq!((s.limit, s.remaining), (10, left));
        }
        let refused = b.check(&1, Tier::Sensitive).unwrap_err();
        assert_eq!(refused.standing.remaining, 0);
        assert!(refused.retry_after >= 1);
        // Another key is untouched.
        assert_eq!(b.check(&2, Tier::Sensitive).unwrap().remaining, 9);
    }

    #[test]
    fn purging_forgets_keys_whose_quota_is_whole_again() {
        let b: Bucket<u32> = Bucket::new(1000, 1, 1).unwrap();
        for key in 0..100 {
            b.check(&key, Tier::General).unwrap();
        }
        assert_eq!(b.len(), 100);
        // One request back per millisecond: after 50 ms every quota is whole.
        std::thread::sleep(Duration::from_millis(50));
        b.purge();
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn instances_divide_the_quota_and_zero_switches_it_off() {
        let b: Bucket<u8> = Bucket::new(100, 200, 4).unwrap();
        assert_eq!(b.burst, 50);
        assert!(Bucket::<u8>::new(0, 10, 1).is_none());
    }
}
