//! Statistical process control over HTTP (ADR 0056), with the real process manager and alert
//! evaluator running beside the API as in `serve`: a supervisor defines an individuals chart
//! fed by inspection measurements and a p chart fed by every inspection of a product,
//! inspections with measurements become samples, limits frozen from the baseline match the
//! published worked example (Montgomery, *Introduction to Statistical Quality Control*,
//! Example 6.5: x̄ = 300.5, UCL = 321.22, LCL = 279.78), an out-of-control point raises an
//! `SpcSignalRaised` event on the log, the chart and the signal list show it, and an
//! `spc_signal` alert rule raises an alert for it.

use std::time::Duration;

use serde_json::{json, Value};
use shopfloor_commands::process::ProcessManager;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::support::TestApp;

/// Montgomery, Example 6.5 (Table 6.6): weekly cost of processing mortgage applications.
const COSTS: [f64; 20] = [
    310.0, 288.0, 297.0, 298.0, 307.0, 303.0, 294.0, 297.0, 308.0, 306.0, 294.0, 299.0, 297.0,
    299.0, 314.0, 295.0, 293.0, 306.0, 301.0, 304.0,
];

/// Polls `path` until `done` holds of the answer (at most 30 s).
async fn until(app: &TestApp, token: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = app.get(path, token).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        if done(&r.body) {
            return r.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never got there: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn close(v: &Value, expected: f64, tolerance: f64) {
    let x = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!((x - expected).abs() <= tolerance, "{x} is not {expected}");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn inspections_feed_a_chart_whose_signal_raises_an_alert(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let cancel = CancellationToken::new();
    let settings = shopfloor_alerts::AlertSettings {
        tick: Duration::from_millis(50),
        ..Default::default()
    };
    // One writer for the API, the process manager and the evaluator, as `serve` runs them.
    let alerts = tokio::spawn(shopfloor_alerts::run(
        app.commands.clone(),
        settings,
        cancel.clone(),
    ));
    let manager = ProcessManager::new(app.commands.clone());
    let process = tokio::spawn({
        let cancel = cancel.clone();
        async move { manager.run(cancel).await }
    });
    app.machine("M-1").await;
    let (sup, op) = (app.token("supervisor").await, app.token("operator").await);

    let rule = json!({
        "kind": "spc_signal", "machine_id": "M-1",
        "channels": [{ "type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s3cret-hook" }]
    });
    let r = app.post("/api/v1/alert-rules", &sup, &rule).await;
    assert_eq!(r.status, 201, "{}", r.body);

    let cost = json!({
        "characteristic_id": "cost", "name": "Processing cost", "chart": "imr",
        "lsl": 270.0, "usl": 330.0, "machine_id": "M-1", "rules": "western_electric"
    });
    app.post("/api/v1/spc/characteristics", &op, &cost)
        .await
        .assert_problem(403);
    let r = app.post("/api/v1/spc/characteristics", &sup, &cost).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["source"], "measurements");
    assert_eq!(r.body["limits"], Value::Null);
    app.post("/api/v1/spc/characteristics", &sup, &cost)
        .await
        .assert_problem(409);
    let defectives = json!({
        "characteristic_id": "defectives", "name": "Defective cans", "chart": "p",
        "subgroup_size": 50, "source": { "kind": "inspections", "product_id": "P-1" }
    });
    let r = app
        .post("/api/v1/spc/characteristics", &sup, &defectives)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let bad = json!({ "name": "x", "chart": "xbar_r", "subgroup_size": 1 });
    app.post("/api/v1/spc/characteristics", &sup, &bad)
        .await
        .assert_problem(400);

    let r = app
        .post(
            "/api/v1/production-orders",
            &sup,
            &json!({ "order_id": "PO-1", "product_id": "P-1", "quantity": 1000 }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let inspect = |i: usize, value: f64| {
        json!({
            "inspection_id": format!("I{i}"), "sample_size": 50, "defects": (i % 7) + 4,
            "measurements": [{ "characteristic": "cost", "values": [value] }]
        })
    };
    for (i, v) in COSTS.iter().enumerate() {
        let r = app
            .post(
                "/api/v1/production-orders/PO-1/inspections",
                &op,
                &inspect(i, *v),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        if i == 0 {
            assert_eq!(r.body["measurements"][0]["values"], json!([310.0]));
        }
    }
    let chart = until(&app, &op, "/api/v1/spc/characteristics/cost", |b| {
        b["characteristic"]["samples"] == 20
    })
    .await;
    assert_eq!(chart["points"][0]["order_id"], "PO-1");
    assert_eq!(chart["points"][1]["spread"], 22.0);
    until(&app, &op, "/api/v1/spc/characteristics/defectives", |b| {
        b["characteristic"]["samples"] == 20
    })
    .await;

    // Phase I: limits from the 20 weeks, as the book computes them.
    app.post(
        "/api/v1/spc/characteristics/cost/limits",
        &op,
        &json!({ "from_index": 1 }),
    )
    .await
    .assert_problem(403);
    let r = app
        .post(
            "/api/v1/spc/characteristics/cost/limits",
            &sup,
            &json!({ "from_index": 1, "to_index": 20 }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["from_sample"], 21);
    close(&r.body["primary"]["center"], 300.5, 1e-9);
    close(&r.body["primary"]["ucl"], 321.22, 0.005);
    close(&r.body["primary"]["lcl"], 279.78, 0.005);
    close(&r.body["spread"]["ucl"], 25.45, 0.005);
    assert_eq!(r.body["baseline_flags"], json!([]));
    app.post(
        "/api/v1/spc/characteristics/cost/limits",
        &sup,
        &json!({ "from_index": 5, "to_index": 99 }),
    )
    .await
    .assert_problem(400);

    // Phase II: a sample posted directly, in control; then an inspection far above the UCL.
    let r = app
        .post(
            "/api/v1/spc/characteristics/cost/samples",
            &op,
            &json!({ "values": [302.0] }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["point"]["index"], 21);
    assert_eq!(r.body["signals"], json!([]));
    app.post(
        "/api/v1/spc/characteristics/cost/samples",
        &op,
        &json!({ "count": 3 }),
    )
    .await
    .assert_problem(400);
    let r = app
        .post(
            "/api/v1/production-orders/PO-1/inspections",
            &op,
            &inspect(99, 335.0),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let chart = until(&app, &op, "/api/v1/spc/characteristics/cost", |b| {
        b["signals"].as_array().is_some_and(|s| !s.is_empty())
    })
    .await;
    let signal = &chart["signals"][0];
    assert_eq!(signal["rule"], "beyond_limits");
    assert_eq!(signal["part"], "primary");
    assert_eq!(signal["index"], 22);
    assert_eq!(signal["limits_version"], 1);
    // The moving range 335 − 302 = 33 is beyond the MR chart's UCL too.
    assert_eq!(chart["signals"][1]["part"], "spread");
    let cap = &chart["characteristic"]["capability"];
    close(&cap["cp"], 60.0 / (6.0 * 148.0 / 19.0 / 1.128), 1e-9);
    let last = chart["points"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["inspection_id"], "I99");
    close(&last["band"]["ucl"], 321.22, 0.005);

    // The signal is an event on the log.
    let r = app
        .get("/api/v1/streams/spc_characteristic/cost/events", &app.admin)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let text = r.body.to_string();
    assert!(text.contains("SpcSignalRaised"), "{text}");
    assert!(text.contains("SpcControlLimitsFrozen"), "{text}");

    // The alert pipeline raised an spc_signal alert for it, about the characteristic.
    let open = until(&app, &op, "/api/v1/alerts?state=open&machine_id=M-1", |b| {
        b.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let kinds: Vec<&str> = open
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["kind"].as_str())
        .collect();
    assert!(kinds.iter().all(|k| *k == "spc_signal"), "{open}");
    assert_eq!(kinds.len(), 2, "one alert per signal: {open}");

    // The roles beside the API stop (their leader locks hold connections of the test's
    // small pool, which the replay needs one per read model of).
    cancel.cancel();
    alerts.await.unwrap().unwrap();
    process.await.unwrap();

    // The read model: the list and the signals.
    shopfloor_projections::replay(&app.pool, None, |_, _| {})
        .await
        .unwrap();
    let r = app.get("/api/v1/spc/characteristics", &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = r.body.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["characteristic_id"], "cost");
    assert_eq!(listed[0]["samples"], 22);
    assert_eq!(listed[0]["signals"], 2);
    close(&listed[0]["ucl"], 321.22, 0.005);
    let r = app
        .get("/api/v1/spc/signals?characteristic_id=cost", &op)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let signals = r.body.as_array().unwrap();
    assert_eq!(signals.len(), 2);
    assert!(signals
        .iter()
        .all(|s| s["index"] == 22 && s["machine_id"] == "M-1"));
    assert_eq!(
        shopfloor_projections::verify(&app.pool).await.unwrap(),
        vec![]
    );
    app.get("/api/v1/spc/characteristics/nope", &op)
        .await
        .assert_problem(404);
}
