//! The token cache and rate limits of ADR 0033, and the issue-16 defects of the HTTP edge:
//! - verified tokens are cached, and a revocation still reaches every API instance on the
//!   same database within a second;
//! - the default per-token limit lets a gateway through at engine speed, and a token may
//!   carry its own limit;
//! - failed logins from an address never lock out a valid token from it (item 12);
//! - a revoked token's live feed closes within a second, on any instance (item 8);
//! - a refused command (409) is not logged at ERROR (item 11).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use futures::StreamExt;
use secrecy::SecretString;
use serde_json::{json, Value};
use shopfloor_api::{router_with_limits, serve, AppState, RateLimits, Readiness, ServeLimits};
use shopfloor_eventstore::EventStore;
use shopfloor_projections::live::LiveHub;
use sqlx::PgPool;
use tower::ServiceExt;

const ADMIN: &str = "auth-cache-admin-token-0123456789";

/// One API instance on `pool`, served on its own socket (with peer addresses).
struct Instance {
    addr: SocketAddr,
}

impl Instance {
    async fn spawn(pool: &PgPool, limits: RateLimits, cache_ttl: Option<Duration>) -> Self {
        let mut state = state(pool);
        if let Some(ttl) = cache_ttl {
            state.tokens = state.tokens.clone().with_cache_ttl(ttl);
        }
        state.live = Some(LiveHub::new(10));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = router_with_limits(state, limits);
        tokio::spawn(serve(
            listener,
            router,
            ServeLimits::default(),
            std::future::pending(),
        ));
        Self { addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn get(&self, path: &str, token: &str) -> u16 {
        reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn issue(&self, name: &str, extra: Value) -> Value {
        let mut body = json!({ "name": name, "role": "operator" });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let r = reqwest::Client::new()
            .post(self.url("/api/v1/auth/tokens"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }

    async fn revoke(&self, name: &str) {
        let r = reqwest::Client::new()
            .delete(self.url(&format!("/api/v1/auth/tokens/{name}")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
}

fn state(pool: &PgPool) -> AppState {
    AppState::new(
        shopfloor_commands::CommandService::new(EventStore::new(pool.clone())),
        Readiness::default(),
        None,
        Some(SecretString::from(ADMIN)),
        "authcache",
    )
}

/// Polls `path` on `instance` with `token` until it answers 401; how long that took.
async fn until_refused(instance: &Instance, token: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let status = instance.get("/api/v1/reason-codes", token).await;
        if status == 401 {
            return start.elapsed();
        }
        assert_eq!(status, 200);
        assert!(start.elapsed() < limit, "still served after {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_verified_token_is_cached_and_revocation_reaches_every_instance_within_a_second(
    pool: PgPool,
) {
    let a = Instance::spawn(&pool, RateLimits::default(), None).await;
    let b = Instance::spawn(&pool, RateLimits::default(), None).await;
    // The longest cache time allowed, to see the cache at work.
    let c = Instance::spawn(&pool, RateLimits::default(), Some(Duration::from_secs(1))).await;
    let issued = a.issue("gateway-1", json!({})).await;
    let token = issued["token"].as_str().unwrap();
    // Usable at once everywhere (no negative caching), and now verified on b and c.
    assert_eq!(b.get("/api/v1/reason-codes", token).await, 200);
    let cached_at = Instant::now();
    assert_eq!(c.get("/api/v1/reason-codes", token).await, 200);
    assert_eq!(a.get("/api/v1/reason-codes", token).await, 200);

    a.revoke("gateway-1").await;
    let revoked_at = Instant::now();
    // c trusts its verification for up to a second: it answers without a lookup.
    let c_status = c.get("/api/v1/reason-codes", token).await;
    if cached_at.elapsed() < Duration::from_millis(800) {
        assert_eq!(c_status, 200, "the verified token was not cached");
    }
    // On the instance that revoked it: refused at once.
    assert_eq!(a.get("/api/v1/reason-codes", token).await, 401);
    // On another instance (default cache time): within a second of the revocation.
    let waited = until_refused(&b, token, Duration::from_secs(3)).await;
    let since_revocation = revoked_at.elapsed();
    eprintln!("revocation reached the other instance after {since_revocation:?}");
    assert!(
        since_revocation < Duration::from_secs(1),
        "b served a revoked token for {since_revocation:?} (polled {waited:?})"
    );
    // And on c, once its verification is older than its cache time (or sooner, when a
    // background re-verification sees the revocation): never later than its cache time
    // after it verified the token, plus one lookup.
    until_refused(&c, token, Duration::from_secs(3)).await;
    let c_after = cached_at.elapsed();
    assert!(
        c_after < Duration::from_millis(1200),
        "c served the token {c_after:?} after verifying it"
    );
}

/// Sends `n` requests with `token` through the router (no socket), `concurrency` at a
/// time; the statuses and how long it took.
async fn burst(
    router: &axum::Router,
    token: &str,
    n: usize,
    concurrency: usize,
) -> (Vec<u16>, Duration) {
    let start = Instant::now();
    let statuses = futures::stream::iter(0..n)
        .map(|_| {
            let router = router.clone();
            let request = Request::get("/api/v1/reason-codes")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            async move { router.oneshot(request).await.unwrap().status().as_u16() }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    (statuses, start.elapsed())
}

async fn issue_in_process(router: &axum::Router, body: Value) -> String {
    let r = router
        .clone()
        .oneshot(
            Request::post("/api/v1/auth/tokens")
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["token"].as_str().unwrap().to_string()
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn the_default_limit_lets_a_gateway_through_at_engine_speed(pool: PgPool) {
    let router = router_with_limits(state(&pool), RateLimits::default());
    let token = issue_in_process(
        &router,
        json!({ "name": "plc-gateway", "role": "operator" }),
    )
    .await;
    let (statuses, took) = burst(&router, &token, 5_000, 32).await;
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(refused, 0, "{refused} of 5000 got 429 in {took:?}");
    eprintln!("5000 requests of one token in {took:?}, none refused");
    assert!(statuses.iter().all(|s| *s == 200));
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_token_carries_its_own_limit(pool: PgPool) {
    let a = Instance::spawn(&pool, RateLimits::default(), None).await;
    let issued = a
        .issue(
            "slow-tablet",
            json!({ "rate_limit": { "per_s": 1, "burst": 5 } }),
        )
        .await;
    assert_eq!(issued["rate_limit"], json!({ "per_s": 1, "burst": 5 }));
    let tablet = issued["token"].as_str().unwrap().to_string();
    let other = a.issue("fast-gateway", json!({})).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..5 {
        assert_eq!(a.get("/api/v1/reason-codes", &tablet).await, 200);
    }
    let r = reqwest::Client::new()
        .get(a.url("/api/v1/reason-codes"))
        .bearer_auth(&tablet)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // The other token has the default limit.
    for _ in 0..20 {
        assert_eq!(a.get("/api/v1/reason-codes", &other).await, 200);
    }
    // The limit is stored and listed; the burst defaults to the rate.
    let third = a
        .issue("mes", json!({ "rate_limit": { "per_s": 300 } }))
        .await;
    assert_eq!(third["rate_limit"], json!({ "per_s": 300, "burst": 300 }));
    let list: Value = reqwest::Client::new()
        .get(a.url("/api/v1/auth/tokens"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(row("slow-tablet")["rate_per_s"], 1);
    assert_eq!(row("slow-tablet")["rate_burst"], 5);
    assert_eq!(row("fast-gateway")["rate_per_s"], Value::Null);
    // Nonsense limits are 400 problems naming the field.
    let r = reqwest::Client::new()
        .post(a.url("/api/v1/auth/tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": "zero", "role": "operator", "rate_limit": { "per_s": 0 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body.to_string().contains("rate_limit.per_s"), "{body}");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn failed_logins_from_an_address_do_not_lock_out_a_valid_token(pool: PgPool) {
    // The default burst (30) with a refill slow enough (one per 20 s, against the
    // default's one per 2 s) that a loaded machine cannot refill it during the test.
    let limits = RateLimits {
        failed_auth_per_ip_per_s: 0.05,
        ..RateLimits::default()
    };
    let a = Instance::spawn(&pool, limits, None).await;
    let valid = a.issue("line-4", json!({})).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    // 35 wrong tokens from this address (30 are allowed at once): the last ones
    // are told to slow down.
    let mut statuses = Vec::new();
    for i in 0..35 {
        statuses.push(
            a.get("/api/v1/reason-codes", &format!("sft_wrong{i}"))
                .await,
        );
    }
    assert!(statuses[..30].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[30..].iter().all(|s| *s == 429), "{statuses:?}");
    // A valid token from the same address is served.
    assert_eq!(a.get("/api/v1/reason-codes", &valid).await, 200);
    assert_eq!(a.get("/api/v1/reason-codes", ADMIN).await, 200);
    // Guessing stays limited.
    assert_eq!(a.get("/api/v1/reason-codes", "sft_wrong-again").await, 429);
}

/// Opens `/api/v1/live` with `token`, waits for its `ready` event, runs `then`, and
/// returns how long after `then` the stream ended.
async fn live_closes_after<F: std::future::Future<Output = ()>>(
    on: &Instance,
    token: &str,
    then: F,
) -> Duration {
    let r = reqwest::Client::new()
        .get(on.url("/api/v1/live"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("event: ready") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("no ready event")
            .expect("stream ended before ready")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    then.await;
    let revoked = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the live feed of a revoked token stayed open 5 s"
    );
    revoked.elapsed()
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_revoked_tokens_live_feed_closes_within_a_second(pool: PgPool) {
    let a = Instance::spawn(&pool, RateLimits::default(), None).await;
    let b = Instance::spawn(&pool, RateLimits::default(), None).await;
    // Revoked on another instance.
    let token = a.issue("wallboard-1", json!({})).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let took = live_closes_after(&a, &token, b.revoke("wallboard-1")).await;
    eprintln!("live feed closed {took:?} after a revocation on another instance");
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    // Revoked on the same instance: at once.
    let token = a.issue("wallboard-2", json!({})).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let took = live_closes_after(&a, &token, a.revoke("wallboard-2")).await;
    eprintln!("live feed closed {took:?} after a revocation on its own instance");
    assert!(took < Duration::from_millis(300), "closed after {took:?}");
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Issue 16, item 11. The API logs refusals once, at DEBUG (`middleware::finish`); the
/// command service must not log them at ERROR either: its `#[instrument(err)]` on
/// `CommandService::run` (`crates/commands/src/service.rs`) needs `err(level = "debug",
/// Display)` (or no `err`: the API logs server errors itself). Until that change this test
/// fails, naming the offending line.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_refused_command_is_not_logged_as_an_error(pool: PgPool) {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    // The test runs on one thread (sqlx::test's current-thread runtime), server included.
    let _guard = tracing::subscriber::set_default(subscriber);
    let a = Instance::spawn(&pool, RateLimits::default(), None).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client
            .post(a.url(path))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    let r = post(
        "/api/v1/production-orders",
        json!({ "order_id": "PO-LOG", "product_id": "P", "quantity": 5 }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    // Completing an order that never started is refused: 409.
    let r = post("/api/v1/production-orders/PO-LOG/complete", json!({}))
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    // So is an inventory update below zero.
    let r = client
        .patch(a.url("/api/v1/inventory/update"))
        .bearer_auth(ADMIN)
        .json(&json!({ "item_id": "RM-1", "item_type": "raw", "location": "A", "delta": -5, "reason": "count" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(
        text.contains("request refused"),
        "nothing captured:\n{text}"
    );
    let errors: Vec<&str> = text.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(
        errors.is_empty(),
        "client refusals logged at ERROR:\n{}",
        errors.join("\n")
    );
}
