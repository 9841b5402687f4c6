//! Production orders: creation, the status machine (200 or 409), inspections.

use chrono::SubsecRound;
use serde_json::json;
use sqlx::PgPool;

use crate::support::TestApp;

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn an_order_goes_through_its_statuses(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    let sup = app.token("supervisor").await;
    let r = app
        .post(
            "/api/v1/production-orders",
            &sup,
            &json!({
                "product_id": "WIDGET", "quantity": 100,
                "bom": [{ "item_id": "STEEL", "qty_per_unit": 0.25 }],
                "input_location": "RAW-1"
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["order_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("PO-"), "{id}");
    assert_eq!(r.body["status"], "created");
    assert_eq!(r.body["quantity"], 100);
    assert_eq!(r.body["bom"][0]["qty_per_unit"], 0.25);
    assert_eq!(r.body["output_location"], "FG");
    assert!(r.body["assigned_machine"].is_null());
    assert_eq!(r.body["good_count"], 0);
    assert_eq!(r.body["scrap_count"], 0);

    let path = |a: &str| format!("/api/v1/production-orders/{id}{a}");
    let r = app
        .post(&path("/assign"), &sup, &json!({ "machine_id": "M-1" }))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "assigned");
    assert_eq!(r.body["assigned_machine"], "M-1");
    let r = app.post(&path("/start"), &sup, &json!({})).await;
    assert_eq!(r.body["status"], "in_progress");
    let r = app
        .post(
            &path("/hold"),
            &sup,
            &json!({ "reason": "material missing" }),
        )
        .await;
    assert_eq!(r.body["status"], "on_hold");
    assert_eq!(r.body["hold_reason"], "material missing");
    app.post(&path("/complete"), &sup, &json!({}))
        .await
        .assert_problem(409);
    let r = app.post(&path("/resume"), &sup, &json!({})).await;
    assert_eq!(r.body["status"], "in_progress");
    // A body may be left out entirely for start/complete/cancel.
    let r = app
        .client
        .post(app.url(&path("/complete")))
        .bearer_auth(&sup)
        .send()
        .await
        .unwrap();
    let r = TestApp::read(r).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "completed");
    app.post(&path("/cancel"), &sup, &json!({}))
        .await
        .assert_problem(409);
    app.post(&path("/assign"), &sup, &json!({ "machine_id": "M-1" }))
        .await
        .assert_problem(409);

    let op = app.token("operator").await;
    let r = app.get(&path(""), &op).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "completed");
    assert!(r.body["completed_at"].is_string());
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn cancel_from_any_open_status(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let r = app
        .post(
            "/api/v1/production-orders",
            &app.admin,
            &json!({ "order_id": "PO-C", "product_id": "W", "quantity": 1 }),
        )
        .await;
    assert_eq!(r.body["order_id"], "PO-C");
    let r = app
        .post(
            "/api/v1/production-orders/PO-C/cancel",
            &app.admin,
            &json!({ "reason": "no demand" }),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "cancelled");
    app.post(
        "/api/v1/production-orders/PO-C/cancel",
        &app.admin,
        &json!({}),
    )
    .await
    .assert_problem(409);
    app.post(
        "/api/v1/production-orders/PO-C/start",
        &app.admin,
        &json!({}),
    )
    .await
    .assert_problem(409);
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn inspections_are_recorded_and_listed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.post(
        "/api/v1/production-orders",
        &app.admin,
        &json!({ "order_id": "PO-Q", "product_id": "W", "quantity": 10 }),
    )
    .await;
    let op = app.token("operator").await;
    let r = app
        .post(
            "/api/v1/production-orders/PO-Q/inspections",
            &op,
            &json!({ "inspection_id": "I-1", "sample_size": 5, "defects": 1, "notes": "scratch" }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["passed"], false);
    let r = app
        .post(
            "/api/v1/production-orders/PO-Q/inspections",
            &op,
            &json!({ "inspection_id": "I-1", "sample_size": 5, "defects": 0 }),
        )
        .await;
    r.assert_problem(409);
    let r = app
        .post(
            "/api/v1/production-orders/PO-Q/inspections",
            &op,
            &json!({ "sample_size": 2, "defects": 3 }),
        )
        .await;
    r.assert_problem(400);
    let r = app
        .get("/api/v1/production-orders/PO-Q/inspections", &op)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(r.body[0]["inspection_id"], "I-1");
    let r = app.get("/api/v1/production-orders/PO-Q", &op).await;
    assert_eq!(r.body["inspections"][0]["defects"], 1);
}

/// A command made offline carries the floor time it was made at: the order's times
/// and the inspection's are those, not the time the request arrived. A floor time
/// further ahead than the clock skew allows is a 400 naming `timestamp`.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn transitions_and_inspections_keep_their_floor_time(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-F").await;
    let sup = app.token("supervisor").await;
    let r = app
        .post(
            "/api/v1/production-orders",
            &sup,
            &json!({ "order_id": "PO-F", "product_id": "W", "quantity": 10 }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let path = |a: &str| format!("/api/v1/production-orders/PO-F{a}");
    let r = app
        .post(&path("/assign"), &sup, &json!({ "machine_id": "M-F" }))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let now = chrono::Utc::now();
    let started = (now - chrono::Duration::minutes(20)).trunc_subsecs(3);
    let inspected = (now - chrono::Duration::minutes(15)).trunc_subsecs(3);
    let completed = (now - chrono::Duration::minutes(10)).trunc_subsecs(3);

    let ahead = now + chrono::Duration::hours(1);
    let r = app
        .post(&path("/start"), &sup, &json!({ "timestamp": ahead }))
        .await;
    r.assert_problem(400);
    assert!(r.body.to_string().contains("timestamp"), "{}", r.body);

    let r = app
        .post(&path("/start"), &sup, &json!({ "timestamp": started }))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .post(
            &path("/inspections"),
            &sup,
            &json!({ "sample_size": 4, "defects": 0, "timestamp": inspected }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .post(&path("/complete"), &sup, &json!({ "timestamp": completed }))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let at = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("{v}")))
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let r = app.get(&path(""), &sup).await;
    assert_eq!(at(&r.body["started_at"]), started, "{}", r.body);
    assert_eq!(at(&r.body["completed_at"]), completed, "{}", r.body);
    assert_eq!(at(&r.body["inspections"][0]["at"]), inspected, "{}", r.body);
}
