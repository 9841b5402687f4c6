//! Machines: registration, reading the current state, events one by one and in batches
//! (validated whole, recorded atomically across machine streams).

use serde_json::json;
use sqlx::PgPool;

use crate::support::TestApp;

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn register_and_read_a_machine(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sup = app.token("supervisor").await;
    let r = app
        .post("/api/v1/machines", &sup, &json!({ "machine_id": "PRESS-1", "type": "press", "line": "L1", "ideal_cycle_time_s": 2.5 }))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["machine_id"], "PRESS-1");
    assert_eq!(r.body["type"], "press");
    assert_eq!(r.body["ideal_cycle_time_s"], 2.5);
    let r = app
        .post("/api/v1/machines", &sup, &json!({ "machine_id": "PRESS-1", "type": "press", "line": "L1", "ideal_cycle_time_s": 2.5 }))
        .await;
    r.assert_problem(409);
    let op = app.token("operator").await;
    let r = app.get("/api/v1/machines/PRESS-1", &op).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["line"], "L1");
    assert!(r.body["current_status"].is_null());
    assert!(r.body["last_maintenance"].is_null());
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn single_events_change_the_current_state(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    let op = app.token("operator").await;
    let r = app
        .post("/api/v1/machines/events", &op, &json!({ "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T08:00:00+01:00", "state": "running" }))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body, json!({ "accepted": 1 }));
    let r = app
        .post("/api/v1/machines/events", &op, &json!({ "event_type": "parts_produced", "machine_id": "M-1", "timestamp": "2025-03-01T08:10:00+01:00", "good": 10, "scrap": 2 }))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = app
        .post("/api/v1/machines/events", &op, &json!({ "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T08:20:00Z", "state": "down", "reason": "breakdown.mechanical", "planned": false }))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = app.get("/api/v1/machines/M-1", &op).await;
    assert_eq!(r.body["current_status"], "down");
    assert_eq!(
        r.body["current_state"]["reason_code"],
        "breakdown.mechanical"
    );
    assert_eq!(r.body["current_state"]["since"], "2025-03-01T08:20:00Z");
    assert_eq!(r.body["good_count"], 10);
    assert_eq!(r.body["scrap_count"], 2);

    // The payload holds what the command gave; occurred_at is the floor time.
    let r = app.get("/api/v1/events?after=0&limit=10", &app.admin).await;
    let last = r.body["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event_type"], "MachineStateChanged");
    assert_eq!(last["payload"]["reason"], "breakdown.mechanical");
    assert_eq!(last["metadata"]["occurred_at"], "2025-03-01T08:20:00+00:00");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_batch_is_recorded_across_machines(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("A").await;
    app.machine("B").await;
    let before = app.event_count().await;
    let batch = json!({ "events": [
        { "event_type": "state_changed", "machine_id": "A", "timestamp": "2025-03-01T08:00:00Z", "state": "running" },
        { "event_type": "state_changed", "machine_id": "B", "timestamp": "2025-03-01T08:00:00Z", "state": "idle", "reason": "planned.break", "planned": true },
        { "event_type": "parts_produced", "machine_id": "A", "timestamp": "2025-03-01T08:05:00Z", "good": 5, "scrap": 0 },
        { "event_type": "parts_produced", "machine_id": "A", "timestamp": "2025-03-01T08:06:00Z", "good": 3, "scrap": 1, "order_id": "PO-X" },
    ]});
    let r = app
        .post("/api/v1/machines/events", &app.admin, &batch)
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["accepted"], 4);
    assert_eq!(app.event_count().await, before + 4);
    let a = app.get("/api/v1/machines/A", &app.admin).await;
    assert_eq!(a.body["good_count"], 8);
    let b = app.get("/api/v1/machines/B", &app.admin).await;
    assert_eq!(b.body["current_status"], "idle");
    assert_eq!(b.body["current_state"]["planned"], true);
    // An empty batch accepts nothing.
    let r = app
        .post(
            "/api/v1/machines/events",
            &app.admin,
            &json!({ "events": [] }),
        )
        .await;
    assert_eq!(r.body, json!({ "accepted": 0 }));
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_bad_item_fails_the_whole_batch_naming_its_index(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("A").await;
    app.machine("B").await;
    let before = app.event_count().await;
    let bad_items = [
        json!({ "event_type": "state_changed", "machine_id": "B", "timestamp": "2025-03-01T08:00:00Z", "state": "exploded" }),
        json!({ "event_type": "parts_produced", "machine_id": "B", "timestamp": "2025-03-01T08:00:00Z", "good": -1, "scrap": 0 }),
        json!({ "event_type": "parts_produced", "machine_id": "B", "timestamp": "2025-03-01T08:00:00Z", "scrap": 0 }),
        json!({ "event_type": "state_changed", "machine_id": "B", "timestamp": "08:00", "state": "idle" }),
        json!({ "event_type": "state_changed", "machine_id": "B", "timestamp": "2025-03-01T08:00:00", "state": "idle" }),
        json!({ "event_type": "teleported", "machine_id": "B", "timestamp": "2025-03-01T08:00:00Z" }),
        json!({ "event_type": "state_changed", "machine_id": "", "timestamp": "2025-03-01T08:00:00Z", "state": "idle" }),
        json!("not an object"),
    ];
    for bad in bad_items {
        let batch = json!({ "events": [
            { "event_type": "state_changed", "machine_id": "A", "timestamp": "2025-03-01T08:00:00Z", "state": "running" },
            { "event_type": "parts_produced", "machine_id": "A", "timestamp": "2025-03-01T08:05:00Z", "good": 5, "scrap": 0 },
            bad,
        ]});
        let r = app
            .post("/api/v1/machines/events", &app.admin, &batch)
            .await;
        let detail = r.assert_problem(400);
        assert!(detail.contains("events[2]"), "{detail}");
        assert_eq!(r.body["index"], 2);
    }
    assert_eq!(app.event_count().await, before);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_refused_item_rolls_back_the_other_machines(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("A").await;
    let before = app.event_count().await;
    // Valid shape, but GHOST is not registered: decided only after A's events.
    let batch = json!({ "events": [
        { "event_type": "state_changed", "machine_id": "A", "timestamp": "2025-03-01T08:00:00Z", "state": "running" },
        { "event_type": "state_changed", "machine_id": "GHOST", "timestamp": "2025-03-01T08:00:00Z", "state": "running" },
    ]});
    let r = app
        .post("/api/v1/machines/events", &app.admin, &batch)
        .await;
    let detail = r.assert_problem(404);
    assert!(
        detail.contains("events[1]") && detail.contains("GHOST"),
        "{detail}"
    );
    // Zero parts is refused by the domain: 400, nothing written.
    let batch = json!({ "events": [
        { "event_type": "parts_produced", "machine_id": "A", "timestamp": "2025-03-01T08:00:00Z", "good": 1, "scrap": 0 },
        { "event_type": "parts_produced", "machine_id": "A", "timestamp": "2025-03-01T08:00:00Z", "good": 0, "scrap": 0 },
    ]});
    let r = app
        .post("/api/v1/machines/events", &app.admin, &batch)
        .await;
    assert!(r.assert_problem(400).contains("events[1]"));
    assert_eq!(app.event_count().await, before);
    let a = app.get("/api/v1/machines/A", &app.admin).await;
    assert!(a.body["current_status"].is_null());
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn concurrent_batches_on_one_machine_all_land(pool: PgPool) {
    let app = std::sync::Arc::new(TestApp::spawn(pool).await);
    app.machine("A").await;
    app.machine("B").await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let batch = json!({ "events": [
                { "event_type": "parts_produced", "machine_id": "A", "timestamp": format!("2025-03-01T08:{i:02}:00Z"), "good": 1, "scrap": 0 },
                { "event_type": "parts_produced", "machine_id": "B", "timestamp": format!("2025-03-01T08:{i:02}:00Z"), "good": 2, "scrap": 0 },
            ]});
            app.post("/api/v1/machines/events", &app.admin, &batch).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 202);
    }
    let a = app.get("/api/v1/machines/A", &app.admin).await;
    let b = app.get("/api/v1/machines/B", &app.admin).await;
    assert_eq!(a.body["good_count"], 8);
    assert_eq!(b.body["good_count"], 16);
}
