//! The plant's settings over HTTP (ADR 0053): reason codes a supervisor defines,
//! renames and retires (events on the log, decided into the machines' events from then
//! on), and the lines' shift calendar.

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::support::TestApp;

/// The payloads of a machine's events of `event_type`, in order.
async fn machine_events(app: &TestApp, machine: &str, event_type: &str) -> Vec<Value> {
    let r = app
        .get(
            &format!("/api/v1/streams/machine/{machine}/events"),
            &app.admin,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let events = r.body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", r.body));
    events
        .iter()
        .filter(|e| e["event_type"] == event_type)
        .map(|e| e["payload"].clone())
        .collect()
}

fn code<'a>(listing: &'a Value, code: &str) -> &'a Value {
    listing
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == code)
        .unwrap_or_else(|| panic!("{code} is not listed: {listing}"))
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_plant_reason_code_is_defined_used_and_retired(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.machine("M-1").await;
    let sup = app.token("supervisor").await;
    let op = app.token("operator").await;
    let hydraulic =
        json!({ "name": "Hydraulic failure", "category": "unplanned", "loss": "breakdown" });

    app.put("/api/v1/reason-codes/breakdown.hydraulic", &op, &hydraulic)
        .await
        .assert_problem(403);
    for (path, body) in [
        (
            "/api/v1/reason-codes/planned.lunch",
            json!({ "name": "Lunch", "category": "planned", "loss": "breakdown" }),
        ),
        (
            "/api/v1/reason-codes/breakdown.leak",
            json!({ "name": "Leak", "category": "unplanned" }),
        ),
        ("/api/v1/reason-codes/scrap.burr", hydraulic.clone()),
        (
            "/api/v1/reason-codes/Breakdown.Hydraulic",
            hydraulic.clone(),
        ),
        ("/api/v1/reason-codes/unclassified", hydraulic.clone()),
    ] {
        app.put(path, &sup, &body).await.assert_problem(400);
    }

    let r = app
        .put("/api/v1/reason-codes/breakdown.hydraulic", &sup, &hydraulic)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"], "Hydraulic failure");
    assert_eq!(r.body["builtin"], false);
    assert_eq!(r.body["retired"], false);
    let r = app
        .put(
            "/api/v1/reason-codes/breakdown.mechanical",
            &sup,
            &json!({ "name": "Mechanical (press)", "category": "unplanned", "loss": "breakdown" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let listing = app.get("/api/v1/reason-codes", &op).await.body;
    assert_eq!(
        code(&listing, "breakdown.mechanical")["name"],
        "Mechanical (press)"
    );
    assert_eq!(code(&listing, "breakdown.mechanical")["builtin"], true);
    assert_eq!(code(&listing, "breakdown.hydraulic")["loss"], "breakdown");

    // A machine reports the new code, and a stop is classified with it.
    let batch = json!({ "events": [
        { "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T08:00:00Z", "state": "running" },
        { "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T08:10:00Z", "state": "down", "reason": "breakdown.hydraulic" },
        { "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T08:20:00Z", "state": "down" },
        { "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T08:30:00Z", "state": "down" },
        { "event_type": "state_changed", "machine_id": "M-1", "timestamp": "2025-03-01T08:40:00Z", "state": "running" },
    ]});
    let r = app.post("/api/v1/machines/events", &op, &batch).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let states = machine_events(&app, "M-1", "MachineStateChanged").await;
    assert_eq!(
        states[1]["reason_code"], "breakdown.hydraulic",
        "{states:?}"
    );
    assert_eq!(states[1]["loss"], "breakdown");
    assert_eq!(states[2]["reason_code"], "unclassified");
    let classify = |at: &str| json!({ "stop_at": at, "reason_code": "breakdown.hydraulic" });
    let r = app
        .post(
            "/api/v1/machines/M-1/stops/classify",
            &op,
            &classify("2025-03-01T08:20:00Z"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Retired: no new stop may be given it; what was decided stays as it was.
    app.post(
        "/api/v1/reason-codes/breakdown.nonesuch/retire",
        &sup,
        &json!({}),
    )
    .await
    .assert_problem(404);
    let r = app
        .post(
            "/api/v1/reason-codes/breakdown.hydraulic/retire",
            &sup,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["retired"], true);
    let refused = app
        .post(
            "/api/v1/machines/M-1/stops/classify",
            &op,
            &classify("2025-03-01T08:30:00Z"),
        )
        .await
        .assert_problem(400);
    assert!(refused.contains("breakdown.hydraulic"), "{refused}");
    let classified = machine_events(&app, "M-1", "MachineStopClassified").await;
    assert_eq!(classified.len(), 1, "{classified:?}");
    assert_eq!(classified[0]["reason_code"], "breakdown.hydraulic");
    assert_eq!(classified[0]["loss"], "breakdown");
    let listing = app.get("/api/v1/reason-codes", &op).await.body;
    assert_eq!(code(&listing, "breakdown.hydraulic")["retired"], true);

    // Defined again, it is back in use.
    let r = app
        .put("/api/v1/reason-codes/breakdown.hydraulic", &sup, &hydraulic)
        .await;
    assert_eq!(r.body["retired"], false, "{}", r.body);
    let r = app
        .post(
            "/api/v1/machines/M-1/stops/classify",
            &op,
            &classify("2025-03-01T08:30:00Z"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Each change is an event of the reason catalogue, with who made it.
    let r = app
        .get("/api/v1/streams/reason_catalogue/plant/events", &app.admin)
        .await;
    let kinds: Vec<&str> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "ReasonCodeDefined",
            "ReasonCodeDefined",
            "ReasonCodeRetired",
            "ReasonCodeDefined"
        ]
    );
    let by = &r.body["events"][0]["payload"]["by"];
    assert!(
        by.as_str().is_some_and(|by| by.starts_with("supervisor-")),
        "{}",
        r.body["events"][0]
    );
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_supervisor_sets_the_time_zone_and_a_lines_shifts(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sup = app.token("supervisor").await;
    let op = app.token("operator").await;
    let r = app.get("/api/v1/calendar", &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!({ "time_zone": "UTC", "lines": [] }));

    let shifts = json!({ "shifts": [
        { "shift_name": "early", "start_time": "06:00", "end_time": "14:00", "days": [1, 2, 3, 4, 5] },
        { "shift_name": "night", "start_time": "22:00:00", "end_time": "06:00" },
    ]});
    app.put("/api/v1/calendar/lines/L1/shifts", &op, &shifts)
        .await
        .assert_problem(403);
    let r = app
        .put("/api/v1/calendar/lines/L1/shifts", &sup, &shifts)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["line"], "L1");
    assert_eq!(r.body["shifts"][0]["shift_name"], "early");
    assert_eq!(r.body["shifts"][1]["end_time"], "06:00");
    assert_eq!(r.body["shifts"][1]["days"], json!([1, 2, 3, 4, 5, 6, 7]));

    for bad in [
        json!({ "shifts": [{ "shift_name": "x", "start_time": "25:00", "end_time": "06:00" }] }),
        json!({ "shifts": [{ "shift_name": "x", "start_time": "06:00", "end_time": "07:00", "days": [8] }] }),
        json!({ "shifts": [
            { "shift_name": "x", "start_time": "06:00", "end_time": "07:00" },
            { "shift_name": "x", "start_time": "08:00", "end_time": "09:00" },
        ]}),
    ] {
        app.put("/api/v1/calendar/lines/L1/shifts", &sup, &bad)
            .await
            .assert_problem(400);
    }
    app.put(
        "/api/v1/calendar/time-zone",
        &sup,
        &json!({ "time_zone": "Mars/Olympus" }),
    )
    .await
    .assert_problem(400);
    let r = app
        .put(
            "/api/v1/calendar/time-zone",
            &sup,
            &json!({ "time_zone": "Europe/Berlin" }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["time_zone"], "Europe/Berlin");
    assert_eq!(r.body["lines"][0]["shifts"].as_array().unwrap().len(), 2);

    let r = app
        .put(
            "/api/v1/calendar/lines/L1/shifts",
            &sup,
            &json!({ "shifts": [] }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app.get("/api/v1/calendar", &op).await;
    assert_eq!(r.body["lines"], json!([]));
}
