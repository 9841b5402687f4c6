//! Rate limiting: a token bucket per principal, and one per client IP for failed
//! authentication.
//!
//! - [`per_principal`] runs inside authentication: every request of a principal (a token's
//!   name, or the bootstrap admin) takes one unit from that principal's bucket. An empty
//!   bucket answers 429 with `Retry-After`.
//! - [`failed_auth`] runs outside authentication: every 401 takes one unit from the
//!   bucket of the client's IP address; while that bucket is empty, the IP gets 429 on
//!   every route that needs a token, before its token is even looked up, so guessing
//!   tokens costs the database nothing. The client IP is the peer address of the TCP
//!   connection ([`axum::extract::ConnectInfo`], set by [`crate::serve::serve`]); a
//!   forwarded-for header is not trusted. Without a peer address (a test serving the
//!   router by other means) the IP limit does not apply.
//!
//! Buckets live in memory, per process: with several API instances behind a load
//! balancer, each enforces its own share. The maps are pruned of full (idle) buckets
//! when they grow, so an attacker spraying addresses or names cannot grow them without
//! bound.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::Principal;
use crate::error::ApiError;

/// The limits. `Default` is meant for production: generous for machines and dashboards,
/// tight for token guessing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Requests per second a principal may make, sustained.
    pub per_principal_per_s: f64,
    /// How many requests a principal may make at once after being idle.
    pub per_principal_burst: f64,
    /// Failed authentications (401) per second an IP address may make, sustained.
    pub failed_auth_per_ip_per_s: f64,
    /// How many failed authentications an IP address may make at once.
    pub failed_auth_burst: f64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            per_principal_per_s: 500.0,
            per_principal_burst: 2000.0,
            // 30 wrong tokens at once, then one every 2 s: guessing a 256-bit token
            // stays hopeless, and a misconfigured client is told why at once.
            failed_auth_per_ip_per_s: 0.5,
            failed_auth_burst: 30.0,
        }
    }
}

impl RateLimits {
    /// No limits at all (benchmarks).
    pub fn unlimited() -> Self {
        Self {
            per_principal_per_s: f64::INFINITY,
            per_principal_burst: f64::INFINITY,
            failed_auth_per_ip_per_s: f64::INFINITY,
            failed_auth_burst: f64::INFINITY,
        }
    }
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * rate).min(burst);
        self.at = now;
    }

    /// How long until one unit is there (zero when it is).
    fn wait(&self, rate: f64) -> Duration {
        if self.level >= 1.0 {
            Duration::ZERO
        } else if rate <= 0.0 {
            Duration::from_secs(3600)
        } else {
            Duration::from_secs_f64((1.0 - self.level) / rate)
        }
    }
}

/// Buckets by key.
#[derive(Debug)]
struct Buckets<K> {
    rate: f64,
    burst: f64,
    map: Mutex<HashMap<K, Bucket>>,
}

/// Beyond this many buckets, full ones are dropped.
const PRUNE_ABOVE: usize = 10_000;

impl<K: std::hash::Hash + Eq + Clone> Buckets<K> {
    fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn unlimited(&self) -> bool {
        self.rate.is_infinite() || self.burst.is_infinite()
    }

    /// Takes one unit; `Err(wait)` when the bucket is empty.
    fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.unlimited() {
            return Ok(());
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > PRUNE_ABOVE {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| {
                b.refill(rate, burst, now);
                b.level < burst
            });
        }
        let bucket = map.entry(key.clone()).or_insert(Bucket {
            level: self.burst,
            at: now,
        });
        bucket.refill(self.rate, self.burst, now);
        if bucket.level >= 1.0 {
            bucket.level -= 1.0;
            Ok(())
        } else {
            Err(bucket.wait(self.rate))
        }
    }

    /// `Err(wait)` when the bucket is empty; takes nothing.
    fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.unlimited() {
            return Ok(());
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(key) {
            None => Ok(()),
            Some(bucket) => {
                bucket.refill(self.rate, self.burst, now);
                match bucket.wait(self.rate) {
                    d if d.is_zero() => Ok(()),
                    d => Err(d),
                }
            }
        }
    }

    /// Takes one unit, going no lower than empty.
    fn charge(&self, key: &K, now: Instant) {
        let _ = self.take(key, now);
    }
}

/// The buckets of one router. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limits: RateLimits,
    principals: Arc<Buckets<String>>,
    failed_auth: Arc<Buckets<IpAddr>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            principals: Arc::new(Buckets::new(
                limits.per_principal_per_s,
                limits.per_principal_burst,
            )),
            failed_auth: Arc::new(Buckets::new(
                limits.failed_auth_per_ip_per_s,
                limits.failed_auth_burst,
            )),
        }
    }

    pub fn limits(&self) -> RateLimits {
        self.limits
    }
}

/// 429 with `Retry-After` (whole seconds, at least 1).
fn too_many(detail: &str, wait: Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail)
        .with_title("Too many requests");
    e.retry_after = Some(secs);
    metrics::counter!("shopfloor_http_rate_limited_total").increment(1);
    e.into_response()
}

/// Middleware inside authentication: one unit per request from the principal's bucket.
pub async fn per_principal(
    State(limiter): State<RateLimiter>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(principal) = request.extensions().get::<Principal>() {
        if let Err(wait) = limiter.principals.take(&principal.name, Instant::now()) {
            return too_many(
                "this token made too many requests; slow down and retry after the given time",
                wait,
            );
        }
    }
    next.run(request).await
}

/// Middleware outside authentication: an IP whose failed authentications used up its
/// bucket gets 429 before its token is looked up; every 401 takes one unit.
pub async fn failed_auth(
    State(limiter): State<RateLimiter>,
    request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let Some(ip) = ip else {
        return next.run(request).await;
    };
    if let Err(wait) = limiter.failed_auth.check(&ip, Instant::now()) {
        return too_many(
            "too many failed authentications from this address; retry after the given time",
            wait,
        );
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        limiter.failed_auth.charge(&ip, Instant::now());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let b: Buckets<u8> = Buckets::new(2.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.take(&1, t0).is_ok());
        }
        let wait = b.take(&1, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // Another key has its own bucket.
        assert!(b.take(&2, t0).is_ok());
        assert!(b.take(&1, t0 + Duration::from_millis(500)).is_ok());
        assert!(b.take(&1, t0 + Duration::from_millis(500)).is_err());
        // Refill stops at the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.take(&1, later).is_ok());
        }
        assert!(b.take(&1, later).is_err());
    }

    #[test]
    fn check_takes_nothing_and_unlimited_never_refuses() {
        let b: Buckets<u8> = Buckets::new(1.0, 1.0);
        let t0 = Instant::now();
        assert!(b.check(&1, t0).is_ok());
        b.charge(&1, t0);
        assert!(b.check(&1, t0).is_err());
        assert!(b.check(&1, t0).is_err());
        assert!(b.check(&1, t0 + Duration::from_secs(1)).is_ok());
        let u: Buckets<u8> = Buckets::new(f64::INFINITY, f64::INFINITY);
        for _ in 0..10_000 {
            assert!(u.take(&1, t0).is_ok());
        }
    }

    #[test]
    fn idle_buckets_are_pruned() {
        let b: Buckets<u32> = Buckets::new(1000.0, 1.0);
        let t0 = Instant::now();
        for k in 0..(PRUNE_ABOVE as u32 + 10) {
            b.charge(&k, t0);
        }
        b.charge(&u32::MAX, t0 + Duration::from_secs(1));
        assert!(b.map.lock().unwrap().len() < 10, "not pruned");
    }
}
