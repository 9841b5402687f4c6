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

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn scrap_is_reported_with_a_reason_and_summed_by_reason(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    app.machine("M-2").await;
    let op = app.token("operator").await;
    let reasons = app.get("/api/v1/scrap-reasons", &op).await;
    assert_eq!(reasons.status, 200, "{}", reasons.body);
    let codes: Vec<&str> = reasons
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"scrap.dimensional") && codes.contains(&"scrap.surface"),
        "{codes:?}"
    );
    assert!(codes.iter().all(|c| c.starts_with("scrap.")));

    let batch = json!({ "events": [
        { "event_type": "parts_produced", "machine_id": "M-1", "timestamp": "2025-03-01T08:10:00Z", "good": 10, "scrap": 2, "scrap_reason": "scrap.dimensional" },
        { "event_type": "parts_produced", "machine_id": "M-1", "timestamp": "2025-03-01T08:20:00Z", "good": 5, "scrap": 3, "scrap_reason": "SCRAP.SURFACE" },
        { "event_type": "parts_produced", "machine_id": "M-1", "timestamp": "2025-03-01T08:30:00Z", "good": 4, "scrap": 1 },
        { "event_type": "parts_produced", "machine_id": "M-2", "timestamp": "2025-03-01T08:30:00Z", "good": 0, "scrap": 7, "scrap_reason": "scrap.dimensional" },
    ]});
    let r = app.post("/api/v1/machines/events", &op, &batch).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let recorded = app.event_count().await;
    // An unknown code, or a reason without scrap, is refused and records nothing.
    for bad in [
        json!({ "event_type": "parts_produced", "machine_id": "M-1", "timestamp": "2025-03-01T08:40:00Z", "good": 1, "scrap": 1, "scrap_reason": "breakdown.mechanical" }),
        json!({ "event_type": "parts_produced", "machine_id": "M-1", "timestamp": "2025-03-01T08:40:00Z", "good": 1, "scrap": 0, "scrap_reason": "scrap.surface" }),
        json!({ "event_type": "parts_produced", "machine_id": "M-1", "timestamp": "2025-03-01T08:40:00Z", "good": 1, "scrap": 1, "scrap_reason": "no spaces allowed" }),
    ] {
        let r = app.post("/api/v1/machines/events", &op, &bad).await;
        let detail = r.assert_problem(400);
        assert!(detail.contains("scrap"), "{detail}");
    }
    assert_eq!(app.event_count().await, recorded);
    let log = app
        .get("/api/v1/events?after=0&limit=100", &app.admin)
        .await;
    let parts: Vec<_> = log.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == "MachinePartsProduced")
        .collect();
    assert_eq!(parts[1]["payload"]["scrap_reason"], "scrap.surface");
    // A report without a reason has no such field in its payload (old events' bytes stay).
    assert!(
        parts[2]["payload"].get("scrap_reason").is_none(),
        "{}",
        parts[2]
    );

    project(&app).await;
    let r = app
        .get(
            "/api/v1/scrap?machine_id=M-1&from=2025-03-01T08:00:00Z&to=2025-03-01T09:00:00Z",
            &op,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["good_count"], 19);
    assert_eq!(r.body["scrap_count"], 6);
    let by = r.body["by_reason"].as_array().unwrap();
    let of = |code: Option<&str>| {
        by.iter()
            .find(|b| b["scrap_reason"].as_str() == code)
            .map(|b| b["scrap"].clone())
    };
    assert_eq!(of(Some("scrap.surface")), Some(json!(3)));
    assert_eq!(of(Some("scrap.dimensional")), Some(json!(2)));
    assert_eq!(of(None), Some(json!(1)));
    assert_eq!(by[0]["scrap_reason"], "scrap.surface");
    assert_eq!(by[0]["name"], "Surface defect");
    let line = app
        .get(
            "/api/v1/scrap?line=L1&from=2025-03-01T08:00:00Z&to=2025-03-01T09:00:00Z",
            &op,
        )
        .await;
    assert_eq!(line.body["scrap_count"], 13);
    assert_eq!(
        line.body["by_reason"][0]["scrap_reason"],
        "scrap.dimensional"
    );
    assert_eq!(line.body["by_reason"][0]["scrap"], 9);
    app.get(
        "/api/v1/scrap?machine_id=NOPE&from=2025-03-01T08:00:00Z&to=2025-03-01T09:00:00Z",
        &op,
    )
    .await
    .assert_problem(404);
    app.get(
        "/api/v1/scrap?machine_id=M-1&from=2025-03-01T09:00:00Z&to=2025-03-01T08:00:00Z",
        &op,
    )
    .await
    .assert_problem(400);
}
