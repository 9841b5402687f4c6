//! Secrets at the binary level: tokens are stored hashed and never appear in the log,
//! even at trace level, and a revoked token is refused at once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::services::Shopfloor;
use crate::support::TestDb;

const ADMIN: &str = "sec-admin-Zq8v3mXw9LpR2tKd";

#[tokio::test]
async fn tokens_are_hashed_at_rest_and_never_logged() {
    let db = TestDb::new().await;
    let namespace = format!("sec{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let port = crate::services::free_port();
    let mut sf = Shopfloor::start(
        &["--role", "api", "--role", "relay", "--role", "projector"],
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("SHOPFLOOR_HTTP_ADDR", &format!("127.0.0.1:{port}")),
            ("SHOPFLOOR_NAMESPACE", &namespace),
            ("MQTT_URL", "off"),
            ("SHOPFLOOR_ADMIN_TOKEN", ADMIN),
            ("RUST_LOG", "trace"),
        ],
        "listening on http://",
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let issued: Value = client
        .post(format!("{base}/api/v1/auth/tokens"))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": "scanner-1", "role": "operator" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = issued["token"].as_str().unwrap().to_string();
    let wrong = "sft_0000wrong0000token0000guess";
    for t in [token.as_str(), ADMIN, wrong] {
        let _ = client
            .get(format!("{base}/api/v1/machines"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        let _ = client
            .post(format!("{base}/api/v1/machines/events"))
            .bearer_auth(t)
            .json(&json!({ "event_type": "state_changed", "machine_id": "nope", "state": "down", "timestamp": "2026-01-01T00:00:00Z" }))
            .send()
            .await
            .unwrap();
    }
    // Revoked: refused at once.
    let r = client
        .delete(format!("{base}/api/v1/auth/tokens/scanner-1"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = client
        .get(format!("{base}/api/v1/machines"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(sf.terminate().await.is_some_and(|s| s.success()));

    let log = sf.log_text();
    assert!(log.lines().count() > 20, "too little log to judge: {log}");
    for secret in [token.as_str(), ADMIN, wrong, &token[4..]] {
        assert!(
            !log.contains(secret),
            "a token is in the log: {}",
            log.lines().find(|l| l.contains(secret)).unwrap_or_default()
        );
    }
    // At rest: only a hash, no column holds the token.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let dump: String = sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM api_tokens t")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(dump.contains("scanner-1"));
    assert!(!dump.contains(&token[4..]), "the token is stored: {dump}");
    let events: Option<String> =
        sqlx::query_scalar("SELECT string_agg(e::text, ' ') FROM events e")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(!events.unwrap_or_default().contains(&token[4..]));
}
