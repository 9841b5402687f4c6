//! Operators (ADR 0036): CRUD and roles, assignment of operators to orders, clocking on and
//! off with labour figures by floor time (late events included), stops and their
//! classification; every read model rebuilt by replay must equal the live one.

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::support::TestApp;

async fn project(app: &TestApp) {
    shopfloor_projections::replay(&app.pool, None, |_, _| {})
        .await
        .expect("replay");
}

async fn register(app: &TestApp, token: &str, id: &str) -> Value {
    let r = app
        .post(
            "/api/v1/operators",
            token,
            &json!({ "operator_id": id, "name": format!("Name of {id}"), "badge_id": format!("B-{id}"), "skills": ["welding", "press", "welding"], "lines": ["L1"] }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn operators_are_managed_by_supervisors_and_read_by_all(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sup = app.token("supervisor").await;
    let op = app.token("operator").await;
    let aud = app.token("auditor").await;

    let body = json!({ "operator_id": "OP-9", "name": "Nope" });
    app.post("/api/v1/operators", &op, &body)
        .await
        .assert_problem(403);
    app.post("/api/v1/operators", &aud, &body)
        .await
        .assert_problem(403);

    let ada = register(&app, &sup, "ADA").await;
    assert_eq!(ada["operator_id"], "ADA");
    assert_eq!(ada["skills"], json!(["press", "welding"]), "a set");
    assert_eq!(ada["active"], true);
    app.post(
        "/api/v1/operators",
        &sup,
        &json!({ "operator_id": "ADA", "name": "Again" }),
    )
    .await
    .assert_problem(409);
    app.post("/api/v1/operators", &sup, &json!({ "operator_id": "X" }))
        .await
        .assert_problem(400);
    // Minimal contract body.
    let r = app
        .post(
            "/api/v1/operators",
            &app.admin,
            &json!({ "operator_id": "BOB", "name": "Bob" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    let r = app.get("/api/v1/operators/ADA", &aud).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "Name of ADA");
    app.get("/api/v1/operators/NOBODY", &aud)
        .await
        .assert_problem(404);

    let r = app
        .patch(
            "/api/v1/operators/ADA",
            &sup,
            &json!({ "name": "Ada L.", "lines": ["L2", "L1"], "badge_id": "" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "Ada L.");
    assert_eq!(r.body["lines"], json!(["L1", "L2"]));
    assert_eq!(r.body["badge_id"], Value::Null);
    app.patch("/api/v1/operators/ADA", &op, &json!({ "name": "x" }))
        .await
        .assert_problem(403);

    let r = app
        .post(
            "/api/v1/operators/BOB/deactivate",
            &sup,
            &json!({ "reason": "left" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], false);

    project(&app).await;
    let r = app.get("/api/v1/operators", &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.body.as_array().unwrap();
    assert_eq!(list.len(), 2, "{}", r.body);
    assert_eq!(list[0]["operator_id"], "ADA");
    assert_eq!(list[0]["name"], "Ada L.");
    assert_eq!(list[0]["lines"], json!(["L1", "L2"]));
    assert_eq!(list[1]["operator_id"], "BOB");
    assert_eq!(list[1]["active"], false);
    let r = app.get("/api/v1/operators?active=true&line=L2", &op).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1, "{}", r.body);

    let r = app
        .post("/api/v1/operators/BOB/reactivate", &sup, &json!({}))
        .await;
    assert_eq!(r.body["active"], true, "{}", r.body);
    project(&app).await;
    assert!(shopfloor_projections::verify(&app.pool)
        .await
        .unwrap()
        .is_empty());
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn assigning_unknown_operators_is_refused_and_stores_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    register(&app, &app.admin, "ADA").await;
    register(&app, &app.admin, "BOB").await;
    app.post("/api/v1/operators/BOB/deactivate", &app.admin, &json!({}))
        .await;
    let r = app
        .post(
            "/api/v1/production-orders",
            &app.admin,
            &json!({ "order_id": "PO-1", "product_id": "W", "quantity": 10 }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["assigned_operators"], json!([]));

    let before = app.event_count().await;
    let r = app
        .post(
            "/api/v1/production-orders/PO-1/assign",
            &app.admin,
            &json!({ "machine_id": "M-1", "operator_ids": ["ADA", "GHOST"] }),
        )
        .await;
    let detail = r.assert_problem(422);
    assert!(detail.contains("GHOST"), "{detail}");
    assert_eq!(r.body["field"], "operator_ids[1]");
    let r = app
        .post(
            "/api/v1/production-orders/PO-1/assign",
            &app.admin,
            &json!({ "machine_id": "M-1", "operator_ids": ["BOB"] }),
        )
        .await;
    assert!(r.assert_problem(422).contains("deactivated"));
    assert_eq!(app.event_count().await, before, "nothing stored");
    let r = app.get("/api/v1/production-orders/PO-1", &app.admin).await;
    assert_eq!(r.body["status"], "created");
    assert_eq!(r.body["assigned_operators"], json!([]));

    let op = app.token("operator").await;
    app.post(
        "/api/v1/production-orders/PO-1/assign",
        &op,
        &json!({ "machine_id": "M-1", "operator_ids": ["ADA"] }),
    )
    .await
    .assert_problem(403);
    let r = app
        .post(
            "/api/v1/production-orders/PO-1/assign",
            &app.admin,
            &json!({ "machine_id": "M-1", "operator_ids": ["ADA", "ADA"] }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["assigned_machine"], "M-1");
    assert_eq!(r.body["assigned_operators"], json!(["ADA"]));
    // Assigning the machine only keeps the operators.
    let r = app
        .post(
            "/api/v1/production-orders/PO-1/assign",
            &app.admin,
            &json!({ "machine_id": "M-1" }),
        )
        .await;
    assert_eq!(r.body["assigned_operators"], json!(["ADA"]));
    project(&app).await;
    let r = app.get("/api/v1/production-orders", &app.admin).await;
    assert_eq!(
        r.body[0]["assigned_operators"],
        json!(["ADA"]),
        "{}",
        r.body
    );
    let r = app
        .get("/api/v1/production-orders?operator_id=ADA", &app.admin)
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1, "{}", r.body);
    let r = app
        .get("/api/v1/production-orders?operator_id=BOB", &app.admin)
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 0, "{}", r.body);
    // The operator role may run the order on the floor.
    let r = app
        .post("/api/v1/production-orders/PO-1/start", &op, &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .post(
            "/api/v1/production-orders/PO-1/hold",
            &op,
            &json!({ "reason": "tooling" }),
        )
        .await;
    assert_eq!(r.body["status"], "on_hold", "{}", r.body);
    let r = app
        .post("/api/v1/production-orders/PO-1/resume", &op, &json!({}))
        .await;
    assert_eq!(r.body["status"], "in_progress", "{}", r.body);
    app.post("/api/v1/production-orders/PO-1/cancel", &op, &json!({}))
        .await
        .assert_problem(403);
    project(&app).await;
    assert!(shopfloor_projections::verify(&app.pool)
        .await
        .unwrap()
        .is_empty());
}

async fn clock(app: &TestApp, token: &str, who: &str, what: &str, body: Value) -> Value {
    let r = app
        .post(&format!("/api/v1/operators/{who}/{what}"), token, &body)
        .await;
    assert_eq!(r.status, 200, "{what} {who} {body}: {}", r.body);
    r.body
}

async fn parts(app: &TestApp, at: &str, good: u64, scrap: u64) {
    let r = app
        .post(
            "/api/v1/machines/events",
            &app.admin,
            &json!({ "event_type": "parts_produced", "machine_id": "M-1", "timestamp": at, "good": good, "scrap": scrap, "order_id": "PO-1" }),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn labour_follows_floor_time_with_late_events(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    register(&app, &app.admin, "ADA").await;
    register(&app, &app.admin, "BOB").await;
    app.post(
        "/api/v1/production-orders",
        &app.admin,
        &json!({ "order_id": "PO-1", "product_id": "W", "quantity": 100 }),
    )
    .await;
    app.post(
        "/api/v1/production-orders/PO-1/assign",
        &app.admin,
        &json!({ "machine_id": "M-1", "operator_ids": ["ADA", "BOB"] }),
    )
    .await;
    let op = app.token("operator").await;
    app.post("/api/v1/production-orders/PO-1/start", &op, &json!({}))
        .await;

    let on = clock(
        &app,
        &op,
        "ADA",
        "clock-on",
        json!({ "order_id": "PO-1", "machine_id": "M-1", "timestamp": "2025-03-01T08:00:00Z" }),
    )
    .await;
    assert_eq!(on["clocked_on"], json!(["PO-1"]));
    app.post(
        "/api/v1/operators/ADA/clock-on",
        &op,
        &json!({ "order_id": "PO-1" }),
    )
    .await
    .assert_problem(409);
    app.post("/api/v1/operators/ADA/deactivate", &app.admin, &json!({}))
        .await
        .assert_problem(409);
    app.post(
        "/api/v1/operators/ADA/clock-on",
        &op,
        &json!({ "order_id": "PO-404" }),
    )
    .await
    .assert_problem(422);
    app.post(
        "/api/v1/operators/BOB/clock-off",
        &op,
        &json!({ "order_id": "PO-1" }),
    )
    .await
    .assert_problem(409);
    app.post(
        "/api/v1/operators/ADA/clock-off",
        &op,
        &json!({ "order_id": "PO-1", "timestamp": "2025-03-01T07:00:00Z" }),
    )
    .await
    .assert_problem(400);

    parts(&app, "2025-03-01T08:10:00Z", 10, 1).await;
    parts(&app, "2025-03-01T08:50:00Z", 5, 0).await;
    clock(
        &app,
        &op,
        "BOB",
        "clock-on",
        json!({ "order_id": "PO-1", "timestamp": "2025-03-01T08:30:00Z" }),
    )
    .await;
    clock(
        &app,
        &op,
        "BOB",
        "clock-off",
        json!({ "order_id": "PO-1", "timestamp": "2025-03-01T08:45:00Z" }),
    )
    .await;
    let off = clock(
        &app,
        &op,
        "ADA",
        "clock-off",
        json!({ "order_id": "PO-1", "timestamp": "2025-03-01T09:00:00Z" }),
    )
    .await;
    assert_eq!(off["clocked_on"], json!([]));
    // Late: a report from 08:30 arrives after everyone clocked off; one after 09:00 is nobody's.
    parts(&app, "2025-03-01T08:30:00Z", 3, 0).await;
    parts(&app, "2025-03-01T09:10:00Z", 7, 0).await;
    project(&app).await;

    let r = app.get("/api/v1/operators/ADA/labour", &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["time_s"], 3600.0, "{}", r.body);
    assert_eq!(r.body["good_count"], 18, "{}", r.body);
    assert_eq!(r.body["scrap_count"], 1, "{}", r.body);
    assert_eq!(r.body["orders"][0]["order_id"], "PO-1");
    assert_eq!(r.body["sessions"][0]["machine_id"], "M-1");
    let r = app.get("/api/v1/operators/BOB/labour", &op).await;
    assert_eq!(r.body["time_s"], 900.0, "{}", r.body);
    assert_eq!(r.body["good_count"], 3, "{}", r.body);
    // A window cuts the sessions and their parts.
    let r = app
        .get(
            "/api/v1/operators/ADA/labour?from=2025-03-01T08:20:00Z&to=2025-03-01T08:40:00Z",
            &op,
        )
        .await;
    assert_eq!(r.body["time_s"], 1200.0, "{}", r.body);
    assert_eq!(r.body["good_count"], 3, "{}", r.body);
    let r = app.get("/api/v1/production-orders/PO-1/labour", &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["time_s"], 4500.0, "{}", r.body);
    // The order's parts while staffed count once, though two were clocked on at 08:30.
    assert_eq!(r.body["good_count"], 18, "{}", r.body);
    assert_eq!(r.body["scrap_count"], 1, "{}", r.body);
    let ops = r.body["operators"].as_array().unwrap();
    assert_eq!(ops.len(), 2, "{}", r.body);
    assert_eq!(ops[0]["operator_id"], "ADA");
    assert_eq!(ops[0]["good_count"], 18);
    assert_eq!(ops[1]["operator_id"], "BOB");
    assert_eq!(ops[1]["time_s"], 900.0);
    app.get("/api/v1/production-orders/PO-404/labour", &op)
        .await
        .assert_problem(404);

    // The acting person is on the log.
    let (actor, operator, occurred): (Option<String>, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT actor, extra->>'operator_id', to_char(occurred_at AT TIME ZONE 'UTC', 'HH24:MI') \
         FROM events WHERE event_type = 'OperatorClockedOff' ORDER BY position DESC LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(actor.is_some_and(|a| a.starts_with("operator-")), "actor");
    assert_eq!(operator.as_deref(), Some("ADA"));
    assert_eq!(
        occurred.as_deref(),
        Some("09:00"),
        "floor time in the metadata"
    );
    assert!(shopfloor_projections::verify(&app.pool)
        .await
        .unwrap()
        .is_empty());
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn unclassified_stops_are_listed_and_classified_over_http(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    let batch = json!({ "events": [
        { "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T08:00:00Z", "state": "running" },
        { "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T08:10:00Z", "state": "down" },
        { "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T08:20:00Z", "state": "running" },
        { "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T08:30:00Z", "state": "idle", "reason": "planned.break" },
        { "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T08:40:00Z", "state": "down", "reason": "breakdown.mechanical" },
    ]});
    assert_eq!(
        app.post("/api/v1/machines/events", &app.admin, &batch)
            .await
            .status,
        202
    );
    project(&app).await;
    let sup = app.token("supervisor").await;
    let r = app.get("/api/v1/stops/unclassified", &sup).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let stops = r.body.as_array().unwrap();
    assert_eq!(stops.len(), 1, "{}", r.body);
    assert_eq!(stops[0]["machine_id"], "M-1");
    assert_eq!(stops[0]["line"], "L1");
    assert_eq!(stops[0]["duration_s"], 600.0);
    let stop_at = stops[0]["stop_at"].as_str().unwrap().to_string();

    let op = app.token("operator").await;
    let aud = app.token("auditor").await;
    let body = json!({ "stop_at": stop_at, "reason_code": "breakdown.electrical" });
    app.post("/api/v1/machines/M-1/stops/classify", &aud, &body)
        .await
        .assert_problem(403);
    app.post(
        "/api/v1/machines/M-1/stops/classify",
        &op,
        &json!({ "stop_at": "2025-03-01T08:11:00Z", "reason_code": "breakdown.electrical" }),
    )
    .await
    .assert_problem(404);
    let r = app
        .post("/api/v1/machines/M-1/stops/classify", &op, &body)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    project(&app).await;
    let r = app
        .get("/api/v1/stops/unclassified?machine_id=M-1", &sup)
        .await;
    assert_eq!(r.body, json!([]));
    let (by, code): (String, String) =
        sqlx::query_as("SELECT classified_by, reason_code FROM rm_stop_classifications")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(by.starts_with("operator-"), "{by}");
    assert_eq!(code, "breakdown.electrical");
}
