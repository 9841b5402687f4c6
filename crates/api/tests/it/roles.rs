//! Every route of the OpenAPI document × every role. The route list comes from the
//! document itself, so a new route cannot be missed: one that is not in [`EXPECTED`]
//! fails the test until someone says which roles may call it.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::support::TestApp;

const OPERATOR: u8 = 1;
const SUPERVISOR: u8 = 2;
const AUDITOR: u8 = 4;
const ADMIN: u8 = 8;
const ALL: u8 = OPERATOR | SUPERVISOR | AUDITOR | ADMIN;
/// No token needed.
const PUBLIC: u8 = 0;

/// (method, OpenAPI path, roles allowed).
const EXPECTED: &[(&str, &str, u8)] = &[
    ("post", "/api/v1/machines", SUPERVISOR | ADMIN),
    ("get", "/api/v1/machines", ALL),
    ("get", "/api/v1/machines/{machine_id}", ALL),
    ("get", "/api/v1/machines/{machine_id}/states", ALL),
    ("get", "/api/v1/machines/{machine_id}/telemetry", ALL),
    (
        "post",
        "/api/v1/machines/events",
        OPERATOR | SUPERVISOR | ADMIN,
    ),
    ("post", "/api/v1/production-orders", SUPERVISOR | ADMIN),
    ("get", "/api/v1/production-orders", ALL),
    ("get", "/api/v1/production-orders/{order_id}", ALL),
    (
        "post",
        "/api/v1/production-orders/{order_id}/assign",
        SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/production-orders/{order_id}/start",
        OPERATOR | SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/production-orders/{order_id}/hold",
        OPERATOR | SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/production-orders/{order_id}/resume",
        OPERATOR | SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/production-orders/{order_id}/complete",
        OPERATOR | SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/production-orders/{order_id}/cancel",
        SUPERVISOR | ADMIN,
    ),
    (
        "get",
        "/api/v1/production-orders/{order_id}/inspections",
        ALL,
    ),
    (
        "post",
        "/api/v1/production-orders/{order_id}/inspections",
        OPERATOR | SUPERVISOR | ADMIN,
    ),
    ("get", "/api/v1/production-orders/{order_id}/labour", ALL),
    ("post", "/api/v1/operators", SUPERVISOR | ADMIN),
    ("get", "/api/v1/operators", ALL),
    ("get", "/api/v1/operators/{operator_id}", ALL),
    (
        "patch",
        "/api/v1/operators/{operator_id}",
        SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/operators/{operator_id}/deactivate",
        SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/operators/{operator_id}/reactivate",
        SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/operators/{operator_id}/clock-on",
        OPERATOR | SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/operators/{operator_id}/clock-off",
        OPERATOR | SUPERVISOR | ADMIN,
    ),
    ("get", "/api/v1/operators/{operator_id}/labour", ALL),
    ("get", "/api/v1/stops/unclassified", ALL),
    (
        "post",
        "/api/v1/machines/{machine_id}/stops/classify",
        OPERATOR | SUPERVISOR | ADMIN,
    ),
    ("post", "/api/v1/maintenance/schedule", SUPERVISOR | ADMIN),
    ("get", "/api/v1/maintenance/tasks", ALL),
    ("get", "/api/v1/maintenance/tasks/{task_id}", ALL),
    (
        "post",
        "/api/v1/maintenance/tasks/{task_id}/start",
        SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/maintenance/tasks/{task_id}/complete",
        SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/maintenance/tasks/{task_id}/cancel",
        SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/maintenance/tasks/{task_id}/acknowledge",
        OPERATOR | SUPERVISOR | ADMIN,
    ),
    (
        "patch",
        "/api/v1/inventory/update",
        OPERATOR | SUPERVISOR | ADMIN,
    ),
    ("get", "/api/v1/inventory", ALL),
    ("get", "/api/v1/inventory/items/{item_id}", ALL),
    ("get", "/api/v1/inventory/movements", ALL),
    ("post", "/api/v1/lots", OPERATOR | SUPERVISOR | ADMIN),
    ("get", "/api/v1/lots", ALL),
    ("post", "/api/v1/lots/merge", OPERATOR | SUPERVISOR | ADMIN),
    ("get", "/api/v1/lots/{item_id}/{lot_id}", ALL),
    ("get", "/api/v1/lots/{item_id}/{lot_id}/backward", ALL),
    ("get", "/api/v1/lots/{item_id}/{lot_id}/forward", ALL),
    (
        "post",
        "/api/v1/lots/{item_id}/{lot_id}/split",
        OPERATOR | SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/lots/{item_id}/{lot_id}/move",
        OPERATOR | SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/lots/{item_id}/{lot_id}/hold",
        SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/lots/{item_id}/{lot_id}/release",
        SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/lots/{item_id}/{lot_id}/scrap",
        SUPERVISOR | ADMIN,
    ),
    ("put", "/api/v1/lot-rules/{item_id}", SUPERVISOR | ADMIN),
    ("get", "/api/v1/reason-codes", ALL),
    ("get", "/api/v1/scrap-reasons", ALL),
    ("put", "/api/v1/reason-codes/{code}", SUPERVISOR | ADMIN),
    (
        "post",
        "/api/v1/reason-codes/{code}/retire",
        SUPERVISOR | ADMIN,
    ),
    ("get", "/api/v1/hierarchy", ALL),
    ("post", "/api/v1/hierarchy/nodes", SUPERVISOR | ADMIN),
    (
        "post",
        "/api/v1/hierarchy/nodes/{node_id}/move",
        SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/hierarchy/nodes/{node_id}/rename",
        SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/hierarchy/machines/{machine_id}/place",
        SUPERVISOR | ADMIN,
    ),
    ("get", "/api/v1/calendar", ALL),
    ("put", "/api/v1/calendar/time-zone", SUPERVISOR | ADMIN),
    (
        "put",
        "/api/v1/calendar/lines/{line}/shifts",
        SUPERVISOR | ADMIN,
    ),
    (
        "put",
        "/api/v1/calendar/lines/{line}/rotations/{effective_from}",
        SUPERVISOR | ADMIN,
    ),
    (
        "put",
        "/api/v1/calendar/lines/{line}/exceptions/{day}",
        SUPERVISOR | ADMIN,
    ),
    ("post", "/api/v1/calendar/non-working", SUPERVISOR | ADMIN),
    (
        "delete",
        "/api/v1/calendar/non-working/{id}",
        SUPERVISOR | ADMIN,
    ),
    ("post", "/api/v1/alert-rules", SUPERVISOR | ADMIN),
    ("get", "/api/v1/alert-rules", ALL),
    ("put", "/api/v1/alert-rules/{rule_id}", SUPERVISOR | ADMIN),
    (
        "post",
        "/api/v1/alert-rules/{rule_id}/disable",
        SUPERVISOR | ADMIN,
    ),
    ("get", "/api/v1/alerts", ALL),
    (
        "post",
        "/api/v1/alerts/{alert_id}/acknowledge",
        OPERATOR | SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/alerts/{alert_id}/resolve",
        SUPERVISOR | ADMIN,
    ),
    ("get", "/api/v1/alerts/{alert_id}/deliveries", ALL),
    ("get", "/api/v1/alert-deliveries", ALL),
    ("post", "/api/v1/auth/tokens", ADMIN),
    ("get", "/api/v1/auth/tokens", ADMIN),
    ("delete", "/api/v1/auth/tokens/{name}", ADMIN),
    ("get", "/api/v1/events", AUDITOR | ADMIN),
    (
        "get",
        "/api/v1/streams/{stream_type}/{stream_id}/events",
        AUDITOR | ADMIN,
    ),
    (
        "get",
        "/api/v1/streams/{stream_type}/{stream_id}/state",
        AUDITOR | ADMIN,
    ),
    ("get", "/api/v1/kpi-metrics", ALL),
    ("get", "/api/v1/kpi-catalogue", ALL),
    ("get", "/api/v1/changeovers", ALL),
    ("get", "/api/v1/downtime", ALL),
    ("get", "/api/v1/scrap", ALL),
    ("get", "/api/v1/ingest/rejected", ALL),
    ("get", "/api/v1/process/rejections", ALL),
    ("get", "/api/v1/projections", AUDITOR | ADMIN),
    ("get", "/api/v1/live", ALL),
    ("post", "/api/v1/reports", SUPERVISOR | ADMIN),
    ("get", "/api/v1/reports", ALL),
    ("get", "/api/v1/reports/{report_id}", ALL),
    ("get", "/api/v1/reports/{report_id}/content", ALL),
    ("get", "/api/v1/reports/{report_id}/verify", ALL),
    ("post", "/api/v1/report-schedules", SUPERVISOR | ADMIN),
    ("get", "/api/v1/report-schedules", ALL),
    ("get", "/api/v1/openapi.json", PUBLIC),
    ("get", "/api/v1/docs", PUBLIC),
    ("get", "/healthz", PUBLIC),
    ("get", "/readyz", PUBLIC),
    ("get", "/metrics", PUBLIC),
    ("get", "/", PUBLIC),
    ("get", "/assets/{file}", PUBLIC),
    ("get", "/floor", PUBLIC),
    ("get", "/api/v1/auth/me", ALL),
    ("post", "/api/v1/spc/characteristics", SUPERVISOR | ADMIN),
    ("get", "/api/v1/spc/characteristics", ALL),
    (
        "get",
        "/api/v1/spc/characteristics/{characteristic_id}",
        ALL,
    ),
    (
        "post",
        "/api/v1/spc/characteristics/{characteristic_id}/samples",
        OPERATOR | SUPERVISOR | ADMIN,
    ),
    (
        "post",
        "/api/v1/spc/characteristics/{characteristic_id}/limits",
        SUPERVISOR | ADMIN,
    ),
    ("get", "/api/v1/spc/signals", ALL),
];

/// A concrete path for an OpenAPI path template.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match seg {
            "{machine_id}" | "{stream_id}" => "M-1".to_string(),
            "{order_id}" => "PO-1".to_string(),
            "{task_id}" => "T-1".to_string(),
            "{item_id}" => "STEEL".to_string(),
            "{name}" => "nobody".to_string(),
            "{stream_type}" => "machine".to_string(),
            s if s.starts_with('{') => "x1".to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The status of a call; the body is read only for an error answer (a granted
/// `/api/v1/live` streams forever).
async fn status_of(
    app: &TestApp,
    method: &Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut rb = client.request(method.clone(), app.url(path));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    if status >= 400 {
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(
            ct.starts_with("application/problem+json"),
            "{method} {path}: {status} as {ct}"
        );
        (status, r.json().await.unwrap_or(Value::Null))
    } else {
        (status, Value::Null)
    }
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn every_route_of_the_openapi_document_for_every_role(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let doc = app
        .send(Method::GET, "/api/v1/openapi.json", None, None, &[])
        .await;
    assert_eq!(doc.status, 200);
    let mut operations = Vec::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                operations.push((method.to_string(), path.clone()));
            }
        }
    }
    assert!(operations.len() > 20, "{operations:?}");
    let missing: Vec<String> = operations
        .iter()
        .filter(|(m, p)| !EXPECTED.iter().any(|(em, ep, _)| em == m && ep == p))
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        missing.is_empty(),
        "routes in the OpenAPI document without expected roles (add them to EXPECTED): {missing:?}"
    );
    for must in ["/api/v1/live", "/api/v1/machines/{machine_id}/telemetry"] {
        assert!(
            operations.iter().any(|(_, p)| p == must),
            "{must} is not in the OpenAPI document"
        );
    }

    let tokens = [
        (OPERATOR, app.token("operator").await),
        (SUPERVISOR, app.token("supervisor").await),
        (AUDITOR, app.token("auditor").await),
        (ADMIN, app.token("admin").await),
        (ADMIN, app.admin.clone()),
    ];
    // A body that is wrong for every write route, so an allowed call changes nothing.
    let body = json!({ "nothing": true });
    let mut checked = 0;
    for (method, template) in &operations {
        let (_, _, allowed) = EXPECTED
            .iter()
            .find(|(m, p, _)| m == method && p == template)
            .unwrap();
        let m: Method = method.to_uppercase().parse().unwrap();
        let path = concrete(template);
        let b = (m != Method::GET && m != Method::DELETE).then_some(&body);
        if *allowed == PUBLIC {
            let (s, _) = status_of(&app, &m, &path, None, b).await;
            assert!(s != 401 && s != 403, "{m} {path} without a token: {s}");
            continue;
        }
        let (s, _) = status_of(&app, &m, &path, None, b).await;
        assert_eq!(s, 401, "{m} {path} without a token");
        let (s, _) = status_of(&app, &m, &path, Some("sft_unknown"), b).await;
        assert_eq!(s, 401, "{m} {path} with an unknown token");
        for (role, token) in &tokens {
            let (s, problem) = status_of(&app, &m, &path, Some(token), b).await;
            if allowed & role != 0 {
                assert!(
                    s != 401 && s != 403,
                    "{m} {path} as role {role}: {s} {problem}"
                );
            } else {
                assert_eq!(s, 403, "{m} {path} as role {role}: {problem}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 5 * 30, "only {checked} calls checked");
    assert_eq!(app.event_count().await, 0, "refused calls appended events");
}
