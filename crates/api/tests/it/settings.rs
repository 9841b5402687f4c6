//! The plant's settings over HTTP (ADR 0053): reason codes a supervisor defines,
//! renames and retires (events on the log, decided into the machines' events from then
//! on), and the lines' shift calendar.

use reqwest::Method;
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
    assert_eq!(
        r.body,
        json!({ "time_zone": "UTC", "lines": [], "rotations": [], "exceptions": [], "non_working": [] })
    );

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

/// A rotation with a team and a break, a day off, and a holiday through the API
/// (ADR 0060); the KPIs of a shift name its team.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_supervisor_records_a_rotation_an_exception_and_a_holiday(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let sup = app.token("supervisor").await;
    let op = app.token("operator").await;
    let rotation = json!({ "anchor": "2026-03-02", "days": [
        [{ "shift": "early", "team": "A", "start": "06:00", "end": "14:00",
           "breaks": [{ "start": "10:00", "end": "10:30" }] }],
        [{ "shift": "early", "team": "B", "start": "06:00", "end": "14:00" }],
    ]});
    let path = "/api/v1/calendar/lines/L1/rotations/2026-03-01";
    app.put(path, &op, &rotation).await.assert_problem(403);
    let r = app.put(path, &sup, &rotation).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["rotations"][0]["line"], "L1");
    assert_eq!(r.body["rotations"][0]["effective_from"], "2026-03-01");
    assert_eq!(
        r.body["rotations"][0]["rotation"]["days"][0][0]["team"],
        "A"
    );
    assert!(r.body["rotations"][0]["recorded_by"]
        .as_str()
        .is_some_and(|by| by.starts_with("supervisor")));
    for (bad_path, bad) in [
        (path, json!({ "anchor": "2026-03-02", "days": [] })),
        (
            "/api/v1/calendar/lines/L1/rotations/2026-13-01",
            rotation.clone(),
        ),
        (
            path,
            json!({ "anchor": "2026-03-02", "days": [[{ "shift": "x", "start": "06:00",
            "end": "07:00", "breaks": [{ "start": "08:00", "end": "08:30" }] }]] }),
        ),
    ] {
        app.put(bad_path, &sup, &bad).await.assert_problem(400);
    }
    let r = app
        .put(
            "/api/v1/calendar/lines/L1/exceptions/2026-03-04",
            &sup,
            &json!({ "shifts": [] }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["exceptions"][0]["day"], "2026-03-04");
    let holiday = json!({ "name": "Founders' day", "from": "2026-03-05T00:00:00", "to": "2026-03-06T00:00:00" });
    let r = app
        .post("/api/v1/calendar/non-working", &sup, &holiday)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["non_working"][0]["id"].as_i64().unwrap();
    app.post(
        "/api/v1/calendar/non-working",
        &sup,
        &json!({ "name": "x", "from": "2026-03-06T00:00:00", "to": "2026-03-05T00:00:00" }),
    )
    .await
    .assert_problem(400);

    // The machine runs all week; the KPIs by shift (UTC plant) follow the rotation:
    // Mon 03-02 A (with its break), Tue B, Wed the exception, Thu the holiday.
    app.post(
        "/api/v1/machines",
        &sup,
        &json!({ "machine_id": "M1", "type": "press", "line": "L1", "ideal_cycle_time_s": 10 }),
    )
    .await;
    let r = app
        .post(
            "/api/v1/machines/events",
            &sup,
            &json!({ "events": [{ "event_type": "state_changed", "machine_id": "M1",
                "state": "running", "timestamp": "2026-03-01T00:00:00Z" }] }),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    shopfloor_projections::replay(&app.pool, None, |_, _| {})
        .await
        .unwrap();
    let url = "/api/v1/kpi-metrics?machine_id=M1&from=2026-03-02T00:00:00Z&to=2026-03-06T00:00:00Z&granularity=shift";
    let r = app.get(url, &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = r.body;
    let got: Vec<(String, String, f64, f64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["from"].as_str().unwrap().to_owned(),
                r["team"].as_str().unwrap().to_owned(),
                r["planned_stop_time_s"].as_f64().unwrap(),
                r["run_time_s"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "2026-03-02T06:00:00Z".to_owned(),
                "A".to_owned(),
                0.0,
                28_800.0
            ),
            (
                "2026-03-03T06:00:00Z".to_owned(),
                "B".to_owned(),
                0.0,
                28_800.0
            ),
        ],
        "running through the break is run time; no shift on the 4th and 5th"
    );

    let gone = format!("/api/v1/calendar/non-working/{id}");
    let r = app.send(Method::DELETE, &gone, Some(&sup), None, &[]).await;
    assert_eq!(r.status, 204, "{}", r.body);
    app.send(Method::DELETE, &gone, Some(&sup), None, &[])
        .await
        .assert_problem(404);
    let r = app.get("/api/v1/calendar", &op).await;
    assert_eq!(r.body["non_working"], json!([]));
}
