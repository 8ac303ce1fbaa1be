//! The last minute of requests, for operators who run no Prometheus:
//! `/health/full` shows its request rate, error rate and latency
//! percentiles. One window per instance, in memory, pruned as it goes.

use std::{
    collections::VecDeque,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Serialize;
use utoipa::ToSchema;

const WINDOW: Duration = Duration::from_secs(60);
/// A bound on memory under any load (about 12 MB); beyond it the oldest
/// samples go first, so the figures then cover a shorter time.
const MAX_SAMPLES: usize = 500_000;

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    latency_us: u32,
    status: u16,
}

#[derive(Default)]
pub struct Recent {
    samples: Mutex<VecDeque<Sample>>,
}

/// The last 60 seconds of this instance's requests (health and metrics
/// polls not counted).
#[derive(Debug, Serialize, ToSchema)]
pub struct LastMinute {
    pub requests: u64,
    /// Requests per second over the minute, in hundredths (`1250` is
    /// 12.50/s), so the figure stays an integer.
    pub requests_per_second_x100: u64,
    /// Answers 400–499.
    pub client_errors: u64,
    /// Answers 500 and above.
    pub server_errors: u64,
    /// `server_errors` per 10,000 requests (basis points).
    pub error_rate_bp: u64,
    pub p50_latency_us: Option<u32>,
    pub p99_latency_us: Option<u32>,
}

impl Recent {
    pub fn record(&self, latency: Duration, status: u16) {
        let now = Instant::now();
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        prune(&mut samples, now);
        if samples.len() >= MAX_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(Sample {
            at: now,
            latency_us: u32::try_from(latency.as_micros()).unwrap_or(u32::MAX),
            status,
        });
    }

    pub fn last_minute(&self) -> LastMinute {
        let mut latencies: Vec<u32>;
        let (mut client_errors, mut server_errors) = (0u64, 0u64);
        {
            let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
            prune(&mut samples, Instant::now());
            latencies = Vec::with_capacity(samples.len());
            for s in samples.iter() {
                latencies.push(s.latency_us);
                match s.status {
                    400..=499 => client_errors += 1,
                    500.. => server_errors += 1,
                    _ => {}
                }
            }
        }
        let requests = latencies.len() as u64;
        LastMinute {
            requests,
            requests_per_second_x100: requests * 100 / WINDOW.as_secs(),
            client_errors,
            server_errors,
            error_rate_bp: (server_errors * 10_000).checked_div(requests).unwrap_or(0),
            p50_latency_us: percentile(&mut latencies, 50),
            p99_latency_us: percentile(&mut latencies, 99),
        }
    }
}

fn prune(samples: &mut VecDeque<Sample>, now: Instant) {
    while samples.front().is_some_and(|s| now.duration_since(s.at) > WINDOW) {
        samples.pop_front();
    }
}

/// The nearest-rank percentile.
fn percentile(values: &mut [u32], p: usize) -> Option<u32> {
    if values.is_empty() {
        return None;
    }
    let rank = (values.len() * p).div_ceil(100).max(1) - 1;
    Some(*values.select_nth_unstable(rank).1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rates_and_percentiles_of_the_window() {
        let recent = Recent::default();
        for ms in 1..=100u64 {
            let status = match ms {
                1..=3 => 503,
                4..=10 => 404,
                _ => 200,
            };
            recent.record(Duration::from_millis(ms), status);
        }
        let m = recent.last_minute();
        assert_eq!((m.requests, m.client_errors, m.server_errors), (100, 7, 3));
        assert_eq!(m.error_rate_bp, 300);
        assert_eq!(m.requests_per_second_x100, 166);
        assert_eq!(m.p50_latency_us, Some(50_000));
        assert_eq!(m.p99_latency_us, Some(99_000));
        assert_eq!(Recent::default().last_minute().p50_latency_us, None);
    }
}
