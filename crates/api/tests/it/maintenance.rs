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

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn an_operator_acknowledges_a_task_once_and_never_a_finished_one(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    for id in ["T-1", "T-2"] {
        let r = app
            .post("/api/v1/maintenance/schedule", &app.admin, &json!({ "task_id": id, "machine_id": "M-1", "scheduled_date": "2030-01-01T06:00:00Z", "kind": "preventive" }))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let op = app.token("operator").await;
    let r = app
        .post("/api/v1/maintenance/tasks/T-1/acknowledge", &op, &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "scheduled");
    assert!(r.body["acknowledged_by"]
        .as_str()
        .unwrap()
        .starts_with("operator-"));
    let first = r.body["acknowledged_at"].clone();
    assert!(first.is_string(), "{}", r.body);
    let events = app.event_count().await;
    // Again, by someone else: nothing recorded, the first acknowledgement stands.
    let sup = app.token("supervisor").await;
    let r = app
        .post(
            "/api/v1/maintenance/tasks/T-1/acknowledge",
            &sup,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["acknowledged_at"], first);
    assert!(r.body["acknowledged_by"]
        .as_str()
        .unwrap()
        .starts_with("operator-"));
    assert_eq!(app.event_count().await, events);
    // The read model shows it.
    shopfloor_projections::replay(&app.pool, None, |_, _| {})
        .await
        .expect("replay");
    let r = app
        .get("/api/v1/maintenance/tasks?machine_id=M-1", &op)
        .await;
    let rows = r.body.as_array().unwrap();
    let t1 = rows.iter().find(|t| t["task_id"] == "T-1").unwrap();
    assert!(
        t1["acknowledged_by"]
            .as_str()
            .unwrap()
            .starts_with("operator-"),
        "{t1}"
    );
    assert!(t1["acknowledged_at"].is_string(), "{t1}");
    let t2 = rows.iter().find(|t| t["task_id"] == "T-2").unwrap();
    assert!(
        t2["acknowledged_by"].is_null() && t2["acknowledged_at"].is_null(),
        "{t2}"
    );

    // Cancelled or completed: 409, nothing recorded; unknown: 404; an auditor: 403.
    app.post(
        "/api/v1/maintenance/tasks/T-2/cancel",
        &app.admin,
        &json!({}),
    )
    .await;
    let events = app.event_count().await;
    let detail = app
        .post("/api/v1/maintenance/tasks/T-2/acknowledge", &op, &json!({}))
        .await
        .assert_problem(409);
    assert!(detail.contains("cancelled"), "{detail}");
    for verb in ["start", "complete"] {
        let r = app
            .post(
                &format!("/api/v1/maintenance/tasks/T-1/{verb}"),
                &app.admin,
                &json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    app.post("/api/v1/maintenance/tasks/T-1/acknowledge", &op, &json!({}))
        .await
        .assert_problem(409);
    assert_eq!(app.event_count().await, events + 2);
    app.post(
        "/api/v1/maintenance/tasks/NOPE/acknowledge",
        &op,
        &json!({}),
    )
    .await
    .assert_problem(404);
    let aud = app.token("auditor").await;
    app.post(
        "/api/v1/maintenance/tasks/T-2/acknowledge",
        &aud,
        &json!({}),
    )
    .await
    .assert_problem(403);
}
