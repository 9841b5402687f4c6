//! Per-request overhead of the HTTP edge, measured in-process (no socket, no client):
//! the whole router is called through `tower::ServiceExt::oneshot` by 32 concurrent
//! tasks, so what is timed is the server's own work per request: request ids, problem
//! finishing, metrics, token resolution, the rate limit, idempotency claims and the
//! handler.
//!
//! Run: `cargo bench -p shopfloor-api --bench overhead` (needs PostgreSQL at
//! `DATABASE_URL`, default `postgres://root@127.0.0.1:5432/postgres`; it creates and
//! drops its own database). Scenarios:
//! - `static route, bootstrap admin`: `GET /api/v1/reason-codes` with the bootstrap
//!   admin token (compared by hash, never looked up): the floor;
//! - `static route, issued token`: the same with a token issued through the API (looked
//!   up in `api_tokens`, or found in the token cache);
//! - `refused write` / `refused write + Idempotency-Key`: `POST /api/v1/machines/events`
//!   with a body the validation refuses (400, nothing written), without and with a fresh
//!   `Idempotency-Key` each time (the claim and the stored answer).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use secrecy::SecretString;
use shopfloor_api::{router_with_limits, AppState, RateLimits, Readiness};
use shopfloor_eventstore::EventStore;
use sqlx::postgres::PgPoolOptions;
use tower::ServiceExt;

const TASKS: usize = 32;
const ADMIN: &str = "bench-overhead-admin-0123456789";

#[derive(Clone, Copy)]
enum Scenario {
    StaticAdmin,
    StaticIssued,
    RefusedWrite,
    RefusedWriteKeyed,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::StaticAdmin => "static route, bootstrap admin",
            Scenario::StaticIssued => "static route, issued token",
            Scenario::RefusedWrite => "refused write",
            Scenario::RefusedWriteKeyed => "refused write + Idempotency-Key",
        }
    }

    fn request(self, admin: &str, issued: &str, i: usize) -> Request<Body> {
        let get = |token: &str| {
            Request::builder()
                .method(Method::GET)
                .uri("/api/v1/reason-codes")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .expect("request")
        };
        let post = |key: Option<String>| {
            let mut b = Request::builder()
                .method(Method::POST)
                .uri("/api/v1/machines/events")
                .header("authorization", format!("Bearer {issued}"))
                .header("content-type", "application/json");
            if let Some(k) = key {
                b = b.header("idempotency-key", k);
            }
            b.body(Body::from(
                r#"{"event_type":"parts_produced","machine_id":"M-1","timestamp":"not a time","good":1,"scrap":0}"#,
            ))
            .expect("request")
        };
        match self {
            Scenario::StaticAdmin => get(admin),
            Scenario::StaticIssued => get(issued),
            Scenario::RefusedWrite => post(None),
            Scenario::RefusedWriteKeyed => post(Some(format!("bench-{}-{i}", std::process::id()))),
        }
    }

    fn expected(self) -> u16 {
        match self {
            Scenario::StaticAdmin | Scenario::StaticIssued => 200,
            Scenario::RefusedWrite | Scenario::RefusedWriteKeyed => 400,
        }
    }
}

/// Runs `total` requests from [`TASKS`] tasks; prints req/s, p50 and p99.
async fn run(router: &Router, scenario: Scenario, issued: &str, total: usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let router = router.clone();
        let next = next.clone();
        let issued = issued.to_string();
        set.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return lat;
                }
                let t0 = Instant::now();
                let r = router
                    .clone()
                    .oneshot(scenario.request(ADMIN, &issued, i))
                    .await
                    .expect("infallible");
                let status = r.status().as_u16();
                let _ = axum::body::to_bytes(r.into_body(), usize::MAX).await;
                lat.push(t0.elapsed());
                assert_eq!(status, scenario.expected(), "{}", scenario.name());
            }
        });
    }
    let mut lat: Vec<Duration> = Vec::with_capacity(total);
    while let Some(r) = set.join_next().await {
        lat.extend(r.expect("task"));
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1e6;
    println!(
        "{:<34} {:>9.0} req/s   p50 {:>7.0} µs   p99 {:>7.0} µs   ({total} requests, {TASKS} tasks)",
        scenario.name(),
        total as f64 / secs,
        p(0.50),
        p(0.99),
    );
}

async fn issue_token(router: &Router) -> String {
    let r = router
        .clone()
        .oneshot(
            Request::builder()
                .method(Method::POST)
                .uri("/api/v1/auth/tokens")
                .header("authorization", format!("Bearer {ADMIN}"))
                .header("content-type", "application/json")
                .body(Body::from(r#"{"name":"bench-gateway","role":"operator"}"#))
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(r.status().as_u16(), 201);
    let body = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .expect("body");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    v["token"].as_str().expect("token").to_string()
}

#[tokio::main]
async fn main() {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_string());
    let admin_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&base)
        .await
        .expect("PostgreSQL at DATABASE_URL");
    let db = format!("bench_overhead_{}", std::process::id());
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&admin_pool)
        .await
        .expect("create database");
    let url = url_with_db(&base, &db);
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await
        .expect("bench database");
    shopfloor_eventstore::MIGRATOR
        .run(&pool)
        .await
        .expect("migrations");
    let state = AppState::new(
        shopfloor_commands::CommandService::new(EventStore::new(pool.clone())),
        Readiness::default(),
        None,
        Some(SecretString::from(ADMIN)),
        "bench",
    );
    let router = router_with_limits(state, RateLimits::unlimited());
    let issued = issue_token(&router).await;
    let total: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    for scenario in [
        Scenario::StaticAdmin,
        Scenario::StaticIssued,
        Scenario::RefusedWrite,
        Scenario::RefusedWriteKeyed,
    ] {
        // A short warm-up, then the measured run.
        run(&router, scenario, &issued, total / 10).await;
        run(&router, scenario, &issued, total).await;
    }
    drop(router);
    pool.close().await;
    let _ = sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&admin_pool)
        .await;
}

/// `base` with its database name replaced by `db` (the URL names one, as
/// `DATABASE_URL` always does here).
fn url_with_db(base: &str, db: &str) -> String {
    let (head, tail) = base.rsplit_once('/').unwrap_or((base, ""));
    let query = tail.find('?').map_or("", |q| &tail[q..]);
    format!("{head}/{db}{query}")
}
