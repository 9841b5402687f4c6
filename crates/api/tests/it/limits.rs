//! Slow and greedy clients: `shopfloor_api::serve` with a header read timeout, a request
//! timeout and a connection limit; rate limits per token and per client IP for failed
//! authentication (429 problem+json with Retry-After); a revoked token refused at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{json, Value};
use shopfloor_api::{router_with_limits, serve, AppState, RateLimits, Readiness, ServeLimits};
use shopfloor_eventstore::EventStore;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "limits-admin-token-0123456789";

/// The router served by `serve` on port 0 with these limits.
async fn spawn(pool: PgPool, limits: ServeLimits, rates: RateLimits) -> SocketAddr {
    let state = AppState::new(
        shopfloor_commands::CommandService::new(EventStore::new(pool)),
        Readiness::default(),
        None,
        Some(SecretString::from(ADMIN)),
        "limits",
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = router_with_limits(state, rates);
    tokio::spawn(serve(listener, router, limits, std::future::pending()));
    addr
}

/// Opens a connection that sends a request head one byte at a time, slowly, and never
/// finishes it; returns when the server closes it (or after `limit`), with how long the
/// connection lasted.
async fn slowloris(addr: SocketAddr, every: Duration, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.ok()?;
    let head = b"GET /api/v1/machines HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for byte in head.iter().cycle() {
        if start.elapsed() > limit {
            return None;
        }
        if s.write_all(&[*byte]).await.is_err() {
            return Some(start.elapsed());
        }
        // The server closing shows as EOF on read.
        let mut buf = [0u8; 256];
        match tokio::time::timeout(every, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {} // an error answer (408/400); keep going until closed
            Err(_) => {}
        }
    }
    None
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn slow_clients_do_not_exhaust_the_server(pool: PgPool) {
    let limits = ServeLimits {
        header_read_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        max_connections: 512,
        graceful_timeout: Duration::from_secs(5),
    };
    let addr = spawn(pool, limits, RateLimits::default()).await;
    // 300 connections dribbling their headers a byte every 100 ms.
    let mut slow = Vec::new();
    for _ in 0..300 {
        slow.push(tokio::spawn(slowloris(
            addr,
            Duration::from_millis(100),
            Duration::from_secs(20),
        )));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A normal request is still answered promptly.
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let start = Instant::now();
        let r = client
            .get(format!("http://{addr}/api/v1/machines"))
            .bearer_auth(ADMIN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "slow answer: {:?}",
            start.elapsed()
        );
    }
    // Every slow connection is closed by the header read timeout (2 s), not kept.
    let mut lasted = Vec::new();
    for h in slow {
        lasted.push(
            h.await
                .unwrap()
                .expect("a slow connection was never closed"),
        );
    }
    let longest = lasted.iter().max().unwrap();
    assert!(
        *longest < Duration::from_secs(5),
        "a slow connection lasted {longest:?}"
    );
    // An idle keep-alive connection is closed too.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf))
        .await
        .expect("an idle connection was kept open")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn connections_over_the_limit_get_503_and_slow_bodies_time_out(pool: PgPool) {
    let limits = ServeLimits {
        header_read_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(1),
        max_connections: 4,
        graceful_timeout: Duration::from_secs(5),
    };
    let addr = spawn(pool, limits, RateLimits::default()).await;
    // Four connections hold every slot...
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so the fifth is told at once, not left waiting.
    let start = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/problem+json"));
    assert!(start.elapsed() < Duration::from_secs(1));
    drop(held);
    // Slots free again: answered.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slots never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A body that never finishes: 503 after the request timeout (1 s), problem+json.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /api/v1/machines/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"events\": ["
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&answer).contains("\"status\":503") {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

async fn call(addr: SocketAddr, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/machines"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn assert_429(r: reqwest::Response) -> u64 {
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/problem+json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 429);
    assert!(body["title"].is_string() && body["detail"].is_string());
    retry
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn each_token_is_rate_limited_on_its_own(pool: PgPool) {
    // One request per 5 s after the burst: slow enough that a loaded machine cannot
    // refill a token while the test makes its 11 requests.
    let rates = RateLimits {
        per_principal_per_s: 0.2,
        per_principal_burst: 10.0,
        ..RateLimits::default()
    };
    let addr = spawn(pool, ServeLimits::default(), rates).await;
    let client = reqwest::Client::new();
    let issued: Value = client
        .post(format!("http://{addr}/api/v1/auth/tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": "line-3", "role": "operator" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let operator = issued["token"].as_str().unwrap().to_string();
    // The burst (10) passes, the next is refused with Retry-After.
    for _ in 0..10 {
        assert_eq!(call(addr, &operator).await.status(), 200);
    }
    assert_429(call(addr, &operator).await).await;
    // Another token is not affected (the admin used 1 of its 10).
    assert_eq!(call(addr, ADMIN).await.status(), 200);
    // After the refill (one per 5 s), the token is served again: at the time its
    // Retry-After named, give or take the clock's rounding.
    let retry = assert_429(call(addr, &operator).await).await;
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(call(addr, &operator).await.status(), 200);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn failed_authentication_is_rate_limited_per_client_ip(pool: PgPool) {
    let rates = RateLimits {
        failed_auth_per_ip_per_s: 1.0,
        failed_auth_burst: 5.0,
        ..RateLimits::default()
    };
    let addr = spawn(pool, ServeLimits::default(), rates).await;
    for i in 0..5 {
        let r = call(addr, &format!("sft_guess{i}")).await;
        assert_eq!(r.status(), 401);
    }
    // The address used up its failures: a wrong token now gets 429 (a valid one would
    // still be served: see auth_cache.rs).
    let retry = assert_429(call(addr, "sft_guess-more").await).await;
    assert!(retry <= 1, "{retry}");
    // Public routes stay open.
    let r = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // After the refill, authentication is tried again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(call(addr, ADMIN).await.status(), 200);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_revoked_token_is_refused_at_once(pool: PgPool) {
    let addr = spawn(pool, ServeLimits::default(), RateLimits::default()).await;
    let client = reqwest::Client::new();
    let issued: Value = client
        .post(format!("http://{addr}/api/v1/auth/tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": "tablet-7", "role": "operator" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = issued["token"].as_str().unwrap().to_string();
    assert_eq!(call(addr, &token).await.status(), 200);
    let r = client
        .delete(format!("http://{addr}/api/v1/auth/tokens/tablet-7"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // The very next request is refused: no cache to expire.
    let r = call(addr, &token).await;
    assert_eq!(r.status(), 401);
}
