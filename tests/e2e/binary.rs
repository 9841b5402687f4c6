//! The binary's outside behaviour: health, readiness, metrics, graceful stop,
//! and one-line errors.

use crate::support::{shopfloor, Server, TestDb};

#[tokio::test]
async fn serves_health_readiness_and_metrics_then_stops_on_sigterm() {
    let mut server = Server::start(&[], &[]).await;
    let http = reqwest::Client::new();

    let health = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let ready = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"], true);
    assert_eq!(body["checks"]["nats"], true);

    let metrics = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));

    // Migrations ran at start.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&server.db.url)
        .await
        .unwrap();
    let head: i64 = sqlx::query_scalar("SELECT position FROM event_log_head")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(head, 0);

    let status = server.terminate().await;
    assert!(status.success(), "graceful stop exits 0, got {status}");
}

#[tokio::test]
async fn each_role_runs_on_its_own() {
    let mut server = Server::start(&["--role", "api", "--role", "relay"], &[]).await;
    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(server.terminate().await.success());
}

async fn one_line_error(env: &[(&str, &str)], args: &[&str]) -> String {
    let out = shopfloor()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0].to_string()
}

#[tokio::test]
async fn a_wrong_setting_or_a_missing_service_is_one_clear_line() {
    let line = one_line_error(&[("SHOPFLOOR_HTTP_ADDR", "nowhere")], &["serve"]).await;
    assert!(line.contains("invalid SHOPFLOOR_HTTP_ADDR"), "{line}");

    let line = one_line_error(
        &[("DATABASE_URL", "postgres://root@127.0.0.1:1/x")],
        &["serve"],
    )
    .await;
    assert!(
        line.contains("cannot reach PostgreSQL at postgres://root@127.0.0.1:1/x"),
        "{line}"
    );

    let db = TestDb::new().await;
    let line = one_line_error(
        &[
            ("DATABASE_URL", &db.url),
            ("NATS_URL", "nats://127.0.0.1:1"),
            ("MQTT_URL", "off"),
        ],
        &["serve"],
    )
    .await;
    assert!(
        line.contains("cannot reach NATS at nats://127.0.0.1:1"),
        "{line}"
    );

    let line = one_line_error(
        &[
            ("DATABASE_URL", &db.url),
            ("MQTT_URL", "mqtt://127.0.0.1:1"),
        ],
        &["serve", "--role", "ingest"],
    )
    .await;
    assert!(
        line.contains("cannot reach the MQTT broker at mqtt://127.0.0.1:1"),
        "{line}"
    );
}

#[tokio::test]
async fn migrate_applies_the_migrations() {
    let db = TestDb::new().await;
    let out = shopfloor()
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(n >= 1);
}

#[tokio::test]
async fn the_relay_role_publishes_the_committed_log_to_jetstream() {
    use shopfloor_eventstore::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamRef};

    let mut server = Server::start(&["--role", "relay", "--role", "api"], &[]).await;
    let pool = sqlx::PgPool::connect(&server.db.url).await.unwrap();
    let store = EventStore::new(pool);
    for i in 0..5 {
        let e = NewEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: "MachineTested".into(),
            schema_version: 1,
            payload: serde_json::json!({ "i": i }),
            metadata: EventMetadata::default(),
        };
        store
            .append(
                &StreamRef::new("machine", "M-1"),
                ExpectedVersion::Any,
                vec![e],
            )
            .await
            .unwrap();
    }
    let nats = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
    let js = async_nats::jetstream::new(nats);
    let stream_name = format!("{}_EVENTS", server.namespace);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(s) = js.get_stream(&stream_name).await {
            // The fifth event, the last on its subject (the stream also holds the plant
            // calendar's snapshot, on `{ns}.settings.calendar`).
            let subject = format!("{}.events.machine.M-1", server.namespace);
            if let Ok(m) = s.get_last_raw_message_by_subject(&subject).await {
                if m.headers.get("Shopfloor-Position").map(|v| v.as_str()) == Some("5") {
                    break;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay published nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(server.terminate().await.success());
    let _ = js.delete_stream(&stream_name).await;
}
