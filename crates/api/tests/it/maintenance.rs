//! Maintenance tasks: schedule, start, complete, cancel.

use serde_json::json;
use sqlx::PgPool;

use crate::support::TestApp;

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_task_is_scheduled_started_and_completed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    let sup = app.token("supervisor").await;
    let r = app
        .post("/api/v1/maintenance/schedule", &sup, &json!({ "machine_id": "M-1", "scheduled_date": "2030-01-01T06:00:00+02:00", "kind": "preventive", "description": "grease" }))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["task_id"].as_str().unwrap().to_string();
    assert_eq!(r.body["status"], "scheduled");
    assert_eq!(r.body["kind"], "preventive");
    assert_eq!(r.body["scheduled_date"], "2030-01-01T04:00:00Z");
    let base = format!("/api/v1/maintenance/tasks/{id}");
    app.post(&format!("{base}/complete"), &sup, &json!({}))
        .await
        .assert_problem(409);
    let r = app.post(&format!("{base}/start"), &sup, &json!({})).await;
    assert_eq!(r.body["status"], "in_progress");
    let r = app
        .post(
            &format!("{base}/complete"),
            &sup,
            &json!({ "notes": "done", "parts_used": [{ "item_id": "BELT", "qty": 1 }] }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "completed");
    assert_eq!(r.body["parts_used"][0]["qty"], 1.0);
    app.post(&format!("{base}/cancel"), &sup, &json!({}))
        .await
        .assert_problem(409);
    let r = app.get(&base, &app.token("auditor").await).await;
    assert_eq!(r.body["status"], "completed");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_task_can_be_cancelled(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    let r = app
        .post("/api/v1/maintenance/schedule", &app.admin, &json!({ "task_id": "T-1", "machine_id": "M-1", "scheduled_date": "2030-01-01T06:00:00Z", "kind": "corrective" }))
        .await;
    assert_eq!(r.body["task_id"], "T-1");
    let r = app
        .post(
            "/api/v1/maintenance/tasks/T-1/cancel",
            &app.admin,
            &json!({ "reason": "duplicate" }),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(r.body["cancel_reason"], "duplicate");
    app.post(
        "/api/v1/maintenance/tasks/T-1/start",
        &app.admin,
        &json!({}),
    )
    .await
    .assert_problem(409);
    let r = app
        .post("/api/v1/maintenance/schedule", &app.admin, &json!({ "task_id": "T-1", "machine_id": "M-1", "scheduled_date": "2030-01-01T06:00:00Z", "kind": "corrective" }))
        .await;
    r.assert_problem(409);
}
