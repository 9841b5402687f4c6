//! Lists, levels and KPIs from the read models. The read models are brought up to date
//! from the event store with `shopfloor_projections::replay` (the projectors' own code),
//! so these tests need no NATS.

use serde_json::json;
use sqlx::PgPool;

use crate::support::TestApp;

async fn project(app: &TestApp) {
    shopfloor_projections::replay(&app.pool, None, |_, _| {})
        .await
        .expect("replay");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn lists_come_from_the_read_models(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    app.machine("M-2").await;
    let batch = json!({ "events": [
        { "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T08:00:00Z", "state": "running" },
        { "event_type": "parts_produced", "machine_id": "M-1", "timestamp": "2025-03-01T08:30:00Z", "good": 900, "scrap": 0 },
        { "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T09:00:00Z", "state": "down", "reason": "breakdown.mechanical" },
    ]});
    assert_eq!(
        app.post("/api/v1/machines/events", &app.admin, &batch)
            .await
            .status,
        202
    );
    app.post(
        "/api/v1/production-orders",
        &app.admin,
        &json!({ "order_id": "PO-1", "product_id": "W", "quantity": 10 }),
    )
    .await;
    app.post("/api/v1/maintenance/schedule", &app.admin, &json!({ "task_id": "T-1", "machine_id": "M-2", "scheduled_date": "2030-01-01T00:00:00Z", "kind": "preventive" })).await;
    app.patch("/api/v1/inventory/update", &app.admin, &json!({ "item_id": "S", "item_type": "raw", "location": "A", "delta": 7.5, "reason": "delivery" })).await;
    project(&app).await;

    let op = app.token("operator").await;
    let r = app.get("/api/v1/machines", &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.body.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let m1 = &list[0];
    for field in [
        "machine_id",
        "type",
        "line",
        "current_status",
        "last_maintenance",
    ] {
        assert!(m1.get(field).is_some(), "missing {field}: {m1}");
    }
    assert_eq!(m1["current_status"], "down");
    let r = app.get("/api/v1/machines?status=unknown", &op).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);

    let r = app
        .get("/api/v1/maintenance/tasks?machine_id=M-2", &op)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = &r.body[0];
    for field in ["task_id", "machine_id", "scheduled_date", "status", "kind"] {
        assert!(t.get(field).is_some(), "missing {field}: {t}");
    }
    assert_eq!(t["task_id"], "T-1");
    let r = app
        .get("/api/v1/maintenance/tasks?machine_id=M-1", &op)
        .await;
    assert_eq!(r.body, json!([]));

    let r = app.get("/api/v1/inventory?item_id=S&location=A", &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body[0]["quantity"], 7.5);
    assert_eq!(r.body[0]["item_type"], "raw");
    let r = app.get("/api/v1/inventory/movements?item_id=S", &op).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let r = app
        .get("/api/v1/production-orders?status=created", &op)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body[0]["order_id"], "PO-1");

    let r = app
        .get(
            "/api/v1/kpi-metrics?machine_id=M-1&from=2025-03-01T08:00:00Z&to=2025-03-01T10:00:00Z",
            &op,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let k = &r.body[0];
    for field in [
        "machine_id",
        "from",
        "to",
        "planned_production_time_s",
        "run_time_s",
        "downtime_minutes",
        "availability",
        "performance",
        "quality",
        "oee",
        "good_count",
        "scrap_count",
        "total_count",
        "production_yield",
    ] {
        assert!(k.get(field).is_some(), "missing {field}: {k}");
    }
    assert_eq!(k["good_count"], 900);
    assert_eq!(k["downtime_minutes"], 60.0);
    let r = app
        .get(
            "/api/v1/kpi-metrics?from=2025-03-01T10:00:00Z&to=2025-03-01T08:00:00Z",
            &op,
        )
        .await;
    r.assert_problem(400);
    let r = app
        .get("/api/v1/kpi-metrics?granularity=fortnight", &op)
        .await;
    r.assert_problem(400);
    let r = app
        .get(
            "/api/v1/downtime?machine_id=M-1&from=2025-03-01T08:00:00Z&to=2025-03-01T10:00:00Z",
            &op,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .get(
            "/api/v1/machines/M-1/states?from=2025-03-01T08:00:00Z&to=2025-03-01T10:00:00Z",
            &op,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let r = app.get("/api/v1/ingest/rejected?limit=5", &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!([]));
    let r = app.get("/api/v1/projections", &app.admin).await;
    assert_eq!(r.status, 200, "{}", r.body);
}
