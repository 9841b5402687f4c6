//! Rate limiting (GCRA, the `governor` crate): one limit per principal, and one per client
//! IP address on failed authentications only.
//!
//! - [`per_principal`] runs inside authentication: every request of a principal (a token's
//!   name, or the bootstrap admin) is checked against that principal's limiter. The limit
//!   is the token's own ([`TokenLimit`], set when it was issued) or else the process's
//!   default ([`RateLimits::per_principal_per_s`] and `_burst`, settings
//!   `SHOPFLOOR_RATE_PER_TOKEN` and `SHOPFLOOR_RATE_BURST_PER_TOKEN`). Over the limit the
//!   answer is 429 with `Retry-After`.
//! - [`failed_auth`] runs outside authentication and only ever counts failures: the token
//!   is always checked first, so a valid token is never refused because others behind the
//!   same address (one NAT, one proxy) failed. Every 401 takes one unit from the bucket of
//!   the client's IP address; once that bucket is empty, the 401 becomes a 429 with
//!   `Retry-After`, which tells a guesser to slow down and tells it nothing else. The client
//!   IP is the peer address of the TCP connection ([`axum::extract::ConnectInfo`], set by
//!   [`crate::serve::serve`]); a forwarded-for header is not trusted. Without a peer
//!   address (a test serving the router by other means) the IP limit does not apply.
//!
//! Limiters live in memory, per process: with several API instances behind a load
//! balancer, each enforces its own share. Principals are only ever those of valid tokens
//! (bounded by the token table); the per-IP map is pruned of idle addresses when it grows,
//! so an attacker spraying addresses cannot grow it without bound.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use crate::auth::Principal;
use crate::error::ApiError;

/// Default sustained requests per second of one token: above what the engine commits
/// (about 15k commands/s on two cores), so that one PLC gateway or MES integration on
/// one token is never throttled below the engine's capacity.
pub const DEFAULT_PER_TOKEN_PER_S: f64 = 20_000.0;
/// Default burst of one token: one second's worth.
pub const DEFAULT_PER_TOKEN_BURST: f64 = 20_000.0;

/// The limits of one process. `Default` is meant for production: generous for machines
/// and dashboards, tight for token guessing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Requests per second a principal may make, sustained, unless its token carries its
    /// own limit. Infinite: no limit.
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
            per_principal_per_s: DEFAULT_PER_TOKEN_PER_S,
            per_principal_burst: DEFAULT_PER_TOKEN_BURST,
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

/// A token's own limit, stored with it (`api_tokens.rate_per_s`, `rate_burst`) and put in
/// the request's extensions by authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenLimit {
    /// Sustained requests per second.
    pub per_s: NonZeroU32,
    /// Requests at once after being idle.
    pub burst: NonZeroU32,
}

/// The GCRA quota of `rate` per second with `burst`; `None` when either is infinite (no
/// limit). Rates below one per hour are taken as one per hour, bursts below one as one.
pub fn quota(rate: f64, burst: f64) -> Option<Quota> {
    if !rate.is_finite() || !burst.is_finite() {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / rate.max(1.0 / 3600.0));
    let burst =
        NonZeroU32::new(burst.clamp(1.0, f64::from(u32::MAX)) as u32).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period.max(Duration::from_nanos(1))).map(|q| q.allow_burst(burst))
}

impl TokenLimit {
    fn quota(self) -> Option<Quota> {
        quota(f64::from(self.per_s.get()), f64::from(self.burst.get()))
    }
}

/// One principal's limiter, with the quota it was made for (a token issued again with
/// another limit gets a new limiter).
#[derive(Debug)]
struct PrincipalLimiter {
    quota: Quota,
    limiter: DefaultDirectRateLimiter,
}

/// Beyond this many tracked addresses, idle ones are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// The limiters of one router. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limits: RateLimits,
    default_quota: Option<Quota>,
    clock: DefaultClock,
    principals: Arc<RwLock<HashMap<String, Arc<PrincipalLimiter>>>>,
    failed_auth: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            default_quota: quota(limits.per_principal_per_s, limits.per_principal_burst),
            clock: DefaultClock::default(),
            principals: Arc::default(),
            failed_auth: quota(limits.failed_auth_per_ip_per_s, limits.failed_auth_burst)
                .map(|q| Arc::new(DefaultKeyedRateLimiter::hashmap(q))),
        }
    }

    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// Takes one request from `principal`'s limiter; `Err(wait)` when over its limit.
    fn take(&self, principal: &str, own: Option<TokenLimit>) -> Result<(), Duration> {
        let Some(quota) = own.and_then(TokenLimit::quota).or(self.default_quota) else {
            return Ok(());
        };
        let existing = self
            .principals
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(principal)
            .filter(|l| l.quota == quota)
            .cloned();
        let limiter = match existing {
            Some(l) => l,
            None => {
                let mut map = self.principals.write().unwrap_or_else(|e| e.into_inner());
                let entry = map.entry(principal.to_string()).or_insert_with(|| {
                    Arc::new(PrincipalLimiter {
                        quota,
                        limiter: DefaultDirectRateLimiter::direct(quota),
                    })
                });
                if entry.quota != quota {
                    *entry = Arc::new(PrincipalLimiter {
                        quota,
                        limiter: DefaultDirectRateLimiter::direct(quota),
                    });
                }
                entry.clone()
            }
        };
        limiter
            .limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Counts one failed authentication from `ip`; `Err(wait)` when the address is over
    /// its limit.
    fn fail(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.failed_auth else {
            return Ok(());
        };
        if limiter.len() > PRUNE_ABOVE {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
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

/// Middleware inside authentication: one request from the principal's limit.
pub async fn per_principal(
    State(limiter): State<RateLimiter>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(principal) = request.extensions().get::<Principal>() {
        let own = request.extensions().get::<TokenLimit>().copied();
        if let Err(wait) = limiter.take(&principal.name, own) {
            return too_many(
                "this token made too many requests; slow down and retry after the given time",
                wait,
            );
        }
    }
    next.run(request).await
}

/// Middleware outside authentication: every 401 counts against the client's address, and
/// a 401 beyond the address's limit becomes a 429. Valid tokens are never refused here.
pub async fn failed_auth(
    State(limiter): State<RateLimiter>,
    request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let response = next.run(request).await;
    match ip {
        Some(ip) if response.status() == StatusCode::UNAUTHORIZED => match limiter.fail(ip) {
            Ok(()) => response,
            Err(wait) => too_many(
                "too many failed authentications from this address; retry after the given time",
                wait,
            ),
        },
        _ => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_s: f64, burst: f64) -> RateLimiter {
        RateLimiter::new(RateLimits {
            per_principal_per_s: per_s,
            per_principal_burst: burst,
            failed_auth_per_ip_per_s: per_s,
            failed_auth_burst: burst,
        })
    }

    #[test]
    fn a_principal_gets_its_burst_then_waits_for_the_rate() {
        let l = limiter(2.0, 3.0);
        for _ in 0..3 {
            assert!(l.take("a", None).is_ok());
        }
        let wait = l.take("a", None).unwrap_err();
        assert!(
            wait > Duration::from_millis(300) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // Another principal has its own limiter.
        assert!(l.take("b", None).is_ok());
    }

    #[test]
    fn a_token_limit_overrides_the_default() {
        let l = limiter(1.0, 1.0);
        let own = TokenLimit {
            per_s: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(50).unwrap(),
        };
        for _ in 0..50 {
            assert!(l.take("gateway", Some(own)).is_ok());
        }
        assert!(l.take("gateway", Some(own)).is_err());
        // Without its own limit the default applies (burst 1).
        assert!(l.take("tablet", None).is_ok());
        assert!(l.take("tablet", None).is_err());
    }

    #[test]
    fn the_default_lets_a_gateway_through_at_engine_speed() {
        let l = RateLimiter::new(RateLimits::default());
        for _ in 0..15_000 {
            assert!(l.take("gateway", None).is_ok());
        }
    }

    #[test]
    fn unlimited_never_refuses_and_failures_are_counted_per_address() {
        let u = RateLimiter::new(RateLimits::unlimited());
        for _ in 0..10_000 {
            assert!(u.take("x", None).is_ok());
            assert!(u.fail(IpAddr::from([10, 0, 0, 1])).is_ok());
        }
        let l = limiter(1.0, 2.0);
        let a = IpAddr::from([10, 0, 0, 1]);
        assert!(l.fail(a).is_ok());
        assert!(l.fail(a).is_ok());
        assert!(l.fail(a).is_err());
        assert!(l.fail(IpAddr::from([10, 0, 0, 2])).is_ok());
    }

    #[test]
    fn quotas_of_odd_settings_are_sane() {
        assert!(quota(f64::INFINITY, 10.0).is_none());
        let q = quota(0.5, 30.0).unwrap();
        assert_eq!(q.replenish_interval(), Duration::from_secs(2));
        assert_eq!(q.burst_size().get(), 30);
        let q = quota(20_000.0, 0.0).unwrap();
        assert_eq!(q.replenish_interval(), Duration::from_micros(50));
        assert_eq!(q.burst_size().get(), 1);
    }
}
