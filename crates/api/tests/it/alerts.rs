//! Alerts over HTTP, as the contract states them: a supervisor defines a `machine_down` rule
//! (201 `{"rule_id"}`), the real evaluator (running beside the API, as in `serve`) raises
//! the alert for a stop past its threshold, `GET /api/v1/alerts` lists it with the contract's
//! fields, an operator acknowledges it, and no answer shows the webhook's secret.

use std::time::Duration;

use serde_json::{json, Value};
use shopfloor_commands::CommandService;
use shopfloor_eventstore::EventStore;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::support::TestApp;

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_rule_raises_an_alert_that_an_operator_acknowledges(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let cancel = CancellationToken::new();
    let settings = shopfloor_alerts::AlertSettings {
        tick: Duration::from_millis(50),
        ..Default::default()
    };
    let service = CommandService::new(EventStore::new(pool.clone()));
    let roles = tokio::spawn(shopfloor_alerts::run(service, settings, cancel.clone()));
    app.machine("M-1").await;
    let (sup, op) = (app.token("supervisor").await, app.token("operator").await);
    let rule = json!({
        "kind": "machine_down", "machine_id": "M-1", "after_minutes": 5,
        "channels": [{ "type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "top-secret-value" },
                     { "type": "email", "to": ["andon@plant.example"] }]
    });
    app.post("/api/v1/alert-rules", &op, &rule)
        .await
        .assert_problem(403);
    let bad = json!({ "kind": "machine_down", "after_minutes": 0, "channels": rule["channels"] });
    app.post("/api/v1/alert-rules", &sup, &bad)
        .await
        .assert_problem(400);
    let r = app.post("/api/v1/alert-rules", &sup, &rule).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rule_id = r.body["rule_id"].as_str().unwrap().to_string();

    let stop = (chrono::Utc::now() - chrono::TimeDelta::minutes(10)).to_rfc3339();
    let r = app
        .post(
            "/api/v1/machines/events",
            &op,
            &json!({ "event_type": "state_changed", "machine_id": "M-1", "timestamp": stop, "state": "down" }),
        )
        .await;
    assert!(r.status < 300, "{}", r.body);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let alerts = loop {
        let r = app
            .get("/api/v1/alerts?state=open&machine_id=M-1", &op)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        if r.body.as_array().is_some_and(|a| !a.is_empty()) {
            break r.body;
        }
        assert!(tokio::time::Instant::now() < deadline, "no alert raised");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let alert = &alerts[0];
    for field in [
        "alert_id",
        "rule_id",
        "kind",
        "machine_id",
        "state",
        "raised_at",
        "acknowledged_by",
        "resolved_at",
    ] {
        assert!(alert.get(field).is_some(), "{field} missing in {alert}");
    }
    assert_eq!(alert["rule_id"], rule_id.as_str());
    assert_eq!(alert["kind"], "machine_down");
    assert_eq!(alert["state"], "open");
    assert_eq!(alert["acknowledged_by"], Value::Null);
    let id = alert["alert_id"].as_str().unwrap();

    let r = app
        .post(&format!("/api/v1/alerts/{id}/acknowledge"), &op, &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "acknowledged");
    app.post("/api/v1/alerts/AL-nope/acknowledge", &op, &json!({}))
        .await
        .assert_problem(404);
    let r = app
        .get(&format!("/api/v1/streams/alert/{id}/events"), &app.admin)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.to_string().contains("AlertAcknowledged"),
        "{}",
        r.body
    );

    // The secret is on the log, and in no answer.
    for path in ["/api/v1/events?after=0&limit=1000", "/api/v1/alert-rules"] {
        let r = app.get(path, &app.admin).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let text = r.body.to_string();
        assert!(
            !text.contains("top-secret-value"),
            "{path} shows the secret"
        );
        if path.ends_with("rules") {
            assert!(text.contains("[redacted]"), "{text}");
        }
    }
    let r = app
        .get(&format!("/api/v1/alerts/{id}/deliveries"), &op)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    cancel.cancel();
    roles.await.unwrap().unwrap();
}

/// A supervisor redefines a rule (`PUT`): the change is an event on the log with who made it,
/// the evaluator's rule list shows it, the same definition again changes nothing, and a
/// disabled rule cannot be redefined.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_supervisor_redefines_a_rule_and_the_change_is_on_the_log(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let cancel = CancellationToken::new();
    let service = CommandService::new(EventStore::new(pool.clone()));
    let settings = shopfloor_alerts::AlertSettings::default();
    let roles = tokio::spawn(shopfloor_alerts::run(service, settings, cancel.clone()));
    let (sup, op) = (app.token("supervisor").await, app.token("operator").await);
    let channels = json!([{ "type": "email", "to": ["andon@plant.example"] }]);
    let rule = json!({ "rule_id": "R-edit", "kind": "machine_down", "line": "L1",
        "after_minutes": 5, "channels": channels });
    assert_eq!(
        app.post("/api/v1/alert-rules", &sup, &rule).await.status,
        201
    );

    let changed = json!({ "kind": "machine_down", "line": "L1", "after_minutes": 15,
        "severity": "warning", "channels": channels });
    app.put("/api/v1/alert-rules/R-edit", &op, &changed)
        .await
        .assert_problem(403);
    app.put("/api/v1/alert-rules/R-none", &sup, &changed)
        .await
        .assert_problem(404);
    let bad = json!({ "kind": "machine_down", "after_minutes": -1, "channels": channels });
    app.put("/api/v1/alert-rules/R-edit", &sup, &bad)
        .await
        .assert_problem(400);
    let r = app.put("/api/v1/alert-rules/R-edit", &sup, &changed).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app.put("/api/v1/alert-rules/R-edit", &sup, &changed).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let r = app.get("/api/v1/alert-rules", &op).await;
        let rule = r
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["rule_id"] == "R-edit")
            .cloned();
        if let Some(rule) = rule.filter(|x| x["after_minutes"] == 15.0) {
            break rule;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change never showed: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(listed["severity"], "warning");
    assert!(listed["defined_by"]
        .as_str()
        .unwrap()
        .starts_with("supervisor"));
    let r = app
        .get("/api/v1/streams/alert_rule/R-edit/events", &app.admin)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let types: Vec<&str> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert_eq!(
        types,
        vec!["AlertRuleDefined", "AlertRuleRedefined"],
        "{}",
        r.body
    );

    let r = app
        .post("/api/v1/alert-rules/R-edit/disable", &sup, &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.put("/api/v1/alert-rules/R-edit", &sup, &rule)
        .await
        .assert_problem(409);
    cancel.cancel();
    roles.await.unwrap().unwrap();
}
