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
    // An implausible count is refused by the domain: 400, nothing written.
    let batch = json!({ "events": [
        { "event_type": "parts_produced", "machine_id": "A", "timestamp": "2025-03-01T08:00:00Z", "good": 1, "scrap": 0 },
        { "event_type": "parts_produced", "machine_id": "A", "timestamp": "2025-03-01T08:00:00Z", "good": 100000001u64, "scrap": 0 },
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

/// Many clients post multi-machine batches while four writers hammer one hot
/// machine: every request is answered 202 (never 503), and every event is stored
/// exactly once.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn concurrent_batches_and_a_hot_machine_are_all_accepted_once(pool: PgPool) {
    let app = std::sync::Arc::new(TestApp::spawn(pool).await);
    for m in 0..8 {
        app.machine(&format!("CB-{m}")).await;
    }
    let token = app.token("operator").await;
    let before = app.event_count().await;
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    let mut tasks = Vec::new();
    for client in 0..12u32 {
        let (app, token) = (app.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for round in 0..8u32 {
                let at = (base + chrono::Duration::seconds(i64::from(client * 100 + round)))
                    .to_rfc3339();
                let body = if client < 4 {
                    json!({"event_type": "parts_produced", "machine_id": "CB-0",
                           "timestamp": at, "good": 1, "scrap": 0})
                } else {
                    let events: Vec<_> = (0..5u32)
                        .map(|k| {
                            json!({"event_type": "parts_produced",
                            "machine_id": format!("CB-{}", (client + round + k) % 8),
                            "timestamp": at, "good": 1, "scrap": 0})
                        })
                        .collect();
                    json!({ "events": events })
                };
                let r = app.post("/api/v1/machines/events", &token, &body).await;
                statuses.push((r.status, r.body["accepted"].as_u64().unwrap_or(0)));
            }
            statuses
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        for (status, n) in task.await.unwrap() {
            assert_eq!(status, 202);
            accepted += n;
        }
    }
    assert_eq!(accepted, 4 * 8 + 8 * 8 * 5);
    assert_eq!(app.event_count().await - before, accepted as i64);
}

/// A PLC heartbeat (`good: 0, scrap: 0`) is accepted and changes no count; in a
/// batch it does not fail the others.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_parts_heartbeat_is_accepted_and_counts_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("HB-1").await;
    let token = app.token("operator").await;
    let at = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let heartbeat = json!({"event_type": "parts_produced", "machine_id": "HB-1",
                           "timestamp": at, "good": 0, "scrap": 0});
    let before = app.event_count().await;
    let r = app
        .post("/api/v1/machines/events", &token, &heartbeat)
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(app.event_count().await, before);
    let batch = json!({"events": [heartbeat, {"event_type": "parts_produced", "machine_id": "HB-1",
                           "timestamp": at, "good": 2, "scrap": 1}]});
    let r = app.post("/api/v1/machines/events", &token, &batch).await;
    assert_eq!(
        (r.status, r.body["accepted"].as_u64()),
        (202, Some(2)),
        "{}",
        r.body
    );
    assert_eq!(app.event_count().await, before + 1);
    let m = app.get("/api/v1/machines/HB-1", &token).await;
    assert_eq!(m.body["good_count"], 2, "{}", m.body);
}

/// A floor time far in the future is refused on the HTTP path, as on MQTT: it
/// would leave the machine "down since" a time that has not come.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_far_future_timestamp_is_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("FF-1").await;
    let token = app.token("operator").await;
    let before = app.event_count().await;
    let r = app
        .post(
            "/api/v1/machines/events",
            &token,
            &json!({"event_type": "state_changed", "machine_id": "FF-1",
                    "timestamp": "2062-12-01T08:00:00Z", "state": "down"}),
        )
        .await;
    let detail = r.assert_problem(400);
    assert!(detail.contains("ahead of the server's clock"), "{detail}");
    assert_eq!(app.event_count().await, before);
    // Within the skew it is accepted.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc3339();
    let r = app
        .post(
            "/api/v1/machines/events",
            &token,
            &json!({"event_type": "state_changed", "machine_id": "FF-1",
                    "timestamp": soon, "state": "running"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
}

/// Parts reported against an order that does not exist are recorded on the machine,
/// and the 202 says which orders are unknown (no order or stock is updated for them).
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn parts_for_an_unknown_order_are_accepted_and_named(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("UO-1").await;
    let token = app.token("operator").await;
    let at = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let r = app
        .post(
            "/api/v1/machines/events",
            &token,
            &json!({"event_type": "parts_produced", "machine_id": "UO-1",
                    "timestamp": at, "good": 3, "scrap": 0, "order_id": "NO-SUCH-ORDER"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        r.body["unknown_orders"],
        json!(["NO-SUCH-ORDER"]),
        "{}",
        r.body
    );
    let known = app
        .post(
            "/api/v1/production-orders",
            &app.admin,
            &json!({"order_id": "PO-UO", "product_id": "P", "quantity": 10}),
        )
        .await;
    assert_eq!(known.status, 201, "{}", known.body);
    let r = app
        .post(
            "/api/v1/machines/events",
            &token,
            &json!({"event_type": "parts_produced", "machine_id": "UO-1",
                    "timestamp": at, "good": 1, "scrap": 0, "order_id": "PO-UO"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.body.get("unknown_orders").is_none(), "{}", r.body);
}

/// The process manager's refusal of that report (no such order) is shown at
/// `/api/v1/process/rejections`, newest first, to every role that may read.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_refused_follow_up_is_listed(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.machine("PR-1").await;
    let auditor = app.token("auditor").await;
    let empty = app.get("/api/v1/process/rejections", &auditor).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(empty.body, json!([]));
    let at = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let r = app
        .post(
            "/api/v1/machines/events",
            &app.admin,
            &json!({"event_type": "parts_produced", "machine_id": "PR-1",
                    "timestamp": at, "good": 2, "scrap": 1, "order_id": "GHOST"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);

    let store = shopfloor_eventstore::EventStore::new(pool);
    let manager = shopfloor_commands::process::ProcessManager::new(
        shopfloor_commands::CommandService::new(store),
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let cancel = cancel.clone();
        async move { manager.run(cancel).await }
    });
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let listed = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rejection listed in 30 s"
        );
        let r = app
            .get("/api/v1/process/rejections?limit=10", &auditor)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        if r.body.as_array().is_some_and(|a| !a.is_empty()) {
            break r.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    cancel.cancel();
    running.await.unwrap();
    let rows = listed.as_array().unwrap();
    assert!(
        rows.iter()
            .any(|row| row["target"].as_str().is_some_and(|t| t.contains("GHOST"))),
        "{listed}"
    );
    for row in rows {
        assert!(
            !row["reason"].as_str().unwrap_or_default().is_empty(),
            "{row}"
        );
        assert_eq!(row["event_type"], "MachinePartsProduced", "{row}");
    }
    let bad = app
        .get("/api/v1/process/rejections?limit=0", &auditor)
        .await;
    bad.assert_problem(400);
}
