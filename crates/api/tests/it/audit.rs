//! The audit endpoints: the global log in commit order, a stream's history, state as of a
//! version or a time.

use serde_json::json;
use sqlx::PgPool;

use crate::support::TestApp;

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn the_global_log_pages_in_commit_order(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    app.post(
        "/api/v1/production-orders",
        &app.admin,
        &json!({ "order_id": "PO-1", "product_id": "W", "quantity": 1 }),
    )
    .await;
    app.post(
        "/api/v1/production-orders/PO-1/assign",
        &app.admin,
        &json!({ "machine_id": "M-1" }),
    )
    .await;
    let auditor = app.token("auditor").await;
    let r = app.get("/api/v1/events?after=0", &auditor).await;
    assert_eq!(r.status, 200);
    let events = r.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    let positions: Vec<i64> = events
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(r.body["next"], positions[2]);
    let e = &events[1];
    for field in [
        "position",
        "stream_id",
        "stream_type",
        "version",
        "event_id",
        "event_type",
        "payload",
        "metadata",
        "recorded_at",
    ] {
        assert!(e.get(field).is_some(), "missing {field}: {e}");
    }
    assert_eq!(e["stream_type"], "production_order");
    assert_eq!(e["stream_id"], "PO-1");
    assert_eq!(e["event_type"], "OrderCreated");
    assert_eq!(e["payload"]["product_id"], "W");

    let r = app.get("/api/v1/events?after=0&limit=2", &auditor).await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 2);
    let next = r.body["next"].as_i64().unwrap();
    let r = app
        .get(&format!("/api/v1/events?after={next}&limit=2"), &auditor)
        .await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 1);
    let last = r.body["next"].as_i64().unwrap();
    let r = app
        .get(&format!("/api/v1/events?after={last}"), &auditor)
        .await;
    assert_eq!(r.body, json!({ "events": [], "next": last }));
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn stream_history_and_state_as_of(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    app.post(
        "/api/v1/production-orders",
        &app.admin,
        &json!({ "order_id": "PO-1", "product_id": "W", "quantity": 1 }),
    )
    .await;
    app.post(
        "/api/v1/production-orders/PO-1/assign",
        &app.admin,
        &json!({ "machine_id": "M-1" }),
    )
    .await;
    let between: (chrono::DateTime<chrono::Utc>,) =
        sqlx::query_as("SELECT max(recorded_at) FROM events")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    app.post(
        "/api/v1/production-orders/PO-1/start",
        &app.admin,
        &json!({}),
    )
    .await;
    app.post(
        "/api/v1/production-orders/PO-1/complete",
        &app.admin,
        &json!({}),
    )
    .await;

    let auditor = app.token("auditor").await;
    let r = app
        .get("/api/v1/streams/production_order/PO-1/events", &auditor)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["version"], 4);
    let versions: Vec<u64> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    let r = app
        .get(
            "/api/v1/streams/production_order/PO-1/events?from_version=2&limit=2",
            &auditor,
        )
        .await;
    assert_eq!(r.body["events"][0]["event_type"], "OrderAssigned");
    assert_eq!(r.body["next_version"], 4);

    let r = app
        .get(
            "/api/v1/streams/production_order/PO-1/state?version=1",
            &auditor,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["state"]["status"], "created");
    let r = app
        .get(
            "/api/v1/streams/production_order/PO-1/state?version=3",
            &auditor,
        )
        .await;
    assert_eq!(r.body["state"]["status"], "in_progress");
    let r = app
        .get("/api/v1/streams/production_order/PO-1/state", &auditor)
        .await;
    assert_eq!(r.body["state"]["status"], "completed");
    assert_eq!(r.body["version"], 4);

    // As of a time: the events recorded by then. `+` must survive the query string.
    let at = between
        .0
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    let url = format!(
        "/api/v1/streams/production_order/PO-1/state?at={}",
        at.replace('+', "%2B")
    );
    let r = app.get(&url, &auditor).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"]["status"], "assigned");
    assert_eq!(r.body["version"], 2);
    let r = app
        .get(
            "/api/v1/streams/production_order/PO-1/state?at=2000-01-01T00:00:00Z",
            &auditor,
        )
        .await;
    r.assert_problem(404);

    let r = app
        .get("/api/v1/streams/machine/M-1/state?version=1", &auditor)
        .await;
    assert_eq!(r.body["state"]["machine_id"], "M-1");
}
